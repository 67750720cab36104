#include "crosstown/server.hpp"

#include <fcgiapp.h>
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>

#include "crosstown/deferred/pool.hpp"
#include "crosstown/deferred/process_pool.hpp"
#include "crosstown/detail/thread_name.hpp"
#include "crosstown/fastcgi/listen_socket.hpp"
#include "crosstown/fastcgi/responder.hpp"
#include "crosstown/jobs/job_runner.hpp"
#include "crosstown/jobs/journal/open_job_store.hpp"
#include "crosstown/jobs/journal_error.hpp"
#include "crosstown/observe/log.hpp"
#include "crosstown/observe/request_stats.hpp"
#include "crosstown/service/idle_trim.hpp"
#include "crosstown/service/metrics.hpp"
#include "crosstown/service/service_notifier.hpp"
#include "crosstown/service/socket_activation.hpp"
#include "crosstown/service/status_page.hpp"
#include "crosstown/service/status_report.hpp"

namespace crosstown {
namespace {

// One Server per process: it owns the process's signals and the process pool. SingleServer is
// the Server's first member, so it is released however the rest of the construction ends.
std::atomic<bool> server_exists{false};

class SingleServer {
  public:
    SingleServer() {
        if (server_exists.exchange(true)) {
            throw std::logic_error(
                "crosstown::Server: a Server already exists in this process; there can be one "
                "(it owns the process's signals and its pool)");
        }
    }
    ~SingleServer() { server_exists.store(false); }
    SingleServer(const SingleServer&) = delete;
    SingleServer& operator=(const SingleServer&) = delete;
};

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
    // A journal write past a file-size limit (RLIMIT_FSIZE) fails with EFBIG, a disk full
    // that answers 503, instead of killing the process.
    ::signal(SIGXFSZ, SIG_IGN);
    log::set_level(config.log_level);
    return config;
}

// Leaves at once, without joining threads that are stuck in callbacks.
[[noreturn]] void exit_now(int code) {
    std::fflush(nullptr);
    std::_Exit(code);
}

// After the first stop signal: the next one, or 0 once `stop` is requested.
int wait_for_second_stop(std::stop_token stop) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    const timespec poll{0, 100'000'000};
    while (!stop.stop_requested()) {
        const int signal = sigtimedwait(&set, nullptr, &poll);
        if (signal > 0) return signal;
    }
    return 0;
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
    return fmt::format("{} responders, {}..{} workers, queue {} ({}), drain timeout {}ms",
                       config.responders, config.pool.min_workers, config.pool.workers,
                       config.pool.queue_capacity, overflow_name(config.pool.overflow),
                       config.drain_timeout.count());
}

ResponderConfig responder_config(const ServerConfig& config) {
    return {
        .threads = config.responders,
        .io_timeout = config.io_timeout,
        .limits = config.limits,
        .access_log = config.access_log,
        .idempotency_header = config.idempotency_header,
        .web_server_addrs = config.web_server_addrs.empty()
                                ? std::nullopt
                                : std::optional(WebServerAddrs::parse(config.web_server_addrs))};
}

// Runs `f` when the scope ends, however it ends.
template <class F>
struct OnExit {
    F f;
    ~OnExit() { f(); }
};
template <class F>
OnExit(F) -> OnExit<F>;

// The socket systemd passed (socket activation), else the one --listen names.
InheritedSocket open_listen_socket(const ServerConfig& config) {
    if (auto inherited = socket_from_systemd()) {
        log::info(
            "socket activation: serving {}; --listen, --socket-mode and --socket-group "
            "do not apply (the .socket unit decides)",
            inherited->description);
        return std::move(*inherited);
    }
    if (config.listen.empty()) {
        throw ListenError(
            "nothing: no listen address is set (--listen) and systemd passed no socket");
    }
    log::debug("opening --listen {} (socket mode {:04o}, group {}, backlog {})", config.listen,
               config.socket_mode,
               config.socket_group ? std::to_string(*config.socket_group) : "the process's",
               config.backlog);
    return {ListenSocket::open(config.listen, {.mode = config.socket_mode,
                                               .group = config.socket_group,
                                               .backlog = config.backlog}),
            config.listen};
}

// FastCGI has no authentication: a socket other machines can reach needs --allow-remote.
bool admit_remote(const InheritedSocket& socket, const ServerConfig& config) {
    const auto& addrs = config.web_server_addrs;
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
              !addrs.empty()
                  ? "FCGI_WEB_SERVER_ADDRS only (" + addrs + ")"
                  : std::string("anyone who can reach it (FCGI_WEB_SERVER_ADDRS is not set)"));
    return true;
}

}  // namespace

class Server::Impl {
  public:
    explicit Impl(ServerConfig config)
        : config_(prepare_process(config)),
          responder_config_(responder_config(config_)),
          pool_(config_.pool),
          notifier_([this] { return service_sample(); }) {
        set_process_pool(&pool_);
    }
    ~Impl() {
        stop_jobs();  // done already, unless run() ended by a throw
        set_process_job_runner(nullptr);
        set_process_pool(nullptr);
    }
    Impl(const Impl&) = delete;
    Impl& operator=(const Impl&) = delete;

    int run();
    unsigned busy_responders() const;

    SingleServer single_;  // first: released last
    const ServerConfig config_;
    // Built once, before any thread starts: a bad FCGI_WEB_SERVER_ADDRS set by hand in
    // ServerConfig fails the construction (std::invalid_argument), not the run.
    const ResponderConfig responder_config_;
    Router router_;
    RequestStats stats_;
    Pool pool_;
    JobKinds kinds_;
    // Durable jobs, from run() on, when a journal is configured: the store --journal names, and
    // the runner on it. The runner goes before the pool it feeds, and the store after it; a
    // store's feed (Redis) calls the runner, so stop_jobs() closes the store, ending the feed,
    // before the runner is gone (~Impl calls it when run() did not).
    std::unique_ptr<JobStore> job_store_;
    std::optional<JobRunner> job_runner_;
    std::optional<JobsSampler> jobs_sampler_;  // with the runner; the status page's view of it
    bool jobs_stopped_ = false;
    SampleRing samples_;
    const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
    std::atomic<bool> accepting_{false};

  private:
    // Returns after SIGTERM/SIGINT, responders joined. `where` names the socket in the log.
    void serve(int listen_fd, const std::string& where);
    void join_by_deadline(Responder& responder);
    int finish();
    void stop_jobs();
    bool open_journal();
    int work_only();
    void cut_drain_short_on_second_signal(std::stop_token stop);
    // Grows whenever a request, callback or job attempt finishes.
    std::uint64_t work_done() const;
    ServiceSample service_sample() const;
    void sample_every_second(std::stop_token stop);

    std::atomic<const Responder*> responder_{nullptr};
    std::chrono::steady_clock::time_point drain_deadline_;  // from SIGTERM + the drain timeout
    std::optional<DrainReport> early_drain_;  // set when the deadline passed while joining
    std::mutex cut_mutex_;
    std::condition_variable cut_cv_;
    bool cut_short_ = false;      // guarded by cut_mutex_: a second stop signal came
    std::jthread second_signal_;  // from the first stop signal to the end of finish()
    ServiceNotifier notifier_;    // last: its thread samples the members above
};

Server::Server(ServerConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {}
Server::~Server() = default;

Router& Server::router() { return impl_->router_; }
JobKinds& Server::jobs() { return impl_->kinds_; }
const ServerConfig& Server::config() const { return impl_->config_; }
int Server::run() { return impl_->run(); }
bool Server::accepting() const { return impl_->accepting_.load(); }
unsigned Server::busy_responders() const { return impl_->busy_responders(); }
DeferredCounts Server::deferred_counts() const { return impl_->pool_.counters().snapshot(); }

std::string Server::metrics() const {
    const auto* jobs = impl_->job_runner_ ? &*impl_->job_runner_ : nullptr;
    const auto snapshot = impl_->jobs_sampler_ ? impl_->jobs_sampler_->latest() : nullptr;
    return render_metrics(impl_->stats_, impl_->pool_, impl_->busy_responders(), jobs,
                          snapshot.get());
}

Handler Server::status_page() const {
    const Impl& impl = *impl_;
    return [&impl](Request& req, Response& res) {
        const auto report =
            collect_status({.requests = impl.stats_,
                            .pool = impl.pool_,
                            .samples = impl.samples_,
                            .jobs = impl.jobs_sampler_ ? &*impl.jobs_sampler_ : nullptr,
                            .responders = impl.config_.responders,
                            .busy_responders = impl.busy_responders(),
                            .accepting = impl.accepting_.load(),
                            .started = impl.started_});
        serve_status(report, req, res);
    };
}

// One sample a second, from the start of serving (or of a worker's run) until the drain: the
// status page's charts, and the idle trim, which gives the memory work freed back to the system
// after 5 quiet seconds following it.
void Server::Impl::sample_every_second(std::stop_token stop) {
    detail::name_this_thread("ct-sampler");
    IdleTrim idle_trim(5);
    std::mutex mutex;
    std::condition_variable_any tick;
    std::unique_lock lock(mutex);
    auto next = std::chrono::steady_clock::now();
    while (!stop.stop_requested()) {
        const auto jobs = jobs_sampler_ ? jobs_sampler_->latest() : nullptr;
        samples_.add(take_sample(stats_, pool_, busy_responders(), jobs.get()));
        const bool busy =
            stats_.in_flight() > 0 || pool_.busy_workers() > 0 || pool_.queue_depth() > 0;
        idle_trim.sample(work_done(), busy);
        // After a stall (SIGSTOP, a suspended VM) go on from now rather than catch up with a
        // burst of samples that would squash the charts' time axis.
        next = std::max(next + SampleRing::kInterval, std::chrono::steady_clock::now());
        tick.wait_until(lock, stop, next, [] { return false; });
    }
}

unsigned Server::Impl::busy_responders() const {
    const auto* responder = responder_.load();
    return responder != nullptr ? responder->busy() : 0;
}

// Durable jobs' attempts are work too, or a pool busy replaying jobs would look wedged.
std::uint64_t Server::Impl::work_done() const {
    const auto counts = pool_.counters().snapshot();
    const auto jobs = job_runner_ ? job_runner_->totals() : JobCounts{};
    return stats_.total() + counts.completed + counts.failed + jobs.succeeded + jobs.retried +
           jobs.dead;
}

ServiceSample Server::Impl::service_sample() const {
    const auto counts = pool_.counters().snapshot();
    const auto in_flight = stats_.in_flight();
    const auto queued = pool_.queue_depth();
    return {
        .work_done = work_done(),
        .work_waiting = queued > 0 || in_flight >= config_.responders,
        .status = fmt::format("{}: {} requests, {} in flight; deferred {} queued, {}/{} workers "
                              "busy (max {}), {} completed, {} failed",
                              accepting_.load() ? "serving" : "stopping", stats_.total(), in_flight,
                              queued, pool_.busy_workers(), pool_.live_workers(),
                              pool_.config().workers, counts.completed, counts.failed),
    };
}

int Server::Impl::run() {
    if (config_.role == Role::worker) {
        if (!open_journal()) return 2;
        return work_only();
    }
    InheritedSocket socket;
    try {
        socket = open_listen_socket(config_);
    } catch (const ListenError& e) {
        log::error("--listen: cannot listen on {}", e.what());
        return 2;
    }
    if (!admit_remote(socket, config_)) return 2;
    if (!open_journal()) return 2;
    try {
        serve(socket.socket.fd(), socket.description);
    } catch (const std::exception& e) {  // the responders could not start (threads, epoll)
        log::error("cannot serve: {}", e.what());
        const auto report = pool_.drain(Pool::Duration::zero());
        stop_jobs();
        if (report.stuck > 0) exit_now(1);  // stuck workers still use what ~Impl destroys
        return 1;
    }
    // With --listen, nginx now gets a refusal at once, not a connection nobody reads. Under
    // socket activation systemd keeps its copy: connections wait for the next start.
    socket.socket.close();
    return finish();
}

// Opens the journal's store (a SQLite file acquired, or a Redis server) and starts it, before
// READY=1. False (logged, naming the journal) when it cannot be used; true too when there is
// none.
bool Server::Impl::open_journal() {
    if (!config_.journal.enabled()) {
        if (kinds_.empty()) return true;
        log::error(
            "--journal is off, but durable job kinds are defined ({}); give the journal "
            "a file",
            fmt::join(kinds_.names(), ", "));
        return false;
    }
    try {
        job_store_ = open_job_store(config_.journal, kinds_.names());
    } catch (const JournalError& e) {
        log::error("--journal: {}", e.what());
        return false;
    }
    job_runner_.emplace(kinds_, *job_store_, pool_);
    jobs_sampler_.emplace(*job_runner_);
    set_process_job_runner(&*job_runner_);
    // A web-only instance, or one that defines no kinds, takes no jobs from a shared store.
    job_store_->start(*job_runner_, config_.role != Role::web && !kinds_.empty());
    return true;
}

// --role worker: no socket; runs durable jobs until SIGTERM, then drains them like a server.
int Server::Impl::work_only() {
    log::info("worker: running durable jobs from {}; no FastCGI socket", config_.journal.path);
    // No page to chart, but its idle trim gives back what a backlog's run freed.
    std::jthread sampler([this](std::stop_token stop) { sample_every_second(std::move(stop)); });
    notifier_.ready();
    const int signal = wait_for_stop();
    if (job_store_) job_store_->stop_taking();
    second_signal_ = std::jthread(
        [this](std::stop_token stop) { cut_drain_short_on_second_signal(std::move(stop)); });
    drain_deadline_ = std::chrono::steady_clock::now() + config_.drain_timeout;
    notifier_.stopping(drain_deadline_);
    log::info("{}: taking no more jobs; draining those running for up to {}ms",
              signal == SIGINT ? "SIGINT" : "SIGTERM", config_.drain_timeout.count());
    return finish();
}

// Whatever durable work has not finished stays in the journal: kept, run at the next start
// (SQLite), or claimed by another instance (Redis).
void Server::Impl::stop_jobs() {
    if (!job_runner_ || jobs_stopped_) return;
    set_process_job_runner(nullptr);
    job_runner_->stop();
    // Closed before the totals are read: a Redis feed may still hand the runner jobs it took
    // (kept) until close() has stopped it.
    const auto unwritten = job_store_->close();
    jobs_stopped_ = true;
    auto totals = job_runner_->totals();
    totals.outstanding += unwritten;
    log::info("{}", totals.summary());
}

void Server::Impl::cut_drain_short_on_second_signal(std::stop_token stop) {
    detail::name_this_thread("ct-signals");
    const int signal = wait_for_second_stop(stop);
    if (signal == 0) return;
    log::warn(
        "second {}: cutting the drain short; callbacks still queued are abandoned, "
        "durable jobs stay in the journal",
        signal == SIGINT ? "SIGINT" : "SIGTERM");
    {
        std::lock_guard lock(cut_mutex_);
        cut_short_ = true;
    }
    cut_cv_.notify_all();
    pool_.cut_drain_short();
    if (job_runner_) job_runner_->end_room_waits();
}

void Server::Impl::serve(int listen_fd, const std::string& where) {
    const OnExit stop_accepting{[this] { accepting_.store(false); }};
    Responder responder(listen_fd, router_, pool_, stats_, responder_config_,
                        job_runner_ ? &*job_runner_ : nullptr);
    responder_.store(&responder);
    const OnExit forget_responder{[this] { responder_.store(nullptr); }};  // before it is gone
    responder.wait_until_accepting();
    std::jthread sampler([this](std::stop_token stop) { sample_every_second(std::move(stop)); });
    std::jthread census;
    if (jobs_sampler_) {
        census =
            std::jthread([this](std::stop_token stop) { jobs_sampler_->run(std::move(stop)); });
    }
    // Ready: every responder waits. A request served an instant before this sees false, as a
    // health check should while the service is still starting.
    accepting_.store(true);
    log::info("listening on {} ({})", where, describe(config_));
    log::debug(
        "io timeout {}ms, max body {}B, max {} deferred per request, access log {}, peers: {}",
        config_.io_timeout.count(), config_.limits.max_body,
        config_.limits.max_deferred_per_request, config_.access_log ? "on" : "off",
        config_.web_server_addrs.empty() ? "anyone who reaches the socket"
                                         : "FCGI_WEB_SERVER_ADDRS " + config_.web_server_addrs);
    notifier_.ready();
    const int signal = wait_for_stop();
    if (job_store_) job_store_->stop_taking();
    second_signal_ = std::jthread(
        [this](std::stop_token stop) { cut_drain_short_on_second_signal(std::move(stop)); });
    accepting_.store(false);
    drain_deadline_ = std::chrono::steady_clock::now() + config_.drain_timeout;
    notifier_.stopping(drain_deadline_);
    log::info(
        "{}: no new requests; finishing those in hand, then draining deferred work for up "
        "to {}ms",
        signal == SIGINT ? "SIGINT" : "SIGTERM", config_.drain_timeout.count());
    responder.stop();
    join_by_deadline(responder);
}

// The requests in hand finish and dispatch. With --overflow block and a full queue, their
// dispatch waits for room, which may come slowly: the drain deadline bounds that wait too.
// When it passes first, the pool is drained at once, which releases the waiting responders;
// their callbacks, and those still queued, count as abandoned.
void Server::Impl::join_by_deadline(Responder& responder) {
    std::jthread closer([this](std::stop_token stop) {
        detail::name_this_thread("ct-drain");
        // Wakes on the responders' joining (stop), a second signal, or the deadline.
        std::stop_callback wake(stop, [this] {
            { std::lock_guard lock(cut_mutex_); }
            cut_cv_.notify_all();
        });
        std::unique_lock lock(cut_mutex_);
        cut_cv_.wait_until(lock, drain_deadline_,
                           [&] { return cut_short_ || stop.stop_requested(); });
        if (stop.stop_requested()) return;
        const bool cut = cut_short_;
        lock.unlock();
        log::warn("{} with requests still dispatching (queue full)",
                  cut ? "drain cut short" : "drain deadline passed");
        early_drain_ = pool_.drain(Pool::Duration::zero());
        if (job_runner_) job_runner_->end_room_waits();
    });
    responder.join();
}

int Server::Impl::finish() {
    if (job_store_) job_store_->stop_taking();  // no new jobs while the pool drains
    const auto left = std::max(drain_deadline_ - std::chrono::steady_clock::now(),
                               std::chrono::steady_clock::duration::zero());
    const auto report = early_drain_ ? *early_drain_ : pool_.drain(left);
    stop_jobs();
    second_signal_ = {};
    const auto counts = pool_.counters().snapshot();
    if (counts.nothing_lost()) {
        log::info("{}", counts.summary());
    } else {
        log::error("{}", counts.summary());
    }
    const int code = counts.nothing_lost() ? 0 : 1;
    if (report.stuck > 0) {
        log::error(
            "{} deferred callbacks ({} of them durable jobs, kept) ignored their stop token past "
            "the drain deadline; exiting without waiting for them",
            report.stuck, report.stuck_kept);
        // Only durable attempts stuck: their jobs are kept, which is no failure.
        exit_now(report.stuck > report.stuck_kept ? 1 : code);
    }
    return code;
}

}  // namespace crosstown
