// Fuzzes the chat server's pure parts (examples/chat_protocol.hpp): the line framer, the command
// parser and clean_text.
//
// Input: byte 0 picks the framer's line limit (0 to 63, or 0xff for chat::max_line), byte 1
// how the stream is cut into pieces, and the rest is the byte stream a client sends. Checked:
// the framer gives the same lines however the stream is cut, and the lines a simple reference
// framer gives; no line holds an LF or passes the limit; each line parses into a command that
// fits it; clean_text's output is valid UTF-8 with no control characters, and cleaning twice
// changes nothing.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "chat_protocol.hpp"
#include "fuzz_check.hpp"

namespace {

using lines = std::vector<chat::framed_line>;

/// The framer's contract, written as plainly as possible: cut at each LF, drop one CR before it;
/// a line over `max` is reported as too long; a last line without LF counts if it is not empty.
lines reference_frame(std::string_view stream, std::size_t max) {
    lines out;
    auto emit = [&](std::string_view line) {
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.size() > max)
            out.push_back({{}, true});
        else
            out.push_back({std::string(line), false});
    };
    for (;;) {
        auto lf = stream.find('\n');
        if (lf == std::string_view::npos) break;
        emit(stream.substr(0, lf));
        stream.remove_prefix(lf + 1);
    }
    if (!stream.empty()) emit(stream);
    return out;
}

lines frame(std::string_view stream, std::size_t max, fuzz::cuts* cuts) {
    chat::line_framer framer(max);
    lines out;
    while (!stream.empty()) {
        auto n = cuts ? cuts->next(stream.size()) : stream.size();
        for (auto& line : framer.feed(std::span<const char>(stream.data(), n)))
            out.push_back(std::move(line));
        stream.remove_prefix(n);
    }
    if (auto last = framer.finish()) out.push_back(std::move(*last));
    FUZZ_CHECK(!framer.finish()); // finish() empties the framer
    return out;
}

bool is_space(char c) {
    return c == ' ' || c == '\t';
}

bool has_space(std::string_view s) {
    return s.find_first_of(" \t") != std::string_view::npos;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && is_space(s.front()))
        s.remove_prefix(1);
    while (!s.empty() && is_space(s.back()))
        s.remove_suffix(1);
    return s;
}

void check_command(std::string_view line) {
    auto c = chat::parse_command(line);
    FUZZ_CHECK(chat::parse_command(line) == c);
    auto t = trim(line);
    FUZZ_CHECK((c.kind == chat::command_kind::empty) == t.empty());
    if (t.empty()) return;
    bool slash = t.front() == '/' && !t.starts_with("//");
    FUZZ_CHECK((c.kind == chat::command_kind::say) == !slash);
    switch (c.kind) {
    case chat::command_kind::say:
        FUZZ_CHECK(c.name.empty());
        FUZZ_CHECK(c.text == (t.starts_with("//") ? t.substr(1) : line));
        break;
    case chat::command_kind::nick:
    case chat::command_kind::join:
        FUZZ_CHECK(!c.name.empty() && !has_space(c.name) && c.text.empty());
        FUZZ_CHECK(line.find(c.name) != std::string_view::npos);
        break;
    case chat::command_kind::msg:
        FUZZ_CHECK(!c.name.empty() && !has_space(c.name));
        FUZZ_CHECK(!c.text.empty() && trim(c.text) == c.text);
        FUZZ_CHECK(line.find(c.text) != std::string_view::npos);
        break;
    case chat::command_kind::usage_error:
        FUZZ_CHECK(c.name == "nick" || c.name == "join" || c.name == "msg");
        FUZZ_CHECK(c.text.starts_with("/" + c.name + " "));
        break;
    case chat::command_kind::unknown:
        FUZZ_CHECK(!has_space(c.name));
        FUZZ_CHECK(c.name.size() < t.size());
        for (char ch : c.name)
            FUZZ_CHECK(!(ch >= 'A' && ch <= 'Z'));
        break;
    default: // rooms, who, help, quit: the word alone decides
        FUZZ_CHECK(c.name.empty() && c.text.empty());
        break;
    }
    if (!c.name.empty() && !chat::name_error(c.name)) {
        FUZZ_CHECK(c.name.size() <= chat::max_name);
        FUZZ_CHECK(chat::same_name(c.name, c.name));
    }
}

/// Valid UTF-8 with no C0 control but tab, no DEL and no C1 control.
void check_clean(std::string_view raw) {
    auto clean = chat::clean_text(raw);
    FUZZ_CHECK(clean.size() <= 3 * raw.size());
    for (std::size_t i = 0; i < clean.size();) {
        std::size_t bad = 0;
        auto length = chat::detail::utf8_sequence(std::string_view(clean).substr(i), bad);
        FUZZ_CHECK(length != 0); // valid UTF-8
        auto c = static_cast<unsigned char>(clean[i]);
        FUZZ_CHECK(length != 1 || c == '\t' || (c >= 0x20 && c != 0x7f));
        FUZZ_CHECK(length != 2 || c != 0xc2 || static_cast<unsigned char>(clean[i + 1]) >= 0xa0);
        i += length;
    }
    FUZZ_CHECK(chat::clean_text(clean) == clean);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    std::size_t max = data[0] == 0xff ? chat::max_line : data[0] % 64;
    fuzz::cuts cuts(data[1]);
    auto stream = fuzz::as_text(data + 2, size - 2);

    auto whole = frame(stream, max, nullptr);
    auto pieces = frame(stream, max, &cuts);
    FUZZ_CHECK(pieces == whole);
    FUZZ_CHECK(whole == reference_frame(stream, max));

    for (const auto& line : whole) {
        FUZZ_CHECK(line.text.find('\n') == std::string::npos);
        FUZZ_CHECK(line.text.size() <= max);
        FUZZ_CHECK(!line.too_long || line.text.empty());
        check_command(line.text);
        check_clean(line.text);
    }
    check_clean(stream); // clean_text takes any bytes, LFs included
    return 0;
}
