// crosstown::RedisJobStore: durable jobs kept in a Redis server that instances on many hosts
// share, through Redis Streams.
//
// A request's jobs are held for this instance before its response is written (a hash per job
// and the instance's held set, in one script: all or none), and released after FCGX_Finish_r
// to their kind's stream, again in one script. So no instance can see a job before the
// response that made it has gone out. Every instance reads the streams with one consumer group
// and runs what it takes; a finished job is acknowledged and deleted with its hash, a dead one
// goes to the dead stream with its last error. A failed attempt's job, and one released with a
// time ahead (DurableOptions::delay, run_at), wait in a sorted set scored by their due time;
// every instance moves those due to their streams (promote_due()), so a retry runs on whichever
// instance is free then, not on the one that failed it.
//
// An instance beats (a key that expires after claim_after). When it stops beating, any other
// releases the jobs it held and, with XAUTOCLAIM, claims those it had taken and not finished.
// An instance touches the entries it still runs at every beat, so a job that
// legitimately runs longer than claim_after is not claimed from a live instance: the claim
// time follows the instance's heartbeat, not the kind's timeout.
//
// Writes after the response (releases, finishes) that meet no server, or a refusal for now
// (OOM, READONLY, LOADING, ...), are unsent: written again at the next beat, in order for each
// job. Each beat also releases the jobs of this instance's held set that no response here is
// writing, so a job that got its 2xx never waits for its instance to stop.
//
// Thread-safe. Connections are lent one per caller from a small set; the feed's blocking
// reads have one of their own.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "crosstown/detail/log_throttle.hpp"
#include "crosstown/jobs/job_kind.hpp"
#include "crosstown/jobs/job_store.hpp"
#include "crosstown/jobs/journal_config.hpp"
#include "crosstown/jobs/redis/redis_connection.hpp"

namespace crosstown {

// Figures for metrics and the status page.
struct RedisJournalFigures {
    std::uint64_t claimed = 0;           // entries taken over from dead consumers, by this instance
    std::uint64_t orphans_released = 0;  // held jobs of dead instances released by this one
    std::uint64_t failed_commands = 0;   // round trips that failed (server unreachable, ...)
    std::uint64_t round_trips = 0;       // every round trip: a command, script or pipeline
    std::uint64_t writes_along = 0;      // releases and finishes sent with a group of holds
    std::size_t unwritten = 0;           // releases and finishes waiting to be written
};

// One kind's stream, as the server sees it.
struct RedisStreamFigures {
    std::string kind;
    std::uint64_t length = 0;   // entries in the stream (not finished)
    std::uint64_t pending = 0;  // taken by some consumer and not finished
};

// A job's fields by name, from a reply of name/value pairs: HGETALL of its hash (empty when
// the job is gone), or its stream entry.
using RedisJobFields = std::map<std::string, std::string>;
RedisJobFields redis_job_fields(const redisReply* pairs);
// The job a hash holds (its kind from the hash), and the number in a Redis string.
StoredJob redis_stored_job(std::int64_t id, const RedisJobFields& fields);
std::int64_t redis_integer(std::string_view text);

class RedisJobFeed;

class RedisJobStore final : public JobStore {
  public:
    static constexpr std::string_view kGroup = "crosstown";

    // Connects (trying again for options.wait), creates the kinds' streams and consumer group,
    // and beats once. Throws JournalError naming the address.
    RedisJobStore(const std::string& address, RedisJournalOptions options,
                  const std::vector<std::string>& kinds);
    // Stops the feed and the writer thread (which writes what is queued first), if start()
    // began them. Without close(), what is unsent is dropped and the heartbeat left to expire:
    // other instances release and claim this one's jobs after claim_after.
    ~RedisJobStore() override;
    RedisJobStore(const RedisJobStore&) = delete;
    RedisJobStore& operator=(const RedisJobStore&) = delete;

    std::vector<std::int64_t> commit(std::span<const NewJob> jobs) override;
    // The hold joins the next group and the caller goes on. It is told by a commit_then()
    // caller that found no group on its way (which sends groups while holds that nobody waits
    // for are queued), or by the writer thread (started with the feed) when a commit() caller
    // sent its group, or left it queued: that caller's request waits for its own hold only.
    void commit_then(std::unique_ptr<PendingCommit> pending) noexcept override;
    bool shared() const override { return true; }
    void release(std::span<const std::int64_t> ids) override;
    void complete(std::int64_t id) override;
    void discard(std::int64_t id) override;
    void reschedule(std::int64_t id, unsigned attempts, std::int64_t run_at_ms,
                    std::string error) override;
    void bury(std::int64_t id, unsigned attempts, std::string error) override;
    void record_attempt(std::int64_t id, unsigned attempt) override;
    // Returns once every write handed over before it (releases and completions too) is
    // written, or unsent until the next beat.
    void flush() override;
    const std::string& path() const override { return address_.text; }
    // Starts the feed (RedisJobFeed) that beats and, when `take`, takes jobs for `runner`.
    void start(JobRunner& runner, bool take) override;
    void stop_taking() override;
    // Stops the feed, then leave(); logs and returns the releases and finishes still unsent.
    std::uint64_t close() override;
    std::map<std::string, std::size_t> bookkeeping() const override;
    // Every instance's jobs (see JobCensus), counting up to kCensusLimit scheduled and dead ones.
    JobCensus census(std::size_t latest_dead) const override;
    static constexpr std::size_t kCensusLimit = 1000;

    // For the feed, from one thread. New jobs of the kinds with openings (kind -> how many),
    // waiting up to `block` for some (0: not at all). One round trip: each entry carries its
    // job (an entry of only an id, as earlier versions wrote, costs a read of the job's hash).
    // Throws JournalError.
    std::vector<StoredJob> take(const std::map<std::string, std::size_t>& openings,
                                std::chrono::milliseconds block);
    // For the feed: when a scheduled job may be due (the next one's time at the last look, a
    // retry or delayed job of this instance's since, or a second after the last look, for other
    // instances' jobs), moves those due to their streams. Returns how long the feed may wait
    // before it calls again. Throws JournalError.
    std::chrono::milliseconds promote_due();
    // For the feed: up to `wanted` starts of `kind` under its rate, shared by every instance
    // (one script), and how long until the next start is there. Throws JournalError.
    struct Starts {
        std::size_t granted = 0;
        std::chrono::milliseconds wait{0};
    };
    Starts take_starts(const std::string& kind, const JobRate& rate, std::size_t wanted);
    // For the feed: takes out of `jobs`, taken a while ago, those cancelled since (their job is
    // gone), and acknowledges and deletes their entries. Two round
    // trips at most; `jobs` is left as it was when it throws JournalError.
    void drop_cancelled(std::vector<StoredJob>& jobs);
    // Jobs of dead consumers, idle for claim_after, taken over by this instance. A lost
    // consumer group is created again (nothing was pending in it any more).
    std::vector<StoredJob> claim(const std::map<std::string, std::size_t>& openings);
    // True once the scan of pending entries of each kind in `openings` has come round to the start
    // (claim() carries each on from where its last call stopped).
    bool claim_scan_done(const std::map<std::string, std::size_t>& openings) const;
    // Writes the releases and finishes that failed before, beats, touches what this instance
    // still runs and releases stranded and dead instances' held jobs; each step on its own, so
    // that one failing does not stop the others. Throws JournalError when the heartbeat could
    // not be refreshed.
    void beat();
    // At a clean stop, once the feed has stopped beating: writes what was unsent, and deletes this
    // instance's heartbeat, so that what it still held is released by the next instance that
    // looks, without waiting for claim_after.
    void leave() noexcept;

    const std::string& instance() const { return options_.instance; }
    const RedisJournalOptions& options() const { return options_; }
    RedisJournalFigures figures() const;
    // Asks the server (a round trip). Throws JournalError.
    std::vector<RedisStreamFigures> streams() const;

  private:
    class Lease;  // a connection lent to one caller
    // A job this instance did not take goes (held, never released; or run twice, its other run
    // finished): its unique key "free" now, or "keep" for its unique_for.
    void drop_held(std::int64_t id, const char* key_action);
    struct Taken {
        std::string kind;
        std::string entry;  // the stream entry's id
        // The job's attempts when the entry was added (a retry's entry says; else 0): each
        // delivery of the entry but the last may have been one more, ended by a death.
        unsigned attempts_before = 0;
    };
    // A write after the response, with the jobs it is about: a write waits behind unsent ones
    // only when they share a job. Each ends the jobs here (a release, a completion, a retry
    // handed to the scheduled set, a death), so while unsent its jobs count as kept at shutdown.
    struct Write {
        std::vector<std::int64_t> ids;
        const RedisScript* script = nullptr;
        std::vector<std::string> args;
    };

    // One request's jobs on their way to the hold script. Holds go out in groups, as the
    // SQLite journal's commits do: a committer that finds no group on its way sends every hold
    // queued so far in one pipeline, and the others wait for theirs.
    struct Hold;
    void draw(Hold& hold) const;                // new ids, and the script's arguments with them
    void begin(Hold& hold);                     // draw(), and the hold counted in flight
    std::vector<std::int64_t> end(Hold& hold);  // what commit() returns, or throws
    void tell(Hold& hold) noexcept;             // a commit_then's: end(), told to its pending
    // Under holds_mutex_: holds are queued that no caller waits for, and no group is on its
    // way.
    bool holds_unled() const;
    // Under holds_mutex_ (kept): sends groups while holds_unled().
    void lead_holds(std::unique_lock<std::mutex>& lock);
    void hold_group(std::unique_lock<std::mutex>& lock, bool tell_here);  // as lead_holds
    // Asks the writer thread to tell `untold` (commit_then holds sent) and to lead the holds
    // queued; false when there is no writer thread (or no memory to hand them over).
    bool hand_to_writer(std::span<Hold* const> untold) noexcept;
    void tell_each(std::span<Hold* const> holds) noexcept;  // and deletes them
    void send_holds(std::vector<Hold*> group, std::vector<Write>* along);

    RedisConnection connect() const;
    void ensure_groups(RedisConnection& connection);
    void save_unsent(Write write);
    void save_all_unsent(std::vector<Write>& writes);  // those not sent, or not known to be
    bool unsent_for(const std::vector<std::int64_t>& ids) const;  // under mutex_
    template <class Step>
    void beat_step(RedisConnection& connection, const char* what, Step step);
    void claim_name();
    void drop_idle() const;
    void release_stranded(RedisConnection& connection);
    Lease lease() const;
    void give_back(RedisConnection connection) const;
    // Writes `write`, or saves it, unsent, for beat() when the server cannot be reached; returns
    // once either is done. Writes go out in groups, as the SQLite journal's commits do: a
    // caller that finds no group on its way writes every write queued so far in one round trip
    // (a pipeline), and the callers meanwhile wait for theirs.
    void write_or_save(Write write);
    // Queues `write` for the next group and returns: a release or a completion, whose caller
    // (a responder, its response out; a worker, its job done) has nothing to wait for. A
    // completion lost in a crash runs its job again, as one lost before it was written would.
    // The next group of holds takes them along in its pipeline; the writer thread writes them
    // when no group of holds is on its way or queued, and no caller that waits is there to
    // take them along. Before it started, and after it stopped, this is write_or_save.
    void write_soon(Write write);
    void writer_loop(std::stop_token stop);
    // Under mutex_: until the writes queued so far are written or unsent.
    void wait_written(std::unique_lock<std::mutex>& lock);
    void write_group(std::unique_lock<std::mutex>& lock);  // requires mutex_, keeps it
    // A group of writes on its way (writing_ set while it is), and queued_count_ when it was
    // taken: the count written once it is.
    struct WriteGroup {
        std::vector<Write> writes;
        std::uint64_t last = 0;
    };
    WriteGroup take_writes();                  // under mutex_, with no group on its way
    void end_writes(const WriteGroup& group);  // under mutex_
    // Under holds_mutex_, as a group of holds goes: marks it on its way (hold_trip_on_way_),
    // and takes the writes queued along with it (take_writes()) unless a group of them is on
    // its way.
    std::optional<WriteGroup> start_hold_trip() noexcept;
    static std::vector<RedisScriptCall> calls_of(const std::vector<Write>& writes);
    void send_group(std::vector<Write>& group);
    // Unsends the writes refused for now and logs those refused for good; true when some were
    // refused for now (the connection should go).
    bool settle_writes(std::vector<Write>& group, std::span<const RedisReply> replies);
    bool refused_for_now(const RedisReply& reply) const;
    RedisReplyError refused(const RedisReply& error_reply) const;  // naming the server
    void send_unsent(RedisConnection& connection);
    void count_deliveries(RedisConnection& connection, const std::string& kind,
                          const std::vector<std::pair<std::string, Taken>>& entries,
                          std::size_t first,
                          std::map<std::pair<std::string, std::string>, long long>& out);
    std::vector<StoredJob> load(RedisConnection& connection,
                                const std::vector<std::pair<std::string, Taken>>& entries);
    std::string key(std::string_view what) const;

    const RedisAddress address_;
    RedisJournalOptions options_;
    const std::vector<std::string> kinds_;
    std::string password_;

    mutable std::mutex mutex_;
    mutable std::vector<RedisConnection> idle_;  // guarded by mutex_
    std::map<std::int64_t, Taken> taken_;        // guarded by mutex_; running here
    std::set<std::int64_t> holding_;  // guarded by mutex_; held, their response in progress
    // guarded by mutex_; held jobs with a run_at or a delay (unix ms, ms), by id: at their
    // release the feed is told when they are due
    std::map<std::int64_t, std::pair<std::int64_t, std::int64_t>> timed_;
    std::set<std::int64_t> stranded_;  // guarded by mutex_; held, not holding_, at the last look
    std::uint64_t beats_ = 0;          // guarded by mutex_; looks for stranded jobs so far
    // guarded by mutex_; commits between their start and holding_, by the looks before them
    std::multiset<std::uint64_t> commits_in_flight_;
    // guarded by mutex_; failed, to write again in order. Only the feed thread removes
    // (send_unsent), and only from the front, once the write succeeded.
    std::deque<Write> unsent_;
    // guarded by mutex_; the next group to write, and the writes queued and written so far,
    // counted: a caller waits until the count written reaches its own.
    std::vector<Write> queued_;
    std::uint64_t queued_count_ = 0, written_count_ = 0;
    bool writing_ = false;  // guarded by mutex_; a group is on its way
    std::condition_variable written_cv_;
    // guarded by mutex_; the writes in queued_ whose callers wait for them (write_or_save);
    // the others are write_soon's
    std::size_t waited_queued_ = 0;
    bool writer_running_ = false;  // guarded by mutex_; writer_ takes write_soon's writes
    bool writer_idle_ = false;     // guarded by mutex_; writer_ waits on writer_cv_
    std::condition_variable_any writer_cv_;
    mutable std::chrono::steady_clock::time_point retry_connect_at_{};  // guarded by mutex_
    mutable std::mutex holds_mutex_;
    std::vector<Hold*> holds_;       // guarded by holds_mutex_; the next group to send
    std::size_t waiting_holds_ = 0;  // guarded by holds_mutex_; holds_' commit() callers
    bool holds_on_way_ = false;      // guarded by holds_mutex_
    // guarded by mutex_: a group of holds is on its way, or queued to follow one; for the
    // writer thread, which may not take holds_mutex_ under mutex_. The end of the last
    // notifies writer_cv_.
    bool hold_trip_on_way_ = false;
    // guarded by mutex_: a commit() caller left holds queued that nobody waits for: the
    // writer thread sends them
    bool holds_to_lead_ = false;
    std::vector<Hold*> untold_holds_;  // guarded by mutex_; sent, for the writer thread to tell
    std::condition_variable holds_sent_cv_;
    std::optional<RedisConnection> feed_connection_;    // the feed thread's own
    std::map<std::string, std::string> claim_cursors_;  // the feed thread's; XAUTOCLAIM's, by kind
    std::atomic<std::uint64_t> claimed_{0}, orphans_released_{0};
    // Unix ms when promote_due() looks next; moved earlier by this instance's own schedules.
    std::atomic<std::int64_t> next_promote_ms_{0};
    void promote_by(std::int64_t due_ms);
    // Failed beat steps repeat at every beat while their cause lasts: a line per 5 s is enough.
    detail::LogThrottle beat_log_{std::chrono::seconds(5)};
    mutable std::atomic<std::uint64_t> failed_commands_{0};
    mutable std::atomic<std::uint64_t> round_trips_{0};
    std::atomic<std::uint64_t> writes_along_{0};
    std::jthread writer_;  // from start(): writes what write_soon queued; drains as it stops
    std::unique_ptr<RedisJobFeed> feed_;  // last: gone first, with its thread
};

}  // namespace crosstown
