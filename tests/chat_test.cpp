// The chat example: unit tests of its framing, text cleaning and command parsing, and end-to-end
// tests of the real chat_server and chat_client binaries (and real ncat clients) over loopback.
#include "../examples/chat_protocol.hpp"

#include "support/chat.hpp"
#include "support/net.hpp"
#include "support/process.hpp"

#include <filesystem>
#include <fstream>
#include <regex>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace test_support;

#ifndef SOCKET_CONNECTOR_CLI
#error "SOCKET_CONNECTOR_CLI must name the socket-connector binary (chat_server is beside it)"
#endif

namespace {

using lines = std::vector<std::string>;

// ---------------------------------------------------------------------------------------------
// Unit tests' helpers

std::span<const char> bytes(std::string_view s) {
    return {s.data(), s.size()};
}

chat::framed_line line_of(std::string text) {
    return {std::move(text), false};
}
const chat::framed_line too_long{{}, true};

/// Everything `framer` makes of `pieces`, fed one after the other, then finished.
std::vector<chat::framed_line> frame(chat::line_framer& framer,
                                     const std::vector<std::string>& pieces) {
    std::vector<chat::framed_line> out;
    for (auto& piece : pieces) {
        auto got = framer.feed(bytes(piece));
        out.insert(out.end(), got.begin(), got.end());
    }
    if (auto last = framer.finish()) out.push_back(*last);
    return out;
}

std::vector<chat::framed_line> frame(const std::vector<std::string>& pieces, std::size_t max = 8) {
    chat::line_framer framer(max);
    return frame(framer, pieces);
}

// ---------------------------------------------------------------------------------------------
// End-to-end helpers

std::string chat_binary(const char* name) {
    return (std::filesystem::path(SOCKET_CONNECTOR_CLI).parent_path() / name).string();
}

// Held by pointer: its reader threads keep its address.
std::unique_ptr<child_process> start_server(std::vector<std::string> args = {"--bind", "127.0.0.1",
                                                                             "--port", "0"}) {
    args.insert(args.begin(), chat_binary("chat_server"));
    return std::make_unique<child_process>(std::move(args));
}

std::unique_ptr<child_process> start_client(std::vector<std::string> args,
                                            std::string stdin_path = "/dev/null") {
    args.insert(args.begin(), chat_binary("chat_client"));
    return std::make_unique<child_process>(std::move(args), std::move(stdin_path));
}

/// The port in the server's `chat server listening on HOST:PORT` line, or 0 if none yet.
unsigned short listening_port(child_process& server) {
    std::smatch m;
    std::string out = server.out();
    static const std::regex line(R"(chat server listening on .*:(\d+)\n)");
    if (!std::regex_search(out, m, line)) return 0;
    return static_cast<unsigned short>(std::stoi(m[1].str()));
}

/// Waits for the server's listening line and returns the port.
asio::awaitable<unsigned short> port_of(child_process& server) {
    bool listening = co_await eventually([&] { return listening_port(server) != 0; });
    INFO("stdout: " << server.out() << "\nstderr: " << server.err());
    REQUIRE(listening);
    co_return listening_port(server);
}

/// Waits (bounded) for a process to exit and returns its exit code.
asio::awaitable<int> exit_of(child_process& process, std::chrono::milliseconds limit = 10s) {
    bool exited = co_await eventually([&] { return process.exit_code().has_value(); }, limit);
    INFO("stdout: " << process.out() << "\nstderr: " << process.err());
    REQUIRE(exited);
    co_return *process.exit_code();
}

bool contains(const std::string& text, std::string_view part) {
    return text.find(part) != std::string::npos;
}

/// A file in the temporary directory, unique to this test process; removed when dropped.
struct temp_file {
    explicit temp_file(const char* name)
        : path((std::filesystem::temp_directory_path() /
                fmt::format("sc-chat-{}-{}", name, static_cast<long>(::getpid())))
                   .string()) {}
    temp_file(const temp_file&) = delete;
    temp_file& operator=(const temp_file&) = delete;
    ~temp_file() {
        std::error_code ignored;
        std::filesystem::remove(path, ignored);
    }
    void write(std::string_view text) const {
        std::ofstream(path, std::ios::binary)
            .write(text.data(), static_cast<std::streamsize>(text.size()));
    }
    std::string path;
};

/// Closes a file descriptor when dropped.
struct fd_guard {
    explicit fd_guard(int descriptor)
        : fd(descriptor) {}
    fd_guard(const fd_guard&) = delete;
    fd_guard& operator=(const fd_guard&) = delete;
    ~fd_guard() {
        if (fd >= 0) ::close(fd);
    }
    int fd;
};

// ---------------------------------------------------------------------------------------------
// End-to-end tests (each a coroutine, run by a TEST_CASE below with a deadline)

asio::awaitable<void> welcome_counts_the_others() {
    auto server = start_server();
    auto port = co_await port_of(*server);
    auto a = co_await chat_peer::connect(port);
    auto welcome = co_await a->read_until("* Welcome");
    CHECK(contains(welcome.back(), "There are 0 other clients"));
    CHECK(contains(welcome.back(), "/help"));
    auto b = co_await chat_peer::connect(port);
    auto b_line = co_await b->line_with("* Welcome");
    CHECK(contains(b_line, "There are 1 other clients"));
    auto c = co_await chat_peer::connect(port);
    auto c_line = co_await c->line_with("* Welcome");
    CHECK(contains(c_line, "There are 2 other clients"));

    std::string a_left = fmt::format("* {} left", a->address());
    co_await a->say("/quit");
    co_await a->read_until("* Bye");
    CHECK(co_await a->closed());
    co_await b->read_until(a_left);
    auto d = co_await chat_peer::connect(port);
    auto d_line = co_await d->line_with("* Welcome");
    CHECK(contains(d_line, "There are 2 other clients"));
    CHECK_FALSE(server->exit_code());
}

asio::awaitable<void> lines_fan_out_to_the_others_only() {
    auto server = start_server();
    auto port = co_await port_of(*server);
    auto alice = co_await join_chat(port, "alice");
    auto bob = co_await join_chat(port, "bob");
    auto carol = co_await join_chat(port, "carol");
    co_await alice->say("hello everyone");
    auto bob_line = co_await bob->line_with("hello everyone");
    CHECK(bob_line == "alice: hello everyone");
    auto carol_line = co_await carol->line_with("hello everyone");
    CHECK(carol_line == "alice: hello everyone");
    // bob answers only after the server has handled alice's line: an echo to alice would
    // reach her before this answer.
    co_await bob->say("ack");
    auto seen = co_await alice->read_until("bob: ack");
    CHECK_FALSE(any_contains(seen, "hello everyone"));
}

asio::awaitable<void> framing_ignores_segments() {
    auto server = start_server();
    auto port = co_await port_of(*server);
    auto alice = co_await join_chat(port, "alice");
    auto bob = co_await join_chat(port, "bob");
    // One line in four writes (paced so they leave as separate segments), the CRLF split too.
    for (std::string_view piece : {"hel", "lo wor", "ld\r", "\n"}) {
        co_await alice->send(piece);
        co_await pause(15ms);
    }
    co_await alice->send("one\ntwo\r\nthree\n"); // three lines in one write
    co_await alice->say("end");
    auto seen = co_await bob->read_until("alice: end");
    CHECK(starting_with(seen, "alice: ") ==
          lines{"alice: hello world", "alice: one", "alice: two", "alice: three", "alice: end"});
}

asio::awaitable<void> nick_renames_and_refuses() {
    auto server = start_server();
    auto port = co_await port_of(*server);
    auto alice = co_await join_chat(port, "alice");
    auto bob = co_await join_chat(port, "bob");
    auto newcomer = co_await chat_peer::connect(port);
    co_await newcomer->read_until("* Welcome");
    auto address = newcomer->address();

    co_await newcomer->say("/nick alice");
    auto newcomer_line = co_await newcomer->line_with("!");
    CHECK(newcomer_line == "! the name alice is taken");
    co_await newcomer->say("/nick ALICE"); // names are unique ignoring case
    auto newcomer_line2 = co_await newcomer->line_with("!");
    CHECK(contains(newcomer_line2, "is taken"));
    co_await newcomer->say("/nick two words");
    auto newcomer_line3 = co_await newcomer->line_with("!");
    CHECK(newcomer_line3 == "! usage: /nick NAME");
    co_await newcomer->say("/nick bad:name");
    auto newcomer_line4 = co_await newcomer->line_with("!");
    CHECK(contains(newcomer_line4, "! invalid name bad:name"));

    co_await newcomer->say("/nick carol");
    co_await newcomer->read_until("* you are now carol");
    std::string renamed = fmt::format("* {} is now carol", address);
    co_await alice->read_until(renamed);
    co_await bob->read_until(renamed);
    co_await newcomer->say("hi");
    auto bob_line = co_await bob->line_with("hi");
    CHECK(bob_line == "carol: hi");
    // The old name is free again, the new one is taken.
    co_await bob->say("/nick carol");
    auto bob_line2 = co_await bob->line_with("!");
    CHECK(contains(bob_line2, "is taken"));
}

asio::awaitable<void> msg_reaches_only_its_target() {
    auto server = start_server();
    auto port = co_await port_of(*server);
    auto alice = co_await join_chat(port, "alice");
    auto bob = co_await join_chat(port, "bob");
    auto carol = co_await join_chat(port, "carol");
    co_await alice->say("/msg bob psst, a secret");
    auto bob_line = co_await bob->line_with("psst");
    CHECK(bob_line == "[private] alice: psst, a secret");
    co_await alice->say("/msg nobody hello");
    auto alice_line = co_await alice->line_with("!");
    CHECK(alice_line == "! no one is called nobody");
    co_await alice->say("/msg bob");
    auto alice_line2 = co_await alice->line_with("!");
    CHECK(alice_line2 == "! usage: /msg NAME TEXT");
    co_await alice->say("public now");
    auto carol_saw = co_await carol->read_until("alice: public now");
    CHECK_FALSE(any_contains(carol_saw, "psst"));
    auto bob_saw = co_await bob->read_until("alice: public now");
    CHECK_FALSE(any_contains(bob_saw, "psst")); // once only
}

asio::awaitable<void> rooms_are_isolated() {
    auto server = start_server();
    auto port = co_await port_of(*server);
    auto alice = co_await join_chat(port, "alice");
    auto bob = co_await join_chat(port, "bob");
    auto carol = co_await join_chat(port, "carol");

    co_await bob->say("/join dev");
    auto bob_line = co_await bob->line_with("* you are now in");
    CHECK(bob_line == "* you are now in dev, with 0 others");
    co_await alice->read_until("* bob left");
    co_await carol->read_until("* bob left");
    co_await carol->say("/join dev");
    co_await carol->read_until("* you are now in dev, with 1 others");
    co_await bob->read_until("* carol joined");
    co_await alice->read_until("* carol left");

    co_await alice->say("lobby only");
    co_await alice->say("/who"); // its answer means the line above was handled
    auto alice_line = co_await alice->line_with("* in ");
    CHECK(alice_line == "* in lobby: alice (you)");
    co_await bob->say("dev only");
    auto carol_saw = co_await carol->read_until("bob: dev only");
    CHECK_FALSE(any_contains(carol_saw, "lobby only"));
    co_await alice->say("/rooms");
    auto alice_saw = co_await alice->read_until("* rooms:");
    CHECK(alice_saw.back() == "* rooms: dev (2), lobby (1)");
    CHECK_FALSE(any_contains(alice_saw, "dev only"));
    co_await carol->say("/who");
    auto carol_line = co_await carol->line_with("* in ");
    CHECK(carol_line == "* in dev: bob, carol (you)");
    co_await carol->say("/join bad room");
    auto carol_line2 = co_await carol->line_with("!");
    CHECK(carol_line2 == "! usage: /join ROOM");
    co_await carol->say("/join lobby");
    co_await alice->read_until("* carol joined");
    co_await bob->read_until("* carol left");
}

asio::awaitable<void> unknown_commands_get_an_error() {
    auto server = start_server();
    auto port = co_await port_of(*server);
    auto alice = co_await join_chat(port, "alice");
    auto bob = co_await join_chat(port, "bob");
    co_await alice->say("/frobnicate now");
    auto alice_line = co_await alice->line_with("!");
    CHECK(alice_line == "! unknown command /frobnicate; type /help for the commands");
    co_await alice->say("/help");
    auto help = co_await alice->read_until("/quit");
    CHECK(any_contains(help, "/msg NAME TEXT"));
    CHECK(any_contains(help, "/join ROOM"));
    co_await alice->say("after");
    auto bob_saw = co_await bob->read_until("alice: after");
    CHECK_FALSE(any_contains(bob_saw, "frobnicate"));
    CHECK_FALSE(any_contains(bob_saw, "Commands"));
}

asio::awaitable<void> long_lines_are_refused() {
    auto server = start_server();
    auto port = co_await port_of(*server);
    auto alice = co_await join_chat(port, "alice");
    auto bob = co_await join_chat(port, "bob");
    // 5000 bytes in two writes, then more after the limit up to the LF: none of it may pass.
    std::string head(3000, 'x');
    std::string rest = std::string(2000, 'x') + "TAIL-AFTER-LIMIT\n";
    co_await alice->send(head);
    co_await alice->send(rest);
    auto refusal = co_await alice->line_with("!");
    CHECK(refusal.starts_with("! line too long"));
    std::string longest(chat::max_line, 'y'); // exactly the limit passes
    co_await alice->say(longest);
    co_await alice->say("still here");
    auto bob_saw = co_await bob->read_until("alice: still here");
    CHECK_FALSE(any_contains(bob_saw, "xxx"));
    CHECK_FALSE(any_contains(bob_saw, "TAIL"));
    CHECK(starting_with(bob_saw, "alice: ") == lines{"alice: " + longest, "alice: still here"});
    CHECK_FALSE(server->exit_code());
}

struct flood_state {
    std::size_t sent = 0;     // flood lines written by the flooder
    std::size_t received = 0; // flood lines read by the good reader
    bool slow_left = false;
};

/// Sends batches of 4 KB lines, never more than ~512 KB ahead of the good reader, until the slow
/// client has been dropped (bounded: 64 MiB); then one last line.
asio::awaitable<void> flood(chat_peer& flooder, flood_state& state) {
    constexpr std::size_t per_batch = 64;
    constexpr std::size_t max_lines = 16 * 1024;
    std::string line = std::string(3999, 'z') + "\n";
    std::string batch;
    for (std::size_t i = 0; i < per_batch; ++i)
        batch += line;
    while (!state.slow_left && state.sent < max_lines) {
        co_await flooder.send(batch);
        state.sent += per_batch;
        bool caught_up = co_await eventually(
            [&] { return state.slow_left || state.received + 2 * per_batch >= state.sent; });
        REQUIRE(caught_up);
    }
    REQUIRE(state.slow_left);
    co_await flooder.say("final");
}

/// Reads every line the flooder sends, noting when the slow client leaves.
asio::awaitable<void> read_flood(chat_peer& reader, flood_state& state) {
    for (;;) {
        auto line = co_await reader.next_line(10s);
        REQUIRE(line);
        if (line->starts_with("flood: zzz"))
            ++state.received;
        else if (*line == "* slow left")
            state.slow_left = true;
        else if (*line == "flood: final")
            break;
    }
}

asio::awaitable<void> slow_readers_are_dropped() {
    auto server = start_server();
    auto port = co_await port_of(*server);
    auto good = co_await join_chat(port, "good");
    auto flooder = co_await join_chat(port, "flood");
    auto slow = co_await chat_peer::connect(port, 4096); // never reads from here on
    co_await slow->say("/nick slow");
    co_await good->read_until("is now slow");

    using namespace asio::experimental::awaitable_operators;
    flood_state state;
    auto started = std::chrono::steady_clock::now();
    co_await (flood(*flooder, state) && read_flood(*good, state));
    INFO("flood lines sent: " << state.sent);
    CHECK(state.received == state.sent); // the good reader lost nothing
    CHECK(std::chrono::steady_clock::now() - started < 10s);
    CHECK(co_await slow->closed(10s));
    CHECK(slow->received() < state.sent * 4000);
    bool logged = co_await eventually([&] { return contains(server->err(), "slow dropped"); });
    CHECK(logged);
    CHECK_FALSE(server->exit_code());
}

asio::awaitable<void> resets_are_announced() {
    auto server = start_server();
    auto port = co_await port_of(*server);
    auto alice = co_await join_chat(port, "alice");
    auto bob = co_await join_chat(port, "bob");
    auto carol = co_await join_chat(port, "carol");
    carol->socket().set_option(asio::socket_base::linger(true, 0));
    carol->socket().close(); // linger 0: a reset, not a FIN
    co_await alice->read_until("* carol left");
    co_await bob->read_until("* carol left");
    co_await bob->say("still talking");
    co_await alice->read_until("bob: still talking");
    bool logged =
        co_await eventually([&] { return contains(server->err(), "carol connection reset"); });
    INFO("stderr: " << server->err());
    CHECK(logged);
    CHECK_FALSE(server->exit_code());
}

asio::awaitable<void> odd_bytes_are_harmless() {
    auto server = start_server();
    auto port = co_await port_of(*server);
    auto alice = co_await join_chat(port, "alice");
    auto bob = co_await join_chat(port, "bob");
    using namespace std::string_literals;
    // Telnet negotiation (IAC DO TTYPE, IAC WILL ECHO), a NUL, invalid UTF-8, an ANSI escape.
    std::string odd = "\xff\xfd\x18"s + "\xff\xfb\x01"s + "he"s + '\0' + "llo "s + "\xc3("s +
                      " caf\xc3\xa9 "s + "\xf0\x9f\x98\x80"s + " \x1b[31mred\x1b[0m"s + "\xff\n"s;
    co_await alice->send(odd);
    auto bob_line = co_await bob->line_with("alice: ");
    CHECK(bob_line == "alice: hello \xef\xbf\xbd( caf\xc3\xa9 \xf0\x9f\x98\x80 [31mred[0m");
    std::string nothing =
        "\xff\xf4\xff\xfd\x06\r\n"s + std::string(3, '\0') + "\n"s; // IAC IP, IAC DO TM; NULs
    co_await alice->send(nothing);
    std::string bad_nick = "/nick caf\xc3\n"s + "/nick \xff\xfa\x18\x01\xff\xf0\n"s;
    co_await alice->send(bad_nick);
    auto alice_line = co_await alice->line_with("!");
    CHECK(contains(alice_line, "! invalid name caf\xef\xbf\xbd"));
    auto alice_line2 = co_await alice->line_with("!");
    CHECK(alice_line2 == "! usage: /nick NAME");
    co_await alice->say("still fine");
    auto bob_saw = co_await bob->read_until("alice: still fine");
    CHECK(starting_with(bob_saw, "alice") ==
          lines{"alice: still fine"}); // the empty lines vanished
    CHECK_FALSE(server->exit_code());
}

asio::awaitable<void> sigterm_closes_clients() {
    auto server = start_server();
    auto port = co_await port_of(*server);
    auto alice = co_await join_chat(port, "alice");
    auto bob = co_await join_chat(port, "bob");
    server->signal(SIGTERM);
    co_await alice->read_until("* the server is closing");
    co_await bob->read_until("* the server is closing");
    CHECK(co_await alice->closed());
    CHECK(co_await bob->closed());
    CHECK(co_await exit_of(*server) == 0);
}

asio::awaitable<void> server_exit_codes() {
    std::vector<std::vector<std::string>> bad = {
        {"--port", "x"}, {"--port", "70000"},      {"--port"}, {"--bind", "nowhere"}, {"--bogus"},
        {"extra"},       {"--port=1", "--port=2"},
    };
    for (auto& args : bad) {
        INFO("args: " << fmt::format("{}", fmt::join(args, " ")));
        auto server = start_server(args);
        CHECK(co_await exit_of(*server) == 2);
        CHECK(
            contains(server->err(), "chat_server: try 'chat_server --help' for more information"));
    }
    auto help = start_server({"--help"});
    CHECK(co_await exit_of(*help) == 0);
    CHECK(contains(help->out(), "usage: chat_server"));

    auto ex = co_await asio::this_coro::executor;
    tcp::acceptor taken(ex, {asio::ip::address_v4::loopback(), 0});
    auto busy = start_server(
        {"--bind", "127.0.0.1", "--port", std::to_string(taken.local_endpoint().port())});
    CHECK(co_await exit_of(*busy) == 1);
    auto err = busy->err();
    CHECK(contains(err, "in use"));
    CHECK(std::count(err.begin(), err.end(), '\n') == 1);
}

asio::awaitable<void> client_sends_a_pipe(std::string script) {
    auto server = start_server();
    auto port = co_await port_of(*server);
    auto watcher = co_await join_chat(port, "watcher");
    // sh makes stdin a real pipe (the stream_descriptor path).
    auto client = std::make_unique<child_process>(
        std::vector<std::string>{"/bin/sh", "-c",
                                 fmt::format("cat '{}' | exec '{}' 127.0.0.1 {}", script,
                                             chat_binary("chat_client"), port)});
    auto seen = co_await watcher->read_until("* piper left");
    CHECK(starting_with(seen, "piper: ") ==
          lines{"piper: hello from a pipe", "piper: second line"});
    CHECK(co_await exit_of(*client) == 0);
    CHECK(contains(client->out(), "There are 1 other clients"));
    CHECK(contains(client->out(), "* you are now piper"));
}

asio::awaitable<void> client_sends_a_file(std::string script) {
    auto server = start_server();
    auto port = co_await port_of(*server);
    auto watcher = co_await join_chat(port, "watcher");
    // A regular file on stdin: read on the client's thread.
    auto client = start_client({"127.0.0.1", std::to_string(port)}, script);
    auto seen = co_await watcher->read_until("* filer left");
    CHECK(starting_with(seen, "filer: ") ==
          lines{"filer: from a file", "filer: no newline at the end"});
    CHECK(co_await exit_of(*client) == 0);
    CHECK(contains(client->out(), "* you are now filer"));
}

asio::awaitable<void> client_chats_live(std::string fifo) {
    auto server = start_server();
    auto port = co_await port_of(*server);
    auto watcher = co_await join_chat(port, "watcher");
    // Open for reading and writing, so neither side's open waits for the other.
    fd_guard input{::open(fifo.c_str(), O_RDWR | O_CLOEXEC)};
    REQUIRE(input.fd >= 0);
    auto client = start_client({"127.0.0.1", std::to_string(port)}, fifo);
    co_await watcher->read_until("joined");
    std::string typed = "/nick live\n";
    REQUIRE(::write(input.fd, typed.data(), typed.size()) == static_cast<ssize_t>(typed.size()));
    co_await watcher->read_until("is now live");
    co_await watcher->say("hello live");
    bool printed =
        co_await eventually([&] { return contains(client->out(), "watcher: hello live"); });
    CHECK(printed); // printed as it arrives, stdin still open
    server->signal(SIGTERM);
    CHECK(co_await exit_of(*client) == 0); // the server closed it
    CHECK(contains(client->out(), "* the server is closing"));
    CHECK(co_await watcher->closed());
    CHECK(co_await exit_of(*server) == 0);
}

asio::awaitable<void> client_cannot_connect() {
    auto ex = co_await asio::this_coro::executor;
    unsigned short closed_port = 0;
    {
        tcp::acceptor probe(ex, {asio::ip::address_v4::loopback(), 0});
        closed_port = probe.local_endpoint().port();
    }
    auto client = start_client({"127.0.0.1", std::to_string(closed_port)});
    CHECK(co_await exit_of(*client) == 1);
    CHECK(client->err().starts_with("Unable to connect: "));
    CHECK(contains(client->err(), "refused"));

    std::vector<std::vector<std::string>> bad = {
        {"localhost", "0"}, {"localhost", "x"}, {"a", "1", "extra"}, {"--bogus"}};
    for (auto& args : bad) {
        INFO("args: " << fmt::format("{}", fmt::join(args, " ")));
        auto wrong = start_client(args);
        CHECK(co_await exit_of(*wrong) == 2);
        CHECK(contains(wrong->err(), "chat_client: try 'chat_client --help' for more information"));
    }
}

asio::awaitable<void> ncat_clients_chat(std::string script) {
    auto server = start_server();
    auto port = co_await port_of(*server);
    auto listener = std::make_unique<child_process>(
        std::vector<std::string>{"ncat", "--recv-only", "127.0.0.1", std::to_string(port)});
    bool welcomed =
        co_await eventually([&] { return contains(listener->out(), "There are 0 other"); });
    REQUIRE(welcomed);
    // Sends the script, half-closes at its end, and prints what comes until the server closes.
    auto talker = std::make_unique<child_process>(
        std::vector<std::string>{"ncat", "127.0.0.1", std::to_string(port)}, script);
    CHECK(co_await exit_of(*talker) == 0);
    auto out = talker->out();
    CHECK(contains(out, "There are 1 other clients"));
    CHECK(contains(out, "* you are now ncat_user"));
    CHECK(contains(out, "* in lobby: "));
    bool heard = co_await eventually([&] { return contains(listener->out(), "* ncat_user left"); });
    CHECK(heard);
    CHECK(contains(listener->out(), "ncat_user: hello from ncat\n"));
    server->signal(SIGINT);
    CHECK(co_await exit_of(*listener) == 0);
    CHECK(contains(listener->out(), "* the server is closing"));
    CHECK(co_await exit_of(*server) == 0);
}

} // namespace

// ---------------------------------------------------------------------------------------------
// Unit tests

TEST_CASE("the line framer cuts at LF and CRLF, however the bytes are split", "[chat][framer]") {
    CHECK(frame({"a\nb\r\nc"}) == std::vector{line_of("a"), line_of("b"), line_of("c")});
    CHECK(frame({"\n\r\n"}) == std::vector{line_of(""), line_of("")});
    CHECK(frame({"a\rb\n"}) == std::vector{line_of("a\rb")}); // only a CR before the LF goes
    std::string with_nul("x\0y\n", 4);
    CHECK(frame({with_nul}) == std::vector{line_of(std::string("x\0y", 3))});

    // Every way of cutting a stream in two, and byte by byte, gives the same lines.
    std::string stream = "hello\r\nto\n\nall of you\r\n12345678\r\nlast";
    auto whole = frame({stream});
    REQUIRE(whole.size() == 6);
    for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
        INFO("cut at " << cut);
        CHECK(frame({stream.substr(0, cut), stream.substr(cut)}) == whole);
    }
    std::vector<std::string> single;
    for (char c : stream)
        single.emplace_back(1, c);
    CHECK(frame(single) == whole);
}

TEST_CASE("the line framer drops an overlong line up to its LF and reports it once",
          "[chat][framer]") {
    chat::line_framer framer(8);
    CHECK(framer.feed(bytes("12345678")).empty()); // at the limit: still fine
    CHECK(framer.feed(bytes("\r")).empty());       // could still be a CRLF
    CHECK(framer.feed(bytes("\n")) == std::vector{line_of("12345678")});
    CHECK(framer.feed(bytes("123456789")) == std::vector{too_long}); // reported at once
    CHECK(framer.feed(bytes("more and more")).empty());              // and only once
    CHECK(framer.feed(bytes(" the end\nnext\n")) == std::vector{line_of("next")});
    CHECK(framer.feed(bytes("12345678\r\r\n")) == std::vector{too_long});
    CHECK(framer.feed(bytes("0123456789")) == std::vector{too_long});
    CHECK_FALSE(framer.finish()); // already reported
    CHECK(frame({"abc\n", "123456789", "0\nok\n"}) ==
          std::vector{line_of("abc"), too_long, line_of("ok")});
    CHECK(frame({std::string(5000, 'x') + "\nok"}, chat::max_line) ==
          std::vector{too_long, line_of("ok")});
}

TEST_CASE("the command parser reads each command and its arguments", "[chat][parser]") {
    using chat::command_kind;
    using cmd = chat::command;
    CHECK(chat::parse_command("hello there") == cmd{command_kind::say, "", "hello there"});
    CHECK(chat::parse_command("") == cmd{});
    CHECK(chat::parse_command(" \t ") == cmd{});
    CHECK(chat::parse_command("//not a command") == cmd{command_kind::say, "", "/not a command"});
    CHECK(chat::parse_command("/nick alice") == cmd{command_kind::nick, "alice", ""});
    CHECK(chat::parse_command("  /NICK\talice  ") == cmd{command_kind::nick, "alice", ""});
    CHECK(chat::parse_command("/msg bob hi  there ") == cmd{command_kind::msg, "bob", "hi  there"});
    CHECK(chat::parse_command("/join dev") == cmd{command_kind::join, "dev", ""});
    CHECK(chat::parse_command("/rooms") == cmd{command_kind::rooms, "", ""});
    CHECK(chat::parse_command("/who") == cmd{command_kind::who, "", ""});
    CHECK(chat::parse_command("/Help me") == cmd{command_kind::help, "", ""});
    CHECK(chat::parse_command("/quit") == cmd{command_kind::quit, "", ""});
}

TEST_CASE("the command parser reports wrong arguments and unknown commands", "[chat][parser]") {
    using chat::command_kind;
    using cmd = chat::command;
    CHECK(chat::parse_command("/nick") == cmd{command_kind::usage_error, "nick", "/nick NAME"});
    CHECK(chat::parse_command("/nick a b") == cmd{command_kind::usage_error, "nick", "/nick NAME"});
    CHECK(chat::parse_command("/join") == cmd{command_kind::usage_error, "join", "/join ROOM"});
    CHECK(chat::parse_command("/msg") == cmd{command_kind::usage_error, "msg", "/msg NAME TEXT"});
    CHECK(chat::parse_command("/msg bob  ") ==
          cmd{command_kind::usage_error, "msg", "/msg NAME TEXT"});
    CHECK(chat::parse_command("/frob x") == cmd{command_kind::unknown, "frob", ""});
    CHECK(chat::parse_command("/") == cmd{command_kind::unknown, "", ""});
}

TEST_CASE("clean_text removes telnet commands and control bytes and repairs UTF-8",
          "[chat][parser]") {
    using namespace std::string_literals;
    const std::string fffd = "\xef\xbf\xbd";
    CHECK(chat::clean_text("he\0llo"s) == "hello");
    CHECK(chat::clean_text("caf\xc3\xa9 \xf0\x9f\x98\x80\tok") ==
          "caf\xc3\xa9 \xf0\x9f\x98\x80\tok");
    CHECK(chat::clean_text("\xff\xfb\x01hi\xff\xfd\x18") == "hi");  // WILL, DO
    CHECK(chat::clean_text("\xff\xfa\x18\x01\xff\xf0ok"s) == "ok"); // SB ... SE
    CHECK(chat::clean_text("a\xff\xfa\x18 never ends") == "a");
    CHECK(chat::clean_text("a\xff\xff"
                           "b") == "ab");        // IAC IAC
    CHECK(chat::clean_text("a\xff\xf4") == "a"); // IAC IP
    CHECK(chat::clean_text("a\xff") == "a");
    CHECK(chat::clean_text("a\xff\xfd") == "a");
    CHECK(chat::clean_text("\xc3(") == fffd + "(");
    CHECK(chat::clean_text("\xe2\x82x") == fffd + "x");            // a cut sequence: one U+FFFD
    CHECK(chat::clean_text("\xc0\xaf") == fffd + fffd);            // overlong
    CHECK(chat::clean_text("\xed\xa0\x80") == fffd + fffd + fffd); // surrogate
    CHECK(chat::clean_text("\xf4\x90\x80\x80") == fffd + fffd + fffd + fffd); // above U+10FFFF
    CHECK(chat::clean_text("\x1b[31mred\x7f") == "[31mred");
    CHECK(chat::clean_text("a\xc2\x9b"
                           "b\xc2\xa0"
                           "c") == "ab\xc2\xa0"
                                   "c"); // C1 out, NBSP stays
}

TEST_CASE("names are 1 to 32 letters, digits, '-', '_' or '.', unique ignoring case",
          "[chat][parser]") {
    CHECK_FALSE(chat::name_error("alice"));
    CHECK_FALSE(chat::name_error("a.b-c_D9"));
    CHECK_FALSE(chat::name_error(std::string(32, 'n')));
    CHECK(chat::name_error(""));
    CHECK(chat::name_error(std::string(33, 'n')));
    CHECK(chat::name_error("two words"));
    CHECK(chat::name_error("127.0.0.1:4000"));
    CHECK(chat::name_error("caf\xc3\xa9"));
    CHECK(chat::same_name("Alice", "aLICE"));
    CHECK_FALSE(chat::same_name("alice", "alicia"));
}

// ---------------------------------------------------------------------------------------------
// End-to-end tests

TEST_CASE("the chat server welcomes each client with the number of others", "[chat]") {
    asio::io_context io;
    run(io, welcome_counts_the_others(), 20s);
}

TEST_CASE("a chat line reaches every other client in the room but not its sender", "[chat]") {
    asio::io_context io;
    run(io, lines_fan_out_to_the_others_only(), 20s);
}

TEST_CASE("chat lines are framed by newline, not by TCP segment", "[chat]") {
    asio::io_context io;
    run(io, framing_ignores_segments(), 20s);
}

TEST_CASE("/nick renames a client, tells the room, and refuses taken or invalid names", "[chat]") {
    asio::io_context io;
    run(io, nick_renames_and_refuses(), 20s);
}

TEST_CASE("/msg reaches only its target, marked private", "[chat]") {
    asio::io_context io;
    run(io, msg_reaches_only_its_target(), 20s);
}

TEST_CASE("rooms are isolated; /join, /who and /rooms work and are announced", "[chat]") {
    asio::io_context io;
    run(io, rooms_are_isolated(), 20s);
}

TEST_CASE("an unknown command gets an error line to its sender only", "[chat]") {
    asio::io_context io;
    run(io, unknown_commands_get_an_error(), 20s);
}

TEST_CASE("a line over 4096 bytes is refused with '!' and none of it reaches anyone", "[chat]") {
    asio::io_context io;
    run(io, long_lines_are_refused(), 20s);
}

TEST_CASE("a client that stops reading is dropped while the others go on", "[chat]") {
    asio::io_context io;
    run(io, slow_readers_are_dropped(), 30s);
}

TEST_CASE("a client that resets its connection is announced as left", "[chat]") {
    asio::io_context io;
    run(io, resets_are_announced(), 20s);
}

TEST_CASE("NUL bytes, invalid UTF-8 and telnet commands do no harm", "[chat]") {
    asio::io_context io;
    run(io, odd_bytes_are_harmless(), 20s);
}

TEST_CASE("SIGTERM tells the chat clients the server is closing and exits 0", "[chat]") {
    asio::io_context io;
    run(io, sigterm_closes_clients(), 20s);
}

TEST_CASE("chat_server exits 2 on bad arguments and 1 when it cannot listen", "[chat]") {
    asio::io_context io;
    run(io, server_exit_codes(), 30s);
}

TEST_CASE("chat_client sends piped lines and exits 0 when the server closes", "[chat]") {
    temp_file script("pipe");
    script.write("/nick piper\nhello from a pipe\nsecond line\n");
    asio::io_context io;
    run(io, client_sends_a_pipe(script.path), 20s);
}

TEST_CASE("chat_client sends a regular file given as stdin", "[chat]") {
    temp_file script("file");
    script.write("/nick filer\r\nfrom a file\nno newline at the end");
    asio::io_context io;
    run(io, client_sends_a_file(script.path), 20s);
}

TEST_CASE("chat_client prints lines as they arrive and exits 0 when the server closes", "[chat]") {
    temp_file fifo("fifo");
    REQUIRE(::mkfifo(fifo.path.c_str(), 0600) == 0);
    asio::io_context io;
    run(io, client_chats_live(fifo.path), 20s);
}

TEST_CASE("chat_client exits 1 with 'Unable to connect' on a closed port, 2 on bad arguments",
          "[chat]") {
    asio::io_context io;
    run(io, client_cannot_connect(), 20s);
}

TEST_CASE("real ncat clients chat through the chat server", "[chat][ncat]") {
    if (std::system("command -v ncat >/dev/null 2>&1") != 0) {
        WARN("ncat is not installed: scripts/test installs it");
        FAIL("ncat missing");
    }
    temp_file script("ncat");
    script.write("/nick ncat_user\nhello from ncat\r\n/who\n");
    asio::io_context io;
    run(io, ncat_clients_chat(script.path), 20s);
}
