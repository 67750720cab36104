#include "crosstown/server.hpp"

#include <fcgiapp.h>
#include <pthread.h>
#include <signal.h>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "crosstown/follow_response.hpp"
#include "crosstown/listen_socket.hpp"
#include "crosstown/log.hpp"
#include "crosstown/metrics.hpp"
#include "crosstown/socket_activation.hpp"

namespace crosstown {
namespace {

sigset_t stop_signals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    return set;
}

// Runs before the pool's members are built, so that no thread of ours ever takes these
// signals: the thread in run() alone receives them, with sigwait.
const ServerConfig& prepare_process(const ServerConfig& config) {
    FCGX_Init();
    const auto set = stop_signals();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    log::set_level(config.log_level);
    return config;
}

int wait_for_stop() {
    const auto set = stop_signals();
    for (;;) {
        int signal = 0;
        if (sigwait(&set, &signal) != 0) continue;
        if (signal != SIGHUP) return signal;
        log::info("SIGHUP: nothing to reload; restart the service to change its configuration");
    }
}

std::string describe(const ServerConfig& config) {
    static constexpr const char* overflow_names[] = {"block", "caller_runs", "reject"};
    return fmt::format("{} responders, {} workers, queue {} ({}), drain timeout {}ms",
                       config.responder.threads, config.pool.workers, config.pool.queue_capacity,
                       overflow_names[static_cast<int>(config.pool.overflow)],
                       config.drain_timeout.count());
}

// The socket systemd passed (socket activation), else the one --listen names.
InheritedSocket open_listen_socket(const ServerConfig& config) {
    if (auto inherited = socket_from_systemd()) {
        log::info(
            "socket activation: serving {}; --listen, --socket-mode and --socket-group "
            "do not apply (the .socket unit decides)",
            inherited->description);
        return std::move(*inherited);
    }
    return {ListenSocket::open(config.listen, {.mode = config.socket_mode,
                                               .group = config.socket_group,
                                               .backlog = config.backlog}),
            config.listen};
}

// FastCGI has no authentication: a socket other machines can reach needs --allow-remote.
bool admit_remote(const InheritedSocket& socket, const ServerConfig& config) {
    const auto& addrs = config.responder.web_server_addrs;
    if (!socket.socket.reachable_remotely()) return true;
    if (!config.allow_remote) {
        log::error(
            "--listen: {} accepts connections from other machines, and FastCGI has no "
            "authentication: whoever connects controls the application. Listen on a unix "
            "socket or a loopback address, or pass --allow-remote on and list the web "
            "servers in FCGI_WEB_SERVER_ADDRS",
            socket.description);
        return false;
    }
    log::warn("--allow-remote: {} accepts connections from {}", socket.description,
              addrs ? "FCGI_WEB_SERVER_ADDRS only (" + addrs->describe() + ")"
                    : std::string("anyone who can reach it (FCGI_WEB_SERVER_ADDRS is not set)"));
    return true;
}

}  // namespace

Server::Server(ServerConfig config)
    : config_(prepare_process(config)),
      pool_(config_.pool),
      notifier_([this] { return service_sample(); }) {
    set_process_pool(&pool_);
}

Server::~Server() { set_process_pool(nullptr); }

unsigned Server::busy_responders() const {
    const auto* responder = responder_.load();
    return responder != nullptr ? responder->busy() : 0;
}

std::string Server::metrics() const { return render_metrics(stats_, pool_, busy_responders()); }

ServiceSample Server::service_sample() const {
    const auto counts = pool_.counters().snapshot();
    const auto in_flight = stats_.in_flight();
    const auto queued = pool_.queue_depth();
    return {
        .work_done = stats_.total() + counts.completed + counts.failed,
        .work_waiting = queued > 0 || in_flight >= config_.responder.threads,
        .status = fmt::format("{}: {} requests, {} in flight; deferred {} queued, {}/{} workers "
                              "busy, {} completed, {} failed",
                              accepting() ? "serving" : "stopping", stats_.total(), in_flight,
                              queued, pool_.busy_workers(), config_.pool.workers, counts.completed,
                              counts.failed),
    };
}

int Server::run() {
    InheritedSocket socket;
    try {
        socket = open_listen_socket(config_);
    } catch (const ListenError& e) {
        log::error("--listen: cannot listen on {}", e.what());
        return 2;
    }
    if (!admit_remote(socket, config_)) return 2;
    try {
        serve(socket.socket.fd(), socket.description);
    } catch (const std::exception& e) {  // the responders could not start (threads, epoll)
        log::error("cannot serve: {}", e.what());
        return 1;
    }
    // With --listen, nginx now gets a refusal at once, not a connection nobody reads. Under
    // socket activation systemd keeps its copy: connections wait for the next start.
    socket.socket.close();
    return finish();
}

void Server::serve(int listen_fd, const std::string& where) {
    Responder responder(listen_fd, router_, pool_, stats_, config_.responder);
    responder_.store(&responder);
    responder.wait_until_accepting();
    accepting_.store(true);
    log::info("listening on {} ({})", where, describe(config_));
    notifier_.ready();
    const int signal = wait_for_stop();
    accepting_.store(false);
    drain_deadline_ = std::chrono::steady_clock::now() + config_.drain_timeout;
    notifier_.stopping(drain_deadline_);
    log::info(
        "{}: no new requests; finishing those in hand, then draining deferred work for up "
        "to {}ms",
        signal == SIGINT ? "SIGINT" : "SIGTERM", config_.drain_timeout.count());
    responder.stop();
    join_by_deadline(responder);
    responder_.store(nullptr);
}

// The requests in hand finish and dispatch. With --overflow block and a full queue, their
// dispatch waits for room, which may come slowly: the drain deadline bounds that wait too.
// When it passes first, the pool is drained at once, which releases the waiting responders;
// their callbacks, and those still queued, count as abandoned.
void Server::join_by_deadline(Responder& responder) {
    std::jthread closer([this](std::stop_token stop) {
        std::mutex mutex;
        std::condition_variable_any joined;
        std::unique_lock lock(mutex);
        if (joined.wait_until(lock, stop, drain_deadline_, [] { return false; })) return;
        if (stop.stop_requested()) return;
        log::warn("drain deadline passed with requests still dispatching (queue full)");
        early_drain_ = pool_.drain(Pool::Duration::zero());
    });
    responder.join();
}

int Server::finish() {
    const auto left = std::max(drain_deadline_ - std::chrono::steady_clock::now(),
                               std::chrono::steady_clock::duration::zero());
    const auto report = early_drain_ ? *early_drain_ : pool_.drain(left);
    const auto counts = pool_.counters().snapshot();
    if (counts.nothing_lost()) {
        log::info("{}", counts.summary());
    } else {
        log::error("{}", counts.summary());
    }
    if (report.stuck > 0) {
        log::error(
            "{} deferred callbacks ignored their stop token past the drain deadline; "
            "exiting without waiting for them",
            report.stuck);
        std::fflush(nullptr);
        std::_Exit(1);
    }
    return counts.nothing_lost() ? 0 : 1;
}

}  // namespace crosstown
