#include <socket_connector/concepts.hpp>

#include <algorithm>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "support/net.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

// ---- transformers -------------------------------------------------------------------------------

char upper(char c) {
    return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
}

/// ASCII letters to upper case; every other byte unchanged.
struct upper_transformer {
    void transform(std::span<const char> in, std::vector<char>& out) {
        for (char c : in)
            out.push_back(upper(c));
    }
    void finish(std::vector<char>&) {}
};

/// Emits every byte twice: more out than in.
struct doubling_transformer {
    void transform(std::span<const char> in, std::vector<char>& out) {
        for (char c : in)
            out.insert(out.end(), 2, c);
    }
    void finish(std::vector<char>&) {}
};

/// Keeps the bytes at even positions of the whole stream (so it has state across chunks).
struct every_other_transformer {
    std::size_t position = 0;
    void transform(std::span<const char> in, std::vector<char>& out) {
        for (char c : in)
            if (position++ % 2 == 0) out.push_back(c);
    }
    void finish(std::vector<char>&) {}
};

/// Emits only complete lines; what follows the last LF waits for more, or for finish().
struct line_transformer {
    std::vector<char> held;
    void transform(std::span<const char> in, std::vector<char>& out) {
        held.insert(held.end(), in.begin(), in.end());
        auto last_lf = std::find(held.rbegin(), held.rend(), '\n');
        if (last_lf == held.rend()) return;
        auto end = last_lf.base(); // one past the LF
        out.insert(out.end(), held.begin(), end);
        held.erase(held.begin(), end);
    }
    void finish(std::vector<char>& out) {
        out.insert(out.end(), held.begin(), held.end());
        held.clear();
    }
};

/// Holds the whole stream back and emits it reversed at the end.
struct reversing_transformer {
    std::vector<char> held;
    void transform(std::span<const char> in, std::vector<char>& out) {
        (void)out;
        held.insert(held.end(), in.begin(), in.end());
    }
    void finish(std::vector<char>& out) { out.insert(out.end(), held.rbegin(), held.rend()); }
};

/// Passes bytes through and, at the end, appends how many it saw: `|<count>`.
struct counting_transformer {
    std::size_t seen = 0;
    void transform(std::span<const char> in, std::vector<char>& out) {
        seen += in.size();
        out.insert(out.end(), in.begin(), in.end());
    }
    void finish(std::vector<char>& out) {
        auto tail = fmt::format("|{}", seen);
        out.insert(out.end(), tail.begin(), tail.end());
    }
};

/// Throws from transform() when it sees a '!', or from finish() if asked to.
struct throwing_transformer {
    bool throw_in_finish = false;
    void transform(std::span<const char> in, std::vector<char>& out) {
        if (std::find(in.begin(), in.end(), '!') != in.end())
            throw std::runtime_error("transformer refused a '!'");
        out.insert(out.end(), in.begin(), in.end());
    }
    void finish(std::vector<char>&) {
        if (throw_in_finish) throw std::runtime_error("transformer failed to finish");
    }
};

/// Answers each '?' with 17 MiB: more than one call may produce.
struct flooding_transformer {
    void transform(std::span<const char> in, std::vector<char>& out) {
        for (char c : in) {
            if (c == '?')
                out.insert(out.end(), 17u * 1024 * 1024, 'x');
            else
                out.push_back(c);
        }
    }
    void finish(std::vector<char>&) {}
};

counting_transformer make_counting() {
    return counting_transformer{};
}

// ---- helpers ------------------------------------------------------------------------------------

std::vector<char> bytes_of(std::string_view s) {
    return {s.begin(), s.end()};
}

/// Connects an A and a B, sends `from_a` from A (then FIN), and returns what B read to its EOF.
asio::awaitable<std::vector<char>> relay_once(sc::connector& c, const std::vector<char>& from_a) {
    auto a = co_await connect_to(c.side_a_port());
    auto b = co_await connect_to(c.side_b_port());
    co_await send_all(a, from_a);
    auto got = co_await read_to_eof(b);
    co_await send_text(b, "");
    auto back = co_await read_to_eof(a);
    CHECK(back.empty());
    co_return got;
}

// ---- tests --------------------------------------------------------------------------------------

asio::awaitable<void> upper_case_a_to_b() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.a.transform = upper_transformer{};
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto a = co_await connect_to(c->side_a_port());
    auto b = co_await connect_to(c->side_b_port());
    auto data = pattern(21, 2u << 20);
    std::vector<char> expected(data.size());
    std::transform(data.begin(), data.end(), expected.begin(), [](char ch) {
        return ch >= 'a' && ch <= 'z' ? static_cast<char>(ch - 32) : ch;
    });
    REQUIRE(checksum(expected) != checksum(data)); // the data has lower-case letters
    co_await send_all(a, data);
    auto got = co_await read_to_eof(b);
    CHECK(got.size() == expected.size());
    CHECK(checksum(got) == checksum(expected));
    // B has no transformer: what leaves B arrives unchanged.
    auto reply = pattern(22, 1u << 20);
    co_await send_all(b, reply);
    auto back = co_await read_to_eof(a);
    CHECK(back.size() == reply.size());
    CHECK(checksum(back) == checksum(reply));
    CHECK(co_await eventually([&] { return c->connections() == 0; }));
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> transformer_on_pending_bytes() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.a.transform = upper_transformer{};
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto a = co_await connect_to(c->side_a_port());
    co_await send_text(a, "sent while pending"); // and FIN, before any B exists
    CHECK(co_await eventually([&] { return c->pending_a() == 1; }));
    auto b = co_await connect_to(c->side_b_port());
    auto got = co_await read_to_eof(b);
    CHECK(text(got) == "SENT WHILE PENDING");
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> more_bytes_out() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.b.transform = doubling_transformer{}; // on B: rewrites what goes B -> A
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto a = co_await connect_to(c->side_a_port());
    auto b = co_await connect_to(c->side_b_port());
    auto data = pattern(23, 1u << 20);
    std::vector<char> expected;
    expected.reserve(2 * data.size());
    for (char ch : data) {
        expected.push_back(ch);
        expected.push_back(ch);
    }
    co_await send_all(b, data);
    auto got = co_await read_to_eof(a);
    CHECK(got.size() == expected.size());
    CHECK(checksum(got) == checksum(expected));
    co_await send_text(a, "plain");
    auto back = co_await read_to_eof(b);
    CHECK(text(back) == "plain");
    CHECK(co_await eventually([&] { return c->connections() == 0; }));
    // Stats count what was written, after the transformer.
    auto s = c->stats();
    CHECK(s.bytes_b_to_a == expected.size());
    CHECK(s.bytes_a_to_b == 5);
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> fewer_bytes_out() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.a.transform = every_other_transformer{};
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto a = co_await connect_to(c->side_a_port());
    auto b = co_await connect_to(c->side_b_port());
    auto data = pattern(24, (1u << 20) + 1);
    std::vector<char> expected;
    for (std::size_t i = 0; i < data.size(); i += 2)
        expected.push_back(data[i]);
    co_await send_all(a, data);
    auto got = co_await read_to_eof(b);
    CHECK(got.size() == expected.size());
    CHECK(checksum(got) == checksum(expected));
    co_await send_text(b, "");
    auto back = co_await read_to_eof(a);
    CHECK(back.empty());
    CHECK(co_await eventually([&] { return c->connections() == 0; }));
    CHECK(c->stats().bytes_a_to_b == expected.size());
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> held_back_lines_flushed_before_fin() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.a.transform = line_transformer{};
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto a = co_await connect_to(c->side_a_port());
    auto b = co_await connect_to(c->side_b_port());
    co_await send_text(a, "one\ntw", false);
    auto first = co_await read_exactly(b, 4);
    CHECK(first == "one\n");
    // "tw" is held back: only the complete line has been written to B.
    CHECK(co_await eventually([&] { return c->stats().bytes_a_to_b >= 4; }));
    CHECK(c->stats().bytes_a_to_b == 4);
    co_await send_text(a, "o\nthree"); // then FIN: "three" has no LF and comes from finish()
    auto rest = co_await read_to_eof(b);
    CHECK(text(rest) == "two\nthree");
    CHECK(c->stats().bytes_a_to_b == 13);
    // The half-close leaves B -> A open.
    co_await send_text(b, "still here");
    auto back = co_await read_to_eof(a);
    CHECK(text(back) == "still here");
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> everything_held_until_eof() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.a.transform = reversing_transformer{};
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto a = co_await connect_to(c->side_a_port());
    auto b = co_await connect_to(c->side_b_port());
    auto data = pattern(25, 1u << 20);
    std::vector<char> expected(data.rbegin(), data.rend());
    co_await send_all(a, data);
    auto got = co_await read_to_eof(b);
    CHECK(got.size() == expected.size());
    CHECK(checksum(got) == checksum(expected));
    co_await send_text(b, "ok");
    auto back = co_await read_to_eof(a);
    CHECK(text(back) == "ok");
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> pending_eof_flushes_transformer() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.a.transform = line_transformer{};
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto a = co_await connect_to(c->side_a_port());
    co_await send_text(a, "line\npartial"); // and FIN while pending
    CHECK(co_await eventually([&] { return c->pending_a() == 1; }));
    auto b = co_await connect_to(c->side_b_port());
    auto got = co_await read_to_eof(b);
    CHECK(text(got) == "line\npartial");
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> fresh_state_per_connection(sc::transformer_factory factory) {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.a.transform = std::move(factory);
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto ten = bytes_of("0123456789");
    auto got1 = co_await relay_once(*c, ten);
    CHECK(text(got1) == "0123456789|10");
    CHECK(co_await eventually([&] { return c->connections() == 0; }));
    auto seven = bytes_of("abcdefg");
    auto got2 = co_await relay_once(*c, seven);
    CHECK(text(got2) == "abcdefg|7"); // not |17: the second pair starts from zero
    CHECK(c->stats().connections_total == 2);
    c->close();
    co_await c->wait_closed();
}

/// Pair 1: A upper-cased, B doubled. Pair 2: A doubled, B as it is. Pair 3: the options' own.
void choose_by_id(sc::connection& connection) {
    switch (connection.id()) {
    case 1:
        connection.side_a().transformer = upper_transformer{};
        connection.side_b().transformer = doubling_transformer{};
        break;
    case 2:
        connection.side_a().transformer = doubling_transformer{};
        connection.side_b().transformer = sc::any_transformer();
        break;
    default:
        break;
    }
}

asio::awaitable<void> pair_both_ways(sc::connector& c, std::string_view from_a,
                                     std::string_view from_b, std::string& at_b,
                                     std::string& at_a) {
    auto a = co_await connect_to(c.side_a_port());
    auto b = co_await connect_to(c.side_b_port());
    co_await send_text(a, from_a);
    co_await send_text(b, from_b);
    auto got_b = co_await read_to_eof(b);
    auto got_a = co_await read_to_eof(a);
    at_b = text(got_b);
    at_a = text(got_a);
}

asio::awaitable<void> before_joining_per_pair() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.b.transform = upper_transformer{};
    o.before_joining = choose_by_id;
    auto c = co_await sc::server_to_server(ex, std::move(o));
    std::string at_b, at_a;

    co_await pair_both_ways(*c, "abc", "xy", at_b, at_a);
    CHECK(at_b == "ABC");
    CHECK(at_a == "xxyy");
    CHECK(co_await eventually([&] { return c->connections() == 0; }));

    co_await pair_both_ways(*c, "abc", "xy", at_b, at_a);
    CHECK(at_b == "aabbcc");
    CHECK(at_a == "xy"); // the hook removed B's transformer from the options
    CHECK(co_await eventually([&] { return c->connections() == 0; }));

    co_await pair_both_ways(*c, "abc", "xy", at_b, at_a);
    CHECK(at_b == "abc");
    CHECK(at_a == "XY");
    CHECK(c->stats().connections_total == 3);
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> connection_counts_bytes_after_transformer() {
    auto ex = co_await asio::this_coro::executor;
    sc::options o = loopback_options();
    o.a.transform = doubling_transformer{};
    o.b.transform = every_other_transformer{};
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto a = co_await connect_to(c->side_a_port());
    auto b = co_await connect_to(c->side_b_port());
    auto connection = co_await c->next_connection();
    REQUIRE(connection);
    auto from_a = pattern(26, 300001);
    auto from_b = pattern(27, 300001);
    co_await send_all(a, from_a);
    co_await send_all(b, from_b);
    auto at_b = co_await read_to_eof(b);
    auto at_a = co_await read_to_eof(a);
    CHECK(at_b.size() == 2 * from_a.size());
    CHECK(at_a.size() == (from_b.size() + 1) / 2);
    co_await connection->wait_closed();
    CHECK(connection->bytes_a_to_b() == 2 * from_a.size());
    CHECK(connection->bytes_b_to_a() == (from_b.size() + 1) / 2);
    auto s = c->stats();
    CHECK(s.bytes_a_to_b == 2 * from_a.size());
    CHECK(s.bytes_b_to_a == (from_b.size() + 1) / 2);
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> throwing_transform_closes(bool in_finish) {
    auto ex = co_await asio::this_coro::executor;
    log_capture logs;
    sc::options o = loopback_options();
    o.verbose = true;
    o.logger = logs.logger();
    o.a.transform = throwing_transformer{.throw_in_finish = in_finish};
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto a = co_await connect_to(c->side_a_port());
    auto b = co_await connect_to(c->side_b_port());
    auto connection = co_await c->next_connection();
    REQUIRE(connection);
    co_await send_text(a, "fine", false);
    auto fine = co_await read_exactly(b, 4);
    CHECK(fine == "fine");
    if (in_finish)
        a.shutdown(tcp::socket::shutdown_send); // finish() throws at A's end of stream
    else
        co_await send_text(a, "bad!", false);
    // Neither peer has closed B -> A, so these reads end only if the connection is closed.
    auto [at_a, at_b] = co_await (read_until_closed(a) && read_until_closed(b));
    CHECK(at_a.closed);
    CHECK(at_b.closed);
    CHECK(at_a.bytes.empty());
    CHECK(at_b.bytes.empty()); // nothing of the refused chunk got through
    CHECK(co_await eventually([&] { return c->connections() == 0; }));
    CHECK(connection->closed());
    CHECK(logs.contains(in_finish ? "transformer failed to finish" : "transformer refused"));
    c->close();
    co_await c->wait_closed();
}

asio::awaitable<void> flooding_transform_closes() {
    auto ex = co_await asio::this_coro::executor;
    log_capture logs;
    sc::options o = loopback_options();
    o.verbose = true;
    o.logger = logs.logger();
    o.a.transform = flooding_transformer{};
    auto c = co_await sc::server_to_server(ex, std::move(o));
    auto a = co_await connect_to(c->side_a_port());
    auto b = co_await connect_to(c->side_b_port());
    co_await send_text(a, "fine", false);
    auto fine = co_await read_exactly(b, 4);
    CHECK(fine == "fine");
    co_await send_text(a, "?", false);
    auto [at_a, at_b] = co_await (read_until_closed(a) && read_until_closed(b));
    CHECK(at_a.closed);
    CHECK(at_b.closed);
    CHECK(at_b.bytes.empty()); // none of the flood was written
    CHECK(co_await eventually([&] { return c->connections() == 0; }));
    INFO(logs.all());
    CHECK(logs.contains("transformer of A -> B produced 17825792 bytes from 1"));
    c->close();
    co_await c->wait_closed();
}

} // namespace

TEST_CASE("an upper-casing transformer on A rewrites A to B only, byte for byte", "[transformer]") {
    asio::io_context io;
    run(io, upper_case_a_to_b(), 60s);
}

TEST_CASE("bytes sent while pending go through the transformer", "[transformer]") {
    asio::io_context io;
    run(io, transformer_on_pending_bytes());
}

TEST_CASE("a transformer on B may emit more bytes than it gets", "[transformer]") {
    asio::io_context io;
    run(io, more_bytes_out());
}

TEST_CASE("a transformer may emit fewer bytes than it gets, keeping state across chunks",
          "[transformer]") {
    asio::io_context io;
    run(io, fewer_bytes_out());
}

TEST_CASE("held-back bytes are flushed by finish() before the half-close", "[transformer]") {
    asio::io_context io;
    run(io, held_back_lines_flushed_before_fin());
}

TEST_CASE("a transformer that holds everything back delivers it all at end of stream",
          "[transformer]") {
    asio::io_context io;
    run(io, everything_held_until_eof());
}

TEST_CASE("a side that ends its stream while pending still gets its transformer flushed",
          "[transformer]") {
    asio::io_context io;
    run(io, pending_eof_flushes_transformer());
}

TEST_CASE("each connection gets a fresh transformer from a prototype", "[transformer]") {
    asio::io_context io;
    run(io, fresh_state_per_connection(counting_transformer{}));
}

TEST_CASE("each connection gets a fresh transformer from a callable", "[transformer]") {
    asio::io_context io;
    run(io, fresh_state_per_connection(make_counting));
}

TEST_CASE("before_joining sets different transformers per pair", "[transformer]") {
    asio::io_context io;
    run(io, before_joining_per_pair());
}

TEST_CASE("byte counts are of the bytes written, after the transformer", "[transformer]") {
    asio::io_context io;
    run(io, connection_counts_bytes_after_transformer());
}

TEST_CASE("a transformer that throws from transform() closes the connection", "[transformer]") {
    asio::io_context io;
    run(io, throwing_transform_closes(false));
}

TEST_CASE("a transformer that throws from finish() closes the connection", "[transformer]") {
    asio::io_context io;
    run(io, throwing_transform_closes(true));
}

TEST_CASE("a transformer that produces more than the per-call limit closes the connection",
          "[transformer]") {
    asio::io_context io;
    run(io, flooding_transform_closes());
}
