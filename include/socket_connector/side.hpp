#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <asio/basic_stream_socket.hpp>

#include <socket_connector/concepts.hpp>

namespace socket_connector {

/// Where a side is in its life: authenticating, waiting in its queue, relaying, or gone.
enum class side_state { authenticating, pending, joined, closed };

inline std::string_view to_string(side_state state) {
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

    basic_side(char name, socket_type socket, std::string remote)
        : name_(name)
        , socket_(std::move(socket))
        , remote_(std::move(remote)) {}

    /// 'A' or 'B'.
    char name() const noexcept { return name_; }
    /// The peer, as `host:port` (or a Unix socket's path).
    const std::string& remote() const noexcept { return remote_; }
    side_state state() const noexcept { return state_.load(); }
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

    char name_;
    socket_type socket_;
    std::string remote_;
    // Atomic: the connector's strand and the connection's strand both look at it.
    std::atomic<side_state> state_{side_state::authenticating};
    /// Bytes that arrived before the side was joined (auth leftover first), relayed first.
    std::vector<char> early_;
    /// Early bytes that the connector sent to the partner already, while dialing it (counted
    /// as relayed when the connection starts).
    std::size_t early_sent_ = 0;
    /// The peer ended its stream before the side was joined (after sending `early_`).
    bool early_eof_ = false;
    /// Its first read would find nothing (it was connected a moment ago, or `early_` holds all
    /// it had sent), so the connection starts by waiting for it to be readable.
    bool drained_ = false;
};

} // namespace socket_connector
