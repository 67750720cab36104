#include "crosstown/jobs/redis/redis_job_feed.hpp"

#include <algorithm>
#include <condition_variable>
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
        nap(stop, std::min<Clock::duration>(next_beat - Clock::now(), until_promote));
        return;
    }
    auto openings = runner_.openings();
    if (openings.empty()) {
        std::this_thread::sleep_for(kNoOpeningsPause);
        return;
    }
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
    const auto until_beat =
        std::chrono::duration_cast<std::chrono::milliseconds>(next_beat - Clock::now());
    // A kind with a rate takes no more than its rate grants now; with none left it is not read
    // until the next start is there.
    std::map<std::string, std::size_t> granted;
    auto until_start = kLongestBlock;
    for (auto it = openings.begin(); it != openings.end();) {
        const auto& rate = runner_.kinds().find(it->first)->options.rate;
        if (rate.per_second <= 0) {
            ++it;
            continue;
        }
        const auto starts = store_.take_starts(it->first, rate, it->second);
        until_start = std::min(until_start, std::max(starts.wait, std::chrono::milliseconds(1)));
        if (starts.granted == 0) {
            it = openings.erase(it);
            continue;
        }
        it->second = granted[it->first] = starts.granted;
        ++it;
    }
    if (openings.empty()) {
        nap(stop, std::min({Clock::duration(until_start), Clock::duration(until_beat),
                            Clock::duration(until_promote)}));
        return;
    }
    const auto block = claimed ? std::chrono::milliseconds(0)
                               : std::clamp(std::min(until_beat, until_promote),
                                            std::chrono::milliseconds(1), kLongestBlock);
    auto jobs = store_.take(openings, block);
    for (auto& [kind, n] : granted) {
        const auto got = std::ranges::count(jobs, kind, &StoredJob::kind);
        store_.give_back_starts(kind, runner_.kinds().find(kind)->options.rate,
                                n - static_cast<std::size_t>(got));
    }
    runner_.receive(std::move(jobs));
}

}  // namespace crosstown
