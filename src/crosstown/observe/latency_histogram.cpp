#include "crosstown/observe/latency_histogram.hpp"

#include <algorithm>

namespace crosstown {
namespace {

// The bounds in whole nanoseconds, so record() compares integers.
constexpr auto kBoundsNanos = [] {
    std::array<std::int64_t, LatencyHistogram::kBoundsSeconds.size()> nanos{};
    for (std::size_t i = 0; i < nanos.size(); ++i) {
        nanos[i] = static_cast<std::int64_t>(LatencyHistogram::kBoundsSeconds[i] * 1e9 + 0.5);
    }
    return nanos;
}();

}  // namespace

void LatencyHistogram::record(std::chrono::nanoseconds duration) {
    const auto nanos = std::max<std::int64_t>(duration.count(), 0);
    const auto bound = std::lower_bound(kBoundsNanos.begin(), kBoundsNanos.end(), nanos);
    buckets_[static_cast<std::size_t>(bound - kBoundsNanos.begin())].fetch_add(
        1, std::memory_order_relaxed);
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

LatencyHistogram::Snapshot& LatencyHistogram::Snapshot::operator+=(const Snapshot& other) {
    for (std::size_t i = 0; i < buckets.size(); ++i) buckets[i] += other.buckets[i];
    count += other.count;
    sum_seconds += other.sum_seconds;
    return *this;
}

double LatencyHistogram::Snapshot::quantile(double q) const {
    if (count == 0) return 0;
    const double rank = q * static_cast<double>(count);
    double below = 0;
    for (std::size_t i = 0; i < kBoundsSeconds.size(); ++i) {
        const auto in_bucket = static_cast<double>(buckets[i]);
        if (in_bucket > 0 && below + in_bucket >= rank) {
            const double low = i == 0 ? 0 : kBoundsSeconds[i - 1];
            return low + (kBoundsSeconds[i] - low) * std::max(rank - below, 0.0) / in_bucket;
        }
        below += in_bucket;
    }
    return kBoundsSeconds.back();
}

}  // namespace crosstown
