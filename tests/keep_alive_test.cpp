#include <socket_connector/keep_alive.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <functional>
#include <string>

#include "support/net.hpp"

using namespace test_support;

namespace {

/// The TCP options of one socket as the kernel reports them (-2: getsockopt failed).
struct tcp_options {
    int keepalive = -1;
    int idle = -1;
    int interval = -1;
    int count = -1;
    int nodelay = -1;
};

int get_option(int fd, int level, int name) {
    int value = -1;
    socklen_t length = sizeof value;
    if (::getsockopt(fd, level, name, &value, &length) != 0) return -2;
    return value;
}

tcp_options read_options(int fd) {
    tcp_options o;
    o.keepalive = get_option(fd, SOL_SOCKET, SO_KEEPALIVE);
    o.idle = get_option(fd, IPPROTO_TCP, TCP_KEEPIDLE);
    o.interval = get_option(fd, IPPROTO_TCP, TCP_KEEPINTVL);
    o.count = get_option(fd, IPPROTO_TCP, TCP_KEEPCNT);
    o.nodelay = get_option(fd, IPPROTO_TCP, TCP_NODELAY);
    return o;
}

/// What the before_joining hook saw on the connector's own sockets.
struct seen_options {
    int calls = 0;
    tcp_options a;
    tcp_options b;
};

/// A before_joining hook that reads both sides' options (a plain callback, no coroutine).
std::function<void(sc::connection&)> recorder(seen_options& seen) {
    return [&seen](sc::connection& c) {
        ++seen.calls;
        seen.a = read_options(c.side_a().socket().native_handle());
        seen.b = read_options(c.side_b().socket().native_handle());
    };
}

void check_keep_alive(const tcp_options& o, int idle, int interval, int count) {
    CHECK(o.keepalive == 1);
    CHECK(o.idle == idle);
    CHECK(o.interval == interval);
    CHECK(o.count == count);
    CHECK(o.nodelay == 1);
}

/// Forms one pair on a server_to_server connector made from `o` and relays a byte each way.
asio::awaitable<void> pair_once(sc::options& o, seen_options& seen) {
    auto ex = co_await asio::this_coro::executor;
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto a = co_await connect_to(c->side_a_port());
    auto b = co_await connect_to(c->side_b_port());
    co_await send_text(a, "x", false);
    auto at_b = co_await read_exactly(b, 1);
    CHECK(at_b == "x");
    co_await send_text(b, "y", false);
    auto at_a = co_await read_exactly(a, 1);
    CHECK(at_a == "y");
    CHECK(seen.calls == 1);
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> defaults() {
    seen_options seen;
    sc::options o = loopback_options();
    o.before_joining = recorder(seen);
    co_await pair_once(o, seen);
    {
        INFO("side A");
        check_keep_alive(seen.a, 60, 10, 5);
    }
    {
        INFO("side B");
        check_keep_alive(seen.b, 60, 10, 5);
    }
}

asio::awaitable<void> custom() {
    seen_options seen;
    sc::options o = loopback_options();
    o.a.keepalive = {.idle = 7s, .interval = 3s, .count = 4};
    o.before_joining = recorder(seen);
    co_await pair_once(o, seen);
    {
        INFO("side A");
        check_keep_alive(seen.a, 7, 3, 4);
    }
    {
        INFO("side B keeps the defaults");
        check_keep_alive(seen.b, 60, 10, 5);
    }
}

asio::awaitable<void> disabled() {
    seen_options seen;
    sc::options o = loopback_options();
    o.b.keepalive = sc::keep_alive::disabled();
    o.before_joining = recorder(seen);
    co_await pair_once(o, seen);
    check_keep_alive(seen.a, 60, 10, 5);
    CHECK(seen.b.keepalive == 0);
    CHECK(seen.b.nodelay == 1);
}

asio::awaitable<void> outbound() {
    auto ex = co_await asio::this_coro::executor;
    tcp::acceptor target(ex, {asio::ip::address_v4::loopback(), 0});
    seen_options seen;
    sc::options o = loopback_options();
    o.b.endpoint = target.local_endpoint();
    o.b.keepalive = {.idle = 11s, .interval = 2s, .count = 3};
    o.before_joining = recorder(seen);
    auto c = co_await sc::server_to_socket(ex, std::move(o));
    auto at_target = co_await target.async_accept(asio::use_awaitable);
    auto a = co_await connect_to(c->side_a_port());
    co_await send_text(a, "x", false);
    auto got = co_await read_exactly(at_target, 1);
    CHECK(got == "x");
    REQUIRE(seen.calls == 1);
    {
        INFO("side A (accepted)");
        check_keep_alive(seen.a, 60, 10, 5);
    }
    {
        INFO("side B (dialed)");
        check_keep_alive(seen.b, 11, 2, 3);
    }
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> outbound_disabled() {
    auto ex = co_await asio::this_coro::executor;
    tcp::acceptor target(ex, {asio::ip::address_v4::loopback(), 0});
    seen_options seen;
    sc::options o = loopback_options();
    o.b.endpoint = target.local_endpoint();
    o.b.keepalive = sc::keep_alive::disabled();
    o.before_joining = recorder(seen);
    auto c = co_await sc::server_to_socket(ex, std::move(o));
    auto at_target = co_await target.async_accept(asio::use_awaitable);
    auto a = co_await connect_to(c->side_a_port());
    co_await send_text(a, "x", false);
    auto got = co_await read_exactly(at_target, 1);
    CHECK(got == "x");
    REQUIRE(seen.calls == 1);
    CHECK(seen.b.keepalive == 0);
    CHECK(seen.b.nodelay == 1);
    c->close();
    co_await c->wait_closed();
}

} // namespace

TEST_CASE("keep-alive defaults are 60 s idle, 10 s interval, 5 probes, with TCP_NODELAY",
          "[keepalive]") {
    asio::io_context io;
    run(io, defaults(), 10s);
}

TEST_CASE("a side's custom keep-alive is applied to its sockets only", "[keepalive]") {
    asio::io_context io;
    run(io, custom(), 10s);
}

TEST_CASE("keep_alive::disabled clears SO_KEEPALIVE", "[keepalive]") {
    asio::io_context io;
    run(io, disabled(), 10s);
}

TEST_CASE("keep-alive is applied to the dialed side of server_to_socket", "[keepalive]") {
    asio::io_context io;
    run(io, outbound(), 10s);
}

TEST_CASE("keep_alive::disabled clears SO_KEEPALIVE on a dialed side", "[keepalive]") {
    asio::io_context io;
    run(io, outbound_disabled(), 10s);
}

TEST_CASE("keep_alive defaults and disabled() compare as expected", "[keepalive]") {
    sc::keep_alive k;
    CHECK(k.enabled);
    CHECK(k.idle == 60s);
    CHECK(k.interval == 10s);
    CHECK(k.count == 5);
    CHECK_FALSE(sc::keep_alive::disabled().enabled);
    CHECK(k == sc::keep_alive{});
    CHECK_FALSE(k == sc::keep_alive::disabled());
}
