// The PROXY protocol header (include/socket_connector/proxy_protocol.hpp): v1 and v2 read from
// the bytes a connection sends (every prefix, every malformed case the specification names),
// written, and read back.
#include <socket_connector/proxy_protocol.hpp>

#include <string>
#include <vector>

#include "support/net.hpp"

using namespace test_support;

namespace {

sc::proxy_parse_result parse(std::string_view bytes) {
    return sc::parse_proxy_header(std::span<const char>(bytes.data(), bytes.size()));
}

/// Every proper prefix of `header` needs more; the whole of it, with `tail` after it, is one
/// complete header of exactly its length.
sc::proxy_header complete(const std::string& header, const std::string& tail = "payload") {
    for (std::size_t n = 0; n < header.size(); ++n) {
        INFO("prefix of " << n << " bytes");
        CHECK(parse(header.substr(0, n)).status == sc::proxy_status::need_more);
    }
    auto r = parse(header + tail);
    INFO(r.error);
    REQUIRE(r.status == sc::proxy_status::complete);
    CHECK(r.length == header.size());
    CHECK(parse(header).length == header.size());
    return r.header;
}

/// `bytes` is refused, and stays refused whatever follows.
std::string_view refused(const std::string& bytes) {
    auto r = parse(bytes);
    CHECK(r.status == sc::proxy_status::invalid);
    CHECK(!r.error.empty());
    CHECK(parse(bytes + "\r\n\r\nmore").status == sc::proxy_status::invalid);
    return r.error;
}

tcp::endpoint at(const char* address, unsigned short port) {
    return {asio::ip::make_address(address), port};
}

std::string v2(unsigned char ver_cmd, unsigned char family, std::vector<unsigned char> body,
               std::size_t length = std::string::npos) {
    std::string out(sc::proxy_v2_signature.begin(), sc::proxy_v2_signature.end());
    if (length == std::string::npos) length = body.size();
    out += static_cast<char>(ver_cmd);
    out += static_cast<char>(family);
    out += static_cast<char>(length >> 8);
    out += static_cast<char>(length & 0xFF);
    for (auto b : body)
        out += static_cast<char>(b);
    return out;
}

} // namespace

TEST_CASE("PROXY v1 headers are read with every prefix needing more", "[proxy_protocol]") {
    auto h = complete("PROXY TCP4 192.0.2.10 198.51.100.7 56324 443\r\n");
    CHECK(h.version == 1);
    CHECK(!h.local);
    CHECK(h.source == at("192.0.2.10", 56324));
    CHECK(h.destination == at("198.51.100.7", 443));
    auto h6 = complete("PROXY TCP6 2001:db8::1 ::1 65535 0\r\n");
    CHECK(h6.source == at("2001:db8::1", 65535));
    CHECK(h6.destination == at("::1", 0));
    auto unknown = complete("PROXY UNKNOWN\r\n");
    CHECK(unknown.local);
    CHECK(unknown.version == 1);
    CHECK(complete("PROXY UNKNOWN ffff::1 ffff::2 1 2 whatever is here\r\n").local);
    // The longest line the specification allows: 107 bytes with its CR LF.
    std::string longest = "PROXY UNKNOWN " + std::string(107 - 16, 'x') + "\r\n";
    REQUIRE(longest.size() == 107);
    CHECK(complete(longest).local);
}

TEST_CASE("malformed PROXY v1 headers are refused", "[proxy_protocol]") {
    CHECK(refused("GET / HTTP/1.1\r\n") == "no PROXY header");
    CHECK(refused("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n") == "no PROXY header");
    CHECK(refused("PROXYTCP4") == "no PROXY header");
    refused("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n");                          // LF without CR
    refused("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX");                         // CR without LF
    refused("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n");                        // unknown protocol
    refused("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n");                          // too few fields
    refused("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n");                      // too many
    refused("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n");                       // a trailing space
    refused("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n");                       // two spaces
    refused("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n");                      // not an IPv4 address
    refused("PROXY TCP4 ::1 5.6.7.8 1 2\r\n");                            // IPv6 under TCP4
    refused("PROXY TCP6 1.2.3.4 ::1 1 2\r\n");                            // IPv4 under TCP6
    refused("PROXY TCP6 fe80::1%lo ::1 1 2\r\n");                         // a scope
    refused(std::string("PROXY TCP4 1.2.3.4\0junk 5.6.7.8 1 2\r\n", 37)); // a NUL
    refused("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n");                    // port out of range
    refused("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n");                       // leading zero
    refused("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n");                       // sign
    refused("PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n");                         // empty port
    refused("PROXY UNKNOWN " + std::string(200, 'x') + "\r\n");           // over 107 bytes
    CHECK(refused("PROXY " + std::string(101, 'x')) ==
          "PROXY v1 line without CR LF within 107 bytes");
    CHECK(parse("PROXY " + std::string(100, 'x')).status == sc::proxy_status::need_more);
}

TEST_CASE("PROXY v2 headers are read with every prefix needing more", "[proxy_protocol]") {
    auto h = complete(v2(0x21, 0x11, {192, 0, 2, 10, 198, 51, 100, 7, 0xDC, 0x04, 0x01, 0xBB}));
    CHECK(h.version == 2);
    CHECK(!h.local);
    CHECK(h.source == at("192.0.2.10", 56324));
    CHECK(h.destination == at("198.51.100.7", 443));
    std::vector<unsigned char> six(36, 0);
    six[0] = 0x20, six[1] = 0x01, six[2] = 0x0d, six[3] = 0xb8, six[15] = 1; // 2001:db8::1
    six[31] = 1;                                                             // ::1
    six[32] = 0x12, six[33] = 0x34, six[34] = 0, six[35] = 80;
    auto h6 = complete(v2(0x21, 0x21, six));
    CHECK(h6.source == at("2001:db8::1", 0x1234));
    CHECK(h6.destination == at("::1", 80));
    // TLVs after the addresses are skipped with them.
    auto with_tlv = v2(0x21, 0x11, {10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2, 0x04, 0x00, 0x01, 'x'});
    auto t = complete(with_tlv);
    CHECK(t.source == at("10.0.0.1", 1));
    // LOCAL (a health check), UNSPEC and UNIX: no address to use.
    CHECK(complete(v2(0x20, 0x00, {})).local);
    CHECK(complete(v2(0x20, 0x11, {1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2})).local);
    CHECK(complete(v2(0x21, 0x00, {})).local);
    CHECK(complete(v2(0x21, 0x31, std::vector<unsigned char>(216, 'u'))).local);
}

TEST_CASE("malformed PROXY v2 headers are refused", "[proxy_protocol]") {
    const std::vector<unsigned char> four = {1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2};
    CHECK(refused(v2(0x11, 0x11, four)) == "PROXY v2 header: unknown version");
    CHECK(refused(v2(0x31, 0x11, four)) == "PROXY v2 header: unknown version");
    CHECK(refused(v2(0x22, 0x11, four)) == "PROXY v2 header: unknown command");
    CHECK(refused(v2(0x21, 0x41, four)) == "PROXY v2 header: unknown address family");
    CHECK(refused(v2(0x21, 0x13, four)) == "PROXY v2 header: unknown address family");
    // A datagram's addresses are valid but not a TCP connection's: like UNSPEC, none is used.
    CHECK(complete(v2(0x21, 0x12, four)).local);
    CHECK(complete(v2(0x21, 0x22, std::vector<unsigned char>(36, 1))).local);
    CHECK(refused(v2(0x21, 0x11, {1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0})) ==
          "PROXY v2 header: IPv4 addresses need 12 bytes");
    CHECK(refused(v2(0x21, 0x21, four)) == "PROXY v2 header: IPv6 addresses need 36 bytes");
    // Over the bound: refused from its length alone, before the body comes.
    CHECK(refused(v2(0x21, 0x11, {}, sc::proxy_v2_max_length)) == "PROXY v2 header too long");
    // The version is judged as soon as its byte is there.
    auto early = v2(0x11, 0x11, {});
    CHECK(parse(early.substr(0, 13)).status == sc::proxy_status::invalid);
    // A signature that breaks off: not a header.
    std::string broken(sc::proxy_v2_signature.begin(), sc::proxy_v2_signature.end());
    broken[11] = 'X';
    CHECK(refused(broken) == "no PROXY header");
    // The longest accepted header is complete.
    auto longest = v2(0x21, 0x11, std::vector<unsigned char>(sc::proxy_v2_max_length - 16, 0));
    CHECK(parse(longest).status == sc::proxy_status::complete);
}

TEST_CASE("headers written are read back", "[proxy_protocol]") {
    const tcp::endpoint pairs[][2] = {
        {at("192.0.2.10", 56324), at("198.51.100.7", 443)},
        {at("2001:db8::1", 1), at("::1", 65535)},
        {at("127.0.0.1", 40000), at("::1", 9000)}, // two families: both written as IPv6
    };
    for (const auto& p : pairs) {
        for (int version : {1, 2}) {
            auto bytes =
                version == 1 ? sc::proxy_header_v1(p[0], p[1]) : sc::proxy_header_v2(p[0], p[1]);
            INFO("v" << version << " " << p[0] << " " << p[1]);
            auto h = complete(bytes);
            CHECK(h.version == version);
            CHECK(!h.local);
            CHECK(h.source.port() == p[0].port());
            CHECK(h.destination.port() == p[1].port());
            if (p[0].address().is_v4() == p[1].address().is_v4()) {
                CHECK(h.source == p[0]);
                CHECK(h.destination == p[1]);
            } else {
                CHECK(h.source.address() == asio::ip::address(asio::ip::make_address_v6(
                                                asio::ip::v4_mapped, p[0].address().to_v4())));
                CHECK(h.destination.address() == p[1].address());
            }
        }
    }
    CHECK(sc::proxy_header_v1(at("192.0.2.10", 56324), at("198.51.100.7", 443)) ==
          "PROXY TCP4 192.0.2.10 198.51.100.7 56324 443\r\n");
    CHECK(sc::proxy_header_v2(at("10.0.0.1", 1), at("10.0.0.2", 2)) ==
          v2(0x21, 0x11, {10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2}));
}
