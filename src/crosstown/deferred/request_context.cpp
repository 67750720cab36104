#include "crosstown/deferred/request_context.hpp"

namespace crosstown::detail {

RequestContext& request_context() {
    thread_local RequestContext context;
    return context;
}

}  // namespace crosstown::detail
