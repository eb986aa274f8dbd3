// Compiled by the ctest `braced_options` (tests/CMakeLists.txt), never linked: a factory given its
// options as a braced temporary inside a co_await. g++ 12 and older destroy that temporary twice
// (the program crashes), so there it must not compile, and the error names the way out
// (`options_in_a_named_variable`); other compilers take it.
#include <socket_connector/socket_connector.hpp>

namespace sc = socket_connector;

asio::awaitable<void> braced() {
    auto ex = co_await asio::this_coro::executor;
    auto c = co_await sc::server_to_server(
        ex, {.a = {.host = "127.0.0.1", .port = 0}, .b = {.host = "127.0.0.1", .port = 0}});
    co_await c->wait_closed();
}
