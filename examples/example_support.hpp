#pragma once

// What the example programs share, so that each file shows its own idea: the frame of `main`
// (arguments in, exit code 0, 1 or 2 out), reading `--name value` options and their values, the
// "listening" lines, and a loop that runs one connector until it is done, closing it on SIGINT
// or SIGTERM.

#include <charconv>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <initializer_list>
#include <memory>
#include <optional>
#include <signal.h> // pthread_sigmask
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <variant>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/address.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/signal_set.hpp>
#include <fmt/format.h>

#include <socket_connector/socket_connector.hpp>

namespace example {

namespace sc = socket_connector;

// ---- main -----------------------------------------------------------------------------------

/// Writes `text` on stdout at once: whoever started us may be waiting for it.
inline void print_line(std::string_view text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
}

/// The whole of an example's `main`. `parse(args)` reads the arguments after the program's name
/// into a configuration with a `help` member (and maybe a `version` member), or says why they
/// are wrong; `run(config)` does the work and returns the exit status.
///
/// Bad arguments print "NAME: why" and "NAME: try 'NAME --help' for more information" on stderr
/// (two lines, so the reason stays on the screen) and return 2; `--help` prints the usage on
/// stdout and returns 0, `--version` "NAME VERSION"; an exception from `run` prints "NAME: what"
/// and returns 1. SIGPIPE is ignored: a peer that goes away is an error code, not a kill.
template <class Parse, class Run>
int main_of(std::string_view name, std::string_view usage, int argc, char** argv, Parse parse,
            Run run) {
    try {
        std::signal(SIGPIPE, SIG_IGN);
        std::span<char* const> args(argv, static_cast<std::size_t>(argc));
        auto parsed = parse(args.empty() ? args : args.subspan(1));
        if (auto* why = std::get_if<std::string>(&parsed)) {
            fmt::print(stderr, "{0}: {1}\n{0}: try '{0} --help' for more information\n", name,
                       *why);
            return 2;
        }
        auto& cfg = std::get<0>(parsed);
        if (cfg.help) {
            print_line(usage);
            return 0;
        }
        if constexpr (requires { cfg.version; }) {
            if (cfg.version) {
                print_line(fmt::format("{} {}\n", name, sc::version));
                return 0;
            }
        }
        return run(std::move(cfg));
    } catch (const std::exception& e) {
        fmt::print(stderr, "{}: {}\n", name, e.what());
    } catch (...) {
        fmt::print(stderr, "{}: unknown error\n", name);
    }
    return 1;
}

// ---- arguments ------------------------------------------------------------------------------

/// Why an argument is wrong, or nothing when it is right.
using problem = std::optional<std::string>;

/// An argument as it can be shown in a message: quoted, non-printable bytes as \xNN, cut short.
inline std::string quoted(std::string_view text) {
    std::string out = "\"";
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (i == 60) {
            out += "...";
            break;
        }
        auto c = static_cast<unsigned char>(text[i]);
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
            out += fmt::format("\\x{:02x}", c);
        else
            out += static_cast<char>(c);
    }
    return out + "\"";
}

/// Reads `--name value` options (from `valued`) and `--name` flags (from `flags`), in any
/// order, handing each to `set(name, value)` (an empty value for a flag), which says what is
/// wrong with it, if anything. `--help` (or `-h`) sets `help` and ends the reading.
template <class Set>
problem read_options(std::span<char* const> args, bool& help,
                     std::initializer_list<std::string_view> flags,
                     std::initializer_list<std::string_view> valued, Set set) {
    auto is_in = [](std::initializer_list<std::string_view> names, std::string_view name) {
        for (auto known : names)
            if (known == name) return true;
        return false;
    };
    for (std::size_t i = 0; i < args.size(); ++i) {
        std::string_view name = args[i];
        if (name == "--help" || name == "-h") {
            help = true;
            return std::nullopt;
        }
        if (is_in(flags, name)) {
            if (auto why = set(name, std::string_view())) return why;
            continue;
        }
        if (!is_in(valued, name)) return fmt::format("unknown argument '{}'", name);
        if (i + 1 == args.size()) return fmt::format("{} needs a value", name);
        if (auto why = set(name, std::string_view(args[++i]))) return why;
    }
    return std::nullopt;
}

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

/// `--host ADDR`: an IP address.
inline problem read_host(std::string_view value, asio::ip::address& host) {
    std::error_code ec;
    host = asio::ip::make_address(value, ec);
    if (ec) return fmt::format("--host needs an IP address (got '{}')", value);
    return std::nullopt;
}

/// `--port-a N` and the like: a port, 0 to 65535.
inline problem read_port(std::string_view name, std::string_view value, unsigned short& port) {
    auto parsed = sc::parse_port(value);
    if (!parsed) return fmt::format("{} needs a port, 0 to 65535 (got '{}')", name, value);
    port = *parsed;
    return std::nullopt;
}

/// `--timeout SECS`: a grace period, 0 for none.
inline problem read_grace(std::string_view value, std::chrono::milliseconds& timeout) {
    auto parsed = parse_grace(value);
    if (!parsed) return fmt::format("--timeout needs seconds (got '{}')", value);
    timeout = *parsed;
    return std::nullopt;
}

// ---- running a relay ------------------------------------------------------------------------

/// Prints "A listening on HOST:PORT" (or B): what tests and scripts wait for.
inline void print_listening(char side, const asio::ip::tcp::endpoint& where) {
    print_line(fmt::format("{} listening on {}\n", side, sc::to_string(where)));
}

/// Holds back any further SIGINT or SIGTERM for the rest of the process's life. Call it on the
/// main thread once the event loops have stopped (every other thread joined) and while the
/// `signal_set` still exists: when that is destroyed, Asio restores the default action, and a
/// repeat arriving late (`timeout` signals the command, then its group) would kill the process
/// before it printed its stats and exit status. A held signal is discarded at exit.
inline void hold_exit_signals() {
    sigset_t held;
    sigemptyset(&held);
    sigaddset(&held, SIGINT);
    sigaddset(&held, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &held, nullptr);
}

/// Runs `relay(cfg, connector)` until it returns; SIGINT or SIGTERM closes the connector it
/// made (or stops at once if it has not made one yet). 0, or the relay's exception rethrown.
template <class Config>
int run_relay(const Config& cfg,
              asio::awaitable<void> (*relay)(Config, std::shared_ptr<sc::connector>&)) {
    asio::io_context io;
    std::shared_ptr<sc::connector> connector;
    std::exception_ptr error;
    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](const std::error_code& ec, int) {
        if (ec) return; // cancelled: the relay is over
        if (connector)
            connector->close(); // relay() then sees it closed and returns
        else
            io.stop(); // still starting: nothing to close yet
    });
    asio::co_spawn(io, relay(cfg, connector), [&](std::exception_ptr e) {
        error = e;
        io.stop(); // also ends anything else the example started (an echo server)
    });
    io.run();
    hold_exit_signals();
    if (error) std::rethrow_exception(error);
    return 0;
}

} // namespace example
