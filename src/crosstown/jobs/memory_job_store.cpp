#include "crosstown/jobs/memory_job_store.hpp"

#include <algorithm>
#include <functional>

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
    // The holds of finished jobs go once expired: swept at most once a second, when they may
    // outnumber the live ones.
    if (holds_.size() > 2 * key_of_.size() + 1024 && now >= next_sweep_ms_) {
        std::erase_if(holds_, [now](const auto& h) {
            return h.second.expires_ms != 0 && h.second.expires_ms <= now;
        });
        next_sweep_ms_ = now + 1000;
    }
    for (const auto& job : jobs) {
        UniqueKey key{std::string(job.kind), std::string(job.unique_key)};
        if (!job.unique_key.empty() && !key_free(key, now)) {
            ids.push_back(kDuplicate);
            continue;
        }
        const auto id = ++last_id_;
        if (!job.unique_key.empty()) {
            holds_.insert_or_assign(key, UniqueHold{id, job.unique_for_ms});
            key_of_.emplace(id, std::move(key));
        }
        StoredJob stored;
        stored.id = id;
        stored.kind = job.kind;
        stored.payload = job.payload;
        stored.request_id = job.request_id;
        stored.trace_parent = job.trace_parent;
        stored.enqueued_ms = now;
        stored.run_at_ms = first_due_ms(job, now);
        jobs_.emplace(id, std::move(stored));
        ids.push_back(id);
    }
    return ids;
}

bool MemoryJobStore::key_free(const UniqueKey& key, std::int64_t now) {
    const auto it = holds_.find(key);
    if (it == holds_.end()) return true;
    if (it->second.expires_ms == 0 || it->second.expires_ms > now) return false;
    holds_.erase(it);
    return true;
}

void MemoryJobStore::finish_key(std::int64_t id, std::int64_t now, bool free_now) {
    const auto node = key_of_.extract(id);
    if (!node) return;
    const auto hold = holds_.find(node.mapped());
    if (hold == holds_.end() || hold->second.job_id != id) return;
    if (free_now) {
        holds_.erase(hold);
    } else {
        hold->second.expires_ms = now + hold->second.unique_for_ms;
    }
}

void MemoryJobStore::complete(std::int64_t id) {
    std::lock_guard lock(mutex_);
    if (jobs_.erase(id) > 0) finish_key(id, unix_now_ms(), false);
}

void MemoryJobStore::discard(std::int64_t id) {
    std::lock_guard lock(mutex_);
    if (jobs_.erase(id) > 0) finish_key(id, unix_now_ms(), true);
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
    const auto now = unix_now_ms();
    it->second.state = JobState::dead;
    it->second.attempts = attempts;
    it->second.run_at_ms = now;  // when it died
    it->second.last_error = std::move(error);
    finish_key(id, now, false);
}

JobCensus MemoryJobStore::census(std::size_t latest_dead) const {
    const auto now = unix_now_ms();
    std::map<std::string, KindCensus, std::less<>> kinds;
    std::vector<StoredJob> dead;
    std::lock_guard lock(mutex_);
    for (const auto& [id, job] : jobs_) {
        auto& kind = kinds[job.kind];
        kind.kind = job.kind;
        if (job.state == JobState::dead) {
            ++kind.dead;
            dead.push_back(job);
        } else if (job.run_at_ms > now) {
            ++(job.state == JobState::retry ? kind.retrying : kind.scheduled);
        } else {
            ++kind.ready;
            const auto since = std::max(job.run_at_ms, job.enqueued_ms);
            if (kind.oldest_ready_ms == 0 || since < kind.oldest_ready_ms) {
                kind.oldest_ready_ms = since;
            }
        }
    }
    std::ranges::sort(dead, std::greater<>{},
                      [](const StoredJob& job) { return std::pair(job.run_at_ms, job.id); });
    if (dead.size() > latest_dead) dead.resize(latest_dead);
    JobCensus census{.latest_dead = std::move(dead)};
    for (auto& [name, kind] : kinds) census.kinds.push_back(std::move(kind));
    return census;
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
    const auto now = unix_now_ms();
    std::lock_guard lock(mutex_);
    for (auto& [key, job] : jobs_) {
        if (job.state != JobState::dead || (id && *id != key)) continue;
        job.state = JobState::ready;
        job.attempts = 0;
        job.run_at_ms = now;
        job.last_error.clear();
        ++revived;
    }
    return revived;
}

std::uint64_t MemoryJobStore::cancel(std::optional<std::int64_t> id,
                                     const std::optional<std::string>& kind) {
    std::uint64_t cancelled = 0;
    std::lock_guard lock(mutex_);
    const auto now = unix_now_ms();
    for (auto it = jobs_.begin(); it != jobs_.end();) {
        const auto& job = it->second;
        if (job.state == JobState::dead || (id && *id != it->first) ||
            (kind && *kind != job.kind)) {
            ++it;
            continue;
        }
        finish_key(it->first, now, true);
        it = jobs_.erase(it);
        ++cancelled;
    }
    return cancelled;
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

// Its jobs and keys are its contents, as the file is a journal's, and it keeps nothing beside
// them.
std::map<std::string, std::size_t> MemoryJobStore::bookkeeping() const { return {}; }

}  // namespace crosstown
