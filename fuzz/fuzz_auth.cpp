// Fuzzes the token handshake (include/socket_connector/auth.hpp): find_first_line,
// constant_time_equal, detail::check_token_line, and token_verifier itself, run on a scripted
// socket that hands the stream over in pieces and then reports the end of stream.
//
// Input: byte 0 is max_line (0 to 255), byte 1 the token's length (0 to 63, cut to what is
// left), byte 2 how the stream is cut into reads, then the token, then the stream the side
// sends. Checked against a plain reference of the contract: the decision on the whole stream
// and on every prefix (a decision never changes once made); the verifier accepts exactly when
// the first line is the token, hands over exactly the bytes it read past the line, fails on an
// end of stream before deciding, and never holds more than max_line + read_chunk bytes.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

#include <asio/async_result.hpp>
#include <asio/buffer.hpp>
#include <asio/co_spawn.hpp>
#include <asio/error.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>

#include <socket_connector/auth.hpp>

#include "fuzz_check.hpp"

namespace sc = socket_connector;
using sc::detail::token_check;

namespace {

/// The contract of check_token_line, written plainly.
sc::detail::token_line_result reference_check(std::string_view received, std::string_view token,
                                              std::size_t max_line) {
    auto lf = received.find('\n');
    if (lf != std::string_view::npos) {
        auto line = received.substr(0, lf);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line == token) return {token_check::accepted, lf + 1};
        return {token_check::rejected, 0};
    }
    if (received.size() > std::max(max_line, token.size() + 2)) return {token_check::rejected, 0};
    return {token_check::need_more, 0};
}

bool operator==(const sc::detail::token_line_result& x, const sc::detail::token_line_result& y) {
    return x.outcome == y.outcome && x.rest == y.rest;
}

/// A socket whose peer sends `stream` in pieces cut by `cuts`, then ends it.
class scripted_socket {
public:
    scripted_socket(asio::io_context& io, std::string_view stream, fuzz::cuts cuts)
        : io_(io)
        , stream_(stream)
        , cuts_(cuts) {}

    template <class CompletionToken>
    auto async_read_some(const asio::mutable_buffer& buffer, CompletionToken&& token) {
        return asio::async_initiate<CompletionToken, void(std::error_code, std::size_t)>(
            [this](auto handler, asio::mutable_buffer into) {
                largest_read_ = std::max(largest_read_, into.size());
                std::error_code ec;
                std::size_t n = 0;
                if (into.size() == 0) {
                    // Asio completes an empty read at once with nothing.
                } else if (stream_.empty()) {
                    ec = asio::error::eof;
                } else {
                    n = std::min({into.size(), stream_.size(), cuts_.next(stream_.size())});
                    std::memcpy(into.data(), stream_.data(), n);
                    stream_.remove_prefix(n);
                    delivered_ += n;
                }
                asio::post(io_, [handler = std::move(handler), ec, n]() mutable {
                    std::move(handler)(ec, n);
                });
            },
            token, buffer);
    }

    /// What a verifier that reads without blocking, and waits for readiness when nothing is
    /// there, uses (detail::read_available): the peer's next piece is always ready.
    bool non_blocking() const { return true; }
    enum wait_type { wait_read, wait_write, wait_error };
    template <class CompletionToken>
    auto async_wait(wait_type, CompletionToken&& token) {
        return asio::async_initiate<CompletionToken, void(std::error_code)>(
            [this](auto handler) {
                asio::post(io_, [handler = std::move(handler)]() mutable {
                    std::move(handler)(std::error_code());
                });
            },
            token);
    }
    std::size_t read_some(const asio::mutable_buffer& into, std::error_code& ec) {
        largest_read_ = std::max(largest_read_, into.size());
        ec = {};
        if (into.size() == 0) return 0;
        if (stream_.empty()) {
            ec = asio::error::eof;
            return 0;
        }
        auto n = std::min({into.size(), stream_.size(), cuts_.next(stream_.size())});
        std::memcpy(into.data(), stream_.data(), n);
        stream_.remove_prefix(n);
        delivered_ += n;
        return n;
    }

    std::size_t delivered() const { return delivered_; }
    std::size_t largest_read() const { return largest_read_; }

private:
    asio::io_context& io_;
    std::string_view stream_;
    fuzz::cuts cuts_;
    std::size_t delivered_ = 0;
    std::size_t largest_read_ = 0;
};

void check_pure(std::string_view stream, std::string_view token, std::size_t max_line) {
    std::span<const char> bytes(stream.data(), stream.size());
    if (auto found = sc::find_first_line(bytes)) {
        auto lf = stream.find('\n');
        FUZZ_CHECK(found->rest == lf + 1);
        FUZZ_CHECK(found->line.data() == stream.data());
        FUZZ_CHECK(found->line.size() == lf || found->line.size() + 1 == lf);
    } else {
        FUZZ_CHECK(stream.find('\n') == std::string_view::npos);
    }

    FUZZ_CHECK(sc::constant_time_equal(token, token));
    FUZZ_CHECK(sc::constant_time_equal(stream, token) == (stream == token));
    FUZZ_CHECK(sc::constant_time_equal(token, stream) == (stream == token));

    auto whole = sc::detail::check_token_line(bytes, token, max_line);
    FUZZ_CHECK(whole == reference_check(stream, token, max_line));
    // A prefix is undecided or already has the final decision. Checked for every short prefix
    // and around where a decision can fall (the first LF, the size limit), not for all: that
    // would be quadratic.
    auto check_prefix = [&](std::size_t k) {
        if (k > stream.size()) return;
        auto part = sc::detail::check_token_line(bytes.first(k), token, max_line);
        FUZZ_CHECK(part.outcome == token_check::need_more || part == whole);
        FUZZ_CHECK(part.outcome != token_check::need_more || part.rest == 0);
    };
    for (std::size_t k = 0; k <= std::min<std::size_t>(stream.size(), 64); ++k)
        check_prefix(k);
    auto lf = std::min(stream.find('\n'), stream.size());
    auto limit = std::max(max_line, token.size() + 2);
    for (std::size_t k : {lf, lf + 1, limit, limit + 1, limit + 2, stream.size()})
        check_prefix(k);
}

void check_verifier(asio::io_context& io, std::string_view stream, std::string_view token,
                    std::size_t max_line, fuzz::cuts cuts) {
    sc::token_verifier verify{std::string(token), max_line};
    scripted_socket socket(io, stream, cuts);
    std::optional<sc::auth_result> result;
    bool threw = false;
    asio::co_spawn(io, verify(socket), [&](std::exception_ptr e, sc::auth_result r) {
        if (e)
            threw = true;
        else
            result = std::move(r);
    });
    io.restart();
    io.run();
    FUZZ_CHECK(threw != result.has_value());

    auto expected = reference_check(stream, token, max_line);
    auto limit = std::max(max_line, token.size() + 2);
    FUZZ_CHECK(socket.largest_read() <= sc::token_verifier::read_chunk);
    FUZZ_CHECK(socket.delivered() <= limit + sc::token_verifier::read_chunk);
    switch (expected.outcome) {
    case token_check::need_more: // the stream ended first
        FUZZ_CHECK(threw);
        FUZZ_CHECK(socket.delivered() == stream.size());
        break;
    case token_check::rejected:
        FUZZ_CHECK(result && !result->ok && result->leftover.empty());
        break;
    case token_check::accepted: {
        FUZZ_CHECK(result && result->ok);
        FUZZ_CHECK(socket.delivered() == expected.rest + result->leftover.size());
        auto leftover = std::string_view(result->leftover.data(), result->leftover.size());
        FUZZ_CHECK(stream.substr(expected.rest, leftover.size()) == leftover);
        break;
    }
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static asio::io_context io;
    if (size < 3) return 0;
    std::size_t max_line = data[0];
    std::size_t token_size = std::min<std::size_t>(data[1] % 64, size - 3);
    fuzz::cuts cuts(data[2]);
    auto token = fuzz::as_text(data + 3, token_size);
    auto stream = fuzz::as_text(data + 3 + token_size, size - 3 - token_size);

    check_pure(stream, token, max_line);
    check_verifier(io, stream, token, max_line, cuts);
    return 0;
}
