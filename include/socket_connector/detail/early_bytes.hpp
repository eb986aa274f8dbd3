#pragma once

// What a side sends before its pair forms: read and kept (bounded), relayed first once paired.

#include <algorithm>
#include <array>
#include <cstddef>
#include <string>
#include <system_error>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/bind_executor.hpp>
#include <asio/buffer.hpp>
#include <asio/error.hpp>
#include <asio/post.hpp>

#include <socket_connector/detail/buffer_pool.hpp>
#include <socket_connector/detail/pairing.hpp>
#include <socket_connector/detail/receive_hint.hpp>
#include <socket_connector/detail/use_tuple.hpp>
#include <socket_connector/tls_session.hpp>

namespace socket_connector::detail {

/// Sides that arrive before the pair forms keep at most this many bytes each; past it the
/// connector stops reading them (backpressure) until they are paired.
inline constexpr std::size_t pending_byte_limit = 64 * 1024;
/// The most a proxy reads of what an accepted side has sent before dialing its B.
inline constexpr std::size_t first_read_size = 16 * 1024;

/// Reads what a side has sent so far, without waiting, into its early bytes (at most
/// `first_read_size`); a side that has nothing to read is left as it is, and one that has ended
/// its stream is marked so. The read's error, if any. `hinted`: the loop is run by one thread,
/// so a side found empty may be marked so for the receive hint.
///
/// A read that would block marks the side empty. A short read does so only for an `unseen`
/// side: in general the end of stream may have come with its bytes and its event been taken
/// already, and then only the next read would see it. But the socket of an unseen side has been
/// on epoll's ready list since it was registered with bytes waiting or bytes came (no epoll_wait
/// has taken it since), and epoll_wait checks what is ready as it takes an entry: an end of
/// stream behind the bytes is reported then, which undoes the mark, and an entry with nothing
/// left is dropped, so the receive waits without a try.
/// Reads without blocking what a side has sent: its socket's bytes, or a TLS side's plaintext.
template <class Side>
std::size_t read_side(Side& side, asio::mutable_buffer into, std::error_code& ec) {
    if (auto* tls = side.tls()) {
        tls_stream<typename Side::socket_type> plain(side.socket(), *tls);
        return plain.read_some(into, ec);
    }
    return side.socket().read_some(into, ec);
}

/// Why reading a side failed: a TLS side's own reason for a TLS failure, else the error's.
template <class Side>
std::string read_failure(const Side& side, std::error_code ec) {
    if (auto* tls = side.tls(); tls && ec == std::errc::protocol_error && !tls->error().empty())
        return tls->error();
    return ec.message();
}

template <class Side>
std::error_code read_sent(arrival<Side>& a, bool unseen, bool hinted) {
    auto& in = a.in;
    auto& socket = a.side->socket();
    if (!in.early.empty() || in.ended) return {};
    std::array<char, first_read_size> bytes;
    std::error_code ec;
    auto n = read_side(*a.side, asio::buffer(bytes), ec);
    if (a.side->tls()) hinted = false; // the hint is about the socket's bytes, not the plaintext
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
        if (hinted) mark_read_empty(socket);
        return {};
    }
    if (ec == asio::error::eof) {
        in.ended = true;
        return {};
    }
    if (ec) return ec;
    in.early.assign(bytes.data(), bytes.data() + n);
    // Most likely all there is, so the relay's first read of the side is its receive that waits.
    in.short_read = n < bytes.size();
    if (in.short_read && unseen && hinted) mark_read_empty(socket);
    return {};
}

/// Why watching a pending side stopped.
enum class watch_end {
    not_pending, ///< paired or closed meanwhile: the socket is not ours any more
    held,        ///< it has sent `pending_byte_limit` bytes, or ended its stream after some
    left         ///< it went away (or failed) before it sent anything to keep
};

/// While a side waits for its partner, keeps what it sends (up to `pending_byte_limit`) and
/// notices if it goes away; then calls `done(a, how, why)` once, on `strand` (`why` says how it
/// left). A chain of completion handlers, not a coroutine: a pending side costs one pending wait
/// on its socket and no coroutine frame (thousands of sides may wait at once).
///
/// `read_now`: read before waiting (a TLS side may hold records read ahead; after a read that
/// would block, it waits).
template <class Side, class Done>
void watch_pending(arrival_ptr<Side> a, const asio::any_io_executor& strand, Done done,
                   bool read_now = false) {
    auto& s = *a->side;
    if (s.state() != side_state::pending)
        return done(std::move(a), watch_end::not_pending, std::string());
    if (a->in.ended || a->in.early.size() >= pending_byte_limit)
        return done(std::move(a), watch_end::held, std::string());
    auto on_readable = asio::bind_executor(
        strand, [a, &strand, done = std::move(done)](std::error_code ec) mutable {
            auto& waiting = *a->side;
            auto& in = a->in;
            if (waiting.state() != side_state::pending)
                return done(std::move(a), watch_end::not_pending, std::string());
            if (ec) return done(std::move(a), watch_end::left, read_failure(waiting, ec));
            // Read into a pooled buffer and keep exactly what came: a side that sent a few bytes
            // (or none: readiness can be spurious) holds no more than that.
            pooled_buffer buf;
            auto room = pending_byte_limit - in.early.size();
            auto n = read_side(waiting,
                               asio::buffer(buf.data(), std::min(room, pooled_buffer::size())), ec);
            if (!ec) in.early.insert(in.early.end(), buf.data(), buf.data() + n);
            if (ec == asio::error::eof && (!in.early.empty() || !a->key.empty())) {
                // Half-closed after sending something: kept; the bytes and the end of stream
                // are relayed once it is paired. A side with a session key is kept even when it
                // sent nothing: it waits for its own partner only (and the pending timeout
                // bounds it), so a client that sends its token and ends its stream receives.
                in.ended = true;
                return done(std::move(a), watch_end::held, std::string());
            }
            if (ec == asio::error::eof) return done(std::move(a), watch_end::left, "disconnected");
            if (ec && ec != asio::error::would_block && ec != asio::error::try_again)
                return done(std::move(a), watch_end::left, read_failure(waiting, ec));
            // Wait for more; a TLS side that gave bytes is read again first.
            const bool again = !ec && waiting.tls() != nullptr;
            watch_pending(std::move(a), strand, std::move(done), again);
        });
    if (read_now || (s.tls() && s.tls()->has_pending()))
        return asio::post(strand, [f = std::move(on_readable)]() mutable { f(std::error_code()); });
    s.socket().async_wait(Side::socket_type::wait_read, std::move(on_readable));
}

} // namespace socket_connector::detail
