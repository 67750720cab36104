// Loopback clients posting POST /calls batches to fcgi_app through nginx, side by side, until
// told to stop or until a budget of calls is spent: the load of the integration tests that
// drain, kill or starve the app while it serves. What each request got back is counted.
#pragma once

#include <atomic>
#include <chrono>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support/http_client.hpp"

namespace crosstown::test {

// The batch id of a POST /calls answer; empty when it has none.
std::string batch_of(const HttpReply& reply);

struct CallsLoadOptions {
    int clients = 4;
    int latency_ms = 0;  // each call's latency_ms
    bool durable = false;
    // Each request asks for a number of calls drawn from [min_calls, max_calls], the same
    // sequence in every run (one seeded generator per client). 1 <= min_calls <= max_calls.
    int min_calls = 1;
    int max_calls = 1;
    std::string query;  // more parameters, e.g. "&fail_first=1"
    // Between a 202 and the next request; after any other reply the client waits 20 ms, so a
    // dead or refusing app is not hammered.
    std::chrono::milliseconds pause{0};
    // A client stops at its first reply that is not 202: the app is stopping, and the race
    // it lost is the last request of the test.
    bool stop_at_refusal = false;
    long budget = std::numeric_limits<long>::max();  // calls asked for, at most, by all clients
};

class CallsLoad {
  public:
    // The batch id of a 202 and the number of calls it accepted.
    using Accepted = std::pair<std::string, int>;

    CallsLoad(int port, CallsLoadOptions options);
    ~CallsLoad() { finish(); }
    CallsLoad(const CallsLoad&) = delete;
    CallsLoad& operator=(const CallsLoad&) = delete;

    // Stops the clients and waits for their requests in flight.
    void finish();

    // The accepted batches in the order their 202s arrived.
    std::vector<Accepted> accepted() const;
    std::size_t accepted_requests() const;
    long accepted_calls() const;
    // Replies that were not a 202, by status (0: no reply).
    std::map<int, long> refused() const;
    // Replies with `status` (202 included), and every status seen.
    long count(int status) const;
    std::set<int> statuses() const;
    // Calls drawn so far, the budget's count: sent, or drawn past the budget and not sent.
    long sent() const { return sent_.load(); }

  private:
    void run(int port, int client);

    const CallsLoadOptions options_;
    std::atomic<bool> stop_{false};
    std::atomic<long> sent_{0};
    mutable std::mutex mutex_;
    std::vector<Accepted> accepted_;
    std::map<int, long> refused_;
    std::vector<std::thread> threads_;
};

}  // namespace crosstown::test
