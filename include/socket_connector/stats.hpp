#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include <fmt/format.h>

namespace socket_connector {

/// A snapshot of what a connector has done so far.
struct stats {
    /// Every socket the connector accepted (and kept) or opened, whether or not it was ever
    /// paired. Sockets refused by a limit are counted in `sockets_refused` instead.
    std::uint64_t sockets_created = 0;
    /// Of `sockets_created`, those side A's / side B's server accepted (on one port, whichever
    /// side each turned out to be, every one on A). A socket moved to its session's connector
    /// (`options::route`) is counted where it was accepted.
    std::uint64_t sockets_accepted_a = 0;
    std::uint64_t sockets_accepted_b = 0;
    /// Bytes written to side B that came from side A (after A's transformer), and the reverse.
    std::uint64_t bytes_a_to_b = 0;
    std::uint64_t bytes_b_to_a = 0;
    /// Pairs formed so far, and pairs still relaying.
    std::uint64_t connections_total = 0;
    std::uint64_t connections_open = 0;
    /// Of `connections_total`, the pairs joined by key (rendezvous sessions).
    std::uint64_t sessions_paired = 0;
    /// Sides that failed or timed out their authentication, and of those the ones on side A /
    /// side B (on one port, a socket that fails before its verifier names its side counts on A).
    std::uint64_t auth_failures = 0;
    std::uint64_t auth_failures_a = 0;
    std::uint64_t auth_failures_b = 0;
    /// Sockets closed without being relayed because a limit (`max_pending`, `max_connections`,
    /// `max_sessions`) was hit, or because their key already had its side (a duplicate) or they
    /// came to the wrong side's port. Failed authentication counts in `auth_failures` instead.
    std::uint64_t sockets_refused = 0;
    /// Now: sides authenticated and waiting for a partner, on side A / side B.
    std::uint64_t pending_a = 0;
    std::uint64_t pending_b = 0;
    /// Now: sessions (keys named by auth verifiers) open, waiting or relaying, and of those the
    /// ones still waiting for their second side.
    std::uint64_t sessions_open = 0;
    std::uint64_t sessions_pending = 0;
    /// The distinct remote addresses seen (without ports), in the order first seen; at most the
    /// first 1,024.
    std::vector<std::string> remote_addresses;

    /// Adds another connector's snapshot (several connectors serving one port): every count
    /// is summed; the addresses not listed yet are appended, up to `address_limit` in all.
    stats& add(const stats& o, std::size_t address_limit = 1024) {
        sockets_created += o.sockets_created;
        sockets_accepted_a += o.sockets_accepted_a;
        sockets_accepted_b += o.sockets_accepted_b;
        bytes_a_to_b += o.bytes_a_to_b;
        bytes_b_to_a += o.bytes_b_to_a;
        connections_total += o.connections_total;
        connections_open += o.connections_open;
        sessions_paired += o.sessions_paired;
        auth_failures += o.auth_failures;
        auth_failures_a += o.auth_failures_a;
        auth_failures_b += o.auth_failures_b;
        sockets_refused += o.sockets_refused;
        pending_a += o.pending_a;
        pending_b += o.pending_b;
        sessions_open += o.sessions_open;
        sessions_pending += o.sessions_pending;
        if (o.remote_addresses.empty()) return *this;
        std::unordered_set<std::string_view> listed(remote_addresses.begin(),
                                                    remote_addresses.end());
        std::vector<std::string> added;
        for (const auto& address : o.remote_addresses) {
            if (remote_addresses.size() + added.size() >= address_limit) break;
            if (listed.insert(address).second) added.push_back(address);
        }
        remote_addresses.insert(remote_addresses.end(), std::make_move_iterator(added.begin()),
                                std::make_move_iterator(added.end()));
        return *this;
    }

    /// The snapshot as one line of JSON.
    std::string to_json() const {
        std::string addresses;
        for (const auto& address : remote_addresses) {
            if (!addresses.empty()) addresses += ',';
            addresses += '"';
            for (char c : address) {
                if (c == '"' || c == '\\') addresses += '\\';
                if (static_cast<unsigned char>(c) < 0x20) {
                    addresses += fmt::format("\\u{:04x}", static_cast<unsigned char>(c));
                    continue;
                }
                addresses += c;
            }
            addresses += '"';
        }
        return fmt::format(
            "{{\"sockets_created\":{},\"sockets_accepted_a\":{},\"sockets_accepted_b\":{},"
            "\"bytes_a_to_b\":{},\"bytes_b_to_a\":{},\"connections_total\":{},"
            "\"connections_open\":{},\"sessions_paired\":{},\"sessions_open\":{},"
            "\"sessions_pending\":{},\"auth_failures\":{},\"auth_failures_a\":{},"
            "\"auth_failures_b\":{},\"sockets_refused\":{},\"pending_a\":{},\"pending_b\":{},"
            "\"remote_addresses\":[{}]}}",
            sockets_created, sockets_accepted_a, sockets_accepted_b, bytes_a_to_b, bytes_b_to_a,
            connections_total, connections_open, sessions_paired, sessions_open, sessions_pending,
            auth_failures, auth_failures_a, auth_failures_b, sockets_refused, pending_a, pending_b,
            addresses);
    }
};

} // namespace socket_connector
