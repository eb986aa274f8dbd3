// The command's TLS flags (issue 21) against real peers: `openssl s_client` and `ncat --ssl` into
// a TLS server side, `openssl s_server` behind a TLS socket side; wrong CA, wrong name, missing
// client certificate, plaintext on a TLS port, unreadable files.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "support/net.hpp"
#include "support/programs.hpp"
#include "support/tls.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

bool contains(const std::string& text, std::string_view part) {
    return text.find(part) != std::string::npos;
}

/// Printable lines (s_client and ncat are fed text), `size` bytes in all.
std::string text_of(std::uint64_t seed, std::size_t size) {
    auto bytes = pattern(seed, size);
    std::string text;
    text.reserve(size);
    for (std::size_t i = 0; i < size; ++i)
        text += (i % 64 == 63) ? '\n'
                               : static_cast<char>('a' + static_cast<unsigned char>(bytes[i]) % 26);
    return text;
}

std::vector<std::string> tls_server_flags(char side, bool client_ca = false) {
    const auto& c = certificates();
    std::string s(1, side);
    std::vector<std::string> flags{"--tls-cert-" + s, c.server_cert, "--tls-key-" + s,
                                   c.server_key};
    if (client_ca) {
        flags.push_back("--tls-client-ca-" + s);
        flags.push_back(c.ca);
    }
    return flags;
}

/// `openssl s_client` to 127.0.0.1:port, trusting the test CA, quiet (it then ignores the end of
/// its input and ends when the connection does), then `more`.
std::vector<std::string> s_client_args(unsigned short port, std::vector<std::string> more = {}) {
    std::vector<std::string> args{"openssl",
                                  "s_client",
                                  "-connect",
                                  fmt::format("127.0.0.1:{}", port),
                                  "-CAfile",
                                  certificates().ca,
                                  "-verify_return_error",
                                  "-quiet",
                                  "-nocommands"};
    args.insert(args.end(), more.begin(), more.end());
    return args;
}

std::unique_ptr<child_process> start_relay(std::vector<std::string> args,
                                           const std::vector<std::string>& more) {
    args.insert(args.end(), more.begin(), more.end());
    args.insert(args.end(), {"--timeout", "0", "--verbose"});
    return start_cli(std::move(args));
}

/// A real TLS client (`program`: openssl s_client or ncat --ssl) sends `size` bytes through the
/// relay's TLS side A to our plain B, which checks them and answers with as many, then ends its
/// stream: the relay's close_notify ends the client, whose output must be B's answer.
asio::awaitable<void> real_client_through(const std::string& program) {
    auto relay = start_relay({"server-to-server", "--a", "127.0.0.1:0", "--b", "127.0.0.1:0"},
                             tls_server_flags('a'));
    auto port_a = co_await started_port(*relay, 'A');
    auto port_b = co_await started_port(*relay, 'B');
    auto b = co_await connect_to(port_b);
    const std::size_t size = 1 << 20;
    const auto sent = text_of(3, size);
    const auto answer = text_of(4, size);
    auto input = temp_file(program + "-in", sent);
    const auto& c = certificates();
    std::vector<std::string> args;
    if (program == "openssl")
        args = s_client_args(port_a, {"-servername", "localhost"});
    else
        // --no-shutdown: at the end of its input ncat would close its socket outright (with
        // TLS it has no half-close), before the answer could come. -4: the relay is on
        // 127.0.0.1, and ncat verifies DNS names only.
        args = {"ncat",  "-4",           "--no-shutdown",
                "--ssl", "--ssl-verify", "--ssl-trustfile",
                c.ca,    "localhost",    std::to_string(port_a)};
    auto client = std::make_unique<child_process>(args, input);
    auto got = co_await read_exactly(b, size);
    CHECK(checksum(std::span<const char>(got)) == checksum(std::span<const char>(sent)));
    co_await send_text(b, answer); // and ends B's stream
    auto code = co_await exit_of(*client, 20s);
    INFO(program << " stderr: " << client->err());
    CHECK(code == 0);
    auto out = client->out();
    CHECK(out.size() == answer.size());
    CHECK(checksum(std::span<const char>(out)) == checksum(std::span<const char>(answer)));
    std::filesystem::remove(input);
    CHECK(co_await eventually([&] { return contains(relay->err(), "both sides ended"); }));
    CHECK(contains(relay->err(), "TLSv1.3"));
    relay->signal(SIGTERM);
    CHECK(co_await exit_of(*relay) == 0);
}

/// `openssl s_server -rev` (it answers each line reversed) behind a TLS socket side B.
struct s_server {
    std::unique_ptr<child_process> process;
    unsigned short port = 0;
};

asio::awaitable<s_server> start_s_server(bool untrusted) {
    const auto& c = certificates();
    s_server s;
    s.process = std::make_unique<child_process>(std::vector<std::string>{
        "openssl", "s_server", "-accept", "127.0.0.1:0", "-cert",
        untrusted ? c.other_server_cert : c.server_cert, "-key",
        untrusted ? c.other_server_key : c.server_key, "-rev", "-naccept", "1"});
    bool listening = co_await eventually([&] { return contains(s.process->out(), "ACCEPT "); });
    INFO("s_server: " << s.process->out() << s.process->err());
    REQUIRE(listening);
    auto out = s.process->out();
    auto line = out.substr(out.find("ACCEPT "));
    line = line.substr(0, line.find('\n'));
    s.port = static_cast<unsigned short>(std::stoi(line.substr(line.rfind(':') + 1)));
    co_return s;
}

asio::awaitable<void> through_to_s_server() {
    auto server = co_await start_s_server(false);
    const auto& c = certificates();
    auto relay = start_relay(
        {"server-to-socket", "--a", "127.0.0.1:0", "--b", fmt::format("localhost:{}", server.port)},
        {"--tls-b", "--tls-ca-b", c.ca});
    auto port_a = co_await started_port(*relay, 'A');
    auto a = co_await connect_to(port_a);
    co_await send_text(a, "hello over TLS\n", false);
    auto line = co_await read_line(a);
    CHECK(line == "SLT revo olleh");
    a.close();
    CHECK(co_await eventually([&] { return contains(relay->err(), "TLSv1.3"); }));
    CHECK(co_await exit_of(*relay, 20s) == 0);
    server.process->signal(SIGTERM);
}

/// B dialed up front fails verification: the command says why and exits 1.
asio::awaitable<void> s_server_not_trusted(bool wrong_name) {
    auto server = co_await start_s_server(!wrong_name);
    const auto& c = certificates();
    std::vector<std::string> flags{"--tls-b", "--tls-ca-b", c.ca};
    if (wrong_name) flags.insert(flags.end(), {"--tls-name-b", "not-this-host.example"});
    auto relay = start_relay(
        {"server-to-socket", "--a", "127.0.0.1:0", "--b", fmt::format("127.0.0.1:{}", server.port)},
        flags);
    CHECK(co_await exit_of(*relay, 20s) == 1);
    auto err = relay->err();
    INFO(err);
    CHECK(contains(err, "B: TLS handshake with 127.0.0.1:"));
    CHECK(contains(err, ": certificate verification failed: "));
    CHECK(
        contains(err, wrong_name ? "hostname mismatch" : "unable to get local issuer certificate"));
    server.process->signal(SIGTERM);
}

/// A required client certificate: s_client without one is refused (and the relay goes on),
/// with one it passes; plaintext on the TLS port is refused too.
asio::awaitable<void> client_certificates_and_plaintext() {
    auto relay = start_relay({"server-to-server", "--a", "127.0.0.1:0", "--b", "127.0.0.1:0"},
                             tls_server_flags('a', true));
    auto port_a = co_await started_port(*relay, 'A');
    auto port_b = co_await started_port(*relay, 'B');
    const auto& c = certificates();
    auto input = temp_file("client-cert-in", "with a certificate\n");
    auto args = s_client_args(port_a);
    auto without = std::make_unique<child_process>(args, input);
    CHECK(co_await exit_of(*without, 20s) != 0);
    CHECK(co_await eventually([&] { return contains(relay->err(), "refused: TLS handshake: "); }));
    // Plaintext where TLS is expected: closed (after at most a TLS alert), nothing relayed.
    auto plain = co_await connect_to(port_a);
    co_await send_text(plain, "GET / HTTP/1.0\r\n\r\n");
    auto ended = co_await read_until_closed(plain);
    CHECK(ended.closed);
    CHECK(ended.bytes.size() < 64);
    CHECK(co_await eventually(
        [&] { return contains(relay->err(), "refused: TLS handshake: http request"); }));
    // With the client certificate: relayed.
    args.insert(args.end(), {"-cert", c.client_cert, "-key", c.client_key});
    auto with = std::make_unique<child_process>(args, input);
    auto b = co_await connect_to(port_b);
    auto line = co_await read_line(b);
    CHECK(line == "with a certificate");
    b.shutdown(tcp::socket::shutdown_send);
    CHECK(co_await exit_of(*with, 20s) == 0);
    CHECK(contains(relay->err(), "certificate /CN=test-client"));
    std::filesystem::remove(input);
    relay->signal(SIGTERM);
    CHECK(co_await exit_of(*relay) == 0);
}

asio::awaitable<void> unusable_files() {
    const auto& c = certificates();
    // The key of another certificate; a missing file.
    auto wrong_key = start_cli({"server-to-server", "--a", "127.0.0.1:0", "--b", "127.0.0.1:0",
                                "--tls-cert-a", c.server_cert, "--tls-key-a", c.client_key});
    CHECK(co_await exit_of(*wrong_key) == 1);
    CHECK(contains(wrong_key->err(), "key values mismatch"));
    auto missing = start_cli({"server-to-server", "--a", "127.0.0.1:0", "--b", "127.0.0.1:0",
                              "--tls-cert-b", c.dir + "/none.pem", "--tls-key-b", c.server_key});
    CHECK(co_await exit_of(*missing) == 1);
    CHECK(contains(missing->err(), "side B TLS: TLS certificate " + c.dir +
                                       "/none.pem: No such file or directory"));
    // A certificate for a socket side: a usage error.
    auto misfit = start_cli({"server-to-socket", "--a", "127.0.0.1:0", "--b", "127.0.0.1:9",
                             "--tls-cert-b", c.server_cert, "--tls-key-b", c.server_key});
    CHECK(co_await exit_of(*misfit) == 2);
    CHECK(contains(misfit->err(), "apply to a server side"));
}

/// A rendezvous over TLS on two event loops: each client's token line comes through its TLS
/// session, and a side moved to its session's loop takes its session along.
asio::awaitable<void> rendezvous_over_tls() {
    const auto& c = certificates();
    auto secret = temp_file("tls-secret", "0123456789abcdef0123456789abcdef");
    auto relay =
        start_cli({"rendezvous", "--listen", "127.0.0.1:0", "--secret-file", secret, "--tls-cert-a",
                   c.server_cert, "--tls-key-a", c.server_key, "--threads", "2", "--verbose"});
    auto port = co_await started_port(*relay, 0);
    struct client {
        std::string input;
        std::unique_ptr<child_process> process;
    };
    std::vector<client> clients;
    for (int session = 1; session <= 3; ++session) {
        for (const char* side : {"A", "B"}) {
            auto minted = start_cli({"token", "--secret-file", secret, "--session",
                                     fmt::format("s{}", session), "--side", side});
            REQUIRE(co_await exit_of(*minted) == 0);
            auto token = minted->out();
            token = token.substr(0, token.find('\n'));
            auto input = temp_file(fmt::format("tls-rv-{}{}", session, side),
                                   fmt::format("{}\nfrom {} {}\n", token, side, session));
            auto process = std::make_unique<child_process>(s_client_args(port), input);
            clients.push_back({input, std::move(process)});
        }
    }
    for (int session = 1; session <= 3; ++session) {
        auto& a = *clients[static_cast<std::size_t>(2 * (session - 1))].process;
        auto& b = *clients[static_cast<std::size_t>(2 * (session - 1) + 1)].process;
        const auto from_b = fmt::format("from B {}\n", session);
        const auto from_a = fmt::format("from A {}\n", session);
        CHECK(co_await eventually([&] { return a.out() == from_b && b.out() == from_a; }, 20s));
    }
    for (auto& one : clients) {
        one.process->signal(SIGTERM);
        co_await exit_of(*one.process);
        std::filesystem::remove(one.input);
    }
    std::filesystem::remove(secret);
    relay->signal(SIGTERM);
    CHECK(co_await exit_of(*relay) == 0);
    CHECK(contains(relay->err(), "TLSv1.3"));
}

} // namespace

TEST_CASE("rendezvous over TLS on two event loops: sessions keep their TLS when moved",
          "[tls][cli]") {
    asio::io_context io;
    run(io, rendezvous_over_tls(), 60s);
}

TEST_CASE("openssl s_client through a TLS server side: 1 MiB each way, close_notify ends it",
          "[tls][cli]") {
    asio::io_context io;
    run(io, real_client_through("openssl"), 60s);
}

TEST_CASE("ncat --ssl through a TLS server side: 1 MiB each way", "[tls][cli]") {
    asio::io_context io;
    run(io, real_client_through("ncat"), 60s);
}

TEST_CASE("a TLS socket side to openssl s_server", "[tls][cli]") {
    asio::io_context io;
    run(io, through_to_s_server(), 60s);
}

TEST_CASE("a TLS socket side refuses an untrusted server and a wrong name (exit 1)", "[tls][cli]") {
    asio::io_context io;
    run(io, s_server_not_trusted(false), 60s);
    asio::io_context io2;
    run(io2, s_server_not_trusted(true), 60s);
}

TEST_CASE("a required client certificate, and plaintext on a TLS port", "[tls][cli]") {
    asio::io_context io;
    run(io, client_certificates_and_plaintext(), 60s);
}

TEST_CASE("TLS files that cannot be used: exit 1 with the reason; misfit flags exit 2",
          "[tls][cli]") {
    asio::io_context io;
    run(io, unusable_files(), 60s);
}
