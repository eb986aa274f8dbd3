#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/basic_socket_acceptor.hpp>
#include <asio/basic_stream_socket.hpp>
#include <asio/bind_executor.hpp>
#include <asio/co_spawn.hpp>
#include <asio/connect.hpp>
#include <asio/dispatch.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/multiple_exceptions.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/format.h>

#if !defined(ASIO_WINDOWS) && !defined(__CYGWIN__)
#include <sys/socket.h>
#endif

#include <socket_connector/connection.hpp>
#include <socket_connector/detail/native_socket.hpp>
#include <socket_connector/detail/pump.hpp>
#include <socket_connector/detail/socket_options.hpp>
#include <socket_connector/detail/strand_event.hpp>
#include <socket_connector/logging.hpp>
#include <socket_connector/options.hpp>
#include <socket_connector/side.hpp>
#include <socket_connector/socket_options.hpp>
#include <socket_connector/stats.hpp>

namespace socket_connector {

/// Which of the four shapes a connector has: each side is a server (it accepts) or a socket
/// (the connector dials out).
enum class connector_mode {
    server_to_server,
    server_to_socket,
    socket_to_server,
    socket_to_socket
};

/// Joins sockets from side A with sockets from side B, pairwise, and relays between them.
///
/// Made by one of the four factories. Sides are checked by their auth verifier, wait in a
/// first-in first-out queue per side, and are paired into connections as soon as both queues
/// have one. All of the connector's own state lives on one strand (or, with `one_thread`, on its
/// executor's one thread); its public members may be called from any thread. Its coroutines
/// keep it alive until it has closed.
template <class Protocol = asio::ip::tcp, class Executor = asio::any_io_executor>
class basic_connector : public std::enable_shared_from_this<basic_connector<Protocol, Executor>> {
    struct private_tag {};

public:
    using protocol_type = Protocol;
    using executor_type = Executor;
    using endpoint_type = typename Protocol::endpoint;
    using socket_type = asio::basic_stream_socket<Protocol, Executor>;
    using acceptor_type = asio::basic_socket_acceptor<Protocol, Executor>;
    using side_type = basic_side<Protocol, Executor>;
    using connection_type = basic_connection<Protocol, Executor>;
    using options_type = basic_options<Protocol, Executor>;
    using side_options_type = basic_side_options<Protocol, Executor>;
    using pointer = std::shared_ptr<basic_connector>;

    /// Sides that arrive before the pair forms keep at most this many bytes each; past it the
    /// connector stops reading them (backpressure) until they are paired.
    static constexpr std::size_t pending_byte_limit = 64 * 1024;
    /// The most a proxy reads of what an accepted side has sent before dialing its B.
    static constexpr std::size_t first_read_size = 16 * 1024;
    /// `stats().remote_addresses` keeps at most this many distinct addresses.
    static constexpr std::size_t stats_address_limit = 1024;

    /// Binds A and B and pairs every authenticated A with an authenticated B (a rendezvous).
    static asio::awaitable<pointer> server_to_server(Executor ex, options_type opts) {
        return create(connector_mode::server_to_server, std::move(ex), std::move(opts));
    }
    /// Binds A; each A is paired with an outbound connection to B (see `options::multi`).
    static asio::awaitable<pointer> server_to_socket(Executor ex, options_type opts) {
        return create(connector_mode::server_to_socket, std::move(ex), std::move(opts));
    }
    /// Connects to A, binds B, and pairs the first authenticated B with A.
    static asio::awaitable<pointer> socket_to_server(Executor ex, options_type opts) {
        return create(connector_mode::socket_to_server, std::move(ex), std::move(opts));
    }
    /// Connects to A and to B (at the same time) and pairs them.
    static asio::awaitable<pointer> socket_to_socket(Executor ex, options_type opts) {
        return create(connector_mode::socket_to_socket, std::move(ex), std::move(opts));
    }

    /// The factory for `mode`: completes once the servers are bound and the up-front outbound
    /// connections are made. Throws `std::system_error` naming the side, the endpoint and the
    /// system's reason (`bind A to 0.0.0.0:9000: Address already in use`).
    static asio::awaitable<pointer> create(connector_mode mode, Executor ex, options_type opts) {
        auto self = std::make_shared<basic_connector>(private_tag{}, mode, ex, std::move(opts));
        co_await asio::co_spawn(self->strand_, self->start(), asio::use_awaitable);
        co_return self;
    }
    /// As `create`, reporting failure in `ec` (and a null pointer) instead of throwing.
    static asio::awaitable<pointer> create(connector_mode mode, Executor ex, options_type opts,
                                           std::error_code& ec) {
        ec.clear();
        try {
            co_return co_await create(mode, std::move(ex), std::move(opts));
        } catch (const std::system_error& e) {
            ec = e.code();
        }
        co_return nullptr;
    }

    basic_connector(private_tag, connector_mode mode, Executor ex, options_type opts)
        : mode_(mode)
        , ex_(ex)
        , strand_(serial_executor(ex, opts.one_thread))
        , opts_(std::move(opts))
        , context_(std::make_shared<detail::relay_context>())
        , grace_timer_(strand_)
        , drain_timer_(strand_) {
        context_->log = opts_.logger ? opts_.logger : stderr_logger();
        context_->verbose = opts_.verbose;
        context_->log_traffic = opts_.log_traffic;
        context_->zero_copy = opts_.zero_copy;
        context_->one_thread = opts_.one_thread;
        if (opts_.idle_timeout != no_timeout && opts_.idle_timeout.count() > 0)
            context_->idle_timeout = opts_.idle_timeout;
    }

    basic_connector(const basic_connector&) = delete;
    basic_connector& operator=(const basic_connector&) = delete;
    /// A connector that never closed (its event loop went away first) leaves a shared limit
    /// group's counts as if it had.
    ~basic_connector() {
        closed_ = true;
        publish_counts();
    }

    connector_mode mode() const noexcept { return mode_; }
    executor_type get_executor() const { return ex_; }
    const options_type& options() const noexcept { return opts_; }

    /// The port side A / side B is bound to (the real one when 0 was asked); 0 for a socket side.
    unsigned short side_a_port() const noexcept { return port_a_; }
    unsigned short side_b_port() const noexcept { return port_b_; }
    /// The local endpoint a server side is bound to.
    endpoint_type side_a_endpoint() const { return local_a_; }
    endpoint_type side_b_endpoint() const { return local_b_; }

    /// Sides waiting in queue A / B (authenticated, not yet paired), and live connections.
    std::size_t pending_a() const noexcept { return pending_a_count_.load(); }
    std::size_t pending_b() const noexcept { return pending_b_count_.load(); }
    std::size_t connections() const noexcept { return live_count_.load(); }
    /// True once the connector has closed: servers stopped, every socket closed.
    bool closed() const noexcept { return closed_.load(); }

    /// A snapshot of the counters.
    socket_connector::stats stats() const {
        socket_connector::stats s;
        s.bytes_a_to_b = context_->bytes_a_to_b.load();
        s.bytes_b_to_a = context_->bytes_b_to_a.load();
        s.connections_open = live_count_.load();
        std::lock_guard lock(stats_mutex_);
        s.sockets_created = sockets_created_;
        s.connections_total = connections_total_;
        s.auth_failures = auth_failures_;
        s.sockets_refused = sockets_refused_;
        s.remote_addresses = remote_addresses_;
        return s;
    }

    /// Closes the connector: stops the servers, closes pending sides and live connections.
    /// Safe from any thread; `wait_closed()` tells when it is done.
    void close() {
        asio::dispatch(strand_, [self = this->shared_from_this()] {
            self->close_now("closed by the application");
        });
    }

    /// Stops accepting (the servers close, pending sides are closed) and lets the live
    /// connections finish on their own for up to `limit`; then closes what is left. Closes at
    /// once when nothing is live. Safe from any thread; `wait_closed()` tells when it is done.
    void drain(std::chrono::milliseconds limit) {
        asio::dispatch(strand_, [self = this->shared_from_this(), limit] {
            if (self->closing_ || self->draining_) return;
            if (limit.count() <= 0 || self->live_.empty())
                return self->close_now("draining: closed at once");
            self->draining_ = true;
            self->info("draining: {} connection(s) may finish within {} ms", self->live_.size(),
                       limit.count());
            self->stop_accepting();
            self->grace_timer_.cancel();
            self->drain_timer_.expires_after(limit);
            self->spawn(self->drain_deadline());
        });
    }

    /// Completes when the connector has closed (Dart's `done`).
    asio::awaitable<void> wait_closed() {
        auto self = this->shared_from_this(); // alive until the strand part is done
        co_await asio::co_spawn(strand_, wait_closed_on_strand(), asio::use_awaitable);
    }

    /// The next connection to form, in the order they form (Dart's `connectionStream`); null
    /// once the connector has closed. Up to `connection_queue_limit` connections that nobody
    /// has asked for yet are kept; past that the oldest are forgotten.
    asio::awaitable<std::shared_ptr<connection_type>> next_connection() {
        auto self = this->shared_from_this();
        co_return co_await asio::co_spawn(strand_, next_connection_on_strand(),
                                          asio::use_awaitable);
    }
    static constexpr std::size_t connection_queue_limit = 64;

private:
    // Member coroutines rather than capturing lambdas: g++ 12 mishandles the captures of a
    // lambda coroutine passed to co_spawn.
    asio::awaitable<void> wait_closed_on_strand() {
        while (!closed_)
            co_await closed_event_.wait(strand_);
    }

    asio::awaitable<std::shared_ptr<connection_type>> next_connection_on_strand() {
        while (formed_.empty() && !closing_)
            co_await formed_event_.wait(strand_);
        if (formed_.empty()) co_return nullptr;
        auto c = std::move(formed_.front());
        formed_.pop_front();
        co_return c;
    }

    // ---- start-up ---------------------------------------------------------------------------

    asio::awaitable<void> start() {
        using namespace asio::experimental::awaitable_operators;
        auto self = this->shared_from_this();
        try {
            switch (mode_) {
            // Results are named before use: g++ 12 mishandles temporaries in co_await expressions.
            case connector_mode::server_to_server: {
                auto a = co_await bind('A', opts_.a);
                acceptor_a_.emplace(std::move(a));
                auto b = co_await bind('B', opts_.b);
                acceptor_b_.emplace(std::move(b));
                break;
            }
            case connector_mode::server_to_socket: {
                targets_b_ = co_await resolve('B', opts_.b);
                auto a = co_await bind('A', opts_.a);
                acceptor_a_.emplace(std::move(a));
                if (!opts_.multi) {
                    auto b = co_await dial('B', targets_b_, opts_.b);
                    spawn(admit(dialed(std::move(b))));
                }
                break;
            }
            case connector_mode::socket_to_server: {
                auto b = co_await bind('B', opts_.b);
                acceptor_b_.emplace(std::move(b));
                auto targets_a = co_await resolve('A', opts_.a);
                auto a = co_await dial('A', targets_a, opts_.a);
                spawn(admit(dialed(std::move(a))));
                break;
            }
            case connector_mode::socket_to_socket: {
                auto targets_a = co_await resolve('A', opts_.a);
                auto targets_b = co_await resolve('B', opts_.b);
                std::shared_ptr<side_type> a, b;
                try {
                    std::tie(a, b) =
                        co_await (dial('A', targets_a, opts_.a) && dial('B', targets_b, opts_.b));
                } catch (const asio::multiple_exceptions& e) {
                    std::rethrow_exception(e.first_exception()); // both failed: report A's
                }
                spawn(admit(dialed(std::move(a))));
                spawn(admit(dialed(std::move(b))));
                break;
            }
            }
        } catch (...) {
            close_now("start-up failed");
            throw;
        }
        if (acceptor_a_) {
            local_a_ = acceptor_a_->local_endpoint();
            port_a_ = port_of(local_a_);
            spawn(accept_loop('A'));
        }
        if (acceptor_b_) {
            local_b_ = acceptor_b_->local_endpoint();
            port_b_ = port_of(local_b_);
            spawn(accept_loop('B'));
        }
        if (opts_.timeout != no_timeout) {
            grace_timer_.expires_after(opts_.timeout);
            spawn(grace());
        }
        co_return;
    }

    /// A side dialed during start-up; null means the dial was cancelled.
    static std::shared_ptr<side_type> dialed(std::shared_ptr<side_type> side) {
        if (!side) throw std::system_error(asio::error::operation_aborted, "connect cancelled");
        return side;
    }

    static unsigned short port_of(const endpoint_type& endpoint) {
        if constexpr (requires { endpoint.port(); }) {
            return endpoint.port();
        } else {
            return 0;
        }
    }

    const side_options_type& side_opts(char name) const { return name == 'A' ? opts_.a : opts_.b; }

    /// The endpoints a side names: its `host`/`port` resolved, or its `endpoint`.
    asio::awaitable<std::vector<endpoint_type>> resolve(char name, const side_options_type& so,
                                                        bool passive = false) {
        std::vector<endpoint_type> endpoints;
        if constexpr (requires { typename Protocol::resolver; }) {
            if (!so.host.empty() || !so.port.empty()) {
                typename Protocol::resolver resolver(strand_);
                auto flags =
                    passive ? Protocol::resolver::passive : typename Protocol::resolver::flags();
                // Named, not temporaries: g++ 12 destroys temporaries in a co_await twice.
                const std::string port = so.port.empty() ? std::string("0") : so.port;
                auto [ec, results] =
                    co_await resolver.async_resolve(so.host, port, flags, detail::use_tuple);
                if (ec)
                    throw std::system_error(
                        ec, fmt::format("resolve {} {}:{}", name, so.host, so.port));
                for (const auto& entry : results)
                    endpoints.push_back(entry.endpoint());
                co_return endpoints;
            }
        }
        endpoints.push_back(so.endpoint);
        co_return endpoints;
    }

    asio::awaitable<acceptor_type> bind(char name, const side_options_type& so) {
        auto endpoints = co_await resolve(name, so, true);
        const endpoint_type& endpoint = endpoints.front();
        acceptor_type acceptor(ex_);
        std::error_code ec;
        auto fail = [&](const char* what) {
            return std::system_error(
                ec, fmt::format("{} {} to {}", what, name, detail::to_string(endpoint)));
        };
        if (acceptor.open(endpoint.protocol(), ec); ec) throw fail("open");
        if constexpr (detail::is_tcp<Protocol>)
            acceptor.set_option(asio::socket_base::reuse_address(true), ec);
        if (so.reuse_port) {
#if defined(SO_REUSEPORT)
            using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;
            if (acceptor.set_option(reuse_port(true), ec); ec) throw fail("SO_REUSEPORT on");
#else
            ec = asio::error::operation_not_supported;
            throw fail("SO_REUSEPORT on");
#endif
        }
        if (acceptor.bind(endpoint, ec); ec) throw fail("bind");
        listener_sets_options_[name == 'A' ? 0 : 1] = set_options_to_inherit(acceptor, so);
        if (acceptor.listen(asio::socket_base::max_listen_connections, ec); ec)
            throw fail("listen");
        co_return acceptor;
    }

    /// Sets TCP_NODELAY and the side's keep-alive on a listening socket, where the system
    /// copies them to every socket it accepts (Linux): then an accepted socket needs no
    /// system call for them, instead of one to five. Whether they were all set.
    static bool set_options_to_inherit(acceptor_type& acceptor, const side_options_type& so) {
#if defined(__linux__)
        if constexpr (detail::is_tcp<Protocol>) {
            std::error_code ec;
            set_no_delay(acceptor, ec);
            if (!ec) set_keep_alive(acceptor, so.keepalive, ec, true);
            return !ec;
        }
#endif
        (void)acceptor;
        (void)so;
        return false;
    }

    /// Connects to the first of `targets` that answers within `connect_timeout`.
    asio::awaitable<std::shared_ptr<side_type>> dial(char name, std::vector<endpoint_type> targets,
                                                     const side_options_type& so) {
        using namespace asio::experimental::awaitable_operators;
        socket_type socket(ex_);
        dialing_.insert(&socket);
        asio::steady_timer timer(strand_, opts_.connect_timeout);
        auto outcome = co_await (asio::async_connect(socket, targets, detail::use_tuple) ||
                                 timer.async_wait(detail::use_tuple));
        dialing_.erase(&socket);
        std::error_code ec = asio::error::timed_out;
        endpoint_type remote{};
        if (outcome.index() == 0) std::tie(ec, remote) = std::get<0>(outcome);
        if (!ec && closing_) ec = asio::error::operation_aborted;
        // Cancelled (the connector is closing, or the other dial of a pair failed): the cause
        // is reported elsewhere.
        if (ec == asio::error::operation_aborted) co_return nullptr;
        if (ec)
            throw std::system_error(
                ec, fmt::format("connect {} to {}", name, target_name(targets, so)));
        co_return adopt(name, std::move(socket), remote);
    }

    /// How a dialed side's target is named in messages: as configured, or its first address.
    static std::string target_name(const std::vector<endpoint_type>& targets,
                                   const side_options_type& so) {
        return so.host.empty() && so.port.empty() ? detail::to_string(targets.front())
                                                  : fmt::format("{}:{}", so.host, so.port);
    }

    /// What runs an object's handlers one at a time: a new strand of `ex`, or `ex` itself when
    /// its io_context is run by one thread (nothing to serialise; a strand would only add a
    /// lock and a queue hop to every completion).
    static asio::any_io_executor serial_executor(const Executor& ex, bool one_thread) {
        if (one_thread) return ex;
        return asio::make_strand(ex);
    }

    // ---- sides ------------------------------------------------------------------------------

    /// Sets the socket options on a new socket (accepted from, or connected to, `remote`),
    /// counts it and wraps it in a side.
    std::shared_ptr<side_type> adopt(char name, socket_type socket, const endpoint_type& remote) {
        std::string peer = detail::to_string(remote);
        {
            std::lock_guard lock(stats_mutex_);
            ++sockets_created_;
            if (remote_addresses_.size() < stats_address_limit) {
                auto address = detail::address_of(remote);
                if (seen_addresses_.insert(address).second)
                    remote_addresses_.push_back(std::move(address));
            }
        }
        std::error_code ec;
        if (!socket.non_blocking()) socket.non_blocking(true, ec); // a dial may have set it
        const bool accepted = acceptor_of(name).has_value();
        if (!accepted || !listener_sets_options_[name == 'A' ? 0 : 1]) {
            set_no_delay(socket, ec);
            if (ec) log(log_level::warning, "{}: TCP_NODELAY on {}: {}", name, peer, ec.message());
            set_keep_alive(socket, side_opts(name).keepalive, ec, true);
            if (ec) log(log_level::warning, "{}: keep-alive on {}: {}", name, peer, ec.message());
        }
        auto side = std::make_shared<side_type>(name, std::move(socket), std::move(peer));
        side->transformer = side_opts(name).transform();
        info("{}: {} {}", name, accepted ? "accepted" : "connected to", side->remote());
        return side;
    }

    /// A side dialed once at start-up: if it goes before the pair forms, nothing can pair.
    bool is_up_front(char name) const {
        switch (mode_) {
        case connector_mode::server_to_socket:
            return name == 'B' && !opts_.multi;
        case connector_mode::socket_to_server:
            return name == 'A';
        case connector_mode::socket_to_socket:
            return true;
        default:
            return false;
        }
    }

    std::optional<acceptor_type>& acceptor_of(char name) {
        return name == 'A' ? acceptor_a_ : acceptor_b_;
    }
    std::deque<std::shared_ptr<side_type>>& queue_of(char name) {
        return name == 'A' ? pending_a_ : pending_b_;
    }
    const std::deque<std::shared_ptr<side_type>>& queue_of(char name) const {
        return name == 'A' ? pending_a_ : pending_b_;
    }

    /// Most connections one turn of an accept loop takes from the backlog, without a trip
    /// through the event loop for each, before it lets other work run.
    static constexpr int accepts_per_turn = 64;

    asio::awaitable<void> accept_loop(char name) {
        auto self = this->shared_from_this();
        auto& acceptor = *acceptor_of(name);
        endpoint_type peer;
        // A non-blocking listener: the connections that queue up while one is handled are
        // taken at once, in this turn, instead of one completion (and one epoll_wait) each.
        std::error_code nb;
        acceptor.non_blocking(true, nb);
        // On Linux the loop waits for the listener to be readable and accepts itself, with
        // accept4: each socket comes non-blocking (see detail/native_socket.hpp).
        const bool by_hand = detail::native_sockets && !nb;
        for (;;) {
            std::error_code ec;
            socket_type socket(ex_);
            if (by_hand) {
                auto [wait_ec] =
                    co_await acceptor.async_wait(acceptor_type::wait_read, detail::use_tuple);
                ec = wait_ec;
                if (!ec) detail::accept_non_blocking(acceptor, socket, peer, ec);
            } else {
                std::tie(ec, socket) = co_await acceptor.async_accept(peer, detail::use_tuple);
            }
            for (int taken = 0;;) {
                if (closing_ || !acceptor.is_open() || ec == asio::error::operation_aborted)
                    co_return;
                // Readable, but the connection went (or was never there): wait again.
                if (ec == asio::error::would_block || ec == asio::error::try_again) break;
                if (ec) {
                    if (!accept_failed(name, ec)) break;
                    // Out of descriptors or memory: wait rather than spin on the backlog.
                    asio::steady_timer pause(strand_, std::chrono::milliseconds(100));
                    co_await pause.async_wait(detail::use_tuple);
                    break;
                }
                accepted(name, std::move(socket), peer, by_hand);
                if (nb || ++taken == accepts_per_turn) break;
                detail::accept_non_blocking(acceptor, socket, peer, ec); // moved from: closed
            }
        }
    }

    /// Logs a failed accept; true if it says the process is out of descriptors or memory.
    bool accept_failed(char name, const std::error_code& ec) {
        log(log_level::warning, "{}: accept: {}", name, ec.message());
        return ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space ||
               ec == asio::error::no_memory ||
               ec == std::error_code(ENFILE, asio::error::get_system_category());
    }

    /// Takes a socket just accepted on side `name`: refused (a limit is hit), or adopted and
    /// authenticated or queued. `unseen`: accepted by hand in this handler, so registered with
    /// the event loop just now (see `enqueue`).
    void accepted(char name, socket_type socket, const endpoint_type& peer, bool unseen) {
        if (auto why = over_limit(name); !why.empty()) return refuse(name, socket, peer, why);
        auto side = adopt(name, std::move(socket), peer);
        if (side_opts(name).auth)
            spawn(admit(std::move(side)));
        else
            enqueue(std::move(side), unseen); // nothing to wait for: no coroutine
    }

    /// Why a socket just accepted on side `name` may not be kept (a limit is hit), or empty.
    std::string over_limit(char name) const {
        const auto& group = opts_.limit_group;
        if (opts_.max_connections > 0) {
            auto live = group ? group->connections() : live_.size();
            if (mode_ == connector_mode::server_to_socket && opts_.multi) {
                // Every A a proxy keeps becomes a pair once its B is connected: those still
                // authenticating or being dialed count already, or a burst of As would pass
                // the limit while their dials are under way.
                auto coming = group ? group->pending_a() : waiting_on('A');
                if (live + coming >= opts_.max_connections)
                    return fmt::format("{} connections open and {} being made (max_connections)",
                                       live, coming);
            } else if (live >= opts_.max_connections) {
                return fmt::format("{} connections open (max_connections)", live);
            }
        }
        if (opts_.max_pending > 0) {
            auto waiting =
                group ? (name == 'A' ? group->pending_a() : group->pending_b()) : waiting_on(name);
            if (waiting >= opts_.max_pending)
                return fmt::format("{} {} sockets already pending (max_pending)", waiting, name);
        }
        return {};
    }

    /// Closes a socket that a limit keeps out, logging why: the first refusal at once, then at
    /// most one line a second with the number refused meanwhile (a flood must not flood the log).
    void refuse(char name, socket_type& socket, const endpoint_type& peer, const std::string& why) {
        {
            // Counted before the close: a client that sees its socket closed, on any thread,
            // must find the refusal in stats().
            std::lock_guard lock(stats_mutex_);
            ++sockets_refused_;
        }
        std::error_code ignored;
        socket.close(ignored);
        ++refused_unlogged_;
        auto now = std::chrono::steady_clock::now();
        if (now - refusal_logged_ < std::chrono::seconds(1)) return;
        if (refused_unlogged_ > 1)
            log(log_level::warning, "{}: refused {} ({} more since the last report): {}", name,
                detail::to_string(peer), refused_unlogged_ - 1, why);
        else
            log(log_level::warning, "{}: refused {}: {}", name, detail::to_string(peer), why);
        refused_unlogged_ = 0;
        refusal_logged_ = now;
    }

    /// Authenticates a new side (if it has a verifier), then queues it for pairing.
    asio::awaitable<void> admit(std::shared_ptr<side_type> side) {
        auto self = this->shared_from_this();
        if (co_await authenticate(side)) enqueue(std::move(side));
    }

    /// Runs the side's verifier, bounded by `auth_timeout`; false (and the side closed) if it
    /// failed or the connector is closing. Sides accepted and sides dialed are both checked.
    asio::awaitable<bool> authenticate(const std::shared_ptr<side_type>& side) {
        using namespace asio::experimental::awaitable_operators;
        const auto& verify = side_opts(side->name()).auth;
        if (verify) {
            authenticating_.insert(side);
            ++(side->name() == 'A' ? authenticating_a_ : authenticating_b_);
            publish_counts();
            std::string failure;
            try {
                asio::steady_timer timer(strand_, opts_.auth_timeout);
                auto outcome = co_await (verify_caught(verify, side->socket_, failure) ||
                                         timer.async_wait(asio::use_awaitable));
                if (outcome.index() == 1) {
                    failure = "timed out";
                } else if (auto& result = std::get<0>(outcome); !result.ok) {
                    if (failure.empty()) failure = "rejected";
                } else {
                    side->early_ = std::move(result.leftover);
                }
            } catch (const std::exception& e) {
                failure = e.what();
            }
            authenticating_.erase(side);
            --(side->name() == 'A' ? authenticating_a_ : authenticating_b_);
            publish_counts();
            if (closing_ || side->state_ == side_state::closed) {
                close_side(*side);
                co_return false;
            }
            if (!failure.empty()) {
                {
                    std::lock_guard lock(stats_mutex_);
                    ++auth_failures_;
                }
                log(log_level::warning, "{}: authentication of {} failed: {}", side->name(),
                    side->remote(), failure);
                close_side(*side);
                if (is_up_front(side->name()) && !paired_once_) {
                    close_now(fmt::format("{} failed authentication", side->name()));
                } else {
                    maybe_finish();
                }
                co_return false;
            }
            info("{}: {} authenticated", side->name(), side->remote());
        }
        co_return true;
    }

    /// Runs a verifier, turning its exception into a failure: `||` waits for the first
    /// operation that succeeds, so a throwing verifier would otherwise wait out the timeout.
    static asio::awaitable<auth_result> verify_caught(const any_auth_verifier<socket_type>& verify,
                                                      socket_type& socket, std::string& failure) {
        try {
            co_return co_await verify(socket);
        } catch (const std::exception& e) {
            failure = e.what();
        }
        co_return auth_result{};
    }

    /// Puts an authenticated side in its queue, watches it, and pairs what can be paired.
    /// `unseen`: the side's socket was registered with the event loop in this very handler
    /// (accepted just now), so none of its events has been taken yet (see `read_sent`).
    void enqueue(std::shared_ptr<side_type> side, bool unseen = false) {
        if (closing_) {
            close_side(*side);
            return;
        }
        side->state_ = side_state::pending;
        queue_of(side->name()).push_back(side);
        update_counts();
        if (mode_ == connector_mode::server_to_socket && opts_.multi) {
            // Paired as soon as its B is connected: what it sends meanwhile waits in the
            // kernel, and a departure shows once the pair relays. No watcher needed.
            dial_for(std::move(side), unseen);
        } else {
            spawn(watch(side));
            try_pair();
        }
    }

    /// One attempt to connect a B for a multi-mode A, driven by completion handlers (no
    /// coroutine frame): the targets in turn, each a non-blocking connect, then (unless it is
    /// established already) a wait for writability and SO_ERROR; all of it bounded by
    /// `connect_timeout`.
    struct dial_attempt {
        dial_attempt(const Executor& ex, const asio::any_io_executor& strand)
            : socket(ex)
            , timer(strand) {}
        socket_type socket;
        asio::steady_timer timer;
        std::size_t next = 0; // the next of targets_b_ to try
        bool timer_armed = false;
        bool timed_out = false;
        bool done = false;
        bool data_first = false; // bytes are ready to go to B as soon as it is connected
        bool send_ahead = false; // and they may be sent by the dial itself (see `send_ahead`)
        bool waited = false;     // the event loop has waited since the socket was registered
        std::error_code last;    // why the last target failed
    };
    using attempt_ptr = std::shared_ptr<dial_attempt>;

    /// server_to_socket with `multi`: dials a B for this A, then pairs them.
    ///
    /// What A has sent already is read first: when there is some (a client that speaks first
    /// has usually sent its request by the time it is accepted), it is the first thing B gets,
    /// so B's handshake can end with those bytes instead of a bare ACK (`delay_handshake_ack`).
    void dial_for(std::shared_ptr<side_type> a, bool unseen) {
        if (auto ec = read_sent(*a, unseen)) return drop(a, ec.message());
        auto attempt = std::make_shared<dial_attempt>(ex_, strand_);
        // With a verifier for B, B's authentication goes first, and B may be the one to speak.
        attempt->data_first = !a->early_.empty() && !opts_.b.auth;
        // Only bytes that go out unchanged: no transformer, no traffic log, and no hook that
        // could set a transformer for the pair first.
        attempt->send_ahead =
            attempt->data_first && !a->transformer && !opts_.log_traffic && !opts_.before_joining;
        dialing_.insert(&attempt->socket);
        // Armed only if a connect has to be waited for: a local peer usually answers at once.
        attempt->timer.expires_after(opts_.connect_timeout);
        connect_next(std::move(a), std::move(attempt));
    }

    /// Starts the attempt's connect_timeout, once: when it first waits for a connect.
    void arm_dial_timer(const attempt_ptr& attempt) {
        if (attempt->timer_armed) return;
        attempt->timer_armed = true;
        attempt->timer.async_wait(asio::bind_executor(
            strand_, [self = this->shared_from_this(), attempt](std::error_code ec) {
                if (ec || attempt->done) return;
                attempt->timed_out = true;
                std::error_code ignored;
                attempt->socket.close(ignored); // its wait completes, aborted
            }));
    }

    /// Tries the next target of a B dial; completes the dial when none is left.
    void connect_next(std::shared_ptr<side_type> a, attempt_ptr attempt) {
        auto& socket = attempt->socket;
        while (attempt->next < targets_b_.size()) {
            const auto& target = targets_b_[attempt->next++];
            std::error_code ec;
            if (socket.is_open()) socket.close(ec);
            detail::open_non_blocking(socket, target.protocol(), ec);
            if (ec) {
                attempt->last = ec;
                continue;
            }
            attempt->waited = false; // a new socket, registered just now
            if (attempt->data_first) detail::delay_handshake_ack(socket);
#if defined(ASIO_WINDOWS) || defined(__CYGWIN__)
            arm_dial_timer(attempt);
            attempt->waited = true;
            socket.async_connect(target, connected_handler(std::move(a), std::move(attempt)));
            return;
#else
            // Asio's async_connect would poll() the socket and set it non-blocking again.
            if (::connect(socket.native_handle(), target.data(),
                          static_cast<socklen_t>(target.size())) == 0)
                return dial_done(std::move(a), std::move(attempt), {});
            if (errno == EINPROGRESS || errno == EINTR) {
                // Often already established when connect() returns (the handshake with a
                // local peer completes before it does): then no wait, no SO_ERROR.
                if (attempt->send_ahead) {
                    auto sent = send_ahead(*a, socket);
                    if (!sent) return dial_done(std::move(a), std::move(attempt), {});
                    if (sent != asio::error::would_block && sent != asio::error::try_again) {
                        attempt->last = sent; // the connect failed
                        continue;
                    }
                } else if (has_peer(socket)) {
                    return dial_done(std::move(a), std::move(attempt), {});
                }
                // Under way: writable once established or failed.
                arm_dial_timer(attempt);
                attempt->waited = true;
                socket.async_wait(socket_type::wait_write,
                                  connected_handler(std::move(a), std::move(attempt)));
                return;
            }
            attempt->last.assign(errno, std::system_category());
#endif
        }
        auto last = attempt->last;
        dial_done(std::move(a), std::move(attempt), last);
    }

    /// Completes a connect under way to one target of a B dial.
    auto connected_handler(std::shared_ptr<side_type> a, attempt_ptr attempt) {
        auto on_connected = [self = this->shared_from_this(), a = std::move(a),
                             attempt = std::move(attempt)](std::error_code ec) mutable {
#if !defined(ASIO_WINDOWS) && !defined(__CYGWIN__)
            if (!ec) ec = pending_error(attempt->socket);
#endif
            self->connect_done(std::move(a), std::move(attempt), ec);
        };
        return asio::bind_executor(strand_, std::move(on_connected));
    }

#if !defined(ASIO_WINDOWS) && !defined(__CYGWIN__)
    /// Whether a socket is connected (has a peer) already.
    static bool has_peer(socket_type& socket) {
        ::sockaddr_storage peer{};
        socklen_t length = sizeof peer;
        return ::getpeername(socket.native_handle(), reinterpret_cast<::sockaddr*>(&peer),
                             &length) == 0;
    }

    /// Sends A's first bytes on a B socket whose connect is under way, without waiting: this
    /// is also what finds out whether the handshake is done (sent: established, and its last
    /// ACK leaves with them; would_block: still under way; another error: the connect failed).
    /// Saves the `getpeername` check and a turn of the event loop for the first write. What
    /// was sent leaves A's early bytes and is counted when the pair starts.
    static std::error_code send_ahead(side_type& a, socket_type& socket) {
        std::error_code ec;
        auto n = socket.send(asio::buffer(a.early_), 0, ec); // non-blocking: would_block
        if (ec) return ec;
        a.early_.erase(a.early_.begin(), a.early_.begin() + static_cast<std::ptrdiff_t>(n));
        a.early_sent_ += n;
        return {};
    }

    /// The outcome of a non-blocking connect, once its socket is writable.
    static std::error_code pending_error(socket_type& socket) {
        int error = 0;
        socklen_t length = sizeof error;
        if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_ERROR, &error, &length) != 0)
            error = errno;
        return error ? std::error_code(error, std::system_category()) : std::error_code();
    }
#endif

    /// A connect to one target has completed: done, or on to the next target.
    void connect_done(std::shared_ptr<side_type> a, attempt_ptr attempt, std::error_code ec) {
        if (attempt->timed_out)
            return dial_done(std::move(a), std::move(attempt), asio::error::timed_out);
        if (!ec || ec == asio::error::operation_aborted || closing_)
            return dial_done(std::move(a), std::move(attempt), ec);
        attempt->last = ec;
        connect_next(std::move(a), std::move(attempt));
    }

    /// The B dial for `a` has ended: pair them, or close `a` with the reason logged.
    void dial_done(std::shared_ptr<side_type> a, attempt_ptr attempt, std::error_code ec) {
        attempt->done = true;
        if (attempt->timer_armed) attempt->timer.cancel();
        dialing_.erase(&attempt->socket);
        if (!ec && closing_) ec = asio::error::operation_aborted;
        if (ec) {
            std::error_code ignored;
            attempt->socket.close(ignored);
            // Cancelled: the connector is closing, and says so itself.
            if (ec != asio::error::operation_aborted && a->state_ == side_state::pending)
                log(log_level::warning, "connect B to {}: {}; closing A {}",
                    target_name(targets_b_, opts_.b), ec.message(), a->remote());
            drop(a, "");
            return;
        }
        auto b = adopt('B', std::move(attempt->socket), targets_b_[attempt->next - 1]);
        if (opts_.b.auth) {
            spawn(authenticate_then_pair(std::move(a), std::move(b)));
            return;
        }
        b->drained_ = true; // just connected: nothing read from it yet
        // Connected in the handler that registered the socket with the event loop: no
        // epoll_wait has taken its entry since, so whatever B has sent meanwhile (a server that
        // speaks first, an end of stream) keeps the entry on epoll's ready list and is reported
        // by the next epoll_wait, which undoes the mark. Its first receive need not try.
        if (!attempt->waited) emptied(*b);
        pair_dialed(std::move(a), std::move(b));
    }

    asio::awaitable<void> authenticate_then_pair(std::shared_ptr<side_type> a,
                                                 std::shared_ptr<side_type> b) {
        auto self = this->shared_from_this();
        if (!co_await authenticate(b)) {
            drop(a, "");
            co_return;
        }
        pair_dialed(std::move(a), std::move(b));
    }

    /// Reads what a pending side has sent so far, without waiting, into its early bytes (at most
    /// `first_read_size`); a side that has nothing to read is left as it is, and one that has
    /// ended its stream is marked so. After a read that took everything, the relay's first
    /// read of the side waits for more rather than finding nothing. The read's error, if any.
    ///
    /// A read that would block marks the side empty (`emptied`). A short read does so only for
    /// an `unseen` side: in general the end of stream may have come with its bytes and its
    /// event been taken already, and then only the next read would see it. But the socket of
    /// an unseen side has been on epoll's ready list since it was registered with bytes waiting
    /// or bytes came (no epoll_wait has taken it since), and epoll_wait checks what is ready as
    /// it takes an entry: an end of stream behind the bytes is reported then, which undoes the
    /// mark, and an entry with nothing left is dropped, so the receive waits without a try.
    std::error_code read_sent(side_type& side, bool unseen) {
        if (!side.early_.empty() || side.early_eof_) return {};
        std::array<char, first_read_size> bytes;
        std::error_code ec;
        auto n = side.socket_.receive(asio::buffer(bytes), 0, ec);
        if (ec == asio::error::would_block || ec == asio::error::try_again) {
            emptied(side);
            return {};
        }
        if (ec == asio::error::eof) {
            side.early_eof_ = true;
            return {};
        }
        if (ec) return ec;
        side.early_.assign(bytes.data(), bytes.data() + n);
        // Most likely all there is, so the relay's first read of the side is its receive that
        // waits.
        side.drained_ = n < bytes.size();
        if (side.drained_ && unseen) emptied(side);
        return {};
    }

    /// A read of `side` has just shown it empty (see `read_sent`): its next receive need not
    /// try first, on an io_context that one thread runs (detail::mark_drained; any event of the
    /// side that the event loop takes before that receive undoes the mark).
    void emptied(side_type& side) {
        if (opts_.one_thread) detail::mark_drained(side.socket_);
    }

    /// Pairs a multi-mode A with the B dialed for it, unless A has gone meanwhile.
    void pair_dialed(std::shared_ptr<side_type> a, std::shared_ptr<side_type> b) {
        if (a->state_ != side_state::pending || closing_) {
            close_side(*b);
            maybe_finish();
            return;
        }
        b->state_ = side_state::pending;
        pair(std::move(a), std::move(b));
    }

    /// While a side waits for its partner, keeps what it sends (up to `pending_byte_limit`)
    /// and notices if it goes away.
    asio::awaitable<void> watch(std::shared_ptr<side_type> side) {
        auto self = this->shared_from_this();
        while (side->state_ == side_state::pending && !side->early_eof_ &&
               side->early_.size() < pending_byte_limit) {
            auto [ec] =
                co_await side->socket_.async_wait(socket_type::wait_read, detail::use_tuple);
            if (side->state_ != side_state::pending) co_return; // paired or closed meanwhile
            if (ec) {
                drop(side, ec.message());
                co_return;
            }
            // Read into a pooled buffer and keep exactly what came: a side that sent a few
            // bytes (or none: readiness can be spurious) holds no more than that.
            detail::pooled_buffer buf;
            auto room = pending_byte_limit - side->early_.size();
            auto n = side->socket_.read_some(
                asio::buffer(buf.data(), std::min(room, detail::pooled_buffer::size())), ec);
            if (!ec) side->early_.insert(side->early_.end(), buf.data(), buf.data() + n);
            if (ec == asio::error::would_block || ec == asio::error::try_again) continue;
            if (ec == asio::error::eof && !side->early_.empty()) {
                // Half-closed after sending something: keep it; the bytes and the end of
                // stream are relayed once it is paired.
                side->early_eof_ = true;
                info("{}: {} ended its stream while pending ({} bytes kept)", side->name(),
                     side->remote(), side->early_.size());
            } else if (ec == asio::error::eof) {
                drop(side, "disconnected");
            } else if (ec) {
                drop(side, ec.message());
            }
        }
    }

    /// Takes a side out of its queue and closes it.
    void drop(const std::shared_ptr<side_type>& side, const std::string& why) {
        auto& queue = queue_of(side->name());
        std::erase(queue, side);
        update_counts();
        if (!why.empty()) info("{}: {} left while pending: {}", side->name(), side->remote(), why);
        close_side(*side);
        if (is_up_front(side->name()) && !paired_once_ && !closing_) {
            close_now(fmt::format("{} closed before it could be paired", side->name()));
            return;
        }
        maybe_finish();
    }

    void close_side(side_type& side) {
        side.state_ = side_state::closed;
        std::error_code ignored;
        side.socket_.close(ignored);
    }

    // ---- pairing ----------------------------------------------------------------------------

    void try_pair() {
        while (!pending_a_.empty() && !pending_b_.empty()) {
            auto a = pending_a_.front();
            auto b = pending_b_.front();
            pair(a, b);
        }
    }

    /// Joins a pending A and a pending B into a connection and starts it.
    void pair(std::shared_ptr<side_type> a, std::shared_ptr<side_type> b) {
        std::erase(pending_a_, a);
        std::erase(pending_b_, b);
        std::error_code ignored;
        // Ends the watchers; they see the new state and leave the sockets alone.
        a->state_ = side_state::joined;
        b->state_ = side_state::joined;
        a->socket_.cancel(ignored);
        b->socket_.cancel(ignored);
        std::uint64_t id;
        {
            std::lock_guard lock(stats_mutex_);
            id = ++connections_total_;
        }
        auto c = std::make_shared<connection_type>(serial_executor(ex_, opts_.one_thread), a, b, id,
                                                   context_);
        paired_once_ = true;
        if (opts_.before_joining) {
            try {
                opts_.before_joining(*c);
            } catch (const std::exception& e) {
                log(log_level::error, "connection {}: before_joining failed: {}", id, e.what());
                close_side(*a);
                close_side(*b);
                update_counts();
                maybe_finish();
                return;
            }
        }
        live_.insert(c);
        formed_.push_back(c);
        if (formed_.size() > connection_queue_limit) formed_.pop_front();
        update_counts();
        info("connection {}: A {} <-> B {}", id, a->remote(), b->remote());
        std::weak_ptr<basic_connector> weak = this->shared_from_this();
        c->start([weak](std::shared_ptr<connection_type> done, std::string reason) {
            // Posted: the connector learns of it in a turn of its own, also when it shares
            // the connection's thread and executor (one_thread).
            if (auto self = weak.lock())
                asio::post(self->strand_,
                           [self, done = std::move(done), reason = std::move(reason)] {
                               self->connection_ended(done, reason);
                           });
        });
        if (mode_ != connector_mode::server_to_server &&
            !(mode_ == connector_mode::server_to_socket && opts_.multi))
            stop_accepting();
        formed_event_.notify_all();
    }

    /// Stops the servers and closes every side not yet paired. Single-pair modes do this once
    /// their pair has formed (no other side can ever be served); closing does it too.
    void stop_accepting() {
        std::error_code ignored;
        for (auto* acceptor : {&acceptor_a_, &acceptor_b_})
            if (*acceptor && (*acceptor)->is_open()) (*acceptor)->close(ignored);
        for (auto* queue : {&pending_a_, &pending_b_}) {
            for (auto& side : *queue)
                close_side(*side);
            queue->clear();
        }
        for (auto& side : authenticating_)
            close_side(*side);
        update_counts();
    }

    void connection_ended(const std::shared_ptr<connection_type>& c, const std::string& reason) {
        live_.erase(c);
        update_counts();
        info("connection {} closed: {} (A->B {} bytes, B->A {} bytes)", c->id(), reason,
             c->bytes_a_to_b(), c->bytes_b_to_a());
        maybe_finish();
    }

    // ---- lifecycle --------------------------------------------------------------------------

    asio::awaitable<void> grace() {
        auto self = this->shared_from_this();
        auto [ec] = co_await grace_timer_.async_wait(detail::use_tuple);
        if (ec || closing_) co_return;
        grace_passed_ = true;
        info("grace period of {} ms has passed", opts_.timeout.count());
        maybe_finish();
    }

    asio::awaitable<void> drain_deadline() {
        auto self = this->shared_from_this();
        auto [ec] = co_await drain_timer_.async_wait(detail::use_tuple);
        if (ec || closing_) co_return;
        close_now(fmt::format("drain timeout: closing {} connection(s)", live_.size()));
    }

    /// Closes the connector if nothing is left for it to do.
    void maybe_finish() {
        if (closing_) {
            if (live_.empty() && !closed_) finish_close();
            return;
        }
        if (!live_.empty()) return;
        if (draining_) {
            close_now("drained: every connection has ended");
            return;
        }
        if (grace_passed_) {
            close_now(paired_once_ ? "the last connection ended after the grace period"
                                   : "no connection within the grace period");
            return;
        }
        bool can_accept =
            (acceptor_a_ && acceptor_a_->is_open()) || (acceptor_b_ && acceptor_b_->is_open());
        if (paired_once_ && !can_accept && pending_a_.empty() && pending_b_.empty() &&
            authenticating_.empty() && dialing_.empty())
            close_now("its only connection has ended");
    }

    void close_now(const std::string& reason) {
        if (closing_) return;
        closing_ = true;
        info("closing: {}", reason);
        std::error_code ignored;
        grace_timer_.cancel();
        drain_timer_.cancel();
        stop_accepting();
        for (auto* socket : dialing_)
            socket->close(ignored);
        for (auto& c : live_)
            c->close();
        update_counts();
        formed_event_.notify_all(); // next_connection() returns null from now on
        if (live_.empty()) finish_close();
    }

    void finish_close() {
        closed_ = true;
        publish_counts(); // takes this connector's counts out of a shared limit group
        info("closed");
        closed_event_.notify_all();
    }

    // ---- helpers ----------------------------------------------------------------------------

    void update_counts() {
        pending_a_count_ = pending_a_.size();
        pending_b_count_ = pending_b_.size();
        live_count_ = live_.size();
        publish_counts();
    }

    /// Sockets of side `name` authenticating or waiting for a partner.
    std::size_t waiting_on(char name) const {
        return queue_of(name).size() + (name == 'A' ? authenticating_a_ : authenticating_b_);
    }

    /// Brings this connector's share of `limit_group`'s counts up to date (zero once closed).
    void publish_counts() {
        const auto& group = opts_.limit_group;
        if (!group) return;
        auto move_to = [](std::atomic<std::size_t>& total, std::size_t& mine, std::size_t now) {
            if (now >= mine)
                total.fetch_add(now - mine);
            else
                total.fetch_sub(mine - now);
            mine = now;
        };
        const bool gone = closed_.load();
        move_to(group->connections_, published_live_, gone ? 0 : live_.size());
        move_to(group->pending_a_, published_waiting_a_, gone ? 0 : waiting_on('A'));
        move_to(group->pending_b_, published_waiting_b_, gone ? 0 : waiting_on('B'));
    }

    template <class... Args>
    void log(log_level level, fmt::format_string<Args...> format, Args&&... args) {
        context_->log(level, fmt::format(format, std::forward<Args>(args)...));
    }
    template <class... Args>
    void info(fmt::format_string<Args...> format, Args&&... args) {
        if (opts_.verbose) log(log_level::info, format, std::forward<Args>(args)...);
    }

    /// Runs a coroutine on the strand; an exception escaping it is logged, never lost.
    void spawn(asio::awaitable<void> task) {
        asio::co_spawn(strand_, std::move(task), [context = context_](std::exception_ptr e) {
            if (!e) return;
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& ex) {
                context->log(log_level::error, fmt::format("internal task failed: {}", ex.what()));
            }
        });
    }

    connector_mode mode_;
    Executor ex_;
    /// Runs the connector's handlers one at a time (see `serial_executor`).
    asio::any_io_executor strand_;
    options_type opts_;
    std::shared_ptr<detail::relay_context> context_;

    // State below is touched only on strand_ (except the atomics and what stats_mutex_ guards).
    std::optional<acceptor_type> acceptor_a_;
    std::optional<acceptor_type> acceptor_b_;
    endpoint_type local_a_{};
    endpoint_type local_b_{};
    // Whether side A's / B's listener carries the socket options its accepted sockets inherit.
    bool listener_sets_options_[2] = {false, false};
    unsigned short port_a_ = 0;
    unsigned short port_b_ = 0;
    std::vector<endpoint_type> targets_b_;
    std::deque<std::shared_ptr<side_type>> pending_a_;
    std::deque<std::shared_ptr<side_type>> pending_b_;
    std::set<std::shared_ptr<side_type>> authenticating_;
    std::set<socket_type*> dialing_;
    std::set<std::shared_ptr<connection_type>> live_;
    std::deque<std::shared_ptr<connection_type>> formed_;
    asio::steady_timer grace_timer_;
    asio::steady_timer drain_timer_;
    // Wakes next_connection() (a connection formed, or closing) and wait_closed() (closed).
    detail::strand_event formed_event_;
    detail::strand_event closed_event_;
    bool grace_passed_ = false;
    bool draining_ = false;
    std::size_t authenticating_a_ = 0; // sides of authenticating_ that are A / B
    std::size_t authenticating_b_ = 0;
    // This connector's share of opts_.limit_group's counts.
    std::size_t published_live_ = 0;
    std::size_t published_waiting_a_ = 0;
    std::size_t published_waiting_b_ = 0;
    // Refusals (limits hit) since the last one was logged, and when that was.
    std::uint64_t refused_unlogged_ = 0;
    std::chrono::steady_clock::time_point refusal_logged_{};
    bool paired_once_ = false;
    bool closing_ = false;

    std::atomic<bool> closed_{false};
    std::atomic<std::size_t> pending_a_count_{0};
    std::atomic<std::size_t> pending_b_count_{0};
    std::atomic<std::size_t> live_count_{0};

    mutable std::mutex stats_mutex_;
    std::uint64_t sockets_created_ = 0;
    std::uint64_t connections_total_ = 0;
    std::uint64_t auth_failures_ = 0;
    std::uint64_t sockets_refused_ = 0;
    std::vector<std::string> remote_addresses_;
    std::set<std::string> seen_addresses_;
};

/// The TCP connector, the one most programs use.
using connector = basic_connector<asio::ip::tcp, asio::any_io_executor>;

/// The four factories for TCP connectors; see `basic_connector` for what each does.
inline asio::awaitable<std::shared_ptr<connector>> server_to_server(asio::any_io_executor ex,
                                                                    options opts) {
    return connector::create(connector_mode::server_to_server, std::move(ex), std::move(opts));
}
inline asio::awaitable<std::shared_ptr<connector>> server_to_socket(asio::any_io_executor ex,
                                                                    options opts) {
    return connector::create(connector_mode::server_to_socket, std::move(ex), std::move(opts));
}
inline asio::awaitable<std::shared_ptr<connector>> socket_to_server(asio::any_io_executor ex,
                                                                    options opts) {
    return connector::create(connector_mode::socket_to_server, std::move(ex), std::move(opts));
}
inline asio::awaitable<std::shared_ptr<connector>> socket_to_socket(asio::any_io_executor ex,
                                                                    options opts) {
    return connector::create(connector_mode::socket_to_socket, std::move(ex), std::move(opts));
}

/// The same, reporting a failure in `ec` (with a null connector) instead of throwing.
inline asio::awaitable<std::shared_ptr<connector>>
server_to_server(asio::any_io_executor ex, options opts, std::error_code& ec) {
    return connector::create(connector_mode::server_to_server, std::move(ex), std::move(opts), ec);
}
inline asio::awaitable<std::shared_ptr<connector>>
server_to_socket(asio::any_io_executor ex, options opts, std::error_code& ec) {
    return connector::create(connector_mode::server_to_socket, std::move(ex), std::move(opts), ec);
}
inline asio::awaitable<std::shared_ptr<connector>>
socket_to_server(asio::any_io_executor ex, options opts, std::error_code& ec) {
    return connector::create(connector_mode::socket_to_server, std::move(ex), std::move(opts), ec);
}
inline asio::awaitable<std::shared_ptr<connector>>
socket_to_socket(asio::any_io_executor ex, options opts, std::error_code& ec) {
    return connector::create(connector_mode::socket_to_socket, std::move(ex), std::move(opts), ec);
}

} // namespace socket_connector
