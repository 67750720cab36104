// The process's pool, where follow_response sends work registered outside a request.
//
// The server sets it when it starts and clears it when it is destroyed. With none set,
// OutsideRequest::to_pool throws NoCurrentRequest and run_now runs the callback uncounted.
// Any thread may read it; it changes only while no request is being served.
#pragma once

namespace crosstown {

class Pool;

void set_process_pool(Pool* pool);
Pool* process_pool();

}  // namespace crosstown
