// transform_relay: a proxy that rewrites the bytes in each direction with transformers, the C++
// form of the Dart package's `transformAtoB` / `transformBtoA` (`DataTransformer`). Clients
// dial side A; for each one the relay dials side B, an echo server. What a client sends is
// XOR-ed with a key on its way to B (so B sees only scrambled bytes); what B sends back is
// XOR-ed again, which restores it, and upper-cased a whole line at a time on its way to A.
// Against an echo server a client therefore gets its own lines back in capitals.
//
// Try it, in two terminals (--echo-port starts an echo server inside the program):
//
//   transform_relay --echo-port 8000     # A on 0.0.0.0:9000, B dials 127.0.0.1:8000
//   ncat 127.0.0.1 9000                  # type "hello": "HELLO" comes back
//
// or with ncat as the echo server, in three:
//
//   ncat -l -k -e /bin/cat 127.0.0.1 8000
//   transform_relay --b 127.0.0.1:8000
//   ncat 127.0.0.1 9000                  # type rather than pipe: `ncat -e` hangs up as soon
//                                        # as its client's stream ends, maybe before cat answers
//
// Each client gets fresh transformers: the XOR key starts again from its first byte, and no
// half line is carried over from another client. Options: --host ADDR (the address A binds,
// default 0.0.0.0), --port-a N (default 9000; 0 lets the system choose), --b HOST:PORT (the
// server B dials, default 127.0.0.1:8000), --echo-port N (start an echo server on
// 127.0.0.1:N and dial it instead; 0 lets the system choose), --key K (the XOR key, default
// "socket_connector"), --timeout SECS (grace period, default 30; 0 serves until a signal).
// Exit status: 0 when the connector closes (grace period over, SIGINT, SIGTERM), 1 on a runtime
// error (address in use), 2 on bad arguments.

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <variant>
#include <vector>

#include <asio/buffer.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ip/address.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>

#include <socket_connector/socket_connector.hpp>

#include "example_support.hpp"

namespace sc = socket_connector;
using asio::ip::tcp;

namespace {

constexpr std::string_view usage = R"(usage: transform_relay [options]

Relays each client of side A to a new connection to side B (an echo server), XOR-ing the
bytes A sends with a key, and XOR-ing back and upper-casing, line by line, what B sends.

  --host ADDR       the address side A binds (default 0.0.0.0)
  --port-a N        side A's port (default 9000; 0 lets the system choose)
  --b HOST:PORT     the server side B dials (default 127.0.0.1:8000)
  --echo-port N     start an echo server on 127.0.0.1:N and dial it instead of --b
  --key K           the XOR key (default socket_connector)
  --timeout SECS    grace period (default 30); 0 serves until SIGINT or SIGTERM
  --help            print this help

Prints "A listening on HOST:PORT" once bound (after "echo server listening on ...").
Exit status: 0 normal close, 1 runtime error, 2 bad arguments.
)";

// ---- the transformers ---------------------------------------------------------------------

/// XORs each byte with the next byte of a repeating key; applying it twice gives the bytes back.
///
/// Stateful: it remembers where in the key the last chunk stopped, so how the stream is cut
/// into chunks does not matter. It holds nothing back, so `finish` has nothing to add.
class xor_cipher {
public:
    explicit xor_cipher(std::string key)
        : key_(std::move(key)) {}

    void transform(std::span<const char> in, std::vector<char>& out) {
        for (char c : in) {
            out.push_back(static_cast<char>(c ^ key_[position_]));
            position_ = (position_ + 1) % key_.size();
        }
    }
    void finish(std::vector<char>&) {}

private:
    std::string key_; // not empty
    std::size_t position_ = 0;
};

/// Upper-cases ASCII letters and passes on whole lines only, so the reader gets each line in
/// one piece.
///
/// It holds back the bytes after the last LF until the rest of their line comes, and `finish`
/// flushes a last line that has no LF. A "line" longer than `max_held` bytes is passed on in
/// parts, so binary data cannot make it hold unbounded memory.
class upper_lines {
public:
    static constexpr std::size_t max_held = 64 * 1024;

    void transform(std::span<const char> in, std::vector<char>& out) {
        for (char c : in)
            held_.push_back(c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c);
        auto last_lf = std::find(held_.rbegin(), held_.rend(), '\n');
        auto whole = held_.size() > max_held ? held_.size()
                                             : static_cast<std::size_t>(held_.rend() - last_lf);
        out.insert(out.end(), held_.begin(), held_.begin() + static_cast<std::ptrdiff_t>(whole));
        held_.erase(held_.begin(), held_.begin() + static_cast<std::ptrdiff_t>(whole));
    }
    void finish(std::vector<char>& out) {
        out.insert(out.end(), held_.begin(), held_.end());
        held_.clear();
    }

private:
    std::vector<char> held_;
};

/// Two transformers in a row: the bytes go through `First`, then through `Second`.
template <sc::transformer First, sc::transformer Second>
class chain {
public:
    chain(First first, Second second)
        : first_(std::move(first))
        , second_(std::move(second)) {}

    void transform(std::span<const char> in, std::vector<char>& out) {
        middle_.clear();
        first_.transform(in, middle_);
        second_.transform(middle_, out);
    }
    void finish(std::vector<char>& out) {
        middle_.clear();
        first_.finish(middle_); // what First held back still goes through Second
        second_.transform(middle_, out);
        second_.finish(out);
    }

private:
    First first_;
    Second second_;
    std::vector<char> middle_;
};

static_assert(sc::transformer<xor_cipher>);
static_assert(sc::transformer<upper_lines>);
static_assert(sc::transformer<chain<xor_cipher, upper_lines>>);

// ---- the echo server (--echo-port) ----------------------------------------------------------

constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);

/// Sends back everything it reads; ends its stream when the peer ends its own.
asio::awaitable<void> echo_session(tcp::socket socket) {
    std::array<char, 16 * 1024> buffer;
    for (;;) {
        auto [read_ec, n] = co_await socket.async_read_some(asio::buffer(buffer), use_tuple);
        if (n > 0) {
            auto [write_ec, written] =
                co_await asio::async_write(socket, asio::buffer(buffer.data(), n), use_tuple);
            if (write_ec) co_return;
        }
        if (read_ec == asio::error::eof) {
            std::error_code ignored;
            socket.shutdown(tcp::socket::shutdown_send, ignored);
        }
        if (read_ec) co_return;
    }
}

/// Accepts until the acceptor is closed, one echo session per connection. Errors come back as
/// values, so nothing is lost by spawning the sessions detached.
asio::awaitable<void> echo_server(std::shared_ptr<tcp::acceptor> acceptor) {
    for (;;) {
        auto [ec, socket] = co_await acceptor->async_accept(use_tuple);
        if (ec == asio::error::operation_aborted || !acceptor->is_open()) co_return;
        if (ec) {
            fmt::print(stderr, "transform_relay: echo server: {}\n", ec.message());
            co_return;
        }
        asio::co_spawn(acceptor->get_executor(), echo_session(std::move(socket)), asio::detached);
    }
}

// ---- the program ----------------------------------------------------------------------------

/// What the command line asks for.
struct config {
    asio::ip::address host = asio::ip::address_v4::any();
    unsigned short port_a = 9000;
    sc::side_options b{.endpoint = {asio::ip::address_v4::loopback(), 8000}};
    std::optional<unsigned short> echo_port;
    std::string key = "socket_connector";
    std::chrono::milliseconds timeout = std::chrono::seconds(30);
    bool help = false;
};

/// The configuration, or why the arguments are wrong.
std::variant<config, std::string> parse_args(std::span<char* const> args) {
    config cfg;
    bool b_given = false;
    auto why = example::read_options(
        args, cfg.help, {}, {"--host", "--port-a", "--b", "--echo-port", "--key", "--timeout"},
        [&](std::string_view name, std::string_view value) -> example::problem {
            if (name == "--b") {
                std::string reason;
                auto address = sc::parse_address(value, &reason);
                auto side = address ? sc::socket_side_options(*address, &reason) : std::nullopt;
                if (!side) return fmt::format("--b '{}': {}", value, reason);
                cfg.b = std::move(*side);
                b_given = true;
            } else if (name == "--key") {
                if (value.empty()) return "--key needs at least one byte";
                cfg.key = value;
            } else if (name == "--host") {
                return example::read_host(value, cfg.host);
            } else if (name == "--timeout") {
                return example::read_grace(value, cfg.timeout);
            } else if (name == "--port-a") {
                return example::read_port(name, value, cfg.port_a);
            } else {
                return example::read_port(name, value, cfg.echo_port.emplace()); // --echo-port
            }
            return std::nullopt;
        });
    if (why) return *why;
    if (!cfg.help && b_given && cfg.echo_port) return "give --b or --echo-port, not both";
    return cfg;
}

/// Starts the echo server if asked, makes the connector with a transformer on each side, says
/// where it listens, and waits until it has closed. `connector` is where main's signal handler
/// finds it.
asio::awaitable<void> relay(config cfg, std::shared_ptr<sc::connector>& connector) {
    auto ex = co_await asio::this_coro::executor;
    sc::side_options b = cfg.b;
    std::shared_ptr<tcp::acceptor> echo; // shared with echo_server(), which may outlive us
    if (cfg.echo_port) {
        tcp::endpoint where{asio::ip::address_v4::loopback(), *cfg.echo_port};
        echo = std::make_shared<tcp::acceptor>(ex, where);
        b = sc::side_options{.endpoint = echo->local_endpoint()};
        asio::co_spawn(ex, echo_server(echo), asio::detached);
        example::print_line(
            fmt::format("echo server listening on {}\n", sc::to_string(echo->local_endpoint())));
    }
    // Bytes leaving B: undo A's XOR (with a fresh key position), then upper-case whole lines.
    b.transform = chain<xor_cipher, upper_lines>(xor_cipher(cfg.key), upper_lines());
    // A named variable, not a braced temporary in the co_await: g++ 12 destroys that twice.
    sc::options o{
        .a = {.endpoint = {cfg.host, cfg.port_a}, .transform = xor_cipher(cfg.key)},
        .b = std::move(b),
        .verbose = true,
        .timeout = cfg.timeout,
        .multi = true, // one B connection per client of A
    };
    connector = co_await sc::server_to_socket(ex, std::move(o));
    example::print_listening('A', connector->side_a_endpoint());
    co_await connector->wait_closed();
    if (echo) echo->close();
}

} // namespace

int main(int argc, char** argv) {
    return example::main_of("transform_relay", usage, argc, argv, parse_args,
                            [](const config& cfg) { return example::run_relay(cfg, relay); });
}
