#pragma once

// TLS on a side, with OpenSSL 3: `tls_server` for a side that accepts TLS (terminates it),
// `tls_client` for a side that originates it. Put the result in `side_options::tls`.
//
// This header needs OpenSSL's libssl: link `socket_connector::tls` (CMake), which adds
// `OpenSSL::SSL`. The rest of the library does not include it.
//
// The session works on the side's own socket through a BIO that calls send() and recv()
// directly (no copy into memory BIOs, MSG_NOSIGNAL: a peer gone away is an error, never a
// SIGPIPE). It reads ahead (one recv takes what the socket has, many records in bulk); a read
// that wants more means no whole record is buffered, so a readiness wait on the socket is then
// the right wait, and before any other wait `has_pending()` peeks. Idle sessions give their
// record buffers back (SSL_MODE_RELEASE_BUFFERS). TLS 1.2 and 1.3; renegotiation is off.

#include <sys/socket.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <socket_connector/tls_session.hpp>

namespace socket_connector {

/// A server side's TLS: PEM files.
struct tls_server_options {
    std::string certificate_chain; ///< the certificate, then any intermediates
    std::string private_key;
    /// Non-empty: each client must present a certificate signed by this CA (PEM); it is then
    /// in the verifier's `auth_context::tls`.
    std::string client_ca{};
};

/// A socket side's TLS.
struct tls_client_options {
    /// The server's name to verify (a DNS name or an IP address) and, when a DNS name, to send
    /// as SNI. Required.
    std::string name;
    /// CA certificates (PEM) to verify the server against; empty: the system's store.
    std::string ca{};
    /// A client certificate (and its key) to present, if the server asks; empty: none.
    std::string certificate_chain{};
    std::string private_key{};
};

namespace detail {

/// OpenSSL's queued errors as one line, their reasons only (and the queue emptied).
inline std::string openssl_errors(std::string prefix = {}) {
    std::string text = std::move(prefix);
    std::string last;
    while (auto e = ERR_get_error()) {
        std::string reason;
        if (ERR_SYSTEM_ERROR(e)) {
            reason = std::system_category().message(static_cast<int>(ERR_GET_REASON(e)));
        } else if (const char* r = ERR_reason_error_string(e)) {
            reason = r;
        } else {
            char buf[256];
            ERR_error_string_n(e, buf, sizeof buf);
            reason = buf;
        }
        if (reason == last || reason == "system lib") continue; // says nothing more
        last = reason;
        if (!text.empty()) text += ": ";
        text += reason;
    }
    return text;
}

struct ssl_ctx_deleter {
    void operator()(SSL_CTX* c) const noexcept { SSL_CTX_free(c); }
};

/// The BIO between OpenSSL and a non-blocking socket: send(MSG_NOSIGNAL) and recv.
struct socket_bio {
    int fd = -1;
    bool eof = false;
    int error = 0; // errno of the last send or recv that failed

    static int write(BIO* b, const char* data, int size) {
        auto* self = static_cast<socket_bio*>(BIO_get_data(b));
        BIO_clear_retry_flags(b);
        auto n = ::send(self->fd, data, static_cast<std::size_t>(size), MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            BIO_set_retry_write(b);
        else if (n < 0)
            self->error = errno;
        return static_cast<int>(n);
    }
    static int read(BIO* b, char* data, int size) {
        auto* self = static_cast<socket_bio*>(BIO_get_data(b));
        BIO_clear_retry_flags(b);
        auto n = ::recv(self->fd, data, static_cast<std::size_t>(size), 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            BIO_set_retry_read(b);
        else if (n < 0)
            self->error = errno;
        if (n == 0) self->eof = true;
        return static_cast<int>(n);
    }
    static long ctrl(BIO* b, int cmd, long, void*) {
        auto* self = static_cast<socket_bio*>(BIO_get_data(b));
        switch (cmd) {
        case BIO_CTRL_FLUSH:
            return 1;
        case BIO_CTRL_EOF:
            return self && self->eof ? 1 : 0;
        default:
            return 0;
        }
    }
    static int create(BIO* b) {
        BIO_set_init(b, 1);
        return 1;
    }
    static const BIO_METHOD* method() {
        static BIO_METHOD* m = [] {
            auto* made =
                BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "socket_connector socket");
            if (!made) return made;
            BIO_meth_set_write(made, &socket_bio::write);
            BIO_meth_set_read(made, &socket_bio::read);
            BIO_meth_set_ctrl(made, &socket_bio::ctrl);
            BIO_meth_set_create(made, &socket_bio::create);
            return made;
        }();
        return m;
    }
};

inline bool is_ip_address(const std::string& name) {
    unsigned char buf[16];
    return inet_pton(AF_INET, name.c_str(), buf) == 1 ||
           inet_pton(AF_INET6, name.c_str(), buf) == 1;
}

class openssl_session final : public tls_session {
public:
    openssl_session(SSL_CTX* ctx, int fd, bool server, const std::string& name) {
        ssl_ = SSL_new(ctx);
        if (!ssl_) throw std::runtime_error(openssl_errors("TLS: no session"));
        bio_.fd = fd;
        BIO* b = BIO_new(socket_bio::method());
        if (!b) {
            SSL_free(ssl_);
            throw std::runtime_error(openssl_errors("TLS: no BIO"));
        }
        BIO_set_data(b, &bio_);
        SSL_set_bio(ssl_, b, b);
        if (server) {
            SSL_set_accept_state(ssl_);
        } else {
            SSL_set_connect_state(ssl_);
            bool named = is_ip_address(name) ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_),
                                                                             name.c_str()) == 1
                                             : SSL_set_tlsext_host_name(ssl_, name.c_str()) == 1 &&
                                                   SSL_set1_host(ssl_, name.c_str()) == 1;
            if (!named) {
                SSL_free(ssl_);
                throw std::runtime_error(openssl_errors("TLS: the name " + name));
            }
        }
    }
    ~openssl_session() override { SSL_free(ssl_); }
    openssl_session(const openssl_session&) = delete;
    openssl_session& operator=(const openssl_session&) = delete;

    status handshake() override {
        ERR_clear_error();
        int r = SSL_do_handshake(ssl_);
        if (r == 1) {
            settle();
            return status::done;
        }
        auto s = outcome(r);
        if (s == status::failed) {
            const long verified = SSL_get_verify_result(ssl_);
            if (verified != X509_V_OK)
                error_ = std::string("certificate verification failed: ") +
                         X509_verify_cert_error_string(verified);
        }
        return s;
    }
    status read(char* data, std::size_t size, std::size_t& n) override {
        ERR_clear_error();
        if (SSL_read_ex(ssl_, data, size, &n) == 1) return status::done;
        return outcome(0);
    }
    status write(const char* data, std::size_t size, std::size_t& n) override {
        ERR_clear_error();
        if (SSL_write_ex(ssl_, data, size, &n) == 1) return status::done;
        auto s = outcome(0);
        if (s == status::closed) { // their close_notify came, and then our write failed
            error_ = bio_.error != 0 ? std::system_category().message(bio_.error)
                                     : std::string("the peer has closed the connection");
            return status::failed;
        }
        return s;
    }
    status close_notify() override {
        ERR_clear_error();
        int r = SSL_shutdown(ssl_);
        if (r >= 0) return status::done; // 0: sent; 1: both ways done
        auto s = outcome(r);
        return s == status::want_read ? status::done : s; // waiting for theirs: ours went
    }
    bool has_pending() override {
        if (SSL_has_pending(ssl_) != 1) return false; // nothing above the socket
        // Bytes are buffered: a whole record (or an alert), or only part of one?
        ERR_clear_error();
        char byte;
        std::size_t n = 0;
        if (SSL_peek_ex(ssl_, &byte, 1, &n) == 1) return true;
        const int e = SSL_get_error(ssl_, 0);
        ERR_clear_error();
        return e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE; // an end: a read says so
    }
    const tls_info& info() const override { return info_; }
    std::string error() const override { return error_; }

private:
    status outcome(int r) {
        switch (SSL_get_error(ssl_, r)) {
        case SSL_ERROR_WANT_READ:
            return status::want_read;
        case SSL_ERROR_WANT_WRITE:
            return status::want_write;
        case SSL_ERROR_ZERO_RETURN:
            return status::closed;
        case SSL_ERROR_SYSCALL: {
            const int e = bio_.error != 0 ? bio_.error : errno;
            ERR_clear_error();
            if (bio_.eof) {
                error_ = "end of stream without close_notify";
                return status::closed;
            }
            error_ = e != 0 ? std::system_category().message(e) : std::string("TLS: I/O error");
            return status::failed;
        }
        default:
            break;
        }
        const auto first = ERR_peek_error();
        if (ERR_GET_REASON(first) == SSL_R_UNEXPECTED_EOF_WHILE_READING && info_.version.size()) {
            ERR_clear_error(); // an end of stream without close_notify, after the handshake
            error_ = "end of stream without close_notify";
            return status::closed;
        }
        error_ = openssl_errors();
        if (error_.empty()) error_ = "TLS error";
        return status::failed;
    }

    void settle() {
        info_.version = SSL_get_version(ssl_);
        info_.cipher = SSL_get_cipher_name(ssl_);
        if (const char* sni = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name))
            info_.server_name = sni;
        if (X509* peer = SSL_get0_peer_certificate(ssl_)) {
            char line[512];
            X509_NAME_oneline(X509_get_subject_name(peer), line, sizeof line);
            info_.peer_subject = line;
            info_.peer_verified = SSL_get_verify_result(ssl_) == X509_V_OK;
            int length = i2d_X509(peer, nullptr);
            if (length > 0) {
                info_.peer_certificate_der.resize(static_cast<std::size_t>(length));
                auto* out = reinterpret_cast<unsigned char*>(info_.peer_certificate_der.data());
                i2d_X509(peer, &out);
            }
        }
    }

    SSL* ssl_ = nullptr;
    socket_bio bio_;
    tls_info info_;
    std::string error_;
};

class openssl_endpoint final : public tls_endpoint {
public:
    openssl_endpoint(std::unique_ptr<SSL_CTX, ssl_ctx_deleter> ctx, bool server, std::string name)
        : ctx_(std::move(ctx))
        , server_(server)
        , name_(std::move(name)) {}
    bool server() const noexcept override { return server_; }
    std::unique_ptr<tls_session> session(int fd) const override {
        return std::make_unique<openssl_session>(ctx_.get(), fd, server_, name_);
    }
    SSL_CTX* native_handle() const noexcept { return ctx_.get(); }

private:
    std::unique_ptr<SSL_CTX, ssl_ctx_deleter> ctx_;
    bool server_;
    std::string name_;
};

inline std::unique_ptr<SSL_CTX, ssl_ctx_deleter> new_ssl_ctx(bool server) {
    std::unique_ptr<SSL_CTX, ssl_ctx_deleter> ctx(
        SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()));
    if (!ctx) throw std::runtime_error(openssl_errors("TLS: no context"));
    SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
    SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION);
    // Read what the socket has, not a record at a time: one recv for many records in bulk.
    SSL_CTX_set_read_ahead(ctx.get(), 1);
    SSL_CTX_set_mode(ctx.get(), SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                                    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return ctx;
}

inline void use_certificate(SSL_CTX* ctx, const std::string& chain, const std::string& key) {
    if (SSL_CTX_use_certificate_chain_file(ctx, chain.c_str()) != 1)
        throw std::runtime_error(openssl_errors("TLS certificate " + chain));
    if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1)
        throw std::runtime_error(
            openssl_errors("TLS private key " + key + " (for the certificate " + chain + ")"));
    if (SSL_CTX_check_private_key(ctx) != 1)
        throw std::runtime_error(
            openssl_errors("TLS private key " + key + " does not match the certificate " + chain));
}

} // namespace detail

/// A server side's TLS (it accepts TLS and relays the plaintext). Throws `std::runtime_error`,
/// with OpenSSL's reason, when a file cannot be read or the key does not match the certificate.
inline std::shared_ptr<const tls_endpoint> tls_server(const tls_server_options& o) {
    auto ctx = detail::new_ssl_ctx(true);
    detail::use_certificate(ctx.get(), o.certificate_chain, o.private_key);
    if (!o.client_ca.empty()) {
        if (SSL_CTX_load_verify_locations(ctx.get(), o.client_ca.c_str(), nullptr) != 1)
            throw std::runtime_error(detail::openssl_errors("TLS client CA " + o.client_ca));
        STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(o.client_ca.c_str());
        if (!names)
            throw std::runtime_error(detail::openssl_errors("TLS client CA " + o.client_ca));
        SSL_CTX_set_client_CA_list(ctx.get(), names);
        SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
        static const unsigned char context[] = "socket_connector";
        SSL_CTX_set_session_id_context(ctx.get(), context, sizeof context - 1);
    }
    return std::make_shared<detail::openssl_endpoint>(std::move(ctx), true, std::string());
}

/// A socket side's TLS (it connects with TLS, verifying the server). Throws
/// `std::runtime_error` when a file cannot be read, or `std::invalid_argument` without a name.
inline std::shared_ptr<const tls_endpoint> tls_client(const tls_client_options& o) {
    if (o.name.empty())
        throw std::invalid_argument("TLS client: the server's name to verify is required");
    auto ctx = detail::new_ssl_ctx(false);
    if (o.ca.empty()) {
        if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1)
            throw std::runtime_error(detail::openssl_errors("TLS: the system's CA store"));
    } else if (SSL_CTX_load_verify_locations(ctx.get(), o.ca.c_str(), nullptr) != 1) {
        throw std::runtime_error(detail::openssl_errors("TLS CA " + o.ca));
    }
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    if (!o.certificate_chain.empty())
        detail::use_certificate(ctx.get(), o.certificate_chain, o.private_key);
    return std::make_shared<detail::openssl_endpoint>(std::move(ctx), false, o.name);
}

} // namespace socket_connector
