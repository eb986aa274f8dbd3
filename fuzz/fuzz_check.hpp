#pragma once

// What the fuzz targets share: a check that stays on in every build type and aborts (which
// libFuzzer reports as a crash, keeping the input), and the input as bytes.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

/// Aborts with the condition and its place when `condition` is false.
#define FUZZ_CHECK(condition)                                                                      \
    do {                                                                                           \
        if (!(condition)) {                                                                        \
            std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, __LINE__,             \
                         #condition);                                                              \
            std::abort();                                                                          \
        }                                                                                          \
    } while (false)

namespace fuzz {

/// The fuzzer's input as the bytes it is.
inline std::string_view as_text(const std::uint8_t* data, std::size_t size) noexcept {
    return {reinterpret_cast<const char*>(data), size};
}

/// A small deterministic generator (xorshift32): how an input is cut into pieces follows from
/// one of its bytes, so the fuzzer can vary the cuts and every crash replays exactly.
class cuts {
public:
    explicit cuts(std::uint8_t seed) noexcept
        : state_(0x9e3779b9u ^ (static_cast<std::uint32_t>(seed) * 0x85ebca6bu)) {}

    /// The next piece size, 1 to `max`, small sizes more often than large ones.
    std::size_t next(std::size_t max) noexcept {
        state_ ^= state_ << 13;
        state_ ^= state_ >> 17;
        state_ ^= state_ << 5;
        if (max <= 1) return 1;
        std::size_t limit = (state_ & 3u) == 0 ? max : std::min<std::size_t>(max, 16);
        return 1 + (state_ >> 2) % limit;
    }

private:
    std::uint32_t state_;
};

} // namespace fuzz
