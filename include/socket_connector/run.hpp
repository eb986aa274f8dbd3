#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <limits>
#include <thread>

#include <asio/io_context.hpp>

namespace socket_connector {

namespace detail {

/// How long a loop that has run dry keeps checking for events before it sleeps, learned from
/// how long it then waited: the scheme of Linux's guest halt polling (cpuidle-haltpoll). A wait
/// that a longer spin would have covered (no longer than the limit in all) grows the spin, to a
/// quarter of the limit at first and then doubling, up to the limit; a longer wait halves it,
/// and below a sixteenth of the limit it stops. A spin that finds an event keeps its length.
/// So a loop whose events come at short intervals (a ping-pong, a busy proxy) catches them
/// without sleeping, and one whose events are far apart stops spinning after its first waits.
class spin_budget {
public:
    explicit spin_budget(std::chrono::nanoseconds limit) noexcept
        : limit_(limit < std::chrono::nanoseconds::zero() ? std::chrono::nanoseconds::zero()
                                                          : limit) {}

    /// Whether spinning is on at all (a positive limit).
    bool enabled() const noexcept { return limit_ > std::chrono::nanoseconds::zero(); }

    /// How long the next spin lasts; zero: none.
    std::chrono::nanoseconds spin() const noexcept { return spin_; }

    /// The loop spun for `spin()` without finding an event, then slept; in all, from the start
    /// of the spin to the end of the sleep, it waited `waited`.
    void waited(std::chrono::nanoseconds waited) noexcept {
        if (waited <= limit_) {
            spin_ = std::min(limit_, std::max(spin_ * 2, limit_ / 4));
        } else {
            spin_ /= 2;
            if (spin_ < limit_ / 16) spin_ = std::chrono::nanoseconds::zero();
        }
    }

private:
    std::chrono::nanoseconds limit_;
    std::chrono::nanoseconds spin_{0};
};

} // namespace detail

/// Runs `io` on the calling thread as `io.run()` does: handlers run until `io` is stopped or has
/// no work left, and the number that ran is returned. An exception thrown by a handler leaves
/// this call, as it leaves `run()`; call it again to go on.
///
/// What differs is what happens when no handler is ready and the loop would block waiting for
/// events: it first offers its CPU to the other threads that are ready to run there
/// (`std::this_thread::yield()`, sched_yield(2) on Linux), then waits. A relay that has just
/// run out of work under load usually gets its next events from the processes it relays for
/// (clients, backends), and those are often ready to run, waiting for a CPU. Letting them go
/// first means the loop finds those events waiting when it comes back, instead of going to
/// sleep and being woken for each: a sleep and a wake-up cost a context switch on each side, a
/// wake-up call in the process that sends, and sometimes an interrupt to wake an idle CPU. When
/// no other thread is ready, the yield returns at once: one system call, plus a check for events
/// (epoll_wait without waiting) each time the loop runs dry.
///
/// With a positive `spin_limit`, the loop also spins before it sleeps: it checks for events
/// and yields, in turn, for up to that long, as long as its recent waits show that events come
/// at intervals that short (`detail::spin_budget`). A wake-up from sleep costs more than the
/// system calls themselves, most of all where an idle CPU must be woken (a virtual machine's
/// CPU that has halted), and a spin that finds the event saves it: on this project's machines a
/// ping-pong through the relay lost a quarter of its round trip. The price is CPU time: while
/// events come at short intervals, the loop spends the gaps between them checking for events,
/// up to a whole core, where it would have slept; once they stop coming that fast, it stops
/// after a few waits. The spin yields at every turn, so a thread that is ready to run on the
/// same CPU (in the same scheduling group) takes it first. Zero, the default, never spins.
///
/// Meant for an io_context that one thread runs (`options::io_run_by_one_thread`); with several
/// threads it is correct, but that use has not been measured. The `socket-connector` command runs
/// its single-thread event loops with it. A thread that yields stays ready to run rather than
/// asleep, so an event that arrives for it while another thread has its CPU is taken when the
/// scheduler comes back to it; a thread woken from sleep by that event might have been let in
/// sooner. Use `io.run()` where that matters more than the system's throughput.
inline std::size_t run_yielding(asio::io_context& io, std::chrono::microseconds spin_limit = {}) {
    using clock = std::chrono::steady_clock;
    std::size_t handlers = 0;
    auto count = [&handlers](std::size_t n) {
        constexpr auto most = (std::numeric_limits<std::size_t>::max)();
        handlers = n > most - handlers ? most : handlers + n;
    };
    detail::spin_budget budget(spin_limit);
    for (;;) {
        // Whatever is ready, and whatever events have come. It returns once a check for
        // events (one that does not wait) has found none and no handler is left.
        count(io.poll());
        if (io.stopped()) return handlers; // stopped, or out of work
        std::this_thread::yield();
        const auto idle_since = budget.enabled() ? clock::now() : clock::time_point{};
        if (budget.spin() > std::chrono::nanoseconds::zero()) {
            const auto until = idle_since + budget.spin();
            std::size_t ran = 0;
            while ((ran = io.poll()) == 0 && !io.stopped() && clock::now() < until)
                std::this_thread::yield();
            count(ran);
            if (ran > 0) continue; // the spin found an event: it keeps its length
            if (io.stopped()) return handlers;
        }
        // Waits for an event, unless one came during the yield, and runs one handler.
        if (io.run_one() == 0) return handlers;
        count(1);
        if (budget.enabled()) budget.waited(clock::now() - idle_since);
    }
}

} // namespace socket_connector
