#pragma once

// The command's `--metrics ADDR`: a small HTTP/1.1 endpoint that serves a relay's counters,
// live. `GET /metrics`: the Prometheus text format (`sc::prometheus_text`); `GET /stats`: the
// JSON object `--stats` prints at exit. It runs on an event loop and a thread of its own, so
// scrapes (or clients that never finish a request) take nothing from the relay's loops, and it
// is bounded: at most `max_clients` at once (one more closes the oldest), `max_request` bytes
// of request head each, `request_timeout` for a whole exchange.

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <exception>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <fmt/format.h>

#include <socket_connector/address.hpp>
#include <socket_connector/metrics.hpp>
#include <socket_connector/stats.hpp>

namespace example {

namespace sc = socket_connector;

/// What an HTTP request head asks for, or why it cannot be answered.
struct http_answer {
    int status = 400;
    std::string_view reason = "Bad Request";
    std::string_view content_type = "text/plain; charset=utf-8";
    std::string body;
    bool head = false;  ///< a HEAD request: the headers only
    bool allow = false; ///< a 405: say which methods are allowed
};

/// The response to one complete request head (`head` ends with its empty line), given the
/// counters of the moment. Only the request line is read; any header is accepted.
inline http_answer answer_request(std::string_view head,
                                  const std::function<sc::stats()>& snapshot) {
    http_answer a;
    const auto eol = head.find('\n');
    std::string_view line = head.substr(0, eol);
    if (line.ends_with('\r')) line.remove_suffix(1);
    const auto sp1 = line.find(' ');
    const auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp1 == 0 || sp2 == std::string_view::npos ||
        line.find(' ', sp2 + 1) != std::string_view::npos) {
        a.body = "malformed request line\n";
        return a;
    }
    const auto method = line.substr(0, sp1);
    auto target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    const auto version = line.substr(sp2 + 1);
    const bool token =
        method.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                 "abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~") ==
        std::string_view::npos;
    if (!token || target.empty() || target.front() != '/' ||
        (version != "HTTP/1.1" && version != "HTTP/1.0")) {
        a.body = "malformed request line\n";
        return a;
    }
    if (method != "GET" && method != "HEAD") {
        a.status = 405;
        a.reason = "Method Not Allowed";
        a.allow = true;
        a.body = "only GET and HEAD\n";
        return a;
    }
    a.head = method == "HEAD";
    target = target.substr(0, target.find('?'));
    if (target == "/metrics") {
        a.status = 200;
        a.reason = "OK";
        a.content_type = sc::prometheus_content_type;
        a.body = sc::prometheus_text(snapshot());
    } else if (target == "/stats") {
        a.status = 200;
        a.reason = "OK";
        a.content_type = "application/json";
        a.body = snapshot().to_json() + "\n";
    } else {
        a.status = 404;
        a.reason = "Not Found";
        a.body = "not found: try /metrics or /stats\n";
    }
    return a;
}

/// The bytes of `a` as an HTTP/1.1 response that closes the connection.
inline std::string response_bytes(const http_answer& a) {
    auto out = fmt::format("HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}"
                           "Connection: close\r\n\r\n",
                           a.status, a.reason, a.content_type, a.body.size(),
                           a.allow ? "Allow: GET, HEAD\r\n" : "");
    if (!a.head) out += a.body;
    return out;
}

/// Where a request head ends (just past its empty line), or npos while it has not ended.
/// `from`: where to start looking (the bytes before it were looked at already; the two bytes
/// before it are looked at again, in case the empty line began there).
inline std::size_t end_of_head(std::string_view received, std::size_t from = 0) {
    from = from > 2 ? from - 2 : 0;
    for (std::size_t at = received.find('\n', from); at != std::string_view::npos;
         at = received.find('\n', at + 1)) {
        if (at + 1 < received.size() && received[at + 1] == '\n') return at + 2;
        if (at + 2 < received.size() && received[at + 1] == '\r' && received[at + 2] == '\n')
            return at + 3;
    }
    return std::string_view::npos;
}

class metrics_endpoint {
public:
    static constexpr std::size_t max_clients = 64;
    static constexpr std::size_t max_request = 8192;
    static constexpr std::chrono::seconds request_timeout{5};

    /// Binds `where` (throws `std::system_error` saying what failed); serves once `start`ed.
    metrics_endpoint(const sc::address& where, std::function<sc::stats()> snapshot)
        : snapshot_(std::move(snapshot))
        , acceptor_(io_) {
        asio::ip::tcp::resolver resolver(io_);
        const auto host = where.host.empty() ? std::string("0.0.0.0") : where.host;
        std::error_code resolved;
        auto found = resolver.resolve(host, std::to_string(where.port), resolved);
        if (resolved) throw std::system_error(resolved, "--metrics: cannot resolve " + host);
        std::error_code ec;
        for (const auto& entry : found) {
            acceptor_.close(ec);
            acceptor_.open(entry.endpoint().protocol(), ec);
            if (ec) continue;
            acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
            acceptor_.bind(entry.endpoint(), ec);
            if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
            if (!ec) return;
        }
        throw std::system_error(ec ? ec : std::make_error_code(std::errc::address_not_available),
                                "--metrics: cannot listen on " + host + ":" +
                                    std::to_string(where.port));
    }

    metrics_endpoint(const metrics_endpoint&) = delete;
    metrics_endpoint& operator=(const metrics_endpoint&) = delete;
    ~metrics_endpoint() { stop(); }

    asio::ip::tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }

    /// Serves on a thread of its own until `stop`.
    void start() {
        asio::co_spawn(io_, accept_loop(), [](std::exception_ptr e) {
            if (!e) return;
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& failed) {
                std::fprintf(stderr, "socket-connector: --metrics stopped accepting: %s\n",
                             failed.what());
            }
        });
        thread_ = std::thread([this] { io_.run(); });
    }

    /// Closes the endpoint and every client; returns once its thread has finished.
    void stop() {
        if (!thread_.joinable()) return;
        io_.stop();
        thread_.join();
    }

private:
    static constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);

    struct client {
        asio::ip::tcp::socket socket;
        explicit client(asio::ip::tcp::socket s)
            : socket(std::move(s)) {}
    };
    using client_list = std::list<std::shared_ptr<client>>;

    asio::awaitable<void> accept_loop() {
        for (;;) {
            auto [ec, socket] = co_await acceptor_.async_accept(use_tuple);
            if (ec == asio::error::operation_aborted) co_return;
            if (ec) { // out of descriptors, for one: try again shortly
                asio::steady_timer pause(io_, std::chrono::milliseconds(50));
                co_await pause.async_wait(use_tuple);
                continue;
            }
            if (clients_.size() >= max_clients) { // the oldest has waited longest: it goes
                std::error_code ignored;
                clients_.front()->socket.close(ignored);
                clients_.pop_front();
            }
            clients_.push_back(std::make_shared<client>(std::move(socket)));
            auto c = clients_.back();
            asio::co_spawn(io_, serve(c), [this, c](std::exception_ptr) {
                clients_.remove(c); // unless it was closed as the oldest meanwhile
            });
        }
    }

    asio::awaitable<void> serve(std::shared_ptr<client> c) {
        auto& socket = c->socket;
        asio::steady_timer deadline(io_, request_timeout);
        deadline.async_wait([c](std::error_code ec) {
            if (!ec) {
                std::error_code ignored;
                c->socket.close(ignored);
            }
        });
        std::string received;
        std::size_t end = std::string::npos;
        char chunk[2048];
        while (end == std::string::npos) {
            auto [ec, n] = co_await socket.async_read_some(asio::buffer(chunk), use_tuple);
            if (ec) co_return; // closed, timed out, or evicted: nothing to answer
            const auto looked = received.size();
            received.append(chunk, n);
            end = end_of_head(received, looked);
            if (end == std::string::npos && received.size() >= max_request) break;
        }
        http_answer a;
        if (end == std::string::npos || end > max_request) {
            a.body = fmt::format("request head over {} bytes\n", max_request);
        } else {
            a = answer_request(std::string_view(received).substr(0, end), snapshot_);
        }
        const auto bytes = response_bytes(a);
        auto [wec, written] = co_await asio::async_write(socket, asio::buffer(bytes), use_tuple);
        (void)written;
        std::error_code ignored;
        if (!wec) socket.shutdown(asio::socket_base::shutdown_send, ignored);
        // Let the client read the response before the close: wait (bounded by the deadline)
        // for its end of stream, discarding what it sends.
        while (!wec) {
            auto [ec, n] = co_await socket.async_read_some(asio::buffer(chunk), use_tuple);
            (void)n;
            if (ec) break;
        }
        deadline.cancel();
        socket.close(ignored);
    }

    std::function<sc::stats()> snapshot_;
    asio::io_context io_{1};
    asio::ip::tcp::acceptor acceptor_;
    client_list clients_;
    std::thread thread_;
};

} // namespace example
