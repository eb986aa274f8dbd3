#include <socket_connector/connector.hpp>

#include <filesystem>

#include <asio/local/stream_protocol.hpp>

#include "support/net.hpp"

using namespace test_support;
using local = asio::local::stream_protocol;
using local_connector = sc::basic_connector<local>;

namespace {

std::string socket_path(const char* name) {
    auto path = std::filesystem::temp_directory_path() /
                fmt::format("sc-{}-{}.sock", name, static_cast<long>(::getpid()));
    std::filesystem::remove(path);
    return path.string();
}

asio::awaitable<void> local_send(local::socket& from, const std::vector<char>& data) {
    co_await asio::async_write(from, asio::buffer(data), asio::use_awaitable);
    from.shutdown(local::socket::shutdown_send);
}

asio::awaitable<std::vector<char>> local_read(local::socket& to) {
    std::vector<char> got;
    char buf[65536];
    for (;;) {
        auto [ec, n] = co_await to.async_read_some(asio::buffer(buf), use_tuple);
        got.insert(got.end(), buf, buf + n);
        if (ec == asio::error::eof) co_return got;
        if (ec) throw std::system_error(ec);
    }
}

/// Sends `data` from one end (then EOF) while the other end reads it all.
asio::awaitable<std::vector<char>> local_round(local::socket& from, local::socket& to,
                                               const std::vector<char>& data) {
    using namespace asio::experimental::awaitable_operators;
    co_return co_await (local_send(from, data) && local_read(to));
}

asio::awaitable<void> unix_sockets_relay(std::string path_a, std::string path_b) {
    auto ex = co_await asio::this_coro::executor;
    local_connector::options_type o;
    o.a.endpoint = local::endpoint(path_a);
    o.b.endpoint = local::endpoint(path_b);
    auto c = co_await sc::server_to_server<local>(ex, std::move(o));
    CHECK(c->side_a_port() == 0);
    CHECK(c->side_a_endpoint().path() == path_a);
    local::socket a(ex);
    co_await a.async_connect(local::endpoint(path_a), asio::use_awaitable);
    local::socket b(ex);
    co_await b.async_connect(local::endpoint(path_b), asio::use_awaitable);
    auto data = pattern(11, 3u << 20);
    auto got = co_await local_round(a, b, data);
    CHECK(got.size() == data.size());
    CHECK(checksum(got) == checksum(data));
    auto reply = pattern(12, 1u << 20);
    auto back = co_await local_round(b, a, reply);
    CHECK(checksum(back) == checksum(reply));
    CHECK(c->stats().bytes_a_to_b == data.size());
    CHECK(c->stats().bytes_b_to_a == reply.size());
    c->close();
    co_await c->wait_closed();
}

/// A proxy on Unix sockets: B's PROXY header names no TCP address (v1 UNKNOWN, v2 LOCAL); an
/// A with a header of its own hands its client on.
asio::awaitable<void> unix_proxy_headers(std::string path_a, std::string path_b,
                                         sc::proxy_version version, bool a_sends_one) {
    auto ex = co_await asio::this_coro::executor;
    local::acceptor target(ex, local::endpoint(path_b));
    local_connector::options_type o;
    o.a.endpoint = local::endpoint(path_a);
    o.a.accept_proxy = a_sends_one;
    o.b.endpoint = local::endpoint(path_b);
    o.b.send_proxy = version;
    o.multi = true;
    auto c = co_await sc::server_to_socket<local>(ex, std::move(o));
    local::socket a(ex);
    co_await a.async_connect(local::endpoint(path_a), asio::use_awaitable);
    const tcp::endpoint client{asio::ip::make_address("192.0.2.5"), 4000};
    const tcp::endpoint reached{asio::ip::make_address("192.0.2.1"), 80};
    std::string expected = sc::proxy_header_local(version);
    if (a_sends_one) {
        const auto head = sc::proxy_header_v1(client, reached);
        co_await asio::async_write(a, asio::buffer(head), asio::use_awaitable);
        expected = sc::proxy_header_text(version, client, reached);
    }
    auto b = co_await target.async_accept(asio::use_awaitable);
    auto data = pattern(13, 100000);
    auto got = co_await local_round(a, b, data);
    REQUIRE(got.size() == expected.size() + data.size());
    CHECK(std::string(got.data(), expected.size()) == expected);
    CHECK(checksum(std::span<const char>(got).subspan(expected.size())) == checksum(data));
    c->close();
    co_await c->wait_closed();
}

} // namespace

TEST_CASE("a proxy on Unix sockets sends PROXY headers naming no address, or A's client",
          "[local][proxy_protocol]") {
    for (auto version : {sc::proxy_version::v1, sc::proxy_version::v2})
        for (bool a_sends_one : {false, true}) {
            auto path_a = socket_path("pa");
            auto path_b = socket_path("pb");
            asio::io_context io;
            run(io, unix_proxy_headers(path_a, path_b, version, a_sends_one));
            std::filesystem::remove(path_a);
            std::filesystem::remove(path_b);
        }
}

TEST_CASE("Unix-domain sockets can be both sides of a connector", "[local]") {
    auto path_a = socket_path("a");
    auto path_b = socket_path("b");
    asio::io_context io;
    run(io, unix_sockets_relay(path_a, path_b));
    std::filesystem::remove(path_a);
    std::filesystem::remove(path_b);
}
