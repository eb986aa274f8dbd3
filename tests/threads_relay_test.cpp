// Relaying on a multi-threaded io_context: pairs racing to form on a server_to_server connector
// (with splice, through buffers, logging every chunk), single-pair connectors of every dialing
// mode at once, and a proxy (server_to_socket with multi) for many clients at once. Every byte
// is checked. (See support/threads.hpp for how the tests use the pool.)
#include <socket_connector/connector.hpp>

#include <cstdint>
#include <iterator>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <asio/detached.hpp>
#include <asio/strand.hpp>

#include "support/net.hpp"
#include "support/threads.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

/// A loopback server for a connector to dial; each connection it accepts runs on a strand of its
/// own. `echo` sends back what it reads and ends its stream after the peer's; `exchange` sends a
/// tagged pattern (seeds from `first_seed` on, one per connection) while reading to the peer's
/// end.
struct target {
    enum class kind { echo, exchange };
    struct session {
        std::uint64_t sent_seed = 0;
        std::size_t got_size = 0;
        std::uint64_t got_checksum = 0;
        std::uint64_t got_tag = 0;
        std::string error;
    };

    target(asio::any_io_executor here, asio::any_io_executor pool_, kind k,
           std::uint64_t first_seed, std::size_t size_)
        : acceptor(std::move(here), loopback(0))
        , pool(std::move(pool_))
        , mode(k)
        , next_seed(first_seed)
        , size(size_) {}

    unsigned short port() const { return acceptor.local_endpoint().port(); }
    std::vector<session> sessions() {
        std::lock_guard lock(mutex);
        return ended;
    }

    tcp::acceptor acceptor; // used only on the strand that made it
    asio::any_io_executor pool;
    kind mode;
    std::uint64_t next_seed;
    std::size_t size;
    std::mutex mutex;
    std::vector<session> ended; // under mutex, as each connection ends
};

asio::awaitable<void> target_session(std::shared_ptr<target> t, tcp::socket socket,
                                     std::uint64_t seed) {
    target::session s;
    s.sent_seed = seed;
    try {
        std::vector<char> got;
        if (t->mode == target::kind::echo) {
            got = co_await echo(socket);
        } else {
            auto out = tagged(seed, t->size);
            got = co_await send_and_receive(socket, out);
        }
        s.got_size = got.size();
        s.got_checksum = checksum(got);
        s.got_tag = tag_of(got);
    } catch (const std::exception& e) {
        s.error = e.what();
    }
    std::lock_guard lock(t->mutex);
    t->ended.push_back(std::move(s));
}

asio::awaitable<void> target_serve(std::shared_ptr<target> t) {
    for (;;) {
        asio::any_io_executor own = asio::make_strand(t->pool);
        auto [ec, socket] = co_await t->acceptor.async_accept(own, use_tuple);
        if (ec) co_return;
        auto seed = t->mode == target::kind::exchange ? t->next_seed++ : 0;
        asio::co_spawn(own, target_session(t, std::move(socket), seed), asio::detached);
    }
}

/// Starts a target on the calling coroutine's strand; close its acceptor there to stop it.
asio::awaitable<std::shared_ptr<target>> start_target(asio::any_io_executor pool, target::kind k,
                                                      std::uint64_t first_seed = 0,
                                                      std::size_t size = 0) {
    auto here = co_await asio::this_coro::executor;
    auto t = std::make_shared<target>(here, pool, k, first_seed, size);
    asio::co_spawn(here, target_serve(t), asio::detached);
    co_return t;
}

asio::awaitable<void> rendezvous_many(asio::any_io_executor pool, bool zero_copy,
                                      bool log_traffic) {
    auto log = std::make_shared<counting_log>();
    sc::options o = loopback_options();
    o.zero_copy = zero_copy;
    o.log_traffic = log_traffic;
    o.verbose = true;
    o.logger = counting_logger(log);
    auto c = co_await sc::server_to_server(pool, std::move(o));
    const std::size_t pairs = 24;
    std::vector<received> at_a(pairs);
    std::vector<received> at_b(pairs);
    std::multiset<std::uint64_t> sent_by_a;
    std::multiset<std::uint64_t> sent_by_b;
    std::uint64_t bytes_a = 0;
    std::uint64_t bytes_b = 0;
    std::vector<asio::awaitable<void>> tasks;
    for (std::size_t i = 0; i < pairs; ++i) {
        std::uint64_t seed_a = 1000 + i;
        std::uint64_t seed_b = 2000 + i;
        std::size_t size_a = (64u << 10) + i * (16u << 10) + i;
        std::size_t size_b = (32u << 10) + i * (8u << 10) + 3 * i;
        sent_by_a.insert(seed_a);
        sent_by_b.insert(seed_b);
        bytes_a += size_a;
        bytes_b += size_b;
        tasks.push_back(rendezvous_pair(c->side_a_port(), c->side_b_port(), seed_a, size_a, seed_b,
                                        size_b, at_a[i], at_b[i]));
    }
    auto all = all_in_parallel(pool, std::move(tasks));
    co_await std::move(all);

    // Each B got exactly one A's pattern intact, and each A one B's.
    std::multiset<std::uint64_t> seen_at_a;
    std::multiset<std::uint64_t> seen_at_b;
    for (std::size_t i = 0; i < pairs; ++i) {
        INFO("pair " << i << ": " << at_a[i].error << " " << at_b[i].error);
        CHECK(at_a[i].error.empty());
        CHECK(at_b[i].error.empty());
        seen_at_a.insert(at_a[i].tag);
        seen_at_b.insert(at_b[i].tag);
    }
    CHECK(seen_at_b == sent_by_a);
    CHECK(seen_at_a == sent_by_b);
    CHECK(co_await eventually([&] { return c->connections() == 0; }));
    auto s = c->stats();
    CHECK(s.bytes_a_to_b == bytes_a);
    CHECK(s.bytes_b_to_a == bytes_b);
    CHECK(s.connections_total == pairs);
    CHECK(s.sockets_created == 2 * pairs);
    c->close();
    co_await c->wait_closed();
    CHECK(c->closed());
    // The logger was called from the connections' threads; every close was logged once.
    CHECK(log->connections_closed.load() == pairs);
    if (log_traffic) CHECK(log->traffic.load() >= 2 * pairs);
    if (!log_traffic) CHECK(log->traffic.load() == 0);
}

struct single_pair {
    std::string error;
    bool client_ok = true;   // what the test's client got (when it has one)
    bool targets_ok = false; // what the dialed servers got
    bool closed_by_itself = false;
    std::uint64_t a_to_b = 0, b_to_a = 0; // stats at the end
    std::uint64_t expect_a_to_b = 0, expect_b_to_a = 0;
};

/// A connector of a single-pair mode with its dialed servers and its client; it must relay one
/// pair byte for byte, then close by itself.
asio::awaitable<void> single_pair_connector(asio::any_io_executor pool, sc::connector_mode mode,
                                            std::uint64_t seed, single_pair& r) {
    try {
        const std::size_t size = (256u << 10) + seed * 1001;
        const std::uint64_t seed_ta = seed * 100;
        const std::uint64_t seed_tb = seed * 100 + 50;
        sc::options o = loopback_options();
        std::shared_ptr<target> ta;
        std::shared_ptr<target> tb;
        switch (mode) {
        case sc::connector_mode::server_to_socket:
            tb = co_await start_target(pool, target::kind::echo);
            o.b.endpoint = loopback(tb->port());
            break;
        case sc::connector_mode::socket_to_server:
            ta = co_await start_target(pool, target::kind::exchange, seed_ta, size / 2);
            o.a.endpoint = loopback(ta->port());
            break;
        case sc::connector_mode::socket_to_socket:
            ta = co_await start_target(pool, target::kind::exchange, seed_ta, size);
            tb = co_await start_target(pool, target::kind::exchange, seed_tb, size / 3);
            o.a.endpoint = loopback(ta->port());
            o.b.endpoint = loopback(tb->port());
            break;
        case sc::connector_mode::server_to_server:
        case sc::connector_mode::one_server:
            throw std::logic_error("not a single-pair mode");
        }
        auto c = co_await sc::create(mode, pool, std::move(o));
        auto out = tagged(seed, size);
        if (mode == sc::connector_mode::server_to_socket) {
            auto a = co_await connect_to(c->side_a_port());
            auto back = co_await trade(a, out);
            r.client_ok = back.error.empty() && checksum(back.got) == checksum(out);
            r.expect_a_to_b = r.expect_b_to_a = out.size();
        } else if (mode == sc::connector_mode::socket_to_server) {
            auto b = co_await connect_to(c->side_b_port());
            auto got = co_await trade(b, out);
            r.client_ok = got.error.empty() && tag_of(got.got) == seed_ta;
            r.expect_a_to_b = tagged(seed_ta, size / 2).size();
            r.expect_b_to_a = out.size();
        } else {
            r.expect_a_to_b = tagged(seed_ta, size).size();
            r.expect_b_to_a = tagged(seed_tb, size / 3).size();
        }
        // Its only pair over, the connector closes by itself (the grace period is 30 s).
        co_await c->wait_closed();
        r.closed_by_itself = c->closed();
        auto s = c->stats();
        r.a_to_b = s.bytes_a_to_b;
        r.b_to_a = s.bytes_b_to_a;
        // The dialed servers record their session when they see the end of stream.
        auto one_session = [](const std::shared_ptr<target>& t) {
            return !t || t->sessions().size() == 1;
        };
        co_await eventually([&] { return one_session(ta) && one_session(tb); });
        r.targets_ok = true;
        if (mode == sc::connector_mode::server_to_socket) {
            auto sb = tb->sessions();
            r.targets_ok = sb.size() == 1 && sb[0].error.empty() &&
                           sb[0].got_checksum == checksum(out) && sb[0].got_size == out.size();
        } else if (mode == sc::connector_mode::socket_to_server) {
            auto sa = ta->sessions();
            r.targets_ok = sa.size() == 1 && sa[0].error.empty() && sa[0].got_tag == seed;
        } else {
            auto sa = ta->sessions();
            auto sb = tb->sessions();
            r.targets_ok = sa.size() == 1 && sb.size() == 1 && sa[0].error.empty() &&
                           sb[0].error.empty() && sa[0].got_tag == seed_tb &&
                           sb[0].got_tag == seed_ta;
        }
        if (ta) ta->acceptor.close();
        if (tb) tb->acceptor.close();
    } catch (const std::exception& e) {
        r.error = e.what();
    }
}

asio::awaitable<void> single_pair_modes(asio::any_io_executor pool) {
    const sc::connector_mode modes[] = {sc::connector_mode::server_to_socket,
                                        sc::connector_mode::socket_to_server,
                                        sc::connector_mode::socket_to_socket};
    const std::size_t per_mode = 4;
    std::vector<single_pair> results(std::size(modes) * per_mode);
    std::vector<asio::awaitable<void>> tasks;
    for (std::size_t i = 0; i < results.size(); ++i)
        tasks.push_back(
            single_pair_connector(pool, modes[i % std::size(modes)], i + 1, results[i]));
    auto all = all_in_parallel(pool, std::move(tasks));
    co_await std::move(all);
    for (std::size_t i = 0; i < results.size(); ++i) {
        auto& r = results[i];
        INFO("connector " << i << " (mode " << static_cast<int>(modes[i % std::size(modes)])
                          << "): " << r.error);
        CHECK(r.error.empty());
        CHECK(r.client_ok);
        CHECK(r.targets_ok);
        CHECK(r.closed_by_itself);
        CHECK(r.a_to_b == r.expect_a_to_b);
        CHECK(r.b_to_a == r.expect_b_to_a);
    }
}

struct proxied {
    bool ok = false;
    std::string error;
};

asio::awaitable<void> proxy_client(unsigned short port, std::uint64_t seed, std::size_t size,
                                   proxied& r) {
    try {
        auto a = co_await connect_to(port);
        auto out = tagged(seed, size);
        auto back = co_await trade(a, out);
        r.error = back.error;
        r.ok = back.error.empty() && back.got.size() == out.size() &&
               checksum(back.got) == checksum(out);
    } catch (const std::exception& e) {
        r.error = e.what();
    }
}

asio::awaitable<void> proxy_many(asio::any_io_executor pool) {
    auto t = co_await start_target(pool, target::kind::echo);
    sc::options o = loopback_options();
    o.b.endpoint = loopback(t->port());
    o.multi = true;
    o.timeout = sc::no_timeout;
    auto c = co_await sc::server_to_socket(pool, std::move(o));
    const std::size_t clients = 32;
    std::vector<proxied> results(clients);
    std::multiset<std::uint64_t> sent;
    std::uint64_t bytes = 0;
    std::vector<asio::awaitable<void>> tasks;
    for (std::size_t i = 0; i < clients; ++i) {
        std::size_t size = (48u << 10) + i * (12u << 10) + 7 * i;
        auto out = tagged(3000 + i, size);
        sent.insert(checksum(out));
        bytes += out.size();
        tasks.push_back(proxy_client(c->side_a_port(), 3000 + i, size, results[i]));
    }
    auto all = all_in_parallel(pool, std::move(tasks));
    co_await std::move(all);
    for (std::size_t i = 0; i < clients; ++i) {
        INFO("client " << i << ": " << results[i].error);
        CHECK(results[i].ok);
    }
    // The target saw each A's own bytes on a connection of its own.
    CHECK(co_await eventually([&] { return t->sessions().size() == clients; }));
    std::multiset<std::uint64_t> seen;
    for (auto& s : t->sessions()) {
        CHECK(s.error.empty());
        seen.insert(s.got_checksum);
    }
    CHECK(seen == sent);
    CHECK(co_await eventually([&] { return c->connections() == 0; }));
    auto s = c->stats();
    CHECK(s.connections_total == clients);
    CHECK(s.sockets_created == 2 * clients);
    CHECK(s.bytes_a_to_b == bytes);
    CHECK(s.bytes_b_to_a == bytes);
    CHECK(!c->closed());
    c->close();
    co_await c->wait_closed();
    t->acceptor.close();
}

} // namespace

TEST_CASE("server_to_server on 4 threads relays racing pairs byte for byte with splice",
          "[threads]") {
    asio::io_context io(pool_threads);
    run_on_pool(io, rendezvous_many(io.get_executor(), true, false));
}

TEST_CASE("server_to_server on 4 threads relays racing pairs byte for byte through buffers",
          "[threads]") {
    asio::io_context io(pool_threads);
    run_on_pool(io, rendezvous_many(io.get_executor(), false, false));
}

TEST_CASE("server_to_server on 4 threads logs every chunk from the connections' threads",
          "[threads]") {
    asio::io_context io(pool_threads);
    run_on_pool(io, rendezvous_many(io.get_executor(), true, true));
}

TEST_CASE("single-pair connectors of every dialing mode relay at once on 4 threads", "[threads]") {
    asio::io_context io(pool_threads);
    run_on_pool(io, single_pair_modes(io.get_executor()));
}

TEST_CASE("server_to_socket with multi proxies many clients at once on 4 threads", "[threads]") {
    asio::io_context io(pool_threads);
    run_on_pool(io, proxy_many(io.get_executor()));
}
