// chat_server: a line-based chat room over TCP. It shows a server with many clients on one
// io_context: one reader and one writer coroutine per client, an outgoing queue per client so a
// slow reader never slows the others, line framing independent of TCP segments, limits, signals.
//
//   chat_server --port 4567        # prints "chat server listening on 0.0.0.0:4567"
//   chat_client localhost 4567     # in two or more terminals (or: ncat localhost 4567)
//
// Each line a client sends goes to the others in its room as "NAME: text". Commands: /nick NAME,
// /msg NAME TEXT, /join ROOM, /rooms, /who, /help, /quit. Lines are cut at LF (or CRLF); a line
// over 4096 bytes is refused with a line starting with '!'. A client with more than 1 MiB of
// unsent lines (it stopped reading) is disconnected. Connects and disconnects are logged on
// stderr. SIGINT or SIGTERM tells the clients the server is closing, closes, and exits 0.
//
// Exit status: 0 after SIGINT or SIGTERM, 1 when the address cannot be bound, 2 on bad arguments.

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <variant>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>

#include <socket_connector/socket_connector.hpp>

#include "chat_protocol.hpp"
#include "example_support.hpp"

namespace sc = socket_connector;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);

constexpr std::string_view usage_text = R"(usage: chat_server [--bind ADDR] [--port N]

A line-based chat server. Clients connect with chat_client, ncat or telnet.

  --bind ADDR   the IPv4 or IPv6 address to listen on (default 0.0.0.0)
  --port N      the port, 0 to 65535; 0 lets the system choose (default 4567)
  --help        print this help and exit

On start it prints "chat server listening on ADDR:PORT" on stdout.
Exit status: 0 after SIGINT or SIGTERM, 1 when it cannot listen, 2 on bad arguments.
)";

constexpr std::size_t max_backlog = std::size_t{1} << 20; // unsent bytes before a client is dropped
constexpr std::size_t max_batch = 64 * 1024;              // bytes handed to one write
constexpr auto close_grace = 2s; // how long a closing client may take to receive its last lines
constexpr std::string_view default_room = "lobby";

constexpr std::string_view help_lines[] = {
    "* Commands:",
    "*   /nick NAME       choose your name (letters, digits, - _ .; at most 32)",
    "*   /msg NAME TEXT   send TEXT to NAME only",
    "*   /join ROOM       move to ROOM (everyone starts in lobby)",
    "*   /rooms           list the rooms and how many are in each",
    "*   /who             list who is in your room",
    "*   /help            this help",
    "*   /quit            leave",
    "* Any other line goes to everyone in your room; start it with // to say something "
    "starting with /.",
};

struct config {
    bool help = false;
    asio::ip::address bind = asio::ip::address_v4::any();
    std::uint16_t port = 4567;
};

/// The configuration, or why the arguments are wrong.
std::variant<config, std::string> parse_args(std::span<char* const> args) {
    config cfg;
    bool bind_seen = false;
    bool port_seen = false;
    for (std::size_t i = 0; i < args.size(); ++i) {
        std::string_view arg = args[i] ? args[i] : "";
        std::string_view name = arg.substr(0, arg.find('='));
        std::optional<std::string_view> value;
        if (auto eq = arg.find('='); eq != std::string_view::npos) value = arg.substr(eq + 1);
        if ((name == "--help" || name == "-h") && !value) {
            cfg.help = true;
            return cfg;
        }
        if (name != "--bind" && name != "--port")
            return fmt::format("unknown argument {}", example::quoted(arg));
        bool& seen = name == "--bind" ? bind_seen : port_seen;
        if (seen) return fmt::format("{} is given more than once", name);
        seen = true;
        if (!value) {
            if (i + 1 >= args.size() || !args[i + 1]) return fmt::format("{} needs a value", name);
            value = args[++i];
        }
        if (name == "--bind") {
            std::error_code ec;
            cfg.bind = asio::ip::make_address(std::string(*value), ec);
            if (ec || value->empty())
                return fmt::format("--bind needs an IPv4 or IPv6 address (got {})",
                                   example::quoted(*value));
        } else {
            std::string why;
            auto port = sc::parse_port(*value, &why);
            if (!port) return fmt::format("--port {}: {}", example::quoted(*value), why);
            cfg.port = *port;
        }
    }
    return cfg;
}

/// A name or other client input as it can be quoted back in a message line.
std::string shown(std::string_view text) {
    if (text.size() <= 40) return std::string(text);
    return std::string(text.substr(0, 40)) + "...";
}

/// One connected client. Its reader (`chat_server::session`) and writer (`chat_server::writer`)
/// coroutines share it; the server's `clients_` holds it while it is in the chat.
struct client {
    client(tcp::socket s, std::uint64_t n)
        : socket(std::move(s))
        , wake(socket.get_executor())
        , flushed(socket.get_executor())
        , deadline(socket.get_executor())
        , id(n) {}

    tcp::socket socket;
    asio::steady_timer wake;     // the writer sleeps on it; cancelled when there is work
    asio::steady_timer flushed;  // the reader waits on it for the writer to finish; cancelled then
    asio::steady_timer deadline; // closes the socket if a goodbye takes too long
    std::deque<std::string> outbox; // lines not yet written (a deque: they stay put while written)
    std::size_t backlog = 0;        // bytes in `outbox`
    std::string name;
    std::string room{default_room};
    std::uint64_t id;
    bool in_chat = false; // counted, named, in a room: it sends and receives lines
    bool closing = false; // takes no more lines; the writer flushes, then shuts down sending
    bool writer_done = false;
    bool dropped = false; // disconnected for its backlog
};

/// The chat: clients, rooms and the accept loop, all on one single-threaded io_context, so no
/// state needs a lock. Fan-out only queues lines: it never waits for a client.
class chat_server {
public:
    chat_server(asio::io_context& io, tcp::acceptor acceptor, sc::logger log)
        : io_(io)
        , acceptor_(std::move(acceptor))
        , signals_(io, SIGINT, SIGTERM)
        , log_(std::move(log)) {}

    /// Starts accepting and watching for signals; `io.run()` returns after a signal.
    void start() {
        signals_.async_wait([this](const std::error_code& ec, int) { on_signal(ec); });
        asio::co_spawn(io_, accept_loop(),
                       [this](std::exception_ptr e) { on_failure(e, "accept"); });
    }

private:
    asio::awaitable<void> accept_loop() {
        for (;;) {
            auto [ec, socket] = co_await acceptor_.async_accept(use_tuple);
            if (ec == asio::error::operation_aborted || stopping_) co_return;
            if (ec) {
                // Out of descriptors, say: wait a little rather than spin.
                log_(sc::log_level::warning, fmt::format("accept failed: {}", ec.message()));
                asio::steady_timer pause(io_, 100ms);
                co_await pause.async_wait(use_tuple);
                continue;
            }
            auto c = std::make_shared<client>(std::move(socket), next_id_++);
            asio::co_spawn(io_, session(c),
                           [this](std::exception_ptr e) { on_failure(e, "client"); });
        }
    }

    /// Reads one client's lines until it leaves, then takes it out of the chat.
    asio::awaitable<void> session(std::shared_ptr<client> c) {
        if (stopping_) co_return; // accepted just before a signal: closed with `c`
        std::error_code ec;
        auto peer = c->socket.remote_endpoint(ec);
        if (ec) co_return; // gone already
        sc::set_keep_alive(c->socket, sc::keep_alive{}, ec);
        if (ec) log_(sc::log_level::warning, fmt::format("keep-alive: {}", ec.message()));
        c->name = sc::to_string(peer);
        enter(c);
        asio::co_spawn(io_, writer(c), [this](std::exception_ptr e) { on_failure(e, "writer"); });

        chat::line_framer framer(chat::max_line);
        std::vector<char> buffer(16 * 1024);
        std::string_view why = "disconnected";
        for (;;) {
            auto [read_ec, n] = co_await c->socket.async_read_some(asio::buffer(buffer), use_tuple);
            for (auto& line : framer.feed({buffer.data(), n}))
                handle(*c, line);
            if (read_ec == asio::error::eof) {
                if (auto last = framer.finish()) handle(*c, *last);
                break;
            }
            if (read_ec) {
                if (read_ec != asio::error::operation_aborted) why = "connection lost";
                if (read_ec == asio::error::connection_reset) why = "connection reset";
                break;
            }
        }
        if (c->dropped) why = "dropped: more than 1 MiB unsent (not reading)";
        leave(*c, why);

        // Let the writer send what is queued, for a while, then close.
        if (c->socket.is_open() && !c->writer_done) {
            c->closing = true;
            c->wake.cancel();
            c->flushed.expires_after(close_grace);
            co_await c->flushed.async_wait(use_tuple);
        }
        c->deadline.cancel();
        c->wake.cancel();
        c->socket.close(ec);
    }

    /// Writes one client's queued lines, a batch at a time, until it closes.
    asio::awaitable<void> writer(std::shared_ptr<client> c) {
        std::vector<asio::const_buffer> batch;
        for (;;) {
            while (c->outbox.empty() && !c->closing && c->socket.is_open()) {
                c->wake.expires_at(asio::steady_timer::time_point::max());
                co_await c->wake.async_wait(use_tuple);
            }
            if (!c->socket.is_open()) break;
            if (c->outbox.empty()) { // closing, and everything is sent
                std::error_code ignored;
                c->socket.shutdown(tcp::socket::shutdown_send, ignored);
                break;
            }
            batch.clear();
            std::size_t bytes = 0;
            for (auto& line : c->outbox) {
                if (bytes >= max_batch) break;
                batch.push_back(asio::buffer(line));
                bytes += line.size();
            }
            auto [ec, written] = co_await asio::async_write(c->socket, batch, use_tuple);
            if (ec) {
                std::error_code ignored;
                c->socket.close(ignored); // the reader sees it and takes the client out
                break;
            }
            for (std::size_t i = 0; i < batch.size(); ++i) {
                c->backlog -= c->outbox.front().size();
                c->outbox.pop_front();
            }
        }
        c->writer_done = true;
        c->flushed.cancel();
    }

    /// Queues a line for `c`; never waits. Drops `c` if too much is waiting.
    void send(client& c, std::string_view line) {
        if (c.closing || c.dropped || !c.socket.is_open()) return;
        std::string framed;
        framed.reserve(line.size() + 1);
        framed.append(line);
        framed += '\n';
        c.backlog += framed.size();
        c.outbox.push_back(std::move(framed));
        if (c.backlog > max_backlog) {
            // It stopped reading: close it now; its reader then takes it out of the chat. (The
            // queue stays as it is: the writer may be using it until it sees the close.)
            c.dropped = true;
            std::error_code ignored;
            c.socket.close(ignored);
        }
        c.wake.cancel();
    }

    /// Queues `line` for everyone in `room` but `except`.
    void broadcast(std::string_view room, const client* except, std::string_view line) {
        for (auto& [id, other] : clients_)
            if (other.get() != except && other->room == room) send(*other, line);
    }

    client* find(std::string_view name) {
        for (auto& [id, other] : clients_)
            if (chat::same_name(other->name, name)) return other.get();
        return nullptr;
    }

    std::size_t count_in(std::string_view room) const {
        std::size_t n = 0;
        for (auto& [id, other] : clients_)
            if (other->room == room) ++n;
        return n;
    }

    void enter(const std::shared_ptr<client>& c) {
        auto others = clients_.size();
        clients_.emplace(c->id, c);
        c->in_chat = true;
        log_(sc::log_level::info,
             fmt::format("{} connected ({} clients)", c->name, clients_.size()));
        send(*c, fmt::format("* Welcome, {}! There are {} other clients. You are in room {}; type "
                             "/help for the commands.",
                             c->name, others, c->room));
        broadcast(c->room, c.get(), fmt::format("* {} joined", c->name));
    }

    void leave(client& c, std::string_view why) {
        if (!c.in_chat) return;
        c.in_chat = false;
        clients_.erase(c.id);
        log_(sc::log_level::info, fmt::format("{} {} ({} clients)", c.name, why, clients_.size()));
        if (!stopping_) broadcast(c.room, &c, fmt::format("* {} left", c.name));
    }

    /// Stops taking lines from `c`, lets its writer flush and shut down, and closes it if that
    /// takes longer than `close_grace`.
    void begin_close(const std::shared_ptr<client>& c) {
        c->closing = true;
        c->wake.cancel();
        c->deadline.expires_after(close_grace);
        c->deadline.async_wait([c](const std::error_code& ec) {
            std::error_code ignored;
            if (!ec) c->socket.close(ignored);
        });
    }

    void handle(client& c, const chat::framed_line& line) {
        if (!c.in_chat || c.dropped) return; // after /quit or a drop, the rest is ignored
        if (line.too_long) {
            send(c, fmt::format("! line too long: over {} bytes; it was dropped", chat::max_line));
            return;
        }
        auto text = chat::clean_text(line.text);
        auto cmd = chat::parse_command(text);
        switch (cmd.kind) {
        case chat::command_kind::empty:
            return;
        case chat::command_kind::say:
            broadcast(c.room, &c, fmt::format("{}: {}", c.name, cmd.text));
            return;
        case chat::command_kind::nick:
            return rename(c, cmd.name);
        case chat::command_kind::msg: {
            auto* to = find(cmd.name);
            if (!to) return send(c, fmt::format("! no one is called {}", shown(cmd.name)));
            return send(*to, fmt::format("[private] {}: {}", c.name, cmd.text));
        }
        case chat::command_kind::join:
            return join(c, cmd.name);
        case chat::command_kind::rooms:
            return list_rooms(c);
        case chat::command_kind::who:
            return list_room(c);
        case chat::command_kind::help:
            for (auto help : help_lines)
                send(c, help);
            return;
        case chat::command_kind::quit: {
            auto self = clients_.at(c.id); // keeps its owner while it leaves `clients_`
            send(c, "* Bye!");
            leave(c, "quit");
            begin_close(self);
            return;
        }
        case chat::command_kind::usage_error:
            return send(c, fmt::format("! usage: {}", cmd.text));
        case chat::command_kind::unknown:
            return send(c, fmt::format("! unknown command /{}; type /help for the commands",
                                       shown(cmd.name)));
        }
    }

    void rename(client& c, std::string_view name) {
        if (auto why = chat::name_error(name))
            return send(c, fmt::format("! invalid name {}: {}", shown(name), *why));
        auto* holder = find(name);
        if (holder && holder != &c) return send(c, fmt::format("! the name {} is taken", name));
        if (c.name == name) return send(c, fmt::format("* you are already {}", name));
        auto old = std::exchange(c.name, std::string(name));
        log_(sc::log_level::info, fmt::format("{} is now {}", old, c.name));
        send(c, fmt::format("* you are now {}", c.name));
        broadcast(c.room, &c, fmt::format("* {} is now {}", old, c.name));
    }

    void join(client& c, std::string_view room) {
        if (auto why = chat::name_error(room))
            return send(c, fmt::format("! invalid room {}: {}", shown(room), *why));
        if (c.room == room) return send(c, fmt::format("* you are already in {}", room));
        broadcast(c.room, &c, fmt::format("* {} left", c.name));
        c.room = room;
        send(c, fmt::format("* you are now in {}, with {} others", room, count_in(room) - 1));
        broadcast(c.room, &c, fmt::format("* {} joined", c.name));
    }

    void list_rooms(client& c) {
        std::map<std::string_view, std::size_t> rooms;
        for (auto& [id, other] : clients_)
            ++rooms[other->room];
        std::vector<std::string> parts;
        for (auto& [room, n] : rooms)
            parts.push_back(fmt::format("{} ({})", room, n));
        send(c, fmt::format("* rooms: {}", fmt::join(parts, ", ")));
    }

    void list_room(client& c) {
        std::vector<std::string> names;
        for (auto& [id, other] : clients_)
            if (other->room == c.room)
                names.push_back(other.get() == &c ? other->name + " (you)" : other->name);
        send(c, fmt::format("* in {}: {}", c.room, fmt::join(names, ", ")));
    }

    void on_signal(const std::error_code& ec) {
        if (ec) return;
        stopping_ = true;
        std::error_code ignored;
        signals_.clear(ignored); // a second signal ends the process the default way
        acceptor_.close(ignored);
        log_(sc::log_level::info, fmt::format("closing ({} clients)", clients_.size()));
        for (auto& [id, c] : clients_) {
            send(*c, "* the server is closing");
            begin_close(c);
        }
    }

    void on_failure(std::exception_ptr e, std::string_view what) {
        if (!e) return;
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& ex) {
            log_(sc::log_level::error, fmt::format("{}: {}", what, ex.what()));
        } catch (...) {
            log_(sc::log_level::error, fmt::format("{}: unknown error", what));
        }
    }

    asio::io_context& io_;
    tcp::acceptor acceptor_;
    asio::signal_set signals_;
    sc::logger log_;
    std::map<std::uint64_t, std::shared_ptr<client>> clients_; // in order of arrival
    std::uint64_t next_id_ = 1;
    bool stopping_ = false;
};

/// Binds and listens; the acceptor, or (with `why` set) nothing.
std::optional<tcp::acceptor> listen(asio::io_context& io, const tcp::endpoint& at,
                                    std::string& why) {
    tcp::acceptor acceptor(io);
    std::error_code ec;
    acceptor.open(at.protocol(), ec);
    if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor.bind(at, ec);
    if (!ec) acceptor.listen(tcp::acceptor::max_listen_connections, ec);
    if (ec) {
        why = fmt::format("cannot listen on {}: {}", sc::to_string(at), ec.message());
        return std::nullopt;
    }
    return acceptor;
}

int serve(const config& cfg) {
    asio::io_context io(1);
    std::string why;
    auto acceptor = listen(io, tcp::endpoint(cfg.bind, cfg.port), why);
    if (!acceptor) {
        std::fprintf(stderr, "chat_server: %s\n", why.c_str());
        return 1;
    }
    example::print_line(
        fmt::format("chat server listening on {}\n", sc::to_string(acceptor->local_endpoint())));
    // Held by pointer: its handlers keep its address.
    auto server = std::make_unique<chat_server>(io, std::move(*acceptor), sc::stderr_logger());
    server->start();
    io.run();
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    return example::main_of("chat_server", usage_text, argc, argv, parse_args, serve);
}
