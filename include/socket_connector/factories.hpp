#pragma once

// The factories that make a connector, one per shape (included by connector.hpp).

#include <memory>
#include <type_traits>
#include <utility>

#include <asio/any_io_executor.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/use_awaitable.hpp>

#include <socket_connector/connector.hpp>
#include <socket_connector/detail/options_argument.hpp>

namespace socket_connector {

/// Makes a connector of shape `mode`: completes once its servers are bound and its up-front
/// outbound connections are made, with signature `void(std::error_code, std::shared_ptr<...>)`.
/// Takes any Asio completion token; by default it is awaitable and a failure throws
/// `std::system_error` (`asio::redirect_error` or `as_tuple` give the code instead). The failure
/// is also logged at error level with its context (`start-up failed: bind A to 0.0.0.0:9000:
/// Address already in use`). For another protocol, name it: `create<local::stream_protocol>`.
/// `opts` is copied (or moved from); on g++ 12 it cannot be a braced list
/// (detail/options_argument.hpp says why).
template <class Protocol = asio::ip::tcp, class Executor = asio::any_io_executor,
          class CompletionToken = asio::use_awaitable_t<>>
auto create(connector_mode mode, std::type_identity_t<Executor> ex,
            std::type_identity_t<detail::options_argument<Protocol, Executor>> opts,
            CompletionToken&& token = {}) {
    auto c = std::make_shared<basic_connector<Protocol, Executor>>(
        detail::connector_key{}, mode, std::move(ex), detail::take_options(std::move(opts)));
    return c->async_start(std::forward<CompletionToken>(token));
}

/// Binds A and B and pairs every authenticated A with an authenticated B (a rendezvous).
template <class Protocol = asio::ip::tcp, class Executor = asio::any_io_executor,
          class CompletionToken = asio::use_awaitable_t<>>
auto server_to_server(std::type_identity_t<Executor> ex,
                      std::type_identity_t<detail::options_argument<Protocol, Executor>> opts,
                      CompletionToken&& token = {}) {
    return create<Protocol, Executor>(connector_mode::server_to_server, std::move(ex),
                                      std::move(opts), std::forward<CompletionToken>(token));
}
/// Binds A; each A is paired with an outbound connection to B (see `options::multi`).
template <class Protocol = asio::ip::tcp, class Executor = asio::any_io_executor,
          class CompletionToken = asio::use_awaitable_t<>>
auto server_to_socket(std::type_identity_t<Executor> ex,
                      std::type_identity_t<detail::options_argument<Protocol, Executor>> opts,
                      CompletionToken&& token = {}) {
    return create<Protocol, Executor>(connector_mode::server_to_socket, std::move(ex),
                                      std::move(opts), std::forward<CompletionToken>(token));
}
/// Connects to A, binds B, and pairs the first authenticated B with A.
template <class Protocol = asio::ip::tcp, class Executor = asio::any_io_executor,
          class CompletionToken = asio::use_awaitable_t<>>
auto socket_to_server(std::type_identity_t<Executor> ex,
                      std::type_identity_t<detail::options_argument<Protocol, Executor>> opts,
                      CompletionToken&& token = {}) {
    return create<Protocol, Executor>(connector_mode::socket_to_server, std::move(ex),
                                      std::move(opts), std::forward<CompletionToken>(token));
}
/// Binds one endpoint, `opts.a`'s, for both sides: side A's auth verifier (required) admits each
/// socket and says which side it is and, usually, its session key (a rendezvous on one port,
/// see `session_token_verifier`). `opts.b` gives B's transformer and keep-alive only.
template <class Protocol = asio::ip::tcp, class Executor = asio::any_io_executor,
          class CompletionToken = asio::use_awaitable_t<>>
auto one_server(std::type_identity_t<Executor> ex,
                std::type_identity_t<detail::options_argument<Protocol, Executor>> opts,
                CompletionToken&& token = {}) {
    return create<Protocol, Executor>(connector_mode::one_server, std::move(ex), std::move(opts),
                                      std::forward<CompletionToken>(token));
}
/// Connects to A and to B (at the same time) and pairs them.
template <class Protocol = asio::ip::tcp, class Executor = asio::any_io_executor,
          class CompletionToken = asio::use_awaitable_t<>>
auto socket_to_socket(std::type_identity_t<Executor> ex,
                      std::type_identity_t<detail::options_argument<Protocol, Executor>> opts,
                      CompletionToken&& token = {}) {
    return create<Protocol, Executor>(connector_mode::socket_to_socket, std::move(ex),
                                      std::move(opts), std::forward<CompletionToken>(token));
}

} // namespace socket_connector
