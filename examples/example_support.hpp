#pragma once

// What the relay examples share: reading seconds, printing the "listening" lines, and a main
// loop that runs one connector until it is done, closing it on SIGINT or SIGTERM.

#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <fmt/format.h>

#include <socket_connector/socket_connector.hpp>

namespace example {

namespace sc = socket_connector;

/// Seconds, such as 30 or 0.5, from 0 to a million.
inline std::optional<std::chrono::milliseconds> parse_seconds(std::string_view text) {
    double seconds = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size() ||
        !(seconds >= 0 && seconds <= 1e6))
        return std::nullopt;
    return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000));
}

/// A grace period in seconds; 0 means none at all (serve until a signal).
inline std::optional<std::chrono::milliseconds> parse_grace(std::string_view text) {
    auto seconds = parse_seconds(text);
    if (seconds && seconds->count() == 0) return sc::no_timeout;
    return seconds;
}

/// Writes a line on stdout at once: whoever started us may be waiting for it.
inline void print_line(const std::string& line) {
    std::fwrite(line.data(), 1, line.size(), stdout);
    std::fflush(stdout);
}

inline std::string message_of(std::exception_ptr e) {
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& ex) {
        return ex.what();
    } catch (...) {
        return "unknown error";
    }
}

/// Runs `relay(cfg, connector)` until it returns; SIGINT or SIGTERM closes the connector it
/// made (or stops at once if it has not made one yet). 0, or 1 after printing the error.
template <class Config>
int run_relay(std::string_view program, const Config& cfg,
              asio::awaitable<void> (*relay)(Config, std::shared_ptr<sc::connector>&)) {
    asio::io_context io;
    std::shared_ptr<sc::connector> connector;
    std::string error;
    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](const std::error_code& ec, int) {
        if (ec) return; // cancelled: the relay is over
        if (connector)
            connector->close(); // relay() then sees it closed and returns
        else
            io.stop(); // still starting: nothing to close yet
    });
    asio::co_spawn(io, relay(cfg, connector), [&](std::exception_ptr e) {
        if (e) error = message_of(e);
        io.stop(); // also ends anything else the example started (an echo server)
    });
    io.run();
    if (!error.empty()) {
        fmt::print(stderr, "{}: {}\n", program, error);
        return 1;
    }
    return 0;
}

} // namespace example
