#pragma once

// Linux zero-copy relaying: bytes move socket -> pipe -> socket with splice(2) and never enter
// user space. Used for a direction with no transformer and no traffic log.

#if defined(__linux__)

#include <array>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <system_error>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include <asio/awaitable.hpp>
#include <asio/error.hpp>
#include <fmt/format.h>

#include <socket_connector/detail/pump.hpp>

namespace socket_connector::detail {

/// A pipe borrowed from the current thread's pool while bytes are in it. A direction holds one
/// only between reading a chunk and writing it out, so idle directions hold none. It goes back
/// to the pool only when empty; a pipe left with bytes in it (the pair failed) is closed.
class pooled_pipe {
public:
    static constexpr std::size_t max_cached = 16;

    pooled_pipe() {
        auto& spare = cache().pipes;
        if (!spare.empty()) {
            fds_ = spare.back();
            spare.pop_back();
        } else if (::pipe2(fds_.data(), O_NONBLOCK | O_CLOEXEC) != 0) {
            fds_ = {-1, -1};
        }
    }
    pooled_pipe(const pooled_pipe&) = delete;
    pooled_pipe& operator=(const pooled_pipe&) = delete;
    ~pooled_pipe() {
        if (!valid()) return;
        auto& spare = cache().pipes;
        if (empty_ && spare.size() < max_cached) {
            spare.push_back(fds_);
        } else {
            close_pair(fds_);
        }
    }

    /// False if no pipe could be made (out of descriptors).
    bool valid() const noexcept { return fds_[0] >= 0; }
    int read_end() const noexcept { return fds_[0]; }
    int write_end() const noexcept { return fds_[1]; }
    /// Whether the pipe holds no bytes; only empty pipes are reused.
    void set_empty(bool empty) noexcept { empty_ = empty; }

private:
    using fd_pair = std::array<int, 2>;
    static void close_pair(const fd_pair& p) {
        ::close(p[0]);
        ::close(p[1]);
    }
    struct spare_pipes {
        std::vector<fd_pair> pipes;
        ~spare_pipes() {
            for (auto& p : pipes)
                close_pair(p);
        }
    };
    static spare_pipes& cache() {
        thread_local spare_pipes spare;
        return spare;
    }

    fd_pair fds_{-1, -1};
    bool empty_ = true;
};

/// How much one splice moves at most: the default pipe capacity.
inline constexpr std::size_t splice_chunk = 64 * 1024;

/// The zero-copy relay loop for one direction: same contract as `pump` without a transformer
/// or traffic log (early bytes first, backpressure, half-close at end of stream, throws on
/// error, quiet when cancelled).
template <class Socket>
asio::awaitable<void> splice_pump(Socket& from, Socket& to, std::vector<char> early, bool early_eof,
                                  direction& dir) {
    if (!co_await write_all(to, std::span<const char>(early), dir)) co_return;
    early = {};
    bool maybe_more = false;
    while (!early_eof) {
        if (!maybe_more) {
            auto [wait_ec] = co_await from.async_wait(Socket::wait_read, use_tuple);
            if (wait_ec == asio::error::operation_aborted) co_return;
            if (wait_ec) throw std::system_error(wait_ec, fmt::format("wait on {}", dir.from));
        }
        pooled_pipe pipe;
        if (!pipe.valid()) {
            // Out of descriptors for a pipe: move this chunk through user space instead.
            pooled_buffer buf;
            std::size_t n = 0;
            auto got = read_chunk(from, buf, n, dir);
            maybe_more = false;
            if (got == read_outcome::again) continue;
            if (got == read_outcome::end) break;
            if (!co_await write_all(to, std::span<const char>(buf.data(), n), dir)) co_return;
            continue;
        }
        auto n = ::splice(from.native_handle(), nullptr, pipe.write_end(), nullptr, splice_chunk,
                          SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n == 0) break; // end of stream
        if (n < 0) {
            maybe_more = false;
            if (errno == EAGAIN || errno == EINTR) continue; // readiness can be spurious
            throw std::system_error(errno, std::system_category(),
                                    fmt::format("read from {}", dir.from));
        }
        maybe_more = static_cast<std::size_t>(n) == splice_chunk;
        auto in_pipe = static_cast<std::size_t>(n);
        pipe.set_empty(false);
        while (in_pipe > 0) {
            auto m = ::splice(pipe.read_end(), nullptr, to.native_handle(), nullptr, in_pipe,
                              SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (m < 0 && errno == EINTR) continue;
            if (m < 0 && errno == EAGAIN) {
                // The destination is full: wait until it drains (backpressure).
                auto [wait_ec] = co_await to.async_wait(Socket::wait_write, use_tuple);
                if (wait_ec == asio::error::operation_aborted) co_return;
                if (wait_ec) throw std::system_error(wait_ec, fmt::format("write to {}", dir.to));
                continue;
            }
            if (m < 0)
                throw std::system_error(errno, std::system_category(),
                                        fmt::format("write to {}", dir.to));
            in_pipe -= static_cast<std::size_t>(m);
            dir.bytes.fetch_add(static_cast<std::uint64_t>(m), std::memory_order_relaxed);
            if (dir.total)
                dir.total->fetch_add(static_cast<std::uint64_t>(m), std::memory_order_relaxed);
        }
        pipe.set_empty(true);
    }
    std::error_code ignored;
    to.shutdown(Socket::shutdown_send, ignored); // half-close; the other way keeps flowing
}

} // namespace socket_connector::detail

#endif // __linux__
