// A peer that resets mid-transfer, in every mode, with splice and with copies, while it sends
// and while it receives: the other peer sees the close promptly, the connector forgets the pair,
// a connector that serves many pairs keeps serving, and a single-pair one closes.
#include <socket_connector/connector.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "support/faults.hpp"
#include "support/net.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

/// Writes patterned 256 KiB chunks until a write fails (or `limit` bytes); never throws.
asio::awaitable<void> write_until_error(tcp::socket& socket, std::size_t limit,
                                        std::size_t& written) {
    auto chunk = pattern(99, 256 * 1024);
    while (written < limit) {
        auto [ec, n] = co_await asio::async_write(socket, asio::buffer(chunk), use_tuple);
        written += n;
        if (ec) co_return;
    }
}

enum class mode {
    server_to_server,
    server_to_socket_multi,
    server_to_socket,
    socket_to_server,
    socket_to_socket
};

const char* name_of(mode m) {
    switch (m) {
    case mode::server_to_server:
        return "server_to_server";
    case mode::server_to_socket_multi:
        return "server_to_socket (multi)";
    case mode::server_to_socket:
        return "server_to_socket";
    case mode::socket_to_server:
        return "socket_to_server";
    case mode::socket_to_socket:
        return "socket_to_socket";
    }
    return "?";
}

/// Whether a connector of this mode serves more than one pair.
bool serves_many(mode m) {
    return m == mode::server_to_server || m == mode::server_to_socket_multi;
}

/// A connector in one of the modes, with the listeners its socket sides dial.
struct rig {
    mode kind;
    std::shared_ptr<sc::connector> connector;
    std::unique_ptr<tcp::acceptor> target_a; // what a socket side A dials
    std::unique_ptr<tcp::acceptor> target_b;
};

asio::awaitable<std::unique_ptr<rig>> make_rig(mode kind, bool zero_copy) {
    auto ex = co_await asio::this_coro::executor;
    auto r = std::make_unique<rig>();
    r->kind = kind;
    sc::options o = loopback_options();
    o.zero_copy = zero_copy;
    o.timeout = sc::no_timeout;
    o.connect_timeout = 5s;
    if (kind == mode::socket_to_server || kind == mode::socket_to_socket) {
        r->target_a = std::make_unique<tcp::acceptor>(loopback_acceptor(ex));
        o.a.endpoint = loopback(r->target_a->local_endpoint().port());
    }
    if (kind != mode::server_to_server && kind != mode::socket_to_server) {
        r->target_b = std::make_unique<tcp::acceptor>(loopback_acceptor(ex));
        o.b.endpoint = loopback(r->target_b->local_endpoint().port());
    }
    o.multi = kind == mode::server_to_socket_multi;
    sc::connector_mode cm = sc::connector_mode::server_to_server;
    switch (kind) {
    case mode::server_to_server:
        cm = sc::connector_mode::server_to_server;
        break;
    case mode::server_to_socket_multi:
    case mode::server_to_socket:
        cm = sc::connector_mode::server_to_socket;
        break;
    case mode::socket_to_server:
        cm = sc::connector_mode::socket_to_server;
        break;
    case mode::socket_to_socket:
        cm = sc::connector_mode::socket_to_socket;
        break;
    }
    r->connector = co_await sc::create(cm, ex, std::move(o));
    co_return r;
}

/// The two peers of a new pair: `a` talks to side A, `b` to side B.
asio::awaitable<void> open_pair(rig& r, tcp::socket& a, tcp::socket& b) {
    auto& c = *r.connector;
    if (r.target_a) {
        a = co_await r.target_a->async_accept(asio::use_awaitable);
    } else {
        a = co_await connect_to(c.side_a_port());
    }
    if (r.target_b) {
        b = co_await r.target_b->async_accept(asio::use_awaitable);
    } else {
        b = co_await connect_to(c.side_b_port());
    }
    // Any earlier pair has ended (the tests check that first), so this one is the only one.
    bool formed = co_await eventually([&] { return c.connections() == 1; });
    REQUIRE(formed);
}

/// Once the other peer has received some of the victim's stream, the victim resets.
asio::awaitable<void> reset_when_flowing(tcp::socket& victim, const close_watch& other,
                                         steady::time_point& reset_at) {
    bool flowing = co_await eventually([&] { return other.received >= 256 * 1024; });
    CHECK(flowing);
    reset_at = steady::now();
    reset(victim); // cancels the write in progress
}

/// The victim sends a stream; once the other peer has received some of it, the victim resets.
asio::awaitable<void> send_then_reset(tcp::socket& victim, const close_watch& other,
                                      steady::time_point& reset_at) {
    std::size_t written = 0;
    co_await (write_until_error(victim, std::size_t(1) << 30, written) ||
              reset_when_flowing(victim, other, reset_at));
}

/// The victim receives; once it has some of the other peer's stream, it resets.
asio::awaitable<void> receive_then_reset(tcp::socket& victim, steady::time_point& reset_at) {
    std::vector<char> buf(64 * 1024);
    std::size_t got = 0;
    while (got < 256 * 1024) {
        auto [ec, n] = co_await victim.async_read_some(asio::buffer(buf), use_tuple);
        got += n;
        if (ec) {
            FAIL_CHECK("the victim's read failed before it reset: " << ec.message());
            break;
        }
    }
    reset_at = steady::now();
    reset(victim);
}

/// The other peer streams to the victim until its writes fail, while watching for the close.
asio::awaitable<void> stream_and_watch(tcp::socket& other, close_watch& w) {
    std::size_t written = 0;
    co_await (write_until_error(other, std::size_t(1) << 30, written) &&
              watch_until_closed(other, w));
}

/// A fresh pair relays 1 MiB each way, byte for byte.
asio::awaitable<void> fresh_pair_relays(rig& r, std::uint64_t seed) {
    auto ex = co_await asio::this_coro::executor;
    tcp::socket a(ex);
    tcp::socket b(ex);
    co_await open_pair(r, a, b);
    auto from_a = pattern(seed, (1u << 20) + 7);
    auto from_b = pattern(seed + 1, (1u << 20) + 11);
    auto [at_a, at_b] = co_await (send_and_receive(a, from_a) && send_and_receive(b, from_b));
    CHECK(at_b.size() == from_a.size());
    CHECK(checksum(at_b) == checksum(from_a));
    CHECK(at_a.size() == from_b.size());
    CHECK(checksum(at_a) == checksum(from_b));
}

asio::awaitable<void> reset_mid_transfer(mode kind, bool zero_copy, bool reset_a,
                                         bool victim_sends) {
    auto ex = co_await asio::this_coro::executor;
    auto r = co_await make_rig(kind, zero_copy);
    auto& c = *r->connector;
    tcp::socket a(ex);
    tcp::socket b(ex);
    co_await open_pair(*r, a, b);
    tcp::socket& victim = reset_a ? a : b;
    tcp::socket& other = reset_a ? b : a;
    close_watch seen;
    steady::time_point reset_at{};
    asio::steady_timer limit(ex, 15s);
    if (victim_sends) {
        auto outcome = co_await (
            (send_then_reset(victim, seen, reset_at) && watch_until_closed(other, seen)) ||
            limit.async_wait(use_tuple));
        CHECK(outcome.index() == 0);
        CHECK(seen.received >= 256 * 1024);
    } else {
        auto outcome =
            co_await ((receive_then_reset(victim, reset_at) && stream_and_watch(other, seen)) ||
                      limit.async_wait(use_tuple));
        CHECK(outcome.index() == 0);
    }
    // The other peer sees the close promptly.
    INFO("the other peer's read ended with: " << seen.why.message());
    REQUIRE(seen.closed);
    CHECK(seen.why != asio::error::operation_aborted);
    CHECK(seconds_between(reset_at, seen.at) < 3.0);
    // The connector forgets the pair.
    bool zero = co_await eventually(
        [&] { return c.connections() == 0 && c.pending_a() == 0 && c.pending_b() == 0; }, 5s);
    INFO("connections " << c.connections() << ", pending A " << c.pending_a() << ", pending B "
                        << c.pending_b());
    CHECK(zero);
    if (serves_many(kind)) {
        // ...and keeps serving.
        co_await fresh_pair_relays(*r, 70);
        bool idle = co_await eventually([&] { return c.connections() == 0; }, 5s);
        CHECK(idle);
        CHECK(c.stats().connections_total == 2);
    } else {
        // A single-pair connector closes once its only pair has ended.
        asio::steady_timer close_limit(ex, 5s);
        auto closing = co_await (c.wait_closed() || close_limit.async_wait(use_tuple));
        CHECK(closing.index() == 0);
        CHECK(c.closed());
    }
    c.close();
    co_await c.wait_closed();
}

void reset_in_every_direction(mode kind) {
    for (bool zero_copy : {true, false})
        for (bool reset_a : {true, false})
            for (bool victim_sends : {true, false}) {
                INFO(name_of(kind)
                     << (zero_copy ? ", splice" : ", copy") << ": " << (reset_a ? "A" : "B")
                     << " resets while it " << (victim_sends ? "sends" : "receives"));
                asio::io_context io;
                run(io, reset_mid_transfer(kind, zero_copy, reset_a, victim_sends), 30s);
            }
}

} // namespace

TEST_CASE("a reset mid-transfer closes the pair: server_to_server", "[faults]") {
    reset_in_every_direction(mode::server_to_server);
}

TEST_CASE("a reset mid-transfer closes the pair: server_to_socket with multi", "[faults]") {
    reset_in_every_direction(mode::server_to_socket_multi);
}

TEST_CASE("a reset mid-transfer closes the pair: server_to_socket", "[faults]") {
    reset_in_every_direction(mode::server_to_socket);
}

TEST_CASE("a reset mid-transfer closes the pair: socket_to_server", "[faults]") {
    reset_in_every_direction(mode::socket_to_server);
}

TEST_CASE("a reset mid-transfer closes the pair: socket_to_socket", "[faults]") {
    reset_in_every_direction(mode::socket_to_socket);
}
