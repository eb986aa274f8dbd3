#include <socket_connector/address.hpp>

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>

#include <asio/ip/tcp.hpp>
#include <catch2/catch.hpp>

namespace sc = socket_connector;

namespace {

/// Parses `text`, requiring failure; the reason given.
std::string rejection(std::string_view text) {
    std::string why;
    auto parsed = sc::parse_address(text, &why);
    CHECK_FALSE(parsed.has_value());
    CHECK_FALSE(why.empty());
    return why;
}

} // namespace

TEST_CASE("a host and a port are split at the colon", "[address]") {
    auto a = sc::parse_address("127.0.0.1:9000");
    REQUIRE(a);
    CHECK(a->host == "127.0.0.1");
    CHECK(a->port == 9000);

    auto named = sc::parse_address("localhost:80");
    REQUIRE(named);
    CHECK(named->host == "localhost");
    CHECK(named->port == 80);

    auto dns = sc::parse_address("relay-1.example_net.com.:443");
    REQUIRE(dns);
    CHECK(dns->host == "relay-1.example_net.com.");
}

TEST_CASE("a bare :PORT has an empty host", "[address]") {
    auto a = sc::parse_address(":8000");
    REQUIRE(a);
    CHECK(a->host.empty());
    CHECK(a->port == 8000);
}

TEST_CASE("an IPv6 address in brackets is kept without them", "[address]") {
    auto a = sc::parse_address("[::1]:9000");
    REQUIRE(a);
    CHECK(a->host == "::1");
    CHECK(a->port == 9000);

    auto mapped = sc::parse_address("[::ffff:10.0.0.1]:1");
    REQUIRE(mapped);
    CHECK(mapped->host == "::ffff:10.0.0.1");

    auto zoned = sc::parse_address("[fe80::1%lo]:22");
    REQUIRE(zoned);
    CHECK(zoned->host == "fe80::1%lo");
}

TEST_CASE("ports cover 0 to 65535 with up to five digits", "[address]") {
    CHECK(sc::parse_address("h:0")->port == 0);
    CHECK(sc::parse_address("h:65535")->port == 65535);
    CHECK(sc::parse_address("h:08080")->port == 8080);
    rejection("h:65536");
    rejection("h:99999");
    rejection("h:000001");
    rejection("h:123456");
}

TEST_CASE("a port must be plain decimal digits", "[address]") {
    for (auto text : {"h:", "h:-1", "h:+80", "h: 80", "h:80 ", "h:0x50", "h:8o", "h:http", "h:1.5",
                      "[::1]:", "[::1]:abc"})
        rejection(text);
}

TEST_CASE("empty text and text without a colon are rejected", "[address]") {
    rejection("");
    rejection("localhost");
    rejection("9000");
    rejection("[::1]");
    rejection("[::1]9000");
}

TEST_CASE("an IPv6 address without brackets is rejected", "[address]") {
    auto why = rejection("::1:9000");
    CHECK(why.find("brackets") != std::string::npos);
    rejection("fe80::1:80");
    rejection("a:b:80");
    rejection("::");
}

TEST_CASE("malformed brackets are rejected", "[address]") {
    for (auto text : {"[::1:9000", "[]:80", "[localhost]:80", "[127.0.0.1]:80", "[::1]]:80",
                      "[[::1]]:80", "[::g]:80", "[1:2:3:4:5:6:7:8:9]:80", "[fe80::1%]:80",
                      "[::1] :80", "x[::1]:80", "::1]:80"})
        rejection(text);
}

TEST_CASE("junk in the host is rejected", "[address]") {
    for (auto text : {"local host:80", " localhost:80", "localhost :80", "a/b:80", "a@b:80",
                      "a..b:80", ".a:80", "a\tb:80", "a\nb:80", "caf\xc3\xa9:80", "a%b:80",
                      "1.2.3.256:80", "1.2.3:80", "1234:80", "01.2.3.4:80"})
        rejection(text);
}

TEST_CASE("an embedded NUL byte is rejected", "[address]") {
    using namespace std::string_view_literals;
    rejection("localhost\0:80"sv);
    rejection("localhost:80\0"sv);
    rejection("\0"sv);
}

TEST_CASE("a host of up to 253 characters is accepted, and no longer", "[address]") {
    // Labels of 63 characters, the longest DNS allows, joined by dots.
    std::string label(63, 'a');
    std::string host = label + '.' + label + '.' + label + '.' + std::string(61, 'b');
    REQUIRE(host.size() == 253);
    auto a = sc::parse_address(host + ":1");
    REQUIRE(a);
    CHECK(a->host == host);

    rejection(host + "c:1");
    rejection(std::string(64, 'a') + ":1"); // one label too long
    rejection(std::string(100000, 'a') + ":1");
}

TEST_CASE("parsing without an error string still reports failure", "[address]") {
    CHECK_FALSE(sc::parse_address("nope"));
    CHECK_FALSE(sc::parse_address("[::1"));
}

TEST_CASE("to_string writes an address the way parse_address reads it", "[address]") {
    for (auto text : {"127.0.0.1:9000", ":0", "[::1]:9000", "localhost:80", "[fe80::1%lo]:22"}) {
        auto a = sc::parse_address(text);
        REQUIRE(a);
        CHECK(sc::to_string(*a) == text);
        CHECK(sc::parse_address(sc::to_string(*a)) == a);
    }
}

TEST_CASE("to_string writes endpoints with IPv6 in brackets", "[address]") {
    using asio::ip::tcp;
    CHECK(sc::to_string(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 9000)) ==
          "127.0.0.1:9000");
    CHECK(sc::to_string(tcp::endpoint(asio::ip::make_address("::1"), 9000)) == "[::1]:9000");
    CHECK(sc::to_string(tcp::endpoint(tcp::v4(), 0)) == "0.0.0.0:0");
    CHECK(sc::to_string(tcp::endpoint(asio::ip::make_address("255.255.255.255"), 65535)) ==
          "255.255.255.255:65535");
    CHECK(sc::to_string(tcp::endpoint(asio::ip::make_address("10.0.100.9"), 80)) ==
          "10.0.100.9:80");
    CHECK(sc::to_string(tcp::endpoint(asio::ip::make_address("::ffff:1.2.3.4"), 1)) ==
          "[::ffff:1.2.3.4]:1");
}

TEST_CASE("every IPv4 address is written as inet_ntop writes it", "[address]") {
    using asio::ip::tcp;
    // The connector formats IPv4 itself (it does so on every accept): check it against the
    // system's inet_ntop for each value a byte can take, in every position, and a port sweep.
    for (unsigned v = 0; v < 256; ++v) {
        for (unsigned position = 0; position < 4; ++position) {
            asio::ip::address_v4::bytes_type bytes{1, 20, 255, 0};
            bytes[position] = static_cast<unsigned char>(v);
            asio::ip::address_v4 address(bytes);
            auto port = static_cast<unsigned short>(v * 257 + position);
            INFO("byte " << v << " at " << position);
            CHECK(sc::to_string(tcp::endpoint(address, port)) ==
                  address.to_string() + ":" + std::to_string(port));
        }
    }
}

TEST_CASE("a server side binds all IPv4 interfaces, a numeric address, or a name", "[address]") {
    using asio::ip::tcp;
    auto any = sc::server_side_options(*sc::parse_address(":8000"));
    CHECK(any.endpoint == tcp::endpoint(asio::ip::address_v4::any(), 8000));
    CHECK(any.host.empty());
    CHECK(any.port.empty());

    auto loopback = sc::server_side_options(*sc::parse_address("[::1]:0"));
    CHECK(loopback.endpoint == tcp::endpoint(asio::ip::make_address("::1"), 0));
    CHECK(loopback.host.empty());

    auto named = sc::server_side_options(*sc::parse_address("localhost:9000"));
    CHECK(named.host == "localhost");
    CHECK(named.port == "9000");
}

TEST_CASE("a socket side needs a host and a port other than 0", "[address]") {
    using asio::ip::tcp;
    std::string why;
    CHECK_FALSE(sc::socket_side_options(*sc::parse_address(":9000"), &why));
    CHECK_FALSE(why.empty());
    why.clear();
    CHECK_FALSE(sc::socket_side_options(*sc::parse_address("localhost:0"), &why));
    CHECK_FALSE(why.empty());

    auto numeric = sc::socket_side_options(*sc::parse_address("127.0.0.1:9000"));
    REQUIRE(numeric);
    CHECK(numeric->endpoint == tcp::endpoint(asio::ip::make_address("127.0.0.1"), 9000));

    auto named = sc::socket_side_options(*sc::parse_address("localhost:9000"));
    REQUIRE(named);
    CHECK(named->host == "localhost");
    CHECK(named->port == "9000");
}

TEST_CASE("random byte strings never crash or throw the parser", "[address]") {
    std::mt19937 random(20240607); // fixed: a failure can be replayed
    using namespace std::string_view_literals;
    // Half the strings are drawn from the characters the grammar cares about, half are any bytes.
    const std::string_view alphabet = "0123456789abcdefABCDEF:[].%-_ \t\n\r\0\xff/@"sv;
    for (int round = 0; round < 5000; ++round) {
        std::string text(std::uniform_int_distribution<std::size_t>(0, 300)(random), '\0');
        bool from_alphabet = round % 2 == 0;
        for (auto& c : text) {
            auto r = random();
            c = from_alphabet ? alphabet[r % alphabet.size()] : static_cast<char>(r & 0xff);
        }
        std::string why;
        std::optional<sc::address> parsed;
        REQUIRE_NOTHROW(parsed = sc::parse_address(text, &why));
        if (parsed) {
            // Whatever is accepted survives a round trip and becomes side options.
            CHECK(why.empty());
            CHECK(parsed->host.size() <= sc::max_host_length);
            CHECK(sc::parse_address(sc::to_string(*parsed)) == parsed);
            REQUIRE_NOTHROW(sc::server_side_options(*parsed));
            REQUIRE_NOTHROW(sc::socket_side_options(*parsed));
        } else {
            CHECK_FALSE(why.empty());
        }
    }
}

TEST_CASE("parse_port accepts 0 to 65535 and explains everything else", "[address]") {
    CHECK(sc::parse_port("0") == std::uint16_t{0});
    CHECK(sc::parse_port("4567") == std::uint16_t{4567});
    CHECK(sc::parse_port("65535") == std::uint16_t{65535});
    for (std::string_view bad : {"", "65536", "-1", "+1", " 1", "1 ", "123456", "0x10", "１"}) {
        std::string why;
        INFO("port text: '" << bad << "'");
        CHECK_FALSE(sc::parse_port(bad, &why));
        CHECK_FALSE(why.empty());
    }
}
