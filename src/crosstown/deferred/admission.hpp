// crosstown::Admission: whether a request's deferred work gets in when the pool's queue is full,
// decided in one place: the overflow policy at registration, and the slots of the queue a request
// keeps until its dispatch.
//
// A full queue is met at registration, while the handler can still answer, rather than only at
// dispatch, when the response has gone out and a waiting thread holds up everyone. By the pool's
// Overflow:
// - shed: a callback that would not fit, with the request's earlier ones (they need room at the
//   same dispatch), throws Overloaded, so the request gets a 503.
// - block and spill: the request's first callback waits for room, in turn with the dispatches
//   waiting for room, and keeps a slot until its dispatch. The client whose request defers work
//   waits; the responder serves others with a spare thread meanwhile. Once it keeps room, a
//   request takes what is free without waiting (ahead of those waiting for their first, so that
//   it finishes what it started; waiting could wait for itself); a callback that found none
//   waits at dispatch.
// - A durable job keeps nothing (it goes to the runner, not the queue), but under every policy
//   except spill its registration waits for room too, then in its kind's line in the runner, so
//   that durable work pushes back on the clients that make it. Not while the request keeps room:
//   that room is part of what it would wait for. Under spill it waits in its kind's line only
//   once committed.
// same_thread callbacks need no room. A thread about to wait tells its BlockingObserver.
//
// The pool provides the mechanism (its line of waiters, the slots kept, its own workers that
// never wait); Admission decides when to use it. One per request, in its DeferredRegistry, used
// by one thread at a time, as the registry is.
#pragma once

#include <cstddef>

#include "crosstown/deferred/deferred_options.hpp"

namespace crosstown {

class Pool;

class Admission {
  public:
    Admission() = default;
    ~Admission() { give_back(); }
    Admission(const Admission&) = delete;
    Admission& operator=(const Admission&) = delete;

    // Before an in-memory callback joins a request that has `registered` already. Throws
    // Overloaded under shed when the queue has no room for them all.
    void check_room(std::size_t registered, const DeferredOptions& options);
    // Once it has joined (one refused past the request's cap keeps nothing): under block and
    // spill, keeps a slot for it, waiting for the first.
    void keep_room(bool same_thread);
    // A durable job has joined: waits for room in the queue as above. True when it is then to
    // wait in its kind's line too (JobRunner::wait_for_room).
    bool make_room_for_job();

    std::size_t kept() const { return kept_; }
    // At dispatch to `pool`: how many slots are kept there, handed over to Pool::submit_batch
    // (the Admission keeps none after); slots kept in another pool are given back.
    std::size_t hand_over(const Pool& pool);
    void give_back();

  private:
    Pool* pool_ = nullptr;  // where the slots are kept
    std::size_t kept_ = 0;
};

}  // namespace crosstown
