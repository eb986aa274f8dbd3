#pragma once

// Helpers for the tests that run the library on a multi-threaded io_context (the [threads]
// tests). scripts/test runs them under ThreadSanitizer (build/tsan); with it they are what shows
// that the strands really keep each connector's and each connection's state to one thread at a
// time.
//
// The test's own coroutines run on strands: the driver on one, each client task on one of its
// own (so tasks run in parallel on the pool's threads). Catch2 is not thread-safe, so tasks
// only record what they saw and the driver checks it once they have all ended.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/write.hpp>
#include <catch2/catch.hpp>

#include <socket_connector/connector.hpp>
#include <socket_connector/logging.hpp>

#include "support/net.hpp"

namespace test_support {

/// How many threads run the io_context of a test.
inline constexpr int pool_threads = 4;

/// Runs `task` on a strand of `io` while `pool_threads` threads run `io`, for at most
/// `deadline`; REQUIREs that it finished and rethrows what it threw.
inline void run_on_pool(asio::io_context& io, asio::awaitable<void> task,
                        std::chrono::seconds deadline = 90s) {
    std::atomic<bool> done{false};
    std::exception_ptr error;
    asio::co_spawn(asio::make_strand(io), std::move(task), [&](std::exception_ptr e) {
        error = e;
        done = true;
        io.stop();
    });
    std::vector<std::thread> threads;
    for (int i = 0; i < pool_threads; ++i)
        threads.emplace_back([&] { io.run_for(deadline); });
    for (auto& t : threads)
        t.join();
    REQUIRE(done);
    if (error) std::rethrow_exception(error);
}

/// Client tasks running at the same time: each on a strand of its own, so they run in parallel on
/// the pool's threads. `wait()` (on the strand that made the group) completes once all have ended
/// and rethrows the first exception one of them threw. (Not `&&`: on a failure it cancels the
/// other operations, which is not safe across strands.)
class task_group {
public:
    explicit task_group(asio::any_io_executor here)
        : state_(std::make_shared<state>(std::move(here))) {}

    void spawn(asio::any_io_executor pool, asio::awaitable<void> task) {
        ++state_->remaining;
        asio::co_spawn(
            asio::make_strand(pool), std::move(task), [s = state_](std::exception_ptr e) {
                if (e) {
                    std::lock_guard lock(s->mutex);
                    if (!s->error) s->error = e;
                }
                if (s->remaining.fetch_sub(1) == 1)
                    asio::post(s->all_done.get_executor(), [s] { s->all_done.cancel(); });
            });
    }

    asio::awaitable<void> wait() {
        auto s = state_;
        while (s->remaining.load() > 0)
            co_await s->all_done.async_wait(use_tuple);
        std::exception_ptr error;
        {
            std::lock_guard lock(s->mutex);
            error = s->error;
        }
        if (error) std::rethrow_exception(error);
    }

private:
    struct state {
        explicit state(asio::any_io_executor here)
            : all_done(std::move(here), asio::steady_timer::time_point::max()) {}
        std::atomic<std::size_t> remaining{0};
        std::mutex mutex;
        std::exception_ptr error;
        asio::steady_timer all_done; // used only on the strand that made the group
    };
    std::shared_ptr<state> state_;
};

/// Runs `tasks` at the same time (see task_group) and completes once all have ended.
inline asio::awaitable<void> all_in_parallel(asio::any_io_executor pool,
                                             std::vector<asio::awaitable<void>> tasks) {
    task_group group(co_await asio::this_coro::executor);
    for (auto& task : tasks)
        group.spawn(pool, std::move(task));
    auto all = group.wait();
    co_await std::move(all);
}

/// A pattern that names itself: its first 8 bytes are its seed and the next 8 its size, so a
/// client that cannot know which peer it was paired with can still check every byte it got.
inline std::vector<char> tagged(std::uint64_t seed, std::size_t size) {
    auto data = pattern(seed, std::max<std::size_t>(size, 16));
    std::uint64_t n = data.size();
    std::memcpy(data.data(), &seed, sizeof seed);
    std::memcpy(data.data() + 8, &n, sizeof n);
    return data;
}

/// The seed of `data` if it is exactly a `tagged` pattern (checksum and size), else 0.
inline std::uint64_t tag_of(std::span<const char> data) {
    if (data.size() < 16) return 0;
    std::uint64_t seed = 0;
    std::uint64_t n = 0;
    std::memcpy(&seed, data.data(), sizeof seed);
    std::memcpy(&n, data.data() + 8, sizeof n);
    if (seed == 0 || n != data.size()) return 0;
    return checksum(data) == checksum(tagged(seed, n)) ? seed : 0;
}

/// What every "endless" sender repeats; its receivers check each byte against it.
inline const std::vector<char>& stream_block() {
    static const std::vector<char> block = pattern(99, 65536 + 17);
    return block;
}

/// Sends `stream_block()` over and over until a write fails (the relay closed the socket).
inline asio::awaitable<std::uint64_t> send_forever(tcp::socket& socket) {
    const auto& block = stream_block();
    std::uint64_t sent = 0;
    for (;;) {
        auto [ec, n] = co_await asio::async_write(socket, asio::buffer(block), use_tuple);
        sent += n;
        if (ec) co_return sent;
    }
}

/// How an endless stream ended at its receiver.
struct stream_end {
    std::uint64_t bytes = 0;
    bool intact = true; // every byte was the next one of the repeated block
    std::error_code error;
};

/// Reads a stream of repeated `stream_block()`s until the peer closes (or, with `limit`, until
/// that many bytes have come), checking every byte.
inline asio::awaitable<stream_end> read_stream(tcp::socket& socket,
                                               std::uint64_t limit = ~std::uint64_t{0}) {
    const auto& block = stream_block();
    stream_end end;
    std::vector<char> buf(65536);
    while (end.bytes < limit) {
        auto [ec, n] = co_await socket.async_read_some(asio::buffer(buf), use_tuple);
        for (std::size_t i = 0; i < n; ++i)
            if (buf[i] != block[(end.bytes + i) % block.size()]) end.intact = false;
        end.bytes += n;
        if (ec) {
            end.error = ec;
            break;
        }
    }
    co_return end;
}

/// Sends `out` and ends its stream while reading what comes back; nothing thrown.
struct trade_result {
    std::vector<char> got;
    std::string error;
};
inline asio::awaitable<trade_result> trade(tcp::socket& socket, const std::vector<char>& out) {
    trade_result r;
    try {
        r.got = co_await send_and_receive(socket, out);
    } catch (const std::exception& e) {
        r.error = e.what();
    }
    co_return r;
}

/// A logger for any thread: counts lines, traffic lines, "connection N closed" lines and failed
/// authentications.
struct counting_log {
    std::atomic<std::uint64_t> lines{0};
    std::atomic<std::uint64_t> traffic{0};
    std::atomic<std::uint64_t> connections_closed{0};
    std::atomic<std::uint64_t> auth_failed{0};
};
inline sc::logger counting_logger(std::shared_ptr<counting_log> log) {
    return [log](sc::log_level level, std::string_view message) {
        ++log->lines;
        if (level == sc::log_level::traffic) ++log->traffic;
        if (message.starts_with("connection ") && message.find(" closed: ") != message.npos)
            ++log->connections_closed;
        if (message.find("authentication of") != message.npos &&
            message.find(" failed: ") != message.npos)
            ++log->auth_failed;
    };
}

/// What one client of a pair received.
struct received {
    std::uint64_t tag = 0; // the seed of the tagged pattern it got intact, or 0
    std::string error;
};

/// One pair of clients of a server_to_server connector, each sending a tagged pattern and reading
/// its peer's. Pairs race to form across threads, so each records whose pattern it got.
inline asio::awaitable<void> rendezvous_pair(unsigned short port_a, unsigned short port_b,
                                             std::uint64_t seed_a, std::size_t size_a,
                                             std::uint64_t seed_b, std::size_t size_b,
                                             received& at_a, received& at_b) {
    using namespace asio::experimental::awaitable_operators;
    try {
        auto a = co_await connect_to(port_a);
        auto b = co_await connect_to(port_b);
        auto out_a = tagged(seed_a, size_a);
        auto out_b = tagged(seed_b, size_b);
        auto [got_a, got_b] = co_await (trade(a, out_a) && trade(b, out_b));
        at_a.tag = tag_of(got_a.got);
        at_a.error = got_a.error;
        at_b.tag = tag_of(got_b.got);
        at_b.error = got_b.error;
    } catch (const std::exception& e) {
        at_a.error = e.what();
    }
}

/// What the two clients of a pair that streams without end saw.
struct endless_pair {
    stream_end at_a, at_b;
    std::uint64_t sent_a = 0, sent_b = 0;
    std::string error;
};

/// Both clients of a pair send forever and read forever, until the relay closes them.
inline asio::awaitable<void> streaming_clients(tcp::socket a, tcp::socket b, endless_pair& r) {
    using namespace asio::experimental::awaitable_operators;
    try {
        auto [sent_a, at_a, sent_b, at_b] =
            co_await (send_forever(a) && read_stream(a) && send_forever(b) && read_stream(b));
        r.sent_a = sent_a;
        r.sent_b = sent_b;
        r.at_a = at_a;
        r.at_b = at_b;
    } catch (const std::exception& e) {
        r.error = e.what();
    }
}

} // namespace test_support
