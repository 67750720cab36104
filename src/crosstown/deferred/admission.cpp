#include "crosstown/deferred/admission.hpp"

#include <fmt/format.h>

#include <utility>

#include "crosstown/deferred/follow_response.hpp"
#include "crosstown/deferred/pool.hpp"
#include "crosstown/deferred/process_pool.hpp"

namespace crosstown {

void Admission::check_room(std::size_t registered, const DeferredOptions& options) {
    Pool* pool = process_pool();
    if (pool == nullptr || options.same_thread || pool->config().overflow != Overflow::shed) {
        return;
    }
    if (pool->has_room_for(registered + 1)) return;
    bump(pool->counters().shed);
    throw Overloaded(fmt::format("the deferred work queue is full ({} of {} waiting)",
                                 pool->queue_depth(), pool->config().queue_capacity));
}

void Admission::keep_room(bool same_thread) {
    Pool* pool = process_pool();
    if (pool == nullptr || same_thread) return;
    const auto overflow = pool->config().overflow;
    if (overflow != Overflow::block && overflow != Overflow::spill) return;
    if (!(kept_ > 0 ? pool->try_reserve_room() : pool->reserve_room())) return;
    if (pool_ != pool) give_back();
    pool_ = pool;
    ++kept_;
}

bool Admission::make_room_for_job() {
    Pool* pool = process_pool();
    if (pool == nullptr || pool->config().overflow == Overflow::spill) return false;
    if (kept_ > 0) return false;
    if (!pool->has_room_for(1)) pool->wait_for_room();
    return true;
}

std::size_t Admission::hand_over(const Pool& pool) {
    if (pool_ != &pool) give_back();
    return std::exchange(kept_, 0);
}

void Admission::give_back() {
    if (kept_ > 0) pool_->give_back_room(std::exchange(kept_, 0));
}

}  // namespace crosstown
