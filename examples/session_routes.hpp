#pragma once

// The owner of each rendezvous session when one connector per event loop serves the port
// (`socket-connector rendezvous --threads N`, N > 1): what the command gives the library's
// `options::route`. A model for an application that runs a rendezvous on several loops.

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <socket_connector/connector.hpp>

namespace example {

namespace sc = socket_connector;

/// Which loop's connector pairs each rendezvous session, when one connector per loop serves the
/// port: the one its key hashes to. The connectors are made one after the other and the first
/// accepts at once, so a side may be admitted before its session's connector exists: such a
/// session stays with the first connector, which the table remembers (only keys seen in those
/// first moments), so that its other side goes there too.
class session_routes {
public:
    explicit session_routes(std::size_t shards)
        : shards_(shards) {}

    /// Called once per connector, in loop order, as each is made.
    void add(const std::shared_ptr<sc::connector>& c) {
        std::lock_guard lock(mutex_);
        made_.push_back(c);
        if (made_.size() == shards_) complete_.store(true, std::memory_order_release);
    }

    /// The connector that owns `key`'s session; null (stay) when none is made yet, or when the
    /// owner has gone (the relay is closing).
    std::shared_ptr<sc::connector> route(std::string_view key) {
        if (complete_.load(std::memory_order_acquire)) return owner(key); // no more changes
        std::lock_guard lock(mutex_);
        if (made_.size() == shards_) return owner(key);
        early_.emplace(key);
        return made_.empty() ? nullptr : made_.front().lock();
    }

private:
    /// Once every connector is made: the first for a key seen before that, else the key's hash.
    std::shared_ptr<sc::connector> owner(std::string_view key) const {
        if (early_.contains(key)) return made_.front().lock();
        return made_[std::hash<std::string_view>{}(key) % shards_].lock();
    }

    const std::size_t shards_;
    std::mutex mutex_;
    std::atomic<bool> complete_{false};
    // Weak: every connector holds this table (through its route function), so owning them here
    // would keep them all alive for ever.
    std::vector<std::weak_ptr<sc::connector>> made_;
    std::set<std::string, std::less<>> early_; // std::less<>: looked up by string_view
};

} // namespace example
