#pragma once

#include <string>

#include <fmt/format.h>

#include <socket_connector/socket_options.hpp>

namespace socket_connector::detail {

using socket_connector::is_tcp;

/// An endpoint as people write it: `127.0.0.1:9000`, `[::1]:9000`, or a Unix socket's path.
template <class Endpoint>
std::string to_string(const Endpoint& endpoint) {
    if constexpr (requires {
                      endpoint.address();
                      endpoint.port();
                  }) {
        auto address = endpoint.address();
        if (address.is_v6()) return fmt::format("[{}]:{}", address.to_string(), endpoint.port());
        return fmt::format("{}:{}", address.to_string(), endpoint.port());
    } else if constexpr (requires { endpoint.path(); }) {
        auto path = std::string(endpoint.path());
        return path.empty() ? std::string("(unnamed)") : path; // clients rarely bind a path
    } else {
        return "?";
    }
}

/// The remote address without its port, as recorded in stats.
template <class Endpoint>
std::string address_of(const Endpoint& endpoint) {
    if constexpr (requires { endpoint.address(); }) {
        return endpoint.address().to_string();
    } else {
        return to_string(endpoint);
    }
}

} // namespace socket_connector::detail
