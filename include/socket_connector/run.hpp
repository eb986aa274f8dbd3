#pragma once

#include <cstddef>
#include <limits>
#include <thread>

#include <asio/io_context.hpp>

namespace socket_connector {

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
/// Meant for an io_context that one thread runs (`options::one_thread`); with several threads it
/// is correct, but that use has not been measured. The `socket-connector` command runs its
/// single-thread event loops with it. A thread that yields stays ready to run rather than
/// asleep, so an event that arrives for it while another thread has its CPU is taken when the
/// scheduler comes back to it; a thread woken from sleep by that event might have been let in
/// sooner. Use `io.run()` where that matters more than the system's throughput.
inline std::size_t run_yielding(asio::io_context& io) {
    std::size_t handlers = 0;
    auto count = [&handlers](std::size_t n) {
        constexpr auto most = (std::numeric_limits<std::size_t>::max)();
        handlers = n > most - handlers ? most : handlers + n;
    };
    for (;;) {
        // Whatever is ready, and whatever events have come. It returns once a check for
        // events (one that does not wait) has found none and no handler is left.
        count(io.poll());
        if (io.stopped()) return handlers; // stopped, or out of work
        std::this_thread::yield();
        // Waits for an event, unless one came during the yield, and runs one handler.
        if (io.run_one() == 0) return handlers;
        count(1);
    }
}

} // namespace socket_connector
