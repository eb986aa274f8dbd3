#pragma once

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

#include <asio/any_io_executor.hpp>
#include <asio/basic_stream_socket.hpp>
#include <asio/ip/tcp.hpp>

#include <socket_connector/concepts.hpp>
#include <socket_connector/keep_alive.hpp>
#include <socket_connector/logging.hpp>
#include <socket_connector/proxy_protocol.hpp>
#include <socket_connector/tls_session.hpp>

namespace socket_connector {

template <class Protocol, class Executor>
class basic_connection;

/// A grace `timeout` that never expires: the connector serves until `close()`.
inline constexpr std::chrono::milliseconds no_timeout = std::chrono::milliseconds::max();

/// The port of a side that names a `host`: a number (`.port = 8050`) or what the resolver takes
/// (`.port = "8050"`, `.port = "https"`). Empty: port 0 (a server side lets the OS choose).
class port_or_service {
public:
    port_or_service() = default;
    port_or_service(const char* text)
        : text_(text ? text : "") {}
    port_or_service(std::string text)
        : text_(std::move(text)) {}
    port_or_service(std::string_view text)
        : text_(text) {}
    /// A port number; throws `std::out_of_range` unless it is 0 to 65535.
    template <std::integral Number>
    requires(!std::same_as<Number, bool> && !std::same_as<Number, char>)
        port_or_service(Number port) {
        bool negative = false;
        if constexpr (std::is_signed_v<Number>) negative = port < 0;
        if (negative || static_cast<unsigned long long>(port) > 65535)
            throw std::out_of_range("a port must be 0 to 65535 (got " + std::to_string(port) + ")");
        text_ = std::to_string(port);
    }

    const std::string& str() const noexcept { return text_; }
    bool empty() const noexcept { return text_.empty(); }
    void clear() noexcept { text_.clear(); }
    friend bool operator==(const port_or_service&, const port_or_service&) = default;

private:
    std::string text_;
};

/// How one side of a connector is reached, checked and transformed.
///
/// A server side binds `endpoint` (default: all IPv4 interfaces, a port the OS chooses); a
/// socket side connects to it. With IP protocols, a non-empty `host` (and `port`, a number or a
/// service name) is resolved instead: the first address is bound, or each address is tried in
/// turn when connecting.
///
/// Fields in the order designated initialisers must follow: `endpoint`, `host`, `port`, `auth`,
/// `transform`, `keepalive`, `reuse_port`, `backlog`, `accept_proxy`, `send_proxy`, `tls`.
template <class Protocol, class Executor = asio::any_io_executor>
struct basic_side_options {
    using socket_type = asio::basic_stream_socket<Protocol, Executor>;

    typename Protocol::endpoint endpoint{};
    std::string host{};
    port_or_service port{};
    /// Runs on each socket of this side (accepted or dialed) before it may be paired; empty: all
    /// are accepted.
    any_auth_verifier<socket_type> auth{};
    /// Makes the transformer for the bytes leaving this side, once per connection.
    transformer_factory transform{};
    /// TCP keep-alive for this side's sockets.
    socket_connector::keep_alive keepalive{};
    /// A server side: bind with SO_REUSEPORT (Linux, the BSDs), so that several connectors,
    /// each on its own thread, can listen on one address; the kernel spreads new connections
    /// among them. Every listener of the address must set it.
    bool reuse_port = false;
    /// A server side: the listen backlog, how many connections the kernel queues before they
    /// are accepted (Dart's `backlog`). 0: the system's maximum (`SOMAXCONN`).
    int backlog = 0;
    /// A server side: each socket it accepts must begin with a PROXY protocol header (v1 or v2,
    /// HAProxy's specification), read before its auth verifier and within `auth_timeout`. The
    /// client the header names becomes the side's peer: in logs, `remote()`, the stats'
    /// addresses, a verifier's `auth_context` and a PROXY header sent for it. A missing,
    /// malformed or late header closes the socket with a logged reason (a refusal); nothing of
    /// it is relayed. Only for connections from a proxy that sends one: anybody who can reach
    /// the port can name any address. Sockets given to `adopt` have theirs read too, unless
    /// they come with a verdict (the application read their first bytes itself).
    bool accept_proxy = false;
    /// A socket side: a PROXY header to send before any other byte (v1 text or v2 binary, as
    /// HAProxy's `send-proxy` and `send-proxy-v2`), naming the partner's peer as the source (as
    /// the relay saw it, or as the partner's own PROXY header said) and the address it
    /// connected to as the destination (a partner the relay dialed: its target, and the
    /// relay's own address). A proxy (`multi`) sends it as soon as B is connected, before B's
    /// verifier; a side dialed up front, when its pair forms, before `before_joining` (so it
    /// may have no verifier). A partner with no TCP addresses (a Unix socket): v1 `UNKNOWN`,
    /// v2 LOCAL.
    proxy_version send_proxy = proxy_version::none;
    /// TLS on this side (<socket_connector/tls.hpp>): `tls_server(...)` on a server side, which
    /// then accepts only TLS, `tls_client(...)` on a socket side, which connects with TLS and
    /// verifies the server. The handshake runs after the PROXY header (which travels in the
    /// clear) and before the verifier, within `auth_timeout`, and counts as pending; a failed
    /// one closes the socket with a logged reason (a refusal). Verifiers and transformers see
    /// the plaintext and byte counts are plaintext bytes; the peer's close_notify is an end of
    /// stream, passed on as a half-close, and the end of the other way is passed on as
    /// close_notify. A TLS direction copies (no splice). The side's verifier must work over
    /// TLS (`tls_auth_verifier`; the library's do).
    std::shared_ptr<const tls_endpoint> tls{};
};

/// Counts that several connectors add up, so that their `max_connections` and `max_pending`
/// hold for all of them together: give each connector the same object (say, one connector per
/// thread, all listening on one address with `reuse_port`). Each connector adds its own
/// counts while it runs and takes them back when it closes. The limits are checked as each
/// socket is accepted, so connectors accepting at the same instant may pass a limit by one
/// each.
class shared_limits {
public:
    /// Live connections of all the connectors sharing this object.
    std::size_t connections() const noexcept { return connections_.load(); }
    /// Side A / side B sockets authenticating or waiting for a partner, over all of them.
    std::size_t pending_a() const noexcept { return pending_a_.load(); }
    std::size_t pending_b() const noexcept { return pending_b_.load(); }
    /// Sessions (keys) waiting for their second side or relaying, over all of them.
    std::size_t sessions() const noexcept { return sessions_.load(); }

private:
    template <class P, class E>
    friend class basic_connector;

    std::atomic<std::size_t> connections_{0};
    std::atomic<std::size_t> pending_a_{0};
    std::atomic<std::size_t> pending_b_{0};
    std::atomic<std::size_t> sessions_{0};
};

template <class Protocol, class Executor>
class basic_connector;

/// Everything a connector is told when it is made; see the four factories in connector.hpp.
///
/// Fields in the order designated initialisers must follow: `a`, `b`, `verbose`, `log_traffic`,
/// `zero_copy`, `logger`, `timeout`, `auth_timeout`, `connect_timeout`, `max_pending`,
/// `max_connections`, `limit_group`, `idle_timeout`, `io_run_by_one_thread`, `multi`,
/// `before_joining`, `pending_timeout`, `max_sessions`, `route`. Hand a factory a named variable
/// (or a function's result): g++ 12
/// miscompiles a braced temporary in a `co_await` (see detail/options_argument.hpp).
template <class Protocol, class Executor = asio::any_io_executor>
struct basic_options {
    basic_side_options<Protocol, Executor> a{};
    basic_side_options<Protocol, Executor> b{};
    /// Log connection events (accepted, authenticated, paired, closed) at `info` level.
    bool verbose = false;
    /// Log every chunk relayed, as printable ASCII, at `traffic` level.
    bool log_traffic = false;
    /// Linux: relay a direction that has no transformer (and no traffic log) with splice(2)
    /// through a pipe, so its bytes never enter user space. Off: always copy through a buffer.
    bool zero_copy = true;
    /// Where log lines go; empty: timestamped lines on stderr.
    socket_connector::logger logger{};
    /// Grace period: when it has passed with no connection open, or when the last connection
    /// ends after it has passed, the connector closes. `no_timeout`: only `close()` closes it.
    std::chrono::milliseconds timeout = std::chrono::seconds(30);
    /// How long an auth verifier may take before its socket is closed.
    std::chrono::milliseconds auth_timeout = std::chrono::seconds(5);
    /// How long an outbound connect may take (each attempt, over all resolved addresses).
    std::chrono::milliseconds connect_timeout = std::chrono::seconds(10);
    /// Each side keeps at most this many sockets that are authenticating or waiting for a
    /// partner; a new socket past it is closed at once with a logged reason. 0: no limit.
    std::size_t max_pending = 4096;
    /// At most this many live connections (pairs); while that many are open, a newly accepted
    /// socket is closed at once with a logged reason. A proxy (`server_to_socket` with `multi`)
    /// counts its As still authenticating or being dialed a B as connections too (with
    /// `limit_group`, the group's pending As). 0: no limit.
    std::size_t max_connections = 0;
    /// When set, `max_connections` and `max_pending` count the connections and sockets of every
    /// connector given the same object, not only this one's.
    std::shared_ptr<shared_limits> limit_group{};
    /// A connection that relays no byte either way for this long is closed. `no_timeout`: never.
    std::chrono::milliseconds idle_timeout = no_timeout;
    /// A promise: no thread but one runs the executor's io_context (an event loop per thread,
    /// as the command's proxy runs). The connector and its connections then run their handlers
    /// on the executor itself rather than on strands, which saves a lock and a trip through a
    /// queue for every completion, and may use the receive hint (detail/receive_hint.hpp) if the
    /// program turned it on. The public members stay safe to call from any thread (they are
    /// posted to that one thread). Leave it off if more than one thread may run the io_context.
    bool io_run_by_one_thread = false;
    /// server_to_socket: make one outbound B connection per accepted A (a proxy). Without it,
    /// one B is connected up front, the first A is paired with it and no more A is accepted.
    bool multi = false;
    /// Called on the connector's strand when a pair has formed, before any byte is relayed; may
    /// replace the sides' transformers. An exception closes the pair.
    std::function<void(basic_connection<Protocol, Executor>&)> before_joining{};
    /// A side that has been admitted and waits for its partner for this long is closed (its
    /// session, if it has a key, is forgotten). `no_timeout`: it waits until the connector closes.
    std::chrono::milliseconds pending_timeout = no_timeout;
    /// At most this many sessions (keys named by auth verifiers) at a time, waiting for their
    /// second side or relaying; a side that would open one more is closed with a logged reason
    /// (the second side of a waiting session is always let in). 0: no limit.
    std::size_t max_sessions = 0;
    /// One port served by several connectors, one per event loop (each listening on it with
    /// `reuse_port`; a `limit_group` makes their limits one): returns the connector that pairs
    /// the sides of session `key`, the same one for every side of a key. A side admitted here
    /// with a key another connector owns moves there with its verdict and the bytes it sent
    /// after its message (its socket is registered with that connector's event loop), as
    /// `adopt` would take it; it is counted where it was accepted, and keeps the socket options
    /// it was given there (the connectors of one port are meant to share their side options).
    /// Null, or this connector: it stays. Called on this connector's strand; only server
    /// sides, only keyed ones.
    std::function<std::shared_ptr<basic_connector<Protocol, Executor>>(std::string_view key)>
        route{};
};

/// Options for a TCP connector, the common case.
using side_options = basic_side_options<asio::ip::tcp>;
using options = basic_options<asio::ip::tcp>;

} // namespace socket_connector
