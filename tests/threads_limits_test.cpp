// max_connections, idle_timeout and drain() with the pairs spread over 4 threads, drain() called
// from a thread outside the pool. (See support/threads.hpp for how the tests use the pool.)
#include <socket_connector/connector.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "support/net.hpp"
#include "support/threads.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

/// Reads until the peer closes; true if it closed (FIN or reset) having sent nothing.
asio::awaitable<bool> closed_silently(tcp::socket& socket) {
    auto end = co_await read_until_closed(socket);
    co_return end.closed&& end.bytes.empty();
}

struct idle_pair {
    bool a_closed = false, b_closed = false;
};

asio::awaitable<void> idle_clients(tcp::socket a, tcp::socket b, idle_pair& r) {
    try {
        auto [a_closed, b_closed] = co_await (closed_silently(a) && closed_silently(b));
        r.a_closed = a_closed;
        r.b_closed = b_closed;
    } catch (const std::exception&) {
    }
}

/// max_connections, idle_timeout and drain() with the pairs spread over the pool: the
/// connection strands' idle timers, the accept loops' refusals and a drain from a thread
/// outside the pool.
asio::awaitable<void> limits_and_drain(asio::any_io_executor pool) {
    // Long enough that the silent pairs outlive the forming of the last pair and the refusal
    // below on a loaded machine (with 1 s, an ASan run under CI's load lost one of them first).
    const auto idle = 3s;
    sc::options o = loopback_options();
    o.timeout = sc::no_timeout;
    o.max_connections = 6;
    o.idle_timeout = idle;
    o.logger = counting_logger(std::make_shared<counting_log>());
    auto c = co_await sc::server_to_server(pool, std::move(o));
    const std::uint64_t streaming = 4;
    const std::uint64_t silent = 2;
    std::vector<endless_pair> streams(streaming);
    std::vector<idle_pair> idlers(silent);
    task_group clients(co_await asio::this_coro::executor);
    // Pairs formed one at a time: the first four stream both ways, the last two stay silent.
    for (std::uint64_t i = 1; i <= streaming + silent; ++i) {
        auto a = co_await connect_to(c->side_a_port());
        auto b = co_await connect_to(c->side_b_port());
        bool formed = co_await eventually([&] { return c->stats().connections_total == i; });
        REQUIRE(formed);
        if (i <= streaming)
            clients.spawn(pool, streaming_clients(std::move(a), std::move(b), streams[i - 1]));
        else
            clients.spawn(pool,
                          idle_clients(std::move(a), std::move(b), idlers[i - streaming - 1]));
    }
    // Six pairs live: a seventh socket is refused at once (long before the silent pairs idle out).
    CHECK(c->connections() == streaming + silent);
    auto extra = co_await connect_to(c->side_a_port());
    bool refused = co_await closed_silently(extra);
    CHECK(refused);
    CHECK(c->stats().sockets_refused == 1);
    // The silent pairs are closed by idle_timeout; the streaming ones are not.
    CHECK(co_await eventually([&] { return c->connections() == streaming; }, 15s));
    // The streaming pairs have now outlived the silent ones' idle period; one more passes.
    co_await pause(idle + 500ms);
    CHECK(c->connections() == streaming);
    // Drained from a thread outside the pool: the streams never end, so the limit closes them.
    auto started = std::chrono::steady_clock::now();
    std::thread drainer([c] { c->drain(300ms); });
    drainer.join();
    co_await c->wait_closed();
    auto took = std::chrono::steady_clock::now() - started;
    CHECK(took >= 250ms);
    CHECK(took < 10s);
    auto ended = clients.wait();
    co_await std::move(ended);
    CHECK(c->closed());
    CHECK(c->connections() == 0);
    for (auto& r : idlers) {
        CHECK(r.a_closed);
        CHECK(r.b_closed);
    }
    for (std::size_t i = 0; i < streams.size(); ++i) {
        auto& r = streams[i];
        INFO("streaming pair " << i << ": " << r.error << " A: " << r.at_a.error.message()
                               << " B: " << r.at_b.error.message());
        CHECK(r.error.empty());
        CHECK(r.at_a.intact);
        CHECK(r.at_b.intact);
        CHECK(r.at_a.error);
        CHECK(r.at_b.error);
        // They streamed through both idle periods.
        CHECK(r.at_a.bytes > 0);
        CHECK(r.at_b.bytes > 0);
    }
    auto s = c->stats();
    CHECK(s.connections_total == streaming + silent);
    CHECK(s.sockets_refused == 1);
}

} // namespace

TEST_CASE("max_connections, idle_timeout and drain() from another thread on 4 threads",
          "[threads]") {
    asio::io_context io(pool_threads);
    run_on_pool(io, limits_and_drain(io.get_executor()));
}
