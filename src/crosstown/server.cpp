#include "crosstown/server.hpp"

#include <fcgiapp.h>
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>

#include "crosstown/follow_response.hpp"
#include "crosstown/listen_socket.hpp"
#include "crosstown/log.hpp"
#include "crosstown/metrics.hpp"

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

}  // namespace

Server::Server(ServerConfig config) : config_(prepare_process(config)), pool_(config_.pool) {
    set_process_pool(&pool_);
}

Server::~Server() { set_process_pool(nullptr); }

unsigned Server::busy_responders() const {
    const auto* responder = responder_.load();
    return responder != nullptr ? responder->busy() : 0;
}

std::string Server::metrics() const { return render_metrics(stats_, pool_, busy_responders()); }

int Server::run() {
    ListenSocket socket;
    try {
        socket = ListenSocket::open(config_.listen, {.mode = config_.socket_mode,
                                                     .group = config_.socket_group,
                                                     .backlog = config_.backlog});
    } catch (const ListenError& e) {
        log::error("--listen: cannot listen on {}", e.what());
        return 2;
    }
    try {
        serve(socket.fd());
    } catch (const std::exception& e) {  // the responders could not start (threads, epoll)
        log::error("cannot serve: {}", e.what());
        return 1;
    }
    socket.close();  // nginx now gets a refusal at once, not a connection nobody reads
    return finish();
}

void Server::serve(int listen_fd) {
    Responder responder(listen_fd, router_, pool_, stats_, config_.responder);
    responder_.store(&responder);
    accepting_.store(true);
    log::info("listening on {} ({})", config_.listen, describe(config_));
    const int signal = wait_for_stop();
    accepting_.store(false);
    log::info(
        "{}: no new requests; finishing those in hand, then draining deferred work for up "
        "to {}ms",
        signal == SIGINT ? "SIGINT" : "SIGTERM", config_.drain_timeout.count());
    responder.stop();
    responder.join();
    responder_.store(nullptr);
}

int Server::finish() {
    const auto report = pool_.drain(config_.drain_timeout);
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
