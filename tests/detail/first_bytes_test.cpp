// A proxy (server_to_socket with multi) reads what A has sent before it dials B, and sends it to
// B first: B's handshake then ends with those bytes rather than with a bare ACK.

#include <socket_connector/connector.hpp>

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

#if defined(__linux__)
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#endif

#include "support/net.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

#if defined(__linux__)
/// Segments a TCP socket has received that carried no data (its SYN, bare ACKs, FINs): TCP_INFO's
/// tcpi_segs_in minus tcpi_data_segs_in (Linux 4.6 and later). glibc's struct tcp_info stops
/// short of both, so they are read at their offsets in the kernel's layout, which only grows.
std::optional<std::uint32_t> bare_segments_in(tcp::socket& socket) {
    std::array<unsigned char, 160> info{};
    socklen_t length = sizeof info;
    if (::getsockopt(socket.native_handle(), IPPROTO_TCP, TCP_INFO, info.data(), &length) != 0 ||
        length < 156)
        return std::nullopt;
    std::uint32_t segs_in = 0;
    std::uint32_t data_segs_in = 0;
    std::memcpy(&segs_in, info.data() + 140, sizeof segs_in);
    std::memcpy(&data_segs_in, info.data() + 152, sizeof data_segs_in);
    return segs_in - data_segs_in;
}
#endif

struct proxy {
    tcp::acceptor target;
    std::shared_ptr<sc::connector> connector;
};

asio::awaitable<proxy> start_proxy() {
    auto ex = co_await asio::this_coro::executor;
    tcp::acceptor target(ex, {asio::ip::address_v4::loopback(), 0});
    sc::options o = proxy_options(target);
    auto c = co_await sc::server_to_socket(ex, std::move(o));
    co_return proxy{std::move(target), std::move(c)};
}

/// Reads to the end of stream into `got`, then sends `answer` and ends the stream.
asio::awaitable<void> read_then_answer(tcp::socket& socket, std::vector<char>& got,
                                       const std::vector<char>& answer) {
    got = co_await read_to_eof(socket);
    co_await send_all(socket, answer);
}

/// Sends `out` and ends the stream, then reads to the end of stream into `got`.
asio::awaitable<void> send_then_read(tcp::socket& socket, const std::vector<char>& out,
                                     std::vector<char>& got) {
    co_await send_all(socket, out);
    got = co_await read_to_eof(socket);
}

/// A's first 32 KiB are waiting when the proxy accepts it: more than the proxy reads before
/// dialing, so the rest follows through the relay. Then A sends more and ends its stream, and
/// B answers and ends its own.
asio::awaitable<void> first_bytes_lead() {
    auto ex = co_await asio::this_coro::executor;
    auto p = co_await start_proxy();
    auto first = pattern(90, (32u << 10) + 5);
    auto a = connect_and_send_before_accept(ex, p.connector->side_a_port(), first, false);
    auto b = co_await p.target.async_accept(asio::use_awaitable);
    auto got = co_await read_exactly(b, first.size());
    CHECK(checksum(got) == checksum(first));
#if defined(__linux__)
    // B received its SYN and data, and no bare ACK: the handshake's last ACK came with the bytes.
    if (auto bare = bare_segments_in(b))
        CHECK(*bare == 1);
    else
        WARN("TCP_INFO has no segment counts on this kernel; the ACK check is skipped");
#endif
    auto more = pattern(91, (100u << 10) + 9);
    auto reply = pattern(92, (64u << 10) + 3);
    std::vector<char> at_b;
    std::vector<char> at_a;
    co_await (read_then_answer(b, at_b, reply) && send_then_read(a, more, at_a));
    CHECK(at_b.size() == more.size());
    CHECK(checksum(at_b) == checksum(more));
    CHECK(at_a.size() == reply.size());
    CHECK(checksum(at_a) == checksum(reply));
    CHECK(co_await eventually([&] { return p.connector->connections() == 0; }));
    auto s = p.connector->stats();
    CHECK(s.bytes_a_to_b == first.size() + more.size());
    CHECK(s.bytes_b_to_a == reply.size());
    CHECK(s.connections_total == 1);
    p.connector->close();
    co_await p.connector->wait_closed();
}

/// A sends a request and ends its stream before it is accepted (or ends it having sent
/// nothing): B gets the request and the end of stream, and A still gets B's answer.
asio::awaitable<void> first_bytes_then_end(std::size_t size) {
    auto ex = co_await asio::this_coro::executor;
    auto p = co_await start_proxy();
    auto request = pattern(93 + size, size);
    auto a = connect_and_send_before_accept(ex, p.connector->side_a_port(), request, true);
    auto b = co_await p.target.async_accept(asio::use_awaitable);
    auto at_b = co_await read_to_eof(b);
    CHECK(at_b.size() == request.size());
    CHECK(checksum(at_b) == checksum(request));
    auto answer = pattern(94 + size, 5000 + size);
    co_await send_all(b, answer);
    auto at_a = co_await read_to_eof(a);
    CHECK(at_a.size() == answer.size());
    CHECK(checksum(at_a) == checksum(answer));
    CHECK(co_await eventually([&] { return p.connector->connections() == 0; }));
    auto s = p.connector->stats();
    CHECK(s.bytes_a_to_b == request.size());
    CHECK(s.bytes_b_to_a == answer.size());
    p.connector->close();
    co_await p.connector->wait_closed();
}

/// A that sends nothing (B speaks first): B's handshake is not held back waiting for bytes.
asio::awaitable<void> nothing_first() {
    auto ex = co_await asio::this_coro::executor;
    auto p = co_await start_proxy();
    auto a = connect_and_send_before_accept(ex, p.connector->side_a_port(), {}, false);
    auto b = co_await p.target.async_accept(asio::use_awaitable);
#if defined(__linux__)
    // The SYN and the handshake's ACK, on its own: there was nothing for it to travel with.
    if (auto bare = bare_segments_in(b)) CHECK(*bare == 2);
#endif
    auto banner = pattern(95, 300);
    co_await send_all(b, banner, false);
    auto greeted = co_await read_exactly(a, banner.size());
    CHECK(checksum(greeted) == checksum(banner));
    auto answer = pattern(96, 700);
    co_await send_all(a, answer);
    auto heard = co_await read_to_eof(b);
    CHECK(checksum(heard) == checksum(answer));
    b.shutdown(tcp::socket::shutdown_send);
    auto rest = co_await read_to_eof(a);
    CHECK(rest.empty());
    p.connector->close();
    co_await p.connector->wait_closed();
}

/// A that resets its connection before the proxy accepts it, having sent nothing: the read
/// before the dial meets the reset, so A is closed and no B is dialed for it.
asio::awaitable<void> reset_before_accept() {
    auto ex = co_await asio::this_coro::executor;
    log_capture logs;
    tcp::acceptor target(ex, {asio::ip::address_v4::loopback(), 0});
    sc::options o = proxy_options(target);
    o.verbose = true;
    o.logger = logs.logger();
    auto c = co_await sc::server_to_socket(ex, std::move(o));
    {
        tcp::socket a(ex);
        a.connect({asio::ip::address_v4::loopback(), c->side_a_port()});
        a.set_option(asio::socket_base::linger(true, 0));
        a.close(); // linger 0: a reset, not a FIN
    }
    CHECK(co_await eventually([&] { return logs.contains("left while pending"); }));
    INFO(logs.all());
    CHECK(logs.contains("reset"));
    auto s = c->stats();
    CHECK(s.sockets_created == 1); // A only: no B was dialed
    CHECK(s.connections_total == 0);
    CHECK(c->pending_a() == 0);
    // The proxy goes on serving: the next A's request reaches a B.
    auto request = pattern(97, 400);
    auto a = connect_and_send_before_accept(ex, c->side_a_port(), request, true);
    auto b = co_await target.async_accept(asio::use_awaitable);
    auto at_b = co_await read_to_eof(b);
    CHECK(checksum(at_b) == checksum(request));
    b.shutdown(tcp::socket::shutdown_send);
    auto rest = co_await read_to_eof(a);
    CHECK(rest.empty());
    c->close();
    co_await c->wait_closed();
}

/// Flips every bit of each byte: a transformer whose output differs from its input everywhere.
struct inverting_transformer {
    void transform(std::span<const char> in, std::vector<char>& out) {
        for (char c : in)
            out.push_back(static_cast<char>(~c));
    }
    void finish(std::vector<char>&) {}
};

std::vector<char> inverted(std::vector<char> bytes) {
    for (auto& c : bytes)
        c = static_cast<char>(~c);
    return bytes;
}

/// How A's transformer is chosen in `first_bytes_transformed`.
enum class chosen_by { side_options, before_joining, none_but_logged };

/// A's request, sent and ended before the proxy accepts it, reaches B through A's transformer
/// (set in the side's options, or by before_joining just before the pair starts), or shows in
/// the traffic log: bytes sent while B is dialed must not skip either.
asio::awaitable<void> first_bytes_transformed(chosen_by how) {
    auto ex = co_await asio::this_coro::executor;
    log_capture logs;
    tcp::acceptor target(ex, {asio::ip::address_v4::loopback(), 0});
    sc::options o = proxy_options(target);
    if (how == chosen_by::side_options) o.a.transform = inverting_transformer{};
    if (how == chosen_by::before_joining)
        o.before_joining = [](sc::connection& c) {
            c.side_a().transformer = inverting_transformer{};
        };
    if (how == chosen_by::none_but_logged) {
        o.log_traffic = true;
        o.logger = logs.logger();
    }
    auto c = co_await sc::server_to_socket(ex, std::move(o));
    std::string text = "GET /first HTTP/1.1\r\nHost: loopback\r\n\r\n";
    std::vector<char> request(text.begin(), text.end());
    auto a = connect_and_send_before_accept(ex, c->side_a_port(), request, true);
    auto b = co_await target.async_accept(asio::use_awaitable);
    auto at_b = co_await read_to_eof(b);
    auto expected = how == chosen_by::none_but_logged ? request : inverted(request);
    CHECK(at_b.size() == expected.size());
    CHECK(checksum(at_b) == checksum(expected));
    if (how == chosen_by::none_but_logged) {
        INFO(logs.all());
        CHECK(logs.contains("A -> B"));
        CHECK(logs.contains("GET /first"));
    }
    b.shutdown(tcp::socket::shutdown_send);
    auto rest = co_await read_to_eof(a);
    CHECK(rest.empty());
    CHECK(co_await eventually([&] { return c->connections() == 0; }));
    c->close();
    co_await c->wait_closed();
}

} // namespace

TEST_CASE("a proxy's first bytes from A go through A's transformer and the traffic log",
          "[first_bytes]") {
    for (auto how :
         {chosen_by::side_options, chosen_by::before_joining, chosen_by::none_but_logged}) {
        INFO("case " << static_cast<int>(how));
        asio::io_context io;
        run(io, first_bytes_transformed(how), 30s);
    }
}

TEST_CASE("a proxy sends what A sent before it was accepted with B's handshake, byte for byte",
          "[first_bytes]") {
    asio::io_context io;
    run(io, first_bytes_lead(), 30s);
}

TEST_CASE("a proxy relays a request and end of stream that A sent before it was accepted",
          "[first_bytes]") {
    for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{200}}) {
        INFO("request of " << size << " bytes");
        asio::io_context io;
        run(io, first_bytes_then_end(size), 30s);
    }
}

TEST_CASE("a proxy whose A sends nothing first dials B with a plain handshake", "[first_bytes]") {
    asio::io_context io;
    run(io, nothing_first(), 30s);
}

TEST_CASE("a proxy closes an A that reset before it was accepted, without dialing B",
          "[first_bytes]") {
    asio::io_context io;
    run(io, reset_before_accept(), 30s);
}
