// Limits a server operator sets: max_pending, max_connections, idle_timeout and drain().
#include <socket_connector/connector.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <asio/detached.hpp>

#include "support/net.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

/// Relays `size` bytes each way over a fresh pair and checks them.
asio::awaitable<void> relay_checked(sc::connector& c, std::uint64_t seed, std::size_t size) {
    auto a = co_await connect_to(c.side_a_port());
    auto b = co_await connect_to(c.side_b_port());
    auto from_a = pattern(seed, size);
    auto from_b = pattern(seed + 1, size);
    auto [at_a, at_b] = co_await (send_and_receive(a, from_a) && send_and_receive(b, from_b));
    CHECK(checksum(at_b) == checksum(from_a));
    CHECK(checksum(at_a) == checksum(from_b));
}

asio::awaitable<void> max_pending_refuses_the_extra_side() {
    auto ex = co_await asio::this_coro::executor;
    log_capture logs;
    sc::options o = loopback_options();
    o.max_pending = 2;
    o.logger = logs.logger();
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto a1 = co_await connect_to(c->side_a_port());
    auto a2 = co_await connect_to(c->side_a_port());
    CHECK(co_await eventually([&] { return c->pending_a() == 2; }));
    auto a3 = co_await connect_to(c->side_a_port());
    auto end3 = co_await read_until_closed(a3); // refused: closed at once, nothing sent
    CHECK(end3.closed);
    CHECK(end3.bytes.empty());
    CHECK(c->pending_a() == 2);
    CHECK(c->stats().sockets_refused == 1);
    INFO(logs.all());
    CHECK(logs.contains("A: refused 127.0.0.1:"));
    CHECK(logs.contains("2 A sockets already pending (max_pending)"));
    // Side B has its own count, and the waiting As are served in order.
    auto b1 = co_await connect_to(c->side_b_port());
    co_await send_text(a1, "first", false);
    auto at_b1 = co_await read_exactly(b1, 5);
    CHECK(at_b1 == "first");
    CHECK(co_await eventually([&] { return c->pending_a() == 1; }));
    // Room again: a new A is kept.
    auto a4 = co_await connect_to(c->side_a_port());
    CHECK(co_await eventually([&] { return c->pending_a() == 2; }));
    CHECK(c->stats().sockets_refused == 1);
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> max_pending_counts_sides_still_authenticating() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.max_pending = 3;
    o.a.auth = sc::token_verifier("secret");
    o.logger = [](sc::log_level, std::string_view) {};
    auto c = co_await sc::server_to_server(ex, std::move(o));
    std::vector<tcp::socket> silent;
    for (int i = 0; i < 3; ++i)
        silent.push_back(co_await connect_to(c->side_a_port()));
    CHECK(co_await eventually([&] { return c->stats().sockets_created == 3; }));
    auto extra = co_await connect_to(c->side_a_port());
    auto end = co_await read_until_closed(extra);
    CHECK(end.closed);
    CHECK(co_await eventually([&] { return c->stats().sockets_refused == 1; }));
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> max_connections_refuses_until_a_pair_ends() {
    auto ex = co_await asio::this_coro::executor;
    log_capture logs;
    sc::options o = loopback_options();
    o.max_connections = 1;
    o.timeout = sc::no_timeout;
    o.logger = logs.logger();
    auto c = co_await sc::server_to_server(ex, std::move(o));
    tcp::socket a(ex), b(ex);
    co_await form_pair(*c, a, b);
    CHECK(c->connections() == 1);
    auto extra = co_await connect_to(c->side_a_port());
    auto end = co_await read_until_closed(extra);
    CHECK(end.closed);
    CHECK(c->stats().sockets_refused == 1);
    INFO(logs.all());
    CHECK(logs.contains("1 connection open (max_connections)"));
    // The live pair still relays.
    co_await send_text(a, "still here", false);
    auto at_b = co_await read_exactly(b, 10);
    CHECK(at_b == "still here");
    a.close();
    b.close();
    CHECK(co_await eventually([&] { return c->connections() == 0; }));
    co_await relay_checked(*c, 42, 300'000);
    CHECK(c->stats().connections_total == 2);
    c->close();
    co_await c->wait_closed();
}

/// A proxy whose B does not answer at once: As whose B is still being dialed count toward
/// max_connections, so a burst of As cannot open more pairs than the limit.
asio::awaitable<void> max_connections_counts_a_proxys_dials() {
    auto ex = co_await asio::this_coro::executor;
    // A target that does not accept yet, with room in its queue for two connections: the
    // third dial's SYN is dropped, and that dial stays under way (until the SYN is sent again).
    tcp::acceptor target(ex);
    target.open(tcp::v4());
    target.bind({asio::ip::address_v4::loopback(), 0});
    target.listen(1);
    log_capture logs;
    sc::options o = proxy_options(target);
    o.max_connections = 3;
    o.connect_timeout = 20s;
    o.timeout = sc::no_timeout;
    o.logger = logs.logger();
    auto c = co_await sc::server_to_socket(ex, std::move(o));
    std::vector<tcp::socket> as;
    for (int i = 0; i < 3; ++i)
        as.push_back(co_await connect_to(c->side_a_port()));
    CHECK(co_await eventually([&] { return c->connections() == 2 && c->pending_a() == 1; }));
    // Two pairs and one being made: the limit is reached.
    auto extra = co_await connect_to(c->side_a_port());
    bool refused = co_await closed_within(extra, 5s);
    CHECK(refused);
    CHECK(c->stats().sockets_refused == 1);
    INFO(logs.all());
    CHECK(logs.contains("2 connections open and 1 being made (max_connections)"));
    // The target accepts: the third dial completes, and all three pairs relay.
    asio::co_spawn(ex, echo_each(target, 3), asio::detached);
    CHECK(co_await eventually([&] { return c->connections() == 3; }));
    for (std::size_t i = 0; i < as.size(); ++i) {
        auto out = pattern(100 + i, 20000 + i);
        auto back = co_await send_and_receive(as[i], out);
        CHECK(back.size() == out.size());
        CHECK(checksum(back) == checksum(out));
    }
    CHECK(co_await eventually([&] { return c->connections() == 0; }));
    auto s = c->stats();
    CHECK(s.connections_total == 3);
    CHECK(s.sockets_refused == 1);
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> idle_pair_is_closed() {
    auto ex = co_await asio::this_coro::executor;
    log_capture logs;
    sc::options o = loopback_options();
    o.idle_timeout = 300ms;
    o.logger = logs.logger();
    o.verbose = true;
    auto c = co_await sc::server_to_server(ex, std::move(o));
    tcp::socket a(ex), b(ex);
    co_await form_pair(*c, a, b);
    auto idle_from = std::chrono::steady_clock::now();
    auto [end_a, end_b] = co_await (read_until_closed(a) && read_until_closed(b));
    auto idle_for = std::chrono::steady_clock::now() - idle_from;
    CHECK(end_a.closed);
    CHECK(end_b.closed);
    CHECK(idle_for >= 280ms);
    CHECK(idle_for < 5s);
    CHECK(co_await eventually([&] { return c->connections() == 0; }));
    INFO(logs.all());
    CHECK(logs.contains("closed: idle for 300 ms"));
    c->close();
    co_await c->wait_closed();
}

/// Sends one byte every `gap`, `count` times, and reads each back through the relay.
asio::awaitable<void> trickle(tcp::socket& from, tcp::socket& to, int count,
                              std::chrono::milliseconds gap) {
    for (int i = 0; i < count; ++i) {
        co_await pause(gap);
        co_await send_text(from, "x", false);
        auto got = co_await read_exactly(to, 1);
        CHECK(got == "x");
    }
}

asio::awaitable<void> busy_pair_outlives_idle_timeout() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.idle_timeout = 300ms;
    o.logger = [](sc::log_level, std::string_view) {};
    auto c = co_await sc::server_to_server(ex, std::move(o));
    tcp::socket a(ex), b(ex);
    co_await form_pair(*c, a, b);
    // A byte every 100 ms, in alternating directions, for well over the idle timeout.
    for (int round = 0; round < 4; ++round) {
        if (round % 2 == 0)
            co_await trickle(a, b, 2, 100ms);
        else
            co_await trickle(b, a, 2, 100ms);
    }
    CHECK(c->connections() == 1);
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> drain_lets_live_pairs_finish() {
    auto ex = co_await asio::this_coro::executor;
    log_capture logs;
    sc::options o = loopback_options();
    o.logger = logs.logger();
    o.verbose = true;
    auto c = co_await sc::server_to_server(ex, std::move(o));
    tcp::socket a(ex), b(ex);
    co_await form_pair(*c, a, b);
    auto port_a = c->side_a_port();
    auto waiting = co_await connect_to(c->side_b_port()); // pending, never paired
    CHECK(co_await eventually([&] { return c->pending_b() == 1; }));
    c->drain(10s);
    auto pending_end = co_await read_until_closed(waiting);
    CHECK(pending_end.closed);
    // No new sides once draining.
    tcp::socket late(ex);
    auto [connect_ec] =
        co_await late.async_connect({asio::ip::address_v4::loopback(), port_a}, use_tuple);
    CHECK(connect_ec == asio::error::connection_refused);
    // The live pair finishes its transfer, byte for byte, then the connector closes.
    auto from_a = pattern(7, 2'000'000);
    auto from_b = pattern(8, 1'000'000);
    auto [at_a, at_b] = co_await (send_and_receive(a, from_a) && send_and_receive(b, from_b));
    CHECK(checksum(at_b) == checksum(from_a));
    CHECK(checksum(at_a) == checksum(from_b));
    co_await c->wait_closed();
    INFO(logs.all());
    CHECK(logs.contains("drained: every connection has ended"));
}

asio::awaitable<void> drain_closes_what_is_left_at_the_limit() {
    auto ex = co_await asio::this_coro::executor;
    log_capture logs;
    sc::options o = loopback_options();
    o.logger = logs.logger();
    o.verbose = true;
    auto c = co_await sc::server_to_server(ex, std::move(o));
    tcp::socket a(ex), b(ex);
    co_await form_pair(*c, a, b);
    auto start = std::chrono::steady_clock::now();
    c->drain(300ms);
    auto [end_a, end_b] = co_await (read_until_closed(a) && read_until_closed(b));
    auto took = std::chrono::steady_clock::now() - start;
    CHECK(end_a.closed);
    CHECK(end_b.closed);
    CHECK(took >= 280ms);
    CHECK(took < 5s);
    co_await c->wait_closed();
    INFO(logs.all());
    CHECK(logs.contains("the drain time is over: closing 1 connection still open"));
}

asio::awaitable<void> drain_without_pairs_closes_at_once() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.logger = [](sc::log_level, std::string_view) {};
    auto c = co_await sc::server_to_server(ex, std::move(o));
    c->drain(10s);
    co_await c->wait_closed();
    CHECK(c->closed());
}

} // namespace

TEST_CASE("max_pending closes the side past the limit, with a logged reason", "[limits]") {
    asio::io_context io;
    run(io, max_pending_refuses_the_extra_side(), 20s);
}

TEST_CASE("max_pending counts sides that are still authenticating", "[limits]") {
    asio::io_context io;
    run(io, max_pending_counts_sides_still_authenticating(), 20s);
}

TEST_CASE("max_connections refuses new sockets until a pair ends", "[limits]") {
    asio::io_context io;
    run(io, max_connections_refuses_until_a_pair_ends(), 20s);
}

TEST_CASE("max_connections counts the As a proxy is still dialing a B for", "[limits]") {
    asio::io_context io;
    run(io, max_connections_counts_a_proxys_dials(), 30s);
}

TEST_CASE("idle_timeout closes a pair that relays nothing", "[limits]") {
    asio::io_context io;
    run(io, idle_pair_is_closed(), 20s);
}

TEST_CASE("idle_timeout leaves a pair that keeps relaying alone", "[limits]") {
    asio::io_context io;
    run(io, busy_pair_outlives_idle_timeout(), 20s);
}

TEST_CASE("drain stops accepting and lets live pairs finish", "[limits]") {
    asio::io_context io;
    run(io, drain_lets_live_pairs_finish(), 30s);
}

TEST_CASE("drain closes the pairs still live at its limit", "[limits]") {
    asio::io_context io;
    run(io, drain_closes_what_is_left_at_the_limit(), 20s);
}

TEST_CASE("drain with nothing live closes at once", "[limits]") {
    asio::io_context io;
    run(io, drain_without_pairs_closes_at_once(), 20s);
}
