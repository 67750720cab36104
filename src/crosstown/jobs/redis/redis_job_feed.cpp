#include "crosstown/jobs/redis/redis_job_feed.hpp"

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <iterator>
#include <mutex>

#include "crosstown/detail/thread_name.hpp"
#include "crosstown/observe/log.hpp"

namespace crosstown {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kLongestBlock = std::chrono::milliseconds(200);
constexpr auto kNoOpeningsPause = std::chrono::milliseconds(5);
constexpr auto kFirstBackoff = std::chrono::milliseconds(100);
constexpr auto kLongestBackoff = std::chrono::milliseconds(2'000);

// Sleeps for `pause`, or less when `stop` is requested meanwhile.
void nap(const std::stop_token& stop, Clock::duration pause) {
    std::mutex mutex;
    std::condition_variable_any cv;
    std::unique_lock lock(mutex);
    cv.wait_for(lock, stop, pause, [] { return false; });
}

}  // namespace

RedisJobFeed::RedisJobFeed(RedisJobStore& store, JobRunner& runner, bool take)
    : store_(store),
      runner_(runner),
      taking_(take),
      thread_([this](std::stop_token stop) { loop(std::move(stop)); }) {}

RedisJobFeed::~RedisJobFeed() { stop(); }

void RedisJobFeed::stop() {
    thread_.request_stop();
    if (thread_.joinable()) thread_.join();
}

void RedisJobFeed::loop(std::stop_token stop) {
    detail::name_this_thread("ct-redis-feed");
    auto next_beat = Clock::now();
    auto backoff = kFirstBackoff;
    while (!stop.stop_requested()) {
        try {
            feed_once(stop, next_beat);
            backoff = kFirstBackoff;
        } catch (const JournalError& e) {
            if (const auto n = failure_log_.count(); n > 0) {
                log::warn("{} ({} failures); trying again", e.what(), n);
            }
            nap(stop, backoff);
            backoff = std::min(backoff * 2, kLongestBackoff);
        }
    }
}

void RedisJobFeed::feed_once(const std::stop_token& stop, Clock::time_point& next_beat) {
    const auto beat_every =
        std::max(store_.options().claim_after / 4, std::chrono::milliseconds(50));
    if (Clock::now() >= next_beat) {
        store_.beat();  // when it throws, it is tried again after the backoff, not a beat later
        next_beat = Clock::now() + beat_every;
        claiming_ = true;  // each beat looks again for dead consumers' entries
    }
    const auto until_promote = store_.promote_due();
    if (!taking_.load()) {
        // Jobs read before still start as their rates grant, and run in the drain.
        auto left = runner_.openings();
        const auto until_start = start_waiting(left);
        nap(stop, std::min({next_beat - Clock::now(), Clock::duration(until_promote),
                            Clock::duration(until_start)}));
        return;
    }
    // With every worker busy, the feed waits for a job to end rather than poll: a poll's pause
    // would bound the rate at the kind's concurrency per pause.
    const auto until_beat =
        std::chrono::duration_cast<std::chrono::milliseconds>(next_beat - Clock::now());
    auto openings =
        runner_.wait_for_openings(stop, std::clamp(std::min(until_beat, until_promote),
                                                   std::chrono::milliseconds(1), kLongestBlock));
    if (openings.empty() || !taking_.load()) return;  // stop_taking() may have come meanwhile
    // A dead consumer's backlog is claimed a batch per turn, as fast as the runner has
    // openings for it, taking turns with new jobs so that neither starves the other; the look
    // ends once every kind's scan of the pending entries has come round.
    bool claimed = false;
    if (claiming_) {
        auto jobs = store_.claim(openings);
        claimed = !jobs.empty();
        runner_.receive(std::move(jobs));
        claiming_ = !store_.claim_scan_done(openings);
        openings = runner_.openings();
        if (openings.empty()) return;
    }
    // Right after a claim that found entries, new jobs are only looked at: Redis times a
    // blocked read out in its 100 ms cron, so even a 1 ms block would hold the next claim back
    // that long. After a claim that found nothing (a scan through live instances' entries) the
    // read blocks as usual, so that the feed does not spin against the server.
    // A kind with a rate reads no more while jobs it read wait for their starts.
    const auto until_start = start_waiting(openings);
    if (openings.empty()) {
        nap(stop, std::min({Clock::duration(until_start), Clock::duration(until_beat),
                            Clock::duration(until_promote)}));
        return;
    }
    const auto block = claimed ? std::chrono::milliseconds(0)
                               : std::clamp(std::min({until_beat, until_promote, until_start}),
                                            std::chrono::milliseconds(1), kLongestBlock);
    // Those of a kind with a rate wait for their starts, which the next round asks for: taken
    // by this instance, a job the feed dropped would wait for ever, so none is anywhere else.
    std::vector<StoredJob> ready;
    for (auto& job : store_.take(openings, block)) {
        auto& to = rate_of(job.kind).per_second > 0 ? waiting_[job.kind] : ready;
        to.push_back(std::move(job));
    }
    runner_.receive(std::move(ready));
}

// Starts are taken from the bucket only for jobs in hand. Taken before a read that waits for new
// jobs, they would be held through the wait while the bucket refills, and each instance's held
// starts would come on top of the bucket's.
std::chrono::milliseconds RedisJobFeed::start_waiting(
    std::map<std::string, std::size_t>& openings) {
    auto until_start = kLongestBlock;
    std::vector<StoredJob> ready;
    try {
        for (auto it = waiting_.begin(); it != waiting_.end();) {
            auto& [kind, jobs] = *it;
            const auto found = openings.find(kind);
            const std::size_t room = found == openings.end() ? 0 : found->second;
            std::size_t granted = 0;
            if (room > 0) {
                const auto starts =
                    store_.take_starts(kind, rate_of(kind), std::min(room, jobs.size()));
                granted = std::min(starts.granted, jobs.size());
                const auto first = jobs.begin();
                const auto last = first + static_cast<std::ptrdiff_t>(granted);
                std::move(first, last, std::back_inserter(ready));
                jobs.erase(first, last);
                if (!jobs.empty()) {
                    until_start =
                        std::min(until_start, std::max(starts.wait, std::chrono::milliseconds(1)));
                }
            }
            // Waiting for the runner's room, or using the last of it: look again soon, as
            // the feed does when the runner has no openings.
            if (room == granted) until_start = std::min(until_start, kNoOpeningsPause);
            if (jobs.empty() && room > granted) {
                openings[kind] = room - granted;
            } else {
                openings.erase(kind);
            }
            it = jobs.empty() ? waiting_.erase(it) : std::next(it);
        }
        // Cancelled while they waited (fcgi_app jobs cancel): not started.
        store_.drop_cancelled(ready);
    } catch (const JournalError&) {
        runner_.receive(std::move(ready));
        throw;
    }
    runner_.receive(std::move(ready));
    return until_start;
}

const JobRate& RedisJobFeed::rate_of(const std::string& kind) const {
    return runner_.kinds().find(kind)->options.rate;
}

}  // namespace crosstown
