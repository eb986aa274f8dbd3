// The session table (detail::pairing) keeps no copy of a key: its entries look at a waiting
// side's key, then at the string the connector moves it to when the pair joins. These tests
// drop every other copy of the key as soon as they can, so that a view left pointing at freed
// memory shows (under AddressSanitizer as a use after free, elsewhere as a lookup that fails).

#include <socket_connector/connector.hpp>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

namespace {

namespace sc = socket_connector;
using table = sc::detail::pairing<sc::side>;
using entry = table::entry;

/// A side that never touches its socket: the table reads only its id.
entry arrival_of(asio::io_context& io, sc::side_id id, std::string key) {
    auto a = std::make_shared<sc::detail::arrival<sc::side>>(
        std::make_shared<sc::side>(id, sc::side::socket_type(io), "127.0.0.1:1"));
    a->key = std::move(key);
    return a;
}

/// A key longer than a string keeps inside itself, built fresh each time: no two arrivals
/// share its bytes.
std::string key_of(int n) {
    return "session-key-long-enough-for-the-heap-" + std::to_string(n);
}

/// Side A and side B of key `n`, both added, the one of side `first` first (the entry looks at
/// its key); {a, b}.
std::pair<entry, entry> both_added(asio::io_context& io, table& t, int n, sc::side_id first) {
    auto a = arrival_of(io, sc::side_id::a, key_of(n));
    auto b = arrival_of(io, sc::side_id::b, key_of(n));
    auto& one = first == sc::side_id::a ? a : b;
    auto& other = first == sc::side_id::a ? b : a;
    REQUIRE(t.add(one) == sc::detail::add_result::added);
    REQUIRE(t.add(other) == sc::detail::add_result::added);
    return {a, b};
}

} // namespace

TEST_CASE("pairing: the entry of a key outlives the side whose key it looked at", "[pairing]") {
    asio::io_context io;
    table t;
    auto [a, b] = both_added(io, t, 1, sc::side_id::a); // the entry looks at a's key
    REQUIRE(t.remove(a)); // a leaves before the pair is taken: the entry now looks at b's
    a.reset();
    CHECK(t.has_session(key_of(1)));
    CHECK(t.sessions() == 1);
    CHECK(t.waits(b));
    CHECK(t.waiting(sc::side_id::a) == 0);
    CHECK(t.waiting(sc::side_id::b) == 1);
    CHECK(!t.next_pair()); // the ready pair left with a
    auto again = arrival_of(io, sc::side_id::a, key_of(1));
    REQUIRE(t.add(again) == sc::detail::add_result::added);
    auto p = t.next_pair();
    REQUIRE(p);
    CHECK(p->first == again);
    CHECK(p->second == b);
}

TEST_CASE("pairing: a joined key lives where move_key put it until release", "[pairing]") {
    asio::io_context io;
    table t;
    auto [a, b] = both_added(io, t, 2, sc::side_id::b); // the entry looks at b's key
    auto p = t.next_pair();
    REQUIRE(p);
    auto owner = std::make_unique<std::string>();
    t.move_key(p->first->key, *owner);
    CHECK(*owner == key_of(2));
    CHECK(p->first->key.empty());
    p.reset(); // both arrivals, and b's copy of the key, are gone
    a.reset();
    b.reset();
    CHECK(t.has_session(key_of(2)));
    auto late = arrival_of(io, sc::side_id::b, key_of(2));
    CHECK(t.add(late) == sc::detail::add_result::duplicate_joined);
    CHECK(!t.waits(late));
    t.release(*owner);
    CHECK(!t.has_session(key_of(2)));
    CHECK(t.sessions() == 0);
    owner.reset();
    CHECK(t.add(late) == sc::detail::add_result::added); // the key may be used again
    CHECK(t.waits(late));
}

TEST_CASE("pairing: many keys moved and released leave an empty table", "[pairing]") {
    asio::io_context io;
    table t;
    constexpr int sessions = 500;
    std::vector<std::unique_ptr<std::string>> owners;
    for (int i = 0; i < sessions; ++i) { // B first for the even ones, A first for the odd
        both_added(io, t, i, i % 2 ? sc::side_id::a : sc::side_id::b);
        auto p = t.next_pair();
        REQUIRE(p);
        REQUIRE(p->first->side->id() == sc::side_id::a);
        owners.push_back(std::make_unique<std::string>());
        t.move_key(p->first->key, *owners.back());
    }
    CHECK(t.sessions() == sessions);
    for (int i = 0; i < sessions; ++i)
        CHECK(t.has_session(key_of(i))); // every lookup reads the owners' strings
    for (auto& owner : owners)
        t.release(*owner);
    CHECK(t.sessions() == 0);
    CHECK(t.empty());
}

TEST_CASE("pairing: unkeyed sides pair first in first out and move_key leaves them be",
          "[pairing]") {
    asio::io_context io;
    table t;
    auto a1 = arrival_of(io, sc::side_id::a, "");
    auto a2 = arrival_of(io, sc::side_id::a, "");
    auto b1 = arrival_of(io, sc::side_id::b, "");
    REQUIRE(t.add(a1) == sc::detail::add_result::added);
    REQUIRE(t.add(a2) == sc::detail::add_result::added);
    CHECK(t.waits(a2));
    REQUIRE(t.add(b1) == sc::detail::add_result::added);
    auto p = t.next_pair();
    REQUIRE(p);
    CHECK(p->first == a1);
    CHECK(p->second == b1);
    std::string owner;
    t.move_key(p->first->key, owner);
    CHECK(owner.empty());
    CHECK(t.sessions() == 0);
    CHECK(!t.waits(a1));
    CHECK(t.waits(a2));
    CHECK(t.waiting(sc::side_id::a) == 1);
}
