#pragma once

#include <cstddef>
#include <string>

#include <asio/ip/address.hpp>

#include <socket_connector/socket_options.hpp>

namespace socket_connector::detail {

/// Appends `value` in decimal.
inline void append_decimal(std::string& out, unsigned value) {
    char digits[10];
    int n = 0;
    do {
        digits[n++] = static_cast<char>('0' + value % 10);
        value /= 10;
    } while (value != 0);
    while (n > 0)
        out.push_back(digits[--n]);
}

/// An IP address as text: dotted quad for IPv4 (formatted here: it is on every accept and
/// inet_ntop's sprintf costs more than the rest of accepting), RFC 5952 form for IPv6.
inline void append_address(std::string& out, const asio::ip::address& address) {
    if (address.is_v4()) {
        auto bytes = address.to_v4().to_bytes();
        for (std::size_t i = 0; i < bytes.size(); ++i) {
            if (i != 0) out.push_back('.');
            append_decimal(out, bytes[i]);
        }
    } else {
        out += address.to_string();
    }
}

/// An endpoint as people write it: `127.0.0.1:9000`, `[::1]:9000`, or a Unix socket's path.
template <class Endpoint>
std::string to_string(const Endpoint& endpoint) {
    if constexpr (requires {
                      endpoint.address();
                      endpoint.port();
                  }) {
        auto address = endpoint.address();
        std::string out; // no reserve: a short one (127.0.0.1:40000) stays inside the string
        if (address.is_v6()) out.push_back('[');
        append_address(out, address);
        if (address.is_v6()) out.push_back(']');
        out.push_back(':');
        append_decimal(out, endpoint.port());
        return out;
    } else if constexpr (requires { endpoint.path(); }) {
        auto path = std::string(endpoint.path());
        return path.empty() ? std::string("(unnamed)") : path; // clients rarely bind a path
    } else {
        return "?";
    }
}

/// The remote address without its port, as recorded in stats.
template <class Endpoint>
std::string address_of(const Endpoint& endpoint) {
    if constexpr (requires { endpoint.address(); }) {
        std::string out;
        append_address(out, endpoint.address());
        return out;
    } else {
        return to_string(endpoint);
    }
}

/// Asks the kernel to hold back the last ACK of the TCP handshake that `socket` is about to
/// start, so that it leaves with the first bytes sent rather than in a segment of its own: one
/// packet less per connection (Linux: TCP_QUICKACK off before connect, as HAProxy's
/// `tcp-smart-connect` does). Only for a socket that sends as soon as it is connected: the
/// kernel sends the ACK alone if nothing follows within 200 ms. Best effort, no-op elsewhere.
template <class Socket>
void delay_handshake_ack(Socket& socket) noexcept {
#if defined(TCP_QUICKACK)
    if constexpr (is_tcp<typename Socket::protocol_type>) {
        const int off = 0;
        (void)::setsockopt(socket.native_handle(), IPPROTO_TCP, TCP_QUICKACK, &off, sizeof off);
    }
#else
    (void)socket;
#endif
}

} // namespace socket_connector::detail
