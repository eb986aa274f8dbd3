// Fuzzes the request head reader of the command's metrics endpoint
// (examples/metrics_endpoint.hpp): end_of_head, answer_request and response_bytes, on any
// bytes. Checked: the head ends at the first empty line and nowhere else; every answer is one
// of 200, 400, 404 and 405, with a Content-Length that is its body's size and a body only when
// the method was not HEAD; a 200 only for GET or HEAD of /metrics or /stats.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "metrics_endpoint.hpp"

namespace {

/// Where the head ends, written plainly: just past the first LF followed by LF or CR LF.
std::size_t reference_end(std::string_view s) {
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '\n') continue;
        if (i + 1 < s.size() && s[i + 1] == '\n') return i + 2;
        if (i + 2 < s.size() && s[i + 1] == '\r' && s[i + 2] == '\n') return i + 3;
    }
    return std::string_view::npos;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto input = fuzz::as_text(data, size);
    const auto end = example::end_of_head(input);
    FUZZ_CHECK(end == reference_end(input));
    // Read in two parts: looking on from where the first part ended finds the same end.
    const std::size_t split = size == 0 ? 0 : data[0] % (size + 1);
    if (reference_end(input.substr(0, split)) == std::string_view::npos)
        FUZZ_CHECK(example::end_of_head(input, split) == end);
    if (end == std::string_view::npos) return 0;
    const auto head = input.substr(0, end);
    int snapshots = 0;
    auto a = example::answer_request(head, [&] {
        ++snapshots;
        socket_connector::stats s;
        s.bytes_a_to_b = 42;
        return s;
    });
    FUZZ_CHECK(a.status == 200 || a.status == 400 || a.status == 404 || a.status == 405);
    FUZZ_CHECK(snapshots == (a.status == 200 ? 1 : 0));
    const bool get = head.starts_with("GET /");
    const bool head_method = head.starts_with("HEAD /");
    if (a.status == 200) {
        FUZZ_CHECK(get || head_method);
        FUZZ_CHECK(head.starts_with("GET /metrics") || head.starts_with("GET /stats") ||
                   head.starts_with("HEAD /metrics") || head.starts_with("HEAD /stats"));
        FUZZ_CHECK(a.head == head_method);
    }
    if (a.status == 405) FUZZ_CHECK(a.allow && !get && !head_method);
    const auto bytes = example::response_bytes(a);
    FUZZ_CHECK(bytes.starts_with("HTTP/1.1 " + std::to_string(a.status) + " "));
    FUZZ_CHECK(bytes.find("\r\nContent-Length: " + std::to_string(a.body.size()) + "\r\n") !=
               std::string::npos);
    const auto blank = bytes.find("\r\n\r\n");
    FUZZ_CHECK(blank != std::string::npos);
    FUZZ_CHECK(bytes.size() - (blank + 4) == (a.head ? 0 : a.body.size()));
    return 0;
}
