// End-to-end tests of the example programs (examples/*_relay.cpp): each real binary, started on
// port 0 and driven over loopback. The binaries sit beside the `socket-connector` command.
#include "../examples/challenge.hpp"

#include "support/programs.hpp"

#include <filesystem>

#include <asio/read_until.hpp>

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

std::unique_ptr<child_process> start_example(const std::string& name,
                                             std::vector<std::string> args) {
    return start_program(name, std::move(args));
}

std::vector<char> bytes(std::string_view s) {
    return {s.begin(), s.end()};
}

/// Lines of text, then binary bytes, then a last line with no LF.
std::vector<char> lines_then_binary(std::uint64_t seed, std::size_t binary_size) {
    auto data = bytes("hello, world\nsecond line\r\nmixed Case 123 xyz\n");
    auto binary = pattern(seed, binary_size);
    data.insert(data.end(), binary.begin(), binary.end());
    auto tail = bytes("\nand a last line with no end");
    data.insert(data.end(), tail.begin(), tail.end());
    return data;
}

/// What transform_relay's XOR does: each byte XOR-ed with the next byte of the repeating key.
std::vector<char> xored(std::vector<char> data, std::string_view key) {
    for (std::size_t i = 0; i < data.size(); ++i)
        data[i] = static_cast<char>(data[i] ^ key[i % key.size()]);
    return data;
}

/// What transform_relay's upper-casing does: ASCII letters only.
std::vector<char> upper(std::vector<char> data) {
    for (auto& c : data)
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    return data;
}

/// Reads the auth relay's `challenge: NONCE` line and returns the nonce.
asio::awaitable<std::string> read_challenge(tcp::socket& socket) {
    std::string line;
    auto n = co_await asio::async_read_until(socket, asio::dynamic_buffer(line, 256), '\n',
                                             asio::use_awaitable);
    CHECK(n == line.size()); // nothing more comes before the answer
    line.resize(n - 1);
    REQUIRE(line.starts_with(challenge::prefix));
    std::string nonce(challenge::nonce_of(line));
    CHECK(nonce.size() == 2 * challenge::nonce_bytes);
    CHECK(nonce.find_first_not_of("0123456789abcdef") == std::string::npos);
    co_return nonce;
}

/// Reads what is left of a socket the relay has closed: it must be nothing.
asio::awaitable<std::vector<char>> rest_of_closed(tcp::socket& socket) {
    try {
        co_return co_await read_to_eof(socket);
    } catch (const std::system_error&) {
        co_return std::vector<char>{}; // reset: it closed with our bytes unread
    }
}

// ---- basic_relay ------------------------------------------------------------------------------

asio::awaitable<void> basic_relay_relays() {
    auto relay = start_example(
        "basic_relay", {"--host", "127.0.0.1", "--port-a", "0", "--port-b", "0", "--timeout", "0"});
    auto port_a = co_await port_of(*relay, 'A');
    auto port_b = co_await port_of(*relay, 'B');
    auto a = co_await connect_to(port_a);
    auto b = co_await connect_to(port_b);
    auto from_a = pattern(71, 2u << 20);
    auto from_b = pattern(72, 1u << 20);
    auto [at_a, at_b] = co_await (send_and_receive(a, from_a) && send_and_receive(b, from_b));
    CHECK(at_b.size() == from_a.size());
    CHECK(checksum(at_b) == checksum(from_a));
    CHECK(at_a.size() == from_b.size());
    CHECK(checksum(at_a) == checksum(from_b));
    relay->signal(SIGTERM);
    CHECK(co_await exit_of(*relay) == 0);
    CHECK(relay->err().find("connection 1") != std::string::npos); // verbose
}

// ---- auth_relay -------------------------------------------------------------------------------

asio::awaitable<void> auth_relay_checks_answers() {
    const std::string secret = "correct horse";
    auto relay =
        start_example("auth_relay", {"--secret", secret, "--host", "127.0.0.1", "--port-a", "0",
                                     "--port-b", "0", "--timeout", "0", "--auth-timeout", "5"});
    auto port_a = co_await port_of(*relay, 'A');
    auto port_b = co_await port_of(*relay, 'B');

    // Two clients of A get different nonces; the right answer to one is wrong for the other.
    auto a = co_await connect_to(port_a);
    auto nonce = co_await read_challenge(a);
    {
        auto replay = co_await connect_to(port_a);
        auto other_nonce = co_await read_challenge(replay);
        CHECK(other_nonce != nonce);
        auto stale = challenge::answer(secret, nonce) + "\nnot relayed";
        co_await send_text(replay, stale, false);
        auto rest = co_await rest_of_closed(replay);
        CHECK(rest.empty()); // closed without a word
    }
    {
        auto wrong = co_await connect_to(port_b);
        auto wrong_nonce = co_await read_challenge(wrong);
        auto guess = challenge::answer("incorrect horse", wrong_nonce) + "\n";
        co_await send_text(wrong, guess, false);
        auto rest = co_await rest_of_closed(wrong);
        CHECK(rest.empty());
    }

    // The right answers; what is sent after them is relayed.
    auto from_a = challenge::answer(secret, nonce) + "\nhello from A";
    co_await send_text(a, from_a);
    auto b = co_await connect_to(port_b);
    auto nonce_b = co_await read_challenge(b);
    auto from_b = challenge::answer(secret, nonce_b) + "\r\nhello from B";
    auto [at_a, at_b] = co_await (read_to_eof(a) && (send_text(b, from_b) && read_to_eof(b)));
    CHECK(text(at_a) == "hello from B");
    CHECK(text(at_b) == "hello from A");

    relay->signal(SIGINT);
    CHECK(co_await exit_of(*relay) == 0);
    auto err = relay->err();
    CHECK(err.find("authentication of") != std::string::npos);
    CHECK(err.find(secret) == std::string::npos);
}

asio::awaitable<void> auth_relay_prints_answers() {
    const std::string nonce = "00112233445566778899aabbccddeeff";
    // Named: g++ 12 mishandles temporaries that live across a co_await.
    const std::vector<std::string> givens = {nonce, "challenge: " + nonce};
    for (const auto& given : givens) {
        auto relay = start_example("auth_relay", {"--secret", "s3cret", "--answer", given});
        CHECK(co_await exit_of(*relay) == 0);
        CHECK(relay->out() == challenge::answer("s3cret", nonce) + "\n");
    }
    // FNV-1a-64 of the empty string is its offset basis, of "a" a published test vector.
    CHECK(challenge::fnv1a_64("") == 0xcbf29ce484222325ull);
    CHECK(challenge::fnv1a_64("a") == 0xaf63dc4c8601ec8cull);
    CHECK(challenge::answer("s", "a") == fmt::format("{:016x}", challenge::fnv1a_64("sa")));
}

// ---- stats_relay ------------------------------------------------------------------------------

asio::awaitable<void> stats_relay_reports_when_done() {
    // The grace period only has to outlast connecting two sockets; the program then exits by
    // itself once it has passed and the pair has ended.
    auto relay = start_example(
        "stats_relay", {"--host", "127.0.0.1", "--port-a", "0", "--port-b", "0", "--timeout", "2"});
    auto port_a = co_await port_of(*relay, 'A');
    auto port_b = co_await port_of(*relay, 'B');
    auto a = co_await connect_to(port_a);
    auto b = co_await connect_to(port_b);
    auto from_a = pattern(91, 300000);
    auto from_b = pattern(92, 123457);
    auto [at_a, at_b] = co_await (send_and_receive(a, from_a) && send_and_receive(b, from_b));
    CHECK(checksum(at_b) == checksum(from_a));
    CHECK(checksum(at_a) == checksum(from_b));
    CHECK(co_await exit_of(*relay) == 0); // no signal: the connector is done
    auto out = relay->out();
    INFO("stdout: " << out);
    CHECK(out.find("A -> B: 300000 bytes, B -> A: 123457 bytes\n") != std::string::npos);
    CHECK(out.find("{\"sockets_created\":2,\"sockets_accepted_a\":1,\"sockets_accepted_b\":1,"
                   "\"bytes_a_to_b\":300000,\"bytes_b_to_a\":123457,\"connections_total\":1,"
                   "\"connections_open\":0,\"sessions_paired\":0,\"sessions_open\":0,"
                   "\"sessions_pending\":0,\"auth_failures\":0,\"auth_failures_a\":0,"
                   "\"auth_failures_b\":0,\"sockets_refused\":0,\"pending_a\":0,\"pending_b\":0,"
                   "\"remote_addresses\":[\"127.0.0.1\"]}\n") != std::string::npos);
}

asio::awaitable<void> stats_relay_reports_when_interrupted() {
    auto relay = start_example(
        "stats_relay", {"--host", "127.0.0.1", "--port-a", "0", "--port-b", "0", "--timeout", "0"});
    co_await port_of(*relay, 'B');
    relay->signal(SIGTERM);
    CHECK(co_await exit_of(*relay) == 0);
    CHECK(relay->out().find("\"sockets_created\":0,\"sockets_accepted_a\":0,"
                            "\"sockets_accepted_b\":0,\"bytes_a_to_b\":0") != std::string::npos);
}

// ---- transform_relay --------------------------------------------------------------------------

/// Accepts the relay's connection to B, then sends `out` and reads until end of stream.
asio::awaitable<std::vector<char>> serve_b(tcp::acceptor& target, const std::vector<char>& out) {
    auto b = co_await target.async_accept(asio::use_awaitable);
    co_return co_await send_and_receive(b, out);
}

asio::awaitable<void> transform_relay_transforms_each_way() {
    auto ex = co_await asio::this_coro::executor;
    auto target = loopback_acceptor(ex);
    const std::string key = "k3y!5"; // 5 bytes: the data lengths are not multiples of it
    auto relay = start_example("transform_relay",
                               {"--host", "127.0.0.1", "--port-a", "0", "--b",
                                fmt::format("127.0.0.1:{}", target.local_endpoint().port()),
                                "--key", key, "--timeout", "0"});
    auto port_a = co_await port_of(*relay, 'A');
    // Two clients in turn: each gets fresh transformers (the key starts again at its first byte).
    for (std::uint64_t round = 0; round < 2; ++round) {
        auto a = co_await connect_to(port_a);
        auto from_a = lines_then_binary(101 + round, 200001);
        auto from_b = lines_then_binary(111 + round, 300002);
        auto [at_a, at_b] = co_await (send_and_receive(a, from_a) && serve_b(target, from_b));
        auto want_b = xored(from_a, key);
        auto want_a = upper(xored(from_b, key));
        CHECK(at_b.size() == want_b.size());
        CHECK(checksum(at_b) == checksum(want_b));
        CHECK(at_a.size() == want_a.size());
        CHECK(checksum(at_a) == checksum(want_a));
    }
    relay->signal(SIGTERM);
    CHECK(co_await exit_of(*relay) == 0);
}

asio::awaitable<void> transform_relay_with_its_echo_server() {
    auto relay = start_example("transform_relay", {"--host", "127.0.0.1", "--port-a", "0",
                                                   "--echo-port", "0", "--timeout", "0"});
    auto port_a = co_await port_of(*relay, 'A');
    CHECK(relay->out().starts_with("echo server listening on 127.0.0.1:"));
    auto a = co_await connect_to(port_a);
    auto from_a = lines_then_binary(121, 100003);
    auto at_a = co_await send_and_receive(a, from_a);
    auto want = upper(from_a); // XOR-ed there, XOR-ed back, upper-cased
    CHECK(at_a.size() == want.size());
    CHECK(checksum(at_a) == checksum(want));
    CHECK(text(at_a).starts_with("HELLO, WORLD\nSECOND LINE\r\nMIXED CASE 123 XYZ\n"));
    CHECK(text(at_a).ends_with("\nAND A LAST LINE WITH NO END"));
    relay->signal(SIGTERM);
    CHECK(co_await exit_of(*relay) == 0);
}

// ---- all of them ------------------------------------------------------------------------------

const std::vector<std::string> example_names = {"basic_relay", "auth_relay", "stats_relay",
                                                "transform_relay"};

/// The arguments each example needs before the ones a test adds.
std::vector<std::string> base_args(const std::string& name) {
    if (name == "auth_relay") return {"--secret", "s3cret"};
    return {};
}

asio::awaitable<void> exit_status(std::string name, std::vector<std::string> args, int want,
                                  bool with_base_args = true) {
    auto all = with_base_args ? base_args(name) : std::vector<std::string>{};
    all.insert(all.end(), args.begin(), args.end());
    auto relay = start_example(name, std::move(all));
    CHECK(co_await exit_of(*relay) == want);
    if (want != 0) CHECK(!relay->err().empty());
}

asio::awaitable<void> address_in_use_exits_1(std::string name) {
    auto ex = co_await asio::this_coro::executor;
    auto taken = loopback_acceptor(ex);
    auto port = std::to_string(taken.local_endpoint().port());
    auto args = base_args(name);
    for (const char* arg : {"--host", "127.0.0.1", "--port-a"})
        args.emplace_back(arg);
    args.push_back(port);
    auto relay = start_example(name, std::move(args));
    CHECK(co_await exit_of(*relay) == 1);
    auto err = relay->err();
    CHECK(err.find("in use") != std::string::npos);
    CHECK(relay->out().empty());
}

} // namespace

TEST_CASE("basic_relay relays both ways byte for byte and exits 0 on SIGTERM", "[examples]") {
    asio::io_context io;
    run(io, basic_relay_relays(), 20s);
}

TEST_CASE("auth_relay pairs only clients that answer their own challenge", "[examples][auth]") {
    asio::io_context io;
    run(io, auth_relay_checks_answers(), 20s);
}

TEST_CASE("auth_relay --answer prints the answer the relay expects", "[examples][auth]") {
    asio::io_context io;
    run(io, auth_relay_prints_answers(), 20s);
}

TEST_CASE("stats_relay prints its stats once the connector is done", "[examples]") {
    asio::io_context io;
    run(io, stats_relay_reports_when_done(), 20s);
}

TEST_CASE("stats_relay prints its stats when interrupted", "[examples]") {
    asio::io_context io;
    run(io, stats_relay_reports_when_interrupted(), 20s);
}

TEST_CASE("transform_relay XORs A to B, and XORs back and upper-cases B to A", "[examples]") {
    asio::io_context io;
    run(io, transform_relay_transforms_each_way(), 20s);
}

TEST_CASE("transform_relay round-trips through its own echo server", "[examples]") {
    asio::io_context io;
    run(io, transform_relay_with_its_echo_server(), 20s);
}

TEST_CASE("the examples exit 0 for --help, 2 on bad arguments, 1 on an address in use",
          "[examples]") {
    for (const auto& name : example_names) {
        INFO(name);
        std::vector<std::pair<std::vector<std::string>, int>> cases = {
            {{"--help"}, 0},
            {{"--bogus"}, 2},
            {{"--port-a"}, 2},
            {{"--port-a", "65536"}, 2},
            {{"--port-a", "-1"}, 2},
            {{"--host", "not-an-address"}, 2},
            {{"--timeout", "soon"}, 2},
            {{"--timeout", "-1"}, 2},
        };
        if (name == "auth_relay") cases.push_back({{"--auth-timeout", "0"}, 2});
        if (name == "transform_relay") {
            cases.push_back({{"--b", "127.0.0.1:0"}, 2});
            cases.push_back({{"--b", "127.0.0.1:1", "--echo-port", "0"}, 2});
            cases.push_back({{"--key", ""}, 2});
        }
        for (auto& [args, want] : cases) {
            INFO(fmt::format("{}", fmt::join(args, " ")));
            asio::io_context io;
            run(io, exit_status(name, args, want), 20s);
        }
        asio::io_context io;
        run(io, address_in_use_exits_1(name), 20s);
    }
    asio::io_context io;
    run(io, exit_status("auth_relay", {"--port-a", "0"}, 2, false), 20s); // no --secret
}
