#include "crosstown/latency_histogram.hpp"

#include <algorithm>

namespace crosstown {

void LatencyHistogram::record(std::chrono::nanoseconds duration) {
    const double seconds = std::chrono::duration<double>(duration).count();
    const auto bound = std::lower_bound(kBoundsSeconds.begin(), kBoundsSeconds.end(), seconds);
    buckets_[static_cast<std::size_t>(bound - kBoundsSeconds.begin())].fetch_add(
        1, std::memory_order_relaxed);
    const auto nanos = std::max<std::int64_t>(duration.count(), 0);
    sum_nanos_.fetch_add(static_cast<std::uint64_t>(nanos), std::memory_order_relaxed);
}

LatencyHistogram::Snapshot LatencyHistogram::snapshot() const {
    Snapshot snap;
    for (std::size_t i = 0; i < buckets_.size(); ++i) {
        snap.buckets[i] = buckets_[i].load(std::memory_order_relaxed);
        snap.count += snap.buckets[i];
    }
    snap.sum_seconds = static_cast<double>(sum_nanos_.load(std::memory_order_relaxed)) * 1e-9;
    return snap;
}

}  // namespace crosstown
