#include "crosstown/jobs/job_runner.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <random>

#include "crosstown/deferred/blocking_observer.hpp"
#include "crosstown/detail/thread_name.hpp"
#include "crosstown/detail/unix_time.hpp"
#include "crosstown/observe/log.hpp"

namespace crosstown {
namespace {

using detail::unix_ms;

std::atomic<JobRunner*> runner_of_process{nullptr};

// How often jobs waiting for room in the pool's queue look for it.
constexpr auto kSpillPoll = std::chrono::milliseconds(5);

// When a job registered with `options` is due, its response having just finished at `now`.
std::chrono::steady_clock::time_point due_after(const DurableOptions& options,
                                                std::chrono::steady_clock::time_point now) {
    auto due = now + std::max(options.delay, std::chrono::milliseconds(0));
    if (options.run_at != std::chrono::system_clock::time_point{}) {
        const auto ahead = options.run_at - std::chrono::system_clock::now();
        due = std::max(due, now + std::chrono::duration_cast<std::chrono::milliseconds>(ahead));
    }
    return due;
}

// Doubling from the kind's backoff, capped, then spread over +-20% so that jobs that failed
// together (a remote API down) do not all come back in the same instant.
std::chrono::milliseconds backoff(const JobKindOptions& options, unsigned failed_attempts) {
    const auto doublings = std::min(failed_attempts - 1, 30U);
    const double base = std::min(
        static_cast<double>(options.backoff.count()) * static_cast<double>(1ULL << doublings),
        static_cast<double>(options.max_backoff.count()));
    thread_local std::mt19937 random{std::random_device{}()};
    std::uniform_real_distribution<double> jitter(0.8, 1.2);
    return std::chrono::milliseconds(static_cast<std::int64_t>(base * jitter(random)));
}

// "job 12 (place-call, request R, trace T)": how every log line names a job; the trace part
// only when its request had one, so a tracer's id finds each attempt's lines.
std::string job_name(std::int64_t id, std::string_view kind, std::string_view request_id,
                     std::string_view trace_parent) {
    return fmt::format("job {} ({}, request {}{}{})", id, kind, request_id,
                       trace_parent.empty() ? "" : ", trace ", trace_parent);
}
std::string job_name(const Job& job) {
    return job_name(job.id, job.kind, job.request_id, job.trace_parent);
}

void add(std::atomic<std::uint64_t>& counter, std::int64_t n = 1) {
    counter.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
}

}  // namespace

struct JobRunner::KindState {
    const JobKind* kind;
    // The kind's rate, kept here (a shared store keeps it for every instance instead).
    bool rate_here = false;
    double tokens = 0;             // guarded by the runner's mutex_
    Clock::time_point refilled{};  // guarded by the runner's mutex_
    unsigned running = 0;          // guarded by the runner's mutex_
    unsigned stuck = 0;            // guarded by the runner's mutex_
    std::deque<Entry> waiting;     // guarded by the runner's mutex_
    std::atomic<std::uint64_t> enqueued{0}, replayed{0}, received{0}, succeeded{0}, retried{0},
        dead{0}, skipped{0}, deduplicated{0}, outstanding{0};

    bool has_turn() const {
        return kind->options.concurrency == 0 || running < kind->options.concurrency;
    }
    // Takes a start from the kind's rate, when it has one here: false while none is left.
    bool take_token(Clock::time_point now) {
        if (!rate_here) return true;
        const auto& rate = kind->options.rate;
        const std::chrono::duration<double> elapsed = now - refilled;
        tokens = std::min<double>(rate.burst, tokens + elapsed.count() * rate.per_second);
        refilled = now;
        if (tokens < 1) return false;
        tokens -= 1;
        return true;
    }
    JobCounts counts() const {
        const auto load = [](const auto& a) { return a.load(std::memory_order_relaxed); };
        return {load(enqueued), load(replayed), load(received),     load(succeeded),  load(retried),
                load(dead),     load(skipped),  load(deduplicated), load(outstanding)};
    }
};

JobCounts& JobCounts::operator+=(const JobCounts& o) {
    enqueued += o.enqueued;
    replayed += o.replayed;
    received += o.received;
    succeeded += o.succeeded;
    retried += o.retried;
    dead += o.dead;
    skipped += o.skipped;
    deduplicated += o.deduplicated;
    outstanding += o.outstanding;
    return *this;
}

std::string JobCounts::summary() const {
    return fmt::format(
        "jobs enqueued={} replayed={} received={} succeeded={} retried={} dead={} skipped={} "
        "deduplicated={} kept={}",
        enqueued, replayed, received, succeeded, retried, dead, skipped, deduplicated, outstanding);
}

JobRunner::JobRunner(const JobKinds& kinds, JobStore& store, Pool& pool)
    : kinds_(kinds), store_(store), pool_(pool) {
    for (const auto& name : kinds_.names()) {
        auto state = std::make_unique<KindState>();
        state->kind = kinds_.find(name);
        state->rate_here = state->kind->options.rate.per_second > 0 && !store_.shared();
        state->tokens = state->kind->options.rate.burst;
        state->refilled = Clock::now();
        states_.emplace(name, std::move(state));
    }
    clock_ = std::jthread([this](std::stop_token stop) { clock_loop(std::move(stop)); });
}

JobRunner::~JobRunner() { stop(); }

JobRunner::KindState& JobRunner::state_of(const std::string& kind) {
    return *states_.find(kind)->second;
}

void JobRunner::replay(std::vector<StoredJob> jobs) {
    for (auto& job : jobs) job.resumed = true;  // the last process may have died running it
    queue_stored(std::move(jobs), false);
}

void JobRunner::receive(std::vector<StoredJob> jobs) {
    if (!jobs.empty()) queue_stored(std::move(jobs), true);
}

// Replayed or received jobs: due now, or waiting for their retry's due time. A received job on
// its first attempt is fresh: its start delay counts from its commit, on whichever host.
void JobRunner::queue_stored(std::vector<StoredJob> jobs, bool received) {
    const auto now = Clock::now();
    const auto now_ms = unix_ms(std::chrono::system_clock::now());
    std::vector<Entry> to_pool;
    std::vector<StoredJob> to_bury;
    std::unique_lock lock(mutex_);
    for (auto& stored : jobs) {
        const auto* kind = kinds_.find(stored.kind);
        if (kind == nullptr) {
            log::error(
                "journal {}: job {} has kind '{}', which is not defined; it stays in the "
                "journal",
                store_.path(), stored.id, stored.kind);
            continue;
        }
        auto& state = state_of(stored.kind);
        add(received ? state.received : state.replayed);
        add(state.outstanding);
        if (stored.resumed && stored.attempts >= kind->options.max_attempts) {
            to_bury.push_back(std::move(stored));
            continue;
        }
        // Not a scheduled one: its start delay would be its schedule.
        const bool fresh = received && stored.attempts == 0 && !stored.resumed &&
                           stored.run_at_ms <= stored.enqueued_ms;
        const auto committed_at = fresh ? now - std::chrono::milliseconds(std::max<std::int64_t>(
                                                    0, now_ms - stored.enqueued_ms))
                                        : now;
        Entry entry{
            {stored.id, std::move(stored.kind), std::move(stored.payload), stored.attempts + 1,
             std::move(stored.request_id), std::move(stored.trace_parent)},
            kind,
            committed_at,
            fresh,
            nullptr,
            stored.resumed,
            false,
            stored.resumed && stored.attempts > 0 &&
                stored.last_error == died_during(stored.attempts)};
        // A shared store hands a job out once it is due by the server's clock, which this
        // host's may trail: due now.
        const auto due = received ? now
                                  : now + std::chrono::milliseconds(
                                              std::max<std::int64_t>(0, stored.run_at_ms - now_ms));
        // A replayed job due already has been ready since then, whichever process it waited in.
        const auto ready_since = std::max(stored.run_at_ms, stored.enqueued_ms);
        if (!received && ready_since > 0 && ready_since <= now_ms) {
            entry.ready_at = now - std::chrono::milliseconds(now_ms - ready_since);
        }
        launch_when_due(std::move(entry), due, to_pool);
    }
    rescan_ = true;
    lock.unlock();
    clock_cv_.notify_all();
    for (auto& job : to_bury) bury_resumed(job);
    submit(std::move(to_pool));
}

// A resumed job whose recorded attempts reached max_attempts: its last ended with its process
// (its last error says so), or the kind's max_attempts was lowered since.
void JobRunner::bury_resumed(const StoredJob& job) {
    auto& state = state_of(job.kind);
    const auto error = job.last_error.empty() ? died_during(job.attempts) : job.last_error;
    log::error("{} is dead after {} attempts: {}",
               job_name(job.id, job.kind, job.request_id, job.trace_parent), job.attempts, error);
    store_.bury(job.id, job.attempts, error);
    add(state.dead);
    state.outstanding.fetch_sub(1, std::memory_order_relaxed);
}

std::vector<NewJob> JobRunner::new_jobs(const std::vector<DurableRegistration>& registrations,
                                        std::string_view request_id,
                                        std::string_view trace_parent) {
    std::vector<NewJob> jobs;
    jobs.reserve(registrations.size());
    for (const auto& r : registrations) {
        const auto unique_for = state_of(r.kind).kind->options.unique_for;
        jobs.push_back({r.kind, r.payload, request_id, r.options.unique_key, unique_for.count(),
                        unix_ms(r.options.run_at), r.options.delay.count(), trace_parent});
    }
    return jobs;
}

std::vector<CommittedJob> JobRunner::count_committed(
    std::vector<DurableRegistration>& registrations, const std::vector<std::int64_t>& ids) {
    std::vector<CommittedJob> committed;
    committed.reserve(ids.size());
    for (std::size_t i = 0; i < ids.size(); ++i) {
        auto& state = state_of(registrations[i].kind);
        if (ids[i] == JobStore::kDuplicate) {
            add(state.deduplicated);
            continue;
        }
        add(state.enqueued);
        add(state.outstanding);
        committed.push_back({ids[i], std::move(registrations[i])});
    }
    return committed;
}

std::vector<CommittedJob> JobRunner::commit(JobBatch& batch, int status,
                                            const std::string& request_id) {
    auto registrations = batch.take_gated(status);
    if (registrations.empty()) return {};
    const auto jobs = new_jobs(registrations, request_id, batch.trace_parent());
    return count_committed(registrations, store_.commit(jobs));
}

// Owns what the store's NewJobs view (the registrations, the request's id and traceparent)
// until the store is done with them.
class JobRunner::RequestCommit final : public PendingCommit {
  public:
    RequestCommit(JobRunner& runner, std::vector<DurableRegistration> registrations,
                  std::string_view request_id, std::string_view trace_parent)
        : runner_(runner),
          registrations_(std::move(registrations)),
          request_id_(request_id),
          trace_parent_(trace_parent),
          jobs_(runner_.new_jobs(registrations_, request_id_, trace_parent_)) {}

    void set_next(std::unique_ptr<AfterCommit> next) { next_ = std::move(next); }
    std::span<const NewJob> jobs() const override { return jobs_; }

    void done(std::vector<std::int64_t> ids, std::exception_ptr failure) noexcept override {
        std::vector<CommittedJob> committed;
        if (!failure) {
            try {
                committed = runner_.count_committed(registrations_, ids);
            } catch (...) {
                failure = std::current_exception();
            }
        }
        next_->committed(std::move(committed), failure);
    }

  private:
    JobRunner& runner_;
    std::vector<DurableRegistration> registrations_;
    const std::string request_id_;
    const std::string trace_parent_;
    const std::vector<NewJob> jobs_;
    std::unique_ptr<AfterCommit> next_;
};

void JobRunner::commit_then(JobBatch& batch, int status, const std::string& request_id,
                            std::unique_ptr<AfterCommit> next) noexcept {
    std::unique_ptr<RequestCommit> pending;
    try {
        auto registrations = batch.take_gated(status);
        if (registrations.empty()) {
            next->committed({}, nullptr);
            return;
        }
        pending = std::make_unique<RequestCommit>(*this, std::move(registrations), request_id,
                                                  batch.trace_parent());
    } catch (...) {
        next->committed({}, std::current_exception());
        return;
    }
    pending->set_next(std::move(next));
    store_.commit_then(std::move(pending));
}

void JobRunner::start(std::vector<CommittedJob> jobs,
                      std::shared_ptr<const ResponseOutcome> outcome) {
    if (store_.shared()) {
        release(jobs, *outcome);
        return;
    }
    const auto now = Clock::now();
    std::vector<Entry> to_pool;
    std::unique_lock lock(mutex_);
    for (auto& [id, registration] : jobs) {
        auto& state = state_of(registration.kind);
        if (registration.options.skip_if_undelivered && !outcome->delivered) {
            store_.discard(id);
            add(state.skipped);
            state.outstanding.fetch_sub(1, std::memory_order_relaxed);
            continue;
        }
        const auto due = due_after(registration.options, now);
        launch_when_due({{id, std::move(registration.kind), std::move(registration.payload), 1,
                          outcome->request_id, outcome->trace_parent},
                         state.kind,
                         now,
                         due == now,  // fresh: a scheduled job's start delay is its schedule
                         outcome},
                        due, to_pool);
    }
    const bool wake = std::exchange(clock_woken_, false);
    lock.unlock();
    if (wake) clock_cv_.notify_all();
    submit(std::move(to_pool));
}

// A shared store's consumers run the jobs, on whichever instance takes them: here they only
// leave this instance's hands, or are dropped when their response did not reach nginx.
void JobRunner::release(std::vector<CommittedJob>& jobs, const ResponseOutcome& outcome) {
    std::vector<std::int64_t> ids;
    ids.reserve(jobs.size());
    for (auto& [id, registration] : jobs) {
        auto& state = state_of(registration.kind);
        state.outstanding.fetch_sub(1, std::memory_order_relaxed);
        if (registration.options.skip_if_undelivered && !outcome.delivered) {
            store_.discard(id);
            add(state.skipped);
            continue;
        }
        ids.push_back(id);
    }
    store_.release(ids);
}

void JobRunner::enqueue_now(std::string_view kind_name, std::string payload,
                            const DurableOptions& options) {
    const auto* kind = kinds_.find(kind_name);
    if (kind == nullptr) {
        throw UnknownJobKind(fmt::format("durable job kind '{}' is not defined", kind_name));
    }
    const NewJob job{kind_name,
                     payload,
                     {},
                     options.unique_key,
                     kind->options.unique_for.count(),
                     unix_ms(options.run_at),
                     options.delay.count(),
                     {}};
    const auto ids = store_.commit(std::span(&job, 1));
    auto& state = state_of(kind->name);
    if (ids.front() == JobStore::kDuplicate) {
        add(state.deduplicated);
        return;
    }
    add(state.enqueued);
    if (store_.shared()) {
        store_.release(ids);
        return;
    }
    add(state.outstanding);
    const auto now = Clock::now();
    const auto due = due_after(options, now);
    std::vector<Entry> to_pool;
    bool wake = false;
    {
        std::lock_guard lock(mutex_);
        launch_when_due(
            {{ids.front(), kind->name, std::move(payload), 1, {}}, kind, now, due == now, nullptr},
            due, to_pool);
        wake = std::exchange(clock_woken_, false);
    }
    if (wake) clock_cv_.notify_all();
    submit(std::move(to_pool));
}

void JobRunner::launch_when_due(Entry entry, Clock::time_point due, std::vector<Entry>& to_pool) {
    if (due <= Clock::now()) {
        launch_locked(std::move(entry), to_pool);
        return;
    }
    if (stopping_) return;  // stays in the journal: kept
    entry.ready_at = due;
    later_.emplace(due, std::move(entry));
    wake_clock_by(due);
}

// To the pool now, or to the back of its kind's line: behind others of the kind (order), while
// the kind is at its concurrency or above its rate, or while the pool's queue is full (spilled).
void JobRunner::launch_locked(Entry entry, std::vector<Entry>& to_pool) {
    if (stopping_) return;  // stays in the journal: kept
    if (entry.ready_at == Clock::time_point{}) entry.ready_at = Clock::now();
    if (entry.suspect) {
        suspects_.push_back(std::move(entry));
        start_suspect(to_pool);
        wake_clock_by(Clock::now() + kSpillPoll);  // it looks for a moment when nothing runs
        return;
    }
    auto& state = state_of(entry.job.kind);
    if (isolating() || !state.waiting.empty() || !state.has_turn() ||
        !pool_.has_room_for(to_pool.size() + 1) || !state.take_token(Clock::now())) {
        state.waiting.push_back(std::move(entry));
        ++waiting_jobs_;
        wake_clock_by(Clock::now() + kSpillPoll);  // it polls for room while jobs wait
        return;
    }
    ++state.running;
    to_pool.push_back(std::move(entry));
}

// Under mutex_: the kind's waiting jobs, in order, as far as its concurrency and the pool's
// queue let them start, unless suspects are being run alone.
void JobRunner::launch_waiting(KindState& state, std::vector<Entry>& to_pool) {
    const auto now = Clock::now();
    while (!isolating() && !state.waiting.empty() && state.has_turn() &&
           pool_.has_room_for(to_pool.size() + 1) && state.take_token(now)) {
        ++state.running;
        to_pool.push_back(std::move(state.waiting.front()));
        state.waiting.pop_front();
        --waiting_jobs_;
    }
}

// Under mutex_: suspects run one at a time, and only while nothing else runs, so that if one
// kills the process again no other job dies with it (and has a death counted against it).
void JobRunner::start_suspect(std::vector<Entry>& to_pool) {
    if (stopping_ || suspect_running_ || suspects_.empty() || !to_pool.empty()) return;
    const bool idle =
        std::ranges::all_of(states_, [](const auto& s) { return s.second->running == 0; });
    if (!idle || !pool_.has_room_for(1)) return;
    auto entry = std::move(suspects_.front());
    suspects_.pop_front();
    suspect_running_ = true;
    ++state_of(entry.job.kind).running;
    to_pool.push_back(std::move(entry));
}

// Hands the entries to the pool as far as its queue has room now (try_submit never waits);
// those it did not take go back to the front of their kinds' lines, in order. The entries wait
// in launched_ meanwhile: a callback carries only the job's id.
void JobRunner::submit(std::vector<Entry> entries) {
    if (entries.empty()) return;
    std::vector<DeferredCallback> callbacks;
    std::vector<std::int64_t> ids;
    callbacks.reserve(entries.size());
    ids.reserve(entries.size());
    {
        std::lock_guard lock(mutex_);
        for (auto& entry : entries) {
            const auto id = entry.job.id;
            callbacks.push_back({[this, id](std::stop_token stop) { attempt(id, std::move(stop)); },
                                 entry.job.kind,
                                 entry.outcome,
                                 {},
                                 /*kept_by_submitter=*/true});
            ids.push_back(id);
            launched_.insert_or_assign(id, std::move(entry));
        }
    }
    const auto queued = pool_.try_submit(callbacks);
    if (queued == callbacks.size()) return;
    bool wake = false;
    {
        std::lock_guard lock(mutex_);
        for (auto i = ids.size(); i-- > queued;) {
            auto node = launched_.extract(ids[i]);
            auto& state = state_of(node.mapped().job.kind);
            --state.running;
            if (node.mapped().suspect) suspect_running_ = false;  // it waits to run alone again
            if (stopping_) continue;                              // stays in the journal: kept
            if (node.mapped().suspect) {
                suspects_.push_front(std::move(node.mapped()));
                continue;
            }
            state.waiting.push_front(std::move(node.mapped()));
            ++waiting_jobs_;
        }
        // Not at once: the clock would only find the pool refusing again (others wait for
        // room, or it is drained) and spin.
        wake_clock_by(Clock::now() + kSpillPoll);
        wake = std::exchange(clock_woken_, false);
    }
    if (wake) clock_cv_.notify_all();
}

void JobRunner::attempt(std::int64_t id, std::stop_token worker_stop) {
    Entry entry;
    {
        std::lock_guard lock(mutex_);
        entry = std::move(launched_.extract(id).mapped());
    }
    attempt(entry, std::move(worker_stop));
}

void JobRunner::attempt(Entry& entry, std::stop_token worker_stop) {
    // A suspect runs alone: the finishes of the jobs before it are written first, or a crash
    // during it would lose them, and count a death against jobs that succeeded.
    if (entry.suspect) store_.flush();
    if (entry.resumed) record(entry);
    const auto started = Clock::now();
    if (entry.fresh) start_delay_.record(started - entry.committed_at);
    std::stop_source stop;
    std::stop_callback relay(worker_stop, [&stop] { stop.request_stop(); });
    bool wake = false;
    std::uint64_t serial = 0;
    {
        std::lock_guard lock(mutex_);
        const auto deadline = started + entry.kind->options.timeout;
        serial = ++attempt_serial_;
        deadlines_.emplace(serial, Deadline{deadline, stop, &entry});
        wake_clock_by(deadline);
        wake = std::exchange(clock_woken_, false);
    }
    if (wake) clock_cv_.notify_all();

    std::optional<std::string> error;
    try {
        entry.kind->handler(entry.job, stop.get_token());
    } catch (const std::exception& e) {
        error = e.what();
    } catch (...) {
        error = "non-standard exception";
    }
    run_time_.record(Clock::now() - started);
    bool timed_out = false;
    bool given_up = false;
    {
        std::lock_guard lock(mutex_);
        auto node = deadlines_.extract(serial);
        timed_out = node.mapped().fired;
        given_up = node.mapped().given_up;
        if (given_up) --state_of(entry.job.kind).stuck;
    }
    if (given_up) {  // failed at its timeout already; its job may have run again since
        log::warn("{} attempt {} returned {} ms after it was given up; ignored{}{}",
                  job_name(entry.job), entry.job.attempt,
                  std::chrono::duration_cast<std::chrono::milliseconds>(
                      Clock::now() - started - entry.kind->options.timeout - kStopGrace)
                      .count(),
                  error ? ": " : "", error.value_or(""));
        idle_cv_.notify_all();
        return;
    }
    // A handler that honours its stop token may return normally without having done the work:
    // past its timeout that is a failed attempt, and at shutdown the job is kept.
    if (timed_out) {
        error = fmt::format("timed out after {} ms{}{}", entry.kind->options.timeout.count(),
                            error ? ": " : "", error.value_or(""));
    }
    finish(entry, std::move(error), worker_stop.stop_requested());
}

void JobRunner::finish(Entry& entry, std::optional<std::string> error, bool cut_short) {
    auto& state = state_of(entry.job.kind);
    if (cut_short) {
        log::warn("{} attempt {} cut short by shutdown; it stays in the journal{}{}",
                  job_name(entry.job), entry.job.attempt, error ? ": " : "", error.value_or(""));
        if (entry.recorded) {  // not a death: the attempt does not count
            store_.reschedule(entry.job.id, entry.job.attempt - 1,
                              unix_ms(std::chrono::system_clock::now()),
                              fmt::format("attempt {} cut short by shutdown", entry.job.attempt));
            // A shared store has it now, for any instance (or counts it unwritten): not kept
            // here as well.
            if (store_.shared()) state.outstanding.fetch_sub(1, std::memory_order_relaxed);
        }
    } else if (!error) {
        store_.complete(entry.job.id);
        add(state.succeeded);
        state.outstanding.fetch_sub(1, std::memory_order_relaxed);
    } else {
        fail(entry, *error);
    }
    // A suspect's end is on disk before anything else runs: if the next job kills the process,
    // this one must not be run, and counted, again.
    if (entry.suspect) store_.flush();
    std::vector<Entry> to_pool;
    {
        std::lock_guard lock(mutex_);
        --state.running;
        if (entry.suspect) suspect_running_ = false;
        start_suspect(to_pool);
        if (!stopping_) launch_waiting(state, to_pool);
    }
    idle_cv_.notify_all();
    room_cv_.notify_all();
    submit(std::move(to_pool));
}

void JobRunner::fail(Entry& entry, const std::string& error) {
    auto& state = state_of(entry.job.kind);
    const auto attempt = entry.job.attempt;
    if (attempt >= entry.kind->options.max_attempts) {
        log::error("{} is dead after {} attempts: {}", job_name(entry.job), attempt, error);
        store_.bury(entry.job.id, attempt, error);
        add(state.dead);
        state.outstanding.fetch_sub(1, std::memory_order_relaxed);
        return;
    }
    const auto delay = backoff(entry.kind->options, attempt);
    log::warn("{} attempt {} of {} failed, retrying in {} ms: {}", job_name(entry.job), attempt,
              entry.kind->options.max_attempts, delay.count(), error);
    store_.reschedule(entry.job.id, attempt, unix_ms(std::chrono::system_clock::now() + delay),
                      error);
    add(state.retried);
    if (store_.shared()) {  // the store hands the retry to whichever instance is free then
        state.outstanding.fetch_sub(1, std::memory_order_relaxed);
        return;
    }
    Entry retry{entry.job, entry.kind, entry.committed_at, false, nullptr};
    ++retry.job.attempt;
    std::vector<Entry> to_pool;
    bool wake = false;
    {
        std::lock_guard lock(mutex_);
        launch_when_due(std::move(retry), Clock::now() + delay, to_pool);
        wake = std::exchange(clock_woken_, false);
    }
    if (wake) clock_cv_.notify_all();
    submit(std::move(to_pool));
}

// Starts due retries, requests stop on attempts past their timeout, and feeds spilled jobs to
// the pool as its queue makes room.
void JobRunner::clock_loop(std::stop_token stop) {
    detail::name_this_thread("ct-job-clock");
    std::unique_lock lock(mutex_);
    while (!stop.stop_requested()) {
        clock_wakes_at_ = next_wake();
        clock_cv_.wait_until(lock, stop, clock_wakes_at_, [&] { return rescan_; });
        if (stop.stop_requested()) return;
        rescan_ = false;
        clock_wakes_at_ = Clock::time_point::min();  // awake: nobody needs to wake it
        const auto now = Clock::now();
        std::vector<Entry> to_pool;
        while (!later_.empty() && later_.begin()->first <= now) {
            auto node = later_.extract(later_.begin());
            launch_locked(std::move(node.mapped()), to_pool);
        }
        std::vector<std::stop_source> overdue;
        std::vector<Entry> given_up;
        check_deadlines(now, overdue, given_up);
        start_suspect(to_pool);
        for (auto& [name, state] : states_) launch_waiting(*state, to_pool);
        lock.unlock();
        // Outside the lock: request_stop runs the handlers' stop callbacks, which may register
        // durable jobs themselves.
        for (auto& source : overdue) source.request_stop();
        for (auto& entry : given_up) give_up(entry);
        if (!to_pool.empty()) {
            room_cv_.notify_all();
            idle_cv_.notify_all();  // a kind whose line emptied has openings again
        }
        submit(std::move(to_pool));
        lock.lock();
    }
}

// Records a resumed job's attempt before it runs. When that cannot be written the attempt runs
// all the same (the work comes first); only a death during it would then go uncounted.
void JobRunner::record(Entry& entry) {
    try {
        store_.record_attempt(entry.job.id, entry.job.attempt);
        entry.recorded = true;
    } catch (const std::exception& e) {
        log::warn("{}: attempt {} runs unrecorded: {}", job_name(entry.job), entry.job.attempt,
                  e.what());
    }
}

// Under mutex_: requests stop on attempts past their timeout, and gives up those still running
// kStopGrace later, freeing their places in their kinds' concurrency (the clock then starts
// what waits for them).
void JobRunner::check_deadlines(Clock::time_point now, std::vector<std::stop_source>& overdue,
                                std::vector<Entry>& given_up) {
    for (auto& [serial, deadline] : deadlines_) {
        if (!deadline.fired && deadline.at <= now) {
            deadline.fired = true;
            overdue.push_back(deadline.source);
        } else if (deadline.fired && !deadline.given_up && deadline.at + kStopGrace <= now) {
            deadline.given_up = true;
            const auto& entry = *deadline.entry;
            auto& state = state_of(entry.job.kind);
            --state.running;
            ++state.stuck;
            given_up.push_back({entry.job, entry.kind, entry.committed_at, false, nullptr, false,
                                false, entry.suspect});
        }
    }
}

// An attempt whose handler ignored its stop token: it fails now, as any timed-out attempt,
// though its thread is still taken. A suspect given up no longer runs alone: once its failure
// is written, the others go on beside its thread, rather than wait for it for ever.
void JobRunner::give_up(Entry& entry) {
    log::error(
        "{} attempt {} still runs {} ms after its timeout asked it to stop: given up, its worker "
        "stays taken until it returns",
        job_name(entry.job), entry.job.attempt, kStopGrace.count());
    fail(entry, fmt::format("timed out after {} ms, and did not stop within {} ms",
                            entry.kind->options.timeout.count(), kStopGrace.count()));
    if (entry.suspect) {
        store_.flush();
        std::vector<Entry> to_pool;
        {
            std::lock_guard lock(mutex_);
            suspect_running_ = false;
            start_suspect(to_pool);
            for (auto& [name, state] : states_) launch_waiting(*state, to_pool);
        }
        submit(std::move(to_pool));
    }
    idle_cv_.notify_all();
}

// Makes the clock look again by `at` when it sleeps past it (clock_woken_: the caller should
// notify clock_cv_ once it has released the lock). Waking it for every attempt's far-off
// timeout would cost a context switch per job.
void JobRunner::wake_clock_by(Clock::time_point at) {
    if (at >= clock_wakes_at_) return;
    rescan_ = true;
    clock_woken_ = true;
}

// The clock wakes for the first due retry, the first timeout and, while jobs wait for room
// in the pool, every few milliseconds; notify_all() on clock_cv_ makes it look again.
JobRunner::Clock::time_point JobRunner::next_wake() const {
    auto wake = Clock::now() + std::chrono::seconds(1);
    if (!later_.empty()) wake = std::min(wake, later_.begin()->first);
    for (const auto& [serial, deadline] : deadlines_) {
        if (!deadline.fired) {
            wake = std::min(wake, deadline.at);
        } else if (!deadline.given_up) {
            wake = std::min(wake, deadline.at + kStopGrace);
        }
    }
    if (waiting_jobs_ > 0 || !suspects_.empty()) wake = std::min(wake, Clock::now() + kSpillPoll);
    return wake;
}

std::uint64_t JobRunner::stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        later_.clear();
        suspects_.clear();
        for (auto& [name, state] : states_) state->waiting.clear();
        waiting_jobs_ = 0;
    }
    clock_.request_stop();
    if (clock_.joinable()) clock_.join();
    idle_cv_.notify_all();
    room_cv_.notify_all();
    return totals().outstanding;
}

JobCounts JobRunner::totals() const {
    JobCounts total;
    for (const auto& [name, state] : states_) total += state->counts();
    return total;
}

std::map<std::string, JobCounts> JobRunner::counts_by_kind() const {
    std::map<std::string, JobCounts> counts;
    for (const auto& [name, state] : states_) counts.emplace(name, state->counts());
    return counts;
}

std::vector<KindReport> JobRunner::report() const {
    std::vector<KindReport> reports;
    std::lock_guard lock(mutex_);
    for (const auto& [name, state] : states_) {
        reports.push_back(
            {name, state->counts(), state->running, state->stuck, state->waiting.size(), 0});
    }
    for (const auto& [due, entry] : later_) {
        for (auto& r : reports) {
            if (r.kind != entry.job.kind) continue;
            ++(entry.job.attempt > 1 ? r.retrying : r.scheduled);
        }
    }
    return reports;
}

JobCensus JobRunner::census(std::size_t latest_dead) const {
    auto census = store_.census(latest_dead);
    for (const auto& [name, state] : states_) {
        if (std::ranges::find(census.kinds, name, &KindCensus::kind) == census.kinds.end()) {
            census.kinds.push_back({.kind = name});
        }
    }
    std::ranges::sort(census.kinds, {}, &KindCensus::kind);
    if (!store_.shared()) correct_census(census);
    return census;
}

// Under no lock: takes mutex_. What waits here, in a kind's line, in the pool's queue or to run
// alone, is ready, and the oldest of it gives the lag; what runs is running. The store's count
// of due jobs is the sum of both (and of due retries the clock has yet to move, which it counts
// as ready).
void JobRunner::correct_census(JobCensus& census) const {
    struct Here {
        std::size_t queued = 0;  // in the pool's queue, not started
        std::optional<Clock::time_point> oldest;
    };
    std::lock_guard lock(mutex_);
    const auto now = Clock::now();
    const auto unix_now = detail::unix_now_ms();
    std::map<std::string_view, Here> here;
    const auto note = [&](const Entry& entry, bool queued) {
        auto& h = here[entry.job.kind];
        if (queued) ++h.queued;
        if (!h.oldest || entry.ready_at < *h.oldest) h.oldest = entry.ready_at;
    };
    for (const auto& [id, entry] : launched_) note(entry, true);
    for (const auto& entry : suspects_) note(entry, false);
    for (const auto& [name, state] : states_) {
        if (!state->waiting.empty()) note(state->waiting.front(), false);
    }
    for (auto& kind : census.kinds) {
        const auto it = states_.find(kind.kind);
        if (it == states_.end()) continue;
        const auto& h = here[kind.kind];
        kind.running = it->second->running - std::min<std::size_t>(it->second->running, h.queued);
        kind.ready -= std::min<std::uint64_t>(kind.ready, kind.running);
        kind.oldest_ready_ms =
            h.oldest
                ? unix_now -
                      std::chrono::duration_cast<std::chrono::milliseconds>(now - *h.oldest).count()
                : 0;
    }
}

std::map<std::string, std::size_t> JobRunner::openings() const {
    std::lock_guard lock(mutex_);
    return openings_locked();
}

std::map<std::string, std::size_t> JobRunner::wait_for_openings(
    std::stop_token stop, std::chrono::milliseconds timeout) const {
    std::map<std::string, std::size_t> openings;
    // A plain condition variable, woken at `stop` by this callback: every ended job notifies
    // idle_cv_, and a condition_variable_any would take a lock of its own each time.
    const std::stop_callback wake(stop, [this] {
        const std::lock_guard lock(mutex_);
        idle_cv_.notify_all();
    });
    std::unique_lock lock(mutex_);
    idle_cv_.wait_for(lock, timeout, [&] {
        openings = openings_locked();
        return !openings.empty() || stop.stop_requested();
    });
    return openings;
}

std::map<std::string, std::size_t> JobRunner::openings_locked() const {
    std::map<std::string, std::size_t> openings;
    const std::size_t workers = pool_.config().workers;
    if (stopping_ || isolating()) return openings;  // suspects run alone: take nothing new
    for (const auto& [name, state] : states_) {
        if (!state->waiting.empty()) continue;
        const std::size_t limit =
            state->kind->options.concurrency != 0 ? state->kind->options.concurrency : workers;
        if (state->running < limit) openings.emplace(name, limit - state->running);
    }
    return openings;
}

void JobRunner::wait_for_room(std::string_view kind) {
    const auto capacity = pool_.config().queue_capacity;
    std::unique_lock lock(mutex_);
    const auto it = states_.find(kind);
    if (it == states_.end()) return;
    const auto& waiting = it->second->waiting;
    const auto has_room = [&] {
        return stopping_ || room_waits_ended_ || waiting.size() < capacity;
    };
    if (has_room()) return;
    const detail::BlockingNotice notice;
    room_cv_.wait(lock, has_room);
}

void JobRunner::end_room_waits() {
    {
        std::lock_guard lock(mutex_);
        room_waits_ended_ = true;
    }
    room_cv_.notify_all();
}

void JobRunner::wait_idle() {
    std::unique_lock lock(mutex_);
    idle_cv_.wait(lock, [&] {
        if (stopping_) return true;
        if (!later_.empty() || isolating()) return false;
        return std::ranges::all_of(states_, [](const auto& s) {
            return s.second->running == 0 && s.second->waiting.empty();
        });
    });
}

void set_process_job_runner(JobRunner* runner) { runner_of_process.store(runner); }
JobRunner* process_job_runner() { return runner_of_process.load(); }

std::map<std::string, std::size_t> JobRunner::bookkeeping() const {
    std::lock_guard lock(mutex_);
    std::size_t waiting = 0;
    std::size_t running = 0;
    for (const auto& [name, state] : states_) {
        waiting += state->waiting.size();
        running += state->running;
    }
    return {{"later", later_.size()},       {"deadlines", deadlines_.size()},
            {"launched", launched_.size()}, {"waiting", waiting},
            {"running", running},           {"suspects", suspects_.size()}};
}

}  // namespace crosstown
