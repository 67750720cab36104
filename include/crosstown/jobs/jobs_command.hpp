// crosstown::jobs_command: the operator's command line for a journal of durable jobs.
//
//   my_app jobs list --journal /var/lib/my_app/jobs.db [--dead]
//   my_app jobs stats --journal ...
//   my_app jobs retry ID|--dead --journal ...
//   my_app jobs purge --dead --journal ...
//
// list and stats only read, and are safe while the server runs (WAL lets a reader beside the
// writer). retry and purge change the journal, and are refused while a live process owns it
// (its pid is named): they would race the server's own writes, and the server would not see
// a revived job until its next start anyway. Stop the service, run them, start it again.
// With a Redis journal (--journal redis://... or unix://...) all four are safe beside running
// instances: a revived job goes back to its kind's stream and runs at once.
// Exit codes: 0 done, 1 refused (a live owner), 2 a usage error or a journal that cannot be
// read (named).
#pragma once

#include <iosfwd>
#include <string_view>

namespace crosstown {

// argv[0] is "jobs"; `program` prefixes messages ("my_app jobs").
int jobs_command(int argc, const char* const argv[], std::string_view program, std::ostream& out,
                 std::ostream& err);
int jobs_command(int argc, const char* const argv[], std::string_view program);

}  // namespace crosstown
