#pragma once

// A challenge/response auth verifier for tests of verifiers other than the library's
// token_verifier.

#include <cstddef>
#include <string>
#include <vector>

#include <asio/ip/tcp.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>

#include <socket_connector/auth.hpp>

#include "support/net.hpp"

namespace test_support {

/// A challenge/response verifier: sends `challenge <n>` (n = the peer's port) and expects the
/// answer `<n * 3 + 1>` on the next line; bytes after that line are the leftover.
struct challenge_verifier {
    asio::awaitable<sc::auth_result> operator()(tcp::socket& socket) const {
        auto n = static_cast<unsigned long>(socket.remote_endpoint().port());
        std::string challenge = fmt::format("challenge {}\n", n);
        co_await asio::async_write(socket, asio::buffer(challenge), asio::use_awaitable);
        std::string expected = std::to_string(n * 3 + 1);
        std::vector<char> received;
        for (;;) {
            if (auto found = sc::find_first_line(received)) {
                sc::auth_result result;
                result.ok = found->line == expected;
                if (result.ok)
                    result.leftover.assign(received.begin() +
                                               static_cast<std::ptrdiff_t>(found->rest),
                                           received.end());
                co_return result;
            }
            char buf[512];
            auto n_read = co_await socket.async_read_some(asio::buffer(buf), asio::use_awaitable);
            received.insert(received.end(), buf, buf + n_read);
        }
    }
};

} // namespace test_support
