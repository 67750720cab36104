// crosstown::JournalConfig: where durable jobs are kept (--journal, --journal-sync).
//
// The journal is a SQLite database in WAL mode, owned by one process at a time.
//   - sync normal (default): a commit survives the process dying any way it can (SIGKILL, OOM
//     kill, crash); the last commits before a power cut or kernel crash may be lost.
//   - sync full: every commit is fsynced before the response is written, and survives power
//     loss too, at the price of an fsync per group commit.
#pragma once

#include <string>

namespace crosstown {

enum class JournalSync { normal, full };

struct JournalConfig {
    std::string path;  // empty: durable jobs are off
    JournalSync sync = JournalSync::normal;

    bool enabled() const { return !path.empty(); }
};

}  // namespace crosstown
