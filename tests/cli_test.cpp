// End-to-end tests of the `socket-connector` command: the real binary, driven over loopback.
#include "support/faults.hpp"
#include "support/programs.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

/// Accepts one connection on `acceptor` and echoes it back until its end of stream.
asio::awaitable<void> echo_one(tcp::acceptor& acceptor) {
    auto socket = co_await acceptor.async_accept(asio::use_awaitable);
    auto data = co_await read_to_eof(socket);
    co_await send_all(socket, data);
}

asio::awaitable<void> server_to_server_relays() {
    auto cli = start_cli({"server-to-server", "--a", "127.0.0.1:0", "--b", "127.0.0.1:0",
                          "--timeout", "0", "--stats"});
    auto port_a = co_await port_of(*cli, 'A');
    auto port_b = co_await port_of(*cli, 'B');
    auto a = co_await connect_to(port_a);
    auto b = co_await connect_to(port_b);
    auto from_a = pattern(21, 8u << 20);
    auto from_b = pattern(22, 5u << 20);
    auto [at_a, at_b] = co_await (send_and_receive(a, from_a) && send_and_receive(b, from_b));
    CHECK(checksum(at_b) == checksum(from_a));
    CHECK(checksum(at_a) == checksum(from_b));
    cli->signal(SIGTERM);
    CHECK(co_await exit_of(*cli) == 0);
    auto out = cli->out();
    CHECK(out.find(fmt::format("\"bytes_a_to_b\":{}", from_a.size())) != std::string::npos);
    CHECK(out.find(fmt::format("\"bytes_b_to_a\":{}", from_b.size())) != std::string::npos);
    CHECK(out.find("\"sockets_created\":2") != std::string::npos);
}

asio::awaitable<void> server_to_socket_multi_proxies() {
    auto ex = co_await asio::this_coro::executor;
    auto target = loopback_acceptor(ex);
    auto cli = start_cli({"server-to-socket", "--a", "127.0.0.1:0", "--b",
                          fmt::format("localhost:{}", target.local_endpoint().port()), "--multi",
                          "--timeout", "0"});
    auto port_a = co_await port_of(*cli, 'A');
    for (std::uint64_t round = 0; round < 3; ++round) {
        auto a = co_await connect_to(port_a);
        auto data = pattern(30 + round, 1u << 20);
        auto echoed = co_await (send_and_receive(a, data) && echo_one(target));
        CHECK(checksum(echoed) == checksum(data));
    }
    cli->signal(SIGINT);
    CHECK(co_await exit_of(*cli) == 0);
}

asio::awaitable<void> socket_to_server_relays() {
    auto ex = co_await asio::this_coro::executor;
    auto target = loopback_acceptor(ex);
    auto cli = start_cli({"socket-to-server", "--a",
                          fmt::format("127.0.0.1:{}", target.local_endpoint().port()), "--b",
                          "127.0.0.1:0", "--timeout", "5"});
    auto a = co_await target.async_accept(asio::use_awaitable); // the command dials A
    auto port_b = co_await port_of(*cli, 'B');
    CHECK(cli->listening_port('A') == 0); // A is not a server here
    auto b = co_await connect_to(port_b);
    auto from_a = pattern(41, 2u << 20);
    auto from_b = pattern(42, 3u << 20);
    auto [at_a, at_b] = co_await (send_and_receive(a, from_a) && send_and_receive(b, from_b));
    CHECK(checksum(at_b) == checksum(from_a));
    CHECK(checksum(at_a) == checksum(from_b));
    // Its only pair has ended: the command exits by itself.
    CHECK(co_await exit_of(*cli) == 0);
}

asio::awaitable<void> socket_to_socket_relays() {
    auto ex = co_await asio::this_coro::executor;
    auto target_a = loopback_acceptor(ex);
    auto target_b = loopback_acceptor(ex);
    auto cli = start_cli({"socket-to-socket", "--a",
                          fmt::format("127.0.0.1:{}", target_a.local_endpoint().port()), "--b",
                          fmt::format("127.0.0.1:{}", target_b.local_endpoint().port())});
    auto a = co_await target_a.async_accept(asio::use_awaitable);
    auto b = co_await target_b.async_accept(asio::use_awaitable);
    auto from_a = pattern(51, 2u << 20);
    auto from_b = pattern(52, 1u << 20);
    auto [at_a, at_b] = co_await (send_and_receive(a, from_a) && send_and_receive(b, from_b));
    CHECK(checksum(at_b) == checksum(from_a));
    CHECK(checksum(at_a) == checksum(from_b));
    CHECK(co_await exit_of(*cli) == 0);
}

asio::awaitable<void> auth_token_required() {
    auto cli = start_cli({"server-to-server", "--a", "127.0.0.1:0", "--b", "127.0.0.1:0",
                          "--auth-a", "s3cret", "--auth-timeout", "2", "--timeout", "0"});
    auto port_a = co_await port_of(*cli, 'A');
    auto port_b = co_await port_of(*cli, 'B');
    {
        auto wrong = co_await connect_to(port_a);
        co_await send_text(wrong, "guess\nignored", false);
        std::vector<char> rest;
        try {
            rest = co_await read_to_eof(wrong);
        } catch (const std::system_error&) {
        }
        CHECK(rest.empty()); // closed without a word
    }
    auto a = co_await connect_to(port_a);
    co_await send_text(a, "s3cret\r\nhello from A");
    auto b = co_await connect_to(port_b);
    auto got = co_await read_to_eof(b);
    CHECK(text(got) == "hello from A");
    cli->signal(SIGTERM);
    CHECK(co_await exit_of(*cli) == 0);
    CHECK(cli->err().find("s3cret") == std::string::npos);
}

asio::awaitable<void> grace_timeout_exits() {
    auto cli = start_cli(
        {"server-to-server", "--a", "127.0.0.1:0", "--b", "127.0.0.1:0", "--timeout", "0.3"});
    CHECK(co_await exit_of(*cli) == 0);
}

asio::awaitable<void> address_in_use_fails() {
    auto ex = co_await asio::this_coro::executor;
    auto taken = loopback_acceptor(ex);
    auto cli = start_cli({"server-to-server", "--a",
                          fmt::format("127.0.0.1:{}", taken.local_endpoint().port()), "--b",
                          "127.0.0.1:0"});
    CHECK(co_await exit_of(*cli) == 1);
    auto err = cli->err();
    CHECK(err.find("in use") != std::string::npos);
    CHECK(std::count(err.begin(), err.end(), '\n') == 1);
}

asio::awaitable<void> connection_refused_fails() {
    auto ex = co_await asio::this_coro::executor;
    unsigned short closed_port = 0;
    {
        auto probe = loopback_acceptor(ex);
        closed_port = probe.local_endpoint().port();
    }
    auto cli = start_cli({"socket-to-server", "--a", fmt::format("127.0.0.1:{}", closed_port),
                          "--b", "127.0.0.1:0"});
    CHECK(co_await exit_of(*cli) == 1);
    CHECK(cli->err().find("refused") != std::string::npos);
}

asio::awaitable<void> bad_arguments_exit_2(std::vector<std::string> args) {
    auto cli = start_cli(std::move(args));
    CHECK(co_await exit_of(*cli) == 2);
    // The reason, then a hint: two lines, not the whole usage (it would scroll the reason off).
    const auto err = cli->err();
    INFO("stderr: " << err);
    CHECK(err.starts_with("socket-connector: "));
    CHECK(
        err.ends_with("\nsocket-connector: try 'socket-connector --help' for more information\n"));
    CHECK(std::count(err.begin(), err.end(), '\n') == 2);
    CHECK(cli->out().empty());
}

asio::awaitable<void> help_exits_0(std::string flag) {
    auto cli = start_cli({flag});
    CHECK(co_await exit_of(*cli) == 0);
    CHECK(cli->out().starts_with("usage: socket-connector MODE"));
    CHECK(cli->err().empty());
}

asio::awaitable<void> version_exits_0() {
    auto cli = start_cli({"--version"});
    CHECK(co_await exit_of(*cli) == 0);
    CHECK(cli->out() == fmt::format("socket-connector {}\n", sc::version));
}

/// A relay nobody connects to says, without --verbose, that it will close, and then that it did.
asio::awaitable<void> idle_relay_says_why_it_closes() {
    auto cli = start_cli(
        {"server-to-server", "--a", "127.0.0.1:0", "--b", "127.0.0.1:0", "--timeout", "0.3"});
    CHECK(co_await exit_of(*cli) == 0);
    INFO("stderr: " << cli->err());
    CHECK(cli->err() ==
          "socket-connector: closes once 0.3 s have passed and no pair is open (--timeout 0 "
          "serves until a signal)\n"
          "socket-connector: no pair formed within the 0.3 s grace period; closed (--timeout 0 "
          "serves until a signal)\n");
}

/// Both sides on one port: B's failure says that A holds it.
asio::awaitable<void> same_port_names_the_holder() {
    auto ex = co_await asio::this_coro::executor;
    unsigned short port = 0;
    {
        auto probe = loopback_acceptor(ex);
        port = probe.local_endpoint().port();
    }
    auto address = fmt::format("127.0.0.1:{}", port);
    auto cli = start_cli({"server-to-server", "--a", address, "--b", address});
    CHECK(co_await exit_of(*cli) == 1);
    CHECK(cli->err() == fmt::format("socket-connector: start-up failed: bind B to {} (side A holds "
                                    "that port): Address already in use\n",
                                    address));
}

/// A connect that gets no answer (a listener whose backlog is full drops SYNs) names the option
/// that bounds it.
asio::awaitable<void> connect_timeout_names_the_option() {
    auto ex = co_await asio::this_coro::executor;
    tcp::acceptor target(ex);
    target.open(tcp::v4());
    target.bind(loopback(0));
    target.listen(0);
    std::vector<tcp::socket> fillers;
    REQUIRE(co_await fill_backlog(target, fillers));
    auto address = fmt::format("127.0.0.1:{}", target.local_endpoint().port());
    auto cli = start_cli(
        {"socket-to-server", "--a", address, "--b", "127.0.0.1:0", "--connect-timeout", "0.5"});
    CHECK(co_await exit_of(*cli) == 1);
    INFO("stderr: " << cli->err());
    CHECK(cli->err().starts_with(fmt::format(
        "socket-connector: start-up failed: connect A to {}: no answer within 500 ms", address)));
    CHECK(cli->err().ends_with(" (allow longer with --connect-timeout SECS; now 0.5)\n"));
}

/// --auth-a on a side the command dials: the peer it reaches must send the token line first.
/// With the right token what follows is relayed (the token is not); with a wrong one nothing
/// reaches B, the log names the peer but never the token, and the command closes.
asio::awaitable<void> dialed_side_token(bool right) {
    auto ex = co_await asio::this_coro::executor;
    auto service = loopback_acceptor(ex);
    auto cli = start_cli({"socket-to-server", "--a",
                          fmt::format("127.0.0.1:{}", service.local_endpoint().port()), "--b",
                          "127.0.0.1:0", "--auth-a", "s3cret", "--timeout", "0", "--stats"});
    auto a = co_await service.async_accept(asio::use_awaitable);
    auto port_b = co_await started_port(*cli, 'B');
    auto b = co_await connect_to(port_b);
    co_await send_text(a, right ? "s3cret\n" : "wrong\nsecret data", false);
    if (right) {
        auto from_a = pattern(71, 1u << 20);
        auto from_b = pattern(72, 300000);
        auto [at_a, at_b] = co_await (send_and_receive(a, from_a) && send_and_receive(b, from_b));
        CHECK(at_b.size() == from_a.size());
        CHECK(checksum(at_b) == checksum(from_a));
        CHECK(checksum(at_a) == checksum(from_b));
    } else {
        // B is closed (by an end of stream, or a reset if the listener closed before accepting
        // it), having received nothing.
        close_watch at_b;
        co_await watch_until_closed(b, at_b);
        CHECK(at_b.received == 0);
    }
    CHECK(co_await exit_of(*cli) == 0); // its only pair is done, or its A failed
    INFO("stderr: " << cli->err());
    auto json = stats_line(cli->out());
    if (right) {
        CHECK(stats_field(json, "bytes_a_to_b") == static_cast<long long>(1u << 20));
    } else {
        CHECK(cli->err().find("authentication of 127.0.0.1:") != std::string::npos);
        CHECK(cli->err().find("s3cret") == std::string::npos);
        CHECK(stats_field(json, "auth_failures") == 1);
    }
}

std::string temp_file(const char* name) {
    return (std::filesystem::temp_directory_path() /
            fmt::format("sc-cli-{}-{}", name, static_cast<long>(::getpid())))
        .string();
}

asio::awaitable<void> ncat_clients(std::string in_path, std::string out_path) {
    auto cli = start_cli({"server-to-server", "--a", "127.0.0.1:0", "--b", "127.0.0.1:0",
                          "--timeout", "0", "--stats"});
    auto port_a = co_await port_of(*cli, 'A');
    auto port_b = co_await port_of(*cli, 'B');
    // A sends a file and ends its stream; B only receives, and stops at the relayed EOF.
    auto receiver = std::make_unique<child_process>(
        std::vector<std::string>{"ncat", "--recv-only", "127.0.0.1", std::to_string(port_b)});
    auto sender = std::make_unique<child_process>(
        std::vector<std::string>{"ncat", "--send-only", "127.0.0.1", std::to_string(port_a)},
        in_path);
    CHECK(co_await exit_of(*sender) == 0);
    CHECK(co_await exit_of(*receiver) == 0);
    std::ofstream(out_path, std::ios::binary) << receiver->out();
    cli->signal(SIGTERM);
    CHECK(co_await exit_of(*cli) == 0);
}

} // namespace

TEST_CASE("the command relays server to server and reports stats", "[cli]") {
    asio::io_context io;
    run(io, server_to_server_relays(), 60s);
}

TEST_CASE("the command proxies server to socket with --multi", "[cli]") {
    asio::io_context io;
    run(io, server_to_socket_multi_proxies(), 60s);
}

TEST_CASE("the command relays socket to server and exits after its pair", "[cli]") {
    asio::io_context io;
    run(io, socket_to_server_relays(), 60s);
}

TEST_CASE("the command relays socket to socket", "[cli]") {
    asio::io_context io;
    run(io, socket_to_socket_relays(), 60s);
}

TEST_CASE("the command requires the auth token and never logs it", "[cli][auth]") {
    asio::io_context io;
    run(io, auth_token_required());
}

TEST_CASE("the command exits 0 when the grace period passes", "[cli]") {
    asio::io_context io;
    run(io, grace_timeout_exits());
}

TEST_CASE("the command exits 1 with one line when the address is in use", "[cli]") {
    asio::io_context io;
    run(io, address_in_use_fails());
}

TEST_CASE("the command exits 1 when the connection is refused", "[cli]") {
    asio::io_context io;
    run(io, connection_refused_fails());
}

TEST_CASE("the command exits 2 on bad arguments", "[cli]") {
    std::vector<std::vector<std::string>> cases = {
        {},
        {"sideways", "--a", ":1", "--b", ":2"},
        {"server-to-server", "--a", ":1"},
        {"server-to-server", "--a", "nonsense", "--b", ":2"},
        {"server-to-server", "--a", ":99999", "--b", ":2"},
        {"server-to-server", "--a", ":1", "--b", ":2", "--timeout", "-1"},
        {"server-to-server", "--a", ":1", "--b", ":2", "--keepalive", "1,2"},
        {"server-to-server", "--a", ":1", "--b", ":2", "--bogus"},
        {"server-to-server", "--a", ":1", "--b", ":2", "--multi"},
        {"server-to-server", "--a", ":1", "--b", ":2", "--threads", "0"},
    };
    for (auto& args : cases) {
        INFO("args: " << fmt::format("{}", fmt::join(args, " ")));
        asio::io_context io;
        run(io, bad_arguments_exit_2(args));
    }
}

TEST_CASE("the command prints usage for --help and -h, and its version", "[cli]") {
    for (std::string flag : {"--help", "-h"}) {
        asio::io_context io;
        run(io, help_exits_0(flag));
    }
    asio::io_context io;
    run(io, version_exits_0());
}

TEST_CASE("an idle relay says it closes after the grace period, and then that it did", "[cli]") {
    asio::io_context io;
    run(io, idle_relay_says_why_it_closes());
}

TEST_CASE("the command names side A when B cannot bind A's port", "[cli]") {
    asio::io_context io;
    run(io, same_port_names_the_holder());
}

TEST_CASE("a connect that times out names --connect-timeout", "[cli]") {
    asio::io_context io;
    run(io, connect_timeout_names_the_option());
}

TEST_CASE("the command's auth token on a side it dials: the peer must send it first",
          "[cli][auth]") {
    for (bool right : {true, false}) {
        INFO((right ? "the right token" : "a wrong token"));
        asio::io_context io;
        run(io, dialed_side_token(right));
    }
}

TEST_CASE("real ncat clients relay a file through the command byte for byte", "[cli][ncat]") {
    if (std::system("command -v ncat >/dev/null 2>&1") != 0) {
        WARN("ncat is not installed: scripts/test installs it");
        FAIL("ncat missing");
    }
    auto in_path = temp_file("in");
    auto out_path = temp_file("out");
    auto data = pattern(61, 3u << 20);
    std::ofstream(in_path, std::ios::binary)
        .write(data.data(), static_cast<std::streamsize>(data.size()));
    {
        asio::io_context io;
        run(io, ncat_clients(in_path, out_path), 60s);
    }
    std::ifstream in(out_path, std::ios::binary);
    std::vector<char> got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(got.size() == data.size());
    CHECK(checksum(got) == checksum(data));
    std::filesystem::remove(in_path);
    std::filesystem::remove(out_path);
}
