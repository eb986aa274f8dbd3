#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include <asio/bind_executor.hpp>
#include <asio/co_spawn.hpp>
#include <asio/dispatch.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/strand.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/format.h>

#include <socket_connector/detail/pump.hpp>
#include <socket_connector/detail/splice.hpp>
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
    std::atomic<std::uint64_t> bytes_a_to_b{0};
    std::atomic<std::uint64_t> bytes_b_to_a{0};
};
} // namespace detail

/// A joined pair of sides relaying to each other, one coroutine per direction.
///
/// It ends when both directions have ended (each end of stream passed on as a half-close), or at
/// once when either side fails (reset, write error) or `close()` is called; then both sockets are
/// closed. Everything it does runs on its own strand.
template <class Protocol, class Executor>
class basic_connection : public std::enable_shared_from_this<basic_connection<Protocol, Executor>> {
public:
    using side_type = basic_side<Protocol, Executor>;
    using strand_type = asio::strand<Executor>;
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
            self->close_requested_ = true;
            self->close_sockets();
        });
    }

    /// Completes once the connection has ended and both sockets are closed.
    asio::awaitable<void> wait_closed() {
        auto self = this->shared_from_this(); // alive until the strand part is done
        co_await asio::co_spawn(strand_, wait_closed_on_strand(), asio::use_awaitable);
    }

    /// Starts relaying; `on_end` is called once when the connection has ended.
    void start(end_handler on_end) {
        asio::dispatch(strand_, [self = this->shared_from_this(), on_end = std::move(on_end)] {
            self->on_end_ = std::move(on_end);
            std::error_code ignored;
            self->a_->socket_.non_blocking(true, ignored);
            self->b_->socket_.non_blocking(true, ignored);
            // Two coroutines and a count, rather than `&&`: an idle pair then holds no
            // parallel_group, which is most of what it would otherwise cost in memory.
            self->spawn_direction(*self->a_, *self->b_, self->a_to_b_);
            self->spawn_direction(*self->b_, *self->a_, self->b_to_a_);
        });
    }

private:
    asio::awaitable<void> wait_closed_on_strand() {
        while (!closed_)
            co_await ended_.wait(strand_);
    }

    void spawn_direction(side_type& from, side_type& to, detail::direction& dir) {
        ++running_;
        asio::co_spawn(
            strand_, relay(from, to, dir),
            asio::bind_executor(strand_, [self = this->shared_from_this()](std::exception_ptr e) {
                self->direction_ended(e);
            }));
    }

    /// On the strand, as each direction ends. An error ends the pair at once: closing both
    /// sockets cancels the other direction, which then returns quietly.
    void direction_ended(std::exception_ptr e) {
        if (e && failure_.empty()) {
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& ex) {
                failure_ = ex.what();
            } catch (...) {
                failure_ = "unknown error";
            }
            close_sockets();
        }
        if (--running_ > 0) return;
        close_sockets();
        a_->state_ = side_state::closed;
        b_->state_ = side_state::closed;
        closed_ = true;
        ended_.notify_all();
        std::string reason = close_requested_    ? std::string("closed")
                             : !failure_.empty() ? failure_
                                                 : std::string("both sides ended");
        auto on_end = std::move(on_end_);
        if (on_end) on_end(this->shared_from_this(), std::move(reason));
    }

    /// One direction: zero-copy on Linux when nothing needs to see the bytes, else the copy loop.
    /// Not a coroutine itself, so a direction costs one coroutine frame, not two.
    asio::awaitable<void> relay(side_type& from, side_type& to, detail::direction& dir) {
#if defined(__linux__)
        if (context_->zero_copy && !from.transformer && !dir.traffic)
            return detail::splice_pump(from.socket_, to.socket_, std::move(from.early_),
                                       from.early_eof_, dir);
#endif
        return detail::pump(from.socket_, to.socket_, std::move(from.early_), from.early_eof_,
                            from.transformer, dir);
    }

    void close_sockets() {
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
    std::atomic<bool> closed_{false};
    bool close_requested_ = false;
    int running_ = 0;     // directions still relaying
    std::string failure_; // the first error, which ended the pair
    end_handler on_end_;
    detail::strand_event ended_;
};

/// A TCP connection, the common case.
using connection = basic_connection<asio::ip::tcp, asio::any_io_executor>;

} // namespace socket_connector
