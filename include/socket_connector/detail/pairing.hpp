#pragma once

// Pairing: the sides that are admitted and wait for a partner, and how they are matched.
//
// A side without a key is paired as the Dart package pairs: first in, first out, one queue per
// side. A side with a key (its auth verifier named one: a rendezvous session) is paired only
// with the other side of the same key; a key holds at most one A and one B, from the first
// arrival until its pair ends, so nothing can ever join two keys or a third socket into a
// session. The connector calls `add`, `remove`, `next_pair`, `move_key`, `release`, `waiting`,
// `sessions` and `take_all`.
//
// The table keeps no copy of a key: its entry looks at a string that lives as long as the
// entry does, a waiting side's `arrival::key` and then, once joined, the connection's (moved
// there with `move_key`). A relay holding thousands of sessions saves a string per session.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <deque>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <socket_connector/detail/relay_direction.hpp>
#include <socket_connector/side.hpp>

namespace socket_connector::detail {

template <class Side>
struct arrival;

/// When a pending side's `pending_timeout` runs out. The connector keeps these in arrival
/// order; a side that pairs or leaves takes its own out, so the list holds only sides that
/// wait.
template <class Side>
struct pending_deadline {
    std::chrono::steady_clock::time_point at;
    std::weak_ptr<arrival<Side>> who;
};

template <class Side>
using pending_deadlines = std::list<pending_deadline<Side>>;

/// A side on its way to a pair: the side, and what it sent before the pair formed.
template <class Side>
struct arrival {
    explicit arrival(std::shared_ptr<Side> s)
        : side(std::move(s)) {}
    std::shared_ptr<Side> side;
    handoff in;
    /// The pairing key its verifier named; empty: first in, first out.
    std::string key;
    /// A PROXY header is to be read from it before its verifier runs.
    bool proxy_header_due = false;
    /// Its entry in the connector's pending deadlines, while it has one.
    std::optional<typename pending_deadlines<Side>::iterator> deadline;
};

template <class Side>
using arrival_ptr = std::shared_ptr<arrival<Side>>;

/// Why `pairing::add` did not take a side.
enum class add_result {
    added,
    duplicate_pending, ///< its key already has a side of this kind waiting
    duplicate_joined,  ///< its key's pair is relaying
};

/// The waiting sides: unkeyed ones in two queues, keyed ones by key.
template <class Side>
class pairing {
public:
    using entry = arrival_ptr<Side>;

    /// Queues an admitted side, or says why it may not wait (the live one is left alone).
    add_result add(entry e) {
        const auto id = e->side->id();
        if (e->key.empty()) {
            queue(id).push_back(std::move(e));
            return add_result::added;
        }
        auto [it, fresh] = keyed_.try_emplace(e->key); // the first side's key, while it waits
        auto& session = it->second;
        if (!fresh && session.joined) return add_result::duplicate_joined;
        if (session.slot(id)) return add_result::duplicate_pending;
        session.slot(id) = e;
        ++keyed_waiting_[index(id)];
        if (session.a && session.b) ready_.emplace_back(it->first);
        return add_result::added;
    }

    /// Whether `e` is waiting here.
    bool waits(const entry& e) const {
        if (e->key.empty())
            return std::ranges::find(queue(e->side->id()), e) != queue(e->side->id()).end();
        auto it = keyed_.find(e->key);
        return it != keyed_.end() && !it->second.joined && it->second.slot(e->side->id()) == e;
    }

    /// Takes a waiting side out (it left, or was closed); false if it was not waiting.
    bool remove(const entry& e) {
        const auto id = e->side->id();
        if (e->key.empty()) return std::erase(queue(id), e) > 0;
        auto it = keyed_.find(e->key);
        if (it == keyed_.end() || it->second.joined || it->second.slot(id) != e) return false;
        it->second.slot(id).reset();
        --keyed_waiting_[index(id)];
        std::erase(ready_, e->key);
        auto& stays = id == side_id::a ? it->second.b : it->second.a;
        if (!stays) {
            keyed_.erase(it);
        } else { // the entry may be looking at the key of the side that leaves
            auto node = keyed_.extract(it);
            node.key() = stays->key;
            keyed_.insert(std::move(node));
        }
        return true;
    }

    /// The next pair to join, taken out of waiting, or nothing. A keyed pair's key stays taken
    /// until `release`; before either side of it is let go, its key must be moved to what
    /// outlives them (`move_key`).
    std::optional<std::pair<entry, entry>> next_pair() {
        while (!ready_.empty()) {
            auto key = std::move(ready_.front());
            ready_.pop_front();
            auto it = keyed_.find(key);
            if (it == keyed_.end() || it->second.joined || !it->second.a || !it->second.b) continue;
            auto& session = it->second;
            session.joined = true;
            --keyed_waiting_[0];
            --keyed_waiting_[1];
            return std::pair<entry, entry>{std::move(session.a), std::move(session.b)};
        }
        if (a_.empty() || b_.empty()) return std::nullopt;
        std::pair<entry, entry> p{std::move(a_.front()), std::move(b_.front())};
        a_.pop_front();
        b_.pop_front();
        return p;
    }

    /// Moves a joined pair's key from `from` (one of its sides' `arrival::key`) to `to`, which
    /// the table then looks at until `release(to)`.
    void move_key(std::string& from, std::string& to) {
        auto node = keyed_.extract(std::string_view(from)); // found while `from` still holds it
        to = std::move(from);
        if (node.empty()) return;
        node.key() = to;
        keyed_.insert(std::move(node));
    }

    /// A keyed pair has ended: its key may be used again.
    void release(const std::string& key) {
        if (key.empty()) return;
        auto it = keyed_.find(key);
        if (it != keyed_.end() && it->second.joined) keyed_.erase(it);
    }

    /// Whether `key` has a side waiting or a pair relaying.
    bool has_session(const std::string& key) const { return keyed_.contains(key); }
    /// Keys with a side waiting or a pair relaying.
    std::size_t sessions() const noexcept { return keyed_.size(); }
    /// Sessions waiting for their second side (or, both there, to be joined).
    std::size_t pending_sessions() const noexcept {
        const auto sides = keyed_waiting_[0] + keyed_waiting_[1];
        return sides > ready_.size() ? sides - ready_.size() : 0; // a ready session has two
    }

    /// Sides of `side` waiting for a partner.
    std::size_t waiting(side_id side) const noexcept {
        return queue(side).size() + keyed_waiting_[index(side)];
    }
    bool empty() const noexcept { return waiting(side_id::a) == 0 && waiting(side_id::b) == 0; }

    /// Every waiting side, taken out (to be closed). Keys of relaying pairs stay taken.
    std::vector<entry> take_all() {
        std::vector<entry> all(a_.begin(), a_.end());
        all.insert(all.end(), b_.begin(), b_.end());
        a_.clear();
        b_.clear();
        for (auto it = keyed_.begin(); it != keyed_.end();) {
            auto& session = it->second;
            if (session.joined) {
                ++it;
                continue;
            }
            for (auto* slot : {&session.a, &session.b})
                if (*slot) all.push_back(std::move(*slot));
            it = keyed_.erase(it);
        }
        keyed_waiting_[0] = keyed_waiting_[1] = 0;
        ready_.clear();
        return all;
    }

private:
    struct keyed_session {
        entry a;
        entry b;
        bool joined = false;
        entry& slot(side_id id) noexcept { return id == side_id::a ? a : b; }
        const entry& slot(side_id id) const noexcept { return id == side_id::a ? a : b; }
    };

    static constexpr std::size_t index(side_id id) noexcept { return id == side_id::a ? 0 : 1; }
    std::deque<entry>& queue(side_id side) noexcept { return side == side_id::a ? a_ : b_; }
    const std::deque<entry>& queue(side_id side) const noexcept {
        return side == side_id::a ? a_ : b_;
    }

    std::deque<entry> a_;
    std::deque<entry> b_;
    // Keys are views: see the top of the file.
    std::unordered_map<std::string_view, keyed_session> keyed_;
    std::size_t keyed_waiting_[2] = {0, 0};
    std::deque<std::string> ready_; // keys with both sides waiting, in the order they completed
};

} // namespace socket_connector::detail
