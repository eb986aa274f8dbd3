// `socket-connector --accept-proxy-X / --send-proxy-X` against HAProxy: HAProxy's send-proxy
// (v1) or send-proxy-v2 into our --accept-proxy-a, and our --send-proxy-b v1|v2 into HAProxy's
// accept-proxy, whose own send-proxy then names the client our header named; 1 MiB each way
// with checksums. And what the command does with a peer that sends no header.
#include <fcntl.h>

#include <filesystem>
#include <fstream>

#include "support/programs.hpp"
#include "support/proxy.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

/// A listening socket HAProxy inherits (`bind fd@N`): the port is the system's choice, known
/// before HAProxy starts, and nothing can take it meanwhile.
int inheritable(tcp::acceptor& acceptor) {
    const int fd = acceptor.native_handle();
    ::fcntl(fd, F_SETFD, ::fcntl(fd, F_GETFD) & ~FD_CLOEXEC);
    return fd;
}

/// client -> HAProxy fe_clients (send-proxy[-v2]) -> our relay (--accept-proxy-a,
/// --send-proxy-b) -> HAProxy fe_relayed (accept-proxy; send-proxy) -> sink. The sink's header
/// names the client and the address it reached on HAProxy only if each header on the way was
/// read as it was meant.
asio::awaitable<void> through_haproxy(bool v2) {
    auto ex = co_await asio::this_coro::executor;
    auto fe_clients = loopback_acceptor(ex);
    auto fe_relayed = loopback_acceptor(ex);
    auto sink = loopback_acceptor(ex);
    const auto version = v2 ? "v2" : "v1";
    auto cli = start_cli({"server-to-socket", "--multi", "--a", "127.0.0.1:0", "--accept-proxy-a",
                          "--b", fmt::format("127.0.0.1:{}", fe_relayed.local_endpoint().port()),
                          "--send-proxy-b", version, "--timeout", "0", "--verbose", "--stats"});
    auto relay_port = co_await started_port(*cli, 'A');
    auto config = temp_file("haproxy.cfg",
                            fmt::format(R"(global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe_clients
    bind fd@{}
    default_backend to_relay
backend to_relay
    server relay 127.0.0.1:{} {}
frontend fe_relayed
    bind fd@{} accept-proxy
    default_backend to_sink
backend to_sink
    server sink 127.0.0.1:{} send-proxy
)",
                                        inheritable(fe_clients), relay_port,
                                        v2 ? "send-proxy-v2" : "send-proxy",
                                        inheritable(fe_relayed), sink.local_endpoint().port()));
    auto haproxy =
        std::make_unique<child_process>(std::vector<std::string>{"haproxy", "-db", "-f", config});
    const auto entry = fe_clients.local_endpoint();
    fe_clients.close(); // HAProxy has its own copies now
    fe_relayed.close();

    tcp::socket client(ex);
    co_await client.async_connect(entry, asio::use_awaitable);
    auto up = pattern(41, 1u << 20);
    auto down = pattern(42, 1u << 20);
    auto serve = [&]() -> asio::awaitable<std::vector<char>> {
        auto s = co_await sink.async_accept(asio::use_awaitable);
        auto got = co_await receive_header(s);
        CHECK(got.parsed.header.version == 1); // HAProxy's send-proxy
        CHECK(got.parsed.header.source == client.local_endpoint());
        CHECK(got.parsed.header.destination == entry);
        auto rest = co_await send_and_receive(s, down);
        got.after.insert(got.after.end(), rest.begin(), rest.end());
        co_return got.after;
    };
    auto [at_client, at_sink] = co_await (send_and_receive(client, up) && serve());
    INFO("relay: " << cli->err() << "\nhaproxy: " << haproxy->err());
    CHECK(at_sink.size() == up.size());
    CHECK(checksum(at_sink) == checksum(up));
    CHECK(at_client.size() == down.size());
    CHECK(checksum(at_client) == checksum(down));
    // Our relay saw the client through HAProxy's header.
    CHECK(cli->err().find(fmt::format("sent a PROXY header for 127.0.0.1:{}",
                                      client.local_endpoint().port())) != std::string::npos);
    cli->signal(SIGTERM);
    CHECK(co_await exit_of(*cli) == 0);
    CHECK(stats_field(stats_line(cli->out()), "sockets_refused") == 0);
    haproxy->signal(SIGTERM);
    co_await exit_of(*haproxy);
    std::filesystem::remove(config);
}

/// A plain client, garbage and a silent client on an --accept-proxy-a port: each closed with a
/// logged reason; a client with a header then pairs.
asio::awaitable<void> peers_without_a_header() {
    auto cli =
        start_cli({"server-to-server", "--a", "127.0.0.1:0", "--b", "127.0.0.1:0",
                   "--accept-proxy-a", "--auth-timeout", "0.5", "--timeout", "0", "--stats"});
    auto port_a = co_await started_port(*cli, 'A');
    auto port_b = co_await started_port(*cli, 'B');
    auto b = co_await connect_to(port_b);
    for (std::string_view bad : {std::string_view("hello\n"), std::string_view("\x16\x03\x01")})
        co_await closed_unanswered(port_a, bad, false);
    {
        auto silent = co_await connect_to(port_a);
        const bool closed = co_await closed_within(silent, 5s);
        INFO(cli->err());
        CHECK(closed);
    }
    auto a = co_await connect_to(port_a);
    const auto head = sc::proxy_header_v2(at("198.51.100.9", 777), at("198.51.100.1", 80));
    co_await send_text(a, head, false);
    auto data = pattern(43, 100000);
    co_await send_all(a, data);
    auto got = co_await read_to_eof(b);
    CHECK(checksum(got) == checksum(data));
    b.close();
    cli->signal(SIGTERM);
    CHECK(co_await exit_of(*cli) == 0);
    INFO(cli->err());
    CHECK(cli->err().find("PROXY header: no PROXY header") != std::string::npos);
    CHECK(cli->err().find("PROXY header: none within 500 ms") != std::string::npos);
    auto stats = stats_line(cli->out());
    CHECK(stats_field(stats, "sockets_refused") == 3);
    CHECK(stats.find("\"198.51.100.9\"") != std::string::npos);
}

} // namespace

TEST_CASE("HAProxy send-proxy into --accept-proxy-a and --send-proxy-b v1 into accept-proxy",
          "[proxy_protocol][cli][interop]") {
    asio::io_context io;
    run(io, through_haproxy(false), 60s);
}

TEST_CASE("HAProxy send-proxy-v2 into --accept-proxy-a and --send-proxy-b v2 into accept-proxy",
          "[proxy_protocol][cli][interop]") {
    asio::io_context io;
    run(io, through_haproxy(true), 60s);
}

TEST_CASE("socket-connector --accept-proxy-a closes plain, garbage and silent peers and goes on",
          "[proxy_protocol][cli]") {
    asio::io_context io;
    run(io, peers_without_a_header(), 60s);
}
