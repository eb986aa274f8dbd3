#include <socket_connector/auth.hpp>

#include <chrono>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <asio/write.hpp>
#include <fmt/format.h>

#include "support/auth.hpp"
#include "support/net.hpp"

using namespace test_support;

namespace {

/// Answers a challenge_verifier's challenge, correctly or not.
asio::awaitable<void> answer_challenge(tcp::socket& socket, bool correctly,
                                       std::string_view then_send) {
    auto challenge = co_await read_line(socket);
    auto expected_challenge = fmt::format("challenge {}", socket.local_endpoint().port());
    CHECK(challenge == expected_challenge);
    auto n = static_cast<unsigned long>(socket.local_endpoint().port());
    auto answer = fmt::format("{}\n{}", correctly ? n * 3 + 1 : n * 3, then_send);
    co_await send_text(socket, answer, false);
}

/// A verifier that throws instead of deciding.
struct throwing_verifier {
    asio::awaitable<sc::auth_result> operator()(tcp::socket&) const {
        throw std::runtime_error("verifier exploded");
        co_return sc::auth_result{};
    }
};

// ---- token accepted -----------------------------------------------------------------------------

asio::awaitable<void> token_accepted(bool crlf) {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.a.auth = sc::token_verifier("s3cret");
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto a = co_await connect_to(c->side_a_port());
    std::string hello = crlf ? "s3cret\r\n" : "s3cret\n";
    co_await send_text(a, hello, false);
    CHECK(co_await eventually([&] { return c->pending_a() == 1; }));
    auto b = co_await connect_to(c->side_b_port());
    auto data = pattern(11, 300000);
    co_await send_all(a, data);
    auto got = co_await read_to_eof(b);
    // The token line itself is never relayed.
    CHECK(got.size() == data.size());
    CHECK(checksum(got) == checksum(data));
    co_await send_text(b, "back");
    auto back = co_await read_to_eof(a);
    CHECK(text(back) == "back");
    CHECK(c->stats().auth_failures == 0);
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> leftover_relayed_first() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.a.auth = sc::token_verifier("s3cret");
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto a = co_await connect_to(c->side_a_port());
    // The token line and the first bytes go in one write, so the verifier reads them together.
    auto first = pattern(12, 1500);
    auto hello = concat("s3cret\r\n", first);
    co_await send_all(a, hello, false);
    CHECK(co_await eventually([&] { return c->pending_a() == 1; }));
    auto b = co_await connect_to(c->side_b_port());
    auto got_first = co_await read_exactly(b, first.size());
    CHECK(checksum(got_first) == checksum(first));
    // What follows comes after, in order and intact.
    auto rest = pattern(13, 1u << 20);
    co_await send_all(a, rest);
    auto got_rest = co_await read_to_eof(b);
    CHECK(got_rest.size() == rest.size());
    CHECK(checksum(got_rest) == checksum(rest));
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> large_leftover_relayed_in_order() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.a.auth = sc::token_verifier("s3cret");
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto a = co_await connect_to(c->side_a_port());
    // More than the verifier reads at once and more than a pending side keeps: the leftover,
    // the bytes kept while pending and the rest of the stream must join up exactly.
    auto payload = pattern(14, 200000);
    auto all = concat("s3cret\n", payload);
    co_await send_all(a, all);
    CHECK(co_await eventually([&] { return c->pending_a() == 1; }));
    auto b = co_await connect_to(c->side_b_port());
    auto got = co_await read_to_eof(b);
    CHECK(got.size() == payload.size());
    CHECK(checksum(got) == checksum(payload));
    c->close();
    co_await c->wait_closed();
}

// ---- rejections ---------------------------------------------------------------------------------

/// After a rejection: a B that connects gets nothing from the rejected A, only from a good A.
asio::awaitable<void> b_gets_only_good_a(sc::connector& c) {
    auto b = co_await connect_to(c.side_b_port());
    CHECK(co_await eventually([&] { return c.pending_b() == 1; }));
    CHECK(c.connections() == 0);
    CHECK(c.stats().connections_total == 0);
    auto good = co_await connect_to(c.side_a_port());
    co_await send_text(good, "s3cret\ngood");
    auto got = co_await read_to_eof(b);
    CHECK(text(got) == "good");
    CHECK(c.stats().connections_total == 1);
}

asio::awaitable<void> wrong_token_rejected() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.a.auth = sc::token_verifier("s3cret");
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto bad = co_await connect_to(c->side_a_port());
    co_await send_text(bad, "s3creT\nsneaky", false);
    auto seen = co_await read_until_closed(bad);
    CHECK(seen.closed);
    CHECK(seen.bytes.empty());
    CHECK(co_await eventually([&] { return c->stats().auth_failures == 1; }));
    CHECK(c->pending_a() == 0);
    co_await b_gets_only_good_a(*c);
    CHECK(c->stats().auth_failures == 1);
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> auth_timeout() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.a.auth = sc::token_verifier("s3cret");
    o.auth_timeout = 300ms;
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto start = std::chrono::steady_clock::now();
    auto silent = co_await connect_to(c->side_a_port());
    auto seen = co_await read_until_closed(silent);
    auto elapsed = std::chrono::steady_clock::now() - start;
    CHECK(seen.closed);
    CHECK(seen.bytes.empty());
    CHECK(elapsed >= 290ms);
    CHECK(elapsed < 5s);
    CHECK(co_await eventually([&] { return c->stats().auth_failures == 1; }));
    CHECK(c->pending_a() == 0);
    co_await b_gets_only_good_a(*c);
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> slow_verifier_blocks_nobody() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.a.auth = sc::token_verifier("s3cret");
    o.auth_timeout = 20s; // far longer than the test: nothing may wait for it
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto slow = co_await connect_to(c->side_a_port());
    co_await send_text(slow, "s3c", false); // its handshake stalls half-way
    auto fast = co_await connect_to(c->side_a_port());
    co_await send_text(fast, "s3cret\nfast");
    auto b = co_await connect_to(c->side_b_port());
    auto got = co_await read_to_eof(b);
    CHECK(text(got) == "fast");
    CHECK(c->stats().connections_total == 1);
    CHECK(c->stats().auth_failures == 0);
    CHECK(c->pending_a() == 0);
    // The slow one was only waiting: it finishes its line and is paired with the next B.
    co_await send_text(slow, "ret\nslow");
    CHECK(co_await eventually([&] { return c->pending_a() == 1; }));
    auto b2 = co_await connect_to(c->side_b_port());
    auto got2 = co_await read_to_eof(b2);
    CHECK(text(got2) == "slow");
    CHECK(c->stats().connections_total == 2);
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> challenge_response() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.a.auth = challenge_verifier{};
    auto c = co_await sc::server_to_server(ex, std::move(o));

    auto wrong = co_await connect_to(c->side_a_port());
    co_await answer_challenge(wrong, false, "nope");
    auto seen = co_await read_until_closed(wrong);
    CHECK(seen.closed);
    CHECK(co_await eventually([&] { return c->stats().auth_failures == 1; }));

    auto a = co_await connect_to(c->side_a_port());
    co_await answer_challenge(a, true, "after the answer;");
    CHECK(co_await eventually([&] { return c->pending_a() == 1; }));
    auto b = co_await connect_to(c->side_b_port());
    auto data = pattern(15, 100000);
    co_await send_all(a, data);
    auto got = co_await read_to_eof(b);
    auto expected = concat("after the answer;", data);
    CHECK(got.size() == expected.size());
    CHECK(checksum(got) == checksum(expected));
    co_await send_text(b, "reply");
    auto back = co_await read_to_eof(a);
    CHECK(text(back) == "reply");
    CHECK(c->stats().auth_failures == 1);
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> verifier_on_b_only() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.b.auth = sc::token_verifier("bee");
    auto c = co_await sc::server_to_server(ex, std::move(o));
    // A needs no token: its first bytes are data.
    auto a = co_await connect_to(c->side_a_port());
    co_await send_text(a, "hello\n", false);
    CHECK(co_await eventually([&] { return c->pending_a() == 1; }));
    auto bad = co_await connect_to(c->side_b_port());
    co_await send_text(bad, "hello\n", false); // A's line is not B's token
    auto seen = co_await read_until_closed(bad);
    CHECK(seen.closed);
    CHECK(seen.bytes.empty());
    CHECK(co_await eventually([&] { return c->stats().auth_failures == 1; }));
    CHECK(c->pending_a() == 1);
    CHECK(c->stats().connections_total == 0);
    auto b = co_await connect_to(c->side_b_port());
    co_await send_text(b, "bee\r\nworld", false);
    auto from_a = co_await read_exactly(b, 6);
    CHECK(from_a == "hello\n");
    auto from_b = co_await read_exactly(a, 5);
    CHECK(from_b == "world");
    a.shutdown(tcp::socket::shutdown_send);
    b.shutdown(tcp::socket::shutdown_send);
    auto rest_a = co_await read_to_eof(a);
    auto rest_b = co_await read_to_eof(b);
    CHECK(rest_a.empty());
    CHECK(rest_b.empty());
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> over_long_line_rejected() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.a.auth = sc::token_verifier("s3cret", 64);
    o.auth_timeout = 20s; // the rejection must come from the length, not the clock
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto a = co_await connect_to(c->side_a_port());
    std::string line(5000, 'x'); // no LF, and the stream stays open
    co_await send_text(a, line, false);
    auto seen = co_await read_until_closed(a);
    CHECK(seen.closed);
    CHECK(seen.bytes.empty());
    CHECK(co_await eventually([&] { return c->stats().auth_failures == 1; }));
    CHECK(c->pending_a() == 0);
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> end_of_stream_before_token() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.a.auth = sc::token_verifier("s3cret");
    o.auth_timeout = 3s; // the failure must come from the end of stream, at once
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto start = std::chrono::steady_clock::now();
    auto a = co_await connect_to(c->side_a_port());
    co_await send_text(a, "s3cret"); // then FIN, with no LF
    auto seen = co_await read_until_closed(a);
    auto elapsed = std::chrono::steady_clock::now() - start;
    CHECK(seen.closed);
    CHECK(elapsed < 1500ms);
    CHECK(co_await eventually([&] { return c->stats().auth_failures == 1; }));
    CHECK(c->pending_a() == 0);
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> throwing_verifier_fails() {
    auto ex = co_await asio::this_coro::executor;
    log_capture logs;
    sc::options o = loopback_options();
    o.a.auth = throwing_verifier{};
    o.logger = logs.logger();
    o.auth_timeout = 3s; // the failure must come from the exception, at once
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto start = std::chrono::steady_clock::now();
    auto a = co_await connect_to(c->side_a_port());
    co_await send_text(a, "data", false);
    auto seen = co_await read_until_closed(a);
    auto elapsed = std::chrono::steady_clock::now() - start;
    CHECK(seen.closed);
    CHECK(elapsed < 1500ms);
    CHECK(co_await eventually([&] { return c->stats().auth_failures == 1; }));
    CHECK(c->pending_a() == 0);
    CHECK(logs.contains("verifier exploded"));
    // Nothing can pass a verifier that throws: a B waits alone.
    auto b = co_await connect_to(c->side_b_port());
    CHECK(co_await eventually([&] { return c->pending_b() == 1; }));
    CHECK(c->stats().connections_total == 0);
    c->close();
    co_await c->wait_closed();
}

/// socket_to_server whose dialed A must prove itself: the target A server sends `greeting`.
asio::awaitable<void> dialed_side_verified(std::string greeting, bool accepted) {
    auto ex = co_await asio::this_coro::executor;
    tcp::acceptor target(ex, {asio::ip::address_v4::loopback(), 0});
    sc::options o = loopback_options();
    o.a.endpoint = target.local_endpoint();
    o.a.auth = sc::token_verifier("server-ok");
    o.auth_timeout = 2s;
    auto c = co_await sc::socket_to_server(ex, std::move(o));
    auto a = co_await target.async_accept(asio::use_awaitable);
    co_await send_text(a, greeting, false);
    if (!accepted) {
        // The only A failed: nothing can ever pair, so the connector closes by itself.
        co_await c->wait_closed();
        CHECK(c->stats().auth_failures == 1);
        auto end = co_await read_until_closed(a);
        CHECK(end.closed);
        co_return;
    }
    auto b = co_await connect_to(c->side_b_port());
    auto got = co_await read_exactly(b, 5);
    CHECK(got == "after");
    c->close();
    co_await c->wait_closed();
}

} // namespace

TEST_CASE("a dialed side is authenticated before it is paired", "[auth]") {
    asio::io_context io;
    run(io, dialed_side_verified("server-ok\nafter", true));
}

TEST_CASE("a dialed side that fails authentication closes a single-pair connector", "[auth]") {
    asio::io_context io;
    run(io, dialed_side_verified("imposter\nafter", false));
}

TEST_CASE("a side whose first line is the token is paired and relayed", "[auth]") {
    asio::io_context io;
    run(io, token_accepted(false));
}

TEST_CASE("a token line ending in CRLF is accepted", "[auth]") {
    asio::io_context io;
    run(io, token_accepted(true));
}

TEST_CASE("bytes sent after the token in the same write are relayed first, intact", "[auth]") {
    asio::io_context io;
    run(io, leftover_relayed_first());
}

TEST_CASE("a large stream sent with the token joins its leftover exactly", "[auth]") {
    asio::io_context io;
    run(io, large_leftover_relayed_in_order());
}

TEST_CASE("a wrong token closes the side and it is never paired", "[auth]") {
    asio::io_context io;
    run(io, wrong_token_rejected());
}

TEST_CASE("a side that sends nothing is closed after auth_timeout and never paired", "[auth]") {
    asio::io_context io;
    run(io, auth_timeout());
}

TEST_CASE("a stalled handshake never blocks other sides", "[auth]") {
    asio::io_context io;
    run(io, slow_verifier_blocks_nobody());
}

TEST_CASE("a challenge/response verifier works end to end", "[auth]") {
    asio::io_context io;
    run(io, challenge_response());
}

TEST_CASE("a verifier on side B only checks B and leaves A alone", "[auth]") {
    asio::io_context io;
    run(io, verifier_on_b_only());
}

TEST_CASE("a first line longer than max_line fails the token verifier", "[auth]") {
    asio::io_context io;
    run(io, over_long_line_rejected());
}

TEST_CASE("an end of stream before the token line fails the token verifier", "[auth]") {
    asio::io_context io;
    run(io, end_of_stream_before_token());
}

TEST_CASE("a verifier that throws counts as an auth failure", "[auth]") {
    asio::io_context io;
    run(io, throwing_verifier_fails());
}

TEST_CASE("constant_time_equal compares whole strings", "[auth]") {
    CHECK(sc::constant_time_equal("secret", "secret"));
    CHECK(sc::constant_time_equal("", ""));
    CHECK_FALSE(sc::constant_time_equal("secreT", "secret"));
    CHECK_FALSE(sc::constant_time_equal("Secret", "secret"));
    CHECK_FALSE(sc::constant_time_equal("secre", "secret"));
    CHECK_FALSE(sc::constant_time_equal("secrets", "secret"));
    CHECK_FALSE(sc::constant_time_equal("", "secret"));
    CHECK_FALSE(sc::constant_time_equal("x", ""));
    // A repetition of the secret is not the secret.
    CHECK_FALSE(sc::constant_time_equal("secretsecret", "secret"));
    const std::string with_nul("se\0ret", 6);
    CHECK_FALSE(sc::constant_time_equal(with_nul, "secret"));
}

TEST_CASE("find_first_line finds the first LF and strips one CR", "[auth]") {
    auto span_of = [](std::string_view s) { return std::span<const char>(s.data(), s.size()); };

    CHECK_FALSE(sc::find_first_line(span_of("")));
    CHECK_FALSE(sc::find_first_line(span_of("no line feed yet\r")));

    auto plain = sc::find_first_line(span_of("token\nrest"));
    REQUIRE(plain);
    CHECK(plain->line == "token");
    CHECK(plain->rest == 6);

    auto crlf = sc::find_first_line(span_of("token\r\nrest"));
    REQUIRE(crlf);
    CHECK(crlf->line == "token");
    CHECK(crlf->rest == 7);

    auto two_crs = sc::find_first_line(span_of("token\r\r\n"));
    REQUIRE(two_crs);
    CHECK(two_crs->line == "token\r");
    CHECK(two_crs->rest == 8);

    auto empty = sc::find_first_line(span_of("\nafter"));
    REQUIRE(empty);
    CHECK(empty->line.empty());
    CHECK(empty->rest == 1);

    auto empty_crlf = sc::find_first_line(span_of("\r\n"));
    REQUIRE(empty_crlf);
    CHECK(empty_crlf->line.empty());
    CHECK(empty_crlf->rest == 2);

    auto first_of_two = sc::find_first_line(span_of("one\ntwo\n"));
    REQUIRE(first_of_two);
    CHECK(first_of_two->line == "one");
    CHECK(first_of_two->rest == 4);

    // A CR in the middle of the line is kept.
    auto inner_cr = sc::find_first_line(span_of("a\rb\n"));
    REQUIRE(inner_cr);
    CHECK(inner_cr->line == "a\rb");
}

TEST_CASE("check_token_line accepts the token's line, rejects others, and waits for the LF",
          "[auth]") {
    using sc::detail::check_token_line;
    using sc::detail::token_check;
    auto check = [](std::string_view received, std::string_view token, std::size_t max_line) {
        return check_token_line(std::span<const char>(received.data(), received.size()), token,
                                max_line);
    };

    auto lf = check("s3cret\nhello", "s3cret", 1024);
    CHECK(lf.outcome == token_check::accepted);
    CHECK(lf.rest == 7);
    auto crlf = check("s3cret\r\n", "s3cret", 1024);
    CHECK(crlf.outcome == token_check::accepted);
    CHECK(crlf.rest == 8);
    CHECK(check("\n", "", 1024).outcome == token_check::accepted);

    CHECK(check("s3cre\n", "s3cret", 1024).outcome == token_check::rejected);
    CHECK(check("s3cret\r\r\n", "s3cret", 1024).outcome == token_check::rejected);
    CHECK(check("s3cretx\ns3cret\n", "s3cret", 1024).outcome == token_check::rejected);
    CHECK(check("s3cret\n", "s3cret", 1024).rest == 7);
    CHECK(check("s3cre\n", "s3cret", 1024).rest == 0);

    CHECK(check("", "s3cret", 1024).outcome == token_check::need_more);
    CHECK(check("s3cret\r", "s3cret", 1024).outcome == token_check::need_more);
    // No LF within max_line bytes: rejected, however the line would have gone on.
    CHECK(check(std::string(1024, 'x'), "s3cret", 1024).outcome == token_check::need_more);
    CHECK(check(std::string(1025, 'x'), "s3cret", 1024).outcome == token_check::rejected);
    // A max_line shorter than the token still leaves room for the token, its CR and its LF.
    CHECK(check("s3cret\r", "s3cret", 2).outcome == token_check::need_more);
    CHECK(check("s3cret\r\n", "s3cret", 2).outcome == token_check::accepted);
    CHECK(check("s3cret\r\r", "s3cret", 2).outcome == token_check::need_more);
    CHECK(check("s3cret\r\rx", "s3cret", 2).outcome == token_check::rejected);
}

TEST_CASE("check_token_line never changes a decision as bytes arrive", "[auth]") {
    const std::string token = "tok";
    const std::vector<std::string> streams = {
        "tok\nleft", "tok\r\nleft",     "to\nk\n",
        "tokk\n",    "xxxxxxxx\ntok\n", std::string("t\0k\n", 4),
        "tok"};
    for (const auto& stream : streams) {
        INFO("stream: " << stream);
        auto whole = sc::detail::check_token_line(stream, token, 4);
        for (std::size_t k = 0; k <= stream.size(); ++k) {
            auto part =
                sc::detail::check_token_line(std::span<const char>(stream.data(), k), token, 4);
            if (part.outcome == sc::detail::token_check::need_more) continue;
            CHECK(part.outcome == whole.outcome);
            CHECK(part.rest == whole.rest);
        }
    }
}
