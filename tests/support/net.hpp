#pragma once

// Helpers shared by the tests: a bounded runner, loopback sockets (connected, reset, paired,
// echoed), patterned data, checksums and a logger that records lines. Everything here is
// loopback-only.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/connect.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <catch2/catch.hpp>

#include <socket_connector/socket_connector.hpp>

namespace test_support {

using tcp = asio::ip::tcp;
namespace sc = socket_connector;
using namespace std::chrono_literals;

inline constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);

/// Runs `task` on `io` for at most `deadline`, then REQUIREs that it finished and rethrows what
/// it threw. Whatever else is still on `io` (servers, relays) is stopped with it.
inline void run(asio::io_context& io, asio::awaitable<void> task,
                std::chrono::milliseconds deadline = 30s) {
    bool done = false;
    std::exception_ptr error;
    asio::co_spawn(io, std::move(task), [&](std::exception_ptr e) {
        done = true;
        error = e;
        io.stop();
    });
    io.run_for(deadline);
    REQUIRE(done);
    if (error) std::rethrow_exception(error);
}

/// An event loop on a thread of its own (an io_context run by that one thread), running until
/// destroyed, for at most 90 seconds. Declare it after any io_context whose coroutines await
/// work on it: a completion for that io_context may still be on its way from this thread
/// (holding work on it) when the awaiting coroutine has already finished, so this thread must
/// stop first.
class loop_thread {
public:
    /// `runner` runs the loop on the thread instead of `run_for(90s)` (it returns once the loop
    /// is stopped).
    explicit loop_thread(std::function<void(asio::io_context&)> runner = {})
        : guard_(asio::make_work_guard(io_))
        , thread_([this, runner = std::move(runner)] {
            if (runner)
                runner(io_);
            else
                io_.run_for(90s);
        }) {}
    ~loop_thread() {
        guard_.reset();
        io_.stop();
        thread_.join();
    }
    loop_thread(const loop_thread&) = delete;
    loop_thread& operator=(const loop_thread&) = delete;
    asio::any_io_executor executor() { return io_.get_executor(); }

private:
    asio::io_context io_{1};
    asio::executor_work_guard<asio::io_context::executor_type> guard_;
    std::thread thread_;
};

/// Deterministic bytes: the same seed and size always give the same data.
inline std::vector<char> pattern(std::uint64_t seed, std::size_t size) {
    std::vector<char> data(size);
    std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (auto& c : data) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c = static_cast<char>(x & 0xff);
    }
    return data;
}

/// FNV-1a, 64 bits: a checksum to compare relayed data byte for byte.
inline std::uint64_t checksum(std::span<const char> data) {
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (char c : data) {
        h ^= static_cast<unsigned char>(c);
        h *= 0x100000001b3ull;
    }
    return h;
}

/// A socket connected to 127.0.0.1:port.
inline asio::awaitable<tcp::socket> connect_to(unsigned short port) {
    tcp::socket socket(co_await asio::this_coro::executor);
    co_await socket.async_connect({asio::ip::address_v4::loopback(), port}, asio::use_awaitable);
    co_return socket;
}

/// 127.0.0.1:port.
inline tcp::endpoint loopback(unsigned short port) {
    return {asio::ip::address_v4::loopback(), port};
}

/// Tries to connect to 127.0.0.1:port; the outcome (refused once nothing listens there).
inline asio::awaitable<std::error_code> try_connect(unsigned short port) {
    tcp::socket socket(co_await asio::this_coro::executor);
    auto [ec] = co_await socket.async_connect(loopback(port), use_tuple);
    co_return ec;
}

/// Aborts the connection: SO_LINGER 0, then close, so the peer gets a reset.
inline void reset(tcp::socket& socket) {
    std::error_code ignored;
    socket.set_option(asio::socket_base::linger(true, 0), ignored);
    socket.close(ignored);
}

/// Writes all of `data`, then (if asked) shuts down the send side. (Takes a view: with g++ 12,
/// braced or temporary containers inside a co_await expression are destroyed twice.)
inline asio::awaitable<void> send_all(tcp::socket& socket, std::span<const char> data,
                                      bool then_shutdown = true) {
    co_await asio::async_write(socket, asio::buffer(data.data(), data.size()), asio::use_awaitable);
    if (then_shutdown) socket.shutdown(tcp::socket::shutdown_send);
}

/// `send_all` for text.
inline asio::awaitable<void> send_text(tcp::socket& socket, std::string_view text,
                                       bool then_shutdown = true) {
    return send_all(socket, std::span<const char>(text.data(), text.size()), then_shutdown);
}

/// `head` followed by `tail`, as bytes (a first line, then a payload).
inline std::vector<char> concat(std::string_view head, const std::vector<char>& tail) {
    // Sized once and copied into: g++ 12 reports a false -Warray-bounds for growing a vector
    // made from a short head once this is inlined.
    std::vector<char> all(head.size() + tail.size());
    std::copy(head.begin(), head.end(), all.begin());
    std::copy(tail.begin(), tail.end(), all.begin() + static_cast<std::ptrdiff_t>(head.size()));
    return all;
}

/// Bytes as a string, for comparing with a literal.
inline std::string text(const std::vector<char>& bytes) {
    return {bytes.begin(), bytes.end()};
}

/// Reads until end of stream (or up to `limit` bytes); a reset throws.
inline asio::awaitable<std::vector<char>> read_to_eof(tcp::socket& socket,
                                                      std::size_t limit = 1u << 30) {
    std::vector<char> data;
    char buf[65536];
    for (;;) {
        auto [ec, n] = co_await socket.async_read_some(asio::buffer(buf), use_tuple);
        data.insert(data.end(), buf, buf + n);
        if (ec == asio::error::eof || data.size() >= limit) co_return data;
        if (ec) throw std::system_error(ec, "read_to_eof");
    }
}

/// Sends `out` (then FIN) while reading everything the peer sends until its FIN.
inline asio::awaitable<std::vector<char>> send_and_receive(tcp::socket& socket,
                                                           const std::vector<char>& out) {
    using namespace asio::experimental::awaitable_operators;
    co_return co_await (send_all(socket, out) && read_to_eof(socket));
}

/// What a client saw when it read until its peer went away.
struct ending {
    std::vector<char> bytes;
    /// True if the peer closed (end of stream or reset); false on any other error.
    bool closed = false;
};

/// Reads until the peer closes the socket (a FIN or a reset both count as closed).
inline asio::awaitable<ending> read_until_closed(tcp::socket& socket) {
    ending result;
    char buf[4096];
    for (;;) {
        auto [ec, n] = co_await socket.async_read_some(asio::buffer(buf), use_tuple);
        result.bytes.insert(result.bytes.end(), buf, buf + n);
        if (!ec) continue;
        result.closed = ec == asio::error::eof || ec == asio::error::connection_reset;
        co_return result;
    }
}

/// Reads one LF-terminated line (without the LF), byte by byte so nothing past it is consumed.
inline asio::awaitable<std::string> read_line(tcp::socket& socket) {
    std::string line;
    for (;;) {
        char c = 0;
        co_await asio::async_read(socket, asio::buffer(&c, 1), asio::use_awaitable);
        if (c == '\n') co_return line;
        line.push_back(c);
    }
}

/// Reads exactly `n` bytes.
inline asio::awaitable<std::string> read_exactly(tcp::socket& socket, std::size_t n) {
    std::string data(n, '\0');
    co_await asio::async_read(socket, asio::buffer(data), asio::use_awaitable);
    co_return data;
}

/// Waits `d` on the current executor (for deadlines and pacing, never to synchronise).
inline asio::awaitable<void> pause(std::chrono::milliseconds d) {
    asio::steady_timer t(co_await asio::this_coro::executor, d);
    co_await t.async_wait(asio::use_awaitable);
}

/// Polls `condition` every few milliseconds until it holds or `limit` passes; true if it held.
template <class Condition>
asio::awaitable<bool> eventually(Condition condition, std::chrono::milliseconds limit = 10s) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (!condition()) {
        if (std::chrono::steady_clock::now() > end) co_return false;
        co_await pause(2ms);
    }
    co_return true;
}

/// Whether the peer closes `socket` (EOF or reset) without sending anything within `limit`.
inline asio::awaitable<bool> closed_within(tcp::socket& socket, std::chrono::milliseconds limit) {
    using namespace asio::experimental::awaitable_operators;
    asio::steady_timer timer(co_await asio::this_coro::executor, limit);
    char byte = 0;
    auto outcome = co_await (socket.async_read_some(asio::buffer(&byte, 1), use_tuple) ||
                             timer.async_wait(use_tuple));
    if (outcome.index() == 1) co_return false;
    auto [ec, n] = std::get<0>(outcome);
    co_return ec&& n == 0;
}

/// A pair that has formed: `a` connected to side A's `port_a`, `b` to side B's `port_b`, one
/// byte relayed each way.
inline asio::awaitable<void> form_pair(unsigned short port_a, unsigned short port_b, tcp::socket& a,
                                       tcp::socket& b) {
    a = co_await connect_to(port_a);
    b = co_await connect_to(port_b);
    co_await send_text(a, "a", false);
    auto at_b = co_await read_exactly(b, 1);
    CHECK(at_b == "a");
    co_await send_text(b, "b", false);
    auto at_a = co_await read_exactly(a, 1);
    CHECK(at_a == "b");
}

/// `form_pair` on the sides of connector `c`.
inline asio::awaitable<void> form_pair(sc::connector& c, tcp::socket& a, tcp::socket& b) {
    co_await form_pair(c.side_a_port(), c.side_b_port(), a, b);
}

/// Sends back what one connection sends, chunk by chunk as it comes, and ends its stream after
/// the peer's; what it read. A read error other than the end of stream throws.
inline asio::awaitable<std::vector<char>> echo(tcp::socket& socket) {
    std::vector<char> seen;
    std::vector<char> buf(65536);
    for (;;) {
        auto [ec, n] = co_await socket.async_read_some(asio::buffer(buf), use_tuple);
        if (ec == asio::error::eof) break;
        if (ec) throw std::system_error(ec, "echo read");
        seen.insert(seen.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
        co_await asio::async_write(socket, asio::buffer(buf.data(), n), asio::use_awaitable);
    }
    socket.shutdown(tcp::socket::shutdown_send);
    co_return seen;
}

/// Sends back everything one connection sends, then ends its stream.
inline asio::awaitable<void> echo_back(tcp::socket socket) {
    auto data = co_await read_to_eof(socket);
    co_await send_all(socket, data);
}

/// Echoes each of `count` connections accepted on `target`, all at once.
inline asio::awaitable<void> echo_each(tcp::acceptor& target, std::size_t count) {
    auto ex = co_await asio::this_coro::executor;
    for (std::size_t i = 0; i < count; ++i) {
        auto socket = co_await target.async_accept(asio::use_awaitable);
        asio::co_spawn(ex, echo_back(std::move(socket)), asio::detached);
    }
}

/// What `echo_client` saw: whether it finished, and whether the echo matched what it sent.
struct client_result {
    bool done = false;
    bool intact = false;
};

/// Sends `size` patterned bytes through `port`, reads the echo to its end and checks it.
inline asio::awaitable<void> echo_client(unsigned short port, std::uint64_t seed, std::size_t size,
                                         client_result& r) {
    auto socket = co_await connect_to(port);
    auto sent = pattern(seed, size);
    auto got = co_await send_and_receive(socket, sent);
    r.intact = got.size() == sent.size() && checksum(got) == checksum(sent);
    r.done = true;
}

/// Waits until every client of `results` has finished, for at most `limit`; true if they all did.
inline asio::awaitable<bool> all_finished(const std::vector<client_result>& results,
                                          std::chrono::milliseconds limit = 10s) {
    co_return co_await eventually(
        [&] {
            for (auto& r : results)
                if (!r.done) return false;
            return true;
        },
        limit);
}

/// Records every line a connector logs, for assertions.
struct log_capture {
    std::mutex mutex;
    std::vector<std::string> lines;

    sc::logger logger() {
        return [this](sc::log_level level, std::string_view message) {
            std::lock_guard lock(mutex);
            lines.push_back(std::string(sc::to_string(level)) + " " + std::string(message));
        };
    }
    bool contains(std::string_view text) {
        std::lock_guard lock(mutex);
        for (auto& line : lines)
            if (line.find(text) != std::string::npos) return true;
        return false;
    }
    std::string all() {
        std::lock_guard lock(mutex);
        std::string text;
        for (auto& line : lines)
            text += line + "\n";
        return text;
    }
};

/// Fills the backlog of `target` (listening with a backlog of 0, never accepting) with
/// connections kept in `fillers`, until a connect gets no answer within 300 ms: Linux then drops
/// further SYNs, so a connect to it hangs (what a host that never answers looks like, on
/// loopback). False if the backlog did not fill within 8 connections.
inline asio::awaitable<bool> fill_backlog(tcp::acceptor& target,
                                          std::vector<tcp::socket>& fillers) {
    using namespace asio::experimental::awaitable_operators;
    auto ex = co_await asio::this_coro::executor;
    for (int i = 0; i < 8; ++i) {
        tcp::socket s(ex);
        asio::steady_timer t(ex, 300ms);
        auto r = co_await (s.async_connect(target.local_endpoint(), use_tuple) ||
                           t.async_wait(use_tuple));
        if (r.index() == 1) co_return true;
        fillers.push_back(std::move(s));
    }
    co_return false;
}

/// A listening socket on 127.0.0.1 with a port the OS chose (a target for socket sides).
inline tcp::acceptor loopback_acceptor(asio::any_io_executor ex) {
    return tcp::acceptor(ex, {asio::ip::address_v4::loopback(), 0});
}

/// An acceptor bound to `at` without listening: a connect there is refused, and nothing else can
/// take the address meanwhile.
inline tcp::acceptor refusing(asio::any_io_executor ex, const tcp::endpoint& at) {
    tcp::acceptor acceptor(ex);
    acceptor.open(at.protocol());
    acceptor.bind(at);
    return acceptor;
}

/// Options with both sides on 127.0.0.1 and a port the OS chooses.
inline sc::options loopback_options() {
    sc::options o;
    o.a.endpoint = {asio::ip::address_v4::loopback(), 0};
    o.b.endpoint = {asio::ip::address_v4::loopback(), 0};
    return o;
}

/// A connected to the proxy, with `first` sent and (if asked) its stream ended, all before the
/// proxy can accept it: the calls block this thread, which is the one that runs the proxy.
inline tcp::socket connect_and_send_before_accept(asio::any_io_executor ex, unsigned short port,
                                                  const std::vector<char>& first, bool then_end) {
    tcp::socket a(ex);
    a.connect({asio::ip::address_v4::loopback(), port});
    if (!first.empty()) asio::write(a, asio::buffer(first));
    if (then_end) a.shutdown(tcp::socket::shutdown_send);
    return a;
}

/// Options for a proxy on loopback (server_to_socket with `multi`) whose B is `target`.
inline sc::options proxy_options(const tcp::acceptor& target) {
    sc::options o = loopback_options();
    o.b.endpoint = target.local_endpoint();
    o.multi = true;
    return o;
}

} // namespace test_support
