#pragma once

#include <algorithm>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <asio/awaitable.hpp>
#include <asio/buffer.hpp>
#include <asio/use_awaitable.hpp>

#include <socket_connector/concepts.hpp>
#include <socket_connector/detail/buffer_pool.hpp>
#include <socket_connector/detail/use_tuple.hpp>

namespace socket_connector {

/// Compares two byte strings in time that depends only on the length of `given`, never on
/// where they differ, so a peer cannot find a secret one byte at a time.
inline bool constant_time_equal(std::string_view given, std::string_view secret) noexcept {
    unsigned diff = given.size() == secret.size() ? 0u : 1u;
    for (std::size_t i = 0; i < given.size(); ++i) {
        unsigned s = secret.empty() ? 0u : static_cast<unsigned char>(secret[i % secret.size()]);
        diff |= static_cast<unsigned>(static_cast<unsigned char>(given[i])) ^ s;
    }
    return diff == 0;
}

/// The outcome of looking for the first line in the bytes a side has sent so far.
struct first_line {
    /// The line without its LF and without one trailing CR.
    std::string_view line;
    /// Where the bytes after the LF start.
    std::size_t rest = 0;
};

/// Finds the first LF-terminated line in `bytes`; nothing if there is no LF yet.
inline std::optional<first_line> find_first_line(std::span<const char> bytes) noexcept {
    auto lf = std::find(bytes.begin(), bytes.end(), '\n');
    if (lf == bytes.end()) return std::nullopt;
    auto length = static_cast<std::size_t>(lf - bytes.begin());
    std::string_view line(bytes.data(), length);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    return first_line{line, length + 1};
}

namespace detail {

/// What `read_line_within` found in the bytes a side has sent so far.
enum class line_state {
    need_more, ///< no LF yet, and the line may still fit: read more
    complete,  ///< a line of at most `max_line` bytes (CR and LF not counted)
    too_long,  ///< the line is longer than `max_line` bytes, or must become so
};

struct line_result {
    line_state state = line_state::need_more;
    std::string_view line; ///< when complete: without its LF and one trailing CR
    std::size_t rest = 0;  ///< when complete: where the bytes after the LF start
};

/// Reads the first line of `received` (the bytes a side has sent so far), at most `max_line`
/// bytes long without its CR LF. Any bytes are valid input; the decision never changes as
/// bytes are appended, so a reader may stop as soon as it is not `need_more`.
inline line_result read_line_within(std::span<const char> received, std::size_t max_line) noexcept {
    if (auto found = find_first_line(received)) {
        if (found->line.size() > max_line) return {line_state::too_long, {}, 0};
        return {line_state::complete, found->line, found->rest};
    }
    // Room for max_line bytes and a CR; without an LF by then the line is too long.
    if (received.size() > max_line + 1) return {line_state::too_long, {}, 0};
    return {};
}

/// Reads what `socket` has (at most `limit` bytes), waiting until it is readable if it has
/// nothing yet, through a pooled buffer, and appends exactly that to `received`: a handshake
/// keeps no read buffer while it waits, and what it keeps is sized to what came, so many sockets
/// authenticating at once hold only their bytes (and the heap is not left with holes the size
/// of a read buffer). A non-blocking socket is read first: a client that sends its first line
/// with its connect has usually been heard by the time it is accepted, and the read then saves
/// a readiness wait (an `epoll_ctl` and a trip through the event loop). The error that ended
/// the read (end of stream included), or none.
template <class Socket>
asio::awaitable<std::error_code> read_available(Socket& socket, std::vector<char>& received,
                                                std::size_t limit) {
    bool read_first = false; // a socket that cannot say it is non-blocking is waited for
    if constexpr (requires { bool(socket.non_blocking()); }) read_first = socket.non_blocking();
    for (bool wait = !read_first;; wait = true) {
        if (wait) {
            auto [waited] = co_await socket.async_wait(Socket::wait_read, use_tuple);
            if (waited) co_return waited;
        }
        pooled_buffer buf;
        std::error_code ec;
        auto n =
            socket.read_some(asio::buffer(buf.data(), std::min(limit, pooled_buffer::size())), ec);
        received.insert(received.end(), buf.data(), buf.data() + n);
        // Nothing there yet (or a spurious readiness): wait, then read again.
        if (ec == asio::error::would_block || ec == asio::error::try_again) continue;
        co_return ec;
    }
}

/// What `check_token_line` decided about the bytes a side has sent so far.
enum class token_check {
    need_more, ///< no LF yet, and not too many bytes for one: read more
    accepted,  ///< the first line is the token; the leftover starts at `rest`
    rejected,  ///< the first line is something else, or it is too long to be the token
};

/// The outcome of `check_token_line`.
struct token_line_result {
    token_check outcome = token_check::need_more;
    /// When accepted: where the bytes after the token's LF start in `received`; else 0.
    std::size_t rest = 0;
};

/// Decides whether the first line of `received` (the bytes a side has sent so far) is `token`:
/// the token's handshake, without I/O, so it can be tested and fuzzed on its own.
///
/// The first line ends at the first LF, and one CR just before it is dropped. It is accepted
/// when it equals `token` (compared in constant time, see `constant_time_equal`); any other
/// line is rejected, and so is a `received` of more than `max(max_line, token.size() + 2)`
/// bytes with no LF yet (it cannot become the token). Otherwise more bytes are needed. Any
/// bytes are valid input, NUL included. A decision never changes as bytes are appended to
/// `received`: the caller may stop reading as soon as it is made.
inline token_line_result check_token_line(std::span<const char> received, std::string_view token,
                                          std::size_t max_line) noexcept {
    if (auto found = find_first_line(received)) {
        if (constant_time_equal(found->line, token)) return {token_check::accepted, found->rest};
        return {token_check::rejected, 0};
    }
    // token.size() + 2 leaves room for the CR and the LF, so a line that might still turn
    // out to be the token is never cut off.
    if (received.size() > std::max(max_line, token.size() + 2)) return {token_check::rejected, 0};
    return {};
}

} // namespace detail

/// An auth verifier for a shared secret: the side's first line must be the token.
///
/// The side sends `TOKEN\n` (a trailing CR is ignored); bytes after the LF are the leftover,
/// relayed once the side is paired. A line longer than `max_line` bytes, an end of stream before
/// the LF, or a different token fails. The token is compared in constant time and never logged.
/// The handshake holds at most `max(max_line, token.size() + 2) + read_chunk` bytes, whatever the
/// peer sends (see `detail::check_token_line`), and only what the peer sent.
class token_verifier {
public:
    /// How many bytes one read may add to the handshake's bytes.
    static constexpr std::size_t read_chunk = 4096;
    using works_over_tls = void; // a template over the stream: a TLS side's plaintext too

    explicit token_verifier(std::string token, std::size_t max_line = 1024)
        : token_(std::move(token))
        , max_line_(std::max(max_line, token_.size() + 2)) {}

    template <class Socket>
    asio::awaitable<auth_result> operator()(Socket& socket) const {
        std::vector<char> received;
        for (;;) {
            auto check = detail::check_token_line(received, token_, max_line_);
            if (check.outcome == detail::token_check::rejected) co_return auth_result{};
            if (check.outcome == detail::token_check::accepted) {
                auth_result result;
                result.ok = true;
                result.leftover.assign(received.begin() + static_cast<std::ptrdiff_t>(check.rest),
                                       received.end());
                co_return result;
            }
            // Still at most max_line_ bytes (else rejected), so the bytes stay below
            // max_line_ + read_chunk whatever the peer sends.
            if (auto ec = co_await detail::read_available(socket, received, read_chunk))
                throw std::system_error(ec);
        }
    }

private:
    std::string token_;
    std::size_t max_line_;
};

} // namespace socket_connector
