#pragma once

// Helpers shared by the fault tests (peers that reset, exhausted descriptors, crowds of pairs,
// SIGTERM, slow readers): whether a sanitizer is built in, the time between two instants, and
// readers that watch a socket until it closes.

#include <chrono>
#include <cstddef>
#include <system_error>
#include <vector>

#include <asio/ip/tcp.hpp>

#include "support/net.hpp"

// Under a sanitizer (these tests and the programs they start are built alike) memory figures mean
// little (shadow memory, quarantined frees) and everything runs several times slower: the
// figures are reported but not checked, and the crowds are smaller.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SC_FAULTS_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||                         \
    __has_feature(memory_sanitizer)
#define SC_FAULTS_SANITIZED 1
#endif
#endif
// The AddressSanitizer build also has UndefinedBehaviorSanitizer, whose vptr check probes memory
// through a pipe: in a process out of descriptors every virtual call is reported as a call on an
// invalid object (and no report can be written to its log file either).
#if defined(__SANITIZE_ADDRESS__)
#define SC_FAULTS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SC_FAULTS_ASAN 1
#endif
#endif

namespace test_support {

#ifdef SC_FAULTS_SANITIZED
inline constexpr bool sanitized = true;
#else
inline constexpr bool sanitized = false;
#endif
#ifdef SC_FAULTS_ASAN
inline constexpr bool address_sanitized = true;
#else
inline constexpr bool address_sanitized = false;
#endif

using steady = std::chrono::steady_clock;

/// Seconds from `from` to `to`.
inline double seconds_between(steady::time_point from, steady::time_point to) {
    return std::chrono::duration<double>(to - from).count();
}

/// Reads and counts bytes until the socket fails or ends; records why and when.
struct close_watch {
    std::size_t received = 0;
    std::error_code why;
    steady::time_point at{};
    bool closed = false;
};

inline asio::awaitable<void> watch_until_closed(tcp::socket& socket, close_watch& w) {
    std::vector<char> buf(64 * 1024);
    for (;;) {
        auto [ec, n] = co_await socket.async_read_some(asio::buffer(buf), use_tuple);
        w.received += n;
        if (ec) {
            w.why = ec;
            w.at = steady::now();
            w.closed = true;
            co_return;
        }
    }
}

/// Reads until the socket closes, checking each byte against the repeating pattern.
inline asio::awaitable<void> check_stream(tcp::socket& socket, const std::vector<char>& cycle,
                                          close_watch& w, std::size_t& wrong) {
    std::vector<char> buf(64 * 1024);
    for (;;) {
        auto [ec, n] = co_await socket.async_read_some(asio::buffer(buf), use_tuple);
        for (std::size_t i = 0; i < n; ++i)
            if (buf[i] != cycle[(w.received + i) % cycle.size()]) ++wrong;
        w.received += n;
        if (ec) {
            w.why = ec;
            w.at = steady::now();
            w.closed = true;
            co_return;
        }
    }
}

} // namespace test_support
