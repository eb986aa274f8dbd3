#pragma once

// Pairing: the sides that are admitted and wait for a partner, and how they are matched.
//
// The policy today is the Dart package's: first in, first out, one queue per side. A keyed
// policy (sessions paired by a key an auth verifier read, one A and one B per key) goes here as
// a second class with the same members; the connector only calls `add`, `remove`, `next_pair`,
// `waiting` and `take_all`.

#include <cstddef>
#include <deque>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include <socket_connector/detail/relay_direction.hpp>
#include <socket_connector/side.hpp>

namespace socket_connector::detail {

/// A side on its way to a pair: the side, and what it sent before the pair formed.
template <class Side>
struct arrival {
    explicit arrival(std::shared_ptr<Side> s)
        : side(std::move(s)) {}
    std::shared_ptr<Side> side;
    handoff in;
};

template <class Side>
using arrival_ptr = std::shared_ptr<arrival<Side>>;

/// First in, first out: the oldest waiting A is paired with the oldest waiting B.
template <class Side>
class fifo_pairing {
public:
    using entry = arrival_ptr<Side>;

    /// Queues an admitted side.
    void add(entry e) { queue(e->side->id()).push_back(std::move(e)); }

    /// Takes a side out of its queue (it left, or was closed); false if it was not there.
    bool remove(const entry& e) { return std::erase(queue(e->side->id()), e) > 0; }

    /// The next pair to join, taken out of the queues, or nothing.
    std::optional<std::pair<entry, entry>> next_pair() {
        if (a_.empty() || b_.empty()) return std::nullopt;
        std::pair<entry, entry> p{std::move(a_.front()), std::move(b_.front())};
        a_.pop_front();
        b_.pop_front();
        return p;
    }

    /// Sides of `side` waiting for a partner.
    std::size_t waiting(side_id side) const noexcept {
        return side == side_id::a ? a_.size() : b_.size();
    }
    bool empty() const noexcept { return a_.empty() && b_.empty(); }

    /// Every waiting side, taken out of the queues (to be closed).
    std::vector<entry> take_all() {
        std::vector<entry> all(a_.begin(), a_.end());
        all.insert(all.end(), b_.begin(), b_.end());
        a_.clear();
        b_.clear();
        return all;
    }

private:
    std::deque<entry>& queue(side_id side) noexcept { return side == side_id::a ? a_ : b_; }

    std::deque<entry> a_;
    std::deque<entry> b_;
};

} // namespace socket_connector::detail
