#pragma once

// basic_connector's members: how an accepted or dialed socket travels to a relaying pair.
//
//   listener (accept) ─┐
//                      ├─> adopt ─> admit (auth verifier) ─> enqueue ─> pairing ─> join ─>
//                      connection
//   dialer (connect) ──┘                                       (a proxy: dial B for this A, then
//   join)

#include <socket_connector/connector.hpp>

namespace socket_connector {

template <class Protocol, class Executor>
basic_connector<Protocol, Executor>::basic_connector(detail::connector_key, connector_mode mode,
                                                     Executor ex, options_type opts)
    : mode_(mode)
    , ex_(ex)
    , strand_(serial_executor(ex, opts.io_run_by_one_thread))
    , opts_(std::move(opts))
    , context_(std::make_shared<detail::relay_context>())
    , lifecycle_(strand_) {
    context_->log = opts_.logger ? opts_.logger : stderr_logger();
    context_->log_traffic = opts_.log_traffic;
    context_->zero_copy = opts_.zero_copy;
    context_->io_run_by_one_thread = opts_.io_run_by_one_thread;
    if (opts_.idle_timeout != no_timeout && opts_.idle_timeout.count() > 0)
        context_->idle_timeout = opts_.idle_timeout;
}

template <class Protocol, class Executor>
socket_connector::stats basic_connector<Protocol, Executor>::stats() const {
    socket_connector::stats s;
    s.bytes_a_to_b = context_->bytes_a_to_b.load();
    s.bytes_b_to_a = context_->bytes_b_to_a.load();
    s.connections_open = live_count_.load();
    s.sockets_created = sockets_created_.load();
    s.sockets_accepted_a = sockets_accepted_[0].load();
    s.sockets_accepted_b = sockets_accepted_[1].load();
    s.connections_total = connections_total_.load();
    s.auth_failures_a = auth_failures_[0].load();
    s.auth_failures_b = auth_failures_[1].load();
    s.auth_failures = s.auth_failures_a + s.auth_failures_b;
    s.sockets_refused = sockets_refused_.load();
    s.sessions_paired = sessions_paired_.load();
    s.pending_a = pending_count_[0].load();
    s.pending_b = pending_count_[1].load();
    s.sessions_open = session_count_.load();
    s.sessions_pending = sessions_pending_.load();
    std::lock_guard lock(addresses_mutex_);
    s.remote_addresses = remote_addresses_;
    return s;
}

// ---- start-up ---------------------------------------------------------------------------------

template <class Protocol, class Executor>
asio::awaitable<void> basic_connector<Protocol, Executor>::start() {
    using namespace asio::experimental::awaitable_operators;
    // Results are named before use: g++ 12 mishandles temporaries in co_await expressions.
    check_proxy_options();
    switch (mode_) {
    case connector_mode::server_to_server:
        co_await listen(side_id::a);
        co_await listen(side_id::b);
        break;
    case connector_mode::one_server:
        if (!opts_.a.auth)
            throw std::system_error(std::make_error_code(std::errc::invalid_argument),
                                    "one_server needs side A's auth verifier (it says each "
                                    "socket's side)");
        co_await listen(side_id::a);
        break;
    case connector_mode::server_to_socket: {
        auto targets = co_await detail::resolve(strand_, side_id::b, opts_.b);
        dialers_[1].emplace(ex_, strand_, std::move(targets), opts_.connect_timeout);
        co_await listen(side_id::a);
        if (!opts_.multi) {
            auto b = co_await dial_up_front(side_id::b);
            spawn(admit(std::move(b)));
        }
        break;
    }
    case connector_mode::socket_to_server: {
        co_await listen(side_id::b);
        auto targets = co_await detail::resolve(strand_, side_id::a, opts_.a);
        dialers_[0].emplace(ex_, strand_, std::move(targets), opts_.connect_timeout);
        auto a = co_await dial_up_front(side_id::a);
        spawn(admit(std::move(a)));
        break;
    }
    case connector_mode::socket_to_socket: {
        auto targets_a = co_await detail::resolve(strand_, side_id::a, opts_.a);
        auto targets_b = co_await detail::resolve(strand_, side_id::b, opts_.b);
        dialers_[0].emplace(ex_, strand_, std::move(targets_a), opts_.connect_timeout);
        dialers_[1].emplace(ex_, strand_, std::move(targets_b), opts_.connect_timeout);
        arrival_ptr a, b;
        try {
            std::tie(a, b) = co_await (dial_up_front(side_id::a) && dial_up_front(side_id::b));
        } catch (const asio::multiple_exceptions& e) {
            std::rethrow_exception(e.first_exception()); // both failed: report A's
        }
        spawn(admit(std::move(a)));
        spawn(admit(std::move(b)));
        break;
    }
    }
    for (auto& l : listeners_) {
        if (!l) continue;
        auto self = this->shared_from_this();
        spawn(l->run(
            strand_, context_->log, [self, id = l->id()] { return self->why_refuse(id); },
            [self, id = l->id()](socket_type socket, const endpoint_type& peer, bool unseen) {
                self->accepted(id, std::move(socket), peer, unseen);
            },
            sockets_refused_));
    }
    if (opts_.timeout != no_timeout) spawn(grace());
}

template <class Protocol, class Executor>
asio::awaitable<void> basic_connector<Protocol, Executor>::listen(side_id id) {
    std::optional<endpoint_type> other;
    if (listeners_[index(socket_connector::other(id))])
        other = local_[index(socket_connector::other(id))];
    auto l = co_await listener_type::open(ex_, strand_, id, side_opts(id), other);
    local_[index(id)] = l.local_endpoint();
    listeners_[index(id)].emplace(std::move(l));
}

template <class Protocol, class Executor>
asio::awaitable<detail::arrival_ptr<basic_side<Protocol, Executor>>>
basic_connector<Protocol, Executor>::dial_up_front(side_id id) {
    auto& dialer = *dialers_[index(id)];
    auto [ec, socket, remote, waited] =
        co_await dialer.async_dial(nullptr, false, false, detail::use_tuple);
    if (!ec && lifecycle_.closing()) ec = asio::error::operation_aborted;
    // Cancelled (the connector is closing, or the other dial of a pair failed): the cause is
    // reported elsewhere.
    if (ec == asio::error::operation_aborted) throw std::system_error(ec, "connect cancelled");
    if (ec) throw std::system_error(ec, connect_failure(id, ec));
    auto a = wrap(id, std::move(socket), remote, origin::dialed);
    if (side_opts(id).tls) co_await shake_hands_up_front(*a->side);
    co_return a;
}

/// A TLS side dialed up front shakes hands before the connector has started (within
/// `auth_timeout`): a server it cannot verify is a start-up failure, as a refused connect is.
template <class Protocol, class Executor>
asio::awaitable<void> basic_connector<Protocol, Executor>::shake_hands_up_front(side_type& s) {
    std::string failure;
    auto check = [&]() -> asio::awaitable<auth_result> {
        s.tls_ = side_opts(s.id()).tls->session(static_cast<int>(s.socket_.native_handle()));
        failure = co_await detail::tls_handshake(s.socket_, *s.tls_);
        co_return auth_result{.ok = failure.empty(), .leftover = {}};
    };
    auto result = co_await detail::admit(check, opts_.auth_timeout, strand_);
    if (!result.admitted) {
        const auto why =
            result.failure == "timed out"
                ? fmt::format("not done within {} ms (auth_timeout)", opts_.auth_timeout.count())
            : failure.empty() ? result.failure
                              : failure;
        throw std::system_error(
            std::make_error_code(std::errc::protocol_error),
            fmt::format("{}: TLS handshake with {}: {}", to_string(s.id()), s.remote(), why));
    }
    log_handshake(s);
}

template <class Protocol, class Executor>
void basic_connector<Protocol, Executor>::log_handshake(const side_type& s) {
    const auto& settled = s.tls_->info();
    info("{}: {} {} {}{}{}", to_string(s.id()), s.remote(), settled.version, settled.cipher,
         settled.peer_subject.empty() ? "" : ", certificate ", settled.peer_subject);
}

/// How a failed connect of side `id` is named in messages ("connect B to HOST:PORT"), with the
/// bound it ran into when it timed out.
template <class Protocol, class Executor>
std::string basic_connector<Protocol, Executor>::connect_failure(side_id id,
                                                                 std::error_code ec) const {
    auto what = fmt::format("connect {} to {}", to_string(id),
                            detail::target_name(dialers_[index(id)]->targets(), side_opts(id)));
    if (ec == asio::error::timed_out)
        what += fmt::format(": no answer within {} ms (connect_timeout)",
                            opts_.connect_timeout.count());
    return what;
}

// ---- sides ------------------------------------------------------------------------------------

/// Sets the socket options on a new socket (accepted from, or connected to, `remote`), counts it
/// and wraps it in a side. A socket this side's listener accepted may have its options already
/// (inherited from the listening socket).
template <class Protocol, class Executor>
detail::arrival_ptr<basic_side<Protocol, Executor>> basic_connector<Protocol, Executor>::wrap(
    side_id id, socket_type socket, const endpoint_type& remote, origin from, std::string peer) {
    // A routed socket was counted, and its address seen and written out, where it was accepted.
    // One whose PROXY header is yet to be read: the address it names is the one seen.
    const bool header_due =
        side_opts(id).accept_proxy && (from == origin::accepted || from == origin::adopted);
    if (from != origin::routed) {
        peer = detail::to_string(remote);
        sockets_created_.fetch_add(1, std::memory_order_relaxed);
        if (from == origin::accepted)
            sockets_accepted_[index(id)].fetch_add(1, std::memory_order_relaxed);
        if (!header_due) note_address(remote);
    }
    std::error_code ec;
    if (!socket.non_blocking()) socket.non_blocking(true, ec); // a dial may have set it
    const auto& listener = listeners_[index(id)];
    const bool has_options = from == origin::routed || // given them where it was accepted
                             (from == origin::accepted && listener->sets_options());
    if (!has_options) {
        set_no_delay(socket, ec);
        if (ec)
            log(log_level::warning, "{}: TCP_NODELAY on {}: {}", to_string(id), peer, ec.message());
        set_keep_alive(socket, side_opts(id).keepalive, ec, true);
        if (ec)
            log(log_level::warning, "{}: keep-alive on {}: {}", to_string(id), peer, ec.message());
    }
    auto a = std::make_shared<arrival>(
        std::make_shared<side_type>(id, std::move(socket), std::move(peer)));
    a->proxy_header_due = header_due;
    a->side->transformer = side_opts(id).transform();
    if (mode_ == connector_mode::one_server && from == origin::accepted) // side known once admitted
        info("accepted {}", a->side->remote());
    else
        info("{}: {} {}", to_string(id),
             from == origin::accepted  ? "accepted"
             : from == origin::dialed  ? "connected to"
             : from == origin::adopted ? "adopted"
                                       : "routed here (its session's connector)",
             a->side->remote());
    return a;
}

/// Takes a socket just accepted on side `id`: authenticated, or queued at once. `unseen`:
/// accepted by hand in this handler, so registered with the event loop just now (see
/// detail::read_sent).
template <class Protocol, class Executor>
void basic_connector<Protocol, Executor>::accepted(side_id id, socket_type socket,
                                                   const endpoint_type& peer, bool unseen) {
    admit_or_enqueue(wrap(id, std::move(socket), peer, origin::accepted), unseen);
}

/// A new side: authenticated when its side has a verifier, else queued at once (nothing to
/// wait for: no coroutine).
template <class Protocol, class Executor>
void basic_connector<Protocol, Executor>::admit_or_enqueue(arrival_ptr a, bool unseen) {
    const auto& so = side_opts(a->side->id());
    if (so.auth || a->proxy_header_due || so.tls)
        spawn(admit(std::move(a)));
    else
        enqueue(std::move(a), unseen);
}

template <class Protocol, class Executor>
void basic_connector<Protocol, Executor>::adopt(side_id id, socket_type socket,
                                                std::optional<auth_result> verdict) {
    asio::dispatch(strand_, [self = this->shared_from_this(), id, socket = std::move(socket),
                             verdict = std::move(verdict)]() mutable {
        self->adopted(id, std::move(socket), std::move(verdict));
    });
}

/// A socket the application handed over: checked against the limits, then admitted (by the
/// side's verifier, or by the application's own verdict) like an accepted one.
template <class Protocol, class Executor>
void basic_connector<Protocol, Executor>::adopted(side_id id, socket_type socket,
                                                  std::optional<auth_result> verdict, origin from,
                                                  std::string peer, const proxy_header* told,
                                                  std::unique_ptr<tls_session> tls) {
    std::error_code ec;
    endpoint_type remote;
    if (from != origin::routed) remote = socket.remote_endpoint(ec); // routed: `peer` says it
    if (lifecycle_.closing() || ec) {
        if (ec)
            log(log_level::warning, "{}: cannot adopt a socket: {}", to_string(id), ec.message());
        socket.close(ec);
        return;
    }
    if (auto why = why_refuse(id); !why.empty()) {
        sockets_refused_.fetch_add(1, std::memory_order_relaxed);
        log(log_level::warning, "{}: refused {}: {}", to_string(id),
            from == origin::routed ? peer : detail::to_string(remote), why);
        socket.close(ec);
        return;
    }
    if (verdict && side_opts(id).tls && !tls) {
        log(log_level::warning,
            "{}: a socket adopted with a verdict on a TLS side is closed: its handshake comes "
            "before any byte an application could have read (adopt it without one)",
            to_string(id));
        socket.close(ec);
        return;
    }
    auto a = wrap(id, std::move(socket), remote, from, std::move(peer));
    if (told) a->side->proxied_ = std::make_unique<proxy_header>(*told);
    a->side->tls_ = std::move(tls); // a routed side's, its handshake done
    if (!verdict) return admit_or_enqueue(std::move(a), false);
    if (a->proxy_header_due) { // the application read the socket's first bytes itself
        a->proxy_header_due = false;
        note_address(remote);
    }
    if (!verdict->ok)
        return failed_authentication(a, verdict->why.empty() ? "rejected" : verdict->why);
    a->in.early = std::move(verdict->leftover);
    const auto named = verdict->side ? verdict->side : std::optional<side_id>(id);
    if (auto why = check_verdict(*a, std::move(verdict->key), named); !why.empty())
        return refuse(a, why);
    enqueue(std::move(a));
}

/// Why a socket just accepted on side `id` may not be kept (a limit is hit), or empty.
template <class Protocol, class Executor>
std::string basic_connector<Protocol, Executor>::why_refuse(side_id id) const {
    const auto& group = opts_.limit_group;
    if (opts_.max_connections > 0) {
        auto live = group ? group->connections() : live_.size();
        if (proxy()) {
            // Every A a proxy keeps becomes a pair once its B is connected: those still
            // authenticating or being dialed count already, or a burst of As would pass the limit
            // while their dials are under way.
            auto coming = group ? group->pending_a() : waiting_on(side_id::a);
            if (live + coming >= opts_.max_connections)
                return fmt::format("{} open and {} being made (max_connections)",
                                   detail::count_of(live, "connection"), coming);
        } else if (live >= opts_.max_connections) {
            return fmt::format("{} open (max_connections)", detail::count_of(live, "connection"));
        }
    }
    if (opts_.max_pending > 0) {
        auto waiting =
            group ? (id == side_id::a ? group->pending_a() : group->pending_b()) : waiting_on(id);
        // One port: a socket's side is known only once it is admitted; both count.
        if (mode_ == connector_mode::one_server)
            waiting = group ? group->pending_a() + group->pending_b()
                            : waiting_on(side_id::a) + waiting_on(side_id::b);
        if (waiting >= opts_.max_pending)
            return fmt::format("{} already pending (max_pending)",
                               detail::count_of(waiting, fmt::format("{} socket", to_string(id))));
    }
    return {};
}

/// Authenticates a new side (if it has a verifier), then queues it for pairing.
template <class Protocol, class Executor>
asio::awaitable<void> basic_connector<Protocol, Executor>::admit(arrival_ptr a) {
    auto self = this->shared_from_this();
    if (co_await authenticate(a)) enqueue(std::move(a));
}

/// Runs the side's verifier under `auth_timeout`; false (and the side closed) if it failed or the
/// connector is closing, or if it moved to the connector that owns its session (`route`).
/// Sides accepted and sides dialed are both checked.
template <class Protocol, class Executor>
asio::awaitable<bool> basic_connector<Protocol, Executor>::authenticate(const arrival_ptr& a) {
    auto& joining = *a->side;
    const auto id = joining.id();
    const auto& verify = side_opts(id).auth;
    const auto& tls = side_opts(id).tls;
    bool tls_due = tls && !joining.tls_;
    if (!verify && !a->proxy_header_due && !tls_due) co_return true;
    authenticating_.insert(a);
    ++authenticating_count_[index(id)];
    publish_counts();
    // The PROXY header (if one is due), the TLS handshake (if the side speaks TLS), then the
    // verifier (if any), under one deadline.
    detail::proxy_read got;
    std::string tls_failure;
    auto check = [&]() -> asio::awaitable<auth_result> {
        if (a->proxy_header_due) {
            co_await detail::read_proxy_header(joining.socket_, got);
            if (!got.error.empty()) co_return auth_result{};
            a->proxy_header_due = false;
            info("{}: {} sent a PROXY header{}{}", to_string(id), joining.remote(),
                 got.header.local ? " naming no address" : " for ",
                 got.header.local ? std::string() : detail::to_string(got.header.source));
            joining.set_proxied(got.header);
            if (!got.header.local) {
                note_address(got.header.source);
            } else {
                std::error_code ec;
                auto remote = joining.socket_.remote_endpoint(ec);
                if (!ec) note_address(remote);
            }
        }
        if (tls_due) {
            joining.tls_ = tls->session(static_cast<int>(joining.socket_.native_handle()));
            tls_failure = co_await detail::tls_handshake(joining.socket_, *joining.tls_);
            if (!tls_failure.empty()) co_return auth_result{};
            tls_due = false;
            log_handshake(joining);
        }
        if (!verify) co_return auth_result{.ok = true, .leftover = {}};
        const auth_context context{.side = id,
                                   .remote = joining.remote(),
                                   .proxy = joining.proxied(),
                                   .tls = joining.tls_ ? &joining.tls_->info() : nullptr};
        if (joining.tls_) {
            tls_stream<socket_type> plain(joining.socket_, *joining.tls_);
            co_return co_await verify(plain, context);
        }
        co_return co_await verify(joining.socket_, context);
    };
    auto result = co_await detail::admit(check, opts_.auth_timeout, strand_);
    authenticating_.erase(a);
    --authenticating_count_[index(id)];
    publish_counts();
    if (lifecycle_.closing() || joining.state() == side_state::closed) {
        joining.close();
        co_return false;
    }
    if (a->proxy_header_due) { // no header: a refusal, not a failed authentication
        auto why = std::move(got.error);
        if (result.failure == "timed out")
            why = got.taken == 0
                      ? fmt::format("none within {} ms (auth_timeout)", opts_.auth_timeout.count())
                      : fmt::format("incomplete within {} ms (auth_timeout; {} bytes)",
                                    opts_.auth_timeout.count(), got.taken);
        else if (why.empty()) // the reader threw
            why = result.failure;
        refuse(a, fmt::format("PROXY header: {}", why));
        co_return false;
    }
    if (tls_due) { // the handshake did not end: a refusal too
        auto why = std::move(tls_failure);
        if (result.failure == "timed out")
            why = fmt::format("not done within {} ms (auth_timeout)", opts_.auth_timeout.count());
        else if (why.empty())
            why = result.failure;
        refuse(a, fmt::format("TLS handshake: {}", why));
        co_return false;
    }
    if (!result.admitted) {
        failed_authentication(a, result.failure);
        co_return false;
    }
    a->in.early = std::move(result.leftover);
    if (auto why = check_verdict(*a, std::move(result.key), result.side); !why.empty()) {
        refuse(a, why);
        co_return false;
    }
    if (verify)
        info("{}: {} authenticated{}{}", to_string(joining.id()), joining.remote(),
             a->key.empty() ? "" : " for session ", a->key);
    co_return !route_away(a);
}

/// Adds a peer's address to the stats' list, unless it is there or the list is full.
template <class Protocol, class Executor>
template <class Endpoint>
void basic_connector<Protocol, Executor>::note_address(const Endpoint& remote) {
    std::lock_guard lock(addresses_mutex_);
    if (remote_addresses_.size() < stats_address_limit) {
        auto address = detail::address_of(remote);
        if (seen_addresses_.insert(address).second) remote_addresses_.push_back(std::move(address));
    }
}

/// Closes a side its verifier (or the application's verdict) turned down; a side dialed up
/// front that fails before any pair formed closes the connector.
template <class Protocol, class Executor>
void basic_connector<Protocol, Executor>::failed_authentication(const arrival_ptr& a,
                                                                std::string_view why) {
    const auto id = a->side->id();
    auth_failures_[index(id)].fetch_add(1, std::memory_order_relaxed);
    log(log_level::warning, "{}: authentication of {} failed: {}", to_string(id), a->side->remote(),
        why);
    a->side->close();
    if (is_up_front(id) && !lifecycle_.paired_once())
        close_now(fmt::format("{} failed authentication", to_string(id)));
    else
        maybe_finish();
}

/// Moves an admitted side whose session another connector owns (`options::route`) there: its
/// socket is released here and registered with that connector's event loop, and it is taken as
/// an adopted socket with its verdict and early bytes. True when it went.
template <class Protocol, class Executor>
bool basic_connector<Protocol, Executor>::route_away(const arrival_ptr& a) {
    const bool served =
        mode_ == connector_mode::one_server || mode_ == connector_mode::server_to_server;
    if (!opts_.route || a->key.empty() || !served) return false;
    auto to = opts_.route(a->key);
    if (!to || to.get() == this) return false;
    auto& socket = a->side->socket_;
    std::error_code ec;
    const auto protocol = socket.local_endpoint(ec).protocol();
    typename socket_type::native_handle_type handle{};
    if (!ec) handle = socket.release(ec);
    const auto id = a->side->id();
    if (ec) {
        log(log_level::warning, "{}: {} could not be moved to its session's connector: {}",
            to_string(id), a->side->remote(), ec.message());
        a->side->close();
        maybe_finish();
        return true;
    }
    info("{}: {} moved to its session's connector", to_string(id), a->side->remote());
    a->side->close(); // its socket is released: nothing to close but the side
    auth_result verdict;
    verdict.ok = true;
    verdict.leftover = std::move(a->in.early);
    verdict.key = std::move(a->key);
    verdict.side = id;
    std::optional<proxy_header> told; // its PROXY header goes with it, and its TLS session
    if (a->side->proxied_) told = *a->side->proxied_;
    asio::post(to->strand_, [to, id, protocol, handle, verdict = std::move(verdict),
                             peer = std::move(a->side->remote_), told,
                             tls = std::move(a->side->tls_)]() mutable {
        socket_type moved(to->ex_);
        std::error_code failed;
        detail::take_released(moved, protocol, handle, failed);
        if (failed)
            return to->log(log_level::warning,
                           "{}: a socket moved here could not be registered: {}", to_string(id),
                           failed.message());
        to->adopted(id, std::move(moved), std::move(verdict), origin::routed, std::move(peer),
                    told ? &*told : nullptr, std::move(tls));
    });
    return true;
}

/// Takes the key and side a verifier named; why the side may not go on, or empty.
template <class Protocol, class Executor>
std::string basic_connector<Protocol, Executor>::check_verdict(arrival& a, std::string key,
                                                               std::optional<side_id> named) {
    a.key = std::move(key);
    if (mode_ == connector_mode::one_server) {
        if (!named) return "its verifier did not say which side it is";
        a.side->set_id(*named);
    } else if (named && *named != a.side->id()) {
        return fmt::format("it is a side {} socket on side {}'s port", to_string(*named),
                           to_string(a.side->id()));
    }
    return {};
}

/// Closes a side that may not wait for a partner (a duplicate, over a limit, the wrong side).
template <class Protocol, class Executor>
void basic_connector<Protocol, Executor>::refuse(const arrival_ptr& a, const std::string& why) {
    sockets_refused_.fetch_add(1, std::memory_order_relaxed);
    log(log_level::warning, "{}: {} refused: {}", to_string(a->side->id()), a->side->remote(), why);
    a->side->close();
    const auto id = a->side->id();
    if (is_up_front(id) && !lifecycle_.paired_once())
        close_now(fmt::format("{} was refused", to_string(id)));
    else
        maybe_finish();
}

/// Puts an admitted side in its queue, watches it, and pairs what can be paired. `unseen`: the
/// side's socket was registered with the event loop in this very handler.
template <class Protocol, class Executor>
void basic_connector<Protocol, Executor>::enqueue(arrival_ptr a, bool unseen) {
    if (lifecycle_.closing()) {
        a->side->close();
        return;
    }
    if (!a->key.empty() && opts_.max_sessions > 0 && !pairing_.has_session(a->key)) {
        const auto open = opts_.limit_group ? opts_.limit_group->sessions() : pairing_.sessions();
        if (open >= opts_.max_sessions)
            return refuse(a, fmt::format("session {}: {} open (max_sessions)", a->key,
                                         detail::count_of(open, "session")));
    }
    a->side->set_state(side_state::pending);
    switch (pairing_.add(a)) {
    case detail::add_result::added:
        break;
    case detail::add_result::duplicate_pending:
        return refuse(a, fmt::format("session {} already has a side {} waiting", a->key,
                                     to_string(a->side->id())));
    case detail::add_result::duplicate_joined:
        return refuse(a, fmt::format("session {} is already paired", a->key));
    }
    update_counts();
    if (proxy()) {
        // Joined as soon as its B is connected: what it sends meanwhile waits in the kernel, and
        // a departure shows once the pair relays. No watcher needed.
        dial_for(std::move(a), unseen);
    } else {
        try_pair();
        if (a->side->state() == side_state::pending) { // no partner yet: wait for one
            expire_later(a);
            watch(std::move(a));
        }
    }
}

/// While a side waits for its partner: keeps what it sends and drops it if it goes away.
template <class Protocol, class Executor>
void basic_connector<Protocol, Executor>::watch(arrival_ptr a) {
    const bool read_now = a->side->tls_ != nullptr; // records may have been read ahead
    detail::watch_pending<side_type>(
        std::move(a), strand_,
        [self = this->shared_from_this()](arrival_ptr waiting, detail::watch_end how,
                                          const std::string& why) {
            if (how == detail::watch_end::left) self->drop(waiting, why);
            if (how == detail::watch_end::held && waiting->in.ended)
                self->info("{}: {} ended its stream while pending ({} bytes kept)",
                           to_string(waiting->side->id()), waiting->side->remote(),
                           waiting->in.early.size());
        },
        read_now);
}

/// Takes a side out of its queue and closes it.
template <class Protocol, class Executor>
void basic_connector<Protocol, Executor>::drop(const arrival_ptr& a, const std::string& why) {
    pairing_.remove(a);
    forget_deadline(*a);
    update_counts();
    const auto id = a->side->id();
    if (!why.empty()) info("{}: {} left while pending: {}", to_string(id), a->side->remote(), why);
    a->side->close();
    if (is_up_front(id) && !lifecycle_.paired_once() && !lifecycle_.closing())
        return close_now(fmt::format("{} closed before it could be paired", to_string(id)));
    maybe_finish();
}

// ---- pairing and connections ------------------------------------------------------------------

/// Joins a pending A and a pending B, taken out of their queues, into a connection and starts it.
template <class Protocol, class Executor>
void basic_connector<Protocol, Executor>::join(arrival_ptr a, arrival_ptr b) {
    std::error_code ignored;
    forget_deadline(*a);
    forget_deadline(*b);
    // Ends the watchers; they see the new state and leave the sockets alone.
    for (auto* s : {&a->side, &b->side}) {
        (*s)->set_state(side_state::joined);
        (*s)->socket_.cancel(ignored);
    }
    const std::uint64_t id = connections_total_.fetch_add(1) + 1;
    auto c = std::make_shared<connection_type>(
        typename connection_type::private_tag{}, serial_executor(ex_, opts_.io_run_by_one_thread),
        a->side, std::move(a->in), b->side, std::move(b->in), id, context_);
    pairing_.move_key(a->key, c->key_); // the table now looks at the connection's copy
    if (!c->key_.empty()) sessions_paired_.fetch_add(1, std::memory_order_relaxed);
    lifecycle_.paired();
    // A pair that cannot start: both sides closed, its session released.
    auto abandon = [&] {
        a->side->close();
        b->side->close();
        pairing_.release(c->key());
        update_counts();
        maybe_finish();
    };
    // A side dialed up front gets its PROXY header first: before anything the hook might write.
    for (const auto* to : {&a->side, &b->side}) {
        if (!sends_proxy_at_join((*to)->id())) continue;
        const auto& partner = to == &a->side ? *b->side : *a->side;
        if (auto why = send_proxy_header(**to, partner); !why.empty()) {
            log(log_level::warning, "connection {}: {}", id, why);
            return abandon();
        }
    }
    if (opts_.before_joining) {
        try {
            opts_.before_joining(*c);
        } catch (const std::exception& e) {
            log(log_level::error, "connection {}: before_joining failed: {}", id, e.what());
            return abandon();
        }
    }
    live_.insert(c);
    formed_.push_back(c);
    if (formed_.size() > connection_queue_limit) formed_.pop_front();
    update_counts();
    info("connection {}: A {} <-> B {}{}{}{}", id, a->side->remote(), b->side->remote(),
         c->key().empty() ? "" : " (session ", c->key(), c->key().empty() ? "" : ")");
    if (!on_connection_end_) {
        std::weak_ptr<basic_connector> weak = this->shared_from_this();
        on_connection_end_ = std::make_shared<const typename connection_type::end_handler>(
            [weak](std::shared_ptr<connection_type> done, std::string reason) {
                // Posted: the connector learns of it in a turn of its own, also when it shares
                // the connection's thread and executor (io_run_by_one_thread).
                if (auto self = weak.lock())
                    asio::post(self->strand_,
                               [self, done = std::move(done), reason = std::move(reason)] {
                                   self->connection_ended(done, reason);
                               });
            });
    }
    c->start(on_connection_end_);
    // Single-pair modes: no other side can ever be served.
    if (mode_ != connector_mode::server_to_server && mode_ != connector_mode::one_server &&
        !proxy())
        stop_accepting();
    formed_event_.notify_all();
}

template <class Protocol, class Executor>
void basic_connector<Protocol, Executor>::connection_ended(
    const std::shared_ptr<connection_type>& c, const std::string& reason) {
    live_.erase(c);
    pairing_.release(c->key());
    update_counts();
    info("connection {} closed: {} (A->B {} bytes, B->A {} bytes)", c->id(), reason,
         c->bytes_a_to_b(), c->bytes_b_to_a());
    maybe_finish();
}

} // namespace socket_connector
