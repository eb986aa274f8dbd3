// The `socket-connector rendezvous` and `socket-connector token` commands: the real binary,
// with tokens minted by the command, by Python's hmac (an independent implementation) and
// checked by ncat clients, two processes sharing one secret, refusals and the exit statuses.
#include <socket_connector/session_token.hpp>

#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include <unistd.h>

#include "../examples/token_command.hpp"
#include "support/faults.hpp"
#include "support/programs.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

/// A secret file for this test process, removed when it goes.
struct secret_file {
    std::filesystem::path path;
    explicit secret_file(const std::string& name, const std::string& content = "a shared secret "
                                                                               "for the relays\n")
        : path(std::filesystem::temp_directory_path() /
               fmt::format("sc-rv-{}-{}", name, static_cast<long>(::getpid()))) {
        std::ofstream(path, std::ios::binary) << content;
    }
    ~secret_file() {
        std::error_code ignored;
        std::filesystem::remove(path, ignored);
    }
};

/// Runs `args` to completion (within 10 s): its exit code, stdout and stderr. (Callers name the
/// arguments: g++ 12 mishandles a braced list inside a co_await.)
struct finished {
    int code = -1;
    std::string out;
    std::string err;
};
asio::awaitable<finished> run_to_end(const std::vector<std::string>& args) {
    auto p = std::make_unique<child_process>(args);
    finished f;
    f.code = co_await exit_of(*p, 10s);
    f.out = p->out();
    f.err = p->err();
    co_return f;
}

/// A token from the command itself, without its newline.
asio::awaitable<std::string> command_token(const secret_file& secret, std::string_view session,
                                           std::string_view side) {
    const std::vector<std::string> f_args{program_path("socket-connector"),
                                          "token",
                                          "--secret-file",
                                          secret.path.string(),
                                          "--session",
                                          std::string(session),
                                          "--side",
                                          std::string(side)};
    auto f = co_await run_to_end(f_args);
    INFO(f.err);
    CHECK(f.code == 0);
    REQUIRE(f.out.ends_with("\n"));
    co_return f.out.substr(0, f.out.size() - 1);
}

/// A token from Python's hmac (tests/scripts/mint_token.py, README's lines).
asio::awaitable<std::string> python_token(const secret_file& secret, std::string_view session,
                                          std::string_view side) {
    const std::vector<std::string> f_args{"python3",
                                          std::string(SOCKET_CONNECTOR_TEST_SCRIPTS) +
                                              "/mint_token.py",
                                          secret.path.string(),
                                          std::string(session),
                                          std::string(side),
                                          "300"};
    auto f = co_await run_to_end(f_args);
    INFO(f.err);
    CHECK(f.code == 0);
    REQUIRE(f.out.ends_with("\n"));
    co_return f.out.substr(0, f.out.size() - 1);
}

/// One client: its token line and `payload`, then its end of stream; what the other side sent.
asio::awaitable<std::vector<char>> client(unsigned short port, std::string_view token,
                                          const std::vector<char>& payload) {
    auto s = co_await connect_to(port);
    auto out = concat(std::string(token) + "\n", payload);
    co_return co_await send_and_receive(s, out);
}

asio::awaitable<void> the_token_command() {
    secret_file secret("token");
    auto token = co_await command_token(secret, "device-7", "B");
    sc::token_secret key = sc::token_secret::from_file(secret.path);
    std::string why;
    auto checked = sc::check_token(key, token, sc::unix_now(), &why);
    INFO(token << ": " << why);
    REQUIRE(checked);
    CHECK(checked->session == "device-7");
    CHECK(checked->side == sc::side_id::b);
    CHECK(checked->expiry >= sc::unix_now() + 290);
    CHECK(checked->expiry <= sc::unix_now() + 300);
    const std::vector<std::string> fixed_args{program_path("socket-connector"),
                                              "token",
                                              "--secret-file",
                                              secret.path.string(),
                                              "--session",
                                              "s",
                                              "--side",
                                              "A",
                                              "--expires",
                                              "1800000000"};
    auto fixed = co_await run_to_end(fixed_args);
    CHECK(fixed.out == sc::mint_token(key, "s", sc::side_id::a, 1800000000) + "\n");
    // Bad arguments: 2 with the usage; a secret that cannot be used: 1 with the reason.
    const std::vector<std::vector<std::string>> bad_cases{
        {"--session", "s", "--side", "A"},
        {"--secret-file", secret.path.string(), "--session", "a.b", "--side", "A"},
        {"--secret-file", secret.path.string(), "--session", "s", "--side", "C"},
        {"--secret-file", secret.path.string(), "--session", "s", "--side", "A", "--ttl", "0"},
        {"--secret-file", secret.path.string(), "--session", "s", "--side", "A", "--ttl", "5",
         "--expires", "9"},
        {"--secret-file", secret.path.string(), "--session", "s", "--side", "A", "--bogus"}};
    for (auto bad : bad_cases) {
        bad.insert(bad.begin(), {program_path("socket-connector"), "token"});
        auto f = co_await run_to_end(bad);
        INFO(f.err);
        CHECK(f.code == 2);
        CHECK(f.out.empty());
        CHECK(f.err.find("usage: socket-connector token") != std::string::npos);
    }
    secret_file short_secret("short", "too short\n");
    const std::vector<std::string> f_args{program_path("socket-connector"),
                                          "token",
                                          "--secret-file",
                                          short_secret.path.string(),
                                          "--session",
                                          "s",
                                          "--side",
                                          "A"};
    auto f = co_await run_to_end(f_args);
    CHECK(f.code == 1);
    CHECK(f.err.find("at least 16 are needed") != std::string::npos);
    const std::vector<std::string> missing_args{program_path("socket-connector"),
                                                "token",
                                                "--secret-file",
                                                "/nonexistent/secret",
                                                "--session",
                                                "s",
                                                "--side",
                                                "A"};
    auto missing = co_await run_to_end(missing_args);
    CHECK(missing.code == 1);
    CHECK(missing.err.find("cannot read the secret file /nonexistent/secret") != std::string::npos);
}

/// Sessions through one port with tokens from the command and from Python; refusals logged
/// without the token; SIGTERM exits 0 with the counts.
asio::awaitable<void> a_rendezvous_on_one_port() {
    secret_file secret("one-port");
    auto cli = start_cli({"rendezvous", "--listen", "127.0.0.1:0", "--secret-file",
                          secret.path.string(), "--stats", "--verbose"});
    auto port = co_await started_port(*cli, 0);
    for (int i = 0; i < 3; ++i) {
        auto session = fmt::format("session-{}", i);
        // Side A's token from the command, side B's from Python: both check the same way.
        auto ta = co_await command_token(secret, session, "A");
        auto tb = co_await python_token(secret, session, "B");
        auto from_a = pattern(static_cast<std::uint64_t>(i), 300'000);
        auto from_b = pattern(static_cast<std::uint64_t>(i) + 50, 200'000);
        auto [at_a, at_b] = co_await (client(port, ta, from_a) && client(port, tb, from_b));
        CHECK(checksum(at_b) == checksum(from_a));
        CHECK(checksum(at_a) == checksum(from_b));
    }
    // A bad token: closed with nothing relayed; the log names the reason, not the token.
    auto forged = co_await python_token(secret, "forged", "A");
    forged.back() = forged.back() == 'a' ? 'b' : 'a';
    auto s = co_await connect_to(port);
    const std::string first = forged + "\nsecret data";
    co_await send_text(s, first, false);
    auto end = co_await read_until_closed(s);
    CHECK(end.closed);
    CHECK(end.bytes.empty());
    CHECK(co_await eventually([&] { return cli->err().find("bad MAC") != std::string::npos; }));
    CHECK(cli->err().find(forged) == std::string::npos);
    cli->signal(SIGTERM);
    CHECK(co_await exit_of(*cli) == 0);
    auto json = stats_line(cli->out());
    INFO(json);
    CHECK(stats_field(json, "sessions_paired") == 3);
    CHECK(stats_field(json, "connections_total") == 3);
    CHECK(stats_field(json, "auth_failures") == 1);
}

/// Clients behind a proxy: each begins with a PROXY header, then its token. Two event loops, so
/// sides move to their session's loop with the client their header named.
asio::awaitable<void> clients_behind_a_proxy() {
    secret_file secret("proxied");
    auto cli = start_cli({"rendezvous", "--listen", "127.0.0.1:0", "--secret-file",
                          secret.path.string(), "--accept-proxy-a", "--threads", "2", "--stats"});
    auto port = co_await started_port(*cli, 0);
    std::vector<std::string> named;
    for (int i = 0; i < 6; ++i) {
        auto session = fmt::format("proxied-{}", i);
        auto ta = co_await command_token(secret, session, "A");
        auto tb = co_await command_token(secret, session, "B");
        const tcp::endpoint reached{asio::ip::make_address("192.0.2.1"), 443};
        const tcp::endpoint client_a{asio::ip::make_address(fmt::format("192.0.2.{}", 10 + i)),
                                     static_cast<unsigned short>(5000 + i)};
        const tcp::endpoint client_b{asio::ip::make_address(fmt::format("192.0.2.{}", 100 + i)),
                                     static_cast<unsigned short>(6000 + i)};
        named.push_back(client_a.address().to_string());
        named.push_back(client_b.address().to_string());
        // A with a v1 header, B with a v2 one.
        const auto head_a = sc::proxy_header_v1(client_a, reached) + ta;
        const auto head_b = sc::proxy_header_v2(client_b, reached) + tb;
        auto from_a = pattern(static_cast<std::uint64_t>(i) + 300, 100'000);
        auto from_b = pattern(static_cast<std::uint64_t>(i) + 400, 70'000);
        auto [at_a, at_b] = co_await (client(port, head_a, from_a) && client(port, head_b, from_b));
        CHECK(checksum(at_b) == checksum(from_a));
        CHECK(checksum(at_a) == checksum(from_b));
    }
    cli->signal(SIGTERM);
    CHECK(co_await exit_of(*cli) == 0);
    auto json = stats_line(cli->out());
    INFO(json);
    CHECK(stats_field(json, "sessions_paired") == 6);
    CHECK(stats_field(json, "sockets_refused") == 0);
    for (const auto& address : named)
        CHECK(json.find(fmt::format("\"{}\"", address)) != std::string::npos);
    CHECK(json.find("127.0.0.1") == std::string::npos); // the proxy's own address is never seen
}

/// Real ncat clients: each sends its token line and a file, and gets the other's.
asio::awaitable<void> ncat_clients_meet() {
    secret_file secret("ncat");
    auto cli =
        start_cli({"rendezvous", "--listen", "127.0.0.1:0", "--secret-file", secret.path.string()});
    auto port = co_await started_port(*cli, 0);
    auto ta = co_await command_token(secret, "ncat-1", "A");
    auto tb = co_await command_token(secret, "ncat-1", "B");
    auto payload = pattern(77, 100'000);
    auto input = std::filesystem::temp_directory_path() /
                 fmt::format("sc-rv-ncat-in-{}", static_cast<long>(::getpid()));
    {
        std::ofstream in(input, std::ios::binary);
        in << ta << "\n";
        in.write(payload.data(), static_cast<std::streamsize>(payload.size()));
    }
    auto receiver_in = input.string() + ".b";
    std::ofstream(receiver_in, std::ios::binary) << tb << "\n";
    auto receiver = std::make_unique<child_process>(
        std::vector<std::string>{"ncat", "127.0.0.1", std::to_string(port)}, receiver_in);
    auto sender = std::make_unique<child_process>(
        std::vector<std::string>{"ncat", "--send-only", "127.0.0.1", std::to_string(port)},
        input.string());
    CHECK(co_await exit_of(*sender) == 0);
    CHECK(co_await exit_of(*receiver) == 0);
    auto got = receiver->out();
    CHECK(got.size() == payload.size());
    CHECK(checksum(std::span<const char>(got.data(), got.size())) == checksum(payload));
    std::filesystem::remove(input);
    std::filesystem::remove(receiver_in);
    cli->signal(SIGINT);
    CHECK(co_await exit_of(*cli) == 0);
}

/// --listen-b: each side on its own port; a token for the other side's port is refused.
asio::awaitable<void> two_ports() {
    secret_file secret("two-ports");
    auto cli = start_cli({"rendezvous", "--listen", "127.0.0.1:0", "--listen-b", "127.0.0.1:0",
                          "--secret-file", secret.path.string(), "--stats"});
    auto pa = co_await started_port(*cli, 'A');
    auto pb = co_await started_port(*cli, 'B');
    auto ta = co_await command_token(secret, "pair", "A");
    auto tb = co_await command_token(secret, "pair", "B");
    auto wrong = co_await connect_to(pa);
    const std::string wrong_first = tb + "\n";
    co_await send_text(wrong, wrong_first, false);
    auto end = co_await read_until_closed(wrong);
    CHECK(end.closed);
    CHECK(co_await eventually([&] {
        return cli->err().find("it is a side B socket on side A's port") != std::string::npos;
    }));
    auto from_a = pattern(1, 10'000);
    auto from_b = pattern(2, 10'000);
    auto [at_a, at_b] = co_await (client(pa, ta, from_a) && client(pb, tb, from_b));
    CHECK(checksum(at_b) == checksum(from_a));
    CHECK(checksum(at_a) == checksum(from_b));
    cli->signal(SIGTERM);
    CHECK(co_await exit_of(*cli) == 0);
    auto json = stats_line(cli->out());
    INFO(json);
    CHECK(stats_field(json, "sockets_refused") == 1);
    CHECK(stats_field(json, "sessions_paired") == 1);
}

/// Two relay processes, one secret: the control plane sends a session's two clients to either
/// instance, and each instance checks the tokens on its own.
asio::awaitable<void> two_processes_one_secret() {
    secret_file secret("two-processes");
    auto first = start_cli({"rendezvous", "--listen", "127.0.0.1:0", "--secret-file",
                            secret.path.string(), "--stats"});
    auto second = start_cli({"rendezvous", "--listen", "127.0.0.1:0", "--secret-file",
                             secret.path.string(), "--stats"});
    auto p1 = co_await started_port(*first, 0);
    auto p2 = co_await started_port(*second, 0);
    for (int i = 0; i < 4; ++i) {
        auto session = fmt::format("spread-{}", i);
        auto port = i % 2 == 0 ? p1 : p2;
        auto ta = co_await python_token(secret, session, "A");
        auto tb = co_await python_token(secret, session, "B");
        auto from_a = pattern(static_cast<std::uint64_t>(i) + 10, 50'000);
        auto from_b = pattern(static_cast<std::uint64_t>(i) + 20, 50'000);
        auto [at_a, at_b] = co_await (client(port, ta, from_a) && client(port, tb, from_b));
        CHECK(checksum(at_b) == checksum(from_a));
        CHECK(checksum(at_a) == checksum(from_b));
    }
    first->signal(SIGTERM);
    second->signal(SIGTERM);
    CHECK(co_await exit_of(*first) == 0);
    CHECK(co_await exit_of(*second) == 0);
    CHECK(stats_field(stats_line(first->out()), "sessions_paired") == 2);
    CHECK(stats_field(stats_line(second->out()), "sessions_paired") == 2);
}

asio::awaitable<void> rendezvous_arguments() {
    secret_file secret("arguments");
    secret_file short_secret("arguments-short", "short\n");
    const auto path = secret.path.string();
    const std::vector<std::vector<std::string>> bad_cases{
        {"rendezvous", "--secret-file", path},
        {"rendezvous", "--listen", "127.0.0.1:0"},
        {"rendezvous", "--listen", "127.0.0.1:0", "--secret-file", path, "--a", ":1"},
        {"rendezvous", "--listen", "127.0.0.1:0", "--secret-file", path, "--multi"},
        {"rendezvous", "--listen", "nowhere", "--secret-file", path},
        {"rendezvous", "--listen", "127.0.0.1:0", "--secret-file", path, "--max-sessions", "x"},
        {"server-to-server", "--a", ":0", "--b", ":0", "--listen", ":0"}};
    for (auto bad : bad_cases) {
        bad.insert(bad.begin(), program_path("socket-connector"));
        auto f = co_await run_to_end(bad);
        INFO(f.err);
        CHECK(f.code == 2);
    }
    const std::vector<std::string> f_args{
        program_path("socket-connector"), "rendezvous", "--listen", "127.0.0.1:0", "--secret-file",
        short_secret.path.string()};
    auto f = co_await run_to_end(f_args);
    CHECK(f.code == 1);
    CHECK(f.err.find("at least 16 are needed") != std::string::npos);
}

/// Many sessions through one rendezvous process: every side sends its token and a 32-byte hello
/// naming its session and side, and checks its partner's.
struct crowd {
    std::size_t sessions = 0;
    unsigned short port = 0;
    std::vector<std::string> tokens; // session i side A at 2i, side B at 2i + 1
    std::size_t next = 0;            // the next side to connect (of the current wave)
    std::size_t end = 0;             // where the current wave stops
    std::size_t sent = 0;            // sides whose token and hello were sent
    std::size_t checked = 0;         // sides that got their partner's hello
    std::size_t bad = 0;
    std::size_t failed = 0;
    std::string first_error;
    std::unique_ptr<asio::steady_timer> release; // cancelled to close every socket
};

std::array<char, 32> hello(std::size_t session, char side) {
    std::array<char, 32> m{};
    auto text = fmt::format("session {} side {}", session, side);
    std::memcpy(m.data(), text.data(), std::min(text.size(), m.size()));
    return m;
}

asio::awaitable<void> crowd_side(std::shared_ptr<crowd> cr, std::size_t slot, tcp::socket s) {
    const std::size_t session = slot / 2;
    const char side = slot % 2 == 0 ? 'A' : 'B';
    try {
        auto line = cr->tokens[slot] + "\n";
        auto mine = hello(session, side);
        std::array<asio::const_buffer, 2> out{asio::buffer(line), asio::buffer(mine)};
        co_await asio::async_write(s, out, asio::use_awaitable);
        ++cr->sent;
        std::array<char, 32> got{};
        co_await asio::async_read(s, asio::buffer(got), asio::use_awaitable);
        if (got == hello(session, side == 'A' ? 'B' : 'A'))
            ++cr->checked;
        else
            ++cr->bad;
    } catch (const std::exception& e) {
        if (cr->failed++ == 0) cr->first_error = e.what();
        co_return;
    }
    co_await cr->release->async_wait(use_tuple);
}

/// Connects the sides of the current wave (every `step`-th slot from `next`), 64 at a time.
asio::awaitable<void> crowd_connector(std::shared_ptr<crowd> cr, std::size_t step) {
    auto ex = co_await asio::this_coro::executor;
    while (cr->next < cr->end) {
        auto slot = cr->next;
        cr->next += step;
        tcp::socket s(ex);
        auto [ec] = co_await s.async_connect(loopback(cr->port), use_tuple);
        if (ec) {
            if (cr->failed++ == 0) cr->first_error = "connect: " + ec.message();
            continue;
        }
        asio::co_spawn(ex, crowd_side(cr, slot, std::move(s)), asio::detached);
    }
}

/// Ten thousand sessions held at once through one rendezvous process: every A first (pending
/// sides), then every B; the relay's memory per pending side and per idle session.
asio::awaitable<void> ten_thousand_sessions() {
    auto ex = co_await asio::this_coro::executor;
    std::size_t sessions = sanitized ? 2000 : 10000;
    // Both sides of every session live in this process; the relay has its own limit.
    const std::size_t wanted = sessions;
    auto limit = static_cast<std::size_t>(raise_fd_limit(2 * sessions + 1024));
    if (limit < 2 * sessions + 1024) {
        sessions = (limit - 1024) / 2;
        WARN("RLIMIT_NOFILE could not be raised past " << limit << ": holding " << sessions
                                                       << " sessions instead of " << wanted);
    }
    secret_file secret("crowd");
    auto key = sc::token_secret::from_file(secret.path);
    child_limits limits;
    limits.max_fds = 2 * sessions + 256;
    limits.close_inherited = true;
    auto cli =
        start_cli({"rendezvous", "--listen", "127.0.0.1:0", "--secret-file", secret.path.string(),
                   "--max-pending", "0", "--pending-timeout", "0", "--stats", "--verbose"},
                  limits);
    auto cr = std::make_shared<crowd>();
    cr->sessions = sessions;
    cr->port = co_await started_port(*cli, 0);
    cr->release = std::make_unique<asio::steady_timer>(ex, steady::time_point::max());
    const auto expiry = sc::unix_now() + 600;
    for (std::size_t i = 0; i < sessions; ++i) {
        auto session = fmt::format("crowd-{}", i);
        cr->tokens.push_back(sc::mint_token(key, session, sc::side_id::a, expiry));
        cr->tokens.push_back(sc::mint_token(key, session, sc::side_id::b, expiry));
    }
    const auto rss_before = rss_kib(cli->pid());
    const auto start = steady::now();
    // Wave 1: every A (even slots), each pending once the relay has read its token and hello.
    cr->next = 0;
    cr->end = 2 * sessions;
    for (int w = 0; w < 64; ++w)
        asio::co_spawn(ex, crowd_connector(cr, 2), asio::detached);
    bool sent = co_await eventually([&] { return cr->sent + cr->failed >= sessions; }, 60s);
    INFO("sent " << cr->sent << ", failed " << cr->failed << " (" << cr->first_error << ")");
    REQUIRE(sent);
    REQUIRE(cr->failed == 0);
    // Every A is pending once the relay has logged its authentication (--verbose).
    auto authenticated = [&] {
        const auto err = cli->err();
        std::size_t n = 0;
        for (auto at = err.find("authenticated"); at != std::string::npos;
             at = err.find("authenticated", at + 1))
            ++n;
        return n;
    };
    bool held = false;
    for (auto until = steady::now() + 60s; !held && steady::now() < until;) {
        held = authenticated() >= sessions;
        if (!held) co_await pause(50ms); // polling a growing log: not too often
    }
    INFO("authenticated: " << authenticated());
    REQUIRE(held);
    const auto rss_pending = rss_kib(cli->pid());
    // Wave 2: every B (odd slots).
    cr->next = 1;
    for (int w = 0; w < 64; ++w)
        asio::co_spawn(ex, crowd_connector(cr, 2), asio::detached);
    bool talked = co_await eventually(
        [&] { return cr->checked + cr->bad + cr->failed >= 2 * sessions; }, 90s);
    const double took = seconds_between(start, steady::now());
    INFO("checked " << cr->checked << ", bad " << cr->bad << ", failed " << cr->failed << " ("
                    << cr->first_error << ")");
    REQUIRE(talked);
    CHECK(cr->bad == 0);
    CHECK(cr->failed == 0);
    const auto rss_paired = rss_kib(cli->pid());
    const double per_pending =
        static_cast<double>(rss_pending - rss_before) / static_cast<double>(sessions);
    const double per_session =
        static_cast<double>(rss_paired - rss_before) / static_cast<double>(sessions);
    WARN(sessions << " sessions held at once through one rendezvous process (formed and checked"
                  << " in " << took << " s); relay RSS " << rss_before << " -> " << rss_pending
                  << " KiB with every A pending (" << per_pending << " KiB per pending side) -> "
                  << rss_paired << " KiB paired (" << per_session << " KiB per idle session)");
    if (!sanitized) {
        // Loose bounds (the benchmark measures the targets): no buffer is held per side.
        CHECK(per_pending < 8.0);
        CHECK(per_session < 12.0);
    }
    cr->release->cancel();
    cli->signal(SIGTERM);
    CHECK(co_await exit_of(*cli, 30s) == 0);
    auto json = stats_line(cli->out());
    INFO(json);
    CHECK(stats_field(json, "sessions_paired") == static_cast<long long>(sessions));
    CHECK(stats_field(json, "bytes_a_to_b") == static_cast<long long>(32 * sessions));
}

/// parse_token_args on `words`.
std::variant<cli::token_config, std::string> parse_token(std::vector<std::string> words) {
    std::vector<char*> argv;
    for (auto& word : words)
        argv.push_back(word.data());
    return cli::parse_token_args(argv);
}

} // namespace

TEST_CASE("parse_token_args reads the token command's arguments strictly",
          "[cli_args][rendezvous]") {
    auto ok = parse_token({"--secret-file", "f", "--session", "s-1", "--side", "b", "--ttl=60"});
    REQUIRE(std::holds_alternative<cli::token_config>(ok));
    auto cfg = std::get<cli::token_config>(ok);
    CHECK(cfg.secret_file == "f");
    CHECK(cfg.session == "s-1");
    CHECK(cfg.side == sc::side_id::b);
    CHECK(cfg.ttl == 60);
    CHECK(!cfg.expires);
    auto fixed = parse_token({"--secret-file", "f", "--session", "s", "--side", "A", "--expires",
                              "18446744073709551615"});
    REQUIRE(std::holds_alternative<cli::token_config>(fixed));
    CHECK(*std::get<cli::token_config>(fixed).expires == 18446744073709551615ull);
    auto why = [](std::vector<std::string> words) {
        auto r = parse_token(std::move(words));
        return std::holds_alternative<std::string>(r) ? std::get<std::string>(r) : std::string();
    };
    CHECK(why({"--session", "s", "--side", "A"}) == "token needs --secret-file FILE");
    CHECK(why({"--secret-file", "f", "--side", "A"}) == "token needs --session ID");
    CHECK(why({"--secret-file", "f", "--session", "s"}) == "token needs --side A|B");
    CHECK(why({"--secret-file", "f", "--session", "s t", "--side", "A"})
              .find("the session may hold only") != std::string::npos);
    CHECK(why({"--secret-file", "f", "--session", std::string(129, 'x'), "--side", "A"})
              .find("longer than 128") != std::string::npos);
    CHECK(why({"--secret-file", "f", "--session", "s", "--side", "A", "--expires",
               "18446744073709551616"})
              .starts_with("--expires needs"));
    CHECK(why({"--secret-file", "f", "--session", "s", "--side", "A", "--ttl", "-5"})
              .starts_with("--ttl needs"));
    CHECK(why({"--secret-file", "f", "--session", "s", "--side", "A", "--session", "t"}) ==
          "--session is given more than once");
    CHECK(why({"--secret-file"}) == "--secret-file needs a value");
    CHECK(why({"extra"}).starts_with("unknown argument"));
    CHECK(std::get<cli::token_config>(parse_token({"-h"})).help);
}

TEST_CASE("socket-connector token mints what the library checks, and refuses bad input",
          "[cli][rendezvous]") {
    asio::io_context io;
    run(io, the_token_command(), 60s);
}

TEST_CASE("socket-connector rendezvous pairs sessions on one port", "[cli][rendezvous]") {
    asio::io_context io;
    run(io, a_rendezvous_on_one_port(), 60s);
}

TEST_CASE("socket-connector rendezvous --accept-proxy-a takes clients behind a proxy",
          "[cli][rendezvous][proxy_protocol]") {
    asio::io_context io;
    run(io, clients_behind_a_proxy(), 60s);
}

TEST_CASE("ncat clients meet through socket-connector rendezvous", "[cli][rendezvous][ncat]") {
    asio::io_context io;
    run(io, ncat_clients_meet(), 60s);
}

TEST_CASE("socket-connector rendezvous with --listen-b refuses a token for the other port",
          "[cli][rendezvous]") {
    asio::io_context io;
    run(io, two_ports(), 60s);
}

TEST_CASE("two rendezvous processes with one secret accept each other's tokens",
          "[cli][rendezvous]") {
    asio::io_context io;
    run(io, two_processes_one_secret(), 60s);
}

TEST_CASE("socket-connector rendezvous exits 2 on bad arguments and 1 on a bad secret",
          "[cli][rendezvous]") {
    asio::io_context io;
    run(io, rendezvous_arguments(), 60s);
}

TEST_CASE("ten thousand sessions held at once through one rendezvous process",
          "[cli][rendezvous][many]") {
    asio::io_context io;
    run(io, ten_thousand_sessions(), 180s);
}
