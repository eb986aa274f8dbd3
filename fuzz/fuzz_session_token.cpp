// Fuzzes the session token (include/socket_connector/session_token.hpp): parsing and checking
// untrusted token text, and minting.
//
// Input: the whole input is a token line as a client would send it (without its LF). Checked:
// check_token never throws and always says why it refuses; a token it accepts is exactly the
// token mint_token makes from what it says (one spelling per token), and not expired. Then, from
// the input's bytes, a session and an expiry are made up and minted: the token is accepted, and
// changing any one of its bytes (which one: from the input) makes it refused.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <socket_connector/session_token.hpp>

#include "fuzz_check.hpp"

namespace sc = socket_connector;

namespace {

const sc::token_secret& secret() {
    static const sc::token_secret s("fuzzing secret, 32 bytes long!!");
    return s;
}

constexpr std::uint64_t now = 1'800'000'000;

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto text = fuzz::as_text(data, size);

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
