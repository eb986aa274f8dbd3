#pragma once

// A child process for end-to-end tests: started with fork/exec, its stdout and stderr captured by
// two reader threads, optionally fed a file on stdin, and killed if the test forgets it. Also: what
// /proc says about a process (CPU time, resident memory, open descriptors) and raising this
// process's descriptor limit.

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

namespace test_support {

/// What is set up in a child between fork and exec.
struct child_limits {
    /// RLIMIT_NOFILE (soft and hard) of the child; 0: inherited. Raising it past this process's
    /// hard limit needs privileges: raise this process's first (`raise_fd_limit`).
    rlim_t max_fds = 0;
    /// Close every descriptor above stderr that the child would inherit (Asio's sockets are not
    /// close-on-exec), so `max_fds` counts the child's own descriptors only.
    bool close_inherited = false;
    /// Start the child in a process group of its own (so `signal_group` reaches it and what it
    /// starts, as a supervisor or coreutils `timeout` signals a group, and nothing else).
    bool new_process_group = false;
};

class child_process {
public:
    /// Starts `args[0]` (a path, or a name looked up in PATH) with `args`; stdin comes from
    /// `stdin_path` (or /dev/null); `limits` are applied before exec.
    explicit child_process(std::vector<std::string> args, std::string stdin_path = "/dev/null",
                           child_limits limits = {})
        : limits_(limits) {
        int out[2];
        int err[2];
        if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0)
            throw std::runtime_error("pipe failed");
        // Everything the child needs is prepared before fork: only async-signal-safe calls after.
        std::vector<char*> argv;
        for (auto& a : args)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        pid_ = ::fork();
        if (pid_ < 0) throw std::runtime_error("fork failed");
        if (pid_ == 0) {
            if (limits.new_process_group) ::setpgid(0, 0);
            int in = ::open(stdin_path.c_str(), O_RDONLY);
            if (in >= 0) ::dup2(in, 0);
            ::dup2(out[1], 1);
            ::dup2(err[1], 2);
            if (limits.close_inherited) ::close_range(3, ~0u, 0);
            if (limits.max_fds != 0) {
                struct rlimit limit {
                    limits.max_fds, limits.max_fds
                };
                if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) {
                    static const char refused[] = "setrlimit(RLIMIT_NOFILE) failed\n";
                    [[maybe_unused]] auto ignored = ::write(2, refused, sizeof refused - 1);
                    ::_exit(127);
                }
            }
            ::execvp(argv[0], argv.data());
            static const char failed[] = "exec failed\n";
            [[maybe_unused]] auto ignored = ::write(2, failed, sizeof failed - 1);
            ::_exit(127);
        }
        // Also here, so that the group exists before this returns (either call may come first).
        if (limits.new_process_group) ::setpgid(pid_, pid_);
        ::close(out[1]);
        ::close(err[1]);
        out_reader_ = std::thread([this, fd = out[0]] { drain(fd, out_); });
        err_reader_ = std::thread([this, fd = err[0]] { drain(fd, err_); });
    }

    child_process(const child_process&) = delete;
    child_process& operator=(const child_process&) = delete;

    ~child_process() {
        if (!status_) {
            ::kill(limits_.new_process_group ? -pid_ : pid_, SIGKILL);
            int status = 0;
            ::waitpid(pid_, &status, 0);
        }
        join_readers();
    }

    void signal(int sig) const { ::kill(pid_, sig); }
    /// Signals the child's whole process group (started with `new_process_group` only).
    void signal_group(int sig) const {
        if (limits_.new_process_group) ::kill(-pid_, sig);
    }

    pid_t pid() const noexcept { return pid_; }

    /// The exit code once the child has exited (128 + signal if killed); nothing while it runs.
    std::optional<int> exit_code() {
        if (!status_) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                join_readers(); // all it wrote is captured once it has exited
            }
        }
        return status_;
    }

    std::string out() {
        std::lock_guard lock(mutex_);
        return out_;
    }
    std::string err() {
        std::lock_guard lock(mutex_);
        return err_;
    }

    /// The port in the first stdout line `SIDE listening on HOST:PORT` (with `side` 0: the line
    /// `listening on HOST:PORT` of a rendezvous on one port), or 0 if none yet.
    unsigned short listening_port(char side) {
        std::smatch m;
        std::string text = out();
        std::regex line(side ? std::string(1, side) + R"( listening on .*:(\d+)\n)"
                             : std::string(R"((?:^|\n)listening on .*:(\d+)\n)"));
        if (!std::regex_search(text, m, line)) return 0;
        return static_cast<unsigned short>(std::stoi(m[1].str()));
    }

private:
    void join_readers() {
        if (out_reader_.joinable()) out_reader_.join();
        if (err_reader_.joinable()) err_reader_.join();
    }

    void drain(int fd, std::string& into) {
        char buf[4096];
        for (;;) {
            auto n = ::read(fd, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            std::lock_guard lock(mutex_);
            into.append(buf, static_cast<std::size_t>(n));
        }
        ::close(fd);
    }

    child_limits limits_;
    pid_t pid_ = -1;
    std::optional<int> status_;
    std::mutex mutex_;
    std::string out_;
    std::string err_;
    std::thread out_reader_;
    std::thread err_reader_;
};

/// The /proc directory of process `pid`, or of this process when `pid` is 0.
inline std::filesystem::path proc_dir(pid_t pid = 0) {
    return pid == 0 ? std::filesystem::path("/proc/self")
                    : std::filesystem::path("/proc") / std::to_string(pid);
}

/// User plus system CPU time the process has used, in clock ticks (`sysconf(_SC_CLK_TCK)` a
/// second); -1 if it cannot be read.
inline long cpu_ticks(pid_t pid = 0) {
    std::ifstream in(proc_dir(pid) / "stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto paren = stat.rfind(')'); // the command name may contain spaces and parentheses
    if (paren == std::string::npos) return -1;
    std::vector<std::string> fields; // from field 3 (state) on
    std::string field;
    for (char c : stat.substr(paren + 1)) {
        if (c == ' ' || c == '\n') {
            if (!field.empty()) fields.push_back(std::move(field));
            field.clear();
        } else {
            field += c;
        }
    }
    if (fields.size() < 13) return -1;
    return std::stol(fields[11]) + std::stol(fields[12]); // utime (14) + stime (15)
}

/// The process's resident set size in KiB (VmRSS), or -1 if it cannot be read.
inline long rss_kib(pid_t pid = 0) {
    std::ifstream in(proc_dir(pid) / "status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    return -1;
}

/// How many descriptors the process has open (entries of /proc/PID/fd).
inline std::size_t fd_count(pid_t pid = 0) {
    std::error_code ec;
    std::size_t n = 0;
    for (std::filesystem::directory_iterator it(proc_dir(pid) / "fd", ec), end; !ec && it != end;
         it.increment(ec))
        ++n;
    return pid == 0 && n > 0 ? n - 1 : n; // not the descriptor that lists the directory
}

/// Raises this process's RLIMIT_NOFILE to at least `want` if it can (the hard limit too, which
/// needs privileges); returns the soft limit in force afterwards.
inline rlim_t raise_fd_limit(rlim_t want) {
    struct rlimit limit {};
    ::getrlimit(RLIMIT_NOFILE, &limit);
    if (limit.rlim_cur >= want) return limit.rlim_cur;
    struct rlimit wanted {
        want, std::max(want, limit.rlim_max)
    };
    if (::setrlimit(RLIMIT_NOFILE, &wanted) != 0) {
        limit.rlim_cur = limit.rlim_max; // unprivileged: as far as the hard limit allows
        ::setrlimit(RLIMIT_NOFILE, &limit);
    }
    ::getrlimit(RLIMIT_NOFILE, &limit);
    return limit.rlim_cur;
}

} // namespace test_support
