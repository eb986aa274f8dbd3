#pragma once

// The connector's TLS steps on a side's socket: the handshake (bounded by the admission's
// deadline, which cancels its waits) and close_notify (a TLS side's half-close).

#include <string>
#include <system_error>

#include <asio/awaitable.hpp>

#include <socket_connector/detail/use_tuple.hpp>
#include <socket_connector/tls_session.hpp>

namespace socket_connector::detail {

/// Runs `session`'s handshake on `socket` to its end: empty, or why it failed.
template <class Socket>
asio::awaitable<std::string> tls_handshake(Socket& socket, tls_session& session) {
    for (;;) {
        auto step = session.handshake();
        if (step == tls_session::status::done) co_return std::string();
        if (step == tls_session::status::failed) co_return session.error();
        if (step == tls_session::status::closed)
            co_return std::string("the peer closed the connection during the handshake");
        const auto what =
            step == tls_session::status::want_read ? Socket::wait_read : Socket::wait_write;
        auto [ec] = co_await socket.async_wait(what, use_tuple);
        if (ec) co_return ec.message();
    }
}

} // namespace socket_connector::detail
