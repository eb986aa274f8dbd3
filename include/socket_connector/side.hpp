#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <string_view>

#include <asio/any_io_executor.hpp>
#include <asio/basic_stream_socket.hpp>
#include <asio/ip/tcp.hpp>

#include <socket_connector/concepts.hpp>
#include <socket_connector/detail/socket_options.hpp>
#include <socket_connector/proxy_protocol.hpp>
#include <socket_connector/side_id.hpp>
#include <socket_connector/tls_session.hpp>

namespace socket_connector {

/// Where a side is in its life: authenticating, waiting in its queue, relaying, or gone.
enum class side_state { authenticating, pending, joined, closed };

constexpr std::string_view to_string(side_state state) noexcept {
    switch (state) {
    case side_state::authenticating:
        return "authenticating";
    case side_state::pending:
        return "pending";
    case side_state::joined:
        return "joined";
    case side_state::closed:
        return "closed";
    }
    return "?";
}

/// One socket of a connector: side A or side B, with its peer's address and state.
///
/// `transformer` rewrites the bytes leaving this side; it starts from the side options'
/// factory and may be replaced in the `before_joining` hook.
template <class Protocol, class Executor>
class basic_side {
public:
    using socket_type = asio::basic_stream_socket<Protocol, Executor>;

    basic_side(side_id id, socket_type socket, std::string remote)
        : socket_(std::move(socket))
        , remote_(std::move(remote))
        , id_(id) {}

    side_id id() const noexcept { return id_; }
    /// 'A' or 'B'.
    char name() const noexcept { return id_ == side_id::a ? 'A' : 'B'; }
    /// The peer, as `host:port` (or a Unix socket's path): the client its PROXY header named,
    /// when it began with one.
    const std::string& remote() const noexcept { return remote_; }
    /// The PROXY header the side's socket began with (a server side with `accept_proxy`), or
    /// null. Read it on the connector's strand, or once the side is joined.
    const proxy_header* proxied() const noexcept { return proxied_.get(); }
    side_state state() const noexcept { return state_.load(); }
    /// The side's TLS session (a side with `side_options::tls`, once its handshake began), or
    /// null. Its `info()` says what the handshake settled.
    tls_session* tls() const noexcept { return tls_.get(); }
    /// The socket. Only touch it from the connector's strand before the side is joined (in an
    /// auth verifier or `before_joining`); once joined, the connection owns it. It is
    /// non-blocking (and close-on-exec on Linux). Keep no duplicate of its descriptor (`dup()`,
    /// or a `fork()` without `exec`): the connector closes it without first taking it out of
    /// the event loop's epoll set, which a duplicate would keep it in.
    socket_type& socket() noexcept { return socket_; }

    /// Rewrites the bytes leaving this side; empty means they are relayed unchanged.
    any_transformer transformer;

private:
    template <class P, class E>
    friend class basic_connector;
    template <class P, class E>
    friend class basic_connection;

    void set_state(side_state state) noexcept { state_ = state; }
    /// On a connector's one port, the side its verifier said it is.
    void set_id(side_id id) noexcept { id_ = id; }
    /// Closes the socket and marks the side closed.
    void close() noexcept {
        state_ = side_state::closed;
        std::error_code ignored;
        socket_.close(ignored);
    }

    /// Takes the PROXY header the socket began with; one naming an address makes it the peer.
    void set_proxied(const proxy_header& header) {
        proxied_ = std::make_unique<proxy_header>(header);
        if (!header.local) remote_ = detail::to_string(header.source);
    }

    socket_type socket_;
    std::string remote_;
    std::unique_ptr<proxy_header> proxied_; // a pointer: most sides have none
    std::unique_ptr<tls_session> tls_;      // likewise
    side_id id_;                            // beside the state: no padding after either
    // Atomic: the connector's strand and the connection's strand both look at it.
    std::atomic<side_state> state_{side_state::authenticating};
};

/// A TCP side, the common case.
using side = basic_side<asio::ip::tcp, asio::any_io_executor>;

} // namespace socket_connector
