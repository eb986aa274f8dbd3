#pragma once

// The pure parts of chat_server: cutting a byte stream into lines, cleaning a line's text,
// checking names and parsing commands. No I/O and no state beyond the framer's, so each piece
// can be unit-tested (tests/chat_test.cpp) and fuzzed with any bytes.

#include <algorithm>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace chat {

/// The longest line a client may send, in bytes, not counting its LF or CRLF.
inline constexpr std::size_t max_line = 4096;

/// The longest nickname or room name, in bytes.
inline constexpr std::size_t max_name = 32;

/// One result of framing: a whole line without its LF or CRLF, or the news that a line was
/// longer than the limit and was dropped (then `text` is empty).
struct framed_line {
    std::string text;
    bool too_long = false;

    friend bool operator==(const framed_line&, const framed_line&) = default;
};

/// Cuts a byte stream into lines at each LF, dropping one CR just before it; the result does not
/// depend on how the stream was split into pieces.
///
/// A line longer than `max` bytes (not counting its LF or CRLF) is reported once, as `too_long`,
/// as soon as it passes the limit; its bytes up to and including its LF are discarded. Any bytes
/// are valid input, NUL included. Between calls it holds at most `max + 1` bytes.
class line_framer {
public:
    explicit line_framer(std::size_t max = max_line)
        : max_(max) {}

    /// The lines completed by `bytes`, in order.
    std::vector<framed_line> feed(std::span<const char> bytes) {
        std::vector<framed_line> out;
        while (!bytes.empty()) {
            auto lf = std::find(bytes.begin(), bytes.end(), '\n');
            auto size = static_cast<std::size_t>(lf - bytes.begin());
            if (lf == bytes.end()) {
                if (!discarding_) {
                    pending_.append(bytes.data(), size);
                    if (over_limit()) {
                        out.push_back({{}, true});
                        discard();
                    }
                }
                break;
            }
            if (discarding_) {
                discarding_ = false; // the overlong line ends here, already reported
            } else {
                pending_.append(bytes.data(), size);
                out.push_back(take());
            }
            bytes = bytes.subspan(size + 1);
        }
        return out;
    }

    /// At the end of the stream: the last line if it had no LF (nothing if it was empty or
    /// was already reported as too long). The framer is then empty.
    std::optional<framed_line> finish() {
        if (discarding_) {
            discarding_ = false;
            return std::nullopt;
        }
        if (pending_.empty()) return std::nullopt;
        return take();
    }

private:
    // More than `max` bytes, unless the one extra byte is a CR that may yet precede an LF.
    bool over_limit() const {
        return pending_.size() > max_ + 1 ||
               (pending_.size() == max_ + 1 && pending_.back() != '\r');
    }

    framed_line take() {
        if (!pending_.empty() && pending_.back() == '\r') pending_.pop_back();
        framed_line line;
        if (pending_.size() > max_)
            line.too_long = true;
        else
            line.text = std::move(pending_);
        pending_.clear();
        return line;
    }

    void discard() {
        pending_.clear();
        pending_.shrink_to_fit();
        discarding_ = true;
    }

    std::size_t max_;
    std::string pending_;
    bool discarding_ = false;
};

namespace detail {

/// The length of the valid UTF-8 sequence at the start of `s` (1 to 4), or 0 with `bad` set to
/// how many bytes make up its invalid start (at least 1: the maximal subpart, as Unicode says).
inline std::size_t utf8_sequence(std::string_view s, std::size_t& bad) {
    auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
    unsigned char lead = byte(0);
    if (lead < 0x80) return 1;
    std::size_t length = 0;
    unsigned char low = 0x80;
    unsigned char high = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) {
        length = 2;
    } else if (lead >= 0xe0 && lead <= 0xef) {
        length = 3;
        if (lead == 0xe0) low = 0xa0;  // no overlong forms
        if (lead == 0xed) high = 0x9f; // no surrogates
    } else if (lead >= 0xf0 && lead <= 0xf4) {
        length = 4;
        if (lead == 0xf0) low = 0x90;  // no overlong forms
        if (lead == 0xf4) high = 0x8f; // nothing above U+10FFFF
    } else {
        bad = 1;
        return 0;
    }
    for (std::size_t i = 1; i < length; ++i) {
        bool ok =
            i < s.size() && byte(i) >= (i == 1 ? low : 0x80) && byte(i) <= (i == 1 ? high : 0xbf);
        if (!ok) {
            bad = i;
            return 0;
        }
    }
    return length;
}

inline bool is_space(char c) {
    return c == ' ' || c == '\t';
}

inline std::string_view trim(std::string_view s) {
    while (!s.empty() && is_space(s.front()))
        s.remove_prefix(1);
    while (!s.empty() && is_space(s.back()))
        s.remove_suffix(1);
    return s;
}

} // namespace detail

/// The text of a line as it may be shown to others: telnet commands (IAC sequences) removed,
/// control characters removed (C0 but tab, DEL and C1, which could drive a terminal), and each
/// invalid UTF-8 sequence replaced by U+FFFD. Any bytes are valid input.
inline std::string clean_text(std::string_view raw) {
    constexpr unsigned char iac = 0xff;
    constexpr unsigned char sb = 0xfa;
    constexpr unsigned char will = 0xfb; // WILL, WONT, DO and DONT (0xfb to 0xfe) take an option
    std::string out;
    out.reserve(raw.size());
    std::size_t i = 0;
    while (i < raw.size()) {
        auto c = static_cast<unsigned char>(raw[i]);
        if (c == iac) {
            unsigned char command = i + 1 < raw.size() ? static_cast<unsigned char>(raw[i + 1]) : 0;
            if (command == sb) {
                // Subnegotiation: everything up to IAC SE (or the end of the line).
                auto end = raw.find("\xff\xf0", i + 2); // IAC SE
                i = end == std::string_view::npos ? raw.size() : end + 2;
            } else if (command >= will) {
                i += command == iac ? 2 : 3; // IAC IAC is a data byte 0xff: not text either
            } else {
                i += 2;
            }
            continue;
        }
        std::size_t bad = 0;
        std::size_t length = detail::utf8_sequence(raw.substr(i), bad);
        if (length == 0) {
            out += "\xef\xbf\xbd"; // U+FFFD REPLACEMENT CHARACTER
            i += bad;
            continue;
        }
        bool control = (length == 1 && ((c < 0x20 && c != '\t') || c == 0x7f)) ||
                       (length == 2 && c == 0xc2 && static_cast<unsigned char>(raw[i + 1]) < 0xa0);
        if (!control) out.append(raw.substr(i, length));
        i += length;
    }
    return out;
}

/// Why `name` cannot be a nickname or a room name, or nothing if it can: 1 to 32 ASCII letters,
/// digits, '-', '_' or '.'. (No ':', so a nickname never looks like a client's default name
/// `host:port`.)
inline std::optional<std::string_view> name_error(std::string_view name) {
    if (name.empty()) return "a name cannot be empty";
    if (name.size() > max_name) return "a name has at most 32 characters";
    for (char c : name) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.';
        if (!ok) return "a name has only letters, digits, '-', '_' and '.'";
    }
    return std::nullopt;
}

/// Whether two names are the same, ignoring ASCII case (names are unique that way).
inline bool same_name(std::string_view a, std::string_view b) {
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                              [&](char x, char y) { return lower(x) == lower(y); });
}

/// What a line asks for.
enum class command_kind {
    empty,       ///< nothing but spaces: ignored
    say,         ///< a message to the room: `text`
    nick,        ///< `/nick NAME`: `name`
    msg,         ///< `/msg NAME TEXT`: `name`, `text`
    join,        ///< `/join ROOM`: `name`
    rooms,       ///< `/rooms`
    who,         ///< `/who`
    help,        ///< `/help`
    quit,        ///< `/quit`
    usage_error, ///< a known command with wrong arguments: `name` is the command, `text` its usage
    unknown,     ///< `/WORD` for no known WORD: `name` is WORD
};

/// A parsed line. The name's validity is not checked here (see `name_error`).
struct command {
    command_kind kind = command_kind::empty;
    std::string name;
    std::string text;

    friend bool operator==(const command&, const command&) = default;
};

/// Parses one line (without its LF): `/WORD ARGS` is a command, WORD in any case, after optional
/// spaces; anything else is said to the room as it is. `//text` says `/text`.
inline command parse_command(std::string_view line) {
    auto trimmed = detail::trim(line);
    if (trimmed.empty()) return {};
    if (trimmed.front() != '/') return {command_kind::say, {}, std::string(line)};
    if (trimmed.starts_with("//")) return {command_kind::say, {}, std::string(trimmed.substr(1))};

    auto rest = trimmed.substr(1);
    auto space = std::find_if(rest.begin(), rest.end(), detail::is_space);
    std::string word(rest.begin(), space);
    for (auto& c : word)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    auto args = detail::trim(rest.substr(word.size()));
    auto first_end = std::find_if(args.begin(), args.end(), detail::is_space);
    std::string_view first(args.begin(), first_end);
    auto after_first = detail::trim(args.substr(first.size()));

    auto usage = [&](std::string_view text) {
        return command{command_kind::usage_error, word, std::string(text)};
    };
    if (word == "nick") {
        if (first.empty() || !after_first.empty()) return usage("/nick NAME");
        return {command_kind::nick, std::string(first), {}};
    }
    if (word == "join") {
        if (first.empty() || !after_first.empty()) return usage("/join ROOM");
        return {command_kind::join, std::string(first), {}};
    }
    if (word == "msg") {
        if (first.empty() || after_first.empty()) return usage("/msg NAME TEXT");
        return {command_kind::msg, std::string(first), std::string(after_first)};
    }
    if (word == "rooms") return {command_kind::rooms, {}, {}};
    if (word == "who") return {command_kind::who, {}, {}};
    if (word == "help") return {command_kind::help, {}, {}};
    if (word == "quit") return {command_kind::quit, {}, {}};
    return {command_kind::unknown, std::move(word), {}};
}

} // namespace chat
