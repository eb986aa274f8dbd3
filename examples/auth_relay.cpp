// auth_relay: a rendezvous where each client must prove it knows a shared secret before it is
// paired. The C++ form of the Dart package's example/socket_connector_with_authenticator.dart
// (its "both sides authenticated" case: `serverToServer` with an authenticator on A and on B),
// with a challenge and response instead of a fixed word, so a recorded answer is useless.
//
// When a client connects, the relay sends it one line, `challenge: NONCE` (32 hex digits, fresh
// each time). The client must answer with the line `challenge::answer(SECRET, NONCE)`: 16 hex
// digits of FNV-1a-64 over the secret followed by the nonce (see challenge.hpp, which also has
// the same function in bash). That is A DEMONSTRATION, NOT CRYPTOGRAPHY: FNV-1a is no MAC, and
// an eavesdropper can test guesses of the secret offline against one exchange (and the secret
// sits on the command line, where `ps` shows it); use HMAC-SHA-256 or TLS for real.
// A wrong answer, a line longer than 256 bytes or no answer within --auth-timeout closes the
// client; what follows a right answer is relayed to the other side.
//
// Try it, in four terminals:
//
//   auth_relay --secret s3cret                 # A on 0.0.0.0:9000, B on 0.0.0.0:8000
//   ncat 127.0.0.1 9000                        # prints "challenge: 5f0c...": keep it open
//   auth_relay --secret s3cret --answer 5f0c...   # prints the answer: paste it into ncat
//   ncat 127.0.0.1 8000                        # the same for B; then A and B talk
//
// Or scripted, letting ncat run the answering shell on the connection (B prints what A sent):
//
//   ncat 127.0.0.1 8000 -c 'read -r _ n; auth_relay --secret s3cret --answer "$n"; cat >&2'
//   ncat 127.0.0.1 9000 -c 'read -r _ n; auth_relay --secret s3cret --answer "$n"; echo hi B'
//
// Options: --secret S (required), --answer NONCE (print the answer and exit), --host ADDR,
// --port-a N, --port-b N (0 lets the system choose), --timeout SECS (grace period, default 30;
// 0 serves until a signal), --auth-timeout SECS (time to answer, default 60: long enough to
// paste by hand). Exit status: 0 normal close (grace period, SIGINT, SIGTERM) or an answer
// printed, 1 runtime error (address in use), 2 bad arguments.

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <asio/buffer.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ip/address.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>

#include <socket_connector/socket_connector.hpp>

#include "example_support.hpp"

#include "challenge.hpp"

namespace sc = socket_connector;

namespace {

constexpr std::string_view usage = R"(usage: auth_relay --secret S [options]
       auth_relay --secret S --answer NONCE

Relays between an authenticated client on side A and one on side B. Each client is sent
"challenge: NONCE" and must answer with the line the second form prints.

  --secret S            the shared secret (required)
  --answer NONCE        print the answer to NONCE (or to a pasted "challenge: NONCE") and exit
  --host ADDR           the address both sides bind (default 0.0.0.0)
  --port-a N            side A's port (default 9000; 0 lets the system choose)
  --port-b N            side B's port (default 8000)
  --timeout SECS        grace period (default 30); 0 serves until SIGINT or SIGTERM
  --auth-timeout SECS   how long a client has to answer (default 60)
  --help                print this help

Prints "A listening on HOST:PORT" and "B listening on HOST:PORT" once bound.
Exit status: 0 normal close or answer printed, 1 runtime error, 2 bad arguments.
)";

/// Sends `challenge: NONCE` and accepts the side if its first line is the answer.
///
/// Each socket gets a fresh nonce, so an answer overheard once is no use later. The reply is
/// read into at most `max_line` bytes, so a peer cannot make the relay buffer more; the line
/// (LF, or CRLF) is compared in constant time; bytes after it are the leftover, relayed first
/// once the side is paired. Nothing about the secret is ever logged. Models sc::auth_verifier.
class challenge_verifier {
public:
    explicit challenge_verifier(std::string secret, std::size_t max_line = 256)
        : secret_(std::move(secret))
        , max_line_(max_line) {}

    template <class Socket>
    asio::awaitable<sc::auth_result> operator()(Socket& socket) const {
        constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);
        const std::string nonce = challenge::make_nonce();
        const std::string expected = challenge::answer(secret_, nonce);
        const std::string line = fmt::format("{}{}\n", challenge::prefix, nonce);
        auto [write_ec, written] =
            co_await asio::async_write(socket, asio::buffer(line), use_tuple);
        if (write_ec) co_return sc::auth_result{}; // gone already: not authenticated
        std::vector<char> received;
        for (;;) {
            if (auto found = sc::find_first_line(received)) {
                sc::auth_result result;
                result.ok = sc::constant_time_equal(found->line, expected);
                if (result.ok)
                    result.leftover.assign(received.begin() +
                                               static_cast<std::ptrdiff_t>(found->rest),
                                           received.end());
                co_return result;
            }
            if (received.size() >= max_line_) co_return sc::auth_result{}; // no answer is so long
            auto old = received.size();
            received.resize(max_line_);
            auto [read_ec, n] = co_await socket.async_read_some(
                asio::buffer(received.data() + old, max_line_ - old), use_tuple);
            received.resize(old + n);
            if (read_ec) co_return sc::auth_result{}; // end of stream or reset before the LF
        }
    }

private:
    std::string secret_;
    std::size_t max_line_;
};

static_assert(sc::auth_verifier<challenge_verifier, sc::connector::socket_type>);

/// What the command line asks for.
struct config {
    std::string secret;
    std::optional<std::string> answer_for; // --answer NONCE
    asio::ip::address host = asio::ip::address_v4::any();
    unsigned short port_a = 9000;
    unsigned short port_b = 8000;
    std::chrono::milliseconds timeout = std::chrono::seconds(30);
    std::chrono::milliseconds auth_timeout = std::chrono::seconds(60);
    bool help = false;
};

/// The configuration, or why the arguments are wrong.
std::variant<config, std::string> parse_args(std::span<char* const> args) {
    config cfg;
    auto why = example::read_options(
        args, cfg.help, {},
        {"--secret", "--answer", "--host", "--port-a", "--port-b", "--timeout", "--auth-timeout"},
        [&](std::string_view name, std::string_view value) -> example::problem {
            if (name == "--secret") {
                if (value.empty() || value.find_first_of("\r\n") != std::string_view::npos)
                    return "--secret needs a non-empty secret on one line";
                cfg.secret = value;
            } else if (name == "--answer") {
                auto nonce = challenge::nonce_of(value);
                if (nonce.empty()) return "--answer needs the nonce the relay sent";
                cfg.answer_for = std::string(nonce);
            } else if (name == "--auth-timeout") {
                auto seconds = example::parse_seconds(value);
                if (!seconds) return fmt::format("--auth-timeout needs seconds (got '{}')", value);
                if (seconds->count() == 0) return "--auth-timeout must be more than 0";
                cfg.auth_timeout = *seconds;
            } else if (name == "--host") {
                return example::read_host(value, cfg.host);
            } else if (name == "--timeout") {
                return example::read_grace(value, cfg.timeout);
            } else {
                return example::read_port(name, value,
                                          name == "--port-a" ? cfg.port_a : cfg.port_b);
            }
            return std::nullopt;
        });
    if (why) return *why;
    if (!cfg.help && cfg.secret.empty()) return "missing --secret"; // a given one is not empty
    return cfg;
}

/// Makes the connector with a verifier on each side, says where it listens, and waits until
/// it has closed. `connector` is where main's signal handler finds it.
asio::awaitable<void> relay(config cfg, std::shared_ptr<sc::connector>& connector) {
    auto ex = co_await asio::this_coro::executor;
    // A named variable, not a braced temporary in the co_await: g++ 12 destroys that twice.
    sc::options o{
        .a = {.endpoint = {cfg.host, cfg.port_a}, .auth = challenge_verifier(cfg.secret)},
        .b = {.endpoint = {cfg.host, cfg.port_b}, .auth = challenge_verifier(cfg.secret)},
        .verbose = true,
        .timeout = cfg.timeout,
        .auth_timeout = cfg.auth_timeout,
    };
    connector = co_await sc::server_to_server(ex, std::move(o));
    example::print_listening('A', connector->side_a_endpoint());
    example::print_listening('B', connector->side_b_endpoint());
    co_await connector->wait_closed();
}

} // namespace

int main(int argc, char** argv) {
    return example::main_of("auth_relay", usage, argc, argv, parse_args, [](const config& cfg) {
        if (cfg.answer_for) { // the client's side: print the answer, no relay
            example::print_line(challenge::answer(cfg.secret, *cfg.answer_for) + "\n");
            return 0;
        }
        return example::run_relay(cfg, relay);
    });
}
