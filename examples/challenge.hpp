#pragma once

// The challenge and its answer for examples/auth_relay.cpp, shared with tests/examples_test.cpp.
//
// A DEMONSTRATION, NOT CRYPTOGRAPHY. The answer is FNV-1a (64 bits) over the secret followed by
// the nonce, printed as 16 lowercase hex digits. FNV-1a is a fast checksum, not a keyed MAC:
// anyone who sees one challenge and its answer can test guesses of the secret offline at
// billions per second, and nothing here hides the traffic. It shows the shape of a
// challenge/response verifier (fresh nonce, bounded read, constant-time compare) without
// OpenSSL; real programs use HMAC-SHA-256 (or TLS with client certificates) instead.
//
// The same answer in bash, for trying the example by hand (LC_ALL=C makes it work on bytes):
//
//   answer() { local LC_ALL=C s="$1$2" h=$((0xcbf29ce484222325)) i c
//     for ((i = 0; i < ${#s}; i++)); do
//       printf -v c %d "'${s:i:1}"; h=$(((h ^ (c & 255)) * 0x100000001b3)); done
//     printf '%016x\n' "$h"; }
//   answer SECRET NONCE

#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace challenge {

/// Random bytes in a nonce; it is sent as twice as many hex digits.
inline constexpr std::size_t nonce_bytes = 16;

/// What the server sends before the nonce: the whole line is `challenge: NONCE`.
inline constexpr std::string_view prefix = "challenge: ";

/// FNV-1a, 64 bits, over `text`, continuing from `hash` (the FNV offset basis by default).
inline std::uint64_t fnv1a_64(std::string_view text, std::uint64_t hash = 0xcbf29ce484222325ull) {
    for (char c : text) {
        hash ^= static_cast<unsigned char>(c);
        hash *= 0x100000001b3ull;
    }
    return hash;
}

/// The answer to `nonce` for someone who knows `secret`: 16 lowercase hex digits.
inline std::string answer(std::string_view secret, std::string_view nonce) {
    return fmt::format("{:016x}", fnv1a_64(nonce, fnv1a_64(secret)));
}

/// A fresh nonce from the system's random source, as lowercase hex.
inline std::string make_nonce() {
    std::random_device random; // getrandom(2) / /dev/urandom with libstdc++ on Linux
    std::array<unsigned char, nonce_bytes> bytes{};
    for (auto& b : bytes)
        b = static_cast<unsigned char>(random() & 0xff);
    std::string hex;
    for (auto b : bytes)
        hex += fmt::format("{:02x}", b);
    return hex;
}

/// `NONCE`, or the whole line `challenge: NONCE` as a person may paste it: the nonce.
inline std::string_view nonce_of(std::string_view text) {
    if (text.starts_with(prefix)) text.remove_prefix(prefix.size());
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' '))
        text.remove_suffix(1);
    return text;
}

} // namespace challenge
