// Many pairs at once through one process of the command: ten thousand held open together, each
// checked both ways, and what an idle pair costs in memory (also when a side sent its first
// bytes while it waited).
#include <socket_connector/connector.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <asio/detached.hpp>
#include <fmt/format.h>
#include <sys/resource.h>

#include "support/faults.hpp"
#include "support/programs.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

/// 32 bytes from one side of pair `id`: the id, the side, then patterned bytes.
std::array<char, 32> hello(std::uint64_t id, char side) {
    std::array<char, 32> m{};
    std::memcpy(m.data(), &id, sizeof id);
    m[8] = side;
    auto rest = pattern(id * 2 + (side == 'A' ? 0u : 1u), m.size() - 9);
    std::copy(rest.begin(), rest.end(), m.begin() + 9);
    return m;
}

/// `size` patterned bytes that follow the hello of speaker `id`.
std::vector<char> padding(std::uint64_t id, std::size_t size) {
    return pattern(id * 2 + 7, size);
}

/// Pairs formed through a relay and then held open. All A sockets connect first, then all B
/// sockets. The `speaker` side of each pair says hello with its own number as soon as it has
/// connected; the other side (whichever the relay paired it with) checks the hello and answers
/// for that number; the speaker checks the answer is for itself. So every byte is checked both
/// ways without knowing in advance which A the relay pairs with which B.
struct crowd {
    std::size_t target = 0;
    char speaker = 'B';
    std::size_t padding = 0; // bytes the speaker sends after its hello
    unsigned short port_a = 0;
    unsigned short port_b = 0;
    std::size_t next_a = 0;
    std::size_t next_b = 0;
    std::size_t connected = 0;
    std::size_t exchanged = 0; // sides whose exchange checked out
    std::size_t bad = 0;       // sides that got wrong bytes
    std::size_t failed = 0;    // sides that failed (the error is kept)
    std::size_t closed = 0;
    std::string first_error;
    std::vector<bool> heard;                     // speaker numbers heard by some listener
    std::set<unsigned short> a_ports;            // the local ports of the A sockets
    std::unique_ptr<asio::steady_timer> release; // cancelled to close every socket
};

/// One socket of the crowd: connects, talks, then holds the connection until released.
asio::awaitable<void> crowd_member(std::shared_ptr<crowd> cr, char side, std::uint64_t index,
                                   tcp::socket socket) {
    const char other = side == 'A' ? 'B' : 'A';
    try {
        std::array<char, 32> got{};
        if (side == cr->speaker) {
            auto mine = hello(index, side);
            auto pad = padding(index, cr->padding);
            std::array<asio::const_buffer, 2> out{asio::buffer(mine), asio::buffer(pad)};
            co_await asio::async_write(socket, out, asio::use_awaitable);
            co_await asio::async_read(socket, asio::buffer(got), asio::use_awaitable);
            if (got != hello(index, other)) ++cr->bad;
        } else {
            co_await asio::async_read(socket, asio::buffer(got), asio::use_awaitable);
            std::uint64_t peer = 0;
            std::memcpy(&peer, got.data(), sizeof peer);
            std::vector<char> pad(cr->padding);
            co_await asio::async_read(socket, asio::buffer(pad), asio::use_awaitable);
            if (peer >= cr->target || got != hello(peer, other) || cr->heard[peer] ||
                pad != padding(peer, cr->padding)) {
                ++cr->bad;
            } else {
                cr->heard[peer] = true;
                auto answer = hello(peer, side);
                co_await asio::async_write(socket, asio::buffer(answer), asio::use_awaitable);
            }
        }
        ++cr->exchanged;
    } catch (const std::exception& e) {
        if (cr->failed++ == 0) cr->first_error = fmt::format("{}: {}", side, e.what());
        co_return;
    }
    co_await cr->release->async_wait(use_tuple);
    ++cr->closed;
}

/// Connects sockets of one side until the crowd has enough of them.
asio::awaitable<void> crowd_connector(std::shared_ptr<crowd> cr, char side) {
    auto ex = co_await asio::this_coro::executor;
    auto& next = side == 'A' ? cr->next_a : cr->next_b;
    while (next < cr->target) {
        std::uint64_t index = next++;
        tcp::socket socket(ex);
        auto [ec] = co_await socket.async_connect(loopback(side == 'A' ? cr->port_a : cr->port_b),
                                                  use_tuple);
        if (ec) {
            if (cr->failed++ == 0)
                cr->first_error = fmt::format("connect {}: {}", side, ec.message());
            continue;
        }
        ++cr->connected;
        if (side == 'A') cr->a_ports.insert(socket.local_endpoint().port());
        asio::co_spawn(ex, crowd_member(cr, side, index, std::move(socket)), asio::detached);
    }
}

/// What /proc/net/tcp shows of the relay's sockets on local port `port`.
struct relay_sockets {
    std::size_t accepted = 0;     // established and accepted (they have an inode)
    std::size_t with_unread = 0;  // of those, how many have bytes the relay has not read
    std::size_t not_accepted = 0; // established, still in the backlog
    std::size_t backlog = 0;      // the listening socket's count of connections to accept
    std::size_t other = 0;        // in another state
};

/// Reads /proc/net/tcp once. The peer ports of accepted sockets on `port` with nothing left
/// unread are added to `drained`. One read may miss entries while other sockets come and go (the
/// kernel lists its hash table a page at a time), so callers accumulate over several reads.
relay_sockets relay_sockets_on(unsigned short port, std::set<unsigned short>& drained) {
    relay_sockets r;
    std::ifstream in("/proc/net/tcp");
    std::string line;
    std::getline(in, line); // header
    auto local = fmt::format(":{:04X} ", port);
    while (std::getline(in, line)) {
        // "  sl  local_address rem_address   st tx_queue:rx_queue tr:tm retrnsmt uid timeout inode"
        auto colon = line.find(':');
        if (colon == std::string::npos || line.compare(colon + 10, local.size(), local) != 0)
            continue;
        std::istringstream fields(line.substr(colon + 1));
        std::string local_address, remote_address, state, queues, timer, retransmits, uid, timeout,
            inode;
        fields >> local_address >> remote_address >> state >> queues >> timer >> retransmits >>
            uid >> timeout >> inode;
        auto rx = std::stoul(queues.substr(queues.find(':') + 1), nullptr, 16);
        if (state == "0A") {
            r.backlog += rx;
        } else if (state != "01") {
            ++r.other;
        } else if (inode.empty() || inode == "0") {
            ++r.not_accepted;
        } else {
            ++r.accepted;
            if (rx != 0) {
                ++r.with_unread;
            } else {
                auto peer =
                    std::stoul(remote_address.substr(remote_address.find(':') + 1), nullptr, 16);
                drained.insert(static_cast<unsigned short>(peer));
            }
        }
    }
    return r;
}

/// Forms `pairs` pairs through the command `cli` (listening on the crowd's ports) and holds
/// them; false (with the reason in the crowd) if they could not all be formed and checked.
asio::awaitable<bool> form_crowd(std::shared_ptr<crowd> cr, child_process& cli,
                                 std::chrono::milliseconds limit) {
    auto ex = co_await asio::this_coro::executor;
    cr->heard.assign(cr->target, false);
    // Every A first, each accepted by the relay; a speaking A's hello read by it while the A
    // waits for a partner.
    for (int w = 0; w < 64; ++w)
        asio::co_spawn(ex, crowd_connector(cr, 'A'), asio::detached);
    auto end = steady::now() + limit;
    relay_sockets sockets;
    std::set<unsigned short> drained; // peer ports of the relay's accepted, fully read sockets
    auto ours = [&] {
        return std::count_if(drained.begin(), drained.end(),
                             [&](unsigned short p) { return cr->a_ports.count(p) != 0; });
    };
    for (;;) {
        if (cr->failed > 0) co_return false;
        if (cr->connected == cr->target) {
            sockets = relay_sockets_on(cr->port_a, drained);
            if (static_cast<std::size_t>(ours()) == cr->target) break;
        }
        if (steady::now() > end) {
            cr->first_error = fmt::format(
                "the relay accepted and read {} of {} A sockets; last read of /proc/net/tcp: {} "
                "accepted, {} with unread bytes, {} established but not accepted, {} in the "
                "backlog, {} in other states; the relay has {} descriptors",
                ours(), cr->target, sockets.accepted, sockets.with_unread, sockets.not_accepted,
                sockets.backlog, sockets.other, fd_count(cli.pid()));
            co_return false;
        }
        co_await pause(20ms); // /proc/net/tcp is long: not too often
    }
    // Then every B: each is paired at once with a waiting A.
    for (int w = 0; w < 64; ++w)
        asio::co_spawn(ex, crowd_connector(cr, 'B'), asio::detached);
    bool talked = co_await eventually(
        [&] { return cr->exchanged + cr->failed + cr->bad >= 2 * cr->target; }, limit);
    co_return talked && cr->failed == 0 && cr->bad == 0;
}

asio::awaitable<void> release_crowd(std::shared_ptr<crowd> cr) {
    cr->release->cancel();
    bool closed = co_await eventually([&] { return cr->closed == cr->exchanged; });
    CHECK(closed);
}

std::shared_ptr<crowd> make_crowd(asio::any_io_executor ex, std::size_t pairs, char speaker,
                                  unsigned short port_a, unsigned short port_b) {
    auto cr = std::make_shared<crowd>();
    cr->target = pairs;
    cr->speaker = speaker;
    cr->port_a = port_a;
    cr->port_b = port_b;
    cr->release = std::make_unique<asio::steady_timer>(ex, steady::time_point::max());
    return cr;
}

asio::awaitable<void> ten_thousand_pairs() {
    auto ex = co_await asio::this_coro::executor;
    std::size_t pairs = sanitized ? 2000 : 10000;
    if (sanitized) WARN("built with a sanitizer: " << pairs << " pairs, memory not checked");
    // Both ends of every pair live in this process, and the relay has two sockets per pair.
    auto limit = raise_fd_limit(2 * pairs + 1024);
    struct rlimit hard {};
    ::getrlimit(RLIMIT_NOFILE, &hard);
    auto ours = (static_cast<std::size_t>(limit) - fd_count() - 64) / 2;
    auto relays = (static_cast<std::size_t>(hard.rlim_max) - 256) / 2; // room for its pipes
    if (std::min(ours, relays) < pairs) {
        pairs = std::min(ours, relays);
        WARN("RLIMIT_NOFILE could not be raised past "
             << limit << " (hard limit " << hard.rlim_max << "): holding " << pairs
             << " pairs instead of " << (sanitized ? 2000 : 10000));
    }
    child_limits limits;
    limits.max_fds = std::min<rlim_t>(2 * pairs + 256, hard.rlim_max);
    limits.close_inherited = true;
    // Every A waits for its B: no cap on waiting sides.
    auto cli = start_cli({"server-to-server", "--a", "127.0.0.1:0", "--b", "127.0.0.1:0",
                          "--timeout", "0", "--max-pending", "0", "--stats"},
                         limits);
    auto port_a = co_await started_port(*cli, 'A');
    auto port_b = co_await started_port(*cli, 'B');
    auto rss_before = rss_kib(cli->pid());
    auto cr = make_crowd(ex, pairs, 'B', port_a, port_b);
    auto start = steady::now();
    bool formed = co_await form_crowd(cr, *cli, 60s);
    auto took = seconds_between(start, steady::now());
    INFO("connected " << cr->connected << ", exchanged " << cr->exchanged << ", bad " << cr->bad
                      << ", failed " << cr->failed << " (first: " << cr->first_error << ")");
    REQUIRE(formed);
    // All of them held at once: the relay has a socket for each end.
    auto relay_fds = fd_count(cli->pid());
    CHECK(relay_fds >= 2 * pairs);
    auto rss_held = rss_kib(cli->pid());
    double per_pair = static_cast<double>(rss_held - rss_before) / static_cast<double>(pairs);
    WARN(pairs << " pairs held at once through one socket-connector process (formed and checked"
               << " both ways in " << took << " s); relay RSS " << rss_before << " KiB -> "
               << rss_held << " KiB: " << per_pair << " KiB per idle pair; relay fds "
               << relay_fds);
    if (!sanitized) CHECK(per_pair < 16.0); // an idle pair holds no buffer
    co_await release_crowd(cr);
    cli->signal(SIGTERM);
    CHECK(co_await exit_of(*cli, 30s) == 0);
    auto json = stats_line(cli->out());
    INFO(json);
    CHECK(stats_field(json, "connections_total") == static_cast<long long>(pairs));
    CHECK(stats_field(json, "bytes_a_to_b") == static_cast<long long>(32 * pairs));
    CHECK(stats_field(json, "bytes_b_to_a") == static_cast<long long>(32 * pairs));
}

/// Forms `batches` crowds of `batch` pairs one after the other (each speaker sending `padding`
/// bytes after its hello) and holds them all; the relay's RSS growth per pair, in KiB. Batches
/// keep what is in flight at once small, so the figure is what each idle pair keeps.
asio::awaitable<double> idle_cost(child_process& cli, unsigned short port_a, unsigned short port_b,
                                  char speaker, std::size_t padding, std::size_t batches,
                                  std::size_t batch, std::vector<std::shared_ptr<crowd>>& held) {
    auto ex = co_await asio::this_coro::executor;
    auto before = rss_kib(cli.pid());
    for (std::size_t i = 0; i < batches; ++i) {
        auto cr = make_crowd(ex, batch, speaker, port_a, port_b);
        cr->padding = padding;
        held.push_back(cr);
        bool formed = co_await form_crowd(cr, cli, 30s);
        INFO("speaker " << cr->speaker << ", batch " << i << ": connected " << cr->connected
                        << ", exchanged " << cr->exchanged << ", bad " << cr->bad << ", failed "
                        << cr->failed << " (first: " << cr->first_error << ")");
        REQUIRE(formed);
    }
    auto after = rss_kib(cli.pid());
    co_return static_cast<double>(after - before) / static_cast<double>(batches * batch);
}

asio::awaitable<void> early_bytes_not_held() {
    constexpr std::size_t pairs = 2000;
    raise_fd_limit(4 * pairs + 1024);
    child_limits limits;
    limits.close_inherited = true;
    auto cli = start_cli({"server-to-server", "--a", "127.0.0.1:0", "--b", "127.0.0.1:0",
                          "--timeout", "0", "--max-pending", "0"},
                         limits);
    auto port_a = co_await started_port(*cli, 'A');
    auto port_b = co_await started_port(*cli, 'B');
    // Pairs whose first 16 KiB come after pairing, then pairs whose A sent them while it
    // waited (the relay keeps them until B comes, up to 64 KiB), 100 at a time.
    constexpr std::size_t early_size = 16 * 1024;
    constexpr std::size_t batch = 100;
    std::vector<std::shared_ptr<crowd>> held;
    auto plain_cost =
        co_await idle_cost(*cli, port_a, port_b, 'B', early_size - 32, pairs / batch, batch, held);
    auto early_cost =
        co_await idle_cost(*cli, port_a, port_b, 'A', early_size - 32, pairs / batch, batch, held);
    WARN("relay RSS per idle pair: "
         << plain_cost << " KiB when the first " << early_size / 1024 << " KiB came after pairing, "
         << early_cost << " KiB when A sent them while it waited (" << pairs << " pairs each)");
    if (!sanitized) CHECK(early_cost < plain_cost + 4.0);
    for (auto& cr : held)
        co_await release_crowd(cr);
    cli->signal(SIGTERM);
    CHECK(co_await exit_of(*cli, 30s) == 0);
}

} // namespace

TEST_CASE("ten thousand concurrent pairs through one process, memory per idle pair", "[faults]") {
    asio::io_context io;
    run(io, ten_thousand_pairs(), 150s);
}

TEST_CASE("bytes a side sent while it waited are not held for the life of its pair", "[faults]") {
    asio::io_context io;
    run(io, early_bytes_not_held(), 90s);
}
