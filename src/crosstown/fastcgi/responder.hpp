// crosstown::Responder: the threads that serve FastCGI requests from nginx.
//
// N threads share one epoll set holding the listen socket, every idle keep-conn connection and a
// stop eventfd. A thread that wakes for the listen socket accepts the connection itself and
// re-arms the socket at once; a thread that wakes for a keep-conn connection adopts it into its own
// FCGX_Request. So no thread ever blocks on an idle nginx keep-alive connection, and no accept
// mutex is needed: keep-conn without pinning. With fastcgi_keep_conn on, nginx caches idle
// connections; plain libfcgi keeps a thread reading each one, so once nginx caches as many
// connections as there are threads, new requests wait for fastcgi_read_timeout. Here nginx
// may cache far more connections than there are threads.
//
// Only one thread at a time sleeps in epoll_wait (Lookout): one that takes a request wakes
// nobody, and serves the next when it is done, unless its handler takes long, when another
// thread takes over within about a millisecond.
//
// For each request: run_exchange (router and handler), commit its durable jobs (a failed
// commit turns the response into a 503), write the response, note whether it
// reached nginx (FCGX_GetError), FCGX_Finish_r, hand a keep-conn connection back to the epoll set,
// and only then dispatch the request's deferred callbacks.
//
// A request whose durable jobs would wait for another thread's commit (SqliteJobStore's round)
// does not keep its thread waiting: the thread leaves the request with the commit
// (JobRunner::commit_then) and serves the next one, and the thread that writes the commit
// writes the response, starts the jobs and dispatches the callbacks. That saves the waiting
// thread's sleep and wake-up, and every request that arrives during a commit joins the next.
// A request whose dispatch could run a callback on its thread (same_thread, caller_runs) or
// wait for room, or whose response is big (kMaxBodyLeftToCommit), waits for its commit on its
// own thread as before: on another thread it would hold up the responses of the others in the
// same commit.
//
// A responder that waits for room in the pool's full queue (Overflow::block: at registration,
// for a request's first in-memory callback or a durable job, or at dispatch for callbacks that
// found no room to keep), or for the commit of its request's durable jobs, does not count
// against the `threads` serving: the responder starts a spare thread, up to 8 x `threads` in
// all, so requests that defer nothing are served as fast as ever while the pool is saturated,
// and requests that arrive during a commit join the next one instead of queueing behind it.
// A thread leaves once enough others have been free to serve for a while (kSpareLinger):
// leaving as soon as that was true made a saturated pool start and end a thread for nearly
// every request. Any thread may leave, so after a saturation the threads named ct-spare may be
// the ones that stayed.
//
// Running out of file descriptors (EMFILE/ENFILE) is transient: the thread logs (rate-limited),
// backs off and keeps serving. Connections get read/write timeouts so a stalled peer cannot
// hold a thread forever.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <latch>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_set>
#include <vector>

#include "crosstown/deferred/blocking_observer.hpp"
#include "crosstown/deferred/pool.hpp"
#include "crosstown/detail/log_throttle.hpp"
#include "crosstown/fastcgi/lookout.hpp"
#include "crosstown/fastcgi/web_server_addrs.hpp"
#include "crosstown/http/exchange.hpp"
#include "crosstown/http/router.hpp"
#include "crosstown/jobs/job_runner.hpp"
#include "crosstown/observe/request_stats.hpp"

struct FCGX_Request;

namespace crosstown {

struct ResponderConfig {
    unsigned threads = 8;
    std::chrono::milliseconds io_timeout{30'000};
    RequestLimits limits;
    bool access_log = true;
    // The header whose value is the default unique key of a request's durable jobs (JobBatch);
    // empty: none.
    std::string idempotency_header = "Idempotency-Key";
    // FCGI_WEB_SERVER_ADDRS: TCP peers not on the list are disconnected at once.
    std::optional<WebServerAddrs> web_server_addrs;
};

class Responder final : private detail::BlockingObserver {
  public:
    // Starts the threads on `listen_fd` (non-blocking, already listening; not owned).
    // FCGX_Init() must have been called.
    // `jobs` runs durable jobs; null when the journal is off.
    Responder(int listen_fd, const Router& router, Pool& pool, RequestStats& stats,
              ResponderConfig config, JobRunner* jobs = nullptr);
    ~Responder();  // stop(), join(), then closes the idle keep-conn connections
    Responder(const Responder&) = delete;
    Responder& operator=(const Responder&) = delete;

    // Stops accepting and returns at once. Each thread finishes the request it is serving
    // (dispatching its callbacks) and leaves.
    void stop();
    // Joins the threads, then waits for the requests left to a commit to be answered.
    void join();
    // Blocks until every thread waits for connections (the moment to tell systemd READY=1).
    void wait_until_accepting() { started_.wait(); }

    unsigned busy() const { return busy_.load(std::memory_order_relaxed); }

  private:
    // libfcgi's request state, on the heap: a request left to a commit takes it along.
    struct FreeRequest {
        void operator()(FCGX_Request* fcgi) const noexcept;
    };
    using OwnedRequest = std::unique_ptr<FCGX_Request, FreeRequest>;
    struct Reply;      // a request between its handler and its response
    class AfterReply;  // a request left to a commit, as the commit sees it

    static constexpr unsigned kSpareFactor = 8;  // at most this times `threads` in all
    static constexpr std::chrono::seconds kSpareLinger{2};
    // A request left to its commit has its response written by the commit's thread, after the
    // others of the same round: one bigger than this could fill the socket's buffer and hold
    // them up while nginx reads it, so it waits for its commit on its own thread instead.
    static constexpr std::size_t kMaxBodyLeftToCommit = 64 * 1024;

    void thread_main(std::size_t slot, bool spare, OwnedRequest fcgi);
    bool leaves_as_surplus(std::size_t slot,
                           std::optional<std::chrono::steady_clock::time_point>& since);
    void start_thread(bool spare);
    void blocking() noexcept override;
    void unblocked() noexcept override;
    unsigned serving() const;
    bool surplus() const;
    static OwnedRequest new_request();
    void accept_one(OwnedRequest& fcgi);
    void serve(OwnedRequest& fcgi, int fd);
    bool handle(OwnedRequest& fcgi);
    void leave_to_commit(OwnedRequest& fcgi, std::unique_ptr<Reply> reply);
    void answer_left(Reply& reply, std::vector<CommittedJob> committed,
                     std::exception_ptr failure) noexcept;
    std::vector<CommittedJob> commit_jobs(JobBatch& jobs, Exchange& exchange);
    void answer(FCGX_Request& fcgi, Reply& reply, std::vector<CommittedJob> committed);
    void drop(FCGX_Request& fcgi) noexcept;
    void park(int fd);    // a keep-conn connection waits in the epoll set for its next request
    void unpark(int fd);  // a thread adopts it
    void arm_listen();
    bool arm_connection(int fd);
    void back_off_after(int error);
    bool admits(int fd, const sockaddr_storage& peer);
    void close_idle();

    const int listen_fd_;
    const Router& router_;
    Pool& pool_;
    JobRunner* const jobs_;
    RequestStats& stats_;
    const ResponderConfig config_;
    const int epoll_fd_;
    Lookout lookout_{epoll_fd_};  // which thread waits for the next request
    int stop_fd_ = -1;
    std::atomic<bool> stopping_{false};
    std::atomic<unsigned> busy_{0};
    std::mutex left_mutex_;
    std::condition_variable left_cv_;
    unsigned left_to_commit_ = 0;  // guarded by left_mutex_; requests not told by their commit
    detail::LogThrottle accept_failure_warnings_{std::chrono::seconds(5)};
    detail::LogThrottle refused_peer_warnings_{std::chrono::seconds(5)};

    std::mutex idle_mutex_;
    std::unordered_set<int> idle_;  // keep-conn connections waiting in the epoll set
    std::latch started_;
    std::atomic<unsigned> blocked_{0};   // threads waiting for room in the pool
    std::atomic<unsigned> alive_{0};     // threads serving or blocked, not leaving
    std::mutex threads_mutex_;           // starting, leaving and joining threads
    std::vector<std::jthread> threads_;  // guarded by threads_mutex_; indexed by slot
    std::vector<std::size_t> left_;      // guarded by threads_mutex_; slots whose thread left
};

}  // namespace crosstown
