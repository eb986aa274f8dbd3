#pragma once

// One relay direction, from its source socket to its sink: everything about moving its bytes.
//
//   start ─> early bytes held? ─> advance: flush what is held ─> fill: read a chunk ─> advance …
//                                     │ sink full: wait writable     │ source empty: wait readable
//                                     │                              │ end of stream: finish
//   finish: the transformer's last bytes written, then the owner passes the end on (half-close)
//
// It is driven by completion handlers, not a coroutine: while idle it is one pending readiness
// wait (or a small receive into the direction itself) and holds no buffer, pipe or frame. A
// chunk is held only between its read and its write, so memory per direction is bounded by one
// buffer (or one pipe) however slow the sink is (backpressure: the next read waits for it).
//
// Copy or splice: see detail/relay_bytes.hpp, which holds the chunk in flight and makes the
// system calls. A direction with a transformer or a traffic log always copies: both need the
// bytes in user space.
//
// Reporting. The direction calls the completion handler it was started with, once, with how it
// ended (`relay_end`) and, for a failure, why. It never calls into its owner otherwise; its owner
// may call `stop()` (and then close the sockets, which cancels what is pending).

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/bind_executor.hpp>
#include <asio/buffer.hpp>
#include <asio/error.hpp>
#include <asio/post.hpp>
#include <fmt/format.h>

#include <socket_connector/concepts.hpp>
#include <socket_connector/detail/buffer_pool.hpp>
#include <socket_connector/detail/printable.hpp>
#include <socket_connector/detail/receive_hint.hpp>
#include <socket_connector/detail/relay_bytes.hpp>
#include <socket_connector/logging.hpp>
#include <socket_connector/side.hpp>
#include <socket_connector/tls_session.hpp>

namespace socket_connector::detail {

/// What a side sent before its pair formed, handed to the direction that reads from it.
struct handoff {
    /// Bytes that arrived before the pair formed (an auth verifier's leftover first).
    std::vector<char> early;
    /// Early bytes the connector already sent to the partner, while it dialed it.
    std::size_t sent_ahead = 0;
    /// The peer ended its stream after `early`.
    bool ended = false;
    /// Its last read brought less than it asked for: most likely nothing more is there yet, so
    /// the first read is the small receive that also waits.
    bool short_read = false;
};

/// The most bytes one `transform()` or `finish()` call may append: a transformer driven by a
/// peer's bytes must not make the relay allocate without bound. Past it the pair is closed.
inline constexpr std::size_t transform_output_limit = 16 * 1024 * 1024;

/// How a relay direction ended.
enum class relay_end {
    finished, ///< the source ended its stream and all was written: the end is to be passed on
    stopped,  ///< `stop()` was called (or the sockets closed under it): nothing to report
    failed    ///< a read, write or transformer failed; the reason comes with it
};

/// What a direction is told about its surroundings.
struct relay_settings {
    side_id from = side_id::a;
    /// Linux: splice bulk transfers (ignored with a transformer or a traffic log).
    bool zero_copy = true;
    /// The receive hint may be used: one thread runs the loop and the program turned it on.
    bool hinted = false;
    /// Where traffic lines go; null: no traffic log.
    const logger* traffic = nullptr;
    /// Counts the bytes written to the sink: this pair's counter for the direction, and the
    /// connector-wide one (or null). Read from any thread.
    std::atomic<std::uint64_t>* bytes = nullptr;
    std::atomic<std::uint64_t>* total = nullptr;
    /// The source's and the sink's TLS sessions, or null (plain TCP).
    tls_session* source_tls = nullptr;
    tls_session* sink_tls = nullptr;
};

template <class Socket>
class relay_direction {
public:
    /// `strand` (the pair's) must outlive the direction; `in` is what the connector hands over
    /// with the source (taken here: a direction keeps no copy of it).
    relay_direction(const asio::any_io_executor& strand, const relay_settings& settings,
                    Socket& source, Socket& sink, handoff in, any_transformer& transform)
        : strand_(strand)
        , source_(source)
        , sink_(sink)
        , transform_(transform ? &transform : nullptr)
        , traffic_(settings.traffic)
        , count_(*settings.bytes)
        , total_(settings.total)
        , source_tls_(settings.source_tls)
        , sink_tls_(settings.sink_tls)
        , zero_copy_(settings.zero_copy && has_splice && !transform_ && !traffic_ && !source_tls_ &&
                     !sink_tls_)
        , hinted_(settings.hinted && !source_tls_)
        , first_short_(in.short_read)
        , unbound_(source.get_executor() == strand && sink.get_executor() == strand)
        , from_(settings.from)
        , last_active_(std::chrono::steady_clock::now()) {
        counted(in.sent_ahead);
        if (!in.early.empty()) bytes_.hold_early(std::move(in.early));
        if (in.ended) bytes_.set_source_ended();
    }

    relay_direction(const relay_direction&) = delete;
    relay_direction& operator=(const relay_direction&) = delete;

    /// When this direction last read or wrote a byte.
    std::chrono::steady_clock::time_point last_active() const noexcept { return last_active_; }
    /// Ends the direction at its next step, quietly (`relay_end::stopped`).
    void stop() noexcept { stopping_ = true; }

    /// Starts relaying; `done(relay_end, std::string why)` is called once when it ends. `done`
    /// holds whatever keeps the sockets alive; it travels with each pending operation.
    template <class Handler>
    void start(Handler done) {
        // A TLS source may hold records read ahead (during its handshake or verifier): read
        // first, and wait only once a read wants more.
        if (source_tls_ && !bytes_.holding() && !bytes_.source_ended())
            return advance(std::move(done));
        if (bytes_.holding()) { // the early bytes
            // The first read after these bytes: the small receive that waits, when the side was
            // read short or is marked empty.
            bytes_.set_short_read(first_short_ || (hinted_ && !receive_tries_first(source_)));
            if (auto why = process_held(); !why.empty())
                return end(std::move(done), relay_end::failed, std::move(why));
            return advance(std::move(done));
        }
        if (bytes_.source_ended()) return end_of_stream(std::move(done));
        if (first_short_ || (hinted_ && !receive_tries_first(source_)))
            return wait_readable(std::move(done));
        advance(std::move(done));
    }

    /// Most chunks one direction moves before it lets other work on its thread run.
    static constexpr int chunks_per_turn = 16;

private:
    enum class io_op { read, write };

    /// Starts an operation, `initiate(handler)`, whose handler `f` runs on the pair's strand.
    /// When the strand is the sockets' own executor (one thread runs the loop), the handler
    /// goes unbound: it runs there anyway, and each pending operation is smaller by two
    /// executors (the binder's and the work it tracks), about 110 bytes per idle direction.
    template <class Initiate, class F>
    void on_strand(Initiate initiate, F f) {
        if (unbound_)
            initiate(std::move(f));
        else
            initiate(asio::bind_executor(strand_, std::move(f)));
    }

    template <class Handler>
    void end(Handler done, relay_end how, std::string why = {}) {
        bytes_.release();
        done(how, std::move(why));
    }

    // ---- waiting ----------------------------------------------------------------------------

    /// Waits for the source: a bulk direction with a readiness wait (its next read splices), any
    /// other with a small receive into the direction, which reads and waits in one operation
    /// (Asio re-arms epoll for a wait, but tries a receive first and re-arms nothing).
    template <class Handler>
    void wait_readable(Handler done) {
        if (source_tls_) return wait_tls_readable(std::move(done));
        if (!bytes_.bulk()) return receive_small(std::move(done));
        bytes_.waiting();
        on_strand(
            [this](auto handler) { source_.async_wait(Socket::wait_read, std::move(handler)); },
            [this, done = std::move(done)](std::error_code ec) mutable {
                ready(ec, io_op::read, std::move(done));
            });
    }

    /// A TLS source: decrypted bytes may be buffered already (then at once), else the socket.
    template <class Handler>
    void wait_tls_readable(Handler done) {
        auto go_on = [this, done = std::move(done)](std::error_code ec) mutable {
            ready(ec, io_op::read, std::move(done));
        };
        if (source_tls_->has_pending())
            return asio::post(strand_, [go_on = std::move(go_on)]() mutable { go_on({}); });
        on_strand(
            [this](auto handler) { source_.async_wait(Socket::wait_read, std::move(handler)); },
            std::move(go_on));
    }

    template <class Handler>
    void receive_small(Handler done) {
        on_strand(
            [this](auto handler) {
                source_.async_receive(bytes_.small_buffer(), std::move(handler));
            },
            [this, done = std::move(done)](std::error_code ec, std::size_t n) mutable {
                received_small(ec, n, std::move(done));
            });
    }

    /// A readiness wait has completed.
    template <class Handler>
    void ready(std::error_code ec, io_op op, Handler done) {
        if (ec == asio::error::operation_aborted || stopping_)
            return end(std::move(done), relay_end::stopped);
        if (ec) return end(std::move(done), relay_end::failed, failure(op, ec));
        advance(std::move(done));
    }

    template <class Handler>
    void received_small(std::error_code ec, std::size_t n, Handler done) {
        if (ec == asio::error::operation_aborted || stopping_)
            return end(std::move(done), relay_end::stopped);
        if (ec == asio::error::eof) return end_of_stream(std::move(done));
        if (ec) return end(std::move(done), relay_end::failed, failure(io_op::read, ec));
        bytes_.took_small(source_, n);
        if (bytes_.read_empty()) mark_read_empty_source();
        last_active_ = std::chrono::steady_clock::now();
        if (auto why = process_held(); !why.empty())
            return end(std::move(done), relay_end::failed, std::move(why));
        advance(std::move(done));
    }

    // ---- moving bytes -----------------------------------------------------------------------

    /// Moves chunks from source to sink until one of them would block, then waits for readiness
    /// with nothing held (source) or with the chunk held (sink: backpressure).
    template <class Handler>
    void advance(Handler done) {
        for (int chunk = 0; chunk < chunks_per_turn; ++chunk) {
            if (stopping_) return end(std::move(done), relay_end::stopped);
            std::error_code ec;
            if (bytes_.holding()) {
                std::size_t written = 0;
                auto result = flush_held(written, ec);
                counted(written);
                if (result == relay_step::again) {
                    on_strand(
                        [this](auto handler) {
                            sink_.async_wait(Socket::wait_write, std::move(handler));
                        },
                        [this, done = std::move(done)](std::error_code e) mutable {
                            ready(e, io_op::write, std::move(done));
                        });
                    return;
                }
                if (result == relay_step::failed)
                    return end(std::move(done), relay_end::failed, failure(io_op::write, ec));
                // The source ended right behind these bytes: pass the end on (it leaves with
                // them: they were sent with MSG_MORE).
                if (bytes_.source_ended()) return end_of_stream(std::move(done));
                // A short read has most likely emptied the source: the small receive finds out,
                // and waits if so, in one system call instead of two; with the receive hint, in
                // none when the source is marked empty. Unmarked (a short read proves nothing),
                // read here instead: the same call the receive would try first, and one that
                // marks the source if it would block, so the receive then waits without trying.
                if (bytes_.short_read() && !source_tls_ &&
                    !(hinted_ && receive_tries_first(source_)))
                    return receive_small(std::move(done));
            }
            auto result = fill_next(ec);
            if (bytes_.read_empty()) mark_read_empty_source();
            if (result == relay_step::again) return wait_readable(std::move(done));
            if (result == relay_step::end) return end_of_stream(std::move(done));
            if (result == relay_step::failed)
                return end(std::move(done), relay_end::failed, failure(io_op::read, ec));
            last_active_ = std::chrono::steady_clock::now();
            if (auto why = process_held(); !why.empty())
                return end(std::move(done), relay_end::failed, std::move(why));
        }
        // A long burst: let the other work on this thread have a turn, then carry on.
        asio::post(strand_, [this, done = std::move(done)]() mutable { advance(std::move(done)); });
    }

    /// Writes what is held to the sink: the socket, or a TLS sink's session.
    relay_step flush_held(std::size_t& written, std::error_code& ec) {
        if (!sink_tls_) return bytes_.flush(sink_, written, ec);
        tls_stream<Socket> plain(sink_, *sink_tls_);
        return bytes_.flush(plain, written, ec);
    }

    /// Reads the next chunk from the source: the socket, or a TLS source's session.
    relay_step fill_next(std::error_code& ec) {
        if (!source_tls_) return bytes_.fill(source_, zero_copy_, ec);
        tls_stream<Socket> plain(source_, *source_tls_);
        return bytes_.fill(plain, false, ec);
    }

    /// The source ended its stream: flush the transformer, then report it (the owner passes the
    /// end on as a half-close; the other direction goes on).
    template <class Handler>
    void end_of_stream(Handler done) {
        if (transform_ && !finished_) {
            finished_ = true;
            auto& out = bytes_.output();
            try {
                transform_->finish(out);
                check_output(out, 0);
            } catch (const std::exception& e) {
                return end(std::move(done), relay_end::failed, e.what());
            }
            if (!out.empty()) {
                bytes_.hold_output();
                bytes_.set_source_ended(); // flushed with MSG_MORE, then back here
                return advance(std::move(done));
            }
        }
        end(std::move(done), relay_end::finished);
    }

    /// A read of the source would just have blocked: with the hint, its next receive waits
    /// without trying first (any event of the source taken meanwhile undoes the mark).
    void mark_read_empty_source() {
        if (hinted_) mark_read_empty(source_);
    }

    void counted(std::size_t n) {
        if (n == 0) return;
        count_.fetch_add(n, std::memory_order_relaxed);
        if (total_) total_->fetch_add(n, std::memory_order_relaxed);
        last_active_ = std::chrono::steady_clock::now();
    }

    std::string failure(io_op op, std::error_code ec) const {
        const auto* tls = op == io_op::read ? source_tls_ : sink_tls_;
        const bool tls_error = tls && ec == std::errc::protocol_error && !tls->error().empty();
        return fmt::format("{} {}: {}", op == io_op::read ? "read from" : "write to",
                           socket_connector::to_string(op == io_op::read ? from_ : other(from_)),
                           tls_error ? "TLS: " + tls->error() : ec.message());
    }

    // ---- transformer and traffic log -------------------------------------------------------

    /// Logs the bytes just read and runs them through the transformer, whose output is then
    /// what is held. The reason, if the transformer failed.
    std::string process_held() {
        if (!traffic_ && !transform_) return {};
        auto data = bytes_.held();
        if (traffic_ && !data.empty())
            (*traffic_)(log_level::traffic, fmt::format("{} -> {}: {}", to_string(from_),
                                                        to_string(other(from_)), printable(data)));
        if (!transform_) return {};
        auto& out = bytes_.output();
        try {
            transform_->transform(data, out);
            check_output(out, data.size());
        } catch (const std::exception& e) {
            return e.what();
        }
        bytes_.hold_output();
        return {};
    }

    void check_output(const std::vector<char>& out, std::size_t in) const {
        if (out.size() > transform_output_limit)
            throw std::length_error(fmt::format(
                "transformer of {} -> {} produced {} bytes from {} (the limit is {} per call)",
                to_string(from_), to_string(other(from_)), out.size(), in, transform_output_limit));
    }

    const asio::any_io_executor& strand_; // the pair's
    Socket& source_;
    Socket& sink_;
    any_transformer* transform_;
    const logger* traffic_;
    std::atomic<std::uint64_t>& count_;
    std::atomic<std::uint64_t>* total_;
    tls_session* source_tls_;
    tls_session* sink_tls_;
    bool zero_copy_;
    bool hinted_;
    bool first_short_; // the source was read short when handed over: the first read waits
    bool unbound_;     // the strand is the sockets' executor: handlers need no binding
    side_id from_;
    bool stopping_ = false;
    bool finished_ = false; // the transformer's finish() has run
    std::chrono::steady_clock::time_point last_active_;

    relay_bytes<Socket> bytes_; // the chunk in flight
};

} // namespace socket_connector::detail
