#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/bind_executor.hpp>
#include <asio/buffer.hpp>
#include <asio/co_spawn.hpp>
#include <asio/dispatch.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>

#include <socket_connector/detail/lane.hpp>
#include <socket_connector/detail/native_socket.hpp>
#include <socket_connector/detail/pump.hpp>
#include <socket_connector/detail/strand_event.hpp>
#include <socket_connector/logging.hpp>
#include <socket_connector/side.hpp>

namespace socket_connector {

namespace detail {
/// What a connector shares with its connections (they may outlive it by a moment).
struct relay_context {
    socket_connector::logger log;
    bool verbose = false;
    bool log_traffic = false;
    bool zero_copy = true;
    /// The connector's io_context is run by one thread (`options::one_thread`).
    bool one_thread = false;
    /// A connection with no byte relayed either way for this long is closed; zero: never.
    std::chrono::milliseconds idle_timeout{0};
    std::atomic<std::uint64_t> bytes_a_to_b{0};
    std::atomic<std::uint64_t> bytes_b_to_a{0};
};
} // namespace detail

/// A joined pair of sides relaying to each other.
///
/// It ends when both directions have ended (each end of stream passed on as a half-close), or at
/// once when either side fails (reset, write error), it has been idle for the connector's
/// `idle_timeout`, or `close()` is called; then both sockets are closed. Everything it does
/// runs on its own strand (or on its one-thread executor, `options::one_thread`).
///
/// A direction with no transformer and no traffic log (the common case) is driven by completion
/// handlers: while idle it is one pending readiness wait and holds no buffer, pipe or coroutine
/// frame. On Linux it moves bytes with splice(2) (`zero_copy`); a thread that does so has
/// SIGPIPE blocked, since splice(2) cannot be told MSG_NOSIGNAL. A direction that has a
/// transformer or a traffic log runs the copy loop as a coroutine.
template <class Protocol, class Executor>
class basic_connection : public std::enable_shared_from_this<basic_connection<Protocol, Executor>> {
public:
    using side_type = basic_side<Protocol, Executor>;
    /// Runs the connection's handlers one at a time: a strand of the connector's executor, or
    /// that executor itself when its io_context has one thread (`options::one_thread`).
    using strand_type = asio::any_io_executor;
    /// Told, on the connection's strand, that the connection has ended and why.
    using end_handler = std::function<void(std::shared_ptr<basic_connection>, std::string)>;

    basic_connection(strand_type strand, std::shared_ptr<side_type> a, std::shared_ptr<side_type> b,
                     std::uint64_t id, std::shared_ptr<detail::relay_context> context)
        : strand_(std::move(strand))
        , a_(std::move(a))
        , b_(std::move(b))
        , id_(id)
        , context_(std::move(context)) {
        a_to_b_.from = 'A';
        a_to_b_.to = 'B';
        a_to_b_.total = &context_->bytes_a_to_b;
        b_to_a_.from = 'B';
        b_to_a_.to = 'A';
        b_to_a_.total = &context_->bytes_b_to_a;
        if (context_->log_traffic) a_to_b_.traffic = b_to_a_.traffic = &context_->log;
    }

    /// The connection's number within its connector, from 1.
    std::uint64_t id() const noexcept { return id_; }
    side_type& side_a() noexcept { return *a_; }
    side_type& side_b() noexcept { return *b_; }
    /// Bytes written to B that came from A, and the reverse (after transformers).
    std::uint64_t bytes_a_to_b() const noexcept { return a_to_b_.bytes.load(); }
    std::uint64_t bytes_b_to_a() const noexcept { return b_to_a_.bytes.load(); }
    /// True once both sockets are closed.
    bool closed() const noexcept { return closed_.load(); }

    /// Closes both sockets now, dropping what is in flight. Safe from any thread.
    void close() {
        asio::dispatch(strand_, [self = this->shared_from_this()] {
            if (self->closed_) return;
            self->close_requested_ = true;
            self->close_sockets();
        });
    }

    /// Completes once the connection has ended and both sockets are closed.
    asio::awaitable<void> wait_closed() {
        auto self = this->shared_from_this(); // alive until the strand part is done
        co_await asio::co_spawn(strand_, wait_closed_on_strand(), asio::use_awaitable);
    }

    /// Starts relaying; `on_end` is called once when the connection has ended, never inside
    /// this call. Relaying is dispatched to the connection's executor, so it may start inside
    /// this call (on a thread that runs that executor) rather than in a later turn of the
    /// event loop.
    void start(end_handler on_end) {
        asio::dispatch(strand_, [self = this->shared_from_this(), on_end = std::move(on_end)] {
            self->begin(std::move(on_end));
        });
    }

private:
    /// Most chunks one direction moves before it lets other work on its thread run.
    static constexpr int chunks_per_turn = 16;

    asio::awaitable<void> wait_closed_on_strand() {
        while (!closed_)
            co_await ended_.wait(strand_);
    }

    side_type& source(int way) noexcept { return way == 0 ? *a_ : *b_; }
    side_type& sink(int way) noexcept { return way == 0 ? *b_ : *a_; }
    detail::direction& dir(int way) noexcept { return way == 0 ? a_to_b_ : b_to_a_; }

    using self_ptr = std::shared_ptr<basic_connection>;

    template <class F>
    auto on_strand(F f) {
        return asio::bind_executor(strand_, std::move(f));
    }

    void begin(end_handler on_end) {
        on_end_ = std::move(on_end); // the connector made both sockets non-blocking
        const auto now = std::chrono::steady_clock::now();
        a_to_b_.last_active = b_to_a_.last_active = now;
        if (context_->idle_timeout.count() > 0) {
            idle_timer_.emplace(strand_);
            arm_idle_timer(now + context_->idle_timeout);
        }
        running_ = 2;
        start_direction(0, this->shared_from_this());
        start_direction(1, this->shared_from_this());
    }

    // Each direction owns one reference to the connection, held by whichever of its handlers is
    // pending and moved (never copied) from one handler to the next: no reference-count
    // traffic on the hot path, and a handler destroyed unrun (its io_context gone) lets go.

    void start_direction(int way, self_ptr self) {
        auto& from = source(way);
        auto& to = sink(way);
        auto& d = dir(way);
        counted(way, from.early_sent_); // sent by the connector while it dialed `to`
        if (from.transformer || d.traffic) {
            asio::co_spawn(strand_,
                           detail::pump(from.socket_, to.socket_, std::move(from.early_),
                                        from.early_eof_, from.transformer, d),
                           on_strand([self = std::move(self), way](std::exception_ptr e) mutable {
                               auto& me = *self;
                               me.direction_ended(way, describe(e), std::move(self));
                           }));
            return;
        }
        zero_copy_[way] = context_->zero_copy;
        if (from.early_.empty()) {
            std::vector<char>().swap(from.early_); // and its capacity
            return after_early(way, std::move(self));
        }
        asio::async_write(
            to.socket_, asio::buffer(from.early_),
            on_strand([self = std::move(self), way](std::error_code ec, std::size_t n) mutable {
                auto& me = *self;
                me.counted(way, n);
                std::vector<char>().swap(me.source(way).early_); // and its capacity
                if (ec == asio::error::operation_aborted || me.stopping_)
                    return me.direction_ended(way, {}, std::move(self));
                if (ec)
                    return me.direction_ended(way, me.failure("write to", way, ec),
                                              std::move(self));
                me.after_early(way, std::move(self));
            }));
    }

    void after_early(int way, self_ptr self) {
        auto& from = source(way);
        if (from.early_eof_) return end_of_stream(way, std::move(self));
        // Read empty already (a short first read), or marked so (its first read would have
        // blocked): the receive waits, without a read here that would find nothing.
        if (from.drained_ || (hinted() && !detail::receive_tries_first(from.socket_)))
            return wait_readable(way, std::move(self));
        advance(way, std::move(self));
    }

    /// Waits for the source: a bulk direction with a readiness wait (its next read splices),
    /// any other with a small receive into the lane, which reads and waits in one operation.
    void wait_readable(int way, self_ptr self) {
        if (!lanes_[way].bulk()) return receive_small(way, std::move(self));
        lanes_[way].waiting();
        source(way).socket_.async_wait(
            side_type::socket_type::wait_read,
            on_strand([self = std::move(self), way](std::error_code e) mutable {
                auto& me = *self;
                me.ready(way, e, "read from", std::move(self));
            }));
    }

    void receive_small(int way, self_ptr self) {
        source(way).socket_.async_receive(
            lanes_[way].small_buffer(),
            on_strand([self = std::move(self), way](std::error_code e, std::size_t n) mutable {
                auto& me = *self;
                me.received_small(way, e, n, std::move(self));
            }));
    }

    void received_small(int way, std::error_code ec, std::size_t n, self_ptr self) {
        if (ec == asio::error::operation_aborted || stopping_) {
            lanes_[way].release();
            return direction_ended(way, {}, std::move(self));
        }
        if (ec == asio::error::eof) return end_of_stream(way, std::move(self));
        if (ec) return direction_ended(way, failure("read from", way, ec), std::move(self));
        auto& bytes = lanes_[way];
        bytes.took_small(source(way).socket_, n);
        // Only a read that would have blocked shows the source empty. A short receive does not:
        // the end of stream may have come in the same segment as its bytes, with one event.
        if (bytes.emptied()) source_emptied(way);
        dir(way).last_active = std::chrono::steady_clock::now();
        advance(way, std::move(self));
    }

    /// A read of `way`'s source would just have blocked, and nothing has run since: its next
    /// receive need not try before it waits (detail::mark_drained), on an io_context that one
    /// thread runs. An event of the source taken meanwhile undoes the mark (Asio's own rule).
    void source_emptied(int way) {
        if (hinted()) detail::mark_drained(source(way).socket_);
    }

    bool hinted() const noexcept { return detail::receive_hint && context_->one_thread; }

    /// Moves chunks from source to sink until one of them would block, then waits for
    /// readiness with nothing held (source) or with the chunk held (sink: backpressure).
    void advance(int way, self_ptr self) {
        using socket_type = typename side_type::socket_type;
        auto& bytes = lanes_[way];
        for (int chunk = 0; chunk < chunks_per_turn; ++chunk) {
            if (stopping_) {
                bytes.release();
                return direction_ended(way, {}, std::move(self));
            }
            std::error_code ec;
            if (bytes.holding()) {
                std::size_t written = 0;
                auto step = bytes.flush(sink(way).socket_, written, ec);
                counted(way, written);
                if (step == detail::lane_step::again) {
                    sink(way).socket_.async_wait(
                        socket_type::wait_write,
                        on_strand([self = std::move(self), way](std::error_code e) mutable {
                            auto& me = *self;
                            me.ready(way, e, "write to", std::move(self));
                        }));
                    return;
                }
                if (step == detail::lane_step::failed) {
                    bytes.release();
                    return direction_ended(way, failure("write to", way, ec), std::move(self));
                }
                // The source ended right behind these bytes: pass the end on (it leaves with
                // them, see lane::source_ended).
                if (bytes.source_ended()) return end_of_stream(way, std::move(self));
                // A short read has most likely emptied the source: the small receive finds
                // out, and waits if so, in one system call instead of two; and with the
                // receive hint, in none when the source is marked empty. Unmarked (a short
                // read proves nothing, see lane::emptied), read here instead: the same call
                // the receive would try first, and one that marks the source if it would
                // block, so the receive then waits without trying.
                if (bytes.drained() &&
                    !(hinted() && detail::receive_tries_first(source(way).socket_)))
                    return receive_small(way, std::move(self));
            }
            auto step = bytes.fill(source(way).socket_, zero_copy_[way], ec);
            if (bytes.emptied()) source_emptied(way);
            if (step == detail::lane_step::again) return wait_readable(way, std::move(self));
            if (step == detail::lane_step::end) return end_of_stream(way, std::move(self));
            if (step == detail::lane_step::failed)
                return direction_ended(way, failure("read from", way, ec), std::move(self));
            dir(way).last_active = std::chrono::steady_clock::now();
        }
        // A long burst: let the other work on this thread have a turn, then carry on.
        asio::post(on_strand([self = std::move(self), way]() mutable {
            auto& me = *self;
            me.advance(way, std::move(self));
        }));
    }

    /// A readiness wait of a direction has completed.
    void ready(int way, std::error_code ec, const char* what, self_ptr self) {
        if (ec == asio::error::operation_aborted || stopping_) {
            lanes_[way].release();
            return direction_ended(way, {}, std::move(self));
        }
        if (ec) {
            lanes_[way].release();
            return direction_ended(way, failure(what, way, ec), std::move(self));
        }
        advance(way, std::move(self));
    }

    /// The source ended its stream: pass the end on as a half-close; the other way goes on.
    void end_of_stream(int way, self_ptr self) {
        // When the other way has ended too, both sockets are closed next, which sends the FIN.
        std::error_code ignored;
        if (running_ > 1)
            sink(way).socket_.shutdown(side_type::socket_type::shutdown_send, ignored);
        direction_ended(way, {}, std::move(self));
    }

    void counted(int way, std::size_t n) {
        if (n == 0) return;
        auto& d = dir(way);
        d.bytes.fetch_add(n, std::memory_order_relaxed);
        if (d.total) d.total->fetch_add(n, std::memory_order_relaxed);
        d.last_active = std::chrono::steady_clock::now();
    }

    std::string failure(const char* what, int way, std::error_code ec) {
        char name = what[0] == 'w' ? dir(way).to : dir(way).from;
        return fmt::format("{} {}: {}", what, name, ec.message());
    }

    static std::string describe(std::exception_ptr e) {
        if (!e) return {};
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& ex) {
            return ex.what();
        } catch (...) {
            return "unknown error";
        }
    }

    void arm_idle_timer(std::chrono::steady_clock::time_point at) {
        idle_timer_->expires_at(at);
        idle_timer_->async_wait(on_strand(
            [self = this->shared_from_this()](std::error_code ec) { self->idle_check(ec); }));
    }

    void idle_check(std::error_code ec) {
        if (ec || stopping_) return;
        auto last = std::max(a_to_b_.last_active, b_to_a_.last_active);
        auto deadline = last + context_->idle_timeout;
        if (std::chrono::steady_clock::now() < deadline) return arm_idle_timer(deadline);
        if (failure_.empty())
            failure_ = fmt::format("idle for {} ms", context_->idle_timeout.count());
        close_sockets();
    }

    /// On the strand, as each direction ends; `why` is empty for a clean end. An error ends
    /// the pair at once: closing both sockets cancels the other direction, which then ends
    /// quietly. `self` is the ending direction's reference, alive until this returns.
    void direction_ended(int, std::string why, self_ptr self) {
        if (!why.empty() && failure_.empty()) {
            failure_ = std::move(why);
            close_sockets();
        }
        if (--running_ > 0) return;
        close_sockets();
        if (idle_timer_) idle_timer_->cancel();
        a_->state_ = side_state::closed;
        b_->state_ = side_state::closed;
        closed_ = true;
        ended_.notify_all();
        std::string reason = close_requested_    ? std::string("closed")
                             : !failure_.empty() ? failure_
                                                 : std::string("both sides ended");
        auto on_end = std::move(on_end_);
        if (on_end) on_end(std::move(self), std::move(reason));
    }

    void close_sockets() {
        stopping_ = true;
        std::error_code ignored;
        a_->socket_.close(ignored);
        b_->socket_.close(ignored);
    }

    strand_type strand_;
    std::shared_ptr<side_type> a_;
    std::shared_ptr<side_type> b_;
    std::uint64_t id_;
    std::shared_ptr<detail::relay_context> context_;
    detail::direction a_to_b_;
    detail::direction b_to_a_;
    detail::lane lanes_[2];
    bool zero_copy_[2] = {false, false};
    std::atomic<bool> closed_{false};
    bool close_requested_ = false;
    bool stopping_ = false; // the sockets have been closed by us
    int running_ = 0;       // directions still relaying
    std::string failure_;   // the first error, which ended the pair
    end_handler on_end_;
    std::optional<asio::steady_timer> idle_timer_;
    detail::strand_event ended_;
};

/// A TCP connection, the common case.
using connection = basic_connection<asio::ip::tcp, asio::any_io_executor>;

} // namespace socket_connector
