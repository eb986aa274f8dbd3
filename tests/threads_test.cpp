#include <socket_connector/connector.hpp>

#include <atomic>
#include <thread>

#include "support/net.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

asio::awaitable<void> one_pair(unsigned short port_a, unsigned short port_b, std::uint64_t seed,
                               std::atomic<int>& ok) {
    auto a = co_await connect_to(port_a);
    auto b = co_await connect_to(port_b);
    // Pairs form first in, first out, but connects from several threads race: each side sends
    // its own pattern and checks that what it receives is some peer's pattern, byte for byte.
    auto out_a = pattern(seed, 512u << 10);
    auto out_b = pattern(seed + 1000, 256u << 10);
    auto [got_b, got_a] =
        co_await ((send_all(a, out_a) && read_to_eof(b)) && (send_all(b, out_b) && read_to_eof(a)));
    if (got_b.size() == out_a.size() && got_a.size() == out_b.size()) ok += 1;
}

asio::awaitable<void> many_pairs_many_threads(int pairs, std::atomic<int>& ok,
                                              std::uint64_t& a_to_b, std::uint64_t& b_to_a) {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    auto c = co_await sc::server_to_server(ex, std::move(o));
    std::vector<asio::awaitable<void>> tasks;
    auto group = one_pair(c->side_a_port(), c->side_b_port(), 1, ok);
    for (int i = 1; i < pairs; ++i)
        group = std::move(group) &&
                one_pair(c->side_a_port(), c->side_b_port(), static_cast<std::uint64_t>(i + 1), ok);
    co_await std::move(group);
    CHECK(co_await eventually([&] { return c->connections() == 0; }));
    a_to_b = c->stats().bytes_a_to_b;
    b_to_a = c->stats().bytes_b_to_a;
    c->close();
    co_await c->wait_closed();
    CHECK(c->closed());
}

} // namespace

TEST_CASE("a connector on a multi-threaded io_context relays many pairs intact", "[threads]") {
    asio::io_context io(4);
    std::atomic<int> ok{0};
    std::uint64_t a_to_b = 0;
    std::uint64_t b_to_a = 0;
    const int pairs = 40;
    std::atomic<bool> done{false};
    std::exception_ptr error;
    asio::co_spawn(io, many_pairs_many_threads(pairs, ok, a_to_b, b_to_a),
                   [&](std::exception_ptr e) {
                       error = e;
                       done = true;
                       io.stop();
                   });
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i)
        threads.emplace_back([&] { io.run_for(60s); });
    for (auto& t : threads)
        t.join();
    REQUIRE(done);
    if (error) std::rethrow_exception(error);
    CHECK(ok == pairs);
    CHECK(a_to_b == static_cast<std::uint64_t>(pairs) * (512u << 10));
    CHECK(b_to_a == static_cast<std::uint64_t>(pairs) * (256u << 10));
}
