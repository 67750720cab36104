#include "crosstown/testing/capture_deferred.hpp"

#include <limits>

namespace crosstown::testing {

RunReport run_synchronously(std::vector<DeferredCallback> callbacks, int status, bool delivered) {
    auto outcome = std::make_shared<ResponseOutcome>();
    outcome->request_id = "test";
    outcome->status = status;
    outcome->delivered = delivered;
    return run_synchronously(std::move(callbacks), std::move(outcome));
}

RunReport run_synchronously(std::vector<DeferredCallback> callbacks,
                            std::shared_ptr<const ResponseOutcome> outcome) {
    RunReport report;
    RequestScope no_request(nullptr);
    for (auto& callback : callbacks) {
        if (!callback.options.should_run(outcome->status, outcome->delivered)) {
            ++report.skipped;
            continue;
        }
        Job job{std::move(callback.task), std::move(callback.options.name), outcome, {}};
        ++report.ran;
        if (auto error = detail::run_isolated(job, std::stop_token{})) {
            ++report.failed;
            report.errors.push_back(std::move(*error));
        }
    }
    return report;
}

CaptureDeferred::CaptureDeferred()
    : captured_(std::numeric_limits<std::size_t>::max()),
      previous_(detail::exchange_capture_target(this)) {}

CaptureDeferred::~CaptureDeferred() {
    detail::exchange_capture_target(previous_);
    clear();
}

std::vector<CapturedDeferred> CaptureDeferred::list() const {
    std::lock_guard lock(mutex_);
    std::vector<CapturedDeferred> out;
    for (const auto& callback : captured_.callbacks()) {
        out.push_back({callback.options.name, callback.options, std::nullopt});
    }
    return out;
}

std::size_t CaptureDeferred::size() const {
    std::lock_guard lock(mutex_);
    return captured_.callbacks().size();
}

RunReport CaptureDeferred::run(int status, bool delivered) {
    std::vector<DeferredCallback> callbacks;
    {
        std::lock_guard lock(mutex_);
        callbacks = captured_.take();
    }
    return run_synchronously(std::move(callbacks), status, delivered);
}

void CaptureDeferred::clear() {
    std::lock_guard lock(mutex_);
    captured_.take();
}

void CaptureDeferred::add(DeferredOptions options, Task task) {
    std::lock_guard lock(mutex_);
    captured_.add(std::move(options), std::move(task));
}

bool CaptureDeferred::forget(std::string_view name) {
    std::lock_guard lock(mutex_);
    return captured_.forget(name);
}

}  // namespace crosstown::testing
