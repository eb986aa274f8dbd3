#pragma once

#include <system_error>
#include <type_traits>

#include <asio/ip/tcp.hpp>
#include <asio/socket_base.hpp>

#include <socket_connector/keep_alive.hpp>

#if defined(_WIN32)
#include <mstcpip.h>
#else
#include <netinet/in.h>
#include <netinet/tcp.h>
#endif

namespace socket_connector {

namespace detail {
/// True for the protocols whose sockets take TCP options (keep-alive, TCP_NODELAY).
template <class Protocol>
inline constexpr bool is_tcp = std::is_same_v<Protocol, asio::ip::tcp>;
} // namespace detail

/// Sets SO_KEEPALIVE and, where the platform has them, the idle time, probe interval and probe
/// count on a connected TCP socket. Does nothing for other protocols. With keep-alive disabled,
/// SO_KEEPALIVE is cleared; `fresh` says the socket is new (SO_KEEPALIVE starts off), which
/// saves that system call.
template <class Socket>
void set_keep_alive(Socket& socket, const keep_alive& k, std::error_code& ec, bool fresh = false) {
    ec.clear();
    if constexpr (detail::is_tcp<typename Socket::protocol_type>) {
        if (!k.enabled && fresh) return;
        socket.set_option(asio::socket_base::keep_alive(k.enabled), ec);
        if (ec || !k.enabled) return;
        const int idle = static_cast<int>(k.idle.count());
        const int interval = static_cast<int>(k.interval.count());
#if defined(_WIN32)
        tcp_keepalive values{};
        values.onoff = 1;
        values.keepalivetime = static_cast<ULONG>(idle) * 1000;
        values.keepaliveinterval = static_cast<ULONG>(interval) * 1000;
        DWORD returned = 0;
        if (::WSAIoctl(socket.native_handle(), SIO_KEEPALIVE_VALS, &values, sizeof values, nullptr,
                       0, &returned, nullptr, nullptr) != 0)
            ec = std::error_code(::WSAGetLastError(), std::system_category());
#else
        auto set = [&](int name, int value) {
            if (ec) return;
            if (::setsockopt(socket.native_handle(), IPPROTO_TCP, name, &value, sizeof value) != 0)
                ec = std::error_code(errno, std::system_category());
        };
#if defined(__APPLE__)
        set(TCP_KEEPALIVE, idle);
#else
        set(TCP_KEEPIDLE, idle);
#endif
        set(TCP_KEEPINTVL, interval);
        set(TCP_KEEPCNT, k.count);
#endif
    }
}

/// Turns Nagle's algorithm off on a TCP socket (relayed bytes leave at once); no-op otherwise.
template <class Socket>
void set_no_delay(Socket& socket, std::error_code& ec) {
    ec.clear();
    if constexpr (detail::is_tcp<typename Socket::protocol_type>)
        socket.set_option(asio::ip::tcp::no_delay(true), ec);
}

} // namespace socket_connector
