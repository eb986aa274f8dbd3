#pragma once

// Reading the PROXY header an accepted socket begins with (`side_options::accept_proxy`), and
// nothing after it: the auth verifier and the relay read the socket from the byte that follows.
//
// Each turn peeks at what has come and parses it with what was taken before. A complete header:
// exactly its remaining bytes are taken. An incomplete one: everything peeked is header, so it
// is all taken, and the next wait is for bytes that are new (peeking alone would find the socket
// readable again at once). Two system calls a turn; a header usually comes in one segment.

#include <algorithm>
#include <cstddef>
#include <string>
#include <system_error>
#include <vector>

#include <asio/awaitable.hpp>
#include <asio/buffer.hpp>
#include <asio/error.hpp>
#include <asio/socket_base.hpp>
#include <fmt/format.h>

#include <socket_connector/detail/use_tuple.hpp>
#include <socket_connector/proxy_protocol.hpp>

namespace socket_connector::detail {

/// What reading a PROXY header came to: the header, or why there is none.
struct proxy_read {
    proxy_header header;
    std::string error;     ///< empty: `header` was read
    std::size_t taken = 0; ///< bytes of it read so far
};

/// Reads the PROXY header at the start of `socket` (non-blocking) into `out` (which shows the
/// progress made if the read is cut short), taking no byte past it. Bounded by the caller (it
/// is cancellable: terminal cancellation ends the wait).
template <class Socket>
asio::awaitable<void> read_proxy_header(Socket& socket, proxy_read& out) {
    // A v1 header and a v2 one with IPv6 addresses both fit the first size; TLVs may need more.
    constexpr std::size_t first_size = 128;
    std::vector<char> bytes(first_size);
    auto& taken = out.taken; // bytes read for good: all of them header
    for (bool waited = false;; waited = true) {
        if (waited) {
            auto [ec] = co_await socket.async_wait(Socket::wait_read, use_tuple);
            if (ec) {
                out.error = ec == asio::error::operation_aborted ? "cancelled" : ec.message();
                co_return;
            }
        }
        std::error_code ec;
        auto n = socket.receive(asio::buffer(bytes.data() + taken, bytes.size() - taken),
                                asio::socket_base::message_peek, ec);
        if (ec == asio::error::would_block || ec == asio::error::try_again) continue;
        if (ec == asio::error::eof || (!ec && n == 0)) {
            out.error = taken == 0 ? "end of stream before a PROXY header"
                                   : "end of stream inside the PROXY header";
            co_return;
        }
        if (ec) {
            out.error = ec.message();
            co_return;
        }
        auto parsed = parse_proxy_header(std::span<const char>(bytes.data(), taken + n));
        if (parsed.status == proxy_status::invalid) {
            out.error = std::string(parsed.error);
            co_return;
        }
        // Take the header's bytes (all of what was peeked while it is incomplete).
        const auto take = parsed.status == proxy_status::complete ? parsed.length - taken : n;
        auto got = socket.receive(asio::buffer(bytes.data() + taken, take), 0, ec);
        if (ec || got != take) { // what was peeked stays until taken: only an error
            out.error = ec ? ec.message() : "the PROXY header's bytes could not be taken";
            co_return;
        }
        taken += take;
        if (parsed.status == proxy_status::complete) {
            out.header = parsed.header;
            co_return;
        }
        if (taken == bytes.size()) // a v2 header with TLVs: room up to the longest accepted
            bytes.resize(std::min(bytes.size() * 8, proxy_v2_max_length));
    }
}

} // namespace socket_connector::detail
