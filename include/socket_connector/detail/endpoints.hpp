#pragma once

// The endpoints a side names: its `endpoint`, or its `host` and `port` resolved.

#include <string>
#include <system_error>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <fmt/format.h>

#include <socket_connector/detail/socket_options.hpp>
#include <socket_connector/detail/use_tuple.hpp>
#include <socket_connector/options.hpp>
#include <socket_connector/side.hpp>

namespace socket_connector::detail {

/// The endpoints side `id` names: its `host`/`port` resolved (`passive`: for binding), or its
/// `endpoint`. Throws `std::system_error` ("resolve A host:port: reason").
template <class Protocol, class Executor>
asio::awaitable<std::vector<typename Protocol::endpoint>>
resolve(asio::any_io_executor ex, side_id id, const basic_side_options<Protocol, Executor>& so,
        bool passive = false) {
    std::vector<typename Protocol::endpoint> endpoints;
    if constexpr (requires { typename Protocol::resolver; }) {
        if (!so.host.empty() || !so.port.empty()) {
            typename Protocol::resolver resolver(ex);
            auto flags =
                passive ? Protocol::resolver::passive : typename Protocol::resolver::flags();
            // Named, not temporaries: g++ 12 destroys temporaries in a co_await twice.
            const std::string port = so.port.empty() ? std::string("0") : so.port.str();
            auto [ec, results] = co_await resolver.async_resolve(so.host, port, flags, use_tuple);
            if (ec)
                throw std::system_error(
                    ec, fmt::format("resolve {} {}:{}", to_string(id), so.host, so.port.str()));
            for (const auto& entry : results)
                endpoints.push_back(entry.endpoint());
            co_return endpoints;
        }
    }
    endpoints.push_back(so.endpoint);
    co_return endpoints;
}

/// How a side's target is named in messages: as configured, or its first address.
template <class Endpoint, class SideOptions>
std::string target_name(const std::vector<Endpoint>& targets, const SideOptions& so) {
    return so.host.empty() && so.port.empty() ? to_string(targets.front())
                                              : fmt::format("{}:{}", so.host, so.port.str());
}

template <class Endpoint>
unsigned short port_of(const Endpoint& endpoint) {
    if constexpr (requires { endpoint.port(); }) {
        return endpoint.port();
    } else {
        return 0;
    }
}

} // namespace socket_connector::detail
