// crosstown::JournalError: the journal (the SQLite file or Redis server that --journal names)
// cannot be opened or written; what() names it.
#pragma once

#include <stdexcept>

namespace crosstown {

class JournalError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// The store refused one job's values (a payload over SQLite's length limit): that job's fault
// alone, where a JournalError may be the store's.
class JobRefused : public JournalError {
  public:
    using JournalError::JournalError;
};

}  // namespace crosstown
