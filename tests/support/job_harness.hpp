// A real pool and runner over a SQLite journal in the test's directory, and a record of the
// attempts handlers saw: the machinery of the jobs' unit tests.
#pragma once

#include <algorithm>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "crosstown/deferred/pool.hpp"
#include "crosstown/jobs/job_batch.hpp"
#include "crosstown/jobs/job_runner.hpp"
#include "crosstown/jobs/sqlite/sqlite_job_store.hpp"
#include "support/journal_files.hpp"

namespace crosstown::test {

using Clock = std::chrono::steady_clock;

// The outcome of a response that a request's jobs share.
inline std::shared_ptr<const ResponseOutcome> outcome(std::string request_id = "req-1",
                                                      bool delivered = true, int status = 200) {
    return std::make_shared<const ResponseOutcome>(
        ResponseOutcome{std::move(request_id), status, delivered, nullptr, Clock::now()});
}

// A real pool, writer and runner over a journal in the test's directory. The pool is drained
// before the runner goes, as the server does: no attempt is left running on a dead runner.
struct Harness {
    Harness(const JobKinds& kinds, const std::string& path,
            PoolConfig config = {.workers = 4, .min_workers = 4})
        : path(path), pool(config), writer(open_rw(path)), runner(kinds, writer, pool) {}
    ~Harness() {
        pool.drain(std::chrono::seconds(10), std::chrono::seconds(10));
        runner.stop();
    }

    // Registers `count` jobs of `kind` (payloads "0", "1", ...) as one request's, commits them
    // after a response with `status`, and starts them; the ids committed.
    std::vector<std::int64_t> run(const JobKinds& kinds, std::string_view kind, int count = 1,
                                  DurableOptions options = {}, std::string request_id = "req-1",
                                  int status = 200) {
        JobBatch batch(&kinds, 10'000);
        for (int i = 0; i < count; ++i) batch.add(kind, std::to_string(i), options);
        auto committed = runner.commit(batch, status, request_id);
        std::vector<std::int64_t> ids;
        for (const auto& job : committed) ids.push_back(job.id);
        runner.start(std::move(committed), outcome(request_id, true, status));
        return ids;
    }
    // Nothing runs, waits, or waits for its time.
    bool idle() const {
        const auto reports = runner.report();
        return std::ranges::all_of(reports, [](const KindReport& r) {
            return r.running == 0 && r.waiting == 0 && r.retrying == 0 && r.scheduled == 0;
        });
    }
    std::vector<StoredJob> journal() {
        writer.flush();
        return stored(path);
    }
    const KindReport& report_of(std::vector<KindReport>& reports, std::string_view kind) {
        return *std::ranges::find(reports, kind, &KindReport::kind);
    }

    std::string path;
    Pool pool;
    SqliteJobStore writer;
    JobRunner runner;
};

// What one attempt saw.
struct Seen {
    Job job;
    std::thread::id thread;
    Clock::time_point at;
};

// Thread-safe record of attempts.
class Attempts {
  public:
    void add(const Job& job) {
        std::lock_guard lock(mutex_);
        seen_.push_back({job, std::this_thread::get_id(), Clock::now()});
    }
    std::vector<Seen> list() const {
        std::lock_guard lock(mutex_);
        return seen_;
    }
    std::size_t size() const {
        std::lock_guard lock(mutex_);
        return seen_.size();
    }
    // The first attempt `attempt` of the job with this payload, if it ran.
    std::optional<Seen> find(const std::string& payload, unsigned attempt) const {
        std::lock_guard lock(mutex_);
        const auto it = std::ranges::find_if(seen_, [&](const Seen& s) {
            return s.job.payload == payload && s.job.attempt == attempt;
        });
        if (it == seen_.end()) return std::nullopt;
        return *it;
    }

  private:
    mutable std::mutex mutex_;
    std::vector<Seen> seen_;
};
}  // namespace crosstown::test
