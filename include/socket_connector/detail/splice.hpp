#pragma once

// Linux zero-copy relaying: bytes move socket -> pipe -> socket with splice(2) and never enter
// user space. Used for a direction with no transformer and no traffic log.

#if defined(__linux__)

#include <array>
#include <cerrno>
#include <cstddef>
#include <vector>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

namespace socket_connector::detail {

/// A pipe borrowed from the current thread's pool while bytes are in it. A direction holds one
/// only between reading a chunk and writing it out, so idle directions hold none. It goes back
/// to the pool only when empty; a pipe left with bytes in it (the pair failed) is closed.
class pooled_pipe {
public:
    static constexpr std::size_t max_cached = 16;

    pooled_pipe() {
        auto& spare = cache().pipes;
        if (!spare.empty()) {
            fds_ = spare.back();
            spare.pop_back();
        } else if (::pipe2(fds_.data(), O_NONBLOCK | O_CLOEXEC) != 0) {
            fds_ = {-1, -1};
        }
    }
    pooled_pipe(const pooled_pipe&) = delete;
    pooled_pipe& operator=(const pooled_pipe&) = delete;
    ~pooled_pipe() {
        if (!valid()) return;
        auto& spare = cache().pipes;
        if (empty_ && spare.size() < max_cached) {
            spare.push_back(fds_);
        } else {
            close_pair(fds_);
        }
    }

    /// False if no pipe could be made (out of descriptors).
    bool valid() const noexcept { return fds_[0] >= 0; }
    int read_end() const noexcept { return fds_[0]; }
    int write_end() const noexcept { return fds_[1]; }
    /// Whether the pipe holds no bytes; only empty pipes are reused.
    void set_empty(bool empty) noexcept { empty_ = empty; }

private:
    using fd_pair = std::array<int, 2>;
    static void close_pair(const fd_pair& p) {
        ::close(p[0]);
        ::close(p[1]);
    }
    struct spare_pipes {
        std::vector<fd_pair> pipes;
        ~spare_pipes() {
            for (auto& p : pipes)
                close_pair(p);
        }
    };
    static spare_pipes& cache() {
        thread_local spare_pipes spare;
        return spare;
    }

    fd_pair fds_{-1, -1};
    bool empty_ = true;
};

/// How much one splice moves at most: the default pipe capacity.
inline constexpr std::size_t splice_chunk = 64 * 1024;

/// splice(2) into a socket has no MSG_NOSIGNAL: writing to a peer that has gone raises
/// SIGPIPE, which kills a process that has not ignored it. So a thread that splices blocks
/// SIGPIPE for itself (once), and `consume_sigpipe` takes the pending signal after an EPIPE.
inline void block_sigpipe_on_this_thread() noexcept {
    thread_local bool blocked = false;
    if (blocked) return;
    blocked = true;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

inline void consume_sigpipe() noexcept {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    timespec zero{};
    while (sigtimedwait(&set, nullptr, &zero) == SIGPIPE) {
    }
}

} // namespace socket_connector::detail

#endif // __linux__
