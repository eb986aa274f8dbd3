// The sockets a connector accepts and dials are non-blocking from the start and, on Linux,
// close-on-exec (a program the application starts does not inherit them); on Linux they are
// made so by accept4 and socket themselves (detail/platform.hpp), and closed without
// taking them out of the epoll set first, so a descriptor number is free for the next
// socket at once.
#include <socket_connector/connector.hpp>

#include <fcntl.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "support/net.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

/// How one of the connector's sockets looked in the before_joining hook.
struct socket_flags {
    bool non_blocking = false;      // O_NONBLOCK on the descriptor
    bool asio_non_blocking = false; // what Asio reports (`non_blocking()`)
    bool close_on_exec = false;     // FD_CLOEXEC
};

socket_flags flags_of(tcp::socket& socket) {
    socket_flags f;
    int fd = socket.native_handle();
    int status = ::fcntl(fd, F_GETFL);
    int descriptor = ::fcntl(fd, F_GETFD);
    f.non_blocking = status != -1 && (status & O_NONBLOCK) != 0;
    f.asio_non_blocking = socket.non_blocking();
    f.close_on_exec = descriptor != -1 && (descriptor & FD_CLOEXEC) != 0;
    return f;
}

struct seen_flags {
    int calls = 0;
    socket_flags a;
    socket_flags b;
};

std::function<void(sc::connection&)> recorder(seen_flags& seen) {
    return [&seen](sc::connection& c) {
        ++seen.calls;
        seen.a = flags_of(c.side_a().socket());
        seen.b = flags_of(c.side_b().socket());
    };
}

void check_flags(const socket_flags& f, const char* side) {
    INFO(side);
    CHECK(f.non_blocking);
    CHECK(f.asio_non_blocking);
#if defined(__linux__)
    CHECK(f.close_on_exec);
#endif
}

/// A rendezvous (both sides accepted) relays 256 KiB each way byte for byte, over sockets
/// that are non-blocking and close-on-exec.
asio::awaitable<void> accepted_sockets() {
    auto ex = co_await asio::this_coro::executor;
    seen_flags seen;
    sc::options o = loopback_options();
    o.before_joining = recorder(seen);
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto a = co_await connect_to(c->side_a_port());
    auto b = co_await connect_to(c->side_b_port());
    auto to_b = pattern(11, 256 * 1024);
    auto to_a = pattern(12, 256 * 1024);
    auto [at_b, at_a] =
        co_await (send_all(a, to_b) && send_all(b, to_a) && read_to_eof(b) && read_to_eof(a));
    CHECK(at_b.size() == to_b.size());
    CHECK(checksum(at_b) == checksum(to_b));
    CHECK(at_a.size() == to_a.size());
    CHECK(checksum(at_a) == checksum(to_a));
    REQUIRE(seen.calls == 1);
    check_flags(seen.a, "side A");
    check_flags(seen.b, "side B");
    c->close();
    co_await c->wait_closed();
}

/// A proxy's accepted A and dialed B are non-blocking and close-on-exec; 256 KiB go through
/// to an echoing B and back byte for byte.
asio::awaitable<void> dialed_sockets() {
    auto ex = co_await asio::this_coro::executor;
    tcp::acceptor target(ex, {asio::ip::address_v4::loopback(), 0});
    asio::co_spawn(ex, echo_each(target, 1), asio::detached);
    seen_flags seen;
    sc::options o = proxy_options(target);
    o.before_joining = recorder(seen);
    auto c = co_await sc::server_to_socket(ex, std::move(o));
    client_result r;
    co_await echo_client(c->side_a_port(), 13, 256 * 1024, r);
    CHECK(r.done);
    CHECK(r.intact);
    REQUIRE(seen.calls == 1);
    check_flags(seen.a, "side A (accepted)");
    check_flags(seen.b, "side B (dialed)");
    c->close();
    co_await c->wait_closed();
}

/// 60 proxied connections one after another: each pair's descriptors are closed before the
/// next A connects, so the next pair gets the same descriptor numbers, and every one is
/// relayed byte for byte with nothing logged as a warning (a descriptor still registered with
/// the event loop would fail to register again).
asio::awaitable<void> descriptors_are_reused() {
    auto ex = co_await asio::this_coro::executor;
    constexpr std::size_t count = 60;
    tcp::acceptor target(ex, {asio::ip::address_v4::loopback(), 0});
    asio::co_spawn(ex, echo_each(target, count), asio::detached);
    log_capture logs;
    sc::options o = proxy_options(target);
    o.logger = logs.logger();
    std::vector<int> a_descriptors;
    o.before_joining = [&a_descriptors](sc::connection& c) {
        a_descriptors.push_back(c.side_a().socket().native_handle());
    };
    auto c = co_await sc::server_to_socket(ex, std::move(o));
    std::uint64_t bytes = 0;
    for (std::size_t i = 0; i < count; ++i) {
        INFO("connection " << i);
        client_result r;
        co_await echo_client(c->side_a_port(), 100 + i, 1000 + 17 * i, r);
        REQUIRE(r.intact);
        bytes += 1000 + 17 * i;
        // The pair is closed before the next connects.
        REQUIRE(co_await eventually([&] { return c->connections() == 0; }));
    }
    REQUIRE(a_descriptors.size() == count);
    std::size_t reused = 0;
    for (std::size_t i = 1; i < count; ++i)
        reused += a_descriptors[i] == a_descriptors[0] ? 1 : 0;
    // Each connection opens its four descriptors (client, A, B, target) in the same order
    // once the last four are closed, so A's number comes round again.
    CHECK(reused >= count / 2);
    auto s = c->stats();
    CHECK(s.connections_total == count);
    CHECK(s.bytes_a_to_b == bytes);
    CHECK(s.bytes_b_to_a == bytes);
    INFO(logs.all());
    CHECK_FALSE(logs.contains("warning"));
    c->close();
    co_await c->wait_closed();
}

} // namespace

TEST_CASE("accepted sockets are non-blocking and close-on-exec, and relay byte for byte",
          "[sockets]") {
    asio::io_context io;
    run(io, accepted_sockets(), 30s);
}

TEST_CASE("a proxy's accepted and dialed sockets are non-blocking and close-on-exec", "[sockets]") {
    asio::io_context io;
    run(io, dialed_sockets(), 30s);
}

TEST_CASE("a proxy reuses descriptor numbers pair after pair, byte for byte", "[sockets]") {
    asio::io_context io;
    run(io, descriptors_are_reused(), 60s);
}
