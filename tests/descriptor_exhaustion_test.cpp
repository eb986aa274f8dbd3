// Running out of descriptors: the command, flooded with more clients than it has descriptors
// for, neither crashes nor spins, and serves again once descriptors are free.
#include <socket_connector/connector.hpp>

#include <chrono>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <unistd.h>

#include "support/faults.hpp"
#include "support/programs.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

/// The last `n` characters of `text`.
std::string tail(const std::string& text, std::size_t n = 1500) {
    return text.size() <= n ? text : "..." + text.substr(text.size() - n);
}

asio::awaitable<void> out_of_descriptors() {
    child_limits limits;
    limits.max_fds = 64;
    limits.close_inherited = true;
    auto cli =
        start_cli({"server-to-server", "--a", "127.0.0.1:0", "--b", "127.0.0.1:0", "--timeout", "0",
                   "--auth-a", "tok", "--auth-b", "tok", "--auth-timeout", "60"},
                  limits);
    auto port_a = co_await started_port(*cli, 'A');
    auto port_b = co_await started_port(*cli, 'B');
    auto base_fds = fd_count(cli->pid());
    // Far more clients than the relay has descriptors for: they wait in its backlog.
    std::vector<tcp::socket> flood;
    for (int i = 0; i < 120; ++i) {
        auto socket = co_await connect_to(port_a);
        flood.push_back(std::move(socket));
    }
    bool starved =
        co_await eventually([&] { return cli->err().find("open files") != std::string::npos; }, 5s);
    {
        INFO("stderr: " << tail(cli->err()));
        REQUIRE(starved);
    }
    auto starved_fds = fd_count(cli->pid());
    // While starved it neither crashes nor spins.
    const auto window = 2s;
    auto ticks_before = cpu_ticks(cli->pid());
    co_await pause(window);
    auto ticks_after = cpu_ticks(cli->pid());
    REQUIRE(ticks_before >= 0);
    auto ticks_per_second = ::sysconf(_SC_CLK_TCK);
    double cpu = static_cast<double>(ticks_after - ticks_before) /
                 static_cast<double>(ticks_per_second) /
                 std::chrono::duration<double>(window).count();
    WARN("out of descriptors: " << base_fds << " fds at start, " << starved_fds
                                << " while starved (limit 64); CPU " << cpu * 100
                                << "% of a core over 2 s");
    CHECK(cpu < 0.2);
    CHECK(!cli->exit_code().has_value());
    // Once descriptors are free, it serves again.
    flood.clear();
    auto released = steady::now();
    auto from_a = pattern(110, 256 * 1024);
    auto from_b = pattern(111, 200 * 1024);
    std::vector<char> out_a{'t', 'o', 'k', '\n'};
    std::vector<char> out_b{'t', 'o', 'k', '\n'};
    out_a.insert(out_a.end(), from_a.begin(), from_a.end());
    out_b.insert(out_b.end(), from_b.begin(), from_b.end());
    auto ex = co_await asio::this_coro::executor;
    tcp::socket a(ex);
    tcp::socket b(ex);
    auto [ec_a] = co_await a.async_connect(loopback(port_a), use_tuple);
    auto [ec_b] = co_await b.async_connect(loopback(port_b), use_tuple);
    INFO("connect A: " << ec_a.message() << ", connect B: " << ec_b.message() << "; the command "
                       << (cli->exit_code() ? fmt::format("exited {}", *cli->exit_code())
                                            : std::string("runs"))
                       << "; its stderr ends: " << tail(cli->err()));
    REQUIRE(!ec_a);
    REQUIRE(!ec_b);
    asio::steady_timer limit(ex, 10s);
    auto outcome = co_await ((send_and_receive(a, out_a) && send_and_receive(b, out_b)) ||
                             limit.async_wait(use_tuple));
    REQUIRE(outcome.index() == 0);
    auto [at_a, at_b] = std::get<0>(outcome);
    CHECK(checksum(at_b) == checksum(from_a));
    CHECK(checksum(at_a) == checksum(from_b));
    auto took = seconds_between(released, steady::now());
    INFO("served again " << took << " s after the descriptors were freed");
    CHECK(took < 5.0);
    cli->signal(SIGTERM);
    CHECK(co_await exit_of(*cli) == 0);
}

} // namespace

TEST_CASE("out of descriptors: the command neither crashes nor spins, and serves again",
          "[faults]") {
    if (address_sanitized) {
        WARN("not run under AddressSanitizer + UBSan: their runtime needs descriptors (UBSan's "
             "vptr check opens a pipe), so a program out of them gets false reports");
        return;
    }
    asio::io_context io;
    run(io, out_of_descriptors(), 60s);
}
