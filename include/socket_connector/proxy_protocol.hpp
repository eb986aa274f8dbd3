#pragma once

// The PROXY protocol (HAProxy's specification, versions 1 and 2): the header a proxy sends
// before any byte of a connection it relays, naming the client's address and the address the
// client connected to. `parse_proxy_header` reads one from the first bytes of a connection
// (incrementally: it says when it needs more, and its decision never changes as bytes are
// added); `proxy_header_v1` and `proxy_header_v2` write one. No I/O here.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

#include <asio/ip/address.hpp>
#include <asio/ip/tcp.hpp>

namespace socket_connector {

/// Which PROXY header a socket side sends (`side_options::send_proxy`): none, v1 text or v2
/// binary.
enum class proxy_version { none, v1, v2 };

/// What a PROXY header says about the connection it precedes.
struct proxy_header {
    int version = 0; ///< 1 (text) or 2 (binary)
    /// No address to use: a v2 LOCAL command (the proxy's own connection, a health check), a
    /// v2 UNSPEC or UNIX family or datagram transport, or v1 `UNKNOWN`. The connection's own
    /// addresses stand.
    bool local = false;
    asio::ip::tcp::endpoint source;      ///< the client, as the proxy saw it
    asio::ip::tcp::endpoint destination; ///< where the client connected to on the proxy

    friend bool operator==(const proxy_header&, const proxy_header&) = default;
};

enum class proxy_status {
    need_more, ///< a header may still follow: read more
    complete,  ///< a header of `length` bytes; the connection's own bytes follow it
    invalid,   ///< not a PROXY header, or a malformed or oversized one
};

struct proxy_parse_result {
    proxy_status status = proxy_status::need_more;
    std::size_t length = 0; ///< when complete: the header's size in bytes
    proxy_header header;    ///< when complete
    std::string_view error; ///< when invalid: why, in a few words
};

/// The longest v1 header, its CR LF included (the specification's limit).
inline constexpr std::size_t proxy_v1_max_length = 107;
/// The longest v2 header accepted, its 16-byte preamble included. The specification allows up
/// to 65,551; real proxies send the addresses and a few TLVs (HAProxy's SSL ones are well under
/// this), and a receiver must hold what it reads until the header is complete.
inline constexpr std::size_t proxy_v2_max_length = 4096;
/// The first 12 bytes of a v2 header.
inline constexpr std::array<unsigned char, 12> proxy_v2_signature = {
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

namespace detail {

inline proxy_parse_result proxy_invalid(std::string_view why) noexcept {
    proxy_parse_result r;
    r.status = proxy_status::invalid;
    r.error = why;
    return r;
}

/// A decimal port: 1 to 5 digits, no leading zero (but "0"), at most 65535.
inline bool parse_proxy_port(std::string_view text, std::uint16_t& port) noexcept {
    if (text.empty() || text.size() > 5 || (text.size() > 1 && text.front() == '0')) return false;
    unsigned value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return false;
        value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value > 65535) return false;
    port = static_cast<std::uint16_t>(value);
    return true;
}

inline proxy_parse_result parse_proxy_v1(std::string_view received) noexcept {
    // "PROXY " has been seen. The line ends with CR LF within 107 bytes.
    const auto window = received.substr(0, proxy_v1_max_length);
    const auto cr = window.find('\r');
    if (cr == std::string_view::npos || cr + 1 >= window.size()) {
        if (received.size() >= proxy_v1_max_length)
            return proxy_invalid("PROXY v1 line without CR LF within 107 bytes");
        if (window.find('\n') != std::string_view::npos)
            return proxy_invalid("PROXY v1 line ends without CR");
        return {}; // need more
    }
    if (window[cr + 1] != '\n') return proxy_invalid("PROXY v1 line: CR without LF");
    if (window.substr(0, cr).find('\n') != std::string_view::npos)
        return proxy_invalid("PROXY v1 line ends without CR");
    std::string_view line = window.substr(6, cr - 6); // after "PROXY "
    proxy_parse_result r;
    r.status = proxy_status::complete;
    r.length = cr + 2;
    r.header.version = 1;
    if (line == "UNKNOWN" || line.starts_with("UNKNOWN ")) {
        r.header.local = true; // the rest of the line is to be ignored
        return r;
    }
    // TCP4|TCP6 SP src SP dst SP sport SP dport, single spaces.
    std::string_view fields[5];
    std::size_t count = 0;
    while (count < 5) {
        const auto sp = line.find(' ');
        fields[count++] = line.substr(0, sp);
        if (sp == std::string_view::npos) {
            line = {};
            break;
        }
        line.remove_prefix(sp + 1);
        if (count == 5) return proxy_invalid("PROXY v1 line: too many fields");
    }
    if (count != 5) return proxy_invalid("PROXY v1 line: too few fields");
    const bool v4 = fields[0] == "TCP4";
    if (!v4 && fields[0] != "TCP6") return proxy_invalid("PROXY v1 line: unknown protocol");
    std::uint16_t ports[2] = {0, 0};
    asio::ip::address addresses[2];
    for (int i = 0; i < 2; ++i) {
        std::error_code ec;
        const std::string text(fields[1 + i]);
        // Digits, dots and colons only: no scope, and no NUL to end the text early.
        if (text.find_first_not_of("0123456789abcdefABCDEF.:") != std::string::npos)
            return proxy_invalid("PROXY v1 line: bad address");
        if (v4) {
            auto a = asio::ip::make_address_v4(text, ec);
            if (!ec) addresses[i] = a;
        } else {
            auto a = asio::ip::make_address_v6(text, ec);
            if (!ec) addresses[i] = a;
        }
        if (ec) return proxy_invalid("PROXY v1 line: bad address");
        if (!parse_proxy_port(fields[3 + i], ports[i]))
            return proxy_invalid("PROXY v1 line: bad port");
    }
    r.header.source = {addresses[0], ports[0]};
    r.header.destination = {addresses[1], ports[1]};
    return r;
}

inline std::uint16_t proxy_be16(const unsigned char* p) noexcept {
    return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}

inline proxy_parse_result parse_proxy_v2(std::span<const unsigned char> in) noexcept {
    // The signature has been seen.
    if (in.size() < 16) {
        if (in.size() > 12 && (in[12] & 0xF0) != 0x20)
            return proxy_invalid("PROXY v2 header: unknown version");
        return {};
    }
    const unsigned char ver_cmd = in[12];
    const unsigned char family = in[13];
    const std::size_t length = proxy_be16(in.data() + 14);
    if ((ver_cmd & 0xF0) != 0x20) return proxy_invalid("PROXY v2 header: unknown version");
    const unsigned command = ver_cmd & 0x0F;
    if (command > 1) return proxy_invalid("PROXY v2 header: unknown command");
    if (16 + length > proxy_v2_max_length) return proxy_invalid("PROXY v2 header too long");
    const unsigned af = family >> 4;
    const unsigned transport = family & 0x0F;
    if (af > 3 || transport > 2) return proxy_invalid("PROXY v2 header: unknown address family");
    // Decided before the body comes where the length alone tells.
    if (command == 1 && af == 1 && transport != 0 && length < 12)
        return proxy_invalid("PROXY v2 header: IPv4 addresses need 12 bytes");
    if (command == 1 && af == 2 && transport != 0 && length < 36)
        return proxy_invalid("PROXY v2 header: IPv6 addresses need 36 bytes");
    if (command == 1 && af == 3 && transport != 0 && length < 216)
        return proxy_invalid("PROXY v2 header: UNIX addresses need 216 bytes");
    if (in.size() < 16 + length) return {};
    proxy_parse_result r;
    r.status = proxy_status::complete;
    r.length = 16 + length;
    r.header.version = 2;
    const unsigned char* body = in.data() + 16;
    if (command == 0 || af == 0 || af == 3 || transport != 1) {
        // LOCAL, UNSPEC, UNIX or a datagram (valid, but not what a TCP relay can name): the
        // connection's own addresses stand, as the specification asks of a receiver.
        r.header.local = true;
        return r;
    }
    if (af == 1) {
        asio::ip::address_v4::bytes_type src{}, dst{};
        std::copy(body, body + 4, src.begin());
        std::copy(body + 4, body + 8, dst.begin());
        r.header.source = {asio::ip::address_v4(src), proxy_be16(body + 8)};
        r.header.destination = {asio::ip::address_v4(dst), proxy_be16(body + 10)};
    } else {
        asio::ip::address_v6::bytes_type src{}, dst{};
        std::copy(body, body + 16, src.begin());
        std::copy(body + 16, body + 32, dst.begin());
        r.header.source = {asio::ip::address_v6(src), proxy_be16(body + 32)};
        r.header.destination = {asio::ip::address_v6(dst), proxy_be16(body + 34)};
    }
    return r; // TLVs past the addresses, if any, are skipped
}

} // namespace detail

/// Reads the PROXY header (v1 or v2) at the start of `received`, the bytes a connection has sent
/// so far. Any bytes are valid input. `need_more` while the bytes are a prefix of a header that
/// may still be valid; once `complete` or `invalid`, more bytes never change the decision.
inline proxy_parse_result parse_proxy_header(std::span<const char> received) noexcept {
    const std::string_view text(received.data(), received.size());
    const std::span<const unsigned char> bytes(
        reinterpret_cast<const unsigned char*>(received.data()), received.size());
    constexpr std::string_view v1_prefix = "PROXY ";
    const std::string_view v2_prefix(reinterpret_cast<const char*>(proxy_v2_signature.data()),
                                     proxy_v2_signature.size());
    if (text.starts_with(v1_prefix)) return detail::parse_proxy_v1(text);
    if (text.starts_with(v2_prefix)) return detail::parse_proxy_v2(bytes);
    if (v1_prefix.starts_with(text) || v2_prefix.starts_with(text)) return {}; // so far a prefix
    return detail::proxy_invalid("no PROXY header");
}

namespace detail {

/// `e`'s address as IPv6 (an IPv4 address mapped), for a header whose two sides differ.
inline asio::ip::address_v6 as_v6(const asio::ip::tcp::endpoint& e) {
    const auto a = e.address();
    return a.is_v6() ? a.to_v6() : asio::ip::make_address_v6(asio::ip::v4_mapped, a.to_v4());
}

} // namespace detail

/// A v1 header (`PROXY TCP4 ...\r\n`) for a client at `source` that connected to `destination`.
/// Addresses of two families are both written as IPv6 (the IPv4 one mapped).
inline std::string proxy_header_v1(const asio::ip::tcp::endpoint& source,
                                   const asio::ip::tcp::endpoint& destination) {
    const bool v4 = source.address().is_v4() && destination.address().is_v4();
    auto text = [v4](const asio::ip::tcp::endpoint& e) {
        if (v4) return e.address().to_v4().to_string();
        auto a = detail::as_v6(e);
        a.scope_id(0);
        return a.to_string();
    };
    return std::string("PROXY ") + (v4 ? "TCP4 " : "TCP6 ") + text(source) + " " +
           text(destination) + " " + std::to_string(source.port()) + " " +
           std::to_string(destination.port()) + "\r\n";
}

/// A v2 header (command PROXY, TCP over IPv4 or IPv6, no TLV) for a client at `source` that
/// connected to `destination`; IPv6 when either address is.
inline std::string proxy_header_v2(const asio::ip::tcp::endpoint& source,
                                   const asio::ip::tcp::endpoint& destination) {
    const bool v4 = source.address().is_v4() && destination.address().is_v4();
    std::string out(proxy_v2_signature.begin(), proxy_v2_signature.end());
    out += static_cast<char>(0x21);             // version 2, PROXY
    out += static_cast<char>(v4 ? 0x11 : 0x21); // TCP over IPv4 / IPv6
    const std::size_t length = v4 ? 12 : 36;
    out += static_cast<char>(length >> 8);
    out += static_cast<char>(length & 0xFF);
    auto put = [&out](const auto& bytes) {
        for (auto b : bytes)
            out += static_cast<char>(b);
    };
    if (v4) {
        put(source.address().to_v4().to_bytes());
        put(destination.address().to_v4().to_bytes());
    } else {
        put(detail::as_v6(source).to_bytes());
        put(detail::as_v6(destination).to_bytes());
    }
    for (auto port : {source.port(), destination.port()}) {
        out += static_cast<char>(port >> 8);
        out += static_cast<char>(port & 0xFF);
    }
    return out;
}

/// A header that names no address: v1 `PROXY UNKNOWN`, or v2 with the LOCAL command (what a
/// proxy sends when it has no TCP addresses to name; the receiver keeps the connection's own).
inline std::string proxy_header_local(proxy_version version) {
    if (version == proxy_version::v1) return "PROXY UNKNOWN\r\n";
    std::string out(proxy_v2_signature.begin(), proxy_v2_signature.end());
    out += static_cast<char>(0x20); // version 2, LOCAL
    out += '\0';                    // UNSPEC
    out += '\0';
    out += '\0'; // no address block
    return out;
}

/// The header of `version` (v1 or v2) for a client at `source` that connected to `destination`.
inline std::string proxy_header_text(proxy_version version, const asio::ip::tcp::endpoint& source,
                                     const asio::ip::tcp::endpoint& destination) {
    return version == proxy_version::v1 ? proxy_header_v1(source, destination)
                                        : proxy_header_v2(source, destination);
}

} // namespace socket_connector
