#pragma once

// Signed session tokens for a rendezvous: `v1.SESSION.SIDE.EXPIRY.MAC`. A control plane that
// knows the secret mints one per client; any relay that knows the secret checks it without a
// database (the stateless, time-limited credentials of TURN servers).
//
//   SESSION  1 to 128 characters of [A-Za-z0-9_~-]
//   SIDE     A or B
//   EXPIRY   Unix time in whole seconds: decimal, no sign, no leading zeros
//   MAC      lowercase hex of HMAC-SHA256(secret, "v1.SESSION.SIDE.EXPIRY")
//
// A token is valid when it is well formed, its MAC matches (compared in constant time) and
// EXPIRY >= now. The secret is at least 16 bytes; read from a file, one trailing LF or CRLF is
// not part of it.
//
// This header needs OpenSSL's libcrypto: link `socket_connector::session_token` (CMake), which
// adds `OpenSSL::Crypto`. The rest of the library does not include it.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <asio/awaitable.hpp>
#include <asio/buffer.hpp>
#include <asio/error.hpp>
#include <asio/use_awaitable.hpp>

#include <socket_connector/auth.hpp>
#include <socket_connector/concepts.hpp>
#include <socket_connector/side_id.hpp>

namespace socket_connector {

namespace detail {

/// HMAC-SHA256 under one key, made ready once: OpenSSL's MAC is fetched and keyed when this is
/// made (libcrypto initialises then, at start-up, not at the first token), and each MAC reuses
/// a keyed context from a small pool (one per thread computing at once) where a one-shot
/// `HMAC()` would make and free a dozen allocations. Copies share the pool.
class hmac_sha256 {
public:
    static constexpr std::size_t size = 32;
    using digest = std::array<unsigned char, size>;

    /// Throws `std::runtime_error` if OpenSSL cannot make the MAC.
    explicit hmac_sha256(std::string_view key)
        : state_(std::make_shared<state>()) {
        std::unique_ptr<EVP_MAC, mac_deleter> mac(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
        if (!mac) fail("EVP_MAC_fetch");
        state_->keyed.reset(EVP_MAC_CTX_new(mac.get())); // holds its own reference to the MAC
        char digest_name[] = "SHA256";
        const OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
            OSSL_PARAM_construct_end()};
        if (!state_->keyed ||
            !EVP_MAC_init(state_->keyed.get(), reinterpret_cast<const unsigned char*>(key.data()),
                          key.size(), params))
            fail("EVP_MAC_init");
        (*this)(std::string_view{}); // a first MAC: the pool's first context, made now
    }

    /// The MAC of `message`. Throws `std::runtime_error` if OpenSSL fails (it does not, short
    /// of memory).
    digest operator()(std::string_view message) const {
        context ctx;
        {
            std::lock_guard lock(state_->mutex);
            if (!state_->idle.empty()) {
                ctx = std::move(state_->idle.back());
                state_->idle.pop_back();
            }
        }
        if (!ctx) ctx.reset(EVP_MAC_CTX_dup(state_->keyed.get())); // keeps the key
        digest out{};
        std::size_t length = 0;
        // A null key starts a new MAC under the key the context holds.
        if (!ctx || !EVP_MAC_init(ctx.get(), nullptr, 0, nullptr) ||
            !EVP_MAC_update(ctx.get(), reinterpret_cast<const unsigned char*>(message.data()),
                            message.size()) ||
            !EVP_MAC_final(ctx.get(), out.data(), &length, out.size()) || length != size)
            fail("HMAC-SHA256");
        std::lock_guard lock(state_->mutex);
        state_->idle.push_back(std::move(ctx));
        return out;
    }

private:
    struct mac_deleter {
        void operator()(EVP_MAC* m) const noexcept { EVP_MAC_free(m); }
    };
    struct context_deleter {
        void operator()(EVP_MAC_CTX* c) const noexcept { EVP_MAC_CTX_free(c); }
    };
    using context = std::unique_ptr<EVP_MAC_CTX, context_deleter>;
    struct state {
        context keyed; // the keyed original, only ever copied
        std::mutex mutex;
        std::vector<context> idle;
    };

    [[noreturn]] static void fail(const char* what) {
        throw std::runtime_error(std::string(what) + " failed (OpenSSL)");
    }

    std::shared_ptr<state> state_;
};

} // namespace detail

/// The shared secret tokens are signed with: at least `min_size` bytes.
class token_secret {
public:
    static constexpr std::size_t min_size = 16;

    /// Throws `std::invalid_argument` when `bytes` is shorter than `min_size`.
    explicit token_secret(std::string bytes)
        : bytes_(checked(std::move(bytes)))
        , hmac_(bytes_) {}

    /// The content of `path`, one trailing LF or CRLF removed. Throws `std::system_error` when
    /// the file cannot be read, `std::invalid_argument` when the secret is too short (the
    /// message names the file).
    static token_secret from_file(const std::filesystem::path& path) {
        std::ifstream in(path, std::ios::binary);
        if (!in)
            throw std::system_error(std::make_error_code(std::errc::no_such_file_or_directory),
                                    "cannot read the secret file " + path.string());
        std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
        if (in.bad())
            throw std::system_error(std::make_error_code(std::errc::io_error),
                                    "cannot read the secret file " + path.string());
        if (bytes.ends_with("\r\n"))
            bytes.resize(bytes.size() - 2);
        else if (bytes.ends_with('\n'))
            bytes.pop_back();
        if (bytes.size() < min_size)
            throw std::invalid_argument("the secret file " + path.string() + " holds " +
                                        std::to_string(bytes.size()) + " bytes; at least " +
                                        std::to_string(min_size) + " are needed");
        return token_secret(std::move(bytes));
    }

    const std::string& bytes() const noexcept { return bytes_; }
    /// HMAC-SHA256 under this secret (what the token functions sign and check with).
    const detail::hmac_sha256& hmac() const noexcept { return hmac_; }

private:
    static std::string checked(std::string bytes) {
        if (bytes.size() < min_size)
            throw std::invalid_argument("the secret has " + std::to_string(bytes.size()) +
                                        " bytes; at least " + std::to_string(min_size) +
                                        " are needed");
        return bytes;
    }

    std::string bytes_;
    detail::hmac_sha256 hmac_;
};

/// What a valid token says.
struct session_token {
    std::string session;
    side_id side = side_id::a;
    std::uint64_t expiry = 0; ///< Unix time, seconds
};

namespace detail {

inline constexpr std::string_view token_version = "v1";
inline constexpr std::size_t max_session_length = 128;
inline constexpr std::size_t token_mac_hex_length = 2 * hmac_sha256::size;
/// The longest well-formed token: "v1." + session + ".A." + 20 digits + "." + 64 hex digits.
inline constexpr std::size_t max_token_length =
    token_version.size() + 1 + max_session_length + 3 + 20 + 1 + token_mac_hex_length;

inline bool is_session_char(char c) noexcept {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '~' || c == '-';
}

/// Lowercase hex of HMAC-SHA256(secret, message).
inline std::string token_mac(const token_secret& secret, std::string_view message) {
    const auto mac = secret.hmac()(message);
    static constexpr char digits[] = "0123456789abcdef";
    std::string hex;
    hex.reserve(2 * mac.size());
    for (unsigned char byte : mac) {
        hex.push_back(digits[byte >> 4]);
        hex.push_back(digits[byte & 0xf]);
    }
    return hex;
}

/// The value of a lowercase hex digit (one `check_token` has already checked).
inline unsigned char hex_value(char c) noexcept {
    return static_cast<unsigned char>(c <= '9' ? c - '0' : c - 'a' + 10);
}

/// EXPIRY: decimal, no sign, no leading zeros, at most 20 digits and within 64 bits.
inline std::optional<std::uint64_t> parse_expiry(std::string_view text) noexcept {
    if (text.empty() || text.size() > 20 || (text.size() > 1 && text[0] == '0'))
        return std::nullopt;
    std::uint64_t value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return std::nullopt;
        auto digit = static_cast<std::uint64_t>(c - '0');
        if (value > (UINT64_MAX - digit) / 10) return std::nullopt;
        value = value * 10 + digit;
    }
    return value;
}

} // namespace detail

/// Why a session name cannot be used in a token, or null.
inline const char* session_error(std::string_view session) noexcept {
    if (session.empty()) return "the session is empty";
    if (session.size() > detail::max_session_length)
        return "the session is longer than 128 characters";
    for (char c : session)
        if (!detail::is_session_char(c))
            return "the session may hold only letters, digits, '_', '~' and '-'";
    return nullptr;
}

/// Mints the token for side `which` of `session`, valid until `expiry` (Unix seconds). Throws
/// `std::invalid_argument` for a session `session_error` refuses.
inline std::string mint_token(const token_secret& secret, std::string_view session, side_id which,
                              std::uint64_t expiry) {
    if (auto why = session_error(session)) throw std::invalid_argument(why);
    std::string signed_part;
    signed_part.reserve(detail::max_token_length);
    signed_part += detail::token_version;
    signed_part += '.';
    signed_part += session;
    signed_part += '.';
    signed_part += to_string(which);
    signed_part += '.';
    signed_part += std::to_string(expiry);
    return signed_part + '.' + detail::token_mac(secret, signed_part);
}

/// Checks `token` at Unix time `now`: what it says, or nothing, with the reason in `*why` when
/// asked ("malformed: ...", "bad MAC", "expired"). Never throws for any input; the token itself
/// is never part of the reason.
inline std::optional<session_token> check_token(const token_secret& secret, std::string_view token,
                                                std::uint64_t now, std::string* why = nullptr) {
    auto refuse = [why](const char* reason) -> std::optional<session_token> {
        if (why) *why = reason;
        return std::nullopt;
    };
    if (token.size() > detail::max_token_length) return refuse("malformed: too long");
    // v1 . SESSION . SIDE . EXPIRY . MAC
    std::string_view parts[5];
    std::string_view rest = token;
    for (int i = 0; i < 4; ++i) {
        auto dot = rest.find('.');
        if (dot == std::string_view::npos) return refuse("malformed: fewer than five fields");
        parts[i] = rest.substr(0, dot);
        rest.remove_prefix(dot + 1);
    }
    parts[4] = rest;
    if (parts[0] != detail::token_version) return refuse("malformed: not a v1 token");
    if (session_error(parts[1])) return refuse("malformed: bad session");
    if (parts[2] != "A" && parts[2] != "B") return refuse("malformed: the side is not A or B");
    auto expiry = detail::parse_expiry(parts[3]);
    if (!expiry) return refuse("malformed: bad expiry");
    if (parts[4].size() != detail::token_mac_hex_length) return refuse("malformed: bad MAC field");
    for (char c : parts[4])
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return refuse("malformed: bad MAC field");
    const auto signed_part = token.substr(0, token.size() - detail::token_mac_hex_length - 1);
    const auto expected = secret.hmac()(signed_part);
    detail::hmac_sha256::digest given{};
    for (std::size_t i = 0; i < given.size(); ++i)
        given[i] = static_cast<unsigned char>(detail::hex_value(parts[4][2 * i]) << 4 |
                                              detail::hex_value(parts[4][2 * i + 1]));
    if (CRYPTO_memcmp(expected.data(), given.data(), given.size()) != 0) return refuse("bad MAC");
    if (*expiry < now) return refuse("expired");
    return session_token{std::string(parts[1]), parts[2] == "A" ? side_id::a : side_id::b, *expiry};
}

/// The Unix time now, in whole seconds.
inline std::uint64_t unix_now() {
    auto since = std::chrono::system_clock::now().time_since_epoch();
    auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since).count();
    return seconds < 0 ? 0 : static_cast<std::uint64_t>(seconds);
}

/// The auth verifier of a rendezvous: each socket's first line is a session token (`TOKEN` LF,
/// or CR LF). A valid token admits the socket as the side it names, paired by its session; the
/// bytes after the LF are relayed once the session is paired. Refused, with the reason in
/// `auth_result::why` (never the token): no line within `max_line` bytes, an end of stream
/// before the LF, or a token `check_token` refuses. It reads at most `read_chunk` bytes at a time
/// and keeps only what came, so a socket holds at most `max_line + 1 + read_chunk` bytes while it
/// authenticates, and a silent one none.
class session_token_verifier {
public:
    static constexpr std::size_t default_max_line = 1024;
    static constexpr std::size_t read_chunk = 4096;
    using works_over_tls = void; // a template over the stream: a TLS side's plaintext too

    explicit session_token_verifier(token_secret secret, std::size_t max_line = default_max_line)
        : secret_(std::make_shared<const token_secret>(std::move(secret)))
        , max_line_(max_line) {}

    template <class Socket>
    asio::awaitable<auth_result> operator()(Socket& socket) const {
        std::vector<char> received;
        for (;;) {
            auto line = detail::read_line_within(received, max_line_);
            if (line.state == detail::line_state::too_long) co_return refused(fmt_too_long());
            if (line.state == detail::line_state::complete) {
                std::string why;
                auto token = check_token(*secret_, line.line, unix_now(), &why);
                if (!token) co_return refused(std::move(why));
                auth_result result;
                result.ok = true;
                result.leftover.assign(received.begin() + static_cast<std::ptrdiff_t>(line.rest),
                                       received.end());
                result.key = std::move(token->session);
                result.side = token->side;
                co_return result;
            }
            auto ec = co_await detail::read_available(socket, received, read_chunk);
            if (ec == asio::error::eof) co_return refused("end of stream before the token line");
            if (ec) co_return refused(ec.message());
        }
    }

private:
    static auth_result refused(std::string why) {
        auth_result r;
        r.why = std::move(why);
        return r;
    }
    std::string fmt_too_long() const {
        return "no token line within " + std::to_string(max_line_) + " bytes";
    }

    std::shared_ptr<const token_secret> secret_; // shared by the verifier's copies
    std::size_t max_line_;
};

} // namespace socket_connector
