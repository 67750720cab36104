#include "crosstown/jobs/stored_job.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace crosstown {

std::string died_during(unsigned attempt) {
    return fmt::format("the process died during attempt {}", attempt);
}

std::int64_t first_due_ms(const NewJob& job, std::int64_t now_ms) {
    return std::max({now_ms, job.run_at_ms, now_ms + job.delay_ms});
}

JobState job_state_named(std::string_view name) {
    if (name == "retry") return JobState::retry;
    if (name == "dead") return JobState::dead;
    return JobState::ready;
}

std::string_view job_state_name(JobState state) {
    switch (state) {
        case JobState::ready:
            return "ready";
        case JobState::retry:
            return "retry";
        case JobState::dead:
            return "dead";
    }
    return "ready";
}

}  // namespace crosstown
