// crosstown::detail::BlockingObserver: told when a thread is about to wait for room in the
// pool's full queue, or on the journal for the commit of its request's durable jobs (a round of
// the group commit that another thread writes, a round trip to Redis), and when the wait ends.
//
// Caution for handlers: under Overflow::block, follow_response may wait for room. A handler
// that holds a lock its own callbacks take, while it registers them, can deadlock with them.
//
// The responder registers itself for each of its threads (RequestContext::observer): a responder
// waiting for room then does not count against those serving requests, and the responder starts a
// spare thread so that requests which defer nothing are still served while the pool is saturated.
// The pool calls the observer with its own lock held (the journals call blocking() without theirs):
// an observer must be quick and must not call into the pool.
#pragma once

#include "crosstown/deferred/request_context.hpp"

namespace crosstown::detail {

class BlockingObserver {
  public:
    // Must not throw: the pool calls them with a waiter in its line.
    virtual void blocking() noexcept = 0;
    virtual void unblocked() noexcept = 0;

  protected:
    ~BlockingObserver() = default;
};

// Brackets one wait: tells this thread's observer, if any, at both ends.
class BlockingNotice {
  public:
    BlockingNotice() : observer_(request_context().observer) {
        if (observer_ != nullptr) observer_->blocking();
    }
    ~BlockingNotice() {
        if (observer_ != nullptr) observer_->unblocked();
    }
    BlockingNotice(const BlockingNotice&) = delete;
    BlockingNotice& operator=(const BlockingNotice&) = delete;

  private:
    BlockingObserver* observer_;
};

}  // namespace crosstown::detail
