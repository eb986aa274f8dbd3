#pragma once

// The service end of a PROXY header: reading one from the start of a connection, as a service
// behind a relay (or HAProxy with `accept-proxy`) does.

#include <socket_connector/proxy_protocol.hpp>

#include <array>
#include <string>
#include <vector>

#include "net.hpp"

namespace test_support {

inline tcp::endpoint at(const char* address, unsigned short port) {
    return {asio::ip::make_address(address), port};
}

/// Reads a PROXY header from the start of `socket` (what a service behind the relay does):
/// the header, and the bytes that came after it in the same reads.
struct received_header {
    sc::proxy_parse_result parsed;
    std::string bytes; // the header's own bytes
    std::vector<char> after;
};

inline asio::awaitable<received_header> receive_header(tcp::socket& socket) {
    received_header out;
    std::vector<char> got;
    std::array<char, 512> chunk;
    for (;;) {
        auto [ec, n] = co_await socket.async_read_some(asio::buffer(chunk), use_tuple);
        REQUIRE(!ec);
        got.insert(got.end(), chunk.data(), chunk.data() + n);
        out.parsed = sc::parse_proxy_header(got);
        if (out.parsed.status != sc::proxy_status::need_more) break;
    }
    REQUIRE(out.parsed.status == sc::proxy_status::complete);
    out.bytes.assign(got.data(), out.parsed.length);
    out.after.assign(got.begin() + static_cast<std::ptrdiff_t>(out.parsed.length), got.end());
    co_return out;
}

/// Connects to `port`, sends `bytes` (then ends the stream if asked) and expects the relay to
/// close the socket without a byte back.
inline asio::awaitable<void> closed_unanswered(unsigned short port, std::string_view bytes,
                                               bool end) {
    const std::string first(bytes);
    auto s = co_await connect_to(port);
    co_await send_text(s, first, end);
    auto ended = co_await read_until_closed(s);
    CHECK(ended.closed);
    CHECK(ended.bytes.empty());
}

} // namespace test_support
