#pragma once

// The system calls the relay makes itself, beneath Asio, in one place: sockets that are
// non-blocking and close-on-exec from the call that makes them (socket, accept4), a connect that
// does not wait (connect, getpeername, SO_ERROR), and splice(2) through pooled pipes.
//
// Native sockets. Asio accepts with accept() and opens with socket(), then needs an
// ioctl(FIONBIO) per socket, and marks every socket it is given a descriptor for as a possible
// duplicate (an EPOLL_CTL_DEL when it is closed). Here the relay's own sockets are made with
// SOCK_NONBLOCK | SOCK_CLOEXEC, and that is recorded in Asio's per-socket state
// (`socket_ops::state_type`, reached through the protected `impl_` of `basic_socket`): three
// system calls fewer per proxied connection. That state is Asio's private layout, so this path
// is built only against the Asio it was checked with (1.22) and its reactive socket service
// (epoll; not io_uring, not Windows). Anywhere else, or with SOCKET_CONNECTOR_NO_NATIVE_SOCKETS
// defined, the same functions use Asio's public calls.
//
// A socket made here, like any socket Asio opens itself, must not be duplicated (dup(), or a
// fork() that does not exec) while the relay uses it: closing it would not take it out of the
// epoll set while a duplicate keeps it open.

#include <array>
#include <cerrno>
#include <cstddef>
#include <system_error>
#include <vector>

#include <asio/detail/config.hpp>
#include <asio/error.hpp>
#include <asio/version.hpp>

#if !defined(ASIO_WINDOWS) && !defined(__CYGWIN__)
#include <sys/socket.h>
#include <unistd.h>
#endif

#if defined(__linux__) && !defined(ASIO_WINDOWS_RUNTIME) && !defined(ASIO_HAS_IOCP) &&             \
    !defined(ASIO_HAS_IO_URING_AS_DEFAULT) && ASIO_VERSION >= 102200 && ASIO_VERSION < 102300 &&   \
    !defined(SOCKET_CONNECTOR_NO_NATIVE_SOCKETS)
#define SOCKET_CONNECTOR_NATIVE_SOCKETS 1
#include <asio/basic_stream_socket.hpp> // Asio's reactor needs the socket service declared first
#include <asio/detail/reactor.hpp>
#include <asio/detail/socket_ops.hpp>
#endif

#if defined(__linux__)
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#endif

namespace socket_connector::detail {

// ---- native sockets ---------------------------------------------------------------------------

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

/// Takes `fd`, a non-blocking socket another `Socket` of this process released a moment ago,
/// into `socket` (registered with its event loop). Closes `fd` on failure.
template <class Socket, class Protocol>
void take_released(Socket& socket, const Protocol& protocol, typename Socket::native_handle_type fd,
                   std::error_code& ec) {
#if defined(SOCKET_CONNECTOR_NATIVE_SOCKETS)
    adopt_descriptor(socket, protocol, fd, ec);
#else
    socket.assign(protocol, fd, ec);
    if (!ec) return;
#if defined(ASIO_WINDOWS) || defined(__CYGWIN__)
    ::closesocket(fd);
#else
    ::close(fd);
#endif
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

// ---- connecting without waiting -----------------------------------------------------------------

#if !defined(ASIO_WINDOWS) && !defined(__CYGWIN__)
/// Whether a connect can be started with `start_connect` (a POSIX system); elsewhere the dialer
/// uses Asio's `async_connect`.
inline constexpr bool posix_connect = true;

/// Starts a connect of the non-blocking `socket` to `target`: no error when it is established
/// already, `in_progress` while it is under way (wait for the socket to be writable, then read
/// `pending_error`), or why it failed.
template <class Socket, class Endpoint>
std::error_code start_connect(Socket& socket, const Endpoint& target) {
    if (::connect(socket.native_handle(), target.data(), static_cast<socklen_t>(target.size())) ==
        0)
        return {};
    if (errno == EINPROGRESS || errno == EINTR) return asio::error::in_progress;
    return {errno, asio::error::get_system_category()};
}

/// Whether a socket is connected (has a peer) already.
template <class Socket>
bool has_peer(Socket& socket) {
    ::sockaddr_storage peer{};
    socklen_t length = sizeof peer;
    return ::getpeername(socket.native_handle(), reinterpret_cast<::sockaddr*>(&peer), &length) ==
           0;
}

/// The outcome of a non-blocking connect, once its socket is writable (SO_ERROR).
template <class Socket>
std::error_code pending_error(Socket& socket) {
    int error = 0;
    socklen_t length = sizeof error;
    if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_ERROR, &error, &length) != 0)
        error = errno;
    return error ? std::error_code(error, asio::error::get_system_category()) : std::error_code();
}
#else
inline constexpr bool posix_connect = false;
#endif

#if defined(MSG_MORE)
/// Send flag: more follows at once (here, the end of stream), so hold a partial segment.
inline constexpr int more_to_come = MSG_MORE;
#else
inline constexpr int more_to_come = 0;
#endif

// ---- splice(2) ----------------------------------------------------------------------------------

#if defined(__linux__)
inline constexpr bool has_splice = true;

/// A pipe borrowed from the current thread's pool while bytes are in it. A direction holds one
/// only between reading a chunk and writing it out, so idle directions hold none. It goes back
/// to the pool only when empty; a pipe left with bytes in it (the pair failed) is closed.
class pooled_pipe {
public:
    static constexpr std::size_t max_cached = 16;

    pooled_pipe() {
        auto& spare = cache().pipes;
        if (!spare.empty()) {
            fds_ = spare.back();
            spare.pop_back();
        } else if (::pipe2(fds_.data(), O_NONBLOCK | O_CLOEXEC) != 0) {
            fds_ = {-1, -1};
        }
    }
    pooled_pipe(const pooled_pipe&) = delete;
    pooled_pipe& operator=(const pooled_pipe&) = delete;
    ~pooled_pipe() {
        if (!valid()) return;
        auto& spare = cache().pipes;
        if (empty_ && spare.size() < max_cached) {
            spare.push_back(fds_);
        } else {
            close_pair(fds_);
        }
    }

    /// False if no pipe could be made (out of descriptors).
    bool valid() const noexcept { return fds_[0] >= 0; }
    /// Whether the pipe holds no bytes; only empty pipes are reused.
    void set_empty(bool empty) noexcept { empty_ = empty; }

    /// Moves up to `n` bytes from socket `fd` into the pipe: the count, 0 at end of stream, or
    /// -1 with `errno` set (EAGAIN: nothing to read).
    long splice_from(int fd, std::size_t n) noexcept {
        for (;;) {
            auto moved =
                ::splice(fd, nullptr, fds_[1], nullptr, n, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (moved >= 0 || errno != EINTR) return static_cast<long>(moved);
        }
    }
    /// Moves up to `n` bytes from the pipe to socket `fd`: the count, or -1 with `errno` set
    /// (EAGAIN: the socket is full).
    long splice_to(int fd, std::size_t n) noexcept {
        for (;;) {
            auto moved =
                ::splice(fds_[0], nullptr, fd, nullptr, n, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (moved >= 0 || errno != EINTR) return static_cast<long>(moved);
        }
    }

private:
    using fd_pair = std::array<int, 2>;
    static void close_pair(const fd_pair& p) {
        ::close(p[0]);
        ::close(p[1]);
    }
    struct spare_pipes {
        std::vector<fd_pair> pipes;
        ~spare_pipes() {
            for (auto& p : pipes)
                close_pair(p);
        }
    };
    static spare_pipes& cache() {
        thread_local spare_pipes spare;
        return spare;
    }

    fd_pair fds_{-1, -1};
    bool empty_ = true;
};

/// How much one splice moves at most: the default pipe capacity.
inline constexpr std::size_t splice_chunk = 64 * 1024;

/// splice(2) into a socket has no MSG_NOSIGNAL: writing to a peer that has gone raises
/// SIGPIPE, which kills a process that has not ignored it. So a thread that splices blocks
/// SIGPIPE for itself (once), and `consume_sigpipe` takes the pending signal after an EPIPE.
inline void block_sigpipe_on_this_thread() noexcept {
    thread_local bool blocked = false;
    if (blocked) return;
    blocked = true;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

inline void consume_sigpipe() noexcept {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    timespec zero{};
    while (sigtimedwait(&set, nullptr, &zero) == SIGPIPE) {
    }
}
#else
inline constexpr bool has_splice = false;
#endif

} // namespace socket_connector::detail
