// Fuzzes the session token (include/socket_connector/session_token.hpp): parsing and checking
// untrusted token text, and minting.
//
// Input: the whole input is a token line as a client would send it (without its LF). Checked:
// check_token never throws and always says why it refuses; a token it accepts is exactly the
// token mint_token makes from what it says (one spelling per token), and not expired. Then, from
// the input's bytes, a session and an expiry are made up and minted: the token is accepted, and
// changing any one of its bytes (which one: from the input) makes it refused.
//
// The same input is also the bytes a client sent before its token line was read
// (detail::read_line_within, which session_token_verifier uses): a line found is at most
// max_line bytes, holds no LF, and ends where the bytes after it start; a decision taken on a
// prefix of the input is the decision on the whole input.

#include <cstddef>
#include <cstdint>
#include <string>
#include <span>
#include <string_view>
#include <algorithm>

#include <socket_connector/session_token.hpp>

#include "fuzz_check.hpp"

namespace sc = socket_connector;

namespace {

const sc::token_secret& secret() {
    static const sc::token_secret s("fuzzing secret, 32 bytes long!!");
    return s;
}

constexpr std::uint64_t now = 1'800'000'000;

/// The token line reader on `text`, with a line limit of `max_line`.
void check_line_reader(std::string_view text, std::size_t max_line, std::size_t cut) {
    using sc::detail::line_state;
    const std::span<const char> all(text.data(), text.size());
    auto whole = sc::detail::read_line_within(all, max_line);
    if (whole.state == line_state::complete) {
        FUZZ_CHECK(whole.line.size() <= max_line);
        FUZZ_CHECK(whole.line.find('\n') == std::string_view::npos);
        FUZZ_CHECK(whole.rest >= 1 && whole.rest <= text.size() && text[whole.rest - 1] == '\n');
        FUZZ_CHECK(whole.line.data() == text.data());
        FUZZ_CHECK(whole.line.size() + 1 == whole.rest ||
                   (whole.line.size() + 2 == whole.rest && text[whole.rest - 2] == '\r'));
    }
    if (whole.state == line_state::need_more) {
        FUZZ_CHECK(text.find('\n') == std::string_view::npos);
        FUZZ_CHECK(text.size() <= max_line + 1);
    }
    // A decision made on a prefix never changes as bytes are appended.
    auto prefix = sc::detail::read_line_within(all.first(std::min(cut, text.size())), max_line);
    if (prefix.state != line_state::need_more) {
        FUZZ_CHECK(prefix.state == whole.state);
        FUZZ_CHECK(prefix.line == whole.line && prefix.rest == whole.rest);
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto text = fuzz::as_text(data, size);
    const std::size_t cut = size == 0 ? 0 : data[0] % (size + 1);
    check_line_reader(text, 1024, cut);
    check_line_reader(text, 16, cut);

    std::string why;
    auto token = sc::check_token(secret(), text, now, &why);
    if (token) {
        FUZZ_CHECK(sc::mint_token(secret(), token->session, token->side, token->expiry) == text);
        FUZZ_CHECK(token->expiry >= now);
    } else {
        FUZZ_CHECK(!why.empty());
    }

    // A session made of the input's bytes that are allowed in one (at most 128 of them).
    std::string session;
    for (char c : text)
        if (sc::detail::is_session_char(c) && session.size() < sc::detail::max_session_length)
            session.push_back(c);
    if (session.empty()) session = "s";
    std::uint64_t expiry = now;
    for (std::size_t i = 0; i < size && i < 8; ++i)
        expiry = expiry * 31 + data[i];
    const auto side = size % 2 == 0 ? sc::side_id::a : sc::side_id::b;
    const std::string minted = sc::mint_token(secret(), session, side, expiry);
    auto back = sc::check_token(secret(), minted, 0);
    FUZZ_CHECK(back && back->session == session && back->side == side && back->expiry == expiry);

    std::string changed = minted;
    const std::size_t at = size == 0 ? 0 : data[size - 1] % changed.size();
    changed[at] = static_cast<char>(changed[at] ^ (size == 0 ? 1 : (data[0] | 1)));
    FUZZ_CHECK(!sc::check_token(secret(), changed, 0));
    return 0;
}
