// The accept loop takes every connection waiting in the backlog in one turn (up to a bound),
// without a trip through the event loop for each: a burst is served whole and byte for byte,
// and the limits hold within a turn.
#include <socket_connector/connector.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "support/net.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

/// `count` As connected to `port`, each with its request (kept in `sent`) sent and its stream
/// ended, all before the proxy can accept any of them: the calls block this thread, which
/// runs the proxy too.
struct burst {
    burst(asio::any_io_executor ex, unsigned short port, std::size_t count, std::uint64_t seed) {
        for (std::size_t i = 0; i < count; ++i) {
            sent.push_back(pattern(seed + i, 100 + 37 * i));
            as.push_back(connect_and_send_before_accept(ex, port, sent.back(), true));
        }
    }
    std::vector<tcp::socket> as;
    std::vector<std::vector<char>> sent;
};

/// What one A of a burst got back: its echo (checked), or a refusal.
struct outcome {
    bool echoed = false;
    bool refused = false;
};

asio::awaitable<void> read_outcome(tcp::socket& a, const std::vector<char>& sent, outcome& out) {
    auto got = co_await read_until_closed(a);
    out.refused = got.closed && got.bytes.empty();
    out.echoed = got.bytes.size() == sent.size() && checksum(got.bytes) == checksum(sent);
}

/// Reads what each A of `b` gets back, all at once.
asio::awaitable<std::vector<outcome>> read_outcomes(burst& b) {
    auto ex = co_await asio::this_coro::executor;
    std::vector<outcome> outcomes(b.as.size());
    std::size_t finished = 0;
    for (std::size_t i = 0; i < b.as.size(); ++i)
        asio::co_spawn(ex, read_outcome(b.as[i], b.sent[i], outcomes[i]),
                       [&finished](std::exception_ptr) { ++finished; });
    CHECK(co_await eventually([&] { return finished == b.as.size(); }, 20s));
    co_return outcomes;
}

/// 40 As queued in the backlog before the proxy runs: every one is paired with its own B and
/// echoed byte for byte.
asio::awaitable<void> a_burst_is_served_whole() {
    auto ex = co_await asio::this_coro::executor;
    constexpr std::size_t count = 40;
    tcp::acceptor target(ex, {asio::ip::address_v4::loopback(), 0});
    asio::co_spawn(ex, echo_each(target, count), asio::detached);
    log_capture logs;
    sc::options o = proxy_options(target);
    o.logger = logs.logger();
    auto c = co_await sc::server_to_socket(ex, std::move(o));
    burst as(ex, c->side_a_port(), count, 500);
    auto outcomes = co_await read_outcomes(as);
    std::size_t echoed = 0;
    for (auto& r : outcomes)
        echoed += r.echoed ? 1 : 0;
    CHECK(echoed == count);
    CHECK(co_await eventually([&] { return c->connections() == 0; }));
    auto s = c->stats();
    CHECK(s.connections_total == count);
    CHECK(s.sockets_created == 2 * count);
    CHECK(s.sockets_refused == 0);
    std::uint64_t bytes = 0;
    for (auto& request : as.sent)
        bytes += request.size();
    CHECK(s.bytes_a_to_b == bytes);
    CHECK(s.bytes_b_to_a == bytes);
    // Emptying the backlog ends with an accept that finds none: no failure to report.
    INFO(logs.all());
    CHECK_FALSE(logs.contains("warning"));
    c->close();
    co_await c->wait_closed();
}

/// 20 As queued before the proxy runs, with max_connections 8: the loop takes them all in one
/// turn, and exactly 8 are paired while the other 12 are refused (none of the 8 can end within
/// the turn to make room).
asio::awaitable<void> a_burst_respects_max_connections() {
    auto ex = co_await asio::this_coro::executor;
    constexpr std::size_t count = 20;
    constexpr std::size_t limit = 8;
    tcp::acceptor target(ex, {asio::ip::address_v4::loopback(), 0});
    asio::co_spawn(ex, echo_each(target, limit), asio::detached);
    log_capture logs;
    sc::options o = proxy_options(target);
    o.max_connections = limit;
    o.logger = logs.logger();
    auto c = co_await sc::server_to_socket(ex, std::move(o));
    burst as(ex, c->side_a_port(), count, 700);
    auto outcomes = co_await read_outcomes(as);
    std::size_t echoed = 0;
    std::size_t refused = 0;
    for (std::size_t i = 0; i < count; ++i) {
        INFO("A " << i);
        CHECK(outcomes[i].echoed != outcomes[i].refused);
        // The backlog is first in, first out: the first `limit` As are the ones served.
        CHECK(outcomes[i].echoed == (i < limit));
        echoed += outcomes[i].echoed ? 1 : 0;
        refused += outcomes[i].refused ? 1 : 0;
    }
    CHECK(echoed == limit);
    CHECK(refused == count - limit);
    CHECK(co_await eventually([&] { return c->connections() == 0; }));
    auto s = c->stats();
    CHECK(s.connections_total == limit);
    CHECK(s.sockets_refused == count - limit);
    INFO(logs.all());
    CHECK(logs.contains("(max_connections)"));
    c->close();
    co_await c->wait_closed();
}

} // namespace

TEST_CASE("a proxy serves a burst of As waiting in its backlog, each byte for byte", "[accept]") {
    asio::io_context io;
    run(io, a_burst_is_served_whole(), 60s);
}

TEST_CASE("a burst of As taken in one turn still meets max_connections", "[accept]") {
    asio::io_context io;
    run(io, a_burst_respects_max_connections(), 60s);
}
