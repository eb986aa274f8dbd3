// A slow reader (one that reads nothing, or a little now and then) while its peer writes as fast
// as it can: backpressure keeps the relay's memory bounded, and every byte arrives intact.
#include <socket_connector/connector.hpp>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "support/faults.hpp"
#include "support/programs.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

/// Writes the repeating pattern as fast as the relay takes it, for `window`; the bytes written.
asio::awaitable<std::size_t> flood_for(tcp::socket& socket, const std::vector<char>& cycle,
                                       std::chrono::milliseconds window) {
    auto ex = co_await asio::this_coro::executor;
    socket.non_blocking(true);
    std::vector<char> chunk(256 * 1024);
    std::size_t written = 0;
    std::size_t offset = 0; // bytes of `chunk` already written
    auto refill = [&] {
        for (std::size_t i = 0; i < chunk.size(); ++i)
            chunk[i] = cycle[(written + i) % cycle.size()];
        offset = 0;
    };
    refill();
    asio::steady_timer deadline(ex, window);
    for (;;) {
        std::error_code ec;
        auto n = socket.write_some(asio::buffer(chunk.data() + offset, chunk.size() - offset), ec);
        if (!ec) {
            offset += n;
            if (offset == chunk.size()) {
                written += chunk.size();
                refill();
            }
            if (steady::now() >= deadline.expiry()) break;
            continue;
        }
        REQUIRE((ec == asio::error::would_block || ec == asio::error::try_again));
        // Wait for room, but never past the window (an unanswered wait has no side effect).
        auto outcome = co_await (socket.async_wait(tcp::socket::wait_write, use_tuple) ||
                                 deadline.async_wait(use_tuple));
        if (outcome.index() == 1) break;
    }
    // The stream so far is whole (the pattern continues from byte to byte): end it there.
    written += offset;
    socket.non_blocking(false);
    socket.shutdown(tcp::socket::shutdown_send);
    co_return written;
}

/// Reads `step` bytes every `every` until `stop`, then everything to the end, checking it all.
asio::awaitable<void> slow_read(tcp::socket& socket, const std::vector<char>& cycle,
                                std::size_t step, std::chrono::milliseconds every, const bool& stop,
                                close_watch& w, std::size_t& wrong) {
    std::vector<char> buf(std::max<std::size_t>(step, 1));
    while (!stop) {
        co_await pause(every);
        if (step == 0) continue;
        auto [ec, n] = co_await socket.async_read_some(asio::buffer(buf.data(), step), use_tuple);
        for (std::size_t i = 0; i < n; ++i)
            if (buf[i] != cycle[(w.received + i) % cycle.size()]) ++wrong;
        w.received += n;
        if (ec) {
            w.why = ec;
            w.closed = true;
            co_return;
        }
    }
    co_await check_stream(socket, cycle, w, wrong);
}

/// Samples the process's RSS every 20 ms until `stop`; the largest value seen.
asio::awaitable<void> sample_rss(pid_t pid, const bool& stop, long& peak) {
    while (!stop) {
        peak = std::max(peak, rss_kib(pid));
        co_await pause(20ms);
    }
}

asio::awaitable<void> writer_then_stop(tcp::socket& a, const std::vector<char>& cycle,
                                       std::chrono::milliseconds window, std::size_t& written,
                                       bool& stop) {
    written = co_await flood_for(a, cycle, window);
    stop = true;
}

asio::awaitable<void> slow_reader(std::size_t step) {
    auto ex = co_await asio::this_coro::executor;
    auto cli = start_cli(
        {"server-to-server", "--a", "127.0.0.1:0", "--b", "127.0.0.1:0", "--timeout", "0"});
    auto port_a = co_await started_port(*cli, 'A');
    auto port_b = co_await started_port(*cli, 'B');
    tcp::socket a(ex);
    tcp::socket b(ex);
    co_await form_pair(port_a, port_b, a, b);
    auto before = rss_kib(cli->pid());
    auto cycle = pattern(140, 65521);
    std::size_t written = 0;
    std::size_t wrong = 0;
    bool stop = false;
    long peak = before;
    close_watch at_b;
    auto window = 3s;
    co_await (writer_then_stop(a, cycle, window, written, stop) &&
              slow_read(b, cycle, step, 20ms, stop, at_b, wrong) &&
              sample_rss(cli->pid(), stop, peak));
    auto growth = peak - before;
    auto reader = step == 0 ? std::string("B reading nothing")
                            : fmt::format("B reading {} bytes every 20 ms", step);
    WARN(reader << " while A writes for 3 s: A wrote " << written / 1024 << " KiB; relay RSS "
                << before << " KiB, peak " << peak << " KiB (+" << growth << " KiB)");
    if (!sanitized) CHECK(growth < 4 * 1024);
    // Everything arrives intact once B reads.
    CHECK(at_b.why == asio::error::eof);
    CHECK(at_b.received == written);
    CHECK(wrong == 0);
    if (step == 0) CHECK(written < 256u << 20); // backpressure reached the writer
    cli->signal(SIGTERM);
    CHECK(co_await exit_of(*cli) == 0);
}

} // namespace

TEST_CASE("a reader that does not read keeps the relay's memory bounded", "[faults]") {
    asio::io_context io;
    run(io, slow_reader(0), 60s);
}

TEST_CASE("a very slow reader keeps the relay's memory bounded", "[faults]") {
    asio::io_context io;
    run(io, slow_reader(4096), 60s);
}
