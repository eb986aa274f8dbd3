#pragma once

// How the factories of connector.hpp take their options.
//
// g++ 12 (and older) miscompiles a braced temporary that lives across a suspension: in
// `co_await sc::server_to_server(ex, {.a = ...})` it destroys the options twice, and the program
// crashes (`free(): invalid pointer`). On those compilers the factories take the options through
// `detail::options_in_a_named_variable`, which a braced list cannot initialise, so that code
// does not compile: name the options (`sc::options o{...}; ... server_to_server(ex, o)`). Other
// compilers take a braced list too.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#define SOCKET_CONNECTOR_OPTIONS_MUST_BE_NAMED 1
#endif

#include <utility>

#include <socket_connector/options.hpp>

namespace socket_connector::detail {
/// The options argument of a factory on compilers where a braced list would crash (above): it
/// refers to the caller's options for the length of the call, and copies or moves them once.
template <class Protocol, class Executor>
class options_in_a_named_variable {
public:
    using options_type = basic_options<Protocol, Executor>;
    options_in_a_named_variable(const options_type& o) noexcept
        : options_(&o) {}
    options_in_a_named_variable(options_type&& o) noexcept
        : options_(&o)
        , movable_(true) {}
    options_in_a_named_variable() = delete;

    options_type take() const {
        if (movable_) return std::move(*const_cast<options_type*>(options_));
        return *options_;
    }

private:
    const options_type* options_;
    bool movable_ = false;
};

#if defined(SOCKET_CONNECTOR_OPTIONS_MUST_BE_NAMED)
template <class Protocol, class Executor>
using options_argument = options_in_a_named_variable<Protocol, Executor>;
template <class Protocol, class Executor>
basic_options<Protocol, Executor>
take_options(options_in_a_named_variable<Protocol, Executor>&& o) {
    return o.take();
}
#else
template <class Protocol, class Executor>
using options_argument = basic_options<Protocol, Executor>;
template <class Protocol, class Executor>
basic_options<Protocol, Executor>&& take_options(basic_options<Protocol, Executor>&& o) noexcept {
    return std::move(o);
}
#endif
} // namespace socket_connector::detail
