#pragma once

#include <chrono>

namespace socket_connector {

/// TCP keep-alive settings applied to every socket a connector accepts or creates.
///
/// The defaults match the Dart package: probe after 60 s of silence, then every 10 s, and give up
/// after 5 unanswered probes. `keep_alive::disabled()` turns keep-alive off. Where the platform has
/// no per-socket setting for a field (for example the probe count on Windows), the system default
/// is used for that field. Keep-alive applies to TCP sides only.
struct keep_alive {
    bool enabled = true;
    std::chrono::seconds idle{60};
    std::chrono::seconds interval{10};
    int count = 5;

    /// Keep-alive off: SO_KEEPALIVE is cleared on the sockets.
    static keep_alive disabled() { return keep_alive{.enabled = false}; }

    friend bool operator==(const keep_alive&, const keep_alive&) = default;
};

} // namespace socket_connector
