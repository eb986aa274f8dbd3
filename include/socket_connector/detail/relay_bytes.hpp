#pragma once

// The bytes one relay direction has in flight, and the system calls that move them: a chunk read
// from the source and not yet written to the sink, held in the direction itself (a small
// receive), a pooled buffer, a pooled pipe (splice), the side's early bytes or a transformer's
// output. Only `relay_direction` uses it; it decides when to read, write and wait.
//
// Copy or splice. Small chunks (requests, replies, interactive traffic) cost less copied than
// spliced: two splices and a pipe per chunk against one recv and one send. So a direction starts
// by copying and, on Linux with zero copy allowed, splices once a read brings `bulk_threshold`
// bytes or more; it goes back to copying when the first splice after a readiness wait brings
// fewer than `small_threshold`.

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <optional>
#include <span>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <asio/buffer.hpp>
#include <asio/error.hpp>

#include <socket_connector/detail/buffer_pool.hpp>
#include <socket_connector/detail/platform.hpp>

namespace socket_connector::detail {

/// What a read or a write of the bytes in flight came to.
enum class relay_step {
    progress, ///< read: a chunk is held; write: everything held was written
    again,    ///< it would block: wait for readiness
    end,      ///< read: the source ended its stream
    failed    ///< an error, in `ec`
};

template <class Socket>
class relay_bytes {
public:
    static constexpr std::size_t bulk_threshold = 16 * 1024;
    static constexpr std::size_t small_threshold = 4 * 1024;
    /// Bytes a small receive takes in: most requests, replies and interactive messages fit.
    static constexpr std::size_t small_size = 128;

    /// Whether bytes are held, read but not yet written.
    bool holding() const noexcept { return in_pipe_ > 0 || offset_ < length_; }
    /// Whether the direction moves bulk (splices) rather than small chunks.
    bool bulk() const noexcept { return bulk_; }
    /// Whether the last copying read brought less than it asked for: most likely nothing more is
    /// there, so the next read is the small receive that also waits.
    bool short_read() const noexcept { return short_ && !bulk_; }
    void set_short_read(bool value) noexcept { short_ = value; }
    /// Whether the last read made here (not a small receive) would have blocked. A read that
    /// brought less than it asked for does not count: the end of stream may be queued right
    /// behind its bytes, and its event taken already.
    bool read_empty() const noexcept { return read_empty_; }
    /// Whether the source's end of stream is right behind the bytes held: once they are written,
    /// the direction ends. They are written with MSG_MORE, so the end of stream (a shutdown, or
    /// the close) leaves in the same segment as the last of them.
    bool source_ended() const noexcept { return source_ended_; }
    void set_source_ended() noexcept { source_ended_ = true; }
    /// The direction is about to wait for its source to be readable.
    void waiting() noexcept { waited_ = true; }

    /// The bytes held.
    std::span<const char> held() noexcept {
        const char* base = nullptr;
        switch (where_) {
        case where::small:
            base = small_.data();
            break;
        case where::buffer:
            base = buffer_->data();
            break;
        case where::early:
            base = early_.data();
            break;
        case where::output:
            base = output_.data();
            break;
        case where::none:
            return {};
        }
        return {base + offset_, length_ - offset_};
    }

    /// Holds a side's early bytes, to be written first.
    void hold_early(std::vector<char> early) noexcept {
        early_ = std::move(early);
        hold(where::early, early_.size());
    }
    /// Where a transformer appends its output for the bytes held (cleared here).
    std::vector<char>& output() noexcept {
        output_.clear();
        return output_;
    }
    /// Holds the output instead of the bytes it was made from.
    void hold_output() noexcept {
        buffer_.reset();
        std::vector<char>().swap(early_); // and its capacity
        hold(where::output, output_.size());
    }

    /// Where a small receive puts its bytes: a few bytes inside the direction, so that a
    /// direction waiting for its source holds no pooled buffer. Only when nothing is held.
    asio::mutable_buffer small_buffer() noexcept { return asio::buffer(small_); }

    /// A small receive brought `n` bytes. They are now held; if they filled the small buffer, more
    /// may be waiting, so they move to a pooled buffer and reads without blocking follow: one,
    /// and a second if the first was short, to see whether the source has ended its stream
    /// behind these bytes. An error of those reads is kept for the next `fill`, after the bytes
    /// are written.
    void took_small(Socket& source, std::size_t n) {
        hold(where::small, n);
        short_ = n < small_.size();
        waited_ = false;
        read_empty_ = false;
        if (short_) {
            bulk_ = false;
            return;
        }
        buffer_.emplace();
        std::memcpy(buffer_->data(), small_.data(), n);
        hold(where::buffer, n);
        for (int reads = 0; reads < 2 && length_ < buffer_->size(); ++reads) {
            std::error_code ec;
            auto more = source.read_some(
                asio::buffer(buffer_->data() + length_, buffer_->size() - length_), ec);
            if (ec == asio::error::eof) {
                source_ended_ = true;
                break;
            }
            if (ec == asio::error::would_block || ec == asio::error::try_again) {
                read_empty_ = true;
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

    /// Reads one chunk from `source` without blocking: into a pipe when `zero_copy` allows it and
    /// the stream is moving bulk (and a pipe can be had), else into a pooled buffer. Only when
    /// nothing is held.
    ///
    /// `Source` is the socket, or a stream over it that reads the same way (a TLS side's
    /// plaintext, which never splices).
    template <class Source>
    relay_step fill(Source& source, bool zero_copy, std::error_code& ec) {
        read_empty_ = false;
#if defined(__linux__)
        if constexpr (std::is_same_v<Source, Socket>) {
            if (zero_copy && bulk_) {
                if (!pipe_) pipe_.emplace();
                if (pipe_->valid()) {
                    auto n = pipe_->splice_from(source.native_handle(), splice_chunk);
                    if (n > 0) {
                        in_pipe_ = static_cast<std::size_t>(n);
                        short_ = in_pipe_ < splice_chunk;
                        pipe_->set_empty(false);
                        if (waited_ && in_pipe_ < small_threshold) bulk_ = false;
                        waited_ = false;
                        return relay_step::progress;
                    }
                    if (n == 0) return relay_step::end;
                    release();
                    if (errno == EAGAIN) return relay_step::again;
                    ec.assign(errno, asio::error::get_system_category());
                    return relay_step::failed;
                }
                pipe_.reset(); // out of descriptors for a pipe: copy this chunk instead
            }
        }
#else
        (void)zero_copy;
#endif
        if (deferred_) {
            ec = std::exchange(deferred_, {});
            release();
            return relay_step::failed;
        }
        if (!buffer_) buffer_.emplace();
        auto n = source.read_some(asio::buffer(buffer_->data(), buffer_->size()), ec);
        waited_ = false;
        if (!ec) {
            hold(where::buffer, n);
            short_ = n < buffer_->size();
            if (n >= bulk_threshold) bulk_ = true;
            return relay_step::progress;
        }
        release();
        if (ec == asio::error::would_block || ec == asio::error::try_again) {
            ec.clear();
            read_empty_ = true;
            return relay_step::again;
        }
        if (ec == asio::error::eof) {
            ec.clear();
            return relay_step::end;
        }
        return relay_step::failed;
    }

    /// Writes what is held to `sink` without blocking; `written` grows by the bytes written.
    /// `progress` once all is written (the pipe or buffer is back in its pool), `again` when the
    /// sink is full (backpressure: wait until it is writable, then flush again).
    /// `Sink`: the socket, or a stream over it that writes the same way (a TLS side's
    /// plaintext: it takes the same bytes again after it would have blocked).
    template <class Sink>
    relay_step flush(Sink& sink, std::size_t& written, std::error_code& ec) {
#if defined(__linux__)
        if constexpr (std::is_same_v<Sink, Socket>) {
            if (in_pipe_ > 0) block_sigpipe_on_this_thread();
            while (in_pipe_ > 0) {
                auto m = pipe_->splice_to(sink.native_handle(), in_pipe_);
                if (m > 0) {
                    in_pipe_ -= static_cast<std::size_t>(m);
                    written += static_cast<std::size_t>(m);
                    continue;
                }
                if (m < 0 && errno == EAGAIN) return relay_step::again;
                ec.assign(m < 0 ? errno : EPIPE, asio::error::get_system_category());
                if (ec.value() == EPIPE) consume_sigpipe();
                return relay_step::failed;
            }
        }
#endif
        while (offset_ < length_) {
            auto data = held();
            auto m = sink.send(asio::buffer(data.data(), data.size()),
                               source_ended_ ? more_to_come : 0, ec);
            if (ec == asio::error::would_block || ec == asio::error::try_again) {
                ec.clear();
                return relay_step::again;
            }
            if (ec) return relay_step::failed;
            offset_ += m;
            written += m;
        }
#if defined(__linux__)
        if (pipe_) pipe_->set_empty(true);
#endif
        release();
        return relay_step::progress;
    }

    /// Gives back the pipe or buffer and the early bytes. A pipe that still holds bytes is
    /// closed, not pooled. A transformer's output buffer is kept for the next chunk unless a
    /// burst grew it past a relay buffer.
    void release() noexcept {
        pipe_.reset();
        buffer_.reset();
        in_pipe_ = 0;
        offset_ = length_ = 0;
        where_ = where::none;
        if (early_.capacity() > 0) std::vector<char>().swap(early_);
        output_.clear();
        if (output_.capacity() > relay_buffer_size) std::vector<char>().swap(output_);
    }

private:
    enum class where : unsigned char { none, small, buffer, early, output };

    void hold(where w, std::size_t length) noexcept {
        where_ = w;
        offset_ = 0;
        length_ = length;
    }

#if defined(__linux__)
    std::optional<pooled_pipe> pipe_;
#else
    struct no_pipe {};
    std::optional<no_pipe> pipe_;
#endif
    std::optional<pooled_buffer> buffer_;
    std::vector<char> early_;  // a side's early bytes, while they are held
    std::vector<char> output_; // a transformer's output, while it is held
    std::size_t in_pipe_ = 0;
    std::size_t offset_ = 0;
    std::size_t length_ = 0;
    where where_ = where::none;  // (beside the flags: an idle pair is smaller by the padding)
    bool bulk_ = false;          // the last reads were large: splice rather than copy
    bool waited_ = false;        // the next read is the first after a readiness wait
    bool short_ = false;         // the last copying read brought less than it asked for
    bool source_ended_ = false;  // the source's end of stream is right behind what is held
    bool read_empty_ = false;    // the last read made here would have blocked
    std::error_code deferred_{}; // a read error met after bytes that are still to be written
    std::array<char, small_size> small_{};
};

} // namespace socket_connector::detail
