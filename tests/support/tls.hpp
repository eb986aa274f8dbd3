#pragma once

// TLS for the tests: certificates made with the `openssl` command (once per test process, in a
// temporary folder), and TLS peers made with asio::ssl, an implementation independent of ours
// (memory BIOs, Asio's engine).

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <asio/ssl.hpp>

#include <socket_connector/tls.hpp>

#include "support/net.hpp"

namespace test_support {

/// The test certificates (PEM files): a CA, a server certificate it signed for localhost,
/// 127.0.0.1 and ::1, a client certificate it signed, and a second CA that signed nothing
/// we trust, with a server certificate of its own.
struct test_certificates {
    std::string dir;
    std::string ca, server_cert, server_key, client_cert, client_key;
    std::string other_ca, other_server_cert, other_server_key;
};

namespace detail_tls {

inline void openssl(const std::string& dir, const std::string& args) {
    // Bounded: `timeout` ends a stuck openssl (it never is: no prompts, keys are EC P-256).
    const auto command = "cd '" + dir + "' && timeout 30 openssl " + args + " >/dev/null 2>&1";
    const int status = std::system(command.c_str());
    INFO("openssl " << args);
    REQUIRE(status == 0);
}

inline void make_ca(const std::string& dir, const std::string& name) {
    openssl(dir, "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
                 "-keyout " +
                     name + ".key -out " + name + ".pem -subj /CN=" + name +
                     " -addext basicConstraints=critical,CA:TRUE "
                     "-addext keyUsage=critical,keyCertSign,cRLSign");
}

inline void make_signed(const std::string& dir, const std::string& name, const std::string& ca,
                        const std::string& subject, const std::string& extensions) {
    { std::ofstream(std::filesystem::path(dir) / (name + ".ext")) << extensions << "\n"; }
    openssl(dir, "req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout " + name +
                     ".key -out " + name + ".csr -subj " + subject);
    openssl(dir, "x509 -req -in " + name + ".csr -CA " + ca + ".pem -CAkey " + ca +
                     ".key -CAcreateserial -days 2 -out " + name + ".pem -extfile " + name +
                     ".ext");
}

} // namespace detail_tls

/// Made on first use, for the whole test process (removed at its exit).
inline const test_certificates& certificates() {
    static const test_certificates made = [] {
        test_certificates c;
        auto dir = std::filesystem::temp_directory_path() /
                   ("sc-tls-" + std::to_string(static_cast<long>(::getpid())));
        std::filesystem::create_directories(dir);
        c.dir = dir.string();
        using namespace detail_tls;
        make_ca(c.dir, "ca");
        make_ca(c.dir, "other-ca");
        make_signed(c.dir, "server", "ca", "/CN=localhost",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n"
                    "extendedKeyUsage=serverAuth");
        make_signed(c.dir, "client", "ca", "/CN=test-client", "extendedKeyUsage=clientAuth");
        make_signed(c.dir, "other-server", "other-ca", "/CN=localhost",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth");
        auto file = [&](const char* name) { return (dir / name).string(); };
        c.ca = file("ca.pem");
        c.server_cert = file("server.pem");
        c.server_key = file("server.key");
        c.client_cert = file("client.pem");
        c.client_key = file("client.key");
        c.other_ca = file("other-ca.pem");
        c.other_server_cert = file("other-server.pem");
        c.other_server_key = file("other-server.key");
        return c;
    }();
    // Made after `made`, so destroyed before it: removes the folder at exit.
    static const struct remover {
        std::string dir;
        ~remover() {
            std::error_code ignored;
            std::filesystem::remove_all(dir, ignored);
        }
    } removed{made.dir};
    return made;
}

/// The server side's TLS with the test certificate (and, if asked, client certificates
/// required).
inline std::shared_ptr<const sc::tls_endpoint> test_tls_server(bool require_client = false) {
    const auto& c = certificates();
    return sc::tls_server({.certificate_chain = c.server_cert,
                           .private_key = c.server_key,
                           .client_ca = require_client ? c.ca : std::string()});
}

using ssl_stream = asio::ssl::stream<tcp::socket>;

/// An asio::ssl client context trusting the test CA (optionally presenting the client
/// certificate).
inline asio::ssl::context client_context(bool with_certificate = false) {
    asio::ssl::context ctx(asio::ssl::context::tls_client);
    ctx.load_verify_file(certificates().ca);
    ctx.set_verify_mode(asio::ssl::verify_peer);
    if (with_certificate) {
        ctx.use_certificate_chain_file(certificates().client_cert);
        ctx.use_private_key_file(certificates().client_key, asio::ssl::context::pem);
    }
    return ctx;
}

/// An asio::ssl server context with the test server certificate (or the untrusted CA's).
inline asio::ssl::context server_context(bool untrusted = false) {
    const auto& c = certificates();
    asio::ssl::context ctx(asio::ssl::context::tls_server);
    ctx.use_certificate_chain_file(untrusted ? c.other_server_cert : c.server_cert);
    ctx.use_private_key_file(untrusted ? c.other_server_key : c.server_key,
                             asio::ssl::context::pem);
    return ctx;
}

/// A TLS client connected to 127.0.0.1:port, its handshake done (verifying the name
/// "localhost").
inline asio::awaitable<void> tls_connect(ssl_stream& s, unsigned short port) {
    co_await s.next_layer().async_connect(loopback(port), asio::use_awaitable);
    SSL_set_tlsext_host_name(s.native_handle(), "localhost");
    s.set_verify_callback(asio::ssl::host_name_verification("localhost"));
    co_await s.async_handshake(asio::ssl::stream_base::client, asio::use_awaitable);
}

/// Reads until the stream ends (close_notify: eof) or `limit` bytes; what came, and how it
/// ended.
template <class Stream>
asio::awaitable<std::pair<std::vector<char>, std::error_code>> read_all(Stream& s,
                                                                        std::size_t limit) {
    std::vector<char> got;
    std::vector<char> buf(64 * 1024);
    while (got.size() < limit) {
        auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), use_tuple);
        got.insert(got.end(), buf.data(), buf.data() + n);
        if (ec) co_return std::pair{std::move(got), ec};
    }
    co_return std::pair{std::move(got), std::error_code()};
}

} // namespace test_support
