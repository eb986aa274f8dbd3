#pragma once

// basic_connector's members, continued: stopping, draining, the grace period, closing,
// and the counts that limits and a shared limit group read.

#include <socket_connector/connector.hpp>

namespace socket_connector {

// ---- lifecycle --------------------------------------------------------------------------------

/// Stops the servers and closes every side not yet paired.
template <class Protocol, class Executor>
void basic_connector<Protocol, Executor>::stop_accepting() {
    for (auto& l : listeners_)
        if (l && l->is_open()) l->close();
    for (auto& a : pairing_.take_all())
        a->side->close();
    for (auto& a : authenticating_)
        a->side->close();
    update_counts();
}

template <class Protocol, class Executor>
void basic_connector<Protocol, Executor>::drain_now(std::chrono::milliseconds limit) {
    if (lifecycle_.closing() || lifecycle_.draining()) return;
    if (live_.empty()) return close_now("asked to stop, and no connection is open");
    if (limit.count() <= 0)
        return close_now(fmt::format("asked to stop with no time to drain: closing {} now",
                                     detail::count_of(live_.size(), "open connection")));
    lifecycle_.begin_draining();
    info("asked to stop: no new sockets; {} may finish within {} ms",
         detail::count_of(live_.size(), "open connection"), limit.count());
    stop_accepting();
    spawn(drain_deadline(limit));
}

template <class Protocol, class Executor>
asio::awaitable<void> basic_connector<Protocol, Executor>::grace() {
    auto self = this->shared_from_this();
    if (!co_await lifecycle_.grace(opts_.timeout)) co_return;
    info("grace period of {} ms has passed", opts_.timeout.count());
    maybe_finish(true);
}

template <class Protocol, class Executor>
asio::awaitable<void>
basic_connector<Protocol, Executor>::drain_deadline(std::chrono::milliseconds limit) {
    auto self = this->shared_from_this();
    if (!co_await lifecycle_.drain_deadline(limit)) co_return;
    close_now(fmt::format("the drain time is over: closing {} still open",
                          detail::count_of(live_.size(), "connection")));
}

/// Closes the connector if nothing is left for it to do.
template <class Protocol, class Executor>
void basic_connector<Protocol, Executor>::maybe_finish(bool grace_just_passed) {
    if (lifecycle_.closing()) {
        if (live_.empty() && !closed_) finish_close();
        return;
    }
    bool can_accept = false;
    for (auto& l : listeners_)
        can_accept = can_accept || (l && l->is_open());
    std::size_t dialing = 0;
    for (auto& d : dialers_)
        dialing += d ? d->dialing() : 0;
    const bool waiting = !pairing_.empty() || !authenticating_.empty() || dialing > 0;
    if (auto why =
            lifecycle_.reason_to_close({live_.size(), can_accept, waiting, grace_just_passed}))
        close_now(*why);
}

template <class Protocol, class Executor>
void basic_connector<Protocol, Executor>::close_now(const std::string& reason) {
    if (!lifecycle_.begin_closing()) return;
    info("closing: {}", reason);
    stop_accepting();
    for (auto& d : dialers_)
        if (d) d->cancel_all();
    if (expiry_timer_) expiry_timer_->cancel();
    for (auto& c : live_)
        c->close();
    update_counts();
    formed_event_.notify_all(); // next_connection() completes with null from now on
    if (live_.empty()) finish_close();
}

template <class Protocol, class Executor>
void basic_connector<Protocol, Executor>::finish_close() {
    closed_ = true;
    publish_counts(); // takes this connector's counts out of a shared limit group
    info("closed");
    closed_event_.notify_all();
}

// ---- the pending timeout ----------------------------------------------------------------------

/// Closes `a` when it is still waiting for its partner `pending_timeout` from now. The sides
/// wait in arrival order, so one timer serves them all; a side that pairs or leaves takes its
/// deadline out (forget_deadline), so they hold memory only while they wait.
template <class Protocol, class Executor>
void basic_connector<Protocol, Executor>::expire_later(const arrival_ptr& a) {
    if (opts_.pending_timeout == no_timeout) return;
    const auto at = std::chrono::steady_clock::now() + opts_.pending_timeout;
    a->deadline = expiries_.insert(expiries_.end(), {at, a});
    if (!expiring_) {
        expiring_ = true;
        spawn(expire_pending());
    }
}

template <class Protocol, class Executor>
void basic_connector<Protocol, Executor>::forget_deadline(arrival& a) {
    if (!a.deadline) return;
    expiries_.erase(*a.deadline);
    a.deadline.reset();
}

template <class Protocol, class Executor>
void basic_connector<Protocol, Executor>::forget_deadlines() {
    for (auto& e : expiries_)
        if (auto a = e.who.lock()) a->deadline.reset();
    expiries_.clear();
}

template <class Protocol, class Executor>
asio::awaitable<void> basic_connector<Protocol, Executor>::expire_pending() {
    auto self = this->shared_from_this();
    if (!expiry_timer_) expiry_timer_.emplace(strand_);
    while (!expiries_.empty() && !lifecycle_.closing()) {
        expiry_timer_->expires_at(expiries_.front().at);
        co_await expiry_timer_->async_wait(detail::use_tuple); // close_now() cancels it
        const auto now = std::chrono::steady_clock::now();
        while (!expiries_.empty() && expiries_.front().at <= now) {
            auto a = expiries_.front().who.lock();
            expiries_.pop_front();
            if (!a) continue;
            a->deadline.reset();
            if (a->side->state() != side_state::pending || !pairing_.waits(a)) continue;
            log(log_level::warning, "{}: {} closed: no partner within {} ms (pending_timeout)",
                to_string(a->side->id()), a->side->remote(), opts_.pending_timeout.count());
            drop(a, {});
        }
    }
    forget_deadlines();
    expiring_ = false;
}

// ---- counts -----------------------------------------------------------------------------------

template <class Protocol, class Executor>
void basic_connector<Protocol, Executor>::update_counts() {
    pending_count_[0] = pairing_.waiting(side_id::a);
    pending_count_[1] = pairing_.waiting(side_id::b);
    live_count_ = live_.size();
    session_count_ = pairing_.sessions();
    sessions_pending_ = pairing_.pending_sessions();
    publish_counts();
}

/// Brings this connector's share of `limit_group`'s counts up to date (zero once closed).
template <class Protocol, class Executor>
void basic_connector<Protocol, Executor>::publish_counts() {
    const auto& group = opts_.limit_group;
    if (!group) return;
    auto move_to = [](std::atomic<std::size_t>& total, std::size_t& mine, std::size_t now) {
        if (now >= mine)
            total.fetch_add(now - mine);
        else
            total.fetch_sub(mine - now);
        mine = now;
    };
    const bool gone = closed_.load();
    move_to(group->connections_, published_live_, gone ? 0 : live_.size());
    move_to(group->pending_a_, published_waiting_[0], gone ? 0 : waiting_on(side_id::a));
    move_to(group->pending_b_, published_waiting_[1], gone ? 0 : waiting_on(side_id::b));
    move_to(group->sessions_, published_sessions_, gone ? 0 : pairing_.sessions());
}

} // namespace socket_connector
