// crosstown::IdleTrim: hands back to the system the memory a burst of work freed, once the
// process has been quiet for a while.
//
// glibc's malloc gives freed pages back only from the top of a heap: those freed in the middle
// stay resident after a burst until malloc_trim(0) (measured after a 40 s durable soak on
// SQLite: 0.9 MB of the 2.3 MB the process had grown). The trim walks every arena under its
// lock, so it runs only when there is nothing to do: after `quiet` samples in a row in which no
// work finished and none was in progress, once per quiet spell, and only after some work. The
// server samples once a second.
#pragma once

#include <cstdint>
#include <functional>
#include <utility>

namespace crosstown {

// malloc_trim(0) with glibc's malloc; nothing with another.
void trim_malloc_heaps();

class IdleTrim {
  public:
    explicit IdleTrim(unsigned quiet, std::function<void()> trim = trim_malloc_heaps)
        : quiet_(quiet), trim_(std::move(trim)) {}

    // work_done: a count that grows whenever a request, callback or job attempt finishes;
    // busy: whether any is in progress or waiting now. True when this sample trimmed.
    bool sample(std::uint64_t work_done, bool busy) {
        if (busy || work_done != last_done_) {
            last_done_ = work_done;
            quiet_samples_ = 0;
            worked_ = true;
            return false;
        }
        if (!worked_ || ++quiet_samples_ < quiet_) return false;
        worked_ = false;
        trim_();
        return true;
    }

  private:
    unsigned quiet_;
    std::function<void()> trim_;
    std::uint64_t last_done_ = 0;
    unsigned quiet_samples_ = 0;
    bool worked_ = false;  // work since the last trim
};

}  // namespace crosstown
