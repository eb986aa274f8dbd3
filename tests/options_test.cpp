// The options a connector is made with: a side's port as a number or a string, and the order of
// the fields that designated initialisers follow (README lists it; this file compiles only while
// the list is right).
#include <socket_connector/options.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include <catch2/catch.hpp>

namespace sc = socket_connector;
using namespace std::chrono_literals;

TEST_CASE("a side's port is a number or a string", "[options]") {
    sc::side_options by_number{.host = "localhost", .port = 8050};
    CHECK(by_number.port.str() == "8050");
    sc::side_options by_text{.host = "localhost", .port = "8050"};
    CHECK(by_text.port == by_number.port);
    sc::side_options by_service{.host = "localhost", .port = "https"};
    CHECK(by_service.port.str() == "https");
    sc::side_options by_string{.host = "localhost", .port = std::string("7")};
    CHECK(by_string.port.str() == "7");
    std::uint16_t from_endpoint = 65535;
    sc::side_options wide{.port = from_endpoint};
    CHECK(wide.port.str() == "65535");
    sc::side_options none;
    CHECK(none.port.empty());
    by_number.port.clear();
    CHECK(by_number.port.empty());
    // Out of range: an error at once, not a wrapped port.
    CHECK_THROWS_AS(sc::side_options{.port = 65536}, std::out_of_range);
    CHECK_THROWS_AS(sc::side_options{.port = -1}, std::out_of_range);
    CHECK_THROWS_WITH(sc::port_or_service(70000), "a port must be 0 to 65535 (got 70000)");
}

TEST_CASE("option fields in the order README gives for designated initialisers", "[options]") {
    sc::side_options side{
        .endpoint = {},
        .host = "127.0.0.1",
        .port = 0,
        .auth = {},
        .transform = {},
        .keepalive = {},
        .reuse_port = false,
    };
    sc::options all{
        .a = side,
        .b = side,
        .verbose = true,
        .log_traffic = false,
        .zero_copy = true,
        .logger = {},
        .timeout = 1s,
        .auth_timeout = 2s,
        .connect_timeout = 3s,
        .max_pending = 4,
        .max_connections = 5,
        .limit_group = std::make_shared<sc::shared_limits>(),
        .idle_timeout = 6s,
        .io_run_by_one_thread = false,
        .multi = true,
        .before_joining = {},
    };
    CHECK(all.verbose);
    CHECK(all.a.host == "127.0.0.1");
    CHECK(all.connect_timeout == 3s);
    CHECK(all.max_connections == 5);
    CHECK(all.multi);
}
