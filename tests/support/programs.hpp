#pragma once

// Helpers for end-to-end tests that start the project's programs (the `socket-connector`
// command, the example programs) and talk to them over loopback.

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "support/net.hpp"
#include "support/process.hpp"

#ifndef SOCKET_CONNECTOR_CLI
#error "SOCKET_CONNECTOR_CLI must name the socket-connector binary (the examples sit beside it)"
#endif

namespace test_support {

/// Writes `content` to a file in the temporary folder named for `name` and this process; its
/// path. The caller removes it.
inline std::string temp_file(const std::string& name, const std::string& content) {
    auto path = std::filesystem::temp_directory_path() /
                fmt::format("sc-{}-{}", static_cast<long>(::getpid()), name);
    std::ofstream(path, std::ios::binary) << content;
    return path.string();
}

/// The path of one of the project's programs: they are all built beside `socket-connector`.
inline std::string program_path(const std::string& name) {
    return (std::filesystem::path(SOCKET_CONNECTOR_CLI).parent_path() / name).string();
}

/// Starts program `name` with `args` (and `limits`). Held by pointer: its reader threads keep its
/// address, and g++ 12 may move objects that live in a coroutine frame.
inline std::unique_ptr<child_process>
start_program(const std::string& name, std::vector<std::string> args, child_limits limits = {}) {
    auto path = program_path(name);
    INFO("build the program first: " << path);
    REQUIRE(std::filesystem::exists(path));
    args.insert(args.begin(), path);
    return std::make_unique<child_process>(std::move(args), "/dev/null", limits);
}

/// Waits for the program's `SIDE listening on …` line and returns the port.
inline asio::awaitable<unsigned short> port_of(child_process& process, char side) {
    bool listening = co_await eventually([&] { return process.listening_port(side) != 0; });
    INFO("stdout: " << process.out() << "\nstderr: " << process.err());
    REQUIRE(listening);
    co_return process.listening_port(side);
}

/// Waits (bounded) for the program to exit and returns its exit code.
inline asio::awaitable<int> exit_of(child_process& process,
                                    std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    bool exited = co_await eventually([&] { return process.exit_code().has_value(); }, limit);
    INFO("stdout: " << process.out() << "\nstderr: " << process.err());
    REQUIRE(exited);
    co_return *process.exit_code();
}

/// Starts the `socket-connector` command with `args` (and `limits`).
inline std::unique_ptr<child_process> start_cli(std::vector<std::string> args,
                                                child_limits limits = {}) {
    return start_program("socket-connector", std::move(args), limits);
}

/// The port the program listens on for `side`; fails at once (with its stderr) if it exited.
inline asio::awaitable<unsigned short> started_port(child_process& p, char side) {
    bool ready = co_await eventually(
        [&] { return p.listening_port(side) != 0 || p.exit_code().has_value(); });
    INFO("stdout: " << p.out() << "\nstderr: " << p.err());
    REQUIRE(ready);
    REQUIRE(!p.exit_code().has_value());
    co_return p.listening_port(side);
}

/// Waits for a server-to-server command's two listening lines, then forms a pair through it
/// (`form_pair`: a byte each way).
inline asio::awaitable<void> form_pair_through(child_process& p, tcp::socket& a, tcp::socket& b) {
    auto port_a = co_await started_port(p, 'A');
    auto port_b = co_await started_port(p, 'B');
    co_await form_pair(port_a, port_b, a, b);
}

/// The first line of `out` that starts with '{' (the --stats JSON), or "".
inline std::string stats_line(const std::string& out) {
    auto start = out.find('{');
    if (start == std::string::npos) return "";
    auto end = out.find('\n', start);
    return end == std::string::npos ? out.substr(start) : out.substr(start, end - start + 1);
}

/// The number after `"name":` in a stats JSON line, or -1.
inline long long stats_field(const std::string& json, const std::string& name) {
    auto key = "\"" + name + "\":";
    auto at = json.find(key);
    if (at == std::string::npos) return -1;
    return std::stoll(json.substr(at + key.size()));
}

} // namespace test_support
