// A rendezvous: sessions paired by key (session_token_verifier), on one port (one_server) or
// two, with every refusal, duplicates, the pending timeout, max_sessions and the listen backlog.
#include <socket_connector/connector.hpp>
#include <socket_connector/session_token.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/use_future.hpp>

#include "../examples/session_routes.hpp"
#include "support/net.hpp"
#include "support/programs.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

const sc::token_secret secret("a rendezvous secret, 16+ bytes");

std::string token_for(const std::string& session, sc::side_id side, std::int64_t ttl = 300) {
    return sc::mint_token(
        secret, session, side,
        static_cast<std::uint64_t>(static_cast<std::int64_t>(sc::unix_now()) + ttl));
}

/// A rendezvous on one port (or, with `two_ports`, A and B on their own ports).
sc::options rendezvous_options(log_capture& logs, bool two_ports = false) {
    sc::options o = loopback_options();
    o.a.auth = sc::session_token_verifier(secret);
    if (two_ports) o.b.auth = sc::session_token_verifier(secret);
    o.timeout = sc::no_timeout;
    o.logger = logs.logger();
    return o;
}

/// Connects, sends `first` (a token line and maybe more), and leaves the stream open.
asio::awaitable<tcp::socket> arrive(unsigned short port, const std::string& first) {
    auto s = co_await connect_to(port);
    co_await send_text(s, first, false);
    co_return s;
}

/// One client of a session: sends its token and `payload`, ends its stream, and reads what the
/// other side sent until the end of stream.
asio::awaitable<std::vector<char>> session_client(unsigned short port, std::string token,
                                                  std::vector<char> payload) {
    auto s = co_await connect_to(port);
    auto out = concat(token + "\n", payload);
    co_return co_await send_and_receive(s, out);
}

asio::awaitable<void> a_session_pairs_by_key_on_one_port() {
    auto ex = co_await asio::this_coro::executor;
    log_capture logs;
    auto o = rendezvous_options(logs);
    o.verbose = true;
    auto c = co_await sc::one_server(ex, std::move(o));
    const auto port = c->side_a_port();
    // B comes first; what it sends while it waits (after the token) is relayed once paired.
    const std::string b_first = token_for("s1", sc::side_id::b) + "\r\nfrom B early";
    auto b = co_await arrive(port, b_first);
    CHECK(co_await eventually([&] { return c->pending_b() == 1 && c->sessions() == 1; }));
    const std::string a_first = token_for("s1", sc::side_id::a) + "\nfrom A";
    auto a = co_await arrive(port, a_first);
    auto at_a = co_await read_exactly(a, 12);
    CHECK(at_a == "from B early");
    auto at_b = co_await read_exactly(b, 6);
    CHECK(at_b == "from A");
    CHECK(co_await eventually([&] { return c->connections() == 1; }));
    auto formed = co_await c->next_connection();
    REQUIRE(formed);
    CHECK(formed->key() == "s1");
    CHECK(c->stats().sessions_paired == 1);
    // Half-close passes through, then the session ends and its key is free again.
    a.shutdown(tcp::socket::shutdown_send);
    auto rest_b = co_await read_to_eof(b);
    CHECK(rest_b.empty());
    b.shutdown(tcp::socket::shutdown_send);
    auto rest_a = co_await read_to_eof(a);
    CHECK(rest_a.empty());
    co_await formed->wait_closed();
    CHECK(co_await eventually([&] { return c->sessions() == 0 && c->connections() == 0; }));
    INFO(logs.all());
    CHECK(logs.contains("(session s1)"));
    // The same tokens again, after the pair ended: a new session.
    const std::string a2_first = token_for("s1", sc::side_id::a) + "\nagain";
    auto a2 = co_await arrive(port, a2_first);
    const std::string b2_first = token_for("s1", sc::side_id::b) + "\n";
    auto b2 = co_await arrive(port, b2_first);
    auto again = co_await read_exactly(b2, 5);
    CHECK(again == "again");
    CHECK(c->stats().sessions_paired == 2);
    c->close();
    co_await c->wait_closed();
}

/// The sides of `count` sessions (A to `port_a`, B to `port_b`), in a random order, all at once:
/// how many sides got other bytes than their partner's (or none).
asio::awaitable<std::size_t> crossed_sessions(unsigned short port_a, unsigned short port_b,
                                              std::size_t count, std::string prefix) {
    auto ex = co_await asio::this_coro::executor;
    std::vector<std::pair<std::size_t, sc::side_id>> order;
    for (std::size_t i = 0; i < count; ++i) {
        order.emplace_back(i, sc::side_id::a);
        order.emplace_back(i, sc::side_id::b);
    }
    std::mt19937_64 random(20261207);
    std::shuffle(order.begin(), order.end(), random);
    auto payload = [](std::size_t session, sc::side_id side) {
        return pattern(session * 2 + (side == sc::side_id::a ? 0 : 1), 1000 + session % 3000);
    };
    std::vector<std::vector<char>> received(2 * count);
    std::size_t finished = 0;
    for (auto& [session, side] : order) {
        const auto port = side == sc::side_id::a ? port_a : port_b;
        auto token = token_for(prefix + std::to_string(session), side);
        const auto slot = session * 2 + (side == sc::side_id::a ? 0 : 1);
        asio::co_spawn(ex, session_client(port, token, payload(session, side)),
                       [&, slot](std::exception_ptr e, std::vector<char> got) {
                           if (!e) received[slot] = std::move(got);
                           ++finished;
                       });
    }
    CHECK(co_await eventually([&] { return finished == order.size(); }, 60s));
    std::size_t crossed = 0;
    for (std::size_t i = 0; i < count; ++i) {
        if (checksum(received[2 * i]) != checksum(payload(i, sc::side_id::b))) ++crossed;
        if (checksum(received[2 * i + 1]) != checksum(payload(i, sc::side_id::a))) ++crossed;
    }
    co_return crossed;
}

/// Sides of `count` sessions arrive in a random order, all at once; each pair must get exactly
/// its partner's bytes.
asio::awaitable<void> interleaved_sessions(std::size_t count, bool two_ports) {
    auto ex = co_await asio::this_coro::executor;
    log_capture logs;
    auto o = rendezvous_options(logs, two_ports);
    o.max_pending = 0;
    std::shared_ptr<sc::connector> c;
    if (two_ports) // (not a ?: of two co_awaits: g++ 12 mishandles that)
        c = co_await sc::server_to_server(ex, std::move(o));
    else
        c = co_await sc::one_server(ex, std::move(o));
    const auto port_a = c->side_a_port();
    const auto port_b = two_ports ? c->side_b_port() : port_a;
    std::string prefix = "session-"; // named: no temporary in a co_await (g++ 12)
    const auto crossed = co_await crossed_sessions(port_a, port_b, count, std::move(prefix));
    INFO(logs.all().substr(0, 4000));
    CHECK(crossed == 0);
    CHECK(c->stats().sessions_paired == count);
    CHECK(c->stats().auth_failures == 0);
    CHECK(c->stats().sockets_refused == 0);
    c->close();
    co_await c->wait_closed();
}

/// A socket that is refused: closed with nothing relayed, the reason and peer logged, never the
/// token.
asio::awaitable<void> check_refused(sc::connector& c, log_capture& logs, unsigned short port,
                                    std::string_view first, std::string_view reason,
                                    std::size_t still_pending = 0) {
    const std::string s_first(first);
    auto s = co_await arrive(port, s_first);
    auto end = co_await read_until_closed(s);
    CHECK(end.closed);
    CHECK(end.bytes.empty());
    INFO("sent: " << first << "\nlogs:\n" << logs.all());
    CHECK(co_await eventually([&] { return logs.contains(reason); }));
    CHECK(logs.contains("127.0.0.1:"));
    auto line = first.substr(0, first.find('\n'));
    if (line.size() > 20) CHECK_FALSE(logs.contains(line));
    CHECK(c.pending_a() + c.pending_b() == still_pending);
}

asio::awaitable<void> every_refusal() {
    auto ex = co_await asio::this_coro::executor;
    log_capture logs;
    auto o = rendezvous_options(logs, true);
    o.auth_timeout = 300ms;
    auto c = co_await sc::server_to_server(ex, std::move(o));
    const auto pa = c->side_a_port();
    auto good = token_for("r", sc::side_id::a);
    auto bad_mac = good;
    bad_mac.back() = bad_mac.back() == '0' ? '1' : '0';
    {
        const std::string first1 = bad_mac + "\n";
        co_await check_refused(*c, logs, pa, first1, "authentication of 127.0.0.1:");
    }
    CHECK(logs.contains("failed: bad MAC"));
    {
        const std::string first2 = "hello there\n";
        co_await check_refused(*c, logs, pa, first2, "failed: malformed: fewer than five");
    }
    {
        const std::string first3 = token_for("r", sc::side_id::a, -10) + "\n";
        co_await check_refused(*c, logs, pa, first3, "failed: expired");
    }
    {
        const std::string first4 = std::string(1100, 'x');
        co_await check_refused(*c, logs, pa, first4, "failed: no token line within 1024 bytes");
    }
    {
        const std::string first5 = "";
        co_await check_refused(*c, logs, pa, first5, "failed: timed out");
    }
    {
        const std::string first6 = good + "\n";
        co_await check_refused(*c, logs, c->side_b_port(), first6,
                               "refused: it is a side A socket on side B's port");
    }
    {
        // An end of stream before the line.
        auto s = co_await connect_to(pa);
        co_await send_text(s, good.substr(0, 20), true);
        auto end = co_await read_until_closed(s);
        CHECK(end.closed);
        CHECK(co_await eventually(
            [&] { return logs.contains("failed: end of stream before the token line"); }));
    }
    CHECK(c->stats().auth_failures == 6);
    CHECK(c->stats().sockets_refused == 1);
    // The relay goes on: a good session still pairs.
    const std::string a_first = good + "\nok";
    auto a = co_await arrive(pa, a_first);
    const std::string b_first = token_for("r", sc::side_id::b) + "\n";
    auto b = co_await arrive(c->side_b_port(), b_first);
    auto got = co_await read_exactly(b, 2);
    CHECK(got == "ok");
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> duplicates_are_refused_and_the_live_one_untouched() {
    auto ex = co_await asio::this_coro::executor;
    log_capture logs;
    auto c = co_await sc::one_server(ex, rendezvous_options(logs));
    const auto port = c->side_a_port();
    const auto ta = token_for("dup", sc::side_id::a);
    const auto tb = token_for("dup", sc::side_id::b);
    const std::string a_first = ta + "\nfirst A";
    auto a = co_await arrive(port, a_first);
    CHECK(co_await eventually([&] { return c->pending_a() == 1; }));
    {
        const std::string first7 = ta + "\nsecond A";
        co_await check_refused(*c, logs, port, first7, "dup already has a side A waiting", 1);
    }
    const std::string b_first = tb + "\nB";
    auto b = co_await arrive(port, b_first);
    auto at_b = co_await read_exactly(b, 7);
    CHECK(at_b == "first A");
    auto at_a = co_await read_exactly(a, 1);
    CHECK(at_a == "B");
    // Joined: a third socket for the key, either side, is refused; the pair relays on.
    {
        const std::string first8 = ta + "\n";
        co_await check_refused(*c, logs, port, first8, "session dup is already paired");
    }
    {
        const std::string first9 = tb + "\n";
        co_await check_refused(*c, logs, port, first9, "session dup is already paired");
    }
    co_await send_text(a, "still here", false);
    auto more = co_await read_exactly(b, 10);
    CHECK(more == "still here");
    CHECK(c->stats().sockets_refused == 3);
    CHECK(c->stats().sessions_paired == 1);
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> a_side_without_partner_is_closed_after_the_pending_timeout() {
    auto ex = co_await asio::this_coro::executor;
    log_capture logs;
    auto o = rendezvous_options(logs);
    o.pending_timeout = 300ms;
    o.verbose = true;
    auto c = co_await sc::one_server(ex, std::move(o));
    const auto port = c->side_a_port();
    const std::string lonely_first = token_for("alone", sc::side_id::a) + "\nwaiting";
    auto lonely = co_await arrive(port, lonely_first);
    CHECK(co_await eventually([&] { return c->sessions() == 1; }));
    auto start = std::chrono::steady_clock::now();
    bool closed = co_await closed_within(lonely, 10s); // named: see support/net.hpp's send_all
    CHECK(closed);
    CHECK(std::chrono::steady_clock::now() - start >= 250ms);
    CHECK(co_await eventually([&] { return c->sessions() == 0 && c->pending_a() == 0; }));
    INFO(logs.all());
    CHECK(logs.contains("no partner within 300 ms (pending_timeout)"));
    // Its key is free: the session can still pair, and a pair is not closed by the timeout.
    const std::string a_first = token_for("alone", sc::side_id::a) + "\n";
    auto a = co_await arrive(port, a_first);
    const std::string b_first = token_for("alone", sc::side_id::b) + "\n";
    auto b = co_await arrive(port, b_first);
    co_await pause(500ms); // past the pending timeout: the pair must still relay
    co_await send_text(a, "later", false);
    auto got = co_await read_exactly(b, 5);
    CHECK(got == "later");
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> max_sessions_refuses_a_new_session_but_completes_a_waiting_one() {
    auto ex = co_await asio::this_coro::executor;
    log_capture logs;
    auto o = rendezvous_options(logs);
    o.max_sessions = 1;
    auto c = co_await sc::one_server(ex, std::move(o));
    const auto port = c->side_a_port();
    const std::string a_first = token_for("one", sc::side_id::a) + "\n";
    auto a = co_await arrive(port, a_first);
    CHECK(co_await eventually([&] { return c->sessions() == 1; }));
    {
        const std::string first10 = token_for("two", sc::side_id::a) + "\n";
        co_await check_refused(*c, logs, port, first10,
                               "session two: 1 session open (max_sessions)", 1);
    }
    const std::string b_first = token_for("one", sc::side_id::b) + "\nhi";
    auto b = co_await arrive(port, b_first);
    auto got = co_await read_exactly(a, 2);
    CHECK(got == "hi");
    CHECK(c->sessions() == 1); // relaying still counts
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> one_server_needs_a_verifier() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.logger = [](sc::log_level, std::string_view) {};
    auto [ec, c] = co_await sc::one_server(ex, std::move(o), use_tuple);
    CHECK(ec == std::errc::invalid_argument);
    CHECK(!c);
}

/// Silent clients hold the shared port's auth slots while honest sessions pair.
asio::awaitable<void> silent_clients_do_not_block_sessions() {
    auto ex = co_await asio::this_coro::executor;
    log_capture logs;
    auto o = rendezvous_options(logs);
    o.auth_timeout = 2s;
    o.max_pending = 0;
    auto c = co_await sc::one_server(ex, std::move(o));
    const auto port = c->side_a_port();
    std::vector<tcp::socket> silent;
    for (int i = 0; i < 300; ++i) {
        silent.push_back(co_await connect_to(port));
        if (i % 3 == 0) co_await send_text(silent.back(), "v1.half-a-tok", false);
    }
    CHECK(co_await eventually([&] { return c->stats().sockets_created == 300; }));
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 20; ++i) {
        auto session = "honest-" + std::to_string(i);
        auto payload_a = pattern(static_cast<std::uint64_t>(i), 5000);
        auto payload_b = pattern(static_cast<std::uint64_t>(i) + 100, 5000);
        const auto token_a = token_for(session, sc::side_id::a);
        const auto token_b = token_for(session, sc::side_id::b);
        auto [at_a, at_b] = co_await (session_client(port, token_a, payload_a) &&
                                      session_client(port, token_b, payload_b));
        CHECK(checksum(at_b) == checksum(payload_a));
        CHECK(checksum(at_a) == checksum(payload_b));
    }
    // All before the silent ones timed out: they never held the honest ones back.
    CHECK(std::chrono::steady_clock::now() - start < 2s);
    CHECK(c->stats().sessions_paired == 20);
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> the_backlog_is_an_option() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.a.backlog = 7;
    o.logger = [](sc::log_level, std::string_view) {};
    auto c = co_await sc::server_to_server(ex, std::move(o));
    // ss shows a listening socket's backlog as its Send-Q.
    auto ss = std::make_unique<child_process>(
        std::vector<std::string>{"ss", "-ltnH", "sport = :" + std::to_string(c->side_a_port())});
    auto code = co_await exit_of(*ss, 10s);
    CHECK(code == 0);
    INFO(ss->out());
    std::istringstream fields(ss->out());
    std::string state, recv_q, send_q;
    fields >> state >> recv_q >> send_q;
    CHECK(state == "LISTEN");
    CHECK(send_q == "7");
    c->close();
    co_await c->wait_closed();
}

/// An application accepts sockets itself, runs its own handshake (here: a session name line),
/// and hands each socket over with its verdict and the bytes it read past the handshake; an
/// adopted socket without a verdict meets the side's verifier.
asio::awaitable<void> adopted_sockets_pair_like_accepted_ones() {
    auto ex = co_await asio::this_coro::executor;
    log_capture logs;
    sc::options o = loopback_options();
    o.timeout = sc::no_timeout;
    o.logger = logs.logger();
    o.b.auth = sc::session_token_verifier(secret);
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto own = loopback_acceptor(ex);
    own.listen();
    const auto own_port = own.local_endpoint().port();

    // Side A through the application's own port: "SESSION\n" then data, read in one go.
    const std::string a_first = "adopted\nbytes the app read";
    auto a = co_await arrive(own_port, a_first);
    auto accepted = co_await own.async_accept(asio::use_awaitable);
    std::string got;
    while (got.find("read") == std::string::npos) {
        char buf[256];
        auto n = co_await accepted.async_read_some(asio::buffer(buf), asio::use_awaitable);
        got.append(buf, n);
    }
    auto lf = got.find('\n');
    sc::auth_result verdict;
    verdict.ok = true;
    verdict.key = got.substr(0, lf);
    verdict.leftover.assign(got.begin() + static_cast<std::ptrdiff_t>(lf) + 1, got.end());
    c->adopt(sc::side_id::a, std::move(accepted), std::move(verdict));
    // Side B through the connector's own port, with a token for the same session.
    const std::string b_first = token_for("adopted", sc::side_id::b) + "\n";
    auto b = co_await arrive(c->side_b_port(), b_first);
    auto at_b = co_await read_exactly(b, 18);
    CHECK(at_b == "bytes the app read");
    co_await send_text(a, " and more", false);
    auto more = co_await read_exactly(b, 9);
    CHECK(more == " and more");

    // Adopted as B without a verdict: B's verifier reads its token.
    const std::string b2_first = token_for("second", sc::side_id::b) + "\nfrom b2";
    auto b2 = co_await arrive(own_port, b2_first);
    auto raw = co_await own.async_accept(asio::use_awaitable);
    c->adopt(sc::side_id::b, std::move(raw));
    CHECK(co_await eventually([&] { return c->pending_b() == 1; }));
    // A verdict that is not ok closes the socket.
    const std::string refused_first = "whatever\n";
    auto refused = co_await arrive(own_port, refused_first);
    auto raw2 = co_await own.async_accept(asio::use_awaitable);
    sc::auth_result no;
    no.why = "unknown session";
    c->adopt(sc::side_id::a, std::move(raw2), std::move(no));
    auto end = co_await read_until_closed(refused);
    CHECK(end.closed);
    CHECK(co_await eventually([&] { return logs.contains("failed: unknown session"); }));
    CHECK(c->stats().auth_failures == 1);
    CHECK(c->stats().sockets_created == 4);
    c->close();
    co_await c->wait_closed();
}

/// What an application learns of each session: as it pairs (key, peers) and as it ends (bytes).
asio::awaitable<void> session_events() {
    auto ex = co_await asio::this_coro::executor;
    log_capture logs;
    auto c = co_await sc::one_server(ex, rendezvous_options(logs));
    const auto port = c->side_a_port();
    auto from_a = pattern(5, 70'000);
    auto from_b = pattern(6, 30'000);
    std::vector<char> at_a, at_b;
    asio::co_spawn(ex, session_client(port, token_for("watched", sc::side_id::a), from_a),
                   [&](std::exception_ptr, std::vector<char> got) { at_a = std::move(got); });
    asio::co_spawn(ex, session_client(port, token_for("watched", sc::side_id::b), from_b),
                   [&](std::exception_ptr, std::vector<char> got) { at_b = std::move(got); });
    auto session = co_await c->next_connection();
    REQUIRE(session);
    CHECK(session->key() == "watched");
    CHECK(session->side_a().remote().starts_with("127.0.0.1:"));
    CHECK(session->side_b().remote().starts_with("127.0.0.1:"));
    co_await session->wait_closed();
    CHECK(session->bytes_a_to_b() == from_a.size());
    CHECK(session->bytes_b_to_a() == from_b.size());
    CHECK(co_await eventually(
        [&] { return at_a.size() == from_b.size() && at_b.size() == from_a.size(); }));
    CHECK(checksum(at_b) == checksum(from_a));
    c->close();
    co_await c->wait_closed();
}

/// Runs `loops` event loops, one thread each, until the object is destroyed.
struct loop_threads {
    explicit loop_threads(std::size_t loops) {
        for (std::size_t i = 0; i < loops; ++i)
            io.push_back(std::make_unique<asio::io_context>(1));
        for (auto& loop : io) {
            guards.push_back(asio::make_work_guard(*loop));
            threads.emplace_back([&ctx = *loop] { ctx.run_for(120s); });
        }
    }
    ~loop_threads() {
        guards.clear();
        for (auto& loop : io)
            loop->stop();
        for (auto& t : threads)
            t.join();
    }
    std::vector<std::unique_ptr<asio::io_context>> io;
    std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
    std::vector<std::thread> threads;
};

} // namespace

TEST_CASE("connectors on two event loops share a port and route each session to one of them",
          "[rendezvous]") {
    raise_fd_limit(4096);
    loop_threads loops(2);
    log_capture logs;
    struct table {
        std::weak_ptr<sc::connector> owner[2]; // weak: each connector holds the table
    };
    auto routes = std::make_shared<table>();
    auto group = std::make_shared<sc::shared_limits>();
    std::vector<std::shared_ptr<sc::connector>> made;
    for (std::size_t i = 0; i < 2; ++i) {
        auto o = rendezvous_options(logs);
        o.verbose = true;
        o.io_run_by_one_thread = true;
        o.a.reuse_port = true;
        o.limit_group = group;
        o.max_sessions = 5000;
        o.route = [routes](std::string_view key) {
            return routes->owner[std::hash<std::string_view>{}(key) % 2].lock();
        };
        if (i == 1) {
            o.a.host.clear();
            o.a.endpoint = made.front()->side_a_endpoint();
        }
        made.push_back(
            sc::one_server(loops.io[i]->get_executor(), std::move(o), asio::use_future).get());
    }
    // Every connector exists before a client comes (the command handles the start-up window
    // with its own table).
    routes->owner[0] = made[0];
    routes->owner[1] = made[1];
    const std::size_t count = 400;
    asio::io_context clients;
    std::size_t crossed = count;
    run(
        clients,
        [&]() -> asio::awaitable<void> {
            const auto port = made[0]->side_a_port();
            std::string prefix = "routed-";
            crossed = co_await crossed_sessions(port, port, count, std::move(prefix));
        }(),
        90s);
    CHECK(crossed == 0);
    std::uint64_t paired = 0, created = 0, refused = 0, failures = 0, per_connector[2] = {0, 0};
    for (std::size_t i = 0; i < 2; ++i) {
        auto st = made[i]->stats();
        paired += st.sessions_paired;
        per_connector[i] = st.sessions_paired;
        created += st.sockets_created;
        refused += st.sockets_refused;
        failures += st.auth_failures;
    }
    INFO(logs.all().substr(0, 4000));
    CHECK(paired == count);
    CHECK(created == 2 * count); // a socket that moved is counted where it was accepted only
    CHECK(refused == 0);
    CHECK(failures == 0);
    CHECK(per_connector[0] > 0); // both connectors paired sessions...
    CHECK(per_connector[1] > 0);
    CHECK(logs.contains("moved to its session's connector")); // ...and sides moved between them
    CHECK(logs.contains("routed here (its session's connector)"));
    for (auto& c : made)
        c->close();
    for (auto& c : made)
        CHECK(c->wait_closed(asio::use_future).wait_for(10s) == std::future_status::ready);
}

TEST_CASE("the command's session routes keep a key with one connector from its first side on",
          "[rendezvous]") {
    asio::io_context io;
    run(io, []() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        std::vector<std::shared_ptr<sc::connector>> made;
        for (int i = 0; i < 3; ++i) {
            sc::options o = loopback_options();
            o.timeout = sc::no_timeout;
            made.push_back(co_await sc::server_to_server(ex, std::move(o)));
        }
        example::session_routes routes(3);
        // Before any connector is made: the side stays where it is, and its key is kept there.
        CHECK(routes.route("before") == nullptr);
        routes.add(made[0]);
        CHECK(routes.route("early") == made[0]);
        routes.add(made[1]);
        CHECK(routes.route("still early") == made[0]);
        routes.add(made[2]);
        // Complete: keys seen early stay with the first; every other key has one owner by hash.
        CHECK(routes.route("before") == made[0]);
        CHECK(routes.route("early") == made[0]);
        CHECK(routes.route("still early") == made[0]);
        std::size_t owners[3] = {0, 0, 0};
        for (int i = 0; i < 300; ++i) {
            const std::string key = "key-" + std::to_string(i);
            auto owner = routes.route(key);
            CHECK(owner == made[std::hash<std::string_view>{}(key) % 3]);
            CHECK(routes.route(key) == owner);
            for (std::size_t j = 0; j < 3; ++j)
                if (owner == made[j]) ++owners[j];
        }
        CHECK(owners[0] > 0);
        CHECK(owners[1] > 0);
        CHECK(owners[2] > 0);
        for (auto& c : made) {
            c->close();
            co_await c->wait_closed();
        }
    }());
}

TEST_CASE("a rendezvous pairs sides by session key on one port", "[rendezvous]") {
    asio::io_context io;
    run(io, a_session_pairs_by_key_on_one_port());
}

TEST_CASE("a thousand sessions arriving interleaved at random pair without crossing",
          "[rendezvous]") {
    asio::io_context io;
    raise_fd_limit(8192);
    SECTION("one port") {
        run(io, interleaved_sessions(1000, false), 90s);
    }
    SECTION("two ports") {
        run(io, interleaved_sessions(1000, true), 90s);
    }
}

TEST_CASE("a rendezvous refuses bad tokens and the wrong port and silence", "[rendezvous]") {
    asio::io_context io;
    run(io, every_refusal());
}

TEST_CASE("a second side for a pending or joined session is refused", "[rendezvous]") {
    asio::io_context io;
    run(io, duplicates_are_refused_and_the_live_one_untouched());
}

TEST_CASE("a pending side is closed after pending_timeout", "[rendezvous]") {
    asio::io_context io;
    run(io, a_side_without_partner_is_closed_after_the_pending_timeout());
}

TEST_CASE("max_sessions bounds the sessions but not their second sides", "[rendezvous]") {
    asio::io_context io;
    run(io, max_sessions_refuses_a_new_session_but_completes_a_waiting_one());
}

TEST_CASE("one_server without a verifier does not start", "[rendezvous]") {
    asio::io_context io;
    run(io, one_server_needs_a_verifier());
}

TEST_CASE("silent clients on the shared port do not hold back sessions", "[rendezvous]") {
    asio::io_context io;
    raise_fd_limit(4096);
    run(io, silent_clients_do_not_block_sessions());
}

TEST_CASE("a server side's listen backlog is an option", "[rendezvous]") {
    asio::io_context io;
    run(io, the_backlog_is_an_option());
}

TEST_CASE("a socket the application accepted itself is adopted as a side", "[rendezvous]") {
    asio::io_context io;
    run(io, adopted_sockets_pair_like_accepted_ones());
}

TEST_CASE("an application awaits each session as it pairs and as it ends", "[rendezvous]") {
    asio::io_context io;
    run(io, session_events());
}
