// Collects crosstown::log lines for a scope's lifetime, instead of writing them to stderr.
#pragma once

#include <crosstown/observe/log.hpp>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace crosstown::test {

class LogCapture {
  public:
    LogCapture() {
        log::set_sink([this](log::Level, std::string_view line) {
            std::lock_guard lock(mutex_);
            lines_.emplace_back(line);
        });
    }
    ~LogCapture() { log::set_sink(nullptr); }
    LogCapture(const LogCapture&) = delete;
    LogCapture& operator=(const LogCapture&) = delete;

    std::vector<std::string> lines() const {
        std::lock_guard lock(mutex_);
        return lines_;
    }
    bool contains(std::string_view needle) const {
        for (const auto& line : lines()) {
            if (line.find(needle) != std::string::npos) return true;
        }
        return false;
    }

  private:
    mutable std::mutex mutex_;
    std::vector<std::string> lines_;
};

}  // namespace crosstown::test
