// Fuzzes the PROXY protocol header reader (include/socket_connector/proxy_protocol.hpp) on any
// bytes. Checked: the decision on every prefix is need_more until it is made, and never changes
// once made (a reader may stop as soon as it is not need_more); a complete header is no longer
// than the input and within the limits of its version; and a header with addresses, written
// again as v1 and as v2, reads back as the same addresses.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include <socket_connector/proxy_protocol.hpp>

#include "fuzz_check.hpp"

namespace sc = socket_connector;

namespace {

sc::proxy_parse_result parse(std::string_view bytes) {
    return sc::parse_proxy_header(std::span<const char>(bytes.data(), bytes.size()));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto input = fuzz::as_text(data, size);
    const auto whole = parse(input);
    // The first prefix that decides, decides for the whole input too.
    bool decided = false;
    for (std::size_t n = 0; n <= input.size() && n <= 5000; ++n) {
        auto r = parse(input.substr(0, n));
        if (r.status == sc::proxy_status::need_more) {
            FUZZ_CHECK(!decided);
            continue;
        }
        if (!decided) {
            decided = true;
            FUZZ_CHECK(r.status == whole.status);
            FUZZ_CHECK(r.length == whole.length);
            FUZZ_CHECK(r.header == whole.header);
        }
    }
    if (whole.status == sc::proxy_status::invalid) FUZZ_CHECK(!whole.error.empty());
    if (whole.status != sc::proxy_status::complete) return 0;
    FUZZ_CHECK(whole.length <= input.size());
    const auto& h = whole.header;
    if (h.version == 1) {
        FUZZ_CHECK(whole.length <= sc::proxy_v1_max_length);
        FUZZ_CHECK(input.substr(whole.length - 2, 2) == "\r\n");
    } else {
        FUZZ_CHECK(h.version == 2);
        FUZZ_CHECK(whole.length >= 16 && whole.length <= sc::proxy_v2_max_length);
    }
    if (h.local) return 0;
    FUZZ_CHECK(h.source.address().is_v4() == h.destination.address().is_v4());
    for (int version : {1, 2}) {
        const auto again = version == 1 ? sc::proxy_header_v1(h.source, h.destination)
                                        : sc::proxy_header_v2(h.source, h.destination);
        auto r = parse(again);
        FUZZ_CHECK(r.status == sc::proxy_status::complete);
        FUZZ_CHECK(r.length == again.size());
        FUZZ_CHECK(r.header.source == h.source);
        FUZZ_CHECK(r.header.destination == h.destination);
    }
    return 0;
}
