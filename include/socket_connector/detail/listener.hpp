#pragma once

// A server side's listening socket and its accept loop: binds, accepts in batches, refuses what a
// limit keeps out (with a rate-limited log), and hands each kept socket to its owner.

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/basic_socket_acceptor.hpp>
#include <asio/basic_stream_socket.hpp>
#include <asio/steady_timer.hpp>
#include <fmt/format.h>

#if !defined(ASIO_WINDOWS) && !defined(__CYGWIN__)
#include <sys/socket.h>
#endif

#include <socket_connector/detail/endpoints.hpp>
#include <socket_connector/detail/platform.hpp>
#include <socket_connector/detail/socket_options.hpp>
#include <socket_connector/logging.hpp>
#include <socket_connector/options.hpp>
#include <socket_connector/side.hpp>
#include <socket_connector/socket_options.hpp>

namespace socket_connector::detail {

/// Logs refusals without flooding the log: the first at once, then at most one line a second
/// with the number refused meanwhile.
class refusal_log {
public:
    void refused(const logger& log, side_id side, const std::string& peer, const std::string& why) {
        ++unlogged_;
        auto now = std::chrono::steady_clock::now();
        if (now - logged_ < std::chrono::seconds(1)) return;
        if (unlogged_ > 1)
            log(log_level::warning,
                fmt::format("{}: refused {} ({} more since the last report): {}", to_string(side),
                            peer, unlogged_ - 1, why));
        else
            log(log_level::warning, fmt::format("{}: refused {}: {}", to_string(side), peer, why));
        unlogged_ = 0;
        logged_ = now;
    }

private:
    std::uint64_t unlogged_ = 0;
    std::chrono::steady_clock::time_point logged_{};
};

template <class Protocol, class Executor>
class listener {
public:
    using acceptor_type = asio::basic_socket_acceptor<Protocol, Executor>;
    using socket_type = asio::basic_stream_socket<Protocol, Executor>;
    using endpoint_type = typename Protocol::endpoint;

    /// Binds side `id` as its options say and listens. Throws `std::system_error` naming the
    /// step, the side and the endpoint ("bind A to 0.0.0.0:9000: Address already in use").
    /// `other`: where the connector's other side is bound, if it is; a bind that fails because
    /// that side holds the port says so.
    static asio::awaitable<listener> open(Executor ex, asio::any_io_executor strand, side_id id,
                                          const basic_side_options<Protocol, Executor>& so,
                                          std::optional<endpoint_type> other = std::nullopt) {
        auto endpoints = co_await resolve(strand, id, so, true);
        const endpoint_type& endpoint = endpoints.front();
        acceptor_type acceptor(ex);
        std::error_code ec;
        auto fail = [&](const char* what, std::string_view note = {}) {
            return std::system_error(ec, fmt::format("{} {} to {}{}", what, to_string(id),
                                                     detail::to_string(endpoint), note));
        };
        if (acceptor.open(endpoint.protocol(), ec); ec) throw fail("open");
        if constexpr (is_tcp<Protocol>)
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
        if (acceptor.bind(endpoint, ec); ec) {
            const bool other_holds_it = ec == asio::error::address_in_use && other &&
                                        port_of(endpoint) != 0 &&
                                        port_of(*other) == port_of(endpoint);
            throw fail("bind", other_holds_it ? fmt::format(" (side {} holds that port)",
                                                            to_string(socket_connector::other(id)))
                                              : std::string());
        }
        const bool inherits = set_options_to_inherit(acceptor, so);
        const int backlog = so.backlog > 0 ? so.backlog : asio::socket_base::max_listen_connections;
        if (acceptor.listen(backlog, ec); ec)
            throw fail("listen");
        co_return listener(std::move(acceptor), id, inherits);
    }

    side_id id() const noexcept {
        return id_;
    }
    endpoint_type local_endpoint() const {
        return local_;
    }
    bool is_open() const {
        return acceptor_.is_open();
    }
    /// Stops accepting; the loop ends.
    void close() {
        std::error_code ignored;
        acceptor_.close(ignored);
    }
    /// Whether accepted sockets inherit TCP_NODELAY and keep-alive from the listener (Linux).
    bool sets_options() const noexcept {
        return inherits_options_;
    }

    /// Most connections one turn of the loop takes from the backlog, without a trip through the
    /// event loop for each, before it lets other work run.
    static constexpr int accepts_per_turn = 64;

    /// Accepts until closed. For each connection: `why_refuse()` says why it may not be kept (a
    /// limit is hit), or nothing; a refused socket is counted in `refused` and closed, and the
    /// refusal logged. A kept one goes to `accepted(socket, peer, unseen)`; `unseen` says it was
    /// accepted in this very handler, so none of its events has been taken yet.
    template <class WhyRefuse, class Accepted>
    asio::awaitable<void> run(asio::any_io_executor strand, logger log, WhyRefuse why_refuse,
                              Accepted accepted, std::atomic<std::uint64_t>& refused) {
        endpoint_type peer;
        // A non-blocking listener: the connections that queue up while one is handled are taken
        // at once, in this turn, instead of one completion (and one epoll_wait) each.
        std::error_code nb;
        acceptor_.non_blocking(true, nb);
        // With native sockets the loop waits for the listener to be readable and accepts itself,
        // with accept4: each socket comes non-blocking (see detail/platform.hpp).
        const bool by_hand = native_sockets && !nb;
        for (;;) {
            std::error_code ec;
            socket_type socket(acceptor_.get_executor());
            if (by_hand) {
                auto [wait_ec] = co_await acceptor_.async_wait(acceptor_type::wait_read, use_tuple);
                ec = wait_ec;
                if (!ec) accept_non_blocking(acceptor_, socket, peer, ec);
            } else {
                std::tie(ec, socket) = co_await acceptor_.async_accept(peer, use_tuple);
            }
            for (int taken = 0;;) {
                if (!acceptor_.is_open() || ec == asio::error::operation_aborted) co_return;
                // Readable, but the connection went (or was never there): wait again.
                if (ec == asio::error::would_block || ec == asio::error::try_again) break;
                if (ec) {
                    log(log_level::warning,
                        fmt::format("{}: accept: {}", to_string(id_), ec.message()));
                    if (!out_of_resources(ec)) break;
                    // Out of descriptors or memory: wait rather than spin on the backlog.
                    asio::steady_timer pause(strand, std::chrono::milliseconds(100));
                    co_await pause.async_wait(use_tuple);
                    break;
                }
                if (auto why = why_refuse(); !why.empty()) {
                    // Counted before the close: a client that sees its socket closed, on any
                    // thread, must find the refusal in stats().
                    refused.fetch_add(1, std::memory_order_relaxed);
                    std::error_code ignored;
                    socket.close(ignored);
                    refusals_.refused(log, id_, detail::to_string(peer), why);
                } else {
                    accepted(std::move(socket), peer, by_hand);
                }
                if (nb || ++taken == accepts_per_turn) break;
                accept_non_blocking(acceptor_, socket, peer, ec); // moved from: closed
            }
        }
    }

private:
    listener(acceptor_type acceptor, side_id id, bool inherits)
        : acceptor_(std::move(acceptor))
        , local_(acceptor_.local_endpoint())
        , id_(id)
        , inherits_options_(inherits) {}

    static bool out_of_resources(const std::error_code& ec) {
        return ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space ||
               ec == asio::error::no_memory ||
               ec == std::error_code(ENFILE, asio::error::get_system_category());
    }

    /// Sets TCP_NODELAY and the side's keep-alive on a listening socket, where the system copies
    /// them to every socket it accepts (Linux): then an accepted socket needs no system call for
    /// them, instead of one to five. Whether they were all set.
    static bool set_options_to_inherit(acceptor_type& acceptor,
                                       const basic_side_options<Protocol, Executor>& so) {
#if defined(__linux__)
        if constexpr (is_tcp<Protocol>) {
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

    acceptor_type acceptor_;
    endpoint_type local_;
    side_id id_;
    bool inherits_options_;
    refusal_log refusals_;
};

} // namespace socket_connector::detail
