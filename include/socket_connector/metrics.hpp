#pragma once

// The counters of `stats` in the Prometheus text exposition format (version 0.0.4), so an
// application that embeds a connector can serve them from its own HTTP endpoint, as
// `socket-connector --metrics` does.

#include <cstdint>
#include <iterator>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include <socket_connector/stats.hpp>

namespace socket_connector {

/// The media type of `prometheus_text`'s output, for an HTTP `Content-Type` header.
inline constexpr std::string_view prometheus_content_type =
    "text/plain; version=0.0.4; charset=utf-8";

/// `s` as Prometheus metrics: one family per counter, each with its HELP and TYPE lines, counters
/// ending in `_total`, names starting with `prefix` and an underscore (`prefix` must be a valid
/// metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`). The remote addresses are not exported (a label per
/// address would be a series per client). Snapshots of several connectors serving one port can
/// be added first (`stats::add`).
inline std::string prometheus_text(const stats& s, std::string_view prefix = "socket_connector") {
    std::string out;
    out.reserve(2048);
    auto family = [&](std::string_view name, std::string_view type, std::string_view help) {
        fmt::format_to(std::back_inserter(out), "# HELP {}_{} {}\n# TYPE {}_{} {}\n", prefix, name,
                       help, prefix, name, type);
    };
    auto sample = [&](std::string_view name, std::uint64_t value, std::string_view labels = {}) {
        fmt::format_to(std::back_inserter(out), "{}_{}{} {}\n", prefix, name, labels, value);
    };
    family("connections_total", "counter", "Pairs formed (connections relayed) since start.");
    sample("connections_total", s.connections_total);
    family("connections_open", "gauge", "Pairs relaying now.");
    sample("connections_open", s.connections_open);
    family("bytes_total", "counter",
           "Bytes relayed, by direction: written to one side after they came from the other.");
    sample("bytes_total", s.bytes_a_to_b, "{direction=\"a_to_b\"}");
    sample("bytes_total", s.bytes_b_to_a, "{direction=\"b_to_a\"}");
    family("sockets_created_total", "counter",
           "Sockets kept: accepted, connected to or adopted (refused ones are not counted).");
    sample("sockets_created_total", s.sockets_created);
    family("sockets_accepted_total", "counter", "Sockets accepted and kept, by server side.");
    sample("sockets_accepted_total", s.sockets_accepted_a, "{side=\"a\"}");
    sample("sockets_accepted_total", s.sockets_accepted_b, "{side=\"b\"}");
    family("sockets_refused_total", "counter",
           "Sockets closed unrelayed: over a limit, a duplicate session side, or the wrong port.");
    sample("sockets_refused_total", s.sockets_refused);
    family("auth_failures_total", "counter",
           "Sides that failed or timed out their authentication, by side.");
    sample("auth_failures_total", s.auth_failures_a, "{side=\"a\"}");
    sample("auth_failures_total", s.auth_failures_b, "{side=\"b\"}");
    family("pending", "gauge", "Sides authenticated and waiting for a partner, by side.");
    sample("pending", s.pending_a, "{side=\"a\"}");
    sample("pending", s.pending_b, "{side=\"b\"}");
    family("sessions_paired_total", "counter", "Rendezvous sessions paired (pairs joined by key).");
    sample("sessions_paired_total", s.sessions_paired);
    family("sessions_open", "gauge", "Rendezvous sessions open: waiting for a side, or relaying.");
    sample("sessions_open", s.sessions_open);
    family("sessions_pending", "gauge", "Rendezvous sessions waiting for their second side.");
    sample("sessions_pending", s.sessions_pending);
    return out;
}

} // namespace socket_connector
