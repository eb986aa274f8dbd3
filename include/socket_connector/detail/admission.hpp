#pragma once

// Admission: a new side's PROXY header and auth verifier, run under `auth_timeout`. The verifier
// may read and write the socket; what it read past its own message (its leftover) is relayed
// first.

#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <socket_connector/concepts.hpp>

namespace socket_connector::detail {

/// What admission came to: admitted (with the bytes the verifier read past its message), or
/// refused with the reason.
struct admission {
    bool admitted = false;
    /// The verifier's `why`, "rejected" when it gave none, "timed out", or what it threw.
    std::string failure;
    std::vector<char> leftover;
    std::string key;             ///< the verifier's pairing key (empty: first in, first out)
    std::optional<side_id> side; ///< the side the verifier says the socket is
};

/// Runs a check (a verifier, maybe after reading a PROXY header), turning its exception into a
/// failure.
template <class Check>
asio::awaitable<auth_result> check_caught(Check& check, std::string& failure) {
    try {
        co_return co_await check();
    } catch (const std::exception& e) {
        failure = e.what();
    }
    co_return auth_result{};
}

/// Runs `check()` (it yields an `auth_result`; it lives until this completes), bounded by
/// `timeout` (a timer on `strand`): when the timer comes first, whatever operation the check
/// awaits is cancelled (terminal cancellation), and the socket fails with "timed out" once the
/// check has returned.
///
/// The check runs as a child coroutine whose cancellation slot the timer's handler signals:
/// one child and one timer wait per socket, and no exception on the way, where racing the two
/// with `||` took two children, a parallel group, and an exception for the cancelled timer.
template <class Check>
asio::awaitable<admission> admit(Check& check, std::chrono::milliseconds timeout,
                                 asio::any_io_executor strand) {
    // The timer's handler may run after this frame has gone (a wait already queued when the
    // timer is cancelled): what it touches is shared.
    struct deadline {
        asio::cancellation_signal signal;
        bool settled = false; // the verifier has returned
        bool passed = false;  // the timer came first
    };
    admission result;
    auto state = std::make_shared<deadline>();
    asio::steady_timer timer(strand, timeout);
    timer.async_wait([state](const std::error_code& ec) {
        if (ec || state->settled) return;
        state->passed = true;
        state->signal.emit(asio::cancellation_type::terminal);
    });
    auth_result verdict;
    try {
        verdict = co_await asio::co_spawn(
            strand, check_caught(check, result.failure),
            asio::bind_cancellation_slot(state->signal.slot(), asio::use_awaitable));
    } catch (const std::exception& e) {
        if (result.failure.empty()) result.failure = e.what();
    }
    state->settled = true;
    timer.cancel();
    if (state->passed) {
        result.failure = "timed out";
    } else if (!verdict.ok) {
        if (result.failure.empty())
            result.failure = verdict.why.empty() ? "rejected" : std::move(verdict.why);
    } else if (result.failure.empty()) {
        result.admitted = true;
        result.leftover = std::move(verdict.leftover);
        result.key = std::move(verdict.key);
        result.side = verdict.side;
    }
    co_return result;
}

} // namespace socket_connector::detail
