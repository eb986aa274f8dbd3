#pragma once

// The receive hint: opt-in, off unless one translation unit of the program turns it on.
//
// Asio's epoll reactor, asked for a receive, first tries the receive and only if that would
// block waits for the next event. A relay direction whose own read of its source would just
// have blocked knows that the try would fail too: a system call for nothing. `mark_read_empty`
// tells the reactor to skip it, through Asio's private flag for this
// (`epoll_reactor::descriptor_state::try_speculative_`), written without Asio's lock.
//
// How to turn it on. Exactly one translation unit of the program defines
// SOCKET_CONNECTOR_ENABLE_RECEIVE_HINT before it includes any socket_connector header (the
// `socket-connector` command does). That unit holds the explicit instantiation that names the
// private member (the standard's rule that an explicit instantiation does not check access); an
// explicit instantiation definition may appear only once in a program, which is why no header
// may do it for every unit. The unit registers the accessor at start-up; every other unit only
// calls through it, so all units compile the same code. Without it, or on another Asio than
// 1.22 or another reactor than epoll, the functions below do nothing and receives behave as
// Asio's do.
//
// When it is safe, and the library uses it only then: on an io_context that one thread runs
// (`options::io_run_by_one_thread`), right after a read of the socket that would have blocked,
// in the handler that made it. Asio's epoll is edge-triggered, so bytes or an end of stream that
// arrive after that read raise a new event; if the reactor takes it while no receive is queued,
// it sets the flag again (and the receive tries), and if it takes it later, the event completes
// the queued receive. Another thread could take an event in between, and the flag is not ours
// to lock. A read that brought less than it asked for does not show the socket empty: the end
// of stream may have come in the same segment as its bytes, and its event was the one that
// brought them. The one exception is a socket registered with epoll in the same handler, whose
// entry no epoll_wait has taken yet (see detail/early_bytes.hpp).

#include <socket_connector/detail/platform.hpp>

#if defined(SOCKET_CONNECTOR_NATIVE_SOCKETS) && defined(ASIO_HAS_EPOLL)
#define SOCKET_CONNECTOR_RECEIVE_HINT_POSSIBLE 1
#endif

namespace socket_connector::detail {

#if defined(SOCKET_CONNECTOR_RECEIVE_HINT_POSSIBLE)
using reactor_descriptor_state = asio::detail::epoll_reactor::descriptor_state;

/// Set (once, before main) by the translation unit that defines
/// SOCKET_CONNECTOR_ENABLE_RECEIVE_HINT: gives Asio's "next receive tries first" flag of a
/// registered descriptor.
inline bool* (*receive_try_flag_of)(reactor_descriptor_state*) noexcept = nullptr;

/// Whether the program has turned the hint on.
inline bool receive_hint_enabled() noexcept {
    return receive_try_flag_of != nullptr;
}

/// Asio's flag for whether the next receive of `socket` tries first; null if the hint is off or
/// `socket` is not registered with the reactor.
template <class Socket>
bool* receive_try_flag(Socket& socket) noexcept {
    auto accessor = receive_try_flag_of;
    if (!accessor) return nullptr;
    auto* state = socket_state_access<Socket>::reactor_data(socket);
    return state ? accessor(state) : nullptr;
}

/// Records that `socket` (open, of a reactor that one thread runs) has nothing to read: its next
/// receive waits for an event without trying first, unless the reactor takes an event of the
/// socket before then. Only right after a read of the socket that would have blocked.
template <class Socket>
void mark_read_empty(Socket& socket) noexcept {
    if (auto* flag = receive_try_flag(socket)) *flag = false;
}

/// Whether the next receive of `socket` tries its system call first. Only from the one thread
/// that runs the socket's reactor (the flag is Asio's, unlocked here).
template <class Socket>
bool receive_tries_first(Socket& socket) noexcept {
    auto* flag = receive_try_flag(socket);
    return !flag || *flag;
}

#if defined(SOCKET_CONNECTOR_ENABLE_RECEIVE_HINT)
/// Yields the pointer to a private member named in an explicit instantiation.
template <class Tag, typename Tag::type Member>
struct private_member {
    friend constexpr typename Tag::type member_of(Tag) noexcept { return Member; }
};

/// Names `epoll_reactor::descriptor_state::try_speculative_`: per kind of operation, whether
/// the next one tries its system call before it waits for an event.
struct try_speculative_member {
    using type = bool (reactor_descriptor_state::*)[asio::detail::epoll_reactor::max_ops];
    friend constexpr type member_of(try_speculative_member) noexcept;
};

template struct private_member<try_speculative_member, &reactor_descriptor_state::try_speculative_>;

namespace {
struct receive_hint_installer {
    static bool* flag(reactor_descriptor_state* state) noexcept {
        return &(state->*member_of(try_speculative_member{}))[asio::detail::epoll_reactor::read_op];
    }
    receive_hint_installer() noexcept { receive_try_flag_of = &flag; }
};
const receive_hint_installer install_receive_hint;
} // namespace
#endif

#else
inline bool receive_hint_enabled() noexcept {
    return false;
}
template <class Socket>
void mark_read_empty(Socket&) noexcept {}
template <class Socket>
bool receive_tries_first(Socket&) noexcept {
    return true;
}
#endif

} // namespace socket_connector::detail
