// test::CountingObserver: counts what a waiting thread's BlockingObserver is told, for tests
// of the waits that tell it (the pool's wait for room, the runner's, the journals').
#pragma once

#include <atomic>

#include "crosstown/deferred/blocking_observer.hpp"

namespace crosstown::test {

struct CountingObserver : detail::BlockingObserver {
    std::atomic<int> blocked{0};
    std::atomic<int> unblocked_count{0};
    void blocking() noexcept override { ++blocked; }
    void unblocked() noexcept override { ++unblocked_count; }
};

}  // namespace crosstown::test
