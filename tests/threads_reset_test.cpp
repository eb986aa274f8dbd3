// Resets mid-transfer on 4 threads: each closes its own pair and no other, every byte before
// it is intact, and the connector keeps serving. (See support/threads.hpp for how the tests use
// the pool.)
#include <socket_connector/connector.hpp>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "support/net.hpp"
#include "support/threads.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

enum class fate { healthy, a_resets, b_resets };

struct reset_pair {
    bool ok = false;
    std::string detail;
};

/// Resets `socket` (linger 0) once it has read `after` bytes of the stream, checking them.
asio::awaitable<stream_end> reset_after(tcp::socket& socket, std::uint64_t after) {
    auto end = co_await read_stream(socket, after);
    socket.set_option(asio::socket_base::linger(true, 0));
    socket.close();
    co_return end;
}

asio::awaitable<void> reset_traffic(tcp::socket a, tcp::socket b, fate f, std::uint64_t seed,
                                    reset_pair& r) {
    try {
        if (f == fate::healthy) {
            auto out_a = tagged(seed, 256u << 10);
            auto out_b = tagged(seed + 1, 128u << 10);
            auto [got_a, got_b] = co_await (trade(a, out_a) && trade(b, out_b));
            r.detail = got_a.error + got_b.error;
            r.ok = r.detail.empty() && tag_of(got_b.got) == seed && tag_of(got_a.got) == seed + 1;
            co_return;
        }
        tcp::socket& victim = f == fate::a_resets ? a : b;
        tcp::socket& other = f == fate::a_resets ? b : a;
        // The other side streams at the one that resets, and must see its own end promptly.
        auto [sent, at_other, at_victim] =
            co_await (send_forever(other) && read_stream(other) && reset_after(victim, 256u << 10));
        r.detail = fmt::format("sent {}, the other saw {} ({}), the resetting one read {}", sent,
                               at_other.bytes, at_other.error.message(), at_victim.bytes);
        r.ok = at_victim.intact && at_victim.bytes >= (256u << 10) && at_other.intact &&
               at_other.error && at_other.bytes == 0;
    } catch (const std::exception& e) {
        r.detail = e.what();
    }
}

asio::awaitable<void> resets_mid_transfer(asio::any_io_executor pool) {
    sc::options o = loopback_options();
    o.timeout = sc::no_timeout;
    auto c = co_await sc::server_to_server(pool, std::move(o));
    const std::uint64_t pairs = 12;
    std::vector<reset_pair> results(pairs);
    task_group traffic(co_await asio::this_coro::executor);
    // Pairs formed one at a time, so each client pair knows it is a pair; then all run at once.
    std::vector<std::pair<tcp::socket, tcp::socket>> formed;
    for (std::uint64_t i = 1; i <= pairs; ++i) {
        auto a = co_await connect_to(c->side_a_port());
        auto b = co_await connect_to(c->side_b_port());
        bool ok = co_await eventually([&] { return c->stats().connections_total == i; });
        REQUIRE(ok);
        formed.emplace_back(std::move(a), std::move(b));
    }
    for (std::uint64_t i = 0; i < pairs; ++i) {
        auto f = i % 3 == 0 ? fate::healthy : i % 3 == 1 ? fate::a_resets : fate::b_resets;
        traffic.spawn(pool, reset_traffic(std::move(formed[i].first), std::move(formed[i].second),
                                          f, 12000 + 2 * i, results[i]));
    }
    auto ended = traffic.wait();
    co_await std::move(ended);
    for (std::uint64_t i = 0; i < pairs; ++i) {
        INFO("pair " << i << ": " << results[i].detail);
        CHECK(results[i].ok);
    }
    CHECK(co_await eventually([&] { return c->connections() == 0; }));
    // The connector keeps serving after the resets.
    CHECK(!c->closed());
    received at_a;
    received at_b;
    co_await rendezvous_pair(c->side_a_port(), c->side_b_port(), 12500, 300000, 12501, 200000, at_a,
                             at_b);
    CHECK(at_a.error.empty());
    CHECK(at_b.tag == 12500);
    CHECK(at_a.tag == 12501);
    CHECK(c->stats().connections_total == pairs + 1);
    c->close();
    co_await c->wait_closed();
}

} // namespace

TEST_CASE("resets mid-transfer on 4 threads close their own pairs and no other", "[threads]") {
    asio::io_context io(pool_threads);
    run_on_pool(io, resets_mid_transfer(io.get_executor()));
}
