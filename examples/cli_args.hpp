#pragma once

// The command line of socket-connector (socket_connector_cli.cpp): its usage text, the
// configuration it asks for, and the parsing and checking of each argument. Pure functions, so
// tests (tests/cli_args_test.cpp) and the fuzzer (fuzz/fuzz_cli_args.cpp) use them directly.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include <fmt/format.h>

#include <socket_connector/address.hpp>
#include <socket_connector/socket_connector.hpp>

#include "example_support.hpp"

namespace cli {

namespace sc = socket_connector;

inline constexpr std::string_view usage_text =
    R"(usage: socket-connector MODE --a ADDR --b ADDR [options]
       socket-connector rendezvous --listen ADDR [--listen-b ADDR] --secret-file FILE [options]
       socket-connector token --secret-file FILE --session ID --side A|B [--ttl SECS]

Relays bytes between side A and side B, pairing each A with a B.

MODE: server-to-server | server-to-socket | socket-to-server | socket-to-socket
  A server side listens; a socket side connects out. server-to-server pairs every A with
  a B (a rendezvous); the other modes relay one pair, unless --multi is given.

  --a ADDR, --b ADDR       a server side binds HOST:PORT, or :PORT (all IPv4 interfaces);
                           port 0 lets the system choose. A socket side connects to HOST:PORT
                           (names are resolved). IPv6 goes in brackets: [::1]:9000
  --multi                  server-to-socket only: one outbound B connection per accepted A
  --timeout SECS           grace period (default 30): once it has passed, the connector closes
                           when no pair is open; 0 serves until SIGINT or SIGTERM
  --verbose                log connection events to stderr
  --log-traffic            log relayed bytes to stderr ("A -> B: ..." / "B -> A: ...")
  --keepalive IDLE,INTERVAL,COUNT
                           TCP keep-alive: probe after IDLE s of silence, every INTERVAL s,
                           give up after COUNT probes (default 60,10,5)
  --no-keepalive           turn TCP keep-alive off
  --auth-a TOKEN           side A must first send the line TOKEN (LF or CRLF); what follows
  --auth-b TOKEN           is relayed. A server side drops each peer that does not; on a
                           socket side, the peer it connects to must send it, or the relay
                           closes
  --auth-timeout SECS      how long a peer may take to authenticate (default 5)
  --connect-timeout SECS   how long an outbound connect may take (default 10)
  --accept-proxy-a         a server side: each peer must begin with a PROXY protocol header
  --accept-proxy-b         (v1 or v2, as HAProxy's send-proxy writes it), read within
                           --auth-timeout; the client it names is the peer in logs and stats.
                           A peer without a valid one is closed, the relay goes on
  --send-proxy-a v1|v2     a socket side: send a PROXY header (v1 text or v2 binary) naming
  --send-proxy-b v1|v2     the other side's peer, before any relayed byte, as HAProxy's
                           send-proxy does (with --auth-X: server-to-socket --multi only)
  --tls-cert-X FILE        a server side X (a or b) accepts only TLS (1.2 or 1.3), with this
  --tls-key-X FILE         certificate chain and private key (PEM); the peer's bytes are
                           relayed decrypted. The handshake counts toward --auth-timeout
  --tls-client-ca-X FILE   with --tls-cert-X: each peer must present a client certificate
                           signed by this CA (PEM)
  --tls-X                  a socket side X connects with TLS, verifying the server against
  --tls-ca-X FILE          this CA file (PEM; default: the system's store) and the name
  --tls-name-X NAME        NAME (default: the host of --X), also sent as SNI
  --threads N              threads running the relay (default: one per core); with
                           server-to-socket --multi, one event loop per thread, each
                           accepting on the address (SO_REUSEPORT) and relaying its own pairs
  --spin USEC              an event loop that one thread runs (server-to-socket --multi, or
                           --threads 1) checks for events for up to USEC microseconds before
                           it sleeps, while they come that often (default 50; 0: never): less
                           latency and fewer wake-ups, more CPU while events come that often
  --max-pending N          per side, at most N sockets authenticating or waiting for a
                           partner; more are closed at once (default 4096, 0: no limit)
  --max-connections N      at most N pairs open at once; while that many are open, newly
                           accepted sockets are closed at once (default 0: no limit)
  --idle-timeout SECS      close a pair that relays no byte either way for SECS
                           (default 0: never)
  --drain-timeout SECS     on SIGINT or SIGTERM, stop accepting and give open pairs up to
                           SECS to finish before they are closed (default 0: at once)
  --stats                  print one JSON object of counters on stdout at exit (on every
                           exit but SIGKILL)
  --metrics ADDR           serve the counters over HTTP on ADDR (HOST:PORT or :PORT; port 0:
                           any): GET /metrics in the Prometheus text format, GET /stats as the
                           JSON object of --stats, live

rendezvous: clients dial in and send a signed session token as their first line
(v1.SESSION.SIDE.EXPIRY.MAC, made by `socket-connector token` or by any HMAC-SHA256
code); the two sides of each session are joined, sessions never cross.
  --listen ADDR            where both sides dial in (HOST:PORT or :PORT; port 0: any)
  --listen-b ADDR          give side B its own port; --listen is then side A's only
  --secret-file FILE       the shared secret (at least 16 bytes; one trailing newline is
                           not part of it)
  --pending-timeout SECS   close a side whose partner has not come (default 60; 0: never)
  --max-sessions N         at most N sessions waiting or paired (default 0: no limit)
  --timeout defaults to 0 here (serve until a signal); --auth-timeout bounds the token line.
  The options above from --timeout to --metrics apply, except --multi, --auth-a/b,
  --connect-timeout, --send-proxy-a/b and the socket sides' --tls-X flags;
  --accept-proxy-a and --tls-cert-a/--tls-key-a/--tls-client-ca-a are for --listen's port,
  the -b ones for --listen-b's. `socket-connector token --help` tells how to make a token.

  -h, --help               print this help and exit
  --version                print the version and exit

Options take their value as `--opt value` or `--opt=value`. SECS may be a decimal (0.5).
On start, one line per server side is printed on stdout: "A listening on 127.0.0.1:9000"
(a rendezvous on one port: "listening on 127.0.0.1:9000").
Signals: the first SIGINT or SIGTERM stops accepting and drains (--drain-timeout); another
one, a second or more later, closes the open pairs at once; a third stops without waiting.
A repeat within a second (a process group signalled as a whole, as `timeout` does) counts
as the same request.
Exit status: 0 normal close, 1 runtime error, 2 bad arguments.
)";

/// The longest SECS accepted: about 11 days; anything longer is a typo.
inline constexpr double max_seconds = 1'000'000;
inline constexpr unsigned max_threads = 256;
/// The highest --spin, in microseconds: a spin is meant to cover the gap between events of a
/// busy loop, not to replace sleeping.
inline constexpr unsigned max_spin_us = 10'000;
inline constexpr std::size_t max_token_length = 1000;
/// The highest --max-pending and --max-connections (Linux's default cap on descriptors).
inline constexpr unsigned max_limit = 1'048'576;

/// The default --threads: one per core the system reports, at least 1, at most `max_threads`.
inline unsigned default_threads() noexcept {
    return std::clamp(std::thread::hardware_concurrency(), 1u, max_threads);
}

/// Everything the command line asks for.
struct config {
    bool help = false;
    bool version = false;
    sc::connector_mode mode = sc::connector_mode::server_to_server;
    sc::side_options a;
    sc::side_options b;
    bool multi = false;
    bool verbose = false;
    bool log_traffic = false;
    bool stats = false;
    std::chrono::milliseconds timeout = std::chrono::seconds(30);
    std::chrono::milliseconds auth_timeout = std::chrono::seconds(5);
    std::chrono::milliseconds connect_timeout = std::chrono::seconds(10);
    sc::keep_alive keepalive;
    unsigned threads = default_threads();
    /// How long a loop that one thread runs may check for events before it sleeps (adaptive,
    /// see `sc::run_yielding`); 0: never.
    std::chrono::microseconds spin{50};
    /// Per side; 0: no limit. See `sc::options::max_pending`.
    std::size_t max_pending = 4096;
    /// 0: no limit. See `sc::options::max_connections`.
    std::size_t max_connections = 0;
    /// `sc::no_timeout`: pairs may stay idle for ever.
    std::chrono::milliseconds idle_timeout = sc::no_timeout;
    /// On SIGTERM, how long open pairs may take to finish before they are closed; 0: at once.
    std::chrono::milliseconds drain_timeout{0};

    /// The rendezvous command: sides paired by session token (mode one_server, or
    /// server_to_server with --listen-b). The program reads the secret and sets the verifiers.
    bool rendezvous = false;
    std::string secret_file;
    std::chrono::milliseconds pending_timeout = std::chrono::seconds(60);
    std::size_t max_sessions = 0;

    /// --metrics: where the HTTP endpoint for the counters listens.
    std::optional<sc::address> metrics;

    /// TLS per side (A, B): the files the program loads (with OpenSSL) into `side_options::tls`.
    struct tls_files {
        /// A server side: certificate chain, key, and the CA client certificates must be
        /// signed by (empty: none asked for). Non-empty `certificate`: the side speaks TLS.
        std::string certificate, key, client_ca;
        /// A socket side: connect with TLS (--tls-X), verifying against `ca` (empty: the
        /// system's store) and `name`.
        bool client = false;
        std::string ca, name;
        bool any() const noexcept { return client || !certificate.empty(); }
    };
    tls_files tls[2];
};

inline bool is_server(sc::connector_mode mode, char side) {
    switch (mode) {
    case sc::connector_mode::server_to_server:
        return true;
    case sc::connector_mode::server_to_socket:
        return side == 'A';
    case sc::connector_mode::socket_to_server:
        return side == 'B';
    case sc::connector_mode::socket_to_socket:
        return false;
    case sc::connector_mode::one_server:
        return side == 'A'; // the one port is side A's
    }
    return false;
}

/// The four modes by the names the command line gives them (`rendezvous` is parsed apart).
inline constexpr std::pair<std::string_view, sc::connector_mode> modes[] = {
    {"server-to-server", sc::connector_mode::server_to_server},
    {"server-to-socket", sc::connector_mode::server_to_socket},
    {"socket-to-server", sc::connector_mode::socket_to_server},
    {"socket-to-socket", sc::connector_mode::socket_to_socket},
};

inline std::optional<sc::connector_mode> parse_mode(std::string_view text) {
    for (const auto& [name, mode] : modes)
        if (text == name) return mode;
    return std::nullopt;
}

/// What an unknown MODE was likely meant to be ("server_to_server", "Server-To-Socket"), or
/// empty.
inline std::string_view mode_hint(std::string_view text) {
    for (const auto& entry : modes) {
        const std::string_view name = entry.first;
        if (name.size() != text.size()) continue;
        bool alike = true;
        for (std::size_t i = 0; i < name.size() && alike; ++i) {
            char c = text[i];
            if (c == '_') c = '-';
            if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
            alike = c == name[i];
        }
        if (alike) return name;
    }
    return {};
}

/// Arguments in messages are quoted as the other examples quote them (example_support.hpp).
using example::quoted;

inline bool all_digits(std::string_view text) {
    return !text.empty() &&
           std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

/// A whole number from `min` to `max`, digits only (at most 9, so it cannot overflow).
inline std::optional<unsigned> parse_count(std::string_view text, unsigned min, unsigned max) {
    if (!all_digits(text) || text.size() > 9) return std::nullopt;
    unsigned value = 0;
    for (char c : text)
        value = value * 10 + static_cast<unsigned>(c - '0');
    if (value < min || value > max) return std::nullopt;
    return value;
}

/// Seconds as `30` or `0.5` (at most millisecond precision), from 0 to `max_seconds`.
inline std::optional<std::chrono::milliseconds> parse_seconds(std::string_view text) {
    auto dot = text.find('.');
    auto whole = text.substr(0, dot);
    auto fraction = dot == std::string_view::npos ? std::string_view() : text.substr(dot + 1);
    if (!all_digits(whole) || whole.size() > 7) return std::nullopt;
    if (dot != std::string_view::npos && (!all_digits(fraction) || fraction.size() > 3))
        return std::nullopt;
    std::int64_t ms = 0;
    for (char c : whole)
        ms = ms * 10 + (c - '0');
    ms *= 1000;
    std::int64_t scale = 100;
    for (char c : fraction) {
        ms += (c - '0') * scale;
        scale /= 10;
    }
    if (static_cast<double>(ms) > max_seconds * 1000) return std::nullopt;
    return std::chrono::milliseconds(ms);
}

/// `IDLE,INTERVAL,COUNT` in whole seconds and probes, within what Linux accepts.
inline std::optional<sc::keep_alive> parse_keep_alive(std::string_view text) {
    std::vector<std::string_view> parts;
    for (;;) {
        auto comma = text.find(',');
        parts.push_back(text.substr(0, comma));
        if (comma == std::string_view::npos) break;
        text.remove_prefix(comma + 1);
    }
    if (parts.size() != 3) return std::nullopt;
    auto idle = parse_count(parts[0], 1, 32767);
    auto interval = parse_count(parts[1], 1, 32767);
    auto count = parse_count(parts[2], 1, 127);
    if (!idle || !interval || !count) return std::nullopt;
    sc::keep_alive k;
    k.idle = std::chrono::seconds(*idle);
    k.interval = std::chrono::seconds(*interval);
    k.count = static_cast<int>(*count);
    return k;
}

/// What `parse_args` returns: the configuration, or why the arguments are wrong.
using parse_result = std::variant<config, std::string>;

/// The PROXY protocol options, per side (A, B), until the sides' options are made.
struct proxy_args {
    bool accept[2] = {false, false};
    sc::proxy_version send[2] = {sc::proxy_version::none, sc::proxy_version::none};
};

/// Why side `lower`'s TLS flags do not fit it (a server side takes a certificate, a socket side
/// --tls-X), or empty. `dialed_up_front`: a socket side dialed before its partner is known.
inline std::string check_tls_files(const config::tls_files& t, char lower, bool server,
                                   bool proxy_header_up_front) {
    if (server) {
        if (t.client || !t.ca.empty() || !t.name.empty())
            return fmt::format("--tls-{0}, --tls-ca-{0} and --tls-name-{0} apply to a socket side "
                               "(side {1} listens; it takes --tls-cert-{0} and --tls-key-{0})",
                               lower, static_cast<char>(lower - 'a' + 'A'));
        if (!t.certificate.empty() && t.key.empty())
            return fmt::format("--tls-cert-{0} needs --tls-key-{0}", lower);
        if (t.certificate.empty() && !t.key.empty())
            return fmt::format("--tls-key-{0} needs --tls-cert-{0}", lower);
        if (!t.client_ca.empty() && t.certificate.empty())
            return fmt::format("--tls-client-ca-{0} needs --tls-cert-{0} and --tls-key-{0}", lower);
        return {};
    }
    if (!t.certificate.empty() || !t.key.empty() || !t.client_ca.empty())
        return fmt::format("--tls-cert-{0}, --tls-key-{0} and --tls-client-ca-{0} apply to a "
                           "server side (side {1} connects out; it takes --tls-{0})",
                           lower, static_cast<char>(lower - 'a' + 'A'));
    if (!t.client && (!t.ca.empty() || !t.name.empty()))
        return fmt::format("--tls-ca-{0} and --tls-name-{0} need --tls-{0}", lower);
    if (t.client && proxy_header_up_front)
        return fmt::format("--send-proxy-{0} with --tls-{0} needs server-to-socket --multi (the "
                           "header, which names the partner, goes before the handshake; here "
                           "side {1} is dialed before any partner comes)",
                           lower, static_cast<char>(lower - 'a' + 'A'));
    return {};
}

/// The rest of `rendezvous`: its ports and secret file. The verifiers are set by the program
/// once it has read the secret.
inline parse_result parse_rendezvous(config cfg, std::optional<std::string_view> listen,
                                     std::optional<std::string_view> listen_b, bool timeout_given,
                                     const proxy_args& proxy) {
    if (!listen) return "rendezvous needs --listen ADDR";
    if (cfg.secret_file.empty()) return "rendezvous needs --secret-file FILE";
    cfg.rendezvous = true;
    cfg.mode = listen_b ? sc::connector_mode::server_to_server : sc::connector_mode::one_server;
    if (!timeout_given) cfg.timeout = sc::no_timeout;
    struct port_args {
        std::string_view option;
        std::optional<std::string_view> text;
        sc::side_options& options;
    };
    for (port_args port :
         {port_args{"--listen", listen, cfg.a}, port_args{"--listen-b", listen_b, cfg.b}}) {
        if (!port.text) continue;
        std::string why;
        auto parsed = sc::parse_address(*port.text, &why);
        if (!parsed) return fmt::format("{} {}: {}", port.option, cli::quoted(*port.text), why);
        port.options = sc::server_side_options(*parsed);
    }
    if (proxy.accept[1] && !listen_b)
        return "--accept-proxy-b needs --listen-b (one port takes both sides: --accept-proxy-a)";
    if (cfg.tls[1].any() && !listen_b)
        return "--tls-cert-b needs --listen-b (one port takes both sides: --tls-cert-a)";
    for (int i = 0; i < 2; ++i)
        if (auto why = check_tls_files(cfg.tls[i], i == 0 ? 'a' : 'b', true, false); !why.empty())
            return why;
    cfg.a.accept_proxy = proxy.accept[0];
    cfg.b.accept_proxy = proxy.accept[1];
    cfg.a.keepalive = cfg.keepalive;
    cfg.b.keepalive = cfg.keepalive;
    return cfg;
}

/// Reads the arguments after the program's name. Any strings are valid input (a null pointer
/// counts as empty); the message names the first problem, with the argument quoted by `quoted`.
inline parse_result parse_args(std::span<char* const> args) {
    config cfg;
    std::optional<std::string_view> mode_text;
    std::optional<std::string_view> a_text;
    std::optional<std::string_view> b_text;
    std::optional<std::string_view> auth_a;
    std::optional<std::string_view> auth_b;
    std::optional<std::string_view> listen_text;
    std::optional<std::string_view> listen_b_text;
    std::vector<std::string> seen;
    bool keepalive_given = false;
    bool timeout_given = false;
    proxy_args proxy;

    for (std::size_t i = 0; i < args.size(); ++i) {
        std::string_view arg = args[i] ? args[i] : "";
        if (arg == "-h") {
            cfg.help = true;
            return cfg;
        }
        if (!arg.starts_with("--")) {
            if (mode_text) return fmt::format("unexpected argument {}", cli::quoted(arg));
            mode_text = arg;
            continue;
        }
        std::string name(arg.substr(0, arg.find('=')));
        std::optional<std::string_view> inline_value;
        if (auto eq = arg.find('='); eq != std::string_view::npos)
            inline_value = arg.substr(eq + 1);

        static constexpr std::string_view flags[] = {
            "--help",           "--version",      "--multi", "--verbose",
            "--log-traffic",    "--no-keepalive", "--stats", "--accept-proxy-a",
            "--accept-proxy-b", "--tls-a",        "--tls-b"};
        static constexpr std::string_view valued[] = {"--a",
                                                      "--b",
                                                      "--timeout",
                                                      "--keepalive",
                                                      "--auth-a",
                                                      "--auth-b",
                                                      "--threads",
                                                      "--spin",
                                                      "--auth-timeout",
                                                      "--connect-timeout",
                                                      "--max-pending",
                                                      "--max-connections",
                                                      "--idle-timeout",
                                                      "--drain-timeout",
                                                      "--listen",
                                                      "--listen-b",
                                                      "--secret-file",
                                                      "--pending-timeout",
                                                      "--max-sessions",
                                                      "--metrics",
                                                      "--send-proxy-a",
                                                      "--send-proxy-b",
                                                      "--tls-cert-a",
                                                      "--tls-cert-b",
                                                      "--tls-key-a",
                                                      "--tls-key-b",
                                                      "--tls-client-ca-a",
                                                      "--tls-client-ca-b",
                                                      "--tls-ca-a",
                                                      "--tls-ca-b",
                                                      "--tls-name-a",
                                                      "--tls-name-b"};
        bool is_flag = std::find(std::begin(flags), std::end(flags), name) != std::end(flags);
        bool has_value = std::find(std::begin(valued), std::end(valued), name) != std::end(valued);
        if (!is_flag && !has_value) return fmt::format("unknown option {}", cli::quoted(name));
        if (is_flag && inline_value) return fmt::format("{} takes no value", name);
        if (has_value && !inline_value && (i + 1 >= args.size() || !args[i + 1]))
            return fmt::format("{} needs a value", name);
        if (std::find(seen.begin(), seen.end(), name) != seen.end())
            return fmt::format("{} is given more than once", name);
        seen.push_back(name);

        if (is_flag) {
            if (name == "--help" || name == "--version") {
                (name == "--help" ? cfg.help : cfg.version) = true;
                return cfg;
            }
            if (name == "--multi") cfg.multi = true;
            if (name == "--verbose") cfg.verbose = true;
            if (name == "--log-traffic") cfg.log_traffic = true;
            if (name == "--stats") cfg.stats = true;
            if (name == "--accept-proxy-a" || name == "--accept-proxy-b")
                proxy.accept[name.back() == 'a' ? 0 : 1] = true;
            if (name == "--tls-a" || name == "--tls-b")
                cfg.tls[name.back() == 'a' ? 0 : 1].client = true;
            if (name == "--no-keepalive") {
                if (keepalive_given) return "--keepalive and --no-keepalive exclude each other";
                keepalive_given = true;
                cfg.keepalive = sc::keep_alive::disabled();
            }
            continue;
        }

        std::string_view value = inline_value ? *inline_value : std::string_view(args[++i]);
        if (name == "--a") {
            a_text = value;
        } else if (name == "--listen" || name == "--listen-b") {
            (name == "--listen" ? listen_text : listen_b_text) = value;
        } else if (name == "--metrics") {
            std::string why;
            auto parsed = sc::parse_address(value, &why);
            if (!parsed) return fmt::format("--metrics {}: {}", cli::quoted(value), why);
            cfg.metrics = std::move(*parsed);
        } else if (name == "--secret-file") {
            if (value.empty()) return "--secret-file needs a file name";
            cfg.secret_file = std::string(value);
        } else if (name == "--b") {
            b_text = value;
        } else if (name.starts_with("--tls-")) {
            if (value.empty()) return fmt::format("{} needs a non-empty value", name);
            if (value.find('\0') != std::string_view::npos)
                return fmt::format("{} cannot contain a NUL byte", name);
            auto& t = cfg.tls[name.back() == 'a' ? 0 : 1];
            const auto what = std::string_view(name).substr(6, name.size() - 8); // cert, key, ...
            (what == "cert"        ? t.certificate
             : what == "key"       ? t.key
             : what == "client-ca" ? t.client_ca
             : what == "ca"        ? t.ca
                                   : t.name) = std::string(value);
        } else if (name == "--send-proxy-a" || name == "--send-proxy-b") {
            if (value != "v1" && value != "v2")
                return fmt::format("{} needs v1 or v2 (got {})", name, cli::quoted(value));
            proxy.send[name.back() == 'a' ? 0 : 1] =
                value == "v1" ? sc::proxy_version::v1 : sc::proxy_version::v2;
        } else if (name == "--auth-a" || name == "--auth-b") {
            if (value.empty()) return fmt::format("{} needs a non-empty token", name);
            if (value.size() > max_token_length)
                return fmt::format("{}: the token is longer than {} bytes", name, max_token_length);
            if (value.find_first_of("\r\n") != std::string_view::npos)
                return fmt::format("{}: the token cannot contain a line break", name);
            (name == "--auth-a" ? auth_a : auth_b) = value;
        } else if (name == "--threads") {
            auto n = parse_count(value, 1, max_threads);
            if (!n)
                return fmt::format("--threads needs a whole number from 1 to {} (got {})",
                                   max_threads, cli::quoted(value));
            cfg.threads = *n;
        } else if (name == "--spin") {
            auto n = parse_count(value, 0, max_spin_us);
            if (!n)
                return fmt::format(
                    "--spin needs a whole number of microseconds from 0 to {} (got {})",
                    max_spin_us, cli::quoted(value));
            cfg.spin = std::chrono::microseconds(*n);
        } else if (name == "--max-pending" || name == "--max-connections" ||
                   name == "--max-sessions") {
            auto n = parse_count(value, 0, max_limit);
            if (!n)
                return fmt::format("{} needs a whole number from 0 (no limit) to {} (got {})", name,
                                   max_limit, cli::quoted(value));
            (name == "--max-pending"       ? cfg.max_pending
             : name == "--max-connections" ? cfg.max_connections
                                           : cfg.max_sessions) = *n;
        } else if (name == "--keepalive") {
            if (keepalive_given) return "--keepalive and --no-keepalive exclude each other";
            keepalive_given = true;
            auto k = parse_keep_alive(value);
            if (!k)
                return fmt::format("--keepalive needs IDLE,INTERVAL,COUNT: seconds from 1 to "
                                   "32767, and a count from 1 to 127 (got {})",
                                   cli::quoted(value));
            cfg.keepalive = *k;
        } else {
            auto secs = parse_seconds(value);
            if (!secs)
                return fmt::format("{} needs seconds from 0 to {:.0f} with at most 3 decimals, "
                                   "like 30 or 0.5 (got {})",
                                   name, max_seconds, cli::quoted(value));
            if (name == "--timeout") {
                timeout_given = true;
                cfg.timeout = secs->count() == 0 ? sc::no_timeout : *secs;
            } else if (name == "--pending-timeout") {
                cfg.pending_timeout = secs->count() == 0 ? sc::no_timeout : *secs;
            } else if (name == "--idle-timeout") {
                cfg.idle_timeout = secs->count() == 0 ? sc::no_timeout : *secs;
            } else if (name == "--drain-timeout") {
                cfg.drain_timeout = *secs;
            } else {
                if (secs->count() == 0) return fmt::format("{} must be more than 0", name);
                (name == "--auth-timeout" ? cfg.auth_timeout : cfg.connect_timeout) = *secs;
            }
        }
    }

    if (!mode_text) return "missing MODE";
    if (*mode_text == "rendezvous") {
        for (std::string_view other :
             {"--a", "--b", "--auth-a", "--auth-b", "--multi", "--connect-timeout",
              "--send-proxy-a", "--send-proxy-b", "--tls-a", "--tls-b", "--tls-ca-a", "--tls-ca-b",
              "--tls-name-a", "--tls-name-b"})
            if (std::find(seen.begin(), seen.end(), other) != seen.end())
                return fmt::format("{} does not apply to rendezvous (its clients send tokens; "
                                   "see --listen)",
                                   other);
        return parse_rendezvous(std::move(cfg), listen_text, listen_b_text, timeout_given, proxy);
    }
    for (std::string_view only :
         {"--listen", "--listen-b", "--secret-file", "--pending-timeout", "--max-sessions"})
        if (std::find(seen.begin(), seen.end(), only) != seen.end())
            return fmt::format("{} applies only to rendezvous", only);
    auto mode = parse_mode(*mode_text);
    if (!mode) {
        auto hint = mode_hint(*mode_text);
        if (!hint.empty())
            return fmt::format("unknown MODE {} (did you mean {}?)", cli::quoted(*mode_text), hint);
        std::string names;
        for (const auto& entry : modes)
            names += fmt::format("{}{}", names.empty() ? "" : ", ", entry.first);
        return fmt::format("unknown MODE {} (one of {})", cli::quoted(*mode_text), names);
    }
    cfg.mode = *mode;
    if (cfg.multi && cfg.mode != sc::connector_mode::server_to_socket)
        return "--multi applies only to server-to-socket";

    struct side_args {
        char name;
        std::optional<std::string_view> text;
        std::optional<std::string_view> token;
        sc::side_options& options;
    };
    for (side_args side :
         {side_args{'A', a_text, auth_a, cfg.a}, side_args{'B', b_text, auth_b, cfg.b}}) {
        char lower = side.name == 'A' ? 'a' : 'b';
        if (!side.text) return fmt::format("missing --{} ADDR", lower);
        std::string why;
        auto parsed = sc::parse_address(*side.text, &why);
        if (!parsed) return fmt::format("--{} {}: {}", lower, cli::quoted(*side.text), why);
        const bool server = is_server(cfg.mode, side.name);
        if (server) {
            side.options = sc::server_side_options(*parsed);
        } else {
            auto options = sc::socket_side_options(*parsed, &why);
            if (!options) return fmt::format("--{} {}: {}", lower, cli::quoted(*side.text), why);
            side.options = std::move(*options);
        }
        // On a socket side, the library checks the peer it dials just as it checks those a
        // server side accepts: that peer must send the token line first.
        if (side.token) side.options.auth = sc::token_verifier(std::string(*side.token));
        side.options.keepalive = cfg.keepalive;
        const int i = side.name == 'A' ? 0 : 1;
        if (proxy.accept[i] && !server)
            return fmt::format("--accept-proxy-{} applies to a server side (side {} connects "
                               "out in {})",
                               lower, side.name, *mode_text);
        if (proxy.send[i] != sc::proxy_version::none && server)
            return fmt::format("--send-proxy-{} applies to a socket side (side {} listens in {})",
                               lower, side.name, *mode_text);
        // Only a proxy's B is dialed for a partner already known: any other socket side is
        // dialed first, and its token line would have to come before the header.
        const bool dialed_for_partner = cfg.multi && side.name == 'B';
        if (proxy.send[i] != sc::proxy_version::none && side.token && !dialed_for_partner)
            return fmt::format("--send-proxy-{0} with --auth-{0} needs server-to-socket --multi "
                               "(the header names side {1}'s partner, so side {1} must be dialed "
                               "for one; here it is dialed before any partner comes)",
                               lower, side.name);
        side.options.accept_proxy = proxy.accept[i];
        side.options.send_proxy = proxy.send[i];
        auto& t = cfg.tls[i];
        if (auto misfit = check_tls_files(
                t, lower, server, proxy.send[i] != sc::proxy_version::none && !dialed_for_partner);
            !misfit.empty())
            return misfit;
        if (t.client && t.name.empty()) t.name = parsed->host;
    }
    return cfg;
}

/// The connector options `cfg` asks for (everything but the mode, the threads, the stats and
/// the drain timeout, which the program itself handles).
inline sc::options make_options(const config& cfg) {
    sc::options o;
    o.a = cfg.a;
    o.b = cfg.b;
    o.verbose = cfg.verbose;
    o.log_traffic = cfg.log_traffic;
    o.timeout = cfg.timeout;
    o.auth_timeout = cfg.auth_timeout;
    o.connect_timeout = cfg.connect_timeout;
    o.max_pending = cfg.max_pending;
    o.max_connections = cfg.max_connections;
    o.idle_timeout = cfg.idle_timeout;
    o.multi = cfg.multi;
    if (cfg.rendezvous) {
        o.pending_timeout = cfg.pending_timeout;
        o.max_sessions = cfg.max_sessions;
    }
    return o;
}

} // namespace cli
