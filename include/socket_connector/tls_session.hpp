#pragma once

// A side's TLS, as the connector sees it: a session that encrypts and decrypts on the side's own
// (non-blocking) socket, and the stream an auth verifier reads and writes the plaintext through.
// Nothing here needs OpenSSL: <socket_connector/tls.hpp> (target socket_connector::tls) makes
// the sessions, with OpenSSL 3.

#include <cstddef>
#include <memory>
#include <string>
#include <system_error>
#include <utility>

#include <asio/async_result.hpp>
#include <asio/buffer.hpp>
#include <asio/compose.hpp>
#include <asio/error.hpp>
#include <asio/post.hpp>
#include <asio/socket_base.hpp>

namespace socket_connector {

/// What a side's TLS handshake settled: for its auth verifier (`auth_context::tls`) and logs.
struct tls_info {
    std::string version;      ///< "TLSv1.3", "TLSv1.2"
    std::string cipher;       ///< e.g. "TLS_AES_256_GCM_SHA384"
    std::string server_name;  ///< the name the client asked for (SNI); empty: none
    std::string peer_subject; ///< the peer certificate's subject, one line; empty: none sent
    /// The peer sent a certificate and it verified (a client certificate against the side's
    /// client CA; a server against the CA and the name).
    bool peer_verified = false;
    std::string peer_certificate_der; ///< the peer's certificate (DER bytes); empty: none
};

/// One TLS connection on a side's socket. Each call does what it can without blocking and says
/// what it waits for; the connector waits on the socket and calls again. Made by a
/// `tls_endpoint`; used from one strand at a time.
class tls_session {
public:
    enum class status {
        done,       ///< the call did its work
        want_read,  ///< try again once the socket is readable
        want_write, ///< try again once the socket is writable
        closed,     ///< read: the peer sent close_notify (or ended its stream): end of stream
        failed      ///< a TLS or socket error; `error()` says what
    };

    virtual ~tls_session() = default;
    /// One step of the handshake.
    virtual status handshake() = 0;
    /// Decrypts up to `size` bytes into `data`; `n`: how many, when done.
    virtual status read(char* data, std::size_t size, std::size_t& n) = 0;
    /// Encrypts and sends up to `size` bytes of `data` (at least one record's worth); `n`: how
    /// many were taken, when done. After `want_write`, the next call must pass the same bytes.
    virtual status write(const char* data, std::size_t size, std::size_t& n) = 0;
    /// Sends close_notify: this end sends no more (the peer may go on sending).
    virtual status close_notify() = 0;
    /// A read would return bytes (or the end) without waiting for the socket: a whole record
    /// is buffered above it. (After a read wanted more, none is.)
    virtual bool has_pending() = 0;
    /// What the handshake settled; empty before it is done.
    virtual const tls_info& info() const = 0;
    /// Why the last call failed (OpenSSL's reasons, a verification error), for logs.
    virtual std::string error() const = 0;
};

/// What a side speaks TLS with: its certificate and key (a server side) or its trust anchors and
/// the name to verify (a socket side). Shared by all of the side's sockets; made by
/// `tls_server` / `tls_client` (<socket_connector/tls.hpp>).
class tls_endpoint {
public:
    virtual ~tls_endpoint() = default;
    /// True: accepts TLS (a server side); false: originates it (a socket side).
    virtual bool server() const noexcept = 0;
    /// A session on the socket `fd`; throws `std::runtime_error` when none can be made.
    virtual std::unique_ptr<tls_session> session(int fd) const = 0;
};

/// A side's socket as its auth verifier sees it when the side speaks TLS: the plaintext, with
/// the calls a verifier makes on a socket (non-blocking `read_some`/`write_some`, `async_wait`,
/// and `async_read_some`/`async_write_some` for Asio's composed operations). A verifier that
/// works on both is a template over the stream and says so with `using works_over_tls = void;`
/// (the library's own do).
template <class Socket>
class tls_stream {
public:
    using executor_type = typename Socket::executor_type;
    using wait_type = asio::socket_base::wait_type;
    static constexpr wait_type wait_read = asio::socket_base::wait_read;
    static constexpr wait_type wait_write = asio::socket_base::wait_write;

    tls_stream(Socket& socket, tls_session& session) noexcept
        : socket_(&socket)
        , session_(&session) {}

    executor_type get_executor() noexcept { return socket_->get_executor(); }
    /// The TCP socket under the TLS (its addresses, options; never its bytes).
    Socket& next_layer() noexcept { return *socket_; }
    tls_session& session() noexcept { return *session_; }
    /// Always: the stream never blocks (`read_some` says `would_block`).
    bool non_blocking() const noexcept { return true; }

    /// Plaintext read without blocking: `would_block` when none is there yet, `eof` after the
    /// peer's close_notify.
    template <class MutableBuffers>
    std::size_t read_some(const MutableBuffers& buffers, std::error_code& ec) {
        return transfer(buffers, ec, [this](auto b, std::size_t& n) {
            return session_->read(static_cast<char*>(b.data()), b.size(), n);
        });
    }
    template <class MutableBuffers>
    std::size_t receive(const MutableBuffers& buffers, int, std::error_code& ec) {
        return read_some(buffers, ec);
    }
    /// Plaintext written without blocking (at least part of it, or `would_block`; retried with
    /// the same bytes).
    template <class ConstBuffers>
    std::size_t write_some(const ConstBuffers& buffers, std::error_code& ec) {
        return transfer(buffers, ec, [this](auto b, std::size_t& n) {
            return session_->write(static_cast<const char*>(b.data()), b.size(), n);
        });
    }
    template <class ConstBuffers>
    std::size_t send(const ConstBuffers& buffers, int, std::error_code& ec) {
        return write_some(buffers, ec);
    }

    /// Waits until a read (or write) can make progress: at once when plaintext is buffered.
    template <class Token>
    auto async_wait(wait_type what, Token&& token) {
        return asio::async_compose<Token, void(std::error_code)>(wait_op{this, what, false}, token,
                                                                 *socket_);
    }
    template <class MutableBuffers, class Token>
    auto async_read_some(const MutableBuffers& buffers, Token&& token) {
        return asio::async_compose<Token, void(std::error_code, std::size_t)>(
            io_op<MutableBuffers, true>{this, buffers}, token, *socket_);
    }
    template <class ConstBuffers, class Token>
    auto async_write_some(const ConstBuffers& buffers, Token&& token) {
        return asio::async_compose<Token, void(std::error_code, std::size_t)>(
            io_op<ConstBuffers, false>{this, buffers}, token, *socket_);
    }

    /// What the socket must become for the last call that would block to go on.
    wait_type wanted() const noexcept { return wants_write_ ? wait_write : wait_read; }

private:
    template <class Buffers>
    static auto first_of(const Buffers& buffers) {
        for (auto it = asio::buffer_sequence_begin(buffers);
             it != asio::buffer_sequence_end(buffers); ++it)
            if (asio::buffer(*it).size() > 0) return asio::buffer(*it);
        return decltype(asio::buffer(*asio::buffer_sequence_begin(buffers))){};
    }

    /// One non-blocking read or write (`call(buffer, n)`) of the first non-empty buffer.
    template <class Buffers, class Call>
    std::size_t transfer(const Buffers& buffers, std::error_code& ec, Call call) {
        auto b = first_of(buffers);
        ec.clear();
        if (b.size() == 0) return 0;
        std::size_t n = 0;
        const auto step = call(b, n); // before `n` is read
        return finish(step, n, ec);
    }

    std::size_t finish(tls_session::status s, std::size_t n, std::error_code& ec) {
        wants_write_ = false;
        switch (s) {
        case tls_session::status::done:
            return n;
        case tls_session::status::want_write:
            wants_write_ = true;
            [[fallthrough]];
        case tls_session::status::want_read:
            ec = asio::error::would_block;
            return 0;
        case tls_session::status::closed:
            ec = asio::error::eof;
            return 0;
        case tls_session::status::failed:
            break;
        }
        ec = std::make_error_code(std::errc::protocol_error);
        return 0;
    }

    struct wait_op {
        tls_stream* s;
        wait_type what;
        bool posted;
        template <class Self>
        void operator()(Self& self, std::error_code ec = {}) {
            if (posted) return self.complete(ec);
            if (what == wait_read && s->session_->has_pending()) {
                posted = true;
                return asio::post(s->socket_->get_executor(), std::move(self));
            }
            posted = true; // the socket's wait completes it
            s->socket_->async_wait(what, std::move(self));
        }
    };

    template <class Buffers, bool Read>
    struct io_op {
        tls_stream* s;
        Buffers buffers;
        template <class Self>
        void operator()(Self& self, std::error_code ec = {}) {
            if (ec) return self.complete(ec, 0);
            std::size_t n = 0;
            if constexpr (Read)
                n = s->read_some(buffers, ec);
            else
                n = s->write_some(buffers, ec);
            if (ec == asio::error::would_block)
                return s->socket_->async_wait(s->wanted(), std::move(self));
            self.complete(ec, n);
        }
    };

    Socket* socket_;
    tls_session* session_;
    bool wants_write_ = false;
};

} // namespace socket_connector
