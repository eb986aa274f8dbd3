// `socket-connector --metrics ADDR`: the real binary scraped by curl and checked by promtool,
// counters against a known transfer, /stats against --stats, the HTTP errors, counters that
// never go down while pairs churn on several threads, and slowloris clients on the endpoint
// while pairs relay.
#include <socket_connector/session_token.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "support/programs.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

/// The port of the command's `metrics listening on HOST:PORT` line.
asio::awaitable<unsigned short> metrics_port(child_process& p) {
    static const std::regex line(R"(metrics listening on .*:(\d+)\n)");
    std::smatch m;
    bool ready = co_await eventually([&] {
        auto out = p.out();
        return std::regex_search(out, m, line) || p.exit_code().has_value();
    });
    INFO("stdout: " << p.out() << "\nstderr: " << p.err());
    REQUIRE(ready);
    auto out = p.out();
    REQUIRE(std::regex_search(out, m, line));
    co_return static_cast<unsigned short>(std::stoi(m[1].str()));
}

/// Sends `request` (raw bytes) to `port` and reads the response to its end. (Views, not
/// strings: g++ 12 mishandles temporaries with destructors in a co_await expression.)
asio::awaitable<std::string> http_exchange(unsigned short port, std::string_view request) {
    const std::string bytes(request);
    auto s = co_await connect_to(port);
    co_await send_text(s, bytes);
    auto got = co_await read_to_eof(s);
    co_return text(got);
}

asio::awaitable<std::string> get(unsigned short port, std::string_view path) {
    const std::string request = "GET " + std::string(path) + " HTTP/1.1\r\nHost: x\r\n\r\n";
    co_return co_await http_exchange(port, request);
}

std::string body_of(const std::string& response) {
    auto at = response.find("\r\n\r\n");
    return at == std::string::npos ? "" : response.substr(at + 4);
}

/// Runs a program to its end (10 s at most): exit code and stdout.
asio::awaitable<std::pair<int, std::string>> run_tool(std::vector<std::string> args,
                                                      std::string_view stdin_path = "/dev/null") {
    auto p = std::make_unique<child_process>(std::move(args), std::string(stdin_path));
    int code = co_await exit_of(*p, 10s);
    co_return std::pair<int, std::string>{code, p->out() + p->err()};
}

/// The value of sample `name` (with its labels) in a /metrics body, or -1.
long long sample(const std::string& metrics, const std::string& name) {
    std::istringstream in(metrics);
    for (std::string line; std::getline(in, line);)
        if (line.starts_with(name + " ")) return std::stoll(line.substr(name.size() + 1));
    return -1;
}

asio::awaitable<void> counts_a_known_transfer() {
    auto cli = start_cli({"server-to-server", "--a", "127.0.0.1:0", "--b", "127.0.0.1:0",
                          "--timeout", "0", "--stats", "--metrics", "127.0.0.1:0"});
    auto mport = co_await metrics_port(*cli);
    auto port_a = co_await started_port(*cli, 'A');
    auto port_b = co_await started_port(*cli, 'B');
    {
        auto a = co_await connect_to(port_a);
        auto b = co_await connect_to(port_b);
        auto from_a = pattern(71, 1u << 20);
        auto from_b = pattern(72, 4096);
        auto [at_a, at_b] = co_await (send_and_receive(a, from_a) && send_and_receive(b, from_b));
        CHECK(checksum(at_b) == checksum(from_a));
        CHECK(checksum(at_a) == checksum(from_b));
    }
    // curl scrapes; promtool checks what it got.
    std::string metrics;
    for (int attempt = 0; attempt < 100; ++attempt) {
        const std::vector<std::string> curl{"curl", "-sS", "--max-time", "5",
                                            fmt::format("http://127.0.0.1:{}/metrics", mport)};
        auto [code, out] = co_await run_tool(curl);
        REQUIRE(code == 0);
        metrics = out;
        if (sample(metrics, "socket_connector_connections_open") == 0) break;
        co_await pause(20ms); // the pair's end is counted as the relay sees it
    }
    INFO(metrics);
    CHECK(sample(metrics, "socket_connector_bytes_total{direction=\"a_to_b\"}") == (1 << 20));
    CHECK(sample(metrics, "socket_connector_bytes_total{direction=\"b_to_a\"}") == 4096);
    CHECK(sample(metrics, "socket_connector_connections_total") == 1);
    CHECK(sample(metrics, "socket_connector_connections_open") == 0);
    CHECK(sample(metrics, "socket_connector_sockets_accepted_total{side=\"a\"}") == 1);
    CHECK(sample(metrics, "socket_connector_sockets_accepted_total{side=\"b\"}") == 1);
    auto file = temp_file("scrape", metrics);
    const std::vector<std::string> promtool{"promtool", "check", "metrics"};
    auto [checked, said] = co_await run_tool(promtool, file);
    std::filesystem::remove(file);
    INFO(said);
    CHECK(checked == 0);
    // /stats now is what --stats prints at exit (nothing moves in between).
    auto live = body_of(co_await get(mport, "/stats"));
    cli->signal(SIGTERM);
    CHECK(co_await exit_of(*cli) == 0);
    CHECK(stats_line(cli->out()) == live);
}

asio::awaitable<void> answers_errors() {
    auto cli = start_cli({"server-to-server", "--a", "127.0.0.1:0", "--b", "127.0.0.1:0",
                          "--timeout", "0", "--metrics", "127.0.0.1:0"});
    auto mport = co_await metrics_port(*cli);
    auto url = [&](std::string path) { return fmt::format("http://127.0.0.1:{}{}", mport, path); };
    const std::vector<std::string> not_found{"curl",         "-s",         "-o", "/dev/null", "-w",
                                             "%{http_code}", "--max-time", "5",  url("/nope")};
    auto got404 = co_await run_tool(not_found);
    CHECK(got404.second == "404");
    const std::vector<std::string> post{"curl", "-s",           "-o",           "/dev/null",
                                        "-w",   "%{http_code}", "--max-time",   "5",
                                        "-X",   "POST",         url("/metrics")};
    auto got405 = co_await run_tool(post);
    CHECK(got405.second == "405");
    auto r405 = co_await http_exchange(mport, "DELETE /stats HTTP/1.1\r\n\r\n");
    CHECK(r405.starts_with("HTTP/1.1 405 "));
    CHECK(r405.find("\r\nAllow: GET, HEAD\r\n") != std::string::npos);
    {
        std::string request = "garbage\r\n\r\n";
        auto answer = co_await http_exchange(mport, request);
        CHECK(answer.starts_with("HTTP/1.1 400 "));
    }
    {
        std::string request = "GET /metrics SPDY/3\r\n\r\n";
        auto answer = co_await http_exchange(mport, request);
        CHECK(answer.starts_with("HTTP/1.1 400 "));
    }
    {
        std::string request = "GET metrics HTTP/1.1\r\n\r\n";
        auto answer = co_await http_exchange(mport, request);
        CHECK(answer.starts_with("HTTP/1.1 400 "));
    }
    // Over 8 KiB of request head: 400, whatever else comes.
    std::string huge = "GET /metrics HTTP/1.1\r\nX-Filler: " + std::string(9000, 'x') + "\r\n\r\n";
    {
        std::string request = huge;
        auto answer = co_await http_exchange(mport, request);
        CHECK(answer.starts_with("HTTP/1.1 400 "));
    }
    // HEAD: the headers alone; a query string is ignored; HTTP/1.0 is answered.
    auto head = co_await http_exchange(mport, "HEAD /metrics?x=1 HTTP/1.0\r\n\r\n");
    CHECK(head.starts_with("HTTP/1.1 200 "));
    CHECK(body_of(head).empty());
    CHECK(head.find("Content-Type: text/plain; version=0.0.4") != std::string::npos);
    // A request that never completes is closed, without an answer, within the request timeout.
    auto slow = co_await connect_to(mport);
    co_await send_text(slow, "GET /metr", false); // and nothing more, not even its end
    const auto since = std::chrono::steady_clock::now();
    auto ended = co_await read_until_closed(slow);
    const auto waited = std::chrono::steady_clock::now() - since;
    CHECK(ended.closed);
    CHECK(ended.bytes.empty());
    CHECK(waited > 4s); // the request timeout (5 s), not the client, ended it
    CHECK(waited < 10s);
    // Still serving.
    auto still = co_await get(mport, "/metrics");
    CHECK(sample(body_of(still), "socket_connector_connections_total") == 0);
    cli->signal(SIGTERM);
    CHECK(co_await exit_of(*cli) == 0);
}

asio::awaitable<void> bad_address_or_port_in_use() {
    auto ex = co_await asio::this_coro::executor;
    auto taken = loopback_acceptor(ex);
    auto cli = start_cli({"server-to-server", "--a", "127.0.0.1:0", "--b", "127.0.0.1:0", "--stats",
                          "--metrics", fmt::format("127.0.0.1:{}", taken.local_endpoint().port())});
    CHECK(co_await exit_of(*cli) == 1);
    CHECK(cli->err().find("--metrics: cannot listen on 127.0.0.1:") != std::string::npos);
    CHECK(cli->out().find("listening") == std::string::npos);
    CHECK(stats_field(stats_line(cli->out()), "sockets_created") == 0); // --stats on every exit
    auto bad = start_cli({"server-to-server", "--a", "127.0.0.1:0", "--b", "127.0.0.1:0",
                          "--metrics", "127.0.0.1:http"});
    CHECK(co_await exit_of(*bad) == 2);
    CHECK(bad->err().find("--metrics") != std::string::npos);
}

/// Pairs churn through a proxy on two threads (one event loop each) while /stats is scraped:
/// no counter ever goes down, and open never exceeds total.
asio::awaitable<void> never_go_down() {
    auto ex = co_await asio::this_coro::executor;
    auto target = loopback_acceptor(ex);
    auto cli = start_cli({"server-to-socket", "--a", "127.0.0.1:0", "--b",
                          fmt::format("127.0.0.1:{}", target.local_endpoint().port()), "--multi",
                          "--threads", "2", "--timeout", "0", "--metrics", "127.0.0.1:0"});
    auto mport = co_await metrics_port(*cli);
    auto port_a = co_await started_port(*cli, 'A');
    const std::size_t pairs = 150;
    bool churned = false;
    std::vector<std::string> broken;
    std::size_t scrapes = 0;
    auto churn = [&]() -> asio::awaitable<void> {
        for (std::size_t i = 0; i < pairs; ++i) {
            auto a = co_await connect_to(port_a);
            auto data = pattern(100 + i, 1000 + 97 * i);
            auto echoed = co_await (send_and_receive(a, data) && echo_each(target, 1));
            if (checksum(echoed) != checksum(data)) broken.push_back("bytes differ");
        }
        churned = true;
    };
    auto scrape = [&]() -> asio::awaitable<void> {
        std::map<std::string, long long> last;
        const char* names[] = {"sockets_created", "sockets_accepted_a", "bytes_a_to_b",
                               "bytes_b_to_a",    "connections_total",  "auth_failures",
                               "sockets_refused"};
        while (!churned) {
            auto json = body_of(co_await get(mport, "/stats"));
            ++scrapes;
            for (auto name : names) {
                auto v = stats_field(json, name);
                if (v < last[name]) broken.push_back(fmt::format("{} went down: {}", name, json));
                last[name] = v;
            }
            if (stats_field(json, "connections_open") > stats_field(json, "connections_total"))
                broken.push_back("more open than formed: " + json);
        }
    };
    co_await (churn() && scrape());
    CHECK(broken.empty());
    if (!broken.empty()) INFO(broken.front());
    CHECK(scrapes > 1);
    auto metrics = body_of(co_await get(mport, "/metrics"));
    CHECK(sample(metrics, "socket_connector_connections_total") == static_cast<long long>(pairs));
    cli->signal(SIGTERM);
    CHECK(co_await exit_of(*cli) == 0);
}

/// 1,000 clients open requests on the metrics port and never finish them, while pairs relay
/// byte for byte through the relay; an honest scrape still gets its answer.
asio::awaitable<void> slowloris_on_the_endpoint() {
    raise_fd_limit(4096);
    auto cli = start_cli({"server-to-server", "--a", "127.0.0.1:0", "--b", "127.0.0.1:0",
                          "--timeout", "0", "--metrics", "127.0.0.1:0"},
                         child_limits{.max_fds = 4096, .close_inherited = true});
    auto mport = co_await metrics_port(*cli);
    auto port_a = co_await started_port(*cli, 'A');
    auto port_b = co_await started_port(*cli, 'B');
    std::vector<tcp::socket> slow;
    for (int i = 0; i < 1000; ++i) {
        auto s = co_await connect_to(mport);
        co_await send_text(s, "GET /metrics HTTP/1.1\r\nX-Slow: ", false); // never ends
        slow.push_back(std::move(s));
    }
    for (std::uint64_t round = 0; round < 20; ++round) {
        auto a = co_await connect_to(port_a);
        auto b = co_await connect_to(port_b);
        auto from_a = pattern(300 + round, 256u << 10);
        auto from_b = pattern(400 + round, 64u << 10);
        auto [at_a, at_b] = co_await (send_and_receive(a, from_a) && send_and_receive(b, from_b));
        CHECK(checksum(at_b) == checksum(from_a));
        CHECK(checksum(at_a) == checksum(from_b));
    }
    auto metrics = body_of(co_await get(mport, "/metrics"));
    CHECK(sample(metrics, "socket_connector_connections_total") == 20);
    cli->signal(SIGTERM);
    CHECK(co_await exit_of(*cli) == 0);
}

asio::awaitable<void> rendezvous_sessions() {
    auto secret = temp_file("secret", "a shared secret for the metrics test\n");
    auto cli = start_cli({"rendezvous", "--listen", "127.0.0.1:0", "--secret-file", secret,
                          "--metrics", "127.0.0.1:0"});
    auto mport = co_await metrics_port(*cli);
    auto port = co_await started_port(*cli, 0);
    auto key = sc::token_secret::from_file(secret);
    const auto expiry = sc::unix_now() + 300;
    auto a = co_await connect_to(port);
    const auto first_a = sc::mint_token(key, "m-1", sc::side_id::a, expiry) + "\nfrom a";
    co_await send_text(a, first_a);
    std::string metrics;
    for (int i = 0; i < 200 && sample(metrics, "socket_connector_sessions_pending") != 1; ++i) {
        metrics = body_of(co_await get(mport, "/metrics"));
        co_await pause(10ms);
    }
    INFO(metrics);
    CHECK(sample(metrics, "socket_connector_sessions_pending") == 1);
    CHECK(sample(metrics, "socket_connector_sessions_open") == 1);
    CHECK(sample(metrics, "socket_connector_pending{side=\"a\"}") == 1);
    auto bad = co_await connect_to(port);
    co_await send_text(bad, "v1.m-1.B.1.00\n");
    bool refused = co_await closed_within(bad, 10s);
    CHECK(refused);
    auto b = co_await connect_to(port);
    const auto first_b = sc::mint_token(key, "m-1", sc::side_id::b, expiry) + "\nfrom b";
    co_await send_text(b, first_b);
    auto at_b = co_await read_exactly(b, 6);
    auto at_a = co_await read_exactly(a, 6);
    CHECK(at_b == "from a");
    CHECK(at_a == "from b");
    metrics = body_of(co_await get(mport, "/metrics"));
    CHECK(sample(metrics, "socket_connector_sessions_paired_total") == 1);
    CHECK(sample(metrics, "socket_connector_sessions_pending") == 0);
    CHECK(sample(metrics, "socket_connector_auth_failures_total{side=\"a\"}") == 1);
    CHECK(sample(metrics, "socket_connector_sockets_accepted_total{side=\"a\"}") == 3);
    cli->signal(SIGTERM);
    CHECK(co_await exit_of(*cli) == 0);
    std::filesystem::remove(secret);
}

} // namespace

TEST_CASE("metrics count a known transfer and pass promtool and stats agrees with --stats",
          "[metrics][cli]") {
    asio::io_context io;
    run(io, counts_a_known_transfer(), 60s);
}

TEST_CASE("the metrics endpoint answers 404 405 and 400 and closes unfinished requests",
          "[metrics][cli]") {
    asio::io_context io;
    run(io, answers_errors(), 60s);
}

TEST_CASE("metrics on an address in use exit 1 and a bad address exits 2", "[metrics][cli]") {
    asio::io_context io;
    run(io, bad_address_or_port_in_use(), 30s);
}

TEST_CASE("scraped counters never go down while pairs churn on two threads", "[metrics][cli]") {
    asio::io_context io;
    run(io, never_go_down(), 90s);
}

TEST_CASE("1000 slowloris clients on the metrics port while pairs relay byte for byte",
          "[metrics][cli]") {
    asio::io_context io;
    run(io, slowloris_on_the_endpoint(), 90s);
}

TEST_CASE("a rendezvous exports its sessions pending and paired", "[metrics][cli]") {
    asio::io_context io;
    run(io, rendezvous_sessions(), 60s);
}
