#include <socket_connector/connector.hpp>

#include <chrono>
#include <string>
#include <system_error>

#include <asio/redirect_error.hpp>
#include <fmt/format.h>

#include "support/net.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr auto grace = 300ms;

/// Loopback options with grace period `timeout`, logging connection events into `capture`.
sc::options logged_options(log_capture& capture, std::chrono::milliseconds timeout) {
    sc::options o = loopback_options();
    o.timeout = timeout;
    o.verbose = true;
    o.logger = capture.logger();
    return o;
}

/// Reads until the peer ends the stream; true for a clean EOF with nothing received.
asio::awaitable<bool> sees_eof(tcp::socket& socket) {
    char byte = 0;
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(&byte, 1), use_tuple);
    co_return ec == asio::error::eof&& n == 0;
}

asio::awaitable<void> closes_after_grace_without_connection() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.timeout = grace;
    auto start = std::chrono::steady_clock::now();
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto port_a = c->side_a_port();
    auto port_b = c->side_b_port();
    CHECK(!c->closed());
    co_await c->wait_closed();
    auto elapsed = std::chrono::steady_clock::now() - start;
    CHECK(c->closed());
    CHECK(elapsed >= grace - 20ms);
    auto ec_a = co_await try_connect(port_a);
    auto ec_b = co_await try_connect(port_b);
    CHECK(ec_a == asio::error::connection_refused);
    CHECK(ec_b == asio::error::connection_refused);
    CHECK(c->stats().sockets_created == 0);
}

asio::awaitable<void> pending_side_closed_at_grace() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.timeout = grace;
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto a = co_await connect_to(c->side_a_port());
    CHECK(co_await eventually([&] { return c->pending_a() == 1; }));
    // A pending side is not a connection: the grace period still ends the connector.
    bool eof = co_await sees_eof(a);
    CHECK(eof);
    co_await c->wait_closed();
    CHECK(c->closed());
    CHECK(c->pending_a() == 0);
}

asio::awaitable<void> live_pair_outlasts_grace() {
    auto ex = co_await asio::this_coro::executor;
    log_capture capture;
    sc::options o = logged_options(capture, grace);
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto port_a = c->side_a_port();
    tcp::socket a(ex);
    tcp::socket b(ex);
    co_await form_pair(*c, a, b);
    CHECK(c->connections() == 1);
    // The grace timer fires while the pair is live (its log line is the observable event).
    CHECK(co_await eventually([&] { return capture.contains("grace"); }, 5s));
    INFO(capture.all());
    CHECK(!c->closed());
    CHECK(c->connections() == 1);
    // The pair still relays after the grace time.
    auto from_a = pattern(1, 100000);
    auto from_b = pattern(2, 70000);
    auto [at_a, at_b] = co_await (send_and_receive(a, from_a) && send_and_receive(b, from_b));
    CHECK(checksum(at_b) == checksum(from_a));
    CHECK(checksum(at_a) == checksum(from_b));
    // Its end is the connector's end.
    co_await c->wait_closed();
    CHECK(c->closed());
    CHECK(c->connections() == 0);
    auto ec = co_await try_connect(port_a);
    CHECK(ec == asio::error::connection_refused);
    CHECK(capture.contains("info closing: the last connection ended after the grace period"));
}

/// A pair that ends before the grace period has passed: the connector closes when it passes, and
/// says so (not that the last connection ended after it).
asio::awaitable<void> pair_ended_before_grace() {
    auto ex = co_await asio::this_coro::executor;
    log_capture capture;
    // Long enough for the pair to form and end before it passes, even under TSan.
    sc::options o = logged_options(capture, 2s);
    auto c = co_await sc::server_to_server(ex, std::move(o));
    {
        tcp::socket a(ex);
        tcp::socket b(ex);
        co_await form_pair(*c, a, b);
    } // both closed: the pair ends
    CHECK(co_await eventually([&] { return c->connections() == 0; }));
    CHECK(!c->closed()); // the grace period has not passed yet
    co_await c->wait_closed();
    INFO(capture.all());
    CHECK(capture.contains("info closing: the grace period has passed with no connection open"));
    CHECK(!capture.contains("after the grace period"));
}

/// close-down messages say what happened in users' words, counting in the singular for one.
asio::awaitable<void> drain_messages() {
    auto ex = co_await asio::this_coro::executor;
    log_capture capture;
    sc::options o = logged_options(capture, sc::no_timeout);
    auto c = co_await sc::server_to_server(ex, std::move(o));
    tcp::socket a(ex);
    tcp::socket b(ex);
    co_await form_pair(*c, a, b);
    c->drain(std::chrono::milliseconds(0));
    co_await c->wait_closed();
    INFO(capture.all());
    CHECK(capture.contains(
        "info closing: asked to stop with no time to drain: closing 1 open connection now"));

    log_capture idle;
    sc::options quiet = logged_options(idle, sc::no_timeout);
    auto d = co_await sc::server_to_server(ex, std::move(quiet));
    d->drain(std::chrono::seconds(5));
    co_await d->wait_closed();
    INFO(idle.all());
    CHECK(idle.contains("info closing: asked to stop, and no connection is open"));
}

asio::awaitable<void> close_closes_everything() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.timeout = sc::no_timeout;
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto port_a = c->side_a_port();
    auto port_b = c->side_b_port();
    tcp::socket a(ex);
    tcp::socket b(ex);
    co_await form_pair(*c, a, b);
    auto lone_a = co_await connect_to(port_a);
    auto lone_a2 = co_await connect_to(port_a);
    CHECK(co_await eventually([&] { return c->pending_a() == 2; }));
    CHECK(c->connections() == 1);
    c->close();
    co_await c->wait_closed();
    CHECK(c->closed());
    CHECK(c->pending_a() == 0);
    CHECK(c->pending_b() == 0);
    CHECK(c->connections() == 0);
    bool lone_eof = co_await sees_eof(lone_a);
    bool lone2_eof = co_await sees_eof(lone_a2);
    bool a_eof = co_await sees_eof(a);
    bool b_eof = co_await sees_eof(b);
    CHECK(lone_eof);
    CHECK(lone2_eof);
    CHECK(a_eof);
    CHECK(b_eof);
    auto ec_a = co_await try_connect(port_a);
    auto ec_b = co_await try_connect(port_b);
    CHECK(ec_a == asio::error::connection_refused);
    CHECK(ec_b == asio::error::connection_refused);
}

asio::awaitable<void> close_with_pending_b() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto b = co_await connect_to(c->side_b_port());
    CHECK(co_await eventually([&] { return c->pending_b() == 1; }));
    c->close();
    co_await c->wait_closed();
    CHECK(c->closed());
    CHECK(c->pending_b() == 0);
    bool eof = co_await sees_eof(b);
    CHECK(eof);
}

asio::awaitable<void> no_timeout_stays_open() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.timeout = sc::no_timeout;
    auto c = co_await sc::server_to_server(ex, std::move(o));
    // Longer than a short grace period would be (the scenario, not a synchronisation).
    co_await pause(3 * grace);
    CHECK(!c->closed());
    // Still serving.
    tcp::socket a(ex);
    tcp::socket b(ex);
    co_await form_pair(*c, a, b);
    CHECK(c->stats().connections_total == 1);
    c->close();
    co_await c->wait_closed();
    CHECK(c->closed());
}

asio::awaitable<void> connection_stream_in_order() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto a1 = co_await connect_to(c->side_a_port());
    CHECK(co_await eventually([&] { return c->pending_a() == 1; }));
    auto a2 = co_await connect_to(c->side_a_port());
    CHECK(co_await eventually([&] { return c->pending_a() == 2; }));
    auto b1 = co_await connect_to(c->side_b_port());
    CHECK(co_await eventually([&] { return c->connections() == 1; }));
    auto b2 = co_await connect_to(c->side_b_port());
    CHECK(co_await eventually([&] { return c->connections() == 2; }));

    auto first = co_await c->next_connection();
    REQUIRE(first);
    CHECK(first->id() == 1);
    CHECK(first->side_a().remote() == fmt::format("127.0.0.1:{}", a1.local_endpoint().port()));
    CHECK(first->side_b().remote() == fmt::format("127.0.0.1:{}", b1.local_endpoint().port()));
    CHECK(first->side_a().name() == 'A');
    CHECK(first->side_b().name() == 'B');
    auto second = co_await c->next_connection();
    REQUIRE(second);
    CHECK(second->id() == 2);
    CHECK(second->side_a().remote() == fmt::format("127.0.0.1:{}", a2.local_endpoint().port()));
    CHECK(second->side_b().remote() == fmt::format("127.0.0.1:{}", b2.local_endpoint().port()));

    c->close();
    co_await c->wait_closed();
    auto after = co_await c->next_connection();
    CHECK(after == nullptr);
    CHECK(first->closed());
    CHECK(second->closed());
}

asio::awaitable<void> close_soon(sc::connector& c) {
    co_await pause(50ms); // let next_connection() start waiting first
    c.close();
}

asio::awaitable<void> waiting_stream_ends_on_close() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto next = co_await (c->next_connection() && close_soon(*c));
    CHECK(next == nullptr);
    co_await c->wait_closed();
    CHECK(c->closed());
}

asio::awaitable<void> counts_follow_sides() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    auto c = co_await sc::server_to_server(ex, std::move(o));
    CHECK(c->pending_a() == 0);
    CHECK(c->pending_b() == 0);
    CHECK(c->connections() == 0);
    auto a1 = co_await connect_to(c->side_a_port());
    auto a2 = co_await connect_to(c->side_a_port());
    CHECK(co_await eventually([&] { return c->pending_a() == 2; }));
    CHECK(c->pending_b() == 0);
    auto b1 = co_await connect_to(c->side_b_port());
    CHECK(co_await eventually([&] { return c->connections() == 1; }));
    CHECK(c->pending_a() == 1);
    CHECK(c->pending_b() == 0);
    auto b2 = co_await connect_to(c->side_b_port());
    CHECK(co_await eventually([&] { return c->connections() == 2; }));
    CHECK(c->pending_a() == 0);
    auto b3 = co_await connect_to(c->side_b_port());
    CHECK(co_await eventually([&] { return c->pending_b() == 1; }));
    CHECK(c->connections() == 2);
    b3.close();
    CHECK(co_await eventually([&] { return c->pending_b() == 0; }));
    // The first pair ends (both sides finish their streams): one connection left.
    co_await send_text(a1, "");
    co_await send_text(b1, "");
    auto rest_a = co_await read_to_eof(a1);
    auto rest_b = co_await read_to_eof(b1);
    CHECK(rest_a.empty());
    CHECK(rest_b.empty());
    CHECK(co_await eventually([&] { return c->connections() == 1; }));
    CHECK(c->stats().connections_total == 2);
    CHECK(!c->closed());
    c->close();
    co_await c->wait_closed();
    CHECK(c->connections() == 0);
}

/// A listening socket on 127.0.0.1 that holds its port.
tcp::acceptor listener(asio::any_io_executor ex) {
    return tcp::acceptor(ex, loopback(0));
}

/// A start-up failure throws the system's code (the default token); its context (the step, the
/// side, the endpoint) is in the connector's log, at error level.
asio::awaitable<void> bind_in_use_throws(char side) {
    auto ex = co_await asio::this_coro::executor;
    auto taken = listener(ex);
    auto port = taken.local_endpoint().port();
    sc::options o = loopback_options();
    (side == 'A' ? o.a : o.b).endpoint = loopback(port);
    log_capture log;
    o.logger = log.logger();
    std::error_code code;
    try {
        auto c = co_await sc::server_to_server(ex, std::move(o));
        FAIL_CHECK("the factory succeeded on a port in use");
        c->close();
    } catch (const std::system_error& e) {
        code = e.code();
    }
    INFO(log.all());
    CHECK(code == asio::error::address_in_use);
    CHECK(log.contains(fmt::format("error start-up failed: bind {} to 127.0.0.1:{}: {}", side, port,
                                   code.message())));
}

asio::awaitable<void> bind_in_use_error_code() {
    auto ex = co_await asio::this_coro::executor;
    auto taken = listener(ex);
    sc::options o = loopback_options();
    o.a.endpoint = loopback(taken.local_endpoint().port());
    std::error_code ec;
    auto c = co_await sc::server_to_server(ex, std::move(o),
                                           asio::redirect_error(asio::use_awaitable, ec));
    CHECK(c == nullptr);
    CHECK(ec == asio::error::address_in_use);
    // And success clears it.
    sc::options fine = loopback_options();
    std::error_code ok = asio::error::address_in_use;
    auto c2 = co_await sc::server_to_server(ex, std::move(fine),
                                            asio::redirect_error(asio::use_awaitable, ok));
    REQUIRE(c2);
    CHECK(!ok);
    c2->close();
    co_await c2->wait_closed();
}

asio::awaitable<void> connect_refused_throws() {
    auto ex = co_await asio::this_coro::executor;
    auto reserved = refusing(ex, loopback(0));
    auto port = reserved.local_endpoint().port();
    sc::options o = loopback_options();
    o.a.endpoint = loopback(port);
    log_capture log;
    o.logger = log.logger();
    std::error_code code;
    try {
        auto c = co_await sc::socket_to_server(ex, std::move(o));
        FAIL_CHECK("the factory succeeded on a refused port");
        c->close();
    } catch (const std::system_error& e) {
        code = e.code();
    }
    INFO(log.all());
    CHECK(code == asio::error::connection_refused);
    CHECK(log.contains(
        fmt::format("error start-up failed: connect A to 127.0.0.1:{}: {}", port, code.message())));
}

asio::awaitable<void> unresolvable_host_throws() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.a.host = "no-such-host.invalid";
    o.a.port = "1";
    log_capture log;
    o.logger = log.logger();
    bool threw = false;
    try {
        auto c = co_await sc::socket_to_server(ex, std::move(o));
        FAIL_CHECK("the factory succeeded on an unresolvable host");
        c->close();
    } catch (const std::system_error&) {
        threw = true;
    }
    INFO(log.all());
    CHECK(threw);
    CHECK(log.contains("error start-up failed: resolve A no-such-host.invalid:1: "));
}

} // namespace

TEST_CASE("with no connection the connector closes after the grace timeout", "[lifecycle]") {
    asio::io_context io;
    run(io, closes_after_grace_without_connection(), 10s);
}

TEST_CASE("a side still pending at the grace timeout is closed with the connector", "[lifecycle]") {
    asio::io_context io;
    run(io, pending_side_closed_at_grace(), 10s);
}

TEST_CASE("a pair live at the grace timeout keeps the connector open until it ends",
          "[lifecycle]") {
    asio::io_context io;
    run(io, live_pair_outlasts_grace(), 15s);
}

TEST_CASE("a pair that ended before the grace period: closed when it passes, said so",
          "[lifecycle]") {
    asio::io_context io;
    run(io, pair_ended_before_grace(), 15s);
}

TEST_CASE("drain() logs what it does in users' words", "[lifecycle]") {
    asio::io_context io;
    run(io, drain_messages(), 15s);
}

TEST_CASE("close() closes pending sides and live connections and completes wait_closed",
          "[lifecycle]") {
    asio::io_context io;
    run(io, close_closes_everything(), 10s);
}

TEST_CASE("close() closes a pending B", "[lifecycle]") {
    asio::io_context io;
    run(io, close_with_pending_b(), 10s);
}

TEST_CASE("no_timeout keeps the connector open until close()", "[lifecycle]") {
    asio::io_context io;
    run(io, no_timeout_stays_open(), 10s);
}

TEST_CASE("next_connection yields connections in the order they form, then null after close",
          "[lifecycle]") {
    asio::io_context io;
    run(io, connection_stream_in_order(), 10s);
}

TEST_CASE("a next_connection waiting when the connector closes yields null", "[lifecycle]") {
    asio::io_context io;
    run(io, waiting_stream_ends_on_close(), 10s);
}

TEST_CASE("pending and connection counts follow the sides", "[lifecycle]") {
    asio::io_context io;
    run(io, counts_follow_sides(), 10s);
}

TEST_CASE("binding A to a port in use throws a system_error naming side, endpoint and reason",
          "[lifecycle]") {
    asio::io_context io;
    run(io, bind_in_use_throws('A'), 10s);
}

TEST_CASE("binding B to a port in use throws a system_error naming side, endpoint and reason",
          "[lifecycle]") {
    asio::io_context io;
    run(io, bind_in_use_throws('B'), 10s);
}

TEST_CASE("the error_code factory returns null and sets the code when binding fails",
          "[lifecycle]") {
    asio::io_context io;
    run(io, bind_in_use_error_code(), 10s);
}

TEST_CASE("socket_to_server to a refused port throws naming the connect", "[lifecycle]") {
    asio::io_context io;
    run(io, connect_refused_throws(), 15s);
}

TEST_CASE("an unresolvable host makes the factory throw a resolve error", "[lifecycle]") {
    asio::io_context io;
    run(io, unresolvable_host_throws(), 20s);
}
