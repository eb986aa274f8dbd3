// SIGTERM with live pairs: with --drain-timeout new connections are refused while live pairs
// finish (and those still open at the timeout are closed); without it, live pairs close at once.
#include <socket_connector/connector.hpp>

#include <array>
#include <chrono>
#include <csignal>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "support/faults.hpp"
#include "support/programs.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

/// Polls until connecting to `port` is refused; true if it was within `limit`.
asio::awaitable<bool> refused_within(unsigned short port, std::chrono::milliseconds limit) {
    auto end = steady::now() + limit;
    for (;;) {
        auto ec = co_await try_connect(port);
        if (ec == asio::error::connection_refused) co_return true;
        if (steady::now() > end) co_return false;
        co_await pause(10ms);
    }
}

/// `group_too`: the signal also goes to the command's process group at once, as coreutils
/// `timeout` and supervisors send it: the repeat is the same request and the drain goes on.
asio::awaitable<void> drain_lets_pair_finish(bool group_too) {
    auto ex = co_await asio::this_coro::executor;
    auto cli = start_cli({"server-to-server", "--a", "127.0.0.1:0", "--b", "127.0.0.1:0",
                          "--timeout", "0", "--drain-timeout", "5", "--stats"},
                         {.new_process_group = true});
    auto port_a = co_await started_port(*cli, 'A');
    auto port_b = co_await started_port(*cli, 'B');
    tcp::socket a(ex);
    tcp::socket b(ex);
    co_await form_pair(port_a, port_b, a, b);
    auto from_a = pattern(120, 4u << 20);
    auto from_b = pattern(121, 3u << 20);
    // Half of A's bytes go before the signal, the rest after.
    std::span<const char> head(from_a.data(), from_a.size() / 2);
    std::span<const char> tail(from_a.data() + head.size(), from_a.size() - head.size());
    co_await send_all(a, head, false);
    auto got_head = co_await read_exactly(b, head.size());
    auto signalled = steady::now();
    cli->signal(SIGTERM);
    if (group_too) cli->signal_group(SIGTERM);
    // New connections are refused at once...
    bool refused_a = co_await refused_within(port_a, 2s);
    bool refused_b = co_await refused_within(port_b, 2s);
    CHECK(refused_a);
    CHECK(refused_b);
    CHECK(!cli->exit_code().has_value());
    // ...while the live pair finishes, every byte delivered.
    std::vector<char> tail_copy(tail.begin(), tail.end());
    asio::steady_timer limit(ex, 4s);
    auto outcome = co_await ((send_and_receive(a, tail_copy) && send_and_receive(b, from_b)) ||
                             limit.async_wait(use_tuple));
    REQUIRE(outcome.index() == 0);
    auto [at_a, got_tail] = std::get<0>(outcome);
    std::vector<char> at_b(got_head.begin(), got_head.end());
    at_b.insert(at_b.end(), got_tail.begin(), got_tail.end());
    CHECK(at_b.size() == from_a.size());
    CHECK(checksum(at_b) == checksum(from_a));
    CHECK(at_a.size() == from_b.size());
    CHECK(checksum(at_a) == checksum(from_b));
    // ...then the command exits 0 soon after, well before the drain timeout.
    auto finished = steady::now();
    CHECK(co_await exit_of(*cli, 3s) == 0);
    auto exited = steady::now();
    INFO("exited " << seconds_between(finished, exited) << " s after the pair finished, "
                   << seconds_between(signalled, exited) << " s after SIGTERM");
    CHECK(seconds_between(finished, exited) < 1.5);
    CHECK(seconds_between(signalled, exited) < 5.0);
    auto json = stats_line(cli->out());
    INFO("stdout: " << cli->out());
    CHECK(stats_field(json, "bytes_a_to_b") == static_cast<long long>(1 + from_a.size()));
    CHECK(stats_field(json, "bytes_b_to_a") == static_cast<long long>(1 + from_b.size()));
}

/// Sends a 4 KiB slice of a repeating pattern every 10 ms until a write fails (at most 2,000).
asio::awaitable<void> trickle(tcp::socket& socket, const std::vector<char>& cycle,
                              std::size_t& sent) {
    for (int i = 0; i < 2000; ++i) {
        std::array<char, 4096> chunk{};
        for (auto& ch : chunk)
            ch = cycle[sent++ % cycle.size()];
        auto [ec, n] = co_await asio::async_write(socket, asio::buffer(chunk), use_tuple);
        if (ec) {
            sent -= chunk.size() - n;
            co_return;
        }
        co_await pause(10ms);
    }
}

/// Lets some bytes flow, sends SIGTERM, then checks that new connections are refused.
asio::awaitable<void> terminate_then_probe(child_process& p, unsigned short port,
                                           steady::time_point& signalled, bool& refused) {
    co_await pause(300ms);
    signalled = steady::now();
    p.signal(SIGTERM);
    refused = co_await refused_within(port, 1500ms);
}

asio::awaitable<void> drain_timeout_closes_the_rest() {
    auto ex = co_await asio::this_coro::executor;
    constexpr double drain = 2.0;
    auto cli = start_cli({"server-to-server", "--a", "127.0.0.1:0", "--b", "127.0.0.1:0",
                          "--timeout", "0", "--drain-timeout", "2", "--stats"});
    auto port_a = co_await started_port(*cli, 'A');
    auto port_b = co_await started_port(*cli, 'B');
    tcp::socket a(ex);
    tcp::socket b(ex);
    co_await form_pair(port_a, port_b, a, b);
    // A pair that never finishes: A trickles bytes, B checks them, neither ends its stream.
    auto cycle = pattern(130, 10007);
    std::size_t sent = 0;
    std::size_t wrong = 0;
    close_watch at_b;
    close_watch at_a;
    steady::time_point signalled{};
    bool refused = false;
    asio::steady_timer limit(ex, 10s);
    auto outcome = co_await ((trickle(a, cycle, sent) && check_stream(b, cycle, at_b, wrong) &&
                              watch_until_closed(a, at_a) &&
                              terminate_then_probe(*cli, port_a, signalled, refused)) ||
                             limit.async_wait(use_tuple));
    CHECK(outcome.index() == 0);
    CHECK(refused);
    REQUIRE(at_b.closed);
    REQUIRE(at_a.closed);
    auto b_after = seconds_between(signalled, at_b.at);
    auto a_after = seconds_between(signalled, at_a.at);
    INFO("B closed " << b_after << " s and A " << a_after << " s after SIGTERM (drain " << drain
                     << " s)");
    CHECK(b_after >= drain - 0.1);
    CHECK(b_after < drain + 1.5);
    CHECK(a_after >= drain - 0.1);
    CHECK(a_after < drain + 1.5);
    // Nothing half-written: B got an exact prefix of A's stream.
    CHECK(wrong == 0);
    CHECK(at_b.received > 4096);
    CHECK(at_b.received <= sent);
    CHECK(co_await exit_of(*cli, 3s) == 0);
    auto exited = steady::now();
    CHECK(seconds_between(signalled, exited) < drain + 2.0);
    auto json = stats_line(cli->out());
    INFO("stdout: " << cli->out());
    REQUIRE(!json.empty());
    CHECK(json.back() == '\n');
    CHECK(json[json.size() - 2] == '}');
    CHECK(stats_field(json, "bytes_a_to_b") >= static_cast<long long>(at_b.received));
}

/// Sends SIGTERM to the command and waits (at most 5 s) until both sockets of its pair are
/// closed; how many seconds after the signal each was (a failed check if not within the limit).
asio::awaitable<std::pair<double, double>> signal_and_watch(child_process& cli, tcp::socket& a,
                                                            tcp::socket& b) {
    auto ex = co_await asio::this_coro::executor;
    close_watch at_a;
    close_watch at_b;
    auto signalled = steady::now();
    cli.signal(SIGTERM);
    asio::steady_timer limit(ex, 5s);
    auto outcome = co_await ((watch_until_closed(a, at_a) && watch_until_closed(b, at_b)) ||
                             limit.async_wait(use_tuple));
    CHECK(outcome.index() == 0);
    co_return std::pair{seconds_between(signalled, at_a.at), seconds_between(signalled, at_b.at)};
}

asio::awaitable<void> sigterm_without_drain_closes_at_once() {
    auto ex = co_await asio::this_coro::executor;
    auto cli = start_cli(
        {"server-to-server", "--a", "127.0.0.1:0", "--b", "127.0.0.1:0", "--timeout", "0"});
    tcp::socket a(ex);
    tcp::socket b(ex);
    co_await form_pair_through(*cli, a, b);
    auto [after_a, after_b] = co_await signal_and_watch(*cli, a, b);
    CHECK(after_a < 1.0);
    CHECK(after_b < 1.0);
    CHECK(co_await exit_of(*cli, 3s) == 0);
}

/// The stats line of a command that relayed one pair (form_pair's byte each way): present, and
/// right.
void check_stats_of_one_pair(child_process& cli) {
    auto json = stats_line(cli.out());
    INFO("stdout: " << cli.out() << "\nstderr: " << cli.err());
    REQUIRE(!json.empty());
    CHECK(stats_field(json, "connections_total") == 1);
    CHECK(stats_field(json, "bytes_a_to_b") == 1);
    CHECK(stats_field(json, "bytes_b_to_a") == 1);
}

/// A signal to the process and its group at once, with no drain time: the command closes at
/// once, exits 0 and prints its stats, every time (the stats used to be lost when the repeat cut
/// the close short).
asio::awaitable<void> doubled_signal_keeps_stats(int sig) {
    auto ex = co_await asio::this_coro::executor;
    for (int round = 0; round < 5; ++round) {
        INFO("round " << round);
        auto cli = start_cli({"server-to-server", "--a", "127.0.0.1:0", "--b", "127.0.0.1:0",
                              "--timeout", "0", "--stats", "--verbose"},
                             {.new_process_group = true});
        tcp::socket a(ex);
        tcp::socket b(ex);
        co_await form_pair_through(*cli, a, b);
        cli->signal(sig);
        cli->signal_group(sig);
        CHECK(co_await exit_of(*cli, 5s) == 0);
        check_stats_of_one_pair(*cli);
    }
}

/// coreutils `timeout` itself, which sends SIGTERM to the command and then to its group.
asio::awaitable<void> under_coreutils_timeout() {
    auto ex = co_await asio::this_coro::executor;
    // By pointer, as start_program holds its children (support/programs.hpp says why).
    auto cli = std::make_unique<child_process>(
        std::vector<std::string>{"timeout", "3", program_path("socket-connector"),
                                 "server-to-server", "--a", "127.0.0.1:0", "--b", "127.0.0.1:0",
                                 "--timeout", "0", "--stats", "--verbose"},
        "/dev/null", child_limits{.new_process_group = true});
    tcp::socket a(ex);
    tcp::socket b(ex);
    co_await form_pair_through(*cli, a, b);
    CHECK(co_await exit_of(*cli, 10s) == 124); // timeout's status when it had to signal
    check_stats_of_one_pair(*cli);
}

/// A second signal a while after the first ends the drain: the open pair is closed at once and
/// the command exits 0 with its stats.
asio::awaitable<void> second_signal_ends_the_drain() {
    auto ex = co_await asio::this_coro::executor;
    auto cli = start_cli({"server-to-server", "--a", "127.0.0.1:0", "--b", "127.0.0.1:0",
                          "--timeout", "0", "--drain-timeout", "60", "--stats"},
                         {.new_process_group = true});
    auto port_a = co_await started_port(*cli, 'A');
    auto port_b = co_await started_port(*cli, 'B');
    tcp::socket a(ex);
    tcp::socket b(ex);
    co_await form_pair(port_a, port_b, a, b);
    cli->signal(SIGTERM);
    CHECK(co_await refused_within(port_a, 2s)); // draining: no longer accepting
    // Past the second within which a repeat counts as the same request (a wait for time to pass,
    // not for an event).
    co_await pause(1200ms);
    CHECK(!cli->exit_code().has_value()); // still draining: the pair is open
    auto [after_a, after_b] = co_await signal_and_watch(*cli, a, b);
    CHECK(after_a < 2.0);
    CHECK(after_b < 2.0);
    CHECK(co_await exit_of(*cli, 3s) == 0);
    check_stats_of_one_pair(*cli);
}

} // namespace

TEST_CASE("SIGTERM with --drain-timeout: a live pair finishes, then exit 0", "[faults]") {
    asio::io_context io;
    run(io, drain_lets_pair_finish(false), 30s);
}

TEST_CASE("SIGTERM to the command and its group at once: the drain goes on", "[faults]") {
    asio::io_context io;
    run(io, drain_lets_pair_finish(true), 30s);
}

TEST_CASE("SIGTERM or SIGINT twice at once: stats printed on every exit", "[faults]") {
    for (int sig : {SIGTERM, SIGINT}) {
        INFO("signal " << sig);
        asio::io_context io;
        run(io, doubled_signal_keeps_stats(sig), 60s);
    }
}

TEST_CASE("under coreutils timeout the command exits with its stats", "[faults]") {
    asio::io_context io;
    run(io, under_coreutils_timeout(), 30s);
}

TEST_CASE("a second SIGTERM a while later ends the drain at once", "[faults]") {
    asio::io_context io;
    run(io, second_signal_ends_the_drain(), 30s);
}

TEST_CASE("SIGTERM with --drain-timeout: a pair still open at the timeout is closed", "[faults]") {
    asio::io_context io;
    run(io, drain_timeout_closes_the_rest(), 30s);
}

TEST_CASE("SIGTERM without --drain-timeout closes live pairs at once", "[faults]") {
    asio::io_context io;
    run(io, sigterm_without_drain_closes_at_once(), 30s);
}
