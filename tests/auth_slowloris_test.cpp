// Auth slowloris: a thousand clients that never authenticate (silent, or dribbling wrong bytes)
// hold their sockets until their auth timeout, no sooner and not much later, while honest sides
// authenticate, pair and relay.
#include <socket_connector/auth.hpp>
#include <socket_connector/connector.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <asio/detached.hpp>

#include "support/faults.hpp"
#include "support/net.hpp"
#include "support/process.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

/// A client that connects and authenticates never: silent, or a wrong byte now and then.
struct slow_client {
    tcp::socket socket;
    bool dribbles = false;
    steady::time_point connected{};
    close_watch watch;
    explicit slow_client(tcp::socket s)
        : socket(std::move(s)) {}
};

asio::awaitable<void> dribble(std::shared_ptr<slow_client> s) {
    // One wrong byte every 400 ms (never a line end), at most 20: bounded whatever happens.
    for (int i = 0; i < 20 && !s->watch.closed; ++i) {
        co_await pause(400ms);
        if (s->watch.closed) break;
        char x = 'x';
        auto [ec, n] = co_await asio::async_write(s->socket, asio::buffer(&x, 1), use_tuple);
        if (ec) break;
    }
}

asio::awaitable<void> slow_client_life(std::shared_ptr<slow_client> s) {
    if (s->dribbles)
        co_await (watch_until_closed(s->socket, s->watch) && dribble(s));
    else
        co_await watch_until_closed(s->socket, s->watch);
}

asio::awaitable<void> honest_pair(sc::connector& c, std::uint64_t seed) {
    auto from_a = pattern(seed, 64 * 1024 + static_cast<std::size_t>(seed));
    auto from_b = pattern(seed + 1, 48 * 1024);
    std::vector<char> out_a{'s', '3', 'c', 'r', 'e', 't', '\n'};
    std::vector<char> out_b{'s', '3', 'c', 'r', 'e', 't', '\r', '\n'};
    out_a.insert(out_a.end(), from_a.begin(), from_a.end());
    out_b.insert(out_b.end(), from_b.begin(), from_b.end());
    auto a = co_await connect_to(c.side_a_port());
    auto b = co_await connect_to(c.side_b_port());
    auto [at_a, at_b] = co_await (send_and_receive(a, out_a) && send_and_receive(b, out_b));
    CHECK(at_b.size() == from_a.size());
    CHECK(checksum(at_b) == checksum(from_a));
    CHECK(at_a.size() == from_b.size());
    CHECK(checksum(at_a) == checksum(from_b));
}

asio::awaitable<void> slowloris() {
    auto ex = co_await asio::this_coro::executor;
    constexpr std::size_t silent = 1000;
    constexpr std::size_t dribblers = 60;
    // Long enough for the honest pairs to finish before the first slow client is closed.
    constexpr std::chrono::seconds auth_timeout{sanitized ? 5 : 2};
    log_capture capture;
    sc::options o = loopback_options();
    o.a.auth = sc::token_verifier("s3cret");
    o.b.auth = sc::token_verifier("s3cret");
    o.auth_timeout = auth_timeout;
    o.timeout = sc::no_timeout;
    o.max_pending = 4096;
    o.logger = capture.logger();
    auto c = co_await sc::server_to_server(ex, std::move(o));
    std::vector<std::shared_ptr<slow_client>> slow;
    for (std::size_t i = 0; i < silent + dribblers; ++i) {
        auto port = i % 2 == 0 ? c->side_a_port() : c->side_b_port();
        auto socket = co_await connect_to(port);
        auto s = std::make_shared<slow_client>(std::move(socket));
        s->connected = steady::now();
        s->dribbles = i >= silent;
        slow.push_back(s);
        asio::co_spawn(ex, slow_client_life(s), asio::detached);
    }
    auto all_connected = steady::now();
    // Honest sides authenticate, pair and relay while the slow ones hold their sockets.
    for (std::uint64_t p = 0; p < 20; ++p)
        co_await honest_pair(*c, 1000 + 2 * p);
    auto honest_done = steady::now();
    auto first_close = steady::time_point::max();
    for (auto& s : slow)
        if (s->watch.closed) first_close = std::min(first_close, s->watch.at);
    INFO("the honest pairs took " << seconds_between(all_connected, honest_done) << " s");
    CHECK(honest_done < first_close);
    CHECK(c->stats().connections_total == 20);
    // Each slow client is closed at its auth timeout, not before, not much after.
    bool all_closed = co_await eventually(
        [&] {
            return std::all_of(slow.begin(), slow.end(), [](auto& s) { return s->watch.closed; });
        },
        auth_timeout + 10s);
    CHECK(all_closed);
    double earliest = 1e9;
    double latest = 0;
    std::size_t relayed_to_slow = 0;
    for (auto& s : slow) {
        if (!s->watch.closed) continue;
        auto held = seconds_between(s->connected, s->watch.at);
        earliest = std::min(earliest, held);
        latest = std::max(latest, held);
        relayed_to_slow += s->watch.received;
    }
    INFO("slow clients held from " << earliest << " s to " << latest << " s");
    CHECK(earliest >= std::chrono::duration<double>(auth_timeout).count() - 0.02);
    CHECK(latest < std::chrono::duration<double>(auth_timeout).count() + 3.0);
    CHECK(relayed_to_slow == 0); // nothing was relayed to them
    bool counted =
        co_await eventually([&] { return c->stats().auth_failures == silent + dribblers; }, 5s);
    CHECK(counted);
    CHECK(c->pending_a() == 0);
    CHECK(c->pending_b() == 0);
    CHECK(c->connections() == 0);
    auto log = capture.all();
    CHECK(log.find("timed out") != std::string::npos);
    CHECK(log.find("s3cret") == std::string::npos);
    c->close();
    co_await c->wait_closed();
}

} // namespace

TEST_CASE("auth slowloris: a thousand silent clients and dribblers time out, honest pairs relay",
          "[faults]") {
    raise_fd_limit(8192);
    asio::io_context io;
    run(io, slowloris(), 60s);
}
