// The counters read from threads that are not the connector's (stats(), its JSON, the queue
// lengths, connections()) stay consistent while pairs form, relay and fail authentication on
// 4 threads. (See support/threads.hpp for how the tests use the pool.)
#include <socket_connector/stats.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include <socket_connector/connector.hpp>

#include "support/net.hpp"
#include "support/threads.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

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

} // namespace

TEST_CASE("stats and counts read from other threads stay consistent while pairs churn",
          "[threads]") {
    asio::io_context io(pool_threads);
    run_on_pool(io, counters_while_pairs_churn(io.get_executor()));
}
