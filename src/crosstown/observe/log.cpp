#include "crosstown/observe/log.hpp"

#include <fmt/chrono.h>

#include <algorithm>
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

bool needs_escape(unsigned char c) { return c < 0x20 || c >= 0x7f || c == '\\'; }

// Messages carry what clients sent (paths, exception texts). Control bytes would let a client
// forge whole lines (a decoded %0a in a path) or drive a terminal, and invalid UTF-8 makes the
// journal hide the line as a blob, so such bytes are written as \xHH, as nginx's access log
// does.
std::string escape_unprintable(std::string_view message) {
    std::string out;
    out.reserve(message.size() + 16);
    for (const char c : message) {
        const auto byte = static_cast<unsigned char>(c);
        if (needs_escape(byte)) {
            out += fmt::format("\\x{:02X}", byte);
        } else {
            out.push_back(c);
        }
    }
    return out;
}

}  // namespace

void set_level(Level level) { min_level.store(level, std::memory_order_relaxed); }
Level level() { return min_level.load(std::memory_order_relaxed); }

void set_sink(Sink sink) {
    std::lock_guard lock(sink_mutex);
    custom_sink = std::move(sink);
}

void write(Level level, std::string_view message) {
    std::string escaped;
    if (std::any_of(message.begin(), message.end(),
                    [](char c) { return needs_escape(static_cast<unsigned char>(c)); })) {
        escaped = escape_unprintable(message);
        message = escaped;
    }
    std::lock_guard lock(sink_mutex);
    if (custom_sink) {
        custom_sink(level, message);
    } else {
        write_stderr(level, message);
    }
}

}  // namespace crosstown::log
