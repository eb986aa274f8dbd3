// One address served by several connectors, each on its own event loop (`reuse_port`), and
// limits that a group of connectors enforce together (`shared_limits`).
#include <socket_connector/connector.hpp>

#include <sys/socket.h>

#include <atomic>
#include <memory>
#include <vector>

#include <asio/detached.hpp>

#include <asio/redirect_error.hpp>

#include "support/net.hpp"

using namespace test_support;

namespace {

asio::awaitable<void> two_loops_share_one_address(asio::any_io_executor loop1,
                                                  asio::any_io_executor loop2) {
    auto ex = co_await asio::this_coro::executor;
    const std::size_t clients = 40;
    auto target = tcp::acceptor(ex, {asio::ip::address_v4::loopback(), 0});
    auto group = std::make_shared<sc::shared_limits>();
    sc::options o = loopback_options();
    o.multi = true;
    o.timeout = sc::no_timeout;
    o.a.reuse_port = true;
    o.b.endpoint = target.local_endpoint();
    o.limit_group = group;
    o.max_connections = 1000;
    sc::options second = o;
    auto c1 = co_await sc::server_to_socket(loop1, std::move(o));
    second.a.endpoint = c1->side_a_endpoint();
    auto c2 = co_await sc::server_to_socket(loop2, std::move(second));
    CHECK(c2->side_a_port() == c1->side_a_port());
    asio::co_spawn(ex, echo_each(target, clients), asio::detached);
    std::vector<client_result> results(clients);
    for (std::size_t i = 0; i < clients; ++i)
        asio::co_spawn(ex,
                       echo_client(c1->side_a_port(), 700 + i, (64u << 10) + 1013 * i, results[i]),
                       asio::detached);
    bool all_done = co_await all_finished(results);
    REQUIRE(all_done);
    for (std::size_t i = 0; i < clients; ++i) {
        INFO("client " << i);
        CHECK(results[i].intact);
    }
    auto s1 = c1->stats();
    auto s2 = c2->stats();
    CHECK(s1.connections_total + s2.connections_total == clients);
    // The kernel spreads connections over both listeners: 40 on one alone has odds of 2^-39.
    CHECK(s1.connections_total > 0);
    CHECK(s2.connections_total > 0);
    CHECK(s1.sockets_refused + s2.sockets_refused == 0);
    CHECK(co_await eventually([&] { return group->connections() == 0; }));
    CHECK(group->pending_a() == 0);
    c1->close();
    c2->close();
    co_await c1->wait_closed();
    co_await c2->wait_closed();
}

asio::awaitable<void> a_limit_group_counts_every_connector() {
    auto ex = co_await asio::this_coro::executor;
    auto group = std::make_shared<sc::shared_limits>();
    sc::options o = loopback_options();
    o.timeout = sc::no_timeout;
    o.limit_group = group;
    o.max_connections = 2;
    o.max_pending = 2;
    sc::options second = o;
    auto c1 = co_await sc::server_to_server(ex, std::move(o));
    auto c2 = co_await sc::server_to_server(ex, std::move(second));
    // One pair on each: two in the group, at its max_connections.
    auto a1 = co_await connect_to(c1->side_a_port());
    auto b1 = co_await connect_to(c1->side_b_port());
    auto a2 = co_await connect_to(c2->side_a_port());
    auto b2 = co_await connect_to(c2->side_b_port());
    CHECK(co_await eventually([&] { return group->connections() == 2; }));
    CHECK(c1->connections() == 1);
    // c1 has one pair of its own, yet a new socket is refused: the group is full.
    auto extra = co_await connect_to(c1->side_a_port());
    auto end = co_await read_until_closed(extra);
    CHECK(end.closed);
    CHECK(end.bytes.empty());
    CHECK(c1->stats().sockets_refused == 1);
    // c2's pair ends: there is room again, on either connector.
    a2.close();
    b2.close();
    CHECK(co_await eventually([&] { return group->connections() == 1; }));
    // Pending sides count over the group too: one A waiting on each fills max_pending 2.
    auto p1 = co_await connect_to(c1->side_a_port());
    auto p2 = co_await connect_to(c2->side_a_port());
    CHECK(co_await eventually([&] { return group->pending_a() == 2; }));
    auto over = co_await connect_to(c2->side_a_port());
    auto refused = co_await read_until_closed(over);
    CHECK(refused.closed);
    CHECK(c2->stats().sockets_refused == 1);
    CHECK(group->pending_b() == 0);
    // A B for c1's waiting A forms a pair, which is relayed byte for byte.
    auto q1 = co_await connect_to(c1->side_b_port());
    auto data = pattern(77, 100000);
    co_await send_all(p1, data); // then FIN
    auto got = co_await read_to_eof(q1, data.size());
    CHECK(checksum(got) == checksum(data));
    CHECK(co_await eventually([&] { return group->connections() == 2; }));
    CHECK(group->pending_a() == 1);
    // Closed connectors take their counts out of the group.
    c1->close();
    co_await c1->wait_closed();
    CHECK(group->connections() == 0);
    CHECK(group->pending_a() == 1); // c2's waiting A
    c2->close();
    co_await c2->wait_closed();
    CHECK(group->connections() == 0);
    CHECK(group->pending_a() == 0);
}

asio::awaitable<void> a_second_listener_without_reuse_port_is_refused() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.multi = true;
    o.a.reuse_port = true;
    o.b.endpoint = {asio::ip::address_v4::loopback(), 9};
    sc::options second = o;
    auto c1 = co_await sc::server_to_socket(ex, std::move(o));
    second.a.endpoint = c1->side_a_endpoint();
    second.a.reuse_port = false; // every listener of the address must ask for it
    std::error_code ec;
    auto c2 = co_await sc::create(sc::connector_mode::server_to_socket, ex, std::move(second),
                                  asio::redirect_error(asio::use_awaitable, ec));
    CHECK(!c2);
    CHECK(ec == asio::error::address_in_use);
    c1->close();
    co_await c1->wait_closed();
}

} // namespace

TEST_CASE("connectors on two event loops share one address with reuse_port, each relaying the "
          "clients it accepted",
          "[reuse_port]") {
    asio::io_context io;
    loop_thread loop1; // after io: their threads stop before io goes
    loop_thread loop2;
    run(io, two_loops_share_one_address(loop1.executor(), loop2.executor()), 60s);
}

TEST_CASE("a shared limit group holds max_connections and max_pending over all its connectors",
          "[reuse_port][limits]") {
    asio::io_context io;
    run(io, a_limit_group_counts_every_connector());
}

TEST_CASE("a second listener on the address without reuse_port fails with address in use",
          "[reuse_port]") {
    asio::io_context io;
    run(io, a_second_listener_without_reuse_port_is_refused());
}
