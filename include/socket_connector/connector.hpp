#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/bind_executor.hpp>
#include <asio/co_spawn.hpp>
#include <asio/dispatch.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/multiple_exceptions.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/format.h>

#include <socket_connector/connection.hpp>
#include <socket_connector/detail/admission.hpp>
#include <socket_connector/detail/dialer.hpp>
#include <socket_connector/detail/early_bytes.hpp>
#include <socket_connector/detail/endpoints.hpp>
#include <socket_connector/detail/lifecycle.hpp>
#include <socket_connector/detail/listener.hpp>
#include <socket_connector/detail/options_argument.hpp>
#include <socket_connector/detail/pairing.hpp>
#include <socket_connector/detail/printable.hpp>
#include <socket_connector/detail/proxy_reader.hpp>
#include <socket_connector/detail/strand_event.hpp>
#include <socket_connector/detail/tls_io.hpp>
#include <socket_connector/detail/use_tuple.hpp>
#include <socket_connector/logging.hpp>
#include <socket_connector/options.hpp>
#include <socket_connector/side.hpp>
#include <socket_connector/socket_options.hpp>
#include <socket_connector/stats.hpp>

namespace socket_connector {

/// Which shape a connector has: each side is a server (it accepts) or a socket (the connector
/// dials out); `one_server` accepts both sides on one endpoint.
enum class connector_mode {
    server_to_server,
    server_to_socket,
    socket_to_server,
    socket_to_socket,
    one_server
};

namespace detail {
/// Lets the factories make a connector; users make one with a factory.
struct connector_key {};
} // namespace detail

/// Joins sockets from side A with sockets from side B, pairwise, and relays between them.
///
/// Made by one of the factories (or `create`). A side is accepted by a listener or dialed by a
/// dialer, admitted by its auth verifier, waits for a partner (first in, first out, or the other
/// side of the key its verifier named), and is joined with it into a connection. All of the
/// connector's own state lives on one strand (or, with `io_run_by_one_thread`, on its executor's
/// one thread); its public members may be called from any thread. Its coroutines keep it alive
/// until it has closed.
template <class Protocol = asio::ip::tcp, class Executor = asio::any_io_executor>
class basic_connector : public std::enable_shared_from_this<basic_connector<Protocol, Executor>> {
public:
    using protocol_type = Protocol;
    using executor_type = Executor;
    using endpoint_type = typename Protocol::endpoint;
    using socket_type = asio::basic_stream_socket<Protocol, Executor>;
    using side_type = basic_side<Protocol, Executor>;
    using connection_type = basic_connection<Protocol, Executor>;
    using options_type = basic_options<Protocol, Executor>;
    using side_options_type = basic_side_options<Protocol, Executor>;
    using pointer = std::shared_ptr<basic_connector>;

    /// `stats().remote_addresses` keeps at most this many distinct addresses.
    static constexpr std::size_t stats_address_limit = 1024;
    /// `next_connection()` keeps at most this many connections nobody has asked for yet.
    static constexpr std::size_t connection_queue_limit = 64;

    basic_connector(detail::connector_key, connector_mode mode, Executor ex, options_type opts);
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
    unsigned short side_a_port() const noexcept { return detail::port_of(local_[0]); }
    unsigned short side_b_port() const noexcept { return detail::port_of(local_[1]); }
    /// The local endpoint a server side is bound to.
    endpoint_type side_a_endpoint() const { return local_[0]; }
    endpoint_type side_b_endpoint() const { return local_[1]; }

    /// Sides waiting in queue A / B (authenticated, not yet paired), and live connections.
    std::size_t pending_a() const noexcept { return pending_count_[0].load(); }
    std::size_t pending_b() const noexcept { return pending_count_[1].load(); }
    std::size_t connections() const noexcept { return live_count_.load(); }
    /// Sessions (keys named by auth verifiers) with a side waiting or a pair relaying.
    std::size_t sessions() const noexcept { return session_count_.load(); }
    /// True once the connector has closed: servers stopped, every socket closed.
    bool closed() const noexcept { return closed_.load(); }

    /// A snapshot of the counters; cheap, from any thread.
    socket_connector::stats stats() const;

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
        asio::dispatch(strand_,
                       [self = this->shared_from_this(), limit] { self->drain_now(limit); });
    }

    /// Hands the connector a socket the application accepted or dialed itself (the Dart
    /// package's `handleSingleConnection`), as side `id`: from here it is admitted, paired and
    /// relayed like one the connector accepted, and counted against the same limits. Without a
    /// `verdict` the side's auth verifier runs on it. With one, the application has run its own
    /// handshake and the verifier is skipped: `leftover` (what it read past its handshake) is
    /// relayed first, and `key` and `side` pair it as a verifier's would (`side` defaults to
    /// `id`); a verdict that is not `ok` closes it as a failed authentication. With
    /// `accept_proxy` on that side, a socket without a verdict has its PROXY header read first;
    /// one with a verdict does not. The socket must be connected and use this connector's event
    /// loop. Safe from any thread.
    void adopt(side_id id, socket_type socket, std::optional<auth_result> verdict = std::nullopt);

    /// Completes (signature `void()`) when the connector has closed (Dart's `done`). Takes any
    /// completion token; by default it is awaitable.
    template <class CompletionToken = asio::use_awaitable_t<>>
    auto wait_closed(CompletionToken&& token = {}) {
        return on_strand<void()>(
            [](pointer self) -> asio::awaitable<std::tuple<>> {
                while (!self->closed_)
                    co_await self->closed_event_.wait(self->strand_);
                co_return std::tuple<>();
            },
            std::forward<CompletionToken>(token));
    }

    /// The next connection to form, in the order they form (Dart's `connectionStream`); null
    /// once the connector has closed (signature `void(std::shared_ptr<connection_type>)`). Up to
    /// `connection_queue_limit` connections nobody has asked for yet are kept; past that the
    /// oldest are forgotten.
    template <class CompletionToken = asio::use_awaitable_t<>>
    auto next_connection(CompletionToken&& token = {}) {
        return on_strand<void(std::shared_ptr<connection_type>)>(
            [](pointer self) -> asio::awaitable<std::tuple<std::shared_ptr<connection_type>>> {
                while (self->formed_.empty() && !self->lifecycle_.closing())
                    co_await self->formed_event_.wait(self->strand_);
                if (self->formed_.empty()) co_return std::tuple<std::shared_ptr<connection_type>>();
                auto c = std::move(self->formed_.front());
                self->formed_.pop_front();
                co_return std::make_tuple(std::move(c));
            },
            std::forward<CompletionToken>(token));
    }

    /// Starts the connector (binds, dials); completes with it, or with why it could not start.
    /// Use a factory function rather than this.
    template <class CompletionToken>
    auto async_start(CompletionToken&& token) {
        return on_strand<void(std::error_code, pointer)>(
            [](pointer self) -> asio::awaitable<std::tuple<std::error_code, pointer>> {
                std::error_code ec;
                try {
                    co_await self->start();
                    co_return std::make_tuple(ec, self);
                } catch (const std::system_error& e) {
                    self->log(log_level::error, "start-up failed: {}", e.what());
                    ec = e.code();
                } catch (const std::exception& e) {
                    self->log(log_level::error, "start-up failed: {}", e.what());
                    ec = std::make_error_code(std::errc::invalid_argument);
                }
                self->close_now("start-up failed");
                co_return std::make_tuple(ec, pointer());
            },
            std::forward<CompletionToken>(token));
    }

private:
    using arrival = detail::arrival<side_type>;
    using arrival_ptr = detail::arrival_ptr<side_type>;
    using listener_type = detail::listener<Protocol, Executor>;
    using dialer_type = detail::dialer<Protocol, Executor>;

    static constexpr std::size_t index(side_id id) noexcept { return id == side_id::a ? 0 : 1; }
    const side_options_type& side_opts(side_id id) const {
        return id == side_id::a ? opts_.a : opts_.b;
    }
    bool proxy() const noexcept { return mode_ == connector_mode::server_to_socket && opts_.multi; }

    /// Runs `task(self)` on the strand and completes `token` with the values of the tuple it
    /// yields, on the token's own executor (as an Asio operation does).
    template <class Signature, class Task, class CompletionToken>
    auto on_strand(Task task, CompletionToken&& token) {
        return asio::async_initiate<CompletionToken, Signature>(
            [self = this->shared_from_this(), task](auto handler) {
                auto ex = asio::get_associated_executor(handler, self->strand_);
                asio::co_spawn(
                    self->strand_, task(self),
                    asio::bind_executor(ex, [handler = std::move(handler)](std::exception_ptr,
                                                                           auto values) mutable {
                        std::apply(std::move(handler), std::move(values));
                    }));
            },
            token);
    }

    // ---- start-up ---------------------------------------------------------------------------

    asio::awaitable<void> start();
    asio::awaitable<void> listen(side_id id);
    asio::awaitable<arrival_ptr> dial_up_front(side_id id);
    asio::awaitable<void> shake_hands_up_front(side_type& s);
    void log_handshake(const side_type& s);
    std::string connect_failure(side_id id, std::error_code ec) const;

    // ---- sides ------------------------------------------------------------------------------

    /// Where a new socket came from.
    enum class origin { accepted, dialed, adopted, routed };
    arrival_ptr wrap(side_id id, socket_type socket, const endpoint_type& remote, origin from,
                     std::string peer = {});
    void adopted(side_id id, socket_type socket, std::optional<auth_result> verdict,
                 origin from = origin::adopted, std::string peer = {},
                 const proxy_header* told = nullptr, std::unique_ptr<tls_session> tls = {});
    bool route_away(const arrival_ptr& a);
    void accepted(side_id id, socket_type socket, const endpoint_type& peer, bool unseen);
    std::string why_refuse(side_id id) const;
    asio::awaitable<void> admit(arrival_ptr a);
    asio::awaitable<bool> authenticate(const arrival_ptr& a);
    template <class Endpoint>
    void note_address(const Endpoint& remote);

    // ---- the PROXY protocol (impl/connector_proxy_header.hpp) -------------------------------

    void check_proxy_options() const;
    bool sends_proxy_at_join(side_id id) const;
    std::string send_proxy_header(side_type& to, const side_type& partner);
    std::string check_verdict(arrival& a, std::string key, std::optional<side_id> named);
    void failed_authentication(const arrival_ptr& a, std::string_view why);
    void admit_or_enqueue(arrival_ptr a, bool unseen);
    void enqueue(arrival_ptr a, bool unseen = false);
    void refuse(const arrival_ptr& a, const std::string& why);
    void expire_later(const arrival_ptr& a);
    void forget_deadline(arrival& a);
    void forget_deadlines();
    asio::awaitable<void> expire_pending();
    void watch(arrival_ptr a);
    void drop(const arrival_ptr& a, const std::string& why);
    /// A side dialed once at start-up: if it goes before the pair forms, nothing can pair.
    bool is_up_front(side_id id) const {
        switch (mode_) {
        case connector_mode::server_to_socket:
            return id == side_id::b && !opts_.multi;
        case connector_mode::socket_to_server:
            return id == side_id::a;
        case connector_mode::socket_to_socket:
            return true;
        default:
            return false;
        }
    }

    // ---- a proxy's B, dialed for each A -----------------------------------------------------

    void dial_for(arrival_ptr a, bool unseen);
    void dialed_for(arrival_ptr a, std::error_code ec, socket_type socket, endpoint_type remote,
                    bool waited);
    asio::awaitable<void> authenticate_then_pair(arrival_ptr a, arrival_ptr b);
    void pair_dialed(arrival_ptr a, arrival_ptr b);

    // ---- pairing and connections ------------------------------------------------------------

    void try_pair() {
        while (auto p = pairing_.next_pair())
            join(std::move(p->first), std::move(p->second));
    }
    void join(arrival_ptr a, arrival_ptr b);
    void connection_ended(const std::shared_ptr<connection_type>& c, const std::string& reason);

    // ---- lifecycle --------------------------------------------------------------------------

    void stop_accepting();
    void drain_now(std::chrono::milliseconds limit);
    asio::awaitable<void> grace();
    asio::awaitable<void> drain_deadline(std::chrono::milliseconds limit);
    void maybe_finish(bool grace_just_passed = false);
    void close_now(const std::string& reason);
    void finish_close();

    // ---- counts and logs --------------------------------------------------------------------

    void update_counts();
    /// Sockets of side `id` authenticating or waiting for a partner.
    std::size_t waiting_on(side_id id) const {
        return pairing_.waiting(id) + authenticating_count_[index(id)];
    }
    void publish_counts();

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
    /// What runs an object's handlers one at a time: a new strand of `ex`, or `ex` itself when
    /// its io_context is run by one thread (nothing to serialise; a strand would only add a
    /// lock and a queue hop to every completion).
    static asio::any_io_executor serial_executor(const Executor& ex, bool io_run_by_one_thread) {
        if (io_run_by_one_thread) return ex;
        return asio::make_strand(ex);
    }

    connector_mode mode_;
    Executor ex_;
    asio::any_io_executor strand_; // runs the connector's handlers one at a time
    options_type opts_;
    std::shared_ptr<detail::relay_context> context_;

    // Touched only on strand_.
    std::optional<listener_type> listeners_[2];
    std::optional<dialer_type> dialers_[2];
    endpoint_type local_[2]{};
    detail::pairing<side_type> pairing_;
    // Pending sides in the order their pending_timeout runs out (one timer for all of them).
    detail::pending_deadlines<side_type> expiries_;
    std::optional<asio::steady_timer> expiry_timer_;
    bool expiring_ = false; // expire_pending() is running
    std::set<arrival_ptr> authenticating_;
    std::size_t authenticating_count_[2] = {0, 0};
    std::unordered_set<std::shared_ptr<connection_type>> live_;
    // What each connection calls as it ends (made at the first pair: it names this connector).
    typename connection_type::shared_end_handler on_connection_end_;
    std::deque<std::shared_ptr<connection_type>> formed_;
    detail::lifecycle lifecycle_;
    // Wakes next_connection() (a connection formed, or closing) and wait_closed() (closed).
    detail::strand_event formed_event_;
    detail::strand_event closed_event_;
    // This connector's share of opts_.limit_group's counts.
    std::size_t published_live_ = 0;
    std::size_t published_waiting_[2] = {0, 0};
    std::size_t published_sessions_ = 0;

    // Read from any thread.
    std::atomic<bool> closed_{false};
    std::atomic<std::size_t> pending_count_[2] = {0, 0};
    std::atomic<std::size_t> live_count_{0};
    std::atomic<std::size_t> session_count_{0};
    std::atomic<std::uint64_t> sessions_paired_{0};
    std::atomic<std::uint64_t> sockets_created_{0};
    std::atomic<std::uint64_t> connections_total_{0};
    std::atomic<std::size_t> sessions_pending_{0};
    std::atomic<std::uint64_t> sockets_accepted_[2] = {0, 0};
    std::atomic<std::uint64_t> auth_failures_[2] = {0, 0};
    std::atomic<std::uint64_t> sockets_refused_{0};
    mutable std::mutex addresses_mutex_;
    std::vector<std::string> remote_addresses_;
    std::set<std::string> seen_addresses_;
};

/// The TCP connector, the one most programs use.
using connector = basic_connector<asio::ip::tcp, asio::any_io_executor>;

} // namespace socket_connector

#include <socket_connector/factories.hpp>
#include <socket_connector/impl/connector.hpp>
#include <socket_connector/impl/connector_lifecycle.hpp>
#include <socket_connector/impl/connector_proxy.hpp>
#include <socket_connector/impl/connector_proxy_header.hpp>
