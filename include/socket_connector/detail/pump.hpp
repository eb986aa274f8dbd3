#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <system_error>
#include <utility>
#include <vector>

#include <asio/awaitable.hpp>
#include <asio/buffer.hpp>
#include <asio/error.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>

#include <socket_connector/concepts.hpp>
#include <socket_connector/detail/buffer_pool.hpp>
#include <socket_connector/detail/printable.hpp>
#include <socket_connector/logging.hpp>

namespace socket_connector::detail {

inline constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);

/// One relay direction's bookkeeping: its name, its byte counters and its traffic log.
struct direction {
    char from = 'A';
    char to = 'B';
    /// Bytes written to `to` by this direction.
    std::atomic<std::uint64_t> bytes{0};
    /// The connector-wide counter for this direction, or null.
    std::atomic<std::uint64_t>* total = nullptr;
    /// Where traffic lines go; null when traffic logging is off.
    const logger* traffic = nullptr;
    /// When this direction last read or wrote a byte (for the idle timeout).
    std::chrono::steady_clock::time_point last_active{};
};

/// Writes all of `data` to `to`. False when the write was cancelled (the pair is closing).
template <class Socket>
asio::awaitable<bool> write_all(Socket& to, std::span<const char> data, direction& dir) {
    if (data.empty()) co_return true;
    auto [ec, n] =
        co_await asio::async_write(to, asio::buffer(data.data(), data.size()), use_tuple);
    if (ec == asio::error::operation_aborted) co_return false;
    if (ec) throw std::system_error(ec, fmt::format("write to {}", dir.to));
    dir.bytes.fetch_add(n, std::memory_order_relaxed);
    if (dir.total) dir.total->fetch_add(n, std::memory_order_relaxed);
    dir.last_active = std::chrono::steady_clock::now();
    co_return true;
}

/// The most bytes one `transform()` or `finish()` call may append: a transformer driven by a
/// peer's bytes must not make the relay allocate without bound. Past it the pair is closed.
inline constexpr std::size_t transform_output_limit = 16 * 1024 * 1024;

/// Throws if a transformer call appended more than `transform_output_limit` bytes.
inline void check_transform_output(const std::vector<char>& out, std::size_t in,
                                   const direction& dir) {
    if (out.size() > transform_output_limit)
        throw std::length_error(fmt::format(
            "transformer of {} -> {} produced {} bytes from {} (the limit is {} per call)",
            dir.from, dir.to, out.size(), in, transform_output_limit));
}

/// Logs `data` if traffic logging is on, runs it through the transformer if there is one, and
/// writes the result. False when the write was cancelled.
template <class Socket>
asio::awaitable<bool> deliver(Socket& to, std::span<const char> data, any_transformer& transform,
                              std::vector<char>& out, direction& dir) {
    if (dir.traffic && !data.empty())
        (*dir.traffic)(log_level::traffic,
                       fmt::format("{} -> {}: {}", dir.from, dir.to, printable(data)));
    if (!transform) co_return co_await write_all(to, data, dir);
    out.clear();
    transform.transform(data, out);
    check_transform_output(out, data.size(), dir);
    if (out.capacity() > relay_buffer_size && out.size() <= relay_buffer_size / 4) {
        // A burst grew it: write, then give the memory back rather than keep it while idle.
        bool written = co_await write_all(to, std::span<const char>(out), dir);
        std::vector<char>().swap(out); // and its capacity
        co_return written;
    }
    co_return co_await write_all(to, std::span<const char>(out), dir);
}

/// What one non-blocking read from a relay's source gave.
enum class read_outcome { data, again, end };

/// Reads what `from` has into `buf` without blocking; `n` is set to the bytes read. `again` when
/// nothing was there after all (readiness can be spurious); throws on a read error.
template <class Socket>
read_outcome read_chunk(Socket& from, pooled_buffer& buf, std::size_t& n, const direction& dir) {
    std::error_code ec;
    n = from.read_some(asio::buffer(buf.data(), buf.size()), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) return read_outcome::again;
    if (ec == asio::error::eof) return read_outcome::end;
    if (ec) throw std::system_error(ec, fmt::format("read from {}", dir.from));
    return read_outcome::data;
}

/// Relays one direction until its source ends, then passes the end of stream on.
///
/// `early` holds bytes that arrived before the pair was joined; they go first, and if
/// `early_eof` the source had already ended. Reads only when the source is readable and only
/// after the previous write has completed, so at most one buffer per direction is in flight.
/// At end of stream the transformer is flushed and the destination's send side is shut down
/// (half-close); the other direction keeps running. Throws on a read or write error (the pair
/// is over); returns quietly when cancelled.
template <class Socket>
asio::awaitable<void> pump(Socket& from, Socket& to, std::vector<char> early, bool early_eof,
                           any_transformer& transform, direction& dir) {
    std::vector<char> out;
    if (!co_await deliver(to, std::span<const char>(early), transform, out, dir)) co_return;
    std::vector<char>().swap(early); // and its capacity
    bool maybe_more = false;         // the last read filled the buffer: read again before waiting
    while (!early_eof) {
        if (!maybe_more) {
            auto [wait_ec] = co_await from.async_wait(Socket::wait_read, use_tuple);
            if (wait_ec == asio::error::operation_aborted) co_return;
            if (wait_ec) throw std::system_error(wait_ec, fmt::format("wait on {}", dir.from));
        }
        pooled_buffer buf; // held only while these bytes are in flight
        std::size_t n = 0;
        auto got = read_chunk(from, buf, n, dir);
        maybe_more = got == read_outcome::data && n == buf.size();
        if (got == read_outcome::again) continue;
        if (got == read_outcome::end) break;
        dir.last_active = std::chrono::steady_clock::now();
        if (!co_await deliver(to, std::span<const char>(buf.data(), n), transform, out, dir))
            co_return;
    }
    if (transform) {
        out.clear();
        transform.finish(out);
        check_transform_output(out, 0, dir);
        if (!co_await write_all(to, std::span<const char>(out), dir)) co_return;
    }
    std::error_code ignored;
    to.shutdown(Socket::shutdown_send, ignored); // half-close; the other way keeps flowing
}

} // namespace socket_connector::detail
