#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace socket_connector {

/// A snapshot of what a connector has done so far.
struct stats {
    /// Every socket the connector accepted (and kept) or opened, whether or not it was ever
    /// paired. Sockets refused by a limit are counted in `sockets_refused` instead.
    std::uint64_t sockets_created = 0;
    /// Bytes written to side B that came from side A (after A's transformer), and the reverse.
    std::uint64_t bytes_a_to_b = 0;
    std::uint64_t bytes_b_to_a = 0;
    /// Pairs formed so far, and pairs still relaying.
    std::uint64_t connections_total = 0;
    std::uint64_t connections_open = 0;
    /// Of `connections_total`, the pairs joined by key (rendezvous sessions).
    std::uint64_t sessions_paired = 0;
    /// Sides that failed or timed out their authentication.
    std::uint64_t auth_failures = 0;
    /// Sockets closed without being relayed because a limit (`max_pending`, `max_connections`,
    /// `max_sessions`) was hit, or because their key already had its side (a duplicate) or they
    /// came to the wrong side's port. Failed authentication counts in `auth_failures` instead.
    std::uint64_t sockets_refused = 0;
    /// The distinct remote addresses seen (without ports), in the order first seen; at most the
    /// first 1,024.
    std::vector<std::string> remote_addresses;

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
            "{{\"sockets_created\":{},\"bytes_a_to_b\":{},\"bytes_b_to_a\":{},"
            "\"connections_total\":{},\"connections_open\":{},\"sessions_paired\":{},"
            "\"auth_failures\":{},\"sockets_refused\":{},\"remote_addresses\":[{}]}}",
            sockets_created, bytes_a_to_b, bytes_b_to_a, connections_total, connections_open,
            sessions_paired, auth_failures, sockets_refused, addresses);
    }
};

} // namespace socket_connector
