// A process's threads as /proc shows them: those of one name, and how often they went to sleep
// (the sum of their voluntary_ctxt_switches, which over an idle spell counts wake-ups).
#pragma once

#include <dirent.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <string>
#include <string_view>

namespace crosstown::test {

inline std::string task_dir(pid_t pid) { return "/proc/" + std::to_string(pid) + "/task"; }

// The ids of the process's threads named `name` (ct-responder, ct-spare, ct-worker).
inline std::set<pid_t> threads_named(pid_t pid, std::string_view name) {
    std::set<pid_t> found;
    const auto tasks = task_dir(pid);
    if (DIR* dir = ::opendir(tasks.c_str())) {
        while (const dirent* entry = ::readdir(dir)) {
            if (entry->d_name[0] == '.') continue;
            std::ifstream comm(tasks + "/" + entry->d_name + "/comm");
            std::string line;
            if (std::getline(comm, line) && line == name) found.insert(std::stoi(entry->d_name));
        }
        ::closedir(dir);
    }
    return found;
}

inline long voluntary_context_switches(std::string_view thread_name, pid_t pid = ::getpid()) {
    constexpr std::string_view kField = "voluntary_ctxt_switches:";
    long total = 0;
    for (const pid_t tid : threads_named(pid, thread_name)) {
        std::ifstream status(task_dir(pid) + "/" + std::to_string(tid) + "/status");
        for (std::string line; std::getline(status, line);) {
            if (line.starts_with(kField)) total += std::stol(line.substr(kField.size()));
        }
    }
    return total;
}

}  // namespace crosstown::test
