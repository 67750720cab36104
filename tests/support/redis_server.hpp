// A real redis-server for tests: private directory, unix socket (and a loopback port from the
// kernel when asked), no snapshots; append-only with fsync on every write when asked, so that
// a restart keeps what was written. Stopped by the destructor.
#pragma once

#include <signal.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/child_process.hpp"
#include "support/eventually.hpp"
#include "support/loopback.hpp"
#include "support/temp_dir.hpp"

namespace crosstown::test {

class RedisServer {
  public:
    struct Options {
        bool appendonly = false;
        bool tcp = false;
    };
    RedisServer() : RedisServer(Options{}) {}
    explicit RedisServer(Options options)
        : options_(options), dir_("crosstown-redis"), socket_(dir_ / "redis.sock") {
        if (options_.tcp) port_ = free_port();
        start();
    }
    ~RedisServer() { stop(); }
    RedisServer(const RedisServer&) = delete;
    RedisServer& operator=(const RedisServer&) = delete;

    std::string unix_address() const { return "unix://" + socket_; }
    std::string tcp_address() const { return "redis://127.0.0.1:" + std::to_string(port_); }
    std::string log() const { return process_ ? process_->output() : std::string(); }

    // SIGTERM (Redis saves and exits) or SIGKILL; waits for it.
    void stop(int signal = SIGTERM) {
        if (!process_) return;
        process_->signal(signal);
        process_->wait(std::chrono::seconds(10));
        process_.reset();
    }
    // Starts it again on the same socket, port and directory (the append-only file).
    void start() {
        if (std::string(REDIS_SERVER_PATH).empty()) {
            throw std::runtime_error("redis-server is not installed (script/test installs it)");
        }
        std::vector<std::string> argv{REDIS_SERVER_PATH,  "--port",       std::to_string(port_),
                                      "--bind",           "127.0.0.1",    "--unixsocket",
                                      socket_,            "--unixsocketperm", "700",
                                      "--dir",            dir_.path(),    "--save",
                                      "",                 "--appendonly",
                                      options_.appendonly ? "yes" : "no", "--appendfsync",
                                      "always",           "--daemonize",  "no"};
        process_ = std::make_unique<ChildProcess>(argv, dir_ / "redis.log");
        if (!eventually([&] { return log().find("eady to accept connections") != std::string::npos ||
                                     !process_->running(); }) ||
            !process_->running()) {
            throw std::runtime_error("redis-server did not start:\n" + log());
        }
    }

  private:
    Options options_;
    TempDir dir_;
    std::string socket_;
    int port_ = 0;
    std::unique_ptr<ChildProcess> process_;
};

}  // namespace crosstown::test
