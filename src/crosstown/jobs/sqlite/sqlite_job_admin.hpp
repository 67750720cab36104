// crosstown::SqliteJobAdmin: JobAdmin over a journal file. Reading is safe beside the server
// that owns the file; changing it is refused while a live process owns it, and done holding
// the ownership, so that no server starts on the journal meanwhile.
#pragma once

#include <optional>
#include <string>

#include "crosstown/jobs/job_admin.hpp"
#include "crosstown/jobs/sqlite/journal_owner.hpp"
#include "crosstown/jobs/sqlite/sqlite_job_database.hpp"

namespace crosstown {

class SqliteJobAdmin final : public JobAdmin {
  public:
    // Throws JournalError, or AdminRefused when `change` and a live process owns the file.
    SqliteJobAdmin(const std::string& path, bool change);

    std::vector<AdminJob> list(bool dead_only) override;
    std::uint64_t revive(std::optional<std::int64_t> id) override;
    std::uint64_t purge_dead() override;
    std::uint64_t cancel(std::optional<std::int64_t> id,
                         const std::optional<std::string>& kind) override;
    std::string_view revived_run() const override { return "they run at the next start"; }

  private:
    std::optional<JournalOwner> ownership_;  // held while changing
    SqliteJobDatabase journal_;
};

}  // namespace crosstown
