// crosstown::JobRunner: runs durable jobs on the process's pool, with their kinds' rules.
//
//   commit()  before the response: the request's jobs whose gate passes go to the store in
//             one transaction (SqliteJobStore's group commit, or RedisJobStore's hold), or
//             JournalUnavailable is thrown and the response becomes a 503. commit_then() is
//             the same without waiting for another thread's transaction: what follows is told
//             on whichever thread writes it.
//   start()   after FCGX_Finish_r: each job is handed to the pool, like a deferred callback;
//             with a shared store (Redis) it is released instead, and comes back through
//             receive() on whichever instance takes it.
//   replay()  at start, before READY=1: the journal's jobs that are not dead are queued again.
//
// A job with a delay or run_at (DurableOptions) and a failed attempt's retry wait for their
// time here, with a store that runs its own jobs; with a shared store they wait in the store,
// which hands them to whichever instance takes them when due.
//
// A job taken over from a process that may have died running it (replayed, or claimed from a
// dead Redis consumer) has its attempt recorded before it runs; one whose recorded attempts
// reached max_attempts is dead at once, "the process died during attempt N". So a job that
// crashes its process (a segfault, the OOM killer) is run at most max_attempts + 1 times: its
// first attempt, which costs no write, is not recorded. One whose last recorded attempt ended
// with its process (a suspect) runs alone, while nothing else runs and nothing new starts, and
// its end is written before the next job starts: so the jobs that happened to run beside a
// poison job do not die with it again and again until they too are dead. (A suspect given up
// past its timeout stops being waited for: the others go on beside its thread.)
//
// Each attempt gets a stop token that is requested at the kind's timeout (and at the pool's drain
// deadline). A job that returns is deleted from the journal; one that throws or timed out is
// rescheduled with backoff, or buried as dead after max_attempts. A handler still running
// kStopGrace after its timeout's stop request is given up: its attempt fails then (rescheduled or
// buried), its place in its kind's concurrency goes to the next job, and it is counted as stuck and
// logged once; if it returns later its result is ignored. So a handler that ignores its stop token
// holds one worker (the elastic pool grows around it), never its kind. At most `concurrency` jobs
// of a kind run at once; the others wait here, in order. A durable job never waits for room in the
// pool's queue either: when the queue is full it waits here (it is on disk already), and a clock
// thread feeds it to the pool as room appears. So no responder ever blocks on a durable job after
// its response, whatever the overflow policy.
//
// At shutdown (stop(), after the pool's drain), whatever has not finished simply stays in the
// journal: kept, and run at the next start. An attempt cut short by the drain is not counted
// as a failure, nor as a success even when its handler returned normally (it may have stopped
// early, as its token asked): it is kept.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "crosstown/deferred/pool.hpp"
#include "crosstown/deferred/response_outcome.hpp"
#include "crosstown/jobs/job_batch.hpp"
#include "crosstown/jobs/job_kinds.hpp"
#include "crosstown/jobs/job_store.hpp"
#include "crosstown/jobs/stored_job.hpp"
#include "crosstown/observe/latency_histogram.hpp"

namespace crosstown {

// Durable jobs by outcome. `outstanding` are committed (or replayed) and not finished: at
// shutdown, the kept ones.
struct JobCounts {
    std::uint64_t enqueued = 0;
    std::uint64_t replayed = 0;
    std::uint64_t received = 0;  // taken from a shared store (Redis), committed on any host
    std::uint64_t succeeded = 0;
    std::uint64_t retried = 0;  // failed attempts rescheduled
    std::uint64_t dead = 0;
    std::uint64_t skipped = 0;  // skip_if_undelivered, and the response was not delivered
    // Not committed: their unique key was taken (DurableOptions::unique_key). Not in enqueued.
    std::uint64_t deduplicated = 0;
    std::uint64_t outstanding = 0;

    JobCounts& operator+=(const JobCounts& other);
    // "jobs enqueued=N replayed=N received=N succeeded=N retried=N dead=N skipped=N
    // deduplicated=N kept=N"
    std::string summary() const;
};

// One kind's figures, for metrics and the status page.
struct KindReport {
    std::string kind;
    JobCounts counts;
    unsigned running = 0;
    unsigned stuck = 0;         // given up past their timeout, their handlers still running
    std::size_t waiting = 0;    // for a worker, or for room in the pool
    std::size_t retrying = 0;   // waiting here for a retry's due time
    std::size_t scheduled = 0;  // waiting here for a delayed first attempt's time
};

// A request's jobs as committed: their ids, for start().
struct CommittedJob {
    std::int64_t id;
    DurableRegistration registration;
};

// What follows a request's commit when its thread does not wait for it (commit_then).
class AfterCommit {
  public:
    virtual ~AfterCommit() = default;
    // Called once, on whichever thread wrote the jobs: what commit() would have returned, or
    // `failure`, what it would have thrown (JournalUnavailable: the response becomes a 503).
    virtual void committed(std::vector<CommittedJob> jobs, std::exception_ptr failure) noexcept = 0;
};

class JobRunner {
  public:
    // How long a handler has to return once its timeout requested stop, before it is given up.
    static constexpr std::chrono::milliseconds kStopGrace{500};

    JobRunner(const JobKinds& kinds, JobStore& store, Pool& pool);
    ~JobRunner();  // stop()
    JobRunner(const JobRunner&) = delete;
    JobRunner& operator=(const JobRunner&) = delete;

    void replay(std::vector<StoredJob> jobs);
    // Jobs a shared store's consumer took for this instance (RedisJobFeed).
    void receive(std::vector<StoredJob> jobs);
    // The openings: the kinds that could start jobs now, and how many (their concurrency, or
    // the pool's workers, minus those running; none while some already wait). What a shared
    // store's consumer takes.
    std::map<std::string, std::size_t> openings() const;
    // openings(), waiting while there are none for a job to end, up to `timeout` or `stop`: how
    // a consumer waits for room without polling (a poll's pause bounds its jobs/s).
    std::map<std::string, std::size_t> wait_for_openings(std::stop_token stop,
                                                         std::chrono::milliseconds timeout) const;
    // What the runner keeps about jobs in flight, by name (retries waiting, deadlines, jobs
    // launched, waiting and running per kind, suspects): all zero once it is idle.
    std::map<std::string, std::size_t> bookkeeping() const;
    std::vector<CommittedJob> commit(JobBatch& batch, int status, const std::string& request_id);
    // commit() without waiting for another thread's write (JobStore::commit_then): `next` is
    // told on this thread, or later on the thread that writes the jobs.
    void commit_then(JobBatch& batch, int status, const std::string& request_id,
                     std::unique_ptr<AfterCommit> next) noexcept;
    void start(std::vector<CommittedJob> jobs, std::shared_ptr<const ResponseOutcome> outcome);
    // Outside a request: commits one job now and starts it, unless its unique key is taken
    // (counted deduplicated). Throws JournalUnavailable, UnknownJobKind.
    void enqueue_now(std::string_view kind, std::string payload,
                     const DurableOptions& options = {});
    // No more starts or retries; returns how many jobs stay in the journal unfinished.
    std::uint64_t stop();
    // Waits while as many jobs of `kind` wait in its line as the pool's queue holds (its
    // queue_capacity): a handler registering a durable job calls it when Admission says so
    // (every overflow policy but spill), so that durable work pushes back on the clients that
    // make it instead of piling up in memory. Per kind, so that one slow kind holds back only its
    // own clients. Tells the thread's BlockingObserver, like the pool's own wait for room.
    void wait_for_room(std::string_view kind);
    // Ends every such wait, now and from now on: the drain deadline passed, or a second signal
    // came, while handlers still waited.
    void end_room_waits();

    const JobKinds& kinds() const { return kinds_; }
    JobCounts totals() const;
    // Each kind's counts, without the lock report() takes (relaxed counters).
    std::map<std::string, JobCounts> counts_by_kind() const;
    std::vector<KindReport> report() const;
    // The store's census (JobStore::census), with every kind defined here, and, when the store
    // runs its own jobs, those this process runs moved from ready to running and the lag taken
    // from its kinds' lines. A query of the store: for the status page's sampler. Throws
    // JournalError when the store cannot be read.
    JobCensus census(std::size_t latest_dead) const;
    // From commit to the first attempt's start, and each attempt's run time.
    LatencyHistogram::Snapshot start_delay() const { return start_delay_.snapshot(); }
    LatencyHistogram::Snapshot run_time() const { return run_time_.snapshot(); }
    const JobStore& store() const { return store_; }
    // Blocks until no job runs, waits, or waits here for its time, a retry's or a delay's (tests
    // and benchmarks; with a shared store those wait in the store, and are not waited for).
    void wait_idle();

  private:
    using Clock = std::chrono::steady_clock;
    class RequestCommit;  // a commit_then() as the store sees it
    std::vector<NewJob> new_jobs(const std::vector<DurableRegistration>& registrations,
                                 std::string_view request_id, std::string_view trace_parent);
    std::vector<CommittedJob> count_committed(std::vector<DurableRegistration>& registrations,
                                              const std::vector<std::int64_t>& ids);
    struct Entry {
        Job job;
        const JobKind* kind = nullptr;
        Clock::time_point committed_at;
        bool fresh = false;  // committed by this process (not replayed, not a retry)
        std::shared_ptr<const ResponseOutcome> outcome;
        bool resumed = false;   // StoredJob::resumed: its attempt is recorded before it runs
        bool recorded = false;  // it was: a cut short by shutdown undoes it
        // Resumed, and its last recorded attempt ended with its process: it may be what kills
        // it, so it runs alone (suspects_).
        bool suspect = false;
        // Since when it has been due (launched here, or as the store keeps it when replayed):
        // its place in its kind's lag.
        Clock::time_point ready_at{};
    };
    struct KindState;
    struct Deadline {
        Clock::time_point at;
        std::stop_source source;  // a handle on the attempt's stop state
        Entry* entry = nullptr;   // the attempt's, on its worker's stack while the handler runs
        bool fired = false;       // stop requested
        bool given_up = false;    // kStopGrace later, still running: failed, its place freed
    };

    KindState& state_of(const std::string& kind);
    std::map<std::string, std::size_t> openings_locked() const;  // under mutex_
    void queue_stored(std::vector<StoredJob> jobs, bool received);
    void release(std::vector<CommittedJob>& jobs, const ResponseOutcome& outcome);
    void launch_locked(Entry entry, std::vector<Entry>& to_pool);
    // Under mutex_: launch_locked once `due`, now or later (later_).
    void launch_when_due(Entry entry, Clock::time_point due, std::vector<Entry>& to_pool);
    void launch_waiting(KindState& state, std::vector<Entry>& to_pool);
    void start_suspect(std::vector<Entry>& to_pool);
    bool isolating() const { return suspect_running_ || !suspects_.empty(); }  // under mutex_
    void submit(std::vector<Entry> entries);
    void attempt(std::int64_t id, std::stop_token worker_stop);
    void attempt(Entry& entry, std::stop_token worker_stop);
    void record(Entry& entry);
    void bury_resumed(const StoredJob& job);
    void correct_census(JobCensus& census) const;
    void finish(Entry& entry, std::optional<std::string> error, bool cut_short);
    void fail(Entry& entry, const std::string& error);
    void clock_loop(std::stop_token stop);
    void check_deadlines(Clock::time_point now, std::vector<std::stop_source>& overdue,
                         std::vector<Entry>& given_up);
    void give_up(Entry& entry);
    Clock::time_point next_wake() const;
    void wake_clock_by(Clock::time_point at);

    const JobKinds& kinds_;
    JobStore& store_;
    Pool& pool_;
    std::map<std::string, std::unique_ptr<KindState>, std::less<>> states_;  // fixed at start
    LatencyHistogram start_delay_;
    LatencyHistogram run_time_;

    mutable std::mutex mutex_;
    std::condition_variable_any clock_cv_;
    mutable std::condition_variable idle_cv_;  // a job ended, or the runner stops
    std::condition_variable room_cv_;  // waiting_jobs_ went below the pool's queue capacity
    // guarded by mutex_; by due time: retries and delayed first attempts (with a shared store
    // both wait in the store instead, for any instance)
    std::multimap<Clock::time_point, Entry> later_;
    // guarded by mutex_; running attempts, by serial: a given-up attempt may still run beside
    // its job's retry
    std::map<std::uint64_t, Deadline> deadlines_;
    std::uint64_t attempt_serial_ = 0;        // guarded by mutex_
    std::map<std::int64_t, Entry> launched_;  // guarded by mutex_; in the pool's queue
    std::size_t waiting_jobs_ = 0;  // guarded by mutex_; jobs waiting in their kinds' lines
    std::deque<Entry> suspects_;    // guarded by mutex_; suspects waiting to run alone
    bool suspect_running_ = false;  // guarded by mutex_
    bool stopping_ = false;         // guarded by mutex_
    bool rescan_ = false;           // guarded by mutex_; the clock should look again now
    bool clock_woken_ = false;      // guarded by mutex_; rescan_ was just set: notify clock_cv_
    // guarded by mutex_: when the sleeping clock looks next; min() while it is awake
    Clock::time_point clock_wakes_at_ = Clock::time_point::min();
    bool room_waits_ended_ = false;  // guarded by mutex_; see end_room_waits()
    std::jthread clock_;             // last: starts once the members above exist
};

// The runner of the running Server, for follow_response_durably outside a request.
void set_process_job_runner(JobRunner* runner);
JobRunner* process_job_runner();

}  // namespace crosstown
