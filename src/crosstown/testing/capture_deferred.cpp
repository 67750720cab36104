#include "crosstown/testing/capture_deferred.hpp"

#include <limits>
#include <mutex>

#include "crosstown/deferred/capture_target.hpp"
#include "crosstown/deferred/deferred_registry.hpp"
#include "crosstown/deferred/pool.hpp"
#include "crosstown/jobs/job_capture_target.hpp"
#include "crosstown/testing/captured_job.hpp"
#include "crosstown/testing/run_synchronously.hpp"

namespace crosstown::testing {

// Registrations made outside any request land here while the capture lives, from any thread.
class CaptureDeferred::Impl final : public detail::CaptureTarget, public detail::JobCaptureTarget {
  public:
    Impl() {
        detail::add_capture_target(this);
        detail::add_job_capture_target(this);
    }
    ~Impl() {
        detail::remove_job_capture_target(this);
        detail::remove_capture_target(this);
        take();  // dropped unrun, silently, as the header promises
    }
    Impl(const Impl&) = delete;
    Impl& operator=(const Impl&) = delete;

    void add(DeferredOptions options, Callback fn) override {
        std::lock_guard lock(mutex_);
        captured_.add(std::move(options), std::move(fn));
    }
    bool forget(std::string_view name) override {
        std::lock_guard lock(mutex_);
        return captured_.forget(name);
    }
    std::vector<CapturedRegistration> list() const {
        std::lock_guard lock(mutex_);
        std::vector<CapturedRegistration> out;
        for (const auto& registration : captured_.callbacks()) {
            out.push_back({registration.options.name, registration.options, std::nullopt});
        }
        return out;
    }
    std::size_t size() const {
        std::lock_guard lock(mutex_);
        return captured_.callbacks().size();
    }
    std::vector<Registration> take() {
        std::lock_guard lock(mutex_);
        return captured_.take();
    }
    void add_job(std::string_view kind, std::string payload, DurableOptions options) override {
        std::lock_guard lock(mutex_);
        jobs_.push_back(
            {std::string(kind), std::move(payload), std::move(options), std::nullopt, {}});
    }
    std::vector<CapturedJob> jobs(bool take) {
        std::lock_guard lock(mutex_);
        return take ? std::exchange(jobs_, {}) : jobs_;
    }

  private:
    mutable std::mutex mutex_;
    // No cap: a test may capture as much as it likes.
    DeferredRegistry captured_{std::numeric_limits<std::size_t>::max()};  // guarded by mutex_
    std::vector<CapturedJob> jobs_;                                       // guarded by mutex_
};

CaptureDeferred::CaptureDeferred() : impl_(std::make_unique<Impl>()) {}

// Restores the previous capture first, then drops what was not run.
CaptureDeferred::~CaptureDeferred() = default;

std::vector<CapturedRegistration> CaptureDeferred::list() const { return impl_->list(); }
std::size_t CaptureDeferred::size() const { return impl_->size(); }

RunReport CaptureDeferred::run(int status, bool delivered) {
    return run_synchronously(impl_->take(), status, delivered);
}

void CaptureDeferred::clear() {
    impl_->take();
    impl_->jobs(true);
}

std::vector<CapturedJob> CaptureDeferred::jobs() const { return impl_->jobs(false); }

RunReport CaptureDeferred::run_jobs(const JobKinds& kinds, int status) {
    return testing::run_jobs(impl_->jobs(true), kinds, status);
}

}  // namespace crosstown::testing
