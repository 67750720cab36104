// crosstown::detail::RequestContext: what the code running on a thread is serving, in one place.
//
// follow_response(), follow_response_durably(), forget() and response_delivered() take no
// request argument: a handler calls them anywhere down its call stack, and a callback asks
// response_delivered() without being handed its request. So each thread carries its context,
// set by whoever runs request code on it: the responder (and TestClient) while a handler runs
// (RequestScope, JobBatchScope, which put the previous value back, so they nest), the pool
// while a callback runs (OutcomeScope, likewise). The observer (the responder's) and worker_of
// (the pool's) are set once for a thread's lifetime. Only the owning thread reads or writes its
// context: nothing here is shared, nothing needs a lock.
#pragma once

namespace crosstown {
class DeferredRegistry;
class JobBatch;
class Pool;
struct ResponseOutcome;
}  // namespace crosstown

namespace crosstown::detail {

class BlockingObserver;

struct RequestContext {
    // The request whose handler runs: follow_response() and forget() land in its registry...
    DeferredRegistry* registry = nullptr;
    // ...and follow_response_durably() in its durable jobs. JobBatch belongs to the jobs layer,
    // above this one: here it is only a pointer, never used.
    JobBatch* job_batch = nullptr;
    // The request whose callback runs, for response_delivered().
    const ResponseOutcome* outcome = nullptr;
    // Told when this thread waits for room in the pool or for a commit (the responder's threads).
    BlockingObserver* observer = nullptr;
    // The pool this thread is a worker of: it never waits for room there (it would wait for
    // itself).
    const Pool* worker_of = nullptr;
};

// The calling thread's context.
RequestContext& request_context();

}  // namespace crosstown::detail
