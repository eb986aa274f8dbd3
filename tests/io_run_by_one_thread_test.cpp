// `options::io_run_by_one_thread`: a connector whose io_context one thread runs uses no strands. It
// must relay as a stranded one does, and its public members must stay safe from other threads.
#include <socket_connector/connector.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <asio/detached.hpp>

#include "support/net.hpp"
#include "support/programs.hpp"

using namespace test_support;

namespace {

asio::awaitable<std::thread::id> this_thread_id() {
    co_return std::this_thread::get_id();
}

/// The test runs on its own io_context (the main thread); the connector on `loop`'s thread.
asio::awaitable<void>
a_one_thread_proxy_relays_and_is_driven_from_another_thread(asio::any_io_executor loop) {
    auto ex = co_await asio::this_coro::executor;
    // Sizes around the 128-byte first receive, and big ones that take many reads.
    const std::vector<std::size_t> sizes = {1,     127,   128,     129,    1000, 4096,
                                            65536, 70001, 1 << 20, 300000, 14,   256};
    const std::size_t clients = sizes.size() * 2;
    auto target = loopback_acceptor(ex);
    log_capture log;
    std::atomic<std::size_t> joined_on_loop{0};
    std::atomic<std::size_t> joined_elsewhere{0};
    sc::options o = loopback_options();
    o.multi = true;
    o.io_run_by_one_thread = true;
    o.timeout = sc::no_timeout;
    o.verbose = true;
    o.logger = log.logger();
    o.b.endpoint = target.local_endpoint();
    const std::thread::id loop_id =
        co_await asio::co_spawn(loop, this_thread_id(), asio::use_awaitable);
    o.before_joining = [&](sc::connection&) {
        ++(std::this_thread::get_id() == loop_id ? joined_on_loop : joined_elsewhere);
    };
    auto c = co_await sc::server_to_socket(loop, std::move(o));
    asio::co_spawn(ex, echo_each(target, clients), asio::detached);
    std::vector<client_result> results(clients);
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < clients; ++i) {
        auto size = sizes[i % sizes.size()];
        total += size;
        asio::co_spawn(ex, echo_client(c->side_a_port(), 900 + i, size, results[i]),
                       asio::detached);
    }
    // stats() read from this thread while the loop relays.
    std::uint64_t seen = 0;
    bool all_done = co_await eventually([&] {
        seen = std::max<std::uint64_t>(seen, c->stats().connections_total);
        for (auto& r : results)
            if (!r.done) return false;
        return true;
    });
    REQUIRE(all_done);
    for (std::size_t i = 0; i < clients; ++i) {
        INFO("client " << i << ", " << sizes[i % sizes.size()] << " bytes");
        CHECK(results[i].intact);
    }
    CHECK(seen <= clients);
    bool all_closed = co_await eventually([&] { return c->connections() == 0; });
    CHECK(all_closed);
    auto s = c->stats();
    CHECK(s.connections_total == clients);
    CHECK(s.bytes_a_to_b == total);
    CHECK(s.bytes_b_to_a == total);
    CHECK(s.sockets_refused == 0);
    CHECK(joined_on_loop == clients);
    CHECK(joined_elsewhere == 0);
    // One more pair, held open; drain() from this thread lets it finish, then the connector
    // closes.
    auto held = co_await connect_to(c->side_a_port());
    auto backend = co_await target.async_accept(asio::use_awaitable);
    bool one_live = co_await eventually([&] { return c->connections() == 1; });
    CHECK(one_live);
    c->drain(10s);
    auto data = pattern(31, 5000);
    co_await send_all(held, data); // then FIN
    auto got = co_await read_to_eof(backend, data.size());
    CHECK(checksum(got) == checksum(data));
    co_await send_all(backend, data);
    auto back = co_await read_to_eof(held, data.size());
    CHECK(checksum(back) == checksum(data));
    co_await c->wait_closed();
    CHECK(c->connections() == 0);
    CHECK(log.contains("connection " + std::to_string(clients + 1) + ": A 127.0.0.1:"));
}

asio::awaitable<void>
a_one_thread_rendezvous_keeps_early_bytes_times_out_and_closes(asio::any_io_executor loop) {
    sc::options o = loopback_options();
    o.io_run_by_one_thread = true;
    o.timeout = sc::no_timeout;
    o.idle_timeout = 300ms;
    o.a.auth = sc::token_verifier("s3cret");
    auto c = co_await sc::server_to_server(loop, std::move(o));
    // A authenticates and sends before any B is there: the bytes wait, then are relayed.
    auto a = co_await connect_to(c->side_a_port());
    auto early = pattern(5, 3000);
    co_await send_text(a, "s3cret\n", false);
    co_await send_all(a, early, false);
    bool waiting = co_await eventually([&] { return c->pending_a() == 1; });
    CHECK(waiting);
    auto b = co_await connect_to(c->side_b_port());
    auto got = co_await read_exactly(b, early.size());
    CHECK(got.size() == early.size());
    CHECK(checksum(std::span<const char>(got.data(), got.size())) == checksum(early));
    // Nothing more either way: the idle timer (on the loop, no strand) closes the pair.
    auto a_end = co_await read_until_closed(a);
    auto b_end = co_await read_until_closed(b);
    CHECK(a_end.closed);
    CHECK(b_end.closed);
    CHECK(a_end.bytes.empty());
    CHECK(b_end.bytes.empty());
    // A wrong token is refused; a second pair is closed by close() from this thread.
    auto wrong = co_await connect_to(c->side_a_port());
    co_await send_text(wrong, "nope\n", false);
    auto refused = co_await read_until_closed(wrong);
    CHECK(refused.closed);
    auto a2 = co_await connect_to(c->side_a_port());
    co_await send_text(a2, "s3cret\n", false);
    auto b2 = co_await connect_to(c->side_b_port());
    bool paired = co_await eventually([&] { return c->connections() == 1; });
    CHECK(paired);
    c->close();
    co_await c->wait_closed();
    auto a2_end = co_await read_until_closed(a2);
    auto b2_end = co_await read_until_closed(b2);
    CHECK(a2_end.closed);
    CHECK(b2_end.closed);
    auto s = c->stats();
    CHECK(s.connections_total == 2);
    CHECK(s.auth_failures == 1);
    CHECK(s.bytes_a_to_b == early.size());
    CHECK(s.bytes_b_to_a == 0);
}

} // namespace

TEST_CASE(
    "a proxy with io_run_by_one_thread relays every client byte for byte on its loop's thread and "
    "takes stats(), drain() and wait_closed() from another thread",
    "[io_run_by_one_thread]") {
    asio::io_context io;
    loop_thread loop; // after io: its thread stops before io goes
    run(io, a_one_thread_proxy_relays_and_is_driven_from_another_thread(loop.executor()), 60s);
}

TEST_CASE("a rendezvous with io_run_by_one_thread authenticates, keeps early bytes, closes idle "
          "pairs and "
          "takes close() from another thread",
          "[io_run_by_one_thread]") {
    asio::io_context io;
    loop_thread loop; // after io: its thread stops before io goes
    run(io, a_one_thread_rendezvous_keeps_early_bytes_times_out_and_closes(loop.executor()), 30s);
}
