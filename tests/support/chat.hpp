#pragma once

// A chat client for end-to-end tests of chat_server: a loopback socket that reads whole lines,
// each read bounded in time, so a test waits for the line it expects instead of sleeping.

#include <array>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/write.hpp>
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "support/net.hpp"

namespace test_support {

/// One chat connection. Held by pointer (`connect` makes it): its reads keep its address.
class chat_peer {
public:
    explicit chat_peer(tcp::socket socket)
        : socket_(std::move(socket)) {}

    /// Connects to 127.0.0.1:port. A `receive_buffer` above 0 sets SO_RCVBUF first, which keeps
    /// the kernel from buffering much for a client that never reads.
    static asio::awaitable<std::unique_ptr<chat_peer>> connect(unsigned short port,
                                                               int receive_buffer = 0) {
        tcp::socket socket(co_await asio::this_coro::executor);
        socket.open(tcp::v4());
        if (receive_buffer > 0)
            socket.set_option(asio::socket_base::receive_buffer_size(receive_buffer));
        socket.set_option(tcp::no_delay(true));
        tcp::endpoint server(asio::ip::address_v4::loopback(), port);
        co_await socket.async_connect(server, asio::use_awaitable);
        co_return std::make_unique<chat_peer>(std::move(socket));
    }

    tcp::socket& socket() { return socket_; }

    /// `127.0.0.1:PORT`: the name the server gives this client until it sets one.
    std::string address() const { return sc::to_string(socket_.local_endpoint()); }

    /// Sends bytes as they are (no LF added).
    asio::awaitable<void> send(std::string_view bytes) {
        co_await asio::async_write(socket_, asio::buffer(bytes.data(), bytes.size()),
                                   asio::use_awaitable);
    }

    /// Sends one line: `text` and an LF.
    asio::awaitable<void> say(std::string_view text) {
        std::string line(text);
        line += '\n';
        co_await asio::async_write(socket_, asio::buffer(line), asio::use_awaitable);
    }

    /// The next line (without its LF or CRLF), or nothing if none comes within `limit` or the
    /// connection ends first.
    asio::awaitable<std::optional<std::string>> next_line(std::chrono::milliseconds limit = 5s) {
        auto end = std::chrono::steady_clock::now() + limit;
        for (;;) {
            if (auto lf = pending_.find('\n'); lf != std::string::npos) {
                std::string line = pending_.substr(0, lf);
                pending_.erase(0, lf + 1);
                if (!line.empty() && line.back() == '\r') line.pop_back();
                co_return line;
            }
            if (ended_) co_return std::nullopt;
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                end - std::chrono::steady_clock::now());
            if (left.count() <= 0) co_return std::nullopt;
            bool got = co_await read_more(left);
            if (!got) co_return std::nullopt;
        }
    }

    /// Reads lines until one contains `needle`, REQUIREd within `limit`; the lines read, the
    /// match last.
    asio::awaitable<std::vector<std::string>> read_until(std::string_view needle,
                                                         std::chrono::milliseconds limit = 5s) {
        auto end = std::chrono::steady_clock::now() + limit;
        std::vector<std::string> lines;
        for (;;) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                end - std::chrono::steady_clock::now());
            // Not `left > 0 ? co_await next_line(left) : std::nullopt`: g++ 12 destroys that
            // optional twice (a double free).
            std::optional<std::string> line;
            if (left.count() > 0) line = co_await next_line(left);
            if (!line) {
                INFO("waiting for: " << needle << "\nlines read:\n"
                                     << fmt::format("{}", fmt::join(lines, "\n")));
                REQUIRE(line.has_value());
            }
            lines.push_back(std::move(*line));
            if (lines.back().find(needle) != std::string::npos) co_return lines;
        }
    }

    /// `read_until(needle, limit)`, but only the matching line.
    asio::awaitable<std::string> line_with(std::string_view needle,
                                           std::chrono::milliseconds limit = 5s) {
        auto lines = co_await read_until(needle, limit);
        co_return std::move(lines.back());
    }

    /// Reads and drops everything until the server ends the connection (end of stream or
    /// reset), then closes this side as a client would; true if it ended within `limit`.
    asio::awaitable<bool> closed(std::chrono::milliseconds limit = 5s) {
        auto end = std::chrono::steady_clock::now() + limit;
        while (!ended_) {
            pending_.clear();
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                end - std::chrono::steady_clock::now());
            if (left.count() <= 0) break;
            bool got = co_await read_more(left);
            if (!got) break;
        }
        if (ended_) {
            std::error_code ignored;
            socket_.close(ignored);
        }
        co_return ended_;
    }

    /// Bytes received so far.
    std::size_t received() const { return received_; }

private:
    asio::awaitable<std::pair<std::error_code, std::size_t>> read_some() {
        auto [ec, n] = co_await socket_.async_read_some(asio::buffer(chunk_), use_tuple);
        co_return std::make_pair(ec, n);
    }

    /// Reads once, for at most `limit`; false on timeout.
    asio::awaitable<bool> read_more(std::chrono::milliseconds limit) {
        using namespace asio::experimental::awaitable_operators;
        auto result = co_await (read_some() || pause(limit));
        if (result.index() == 1) co_return false;
        auto [ec, n] = std::get<0>(result);
        pending_.append(chunk_.data(), n);
        received_ += n;
        if (ec) ended_ = true; // end of stream, or reset
        co_return true;
    }

    tcp::socket socket_;
    std::array<char, 64 * 1024> chunk_{};
    std::string pending_;
    std::size_t received_ = 0;
    bool ended_ = false;
};

/// Connects and takes the nickname `name`, waiting for the welcome and the confirmation.
/// (`name` is a view: with g++ 12, a std::string temporary in the caller's co_await expression
/// would be destroyed twice.)
inline asio::awaitable<std::unique_ptr<chat_peer>> join_chat(unsigned short port,
                                                             std::string_view name) {
    auto peer = co_await chat_peer::connect(port);
    co_await peer->read_until("There are");
    std::string command = fmt::format("/nick {}", name);
    co_await peer->say(command);
    std::string confirmation = fmt::format("* you are now {}", name);
    co_await peer->read_until(confirmation);
    co_return peer;
}

/// The lines of `lines` that start with `prefix`.
inline std::vector<std::string> starting_with(const std::vector<std::string>& lines,
                                              std::string_view prefix) {
    std::vector<std::string> out;
    for (auto& line : lines)
        if (line.starts_with(prefix)) out.push_back(line);
    return out;
}

/// Whether any of `lines` contains `text`.
inline bool any_contains(const std::vector<std::string>& lines, std::string_view text) {
    for (auto& line : lines)
        if (line.find(text) != std::string::npos) return true;
    return false;
}

} // namespace test_support
