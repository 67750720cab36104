#include "crosstown/jobs/memory_job_store.hpp"

#include "crosstown/detail/unix_time.hpp"
#include "crosstown/jobs/job_runner.hpp"

namespace crosstown {

using detail::unix_now_ms;

void MemoryJobStore::start(JobRunner& runner, bool /*take: this process runs its own*/) {
    runner.replay(live_jobs());
}

std::vector<std::int64_t> MemoryJobStore::commit(std::span<const NewJob> jobs) {
    const auto now = unix_now_ms();
    std::vector<std::int64_t> ids;
    std::lock_guard lock(mutex_);
    for (const auto& job : jobs) {
        const auto id = ++last_id_;
        StoredJob stored;
        stored.id = id;
        stored.kind = job.kind;
        stored.payload = job.payload;
        stored.request_id = job.request_id;
        stored.enqueued_ms = now;
        stored.run_at_ms = now;
        jobs_.emplace(id, std::move(stored));
        ids.push_back(id);
    }
    return ids;
}

void MemoryJobStore::complete(std::int64_t id) {
    std::lock_guard lock(mutex_);
    jobs_.erase(id);
}

void MemoryJobStore::reschedule(std::int64_t id, unsigned attempts, std::int64_t run_at_ms,
                                std::string error) {
    std::lock_guard lock(mutex_);
    const auto it = jobs_.find(id);
    if (it == jobs_.end() || it->second.state == JobState::dead) return;
    it->second.state = JobState::retry;
    it->second.attempts = attempts;
    it->second.run_at_ms = run_at_ms;
    it->second.last_error = std::move(error);
}

void MemoryJobStore::bury(std::int64_t id, unsigned attempts, std::string error) {
    std::lock_guard lock(mutex_);
    const auto it = jobs_.find(id);
    if (it == jobs_.end()) return;
    it->second.state = JobState::dead;
    it->second.attempts = attempts;
    it->second.last_error = std::move(error);
}

void MemoryJobStore::record_attempt(std::int64_t id, unsigned attempt) {
    std::lock_guard lock(mutex_);
    const auto it = jobs_.find(id);
    if (it == jobs_.end() || it->second.state == JobState::dead) return;
    it->second.attempts = attempt;
    it->second.last_error = died_during(attempt);
}

std::vector<AdminJob> MemoryJobStore::list(bool dead_only) {
    std::vector<AdminJob> rows;
    std::lock_guard lock(mutex_);
    for (const auto& [id, job] : jobs_) {
        if (dead_only && job.state != JobState::dead) continue;
        rows.push_back({job, std::string(job_state_name(job.state))});
    }
    return rows;
}

std::uint64_t MemoryJobStore::revive(std::optional<std::int64_t> id) {
    std::uint64_t revived = 0;
    std::lock_guard lock(mutex_);
    for (auto& [key, job] : jobs_) {
        if (job.state != JobState::dead || (id && *id != key)) continue;
        job.state = JobState::ready;
        job.attempts = 0;
        job.run_at_ms = 0;
        job.last_error.clear();
        ++revived;
    }
    return revived;
}

std::uint64_t MemoryJobStore::purge_dead() {
    std::lock_guard lock(mutex_);
    return static_cast<std::uint64_t>(std::erase_if(
        jobs_, [](const auto& entry) { return entry.second.state == JobState::dead; }));
}

std::vector<StoredJob> MemoryJobStore::live_jobs() const {
    std::vector<StoredJob> live;
    std::lock_guard lock(mutex_);
    for (const auto& [id, job] : jobs_) {
        if (job.state != JobState::dead) live.push_back(job);
    }
    return live;
}

// Its jobs are its contents, as the file is a journal's, and it keeps nothing beside them.
std::map<std::string, std::size_t> MemoryJobStore::bookkeeping() const { return {}; }

}  // namespace crosstown
