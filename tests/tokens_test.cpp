// The factories, wait_closed() and next_connection() take any Asio completion token: awaitable by
// default (a failure throws), redirect_error and as_tuple (the code instead), a plain callback,
// use_future and deferred. Each kind is checked on success and on a start-up failure (a port in
// use), with bytes relayed through what it made.
#include <socket_connector/connector.hpp>

#include <future>
#include <optional>
#include <thread>

#include <asio/experimental/deferred.hpp>
#include <asio/redirect_error.hpp>
#include <asio/use_future.hpp>

#include "support/net.hpp"

using namespace test_support;

namespace {

/// Options whose side A is on a port that `taken` holds already.
sc::options taken_port_options(const tcp::acceptor& taken, log_capture& log) {
    sc::options o = loopback_options();
    o.a.endpoint = taken.local_endpoint();
    o.logger = log.logger();
    return o;
}

/// One message each way through the rendezvous `c`, then closes it.
asio::awaitable<void> relay_once_and_close(sc::connector& c) {
    tcp::socket a(co_await asio::this_coro::executor), b(a.get_executor());
    co_await form_pair(c, a, b);
    auto data = pattern(7, 100'000);
    using namespace asio::experimental::awaitable_operators;
    auto [back_at_a, seen_at_b] = co_await (send_and_receive(a, data) && echo(b));
    CHECK(checksum(seen_at_b) == checksum(data));
    CHECK(checksum(back_at_a) == checksum(data));
    c.close();
    co_await c.wait_closed();
}

asio::awaitable<void> awaitable_default() {
    auto ex = co_await asio::this_coro::executor;
    auto c = co_await sc::server_to_server(ex, loopback_options());
    REQUIRE(c);
    co_await relay_once_and_close(*c);

    auto taken = loopback_acceptor(ex);
    log_capture log;
    std::error_code code;
    try {
        auto failed = co_await sc::server_to_server(ex, taken_port_options(taken, log));
        FAIL_CHECK("the factory succeeded on a port in use");
    } catch (const std::system_error& e) {
        code = e.code();
    }
    CHECK(code == asio::error::address_in_use);
    // The context is in the log, at error level.
    INFO(log.all());
    CHECK(log.contains(fmt::format("error start-up failed: bind A to 127.0.0.1:{}: {}",
                                   taken.local_endpoint().port(), code.message())));
}

asio::awaitable<void> redirect_error_and_as_tuple() {
    auto ex = co_await asio::this_coro::executor;
    auto taken = loopback_acceptor(ex);
    log_capture log;
    std::error_code ec;
    auto failed = co_await sc::server_to_server(ex, taken_port_options(taken, log),
                                                asio::redirect_error(asio::use_awaitable, ec));
    CHECK(failed == nullptr);
    CHECK(ec == asio::error::address_in_use);
    auto c = co_await sc::server_to_server(ex, loopback_options(),
                                           asio::redirect_error(asio::use_awaitable, ec));
    REQUIRE(c);
    CHECK(!ec);
    co_await relay_once_and_close(*c);

    auto [ec2, failed2] = co_await sc::create(sc::connector_mode::server_to_server, ex,
                                              taken_port_options(taken, log), use_tuple);
    CHECK(ec2 == asio::error::address_in_use);
    CHECK(failed2 == nullptr);
    auto [ec3, c3] = co_await sc::server_to_server(ex, loopback_options(), use_tuple);
    REQUIRE(c3);
    CHECK(!ec3);
    co_await relay_once_and_close(*c3);
}

asio::awaitable<void> deferred_operation() {
    auto ex = co_await asio::this_coro::executor;
    auto op = sc::server_to_server(ex, loopback_options(), asio::experimental::deferred);
    auto c = co_await std::move(op)(asio::use_awaitable);
    REQUIRE(c);
    co_await relay_once_and_close(*c);
}

} // namespace

TEST_CASE("a factory's default token awaits the connector and throws the code of a failure, "
          "whose context is logged",
          "[tokens]") {
    asio::io_context io;
    run(io, awaitable_default());
}

TEST_CASE("redirect_error and as_tuple give a factory's failure as a code and a null connector",
          "[tokens]") {
    asio::io_context io;
    run(io, redirect_error_and_as_tuple());
}

TEST_CASE("a deferred factory runs when it is awaited", "[tokens]") {
    asio::io_context io;
    run(io, deferred_operation());
}

TEST_CASE("callbacks complete the factory, next_connection() and wait_closed() in order",
          "[tokens]") {
    asio::io_context io;
    auto ex = io.get_executor();
    auto taken = loopback_acceptor(ex);
    log_capture log;
    std::optional<std::error_code> failure;
    sc::server_to_server(ex, taken_port_options(taken, log),
                         [&](std::error_code ec, std::shared_ptr<sc::connector> c) {
                             failure = ec;
                             CHECK(c == nullptr);
                         });
    std::shared_ptr<sc::connector> made;
    std::shared_ptr<sc::connection> formed;
    bool closed = false;
    sc::server_to_server(ex, loopback_options(),
                         [&](std::error_code ec, std::shared_ptr<sc::connector> c) {
                             REQUIRE(!ec);
                             made = c;
                             c->next_connection([&](std::shared_ptr<sc::connection> pair) {
                                 formed = pair;
                                 made->close();
                             });
                             c->wait_closed([&] { closed = true; });
                             asio::co_spawn(
                                 ex,
                                 [](std::shared_ptr<sc::connector> cc) -> asio::awaitable<void> {
                                     tcp::socket a(co_await asio::this_coro::executor);
                                     tcp::socket b(a.get_executor());
                                     co_await form_pair(*cc, a, b);
                                 }(c),
                                 asio::detached);
                         });
    io.run_for(20s);
    REQUIRE(failure);
    CHECK(*failure == asio::error::address_in_use);
    REQUIRE(made);
    CHECK(formed != nullptr);
    CHECK(closed);
    CHECK(made->closed());
}

TEST_CASE("use_future gives the connector, or throws the code of a failure, to another thread",
          "[tokens]") {
    asio::io_context io;
    auto guard = asio::make_work_guard(io);
    std::thread runner([&] { io.run_for(30s); });
    auto taken = loopback_acceptor(io.get_executor());
    log_capture log;
    auto failing =
        sc::server_to_server(io.get_executor(), taken_port_options(taken, log), asio::use_future);
    auto working = sc::server_to_server(io.get_executor(), loopback_options(), asio::use_future);
    REQUIRE(failing.wait_for(20s) == std::future_status::ready);
    REQUIRE(working.wait_for(20s) == std::future_status::ready);
    std::error_code code;
    try {
        failing.get();
    } catch (const std::system_error& e) {
        code = e.code();
    }
    CHECK(code == asio::error::address_in_use);
    auto c = working.get();
    REQUIRE(c);
    CHECK(c->side_a_port() != 0);
    c->close();
    auto closed = c->wait_closed(asio::use_future);
    CHECK(closed.wait_for(20s) == std::future_status::ready);
    guard.reset();
    io.stop();
    runner.join();
}
