// crosstown::log: one line per event, formatted with fmt, written whole to stderr.
//
// Any thread may log. Each line goes out in a single write under a mutex, so lines from many
// threads never interleave; systemd's journal takes stderr as it is. Tests replace the sink to
// read what was logged. Control bytes, backslashes and bytes above 0x7e in a message are
// written as \xHH, so that a client's input can never split or forge a line.
#pragma once

#include <fmt/format.h>

#include <functional>
#include <string_view>

namespace crosstown::log {

enum class Level { debug, info, warn, error };

// Lines below this level are dropped. Default: info.
void set_level(Level level);
Level level();
// Whether lines at `lvl` are written: guards work done only to build a line's arguments.
inline bool enabled(Level lvl) { return lvl >= level(); }

// Where lines go; the default writes "<time> <level> <message>\n" to stderr. Pass nullptr to
// restore it. Set it before threads log: it is not meant to change while serving.
using Sink = std::function<void(Level, std::string_view message)>;
void set_sink(Sink sink);

void write(Level level, std::string_view message);

template <class... Args>
void emit(Level lvl, fmt::format_string<Args...> format, Args&&... args) {
    if (!enabled(lvl)) return;
    write(lvl, fmt::format(format, std::forward<Args>(args)...));
}

// Formats only when the level is enabled; arguments are still evaluated, so guard an
// expensive one with enabled(Level::debug).
template <class... Args>
void debug(fmt::format_string<Args...> format, Args&&... args) {
    emit(Level::debug, format, std::forward<Args>(args)...);
}
template <class... Args>
void info(fmt::format_string<Args...> format, Args&&... args) {
    emit(Level::info, format, std::forward<Args>(args)...);
}
template <class... Args>
void warn(fmt::format_string<Args...> format, Args&&... args) {
    emit(Level::warn, format, std::forward<Args>(args)...);
}
template <class... Args>
void error(fmt::format_string<Args...> format, Args&&... args) {
    emit(Level::error, format, std::forward<Args>(args)...);
}

}  // namespace crosstown::log
