// Soak: bounded random pair churn through two connectors (splice and copy) with random sizes,
// half-closes and resets in random directions. Every stream that completes is checked byte for
// byte, every stream cut by a reset is checked as a prefix; at the end nothing is open, nothing
// pending, and no descriptor is left behind.
//
// The PRNG seed is printed; SOAK_SEED=N reruns one exactly (up to timing).
#include <socket_connector/connector.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <asio/detached.hpp>

#include "support/net.hpp"
#include "support/process.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

using steady = std::chrono::steady_clock;

constexpr std::uint64_t default_seed = 20261122;
constexpr std::size_t max_pairs = 4000; // bounded in count...
constexpr auto churn_time = 20s;        // ...and in time (no new pair starts after this)
constexpr auto pair_limit = 20s;        // one pair's whole life
constexpr std::size_t workers_per_connector = 6;

enum class shape {
    both_at_once, // each side sends, then FIN, while reading to the other's FIN
    a_then_b,     // B reads A's stream to its FIN before it sends (A half-closed meanwhile)
    b_then_a,     // A reads B's stream to its FIN before it sends
    reset,        // `resetter` sends `reset_after` bytes of its stream, then resets
};

/// One pair's script, drawn from the PRNG.
struct plan {
    std::uint64_t id = 0;
    shape kind = shape::both_at_once;
    std::size_t a_size = 0;
    std::size_t b_size = 0;
    char resetter = 'A';
    std::size_t reset_after = 0;
    bool b_has_header = false; // B has learnt which pair it is in: the pair has formed
};

/// The bytes side `from` of pair `p` sends (A's stream follows an 8-byte header, the id).
std::vector<char> stream_of(const plan& p, char from) {
    return from == 'A' ? pattern(p.id * 2 + 1000, p.a_size) : pattern(p.id * 2 + 1001, p.b_size);
}

struct soak_state {
    std::mt19937_64 rng;
    std::map<std::uint64_t, std::shared_ptr<plan>> plans;
    std::uint64_t next_id = 0;
    steady::time_point stop_starting{};
    std::size_t workers_running = 0;
    // What happened.
    std::size_t pairs_done = 0;
    std::size_t streams_complete = 0; // checked whole, then EOF
    std::size_t streams_cut = 0;      // cut by a reset, checked as a prefix
    std::uint64_t bytes_checked = 0;
    std::size_t half_closes = 0;
    std::size_t resets_by_a = 0;
    std::size_t resets_by_b = 0;
    std::size_t failures = 0;
    std::size_t timeouts = 0;

    std::size_t random_size() {
        auto r = rng() % 100;
        if (r < 10) return 0;
        if (r < 50) return rng() % 4096;
        if (r < 90) return rng() % (128 * 1024);
        return rng() % (2u << 20);
    }

    std::shared_ptr<plan> make_plan() {
        auto p = std::make_shared<plan>();
        p->id = next_id++;
        auto r = rng() % 100;
        p->kind = r < 35   ? shape::both_at_once
                  : r < 50 ? shape::a_then_b
                  : r < 65 ? shape::b_then_a
                           : shape::reset;
        p->a_size = random_size();
        p->b_size = random_size();
        p->resetter = rng() % 2 == 0 ? 'A' : 'B';
        auto own = p->resetter == 'A' ? p->a_size : p->b_size;
        p->reset_after = static_cast<std::size_t>(rng() % (own + 1));
        plans[p->id] = p;
        return p;
    }

    void fail(const plan& p, char side, const std::string& what) {
        ++failures;
        FAIL_CHECK("pair " << p.id << " (shape " << static_cast<int>(p.kind) << ", A " << p.a_size
                           << " bytes, B " << p.b_size << " bytes, resetter " << p.resetter
                           << " after " << p.reset_after << "), side " << side << ": " << what);
    }

    /// A whole stream arrived: compare it.
    void expect_whole(const plan& p, char side, const std::vector<char>& got,
                      const std::vector<char>& sent) {
        if (got.size() != sent.size() || checksum(got) != checksum(sent)) {
            fail(p, side,
                 "received " + std::to_string(got.size()) + " bytes, not the " +
                     std::to_string(sent.size()) + " sent");
            return;
        }
        ++streams_complete;
        bytes_checked += got.size();
    }

    /// A stream cut by a reset: what arrived must be where it starts.
    void expect_prefix(const plan& p, char side, const std::vector<char>& got,
                       const std::vector<char>& sent) {
        if (got.size() > sent.size() || !std::equal(got.begin(), got.end(), sent.begin())) {
            fail(p, side,
                 "received " + std::to_string(got.size()) + " bytes that are not a prefix");
            return;
        }
        ++streams_cut;
        bytes_checked += got.size();
    }
};

/// Sends `data` then FIN, ignoring failure (the pair may be reset meanwhile).
asio::awaitable<void> send_tolerant(tcp::socket& socket, std::span<const char> data) {
    auto [ec, n] =
        co_await asio::async_write(socket, asio::buffer(data.data(), data.size()), use_tuple);
    if (!ec) socket.shutdown(tcp::socket::shutdown_send, ec);
}

/// Reads until the socket ends or fails; the bytes, and why it stopped.
asio::awaitable<void> read_all(tcp::socket& socket, std::vector<char>& got, std::error_code& why) {
    std::vector<char> buf(64 * 1024);
    for (;;) {
        auto [ec, n] = co_await socket.async_read_some(asio::buffer(buf), use_tuple);
        got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
        if (ec) {
            why = ec;
            co_return;
        }
    }
}

/// The side that does not reset: sends its stream, reads until the pair is closed, and checks
/// what it got is the start of the resetter's stream.
asio::awaitable<void> survive_reset(soak_state& st, const plan& p, char side, tcp::socket& socket,
                                    const std::vector<char>& mine,
                                    const std::vector<char>& theirs) {
    std::vector<char> got;
    std::error_code why;
    co_await (send_tolerant(socket, mine) && read_all(socket, got, why));
    if (why != asio::error::eof && why != asio::error::connection_reset)
        st.fail(p, side, "the pair ended with " + why.message());
    st.expect_prefix(p, side, got, theirs);
}

/// Waits until B has read the header (so the pair has formed), then sends part of the stream
/// and resets.
asio::awaitable<void> send_part_then_reset(const plan& p, tcp::socket& socket,
                                           const std::vector<char>& mine) {
    bool formed = co_await eventually([&] { return p.b_has_header; }, pair_limit);
    CHECK(formed);
    std::span<const char> part(mine.data(), p.reset_after);
    [[maybe_unused]] auto [ec, n] =
        co_await asio::async_write(socket, asio::buffer(part.data(), part.size()), use_tuple);
    reset(socket);
}

asio::awaitable<void> a_role(std::shared_ptr<soak_state> st, std::shared_ptr<plan> p,
                             unsigned short port) {
    try {
        auto a = co_await connect_to(port);
        std::array<char, 8> header{};
        std::memcpy(header.data(), &p->id, sizeof p->id);
        co_await asio::async_write(a, asio::buffer(header), asio::use_awaitable);
        auto mine = stream_of(*p, 'A');
        auto theirs = stream_of(*p, 'B');
        switch (p->kind) {
        case shape::both_at_once:
        case shape::a_then_b: {
            auto got = co_await send_and_receive(a, mine);
            st->expect_whole(*p, 'A', got, theirs);
            break;
        }
        case shape::b_then_a: {
            auto got = co_await read_to_eof(a);
            st->expect_whole(*p, 'A', got, theirs);
            co_await send_all(a, mine);
            break;
        }
        case shape::reset:
            if (p->resetter == 'A')
                co_await send_part_then_reset(*p, a, mine);
            else
                co_await survive_reset(*st, *p, 'A', a, mine, theirs);
            break;
        }
    } catch (const std::exception& e) {
        st->fail(*p, 'A', e.what());
    }
}

asio::awaitable<void> b_role(std::shared_ptr<soak_state> st, unsigned short port) {
    auto b = co_await connect_to(port);
    std::array<char, 8> header{};
    auto [ec, n] = co_await asio::async_read(b, asio::buffer(header), use_tuple);
    std::uint64_t id = 0;
    std::memcpy(&id, header.data(), sizeof id);
    auto found = st->plans.find(id);
    if (ec || found == st->plans.end()) {
        ++st->failures;
        FAIL_CHECK("a B got no valid header: " << ec.message());
        co_return;
    }
    auto p = found->second;
    p->b_has_header = true;
    try {
        auto mine = stream_of(*p, 'B');
        auto theirs = stream_of(*p, 'A');
        switch (p->kind) {
        case shape::both_at_once: {
            auto got = co_await send_and_receive(b, mine);
            st->expect_whole(*p, 'B', got, theirs);
            break;
        }
        case shape::a_then_b: {
            auto got = co_await read_to_eof(b);
            st->expect_whole(*p, 'B', got, theirs);
            co_await send_all(b, mine);
            ++st->half_closes;
            break;
        }
        case shape::b_then_a: {
            co_await send_all(b, mine);
            auto got = co_await read_to_eof(b);
            st->expect_whole(*p, 'B', got, theirs);
            ++st->half_closes;
            break;
        }
        case shape::reset:
            if (p->resetter == 'B') {
                co_await send_part_then_reset(*p, b, mine);
                ++st->resets_by_b;
            } else {
                co_await survive_reset(*st, *p, 'B', b, mine, theirs);
                ++st->resets_by_a;
            }
            break;
        }
    } catch (const std::exception& e) {
        st->fail(*p, 'B', e.what());
    }
}

/// Runs pairs one after another on connector `c` until the churn ends. Pairs form in arrival
/// order across workers, so a worker's B may serve another worker's A: B learns its pair from
/// A's header.
asio::awaitable<void> worker(std::shared_ptr<soak_state> st, std::shared_ptr<sc::connector> c) {
    auto ex = co_await asio::this_coro::executor;
    while (st->next_id < max_pairs && steady::now() < st->stop_starting) {
        auto p = st->make_plan();
        asio::steady_timer limit(ex, pair_limit);
        auto outcome =
            co_await ((a_role(st, p, c->side_a_port()) && b_role(st, c->side_b_port())) ||
                      limit.async_wait(use_tuple));
        if (outcome.index() == 1) {
            ++st->timeouts;
            FAIL_CHECK("pair " << p->id << " did not end within " << pair_limit.count() << " s");
            break;
        }
        ++st->pairs_done;
    }
    --st->workers_running;
}

asio::awaitable<void> soak(std::uint64_t seed, std::shared_ptr<soak_state> st) {
    auto ex = co_await asio::this_coro::executor;
    st->rng.seed(seed);
    std::vector<std::shared_ptr<sc::connector>> connectors;
    for (bool zero_copy : {true, false}) {
        sc::options o = loopback_options();
        o.zero_copy = zero_copy;
        o.timeout = sc::no_timeout;
        auto c = co_await sc::server_to_server(ex, std::move(o));
        connectors.push_back(c);
    }
    st->stop_starting = steady::now() + churn_time;
    for (auto& c : connectors)
        for (std::size_t w = 0; w < workers_per_connector; ++w) {
            ++st->workers_running;
            asio::co_spawn(ex, worker(st, c), asio::detached);
        }
    bool finished =
        co_await eventually([&] { return st->workers_running == 0; }, churn_time + pair_limit + 5s);
    REQUIRE(finished);
    for (auto& c : connectors) {
        bool quiet = co_await eventually(
            [&] { return c->connections() == 0 && c->pending_a() == 0 && c->pending_b() == 0; },
            5s);
        INFO("connections " << c->connections() << ", pending A " << c->pending_a()
                            << ", pending B " << c->pending_b());
        CHECK(quiet);
    }
    auto formed =
        connectors[0]->stats().connections_total + connectors[1]->stats().connections_total;
    CHECK(formed == st->next_id);
    for (auto& c : connectors) {
        c->close();
        co_await c->wait_closed();
    }
}

std::uint64_t soak_seed() {
    if (const char* text = std::getenv("SOAK_SEED")) return std::strtoull(text, nullptr, 10);
    return default_seed;
}

} // namespace

TEST_CASE("soak: random pair churn with half-closes and resets leaves nothing behind", "[soak]") {
    auto seed = soak_seed();
    raise_fd_limit(4096);
    auto st = std::make_shared<soak_state>();
    auto fds_before = fd_count();
    auto start = steady::now();
    // The relay runs on a thread of its own, so that everything it made (the io_context, the
    // per-thread pipe pool) is gone once the thread has ended.
    std::exception_ptr error;
    std::thread relay([&] {
        try {
            asio::io_context io;
            run(io, soak(seed, st), churn_time + pair_limit + 20s);
        } catch (...) {
            error = std::current_exception();
        }
    });
    relay.join();
    auto took = std::chrono::duration<double>(steady::now() - start).count();
    WARN("soak seed " << seed << " (SOAK_SEED=" << seed << " to rerun): " << st->pairs_done
                      << " pairs in " << took << " s; " << st->streams_complete
                      << " streams checked whole, " << st->streams_cut
                      << " cut by a reset and checked as a prefix, " << st->bytes_checked
                      << " bytes checked; " << st->half_closes << " half-close orders, "
                      << st->resets_by_a << " resets by A, " << st->resets_by_b << " by B; "
                      << st->failures << " failures, " << st->timeouts << " timeouts");
    if (error) std::rethrow_exception(error);
    CHECK(st->failures == 0);
    CHECK(st->timeouts == 0);
    CHECK(st->pairs_done == st->next_id);
    CHECK(st->pairs_done > 100);
    auto fds_after = fd_count();
    INFO("descriptors before " << fds_before << ", after " << fds_after);
    CHECK(fds_after == fds_before);
}
