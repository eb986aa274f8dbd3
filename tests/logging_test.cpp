#include <socket_connector/logging.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "support/net.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

/// The lines `capture` holds that contain every one of `parts`.
std::vector<std::string> lines_with(log_capture& capture, std::vector<std::string_view> parts) {
    std::lock_guard lock(capture.mutex);
    std::vector<std::string> found;
    for (auto& line : capture.lines) {
        bool all = true;
        for (auto part : parts)
            all = all && line.find(part) != std::string::npos;
        if (all) found.push_back(line);
    }
    return found;
}

std::vector<std::string> lines_at(log_capture& capture, std::string_view level) {
    std::lock_guard lock(capture.mutex);
    std::vector<std::string> found;
    std::string prefix = std::string(level) + " ";
    for (auto& line : capture.lines)
        if (line.starts_with(prefix)) found.push_back(line);
    return found;
}

/// One pair on a server_to_server connector made from `o`: a little data each way, both sides
/// finish, then the connector is closed.
asio::awaitable<void> one_pair_then_close(sc::options& o, unsigned short& port_a,
                                          unsigned short& port_b) {
    auto ex = co_await asio::this_coro::executor;
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto a = co_await connect_to(c->side_a_port());
    auto b = co_await connect_to(c->side_b_port());
    port_a = a.local_endpoint().port();
    port_b = b.local_endpoint().port();
    auto from_a = pattern(1, 1000);
    auto from_b = pattern(2, 2000);
    auto [at_a, at_b] = co_await (send_and_receive(a, from_a) && send_and_receive(b, from_b));
    CHECK(at_b == from_a);
    CHECK(at_a == from_b);
    CHECK(co_await eventually([&] { return c->connections() == 0; }));
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> verbose_events(log_capture& capture) {
    sc::options o = loopback_options();
    o.verbose = true;
    o.logger = capture.logger();
    unsigned short port_a = 0;
    unsigned short port_b = 0;
    co_await one_pair_then_close(o, port_a, port_b);
    INFO(capture.all());
    // Each accepted socket, named by its remote port.
    CHECK(lines_with(capture, {"info", "accepted", std::to_string(port_a)}).size() == 1);
    CHECK(lines_with(capture, {"info", "accepted", std::to_string(port_b)}).size() == 1);
    // The pair, with both remotes.
    CHECK(lines_with(capture,
                     {"info", "connection 1", std::to_string(port_a), std::to_string(port_b)})
              .size() >= 1);
    // Its end, and the connector's.
    CHECK(lines_with(capture, {"info", "connection 1", "closed"}).size() == 1);
    auto info = lines_at(capture, "info");
    REQUIRE(!info.empty());
    CHECK(info.back().find("closed") != std::string::npos);
    CHECK(lines_at(capture, "traffic").empty());
}

asio::awaitable<void> quiet_without_verbose(log_capture& capture) {
    sc::options o = loopback_options();
    o.logger = capture.logger();
    unsigned short port_a = 0;
    unsigned short port_b = 0;
    co_await one_pair_then_close(o, port_a, port_b);
    INFO(capture.all());
    CHECK(lines_at(capture, "info").empty());
    CHECK(lines_at(capture, "traffic").empty());
}

asio::awaitable<void> traffic_lines(log_capture& capture) {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.log_traffic = true;
    o.logger = capture.logger();
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto a = co_await connect_to(c->side_a_port());
    auto b = co_await connect_to(c->side_b_port());
    // One message at a time, each read before the next is sent, so each is one chunk.
    co_await send_text(a, "hello", false);
    auto m1 = co_await read_exactly(b, 5);
    CHECK(m1 == "hello");
    co_await send_text(b, "world", false);
    auto m2 = co_await read_exactly(a, 5);
    CHECK(m2 == "world");
    std::string_view colours = "\x1b[31mred\x07\n";
    co_await send_text(a, colours, false);
    auto m3 = co_await read_exactly(b, colours.size());
    CHECK(m3 == colours);
    std::string_view high = "\xff";
    co_await send_text(b, high, false);
    auto m4 = co_await read_exactly(a, 1);
    CHECK(m4 == high);
    // Relayed bytes are never altered by the logging.
    CHECK(co_await eventually([&] { return lines_at(capture, "traffic").size() >= 4; }));
    INFO(capture.all());
    CHECK(!lines_with(capture, {"A -> B: hello"}).empty());
    CHECK(!lines_with(capture, {"B -> A: world"}).empty());
    CHECK(!lines_with(capture, {"A -> B: .[31mred.."}).empty());
    bool high_dot = false;
    for (auto& line : lines_at(capture, "traffic"))
        if (line.ends_with("B -> A: .")) high_dot = true;
    CHECK(high_dot);
    for (auto& line : lines_at(capture, "traffic")) {
        for (char ch : line) {
            auto byte = static_cast<unsigned char>(ch);
            INFO("line: " << line << ", byte " << static_cast<int>(byte));
            CHECK((byte >= 0x20 && byte < 0x7f));
        }
    }
    CHECK(lines_at(capture, "info").empty());
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> default_logger_connector() {
    sc::options o = loopback_options();
    o.verbose = true;
    o.log_traffic = true;
    unsigned short port_a = 0;
    unsigned short port_b = 0;
    co_await one_pair_then_close(o, port_a, port_b);
}

/// Sends stderr to a temporary file until destroyed (even when a REQUIRE throws).
class stderr_redirect {
public:
    stderr_redirect()
        : file_(std::tmpfile())
        , saved_(::dup(2)) {
        std::fflush(stderr);
        if (file_ && saved_ >= 0) ::dup2(::fileno(file_), 2);
    }
    stderr_redirect(const stderr_redirect&) = delete;
    stderr_redirect& operator=(const stderr_redirect&) = delete;
    ~stderr_redirect() {
        restore();
        if (file_) std::fclose(file_);
    }
    bool ok() const { return file_ && saved_ >= 0; }

    /// Restores stderr; what was written meanwhile.
    std::string finish() {
        restore();
        std::string text;
        if (!file_) return text;
        std::rewind(file_);
        char buf[4096];
        for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, file_)) > 0;)
            text.append(buf, n);
        return text;
    }

private:
    void restore() {
        std::fflush(stderr);
        if (saved_ >= 0) {
            ::dup2(saved_, 2);
            ::close(saved_);
            saved_ = -1;
        }
    }

    std::FILE* file_;
    int saved_;
};

} // namespace

TEST_CASE("verbose logs accepted sides, the pair and its end", "[logging]") {
    asio::io_context io;
    log_capture capture;
    run(io, verbose_events(capture), 10s);
}

TEST_CASE("without verbose no info lines are logged", "[logging]") {
    asio::io_context io;
    log_capture capture;
    run(io, quiet_without_verbose(capture), 10s);
}

TEST_CASE("log_traffic logs each chunk with its direction, as printable ASCII", "[logging]") {
    asio::io_context io;
    log_capture capture;
    run(io, traffic_lines(capture), 10s);
}

TEST_CASE("the default logger writes timestamped lines to stderr", "[logging]") {
    auto log = sc::stderr_logger();
    REQUIRE(log);
    stderr_redirect redirect;
    REQUIRE(redirect.ok());
    log(sc::log_level::debug, "logging_test debug");
    log(sc::log_level::info, "logging_test info");
    log(sc::log_level::warning, "logging_test warning");
    log(sc::log_level::error, "logging_test error");
    log(sc::log_level::traffic, "logging_test traffic");
    auto text = redirect.finish();
    INFO(text);
    CHECK(text.find("[debug] logging_test debug\n") != std::string::npos);
    CHECK(text.find("[info] logging_test info\n") != std::string::npos);
    CHECK(text.find("[warning] logging_test warning\n") != std::string::npos);
    CHECK(text.find("[error] logging_test error\n") != std::string::npos);
    CHECK(text.find("[traffic] logging_test traffic\n") != std::string::npos);
    CHECK(std::count(text.begin(), text.end(), '\n') == 5);
    // 2026-11-22T18:06:41.123Z [info] ...
    auto first = text.substr(0, text.find('\n'));
    REQUIRE(first.size() > 25);
    CHECK(first[4] == '-');
    CHECK(first[10] == 'T');
    CHECK(first[19] == '.');
    CHECK(first[23] == 'Z');
}

TEST_CASE("a connector without a logger logs to stderr and relays", "[logging]") {
    asio::io_context io;
    std::string text;
    {
        stderr_redirect redirect;
        REQUIRE(redirect.ok());
        run(io, default_logger_connector(), 10s);
        text = redirect.finish();
    }
    INFO(text);
    CHECK(text.find("[info]") != std::string::npos);
    CHECK(text.find("[traffic]") != std::string::npos);
}
