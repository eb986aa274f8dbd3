// Faults a relay must survive, each with a test: resets mid-transfer in every mode, an end of
// stream behind a pending write, unreachable B targets, auth slowloris, running out of
// descriptors, 10,000 pairs at once (and what an idle pair costs), SIGTERM with live pairs, and a
// slow reader.
#include <socket_connector/connector.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <asio/detached.hpp>
#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <unistd.h>

#include "support/programs.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

// Under a sanitizer (this test and the programs it starts are built alike) memory figures mean
// little (shadow memory, quarantined frees) and everything runs several times slower: the
// figures are reported but not checked, and the crowds are smaller.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SC_FAULTS_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||                         \
    __has_feature(memory_sanitizer)
#define SC_FAULTS_SANITIZED 1
#endif
#endif
#ifdef SC_FAULTS_SANITIZED
constexpr bool sanitized = true;
#else
constexpr bool sanitized = false;
#endif
// The AddressSanitizer build also has UndefinedBehaviorSanitizer, whose vptr check probes memory
// through a pipe: in a process out of descriptors every virtual call is reported as a call on an
// invalid object (and no report can be written to its log file either).
#if defined(__SANITIZE_ADDRESS__)
#define SC_FAULTS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SC_FAULTS_ASAN 1
#endif
#endif
#ifdef SC_FAULTS_ASAN
constexpr bool address_sanitized = true;
#else
constexpr bool address_sanitized = false;
#endif

namespace {

using steady = std::chrono::steady_clock;

double seconds_between(steady::time_point from, steady::time_point to) {
    return std::chrono::duration<double>(to - from).count();
}

/// The kernel's TCP state of `socket` (TCP_ESTABLISHED, TCP_FIN_WAIT2, ...), or -1.
int tcp_state(tcp::socket& socket) {
    struct tcp_info info {};
    socklen_t length = sizeof info;
    if (::getsockopt(socket.native_handle(), IPPROTO_TCP, TCP_INFO, &info, &length) != 0) return -1;
    return info.tcpi_state;
}

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

/// Reads and counts bytes until the socket fails or ends; records why and when.
struct close_watch {
    std::size_t received = 0;
    std::error_code why;
    steady::time_point at{};
    bool closed = false;
};

asio::awaitable<void> watch_until_closed(tcp::socket& socket, close_watch& w) {
    std::vector<char> buf(64 * 1024);
    for (;;) {
        auto [ec, n] = co_await socket.async_read_some(asio::buffer(buf), use_tuple);
        w.received += n;
        if (ec) {
            w.why = ec;
            w.at = steady::now();
            w.closed = true;
            co_return;
        }
    }
}

/// Writes patterned 256 KiB chunks until a write fails (or `limit` bytes); never throws.
asio::awaitable<void> write_until_error(tcp::socket& socket, std::size_t limit,
                                        std::size_t& written) {
    auto chunk = pattern(99, 256 * 1024);
    while (written < limit) {
        auto [ec, n] = co_await asio::async_write(socket, asio::buffer(chunk), use_tuple);
        written += n;
        if (ec) co_return;
    }
}

// ---- the four modes -----------------------------------------------------------------------------

enum class mode {
    server_to_server,
    server_to_socket_multi,
    server_to_socket,
    socket_to_server,
    socket_to_socket
};

const char* name_of(mode m) {
    switch (m) {
    case mode::server_to_server:
        return "server_to_server";
    case mode::server_to_socket_multi:
        return "server_to_socket (multi)";
    case mode::server_to_socket:
        return "server_to_socket";
    case mode::socket_to_server:
        return "socket_to_server";
    case mode::socket_to_socket:
        return "socket_to_socket";
    }
    return "?";
}

/// Whether a connector of this mode serves more than one pair.
bool serves_many(mode m) {
    return m == mode::server_to_server || m == mode::server_to_socket_multi;
}

/// A connector in one of the modes, with the listeners its socket sides dial.
struct rig {
    mode kind;
    std::shared_ptr<sc::connector> connector;
    std::unique_ptr<tcp::acceptor> target_a; // what a socket side A dials
    std::unique_ptr<tcp::acceptor> target_b;
};

asio::awaitable<std::unique_ptr<rig>> make_rig(mode kind, bool zero_copy) {
    auto ex = co_await asio::this_coro::executor;
    auto r = std::make_unique<rig>();
    r->kind = kind;
    sc::options o = loopback_options();
    o.zero_copy = zero_copy;
    o.timeout = sc::no_timeout;
    o.connect_timeout = 5s;
    if (kind == mode::socket_to_server || kind == mode::socket_to_socket) {
        r->target_a = std::make_unique<tcp::acceptor>(loopback_acceptor(ex));
        o.a.endpoint = loopback(r->target_a->local_endpoint().port());
    }
    if (kind != mode::server_to_server && kind != mode::socket_to_server) {
        r->target_b = std::make_unique<tcp::acceptor>(loopback_acceptor(ex));
        o.b.endpoint = loopback(r->target_b->local_endpoint().port());
    }
    o.multi = kind == mode::server_to_socket_multi;
    sc::connector_mode cm = sc::connector_mode::server_to_server;
    switch (kind) {
    case mode::server_to_server:
        cm = sc::connector_mode::server_to_server;
        break;
    case mode::server_to_socket_multi:
    case mode::server_to_socket:
        cm = sc::connector_mode::server_to_socket;
        break;
    case mode::socket_to_server:
        cm = sc::connector_mode::socket_to_server;
        break;
    case mode::socket_to_socket:
        cm = sc::connector_mode::socket_to_socket;
        break;
    }
    r->connector = co_await sc::connector::create(cm, ex, std::move(o));
    co_return r;
}

/// The two peers of a new pair: `a` talks to side A, `b` to side B.
asio::awaitable<void> open_pair(rig& r, tcp::socket& a, tcp::socket& b) {
    auto& c = *r.connector;
    if (r.target_a) {
        a = co_await r.target_a->async_accept(asio::use_awaitable);
    } else {
        a = co_await connect_to(c.side_a_port());
    }
    if (r.target_b) {
        b = co_await r.target_b->async_accept(asio::use_awaitable);
    } else {
        b = co_await connect_to(c.side_b_port());
    }
    // Any earlier pair has ended (the tests check that first), so this one is the only one.
    bool formed = co_await eventually([&] { return c.connections() == 1; });
    REQUIRE(formed);
}

/// Once the other peer has received some of the victim's stream, the victim resets.
asio::awaitable<void> reset_when_flowing(tcp::socket& victim, const close_watch& other,
                                         steady::time_point& reset_at) {
    bool flowing = co_await eventually([&] { return other.received >= 256 * 1024; });
    CHECK(flowing);
    reset_at = steady::now();
    reset(victim); // cancels the write in progress
}

/// The victim sends a stream; once the other peer has received some of it, the victim resets.
asio::awaitable<void> send_then_reset(tcp::socket& victim, const close_watch& other,
                                      steady::time_point& reset_at) {
    std::size_t written = 0;
    co_await (write_until_error(victim, std::size_t(1) << 30, written) ||
              reset_when_flowing(victim, other, reset_at));
}

/// The victim receives; once it has some of the other peer's stream, it resets.
asio::awaitable<void> receive_then_reset(tcp::socket& victim, steady::time_point& reset_at) {
    std::vector<char> buf(64 * 1024);
    std::size_t got = 0;
    while (got < 256 * 1024) {
        auto [ec, n] = co_await victim.async_read_some(asio::buffer(buf), use_tuple);
        got += n;
        if (ec) {
            FAIL_CHECK("the victim's read failed before it reset: " << ec.message());
            break;
        }
    }
    reset_at = steady::now();
    reset(victim);
}

/// The other peer streams to the victim until its writes fail, while watching for the close.
asio::awaitable<void> stream_and_watch(tcp::socket& other, close_watch& w) {
    std::size_t written = 0;
    co_await (write_until_error(other, std::size_t(1) << 30, written) &&
              watch_until_closed(other, w));
}

/// A fresh pair relays 1 MiB each way, byte for byte.
asio::awaitable<void> fresh_pair_relays(rig& r, std::uint64_t seed) {
    auto ex = co_await asio::this_coro::executor;
    tcp::socket a(ex);
    tcp::socket b(ex);
    co_await open_pair(r, a, b);
    auto from_a = pattern(seed, (1u << 20) + 7);
    auto from_b = pattern(seed + 1, (1u << 20) + 11);
    auto [at_a, at_b] = co_await (send_and_receive(a, from_a) && send_and_receive(b, from_b));
    CHECK(at_b.size() == from_a.size());
    CHECK(checksum(at_b) == checksum(from_a));
    CHECK(at_a.size() == from_b.size());
    CHECK(checksum(at_a) == checksum(from_b));
}

asio::awaitable<void> reset_mid_transfer(mode kind, bool zero_copy, bool reset_a,
                                         bool victim_sends) {
    auto ex = co_await asio::this_coro::executor;
    auto r = co_await make_rig(kind, zero_copy);
    auto& c = *r->connector;
    tcp::socket a(ex);
    tcp::socket b(ex);
    co_await open_pair(*r, a, b);
    tcp::socket& victim = reset_a ? a : b;
    tcp::socket& other = reset_a ? b : a;
    close_watch seen;
    steady::time_point reset_at{};
    asio::steady_timer limit(ex, 15s);
    if (victim_sends) {
        auto outcome = co_await (
            (send_then_reset(victim, seen, reset_at) && watch_until_closed(other, seen)) ||
            limit.async_wait(use_tuple));
        CHECK(outcome.index() == 0);
        CHECK(seen.received >= 256 * 1024);
    } else {
        auto outcome =
            co_await ((receive_then_reset(victim, reset_at) && stream_and_watch(other, seen)) ||
                      limit.async_wait(use_tuple));
        CHECK(outcome.index() == 0);
    }
    // The other peer sees the close promptly.
    INFO("the other peer's read ended with: " << seen.why.message());
    REQUIRE(seen.closed);
    CHECK(seen.why != asio::error::operation_aborted);
    CHECK(seconds_between(reset_at, seen.at) < 3.0);
    // The connector forgets the pair.
    bool zero = co_await eventually(
        [&] { return c.connections() == 0 && c.pending_a() == 0 && c.pending_b() == 0; }, 5s);
    INFO("connections " << c.connections() << ", pending A " << c.pending_a() << ", pending B "
                        << c.pending_b());
    CHECK(zero);
    if (serves_many(kind)) {
        // ...and keeps serving.
        co_await fresh_pair_relays(*r, 70);
        bool idle = co_await eventually([&] { return c.connections() == 0; }, 5s);
        CHECK(idle);
        CHECK(c.stats().connections_total == 2);
    } else {
        // A single-pair connector closes once its only pair has ended.
        asio::steady_timer close_limit(ex, 5s);
        auto closing = co_await (c.wait_closed() || close_limit.async_wait(use_tuple));
        CHECK(closing.index() == 0);
        CHECK(c.closed());
    }
    c.close();
    co_await c.wait_closed();
}

void reset_in_every_direction(mode kind) {
    for (bool zero_copy : {true, false})
        for (bool reset_a : {true, false})
            for (bool victim_sends : {true, false}) {
                INFO(name_of(kind)
                     << (zero_copy ? ", splice" : ", copy") << ": " << (reset_a ? "A" : "B")
                     << " resets while it " << (victim_sends ? "sends" : "receives"));
                asio::io_context io;
                run(io, reset_mid_transfer(kind, zero_copy, reset_a, victim_sends), 30s);
            }
}

// ---- an end of stream behind a pending write ---------------------------------------------------

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

// ---- server_to_socket with multi, B unreachable -----------------------------------------------

asio::awaitable<void> exchange(tcp::socket& a, tcp::socket& b, std::uint64_t seed) {
    auto from_a = pattern(seed, 1u << 20);
    auto from_b = pattern(seed + 1, (1u << 20) + 5);
    auto [at_a, at_b] = co_await (send_and_receive(a, from_a) && send_and_receive(b, from_b));
    CHECK(checksum(at_b) == checksum(from_a));
    CHECK(checksum(at_a) == checksum(from_b));
}

/// An A that connects, and what became of it.
struct lone_a {
    close_watch watch;
    steady::time_point connected{};
    unsigned short local_port = 0;
};

asio::awaitable<void> connect_and_watch(unsigned short port, lone_a& l) {
    auto a = co_await connect_to(port);
    l.connected = steady::now();
    l.local_port = a.local_endpoint().port();
    co_await watch_until_closed(a, l.watch);
}

/// Whether a logged line contains `word` and names the peer port `port` (as `:PORT`, whole).
bool logged_for(log_capture& capture, std::string_view word, unsigned short port) {
    std::lock_guard lock(capture.mutex);
    auto needle = fmt::format(":{}", port);
    for (auto& line : capture.lines) {
        if (line.find(word) == std::string::npos) continue;
        for (auto at = line.find(needle); at != std::string::npos; at = line.find(needle, at + 1)) {
            auto after = at + needle.size();
            if (after == line.size() || line[after] < '0' || line[after] > '9') return true;
        }
    }
    return false;
}

asio::awaitable<void> multi_b_refused() {
    auto ex = co_await asio::this_coro::executor;
    log_capture capture;
    auto target = std::make_unique<tcp::acceptor>(loopback_acceptor(ex));
    sc::options o = loopback_options();
    o.b.endpoint = loopback(target->local_endpoint().port());
    o.multi = true;
    o.timeout = sc::no_timeout;
    o.connect_timeout = 5s;
    o.logger = capture.logger();
    auto c = co_await sc::server_to_socket(ex, std::move(o));
    // A pair forms while B listens and relays a little.
    auto a1 = co_await connect_to(c->side_a_port());
    auto b1 = co_await target->async_accept(asio::use_awaitable);
    co_await send_text(a1, "first", false);
    auto first = co_await read_exactly(b1, 5);
    CHECK(first == "first");
    // Then B refuses: the next A is closed at once, with the reason logged.
    target.reset();
    lone_a l;
    asio::steady_timer limit(ex, 10s);
    auto outcome = co_await (connect_and_watch(c->side_a_port(), l) || limit.async_wait(use_tuple));
    CHECK(outcome.index() == 0);
    CHECK(l.watch.closed);
    CHECK(l.watch.received == 0);
    CHECK(seconds_between(l.connected, l.watch.at) < 2.0);
    bool logged =
        co_await eventually([&] { return logged_for(capture, "refused", l.local_port); }, 2s);
    INFO(capture.all());
    CHECK(logged); // the reason, naming that A
    bool gone = co_await eventually([&] { return c->pending_a() == 0; });
    CHECK(gone);
    // The first pair is unaffected.
    CHECK(c->connections() == 1);
    co_await exchange(a1, b1, 80);
    bool idle = co_await eventually([&] { return c->connections() == 0; });
    CHECK(idle);
    CHECK(c->stats().connections_total == 1);
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> multi_b_times_out() {
    auto ex = co_await asio::this_coro::executor;
    log_capture capture;
    // A listener with a backlog of one that is accepted by hand.
    tcp::acceptor target(ex);
    target.open(tcp::v4());
    target.bind(loopback(0));
    target.listen(0);
    constexpr auto connect_timeout = 800ms;
    sc::options o = proxy_options(target);
    o.timeout = sc::no_timeout;
    o.connect_timeout = connect_timeout;
    o.logger = capture.logger();
    auto c = co_await sc::server_to_socket(ex, std::move(o));
    auto a1 = co_await connect_to(c->side_a_port());
    auto b1 = co_await target.async_accept(asio::use_awaitable);
    co_await send_text(a1, "first", false);
    auto first = co_await read_exactly(b1, 5);
    CHECK(first == "first");
    // Fill the backlog and never accept: further SYNs are dropped, so connects hang.
    std::vector<tcp::socket> fillers;
    bool full = false;
    for (int i = 0; i < 8 && !full; ++i) {
        tcp::socket s(ex);
        asio::steady_timer t(ex, 300ms);
        auto r = co_await (s.async_connect(target.local_endpoint(), use_tuple) ||
                           t.async_wait(use_tuple));
        if (r.index() == 1)
            full = true;
        else
            fillers.push_back(std::move(s));
    }
    REQUIRE(full);
    // The next A waits for its B for connect_timeout, then is closed with the reason logged,
    // while the first pair keeps relaying.
    lone_a l;
    asio::steady_timer limit(ex, 10s);
    auto outcome = co_await ((connect_and_watch(c->side_a_port(), l) && exchange(a1, b1, 90)) ||
                             limit.async_wait(use_tuple));
    CHECK(outcome.index() == 0);
    CHECK(l.watch.closed);
    CHECK(l.watch.received == 0);
    auto waited = seconds_between(l.connected, l.watch.at);
    INFO("A waited " << waited << " s for a B that never answered");
    CHECK(waited >= std::chrono::duration<double>(connect_timeout).count() - 0.02);
    CHECK(waited < std::chrono::duration<double>(connect_timeout).count() + 2.0);
    bool logged =
        co_await eventually([&] { return logged_for(capture, "timed out", l.local_port); }, 2s);
    INFO(capture.all());
    CHECK(logged); // the reason, naming that A
    bool idle = co_await eventually(
        [&] { return c->connections() == 0 && c->pending_a() == 0 && c->pending_b() == 0; });
    CHECK(idle);
    CHECK(c->stats().connections_total == 1);
    c->close();
    co_await c->wait_closed();
}

// ---- auth slowloris ----------------------------------------------------------------------------

/// A client that connects and authenticates never: silent, or a wrong byte now and then.
struct slow_client {
    tcp::socket socket;
    bool dribbles = false;
    steady::time_point connected{};
    close_watch watch;
    explicit slow_client(tcp::socket s)
        : socket(std::move(s)) {}
};

asio::awaitable<void> dribble(std::shared_ptr<slow_client> s) {
    // One wrong byte every 400 ms (never a line end), at most 20: bounded whatever happens.
    for (int i = 0; i < 20 && !s->watch.closed; ++i) {
        co_await pause(400ms);
        if (s->watch.closed) break;
        char x = 'x';
        auto [ec, n] = co_await asio::async_write(s->socket, asio::buffer(&x, 1), use_tuple);
        if (ec) break;
    }
}

asio::awaitable<void> slow_client_life(std::shared_ptr<slow_client> s) {
    if (s->dribbles)
        co_await (watch_until_closed(s->socket, s->watch) && dribble(s));
    else
        co_await watch_until_closed(s->socket, s->watch);
}

asio::awaitable<void> honest_pair(sc::connector& c, std::uint64_t seed) {
    auto from_a = pattern(seed, 64 * 1024 + static_cast<std::size_t>(seed));
    auto from_b = pattern(seed + 1, 48 * 1024);
    std::vector<char> out_a{'s', '3', 'c', 'r', 'e', 't', '\n'};
    std::vector<char> out_b{'s', '3', 'c', 'r', 'e', 't', '\r', '\n'};
    out_a.insert(out_a.end(), from_a.begin(), from_a.end());
    out_b.insert(out_b.end(), from_b.begin(), from_b.end());
    auto a = co_await connect_to(c.side_a_port());
    auto b = co_await connect_to(c.side_b_port());
    auto [at_a, at_b] = co_await (send_and_receive(a, out_a) && send_and_receive(b, out_b));
    CHECK(at_b.size() == from_a.size());
    CHECK(checksum(at_b) == checksum(from_a));
    CHECK(at_a.size() == from_b.size());
    CHECK(checksum(at_a) == checksum(from_b));
}

asio::awaitable<void> slowloris() {
    auto ex = co_await asio::this_coro::executor;
    constexpr std::size_t silent = 1000;
    constexpr std::size_t dribblers = 60;
    // Long enough for the honest pairs to finish before the first slow client is closed.
    constexpr std::chrono::seconds auth_timeout{sanitized ? 5 : 2};
    log_capture capture;
    sc::options o = loopback_options();
    o.a.auth = sc::token_verifier("s3cret");
    o.b.auth = sc::token_verifier("s3cret");
    o.auth_timeout = auth_timeout;
    o.timeout = sc::no_timeout;
    o.max_pending = 4096;
    o.logger = capture.logger();
    auto c = co_await sc::server_to_server(ex, std::move(o));
    std::vector<std::shared_ptr<slow_client>> slow;
    for (std::size_t i = 0; i < silent + dribblers; ++i) {
        auto port = i % 2 == 0 ? c->side_a_port() : c->side_b_port();
        auto socket = co_await connect_to(port);
        auto s = std::make_shared<slow_client>(std::move(socket));
        s->connected = steady::now();
        s->dribbles = i >= silent;
        slow.push_back(s);
        asio::co_spawn(ex, slow_client_life(s), asio::detached);
    }
    auto all_connected = steady::now();
    // Honest sides authenticate, pair and relay while the slow ones hold their sockets.
    for (std::uint64_t p = 0; p < 20; ++p)
        co_await honest_pair(*c, 1000 + 2 * p);
    auto honest_done = steady::now();
    auto first_close = steady::time_point::max();
    for (auto& s : slow)
        if (s->watch.closed) first_close = std::min(first_close, s->watch.at);
    INFO("the honest pairs took " << seconds_between(all_connected, honest_done) << " s");
    CHECK(honest_done < first_close);
    CHECK(c->stats().connections_total == 20);
    // Each slow client is closed at its auth timeout, not before, not much after.
    bool all_closed = co_await eventually(
        [&] {
            return std::all_of(slow.begin(), slow.end(), [](auto& s) { return s->watch.closed; });
        },
        auth_timeout + 10s);
    CHECK(all_closed);
    double earliest = 1e9;
    double latest = 0;
    std::size_t relayed_to_slow = 0;
    for (auto& s : slow) {
        if (!s->watch.closed) continue;
        auto held = seconds_between(s->connected, s->watch.at);
        earliest = std::min(earliest, held);
        latest = std::max(latest, held);
        relayed_to_slow += s->watch.received;
    }
    INFO("slow clients held from " << earliest << " s to " << latest << " s");
    CHECK(earliest >= std::chrono::duration<double>(auth_timeout).count() - 0.02);
    CHECK(latest < std::chrono::duration<double>(auth_timeout).count() + 3.0);
    CHECK(relayed_to_slow == 0); // nothing was relayed to them
    bool counted =
        co_await eventually([&] { return c->stats().auth_failures == silent + dribblers; }, 5s);
    CHECK(counted);
    CHECK(c->pending_a() == 0);
    CHECK(c->pending_b() == 0);
    CHECK(c->connections() == 0);
    auto log = capture.all();
    CHECK(log.find("timed out") != std::string::npos);
    CHECK(log.find("s3cret") == std::string::npos);
    c->close();
    co_await c->wait_closed();
}

// ---- programs under stress ---------------------------------------------------------------------

/// The last `n` characters of `text`.
std::string tail(const std::string& text, std::size_t n = 1500) {
    return text.size() <= n ? text : "..." + text.substr(text.size() - n);
}

// Running out of descriptors.

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

// Many pairs at once.

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

// SIGTERM with live pairs and --drain-timeout.

asio::awaitable<void> drain_lets_pair_finish() {
    auto ex = co_await asio::this_coro::executor;
    auto cli = start_cli({"server-to-server", "--a", "127.0.0.1:0", "--b", "127.0.0.1:0",
                          "--timeout", "0", "--drain-timeout", "5", "--stats"});
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

/// Reads until the socket closes, checking each byte against the repeating pattern.
asio::awaitable<void> check_stream(tcp::socket& socket, const std::vector<char>& cycle,
                                   close_watch& w, std::size_t& wrong) {
    std::vector<char> buf(64 * 1024);
    for (;;) {
        auto [ec, n] = co_await socket.async_read_some(asio::buffer(buf), use_tuple);
        for (std::size_t i = 0; i < n; ++i)
            if (buf[i] != cycle[(w.received + i) % cycle.size()]) ++wrong;
        w.received += n;
        if (ec) {
            w.why = ec;
            w.at = steady::now();
            w.closed = true;
            co_return;
        }
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

asio::awaitable<void> sigterm_without_drain_closes_at_once() {
    auto ex = co_await asio::this_coro::executor;
    auto cli = start_cli(
        {"server-to-server", "--a", "127.0.0.1:0", "--b", "127.0.0.1:0", "--timeout", "0"});
    auto port_a = co_await started_port(*cli, 'A');
    auto port_b = co_await started_port(*cli, 'B');
    tcp::socket a(ex);
    tcp::socket b(ex);
    co_await form_pair(port_a, port_b, a, b);
    close_watch at_a;
    close_watch at_b;
    auto signalled = steady::now();
    cli->signal(SIGTERM);
    asio::steady_timer limit(ex, 5s);
    auto outcome = co_await ((watch_until_closed(a, at_a) && watch_until_closed(b, at_b)) ||
                             limit.async_wait(use_tuple));
    CHECK(outcome.index() == 0);
    CHECK(seconds_between(signalled, at_a.at) < 1.0);
    CHECK(seconds_between(signalled, at_b.at) < 1.0);
    CHECK(co_await exit_of(*cli, 3s) == 0);
}

// A slow reader.

/// Writes the repeating pattern as fast as the relay takes it, for `window`; the bytes written.
asio::awaitable<std::size_t> flood_for(tcp::socket& socket, const std::vector<char>& cycle,
                                       std::chrono::milliseconds window) {
    auto ex = co_await asio::this_coro::executor;
    socket.non_blocking(true);
    std::vector<char> chunk(256 * 1024);
    std::size_t written = 0;
    std::size_t offset = 0; // bytes of `chunk` already written
    auto refill = [&] {
        for (std::size_t i = 0; i < chunk.size(); ++i)
            chunk[i] = cycle[(written + i) % cycle.size()];
        offset = 0;
    };
    refill();
    asio::steady_timer deadline(ex, window);
    for (;;) {
        std::error_code ec;
        auto n = socket.write_some(asio::buffer(chunk.data() + offset, chunk.size() - offset), ec);
        if (!ec) {
            offset += n;
            if (offset == chunk.size()) {
                written += chunk.size();
                refill();
            }
            if (steady::now() >= deadline.expiry()) break;
            continue;
        }
        REQUIRE((ec == asio::error::would_block || ec == asio::error::try_again));
        // Wait for room, but never past the window (an unanswered wait has no side effect).
        auto outcome = co_await (socket.async_wait(tcp::socket::wait_write, use_tuple) ||
                                 deadline.async_wait(use_tuple));
        if (outcome.index() == 1) break;
    }
    // The stream so far is whole (the pattern continues from byte to byte): end it there.
    written += offset;
    socket.non_blocking(false);
    socket.shutdown(tcp::socket::shutdown_send);
    co_return written;
}

/// Reads `step` bytes every `every` until `stop`, then everything to the end, checking it all.
asio::awaitable<void> slow_read(tcp::socket& socket, const std::vector<char>& cycle,
                                std::size_t step, std::chrono::milliseconds every, const bool& stop,
                                close_watch& w, std::size_t& wrong) {
    std::vector<char> buf(std::max<std::size_t>(step, 1));
    while (!stop) {
        co_await pause(every);
        if (step == 0) continue;
        auto [ec, n] = co_await socket.async_read_some(asio::buffer(buf.data(), step), use_tuple);
        for (std::size_t i = 0; i < n; ++i)
            if (buf[i] != cycle[(w.received + i) % cycle.size()]) ++wrong;
        w.received += n;
        if (ec) {
            w.why = ec;
            w.closed = true;
            co_return;
        }
    }
    co_await check_stream(socket, cycle, w, wrong);
}

/// Samples the process's RSS every 20 ms until `stop`; the largest value seen.
asio::awaitable<void> sample_rss(pid_t pid, const bool& stop, long& peak) {
    while (!stop) {
        peak = std::max(peak, rss_kib(pid));
        co_await pause(20ms);
    }
}

asio::awaitable<void> writer_then_stop(tcp::socket& a, const std::vector<char>& cycle,
                                       std::chrono::milliseconds window, std::size_t& written,
                                       bool& stop) {
    written = co_await flood_for(a, cycle, window);
    stop = true;
}

asio::awaitable<void> slow_reader(std::size_t step) {
    auto ex = co_await asio::this_coro::executor;
    auto cli = start_cli(
        {"server-to-server", "--a", "127.0.0.1:0", "--b", "127.0.0.1:0", "--timeout", "0"});
    auto port_a = co_await started_port(*cli, 'A');
    auto port_b = co_await started_port(*cli, 'B');
    tcp::socket a(ex);
    tcp::socket b(ex);
    co_await form_pair(port_a, port_b, a, b);
    auto before = rss_kib(cli->pid());
    auto cycle = pattern(140, 65521);
    std::size_t written = 0;
    std::size_t wrong = 0;
    bool stop = false;
    long peak = before;
    close_watch at_b;
    auto window = 3s;
    co_await (writer_then_stop(a, cycle, window, written, stop) &&
              slow_read(b, cycle, step, 20ms, stop, at_b, wrong) &&
              sample_rss(cli->pid(), stop, peak));
    auto growth = peak - before;
    auto reader = step == 0 ? std::string("B reading nothing")
                            : fmt::format("B reading {} bytes every 20 ms", step);
    WARN(reader << " while A writes for 3 s: A wrote " << written / 1024 << " KiB; relay RSS "
                << before << " KiB, peak " << peak << " KiB (+" << growth << " KiB)");
    if (!sanitized) CHECK(growth < 4 * 1024);
    // Everything arrives intact once B reads.
    CHECK(at_b.why == asio::error::eof);
    CHECK(at_b.received == written);
    CHECK(wrong == 0);
    if (step == 0) CHECK(written < 256u << 20); // backpressure reached the writer
    cli->signal(SIGTERM);
    CHECK(co_await exit_of(*cli) == 0);
}

} // namespace

TEST_CASE("a reset mid-transfer closes the pair: server_to_server", "[faults]") {
    reset_in_every_direction(mode::server_to_server);
}

TEST_CASE("a reset mid-transfer closes the pair: server_to_socket with multi", "[faults]") {
    reset_in_every_direction(mode::server_to_socket_multi);
}

TEST_CASE("a reset mid-transfer closes the pair: server_to_socket", "[faults]") {
    reset_in_every_direction(mode::server_to_socket);
}

TEST_CASE("a reset mid-transfer closes the pair: socket_to_server", "[faults]") {
    reset_in_every_direction(mode::socket_to_server);
}

TEST_CASE("a reset mid-transfer closes the pair: socket_to_socket", "[faults]") {
    reset_in_every_direction(mode::socket_to_socket);
}

TEST_CASE("a FIN behind a pending write comes after every byte (splice)", "[faults]") {
    asio::io_context io;
    run(io, fin_behind_pending_write(true), 60s);
}

TEST_CASE("a FIN behind a pending write comes after every byte (copy)", "[faults]") {
    asio::io_context io;
    run(io, fin_behind_pending_write(false), 60s);
}

TEST_CASE("server_to_socket multi: a refused B closes that A only", "[faults]") {
    asio::io_context io;
    run(io, multi_b_refused(), 30s);
}

TEST_CASE("server_to_socket multi: a B that never answers closes that A at connect_timeout",
          "[faults]") {
    asio::io_context io;
    run(io, multi_b_times_out(), 30s);
}

TEST_CASE("auth slowloris: a thousand silent clients and dribblers time out, honest pairs relay",
          "[faults]") {
    raise_fd_limit(8192);
    asio::io_context io;
    run(io, slowloris(), 60s);
}

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

TEST_CASE("ten thousand concurrent pairs through one process, memory per idle pair", "[faults]") {
    asio::io_context io;
    run(io, ten_thousand_pairs(), 150s);
}

TEST_CASE("bytes a side sent while it waited are not held for the life of its pair", "[faults]") {
    asio::io_context io;
    run(io, early_bytes_not_held(), 90s);
}

TEST_CASE("SIGTERM with --drain-timeout: a live pair finishes, then exit 0", "[faults]") {
    asio::io_context io;
    run(io, drain_lets_pair_finish(), 30s);
}

TEST_CASE("SIGTERM with --drain-timeout: a pair still open at the timeout is closed", "[faults]") {
    asio::io_context io;
    run(io, drain_timeout_closes_the_rest(), 30s);
}

TEST_CASE("SIGTERM without --drain-timeout closes live pairs at once", "[faults]") {
    asio::io_context io;
    run(io, sigterm_without_drain_closes_at_once(), 30s);
}

TEST_CASE("a reader that does not read keeps the relay's memory bounded", "[faults]") {
    asio::io_context io;
    run(io, slow_reader(0), 60s);
}

TEST_CASE("a very slow reader keeps the relay's memory bounded", "[faults]") {
    asio::io_context io;
    run(io, slow_reader(4096), 60s);
}
