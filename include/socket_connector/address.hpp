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

inline bool fail_address(std::string* error, const char* message) noexcept {
    if (error) {
        try {
            *error = message;
        } catch (...) {
            // Out of memory: the caller still learns that parsing failed.
        }
    }
    return false;
}

inline bool is_ascii_digit(char c) noexcept { return c >= '0' && c <= '9'; }

inline bool is_ascii_alnum(char c) noexcept {
    return is_ascii_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/// A decimal port, 0 to 65535, with 1 to 5 digits and nothing else.
inline bool parse_port(std::string_view text, std::uint16_t& port, std::string* error) noexcept {
    if (text.empty()) return fail_address(error, "missing port after ':'");
    if (text.size() > 5) return fail_address(error, "the port has more than 5 digits");
    std::uint32_t value = 0;
    for (char c : text) {
        if (!is_ascii_digit(c)) return fail_address(error, "the port must be a decimal number");
        value = value * 10 + static_cast<std::uint32_t>(c - '0');
    }
    if (value > 65535) return fail_address(error, "the port must be at most 65535");
    port = static_cast<std::uint16_t>(value);
    return true;
}

/// The inside of `[...]`: an IPv6 address, maybe with a zone (`fe80::1%eth0`).
inline bool check_ipv6_host(std::string_view host, std::string* error) noexcept {
    if (host.empty()) return fail_address(error, "empty IPv6 address between '[' and ']'");
    if (host.size() > max_host_length) return fail_address(error, "the IPv6 address is too long");
    auto zone = host.find('%');
    for (std::size_t i = 0; i < host.size(); ++i) {
        char c = host[i];
        bool ok = i < zone ? is_ascii_alnum(c) || c == ':' || c == '.'
                           : i == zone || is_ascii_alnum(c) || c == '-' || c == '_' || c == '.';
        if (!ok) return fail_address(error, "invalid character in the IPv6 address");
    }
    if (zone + 1 == host.size()) return fail_address(error, "empty zone after '%'");
    try {
        std::error_code ec;
        (void)asio::ip::make_address_v6(std::string(host), ec);
        if (ec) return fail_address(error, "not a valid IPv6 address");
    } catch (...) {
        return fail_address(error, "not a valid IPv6 address");
    }
    return true;
}

/// A host name (letters, digits, '-', '_', dot-separated labels of 1 to 63 characters, one
/// trailing dot allowed) or a dotted IPv4 address.
inline bool check_name_host(std::string_view host, std::string* error) noexcept {
    if (host.size() > max_host_length)
        return fail_address(error, "the host is longer than 253 characters");
    bool numeric = true;
    std::size_t label = 0;
    for (std::size_t i = 0; i < host.size(); ++i) {
        char c = host[i];
        if (c == '.') {
            if (label == 0) return fail_address(error, "empty label in the host name");
            label = 0;
            continue;
        }
        if (!is_ascii_alnum(c) && c != '-' && c != '_')
            return fail_address(error, "invalid character in the host");
        if (++label > 63) return fail_address(error, "a host name label is longer than 63 characters");
        if (!is_ascii_digit(c)) numeric = false;
    }
    if (numeric) {
        // Digits and dots only: no DNS name looks like that, so it must be an IPv4 address
        // (the resolver would otherwise read `1234` or `1.2` as one).
        try {
            std::error_code ec;
            (void)asio::ip::make_address_v4(std::string(host), ec);
            if (ec) return fail_address(error, "not a valid IPv4 address");
        } catch (...) {
            return fail_address(error, "not a valid IPv4 address");
        }
    }
    return true;
}

} // namespace detail

/// Parses `HOST:PORT`, `:PORT` (all IPv4 interfaces) or `[IPv6]:PORT`; nothing if `text` is not
/// one of them, with the reason in `*error` when `error` is not null.
///
/// HOST is a name (`localhost`, `example.com`), a dotted IPv4 address, or an IPv6 address in
/// brackets (`[::1]:9000`, stored without the brackets). PORT is a decimal number from 0 to
/// 65535 with at most 5 digits, no sign and no spaces. Rejected: an empty text, a missing colon
/// or port, an IPv6 address without brackets, a host longer than `max_host_length`, and any
/// character that cannot be part of a host (including NUL and spaces). Never throws; any byte
/// string is a valid input.
inline std::optional<address> parse_address(std::string_view text,
                                            std::string* error = nullptr) noexcept {
    if (text.empty()) return detail::fail_address(error, "empty address"), std::nullopt;
    if (text.find('\0') != std::string_view::npos)
        return detail::fail_address(error, "the address contains a NUL byte"), std::nullopt;

    std::string_view host;
    std::string_view port;
    bool ipv6 = false;
    if (text.front() == '[') {
        auto close = text.find(']');
        if (close == std::string_view::npos)
            return detail::fail_address(error, "missing ']' after an IPv6 address"), std::nullopt;
        host = text.substr(1, close - 1);
        auto rest = text.substr(close + 1);
        if (rest.empty() || rest.front() != ':')
            return detail::fail_address(error, "expected ':PORT' after ']'"), std::nullopt;
        port = rest.substr(1);
        ipv6 = true;
    } else {
        auto colon = text.find(':');
        if (colon == std::string_view::npos)
            return detail::fail_address(error, "missing ':PORT'"), std::nullopt;
        if (text.find(':', colon + 1) != std::string_view::npos)
            return detail::fail_address(
                       error, "too many ':' (write an IPv6 address in brackets: [::1]:9000)"),
                   std::nullopt;
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
    }

    address result;
    if (!detail::parse_port(port, result.port, error)) return std::nullopt;
    if (ipv6 ? !detail::check_ipv6_host(host, error)
             : !host.empty() && !detail::check_name_host(host, error))
        return std::nullopt;
    try {
        result.host = host;
    } catch (...) {
        return detail::fail_address(error, "out of memory"), std::nullopt;
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
    auto host = endpoint.address().to_string();
    if (endpoint.address().is_v6()) return fmt::format("[{}]:{}", host, endpoint.port());
    return fmt::format("{}:{}", host, endpoint.port());
}

/// The options of a server side that binds `a`.
///
/// An empty host binds all IPv4 interfaces (`0.0.0.0`); a numeric IPv4 or IPv6 host binds that
/// address; a name is resolved when the connector starts, and its first address is bound. Port
/// 0 lets the system choose (see `basic_connector::side_a_endpoint`).
inline side_options server_side_options(const address& a) {
    side_options side;
    if (a.host.empty()) {
        side.endpoint = asio::ip::tcp::endpoint(asio::ip::address_v4::any(), a.port);
        return side;
    }
    std::error_code ec;
    auto ip = asio::ip::make_address(a.host, ec);
    if (!ec) {
        side.endpoint = asio::ip::tcp::endpoint(ip, a.port);
    } else {
        side.host = a.host;
        side.port = std::to_string(a.port);
    }
    return side;
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
    side_options side;
    std::error_code ec;
    auto ip = asio::ip::make_address(a.host, ec);
    if (!ec) {
        side.endpoint = asio::ip::tcp::endpoint(ip, a.port);
    } else {
        side.host = a.host;
        side.port = std::to_string(a.port);
    }
    return side;
}

} // namespace socket_connector
