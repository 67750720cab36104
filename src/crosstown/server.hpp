// crosstown::Server: a whole FastCGI application process, from start to a clean exit.
//
//   int main(int argc, char** argv) {
//       auto parsed = crosstown::parse_server_config(argc, argv, {"my_app", "1.0"});
//       if (!parsed.config) return parsed.exit_code;
//       crosstown::Server server(*parsed.config);
//       server.router().get("/hello", [](auto&, auto& res) { res.text("hello\n"); });
//       return server.run();
//   }
//
// The constructor calls FCGX_Init, blocks SIGTERM/SIGINT/SIGHUP in the calling thread (every
// thread started later inherits that), and starts the pool, which becomes the process pool of
// follow_response. run() takes the socket systemd passed (socket activation) or opens --listen,
// starts the responders, tells systemd READY=1 (Type=notify; see service_notifier.hpp) and
// waits in sigwait:
//   - SIGTERM/SIGINT: stop accepting, let the requests in hand finish and dispatch, close the
//     socket, drain the pool until --drain-timeout (counted from the signal, and bounding
//     dispatches that wait for room in a full queue too), log the summary line
//     "deferred registered=N dispatched=N completed=N failed=N ...", and return 0 only when
//     nothing was abandoned or rejected. Callbacks that ignore their stop token past the
//     deadline make the process leave with _exit(1) rather than hang.
//   - SIGHUP: logged and ignored (there is nothing to reload; restart the service).
// One Server per process.
#pragma once

#include <atomic>
#include <chrono>
#include <optional>

#include "crosstown/pool.hpp"
#include "crosstown/request_stats.hpp"
#include "crosstown/responder.hpp"
#include "crosstown/router.hpp"
#include "crosstown/server_config.hpp"
#include "crosstown/service_notifier.hpp"

namespace crosstown {

class Server {
  public:
    explicit Server(ServerConfig config);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    Router& router() { return router_; }
    Pool& pool() { return pool_; }
    const Pool& pool() const { return pool_; }
    const RequestStats& request_stats() const { return stats_; }
    const ServerConfig& config() const { return config_; }

    // Serves until SIGTERM/SIGINT; returns the process's exit code (2: cannot listen).
    int run();

    bool accepting() const { return accepting_.load(); }
    unsigned busy_responders() const;
    // The Prometheus text for a /metrics endpoint.
    std::string metrics() const;

  private:
    // Returns after SIGTERM/SIGINT, responders joined. `where` names the socket in the log.
    void serve(int listen_fd, const std::string& where);
    void join_by_deadline(Responder& responder);
    int finish();
    ServiceSample service_sample() const;

    const ServerConfig config_;
    Router router_;
    RequestStats stats_;
    Pool pool_;
    std::atomic<bool> accepting_{false};
    std::atomic<const Responder*> responder_{nullptr};
    std::chrono::steady_clock::time_point drain_deadline_;  // from SIGTERM + --drain-timeout
    std::optional<DrainReport> early_drain_;  // set when the deadline passed while joining
    ServiceNotifier notifier_;                // last: its thread samples the members above
};

}  // namespace crosstown
