// `run_yielding`: runs an io_context as run() does (every handler, stop, running out of work,
// exceptions), yielding its CPU before it waits, with and without its adaptive spin; the spin's
// budget grows and shrinks as documented; a io_run_by_one_thread proxy relays on it byte for byte.
#include <socket_connector/run.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include "support/net.hpp"
#include "support/programs.hpp"

using namespace test_support;

namespace {

/// Runs `work` on a thread of its own and waits at most `deadline` for it to return; a call
/// that hangs fails the whole run (the thread cannot be taken back), rather than hanging it.
void returns_within(std::function<void()> work, std::chrono::seconds deadline) {
    std::packaged_task<void()> task(std::move(work));
    auto done = task.get_future();
    std::thread thread(std::move(task));
    if (done.wait_for(deadline) != std::future_status::ready) {
        std::fprintf(stderr, "run_test: run_yielding did not return within %lld s\n",
                     static_cast<long long>(deadline.count()));
        std::abort();
    }
    thread.join();
    done.get(); // what it threw
}

/// Posts the next of `left` handlers from each one, so that one is ready at a time.
void post_chain(asio::io_context& io, int left, int& ran) {
    asio::post(io, [&io, left, &ran] {
        ++ran;
        if (left > 1) post_chain(io, left - 1, ran);
    });
}

/// Clients of all sizes through a io_run_by_one_thread proxy whose loop runs on run_yielding.
asio::awaitable<void> a_proxy_on_a_yielding_loop_relays_every_byte(asio::any_io_executor loop) {
    auto ex = co_await asio::this_coro::executor;
    const std::vector<std::size_t> sizes = {1, 127, 128, 129, 5000, 65536, 1 << 20, 300001};
    const std::size_t clients = sizes.size() * 3;
    auto target = loopback_acceptor(ex);
    sc::options o = proxy_options(target);
    o.io_run_by_one_thread = true;
    o.timeout = sc::no_timeout;
    auto c = co_await sc::server_to_socket(loop, std::move(o));
    asio::co_spawn(ex, echo_each(target, clients), asio::detached);
    std::vector<client_result> results(clients);
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < clients; ++i) {
        total += sizes[i % sizes.size()];
        asio::co_spawn(ex,
                       echo_client(c->side_a_port(), 700 + i, sizes[i % sizes.size()], results[i]),
                       asio::detached);
    }
    bool all_done = co_await all_finished(results);
    REQUIRE(all_done);
    for (std::size_t i = 0; i < clients; ++i) {
        INFO("client " << i << ", " << sizes[i % sizes.size()] << " bytes");
        CHECK(results[i].intact);
    }
    bool all_closed = co_await eventually([&] { return c->connections() == 0; });
    CHECK(all_closed);
    auto s = c->stats();
    CHECK(s.connections_total == clients);
    CHECK(s.bytes_a_to_b == total);
    CHECK(s.bytes_b_to_a == total);
    c->close();
    co_await c->wait_closed();
}

} // namespace

TEST_CASE("run_yielding runs every handler and timer, counts them and returns once out of work",
          "[run]") {
    const std::chrono::microseconds spin(GENERATE(0L, 50L, 10'000L));
    CAPTURE(spin.count());
    asio::io_context io(1);
    int chained = 0;
    post_chain(io, 1000, chained);
    int fired = 0;
    asio::steady_timer timer(io, 5ms); // an event to wait for: the loop must block, then wake
    timer.async_wait([&](std::error_code ec) { fired += ec ? 100 : 1; });
    std::size_t handlers = 0;
    returns_within([&] { handlers = sc::run_yielding(io, spin); }, 20s);
    CHECK(chained == 1000);
    CHECK(fired == 1);
    CHECK(handlers == 1001);
    CHECK(io.stopped());
    // Stopped, it returns at once; restarted, it runs what is posted.
    asio::post(io, [&] { ++chained; });
    returns_within([&] { handlers = sc::run_yielding(io, spin); }, 20s);
    CHECK(handlers == 0);
    CHECK(chained == 1000);
    io.restart();
    returns_within([&] { handlers = sc::run_yielding(io, spin); }, 20s);
    CHECK(handlers == 1);
    CHECK(chained == 1001);
}

TEST_CASE("run_yielding returns when the io_context is stopped from another thread while it "
          "waits for events",
          "[run]") {
    asio::io_context io(1);
    auto guard = asio::make_work_guard(io); // never out of work: only stop() ends the loop
    std::promise<void> started;
    asio::post(io, [&] { started.set_value(); });
    // Stops it from another thread once it has run a handler; from then on it has nothing to do.
    std::thread stopper([&] {
        started.get_future().wait();
        io.stop();
    });
    std::size_t handlers = 0;
    returns_within([&] { handlers = sc::run_yielding(io); }, 20s);
    stopper.join();
    CHECK(handlers == 1);
}

TEST_CASE("run_yielding returns when stopped from another thread while it spins or sleeps",
          "[run]") {
    asio::io_context io(1);
    auto guard = asio::make_work_guard(io);
    // Timers 100 us apart teach the loop to spin (its waits are short), up to 10 ms; after
    // the last one it spins, then sleeps, and the stop comes during either.
    asio::steady_timer timer(io);
    int fired = 0;
    std::promise<void> taught;
    std::function<void(std::error_code)> next = [&](std::error_code ec) {
        if (ec) return;
        if (++fired == 200) {
            taught.set_value();
            return;
        }
        timer.expires_after(100us);
        timer.async_wait(next);
    };
    timer.expires_after(100us);
    timer.async_wait(next);
    std::thread stopper([&] {
        taught.get_future().wait();
        io.stop();
    });
    std::size_t handlers = 0;
    returns_within([&] { handlers = sc::run_yielding(io, 10ms); }, 20s);
    stopper.join();
    CHECK(fired == 200);
    CHECK(handlers == 200);
}

TEST_CASE("run_yielding's spin grows while waits are short, and stops once they are long",
          "[run]") {
    using ns = std::chrono::nanoseconds;
    SECTION("no limit, no spin") {
        sc::detail::spin_budget none(0us);
        CHECK_FALSE(none.enabled());
        none.waited(1us);
        CHECK(none.spin() == ns::zero());
        sc::detail::spin_budget negative(-5us);
        CHECK_FALSE(negative.enabled());
        negative.waited(1us);
        CHECK(negative.spin() == ns::zero());
    }
    SECTION("a limit of 80 us") {
        sc::detail::spin_budget b(80us);
        CHECK(b.enabled());
        CHECK(b.spin() == ns::zero()); // nothing learned yet
        b.waited(500us);               // a long wait: still none
        CHECK(b.spin() == ns::zero());
        b.waited(30us); // a spin of 30 us would have caught it: a quarter of the limit
        CHECK(b.spin() == 20us);
        b.waited(35us); // still short: doubles
        CHECK(b.spin() == 40us);
        b.waited(80us); // the limit itself still counts as short
        CHECK(b.spin() == 80us);
        b.waited(60us); // at the limit, it stays there
        CHECK(b.spin() == 80us);
        b.waited(81us); // longer than the limit: halves
        CHECK(b.spin() == 40us);
        b.waited(1s);
        CHECK(b.spin() == 20us);
        b.waited(1s);
        CHECK(b.spin() == 10us);
        b.waited(1s);
        CHECK(b.spin() == 5us); // a sixteenth of the limit: kept
        b.waited(1s);
        CHECK(b.spin() == ns::zero()); // below it: off
        b.waited(1s);
        CHECK(b.spin() == ns::zero());
        b.waited(10us); // short waits again: back on
        CHECK(b.spin() == 20us);
    }
}

TEST_CASE("an exception from a handler leaves run_yielding, and calling it again goes on",
          "[run]") {
    asio::io_context io(1);
    bool after = false;
    asio::post(io, [] { throw std::runtime_error("handler failed"); });
    asio::post(io, [&] { after = true; });
    bool thrown = false;
    returns_within(
        [&] {
            try {
                sc::run_yielding(io);
            } catch (const std::runtime_error& e) {
                thrown = std::string(e.what()) == "handler failed";
            }
        },
        20s);
    CHECK(thrown);
    CHECK_FALSE(after);
    std::size_t handlers = 0;
    returns_within([&] { handlers = sc::run_yielding(io); }, 20s);
    CHECK(after);
    CHECK(handlers == 1);
}

TEST_CASE("a io_run_by_one_thread proxy whose loop runs on run_yielding relays every client byte "
          "for byte",
          "[run]") {
    asio::io_context io;
    const std::chrono::microseconds spin(GENERATE(0L, 50L));
    CAPTURE(spin.count());
    loop_thread loop(
        [spin](asio::io_context& loop_io) { sc::run_yielding(loop_io, spin); }); // after io
    run(io, a_proxy_on_a_yielding_loop_relays_every_byte(loop.executor()), 60s);
}
