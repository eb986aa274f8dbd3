#pragma once

#include <algorithm>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <asio/awaitable.hpp>
#include <asio/buffer.hpp>
#include <asio/use_awaitable.hpp>

#include <socket_connector/concepts.hpp>

namespace socket_connector {

/// Compares two byte strings in time that depends only on the length of `given`, never on
/// where they differ, so a peer cannot find a secret one byte at a time.
inline bool constant_time_equal(std::string_view given, std::string_view secret) noexcept {
    unsigned diff = given.size() == secret.size() ? 0u : 1u;
    for (std::size_t i = 0; i < given.size(); ++i) {
        unsigned s = secret.empty() ? 0u : static_cast<unsigned char>(secret[i % secret.size()]);
        diff |= static_cast<unsigned>(static_cast<unsigned char>(given[i])) ^ s;
    }
    return diff == 0;
}

/// The outcome of looking for the first line in the bytes a side has sent so far.
struct first_line {
    /// The line without its LF and without one trailing CR.
    std::string_view line;
    /// Where the bytes after the LF start.
    std::size_t rest = 0;
};

/// Finds the first LF-terminated line in `bytes`; nothing if there is no LF yet.
inline std::optional<first_line> find_first_line(std::span<const char> bytes) noexcept {
    auto lf = std::find(bytes.begin(), bytes.end(), '\n');
    if (lf == bytes.end()) return std::nullopt;
    auto length = static_cast<std::size_t>(lf - bytes.begin());
    std::string_view line(bytes.data(), length);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    return first_line{line, length + 1};
}

/// An auth verifier for a shared secret: the side's first line must be the token.
///
/// The side sends `TOKEN\n` (a trailing CR is ignored); bytes after the LF are the leftover,
/// relayed once the side is paired. A line longer than `max_line` bytes, an end of stream before
/// the LF, or a different token fails. The token is compared in constant time and never logged.
class token_verifier {
public:
    explicit token_verifier(std::string token, std::size_t max_line = 1024)
        : token_(std::move(token))
        , max_line_(std::max(max_line, token_.size() + 2)) {}

    template <class Socket>
    asio::awaitable<auth_result> operator()(Socket& socket) const {
        std::vector<char> received;
        for (;;) {
            if (auto found = find_first_line(received)) {
                auth_result result;
                result.ok = constant_time_equal(found->line, token_);
                if (result.ok)
                    result.leftover.assign(received.begin() +
                                               static_cast<std::ptrdiff_t>(found->rest),
                                           received.end());
                co_return result;
            }
            if (received.size() > max_line_) co_return auth_result{};
            auto old = received.size();
            received.resize(old + 4096);
            auto n = co_await socket.async_read_some(
                asio::buffer(received.data() + old, received.size() - old), asio::use_awaitable);
            received.resize(old + n);
        }
    }

private:
    std::string token_;
    std::size_t max_line_;
};

} // namespace socket_connector
