// The socket-connector command with --threads: racing pairs relayed byte for byte, and a proxy
// that runs an event loop per thread with one set of limits. (See support/threads.hpp for how
// the tests use the pool.)
#include <socket_connector/connector.hpp>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include <asio/detached.hpp>
#include <fmt/format.h>

#include "support/net.hpp"
#include "support/threads.hpp"
#ifdef SOCKET_CONNECTOR_CLI
#include "support/programs.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

asio::awaitable<void> cli_on_threads(asio::any_io_executor pool) {
    auto cli = start_program("socket-connector",
                             {"server-to-server", "--a", "127.0.0.1:0", "--b", "127.0.0.1:0",
                              "--threads", "4", "--timeout", "0", "--stats"});
    auto port_a = co_await port_of(*cli, 'A');
    auto port_b = co_await port_of(*cli, 'B');
    const std::size_t pairs = 16;
    std::vector<received> at_a(pairs);
    std::vector<received> at_b(pairs);
    std::multiset<std::uint64_t> sent_a, sent_b;
    std::uint64_t bytes_a = 0;
    std::uint64_t bytes_b = 0;
    std::vector<asio::awaitable<void>> tasks;
    for (std::size_t i = 0; i < pairs; ++i) {
        std::size_t size_a = (200u << 10) + 333 * i;
        std::size_t size_b = (100u << 10) + 777 * i;
        sent_a.insert(13000 + i);
        sent_b.insert(14000 + i);
        bytes_a += size_a;
        bytes_b += size_b;
        tasks.push_back(rendezvous_pair(port_a, port_b, 13000 + i, size_a, 14000 + i, size_b,
                                        at_a[i], at_b[i]));
    }
    auto all = all_in_parallel(pool, std::move(tasks));
    co_await std::move(all);
    std::multiset<std::uint64_t> seen_a, seen_b;
    for (std::size_t i = 0; i < pairs; ++i) {
        INFO("pair " << i << ": " << at_a[i].error << " " << at_b[i].error);
        CHECK(at_a[i].error.empty());
        CHECK(at_b[i].error.empty());
        seen_a.insert(at_a[i].tag);
        seen_b.insert(at_b[i].tag);
    }
    CHECK(seen_b == sent_a);
    CHECK(seen_a == sent_b);
    cli->signal(SIGTERM);
    auto code = co_await exit_of(*cli, 30s);
    INFO("stderr: " << cli->err());
    CHECK(code == 0);
    auto out = cli->out();
    CHECK(out.find(fmt::format("\"bytes_a_to_b\":{}", bytes_a)) != std::string::npos);
    CHECK(out.find(fmt::format("\"bytes_b_to_a\":{}", bytes_b)) != std::string::npos);
    CHECK(out.find(fmt::format("\"connections_total\":{}", pairs)) != std::string::npos);
}

/// Echoes what one connection sends, chunk by chunk, until its end of stream.
asio::awaitable<void> echo_chunks(tcp::socket socket) {
    char buf[16384];
    for (;;) {
        auto [ec, n] = co_await socket.async_read_some(asio::buffer(buf), use_tuple);
        if (ec) co_return;
        auto [wec, m] = co_await asio::async_write(socket, asio::buffer(buf, n), use_tuple);
        if (wec) co_return;
    }
}

asio::awaitable<void> echo_server(tcp::acceptor& target) {
    auto ex = co_await asio::this_coro::executor;
    for (;;) {
        auto [ec, socket] = co_await target.async_accept(use_tuple);
        if (ec) co_return;
        asio::co_spawn(ex, echo_chunks(std::move(socket)), asio::detached);
    }
}

/// One echo round trip through a proxied client; true if the bytes came back intact.
asio::awaitable<bool> round_trip(tcp::socket& socket, std::uint64_t seed, std::size_t size) {
    auto data = pattern(seed, size);
    co_await send_all(socket, data, false); // no FIN: the pair stays open
    std::vector<char> back(size);
    auto [ec, n] = co_await asio::async_read(socket, asio::buffer(back), use_tuple);
    co_return !ec && n == size && checksum(back) == checksum(data);
}

asio::awaitable<void> proxy_client(unsigned short port, std::uint64_t seed, std::size_t size,
                                   received& r) {
    try {
        auto socket = co_await connect_to(port);
        r.tag = (co_await round_trip(socket, seed, size)) ? seed : 0;
    } catch (const std::exception& e) {
        r.error = e.what();
    }
}

/// The proxy on 4 threads is 4 event loops each accepting on the one address: every client is
/// relayed intact, the stats add up over the loops, and --max-connections holds for all of them.
asio::awaitable<void> cli_proxy_on_loops(asio::any_io_executor pool) {
    auto ex = co_await asio::this_coro::executor;
    auto target = tcp::acceptor(ex, {asio::ip::address_v4::loopback(), 0});
    asio::co_spawn(ex, echo_server(target), asio::detached);
    auto cli = start_program("socket-connector",
                             {"server-to-socket", "--a", "127.0.0.1:0", "--b",
                              fmt::format("127.0.0.1:{}", target.local_endpoint().port()),
                              "--multi", "--threads", "4", "--timeout", "0", "--max-connections",
                              "40", "--stats", "--verbose"});
    auto port = co_await port_of(*cli, 'A');
    const std::size_t clients = 32;
    std::vector<received> results(clients);
    std::vector<asio::awaitable<void>> tasks;
    std::uint64_t bytes = 0;
    for (std::size_t i = 0; i < clients; ++i) {
        std::size_t size = (96u << 10) + 517 * i;
        bytes += size;
        tasks.push_back(proxy_client(port, 31000 + i, size, results[i]));
    }
    auto all = all_in_parallel(pool, std::move(tasks));
    co_await std::move(all);
    for (std::size_t i = 0; i < clients; ++i) {
        INFO("client " << i << ": " << results[i].error);
        CHECK(results[i].tag == 31000 + i);
    }
    // Every pair has ended (each logs its close) before the limit is tried.
    auto closes = [&] {
        auto err = cli->err();
        std::size_t n = 0;
        for (auto at = err.find(" closed: "); at != std::string::npos;
             at = err.find(" closed: ", at + 1))
            ++n;
        return n;
    };
    CHECK(co_await eventually([&] { return closes() == clients; }));
    // 40 held open at once fill --max-connections over all four loops: the 41st is refused.
    std::vector<tcp::socket> held;
    for (std::size_t i = 0; i < 40; ++i) {
        held.push_back(co_await connect_to(port));
        bool echoed = co_await round_trip(held.back(), 32000 + i, 100); // once, not in CHECK
        CHECK(echoed);
    }
    auto extra = co_await connect_to(port);
    auto end = co_await read_until_closed(extra);
    CHECK(end.closed);
    CHECK(end.bytes.empty());
    held.clear();
    cli->signal(SIGTERM);
    auto code = co_await exit_of(*cli, 30s);
    auto err = cli->err();
    INFO("stderr: " << err);
    CHECK(code == 0);
    // Each loop logs with its number; with 72 connections, each of the 4 saw some.
    for (int loop = 1; loop <= 4; ++loop)
        CHECK(err.find(fmt::format("loop {}: connection 1: A 127.0.0.1:", loop)) !=
              std::string::npos);
    CHECK(err.find("refused") != std::string::npos);
    auto out = cli->out();
    CHECK(out.find(fmt::format("\"connections_total\":{}", clients + 40)) != std::string::npos);
    CHECK(out.find(fmt::format("\"bytes_a_to_b\":{}", bytes + 40 * 100)) != std::string::npos);
    CHECK(out.find(fmt::format("\"bytes_b_to_a\":{}", bytes + 40 * 100)) != std::string::npos);
    CHECK(out.find("\"sockets_refused\":1,") != std::string::npos);
}

} // namespace

TEST_CASE("socket-connector --threads 4 relays racing pairs byte for byte", "[threads][cli]") {
    asio::io_context io(pool_threads);
    run_on_pool(io, cli_on_threads(io.get_executor()));
}

TEST_CASE("socket-connector server-to-socket --multi --threads 4 proxies on a loop per thread "
          "with one set of limits",
          "[threads][cli]") {
    asio::io_context io(pool_threads);
    run_on_pool(io, cli_proxy_on_loops(io.get_executor()));
}
#endif
