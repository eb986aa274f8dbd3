// socket-connector: the command-line relay. It shows a whole program built on the library: the
// four connector modes, auth tokens, keep-alive, timeouts, signals, stats and exit codes.
//
// Side A and side B are each a server (it listens for one or many peers) or a socket (it dials
// out); whatever one side sends reaches the other. A rendezvous of two clients on one machine:
//
//   socket-connector server-to-server --a 127.0.0.1:9000 --b 127.0.0.1:8000 --verbose
//   ncat 127.0.0.1 9000        # in a second terminal: what you type here ...
//   ncat 127.0.0.1 8000        # ... appears here, and back
//
// A proxy in front of a web server, one outbound connection per client, with a shared secret
// that each client sends as its first line:
//
//   socket-connector server-to-socket --a :8080 --b example.com:80 --multi --auth-a s3cret
//   (printf 's3cret\nGET / HTTP/1.0\r\nHost: example.com\r\n\r\n') | ncat 127.0.0.1 8080
//
// Run `socket-connector --help` for every option. Exit status: 0 when the connector closes
// normally (grace period over, its only pair done, SIGINT or SIGTERM), 1 on a runtime error
// (address in use, connection refused, unknown host), 2 on bad arguments.

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/multiple_exceptions.hpp>
#include <asio/signal_set.hpp>
#include <asio/strand.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/format.h>

#include <socket_connector/address.hpp>
#include <socket_connector/socket_connector.hpp>

namespace sc = socket_connector;

namespace {

constexpr std::string_view usage_text = R"(usage: socket-connector MODE --a ADDR --b ADDR [options]

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
  --auth-a TOKEN           a server side A must first send the line TOKEN (LF or CRLF);
  --auth-b TOKEN           what follows is relayed; other peers are dropped
  --auth-timeout SECS      how long a peer may take to authenticate (default 5)
  --connect-timeout SECS   how long an outbound connect may take (default 10)
  --threads N              threads running the relay (default 1)
  --stats                  print one JSON object of counters on stdout at exit
  --help                   print this help and exit

Options take their value as `--opt value` or `--opt=value`. SECS may be a decimal (0.5).
On start, one line per server side is printed on stdout: "A listening on 127.0.0.1:9000".
Exit status: 0 normal close, 1 runtime error, 2 bad arguments.
)";

constexpr double max_seconds = 1'000'000; // about 11 days: anything longer is a typo
constexpr unsigned max_threads = 256;
constexpr std::size_t max_token_length = 1000;

/// Everything the command line asks for.
struct config {
    bool help = false;
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
    unsigned threads = 1;
};

bool is_server(sc::connector_mode mode, char side) {
    switch (mode) {
    case sc::connector_mode::server_to_server:
        return true;
    case sc::connector_mode::server_to_socket:
        return side == 'A';
    case sc::connector_mode::socket_to_server:
        return side == 'B';
    case sc::connector_mode::socket_to_socket:
        return false;
    }
    return false;
}

std::optional<sc::connector_mode> parse_mode(std::string_view text) {
    if (text == "server-to-server") return sc::connector_mode::server_to_server;
    if (text == "server-to-socket") return sc::connector_mode::server_to_socket;
    if (text == "socket-to-server") return sc::connector_mode::socket_to_server;
    if (text == "socket-to-socket") return sc::connector_mode::socket_to_socket;
    return std::nullopt;
}

/// An argument as it can be shown in a message: quoted, non-printable bytes as \xNN, cut short.
std::string quoted(std::string_view text) {
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

bool all_digits(std::string_view text) {
    return !text.empty() &&
           std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

/// A whole number from `min` to `max`, digits only.
std::optional<unsigned> parse_count(std::string_view text, unsigned min, unsigned max) {
    if (!all_digits(text) || text.size() > 6) return std::nullopt;
    unsigned value = 0;
    for (char c : text)
        value = value * 10 + static_cast<unsigned>(c - '0');
    if (value < min || value > max) return std::nullopt;
    return value;
}

/// Seconds as `30` or `0.5` (at most millisecond precision), from 0 to `max_seconds`.
std::optional<std::chrono::milliseconds> parse_seconds(std::string_view text) {
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
std::optional<sc::keep_alive> parse_keep_alive(std::string_view text) {
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

parse_result parse_args(std::span<char* const> args) {
    config cfg;
    std::optional<std::string_view> mode_text;
    std::optional<std::string_view> a_text;
    std::optional<std::string_view> b_text;
    std::optional<std::string_view> auth_a;
    std::optional<std::string_view> auth_b;
    std::vector<std::string> seen;
    bool keepalive_given = false;

    for (std::size_t i = 0; i < args.size(); ++i) {
        std::string_view arg = args[i] ? args[i] : "";
        if (!arg.starts_with("--")) {
            if (mode_text) return fmt::format("unexpected argument {}", quoted(arg));
            mode_text = arg;
            continue;
        }
        std::string name(arg.substr(0, arg.find('=')));
        std::optional<std::string_view> inline_value;
        if (auto eq = arg.find('='); eq != std::string_view::npos)
            inline_value = arg.substr(eq + 1);

        static constexpr std::string_view flags[] = {"--help",        "--multi",        "--verbose",
                                                     "--log-traffic", "--no-keepalive", "--stats"};
        static constexpr std::string_view valued[] = {
            "--a",      "--b",       "--timeout",      "--keepalive",      "--auth-a",
            "--auth-b", "--threads", "--auth-timeout", "--connect-timeout"};
        bool is_flag = std::find(std::begin(flags), std::end(flags), name) != std::end(flags);
        bool has_value = std::find(std::begin(valued), std::end(valued), name) != std::end(valued);
        if (!is_flag && !has_value) return fmt::format("unknown option {}", quoted(name));
        if (std::find(seen.begin(), seen.end(), name) != seen.end())
            return fmt::format("{} is given more than once", name);
        seen.push_back(name);

        if (is_flag) {
            if (inline_value) return fmt::format("{} takes no value", name);
            if (name == "--help") {
                cfg.help = true;
                return cfg;
            }
            if (name == "--multi") cfg.multi = true;
            if (name == "--verbose") cfg.verbose = true;
            if (name == "--log-traffic") cfg.log_traffic = true;
            if (name == "--stats") cfg.stats = true;
            if (name == "--no-keepalive") {
                if (keepalive_given) return "--keepalive and --no-keepalive exclude each other";
                keepalive_given = true;
                cfg.keepalive = sc::keep_alive::disabled();
            }
            continue;
        }

        std::string_view value;
        if (inline_value) {
            value = *inline_value;
        } else {
            if (i + 1 >= args.size() || !args[i + 1]) return fmt::format("{} needs a value", name);
            value = args[++i];
        }
        if (name == "--a") {
            a_text = value;
        } else if (name == "--b") {
            b_text = value;
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
                                   max_threads, quoted(value));
            cfg.threads = *n;
        } else if (name == "--keepalive") {
            if (keepalive_given) return "--keepalive and --no-keepalive exclude each other";
            keepalive_given = true;
            auto k = parse_keep_alive(value);
            if (!k)
                return fmt::format("--keepalive needs IDLE,INTERVAL,COUNT: seconds from 1 to "
                                   "32767, and a count from 1 to 127 (got {})",
                                   quoted(value));
            cfg.keepalive = *k;
        } else {
            auto secs = parse_seconds(value);
            if (!secs)
                return fmt::format("{} needs seconds from 0 to {:.0f} with at most 3 decimals, "
                                   "like 30 or 0.5 (got {})",
                                   name, max_seconds, quoted(value));
            if (name == "--timeout") {
                cfg.timeout = secs->count() == 0 ? sc::no_timeout : *secs;
            } else {
                if (secs->count() == 0) return fmt::format("{} must be more than 0", name);
                (name == "--auth-timeout" ? cfg.auth_timeout : cfg.connect_timeout) = *secs;
            }
        }
    }

    if (!mode_text) return "missing MODE";
    auto mode = parse_mode(*mode_text);
    if (!mode) return fmt::format("unknown MODE {}", quoted(*mode_text));
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
        if (!parsed) return fmt::format("--{} {}: {}", lower, quoted(*side.text), why);
        bool server = is_server(cfg.mode, side.name);
        if (server) {
            side.options = sc::server_side_options(*parsed);
        } else {
            auto options = sc::socket_side_options(*parsed, &why);
            if (!options) return fmt::format("--{} {}: {}", lower, quoted(*side.text), why);
            side.options = std::move(*options);
        }
        if (side.token) {
            // The library authenticates the sides it accepts, not the ones it dials.
            if (!server)
                return fmt::format("--auth-{} needs side {} to be a server", lower, side.name);
            side.options.auth = sc::token_verifier(std::string(*side.token));
        }
        side.options.keepalive = cfg.keepalive;
    }
    return cfg;
}

sc::options make_options(const config& cfg) {
    sc::options o;
    o.a = cfg.a;
    o.b = cfg.b;
    o.verbose = cfg.verbose;
    o.log_traffic = cfg.log_traffic;
    o.timeout = cfg.timeout;
    o.auth_timeout = cfg.auth_timeout;
    o.connect_timeout = cfg.connect_timeout;
    o.multi = cfg.multi;
    return o;
}

void print_stdout(std::string_view text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
}

/// Runs one connector until it closes or a signal arrives. Its state lives on `strand_`: the
/// signal handler and the main coroutine both run there.
class relay {
public:
    relay(asio::io_context& io, config cfg)
        : io_(io)
        , cfg_(std::move(cfg))
        , strand_(asio::make_strand(io))
        , signals_(strand_, SIGINT, SIGTERM) {}

    /// Starts watching for signals, then the connector; call before running the io_context.
    void start() {
        signals_.async_wait([this](const std::error_code& ec, int) { on_signal(ec); });
        asio::co_spawn(strand_, run(), [this](std::exception_ptr e) { on_done(e); });
    }

    /// 0, or 1 with `error()` set.
    int exit_code() const {
        std::lock_guard lock(mutex_);
        return error_.empty() ? 0 : 1;
    }
    std::string error() const {
        std::lock_guard lock(mutex_);
        return error_;
    }
    /// Records a failure from outside the strand (an exception escaping `io_context::run`).
    void fail(std::string why) {
        std::lock_guard lock(mutex_);
        if (error_.empty()) error_ = why.empty() ? std::string("unknown error") : std::move(why);
    }

private:
    asio::awaitable<void> run() {
        asio::any_io_executor ex = io_.get_executor();
        // A named variable, not a temporary in the co_await: g++ 12 destroys such a temporary
        // twice.
        sc::options o = make_options(cfg_);
        auto c = co_await sc::connector::create(cfg_.mode, ex, std::move(o));
        connector_ = c;
        if (signalled_) c->close(); // the signal came while starting up
        if (is_server(cfg_.mode, 'A'))
            print_stdout(fmt::format("A listening on {}\n", sc::to_string(c->side_a_endpoint())));
        if (is_server(cfg_.mode, 'B'))
            print_stdout(fmt::format("B listening on {}\n", sc::to_string(c->side_b_endpoint())));
        co_await c->wait_closed();
        if (cfg_.stats) print_stdout(c->stats().to_json() + "\n");
        signals_.cancel(); // nothing else keeps the io_context running
    }

    void on_done(std::exception_ptr e) {
        if (!e) return;
        fail(describe(e));
        signals_.cancel();
    }

    /// The message of an exception; of the first one when both connects of socket-to-socket
    /// failed (Asio then reports "multiple exceptions", which says nothing useful).
    static std::string describe(std::exception_ptr e) {
        try {
            std::rethrow_exception(e);
        } catch (const asio::multiple_exceptions& many) {
            if (auto first = many.first_exception()) return describe(first);
            return many.what();
        } catch (const std::exception& ex) {
            return ex.what();
        } catch (...) {
            return "unknown error";
        }
    }

    void on_signal(const std::error_code& ec) {
        if (ec) return; // cancelled: the connector has closed
        if (signalled_) {
            io_.stop(); // a second signal: stop waiting for the close to finish
            return;
        }
        signalled_ = true;
        signals_.async_wait([this](const std::error_code& next, int) { on_signal(next); });
        if (connector_) {
            connector_->close(); // run() prints the stats and finishes once it has closed
        } else {
            io_.stop(); // still starting up (resolving or connecting): nothing to report
        }
    }

    asio::io_context& io_;
    config cfg_;
    asio::strand<asio::io_context::executor_type> strand_;
    asio::signal_set signals_;
    std::shared_ptr<sc::connector> connector_;
    bool signalled_ = false;
    mutable std::mutex mutex_;
    std::string error_;
};

/// Runs the relay on `cfg.threads` threads; the exit status.
int serve(config cfg) {
    unsigned threads = cfg.threads;
    asio::io_context io(static_cast<int>(threads));
    relay r(io, std::move(cfg));
    r.start();
    auto run = [&io, &r] {
        try {
            io.run();
        } catch (const std::exception& e) {
            r.fail(e.what());
            io.stop();
        } catch (...) {
            r.fail("unknown error");
            io.stop();
        }
    };
    std::vector<std::thread> pool;
    for (unsigned i = 1; i < threads; ++i)
        pool.emplace_back(run);
    run();
    for (auto& t : pool)
        t.join();
    if (r.exit_code() != 0) std::fprintf(stderr, "socket-connector: %s\n", r.error().c_str());
    return r.exit_code();
}

} // namespace

int main(int argc, char** argv) {
    try {
        std::signal(SIGPIPE, SIG_IGN); // a peer that goes away is an error code, not a kill
        std::span<char* const> args(argv, static_cast<std::size_t>(argc));
        auto parsed = parse_args(args.empty() ? args : args.subspan(1));
        if (auto* why = std::get_if<std::string>(&parsed)) {
            std::fprintf(stderr, "socket-connector: %s\n\n%.*s", why->c_str(),
                         static_cast<int>(usage_text.size()), usage_text.data());
            return 2;
        }
        auto& cfg = std::get<config>(parsed);
        if (cfg.help) {
            print_stdout(usage_text);
            return 0;
        }
        return serve(std::move(cfg));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "socket-connector: %s\n", e.what());
    } catch (...) {
        std::fprintf(stderr, "socket-connector: unknown error\n");
    }
    return 1;
}
