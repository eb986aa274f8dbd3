#pragma once

#include <concepts>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <asio/awaitable.hpp>

#include <socket_connector/side_id.hpp>
#include <socket_connector/tls_session.hpp>

namespace socket_connector {

/// Rewrites the bytes leaving one side (to filter or re-encode them); one object per direction.
///
/// For `T& t`, `std::span<const char> in` and `std::vector<char>& out`: `t.transform(in, out)`
/// appends the bytes to send for `in` (maybe none: it may hold some back); `t.finish(out)` appends
/// what is held back when the source ends, before the end of stream is passed on. Called only
/// from the connection's strand, never concurrently. An exception thrown from either call closes
/// the connection. Model: identity_transformer.
template <class T>
concept transformer = requires(T& t, std::span<const char> in, std::vector<char>& out) {
    t.transform(in, out);
    t.finish(out);
};

/// The transformer that passes every byte through unchanged.
struct identity_transformer {
    void transform(std::span<const char> in, std::vector<char>& out) {
        out.insert(out.end(), in.begin(), in.end());
    }
    void finish(std::vector<char>&) {}
};

/// A type-erased transformer, or none (then bytes are relayed as they are, with no copy).
class any_transformer {
public:
    any_transformer() = default;

    template <transformer T>
    requires(!std::same_as<std::remove_cvref_t<T>, any_transformer>)
        any_transformer(T t) // NOLINT: implicit, so a model can be assigned where one is expected
        : impl_(std::make_unique<model<T>>(std::move(t))) {}

    /// True when a transformer is held.
    explicit operator bool() const noexcept { return impl_ != nullptr; }

    void transform(std::span<const char> in, std::vector<char>& out) { impl_->transform(in, out); }
    void finish(std::vector<char>& out) { impl_->finish(out); }

private:
    struct base {
        virtual ~base() = default;
        virtual void transform(std::span<const char> in, std::vector<char>& out) = 0;
        virtual void finish(std::vector<char>& out) = 0;
    };
    template <class T>
    struct model final : base {
        explicit model(T t)
            : value(std::move(t)) {}
        void transform(std::span<const char> in, std::vector<char>& out) override {
            value.transform(in, out);
        }
        void finish(std::vector<char>& out) override { value.finish(out); }
        T value;
    };
    std::unique_ptr<base> impl_;
};

/// Makes a fresh transformer for each connection, so per-connection state never leaks between
/// pairs.
///
/// Built from a transformer (each connection gets a copy of it, as it was when the options were
/// made) or from a callable returning a transformer (called once per connection). Empty means no
/// transformer.
class transformer_factory {
public:
    transformer_factory() = default;

    template <transformer T>
    requires std::copy_constructible<T> &&(!std::same_as<std::remove_cvref_t<T>, any_transformer>)
        transformer_factory(T prototype) // NOLINT: implicit by design
        : make_([p = std::move(prototype)] { return any_transformer(T(p)); }) {}

    template <std::invocable F>
    requires transformer<std::invoke_result_t<F&>> &&
        (!transformer<F>)&&(!std::same_as<std::remove_cvref_t<F>, transformer_factory>)
            transformer_factory(F make) // NOLINT: implicit by design
        : make_([m = std::move(make)]() mutable { return any_transformer(m()); }) {}

    explicit operator bool() const noexcept { return static_cast<bool>(make_); }

    /// A new transformer, or an empty one when the factory is empty.
    any_transformer operator()() const { return make_ ? make_() : any_transformer(); }

private:
    std::function<any_transformer()> make_;
};

/// What an auth verifier decided, and the bytes it read past the end of the handshake.
///
/// `leftover` is relayed to the other side, before anything else, once the side is paired.
/// `key` pairs the socket by session: a side with a key is joined only with the other side of
/// the same key (one A and one B per key at a time); an empty key pairs first in, first out.
/// `side` says which side the socket is: needed on a connector's one port (`one_server`), and
/// elsewhere, when given, it must be the side the socket arrived on. `why` is the reason a
/// socket was refused, for the log (never a secret).
struct auth_result {
    bool ok = false;
    std::vector<char> leftover;
    std::string key{};
    std::optional<side_id> side{};
    std::string why{};
};

struct proxy_header; // proxy_protocol.hpp

/// What a verifier is told about the socket it checks, beside the socket itself.
struct auth_context {
    /// The side whose port accepted the socket, or whose dialer connected it.
    side_id side = side_id::a;
    /// The peer as `host:port` (or a Unix socket's path): the client its PROXY header named,
    /// when the socket began with one (`side_options::accept_proxy`), else the socket's peer.
    std::string_view remote{};
    /// The PROXY header the socket began with, or null (none was read).
    const proxy_header* proxy = nullptr;
    /// A side that speaks TLS: what its handshake settled (the peer's certificate, verified,
    /// when the side requires one); null otherwise.
    const tls_info* tls = nullptr;
};

/// Decides whether a newly accepted or connected socket may be paired; may read and write it.
///
/// For `V& v`, `Socket& s` and `const auth_context& c`: `co_await v(s, c)`, or `co_await v(s)`
/// for a verifier that needs no context, yields an `auth_result`. The verifier runs on the
/// connector's strand and is bounded by `auth_timeout`: when the time is up its pending operation
/// on the socket is cancelled and the socket is closed, so a verifier must only wait on Asio
/// operations (which honour cancellation). An exception counts as a failure. Model:
/// accept_all_verifier.
template <class V, class Socket>
concept auth_verifier = requires(V& v, Socket& s) {
    { v(s) } -> std::same_as<asio::awaitable<auth_result>>;
}
|| requires(V& v, Socket& s, const auth_context& c) {
    { v(s, c) } -> std::same_as<asio::awaitable<auth_result>>;
};

/// Whether verifier `V` may run on a side that speaks TLS: it says so (`using works_over_tls =
/// void;`) and takes a `tls_stream<Socket>&` where it takes a `Socket&` (a template over the
/// stream, reading and writing through the calls both have: `async_read_some`,
/// `async_write_some`, `async_wait`, non-blocking `read_some`/`write_some`).
template <class V, class Socket>
concept tls_auth_verifier = requires {
    typename V::works_over_tls;
}
&&(
    requires(V& v, tls_stream<Socket>& s) {
        { v(s) } -> std::same_as<asio::awaitable<auth_result>>;
    } ||
    requires(V & v, tls_stream<Socket>& s, const auth_context& c) {
        { v(s, c) } -> std::same_as<asio::awaitable<auth_result>>;
    });

/// The verifier that accepts every socket at once and reads nothing.
struct accept_all_verifier {
    using works_over_tls = void;
    template <class Socket>
    asio::awaitable<auth_result> operator()(Socket&) const {
        co_return auth_result{.ok = true, .leftover = {}};
    }
};

/// A type-erased auth verifier for sockets of type `Socket`, or none (every side is accepted).
template <class Socket>
class any_auth_verifier {
public:
    any_auth_verifier() = default;

    template <auth_verifier<Socket> V>
    requires(!std::same_as<std::remove_cvref_t<V>, any_auth_verifier>)
        any_auth_verifier(V v) // NOLINT: implicit by design
    {
        if constexpr (requires(V & f, Socket & s, const auth_context& c) {
                          { f(s, c) } -> std::same_as<asio::awaitable<auth_result>>;
                      })
            verify_ = v;
        else
            verify_ = [v](Socket& s, const auth_context&) mutable { return v(s); };
        if constexpr (tls_auth_verifier<V, Socket>) {
            if constexpr (requires(V & f, tls_stream<Socket> & s, const auth_context& c) {
                              { f(s, c) } -> std::same_as<asio::awaitable<auth_result>>;
                          })
                verify_tls_ = std::move(v);
            else
                verify_tls_ = [v = std::move(v)](tls_stream<Socket>& s,
                                                 const auth_context&) mutable { return v(s); };
        }
    }

    explicit operator bool() const noexcept { return static_cast<bool>(verify_); }

    /// Runs the verifier; a two-argument one is told `context`, which must outlive the
    /// awaitable (a coroutine keeps the reference).
    asio::awaitable<auth_result> operator()(Socket& socket, const auth_context& context) const {
        return verify_(socket, context);
    }
    /// Runs the verifier with an empty context (side A, no peer named, no PROXY header).
    asio::awaitable<auth_result> operator()(Socket& socket) const {
        static const auth_context none{};
        return verify_(socket, none);
    }

    /// Whether it may run on a side that speaks TLS (see `tls_auth_verifier`).
    bool works_over_tls() const noexcept { return static_cast<bool>(verify_tls_); }
    /// Runs it on a TLS side's plaintext; only when `works_over_tls()`.
    asio::awaitable<auth_result> operator()(tls_stream<Socket>& stream,
                                            const auth_context& context) const {
        return verify_tls_(stream, context);
    }

private:
    std::function<asio::awaitable<auth_result>(Socket&, const auth_context&)> verify_;
    std::function<asio::awaitable<auth_result>(tls_stream<Socket>&, const auth_context&)>
        verify_tls_;
};

} // namespace socket_connector
