#pragma once

// A child process for end-to-end tests: started with fork/exec, its stdout and stderr captured by
// two reader threads, optionally fed a file on stdin, and killed if the test forgets it.

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

namespace test_support {

class child_process {
public:
    /// Starts `args[0]` (a path, or a name looked up in PATH) with `args`; stdin comes from
    /// `stdin_path` (or /dev/null).
    explicit child_process(std::vector<std::string> args, std::string stdin_path = "/dev/null") {
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
            int in = ::open(stdin_path.c_str(), O_RDONLY);
            if (in >= 0) ::dup2(in, 0);
            ::dup2(out[1], 1);
            ::dup2(err[1], 2);
            ::execvp(argv[0], argv.data());
            static const char failed[] = "exec failed\n";
            [[maybe_unused]] auto ignored = ::write(2, failed, sizeof failed - 1);
            ::_exit(127);
        }
        ::close(out[1]);
        ::close(err[1]);
        out_reader_ = std::thread([this, fd = out[0]] { drain(fd, out_); });
        err_reader_ = std::thread([this, fd = err[0]] { drain(fd, err_); });
    }

    child_process(const child_process&) = delete;
    child_process& operator=(const child_process&) = delete;

    ~child_process() {
        if (!status_) {
            ::kill(pid_, SIGKILL);
            int status = 0;
            ::waitpid(pid_, &status, 0);
        }
        join_readers();
    }

    void signal(int sig) const { ::kill(pid_, sig); }

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

    /// The port in the first stdout line `SIDE listening on HOST:PORT`, or 0 if none yet.
    unsigned short listening_port(char side) {
        std::smatch m;
        std::string text = out();
        std::regex line(std::string(1, side) + R"( listening on .*:(\d+)\n)");
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

    pid_t pid_ = -1;
    std::optional<int> status_;
    std::mutex mutex_;
    std::string out_;
    std::string err_;
    std::thread out_reader_;
    std::thread err_reader_;
};

} // namespace test_support
