#include <socket_connector/connector.hpp>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <asio/detached.hpp>

#include "support/net.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

/// A server on 127.0.0.1 that the connector dials, recording what each connection sent it.
struct target {
    enum class kind {
        echo,            // sends back what it reads; its FIN follows the peer's
        exchange,        // sends `reply` (then FIN) while reading to the peer's FIN
        reply_after_eof, // reads to the peer's FIN, then sends `reply` (then FIN)
    };

    target(asio::any_io_executor ex, kind k, std::vector<char> r = {},
           tcp::endpoint at = loopback(0))
        : acceptor(ex, at)
        , mode(k)
        , reply(std::move(r)) {}

    unsigned short port() const { return acceptor.local_endpoint().port(); }

    tcp::acceptor acceptor;
    kind mode;
    std::vector<char> reply;
    int accepted = 0;
    int finished = 0;
    std::vector<std::vector<char>> received; // per connection, in accept order
};

asio::awaitable<void> session(std::shared_ptr<target> t, tcp::socket socket, std::size_t index) {
    std::vector<char> got;
    switch (t->mode) {
    case target::kind::echo:
        got = co_await echo(socket);
        break;
    case target::kind::exchange:
        got = co_await send_and_receive(socket, t->reply);
        break;
    case target::kind::reply_after_eof:
        got = co_await read_to_eof(socket);
        co_await send_all(socket, t->reply);
        break;
    }
    t->received[index] = std::move(got);
    ++t->finished;
}

asio::awaitable<void> serve(std::shared_ptr<target> t) {
    for (;;) {
        auto [ec, socket] = co_await t->acceptor.async_accept(use_tuple);
        if (ec) co_return;
        ++t->accepted;
        t->received.emplace_back();
        asio::co_spawn(t->acceptor.get_executor(),
                       session(t, std::move(socket), t->received.size() - 1), asio::detached);
    }
}

std::shared_ptr<target> start_target(asio::any_io_executor ex, target::kind k,
                                     std::vector<char> reply = {}, tcp::endpoint at = loopback(0)) {
    auto t = std::make_shared<target>(ex, k, std::move(reply), at);
    asio::co_spawn(ex, serve(t), asio::detached);
    return t;
}

/// True when a client connecting to `port` is refused, or is accepted and then closed (EOF or
/// reset) without receiving anything; false when it is kept open for `limit`.
asio::awaitable<bool> turned_away(unsigned short port, std::chrono::milliseconds limit = 2s) {
    auto ex = co_await asio::this_coro::executor;
    tcp::socket socket(ex);
    auto [connect_ec] = co_await socket.async_connect(loopback(port), use_tuple);
    if (connect_ec) co_return true;
    co_return co_await closed_within(socket, limit);
}

asio::awaitable<void> server_to_socket_single() {
    auto ex = co_await asio::this_coro::executor;
    auto to_a = pattern(20, (1u << 20) + 3);
    auto t = start_target(ex, target::kind::exchange, to_a);
    sc::options o = loopback_options();
    o.b.endpoint = loopback(t->port());
    auto c = co_await sc::server_to_socket(ex, std::move(o));
    // B is dialed up front.
    CHECK(c->stats().sockets_created == 1);
    CHECK(co_await eventually([&] { return t->accepted == 1; }));
    CHECK(c->side_a_port() != 0);
    CHECK(c->side_b_port() == 0);
    CHECK(c->connections() == 0);

    auto a = co_await connect_to(c->side_a_port());
    CHECK(co_await eventually([&] { return c->connections() == 1; }));
    CHECK(c->stats().sockets_created == 2);
    // Only the first A is served.
    bool second_turned_away = co_await turned_away(c->side_a_port());
    CHECK(second_turned_away);

    auto to_b = pattern(21, (3u << 20) + 1);
    auto at_a = co_await send_and_receive(a, to_b);
    CHECK(at_a.size() == to_a.size());
    CHECK(checksum(at_a) == checksum(to_a));
    CHECK(co_await eventually([&] { return t->finished == 1; }));
    REQUIRE(t->received.size() == 1);
    CHECK(t->received[0].size() == to_b.size());
    CHECK(checksum(t->received[0]) == checksum(to_b));
    // With its only pair over, the connector closes by itself (long before the 30 s grace).
    co_await c->wait_closed();
    CHECK(c->closed());
    CHECK(t->accepted == 1);
    auto s = c->stats();
    CHECK(s.bytes_a_to_b == to_b.size());
    CHECK(s.bytes_b_to_a == to_a.size());
    CHECK(s.connections_total == 1);
}

asio::awaitable<void> one_client(unsigned short port, std::uint64_t seed, std::size_t size,
                                 int& ok) {
    auto a = co_await connect_to(port);
    auto out = pattern(seed, size);
    auto back = co_await send_and_receive(a, out);
    CHECK(back.size() == out.size());
    CHECK(checksum(back) == checksum(out));
    if (back == out) ++ok;
}

asio::awaitable<void> server_to_socket_multi() {
    auto ex = co_await asio::this_coro::executor;
    auto t = start_target(ex, target::kind::echo);
    sc::options o = loopback_options();
    o.b.endpoint = loopback(t->port());
    o.multi = true;
    auto c = co_await sc::server_to_socket(ex, std::move(o));
    // With multi, B is dialed per A, not up front.
    CHECK(c->stats().sockets_created == 0);
    auto port = c->side_a_port();
    int ok = 0;
    co_await (one_client(port, 60, (512u << 10) + 1, ok) &&
              one_client(port, 61, (768u << 10) + 2, ok) &&
              one_client(port, 62, (1u << 20) + 3, ok));
    CHECK(ok == 3);
    CHECK(co_await eventually([&] { return t->finished == 3; }));
    CHECK(t->accepted == 3);
    // The target saw each A's own pattern on its own connection.
    std::vector<std::uint64_t> seen;
    for (auto& r : t->received)
        seen.push_back(checksum(r));
    std::vector<std::uint64_t> sent = {checksum(pattern(60, (512u << 10) + 1)),
                                       checksum(pattern(61, (768u << 10) + 2)),
                                       checksum(pattern(62, (1u << 20) + 3))};
    std::sort(seen.begin(), seen.end());
    std::sort(sent.begin(), sent.end());
    CHECK(seen == sent);
    CHECK(co_await eventually([&] { return c->connections() == 0; }));
    auto s = c->stats();
    CHECK(s.connections_total == 3);
    CHECK(s.sockets_created == 6);
    // Still serving after its pairs ended.
    CHECK(!c->closed());
    int again = 0;
    co_await one_client(port, 63, 1000, again);
    CHECK(again == 1);
    CHECK(t->accepted == 4);
    c->close();
    co_await c->wait_closed();
}

/// Server-speaks-first protocols (SMTP, SSH, a database greeting): with multi, B's first bytes
/// must reach A although A has sent nothing and B was connected an instant before.
asio::awaitable<void> server_to_socket_multi_b_speaks_first() {
    auto ex = co_await asio::this_coro::executor;
    tcp::acceptor target(ex, loopback(0));
    sc::options o = proxy_options(target);
    auto c = co_await sc::server_to_socket(ex, std::move(o));
    const std::size_t sizes[] = {12, 4096, (256u << 10) + 7};
    for (std::size_t i = 0; i < 3; ++i) {
        auto a = co_await connect_to(c->side_a_port());
        auto b = co_await target.async_accept(asio::use_awaitable);
        auto banner = pattern(70 + i, sizes[i]);
        co_await send_all(b, banner, false);
        auto greeted = co_await read_exactly(a, banner.size());
        CHECK(checksum(greeted) == checksum(banner));
        // Then A answers and each side ends its stream.
        auto answer = pattern(80 + i, 1000 + i);
        co_await send_all(a, answer);
        auto heard = co_await read_to_eof(b);
        CHECK(checksum(heard) == checksum(answer));
        b.shutdown(tcp::socket::shutdown_send);
        auto rest = co_await read_to_eof(a);
        CHECK(rest.empty());
    }
    CHECK(co_await eventually([&] { return c->connections() == 0; }));
    CHECK(c->stats().connections_total == 3);
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> server_to_socket_multi_refused() {
    auto ex = co_await asio::this_coro::executor;
    auto reserved = refusing(ex, loopback(0));
    log_capture capture;
    sc::options o = loopback_options();
    o.b.endpoint = loopback(reserved.local_endpoint().port());
    o.multi = true;
    o.logger = capture.logger();
    auto c = co_await sc::server_to_socket(ex, std::move(o));
    for (int i = 1; i <= 2; ++i) {
        auto a = co_await connect_to(c->side_a_port());
        co_await send_text(a, "hello", false);
        auto got = co_await read_until_closed(a);
        CHECK(got.closed);
        CHECK(got.bytes.empty());
        auto warnings = [&] {
            std::lock_guard lock(capture.mutex);
            return std::count_if(capture.lines.begin(), capture.lines.end(), [](auto& line) {
                return line.starts_with("warning") && line.find("connect B") != std::string::npos;
            });
        };
        CHECK(co_await eventually([&] { return warnings() == i; }));
        INFO(capture.all());
        CHECK(!c->closed());
    }
    auto s = c->stats();
    CHECK(s.sockets_created == 2);
    CHECK(s.connections_total == 0);
    CHECK(c->pending_a() == 0);
    CHECK(c->connections() == 0);
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> socket_to_server_relays() {
    auto ex = co_await asio::this_coro::executor;
    auto to_b = pattern(30, (1u << 20) + 11);
    auto t = start_target(ex, target::kind::exchange, to_b);
    sc::options o = loopback_options();
    o.a.endpoint = loopback(t->port());
    auto c = co_await sc::socket_to_server(ex, std::move(o));
    // A is dialed up front.
    CHECK(c->stats().sockets_created == 1);
    CHECK(co_await eventually([&] { return t->accepted == 1; }));
    CHECK(c->side_a_port() == 0);
    CHECK(c->side_b_port() != 0);

    auto b = co_await connect_to(c->side_b_port());
    auto to_a = pattern(31, (2u << 20) + 5);
    auto at_b = co_await send_and_receive(b, to_a);
    CHECK(at_b.size() == to_b.size());
    CHECK(checksum(at_b) == checksum(to_b));
    CHECK(co_await eventually([&] { return t->finished == 1; }));
    REQUIRE(t->received.size() == 1);
    CHECK(t->received[0].size() == to_a.size());
    CHECK(checksum(t->received[0]) == checksum(to_a));
    co_await c->wait_closed();
    CHECK(c->closed());
    auto s = c->stats();
    CHECK(s.sockets_created == 2);
    CHECK(s.bytes_a_to_b == to_b.size());
    CHECK(s.bytes_b_to_a == to_a.size());
}

asio::awaitable<void> socket_to_socket_relays() {
    auto ex = co_await asio::this_coro::executor;
    auto from_a = pattern(40, (1u << 20) + 7);
    auto from_b = pattern(41, (2u << 20) + 9);
    // A sends and ends its stream first; B answers only after it has seen A's end, so A's FIN
    // must be relayed as a half-close with the way back still open.
    auto ta = start_target(ex, target::kind::exchange, from_a);
    auto tb = start_target(ex, target::kind::reply_after_eof, from_b);
    sc::options o = loopback_options();
    o.a.endpoint = loopback(ta->port());
    o.b.endpoint = loopback(tb->port());
    auto c = co_await sc::socket_to_socket(ex, std::move(o));
    CHECK(c->stats().sockets_created == 2);
    CHECK(c->side_a_port() == 0);
    CHECK(c->side_b_port() == 0);
    CHECK(co_await eventually([&] { return ta->finished == 1 && tb->finished == 1; }));
    REQUIRE(ta->received.size() == 1);
    REQUIRE(tb->received.size() == 1);
    CHECK(tb->received[0].size() == from_a.size());
    CHECK(checksum(tb->received[0]) == checksum(from_a));
    CHECK(ta->received[0].size() == from_b.size());
    CHECK(checksum(ta->received[0]) == checksum(from_b));
    co_await c->wait_closed();
    CHECK(c->closed());
    auto s = c->stats();
    CHECK(s.bytes_a_to_b == from_a.size());
    CHECK(s.bytes_b_to_a == from_b.size());
    CHECK(s.connections_total == 1);
    CHECK(ta->accepted == 1);
    CHECK(tb->accepted == 1);
}

asio::awaitable<tcp::socket> connect_v6(unsigned short port) {
    tcp::socket socket(co_await asio::this_coro::executor);
    co_await socket.async_connect({asio::ip::address_v6::loopback(), port}, asio::use_awaitable);
    co_return socket;
}

asio::awaitable<void> server_to_server_ipv6() {
    auto ex = co_await asio::this_coro::executor;
    {
        std::error_code ec;
        tcp::acceptor probe(ex);
        probe.open(tcp::v6(), ec);
        if (!ec) probe.bind({asio::ip::address_v6::loopback(), 0}, ec);
        if (ec) {
            WARN("skipped: cannot bind [::1]: " << ec.message());
            co_return;
        }
    }
    sc::options o;
    o.a.endpoint = {asio::ip::address_v6::loopback(), 0};
    o.b.endpoint = {asio::ip::address_v6::loopback(), 0};
    auto c = co_await sc::server_to_server(ex, std::move(o));
    CHECK(c->side_a_endpoint().address().is_v6());
    CHECK(c->side_b_endpoint().address().is_v6());
    auto a = co_await connect_v6(c->side_a_port());
    auto b = co_await connect_v6(c->side_b_port());
    auto from_a = pattern(50, (1u << 20) + 1);
    auto from_b = pattern(51, (512u << 10) + 2);
    auto [at_a, at_b] = co_await (send_and_receive(a, from_a) && send_and_receive(b, from_b));
    CHECK(at_b.size() == from_a.size());
    CHECK(checksum(at_b) == checksum(from_a));
    CHECK(at_a.size() == from_b.size());
    CHECK(checksum(at_a) == checksum(from_b));
    auto s = c->stats();
    REQUIRE(s.remote_addresses.size() == 1);
    CHECK(s.remote_addresses[0] == "::1");
    c->close();
    co_await c->wait_closed();
}

/// A B named by a host with several addresses: a proxy tries them in turn for each A. The empty
/// host stands for the loopback addresses (getaddrinfo(3) with no node name and no AI_PASSIVE),
/// here ::1 and 127.0.0.1. The last of them listens; every other one is bound at the same port
/// without listening, so that a connect there is refused.
asio::awaitable<void> multi_tries_each_address() {
    auto ex = co_await asio::this_coro::executor;
    tcp::resolver resolver(ex);
    // Named: g++ 12 may destroy a temporary of a co_await expression twice (see the
    // connector's `resolve`).
    auto results = co_await resolver.async_resolve("", "1", asio::use_awaitable);
    std::vector<tcp::endpoint> order(results.begin(), results.end()); // as the connector has it
    if (order.size() < 2) {
        WARN("only one loopback address here: nothing to fall back to");
        co_return;
    }
    auto t = start_target(ex, target::kind::echo, {}, {order.back().address(), 0});
    std::vector<tcp::acceptor> others;
    for (std::size_t i = 0; i + 1 < order.size(); ++i)
        others.push_back(refusing(ex, {order[i].address(), t->port()}));
    log_capture capture;
    sc::options o = loopback_options();
    o.b.port = std::to_string(t->port());
    o.multi = true;
    o.logger = capture.logger();
    auto c = co_await sc::server_to_socket(ex, std::move(o));
    int ok = 0;
    for (std::uint64_t i = 0; i < 3; ++i)
        co_await one_client(c->side_a_port(), 80 + i, 70000, ok);
    INFO(capture.all());
    CHECK(ok == 3);
    CHECK(t->accepted == 3);
    CHECK(co_await eventually([&] { return t->finished == 3; }));
    auto s = c->stats();
    CHECK(s.connections_total == 3);
    CHECK(s.sockets_created == 6);
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> host_and_port_strings() {
    auto ex = co_await asio::this_coro::executor;
    auto t = start_target(ex, target::kind::echo);
    sc::options o;
    o.a.host = "127.0.0.1";
    o.a.port = "0";
    o.b.host = "127.0.0.1";
    o.b.port = t->port(); // a number, as well as a string (A's)
    o.multi = true;
    auto c = co_await sc::server_to_socket(ex, std::move(o));
    CHECK(c->side_a_endpoint().address() == asio::ip::address_v4::loopback());
    CHECK(c->side_a_port() != 0);
    int ok = 0;
    co_await one_client(c->side_a_port(), 70, 100000, ok);
    CHECK(ok == 1);
    CHECK(t->accepted == 1);
    c->close();
    co_await c->wait_closed();
}

} // namespace

TEST_CASE("sides given as host and port strings are resolved", "[modes]") {
    asio::io_context io;
    run(io, host_and_port_strings(), 30s);
}

TEST_CASE("server_to_socket with multi tries each address of B's host in turn", "[modes]") {
    asio::io_context io;
    run(io, multi_tries_each_address(), 30s);
}

TEST_CASE("server_to_socket dials B up front and serves only the first A", "[modes]") {
    asio::io_context io;
    run(io, server_to_socket_single(), 30s);
}

TEST_CASE("server_to_socket with multi dials one B per A", "[modes]") {
    asio::io_context io;
    run(io, server_to_socket_multi(), 30s);
}

TEST_CASE("server_to_socket with multi relays a B that speaks first, before A sends anything",
          "[modes]") {
    asio::io_context io;
    run(io, server_to_socket_multi_b_speaks_first(), 30s);
}

TEST_CASE("server_to_socket with multi closes an A whose B is refused and keeps serving",
          "[modes]") {
    asio::io_context io;
    run(io, server_to_socket_multi_refused(), 30s);
}

TEST_CASE("socket_to_server dials A up front and pairs the first B", "[modes]") {
    asio::io_context io;
    run(io, socket_to_server_relays(), 30s);
}

TEST_CASE("socket_to_socket relays between two dialed servers with half-close", "[modes]") {
    asio::io_context io;
    run(io, socket_to_socket_relays(), 30s);
}

TEST_CASE("server_to_server relays over IPv6 loopback", "[modes]") {
    asio::io_context io;
    run(io, server_to_server_ipv6(), 30s);
}
