#pragma once

// The bytes one relay direction has in flight when it is driven by completion handlers rather
// than a coroutine: in a pipe (Linux zero-copy) or in a pooled buffer. A direction holds either
// only between reading a chunk and writing it out, so an idle direction holds nothing at all.

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <optional>
#include <system_error>
#include <utility>

#include <asio/buffer.hpp>
#include <asio/error.hpp>
#include <asio/socket_base.hpp>

#include <socket_connector/detail/buffer_pool.hpp>
#include <socket_connector/detail/splice.hpp>

namespace socket_connector::detail {

/// What a `fill` or `flush` step came to.
enum class lane_step {
    progress, ///< fill: bytes read and now held; flush: everything held was written
    again,    ///< would block: wait for readiness
    end,      ///< fill: the source ended its stream
    failed    ///< an error, in `ec`
};

class lane {
public:
    /// The direction is about to wait for its source to be readable.
    void waiting() noexcept { waited_ = true; }

    /// Whether bytes are held, read but not yet written.
    bool holding() const noexcept { return in_pipe_ > 0 || offset_ < length_; }

    /// Whether the direction moves bulk (splices) rather than small chunks.
    bool bulk() const noexcept { return bulk_; }

    /// Whether the last copying read brought less than it asked for: the source has most
    /// likely nothing more, so the next read is the small receive that also waits.
    bool drained() const noexcept { return short_ && !bulk_; }

    /// Where a small receive puts its bytes: a few bytes inside the lane, so that a direction
    /// waiting for its source holds no pooled buffer. Only use when nothing is held.
    ///
    /// Waiting with a receive rather than a readiness wait saves a system call per wait (Asio
    /// re-arms epoll for a wait, but tries a receive first and re-arms nothing); a chunk that
    /// fits is then written straight from here.
    asio::mutable_buffer small_buffer() noexcept { return asio::buffer(small_); }

    /// A small receive brought `n` bytes. They are now held; if they filled the small buffer,
    /// more may be waiting, so they move to a pooled buffer and reads without blocking follow:
    /// one, and a second if the first was short, to see whether the source has ended its
    /// stream behind these bytes (`source_ended`). An error of those reads is kept for the next
    /// `fill`, after the bytes are written.
    template <class Socket>
    void took_small(Socket& from, std::size_t n) {
        offset_ = 0;
        length_ = n;
        short_ = n < small_.size();
        waited_ = false;
        emptied_ = false;
        if (short_) {
            bulk_ = false;
            return;
        }
        buffer_.emplace();
        std::memcpy(buffer_->data(), small_.data(), n);
        for (int reads = 0; reads < 2 && length_ < buffer_->size(); ++reads) {
            std::error_code ec;
            const auto room = buffer_->size() - length_;
            auto more = from.read_some(asio::buffer(buffer_->data() + length_, room), ec);
            if (ec == asio::error::eof) {
                source_ended_ = true;
                break;
            }
            if (ec == asio::error::would_block || ec == asio::error::try_again) {
                emptied_ = true;
                break;
            }
            if (ec) {
                deferred_ = ec;
                break;
            }
            length_ += more;
        }
        short_ = length_ < buffer_->size();
        if (length_ >= bulk_threshold) bulk_ = true;
    }

    /// Whether the last read this lane made itself (in `took_small` or `fill`, not the small
    /// receive) found the source empty: it would have blocked. A read that brought less than it
    /// asked for does not count: the end of stream may be queued right behind its bytes (it
    /// arrived with them; the next read returns it), and its event may have been taken already.
    bool emptied() const noexcept { return emptied_; }

    /// Whether the source ended its stream right behind the bytes held (seen by `took_small`):
    /// once they are written, the direction ends. Those bytes are written with MSG_MORE, so the
    /// end of stream (a shutdown, or the close) leaves in the same segment as the last of them:
    /// a closing reply costs one packet, not two.
    bool source_ended() const noexcept { return source_ended_; }

    /// Reads one chunk from `from` without blocking, into a pipe if `zero_copy` allows it and
    /// the stream is moving bulk (one can be had), else into a buffer. Only call when nothing
    /// is held.
    ///
    /// Small chunks (requests, replies, interactive traffic) cost less copied than spliced: two
    /// splices and a pipe per chunk against one recv and one send. So a direction starts by
    /// copying and splices once a read brings `bulk_threshold` bytes or more, going back to
    /// copying when the first splice after a readiness wait brings fewer than
    /// `small_threshold` (the tail of a burst, read just before the source runs dry, does not
    /// count).
    template <class Socket>
    lane_step fill(Socket& from, bool zero_copy, std::error_code& ec) {
        emptied_ = false;
#if defined(__linux__)
        if (zero_copy && bulk_) {
            if (!pipe_) pipe_.emplace();
            if (pipe_->valid()) {
                for (;;) {
                    auto n = ::splice(from.native_handle(), nullptr, pipe_->write_end(), nullptr,
                                      splice_chunk, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                    if (n > 0) {
                        in_pipe_ = static_cast<std::size_t>(n);
                        short_ = in_pipe_ < splice_chunk;
                        pipe_->set_empty(false);
                        if (waited_ && in_pipe_ < small_threshold) bulk_ = false;
                        waited_ = false;
                        return lane_step::progress;
                    }
                    if (n == 0) return lane_step::end;
                    if (errno == EINTR) continue;
                    release();
                    if (errno == EAGAIN) return lane_step::again;
                    ec.assign(errno, std::system_category());
                    return lane_step::failed;
                }
            }
            pipe_.reset(); // out of descriptors for a pipe: copy this chunk instead
        }
#else
        (void)zero_copy;
#endif
        if (deferred_) {
            ec = std::exchange(deferred_, {});
            release();
            return lane_step::failed;
        }
        if (!buffer_) buffer_.emplace();
        offset_ = 0;
        length_ = from.read_some(asio::buffer(buffer_->data(), buffer_->size()), ec);
        waited_ = false;
        if (!ec) {
            short_ = length_ < buffer_->size();
            if (length_ >= bulk_threshold) bulk_ = true;
            return lane_step::progress;
        }
        length_ = 0;
        release();
        if (ec == asio::error::would_block || ec == asio::error::try_again) {
            ec.clear();
            emptied_ = true;
            return lane_step::again;
        }
        if (ec == asio::error::eof) {
            ec.clear();
            return lane_step::end;
        }
        return lane_step::failed;
    }

    /// Writes what is held to `to` without blocking; `written` grows by the bytes written.
    /// `progress` once all is written (the pipe or buffer is back in its pool), `again` when
    /// `to` is full (backpressure: wait until it is writable, then flush again).
    template <class Socket>
    lane_step flush(Socket& to, std::size_t& written, std::error_code& ec) {
#if defined(__linux__)
        if (in_pipe_ > 0) block_sigpipe_on_this_thread();
        while (in_pipe_ > 0) {
            auto m = ::splice(pipe_->read_end(), nullptr, to.native_handle(), nullptr, in_pipe_,
                              SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (m > 0) {
                in_pipe_ -= static_cast<std::size_t>(m);
                written += static_cast<std::size_t>(m);
                continue;
            }
            if (m < 0 && errno == EINTR) continue;
            if (m < 0 && errno == EAGAIN) return lane_step::again;
            ec.assign(m < 0 ? errno : EPIPE, std::system_category());
            if (ec.value() == EPIPE) consume_sigpipe();
            return lane_step::failed;
        }
#endif
        while (offset_ < length_) {
            const char* held = buffer_ ? buffer_->data() : small_.data();
            auto m = to.send(asio::buffer(held + offset_, length_ - offset_),
                             source_ended_ ? more_to_come : 0, ec);
            if (ec == asio::error::would_block || ec == asio::error::try_again) {
                ec.clear();
                return lane_step::again;
            }
            if (ec) return lane_step::failed;
            offset_ += m;
            written += m;
        }
#if defined(__linux__)
        if (pipe_) pipe_->set_empty(true);
#endif
        release();
        return lane_step::progress;
    }

    /// Gives back the pipe or buffer. A pipe that still holds bytes is closed, not pooled.
    void release() noexcept {
        pipe_.reset();
        buffer_.reset();
        in_pipe_ = 0;
        offset_ = length_ = 0;
    }

    static constexpr std::size_t bulk_threshold = 16 * 1024;
    static constexpr std::size_t small_threshold = 4 * 1024;
    /// Bytes a small receive takes in: most requests, replies and interactive messages fit.
    static constexpr std::size_t small_size = 128;
#if defined(MSG_MORE)
    /// Send flag: more follows at once (here, the end of stream), so hold a partial segment.
    static constexpr int more_to_come = MSG_MORE;
#else
    static constexpr int more_to_come = 0;
#endif

private:
#if defined(__linux__)
    std::optional<pooled_pipe> pipe_;
#else
    struct no_pipe {};
    std::optional<no_pipe> pipe_;
#endif
    std::optional<pooled_buffer> buffer_;
    std::size_t in_pipe_ = 0;
    std::size_t offset_ = 0;
    std::size_t length_ = 0;
    bool bulk_ = false;          // the last reads were large: splice rather than copy
    bool waited_ = false;        // the next read is the first after a readiness wait
    bool short_ = false;         // the last copying read brought less than it asked for
    bool source_ended_ = false;  // the source's end of stream is right behind what is held
    bool emptied_ = false;       // the lane's last own read would have blocked
    std::error_code deferred_{}; // a read error met after bytes that are still to be written
    std::array<char, small_size> small_{};
};

} // namespace socket_connector::detail
