// crosstown::JournalConfig: where durable jobs are kept (--journal and the --journal-* options).
//
// A file path names a SQLite database in WAL mode, owned by one process at a time, which runs
// its jobs itself. A Redis address (redis://HOST:PORT[/DB] or unix:///PATH[?db=DB]) names a
// server shared by instances on many hosts: each holds its requests' jobs there before the
// response, releases them to a stream after it, and any instance may run them. The Redis
// server's own settings decide what survives what (appendonly, appendfsync, replicas).
//   - sync normal (default): a commit survives the process dying any way it can (SIGKILL, OOM
//     kill, crash); the last commits before a power cut or kernel crash may be lost.
//   - sync full: every commit is fsynced before the response is written, and survives power
//     loss too, at the price of an fsync per group commit.
#pragma once

#include <chrono>
#include <string>

namespace crosstown {

enum class JournalSync { normal, full };

// Only for a Redis journal.
struct RedisJournalOptions {
    // Keys start with "<prefix>:", so that several applications can share one server.
    std::string prefix = "crosstown";
    // The password (AUTH) is read from this file, or else from CROSSTOWN_REDIS_PASSWORD;
    // never from the command line, where every user of the machine can read it.
    std::string password_file;
    // An instance that stops beating for this long is dead: another releases the jobs it held
    // and claims the ones it had taken. parse_server_config takes no less than 5 s.
    std::chrono::milliseconds claim_after{30'000};
    // How long to wait for the server at start before giving up (exit 2); 0: not at all.
    std::chrono::milliseconds wait{0};
    // This instance's name in the server (held set, consumer), unique among live instances;
    // empty: "<hostname>:<pid>:<random>".
    std::string instance;
};

struct JournalConfig {
    std::string path;  // a file, or a Redis address; empty: durable jobs are off
    JournalSync sync = JournalSync::normal;
    RedisJournalOptions redis;

    bool enabled() const { return !path.empty(); }
    bool is_redis() const { return path.starts_with("redis://") || path.starts_with("unix://"); }
};

}  // namespace crosstown
