// TLS on a side (issue 21), in the library: server sides that terminate TLS, a socket side that
// originates it, verifiers over TLS, close_notify as a half-close, refusals. The peers are
// asio::ssl (an implementation independent of ours); the command's tests use openssl and ncat.
#include <socket_connector/connector.hpp>
#include <socket_connector/tls.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "support/auth.hpp"
#include "support/net.hpp"
#include "support/process.hpp"
#include "support/tls.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr std::size_t big = 16 * 1024 * 1024;

/// Sends `data` on a stream (TLS or not), then reads exactly `expect` bytes; their checksum.
template <class Stream>
asio::awaitable<std::uint64_t> exchange(Stream& s, const std::vector<char>& data,
                                        std::size_t expect) {
    auto [written, read] = co_await (
        asio::async_write(s, asio::buffer(data), asio::use_awaitable) && read_all(s, expect));
    (void)written;
    const auto& got = read.first;
    co_return got.size() == expect ? checksum(got) : 0;
}

/// A TLS A and a plain B: 16 MiB each way at once; then A's close_notify reaches B as an end of
/// stream, and B's end of stream reaches A as close_notify (asio's shutdown completes only when
/// it has the peer's).
asio::awaitable<void> both_ways(asio::any_io_executor ex) {
    sc::options o = loopback_options();
    o.a.tls = test_tls_server();
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto ctx = client_context();
    ssl_stream a(ex, ctx);
    co_await tls_connect(a, c->side_a_port());
    auto b = co_await connect_to(c->side_b_port());
    const auto to_b = pattern(1, big);
    const auto to_a = pattern(2, big);
    auto [at_b, at_a] = co_await (exchange(b, to_a, big) && exchange(a, to_b, big));
    CHECK(at_b == checksum(to_b));
    CHECK(at_a == checksum(to_a));
    // A's close_notify reaches B as an end of stream; B's end of stream then reaches A as
    // close_notify, which asio's shutdown waits for (it fails without it).
    auto b_side = [&]() -> asio::awaitable<bool> {
        auto [rest, ec] = co_await read_all(b, 1024);
        b.shutdown(tcp::socket::shutdown_send);
        co_return rest.empty() && ec == asio::error::eof;
    };
    auto shut = [&]() -> asio::awaitable<std::error_code> {
        auto [e] = co_await a.async_shutdown(use_tuple);
        co_return e;
    };
    auto [b_saw_end, shutdown_error] = co_await (b_side() && shut());
    CHECK(b_saw_end);
    CHECK_FALSE(shutdown_error);
    CHECK(co_await eventually([&] { return c->connections() == 0; }));
    auto s = c->stats();
    CHECK(s.bytes_a_to_b == big);
    CHECK(s.bytes_b_to_a == big);
    c->close();
}

} // namespace

TEST_CASE("TLS server side: 16 MiB each way at once, close_notify passed on as a half-close",
          "[tls]") {
    asio::io_context io;
    run(io, both_ways(io.get_executor()), 60s);
}

namespace {

/// An asio::ssl server on `acceptor` for one connection: reads until close_notify, answers
/// with `answer`, then its own close_notify; the checksum of what it read.
asio::awaitable<std::uint64_t> ssl_server_once(tcp::acceptor& acceptor, bool untrusted,
                                               std::vector<char> answer) {
    auto ctx = server_context(untrusted);
    auto socket = co_await acceptor.async_accept(asio::use_awaitable);
    ssl_stream s(std::move(socket), ctx);
    auto [hs] = co_await s.async_handshake(asio::ssl::stream_base::server, use_tuple);
    if (hs) co_return 0;
    auto [got, ec] = co_await read_all(s, 64 * 1024 * 1024);
    if (ec != asio::error::eof) co_return 0;
    co_await asio::async_write(s, asio::buffer(answer), asio::use_awaitable);
    auto [shut] = co_await s.async_shutdown(use_tuple);
    (void)shut;
    co_return checksum(got);
}

/// A proxy whose B speaks TLS to an asio::ssl server: 1 MiB each way, A's end of stream
/// passed on as close_notify and the server's close_notify back as A's end of stream.
asio::awaitable<void> proxy_to_tls_server(asio::any_io_executor ex) {
    auto target = loopback_acceptor(ex);
    sc::options o = proxy_options(target);
    o.b.tls = sc::tls_client({.name = "localhost", .ca = certificates().ca});
    auto c = co_await sc::server_to_socket(ex, std::move(o));
    const auto request = pattern(5, 1 << 20);
    const auto answer = pattern(6, 1 << 20);
    auto client = [&]() -> asio::awaitable<std::uint64_t> {
        auto a = co_await connect_to(c->side_a_port());
        co_await send_all(a, request);
        a.shutdown(tcp::socket::shutdown_send);
        auto got = co_await read_to_eof(a, 4 << 20);
        co_return checksum(got);
    };
    auto [server_got, client_got] = co_await (ssl_server_once(target, false, answer) && client());
    CHECK(server_got == checksum(request));
    CHECK(client_got == checksum(answer));
    CHECK(co_await eventually([&] { return c->connections() == 0; }));
    c->close();
}

/// The proxy's B refuses a server it cannot verify; A is closed, the proxy goes on.
asio::awaitable<void> proxy_refuses(asio::any_io_executor ex, bool wrong_name) {
    auto target = loopback_acceptor(ex);
    sc::options o = proxy_options(target);
    log_capture log;
    o.logger = log.logger();
    o.b.tls = sc::tls_client(
        {.name = wrong_name ? "elsewhere.example" : "localhost", .ca = certificates().ca});
    auto c = co_await sc::server_to_socket(ex, std::move(o));
    auto client = [&]() -> asio::awaitable<bool> {
        auto a = co_await connect_to(c->side_a_port());
        co_return co_await closed_within(a, 10s);
    };
    auto [server_got, closed] = co_await (ssl_server_once(target, !wrong_name, {}) && client());
    CHECK(server_got == 0);
    CHECK(closed);
    CHECK(c->stats().sockets_refused == 1);
    CHECK(log.contains(wrong_name ? "hostname mismatch" : "unable to get local issuer"));
    CHECK_FALSE(c->closed());
    c->close();
}

/// A verifier over TLS that wants the client's certificate and a token line.
struct certificate_and_token {
    using works_over_tls = void;
    std::shared_ptr<std::string> seen = std::make_shared<std::string>();
    template <class Stream>
    asio::awaitable<sc::auth_result> operator()(Stream& s, const sc::auth_context& context) const {
        if (!context.tls || !context.tls->peer_verified) co_return sc::auth_result{};
        *seen = context.tls->peer_subject + " " + context.tls->version;
        co_return co_await sc::token_verifier("let me in")(s);
    }
};

asio::awaitable<void> client_certificate(asio::any_io_executor ex) {
    sc::options o = loopback_options();
    o.a.tls = test_tls_server(true);
    certificate_and_token verify;
    o.a.auth = verify;
    auto c = co_await sc::server_to_server(ex, std::move(o));
    // Without a certificate: the handshake fails (a refusal), nothing reaches B.
    {
        auto ctx = client_context(false);
        ssl_stream a(ex, ctx);
        bool failed = false;
        try {
            co_await tls_connect(a, c->side_a_port());
            // TLS 1.3: the client learns of the refusal on its first read.
            auto [got, ec] = co_await read_all(a, 1);
            failed = got.empty() && ec;
        } catch (const std::system_error&) {
            failed = true;
        }
        CHECK(failed);
        CHECK(co_await eventually([&] { return c->stats().sockets_refused == 1; }));
    }
    // With one, and the token: paired; the verifier saw the certificate.
    auto ctx = client_context(true);
    ssl_stream a(ex, ctx);
    co_await tls_connect(a, c->side_a_port());
    co_await asio::async_write(a, asio::buffer(std::string_view("let me in\nafter the token")),
                               asio::use_awaitable);
    auto b = co_await connect_to(c->side_b_port());
    auto got = co_await read_exactly(b, 15);
    CHECK(got == "after the token");
    CHECK(*verify.seen == "/CN=test-client TLSv1.3");
    CHECK(c->stats().auth_failures == 0);
    c->close();
}

/// 1,000 sockets that open a TCP connection to a TLS port and never say hello hold pending
/// places only until auth_timeout; honest TLS clients pair meanwhile; then all the silent ones
/// are refused.
asio::awaitable<void> silent_handshakes(asio::any_io_executor ex) {
    constexpr std::size_t silent = 1000;
    sc::options o = loopback_options();
    o.a.tls = test_tls_server();
    o.auth_timeout = 3s;
    o.max_pending = silent + 10;
    log_capture log;
    o.logger = log.logger();
    auto c = co_await sc::server_to_server(ex, std::move(o));
    std::vector<tcp::socket> idle;
    idle.reserve(silent);
    for (std::size_t i = 0; i < silent; ++i)
        idle.push_back(co_await connect_to(c->side_a_port()));
    CHECK(co_await eventually([&] { return c->stats().sockets_accepted_a == silent; }));
    // Honest clients meanwhile: paired and relayed.
    for (std::uint64_t i = 0; i < 3; ++i) {
        auto ctx = client_context();
        ssl_stream a(ex, ctx);
        co_await tls_connect(a, c->side_a_port());
        auto b = co_await connect_to(c->side_b_port());
        const auto data = pattern(10 + i, 64 * 1024);
        co_await asio::async_write(a, asio::buffer(data), asio::use_awaitable);
        auto got = co_await read_exactly(b, data.size());
        CHECK(checksum(std::span<const char>(got)) == checksum(data));
    }
    CHECK(c->stats().connections_total == 3);
    // The silent ones time out, each refused.
    CHECK(co_await eventually([&] { return c->stats().sockets_refused == silent; }, 20s));
    CHECK(log.contains("TLS handshake: not done within 3000 ms (auth_timeout)"));
    c->close();
}

} // namespace

TEST_CASE("a TLS socket side (a proxy's B): 1 MiB each way, close_notify both ways", "[tls]") {
    asio::io_context io;
    run(io, proxy_to_tls_server(io.get_executor()), 60s);
}

TEST_CASE("a TLS socket side refuses a server it cannot verify; the proxy goes on", "[tls]") {
    asio::io_context io;
    run(io, proxy_refuses(io.get_executor(), false), 30s);
    asio::io_context io2;
    run(io2, proxy_refuses(io2.get_executor(), true), 30s);
}

TEST_CASE("a required client certificate reaches the verifier; none is refused", "[tls]") {
    asio::io_context io;
    run(io, client_certificate(io.get_executor()), 30s);
}

TEST_CASE("1,000 silent TLS handshakes are bounded by auth_timeout; honest clients pair", "[tls]") {
    raise_fd_limit(8192);
    asio::io_context io;
    run(io, silent_handshakes(io.get_executor()), 60s);
}

namespace {

/// PROXY headers travel in the clear before the handshake, both ways: a client sends one and
/// then shakes hands on A (accept_proxy + TLS); the proxy's B gets one and then shakes hands
/// (send_proxy + TLS), naming the client A's header named.
asio::awaitable<void> proxy_header_then_tls(asio::any_io_executor ex) {
    auto target = loopback_acceptor(ex);
    sc::options o = proxy_options(target);
    o.a.accept_proxy = true;
    o.a.tls = test_tls_server();
    o.b.send_proxy = sc::proxy_version::v1;
    o.b.tls = sc::tls_client({.name = "127.0.0.1", .ca = certificates().ca});
    auto c = co_await sc::server_to_socket(ex, std::move(o));
    auto server = [&]() -> asio::awaitable<std::string> {
        auto socket = co_await target.async_accept(asio::use_awaitable);
        auto header = co_await read_line(socket); // before any TLS byte
        auto ctx = server_context();
        ssl_stream s(std::move(socket), ctx);
        co_await s.async_handshake(asio::ssl::stream_base::server, asio::use_awaitable);
        auto [got, ec] = co_await read_all(s, 5);
        co_await asio::async_write(s, asio::buffer(std::string_view("world")), asio::use_awaitable);
        co_return header + "|" + std::string(got.begin(), got.end());
    };
    auto client = [&]() -> asio::awaitable<std::string> {
        auto ctx = client_context();
        ssl_stream a(ex, ctx);
        co_await a.next_layer().async_connect(loopback(c->side_a_port()), asio::use_awaitable);
        co_await send_text(a.next_layer(), "PROXY TCP4 192.0.2.7 127.0.0.1 40000 443\r\n", false);
        SSL_set_tlsext_host_name(a.native_handle(), "localhost");
        co_await a.async_handshake(asio::ssl::stream_base::client, asio::use_awaitable);
        co_await asio::async_write(a, asio::buffer(std::string_view("hello")), asio::use_awaitable);
        auto [got, ec] = co_await read_all(a, 5);
        co_return std::string(got.begin(), got.end());
    };
    std::string at_server, at_client;
    try {
        std::tie(at_server, at_client) = co_await (server() && client());
    } catch (const asio::multiple_exceptions& e) {
        try {
            std::rethrow_exception(e.first_exception());
        } catch (const std::exception& first) {
            FAIL_CHECK("first failure: " << first.what());
        }
    }
    CHECK(at_server.starts_with("PROXY TCP4 192.0.2.7 127.0.0.1 40000 443"));
    CHECK(at_server.ends_with("|hello"));
    CHECK(at_client == "world");
    auto s = c->stats();
    CHECK(s.remote_addresses.size() == 2);
    CHECK(std::find(s.remote_addresses.begin(), s.remote_addresses.end(), "192.0.2.7") !=
          s.remote_addresses.end());
    c->close();
}

/// Options that cannot work fail the start with a reason.
asio::awaitable<void> misfitting_tls_options(asio::any_io_executor ex) {
    auto expect_invalid = [&](sc::connector_mode mode, sc::options o,
                              std::string_view part) -> asio::awaitable<void> {
        log_capture logs;
        o.logger = logs.logger();
        auto [ec, c] = co_await sc::create(mode, ex, std::move(o), use_tuple);
        CHECK(ec == std::errc::invalid_argument);
        CHECK(!c);
        INFO(logs.all());
        CHECK(logs.contains(part));
    };
    auto target = loopback_acceptor(ex);
    {
        sc::options o = proxy_options(target);
        o.b.tls = test_tls_server(); // a server's TLS on a side that dials
        co_await expect_invalid(sc::connector_mode::server_to_socket, std::move(o),
                                "a TLS server (tls_server) applies to a side that listens");
    }
    {
        sc::options o = loopback_options();
        o.a.tls = sc::tls_client({.name = "localhost", .ca = certificates().ca});
        co_await expect_invalid(sc::connector_mode::server_to_server, std::move(o),
                                "a TLS client (tls_client) applies to a side the connector dials");
    }
    {
        sc::options o = loopback_options();
        o.a.tls = test_tls_server();
        o.a.auth = [](tcp::socket&) -> asio::awaitable<sc::auth_result> {
            co_return sc::auth_result{.ok = true, .leftover = {}};
        };
        co_await expect_invalid(sc::connector_mode::server_to_server, std::move(o),
                                "its auth verifier does not work over TLS");
    }
}

} // namespace

TEST_CASE("PROXY headers go in the clear before the TLS handshake, both ways", "[tls]") {
    asio::io_context io;
    run(io, proxy_header_then_tls(io.get_executor()), 30s);
}

TEST_CASE("TLS options that do not fit a side fail the start", "[tls]") {
    asio::io_context io;
    run(io, misfitting_tls_options(io.get_executor()), 30s);
}
