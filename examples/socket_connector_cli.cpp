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
//
// Signals: the first SIGINT or SIGTERM drains (stop accepting, let open pairs finish for up to
// --drain-timeout); a repeat within a second is the same request delivered twice (coreutils
// `timeout` and supervisors signal the process, then its whole group); a later one closes the
// open pairs at once; a third stops the event loops without waiting. --stats is printed on
// every exit but SIGKILL.

// The command turns on the library's receive hint (see socket_connector/detail/receive_hint.hpp):
// this is the program's one translation unit that defines the macro, before any of the library's
// headers. Its single-thread loops then skip a receive they know would find nothing. Build with
// -DSOCKET_CONNECTOR_NO_RECEIVE_HINT for the library's default, without it.
#if !defined(SOCKET_CONNECTOR_NO_RECEIVE_HINT)
#define SOCKET_CONNECTOR_ENABLE_RECEIVE_HINT
#endif

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <exception>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/multiple_exceptions.hpp>
#include <asio/signal_set.hpp>
#include <asio/strand.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/format.h>

#include <socket_connector/session_token.hpp>
#include <socket_connector/socket_connector.hpp>
#include <socket_connector/tls.hpp>

#include "cli_args.hpp"
#include "example_support.hpp"
#include "metrics_endpoint.hpp"
#include "session_routes.hpp"
#include "token_command.hpp"

namespace sc = socket_connector;

namespace {

using cli::config;
using cli::is_server;
using cli::make_options;
using cli::parse_args;
using cli::usage_text;
using example::session_routes;

/// The counters of several connectors added up (their remote addresses merged, each once).
sc::stats sum_of(const std::vector<std::shared_ptr<sc::connector>>& connectors) {
    sc::stats total;
    for (const auto& c : connectors)
        total.add(c->stats(), sc::connector::stats_address_limit);
    return total;
}

/// Runs the connector until it closes or a signal arrives. Its state lives on `strand_`, on
/// the first event loop: the signal handler and the main coroutine both run there.
///
/// A proxy (server-to-socket --multi) on N threads is N connectors, one per event loop, each
/// accepting on the same address (SO_REUSEPORT: the kernel spreads new connections among them)
/// and relaying the pairs it accepted on its own thread: no hand-off between threads, and no
/// thread woken for another's events. They share one set of limits. A rendezvous is served the
/// same way, and each side, once its token is checked, moves to the connector its session's key
/// hashes to (`options::route`, `session_routes`): at most one hand-off between threads per
/// side. Every other mode is one connector on one event loop that all N threads run.
class relay {
public:
    relay(std::vector<asio::io_context*> loops, config cfg)
        : loops_(std::move(loops))
        , cfg_(std::move(cfg))
        , strand_(asio::make_strand(*loops_.front()))
        , signals_(strand_, SIGINT, SIGTERM) {}

    /// Starts watching for signals, then the connector; call before running the loops.
    void start() {
        watch_signals();
        asio::co_spawn(strand_, run(), [this](std::exception_ptr e) { on_done(e); });
    }

    /// The counters of every connector made so far, added up; from any thread (--metrics).
    sc::stats stats_now() const {
        std::lock_guard lock(mutex_);
        return sum_of(connectors_);
    }

    /// What the program prints on stdout and stderr once the loops have stopped (however they
    /// stopped): --stats, and why a relay that never paired anything has closed.
    void report() const {
        const auto total = sum_of(connectors_);
        if (cfg_.stats) example::print_line(total.to_json() + "\n");
        if (exit_code() == 0 && acted_on_ == 0 && total.connections_total == 0 && closes_idle())
            std::fprintf(stderr,
                         "socket-connector: no pair formed within the %s s grace period; closed "
                         "%s\n",
                         seconds(cfg_.timeout).c_str(), until_a_signal);
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
    static std::string seconds(std::chrono::milliseconds ms) {
        return fmt::format("{:g}", static_cast<double>(ms.count()) / 1000.0);
    }
    /// Whether the relay closes by itself once its grace period has passed with no pair open: it
    /// has one, and a server side to wait on.
    bool closes_idle() const {
        return cfg_.timeout != sc::no_timeout &&
               (is_server(cfg_.mode, 'A') || is_server(cfg_.mode, 'B'));
    }
    static constexpr const char* until_a_signal = "(--timeout 0 serves until a signal)";

    /// The sides' TLS from the files the command line names: throws with the file and
    /// OpenSSL's reason when one cannot be used.
    void load_tls(sc::options& o) const {
        for (int i = 0; i < 2; ++i) {
            const auto& t = cfg_.tls[i];
            auto& side = i == 0 ? o.a : o.b;
            try {
                if (!t.certificate.empty())
                    side.tls = sc::tls_server({.certificate_chain = t.certificate,
                                               .private_key = t.key,
                                               .client_ca = t.client_ca});
                else if (t.client)
                    side.tls = sc::tls_client({.name = t.name, .ca = t.ca});
            } catch (const std::exception& e) {
                throw std::runtime_error(
                    fmt::format("side {} TLS: {}", i == 0 ? 'A' : 'B', e.what()));
            }
        }
    }

    asio::awaitable<void> run() {
        // A named variable, not a temporary in the co_await: g++ 12 destroys such a temporary
        // twice.
        sc::options o = make_options(cfg_);
        try {
            load_tls(o);
        } catch (const std::exception& e) {
            fail(e.what());
            stop_watching_signals();
            co_return;
        }
        if (cfg_.rendezvous) {
            // Every client's first line is its session token, on either port.
            try {
                sc::session_token_verifier verify(sc::token_secret::from_file(cfg_.secret_file));
                o.a.auth = verify;
                if (cfg_.mode == sc::connector_mode::server_to_server) o.b.auth = verify;
            } catch (const std::exception& e) {
                fail(e.what());
                stop_watching_signals();
                co_return;
            }
        }
        const bool sharded = loops_.size() > 1;
        // Each loop is run by one thread (sharded, or a single thread in all): no strands.
        o.io_run_by_one_thread = sharded || cfg_.threads == 1;
        if (sharded) {
            o.a.reuse_port = true;
            o.b.reuse_port = cfg_.rendezvous && is_server(cfg_.mode, 'B');
            o.limit_group = std::make_shared<sc::shared_limits>();
            if (cfg_.rendezvous) {
                routes_ = std::make_shared<session_routes>(loops_.size());
                o.route = [routes = routes_](std::string_view key) { return routes->route(key); };
            }
        }
        for (std::size_t i = 0; i < loops_.size(); ++i) {
            sc::options mine = o;
            auto base = o.logger ? o.logger : sc::stderr_logger();
            if (sharded) {
                // Log lines say which loop: each counts its connections from 1.
                base = [base, i](sc::log_level level, std::string_view line) {
                    base(level, fmt::format("loop {}: {}", i + 1, line));
                };
            }
            // While the connectors start, an error line (the library's "start-up failed: bind A
            // to ...: reason") is kept rather than printed: a failure is reported once, as the
            // command's last line, with its context.
            mine.logger = [this, base](sc::log_level level, std::string_view line) {
                if (level == sc::log_level::error && starting_) {
                    std::lock_guard lock(mutex_);
                    startup_error_ = line;
                    return;
                }
                base(level, line);
            };
            if (i > 0) {
                // The others listen where the first one did (its port, when 0 was asked).
                mine.a.host.clear();
                mine.a.port.clear();
                mine.a.endpoint = connectors_.front()->side_a_endpoint();
                if (mine.b.reuse_port) {
                    mine.b.host.clear();
                    mine.b.port.clear();
                    mine.b.endpoint = connectors_.front()->side_b_endpoint();
                }
            }
            asio::any_io_executor ex = loops_[i]->get_executor();
            auto [ec, c] = co_await sc::create(cfg_.mode, ex, std::move(mine),
                                               asio::experimental::as_tuple(asio::use_awaitable));
            if (ec) {
                std::string why;
                {
                    std::lock_guard lock(mutex_);
                    why = startup_error_.empty() ? ec.message() : startup_error_;
                }
                if (ec == asio::error::timed_out)
                    why += fmt::format(" (allow longer with --connect-timeout SECS; now {})",
                                       seconds(cfg_.connect_timeout));
                fail(why);
                for (auto& started : connectors_)
                    started->close();
                stop_watching_signals();
                co_return;
            }
            {
                std::lock_guard lock(mutex_); // stats_now() reads the list from another thread
                connectors_.push_back(c);
            }
            if (routes_) routes_->add(c);
            if (acted_on_ > 0) c->drain(cfg_.drain_timeout); // the signal came while starting up
        }
        starting_ = false;
        auto& first = *connectors_.front();
        if (cfg_.mode == sc::connector_mode::one_server) {
            example::print_line(
                fmt::format("listening on {}\n", sc::to_string(first.side_a_endpoint())));
        } else {
            if (is_server(cfg_.mode, 'A')) example::print_listening('A', first.side_a_endpoint());
            if (is_server(cfg_.mode, 'B')) example::print_listening('B', first.side_b_endpoint());
        }
        // Without --verbose nothing else would say that an idle relay closes by itself.
        if (!cfg_.verbose && closes_idle())
            std::fprintf(stderr,
                         "socket-connector: closes once %s s have passed and no pair is open %s\n",
                         seconds(cfg_.timeout).c_str(), until_a_signal);
        for (auto& c : connectors_)
            co_await c->wait_closed();
        stop_watching_signals(); // nothing else keeps the first loop running
    }

    void on_done(std::exception_ptr e) {
        if (!e) return;
        fail(describe(e));
        for (auto& c : connectors_) // started before another failed to
            c->close();
        stop_watching_signals();
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

    void stop_watching_signals() {
        finished_ = true; // a handler already queued does not watch again
        signals_.cancel();
    }

    void watch_signals() {
        signals_.async_wait([this](const std::error_code& ec, int) {
            if (ec || finished_) return; // cancelled: the connector has closed
            watch_signals();
            on_signal();
        });
    }

    /// A repeat within this long of the signal acted on is the same request, delivered twice.
    static constexpr std::chrono::seconds same_request{1};

    void on_signal() {
        const auto now = std::chrono::steady_clock::now();
        if (acted_on_ > 0 && now - last_acted_ < same_request) return;
        last_acted_ = now;
        ++acted_on_;
        if (connectors_.empty() || acted_on_ >= 3) {
            // Still starting up (resolving or connecting), or asked a third time: stop the
            // loops; serve() still prints what was asked for.
            stop_all();
            return;
        }
        // First: stop accepting; live pairs may finish for up to --drain-timeout (0: close
        // now). Second: close them now. run() finishes once every connector has closed.
        for (auto& c : connectors_) {
            if (acted_on_ == 1)
                c->drain(cfg_.drain_timeout);
            else
                c->close();
        }
    }

    void stop_all() {
        for (auto* loop : loops_)
            loop->stop();
    }

    std::vector<asio::io_context*> loops_;
    config cfg_;
    asio::strand<asio::io_context::executor_type> strand_;
    asio::signal_set signals_;
    std::vector<std::shared_ptr<sc::connector>> connectors_;
    std::shared_ptr<session_routes> routes_; // a rendezvous on several loops
    bool finished_ = false; // every connector has closed: stop watching for signals
    int acted_on_ = 0;      // signals acted on (repeats within `same_request` are not)
    std::chrono::steady_clock::time_point last_acted_{};
    mutable std::mutex mutex_;
    std::string error_;
    std::string startup_error_;        // the last error line logged while starting (under mutex_)
    std::atomic<bool> starting_{true}; // the connectors are being made
};

/// Whether `cfg` is served by one connector per thread (see `relay`).
bool one_loop_per_thread(const config& cfg) {
#if defined(SO_REUSEPORT)
    return ((cfg.mode == sc::connector_mode::server_to_socket && cfg.multi) || cfg.rendezvous) &&
           cfg.threads > 1;
#else
    (void)cfg;
    return false;
#endif
}

/// Runs the relay on `cfg.threads` threads; the exit status.
int serve(config cfg) {
    const unsigned threads = cfg.threads;
    const bool sharded = one_loop_per_thread(cfg);
    // One event loop per thread, or one that every thread runs.
    std::vector<std::unique_ptr<asio::io_context>> owned;
    for (unsigned i = 0; i < (sharded ? threads : 1u); ++i)
        owned.push_back(
            std::make_unique<asio::io_context>(sharded ? 1 : static_cast<int>(threads)));
    std::vector<asio::io_context*> loops;
    for (auto& loop : owned)
        loops.push_back(loop.get());
    const std::chrono::microseconds spin = cfg.spin;
    const auto metrics_address = cfg.metrics;
    relay r(loops, std::move(cfg));
    // What every exit does once the relay has stopped (or could not start): --stats, the reason.
    auto finish = [&r] {
        example::hold_exit_signals(); // while `r` (its signal_set) still exists
        r.report();
        if (r.exit_code() != 0) std::fprintf(stderr, "socket-connector: %s\n", r.error().c_str());
        return r.exit_code();
    };
    // --metrics: bound before anything else starts, so that a port in use is an exit 1 at once.
    std::unique_ptr<example::metrics_endpoint> metrics;
    if (metrics_address) {
        try {
            metrics = std::make_unique<example::metrics_endpoint>(*metrics_address,
                                                                  [&r] { return r.stats_now(); });
        } catch (const std::exception& e) {
            r.fail(e.what()); // exit 1, with --stats printed as on any other exit
            return finish();
        }
        example::print_line(
            fmt::format("metrics listening on {}\n", sc::to_string(metrics->local_endpoint())));
        metrics->start();
    }
    r.start();
    // The other loops have nothing to do until their connector is made: keep them running
    // until the first loop (which makes them, and waits for them to close) has finished.
    std::vector<asio::executor_work_guard<asio::io_context::executor_type>> keep;
    for (std::size_t i = 1; i < loops.size(); ++i)
        keep.push_back(asio::make_work_guard(*loops[i]));
    // A loop that one thread runs lets the processes it relays for go first whenever it runs
    // dry, and spins while its events come at short intervals (sc::run_yielding): it then
    // sleeps and is woken less often.
    const bool one_thread_loops = sharded || threads == 1;
    auto run = [&r, &loops, one_thread_loops, spin](asio::io_context& io) {
        try {
            if (one_thread_loops)
                sc::run_yielding(io, spin);
            else
                io.run();
        } catch (const std::exception& e) {
            r.fail(e.what());
            for (auto* loop : loops)
                loop->stop();
        } catch (...) {
            r.fail("unknown error");
            for (auto* loop : loops)
                loop->stop();
        }
    };
    std::vector<std::thread> pool;
    for (unsigned i = 1; i < threads; ++i)
        pool.emplace_back([&run, &loops, i] { run(*loops[i % loops.size()]); });
    run(*loops.front());
    for (auto& guard : keep)
        guard.reset();
    for (auto& t : pool)
        t.join();
    if (metrics) metrics->stop();
    return finish();
}

} // namespace

/// `socket-connector token ...`: prints a session token; the exit status.
int token_main(std::span<char* const> args) {
    auto parsed = cli::parse_token_args(args);
    if (auto* why = std::get_if<std::string>(&parsed)) {
        std::fprintf(stderr, "socket-connector token: %s\n\n%s", why->c_str(),
                     cli::token_usage_text.data());
        return 2;
    }
    const auto& cfg = std::get<cli::token_config>(parsed);
    if (cfg.help) {
        example::print_line(std::string(cli::token_usage_text));
        return 0;
    }
    try {
        auto secret = sc::token_secret::from_file(cfg.secret_file);
        const std::uint64_t now = sc::unix_now();
        const std::uint64_t expiry = cfg.expires ? *cfg.expires : now + cfg.ttl;
        example::print_line(sc::mint_token(secret, cfg.session, cfg.side, expiry) + "\n");
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "socket-connector token: %s\n", e.what());
        return 1;
    }
}

int main(int argc, char** argv) {
    if (argc > 1 && std::string_view(argv[1]) == "token")
        return token_main(std::span<char* const>(argv + 2, static_cast<std::size_t>(argc - 2)));
    return example::main_of("socket-connector", usage_text, argc, argv, parse_args, serve);
}
