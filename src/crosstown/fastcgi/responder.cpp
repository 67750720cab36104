#include "crosstown/fastcgi/responder.hpp"

#include <fcgiapp.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "crosstown/deferred/request_context.hpp"
#include "crosstown/detail/thread_name.hpp"
#include "crosstown/http/http_error.hpp"
#include "crosstown/observe/log.hpp"

namespace crosstown {
namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kAcceptBackoff = std::chrono::milliseconds(100);

[[noreturn]] void throw_errno(std::string_view what) {
    throw std::system_error(errno, std::generic_category(), std::string(what));
}

void set_timeouts(int fd, std::chrono::milliseconds timeout) {
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(timeout);
    const timeval tv{static_cast<time_t>(seconds.count()),
                     static_cast<suseconds_t>((timeout - seconds).count() * 1000)};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

// envp is freed by FCGX_Finish_r; the request keeps its own copy.
Fields copy_params(FCGX_ParamArray envp) {
    Fields fields;
    std::size_t count = 0;
    for (auto p = envp; p != nullptr && *p != nullptr; ++p) ++count;
    fields.reserve(count);  // nginx sends about 30: without it, half a dozen regrowths each
    for (auto p = envp; p != nullptr && *p != nullptr; ++p) {
        const std::string_view entry(*p);
        const auto eq = entry.find('=');
        if (eq == std::string_view::npos) continue;
        fields.emplace_back(entry.substr(0, eq), entry.substr(eq + 1));
    }
    return fields;
}

BodyReader body_of(FCGX_Stream* in) {
    return [in](char* buffer, std::size_t size) -> std::size_t {
        const int got = FCGX_GetStr(buffer, static_cast<int>(size), in);
        if (FCGX_GetError(in) != 0) throw HttpError(400, "the request body could not be read");
        return got > 0 ? static_cast<std::size_t>(got) : 0;
    };
}

void write_response(FCGX_Stream* out, const Response& response) {
    fmt::memory_buffer head;
    const auto status = response.status();
    fmt::format_to(std::back_inserter(head), "Status: {} {}\r\n", status, reason_phrase(status));
    for (const auto& [name, value] : response.headers()) {
        fmt::format_to(std::back_inserter(head), "{}: {}\r\n", name, value);
    }
    fmt::format_to(std::back_inserter(head), "Content-Length: {}\r\n\r\n", response.body().size());
    FCGX_PutStr(head.data(), static_cast<int>(head.size()), out);
    FCGX_PutStr(response.body().data(), static_cast<int>(response.body().size()), out);
}

std::string describe_current_exception() {
    try {
        throw;
    } catch (const std::exception& e) {
        return e.what();
    } catch (...) {
        return "non-standard exception";
    }
}

double milliseconds(Clock::duration d) {
    return std::chrono::duration<double, std::milli>(d).count();
}

// Who connected, for the debug log: a TCP peer's address and port, or the process and user at
// the other end of a unix socket.
std::string describe_peer(int fd, const sockaddr_storage& peer) {
    const auto& address = reinterpret_cast<const sockaddr&>(peer);
    if (peer.ss_family == AF_INET) {
        const auto port = ntohs(reinterpret_cast<const sockaddr_in&>(peer).sin_port);
        return fmt::format("{}:{}", peer_address(address), port);
    }
    if (peer.ss_family == AF_INET6) {
        const auto port = ntohs(reinterpret_cast<const sockaddr_in6&>(peer).sin6_port);
        return fmt::format("[{}]:{}", peer_address(address), port);
    }
    ucred credentials{};
    socklen_t length = sizeof credentials;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0) {
        return fmt::format("pid {} uid {} (unix socket)", credentials.pid, credentials.uid);
    }
    return "a unix socket";
}

int create_epoll() {
    const int fd = ::epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0) throw_errno("epoll_create1");
    return fd;
}

}  // namespace

Responder::Responder(int listen_fd, const Router& router, Pool& pool, RequestStats& stats,
                     ResponderConfig config, JobRunner* jobs)
    : listen_fd_(listen_fd),
      router_(router),
      pool_(pool),
      jobs_(jobs),
      stats_(stats),
      config_(config),
      epoll_fd_(create_epoll()),
      started_(config.threads) {
    stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (stop_fd_ < 0) throw_errno("eventfd");
    // Level-triggered and never read: once written, every epoll_wait returns it.
    epoll_event stop_event{EPOLLIN, {.fd = stop_fd_}};
    epoll_event listen_event{EPOLLIN | EPOLLONESHOT, {.fd = listen_fd_}};
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, stop_fd_, &stop_event) != 0 ||
        ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &listen_event) != 0) {
        throw_errno("epoll_ctl");
    }
    try {
        std::lock_guard lock(threads_mutex_);
        for (unsigned i = 0; i < config_.threads; ++i) start_thread(false);
    } catch (...) {
        stop();  // threads already started would otherwise wait forever in epoll_wait
        join();
        ::close(stop_fd_);
        ::close(epoll_fd_);
        throw;
    }
}

Responder::~Responder() {
    stop();
    join();
    close_idle();
    ::close(stop_fd_);
    ::close(epoll_fd_);
}

void Responder::stop() {
    if (stopping_.exchange(true)) return;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto n = ::write(stop_fd_, &one, sizeof one);
    lookout_.stop();
}

// Joins outside the lock: a thread may need it to leave. Once stopped no thread starts, so
// the loop ends when a round finds none left.
void Responder::join() {
    for (;;) {
        std::vector<std::jthread> threads;
        {
            std::lock_guard lock(threads_mutex_);
            threads.swap(threads_);
            left_.clear();
        }
        if (threads.empty()) break;
        for (auto& thread : threads) {
            if (thread.joinable()) thread.join();
        }
    }
    // Requests left to a commit are answered by the thread that writes it: the journal's own,
    // when a round it began outlived every responder.
    std::unique_lock lock(left_mutex_);
    left_cv_.wait(lock, [&] { return left_to_commit_ == 0; });
}

// Requires threads_mutex_. Reuses the slot of a thread that left (joining it: it has ended,
// or is about to, without the lock). Throws when the thread cannot start.
void Responder::start_thread(bool spare) {
    std::size_t slot = threads_.size();
    if (!left_.empty()) {
        slot = left_.back();
        left_.pop_back();
        if (threads_[slot].joinable()) threads_[slot].join();
    } else {
        threads_.emplace_back();
    }
    // Counted before it runs, so that its first look (leaves_as_surplus, the epoll timeout)
    // sees itself.
    alive_.fetch_add(1);
    try {
        // Here, where a failure is handled, rather than on the thread, where it would end the
        // process.
        threads_[slot] = std::jthread([this, slot, spare, fcgi = new_request()]() mutable {
            thread_main(slot, spare, std::move(fcgi));
        });
    } catch (...) {
        alive_.fetch_sub(1);
        left_.push_back(slot);
        throw;
    }
}

// This thread is about to wait, for room in the pool (called with the pool's lock held) or for
// its request's commit: the sentry watches at once if nobody does, and if fewer than
// config_.threads would be left to serve, a spare starts.
// Decided under threads_mutex_, which a thread leaving as surplus also takes: checked outside
// it, a leaving thread and a blocking one could each see the other's old count, and neither
// start a spare nor stay. The thread starts under the pool's lock (the observer's caller): a
// cost paid once per spare, not per request.
void Responder::blocking() noexcept {
    blocked_.fetch_add(1);
    try {
        lookout_.promote_now();
        std::lock_guard lock(threads_mutex_);
        if (stopping_.load() || serving() >= config_.threads ||
            alive_.load() >= config_.threads * kSpareFactor) {
            return;
        }
        start_thread(true);
    } catch (...) {
        // No spare (EAGAIN under TasksMax, say): the others serve on; the pool's wait must not
        // unwind.
    }
}

void Responder::unblocked() noexcept { blocked_.fetch_sub(1); }

// Threads free to serve: alive and not waiting for room.
unsigned Responder::serving() const {
    const auto alive = alive_.load();
    const auto blocked = blocked_.load();
    return alive > blocked ? alive - blocked : 0;
}

// Whether this thread leaves: true when, at each of its looks for kSpareLinger (`since`: the
// first of those looks), enough threads were free to serve without it: config_.threads, and
// one more while any waits for room. Without that one, a thread just released from a wait
// (and counted free) would find exactly enough others, leave, and be replaced by a spare at
// the next wait, every kSpareLinger under steady saturation.
bool Responder::leaves_as_surplus(std::size_t slot, std::optional<Clock::time_point>& since) {
    if (alive_.load(std::memory_order_relaxed) <= config_.threads || !surplus()) {
        since.reset();
        return false;
    }
    const auto now = Clock::now();
    if (!since) since = now;
    if (now - *since < kSpareLinger) return false;
    std::lock_guard lock(threads_mutex_);
    if (!surplus()) return false;
    alive_.fetch_sub(1);
    left_.push_back(slot);
    return true;
}

// Whether more threads are free to serve (this one included) than must stay.
bool Responder::surplus() const {
    const unsigned keep = config_.threads + (blocked_.load() > 0 ? 1 : 0);
    return serving() > keep;
}

void Responder::thread_main(std::size_t slot, bool spare, OwnedRequest fcgi) {
    detail::name_this_thread(spare ? "ct-spare" : "ct-responder");
    detail::request_context().observer = this;
    if (!spare) started_.count_down();
    std::optional<Clock::time_point> surplus_since;
    for (;;) {
        if (leaves_as_surplus(slot, surplus_since)) break;
        // While spares run, every thread wakes now and then to look again, even with nothing
        // to serve, so idle spares leave too.
        const bool spares_run = alive_.load(std::memory_order_relaxed) > config_.threads;
        const int timeout =
            spares_run ? static_cast<int>(std::chrono::milliseconds(kSpareLinger).count()) : -1;
        epoll_event event{};
        const int n = lookout_.next(event, timeout);
        if (n == 0 || (n < 0 && errno == EINTR)) continue;
        if (n < 0) {
            log::error("responder: epoll_wait: {}", std::strerror(errno));
            break;
        }
        const int fd = event.data.fd;
        if (fd == stop_fd_ || (fd == listen_fd_ && stopping_.load())) break;
        try {
            if (fd == listen_fd_) {
                accept_one(fcgi);
            } else {
                unpark(fd);
                serve(fcgi, fd);
            }
        } catch (const std::exception& e) {
            log::error("responder: {}", e.what());
        }
    }
}

void Responder::FreeRequest::operator()(FCGX_Request* fcgi) const noexcept {
    FCGX_Free(fcgi, 0);
    delete fcgi;
}

Responder::OwnedRequest Responder::new_request() {
    OwnedRequest fcgi(new FCGX_Request);
    // -1: libfcgi never accepts by itself; the responder hands it connections.
    FCGX_InitRequest(fcgi.get(), -1, 0);
    return fcgi;
}

void Responder::accept_one(OwnedRequest& fcgi) {
    sockaddr_storage peer{};
    socklen_t length = sizeof peer;
    const int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &length, SOCK_CLOEXEC);
    const int error = errno;
    if (fd < 0) back_off_after(error);
    arm_listen();  // at once, so that another thread can take the next connection
    if (fd < 0 || !admits(fd, peer)) return;
    if (log::enabled(log::Level::debug)) {
        log::debug("responder: fd {} accepted from {}", fd, describe_peer(fd, peer));
    }
    set_timeouts(fd, config_.io_timeout);
    // nginx writes its request as soon as it has connected, so it is usually here already. A
    // peer that connects and says nothing waits in the epoll set, as an idle keep-conn connection
    // does, instead of holding this thread in libfcgi's read until --io-timeout.
    pollfd ready{fd, POLLIN, 0};
    if (::poll(&ready, 1, 0) != 1) {
        park(fd);
        return;
    }
    serve(fcgi, fd);
}

// FCGI_WEB_SERVER_ADDRS, which libfcgi would check in its own accept (OS_Accept). A refused
// peer is closed unread; warnings are rate-limited, as a scan could otherwise flood the log.
bool Responder::admits(int fd, const sockaddr_storage& peer) {
    const auto& address = reinterpret_cast<const sockaddr&>(peer);
    if (!config_.web_server_addrs || config_.web_server_addrs->allows(address)) return true;
    ::close(fd);
    if (const auto refused = refused_peer_warnings_.count()) {
        log::warn(
            "responder: refused {} connection(s), the last from {}: not in "
            "FCGI_WEB_SERVER_ADDRS",
            refused, peer_address(address));
    }
    return false;
}

// EMFILE and friends are transient: warn now and then, wait a little (or until stopped), and
// let the listen socket be tried again. Anything else (EAGAIN: another thread took it;
// ECONNABORTED: the peer left) just means there is nothing to serve.
void Responder::back_off_after(int error) {
    if (error != EMFILE && error != ENFILE && error != ENOBUFS && error != ENOMEM) return;
    if (const auto failures = accept_failure_warnings_.count()) {
        log::warn("responder: accept failed {} times: {}; backing off", failures,
                  std::strerror(error));
    }
    pollfd stop{stop_fd_, POLLIN, 0};
    ::poll(&stop, 1, static_cast<int>(kAcceptBackoff.count()));
}

void Responder::serve(OwnedRequest& fcgi, int fd) {
    fcgi->ipcFd = fd;
    // FCGX_Accept_r starts with FCGX_Finish_r, which would close the fd just set unless the
    // connection is marked keep-conn; the request's own flags then decide (ProcessBeginRecord).
    fcgi->keepConnection = 1;
    // < 0: the peer closed the connection or sent no valid request; libfcgi has closed it.
    if (FCGX_Accept_r(fcgi.get()) < 0) {
        log::debug("responder: fd {} closed: the peer closed it or sent no valid request", fd);
        return;
    }
    busy_.fetch_add(1, std::memory_order_relaxed);
    stats_.started();
    bool answered = true;
    try {
        answered = handle(fcgi);
    } catch (...) {
        drop(*fcgi);
    }
    if (answered) stats_.ended();  // else once its commit has told it (answer_left)
    busy_.fetch_sub(1, std::memory_order_relaxed);
}

// Handlers cannot throw this far (run_exchange catches); this is bad_alloc and the like.
// Finish the request here and drop its connection, whose state is unknown: otherwise the next
// FCGX_Accept_r would finish it onto another connection.
void Responder::drop(FCGX_Request& fcgi) noexcept {
    log::error("responder: request dropped: {}", describe_current_exception());
    if (fcgi.in != nullptr) {
        fcgi.keepConnection = 0;
        FCGX_Finish_r(&fcgi);
    }
    if (fcgi.ipcFd >= 0) ::close(std::exchange(fcgi.ipcFd, -1));
}

// Before the response is written: the request's durable jobs go to the journal, or the
// response becomes a 503 (and then its in-memory callbacks are gated by that 503 too).
// The store tells this thread's BlockingObserver while the thread waits on it: on SQLite only
// while another thread writes the round that takes its jobs (a round it writes itself is work,
// as a handler's is, and telling it would wake a thread to watch for each); on Redis for the
// whole wait, its group's round trip included.
std::vector<CommittedJob> Responder::commit_jobs(JobBatch& jobs, Exchange& exchange) {
    if (jobs_ == nullptr || jobs.empty()) return {};
    try {
        return jobs_->commit(jobs, exchange.response.status(), exchange.request->id());
    } catch (const JournalUnavailable& e) {
        exchange.response = journal_unavailable(*exchange.request, e);
        return {};
    }
}

struct Responder::Reply {
    Reply(const ResponderConfig& config, JobRunner* runner)
        : deferred(config.limits.max_deferred_per_request),
          jobs(runner != nullptr ? &runner->kinds() : nullptr,
               config.limits.max_deferred_per_request, config.limits.max_job_payload) {
        jobs.set_idempotency_header(config.idempotency_header);
    }

    const Clock::time_point started = Clock::now();
    OwnedRequest fcgi;  // once left to a commit; until then the serving thread holds it
    DeferredRegistry deferred;
    JobBatch jobs;
    Exchange exchange;
};

// False when the request was left to its commit (leave_to_commit): answered later, elsewhere.
bool Responder::handle(OwnedRequest& fcgi) {
    auto reply = std::make_unique<Reply>(config_, jobs_);
    reply->exchange = run_exchange(router_, copy_params(fcgi->envp), body_of(fcgi->in),
                                   config_.limits, reply->deferred, reply->jobs);
    if (jobs_ != nullptr && !reply->jobs.empty() && reply->deferred.dispatch_runs_anywhere() &&
        reply->exchange.response.body().size() <= kMaxBodyLeftToCommit) {
        leave_to_commit(fcgi, std::move(reply));
        return false;
    }
    auto committed = commit_jobs(reply->jobs, reply->exchange);
    answer(*fcgi, *reply, std::move(committed));
    return true;
}

class Responder::AfterReply final : public AfterCommit {
  public:
    explicit AfterReply(Responder& responder) : responder_(responder) {}
    void keep(std::unique_ptr<Reply> reply) noexcept { reply_ = std::move(reply); }

    void committed(std::vector<CommittedJob> jobs, std::exception_ptr failure) noexcept override {
        responder_.answer_left(*reply_, std::move(jobs), failure);
        reply_.reset();  // the connection is handed back; the request's copies go
        responder_.stats_.ended();
        // Last, and told under the lock: once the count is 0 join() may return, and the
        // responder be gone.
        std::lock_guard lock(responder_.left_mutex_);
        if (--responder_.left_to_commit_ == 0) responder_.left_cv_.notify_all();
    }

  private:
    Responder& responder_;
    std::unique_ptr<Reply> reply_;
};

// The thread takes a fresh FCGX_Request and serves on; the reply goes with the commit, whose
// writer answers it (answer_left), on this thread at once when no round was under way.
void Responder::leave_to_commit(OwnedRequest& fcgi, std::unique_ptr<Reply> reply) {
    // Both may throw (bad_alloc) while this thread still holds the request: serve() drops it.
    auto next = std::make_unique<AfterReply>(*this);
    auto fresh = new_request();
    auto& jobs = reply->jobs;
    const auto status = reply->exchange.response.status();
    const auto& request_id = reply->exchange.request->id();
    reply->fcgi = std::exchange(fcgi, std::move(fresh));
    next->keep(std::move(reply));
    {
        std::lock_guard lock(left_mutex_);
        ++left_to_commit_;
    }
    jobs_->commit_then(jobs, status, request_id, std::move(next));
}

// A failed commit answers 503, as in commit_jobs(); anything else thrown (bad_alloc) drops the
// request, as serve() does.
void Responder::answer_left(Reply& reply, std::vector<CommittedJob> committed,
                            std::exception_ptr failure) noexcept {
    try {
        try {
            if (failure) std::rethrow_exception(failure);
        } catch (const JournalUnavailable& e) {
            reply.exchange.response = journal_unavailable(*reply.exchange.request, e);
        }
        answer(*reply.fcgi, reply, std::move(committed));
    } catch (...) {
        drop(*reply.fcgi);
    }
}

// The response, then what follows it: the jobs start, the callbacks are dispatched.
void Responder::answer(FCGX_Request& fcgi, Reply& reply, std::vector<CommittedJob> committed) {
    auto& exchange = reply.exchange;
    write_response(fcgi.out, exchange.response);
    // Closing the streams here (FCGX_Finish_r would) writes the last records and
    // END_REQUEST, and tells whether they reached nginx; FCGX_Finish_r returns nothing.
    FCGX_FClose(fcgi.err);
    FCGX_FClose(fcgi.out);
    const bool delivered = FCGX_GetError(fcgi.out) == 0;
    if (exchange.body_unread) fcgi.keepConnection = 0;
    FCGX_Finish_r(&fcgi);
    const auto finished = Clock::now();
    if (fcgi.ipcFd >= 0) {
        park(std::exchange(fcgi.ipcFd, -1));
    } else {
        log::debug("responder: connection closed after its request (no keep-conn)");
    }

    const auto registered = reply.deferred.callbacks().size() + committed.size();
    const int status = exchange.response.status();
    ResponseOutcome outcome{exchange.request->id(), status,   delivered,
                            exchange.request,       finished, exchange.request->trace_parent()};
    if (!committed.empty()) {
        jobs_->start(std::move(committed), std::make_shared<const ResponseOutcome>(outcome));
    }
    reply.deferred.dispatch(pool_, std::move(outcome));
    stats_.record(status, exchange.response.body().size(), exchange.handler_time, delivered);
    if (config_.access_log) {
        const auto& request = *exchange.request;
        log::info("access {} {} {} {}B {:.3f}ms id={} deferred={}{}", request.method(),
                  request.path(), status, exchange.response.body().size(),
                  milliseconds(finished - reply.started), request.id(), registered,
                  delivered ? "" : " undelivered");
    }
}

// Under load nginx sends the next request on a keep-conn connection at once, so the thread the
// re-arm wakes (unpark()) often arrives while this one is still here: the set is updated under
// the lock, but the re-arm (a syscall) happens after it, or those two threads queue on the
// lock for every request (measured: about four futex calls per request through nginx). The
// lock still orders everything this thread did with the connection before whatever the woken
// thread does next, closing it included.
void Responder::park(int fd) {
    log::debug("responder: fd {} parked: idle until nginx sends on it", fd);
    {
        std::lock_guard lock(idle_mutex_);
        idle_.insert(fd);
    }
    if (arm_connection(fd)) return;
    {
        std::lock_guard lock(idle_mutex_);
        idle_.erase(fd);
    }
    ::close(fd);
}

void Responder::unpark(int fd) {
    log::debug("responder: fd {} unparked: readable", fd);
    std::lock_guard lock(idle_mutex_);
    idle_.erase(fd);
}

void Responder::arm_listen() {
    if (stopping_.load()) return;  // stop() took it out of the set
    epoll_event event{EPOLLIN | EPOLLONESHOT, {.fd = listen_fd_}};
    // ENOENT after stopping_ was checked: stop() has just taken it out, as it should.
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, listen_fd_, &event) != 0 && !stopping_.load()) {
        log::error("responder: epoll_ctl for the listen socket: {}", std::strerror(errno));
    }
}

// Puts a connection (back) in the epoll set for any thread to take; false if it cannot be.
// Through syscall(): ThreadSanitizer's epoll_ctl wrapper records an access to the fd but
// models only EPOLL_CTL_ADD as a release, so it would report the next owner's close() as a
// race with this re-arm. The handover is ordered by idle_mutex_ instead (park(), unpark()).
bool Responder::arm_connection(int fd) {
    epoll_event event{EPOLLIN | EPOLLONESHOT | EPOLLRDHUP, {.fd = fd}};
    if (::syscall(SYS_epoll_ctl, epoll_fd_, EPOLL_CTL_MOD, fd, &event) == 0) return true;
    if (errno == ENOENT && ::syscall(SYS_epoll_ctl, epoll_fd_, EPOLL_CTL_ADD, fd, &event) == 0) {
        return true;
    }
    log::error("responder: epoll_ctl for fd {}: {}", fd, std::strerror(errno));
    return false;
}

void Responder::close_idle() {
    std::lock_guard lock(idle_mutex_);
    for (const int fd : idle_) ::close(fd);
    idle_.clear();
}

}  // namespace crosstown
