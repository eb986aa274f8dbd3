// A proxy (server_to_socket with multi) whose B cannot be reached, refused or never answering:
// only the A waiting for that B is closed, with the reason logged, and live pairs relay on.
#include <socket_connector/connector.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "support/faults.hpp"
#include "support/net.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

asio::awaitable<void> exchange(tcp::socket& a, tcp::socket& b, std::uint64_t seed) {
    auto from_a = pattern(seed, 1u << 20);
    auto from_b = pattern(seed + 1, (1u << 20) + 5);
    auto [at_a, at_b] = co_await (send_and_receive(a, from_a) && send_and_receive(b, from_b));
    CHECK(checksum(at_b) == checksum(from_a));
    CHECK(checksum(at_a) == checksum(from_b));
}

/// An A that connects, and what became of it.
struct lone_a {
    close_watch watch;
    steady::time_point connected{};
    unsigned short local_port = 0;
};

asio::awaitable<void> connect_and_watch(unsigned short port, lone_a& l) {
    auto a = co_await connect_to(port);
    l.connected = steady::now();
    l.local_port = a.local_endpoint().port();
    co_await watch_until_closed(a, l.watch);
}

/// Whether a logged line contains `word` and names the peer port `port` (as `:PORT`, whole).
bool logged_for(log_capture& capture, std::string_view word, unsigned short port) {
    std::lock_guard lock(capture.mutex);
    auto needle = fmt::format(":{}", port);
    for (auto& line : capture.lines) {
        if (line.find(word) == std::string::npos) continue;
        for (auto at = line.find(needle); at != std::string::npos; at = line.find(needle, at + 1)) {
            auto after = at + needle.size();
            if (after == line.size() || line[after] < '0' || line[after] > '9') return true;
        }
    }
    return false;
}

asio::awaitable<void> multi_b_refused() {
    auto ex = co_await asio::this_coro::executor;
    log_capture capture;
    auto target = std::make_unique<tcp::acceptor>(loopback_acceptor(ex));
    sc::options o = loopback_options();
    o.b.endpoint = loopback(target->local_endpoint().port());
    o.multi = true;
    o.timeout = sc::no_timeout;
    o.connect_timeout = 5s;
    o.logger = capture.logger();
    auto c = co_await sc::server_to_socket(ex, std::move(o));
    // A pair forms while B listens and relays a little.
    auto a1 = co_await connect_to(c->side_a_port());
    auto b1 = co_await target->async_accept(asio::use_awaitable);
    co_await send_text(a1, "first", false);
    auto first = co_await read_exactly(b1, 5);
    CHECK(first == "first");
    // Then B refuses: the next A is closed at once, with the reason logged.
    target.reset();
    lone_a l;
    asio::steady_timer limit(ex, 10s);
    auto outcome = co_await (connect_and_watch(c->side_a_port(), l) || limit.async_wait(use_tuple));
    CHECK(outcome.index() == 0);
    CHECK(l.watch.closed);
    CHECK(l.watch.received == 0);
    CHECK(seconds_between(l.connected, l.watch.at) < 2.0);
    bool logged =
        co_await eventually([&] { return logged_for(capture, "refused", l.local_port); }, 2s);
    INFO(capture.all());
    CHECK(logged); // the reason, naming that A
    bool gone = co_await eventually([&] { return c->pending_a() == 0; });
    CHECK(gone);
    // The first pair is unaffected.
    CHECK(c->connections() == 1);
    co_await exchange(a1, b1, 80);
    bool idle = co_await eventually([&] { return c->connections() == 0; });
    CHECK(idle);
    CHECK(c->stats().connections_total == 1);
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> multi_b_times_out() {
    auto ex = co_await asio::this_coro::executor;
    log_capture capture;
    // A listener with a backlog of one that is accepted by hand.
    tcp::acceptor target(ex);
    target.open(tcp::v4());
    target.bind(loopback(0));
    target.listen(0);
    constexpr auto connect_timeout = 800ms;
    sc::options o = proxy_options(target);
    o.timeout = sc::no_timeout;
    o.connect_timeout = connect_timeout;
    o.logger = capture.logger();
    auto c = co_await sc::server_to_socket(ex, std::move(o));
    auto a1 = co_await connect_to(c->side_a_port());
    auto b1 = co_await target.async_accept(asio::use_awaitable);
    co_await send_text(a1, "first", false);
    auto first = co_await read_exactly(b1, 5);
    CHECK(first == "first");
    // Fill the backlog and never accept: further SYNs are dropped, so connects hang.
    std::vector<tcp::socket> fillers;
    REQUIRE(co_await fill_backlog(target, fillers));
    // The next A waits for its B for connect_timeout, then is closed with the reason logged,
    // while the first pair keeps relaying.
    lone_a l;
    asio::steady_timer limit(ex, 10s);
    auto outcome = co_await ((connect_and_watch(c->side_a_port(), l) && exchange(a1, b1, 90)) ||
                             limit.async_wait(use_tuple));
    CHECK(outcome.index() == 0);
    CHECK(l.watch.closed);
    CHECK(l.watch.received == 0);
    auto waited = seconds_between(l.connected, l.watch.at);
    INFO("A waited " << waited << " s for a B that never answered");
    CHECK(waited >= std::chrono::duration<double>(connect_timeout).count() - 0.02);
    CHECK(waited < std::chrono::duration<double>(connect_timeout).count() + 2.0);
    bool logged =
        co_await eventually([&] { return logged_for(capture, "timed out", l.local_port); }, 2s);
    INFO(capture.all());
    CHECK(logged); // the reason, naming that A
    bool idle = co_await eventually(
        [&] { return c->connections() == 0 && c->pending_a() == 0 && c->pending_b() == 0; });
    CHECK(idle);
    CHECK(c->stats().connections_total == 1);
    c->close();
    co_await c->wait_closed();
}

} // namespace

TEST_CASE("server_to_socket multi: a refused B closes that A only", "[faults]") {
    asio::io_context io;
    run(io, multi_b_refused(), 30s);
}

TEST_CASE("server_to_socket multi: a B that never answers closes that A at connect_timeout",
          "[faults]") {
    asio::io_context io;
    run(io, multi_b_times_out(), 30s);
}
