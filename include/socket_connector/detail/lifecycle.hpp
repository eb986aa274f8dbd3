#pragma once

// A connector's life: serving, then (optionally) draining, then closing, then closed; and when it
// closes on its own (the Dart package's grace timeout, a single-pair mode whose pair has ended).

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/steady_timer.hpp>

#include <socket_connector/detail/use_tuple.hpp>

namespace socket_connector::detail {

/// What the connector has at a moment, for `lifecycle::reason_to_close`.
struct lifecycle_facts {
    std::size_t live = 0;           ///< connections relaying
    bool can_accept = false;        ///< a server side is still open
    bool waiting = false;           ///< sides authenticating, pending or being dialed
    bool grace_just_passed = false; ///< asked as the grace period passes, not as a pair ends
};

class lifecycle {
public:
    explicit lifecycle(const asio::any_io_executor& strand)
        : grace_timer_(strand)
        , drain_timer_(strand) {}

    bool closing() const noexcept { return closing_; }
    bool draining() const noexcept { return draining_; }
    bool paired_once() const noexcept { return paired_once_; }

    void paired() noexcept { paired_once_ = true; }
    /// Starts closing; false if it had started already.
    bool begin_closing() noexcept {
        if (closing_) return false;
        closing_ = true;
        grace_timer_.cancel();
        drain_timer_.cancel();
        return true;
    }
    /// Starts draining; false if closing or draining already.
    bool begin_draining() noexcept {
        if (closing_ || draining_) return false;
        draining_ = true;
        grace_timer_.cancel();
        return true;
    }

    /// Completes when the grace period has passed (true), or once it is cancelled (false).
    asio::awaitable<bool> grace(std::chrono::milliseconds period) {
        grace_timer_.expires_after(period);
        auto [ec] = co_await grace_timer_.async_wait(use_tuple);
        if (ec || closing_) co_return false;
        grace_passed_ = true;
        co_return true;
    }

    /// Completes when a drain's time limit has passed (true), or once it is cancelled (false).
    asio::awaitable<bool> drain_deadline(std::chrono::milliseconds limit) {
        drain_timer_.expires_after(limit);
        auto [ec] = co_await drain_timer_.async_wait(use_tuple);
        co_return !ec && !closing_;
    }

    /// Why a connector that is not closing should close now, or nothing: it has drained, its
    /// grace period has passed with nothing live, or it served its only pair and can serve no
    /// other.
    std::optional<std::string> reason_to_close(const lifecycle_facts& now) const {
        if (closing_ || now.live > 0) return std::nullopt;
        if (draining_) return "drained: every connection has ended";
        if (grace_passed_) {
            if (!paired_once_) return "no connection within the grace period";
            return now.grace_just_passed ? "the grace period has passed with no connection open"
                                         : "the last connection ended after the grace period";
        }
        if (paired_once_ && !now.can_accept && !now.waiting) return "its only connection has ended";
        return std::nullopt;
    }

private:
    asio::steady_timer grace_timer_;
    asio::steady_timer drain_timer_;
    bool grace_passed_ = false;
    bool draining_ = false;
    bool closing_ = false;
    bool paired_once_ = false;
};

} // namespace socket_connector::detail
