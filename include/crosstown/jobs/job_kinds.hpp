// crosstown::JobKinds: the durable job kinds an application defines once, at start-up.
//
// Define every kind before Server::run(): the journal's jobs are replayed at start through
// these handlers, and a handler registering a kind that is not here fails at once (a 500).
// Not synchronised: after run() starts it is only read.
#pragma once

#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "crosstown/jobs/job_kind.hpp"

namespace crosstown {

class JobKinds {
  public:
    // Throws std::invalid_argument, naming the kind and the option, for an empty name, one
    // defined twice, no handler, max_attempts 0, or a timeout, backoff or max_backoff that is
    // not positive, exceeds JobKindOptions::kLongest, or (max_backoff) is below backoff.
    void define(std::string name, JobKindOptions options, JobHandler handler);
    const JobKind* find(std::string_view name) const;
    bool empty() const { return kinds_.empty(); }
    std::vector<std::string> names() const;

  private:
    std::map<std::string, JobKind, std::less<>> kinds_;
};

}  // namespace crosstown
