// The receive hint (detail/receive_hint.hpp): on an io_context that one thread runs, a relay
// direction whose own read of its source would just have blocked queues its next receive
// without trying it first. The risk is a lost wake-up (a receive that waits for an event that
// already came), so these tests relay message after message, under backpressure too, and fail by
// their deadline if a direction stalls; every byte is checked. An end of stream that comes in the
// same segment as the last bytes is the case a short read cannot see (see receive_hint.hpp).
//
// The hint is opt-in: exactly one translation unit of a program turns it on, and in the test
// program it is this one. So the whole test program runs with it on (on Asio 1.22 with epoll),
// and the example programs that the tests start run without it.
#define SOCKET_CONNECTOR_ENABLE_RECEIVE_HINT
#include <socket_connector/connector.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <asio/detached.hpp>

#include "support/net.hpp"

using namespace test_support;
using namespace asio::experimental::awaitable_operators;

namespace {

/// The hint itself, on a connected pair of sockets: a marked socket's receive waits for the
/// next event, and that event completes it, whether it came before the receive was queued
/// (still unseen by the reactor) or after.
asio::awaitable<void> marked_socket_waits_for_the_next_event() {
    auto ex = co_await asio::this_coro::executor;
    tcp::acceptor listener(ex, {asio::ip::address_v4::loopback(), 0});
    auto peer = co_await connect_to(listener.local_endpoint().port());
    auto socket = co_await listener.async_accept(asio::use_awaitable);
    socket.non_blocking(true);
    peer.set_option(tcp::no_delay(true));
    char buf[64];

    asio::write(peer, asio::buffer("first", 5));
    auto n = co_await socket.async_receive(asio::buffer(buf), asio::use_awaitable);
    CHECK(std::string(buf, n) == "first");
    CHECK(sc::detail::receive_tries_first(socket));

    // Bytes sent before the receive is queued, with no turn of the event loop in between:
    // the reactor has not taken their event yet, and it completes the receive.
    asio::write(peer, asio::buffer("second", 6));
    sc::detail::mark_read_empty(socket);
    CHECK(sc::detail::receive_tries_first(socket) == !sc::detail::receive_hint_enabled());
    n = co_await socket.async_receive(asio::buffer(buf), asio::use_awaitable);
    CHECK(std::string(buf, n) == "second");

    // Bytes sent while the receive waits.
    sc::detail::mark_read_empty(socket);
    auto [got, sent] =
        co_await (socket.async_receive(asio::buffer(buf), asio::use_awaitable) &&
                  asio::async_write(peer, asio::buffer("third", 5), asio::use_awaitable));
    CHECK(sent == 5u);
    CHECK(std::string(buf, got) == "third");

    // The end of stream is an event like any other.
    sc::detail::mark_read_empty(socket);
    peer.shutdown(tcp::socket::shutdown_send);
    auto [ec, none] = co_await socket.async_receive(asio::buffer(buf), use_tuple);
    CHECK(ec == asio::error::eof);
    CHECK(none == 0u);
}

/// A client and a server exchange `rounds` messages of 1 to 700 bytes through a proxy, each
/// answered before the next; afterwards the relay's two sockets are marked (io_run_by_one_thread,
/// where the hint is built) or not (a connector with strands never marks).
asio::awaitable<void> ping_pong(bool io_run_by_one_thread, int rounds) {
    auto ex = co_await asio::this_coro::executor;
    tcp::acceptor target(ex, {asio::ip::address_v4::loopback(), 0});
    sc::options o = proxy_options(target);
    o.io_run_by_one_thread = io_run_by_one_thread;
    std::shared_ptr<sc::connection> pair;
    o.before_joining = [&pair](sc::connection& c) { pair = c.shared_from_this(); };
    auto proxy = co_await sc::server_to_socket(ex, std::move(o));
    auto client = co_await connect_to(proxy->side_a_port());
    auto server = co_await target.async_accept(asio::use_awaitable);
    client.set_option(tcp::no_delay(true));
    server.set_option(tcp::no_delay(true));

    std::mt19937 rng(4242);
    std::uint64_t bytes = 0;
    int intact = 0;
    for (int i = 0; i < rounds; ++i) {
        auto size = [&rng] { return 1 + rng() % (rng() % 4 == 0 ? 700 : 127); };
        auto ask = pattern(static_cast<std::uint64_t>(2 * i), size());
        auto answer = pattern(static_cast<std::uint64_t>(2 * i + 1), size());
        co_await send_all(client, ask, false);
        auto at_server = co_await read_exactly(server, ask.size());
        co_await send_all(server, answer, false);
        auto at_client = co_await read_exactly(client, answer.size());
        if (checksum(at_server) == checksum(ask) && checksum(at_client) == checksum(answer))
            ++intact;
        bytes += ask.size() + answer.size();
    }
    CHECK(intact == rounds);
    REQUIRE(pair);
    // Both directions now wait for their source with a receive queued; no event came since.
    const bool marked = sc::detail::receive_hint_enabled() && io_run_by_one_thread;
    CHECK(sc::detail::receive_tries_first(pair->side_a().socket()) == !marked);
    CHECK(sc::detail::receive_tries_first(pair->side_b().socket()) == !marked);

    client.shutdown(tcp::socket::shutdown_send);
    server.shutdown(tcp::socket::shutdown_send);
    auto rest = co_await (read_to_eof(server) && read_to_eof(client));
    CHECK(std::get<0>(rest).empty());
    CHECK(std::get<1>(rest).empty());
    co_await pair->wait_closed();
    CHECK(pair->bytes_a_to_b() + pair->bytes_b_to_a() == bytes);
    pair.reset();
    proxy->close();
    co_await proxy->wait_closed();
}

/// Reads `socket` to its end a little at a time, with pauses (pacing, so that the relay meets
/// backpressure often: its direction waits for the sink while the source gets more).
asio::awaitable<std::vector<char>> read_slowly(tcp::socket& socket) {
    std::vector<char> data;
    char buf[2048];
    for (int reads = 1;; ++reads) {
        auto [ec, n] = co_await socket.async_read_some(asio::buffer(buf), use_tuple);
        data.insert(data.end(), buf, buf + n);
        if (ec == asio::error::eof) co_return data;
        if (ec) throw std::system_error(ec, "read_slowly");
        if (reads % 2 == 0) co_await pause(2ms);
    }
}

/// Sends `all` in pieces of `sizes`, one write at a time with a pause after each (so that the
/// relay's reads of them are short), then ends the stream.
asio::awaitable<void> send_chunks(tcp::socket& socket, const std::vector<char>& all,
                                  const std::vector<std::size_t>& sizes) {
    std::size_t at = 0;
    for (auto size : sizes) {
        co_await send_all(socket, std::span<const char>(all.data() + at, size), false);
        at += size;
        co_await pause(1ms);
    }
    socket.shutdown(tcp::socket::shutdown_send);
}

/// Pair after pair, A sends 48 chunks of 200 to 1,500 bytes and then its end of stream, to a B
/// with small buffers. In even pairs B reads only after A has finished: the relay, stuck
/// holding a chunk from a short read, has already seen the events of A's later chunks and end
/// of stream when B makes room; a direction that then marked A drained would wait for an
/// event that already came, and stall. In odd pairs B reads slowly all along. Every byte and
/// every end of stream must come through.
asio::awaitable<void> backpressure(int pairs) {
    auto ex = co_await asio::this_coro::executor;
    tcp::acceptor target(ex, {asio::ip::address_v4::loopback(), 0});
    target.set_option(asio::socket_base::receive_buffer_size(4096)); // inherited by B
    sc::options o = proxy_options(target);
    o.io_run_by_one_thread = true;
    o.before_joining = [](sc::connection& c) { // and a small send buffer towards B
        c.side_b().socket().set_option(asio::socket_base::send_buffer_size(4096));
    };
    auto proxy = co_await sc::server_to_socket(ex, std::move(o));
    std::mt19937 rng(99);
    int intact = 0;
    for (int p = 0; p < pairs; ++p) {
        std::vector<std::size_t> sizes(48);
        std::size_t total = 0;
        for (auto& s : sizes)
            total += s = 200 + rng() % 1301;
        auto sent = pattern(static_cast<std::uint64_t>(p), total);
        auto a = co_await connect_to(proxy->side_a_port());
        auto b = co_await target.async_accept(asio::use_awaitable);
        std::vector<char> got;
        if (p % 2 == 0) {
            co_await send_chunks(a, sent, sizes);
            got = co_await read_to_eof(b);
        } else {
            got = co_await (read_slowly(b) && send_chunks(a, sent, sizes));
        }
        if (got.size() == sent.size() && checksum(got) == checksum(sent)) ++intact;
        b.shutdown(tcp::socket::shutdown_send);
        auto rest = co_await read_to_eof(a);
        CHECK(rest.empty());
    }
    CHECK(intact == pairs);
    proxy->close();
    co_await proxy->wait_closed();
}

/// Sends `data` and ends the stream in the same segment: MSG_MORE holds the last partial
/// segment back until the shutdown adds its FIN to it. The end of stream then arrives with the
/// last bytes, under one event - as it does from a peer that writes and closes at once, or
/// from a relay that passes an end of stream on behind its last bytes.
asio::awaitable<void> send_with_end(tcp::socket& socket, std::span<const char> data) {
    std::size_t at = 0;
    while (at < data.size())
        at += co_await socket.async_send(asio::buffer(data.data() + at, data.size() - at),
                                         sc::detail::more_to_come, asio::use_awaitable);
    socket.shutdown(tcp::socket::shutdown_send);
}

/// Through a io_run_by_one_thread proxy, pair after pair: `exchanges` messages each way first (so
/// that the relay's receives wait, marked or not), then one side's last message arrives with its
/// end of stream in one segment. A short read of it does not empty the source, since the end of
/// stream is right behind its bytes and its event has been taken: a relay that marked the
/// source drained there would wait for an event that came already, and the pair would stall
/// until the deadline. Every size from one byte to several segments, both ways; in the first
/// pairs, A's last message (with its end) is sent before the proxy has accepted A.
asio::awaitable<void> end_in_last_segment() {
    auto ex = co_await asio::this_coro::executor;
    tcp::acceptor target(ex, {asio::ip::address_v4::loopback(), 0});
    sc::options o = proxy_options(target);
    o.io_run_by_one_thread = true;
    auto proxy = co_await sc::server_to_socket(ex, std::move(o));
    const std::size_t sizes[] = {1, 60, 127, 128, 129, 300, 5000, 70000, 200000};
    int pairs = 0;
    int intact = 0;
    for (int exchanges = 0; exchanges < 3; ++exchanges) {
        for (bool from_a : {true, false}) {
            for (auto size : sizes) {
                ++pairs;
                auto seed = static_cast<std::uint64_t>(pairs) * 100;
                auto client = co_await connect_to(proxy->side_a_port());
                client.set_option(tcp::no_delay(true));
                // Room for the largest message in one send: it and its end arrive before the
                // relay's next turn, under one event.
                client.set_option(asio::socket_base::send_buffer_size(1 << 20));
                auto last = pattern(seed, size);
                if (from_a && exchanges == 0) co_await send_with_end(client, last);
                auto server = co_await target.async_accept(asio::use_awaitable);
                server.set_option(tcp::no_delay(true));
                server.set_option(asio::socket_base::send_buffer_size(1 << 20));
                bool ok = true;
                for (std::uint64_t i = 1; i <= static_cast<std::uint64_t>(exchanges); ++i) {
                    auto ask = pattern(seed + 2 * i, 1 + (seed + i) % 200);
                    auto answer = pattern(seed + 2 * i + 1, 1 + (seed + 7 * i) % 200);
                    co_await send_all(client, ask, false);
                    auto at_server = co_await read_exactly(server, ask.size());
                    co_await send_all(server, answer, false);
                    auto at_client = co_await read_exactly(client, answer.size());
                    ok = ok && checksum(at_server) == checksum(ask) &&
                         checksum(at_client) == checksum(answer);
                }
                auto& sender = from_a ? client : server;
                auto& receiver = from_a ? server : client;
                std::vector<char> got;
                if (from_a && exchanges == 0) {
                    got = co_await read_to_eof(receiver);
                } else {
                    auto both = co_await (send_with_end(sender, last) && read_to_eof(receiver));
                    got = std::move(both);
                }
                ok = ok && got.size() == last.size() && checksum(got) == checksum(last);
                // The other way ends too, and the pair closes.
                receiver.shutdown(tcp::socket::shutdown_send);
                auto rest = co_await read_to_eof(sender);
                if (ok && rest.empty()) ++intact;
            }
        }
    }
    CHECK(intact == pairs);
    proxy->close();
    co_await proxy->wait_closed();
}

/// A backend on another thread that, as soon as it accepts, sends its message and its end of
/// stream in one segment (a server that speaks first and closes), `count` times.
asio::awaitable<void> speak_first(std::shared_ptr<tcp::acceptor> listener,
                                  std::vector<std::vector<char>> messages, std::size_t count) {
    for (std::size_t i = 0; i < count; ++i) {
        auto socket = co_await listener->async_accept(asio::use_awaitable);
        socket.set_option(tcp::no_delay(true));
        socket.set_option(asio::socket_base::send_buffer_size(1 << 20));
        co_await send_with_end(socket, messages[i % messages.size()]);
        co_await read_to_eof(socket); // until the relay passes on the client's end
    }
}

/// Through a io_run_by_one_thread proxy, pair after pair: B speaks first, at once, from another
/// thread, so its bytes and end of stream come while the relay's handler that dialed it is running
/// or just after. The relay marks a B whose connect completed in that handler without reading it
/// (epoll has not taken its entry yet, and reports what came when it does): nothing may be
/// lost either way. A sends nothing until it has the whole message and its end.
asio::awaitable<void> b_speaks_first(asio::any_io_executor backend_loop) {
    auto ex = co_await asio::this_coro::executor;
    // Owned by the backend's coroutine, on its thread, from when it is spawned.
    auto backend = std::make_shared<tcp::acceptor>(
        backend_loop, tcp::endpoint{asio::ip::address_v4::loopback(), 0});
    sc::options o = loopback_options();
    o.multi = true;
    o.io_run_by_one_thread = true;
    o.b.endpoint = backend->local_endpoint();
    auto proxy = co_await sc::server_to_socket(ex, std::move(o));
    std::vector<std::vector<char>> messages;
    const std::size_t sizes[] = {1, 60, 127, 128, 129, 300, 5000, 70000};
    for (auto size : sizes)
        messages.push_back(pattern(size, size));
    const std::size_t pairs = messages.size() * 40;
    asio::co_spawn(backend_loop, speak_first(std::move(backend), messages, pairs), asio::detached);
    std::size_t intact = 0;
    for (std::size_t i = 0; i < pairs; ++i) {
        auto client = co_await connect_to(proxy->side_a_port());
        auto got = co_await read_to_eof(client);
        const auto& sent = messages[i % messages.size()];
        if (got.size() == sent.size() && checksum(got) == checksum(sent)) ++intact;
        client.shutdown(tcp::socket::shutdown_send);
        auto rest = co_await read_to_eof(client);
        CHECK(rest.empty());
    }
    CHECK(intact == pairs);
    proxy->close();
    co_await proxy->wait_closed();
}

} // namespace

TEST_CASE("a socket marked drained receives the bytes and the end of stream that come next",
          "[receive_hint]") {
    asio::io_context io(1);
    run(io, marked_socket_waits_for_the_next_event(), 20s);
}

TEST_CASE("a io_run_by_one_thread proxy relays 3,000 small exchanges byte for byte and leaves its "
          "emptied sockets marked",
          "[receive_hint]") {
    asio::io_context io(1);
    run(io, ping_pong(true, 3000), 60s);
}

TEST_CASE("a proxy with strands relays the same exchanges and never marks a socket",
          "[receive_hint]") {
    asio::io_context io(1);
    run(io, ping_pong(false, 500), 60s);
}

TEST_CASE("a io_run_by_one_thread proxy under backpressure passes on every chunk and end of stream",
          "[receive_hint]") {
    asio::io_context io(1);
    run(io, backpressure(12), 60s);
}

TEST_CASE(
    "a io_run_by_one_thread proxy passes on an end of stream that comes in one segment with the "
    "last bytes",
    "[receive_hint]") {
    asio::io_context io(1);
    run(io, end_in_last_segment(), 30s);
}

TEST_CASE("a io_run_by_one_thread proxy passes on all that a backend which speaks first and closes "
          "at once "
          "sends",
          "[receive_hint]") {
    asio::io_context io(1);
    loop_thread backend; // after io: its thread stops before io goes
    run(io, b_speaks_first(backend.executor()), 60s);
}
