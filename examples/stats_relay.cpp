// stats_relay: a rendezvous that waits until the connector is done, then reports what it did.
// The C++ form of the Dart package's example/wait_for_socket.dart (`serverToServer` with a
// short `timeout`, then `await connector.done`), plus the `stats` it gathered: bytes each way,
// sockets, connections, and the remote addresses seen.
//
// The connector is done when its grace period (--timeout, 10 s here) has passed and no pair is
// open: so it closes 10 s after start if nobody comes, or when the last pair ends after that.
// Try it, in three terminals:
//
//   stats_relay                 # A on 0.0.0.0:9000, B on 0.0.0.0:8000
//   ncat 127.0.0.1 9000         # type a few lines ...
//   ncat 127.0.0.1 8000         # ... reply, then Ctrl-D in both
//
// It then prints, on stdout, the stats in words and as one line of JSON:
//
//   A -> B: 12 bytes, B -> A: 6 bytes
//   sockets: 2, connections: 1 (0 open), auth failures: 0, remote addresses: 127.0.0.1
//   {"sockets_created":2,"sockets_accepted_a":1,"sockets_accepted_b":1,"bytes_a_to_b":12,...}
//
// Options: --host ADDR (the address both sides bind, default 0.0.0.0), --port-a N, --port-b N
// (0 lets the system choose; the real ports are printed), --timeout SECS (grace period,
// default 10; 0 serves until a signal). SIGINT or SIGTERM closes the connector, and the stats
// are printed all the same. Exit status: 0 when the connector closes, 1 on a runtime error
// (address in use), 2 on bad arguments.

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

constexpr std::string_view usage = R"(usage: stats_relay [options]

Relays between the client on side A and the client on side B until the connector is done,
then prints its stats, in words and as one line of JSON.

  --host ADDR       the address both sides bind (default 0.0.0.0)
  --port-a N        side A's port (default 9000; 0 lets the system choose)
  --port-b N        side B's port (default 8000)
  --timeout SECS    grace period (default 10); 0 serves until SIGINT or SIGTERM
  --help            print this help

Prints "A listening on HOST:PORT" and "B listening on HOST:PORT" once bound.
Exit status: 0 normal close, 1 runtime error, 2 bad arguments.
)";

/// What the command line asks for.
struct config {
    asio::ip::address host = asio::ip::address_v4::any();
    unsigned short port_a = 9000;
    unsigned short port_b = 8000;
    std::chrono::milliseconds timeout = std::chrono::seconds(10);
    bool help = false;
};

/// The configuration, or why the arguments are wrong.
std::variant<config, std::string> parse_args(std::span<char* const> args) {
    config cfg;
    auto why = example::read_options(
        args, cfg.help, {}, {"--host", "--port-a", "--port-b", "--timeout"},
        [&](std::string_view name, std::string_view value) -> example::problem {
            if (name == "--host") return example::read_host(value, cfg.host);
            if (name == "--timeout") return example::read_grace(value, cfg.timeout);
            return example::read_port(name, value, name == "--port-a" ? cfg.port_a : cfg.port_b);
        });
    if (why) return *why;
    return cfg;
}

/// The stats in words: two lines.
std::string describe(const sc::stats& s) {
    std::string addresses;
    for (const auto& address : s.remote_addresses)
        addresses += (addresses.empty() ? "" : ", ") + address;
    return fmt::format("A -> B: {} bytes, B -> A: {} bytes\n"
                       "sockets: {}, connections: {} ({} open), auth failures: {}, "
                       "remote addresses: {}\n",
                       s.bytes_a_to_b, s.bytes_b_to_a, s.sockets_created, s.connections_total,
                       s.connections_open, s.auth_failures, addresses.empty() ? "none" : addresses);
}

/// Makes the connector, says where it listens, waits until it is done and prints its stats.
/// `connector` is where main's signal handler finds it.
asio::awaitable<void> relay(config cfg, std::shared_ptr<sc::connector>& connector) {
    auto ex = co_await asio::this_coro::executor;
    // A named variable, not a braced temporary in the co_await: g++ 12 destroys that twice.
    sc::options o{
        .a = {.endpoint = {cfg.host, cfg.port_a}},
        .b = {.endpoint = {cfg.host, cfg.port_b}},
        .verbose = true,
        .timeout = cfg.timeout,
    };
    connector = co_await sc::server_to_server(ex, std::move(o));
    example::print_listening('A', connector->side_a_endpoint());
    example::print_listening('B', connector->side_b_endpoint());
    co_await connector->wait_closed(); // Dart's `await connector.done`
    auto stats = connector->stats();
    example::print_line(describe(stats));
    example::print_line(stats.to_json() + "\n");
}

} // namespace

int main(int argc, char** argv) {
    return example::main_of("stats_relay", usage, argc, argv, parse_args,
                            [](const config& cfg) { return example::run_relay(cfg, relay); });
}
