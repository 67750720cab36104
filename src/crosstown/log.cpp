#include "crosstown/log.hpp"

#include <fmt/chrono.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>

namespace crosstown::log {
namespace {

std::atomic<Level> min_level{Level::info};
std::mutex sink_mutex;
Sink custom_sink;  // guarded by sink_mutex

std::string_view name_of(Level level) {
    switch (level) {
        case Level::debug:
            return "debug";
        case Level::info:
            return "info";
        case Level::warn:
            return "warn";
        case Level::error:
            return "error";
    }
    return "?";
}

void write_stderr(Level level, std::string_view message) {
    const auto now = std::chrono::system_clock::now();
    const auto line =
        fmt::format("{:%Y-%m-%dT%H:%M:%S}Z {} {}\n",
                    std::chrono::floor<std::chrono::milliseconds>(now), name_of(level), message);
    std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace

void set_level(Level level) { min_level.store(level, std::memory_order_relaxed); }
Level level() { return min_level.load(std::memory_order_relaxed); }

void set_sink(Sink sink) {
    std::lock_guard lock(sink_mutex);
    custom_sink = std::move(sink);
}

void write(Level level, std::string_view message) {
    std::lock_guard lock(sink_mutex);
    if (custom_sink) {
        custom_sink(level, message);
    } else {
        write_stderr(level, message);
    }
}

}  // namespace crosstown::log
