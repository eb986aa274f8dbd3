#pragma once

// Sockets that are non-blocking and close-on-exec from the system call that makes them.
//
// Asio accepts with accept() and opens with socket(), and then needs an ioctl(FIONBIO) for
// each socket, on its first asynchronous operation or on `non_blocking(true)`. It also marks
// every socket it is given a descriptor for (and so every accepted socket) as a possible
// duplicate, which costs an EPOLL_CTL_DEL when the socket is closed. On Linux this header makes
// the relay's own sockets with accept4() and socket() and SOCK_NONBLOCK | SOCK_CLOEXEC, and
// records in the socket what is true of it: non-blocking already, not a duplicate. That saves
// three system calls per proxied connection (one ioctl for A, one for B, the EPOLL_CTL_DEL of
// A), a sixth of what the relay makes for a short request.
//
// The record is Asio's own per-socket state (`socket_ops::state_type`), reached through the
// protected `impl_` of `basic_socket`; this builds only against Asio's reactive socket
// service (epoll, and the other reactors), which is what every Linux build uses unless it
// asks for io_uring. Elsewhere, or with SOCKET_CONNECTOR_NO_NATIVE_SOCKETS defined, the
// portable calls are used.
//
// A socket made here, like any socket Asio opens itself, must not be duplicated (dup(), or a
// fork() that does not exec) while the relay uses it: closing it would not take it out of the
// epoll set while a duplicate keeps it open.

#include <cerrno>
#include <system_error>

#include <asio/detail/config.hpp>
#include <asio/error.hpp>

#if defined(__linux__) && !defined(ASIO_WINDOWS_RUNTIME) && !defined(ASIO_HAS_IOCP) &&             \
    !defined(ASIO_HAS_IO_URING_AS_DEFAULT) && !defined(SOCKET_CONNECTOR_NO_NATIVE_SOCKETS)
#define SOCKET_CONNECTOR_NATIVE_SOCKETS 1
#include <asio/detail/reactor.hpp>
#include <asio/detail/socket_ops.hpp>
#include <asio/version.hpp>
#include <sys/socket.h>
#include <unistd.h>
#endif

namespace socket_connector::detail {

#if defined(SOCKET_CONNECTOR_NATIVE_SOCKETS)
inline constexpr bool native_sockets = true;

/// Reaches the state Asio keeps for a socket (its `impl_` is protected in `basic_socket`).
template <class Socket>
struct socket_state_access : Socket {
    static auto& state(Socket& socket) {
        return (socket.*(&socket_state_access::impl_)).get_implementation().state_;
    }
    static auto reactor_data(Socket& socket) {
        return (socket.*(&socket_state_access::impl_)).get_implementation().reactor_data_;
    }
};

/// Takes `fd`, made non-blocking and close-on-exec by this process a moment ago, into `socket`:
/// registered with the event loop, and recorded as non-blocking (Asio sets nothing on its first
/// operation) and as no duplicate (closing it needs no EPOLL_CTL_DEL). Closes `fd` on failure.
template <class Socket, class Protocol>
void adopt_descriptor(Socket& socket, const Protocol& protocol, int fd, std::error_code& ec) {
    socket.assign(protocol, fd, ec);
    if (ec) {
        ::close(fd);
        return;
    }
    namespace ops = asio::detail::socket_ops;
    auto& state = socket_state_access<Socket>::state(socket);
    state = static_cast<ops::state_type>(
        (state | ops::user_set_non_blocking | ops::internal_non_blocking) & ~ops::possible_dup);
}
#else
inline constexpr bool native_sockets = false;
#endif

// The receive hint. Asio's epoll reactor, asked for a receive, first tries the receive and only
// if that would block waits for the next event; it skips the try only after a receive that
// found the end of stream. A relay direction whose own read of its source would just have
// blocked knows that the try would fail too: a system call for nothing. `mark_drained` tells the
// reactor to skip it, through Asio's flag for this (`descriptor_state::try_speculative_`, private;
// reached by the standard's rule that an explicit instantiation does not check access). Built only
// against the Asio it was checked with (1.22) and its epoll reactor;
// SOCKET_CONNECTOR_NO_RECEIVE_HINT turns it off.
//
// When it is safe: Asio's epoll is edge-triggered, so bytes or an end of stream that arrive
// after the read that would block raise a new event. If the reactor takes that event while no
// receive is queued, it sets the flag again (and the receive tries); if it takes it later, the
// event completes the queued receive. Either way nothing is lost, provided the flag is cleared
// right after that read, in the handler that made it, before the reactor can take any event of
// the socket - and only on an io_context that one thread runs, since another thread could take
// an event in between (and the flag is not ours to lock).
//
// Only a read that would block shows the socket empty. A read that brought less than it asked
// for does not: the end of stream may have come in the same segment as its bytes (a peer that
// writes and closes at once, or sends with MSG_MORE and shuts down, as the relay itself does),
// the next read returns it, and its event was the one that brought the bytes. Marking there
// lost that end of stream (the relay waited for an event that had come), until 2026-12-05.
// The one exception is a socket registered with epoll in the same handler, whose entry no
// epoll_wait has taken yet: see the connector's `read_sent`.
#if defined(SOCKET_CONNECTOR_NATIVE_SOCKETS) && defined(ASIO_HAS_EPOLL) &&                         \
    ASIO_VERSION >= 102200 && ASIO_VERSION < 102300 && !defined(SOCKET_CONNECTOR_NO_RECEIVE_HINT)
#define SOCKET_CONNECTOR_RECEIVE_HINT 1
inline constexpr bool receive_hint = true;

/// Yields the pointer to a private member named in an explicit instantiation. Every
/// translation unit that includes this header instantiates the same specialization; the only
/// entity it defines is an inline function, which g++ and clang merge.
template <class Tag, typename Tag::type Member>
struct private_member {
    friend constexpr typename Tag::type member_of(Tag) noexcept { return Member; }
};

/// Names `epoll_reactor::descriptor_state::try_speculative_`: per kind of operation, whether
/// the next one tries its system call before it waits for an event.
struct try_speculative_member {
    using descriptor_state = asio::detail::epoll_reactor::descriptor_state;
    using type = bool (descriptor_state::*)[asio::detail::epoll_reactor::max_ops];
    friend constexpr type member_of(try_speculative_member) noexcept;
};

template struct private_member<try_speculative_member,
                               &asio::detail::epoll_reactor::descriptor_state::try_speculative_>;

/// Asio's flag for whether the next receive of `socket` tries first; null if `socket` is not
/// registered with the reactor.
template <class Socket>
bool* receive_try_flag(Socket& socket) noexcept {
    auto* state = socket_state_access<Socket>::reactor_data(socket);
    if (!state) return nullptr;
    return &(state->*member_of(try_speculative_member{}))[asio::detail::epoll_reactor::read_op];
}

/// Records that `socket` (open, of a reactor that one thread runs) has nothing to read: its next
/// receive waits for an event without trying first, unless the reactor takes an event of the
/// socket before then. Only right after a read of the socket that would have blocked, not after
/// a short read (see above, and its one exception).
template <class Socket>
void mark_drained(Socket& socket) noexcept {
    if (auto* flag = receive_try_flag(socket)) *flag = false;
}

/// Whether the next receive of `socket` tries its system call first. Only from the one thread
/// that runs the socket's reactor (the flag is Asio's, unlocked here).
template <class Socket>
bool receive_tries_first(Socket& socket) noexcept {
    auto* flag = receive_try_flag(socket);
    return !flag || *flag;
}
#else
inline constexpr bool receive_hint = false;
template <class Socket>
void mark_drained(Socket&) noexcept {}
template <class Socket>
bool receive_tries_first(Socket&) noexcept {
    return true;
}
#endif

/// Opens `socket` for `protocol`, non-blocking (and close-on-exec where the system allows).
template <class Socket, class Protocol>
void open_non_blocking(Socket& socket, const Protocol& protocol, std::error_code& ec) {
#if defined(SOCKET_CONNECTOR_NATIVE_SOCKETS)
    int fd = ::socket(protocol.family(), protocol.type() | SOCK_NONBLOCK | SOCK_CLOEXEC,
                      protocol.protocol());
    if (fd < 0) {
        ec.assign(errno, asio::error::get_system_category());
        return;
    }
    adopt_descriptor(socket, protocol, fd, ec);
#else
    socket.open(protocol, ec);
    if (!ec) socket.non_blocking(true, ec);
#endif
}

/// Accepts one connection from a non-blocking `acceptor` into `socket` (closed), without
/// waiting: `would_block` when none is queued. The new socket is non-blocking (and
/// close-on-exec where the system allows); `peer` is set to its address. A connection that was
/// aborted while it waited in the backlog is skipped, as Asio does.
template <class Acceptor, class Socket, class Endpoint>
void accept_non_blocking(Acceptor& acceptor, Socket& socket, Endpoint& peer, std::error_code& ec) {
#if defined(SOCKET_CONNECTOR_NATIVE_SOCKETS)
    for (;;) {
        auto length = static_cast<socklen_t>(peer.capacity());
        int fd =
            ::accept4(acceptor.native_handle(), peer.data(), &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
            ec.assign(errno, asio::error::get_system_category());
            return;
        }
        peer.resize(length);
        adopt_descriptor(socket, peer.protocol(), fd, ec);
        return;
    }
#else
    socket = acceptor.accept(peer, ec);
    if (!ec) socket.non_blocking(true, ec);
#endif
}

} // namespace socket_connector::detail
