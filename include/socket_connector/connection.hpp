#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

#include <asio/any_io_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/bind_executor.hpp>
#include <asio/co_spawn.hpp>
#include <asio/dispatch.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/format.h>

#include <socket_connector/detail/receive_hint.hpp>
#include <socket_connector/detail/relay_direction.hpp>
#include <socket_connector/detail/strand_event.hpp>
#include <socket_connector/logging.hpp>
#include <socket_connector/side.hpp>

namespace socket_connector {

template <class Protocol, class Executor>
class basic_connector;

namespace detail {
/// What a connector shares with its connections (they may outlive it by a moment).
struct relay_context {
    socket_connector::logger log;
    bool log_traffic = false;
    bool zero_copy = true;
    /// The connector's io_context is run by one thread (`options::io_run_by_one_thread`).
    bool io_run_by_one_thread = false;
    /// A connection with no byte relayed either way for this long is closed; zero: never.
    std::chrono::milliseconds idle_timeout{0};
    std::atomic<std::uint64_t> bytes_a_to_b{0};
    std::atomic<std::uint64_t> bytes_b_to_a{0};
};
} // namespace detail

/// A joined pair of sides relaying to each other.
///
/// It ends when both directions have ended (each end of stream passed on as a half-close), or at
/// once when either side fails (reset, write error, transformer error), it has been idle for the
/// connector's `idle_timeout`, or `close()` is called; then both sockets are closed. Everything
/// it does runs on its own strand (or on its executor, with `options::io_run_by_one_thread`).
/// Each direction is a `detail::relay_direction`: while idle it holds no buffer, pipe or
/// coroutine frame; on Linux a direction with no transformer and no traffic log moves bulk with
/// splice(2) (`zero_copy`), and a thread that does so has SIGPIPE blocked.
template <class Protocol, class Executor>
class basic_connection : public std::enable_shared_from_this<basic_connection<Protocol, Executor>> {
public:
    using side_type = basic_side<Protocol, Executor>;
    using socket_type = typename side_type::socket_type;

    /// The connection's number within its connector, from 1.
    std::uint64_t id() const noexcept { return id_; }
    /// The session key both sides' auth verifiers named (a rendezvous); empty for a pair joined
    /// first in, first out.
    const std::string& key() const noexcept { return key_; }
    side_type& side_a() noexcept { return *a_; }
    side_type& side_b() noexcept { return *b_; }
    side_type& side(side_id which) noexcept { return which == side_id::a ? *a_ : *b_; }
    /// Bytes written to B that came from A, and the reverse (after transformers).
    std::uint64_t bytes_a_to_b() const noexcept { return bytes(side_id::a); }
    std::uint64_t bytes_b_to_a() const noexcept { return bytes(side_id::b); }
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

    /// Completes (signature `void()`) once the connection has ended and both sockets are closed.
    /// Takes any completion token; by default it is awaitable.
    template <class CompletionToken = asio::use_awaitable_t<>>
    auto wait_closed(CompletionToken&& token = {}) {
        return asio::async_initiate<CompletionToken, void()>(
            [self = this->shared_from_this()](auto handler) {
                asio::co_spawn(self->strand_, self->wait_closed_on_strand(),
                               [self, handler = std::move(handler)](std::exception_ptr) mutable {
                                   std::move(handler)();
                               });
            },
            token);
    }

private:
    template <class P, class E>
    friend class basic_connector;
    struct private_tag {};

public:
    /// Made by the connector only (the tag is private).
    basic_connection(private_tag, asio::any_io_executor strand, std::shared_ptr<side_type> a,
                     detail::handoff from_a, std::shared_ptr<side_type> b, detail::handoff from_b,
                     std::uint64_t id, std::shared_ptr<detail::relay_context> context)
        : strand_(std::move(strand))
        , a_(std::move(a))
        , b_(std::move(b))
        , id_(id)
        , context_(std::move(context))
        , handoffs_(std::make_unique<std::array<detail::handoff, 2>>(
              std::array<detail::handoff, 2>{std::move(from_a), std::move(from_b)})) {}

private:
    using direction_type = detail::relay_direction<socket_type>;
    using end_handler = std::function<void(std::shared_ptr<basic_connection>, std::string)>;
    /// One per connector, shared by its connections: no copy (and no allocation) per pair.
    using shared_end_handler = std::shared_ptr<const end_handler>;

    static std::size_t index(side_id from) noexcept { return from == side_id::a ? 0 : 1; }

    std::uint64_t bytes(side_id from) const noexcept {
        return bytes_[index(from)].load(std::memory_order_relaxed);
    }

    /// Starts relaying; `on_end` is called once when the connection has ended, never inside
    /// this call. Relaying is dispatched to the connection's executor, so it may start inside
    /// this call (on a thread that runs that executor).
    void start(shared_end_handler on_end) {
        asio::dispatch(strand_, [self = this->shared_from_this(), on_end = std::move(on_end)] {
            self->begin(std::move(on_end));
        });
    }

    asio::awaitable<void> wait_closed_on_strand() {
        while (!closed_)
            co_await ended_.wait(strand_);
    }

    /// A direction's completion handler: carries the connection's one reference per direction,
    /// moved (never copied) from each pending operation to the next, so the hot path makes no
    /// reference-count traffic and a handler destroyed unrun (its io_context gone) lets go.
    struct direction_done {
        std::shared_ptr<basic_connection> self;
        side_id from;
        void operator()(detail::relay_end how, std::string why) {
            auto& me = *self;
            me.direction_ended(from, how, std::move(why), std::move(self));
        }
    };

    void begin(shared_end_handler on_end) {
        on_end_ = std::move(on_end); // the connector made both sockets non-blocking
        const bool hinted = context_->io_run_by_one_thread && detail::receive_hint_enabled();
        const logger* traffic = context_->log_traffic ? &context_->log : nullptr;
        for (auto from : {side_id::a, side_id::b}) {
            detail::relay_settings settings{from,
                                            context_->zero_copy,
                                            hinted,
                                            traffic,
                                            &bytes_[index(from)],
                                            from == side_id::a ? &context_->bytes_a_to_b
                                                               : &context_->bytes_b_to_a};
            auto& source = side(from);
            settings.source_tls = source.tls_.get();
            settings.sink_tls = side(other(from)).tls_.get();
            directions_[index(from)].emplace(
                strand_, settings, source.socket_, side(other(from)).socket_,
                std::move((*handoffs_)[index(from)]), source.transformer);
        }
        handoffs_.reset(); // taken by the directions: an idle pair keeps no room for them
        if (context_->idle_timeout.count() > 0) {
            idle_timer_ = std::make_unique<asio::steady_timer>(strand_);
            arm_idle_timer(std::chrono::steady_clock::now() + context_->idle_timeout);
        }
        running_ = 2;
        for (auto from : {side_id::a, side_id::b})
            directions_[index(from)]->start(direction_done{this->shared_from_this(), from});
    }

    /// On the strand, as each direction ends. A finished direction passes its end of stream on
    /// as a half-close (when the other way still runs; else the close below sends the FIN). A
    /// failure ends the pair at once: closing both sockets stops the other direction, which
    /// then ends quietly. `self` is the ending direction's reference, alive until this returns.
    void direction_ended(side_id from, detail::relay_end how, std::string why,
                         std::shared_ptr<basic_connection> self) {
        // A TLS sink is told first with close_notify (sent when its socket takes it).
        auto& to = side(other(from));
        if (how == detail::relay_end::finished && to.tls_ && !stopping_ &&
            !notified_[index(to.id())]) {
            if (to.tls_->close_notify() == tls_session::status::want_write) {
                to.socket_.async_wait(
                    socket_type::wait_write,
                    asio::bind_executor(strand_, [from, self](std::error_code) mutable {
                        auto& me = *self;
                        me.direction_ended(from, detail::relay_end::finished, {}, std::move(self));
                    }));
                return;
            }
            notified_[index(to.id())] = true;
        }
        if (how == detail::relay_end::finished && running_ > 1) {
            std::error_code ignored;
            side(other(from)).socket_.shutdown(socket_type::shutdown_send, ignored);
        }
        if (how == detail::relay_end::failed && failure_.empty()) {
            failure_ = std::move(why);
            close_sockets();
        }
        if (--running_ > 0) return;
        close_sockets();
        if (idle_timer_) idle_timer_->cancel();
        a_->set_state(side_state::closed);
        b_->set_state(side_state::closed);
        closed_ = true;
        ended_.notify_all();
        std::string reason = close_requested_    ? std::string("closed")
                             : !failure_.empty() ? failure_
                                                 : std::string("both sides ended");
        auto on_end = std::move(on_end_);
        if (on_end) (*on_end)(std::move(self), std::move(reason));
    }

    void arm_idle_timer(std::chrono::steady_clock::time_point at) {
        idle_timer_->expires_at(at);
        // The timer was made on the strand, so its handler runs there.
        idle_timer_->async_wait(
            [self = this->shared_from_this()](std::error_code ec) { self->idle_check(ec); });
    }

    void idle_check(std::error_code ec) {
        if (ec || stopping_) return;
        auto last = std::max(directions_[0]->last_active(), directions_[1]->last_active());
        auto deadline = last + context_->idle_timeout;
        if (std::chrono::steady_clock::now() < deadline) return arm_idle_timer(deadline);
        if (failure_.empty())
            failure_ = fmt::format("idle for {} ms", context_->idle_timeout.count());
        close_sockets();
    }

    void close_sockets() {
        stopping_ = true;
        for (auto& d : directions_)
            if (d) d->stop();
        std::error_code ignored;
        a_->socket_.close(ignored);
        b_->socket_.close(ignored);
    }

    asio::any_io_executor strand_;
    std::shared_ptr<side_type> a_;
    std::shared_ptr<side_type> b_;
    std::uint64_t id_;
    std::string key_; // set by the connector before the pair starts
    std::shared_ptr<detail::relay_context> context_;
    // What the connector handed over with each side, until begin() gives it to the directions.
    std::unique_ptr<std::array<detail::handoff, 2>> handoffs_;
    std::atomic<std::uint64_t> bytes_[2] = {0, 0}; // A to B, B to A
    std::optional<direction_type> directions_[2];
    std::atomic<bool> closed_{false};
    bool close_requested_ = false;
    bool stopping_ = false;             // the sockets have been closed by us
    bool notified_[2] = {false, false}; // a TLS side has been sent close_notify
    int running_ = 0;                   // directions still relaying
    std::string failure_;               // the first error, which ended the pair
    shared_end_handler on_end_;
    std::unique_ptr<asio::steady_timer> idle_timer_; // only with an idle timeout
    detail::strand_event ended_;
};

/// A TCP connection, the common case.
using connection = basic_connection<asio::ip::tcp, asio::any_io_executor>;

} // namespace socket_connector
