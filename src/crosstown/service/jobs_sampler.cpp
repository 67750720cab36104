#include "crosstown/service/jobs_sampler.hpp"

#include <algorithm>
#include <condition_variable>
#include <exception>

#include "crosstown/detail/thread_name.hpp"
#include "crosstown/detail/unix_time.hpp"
#include "crosstown/service/sample_ring.hpp"

namespace crosstown {
namespace {

std::uint64_t ended(const std::map<std::string, std::uint64_t, std::less<>>& by_kind,
                    const std::string& kind) {
    const auto it = by_kind.find(kind);
    return it == by_kind.end() ? 0 : it->second;
}

}  // namespace

void JobsSampler::take() {
    Ends ends{.at = Clock::now(), .by_kind = {}};
    std::uint64_t runs = 0;
    // Counters only: report() would also hold the runner's lock over every job waiting for its
    // time, once a second.
    for (const auto& [kind, counts] : runner_.counts_by_kind()) {
        const auto n = counts.succeeded + counts.retried + counts.dead;
        ends.by_kind.emplace(kind, n);
        runs += n;
    }
    ends_.push_back(std::move(ends));
    while (ends_.size() > SampleRing::kCapacity) ends_.pop_front();
    const auto& first = ends_.front();
    const auto& last = ends_.back();
    const double window = std::chrono::duration<double>(last.at - first.at).count();

    auto snapshot = std::make_shared<JobsSnapshot>();
    try {
        auto census = runner_.census(kLatestDead);
        snapshot->taken_at = std::chrono::system_clock::now();
        const auto now_ms = detail::unix_ms(snapshot->taken_at);
        for (auto& kind : census.kinds) {
            KindStatus status{.census = std::move(kind)};
            const auto& name = status.census.kind;
            if (status.census.oldest_ready_ms > 0) {
                status.lag_seconds = static_cast<double>(std::max<std::int64_t>(
                                         0, now_ms - status.census.oldest_ready_ms)) /
                                     1e3;
            }
            if (window > 0) {
                status.runs_per_second =
                    static_cast<double>(ended(last.by_kind, name) - ended(first.by_kind, name)) /
                    window;
            }
            snapshot->worst_lag_seconds = std::max(snapshot->worst_lag_seconds, status.lag_seconds);
            snapshot->kinds.push_back(std::move(status));
        }
        snapshot->latest_dead = std::move(census.latest_dead);
        snapshot->partial = census.partial;
    } catch (const std::exception& e) {
        // The last census stays, saying why it is not newer.
        if (const auto previous = latest()) *snapshot = *previous;
        snapshot->error = e.what();
    }
    snapshot->window_seconds = window;
    snapshot->runs = runs;
    keep(std::move(snapshot));
}

void JobsSampler::run(std::stop_token stop) {
    detail::name_this_thread("ct-census");
    std::mutex mutex;
    std::condition_variable_any tick;
    std::unique_lock lock(mutex);
    while (!stop.stop_requested()) {
        take();
        tick.wait_for(lock, stop, SampleRing::kInterval, [] { return false; });
    }
}

std::shared_ptr<const JobsSnapshot> JobsSampler::latest() const {
    std::lock_guard lock(mutex_);
    return latest_;
}

void JobsSampler::keep(std::shared_ptr<const JobsSnapshot> snapshot) {
    std::lock_guard lock(mutex_);
    latest_ = std::move(snapshot);
}

}  // namespace crosstown
