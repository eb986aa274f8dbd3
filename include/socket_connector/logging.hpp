#pragma once

#include <chrono>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string_view>

#include <fmt/chrono.h>
#include <fmt/format.h>

namespace socket_connector {

/// How important a log line is; `traffic` lines carry relayed bytes (only with `log_traffic`).
enum class log_level { debug, info, warning, error, traffic };

/// The name of a level as it appears in the default logger's lines.
inline std::string_view to_string(log_level level) {
    switch (level) {
    case log_level::debug:
        return "debug";
    case log_level::info:
        return "info";
    case log_level::warning:
        return "warning";
    case log_level::error:
        return "error";
    case log_level::traffic:
        return "traffic";
    }
    return "?";
}

/// Receives every `verbose` event, warning, error and traffic line a connector produces.
///
/// May be called from any thread running the connector's executor; calls may run concurrently
/// when the executor is multi-threaded, so a logger that keeps state must synchronise it.
using logger = std::function<void(log_level, std::string_view)>;

/// The default logger: one line per call on stderr, `2026-11-22T18:06:41.123Z [info] message`.
inline logger stderr_logger() {
    return [](log_level level, std::string_view message) {
        static std::mutex mutex; // keep lines from several threads whole
        auto now = std::chrono::system_clock::now();
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch());
        auto line = fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03}Z [{}] {}\n",
                                fmt::gmtime(std::chrono::system_clock::to_time_t(now)),
                                ms.count() % 1000, to_string(level), message);
        std::lock_guard lock(mutex);
        std::fwrite(line.data(), 1, line.size(), stderr);
        std::fflush(stderr);
    };
}

} // namespace socket_connector
