// Auth verifiers (a token on A, a challenge on B) and transformers with state across chunks, for
// pairs racing on 4 threads; sides that fail authentication are closed unpaired. (See
// support/threads.hpp for how the tests use the pool.)
#include <socket_connector/auth.hpp>
#include <socket_connector/connector.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "support/auth.hpp"
#include "support/net.hpp"
#include "support/threads.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

char key_at(std::uint64_t position) {
    return static_cast<char>((position * 131 + 7) & 0xff);
}

/// XORs each byte with a key that depends on its position in the stream (state across chunks).
struct rolling_xor {
    std::uint64_t position = 0;
    void transform(std::span<const char> in, std::vector<char>& out) {
        for (char c : in)
            out.push_back(static_cast<char>(c ^ key_at(position++)));
    }
    void finish(std::vector<char>&) {}
};

std::vector<char> rolling_xor_of(std::vector<char> data) {
    for (std::size_t i = 0; i < data.size(); ++i)
        data[i] = static_cast<char>(data[i] ^ key_at(i));
    return data;
}

/// Holds the whole stream back and emits it reversed from finish().
struct reversing {
    std::vector<char> held;
    void transform(std::span<const char> in, std::vector<char>&) {
        held.insert(held.end(), in.begin(), in.end());
    }
    void finish(std::vector<char>& out) { out.insert(out.end(), held.rbegin(), held.rend()); }
};

/// The answer line to the challenge on `socket`, right or wrong.
asio::awaitable<std::string> answer(tcp::socket& socket, bool correctly) {
    auto challenge = co_await read_line(socket);
    auto n = static_cast<unsigned long>(socket.local_endpoint().port());
    if (challenge != fmt::format("challenge {}", n))
        throw std::runtime_error("unexpected challenge: " + challenge);
    co_return fmt::format("{}\n", correctly ? n * 3 + 1 : n * 3);
}

struct authed_pair {
    std::uint64_t seen_at_a = 0, seen_at_b = 0;
    std::string error;
};

/// A authenticates with the token, B answers the challenge; then each sends a tagged pattern.
/// A's bytes reach B XOR-ed by position, B's reach A reversed.
asio::awaitable<void> authed_clients(unsigned short port_a, unsigned short port_b,
                                     std::uint64_t seed, std::size_t size, authed_pair& r) {
    try {
        auto a = co_await connect_to(port_a);
        auto b = co_await connect_to(port_b);
        auto hello_a = concat("tok\n", tagged(seed, size));
        auto reply = co_await answer(b, true);
        auto hello_b = concat(reply, tagged(seed + 1, size / 2));
        auto [got_a, got_b] = co_await (trade(a, hello_a) && trade(b, hello_b));
        r.error = got_a.error + got_b.error;
        std::reverse(got_a.got.begin(), got_a.got.end());
        r.seen_at_a = tag_of(got_a.got);
        r.seen_at_b = tag_of(rolling_xor_of(std::move(got_b.got)));
    } catch (const std::exception& e) {
        r.error = e.what();
    }
}

/// A wrong token on A, or a wrong answer on B: the connector must close it unpaired.
asio::awaitable<void> failing_client(unsigned short port, bool side_a, bool& turned_away) {
    try {
        auto s = co_await connect_to(port);
        std::string hello = "not the token\n";
        if (!side_a) hello = co_await answer(s, false);
        co_await send_text(s, hello, false);
        auto end = co_await read_until_closed(s);
        turned_away = end.closed && end.bytes.empty();
    } catch (const std::exception&) {
        turned_away = false;
    }
}

asio::awaitable<void> auth_and_transformers(asio::any_io_executor pool) {
    auto joined = std::make_shared<std::atomic<int>>(0);
    auto log = std::make_shared<counting_log>();
    sc::options o = loopback_options();
    o.logger = counting_logger(log);
    o.timeout = sc::no_timeout;
    o.a.auth = sc::token_verifier("tok");
    o.b.auth = challenge_verifier{};
    o.a.transform = rolling_xor{};
    o.b.transform = reversing{};
    o.before_joining = [joined](sc::connection&) { ++*joined; };
    auto c = co_await sc::server_to_server(pool, std::move(o));
    const std::size_t pairs = 16;
    const std::size_t failing = 8;
    std::vector<authed_pair> results(pairs);
    std::multiset<std::uint64_t> sent_a, sent_b;
    std::vector<asio::awaitable<void>> tasks;
    for (std::size_t i = 0; i < pairs; ++i) {
        std::uint64_t seed = 11000 + 2 * i;
        sent_a.insert(seed);
        sent_b.insert(seed + 1);
        tasks.push_back(authed_clients(c->side_a_port(), c->side_b_port(), seed,
                                       (40u << 10) + 5000 * i, results[i]));
    }
    std::deque<bool> failed(failing, false); // distinct objects, written from different threads
    for (std::size_t i = 0; i < failing; ++i)
        tasks.push_back(failing_client(i % 2 == 0 ? c->side_a_port() : c->side_b_port(), i % 2 == 0,
                                       failed[i]));
    auto all = all_in_parallel(pool, std::move(tasks));
    co_await std::move(all);
    std::multiset<std::uint64_t> seen_a, seen_b;
    for (auto& r : results) {
        INFO(r.error);
        CHECK(r.error.empty());
        seen_a.insert(r.seen_at_a);
        seen_b.insert(r.seen_at_b);
    }
    CHECK(seen_b == sent_a);
    CHECK(seen_a == sent_b);
    for (bool f : failed)
        CHECK(f);
    CHECK(co_await eventually([&] { return c->connections() == 0; }));
    auto s = c->stats();
    CHECK(s.auth_failures == failing);
    CHECK(log->auth_failed.load() == failing);
    CHECK(s.connections_total == pairs);
    CHECK(joined->load() == static_cast<int>(pairs));
    c->close();
    co_await c->wait_closed();
}

} // namespace

TEST_CASE("auth verifiers and transformers work for pairs racing on 4 threads", "[threads]") {
    asio::io_context io(pool_threads);
    run_on_pool(io, auth_and_transformers(io.get_executor()));
}
