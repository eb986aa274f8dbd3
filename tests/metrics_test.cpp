// The counters in the Prometheus text format (`prometheus_text`), checked line by line and by
// Prometheus's own `promtool check metrics`; snapshots added up (`stats::add`); the counters a
// connector keeps per side and for sessions.
#include <socket_connector/metrics.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "support/net.hpp"
#include "support/process.hpp"

using namespace test_support;

namespace {

/// Every sample line of `text` (`name{labels} value`), keyed by what comes before the value.
std::map<std::string, std::uint64_t> samples_of(const std::string& text) {
    std::map<std::string, std::uint64_t> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        if (line.empty() || line.front() == '#') continue;
        auto space = line.rfind(' ');
        out[line.substr(0, space)] = std::stoull(line.substr(space + 1));
    }
    return out;
}

/// `promtool check metrics` on `text`: its exit code and what it printed.
struct promtool_result {
    int code = -1;
    std::string said;
};
promtool_result promtool_check(const std::string& text) {
    auto path = std::filesystem::temp_directory_path() /
                fmt::format("sc-metrics-{}.txt", static_cast<long>(::getpid()));
    std::ofstream(path, std::ios::binary) << text;
    child_process p({"promtool", "check", "metrics"}, path.string());
    promtool_result r;
    for (int i = 0; i < 2000 && !p.exit_code(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(5)); // bounded: 10 s
    r.code = p.exit_code().value_or(-1);
    r.said = p.out() + p.err();
    std::filesystem::remove(path);
    return r;
}

sc::stats sample_stats() {
    sc::stats s;
    s.sockets_created = 7;
    s.sockets_accepted_a = 4;
    s.sockets_accepted_b = 2;
    s.bytes_a_to_b = 1048576;
    s.bytes_b_to_a = 12345;
    s.connections_total = 3;
    s.connections_open = 1;
    s.sessions_paired = 2;
    s.auth_failures = 5;
    s.auth_failures_a = 3;
    s.auth_failures_b = 2;
    s.sockets_refused = 9;
    s.pending_a = 6;
    s.pending_b = 1;
    s.sessions_open = 4;
    s.sessions_pending = 2;
    s.remote_addresses = {"127.0.0.1", "::1"};
    return s;
}

} // namespace

TEST_CASE("prometheus_text has every counter with its HELP and TYPE lines", "[metrics]") {
    const auto text = sc::prometheus_text(sample_stats());
    INFO(text);
    auto samples = samples_of(text);
    CHECK(samples["socket_connector_connections_total"] == 3);
    CHECK(samples["socket_connector_connections_open"] == 1);
    CHECK(samples["socket_connector_bytes_total{direction=\"a_to_b\"}"] == 1048576);
    CHECK(samples["socket_connector_bytes_total{direction=\"b_to_a\"}"] == 12345);
    CHECK(samples["socket_connector_sockets_created_total"] == 7);
    CHECK(samples["socket_connector_sockets_accepted_total{side=\"a\"}"] == 4);
    CHECK(samples["socket_connector_sockets_accepted_total{side=\"b\"}"] == 2);
    CHECK(samples["socket_connector_sockets_refused_total"] == 9);
    CHECK(samples["socket_connector_auth_failures_total{side=\"a\"}"] == 3);
    CHECK(samples["socket_connector_auth_failures_total{side=\"b\"}"] == 2);
    CHECK(samples["socket_connector_pending{side=\"a\"}"] == 6);
    CHECK(samples["socket_connector_pending{side=\"b\"}"] == 1);
    CHECK(samples["socket_connector_sessions_paired_total"] == 2);
    CHECK(samples["socket_connector_sessions_open"] == 4);
    CHECK(samples["socket_connector_sessions_pending"] == 2);
    CHECK(samples.size() == 15);
    // One HELP and one TYPE per family, before its samples; counters end in _total.
    std::istringstream in(text);
    std::string family;
    std::size_t families = 0;
    for (std::string line; std::getline(in, line);) {
        if (line.starts_with("# HELP ")) {
            family = line.substr(7, line.find(' ', 7) - 7);
            ++families;
            continue;
        }
        if (line.starts_with("# TYPE ")) {
            CHECK(line.starts_with("# TYPE " + family + " "));
            if (line.ends_with(" counter")) CHECK(family.ends_with("_total"));
            continue;
        }
        CHECK(line.starts_with(family)); // a sample of the family just introduced
    }
    CHECK(families == 11);
    CHECK(text.find("127.0.0.1") == std::string::npos); // no label per client
    CHECK(text.ends_with("\n"));
}

TEST_CASE("prometheus_text passes promtool check metrics", "[metrics]") {
    for (const auto& s : {sc::stats{}, sample_stats()}) {
        auto r = promtool_check(sc::prometheus_text(s));
        INFO(r.said);
        CHECK(r.code == 0);
        CHECK(r.said.empty());
    }
    auto prefixed = sc::prometheus_text(sample_stats(), "relay_7");
    CHECK(prefixed.find("relay_7_bytes_total{direction=\"a_to_b\"} 1048576\n") !=
          std::string::npos);
    CHECK(prefixed.find("socket_connector") == std::string::npos);
    CHECK(promtool_check(prefixed).code == 0);
}

TEST_CASE("stats add sums every count and merges the addresses each once", "[metrics]") {
    auto total = sample_stats();
    auto other = sample_stats();
    other.remote_addresses = {"::1", "10.0.0.1"};
    total.add(other);
    CHECK(total.sockets_created == 14);
    CHECK(total.sockets_accepted_a == 8);
    CHECK(total.sockets_accepted_b == 4);
    CHECK(total.bytes_a_to_b == 2 * 1048576);
    CHECK(total.bytes_b_to_a == 2 * 12345);
    CHECK(total.connections_total == 6);
    CHECK(total.connections_open == 2);
    CHECK(total.sessions_paired == 4);
    CHECK(total.auth_failures == 10);
    CHECK(total.auth_failures_a == 6);
    CHECK(total.auth_failures_b == 4);
    CHECK(total.sockets_refused == 18);
    CHECK(total.pending_a == 12);
    CHECK(total.pending_b == 2);
    CHECK(total.sessions_open == 8);
    CHECK(total.sessions_pending == 4);
    CHECK(total.remote_addresses == std::vector<std::string>{"127.0.0.1", "::1", "10.0.0.1"});
    sc::stats limited;
    limited.add(total, 2);
    CHECK(limited.remote_addresses == std::vector<std::string>{"127.0.0.1", "::1"});
}

TEST_CASE("a connector counts accepted sockets and failed authentications per side", "[metrics]") {
    asio::io_context io;
    run(
        io,
        []() -> asio::awaitable<void> {
            auto ex = co_await asio::this_coro::executor;
            sc::options o = loopback_options();
            o.b.auth = sc::token_verifier("letmein");
            auto c = co_await sc::server_to_server(ex, std::move(o));
            // A fails nothing (no verifier); one B fails its token, the next passes it.
            auto bad = co_await connect_to(c->side_b_port());
            co_await send_text(bad, "wrong\n");
            bool refused = co_await closed_within(bad, 10s);
            CHECK(refused);
            auto a = co_await connect_to(c->side_a_port());
            CHECK(co_await eventually([&] { return c->stats().pending_a == 1; }));
            auto b = co_await connect_to(c->side_b_port());
            co_await send_text(b, "letmein\n");
            CHECK(co_await eventually([&] { return c->connections() == 1; }));
            auto s = c->stats();
            CHECK(s.sockets_accepted_a == 1);
            CHECK(s.sockets_accepted_b == 2);
            CHECK(s.sockets_created == 3);
            CHECK(s.auth_failures_a == 0);
            CHECK(s.auth_failures_b == 1);
            CHECK(s.auth_failures == 1);
            CHECK(s.pending_a == 0);
            CHECK(s.pending_b == 0);
            CHECK(s.connections_open == 1);
            c->close();
            co_await c->wait_closed();
        }(),
        30s);
}
