// The library on a multi-threaded io_context: every mode, many pairs at once, close() and the
// counters from threads that are not the connector's, next_connection() from another
// io_context, auth verifiers and transformers, resets mid-transfer. scripts/test runs these
// under ThreadSanitizer (build/tsan); with it they are what shows that the strands really keep
// each connector's and each connection's state to one thread at a time.
//
// The test's own coroutines run on strands: the driver on one, each client task on one of its
// own (so tasks run in parallel on the pool's threads). Catch2 is not thread-safe, so tasks
// only record what they saw and the driver checks it once they have all ended.
#include <socket_connector/auth.hpp>
#include <socket_connector/connector.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/post.hpp>
#include <asio/strand.hpp>
#include <fmt/format.h>

#include "support/auth.hpp"
#include "support/net.hpp"
#ifdef SOCKET_CONNECTOR_CLI
#include "support/programs.hpp"
#endif

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr int pool_threads = 4;

/// Runs `task` on a strand of `io` while `pool_threads` threads run `io`, for at most
/// `deadline`; REQUIREs that it finished and rethrows what it threw.
void run_on_pool(asio::io_context& io, asio::awaitable<void> task,
                 std::chrono::seconds deadline = 90s) {
    std::atomic<bool> done{false};
    std::exception_ptr error;
    asio::co_spawn(asio::make_strand(io), std::move(task), [&](std::exception_ptr e) {
        error = e;
        done = true;
        io.stop();
    });
    std::vector<std::thread> threads;
    for (int i = 0; i < pool_threads; ++i)
        threads.emplace_back([&] { io.run_for(deadline); });
    for (auto& t : threads)
        t.join();
    REQUIRE(done);
    if (error) std::rethrow_exception(error);
}

/// Client tasks running at the same time: each on a strand of its own, so they run in parallel on
/// the pool's threads. `wait()` (on the strand that made the group) completes once all have ended
/// and rethrows the first exception one of them threw. (Not `&&`: on a failure it cancels the
/// other operations, which is not safe across strands.)
class task_group {
public:
    explicit task_group(asio::any_io_executor here)
        : state_(std::make_shared<state>(std::move(here))) {}

    void spawn(asio::any_io_executor pool, asio::awaitable<void> task) {
        ++state_->remaining;
        asio::co_spawn(
            asio::make_strand(pool), std::move(task), [s = state_](std::exception_ptr e) {
                if (e) {
                    std::lock_guard lock(s->mutex);
                    if (!s->error) s->error = e;
                }
                if (s->remaining.fetch_sub(1) == 1)
                    asio::post(s->all_done.get_executor(), [s] { s->all_done.cancel(); });
            });
    }

    asio::awaitable<void> wait() {
        auto s = state_;
        while (s->remaining.load() > 0)
            co_await s->all_done.async_wait(use_tuple);
        std::exception_ptr error;
        {
            std::lock_guard lock(s->mutex);
            error = s->error;
        }
        if (error) std::rethrow_exception(error);
    }

private:
    struct state {
        explicit state(asio::any_io_executor here)
            : all_done(std::move(here), asio::steady_timer::time_point::max()) {}
        std::atomic<std::size_t> remaining{0};
        std::mutex mutex;
        std::exception_ptr error;
        asio::steady_timer all_done; // used only on the strand that made the group
    };
    std::shared_ptr<state> state_;
};

/// Runs `tasks` at the same time (see task_group) and completes once all have ended.
asio::awaitable<void> all_in_parallel(asio::any_io_executor pool,
                                      std::vector<asio::awaitable<void>> tasks) {
    task_group group(co_await asio::this_coro::executor);
    for (auto& task : tasks)
        group.spawn(pool, std::move(task));
    auto all = group.wait();
    co_await std::move(all);
}

// ---- data ---------------------------------------------------------------------------------------

/// A pattern that names itself: its first 8 bytes are its seed and the next 8 its size, so a
/// client that cannot know which peer it was paired with can still check every byte it got.
std::vector<char> tagged(std::uint64_t seed, std::size_t size) {
    auto data = pattern(seed, std::max<std::size_t>(size, 16));
    std::uint64_t n = data.size();
    std::memcpy(data.data(), &seed, sizeof seed);
    std::memcpy(data.data() + 8, &n, sizeof n);
    return data;
}

/// The seed of `data` if it is exactly a `tagged` pattern (checksum and size), else 0.
std::uint64_t tag_of(std::span<const char> data) {
    if (data.size() < 16) return 0;
    std::uint64_t seed = 0;
    std::uint64_t n = 0;
    std::memcpy(&seed, data.data(), sizeof seed);
    std::memcpy(&n, data.data() + 8, sizeof n);
    if (seed == 0 || n != data.size()) return 0;
    return checksum(data) == checksum(tagged(seed, n)) ? seed : 0;
}

/// What every "endless" sender repeats; its receivers check each byte against it.
const std::vector<char>& stream_block() {
    static const std::vector<char> block = pattern(99, 65536 + 17);
    return block;
}

/// Sends `stream_block()` over and over until a write fails (the relay closed the socket).
asio::awaitable<std::uint64_t> send_forever(tcp::socket& socket) {
    const auto& block = stream_block();
    std::uint64_t sent = 0;
    for (;;) {
        auto [ec, n] = co_await asio::async_write(socket, asio::buffer(block), use_tuple);
        sent += n;
        if (ec) co_return sent;
    }
}

/// How an endless stream ended at its receiver.
struct stream_end {
    std::uint64_t bytes = 0;
    bool intact = true; // every byte was the next one of the repeated block
    std::error_code error;
};

/// Reads a stream of repeated `stream_block()`s until the peer closes (or, with `limit`, until
/// that many bytes have come), checking every byte.
asio::awaitable<stream_end> read_stream(tcp::socket& socket,
                                        std::uint64_t limit = ~std::uint64_t{0}) {
    const auto& block = stream_block();
    stream_end end;
    std::vector<char> buf(65536);
    while (end.bytes < limit) {
        auto [ec, n] = co_await socket.async_read_some(asio::buffer(buf), use_tuple);
        for (std::size_t i = 0; i < n; ++i)
            if (buf[i] != block[(end.bytes + i) % block.size()]) end.intact = false;
        end.bytes += n;
        if (ec) {
            end.error = ec;
            break;
        }
    }
    co_return end;
}

/// Sends `out` and ends its stream while reading what comes back; nothing thrown.
struct trade_result {
    std::vector<char> got;
    std::string error;
};
asio::awaitable<trade_result> trade(tcp::socket& socket, const std::vector<char>& out) {
    trade_result r;
    try {
        r.got = co_await send_and_receive(socket, out);
    } catch (const std::exception& e) {
        r.error = e.what();
    }
    co_return r;
}

/// A logger for any thread: counts lines, traffic lines, "connection N closed" lines and failed
/// authentications.
struct counting_log {
    std::atomic<std::uint64_t> lines{0};
    std::atomic<std::uint64_t> traffic{0};
    std::atomic<std::uint64_t> connections_closed{0};
    std::atomic<std::uint64_t> auth_failed{0};
};
sc::logger counting_logger(std::shared_ptr<counting_log> log) {
    return [log](sc::log_level level, std::string_view message) {
        ++log->lines;
        if (level == sc::log_level::traffic) ++log->traffic;
        if (message.starts_with("connection ") && message.find(" closed: ") != message.npos)
            ++log->connections_closed;
        if (message.find("authentication of") != message.npos &&
            message.find(" failed: ") != message.npos)
            ++log->auth_failed;
    };
}

// ---- a server for connectors to dial ------------------------------------------------------------

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

// ---- server_to_server, many pairs ---------------------------------------------------------------

/// What one client of a pair received.
struct received {
    std::uint64_t tag = 0; // the seed of the tagged pattern it got intact, or 0
    std::string error;
};

/// One pair of clients of a server_to_server connector, each sending a tagged pattern and reading
/// its peer's. Pairs race to form across threads, so each records whose pattern it got.
asio::awaitable<void> rendezvous_pair(unsigned short port_a, unsigned short port_b,
                                      std::uint64_t seed_a, std::size_t size_a,
                                      std::uint64_t seed_b, std::size_t size_b, received& at_a,
                                      received& at_b) {
    try {
        auto a = co_await connect_to(port_a);
        auto b = co_await connect_to(port_b);
        auto out_a = tagged(seed_a, size_a);
        auto out_b = tagged(seed_b, size_b);
        auto [got_a, got_b] = co_await (trade(a, out_a) && trade(b, out_b));
        at_a.tag = tag_of(got_a.got);
        at_a.error = got_a.error;
        at_b.tag = tag_of(got_b.got);
        at_b.error = got_b.error;
    } catch (const std::exception& e) {
        at_a.error = e.what();
    }
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

// ---- the single-pair modes ----------------------------------------------------------------------

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
            throw std::logic_error("not a single-pair mode");
        }
        auto c = co_await sc::connector::create(mode, pool, std::move(o));
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

// ---- server_to_socket with multi ----------------------------------------------------------------

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

// ---- close() from another thread ----------------------------------------------------------------

struct endless_pair {
    stream_end at_a, at_b;
    std::uint64_t sent_a = 0, sent_b = 0;
    std::string error;
};

/// Both clients of a pair send forever and read forever, until the relay closes them.
asio::awaitable<void> streaming_clients(tcp::socket a, tcp::socket b, endless_pair& r) {
    try {
        auto [sent_a, at_a, sent_b, at_b] =
            co_await (send_forever(a) && read_stream(a) && send_forever(b) && read_stream(b));
        r.sent_a = sent_a;
        r.sent_b = sent_b;
        r.at_a = at_a;
        r.at_b = at_b;
    } catch (const std::exception& e) {
        r.error = e.what();
    }
}

/// The same, connecting the two clients first.
asio::awaitable<void> endless_clients(unsigned short port_a, unsigned short port_b,
                                      endless_pair& r) {
    try {
        auto a = co_await connect_to(port_a);
        auto b = co_await connect_to(port_b);
        // Named, not a temporary in the co_await: g++ 12 destroys such temporaries twice.
        auto stream = streaming_clients(std::move(a), std::move(b), r);
        co_await std::move(stream);
    } catch (const std::exception& e) {
        r.error = e.what();
    }
}

asio::awaitable<void> close_from_another_thread(asio::any_io_executor pool) {
    sc::options o = loopback_options();
    o.timeout = sc::no_timeout;
    auto c = co_await sc::server_to_server(pool, std::move(o));
    const std::size_t pairs = 8;
    std::vector<endless_pair> results(pairs);
    // Started, not awaited yet: they end only when the connector closes their sockets.
    task_group clients(co_await asio::this_coro::executor);
    for (auto& r : results)
        clients.spawn(pool, endless_clients(c->side_a_port(), c->side_b_port(), r));
    const std::uint64_t enough = pairs * (256u << 10);
    bool flowing = co_await eventually(
        [&] {
            auto s = c->stats();
            return c->connections() == pairs && s.bytes_a_to_b >= enough &&
                   s.bytes_b_to_a >= enough;
        },
        30s);
    CHECK(flowing);
    // From a thread that runs nothing of the connector's, while every pair relays both ways.
    std::thread closer([c] { c->close(); });
    closer.join();
    co_await c->wait_closed();
    CHECK(c->closed());
    CHECK(c->connections() == 0);
    CHECK(c->pending_a() == 0);
    CHECK(c->pending_b() == 0);
    auto ended = clients.wait();
    co_await std::move(ended);
    auto s = c->stats();
    CHECK(s.connections_total == pairs);
    std::uint64_t at_b = 0;
    std::uint64_t at_a = 0;
    for (std::size_t i = 0; i < pairs; ++i) {
        auto& r = results[i];
        INFO("pair " << i << ": " << r.error << " A: " << r.at_a.error.message()
                     << " B: " << r.at_b.error.message());
        CHECK(r.error.empty());
        // Every client saw its stream end (EOF or reset) and what it got was intact.
        CHECK(r.at_a.error);
        CHECK(r.at_b.error);
        CHECK(r.at_a.intact);
        CHECK(r.at_b.intact);
        CHECK(r.sent_a > 0);
        CHECK(r.sent_b > 0);
        at_b += r.at_b.bytes;
        at_a += r.at_a.bytes;
    }
    // What the clients got was written by the relay (some of what it wrote may have been lost
    // with the sockets it closed).
    CHECK(at_b > 0);
    CHECK(at_a > 0);
    CHECK(at_b <= s.bytes_a_to_b);
    CHECK(at_a <= s.bytes_b_to_a);
}

// ---- the counters from other threads while pairs come and go ------------------------------------

/// What the observer threads saw: how often they read the counters, and the first broken
/// invariant.
struct observation {
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> reads{0};
    std::mutex mutex;
    std::string broken;
};

/// Reads the connector's counters from a plain thread until told to stop. The counters only
/// grow, a snapshot never has more open connections than formed ones, and no queue is longer
/// than the number of clients that can wait in it at once.
void observe(std::shared_ptr<sc::connector> c, observation& obs, std::size_t at_most) {
    sc::stats last;
    auto broken = [&](std::string what) {
        std::lock_guard lock(obs.mutex);
        if (obs.broken.empty()) obs.broken = std::move(what);
    };
    while (!obs.stop.load()) {
        auto s = c->stats();
        auto json = s.to_json();
        auto pending_a = c->pending_a();
        auto pending_b = c->pending_b();
        if (s.sockets_created < last.sockets_created) broken("sockets_created went down");
        if (s.bytes_a_to_b < last.bytes_a_to_b) broken("bytes_a_to_b went down");
        if (s.bytes_b_to_a < last.bytes_b_to_a) broken("bytes_b_to_a went down");
        if (s.connections_total < last.connections_total) broken("connections_total went down");
        if (s.auth_failures < last.auth_failures) broken("auth_failures went down");
        if (s.connections_open > s.connections_total)
            broken(fmt::format("{} open of {} formed", s.connections_open, s.connections_total));
        if (pending_a > at_most || pending_b > at_most)
            broken(fmt::format("pending {} and {}", pending_a, pending_b));
        if (c->connections() > c->stats().connections_total) broken("more live than formed");
        if (json.find(fmt::format("\"connections_total\":{}", s.connections_total)) ==
            std::string::npos)
            broken("to_json: " + json);
        if (c->closed()) broken("closed while serving");
        last = s;
        ++obs.reads;
        std::this_thread::sleep_for(std::chrono::microseconds(200)); // pacing, not synchronising
    }
}

/// Two observer threads, stopped and joined however the test ends.
struct observers {
    observers(std::shared_ptr<sc::connector> c, std::size_t at_most) {
        for (int i = 0; i < 2; ++i)
            threads.emplace_back(observe, c, std::ref(obs), at_most);
    }
    ~observers() { stop(); }
    void stop() {
        obs.stop = true;
        for (auto& t : threads)
            if (t.joinable()) t.join();
    }
    observation obs;
    std::vector<std::thread> threads;
};

struct churn_tags {
    std::vector<std::uint64_t> sent_by_a, sent_by_b, seen_at_a, seen_at_b;
    std::uint64_t bytes_a = 0, bytes_b = 0;
    std::string error;
};

/// Forms `rounds` pairs one after another, each relaying a tagged pattern each way; A first
/// sends the token. Workers race, so an A may be paired with another worker's B.
asio::awaitable<void> churn_pairs(unsigned short port_a, unsigned short port_b, std::uint64_t first,
                                  int rounds, churn_tags& r) {
    try {
        for (int i = 0; i < rounds; ++i) {
            std::uint64_t seed_a = first + static_cast<std::uint64_t>(i);
            std::uint64_t seed_b = seed_a + 50000;
            std::size_t size_a = 20000 + 977 * static_cast<std::size_t>(i);
            std::size_t size_b = 12000 + 1500 * static_cast<std::size_t>(i);
            auto a = co_await connect_to(port_a);
            auto b = co_await connect_to(port_b);
            auto out_a = tagged(seed_a, size_a);
            auto out_b = tagged(seed_b, size_b);
            auto hello_a = concat("tok\n", out_a);
            auto [got_a, got_b] = co_await (trade(a, hello_a) && trade(b, out_b));
            if (!got_a.error.empty() || !got_b.error.empty())
                throw std::runtime_error(got_a.error + got_b.error);
            r.sent_by_a.push_back(seed_a);
            r.sent_by_b.push_back(seed_b);
            r.seen_at_a.push_back(tag_of(got_a.got));
            r.seen_at_b.push_back(tag_of(got_b.got));
            r.bytes_a += out_a.size();
            r.bytes_b += out_b.size();
        }
    } catch (const std::exception& e) {
        r.error = e.what();
    }
}

/// Sides that never pair: a wrong token (closed by the connector), or gone before the verifier
/// has read anything. Counts the ones that saw the connector close them.
asio::awaitable<void> churn_failures(unsigned short port_a, int rounds, bool wrong_token,
                                     int& turned_away) {
    try {
        for (int i = 0; i < rounds; ++i) {
            auto a = co_await connect_to(port_a);
            if (!wrong_token) {
                a.close();
                ++turned_away;
                continue;
            }
            co_await send_text(a, "nope\n", false);
            auto end = co_await read_until_closed(a);
            if (end.closed && end.bytes.empty()) ++turned_away;
        }
    } catch (const std::exception&) {
        // counted as not turned away
    }
}

asio::awaitable<void> counters_while_pairs_churn(asio::any_io_executor pool) {
    auto log = std::make_shared<counting_log>();
    sc::options o = loopback_options();
    o.timeout = sc::no_timeout;
    o.a.auth = sc::token_verifier("tok");
    o.logger = counting_logger(log);
    auto c = co_await sc::server_to_server(pool, std::move(o));
    const int workers = 4;
    const int failers = 4;
    const int rounds = 8;
    observers watching(c, static_cast<std::size_t>(workers));
    auto& obs = watching.obs;
    std::vector<churn_tags> tags(workers);
    std::vector<int> turned_away(failers, 0);
    std::vector<asio::awaitable<void>> tasks;
    for (int w = 0; w < workers; ++w)
        tasks.push_back(churn_pairs(c->side_a_port(), c->side_b_port(),
                                    static_cast<std::uint64_t>(7000 + 100 * w), rounds,
                                    tags[static_cast<std::size_t>(w)]));
    for (int f = 0; f < failers; ++f)
        tasks.push_back(churn_failures(c->side_a_port(), rounds, f % 2 == 0,
                                       turned_away[static_cast<std::size_t>(f)]));
    auto all = all_in_parallel(pool, std::move(tasks));
    co_await std::move(all);
    // The last failures are counted once their verifiers have seen them.
    const auto expected_failures = static_cast<std::uint64_t>(failers * rounds);
    CHECK(co_await eventually(
        [&] { return c->connections() == 0 && c->stats().auth_failures == expected_failures; }));
    watching.stop();
    INFO(obs.broken);
    CHECK(obs.broken.empty());
    CHECK(obs.reads > 0);

    std::multiset<std::uint64_t> sent_a, sent_b, seen_a, seen_b;
    std::uint64_t bytes_a = 0;
    std::uint64_t bytes_b = 0;
    for (auto& t : tags) {
        INFO(t.error);
        CHECK(t.error.empty());
        sent_a.insert(t.sent_by_a.begin(), t.sent_by_a.end());
        sent_b.insert(t.sent_by_b.begin(), t.sent_by_b.end());
        seen_a.insert(t.seen_at_a.begin(), t.seen_at_a.end());
        seen_b.insert(t.seen_at_b.begin(), t.seen_at_b.end());
        bytes_a += t.bytes_a;
        bytes_b += t.bytes_b;
    }
    CHECK(sent_a.size() == static_cast<std::size_t>(workers * rounds));
    CHECK(seen_b == sent_a);
    CHECK(seen_a == sent_b);
    for (int n : turned_away)
        CHECK(n == rounds);
    auto s = c->stats();
    CHECK(s.connections_total == static_cast<std::uint64_t>(workers * rounds));
    CHECK(s.sockets_created == static_cast<std::uint64_t>((2 * workers + failers) * rounds));
    CHECK(s.auth_failures == expected_failures);
    CHECK(log->auth_failed.load() == expected_failures);
    CHECK(s.bytes_a_to_b == bytes_a); // the token line is not relayed
    CHECK(s.bytes_b_to_a == bytes_b);
    c->close();
    co_await c->wait_closed();
}

// ---- next_connection() on another io_context ----------------------------------------------------

/// An io_context on a thread of its own, for code that uses the connector from outside its pool.
struct other_thread {
    asio::io_context io;
    asio::executor_work_guard<asio::io_context::executor_type> work = asio::make_work_guard(io);
    std::thread thread{[this] { io.run_for(90s); }};
    ~other_thread() {
        work.reset();
        io.stop();
        thread.join();
    }
};

struct consumer_report {
    std::vector<std::uint64_t> ids;
    std::vector<std::uint64_t> kept_ids;
    std::vector<std::uint64_t> kept_a_to_b, kept_b_to_a;
    bool all_closed = true;
    bool connector_closed = false;
    std::string error;
    std::atomic<bool> done{false};
};

/// On the other thread: takes each connection as it forms, closes the even ones at once, and
/// once the connector has closed records what the odd ones relayed.
asio::awaitable<void> consume(std::shared_ptr<sc::connector> c, consumer_report& r) {
    try {
        std::vector<std::shared_ptr<sc::connection>> kept;
        for (;;) {
            auto conn = co_await c->next_connection();
            if (!conn) break;
            r.ids.push_back(conn->id());
            if (conn->id() % 2 == 0) conn->close(); // from this thread, while its clients relay
            kept.push_back(conn);
        }
        for (auto& conn : kept) {
            co_await conn->wait_closed();
            r.all_closed = r.all_closed && conn->closed();
            if (conn->id() % 2 == 1) {
                r.kept_ids.push_back(conn->id());
                r.kept_a_to_b.push_back(conn->bytes_a_to_b());
                r.kept_b_to_a.push_back(conn->bytes_b_to_a());
            }
        }
        co_await c->wait_closed();
        r.connector_closed = c->closed();
    } catch (const std::exception& e) {
        r.error = e.what();
    }
    r.done = true;
}

struct formed_pair {
    bool ok = false;
    std::string error;
};

/// Odd pairs relay a tagged pattern each way; even ones stream until the consumer closes them.
asio::awaitable<void> formed_pair_traffic(tcp::socket a, tcp::socket b, std::uint64_t id,
                                          formed_pair& r) {
    try {
        if (id % 2 == 1) {
            auto out_a = tagged(8000 + id, 100000 + 1000 * id);
            auto out_b = tagged(9000 + id, 60000 + 3000 * id);
            auto [got_a, got_b] = co_await (trade(a, out_a) && trade(b, out_b));
            r.error = got_a.error + got_b.error;
            r.ok =
                r.error.empty() && tag_of(got_b.got) == 8000 + id && tag_of(got_a.got) == 9000 + id;
        } else {
            auto [sent_a, at_a, sent_b, at_b] =
                co_await (send_forever(a) && read_stream(a) && send_forever(b) && read_stream(b));
            r.error =
                fmt::format("A read {} ({}), B read {} ({}), sent {} and {}", at_a.bytes,
                            at_a.error.message(), at_b.bytes, at_b.error.message(), sent_a, sent_b);
            r.ok = at_a.intact && at_b.intact && at_a.error && at_b.error;
        }
    } catch (const std::exception& e) {
        r.error = e.what();
    }
}

asio::awaitable<void> connections_from_another_thread(asio::any_io_executor pool,
                                                      asio::io_context& elsewhere,
                                                      consumer_report& report) {
    sc::options o = loopback_options();
    o.timeout = sc::no_timeout;
    auto c = co_await sc::server_to_server(pool, std::move(o));
    asio::co_spawn(elsewhere, consume(c, report), asio::detached);
    // Pairs formed one at a time, so pair i is connection i.
    const std::uint64_t pairs = 12;
    std::vector<formed_pair> results(pairs);
    task_group traffic(co_await asio::this_coro::executor);
    for (std::uint64_t id = 1; id <= pairs; ++id) {
        auto a = co_await connect_to(c->side_a_port());
        auto b = co_await connect_to(c->side_b_port());
        bool formed = co_await eventually([&] { return c->stats().connections_total == id; });
        REQUIRE(formed);
        traffic.spawn(pool, formed_pair_traffic(std::move(a), std::move(b), id, results[id - 1]));
    }
    auto ended = traffic.wait();
    co_await std::move(ended);
    for (std::uint64_t id = 1; id <= pairs; ++id) {
        INFO("pair " << id << ": " << results[id - 1].error);
        CHECK(results[id - 1].ok);
    }
    CHECK(co_await eventually([&] { return c->connections() == 0; }));
    c->close();
    bool consumed = co_await eventually([&] { return report.done.load(); });
    REQUIRE(consumed);
    INFO(report.error);
    CHECK(report.error.empty());
    std::vector<std::uint64_t> in_order;
    for (std::uint64_t id = 1; id <= pairs; ++id)
        in_order.push_back(id);
    CHECK(report.ids == in_order);
    CHECK(report.all_closed);
    CHECK(report.connector_closed);
    REQUIRE(report.kept_ids.size() == pairs / 2);
    for (std::size_t i = 0; i < report.kept_ids.size(); ++i) {
        auto id = report.kept_ids[i];
        CHECK(report.kept_a_to_b[i] == tagged(8000 + id, 100000 + 1000 * id).size());
        CHECK(report.kept_b_to_a[i] == tagged(9000 + id, 60000 + 3000 * id).size());
    }
}

// ---- auth verifiers and transformers ------------------------------------------------------------

char key_at(std::uint64_t position) {
    return static_cast<char>((position * 131 + 7) & 0xff);
}

/// XORs each byte with a key that depends on its position in the stream (state across chunks).
struct rolling_xor {
    std::uint64_t position = 0;
    void transform(std::span<const char> in, std::vector<char>& out) {
        for (char c : in)
            out.push_back(static_cast<char>(c ^ key_at(position++)));
    }
    void finish(std::vector<char>&) {}
};

std::vector<char> rolling_xor_of(std::vector<char> data) {
    for (std::size_t i = 0; i < data.size(); ++i)
        data[i] = static_cast<char>(data[i] ^ key_at(i));
    return data;
}

/// Holds the whole stream back and emits it reversed from finish().
struct reversing {
    std::vector<char> held;
    void transform(std::span<const char> in, std::vector<char>&) {
        held.insert(held.end(), in.begin(), in.end());
    }
    void finish(std::vector<char>& out) { out.insert(out.end(), held.rbegin(), held.rend()); }
};

/// The answer line to the challenge on `socket`, right or wrong.
asio::awaitable<std::string> answer(tcp::socket& socket, bool correctly) {
    auto challenge = co_await read_line(socket);
    auto n = static_cast<unsigned long>(socket.local_endpoint().port());
    if (challenge != fmt::format("challenge {}", n))
        throw std::runtime_error("unexpected challenge: " + challenge);
    co_return fmt::format("{}\n", correctly ? n * 3 + 1 : n * 3);
}

struct authed_pair {
    std::uint64_t seen_at_a = 0, seen_at_b = 0;
    std::string error;
};

/// A authenticates with the token, B answers the challenge; then each sends a tagged pattern.
/// A's bytes reach B XOR-ed by position, B's reach A reversed.
asio::awaitable<void> authed_clients(unsigned short port_a, unsigned short port_b,
                                     std::uint64_t seed, std::size_t size, authed_pair& r) {
    try {
        auto a = co_await connect_to(port_a);
        auto b = co_await connect_to(port_b);
        auto hello_a = concat("tok\n", tagged(seed, size));
        auto reply = co_await answer(b, true);
        auto hello_b = concat(reply, tagged(seed + 1, size / 2));
        auto [got_a, got_b] = co_await (trade(a, hello_a) && trade(b, hello_b));
        r.error = got_a.error + got_b.error;
        std::reverse(got_a.got.begin(), got_a.got.end());
        r.seen_at_a = tag_of(got_a.got);
        r.seen_at_b = tag_of(rolling_xor_of(std::move(got_b.got)));
    } catch (const std::exception& e) {
        r.error = e.what();
    }
}

/// A wrong token on A, or a wrong answer on B: the connector must close it unpaired.
asio::awaitable<void> failing_client(unsigned short port, bool side_a, bool& turned_away) {
    try {
        auto s = co_await connect_to(port);
        std::string hello = "not the token\n";
        if (!side_a) hello = co_await answer(s, false);
        co_await send_text(s, hello, false);
        auto end = co_await read_until_closed(s);
        turned_away = end.closed && end.bytes.empty();
    } catch (const std::exception&) {
        turned_away = false;
    }
}

asio::awaitable<void> auth_and_transformers(asio::any_io_executor pool) {
    auto joined = std::make_shared<std::atomic<int>>(0);
    auto log = std::make_shared<counting_log>();
    sc::options o = loopback_options();
    o.logger = counting_logger(log);
    o.timeout = sc::no_timeout;
    o.a.auth = sc::token_verifier("tok");
    o.b.auth = challenge_verifier{};
    o.a.transform = rolling_xor{};
    o.b.transform = reversing{};
    o.before_joining = [joined](sc::connection&) { ++*joined; };
    auto c = co_await sc::server_to_server(pool, std::move(o));
    const std::size_t pairs = 16;
    const std::size_t failing = 8;
    std::vector<authed_pair> results(pairs);
    std::multiset<std::uint64_t> sent_a, sent_b;
    std::vector<asio::awaitable<void>> tasks;
    for (std::size_t i = 0; i < pairs; ++i) {
        std::uint64_t seed = 11000 + 2 * i;
        sent_a.insert(seed);
        sent_b.insert(seed + 1);
        tasks.push_back(authed_clients(c->side_a_port(), c->side_b_port(), seed,
                                       (40u << 10) + 5000 * i, results[i]));
    }
    std::deque<bool> failed(failing, false); // distinct objects, written from different threads
    for (std::size_t i = 0; i < failing; ++i)
        tasks.push_back(failing_client(i % 2 == 0 ? c->side_a_port() : c->side_b_port(), i % 2 == 0,
                                       failed[i]));
    auto all = all_in_parallel(pool, std::move(tasks));
    co_await std::move(all);
    std::multiset<std::uint64_t> seen_a, seen_b;
    for (auto& r : results) {
        INFO(r.error);
        CHECK(r.error.empty());
        seen_a.insert(r.seen_at_a);
        seen_b.insert(r.seen_at_b);
    }
    CHECK(seen_b == sent_a);
    CHECK(seen_a == sent_b);
    for (bool f : failed)
        CHECK(f);
    CHECK(co_await eventually([&] { return c->connections() == 0; }));
    auto s = c->stats();
    CHECK(s.auth_failures == failing);
    CHECK(log->auth_failed.load() == failing);
    CHECK(s.connections_total == pairs);
    CHECK(joined->load() == static_cast<int>(pairs));
    c->close();
    co_await c->wait_closed();
}

// ---- resets mid-transfer ------------------------------------------------------------------------

enum class fate { healthy, a_resets, b_resets };

struct reset_pair {
    bool ok = false;
    std::string detail;
};

/// Resets `socket` (linger 0) once it has read `after` bytes of the stream, checking them.
asio::awaitable<stream_end> reset_after(tcp::socket& socket, std::uint64_t after) {
    auto end = co_await read_stream(socket, after);
    socket.set_option(asio::socket_base::linger(true, 0));
    socket.close();
    co_return end;
}

asio::awaitable<void> reset_traffic(tcp::socket a, tcp::socket b, fate f, std::uint64_t seed,
                                    reset_pair& r) {
    try {
        if (f == fate::healthy) {
            auto out_a = tagged(seed, 256u << 10);
            auto out_b = tagged(seed + 1, 128u << 10);
            auto [got_a, got_b] = co_await (trade(a, out_a) && trade(b, out_b));
            r.detail = got_a.error + got_b.error;
            r.ok = r.detail.empty() && tag_of(got_b.got) == seed && tag_of(got_a.got) == seed + 1;
            co_return;
        }
        tcp::socket& victim = f == fate::a_resets ? a : b;
        tcp::socket& other = f == fate::a_resets ? b : a;
        // The other side streams at the one that resets, and must see its own end promptly.
        auto [sent, at_other, at_victim] =
            co_await (send_forever(other) && read_stream(other) && reset_after(victim, 256u << 10));
        r.detail = fmt::format("sent {}, the other saw {} ({}), the resetting one read {}", sent,
                               at_other.bytes, at_other.error.message(), at_victim.bytes);
        r.ok = at_victim.intact && at_victim.bytes >= (256u << 10) && at_other.intact &&
               at_other.error && at_other.bytes == 0;
    } catch (const std::exception& e) {
        r.detail = e.what();
    }
}

asio::awaitable<void> resets_mid_transfer(asio::any_io_executor pool) {
    sc::options o = loopback_options();
    o.timeout = sc::no_timeout;
    auto c = co_await sc::server_to_server(pool, std::move(o));
    const std::uint64_t pairs = 12;
    std::vector<reset_pair> results(pairs);
    task_group traffic(co_await asio::this_coro::executor);
    // Pairs formed one at a time, so each client pair knows it is a pair; then all run at once.
    std::vector<std::pair<tcp::socket, tcp::socket>> formed;
    for (std::uint64_t i = 1; i <= pairs; ++i) {
        auto a = co_await connect_to(c->side_a_port());
        auto b = co_await connect_to(c->side_b_port());
        bool ok = co_await eventually([&] { return c->stats().connections_total == i; });
        REQUIRE(ok);
        formed.emplace_back(std::move(a), std::move(b));
    }
    for (std::uint64_t i = 0; i < pairs; ++i) {
        auto f = i % 3 == 0 ? fate::healthy : i % 3 == 1 ? fate::a_resets : fate::b_resets;
        traffic.spawn(pool, reset_traffic(std::move(formed[i].first), std::move(formed[i].second),
                                          f, 12000 + 2 * i, results[i]));
    }
    auto ended = traffic.wait();
    co_await std::move(ended);
    for (std::uint64_t i = 0; i < pairs; ++i) {
        INFO("pair " << i << ": " << results[i].detail);
        CHECK(results[i].ok);
    }
    CHECK(co_await eventually([&] { return c->connections() == 0; }));
    // The connector keeps serving after the resets.
    CHECK(!c->closed());
    received at_a;
    received at_b;
    co_await rendezvous_pair(c->side_a_port(), c->side_b_port(), 12500, 300000, 12501, 200000, at_a,
                             at_b);
    CHECK(at_a.error.empty());
    CHECK(at_b.tag == 12500);
    CHECK(at_a.tag == 12501);
    CHECK(c->stats().connections_total == pairs + 1);
    c->close();
    co_await c->wait_closed();
}

// ---- limits and drain ---------------------------------------------------------------------------

/// Reads until the peer closes; true if it closed (FIN or reset) having sent nothing.
asio::awaitable<bool> closed_silently(tcp::socket& socket) {
    auto end = co_await read_until_closed(socket);
    co_return end.closed&& end.bytes.empty();
}

struct idle_pair {
    bool a_closed = false, b_closed = false;
};

asio::awaitable<void> idle_clients(tcp::socket a, tcp::socket b, idle_pair& r) {
    try {
        auto [a_closed, b_closed] = co_await (closed_silently(a) && closed_silently(b));
        r.a_closed = a_closed;
        r.b_closed = b_closed;
    } catch (const std::exception&) {
    }
}

/// max_connections, idle_timeout and drain() with the pairs spread over the pool: the
/// connection strands' idle timers, the accept loops' refusals and a drain from a thread
/// outside the pool.
asio::awaitable<void> limits_and_drain(asio::any_io_executor pool) {
    const auto idle = 1s;
    sc::options o = loopback_options();
    o.timeout = sc::no_timeout;
    o.max_connections = 6;
    o.idle_timeout = idle;
    o.logger = counting_logger(std::make_shared<counting_log>());
    auto c = co_await sc::server_to_server(pool, std::move(o));
    const std::uint64_t streaming = 4;
    const std::uint64_t silent = 2;
    std::vector<endless_pair> streams(streaming);
    std::vector<idle_pair> idlers(silent);
    task_group clients(co_await asio::this_coro::executor);
    // Pairs formed one at a time: the first four stream both ways, the last two stay silent.
    for (std::uint64_t i = 1; i <= streaming + silent; ++i) {
        auto a = co_await connect_to(c->side_a_port());
        auto b = co_await connect_to(c->side_b_port());
        bool formed = co_await eventually([&] { return c->stats().connections_total == i; });
        REQUIRE(formed);
        if (i <= streaming)
            clients.spawn(pool, streaming_clients(std::move(a), std::move(b), streams[i - 1]));
        else
            clients.spawn(pool,
                          idle_clients(std::move(a), std::move(b), idlers[i - streaming - 1]));
    }
    // Six pairs live: a seventh socket is refused at once (long before the silent pairs idle out).
    CHECK(c->connections() == streaming + silent);
    auto extra = co_await connect_to(c->side_a_port());
    bool refused = co_await closed_silently(extra);
    CHECK(refused);
    CHECK(c->stats().sockets_refused == 1);
    // The silent pairs are closed by idle_timeout; the streaming ones are not.
    CHECK(co_await eventually([&] { return c->connections() == streaming; }, 10s));
    co_await pause(2 * idle);
    CHECK(c->connections() == streaming);
    // Drained from a thread outside the pool: the streams never end, so the limit closes them.
    auto started = std::chrono::steady_clock::now();
    std::thread drainer([c] { c->drain(300ms); });
    drainer.join();
    co_await c->wait_closed();
    auto took = std::chrono::steady_clock::now() - started;
    CHECK(took >= 250ms);
    CHECK(took < 10s);
    auto ended = clients.wait();
    co_await std::move(ended);
    CHECK(c->closed());
    CHECK(c->connections() == 0);
    for (auto& r : idlers) {
        CHECK(r.a_closed);
        CHECK(r.b_closed);
    }
    for (std::size_t i = 0; i < streams.size(); ++i) {
        auto& r = streams[i];
        INFO("streaming pair " << i << ": " << r.error << " A: " << r.at_a.error.message()
                               << " B: " << r.at_b.error.message());
        CHECK(r.error.empty());
        CHECK(r.at_a.intact);
        CHECK(r.at_b.intact);
        CHECK(r.at_a.error);
        CHECK(r.at_b.error);
        // They streamed through both idle periods.
        CHECK(r.at_a.bytes > 0);
        CHECK(r.at_b.bytes > 0);
    }
    auto s = c->stats();
    CHECK(s.connections_total == streaming + silent);
    CHECK(s.sockets_refused == 1);
}

#ifdef SOCKET_CONNECTOR_CLI
// ---- the command with --threads -----------------------------------------------------------------

asio::awaitable<void> cli_on_threads(asio::any_io_executor pool) {
    auto cli = start_program("socket-connector",
                             {"server-to-server", "--a", "127.0.0.1:0", "--b", "127.0.0.1:0",
                              "--threads", "4", "--timeout", "0", "--stats"});
    auto port_a = co_await port_of(*cli, 'A');
    auto port_b = co_await port_of(*cli, 'B');
    const std::size_t pairs = 16;
    std::vector<received> at_a(pairs);
    std::vector<received> at_b(pairs);
    std::multiset<std::uint64_t> sent_a, sent_b;
    std::uint64_t bytes_a = 0;
    std::uint64_t bytes_b = 0;
    std::vector<asio::awaitable<void>> tasks;
    for (std::size_t i = 0; i < pairs; ++i) {
        std::size_t size_a = (200u << 10) + 333 * i;
        std::size_t size_b = (100u << 10) + 777 * i;
        sent_a.insert(13000 + i);
        sent_b.insert(14000 + i);
        bytes_a += size_a;
        bytes_b += size_b;
        tasks.push_back(rendezvous_pair(port_a, port_b, 13000 + i, size_a, 14000 + i, size_b,
                                        at_a[i], at_b[i]));
    }
    auto all = all_in_parallel(pool, std::move(tasks));
    co_await std::move(all);
    std::multiset<std::uint64_t> seen_a, seen_b;
    for (std::size_t i = 0; i < pairs; ++i) {
        INFO("pair " << i << ": " << at_a[i].error << " " << at_b[i].error);
        CHECK(at_a[i].error.empty());
        CHECK(at_b[i].error.empty());
        seen_a.insert(at_a[i].tag);
        seen_b.insert(at_b[i].tag);
    }
    CHECK(seen_b == sent_a);
    CHECK(seen_a == sent_b);
    cli->signal(SIGTERM);
    auto code = co_await exit_of(*cli, 30s);
    INFO("stderr: " << cli->err());
    CHECK(code == 0);
    auto out = cli->out();
    CHECK(out.find(fmt::format("\"bytes_a_to_b\":{}", bytes_a)) != std::string::npos);
    CHECK(out.find(fmt::format("\"bytes_b_to_a\":{}", bytes_b)) != std::string::npos);
    CHECK(out.find(fmt::format("\"connections_total\":{}", pairs)) != std::string::npos);
}

/// Echoes what one connection sends, chunk by chunk, until its end of stream.
asio::awaitable<void> echo_chunks(tcp::socket socket) {
    char buf[16384];
    for (;;) {
        auto [ec, n] = co_await socket.async_read_some(asio::buffer(buf), use_tuple);
        if (ec) co_return;
        auto [wec, m] = co_await asio::async_write(socket, asio::buffer(buf, n), use_tuple);
        if (wec) co_return;
    }
}

asio::awaitable<void> echo_server(tcp::acceptor& target) {
    auto ex = co_await asio::this_coro::executor;
    for (;;) {
        auto [ec, socket] = co_await target.async_accept(use_tuple);
        if (ec) co_return;
        asio::co_spawn(ex, echo_chunks(std::move(socket)), asio::detached);
    }
}

/// One echo round trip through a proxied client; true if the bytes came back intact.
asio::awaitable<bool> round_trip(tcp::socket& socket, std::uint64_t seed, std::size_t size) {
    auto data = pattern(seed, size);
    co_await send_all(socket, data, false); // no FIN: the pair stays open
    std::vector<char> back(size);
    auto [ec, n] = co_await asio::async_read(socket, asio::buffer(back), use_tuple);
    co_return !ec && n == size && checksum(back) == checksum(data);
}

asio::awaitable<void> proxy_client(unsigned short port, std::uint64_t seed, std::size_t size,
                                   received& r) {
    try {
        auto socket = co_await connect_to(port);
        r.tag = (co_await round_trip(socket, seed, size)) ? seed : 0;
    } catch (const std::exception& e) {
        r.error = e.what();
    }
}

/// The proxy on 4 threads is 4 event loops each accepting on the one address: every client is
/// relayed intact, the stats add up over the loops, and --max-connections holds for all of them.
asio::awaitable<void> cli_proxy_on_loops(asio::any_io_executor pool) {
    auto ex = co_await asio::this_coro::executor;
    auto target = tcp::acceptor(ex, {asio::ip::address_v4::loopback(), 0});
    asio::co_spawn(ex, echo_server(target), asio::detached);
    auto cli = start_program("socket-connector",
                             {"server-to-socket", "--a", "127.0.0.1:0", "--b",
                              fmt::format("127.0.0.1:{}", target.local_endpoint().port()),
                              "--multi", "--threads", "4", "--timeout", "0", "--max-connections",
                              "40", "--stats", "--verbose"});
    auto port = co_await port_of(*cli, 'A');
    const std::size_t clients = 32;
    std::vector<received> results(clients);
    std::vector<asio::awaitable<void>> tasks;
    std::uint64_t bytes = 0;
    for (std::size_t i = 0; i < clients; ++i) {
        std::size_t size = (96u << 10) + 517 * i;
        bytes += size;
        tasks.push_back(proxy_client(port, 31000 + i, size, results[i]));
    }
    auto all = all_in_parallel(pool, std::move(tasks));
    co_await std::move(all);
    for (std::size_t i = 0; i < clients; ++i) {
        INFO("client " << i << ": " << results[i].error);
        CHECK(results[i].tag == 31000 + i);
    }
    // Every pair has ended (each logs its close) before the limit is tried.
    auto closes = [&] {
        auto err = cli->err();
        std::size_t n = 0;
        for (auto at = err.find(" closed: "); at != std::string::npos;
             at = err.find(" closed: ", at + 1))
            ++n;
        return n;
    };
    CHECK(co_await eventually([&] { return closes() == clients; }));
    // 40 held open at once fill --max-connections over all four loops: the 41st is refused.
    std::vector<tcp::socket> held;
    for (std::size_t i = 0; i < 40; ++i) {
        held.push_back(co_await connect_to(port));
        bool echoed = co_await round_trip(held.back(), 32000 + i, 100); // once, not in CHECK
        CHECK(echoed);
    }
    auto extra = co_await connect_to(port);
    auto end = co_await read_until_closed(extra);
    CHECK(end.closed);
    CHECK(end.bytes.empty());
    held.clear();
    cli->signal(SIGTERM);
    auto code = co_await exit_of(*cli, 30s);
    auto err = cli->err();
    INFO("stderr: " << err);
    CHECK(code == 0);
    // Each loop logs with its number; with 72 connections, each of the 4 saw some.
    for (int loop = 1; loop <= 4; ++loop)
        CHECK(err.find(fmt::format("loop {}: connection 1: A 127.0.0.1:", loop)) !=
              std::string::npos);
    CHECK(err.find("refused") != std::string::npos);
    auto out = cli->out();
    CHECK(out.find(fmt::format("\"connections_total\":{}", clients + 40)) != std::string::npos);
    CHECK(out.find(fmt::format("\"bytes_a_to_b\":{}", bytes + 40 * 100)) != std::string::npos);
    CHECK(out.find(fmt::format("\"bytes_b_to_a\":{}", bytes + 40 * 100)) != std::string::npos);
    CHECK(out.find("\"sockets_refused\":1,") != std::string::npos);
}
#endif

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

TEST_CASE("close() from a thread outside the pool ends every relaying pair", "[threads]") {
    asio::io_context io(pool_threads);
    run_on_pool(io, close_from_another_thread(io.get_executor()));
}

TEST_CASE("stats and counts read from other threads stay consistent while pairs churn",
          "[threads]") {
    asio::io_context io(pool_threads);
    run_on_pool(io, counters_while_pairs_churn(io.get_executor()));
}

TEST_CASE("next_connection, close and wait_closed work from another io_context's thread",
          "[threads]") {
    other_thread elsewhere; // outlives `io`: handlers on `io` may hold work on it
    consumer_report report;
    asio::io_context io(pool_threads);
    run_on_pool(io, connections_from_another_thread(io.get_executor(), elsewhere.io, report));
}

TEST_CASE("auth verifiers and transformers work for pairs racing on 4 threads", "[threads]") {
    asio::io_context io(pool_threads);
    run_on_pool(io, auth_and_transformers(io.get_executor()));
}

TEST_CASE("resets mid-transfer on 4 threads close their own pairs and no other", "[threads]") {
    asio::io_context io(pool_threads);
    run_on_pool(io, resets_mid_transfer(io.get_executor()));
}

TEST_CASE("max_connections, idle_timeout and drain() from another thread on 4 threads",
          "[threads]") {
    asio::io_context io(pool_threads);
    run_on_pool(io, limits_and_drain(io.get_executor()));
}

#ifdef SOCKET_CONNECTOR_CLI
TEST_CASE("socket-connector --threads 4 relays racing pairs byte for byte", "[threads][cli]") {
    asio::io_context io(pool_threads);
    run_on_pool(io, cli_on_threads(io.get_executor()));
}

TEST_CASE("socket-connector server-to-socket --multi --threads 4 proxies on a loop per thread "
          "with one set of limits",
          "[threads][cli]") {
    asio::io_context io(pool_threads);
    run_on_pool(io, cli_proxy_on_loops(io.get_executor()));
}
#endif
