#include "crosstown/testing/run_synchronously.hpp"

#include "crosstown/deferred/pool.hpp"

namespace crosstown::testing {

RunReport run_synchronously(std::vector<Registration> registrations, int status, bool delivered) {
    auto outcome = std::make_shared<ResponseOutcome>();
    outcome->request_id = "test";
    outcome->status = status;
    outcome->delivered = delivered;
    return run_synchronously(std::move(registrations), std::move(outcome));
}

RunReport run_synchronously(std::vector<Registration> registrations,
                            std::shared_ptr<const ResponseOutcome> outcome) {
    RunReport report;
    RequestScope no_request(nullptr);
    for (auto& registration : registrations) {
        if (!registration.options.should_run(outcome->status, outcome->delivered)) {
            ++report.skipped;
            continue;
        }
        DeferredCallback callback{
            std::move(registration.fn), std::move(registration.options.name), outcome, {}};
        ++report.ran;
        if (auto error = detail::run_isolated(callback, std::stop_token{})) {
            ++report.failed;
            report.errors.push_back(std::move(*error));
        }
    }
    return report;
}

}  // namespace crosstown::testing
