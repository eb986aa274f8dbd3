#pragma once

// Outbound connects for a socket side: the side's targets in turn, all of them within
// `connect_timeout`, and the first bytes of the partner riding on the handshake. One dialer
// serves the sides dialed at start-up and the B that a proxy (`multi`) dials for each A.

#include <chrono>
#include <cstddef>
#include <memory>
#include <set>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/async_result.hpp>
#include <asio/basic_stream_socket.hpp>
#include <asio/bind_executor.hpp>
#include <asio/buffer.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include <socket_connector/detail/platform.hpp>
#include <socket_connector/detail/relay_direction.hpp>
#include <socket_connector/detail/socket_options.hpp>

namespace socket_connector::detail {

template <class Protocol, class Executor>
class dialer {
public:
    using socket_type = asio::basic_stream_socket<Protocol, Executor>;
    using endpoint_type = typename Protocol::endpoint;
    /// Completion signature of a dial: the connected socket, the target it reached, and whether
    /// the event loop has waited since the socket was registered with it (if not, no event of the
    /// socket has been taken yet: see detail/receive_hint.hpp).
    using signature = void(std::error_code, socket_type, endpoint_type, bool);

    dialer(Executor ex, asio::any_io_executor strand, std::vector<endpoint_type> targets,
           std::chrono::milliseconds timeout)
        : ex_(std::move(ex))
        , strand_(std::move(strand))
        , targets_(std::move(targets))
        , timeout_(timeout) {}

    const std::vector<endpoint_type>& targets() const noexcept { return targets_; }
    /// Dials under way.
    std::size_t dialing() const noexcept { return under_way_.size(); }

    /// Closes the sockets of every dial under way; each completes with `operation_aborted`.
    void cancel_all() {
        std::error_code ignored;
        for (auto* socket : under_way_)
            socket->close(ignored);
    }

    /// Connects to the first target that answers. When `ahead` has bytes, they are the first
    /// thing the socket will send, so the handshake's last ACK is held back to leave with them;
    /// with `send_ahead` they may also be sent by the dial itself, as soon as the handshake is
    /// done (what was sent leaves `ahead->early` and is counted in `ahead->sent_ahead`). Must be
    /// called on the strand; completes there. A dial that is done at once (a local peer often
    /// answers before connect() returns) completes inside this call only with `complete_inline`
    /// (a caller written for it, which saves a turn of the event loop per connection);
    /// otherwise its completion is posted, as an Asio operation's is.
    template <class CompletionToken>
    auto async_dial(handoff* ahead, bool send_ahead, bool complete_inline,
                    CompletionToken&& token) {
        return asio::async_initiate<CompletionToken, signature>(
            [this, ahead, send_ahead, complete_inline](auto handler) {
                using handler_type = decltype(handler);
                auto slot = asio::get_associated_cancellation_slot(handler);
                auto a = std::make_shared<attempt<handler_type>>(ex_, strand_, std::move(handler));
                if (slot.is_connected()) {
                    // Cancelled (say, the other dial of a pair failed): close the socket, and
                    // the dial completes with operation_aborted.
                    std::weak_ptr<attempt<handler_type>> weak = a;
                    slot.assign([weak](asio::cancellation_type) {
                        if (auto live = weak.lock(); live && !live->done) {
                            live->cancelled = true;
                            std::error_code ignored;
                            live->socket.close(ignored);
                        }
                    });
                }
                a->ahead = ahead && !ahead->early.empty() ? ahead : nullptr;
                a->send_ahead = send_ahead && a->ahead;
                under_way_.insert(&a->socket);
                // Armed only if a connect has to be waited for: a local peer answers at once.
                a->timer.expires_after(timeout_);
                a->inline_ok = complete_inline;
                a->initiating = true;
                connect_next(a);
                a->initiating = false;
            },
            token);
    }

private:
    template <class Handler>
    struct attempt {
        attempt(const Executor& ex, const asio::any_io_executor& strand, Handler h)
            : socket(ex)
            , timer(strand)
            , handler(std::move(h)) {}
        socket_type socket;
        asio::steady_timer timer;
        Handler handler;
        handoff* ahead = nullptr; // bytes to go first, or null
        bool send_ahead = false;  // and the dial may send them itself
        std::size_t next = 0;     // the next target to try
        bool timer_armed = false;
        bool timed_out = false;
        bool cancelled = false;
        bool done = false;
        bool initiating = false; // async_dial has not returned yet
        bool inline_ok = false;  // and may complete before it does
        bool waited = false;     // the event loop has waited since the socket was registered
        std::error_code last;    // why the last target failed
    };
    template <class Handler>
    using attempt_ptr = std::shared_ptr<attempt<Handler>>;

    /// Starts the attempt's timeout, once: when it first waits for a connect.
    template <class Handler>
    void arm_timer(const attempt_ptr<Handler>& a) {
        if (a->timer_armed) return;
        a->timer_armed = true;
        a->timer.async_wait(asio::bind_executor(strand_, [a](std::error_code ec) {
            if (ec || a->done) return;
            a->timed_out = true;
            std::error_code ignored;
            a->socket.close(ignored); // its wait completes, aborted
        }));
    }

    /// Tries the next target; completes the dial when none is left.
    template <class Handler>
    void connect_next(attempt_ptr<Handler> a) {
        auto& socket = a->socket;
        while (a->next < targets_.size()) {
            const auto& target = targets_[a->next++];
            std::error_code ec;
            if (socket.is_open()) socket.close(ec);
            open_non_blocking(socket, target.protocol(), ec);
            if (ec) {
                a->last = ec;
                continue;
            }
            a->waited = false; // a new socket, registered just now
            if (a->ahead) delay_handshake_ack(socket);
            if constexpr (!posix_connect) {
                arm_timer(a);
                a->waited = true;
                socket.async_connect(target, connected_handler(std::move(a)));
                return;
            } else {
                // Not Asio's async_connect: it would poll() the socket and set it non-blocking
                // again.
                ec = start_connect(socket, target);
                if (!ec) return finish(std::move(a), {});
                if (ec == asio::error::in_progress) {
                    // Often established already (the handshake with a local peer completes
                    // before connect() returns): then no wait, no SO_ERROR.
                    if (a->send_ahead) {
                        auto sent = send_first_bytes(*a);
                        if (!sent) return finish(std::move(a), {});
                        if (sent != asio::error::would_block && sent != asio::error::try_again) {
                            a->last = sent; // the connect failed
                            continue;
                        }
                    } else if (has_peer(socket)) {
                        return finish(std::move(a), {});
                    }
                    // Under way: writable once established or failed.
                    arm_timer(a);
                    a->waited = true;
                    socket.async_wait(socket_type::wait_write, connected_handler(std::move(a)));
                    return;
                }
                a->last = ec;
            }
        }
        auto last = a->last;
        finish(std::move(a), last);
    }

    /// Completes a connect under way to one target.
    template <class Handler>
    auto connected_handler(attempt_ptr<Handler> a) {
        return asio::bind_executor(strand_, [this, a = std::move(a)](std::error_code ec) mutable {
            if constexpr (posix_connect)
                if (!ec) ec = pending_error(a->socket);
            if (a->timed_out) return finish(std::move(a), asio::error::timed_out);
            if (a->cancelled) return finish(std::move(a), asio::error::operation_aborted);
            if (!ec || ec == asio::error::operation_aborted) return finish(std::move(a), ec);
            a->last = ec;
            connect_next(std::move(a));
        });
    }

    /// Sends the first bytes on a socket whose connect is under way, without waiting: this also
    /// finds out whether the handshake is done (sent: established, and its last ACK leaves with
    /// them; would_block: still under way; another error: the connect failed). Saves the
    /// `getpeername` check and a turn of the event loop for the first write.
    template <class Attempt>
    static std::error_code send_first_bytes(Attempt& a) {
        std::error_code ec;
        auto& early = a.ahead->early;
        auto n = a.socket.send(asio::buffer(early), 0, ec); // non-blocking: would_block
        if (ec) return ec;
        early.erase(early.begin(), early.begin() + static_cast<std::ptrdiff_t>(n));
        a.ahead->sent_ahead += n;
        return {};
    }

    template <class Handler>
    void finish(attempt_ptr<Handler> a, std::error_code ec) {
        a->done = true;
        asio::get_associated_cancellation_slot(a->handler).clear();
        if (a->timer_armed) a->timer.cancel();
        under_way_.erase(&a->socket);
        endpoint_type reached{};
        if (ec) {
            std::error_code ignored;
            a->socket.close(ignored);
        } else {
            reached = targets_[a->next - 1];
        }
        if (a->initiating && !a->inline_ok) {
            a->waited = true; // the event loop may wait before the posted completion runs
            asio::post(strand_, [a = std::move(a), ec, reached]() mutable {
                auto handler = std::move(a->handler);
                std::move(handler)(ec, std::move(a->socket), reached, a->waited);
            });
            return;
        }
        auto handler = std::move(a->handler);
        std::move(handler)(ec, std::move(a->socket), reached, a->waited);
    }

    Executor ex_;
    asio::any_io_executor strand_;
    std::vector<endpoint_type> targets_;
    std::chrono::milliseconds timeout_;
    std::set<socket_type*> under_way_;
};

} // namespace socket_connector::detail
