#pragma once

#include <algorithm>
#include <vector>

#include <asio/awaitable.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>

#include <socket_connector/detail/use_tuple.hpp>

namespace socket_connector::detail {

/// Lets coroutines on a strand sleep until something changes. Every member must be called on
/// the strand; `notify_all()` wakes every waiter, which then re-checks its condition.
class strand_event {
public:
    void notify_all() {
        for (auto* timer : waiters_)
            timer->cancel();
        waiters_.clear();
    }

    /// Waits for the next `notify_all()` (or for the waiting coroutine to be cancelled).
    template <class Strand>
    asio::awaitable<void> wait(const Strand& strand) {
        asio::steady_timer timer(strand, asio::steady_timer::time_point::max());
        waiters_.push_back(&timer);
        co_await timer.async_wait(use_tuple);
        // Cancelled by something other than notify_all(): forget the timer before it dies.
        std::erase(waiters_, &timer);
    }

private:
    std::vector<asio::steady_timer*> waiters_;
};

} // namespace socket_connector::detail
