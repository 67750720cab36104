#include "crosstown/testing/captured_job.hpp"

#include <fmt/format.h>

#include <stop_token>

namespace crosstown::testing {

RunReport run_jobs(std::vector<CapturedJob> jobs, const JobKinds& kinds, int status) {
    RunReport report;
    std::int64_t id = 0;
    for (auto& captured : jobs) {
        if (!captured.options.run_on.allows(captured.response_status.value_or(status))) {
            ++report.skipped;
            continue;
        }
        ++report.ran;
        const auto* kind = kinds.find(captured.kind);
        try {
            if (kind == nullptr) {
                throw UnknownJobKind(
                    fmt::format("durable job kind '{}' is not defined", captured.kind));
            }
            kind->handler(Job{++id, captured.kind, std::move(captured.payload), 1,
                              captured.request_id, captured.trace_parent},
                          std::stop_token{});
        } catch (const std::exception& e) {
            ++report.failed;
            report.errors.emplace_back(e.what());
        } catch (...) {
            ++report.failed;
            report.errors.emplace_back("non-standard exception");
        }
    }
    return report;
}

}  // namespace crosstown::testing
