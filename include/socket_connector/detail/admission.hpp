#pragma once

// Admission: a new side's auth verifier, run under `auth_timeout`. The verifier may read and
// write the socket; what it read past its own message (its leftover) is relayed first.

#include <chrono>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/experimental/awaitable_operators.hpp>
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
    std::string key;            ///< the verifier's pairing key (empty: first in, first out)
    std::optional<side_id> side; ///< the side the verifier says the socket is
};

/// Runs a verifier, turning its exception into a failure: `||` waits for the first operation
/// that succeeds, so a throwing verifier would otherwise wait out the timeout.
template <class Socket>
asio::awaitable<auth_result> verify_caught(const any_auth_verifier<Socket>& verify, Socket& socket,
                                           std::string& failure) {
    try {
        co_return co_await verify(socket);
    } catch (const std::exception& e) {
        failure = e.what();
    }
    co_return auth_result{};
}

/// Runs `verify` on `socket`, bounded by `timeout` (a timer on `strand`).
template <class Socket>
asio::awaitable<admission> admit(const any_auth_verifier<Socket>& verify, Socket& socket,
                                 std::chrono::milliseconds timeout, asio::any_io_executor strand) {
    using namespace asio::experimental::awaitable_operators;
    admission result;
    try {
        asio::steady_timer timer(strand, timeout);
        auto outcome = co_await (verify_caught(verify, socket, result.failure) ||
                                 timer.async_wait(asio::use_awaitable));
        if (outcome.index() == 1) {
            result.failure = "timed out";
        } else if (auto& verdict = std::get<0>(outcome); !verdict.ok) {
            if (result.failure.empty())
                result.failure = verdict.why.empty() ? "rejected" : std::move(verdict.why);
        } else {
            result.admitted = true;
            result.leftover = std::move(verdict.leftover);
            result.key = std::move(verdict.key);
            result.side = verdict.side;
        }
    } catch (const std::exception& e) {
        result.failure = e.what();
    }
    if (!result.failure.empty()) result.admitted = false;
    co_return result;
}

} // namespace socket_connector::detail
