// basic_relay: the smallest useful connector, a rendezvous. Two clients dial in, one to side A
// and one to side B, and whatever one sends reaches the other. The C++ form of the Dart
// package's example/socket_connector_example.dart (`SocketConnector.serverToServer` on ports
// 9000 and 8000 with `verbose: true`, then `await connector.done`).
//
// Try it, in three terminals:
//
//   basic_relay                 # A on 0.0.0.0:9000, B on 0.0.0.0:8000
//   ncat 127.0.0.1 9000         # what you type here ...
//   ncat 127.0.0.1 8000         # ... appears here, and back
//
// Options: --host ADDR (the address both sides bind, default 0.0.0.0), --port-a N, --port-b N
// (0 lets the system choose; the real ports are printed), --timeout SECS (the grace period,
// default 30: once it has passed, the relay closes when no pair is open; 0 serves until a
// signal), --log-traffic (log every relayed chunk on stderr).
//
// Exit status: 0 when the connector closes (grace period over, SIGINT, SIGTERM), 1 on a runtime
// error (address in use), 2 on bad arguments.

#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include <asio/ip/address.hpp>
#include <fmt/format.h>

#include <socket_connector/socket_connector.hpp>

#include "example_support.hpp"

namespace sc = socket_connector;

namespace {

constexpr std::string_view usage = R"(usage: basic_relay [options]

Relays between the client on side A and the client on side B.

  --host ADDR       the address both sides bind (default 0.0.0.0)
  --port-a N        side A's port (default 9000; 0 lets the system choose)
  --port-b N        side B's port (default 8000)
  --timeout SECS    grace period (default 30); 0 serves until SIGINT or SIGTERM
  --log-traffic     log every relayed chunk on stderr
  --help            print this help

Prints "A listening on HOST:PORT" and "B listening on HOST:PORT" once bound.
Exit status: 0 normal close, 1 runtime error, 2 bad arguments.
)";

/// What the command line asks for.
struct config {
    asio::ip::address host = asio::ip::address_v4::any();
    unsigned short port_a = 9000;
    unsigned short port_b = 8000;
    std::chrono::milliseconds timeout = std::chrono::seconds(30);
    bool log_traffic = false;
    bool help = false;
};

/// The configuration, or why the arguments are wrong.
std::variant<config, std::string> parse_args(std::span<char* const> args) {
    config cfg;
    auto why = example::read_options(
        args, cfg.help, {"--log-traffic"}, {"--host", "--port-a", "--port-b", "--timeout"},
        [&](std::string_view name, std::string_view value) -> example::problem {
            if (name == "--log-traffic") {
                cfg.log_traffic = true;
                return std::nullopt;
            }
            if (name == "--host") return example::read_host(value, cfg.host);
            if (name == "--timeout") return example::read_grace(value, cfg.timeout);
            return example::read_port(name, value, name == "--port-a" ? cfg.port_a : cfg.port_b);
        });
    if (why) return *why;
    return cfg;
}

/// Makes the connector, says where it listens, and waits until it has closed. `connector` is
/// where main's signal handler finds it.
asio::awaitable<void> relay(config cfg, std::shared_ptr<sc::connector>& connector) {
    auto ex = co_await asio::this_coro::executor;
    // A named variable, not a braced temporary in the co_await: g++ 12 destroys that twice.
    sc::options o{
        .a = {.endpoint = {cfg.host, cfg.port_a}},
        .b = {.endpoint = {cfg.host, cfg.port_b}},
        .verbose = true,
        .log_traffic = cfg.log_traffic,
        .timeout = cfg.timeout,
    };
    connector = co_await sc::server_to_server(ex, std::move(o));
    example::print_listening('A', connector->side_a_endpoint());
    example::print_listening('B', connector->side_b_endpoint());
    co_await connector->wait_closed(); // Dart's `await connector.done`
}

} // namespace

int main(int argc, char** argv) {
    return example::main_of("basic_relay", usage, argc, argv, parse_args,
                            [](const config& cfg) { return example::run_relay(cfg, relay); });
}
