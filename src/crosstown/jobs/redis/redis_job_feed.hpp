// crosstown::RedisJobFeed: the thread that keeps the instance alive in the Redis server's
// eyes, and feeds this instance's JobRunner from the streams.
//
// Every quarter of claim_after it beats: refreshes the heartbeat, touches the entries this
// instance still runs, releases the held jobs of instances that stopped beating and writes what
// failed before. Every instance beats, whether it runs jobs or not: one that holds jobs for its
// responses must, or others would release them before the responses are finished. An instance
// that runs jobs also takes as many of each kind as the runner has openings for (XREADGROUP,
// blocking up to 200 ms, so a released job starts within a round trip on whichever instance is
// free) and, from each beat on, claims those of consumers that died: a batch as large as the
// runner's openings per turn, in turns with new jobs, until the scan of the pending entries has
// come round. So a dead instance's backlog runs at the survivor's full rate, not a beat's worth
// at a time. A job of a kind with a rate starts once the kind's bucket in the server grants it a
// start, asked for when the job is in hand; until then it waits in the feed, which reads no more
// of its kind meanwhile. While the server is unreachable it tries again with backoff, up to 2 s;
// jobs already taken keep running.
//
// Stopping is in two steps: stop_taking() at the first stop signal (no new jobs while the pool
// drains, but the beat goes on, so the jobs still running are not claimed by others), then
// stop() once they are done.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "crosstown/detail/log_throttle.hpp"
#include "crosstown/jobs/job_runner.hpp"
#include "crosstown/jobs/redis/redis_job_store.hpp"

namespace crosstown {

class RedisJobFeed {
  public:
    // `take`: run jobs (roles both and worker); false: only beat (role web).
    RedisJobFeed(RedisJobStore& store, JobRunner& runner, bool take);
    ~RedisJobFeed();  // stop()
    RedisJobFeed(const RedisJobFeed&) = delete;
    RedisJobFeed& operator=(const RedisJobFeed&) = delete;

    // Takes no more jobs, and goes on beating.
    void stop_taking() { taking_.store(false); }
    // Stops beating too; returns once the thread has ended.
    void stop();

  private:
    void loop(std::stop_token stop);
    void feed_once(const std::stop_token& stop, std::chrono::steady_clock::time_point& next_beat);
    // Starts the waiting jobs the buckets and the runner's `openings` have room for, and takes
    // out of `openings` the kinds that have jobs waiting still (or no room left). Returns how
    // long until the next start of a kind that waits, at most the longest block.
    std::chrono::milliseconds start_waiting(std::map<std::string, std::size_t>& openings);
    const JobRate& rate_of(const std::string& kind) const;

    RedisJobStore& store_;
    JobRunner& runner_;
    std::atomic<bool> taking_;
    bool claiming_ = false;  // the feed thread's: a look for dead consumers' entries goes on
    // The feed thread's: jobs of kinds with a rate, read, waiting for their starts, in the
    // order read. Taken by this instance, they are kept alive by its beat like those running.
    std::map<std::string, std::vector<StoredJob>> waiting_;
    detail::LogThrottle failure_log_{std::chrono::seconds(5)};
    std::jthread thread_;  // last: starts once the members above exist
};

}  // namespace crosstown
