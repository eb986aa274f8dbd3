#pragma once

#include <cstddef>
#include <memory>
#include <vector>

namespace socket_connector::detail {

/// The size of one relay buffer: one read's worth of bytes in flight per direction.
inline constexpr std::size_t relay_buffer_size = 64 * 1024;

/// A relay buffer borrowed from the current thread's pool; it goes back to the pool of whichever
/// thread releases it. Each pool keeps at most `max_cached` spare buffers, so idle directions
/// hold no buffer and the spare memory per thread is bounded.
class pooled_buffer {
public:
    static constexpr std::size_t max_cached = 16;

    pooled_buffer()
        : data_(take()) {}
    pooled_buffer(const pooled_buffer&) = delete;
    pooled_buffer& operator=(const pooled_buffer&) = delete;
    ~pooled_buffer() { give_back(std::move(data_)); }

    char* data() noexcept { return data_.get(); }
    static constexpr std::size_t size() noexcept { return relay_buffer_size; }

private:
    using storage = std::unique_ptr<char[]>;

    static std::vector<storage>& cache() {
        thread_local std::vector<storage> spare;
        return spare;
    }
    static storage take() {
        auto& spare = cache();
        if (spare.empty()) return storage(new char[relay_buffer_size]);
        storage s = std::move(spare.back());
        spare.pop_back();
        return s;
    }
    static void give_back(storage s) {
        auto& spare = cache();
        if (s && spare.size() < max_cached) spare.push_back(std::move(s));
    }

    storage data_;
};

} // namespace socket_connector::detail
