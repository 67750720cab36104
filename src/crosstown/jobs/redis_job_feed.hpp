// crosstown::RedisJobFeed: the thread that feeds this instance's JobRunner from the Redis
// streams, and keeps the instance alive in the server's eyes.
//
// It takes as many jobs of each kind as the runner has room for (XREADGROUP, blocking up to
// 200 ms, so a released job starts within a round trip on whichever instance is free). Every
// quarter of claim_after it beats: refreshes the heartbeat, touches the entries this instance
// still runs, releases the held jobs of instances that stopped beating and claims the jobs
// they had taken. While the server is unreachable it tries again with backoff, up to 2 s;
// jobs already taken keep running meanwhile.
#pragma once

#include <thread>

#include "crosstown/detail/log_throttle.hpp"
#include "crosstown/jobs/job_runner.hpp"
#include "crosstown/jobs/redis_journal.hpp"

namespace crosstown {

class RedisJobFeed {
  public:
    RedisJobFeed(RedisJournal& journal, JobRunner& runner);
    ~RedisJobFeed();  // stop()
    RedisJobFeed(const RedisJobFeed&) = delete;
    RedisJobFeed& operator=(const RedisJobFeed&) = delete;

    // Takes no more jobs; returns once the thread has ended.
    void stop();

  private:
    void loop(std::stop_token stop);
    void feed_once(std::chrono::steady_clock::time_point& next_beat);

    RedisJournal& journal_;
    JobRunner& runner_;
    detail::LogThrottle failure_log_{std::chrono::seconds(5)};
    std::jthread thread_;  // last: starts once the members above exist
};

}  // namespace crosstown
