// An end of stream that arrives while the relay's write to the other side is still pending (the
// reader is slow) comes after every byte, and the other direction keeps flowing.
#include <socket_connector/connector.hpp>

#include <chrono>
#include <cstdint>
#include <vector>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include "support/faults.hpp"
#include "support/net.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

/// The kernel's TCP state of `socket` (TCP_ESTABLISHED, TCP_FIN_WAIT2, ...), or -1.
int tcp_state(tcp::socket& socket) {
    struct tcp_info info {};
    socklen_t length = sizeof info;
    if (::getsockopt(socket.native_handle(), IPPROTO_TCP, TCP_INFO, &info, &length) != 0) return -1;
    return info.tcpi_state;
}

/// Waits until the connector has relayed `target` bytes from A to B, or until its count has not
/// moved for 500 ms short of that (its write to B is blocked); the count then.
asio::awaitable<std::uint64_t> relayed_or_stalled(sc::connector& c, std::uint64_t target) {
    auto last = c.stats().bytes_a_to_b;
    auto since = steady::now();
    auto end = steady::now() + 20s;
    while (steady::now() < end) {
        auto now = c.stats().bytes_a_to_b;
        if (now >= target) co_return now;
        if (now != last) {
            last = now;
            since = steady::now();
        } else if (steady::now() - since >= 500ms) {
            co_return last;
        }
        co_await pause(5ms);
    }
    FAIL("the relay neither finished nor stalled: " << last << " of " << target << " bytes");
    co_return last;
}

asio::awaitable<void> fin_behind_pending_write(bool zero_copy) {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.zero_copy = zero_copy;
    o.timeout = sc::no_timeout;
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto a = co_await connect_to(c->side_a_port());
    tcp::socket b(ex);
    b.open(tcp::v4());
    b.set_option(
        asio::socket_base::receive_buffer_size(16 * 1024)); // before connect: a small window
    co_await b.async_connect(loopback(c->side_b_port()), asio::use_awaitable);
    bool formed = co_await eventually([&] { return c->connections() == 1; });
    REQUIRE(formed);
    // B reads nothing. A sends 16 KiB at a time until the relay can no longer pass a piece on:
    // its write to B is then pending, and its receive window from A still has room.
    std::vector<char> sent;
    std::uint64_t relayed = 0;
    for (std::uint64_t i = 0; i < 4096 && relayed == sent.size(); ++i) {
        auto piece = pattern(600 + i, 16 * 1024);
        co_await send_all(a, piece, false);
        sent.insert(sent.end(), piece.begin(), piece.end());
        relayed = co_await relayed_or_stalled(*c, sent.size());
    }
    INFO("A sent " << sent.size() << " bytes, the relay passed " << relayed << " on");
    REQUIRE(relayed < sent.size());
    // Now A's FIN arrives (the relay's kernel acknowledges it: A is in FIN_WAIT2)...
    a.shutdown(tcp::socket::shutdown_send);
    bool fin_arrived = co_await eventually([&] { return tcp_state(a) == TCP_FIN_WAIT2; }, 5s);
    REQUIRE(fin_arrived);
    // ...while the write is still pending.
    auto held = co_await relayed_or_stalled(*c, sent.size());
    INFO("relayed " << held << " of " << sent.size() << " bytes after the FIN arrived");
    CHECK(held < sent.size());
    CHECK(c->connections() == 1);
    // Every byte comes before the end of stream.
    auto received = co_await read_to_eof(b);
    CHECK(received.size() == sent.size());
    CHECK(checksum(received) == checksum(sent));
    // The other direction still flows after the half-close.
    co_await send_text(b, "after the half-close");
    auto heard = co_await read_to_eof(a);
    CHECK(text(heard) == "after the half-close");
    bool idle = co_await eventually([&] { return c->connections() == 0; });
    CHECK(idle);
    CHECK(c->stats().bytes_a_to_b == sent.size());
    c->close();
    co_await c->wait_closed();
}

} // namespace

TEST_CASE("a FIN behind a pending write comes after every byte (splice)", "[faults]") {
    asio::io_context io;
    run(io, fin_behind_pending_write(true), 60s);
}

TEST_CASE("a FIN behind a pending write comes after every byte (copy)", "[faults]") {
    asio::io_context io;
    run(io, fin_behind_pending_write(false), 60s);
}
