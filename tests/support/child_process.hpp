// Runs a program as a child process for integration tests, with its stdout and stderr in
// files, and waits for it with a deadline.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/eventually.hpp"

extern char** environ;

namespace crosstown::test {

class ChildProcess {
  public:
    // stdout goes to `output_path`; stderr too, unless `errors_path` names a file of its own
    // (for a program whose stdout is its result, not its log).
    ChildProcess(std::vector<std::string> argv, const std::string& output_path,
                 const std::string& errors_path = {})
        : output_path_(output_path) {
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, 1, output_path.c_str(),
                                         O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (errors_path.empty()) {
            posix_spawn_file_actions_adddup2(&actions, 1, 2);
        } else {
            posix_spawn_file_actions_addopen(&actions, 2, errors_path.c_str(),
                                             O_WRONLY | O_CREAT | O_APPEND, 0644);
        }
        // The child must not inherit a blocked-signals mask from a test that used Server.
        posix_spawnattr_t attributes;
        posix_spawnattr_init(&attributes);
        sigset_t none;
        sigemptyset(&none);
        posix_spawnattr_setsigmask(&attributes, &none);
        // A process group of its own, so that the destructor reaches the helpers it starts.
        posix_spawnattr_setpgroup(&attributes, 0);
        posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);
        std::vector<char*> args;
        for (auto& arg : argv) args.push_back(arg.data());
        args.push_back(nullptr);
        const int rc = posix_spawn(&pid_, args[0], &actions, &attributes, args.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attributes);
        if (rc != 0) throw std::runtime_error("cannot start " + argv[0]);
    }
    // Kills the whole group: helpers a program started (chromium's, nginx's workers) must not
    // outlive the test, even when the program itself has exited or hangs.
    ~ChildProcess() {
        ::kill(-pid_, SIGKILL);
        if (!exit_status_) ::waitpid(pid_, nullptr, 0);
    }
    ChildProcess(const ChildProcess&) = delete;
    ChildProcess& operator=(const ChildProcess&) = delete;

    pid_t pid() const { return pid_; }
    void signal(int signal) const { ::kill(pid_, signal); }

    // The exit code (128 + signal when killed), or nullopt if still running at the deadline.
    std::optional<int> wait(std::chrono::milliseconds timeout) {
        eventually([this] { return reaped(); }, timeout, std::chrono::milliseconds(5));
        return exit_status_;
    }
    bool running() { return !wait(std::chrono::milliseconds(0)); }

    // Everything it wrote so far.
    std::string output() const {
        std::ifstream file(output_path_);
        std::stringstream text;
        text << file.rdbuf();
        return text.str();
    }

  private:
    // Whether it has exited (and been reaped): exit_status_ is then set.
    bool reaped() {
        int status = 0;
        if (!exit_status_ && ::waitpid(pid_, &status, WNOHANG) == pid_) {
            exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        return exit_status_.has_value();
    }

    pid_t pid_ = -1;
    std::string output_path_;
    std::optional<int> exit_status_;
};

}  // namespace crosstown::test
