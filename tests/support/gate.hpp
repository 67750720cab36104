// A gate that holds whoever waits on it (a pool worker, a handler) until the test opens it.
#pragma once

#include <condition_variable>
#include <mutex>

#include "support/eventually.hpp"

namespace crosstown::test {

class Gate {
  public:
    void open() {
        std::lock_guard lock(mutex_);
        open_ = true;
        cv_.notify_all();
    }
    // True when opened, false when kPatience ran out.
    bool wait() {
        std::unique_lock lock(mutex_);
        return cv_.wait_for(lock, kPatience, [&] { return open_; });
    }

  private:
    std::mutex mutex_;
    std::condition_variable cv_;
    bool open_ = false;
};

}  // namespace crosstown::test
