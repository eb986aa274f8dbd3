// Signed session tokens (socket_connector/session_token.hpp): minting and checking, every way a
// token is refused, the secret and its file, and tokens made by an independent implementation
// (Python's hmac) accepted, and ours checked by it.
#include <socket_connector/session_token.hpp>

#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <catch2/catch.hpp>
#include <unistd.h>

#include "support/programs.hpp"

namespace sc = socket_connector;

namespace {

const sc::token_secret secret("a secret of at least 16 bytes");
constexpr std::uint64_t now = 1'800'000'000;

/// The reason `token` is refused at `now` (empty if it is accepted).
std::string refusal(std::string_view token, std::uint64_t at = now) {
    std::string why;
    auto checked = sc::check_token(secret, token, at, &why);
    return checked ? std::string() : why;
}

/// Runs python3 with `args` and gives its stdout once it has exited 0 (within 10 s).
asio::awaitable<void> run_python(std::vector<std::string> args, std::string& out) {
    args.insert(args.begin(), "python3");
    auto python = std::make_unique<test_support::child_process>(std::move(args));
    CHECK(co_await test_support::exit_of(*python, std::chrono::seconds(10)) == 0);
    INFO("stderr: " << python->err());
    out = python->out();
}

} // namespace

TEST_CASE("a minted token is accepted and says its session, side and expiry", "[session_token]") {
    auto token = sc::mint_token(secret, "device-42_~x", sc::side_id::b, now + 300);
    CHECK(token.starts_with("v1.device-42_~x.B.1800000300."));
    CHECK(token.size() == std::string("v1.device-42_~x.B.1800000300.").size() + 64);
    auto checked = sc::check_token(secret, token, now);
    REQUIRE(checked);
    CHECK(checked->session == "device-42_~x");
    CHECK(checked->side == sc::side_id::b);
    CHECK(checked->expiry == now + 300);
    // Valid up to and including its expiry second.
    CHECK(refusal(token, now + 300).empty());
    CHECK(refusal(token, now + 301) == "expired");
    // Another secret: the MAC does not match.
    const sc::token_secret other("another secret, 16+ bytes");
    std::string why;
    CHECK_FALSE(sc::check_token(other, token, now, &why));
    CHECK(why == "bad MAC");
}

TEST_CASE("malformed tokens are refused with the reason, never the token", "[session_token]") {
    const std::string mac(64, '0');
    auto good = sc::mint_token(secret, "s", sc::side_id::a, now);
    CHECK(refusal("") == "malformed: fewer than five fields");
    CHECK(refusal("v1.s.A." + std::to_string(now)) == "malformed: fewer than five fields");
    CHECK(refusal("v2.s.A.1." + mac) == "malformed: not a v1 token");
    CHECK(refusal("v1..A.1." + mac) == "malformed: bad session");
    CHECK(refusal("v1.s s.A.1." + mac) == "malformed: bad session");
    CHECK(refusal("v1." + std::string(129, 's') + ".A.1." + mac) == "malformed: bad session");
    CHECK(refusal("v1.s.C.1." + mac) == "malformed: the side is not A or B");
    CHECK(refusal("v1.s.a.1." + mac) == "malformed: the side is not A or B");
    CHECK(refusal("v1.s.A.01." + mac) == "malformed: bad expiry");
    CHECK(refusal("v1.s.A.+1." + mac) == "malformed: bad expiry");
    CHECK(refusal("v1.s.A.." + mac) == "malformed: bad expiry");
    CHECK(refusal("v1.s.A.18446744073709551616." + mac) == "malformed: bad expiry");
    CHECK(refusal("v1.s.A.1." + mac + "0") == "malformed: bad MAC field");
    CHECK(refusal("v1.s.A.1." + std::string(64, 'A')) == "malformed: bad MAC field");
    CHECK(refusal("v1.s.A.1." + mac + ".x") == "malformed: bad MAC field");
    CHECK(refusal(good + std::string(300, 'x')) == "malformed: too long");
    // Upper-case hex is another spelling of the same MAC: refused, one spelling per token.
    auto upper = good;
    for (auto i = upper.size() - 64; i < upper.size(); ++i)
        upper[i] = static_cast<char>(std::toupper(static_cast<unsigned char>(upper[i])));
    if (upper != good) CHECK(refusal(upper) == "malformed: bad MAC field");
    // The largest expiry and the longest session are fine.
    CHECK(
        refusal(sc::mint_token(secret, std::string(128, 'z'), sc::side_id::a, UINT64_MAX)).empty());
    CHECK(refusal(sc::mint_token(secret, "s", sc::side_id::a, 0), 0).empty());
    CHECK_THROWS_AS(sc::mint_token(secret, "", sc::side_id::a, now), std::invalid_argument);
    CHECK_THROWS_AS(sc::mint_token(secret, "a.b", sc::side_id::a, now), std::invalid_argument);
}

TEST_CASE("any one changed byte of a token makes it refused", "[session_token]") {
    auto token = sc::mint_token(secret, "session-7", sc::side_id::a, now + 60);
    std::mt19937 random(7);
    for (std::size_t at = 0; at < token.size(); ++at) {
        for (int round = 0; round < 8; ++round) {
            auto changed = token;
            const auto flip = static_cast<unsigned char>(1 + random() % 255);
            changed[at] = static_cast<char>(static_cast<unsigned char>(changed[at]) ^ flip);
            INFO("byte " << at);
            CHECK_FALSE(refusal(changed).empty());
        }
    }
}

TEST_CASE("the secret: at least 16 bytes, read from a file without its last line break",
          "[session_token]") {
    CHECK_THROWS_AS(sc::token_secret("15 bytes secret"), std::invalid_argument);
    CHECK_NOTHROW(sc::token_secret("16 bytes secret!"));
    auto lf = test_support::temp_file("lf", "0123456789abcdef\n");
    auto crlf = test_support::temp_file("crlf", "0123456789abcdef\r\n");
    auto two = test_support::temp_file("two", "0123456789abcdef\n\n");
    auto short_one = test_support::temp_file("short", "0123456789abcde\n");
    CHECK(sc::token_secret::from_file(lf).bytes() == "0123456789abcdef");
    CHECK(sc::token_secret::from_file(crlf).bytes() == "0123456789abcdef");
    CHECK(sc::token_secret::from_file(two).bytes() == "0123456789abcdef\n");
    CHECK_THROWS_WITH(sc::token_secret::from_file(short_one),
                      Catch::Contains("holds 15 bytes; at least 16 are needed"));
    CHECK_THROWS_AS(sc::token_secret::from_file("/nonexistent/secret"), std::system_error);
    // A token minted with the file's secret checks with the same text given directly.
    auto token = sc::mint_token(sc::token_secret::from_file(crlf), "s", sc::side_id::a, now);
    CHECK(sc::check_token(sc::token_secret("0123456789abcdef"), token, now));
    for (auto& path : {lf, crlf, two, short_one})
        std::filesystem::remove(path);
}

TEST_CASE("tokens minted by Python's hmac are accepted, and Python accepts ours",
          "[session_token]") {
    if (std::system("command -v python3 >/dev/null 2>&1") != 0) {
        WARN("python3 is not installed: scripts/test installs it");
        FAIL("python3 missing");
    }
    // The README's few lines of Python, as a control plane would run them.
    const std::string script = R"(
import hashlib, hmac, sys
secret = b"a secret of at least 16 bytes"
def mint(session, side, expiry):
    signed = f"v1.{session}.{side}.{expiry}"
    return signed + "." + hmac.new(secret, signed.encode(), hashlib.sha256).hexdigest()
print(mint("py-session", "A", 1800000600))
ours = sys.argv[1]
signed, mac = ours.rsplit(".", 1)
print("ok" if hmac.compare_digest(mac, hmac.new(secret, signed.encode(), hashlib.sha256).hexdigest()) else "bad")
)";
    auto ours = sc::mint_token(secret, "cpp-session", sc::side_id::b, now + 5);
    std::string out;
    {
        asio::io_context io;
        test_support::run(io, run_python({"-c", script, ours}, out));
    }
    INFO("python: " << out);
    auto newline = out.find('\n');
    REQUIRE(newline != std::string::npos);
    auto theirs = out.substr(0, newline);
    auto checked = sc::check_token(secret, theirs, now);
    REQUIRE(checked);
    CHECK(checked->session == "py-session");
    CHECK(checked->side == sc::side_id::a);
    CHECK(checked->expiry == 1'800'000'600u);
    CHECK(out.substr(newline + 1) == "ok\n");
}
