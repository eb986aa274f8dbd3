// Closing from threads that are not the connector's: close() from a plain thread while every pair
// relays both ways, and next_connection(), connection::close() and wait_closed() from another
// io_context's thread. (See support/threads.hpp for how the tests use the pool.)
#include <socket_connector/connector.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <fmt/format.h>

#include "support/net.hpp"
#include "support/threads.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

/// `streaming_clients` (both clients send and read until the relay closes them), connecting
/// the two clients first.
asio::awaitable<void> endless_clients(unsigned short port_a, unsigned short port_b,
                                      endless_pair& r) {
    try {
        auto a = co_await connect_to(port_a);
        auto b = co_await connect_to(port_b);
        // Named, not a temporary in the co_await: g++ 12 destroys such temporaries twice.
        auto stream = streaming_clients(std::move(a), std::move(b), r);
        co_await std::move(stream);
    } catch (const std::exception& e) {
        r.error = e.what();
    }
}

asio::awaitable<void> close_from_another_thread(asio::any_io_executor pool) {
    sc::options o = loopback_options();
    o.timeout = sc::no_timeout;
    auto c = co_await sc::server_to_server(pool, std::move(o));
    const std::size_t pairs = 8;
    std::vector<endless_pair> results(pairs);
    // Started, not awaited yet: they end only when the connector closes their sockets.
    task_group clients(co_await asio::this_coro::executor);
    for (auto& r : results)
        clients.spawn(pool, endless_clients(c->side_a_port(), c->side_b_port(), r));
    const std::uint64_t enough = pairs * (256u << 10);
    bool flowing = co_await eventually(
        [&] {
            auto s = c->stats();
            return c->connections() == pairs && s.bytes_a_to_b >= enough &&
                   s.bytes_b_to_a >= enough;
        },
        30s);
    CHECK(flowing);
    // From a thread that runs nothing of the connector's, while every pair relays both ways.
    std::thread closer([c] { c->close(); });
    closer.join();
    co_await c->wait_closed();
    CHECK(c->closed());
    CHECK(c->connections() == 0);
    CHECK(c->pending_a() == 0);
    CHECK(c->pending_b() == 0);
    auto ended = clients.wait();
    co_await std::move(ended);
    auto s = c->stats();
    CHECK(s.connections_total == pairs);
    std::uint64_t at_b = 0;
    std::uint64_t at_a = 0;
    for (std::size_t i = 0; i < pairs; ++i) {
        auto& r = results[i];
        INFO("pair " << i << ": " << r.error << " A: " << r.at_a.error.message()
                     << " B: " << r.at_b.error.message());
        CHECK(r.error.empty());
        // Every client saw its stream end (EOF or reset) and what it got was intact.
        CHECK(r.at_a.error);
        CHECK(r.at_b.error);
        CHECK(r.at_a.intact);
        CHECK(r.at_b.intact);
        CHECK(r.sent_a > 0);
        CHECK(r.sent_b > 0);
        at_b += r.at_b.bytes;
        at_a += r.at_a.bytes;
    }
    // What the clients got was written by the relay (some of what it wrote may have been lost
    // with the sockets it closed).
    CHECK(at_b > 0);
    CHECK(at_a > 0);
    CHECK(at_b <= s.bytes_a_to_b);
    CHECK(at_a <= s.bytes_b_to_a);
}

/// An io_context on a thread of its own, for code that uses the connector from outside its pool.
struct other_thread {
    asio::io_context io;
    asio::executor_work_guard<asio::io_context::executor_type> work = asio::make_work_guard(io);
    std::thread thread{[this] { io.run_for(90s); }};
    ~other_thread() {
        work.reset();
        io.stop();
        thread.join();
    }
};

struct consumer_report {
    std::vector<std::uint64_t> ids;
    std::vector<std::uint64_t> kept_ids;
    std::vector<std::uint64_t> kept_a_to_b, kept_b_to_a;
    bool all_closed = true;
    bool connector_closed = false;
    std::string error;
    std::atomic<bool> done{false};
};

/// On the other thread: takes each connection as it forms, closes the even ones at once, and
/// once the connector has closed records what the odd ones relayed.
asio::awaitable<void> consume(std::shared_ptr<sc::connector> c, consumer_report& r) {
    try {
        std::vector<std::shared_ptr<sc::connection>> kept;
        for (;;) {
            auto conn = co_await c->next_connection();
            if (!conn) break;
            r.ids.push_back(conn->id());
            if (conn->id() % 2 == 0) conn->close(); // from this thread, while its clients relay
            kept.push_back(conn);
        }
        for (auto& conn : kept) {
            co_await conn->wait_closed();
            r.all_closed = r.all_closed && conn->closed();
            if (conn->id() % 2 == 1) {
                r.kept_ids.push_back(conn->id());
                r.kept_a_to_b.push_back(conn->bytes_a_to_b());
                r.kept_b_to_a.push_back(conn->bytes_b_to_a());
            }
        }
        co_await c->wait_closed();
        r.connector_closed = c->closed();
    } catch (const std::exception& e) {
        r.error = e.what();
    }
    r.done = true;
}

struct formed_pair {
    bool ok = false;
    std::string error;
};

/// Odd pairs relay a tagged pattern each way; even ones stream until the consumer closes them.
asio::awaitable<void> formed_pair_traffic(tcp::socket a, tcp::socket b, std::uint64_t id,
                                          formed_pair& r) {
    try {
        if (id % 2 == 1) {
            auto out_a = tagged(8000 + id, 100000 + 1000 * id);
            auto out_b = tagged(9000 + id, 60000 + 3000 * id);
            auto [got_a, got_b] = co_await (trade(a, out_a) && trade(b, out_b));
            r.error = got_a.error + got_b.error;
            r.ok =
                r.error.empty() && tag_of(got_b.got) == 8000 + id && tag_of(got_a.got) == 9000 + id;
        } else {
            auto [sent_a, at_a, sent_b, at_b] =
                co_await (send_forever(a) && read_stream(a) && send_forever(b) && read_stream(b));
            r.error =
                fmt::format("A read {} ({}), B read {} ({}), sent {} and {}", at_a.bytes,
                            at_a.error.message(), at_b.bytes, at_b.error.message(), sent_a, sent_b);
            r.ok = at_a.intact && at_b.intact && at_a.error && at_b.error;
        }
    } catch (const std::exception& e) {
        r.error = e.what();
    }
}

asio::awaitable<void> connections_from_another_thread(asio::any_io_executor pool,
                                                      asio::io_context& elsewhere,
                                                      consumer_report& report) {
    sc::options o = loopback_options();
    o.timeout = sc::no_timeout;
    auto c = co_await sc::server_to_server(pool, std::move(o));
    asio::co_spawn(elsewhere, consume(c, report), asio::detached);
    // Pairs formed one at a time, so pair i is connection i.
    const std::uint64_t pairs = 12;
    std::vector<formed_pair> results(pairs);
    task_group traffic(co_await asio::this_coro::executor);
    for (std::uint64_t id = 1; id <= pairs; ++id) {
        auto a = co_await connect_to(c->side_a_port());
        auto b = co_await connect_to(c->side_b_port());
        bool formed = co_await eventually([&] { return c->stats().connections_total == id; });
        REQUIRE(formed);
        traffic.spawn(pool, formed_pair_traffic(std::move(a), std::move(b), id, results[id - 1]));
    }
    auto ended = traffic.wait();
    co_await std::move(ended);
    for (std::uint64_t id = 1; id <= pairs; ++id) {
        INFO("pair " << id << ": " << results[id - 1].error);
        CHECK(results[id - 1].ok);
    }
    CHECK(co_await eventually([&] { return c->connections() == 0; }));
    c->close();
    bool consumed = co_await eventually([&] { return report.done.load(); });
    REQUIRE(consumed);
    INFO(report.error);
    CHECK(report.error.empty());
    std::vector<std::uint64_t> in_order;
    for (std::uint64_t id = 1; id <= pairs; ++id)
        in_order.push_back(id);
    CHECK(report.ids == in_order);
    CHECK(report.all_closed);
    CHECK(report.connector_closed);
    REQUIRE(report.kept_ids.size() == pairs / 2);
    for (std::size_t i = 0; i < report.kept_ids.size(); ++i) {
        auto id = report.kept_ids[i];
        CHECK(report.kept_a_to_b[i] == tagged(8000 + id, 100000 + 1000 * id).size());
        CHECK(report.kept_b_to_a[i] == tagged(9000 + id, 60000 + 3000 * id).size());
    }
}

} // namespace

TEST_CASE("close() from a thread outside the pool ends every relaying pair", "[threads]") {
    asio::io_context io(pool_threads);
    run_on_pool(io, close_from_another_thread(io.get_executor()));
}

TEST_CASE("next_connection, close and wait_closed work from another io_context's thread",
          "[threads]") {
    other_thread elsewhere; // outlives `io`: handlers on `io` may hold work on it
    consumer_report report;
    asio::io_context io(pool_threads);
    run_on_pool(io, connections_from_another_thread(io.get_executor(), elsewhere.io, report));
}
