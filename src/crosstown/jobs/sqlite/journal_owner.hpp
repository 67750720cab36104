// crosstown::JournalOwner: one process at a time owns a journal.
//
// Ownership is an flock on "<journal>.lock", which holds the owner's pid. The kernel releases
// it when the owner dies however it dies, so a journal left by a dead process is simply taken
// over (and its jobs replayed), while a second live process is refused with the owner's pid.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

namespace crosstown {

class JournalOwner {
  public:
    // Acquires the journal at `journal_path` for this process. Throws JournalError naming the
    // file, and the owner's pid when a live process owns it.
    static JournalOwner acquire(const std::string& journal_path);
    // The pid of the live process that owns the journal, if one does.
    static std::optional<pid_t> live_owner(const std::string& journal_path);

    JournalOwner(JournalOwner&& other) noexcept;
    JournalOwner& operator=(JournalOwner&&) = delete;
    ~JournalOwner();

  private:
    explicit JournalOwner(int fd) : fd_(fd) {}
    int fd_;
};

}  // namespace crosstown
