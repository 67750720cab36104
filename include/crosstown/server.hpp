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
// The constructor blocks SIGTERM/SIGINT/SIGHUP in the calling thread (every thread started
// later inherits that) and starts the pool of workers, to which follow_response sends work from
// then on. run() serves the socket systemd passed (socket activation) or opens `listen`, starts
// the responders, tells systemd READY=1 (Type=notify) and waits for a signal:
//   - SIGTERM/SIGINT: stop accepting, let the requests in hand finish and dispatch, close the
//     socket, drain the pool until the drain timeout (counted from the signal, and bounding
//     dispatches that wait for room in a full queue too), log the summary line
//     "deferred registered=N dispatched=N completed=N failed=N ...", and return 0 only when
//     nothing was abandoned or rejected. Callbacks that ignore their stop token past the
//     deadline make the process leave with _exit(1) rather than hang.
//     With a journal, durable jobs not finished by then stay in it ("jobs ... kept=N" in the
//     log) and do not change the exit code. A second SIGTERM/SIGINT during the drain cuts it
//     short: queued callbacks are abandoned at once, running ones see their stop tokens, and
//     durable jobs are kept.
//   - SIGHUP: logged and ignored (there is nothing to reload; restart the service).
// With --journal, run() first acquires and opens the journal and queues its jobs again (before
// READY=1); a journal another live process owns, or that is corrupt, foreign or cannot be
// created, makes run() return 2 with a message naming the file.
// One Server per process: constructing a second while one exists throws std::logic_error.
// Add routes before run(), from the thread that made the Server; the other accessors may be
// called from any thread while it runs. The constructor throws std::logic_error for a second
// Server and std::invalid_argument for a bad web_server_addrs.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "crosstown/deferred/deferred_counts.hpp"
#include "crosstown/http/router.hpp"
#include "crosstown/jobs/job_kinds.hpp"
#include "crosstown/server_config.hpp"

namespace crosstown {

// The Content-Type of Server::metrics(): the Prometheus text format 0.0.4.
inline constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

class Server {
  public:
    explicit Server(ServerConfig config);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    Router& router();
    const ServerConfig& config() const;
    // The kinds of durable jobs (follow_response_durably). Define them before run(), and only
    // with a journal (config().journal): run() refuses kinds without one (exit 2).
    JobKinds& jobs();

    // Serves until SIGTERM/SIGINT; returns the process's exit code (2: cannot listen, or the
    // journal cannot be used).
    int run();

    // True while run() serves: from when every responder waits for connections (the moment
    // READY=1 is sent) until a stop signal. False before: the service is still starting.
    bool accepting() const;
    // Requests being served right now.
    unsigned busy_responders() const;
    // Deferred callbacks by outcome, so far.
    DeferredCounts deferred_counts() const;
    // The Prometheus text for a /metrics endpoint (kMetricsContentType).
    std::string metrics() const;
    // A handler for an operator's status page: requests, threads, the pool's queue, deferred
    // callbacks by outcome with their latencies, the slowest and the latest failed callbacks,
    // and charts of the last minutes. HTML for a browser, ?json for scripts, ?text for curl.
    // Mount it where you like (fcgi_app: GET /status) and keep it from the public, as the
    // shipped nginx snippet does. It reads counters and small records; the only lock it
    // shares with workers is held for a pointer copy. The handler refers to this Server: it
    // must not outlive it.
    Handler status_page() const;

  private:
    class Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace crosstown
