// Built against an installed socket_connector: opens a server-to-server connector on two ephemeral
// ports, checks that both are bound, and closes it. Exit code 0 on success, 1 on any failure.
#include <chrono>
#include <cstdio>
#include <exception>
#include <memory>
#include <utility>

#include <asio.hpp>

#include <fmt/core.h>

#include <socket_connector/socket_connector.hpp>

namespace sc = socket_connector;

int main() {
    asio::io_context io;
    bool done = false;
    bool ok = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            // A named options object, not `{}`: g++ 12 mis-copies prvalue class arguments inside a
            // co_await expression (the temporary's std::string members end up in freed memory).
            sc::options opts;
            auto c = co_await sc::server_to_server(io.get_executor(), std::move(opts));
            unsigned short a = c->side_a_port();
            unsigned short b = c->side_b_port();
            fmt::print("side A port {}, side B port {}\n", a, b);
            ok = a != 0 && b != 0;
            c->close();
        },
        [&](std::exception_ptr e) {
            done = true;
            if (!e) return;
            ok = false;
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& ex) {
                fmt::print(stderr, "error: {}\n", ex.what());
            } catch (...) {
                fmt::print(stderr, "error: unknown exception\n");
            }
        });
    try {
        io.run_for(std::chrono::seconds(10)); // a hang fails instead of blocking the test
    } catch (const std::exception& ex) {
        fmt::print(stderr, "error: {}\n", ex.what());
        return 1;
    }
    if (!done) {
        fmt::print(stderr, "error: server_to_server did not finish within 10 s\n");
        return 1;
    }
    return ok ? 0 : 1;
}
