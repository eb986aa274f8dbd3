#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include <asio/ip/address.hpp>
#include <asio/ip/address_v4.hpp>
#include <asio/ip/address_v6.hpp>
#include <asio/ip/basic_endpoint.hpp>
#include <asio/ip/tcp.hpp>
#include <fmt/format.h>

#include <socket_connector/detail/socket_options.hpp>
#include <socket_connector/options.hpp>

namespace socket_connector {

/// A side's address as people write it: `HOST:PORT`, `:PORT` or `[IPv6]:PORT`.
///
/// Made by `parse_address`; `server_side_options` and `socket_side_options` turn it into the
/// options of a side that binds it or connects to it.
struct address {
    /// A name (`localhost`), an IPv4 address (`127.0.0.1`) or an IPv6 address without its
    /// brackets (`::1`). Empty: all IPv4 interfaces (only meaningful for a side that binds).
    std::string host;
    /// 0 asks the system to choose a port when binding.
    std::uint16_t port = 0;

    friend bool operator==(const address&, const address&) = default;
};

/// The longest host `parse_address` accepts: the longest DNS name.
inline constexpr std::size_t max_host_length = 253;

namespace detail {

/// Stores `why` in `*error` (when asked for) and says there is no address.
inline std::nullopt_t no_address(std::string* error, const char* why) noexcept {
    if (error) {
        try {
            *error = why;
        } catch (...) {
            // Out of memory: the caller still learns that parsing failed.
        }
    }
    return std::nullopt;
}

inline bool is_ascii_digit(char c) noexcept {
    return c >= '0' && c <= '9';
}

inline bool is_ascii_alnum(char c) noexcept {
    return is_ascii_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

inline bool is_ascii_hex(char c) noexcept {
    return is_ascii_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/// Reads a decimal port, 0 to 65535, with 1 to 5 digits and nothing else; null or the reason.
inline const char* port_error(std::string_view text, std::uint16_t& port) noexcept {
    if (text.empty()) return "missing port after ':'";
    constexpr const char* range = "the port must be a number from 0 to 65535";
    if (text.size() > 5) return range;
    std::uint32_t value = 0;
    for (char c : text) {
        if (!is_ascii_digit(c)) return range;
        value = value * 10 + static_cast<std::uint32_t>(c - '0');
    }
    if (value > 65535) return range;
    port = static_cast<std::uint16_t>(value);
    return nullptr;
}

/// Checks the inside of `[...]`: an IPv6 address, maybe with a zone (`fe80::1%eth0`).
inline const char* ipv6_host_error(std::string_view host) noexcept {
    if (host.empty()) return "empty IPv6 address between '[' and ']'";
    if (host.size() > max_host_length) return "the IPv6 address is too long";
    auto zone = host.find('%');
    for (std::size_t i = 0; i < host.size(); ++i) {
        char c = host[i];
        bool ok = i < zone ? is_ascii_hex(c) || c == ':' || c == '.'
                           : i == zone || is_ascii_alnum(c) || c == '-' || c == '_' || c == '.';
        if (!ok) return "invalid character in the IPv6 address";
    }
    if (zone != std::string_view::npos && zone + 1 == host.size()) return "empty zone after '%'";
    try {
        std::error_code ec;
        (void)asio::ip::make_address_v6(std::string(host), ec);
        if (ec) return "not a valid IPv6 address";
    } catch (...) {
        return "out of memory";
    }
    return nullptr;
}

/// Checks a host name (letters, digits, '-' and '_' in dot-separated labels of 1 to 63
/// characters, one trailing dot allowed) or a dotted IPv4 address.
inline const char* name_host_error(std::string_view host) noexcept {
    if (host.size() > max_host_length) return "the host is longer than 253 characters";
    bool numeric = true;
    std::size_t label = 0;
    for (char c : host) {
        if (c == '.') {
            if (label == 0) return "empty label in the host name";
            label = 0;
            continue;
        }
        if (!is_ascii_alnum(c) && c != '-' && c != '_') return "invalid character in the host";
        if (++label > 63) return "a label of the host name is longer than 63 characters";
        if (!is_ascii_digit(c)) numeric = false;
    }
    if (numeric) {
        // Digits and dots only: no DNS name looks like that, and the resolver would read `1234`
        // or `1.2` as an IPv4 address, so insist on a dotted quad.
        try {
            std::error_code ec;
            (void)asio::ip::make_address_v4(std::string(host), ec);
            if (ec) return "not a valid IPv4 address";
        } catch (...) {
            return "out of memory";
        }
    }
    return nullptr;
}

} // namespace detail

/// Reads a decimal port: 0 to 65535, 1 to 5 digits and nothing else. Nothing if it is not one,
/// with the reason in `*error` when given. Never throws on any input.
inline std::optional<std::uint16_t> parse_port(std::string_view text,
                                               std::string* error = nullptr) {
    std::uint16_t port = 0;
    if (auto why = detail::port_error(text, port)) {
        if (error) *error = why;
        return std::nullopt;
    }
    return port;
}

/// Parses `HOST:PORT`, `:PORT` (all IPv4 interfaces) or `[IPv6]:PORT`; nothing if `text` is not
/// one of them, with the reason in `*error` when `error` is not null.
///
/// HOST is a name (`localhost`, `example.com`), a dotted IPv4 address, or an IPv6 address in
/// brackets (`[::1]:9000`, kept without the brackets). PORT is a decimal number from 0 to 65535
/// with at most 5 digits, no sign and no spaces. Rejected: an empty text, a missing colon or
/// port, an IPv6 address without brackets, a host longer than `max_host_length`, and any
/// character that cannot be part of a host (spaces, control bytes, NUL). Never throws; any byte
/// string is a valid input. Nothing is resolved.
inline std::optional<address> parse_address(std::string_view text,
                                            std::string* error = nullptr) noexcept {
    if (text.empty()) return detail::no_address(error, "empty address");
    if (text.find('\0') != std::string_view::npos)
        return detail::no_address(error, "the address contains a NUL byte");

    std::string_view host;
    std::string_view port;
    bool ipv6 = false;
    if (text.front() == '[') {
        auto close = text.find(']');
        if (close == std::string_view::npos)
            return detail::no_address(error, "missing ']' after the IPv6 address");
        host = text.substr(1, close - 1);
        auto rest = text.substr(close + 1);
        if (rest.empty() || rest.front() != ':')
            return detail::no_address(error, "expected ':PORT' after ']'");
        port = rest.substr(1);
        ipv6 = true;
    } else {
        auto colon = text.find(':');
        if (colon == std::string_view::npos) return detail::no_address(error, "missing ':PORT'");
        if (text.find(':', colon + 1) != std::string_view::npos)
            return detail::no_address(
                error, "too many ':' (an IPv6 address goes in brackets: [::1]:9000)");
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
    }

    address result;
    if (auto why = detail::port_error(port, result.port)) return detail::no_address(error, why);
    const char* why = nullptr;
    if (ipv6)
        why = detail::ipv6_host_error(host);
    else if (!host.empty())
        why = detail::name_host_error(host);
    if (why) return detail::no_address(error, why);
    try {
        result.host = host;
    } catch (...) {
        return detail::no_address(error, "out of memory");
    }
    return result;
}

/// The address as `parse_address` reads it: `localhost:80`, `[::1]:9000` or `:9000`.
inline std::string to_string(const address& a) {
    if (a.host.find(':') != std::string::npos) return fmt::format("[{}]:{}", a.host, a.port);
    return fmt::format("{}:{}", a.host, a.port);
}

/// An endpoint as people write it: `127.0.0.1:9000`, or `[::1]:9000` for IPv6.
template <class InternetProtocol>
std::string to_string(const asio::ip::basic_endpoint<InternetProtocol>& endpoint) {
    return detail::to_string(endpoint); // the form the connector's messages use too
}

/// The options of a server side that binds `a`.
///
/// An empty host binds all IPv4 interfaces (`0.0.0.0`); a numeric IPv4 or IPv6 host binds that
/// address; a name is resolved when the connector starts, and its first address is bound. Port
/// 0 lets the system choose (see `basic_connector::side_a_endpoint`).
inline side_options server_side_options(const address& a) {
    side_options so;
    if (a.host.empty()) {
        so.endpoint = asio::ip::tcp::endpoint(asio::ip::address_v4::any(), a.port);
        return so;
    }
    std::error_code ec;
    auto ip = asio::ip::make_address(a.host, ec);
    if (!ec) {
        so.endpoint = asio::ip::tcp::endpoint(ip, a.port);
    } else {
        so.host = a.host;
        so.port = std::to_string(a.port);
    }
    return so;
}

/// The options of a socket side that connects to `a`; nothing (with the reason in `*error`)
/// when `a` has no host or has port 0, which cannot be connected to.
///
/// A numeric host is connected to as it is; a name is resolved when the connector starts, and
/// its addresses are tried in turn.
inline std::optional<side_options> socket_side_options(const address& a,
                                                       std::string* error = nullptr) {
    if (a.host.empty()) {
        if (error) *error = "a side that connects needs a host (HOST:PORT)";
        return std::nullopt;
    }
    if (a.port == 0) {
        if (error) *error = "port 0 cannot be connected to";
        return std::nullopt;
    }
    side_options so;
    std::error_code ec;
    auto ip = asio::ip::make_address(a.host, ec);
    if (!ec) {
        so.endpoint = asio::ip::tcp::endpoint(ip, a.port);
    } else {
        so.host = a.host;
        so.port = std::to_string(a.port);
    }
    return so;
}

} // namespace socket_connector
