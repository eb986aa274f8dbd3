#include <socket_connector/stats.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "support/net.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr std::uint64_t missing = ~std::uint64_t{0};

/// The unsigned number stored under `key` in a flat JSON object; `missing` if there is none.
std::uint64_t json_number(std::string_view json, std::string_view key) {
    std::string quoted = "\"" + std::string(key) + "\"";
    auto at = json.find(quoted);
    if (at == std::string_view::npos) return missing;
    at += quoted.size();
    while (at < json.size() && json[at] == ' ')
        ++at;
    if (at >= json.size() || json[at] != ':') return missing;
    ++at;
    while (at < json.size() && json[at] == ' ')
        ++at;
    std::uint64_t value = 0;
    bool any = false;
    while (at < json.size() && json[at] >= '0' && json[at] <= '9') {
        value = value * 10 + static_cast<std::uint64_t>(json[at] - '0');
        any = true;
        ++at;
    }
    return any ? value : missing;
}

asio::awaitable<void> counts_every_socket() {
    auto ex = co_await asio::this_coro::executor;
    log_capture capture; // the failures are logged as warnings, not on stderr
    sc::options o = loopback_options();
    o.a.auth = sc::token_verifier("secret");
    o.auth_timeout = 300ms;
    o.logger = capture.logger();
    auto c = co_await sc::server_to_server(ex, std::move(o));
    CHECK(c->stats().sockets_created == 0);

    // 1: fails its authentication.
    {
        auto bad = co_await connect_to(c->side_a_port());
        co_await send_text(bad, "wrong\n", false);
        auto got = co_await read_until_closed(bad);
        CHECK(got.closed);
        CHECK(got.bytes.empty());
    }
    CHECK(co_await eventually([&] { return c->stats().auth_failures == 1; }));
    CHECK(c->stats().sockets_created == 1);
    // 2: times out its authentication.
    {
        auto silent = co_await connect_to(c->side_a_port());
        auto got = co_await read_until_closed(silent);
        CHECK(got.closed);
        CHECK(got.bytes.empty());
    }
    CHECK(co_await eventually([&] { return c->stats().auth_failures == 2; }));
    CHECK(c->stats().sockets_created == 2);
    // 3: authenticates, then leaves while pending.
    {
        auto leaver = co_await connect_to(c->side_a_port());
        co_await send_text(leaver, "secret\n", false);
        CHECK(co_await eventually([&] { return c->pending_a() == 1; }));
        leaver.close();
    }
    CHECK(co_await eventually([&] { return c->pending_a() == 0; }));
    CHECK(c->stats().sockets_created == 3);
    // 4 and 5: a pair.
    auto a = co_await connect_to(c->side_a_port());
    co_await send_text(a, "secret\nhi", false);
    auto b = co_await connect_to(c->side_b_port());
    auto got = co_await read_exactly(b, 2);
    CHECK(got == "hi");
    auto s = c->stats();
    CHECK(s.sockets_created == 5);
    CHECK(s.auth_failures == 2);
    CHECK(s.connections_total == 1);
    CHECK(s.connections_open == 1);
    c->close();
    co_await c->wait_closed();
    CHECK(c->stats().sockets_created == 5);
    INFO(capture.all());
    CHECK(capture.contains("warning"));
}

asio::awaitable<void> counts_bytes_and_connections() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto s0 = c->stats();
    CHECK(s0.bytes_a_to_b == 0);
    CHECK(s0.bytes_b_to_a == 0);
    CHECK(s0.connections_total == 0);
    CHECK(s0.connections_open == 0);

    auto a = co_await connect_to(c->side_a_port());
    auto b = co_await connect_to(c->side_b_port());
    CHECK(co_await eventually([&] { return c->stats().connections_open == 1; }));
    CHECK(c->stats().connections_total == 1);
    auto from_a = pattern(10, (3u << 20) + 5);
    auto from_b = pattern(11, (2u << 20) + 3);
    auto [at_a, at_b] = co_await (send_and_receive(a, from_a) && send_and_receive(b, from_b));
    CHECK(checksum(at_b) == checksum(from_a));
    CHECK(checksum(at_a) == checksum(from_b));
    CHECK(co_await eventually([&] { return c->stats().connections_open == 0; }));
    auto s1 = c->stats();
    CHECK(s1.bytes_a_to_b == from_a.size());
    CHECK(s1.bytes_b_to_a == from_b.size());
    CHECK(s1.connections_total == 1);

    // A second pair adds to the totals.
    auto a2 = co_await connect_to(c->side_a_port());
    auto b2 = co_await connect_to(c->side_b_port());
    auto more_a = pattern(12, 1000);
    auto more_b = pattern(13, 2000);
    auto [at_a2, at_b2] = co_await (send_and_receive(a2, more_a) && send_and_receive(b2, more_b));
    CHECK(at_b2 == more_a);
    CHECK(at_a2 == more_b);
    CHECK(co_await eventually([&] { return c->stats().connections_open == 0; }));
    auto s2 = c->stats();
    CHECK(s2.bytes_a_to_b == from_a.size() + more_a.size());
    CHECK(s2.bytes_b_to_a == from_b.size() + more_b.size());
    CHECK(s2.connections_total == 2);
    CHECK(s2.sockets_created == 4);
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> remote_address_once() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    auto c = co_await sc::server_to_server(ex, std::move(o));
    std::vector<tcp::socket> clients;
    for (int i = 0; i < 3; ++i) {
        clients.push_back(co_await connect_to(c->side_a_port()));
        clients.push_back(co_await connect_to(c->side_b_port()));
    }
    clients.push_back(co_await connect_to(c->side_a_port()));
    CHECK(co_await eventually([&] { return c->stats().sockets_created == 7; }));
    auto s = c->stats();
    REQUIRE(s.remote_addresses.size() == 1);
    CHECK(s.remote_addresses[0] == "127.0.0.1");
    CHECK(std::count(s.remote_addresses.begin(), s.remote_addresses.end(), "127.0.0.1") == 1);
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> json_has_the_numbers() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto a = co_await connect_to(c->side_a_port());
    auto b = co_await connect_to(c->side_b_port());
    auto from_a = pattern(20, 12345);
    auto from_b = pattern(21, 54321);
    auto [at_a, at_b] = co_await (send_and_receive(a, from_a) && send_and_receive(b, from_b));
    CHECK(at_b == from_a);
    CHECK(at_a == from_b);
    CHECK(co_await eventually([&] { return c->connections() == 0; }));
    auto json = c->stats().to_json();
    INFO(json);
    REQUIRE(!json.empty());
    CHECK(json.front() == '{');
    CHECK(json.back() == '}');
    CHECK(json_number(json, "sockets_created") == 2);
    CHECK(json_number(json, "bytes_a_to_b") == 12345);
    CHECK(json_number(json, "bytes_b_to_a") == 54321);
    CHECK(json_number(json, "connections_total") == 1);
    CHECK(json_number(json, "connections_open") == 0);
    CHECK(json.find("\"127.0.0.1\"") != std::string::npos);
    c->close();
    co_await c->wait_closed();
}

} // namespace

TEST_CASE("stats count every socket, including failed and departed ones", "[stats]") {
    asio::io_context io;
    run(io, counts_every_socket(), 20s);
}

TEST_CASE("stats count bytes each way exactly and connections total and open", "[stats]") {
    asio::io_context io;
    run(io, counts_bytes_and_connections(), 30s);
}

TEST_CASE("stats list a remote address once however many sockets came from it", "[stats]") {
    asio::io_context io;
    run(io, remote_address_once(), 10s);
}

TEST_CASE("stats to_json carries the counters", "[stats]") {
    asio::io_context io;
    run(io, json_has_the_numbers(), 10s);
}

TEST_CASE("an empty stats snapshot is zero and its JSON says so", "[stats]") {
    sc::stats s;
    CHECK(s.sockets_created == 0);
    CHECK(s.bytes_a_to_b == 0);
    CHECK(s.bytes_b_to_a == 0);
    CHECK(s.remote_addresses.empty());
    auto json = s.to_json();
    CHECK(json_number(json, "sockets_created") == 0);
    CHECK(json_number(json, "bytes_a_to_b") == 0);
    CHECK(json_number(json, "bytes_b_to_a") == 0);
}
