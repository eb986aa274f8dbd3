// The PROXY protocol on a connector's sides: a server side with `accept_proxy` reads the header
// before its verifier (the client it names becomes the side's peer; a missing, malformed or late
// header closes the socket and nothing of it is relayed), a socket side with `send_proxy` writes
// one before any other byte (a proxy's B as it is connected, a side dialed up front as its pair
// forms), and options that do not fit a side stop the start.
#include <socket_connector/proxy_protocol.hpp>

#include <memory>
#include <string>
#include <vector>

#include "support/net.hpp"
#include "support/proxy.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

/// What a verifier was told.
struct told {
    int calls = 0;
    std::string remote;
    bool had_proxy = false;
    sc::proxy_header proxy;
};

/// Accepts every socket, noting its context.
struct noting_verifier {
    std::shared_ptr<told> seen;
    asio::awaitable<sc::auth_result> operator()(tcp::socket&, const sc::auth_context& context) {
        ++seen->calls;
        seen->remote = std::string(context.remote);
        seen->had_proxy = context.proxy != nullptr;
        if (context.proxy) seen->proxy = *context.proxy;
        co_return sc::auth_result{.ok = true, .leftover = {}};
    }
};
static_assert(sc::auth_verifier<noting_verifier, tcp::socket>);

// ---- accept_proxy -------------------------------------------------------------------------------

asio::awaitable<void> takes_the_named_client(sc::proxy_version version) {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.b.endpoint = {asio::ip::address_v6::loopback(), 0}; // B's peer is ::1: told apart from A's
    o.a.accept_proxy = true;
    auto seen = std::make_shared<told>();
    o.a.auth = noting_verifier{seen};
    auto c = co_await sc::server_to_server(ex, std::move(o));
    const auto client = at("203.0.113.7", 4242);
    const auto service = at("198.51.100.1", 443);
    auto a = co_await connect_to(c->side_a_port());
    // The header and the first data in one write: the relay must take the header alone.
    auto data = pattern(31, 300000);
    auto first = concat(sc::proxy_header_text(version, client, service), data);
    co_await send_all(a, first, false);
    CHECK(co_await eventually([&] { return c->pending_a() == 1 && seen->calls == 1; }));
    CHECK(seen->remote == "203.0.113.7:4242");
    REQUIRE(seen->had_proxy);
    CHECK(seen->proxy.version == (version == sc::proxy_version::v1 ? 1 : 2));
    CHECK(seen->proxy.source == client);
    CHECK(seen->proxy.destination == service);
    tcp::socket b(ex);
    co_await b.async_connect({asio::ip::address_v6::loopback(), c->side_b_port()},
                             asio::use_awaitable);
    auto formed = co_await c->next_connection();
    REQUIRE(formed);
    CHECK(formed->side_a().remote() == "203.0.113.7:4242");
    REQUIRE(formed->side_a().proxied());
    CHECK(formed->side_a().proxied()->source == client);
    CHECK(!formed->side_b().proxied());
    a.shutdown(tcp::socket::shutdown_send);
    auto got = co_await read_to_eof(b);
    CHECK(got.size() == data.size());
    CHECK(checksum(got) == checksum(data));
    auto back = pattern(32, 70000);
    co_await send_all(b, back);
    auto at_a = co_await read_to_eof(a);
    CHECK(checksum(at_a) == checksum(back));
    // The named client is the address seen, not the proxy's.
    auto s = c->stats();
    CHECK(s.remote_addresses == std::vector<std::string>{"203.0.113.7", "::1"});
    CHECK(s.sockets_refused == 0);
    CHECK(s.bytes_a_to_b == data.size());
    c->close();
    co_await c->wait_closed();
}

/// A v2 header with a TLV block (past the first 128 bytes the reader takes), arriving a few
/// bytes at a time, and no verifier: the header alone makes the side wait for its admission.
asio::awaitable<void> split_header_with_tlvs() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.a.accept_proxy = true;
    auto c = co_await sc::server_to_server(ex, std::move(o));
    const auto client = at("192.0.2.44", 50000);
    auto head = sc::proxy_header_text(sc::proxy_version::v2, client, at("192.0.2.1", 8443));
    // Lengthen the address block by a NOOP TLV (type 0x04) of 600 bytes.
    const std::size_t tlv = 3 + 600;
    const std::size_t length = 12 + tlv;
    head[14] = static_cast<char>(length >> 8);
    head[15] = static_cast<char>(length & 0xFF);
    head += '\x04';
    head += static_cast<char>(600 >> 8);
    head += static_cast<char>(600 & 0xFF);
    head += std::string(600, '\0');
    auto a = co_await connect_to(c->side_a_port());
    for (std::size_t at_byte = 0; at_byte < head.size(); at_byte += 37) {
        const auto piece = head.substr(at_byte, 37);
        co_await send_text(a, piece, false);
        co_await pause(1ms); // spread the header over many reads (not a synchronisation)
    }
    auto data = pattern(33, 100000);
    co_await send_all(a, data);
    auto b = co_await connect_to(c->side_b_port());
    auto formed = co_await c->next_connection();
    REQUIRE(formed);
    CHECK(formed->side_a().remote() == "192.0.2.44:50000");
    auto got = co_await read_to_eof(b);
    CHECK(got.size() == data.size());
    CHECK(checksum(got) == checksum(data));
    c->close();
    co_await c->wait_closed();
}

/// v2 LOCAL and v1 UNKNOWN name no client: the socket's own address stands.
asio::awaitable<void> local_headers_keep_the_socket_address(sc::proxy_version version) {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.a.accept_proxy = true;
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto a = co_await connect_to(c->side_a_port());
    const auto own = fmt::format("127.0.0.1:{}", a.local_endpoint().port());
    auto first = sc::proxy_header_local(version) + "hello";
    co_await send_text(a, first, false);
    auto b = co_await connect_to(c->side_b_port());
    auto formed = co_await c->next_connection();
    REQUIRE(formed);
    CHECK(formed->side_a().remote() == own);
    REQUIRE(formed->side_a().proxied());
    CHECK(formed->side_a().proxied()->local);
    auto got = co_await read_exactly(b, 5);
    CHECK(got == "hello");
    CHECK(c->stats().remote_addresses == std::vector<std::string>{"127.0.0.1"});
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> bad_headers_are_refused() {
    auto ex = co_await asio::this_coro::executor;
    log_capture logs;
    sc::options o = loopback_options();
    o.logger = logs.logger();
    o.a.accept_proxy = true;
    auto seen = std::make_shared<told>();
    o.a.auth = noting_verifier{seen};
    auto c = co_await sc::server_to_server(ex, std::move(o));
    const auto port = c->side_a_port();
    // B waits first: nothing of the refused As may reach it.
    auto b = co_await connect_to(c->side_b_port());
    CHECK(co_await eventually([&] { return c->pending_b() == 1; }));
    const std::string truncated_v2 =
        sc::proxy_header_text(sc::proxy_version::v2, at("10.0.0.1", 1), at("10.0.0.2", 2))
            .substr(0, 20);
    const std::string cases[] = {
        "GET / HTTP/1.1\r\n\r\n",                        // no header at all
        "PROXY TCP4 1.2.3.4 5.6.7.8 80\r\nhello",        // a field missing
        "PROXY TCP4 1.2.3.4 5.6.7.8 80 065536\r\nhello", // a bad port
        "PROXY TCP4 " + std::string(120, '1'),           // longer than 107 bytes, no CR LF
        "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\nhi",          // the wrong family
    };
    for (const auto& bad : cases) {
        INFO(bad);
        co_await closed_unanswered(port, bad, false);
    }
    co_await closed_unanswered(port, truncated_v2, true); // ends inside the header
    co_await closed_unanswered(port, "PRO", true);        // ends inside what could be one
    co_await closed_unanswered(port, "", true);           // ends before a byte
    CHECK(co_await eventually([&] { return c->stats().sockets_refused == 8; }));
    CHECK(seen->calls == 0); // no verifier ran on a socket without a header
    CHECK(c->stats().auth_failures == 0);
    CHECK(logs.contains("PROXY header: no PROXY header"));
    CHECK(logs.contains("PROXY header: end of stream inside the PROXY header"));
    CHECK(logs.contains("PROXY header: end of stream before a PROXY header"));
    // The relay goes on: a good A pairs with the B that waited, which gets its bytes only.
    auto a = co_await connect_to(port);
    auto data = pattern(34, 50000);
    auto first = concat(
        sc::proxy_header_text(sc::proxy_version::v1, at("10.1.1.1", 1111), at("10.1.1.2", 80)),
        data);
    co_await send_all(a, first);
    auto got = co_await read_to_eof(b);
    CHECK(got.size() == data.size());
    CHECK(checksum(got) == checksum(data));
    CHECK(seen->calls == 1);
    // Refused sockets name no client: only the good one's address and B's were seen.
    CHECK(c->stats().remote_addresses == std::vector<std::string>{"127.0.0.1", "10.1.1.1"});
    c->close();
    co_await c->wait_closed();
}

/// Clients that connect and send nothing, or part of a header: each waits at most
/// `auth_timeout` for its header, counted against `max_pending` meanwhile.
asio::awaitable<void> silent_clients_time_out() {
    auto ex = co_await asio::this_coro::executor;
    log_capture logs;
    sc::options o = loopback_options();
    o.logger = logs.logger();
    o.a.accept_proxy = true;
    o.auth_timeout = 2s;
    o.max_pending = 2;
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto s1 = co_await connect_to(c->side_a_port());
    auto s2 = co_await connect_to(c->side_a_port());
    // Both wait for their header, counted as pending (pending_a() counts admitted sides only).
    CHECK(co_await eventually([&] { return c->stats().sockets_accepted_a == 2; }));
    co_await closed_unanswered(c->side_a_port(), "", false); // the third: max_pending
    CHECK(c->stats().sockets_refused == 1);
    CHECK(logs.contains("(max_pending)"));
    const bool closed1 = co_await closed_within(s1, 5s);
    const bool closed2 = co_await closed_within(s2, 5s);
    CHECK(closed1);
    CHECK(closed2);
    CHECK(logs.contains("PROXY header: none within 2000 ms (auth_timeout)"));
    // One that has sent part of a header when its time runs out.
    auto s3 = co_await connect_to(c->side_a_port());
    co_await send_text(s3, "PROXY TCP4 1.2", false);
    const bool closed3 = co_await closed_within(s3, 5s);
    CHECK(closed3);
    CHECK(logs.contains("PROXY header: incomplete within 2000 ms (auth_timeout; 14 bytes)"));
    CHECK(co_await eventually([&] { return c->stats().sockets_refused == 4; }));
    CHECK(c->stats().auth_failures == 0);
    c->close();
    co_await c->wait_closed();
}

// ---- send_proxy ---------------------------------------------------------------------------------

/// A proxy's B gets the header naming A's client and the relay address it reached, before A's
/// bytes; with `accept_proxy` on A too, the client A's own header named.
asio::awaitable<void> proxy_sends_for_each_a(sc::proxy_version version, bool chained) {
    auto ex = co_await asio::this_coro::executor;
    auto target = loopback_acceptor(ex);
    sc::options o = proxy_options(target);
    o.b.send_proxy = version;
    o.a.accept_proxy = chained;
    auto c = co_await sc::server_to_socket(ex, std::move(o));
    auto a = co_await connect_to(c->side_a_port());
    const auto named = at("2001:db8::7", 6000);
    const auto reached = at("2001:db8::1", 443);
    if (chained) {
        const auto head = sc::proxy_header_text(sc::proxy_version::v1, named, reached);
        co_await send_text(a, head, false);
    }
    auto data = pattern(35, 200000);
    co_await send_all(a, data);
    auto b = co_await target.async_accept(asio::use_awaitable);
    auto got = co_await receive_header(b);
    CHECK(got.parsed.header.version == (version == sc::proxy_version::v1 ? 1 : 2));
    CHECK(!got.parsed.header.local);
    if (chained) {
        CHECK(got.parsed.header.source == named);
        CHECK(got.parsed.header.destination == reached);
    } else {
        CHECK(got.parsed.header.source == a.local_endpoint());
        CHECK(got.parsed.header.destination == a.remote_endpoint());
        CHECK(got.bytes == sc::proxy_header_text(version, a.local_endpoint(), a.remote_endpoint()));
    }
    auto rest = co_await read_to_eof(b);
    got.after.insert(got.after.end(), rest.begin(), rest.end());
    CHECK(got.after.size() == data.size());
    CHECK(checksum(got.after) == checksum(data));
    auto back = pattern(36, 30000);
    co_await send_all(b, back);
    auto at_a = co_await read_to_eof(a);
    CHECK(checksum(at_a) == checksum(back));
    // Byte counts are the relayed bytes: the headers are not among them.
    CHECK(c->stats().bytes_a_to_b == data.size());
    c->close();
    co_await c->wait_closed();
}

/// A proxy's B with a verifier: the header goes before the verifier's exchange.
asio::awaitable<void> header_precedes_the_verifier() {
    auto ex = co_await asio::this_coro::executor;
    auto target = loopback_acceptor(ex);
    sc::options o = proxy_options(target);
    o.b.send_proxy = sc::proxy_version::v2;
    o.b.auth = sc::token_verifier("backend-token");
    auto c = co_await sc::server_to_socket(ex, std::move(o));
    auto a = co_await connect_to(c->side_a_port());
    co_await send_text(a, "request", false);
    auto b = co_await target.async_accept(asio::use_awaitable);
    auto got = co_await receive_header(b);
    CHECK(got.parsed.header.source == a.local_endpoint());
    CHECK(got.after.empty()); // A's request waits for B's verifier, which waits for the token
    co_await send_text(b, "backend-token\n", false);
    auto request = co_await read_exactly(b, 7);
    CHECK(request == "request");
    co_await send_text(b, "reply");
    auto reply = co_await read_to_eof(a);
    CHECK(text(reply) == "reply");
    c->close();
    co_await c->wait_closed();
}

/// A side dialed up front (socket_to_server's A) gets its header when B arrives.
asio::awaitable<void> up_front_side_gets_it_at_pairing() {
    auto ex = co_await asio::this_coro::executor;
    auto target = loopback_acceptor(ex);
    sc::options o = loopback_options();
    o.a.endpoint = target.local_endpoint();
    o.a.send_proxy = sc::proxy_version::v1;
    auto start = sc::socket_to_server(ex, std::move(o));
    auto [c, a] = co_await (std::move(start) && target.async_accept(asio::use_awaitable));
    auto b = co_await connect_to(c->side_b_port());
    co_await send_text(b, "from b");
    auto got = co_await receive_header(a);
    CHECK(got.bytes ==
          sc::proxy_header_text(sc::proxy_version::v1, b.local_endpoint(), b.remote_endpoint()));
    auto rest = co_await read_to_eof(a);
    got.after.insert(got.after.end(), rest.begin(), rest.end());
    CHECK(text(got.after) == "from b");
    a.close();
    co_await c->wait_closed();
}

asio::awaitable<void> start_fails(sc::connector_mode mode, const sc::options& given,
                                  std::string_view says) {
    auto ex = co_await asio::this_coro::executor;
    log_capture logs;
    sc::options o = given;
    o.logger = logs.logger();
    auto [ec, c] = co_await sc::create(mode, ex, std::move(o), use_tuple);
    CHECK(ec == std::errc::invalid_argument);
    CHECK(!c);
    INFO(logs.all());
    CHECK(logs.contains(says));
}

asio::awaitable<void> options_that_do_not_fit() {
    auto ex = co_await asio::this_coro::executor;
    auto target = loopback_acceptor(ex);
    {
        sc::options o = proxy_options(target);
        o.b.accept_proxy = true;
        co_await start_fails(sc::connector_mode::server_to_socket, o,
                             "side B: accept_proxy applies to a side that listens");
    }
    {
        sc::options o = loopback_options();
        o.b.send_proxy = sc::proxy_version::v2;
        co_await start_fails(sc::connector_mode::server_to_server, o,
                             "side B: send_proxy applies to a side the connector dials");
    }
    {
        sc::options o = proxy_options(target);
        o.multi = false; // B dialed up front, before any A
        o.b.send_proxy = sc::proxy_version::v1;
        o.b.auth = sc::token_verifier("t");
        co_await start_fails(sc::connector_mode::server_to_socket, o,
                             "side B: send_proxy with an auth verifier needs the partner known");
    }
    {
        sc::options o = loopback_options();
        o.a.auth = sc::token_verifier("t");
        o.b.accept_proxy = true;
        co_await start_fails(sc::connector_mode::one_server, o, "set it on side A, the one port");
    }
}

} // namespace

TEST_CASE("accept_proxy takes the client a v1 or v2 header names", "[proxy_protocol]") {
    for (auto version : {sc::proxy_version::v1, sc::proxy_version::v2}) {
        asio::io_context io;
        run(io, takes_the_named_client(version));
    }
}

TEST_CASE("accept_proxy reads a split v2 header with TLVs and nothing past it",
          "[proxy_protocol]") {
    asio::io_context io;
    run(io, split_header_with_tlvs());
}

TEST_CASE("accept_proxy keeps the socket's address for LOCAL and UNKNOWN headers",
          "[proxy_protocol]") {
    for (auto version : {sc::proxy_version::v1, sc::proxy_version::v2}) {
        asio::io_context io;
        run(io, local_headers_keep_the_socket_address(version));
    }
}

TEST_CASE("accept_proxy closes sockets with a bad header and relays nothing of them",
          "[proxy_protocol]") {
    asio::io_context io;
    run(io, bad_headers_are_refused());
}

TEST_CASE("accept_proxy closes silent clients after auth_timeout within max_pending",
          "[proxy_protocol]") {
    asio::io_context io;
    run(io, silent_clients_time_out());
}

TEST_CASE("send_proxy writes the header before a proxy's first byte", "[proxy_protocol]") {
    for (auto version : {sc::proxy_version::v1, sc::proxy_version::v2})
        for (bool chained : {false, true}) {
            INFO("v" << (version == sc::proxy_version::v1 ? 1 : 2) << " chained " << chained);
            asio::io_context io;
            run(io, proxy_sends_for_each_a(version, chained));
        }
}

TEST_CASE("send_proxy on a proxy's B goes before B's verifier", "[proxy_protocol]") {
    asio::io_context io;
    run(io, header_precedes_the_verifier());
}

TEST_CASE("send_proxy on a side dialed up front goes when the pair forms", "[proxy_protocol]") {
    asio::io_context io;
    run(io, up_front_side_gets_it_at_pairing());
}

TEST_CASE("PROXY options that do not fit a side stop the start", "[proxy_protocol]") {
    asio::io_context io;
    run(io, options_that_do_not_fit());
}
