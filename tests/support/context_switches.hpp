// How often this process's threads of one name went to sleep: the sum of their
// voluntary_ctxt_switches in /proc. Over an idle spell it counts wake-ups.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

namespace crosstown::test {

inline long voluntary_context_switches(std::string_view thread_name) {
    constexpr std::string_view kField = "voluntary_ctxt_switches:";
    long total = 0;
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
        std::ifstream comm(task.path() / "comm");
        std::string name;
        std::getline(comm, name);
        if (name != thread_name) continue;
        std::ifstream status(task.path() / "status");
        for (std::string line; std::getline(status, line);) {
            if (line.starts_with(kField)) total += std::stol(line.substr(kField.size()));
        }
    }
    return total;
}

}  // namespace crosstown::test
