#pragma once

// `socket-connector token`: mints a session token for a rendezvous (socket_connector_cli.cpp).
// The parsing is a pure function, so tests (tests/cli_args_test.cpp) use it directly.

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>

#include <fmt/format.h>

#include <socket_connector/session_token.hpp>

#include "example_support.hpp"

namespace cli {

namespace sc = socket_connector;

inline constexpr std::string_view token_usage_text =
    R"(usage: socket-connector token --secret-file FILE --session ID --side A|B
                              [--ttl SECS | --expires UNIX]

Prints a session token for `socket-connector rendezvous`: the client of side SIDE of
session ID sends it as its first line. Each side of a session needs its own token.

  --secret-file FILE       the rendezvous's secret (at least 16 bytes; one trailing
                           newline is not part of it)
  --session ID             1 to 128 characters of A-Z a-z 0-9 _ ~ -
  --side A|B               which side the token admits
  --ttl SECS               valid for SECS seconds from now (default 300)
  --expires UNIX           valid until this Unix time (whole seconds)
  -h, --help               print this help and exit

Exit status: 0 printed, 1 the secret file cannot be used, 2 bad arguments.
)";

/// What `socket-connector token` is asked for.
struct token_config {
    bool help = false;
    std::string secret_file;
    std::string session;
    sc::side_id side = sc::side_id::a;
    /// Seconds from now, unless `expires` is given.
    std::uint64_t ttl = 300;
    std::optional<std::uint64_t> expires;
};

/// The longest --ttl: ten years.
inline constexpr std::uint64_t max_ttl = 10ull * 366 * 24 * 3600;

/// Reads the arguments after `token`. Any strings are valid input (a null pointer counts as
/// empty); the message names the first problem.
inline std::variant<token_config, std::string> parse_token_args(std::span<char* const> args) {
    token_config cfg;
    bool secret = false, session = false, side = false, ttl = false;
    for (std::size_t i = 0; i < args.size(); ++i) {
        std::string_view arg = args[i] ? args[i] : "";
        if (arg == "-h" || arg == "--help") {
            cfg.help = true;
            return cfg;
        }
        std::string_view name = arg.substr(0, arg.find('='));
        std::optional<std::string_view> value;
        if (auto eq = arg.find('='); eq != std::string_view::npos)
            value = arg.substr(eq + 1);
        else if (i + 1 < args.size() && args[i + 1])
            value = std::string_view(args[++i]);
        static constexpr std::string_view known[] = {"--secret-file", "--session", "--side",
                                                     "--ttl", "--expires"};
        if (std::find(std::begin(known), std::end(known), name) == std::end(known))
            return fmt::format("unknown argument {}", example::quoted(name));
        if (!value) return fmt::format("{} needs a value", name);
        auto once = [&](bool& given) {
            if (given) return false;
            given = true;
            return true;
        };
        if (name == "--secret-file") {
            if (!once(secret)) return "--secret-file is given more than once";
            if (value->empty()) return "--secret-file needs a file name";
            cfg.secret_file = std::string(*value);
        } else if (name == "--session") {
            if (!once(session)) return "--session is given more than once";
            if (auto why = sc::session_error(*value))
                return fmt::format("--session {}: {}", example::quoted(*value), why);
            cfg.session = std::string(*value);
        } else if (name == "--side") {
            if (!once(side)) return "--side is given more than once";
            if (*value != "A" && *value != "B" && *value != "a" && *value != "b")
                return fmt::format("--side needs A or B (got {})", example::quoted(*value));
            cfg.side = (*value == "A" || *value == "a") ? sc::side_id::a : sc::side_id::b;
        } else {
            if (!once(ttl)) return "--ttl and --expires: give one of them, once";
            // Whole seconds as a token's EXPIRY is written: digits, no sign, no leading zero.
            auto n = sc::detail::parse_expiry(*value);
            if (name == "--ttl") {
                if (!n || *n == 0 || *n > max_ttl)
                    return fmt::format("--ttl needs whole seconds from 1 to {} (got {})", max_ttl,
                                       example::quoted(*value));
                cfg.ttl = *n;
            } else {
                if (!n)
                    return fmt::format("--expires needs a Unix time in whole seconds (got {})",
                                       example::quoted(*value));
                cfg.expires = *n;
            }
        }
    }
    if (!secret) return "token needs --secret-file FILE";
    if (!session) return "token needs --session ID";
    if (!side) return "token needs --side A|B";
    return cfg;
}

} // namespace cli
