#pragma once

// basic_connector's members, continued: a proxy (server_to_socket with `multi`) dials a B for
// each A it accepts, the A's first bytes riding on the handshake, then joins them.

#include <socket_connector/connector.hpp>

namespace socket_connector {

// ---- a proxy's B, dialed for each A -----------------------------------------------------------

/// server_to_socket with `multi`: dials a B for this A, then joins them. What A has sent already
/// is read first: when there is some (a client that speaks first has usually sent its request by
/// the time it is accepted), it is the first thing B gets, so B's handshake can end with those
/// bytes instead of a bare ACK.
template <class Protocol, class Executor>
void basic_connector<Protocol, Executor>::dial_for(arrival_ptr a, bool unseen) {
    if (auto ec = detail::read_sent(*a, unseen, opts_.io_run_by_one_thread))
        return drop(a, detail::read_failure(*a->side, ec));
    // With a verifier for B, B's authentication goes first, and B may be the one to speak;
    // with a PROXY header for B, the header does; with TLS, the handshake.
    const bool data_first = !a->in.early.empty() && !opts_.b.auth && !opts_.b.tls &&
                            opts_.b.send_proxy == proxy_version::none;
    // Only bytes that go out unchanged: no transformer, no traffic log, and no hook that could
    // set a transformer for the pair first.
    const bool send_ahead =
        data_first && !a->side->transformer && !opts_.log_traffic && !opts_.before_joining;
    auto* ahead = data_first ? &a->in : nullptr;
    dialers_[1]->async_dial(
        ahead, send_ahead, true,
        asio::bind_executor(strand_, [self = this->shared_from_this(),
                                      a = std::move(a)](std::error_code ec, socket_type socket,
                                                        endpoint_type remote, bool waited) mutable {
            self->dialed_for(std::move(a), ec, std::move(socket), remote, waited);
        }));
}

template <class Protocol, class Executor>
void basic_connector<Protocol, Executor>::dialed_for(arrival_ptr a, std::error_code ec,
                                                     socket_type socket, endpoint_type remote,
                                                     bool waited) {
    if (!ec && lifecycle_.closing()) ec = asio::error::operation_aborted;
    if (ec) {
        // Cancelled: the connector is closing, and says so itself.
        if (ec != asio::error::operation_aborted && a->side->state() == side_state::pending)
            log(log_level::warning, "{}: {}; closing A {}", connect_failure(side_id::b, ec),
                ec.message(), a->side->remote());
        return drop(a, "");
    }
    auto b = wrap(side_id::b, std::move(socket), remote, origin::dialed);
    if (opts_.b.send_proxy != proxy_version::none) {
        if (auto why = send_proxy_header(*b->side, *a->side); !why.empty()) {
            log(log_level::warning, "B: {}; closing A {}", why, a->side->remote());
            b->side->close();
            return drop(a, "");
        }
    }
    if (opts_.b.auth || opts_.b.tls)
        return spawn(authenticate_then_pair(std::move(a), std::move(b)));
    b->in.short_read = true; // just connected: nothing read from it yet
    // Connected in the handler that registered the socket with the event loop: no epoll_wait has
    // taken its entry since, so whatever B has sent meanwhile (a server that speaks first, an end
    // of stream) keeps the entry on epoll's ready list and is reported by the next epoll_wait,
    // which undoes the mark. Its first receive need not try.
    if (!waited && opts_.io_run_by_one_thread) detail::mark_read_empty(b->side->socket_);
    pair_dialed(std::move(a), std::move(b));
}

template <class Protocol, class Executor>
asio::awaitable<void> basic_connector<Protocol, Executor>::authenticate_then_pair(arrival_ptr a,
                                                                                  arrival_ptr b) {
    auto self = this->shared_from_this();
    if (!co_await authenticate(b)) co_return drop(a, "");
    pair_dialed(std::move(a), std::move(b));
}

/// Joins a proxy's A with the B dialed for it, unless A has gone meanwhile.
template <class Protocol, class Executor>
void basic_connector<Protocol, Executor>::pair_dialed(arrival_ptr a, arrival_ptr b) {
    if (a->side->state() != side_state::pending || lifecycle_.closing()) {
        b->side->close();
        return maybe_finish();
    }
    b->side->set_state(side_state::pending);
    pairing_.remove(a);
    join(std::move(a), std::move(b));
}

} // namespace socket_connector
