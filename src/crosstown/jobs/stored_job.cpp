#include "crosstown/jobs/stored_job.hpp"

#include <fmt/format.h>

namespace crosstown {

std::string died_during(unsigned attempt) {
    return fmt::format("the process died during attempt {}", attempt);
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
