// chat_client: a terminal client for chat_server. It shows reading stdin asynchronously next to
// a socket (a posix::stream_descriptor for a pipe or a terminal, a thread for a regular file) and
// ending both directions cleanly.
//
//   chat_server --port 4567 &
//   chat_client localhost 4567                  # type lines; /help lists the commands
//   printf '/nick bot\nhello\n' | chat_client   # or send a script
//
// Each stdin line is sent as it is typed; each line from the server is printed on stdout as it
// arrives. When stdin ends, what was read is sent (a last line without LF gets one), the send
// side is shut down, and the client waits up to 5 s for the server to close the connection
// (chat_server does once it has sent the last lines), printing what still arrives.
//
// Exit status: 0 when the server closes the connection (or stdin ended and 5 s passed), 1 when it
// cannot connect ("Unable to connect: REASON") or the connection is lost, 2 on bad arguments.

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <variant>

#include <asio/co_spawn.hpp>
#include <asio/connect.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>

#include <socket_connector/socket_connector.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "example_support.hpp"

namespace sc = socket_connector;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);

constexpr std::string_view usage_text = R"(usage: chat_client [HOST] [PORT]

Connects to a chat_server (default localhost 4567), sends each line read from stdin and prints
each line from the server. When stdin ends, it waits up to 5 s for the server to close.

Exit status: 0 when the server closes the connection, 1 when it cannot connect or the
connection is lost, 2 on bad arguments.
)";

constexpr auto close_wait = 5s; // after stdin ends: how long to wait for the server to close

struct config {
    bool help = false;
    std::string host = "localhost";
    std::string port = "4567";
};

std::variant<config, std::string> parse_args(std::span<char* const> args) {
    config cfg;
    std::size_t positional = 0;
    for (auto* raw : args) {
        std::string_view arg = raw ? raw : "";
        if (arg == "--help" || arg == "-h") {
            cfg.help = true;
            return cfg;
        }
        if (arg.starts_with("-")) return fmt::format("unknown option {}", arg.substr(0, 60));
        if (positional == 2) return fmt::format("unexpected argument {}", arg.substr(0, 60));
        if (positional++ == 0) {
            if (arg.empty()) return "HOST cannot be empty";
            cfg.host = arg;
        } else {
            std::string why;
            auto port = sc::parse_port(arg, &why);
            if (!port) return fmt::format("PORT: {}", why);
            if (*port == 0) return "PORT: port 0 cannot be connected to";
            cfg.port = arg;
        }
    }
    return cfg;
}

class stdin_source;

/// What the stdin thread shares with the client: the client's address while it exists. Holds
/// nothing tied to the io_context, so the thread may outlive both.
struct thread_link {
    std::mutex mutex;
    asio::io_context* io = nullptr;
    stdin_source* owner = nullptr; // cleared (under `mutex`) when the client goes away
};

void read_stdin_on_thread(std::shared_ptr<thread_link> link);

/// Standard input, read without blocking the io_context: through a stream_descriptor when epoll
/// can watch fd 0 (a pipe, a socket, a terminal), otherwise (a regular file, a closed stdin) on a
/// thread that hands chunks over.
class stdin_source {
public:
    explicit stdin_source(asio::io_context& io)
        : io_(io)
        , descriptor_(io)
        , wake_(io) {
        // epoll watches pipes, sockets and terminals. Asio would also accept a regular file
        // (reading it without the reactor), but that is its private detail: use the thread.
        struct stat st {};
        bool watchable = ::fstat(0, &st) == 0 &&
                         (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || S_ISCHR(st.st_mode));
        std::error_code ec;
        int fd = watchable ? ::dup(0) : -1; // the descriptor closes its own copy
        if (fd >= 0) {
            // Asio makes it non-blocking, which a terminal shares with the shell: restored at
            // the end.
            saved_flags_ = ::fcntl(0, F_GETFL);
            descriptor_.assign(fd, ec);
        }
        if (fd < 0 || ec) {
            if (fd >= 0 && !descriptor_.is_open()) ::close(fd);
            start_thread();
        }
    }

    stdin_source(const stdin_source&) = delete;
    stdin_source& operator=(const stdin_source&) = delete;

    ~stdin_source() {
        if (saved_flags_ != -1) ::fcntl(0, F_SETFL, saved_flags_);
        if (!link_) return;
        {
            std::lock_guard lock(link_->mutex);
            link_->owner = nullptr;
        }
        // It may be blocked in read() on a terminal: let it go; the process exit ends it.
        reader_.detach();
    }

    /// The next chunk of input; empty at its end.
    asio::awaitable<std::string> next() {
        if (!link_) {
            std::string chunk(4096, '\0');
            auto [ec, n] = co_await descriptor_.async_read_some(asio::buffer(chunk), use_tuple);
            if (ec == asio::error::operation_not_supported) {
                // Asio lets epoll-less descriptors (regular files) read without the reactor; if
                // one would block, go on with a thread from here.
                std::error_code ignored;
                descriptor_.close(ignored);
                start_thread();
            } else {
                if (ec == asio::error::operation_aborted) throw std::system_error(ec);
                chunk.resize(ec ? 0 : n); // end of input or an error: the input is over
                co_return chunk;
            }
        }
        while (chunks_.empty() && !ended_) {
            wake_.expires_at(asio::steady_timer::time_point::max());
            auto [ec] = co_await wake_.async_wait(use_tuple);
            if (ec && chunks_.empty() && !ended_)
                throw std::system_error(ec); // cancelled from outside: the server closed
        }
        if (chunks_.empty()) co_return std::string();
        auto chunk = std::move(chunks_.front());
        chunks_.pop_front();
        co_return chunk;
    }

    /// From the thread, on the io_context: a chunk, or empty at the end of input.
    void deliver(std::string chunk) {
        if (chunk.empty())
            ended_ = true;
        else
            chunks_.push_back(std::move(chunk));
        wake_.cancel();
    }

private:
    void start_thread() {
        link_ = std::make_shared<thread_link>();
        link_->io = &io_;
        link_->owner = this;
        reader_ = std::thread(read_stdin_on_thread, link_);
    }

    asio::io_context& io_;
    asio::posix::stream_descriptor descriptor_;
    asio::steady_timer wake_; // next() sleeps on it; cancelled when a chunk or the end arrives
    std::deque<std::string> chunks_;
    bool ended_ = false;
    std::shared_ptr<thread_link> link_;
    std::thread reader_;
    int saved_flags_ = -1;
};

void read_stdin_on_thread(std::shared_ptr<thread_link> link) {
    char buffer[4096];
    for (;;) {
        auto n = ::read(0, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        std::string chunk =
            n > 0 ? std::string(buffer, static_cast<std::size_t>(n)) : std::string();
        {
            std::lock_guard lock(link->mutex);
            if (!link->owner) return;
            // `owner` is read again on the io_context's thread, which is the one that clears it.
            asio::post(*link->io, [link, chunk = std::move(chunk)]() mutable {
                if (link->owner) link->owner->deliver(std::move(chunk));
            });
        }
        if (n <= 0) return;
    }
}

/// Prints what the server sends until it closes; true for a clean close, false for a lost one.
asio::awaitable<bool> receive(tcp::socket& socket) {
    std::string buffer(16 * 1024, '\0');
    for (;;) {
        auto [ec, n] = co_await socket.async_read_some(asio::buffer(buffer), use_tuple);
        example::print_line(std::string_view(buffer.data(), n));
        if (ec == asio::error::eof) co_return true;
        if (ec) {
            std::fprintf(stderr, "chat_client: connection lost: %s\n", ec.message().c_str());
            co_return false;
        }
    }
}

/// Sends stdin until it ends, shuts down the send side, then waits (bounded) for `receive` to
/// see the server close.
asio::awaitable<void> send_input(tcp::socket& socket, stdin_source& input) {
    char last = '\n';
    for (;;) {
        auto chunk = co_await input.next();
        if (chunk.empty()) break;
        auto [ec, n] = co_await asio::async_write(socket, asio::buffer(chunk), use_tuple);
        if (ec) break; // the server went away: `receive` reports it
        last = chunk.back();
    }
    std::error_code ignored;
    if (last != '\n' && socket.is_open()) {
        std::string lf = "\n"; // a last line without LF is still a line
        co_await asio::async_write(socket, asio::buffer(lf), use_tuple);
    }
    socket.shutdown(tcp::socket::shutdown_send, ignored);
    asio::steady_timer timer(co_await asio::this_coro::executor, close_wait);
    co_await timer.async_wait(use_tuple);
}

/// Connects, then chats until the server closes or stdin ends; the exit status.
asio::awaitable<int> chat(config cfg, stdin_source& input) {
    auto ex = co_await asio::this_coro::executor;
    tcp::resolver resolver(ex);
    auto [resolve_ec, endpoints] = co_await resolver.async_resolve(cfg.host, cfg.port, use_tuple);
    if (resolve_ec) {
        std::fprintf(stderr, "Unable to connect: %s\n", resolve_ec.message().c_str());
        co_return 1;
    }
    tcp::socket socket(ex);
    auto [connect_ec, endpoint] = co_await asio::async_connect(socket, endpoints, use_tuple);
    if (connect_ec) {
        std::fprintf(stderr, "Unable to connect: %s\n", connect_ec.message().c_str());
        co_return 1;
    }
    std::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    auto outcome = co_await (receive(socket) || send_input(socket, input));
    if (outcome.index() == 0 && !std::get<0>(outcome)) co_return 1;
    co_return 0; // the server closed, or stdin ended and the wait is over
}

int run(const config& cfg) {
    // A closed stdin reads as empty. (Left closed, descriptor 0 would go to the io_context's
    // own eventfd, and reading it would steal its wake-ups.)
    if (::fcntl(0, F_GETFD) == -1 && errno == EBADF) ::open("/dev/null", O_RDONLY);
    asio::io_context io(1);
    auto input = std::make_unique<stdin_source>(io); // held by pointer: a thread may use it
    int status = 1;
    asio::co_spawn(io, chat(cfg, *input), [&](std::exception_ptr e, int code) {
        if (!e) {
            status = code;
            return;
        }
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& ex) {
            std::fprintf(stderr, "chat_client: %s\n", ex.what());
        }
    });
    io.run();
    return status;
}

} // namespace

int main(int argc, char** argv) {
    return example::main_of("chat_client", usage_text, argc, argv, parse_args, run);
}
