#include "crosstown/observe/request_stats.hpp"

namespace crosstown {

void RequestStats::record(int status, std::size_t bytes, std::chrono::nanoseconds handler_time,
                          bool delivered) {
    const int status_class = status / 100;
    if (status_class >= 1 && status_class <= 5) {
        by_class_[status_class].fetch_add(1, std::memory_order_relaxed);
    }
    if (!delivered) undelivered_.fetch_add(1, std::memory_order_relaxed);
    bytes_.fetch_add(bytes, std::memory_order_relaxed);
    handler_time_.record(handler_time);
}

std::uint64_t RequestStats::requests(int status_class) const {
    if (status_class < 1 || status_class > 5) return 0;
    return by_class_[status_class].load(std::memory_order_relaxed);
}

std::uint64_t RequestStats::total() const {
    std::uint64_t sum = 0;
    for (int c = 1; c <= 5; ++c) sum += requests(c);
    return sum;
}

}  // namespace crosstown
