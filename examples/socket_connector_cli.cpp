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
#include <asio/io_context.hpp>
#include <asio/multiple_exceptions.hpp>
#include <asio/signal_set.hpp>
#include <asio/strand.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/format.h>

#include <socket_connector/socket_connector.hpp>

#include "cli_args.hpp"

namespace sc = socket_connector;

namespace {

using cli::config;
using cli::is_server;
using cli::make_options;
using cli::parse_args;
using cli::usage_text;

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
        if (signalled_) c->drain(cfg_.drain_timeout); // the signal came while starting up
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
            // Stop accepting; live pairs may finish for up to --drain-timeout (0: close now).
            // run() prints the stats and finishes once the connector has closed.
            connector_->drain(cfg_.drain_timeout);
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
