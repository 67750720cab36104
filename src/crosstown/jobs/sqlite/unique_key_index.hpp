// crosstown::UniqueKeyIndex: the unique keys a SQLite journal holds, in memory, so that a
// commit checks a job's key without writing a B-tree of keys: a keyed job then costs its
// transaction no more pages than one without a key.
//
// The file keeps every key (a live or dead job's in its row, a completed job's in a table
// appended at its end and trimmed from its start) and only one process writes it (JournalOwner), so
// this index, read from the file at open and changed with each write, is the whole truth for that
// process. What a transaction changed is undone when it rolls back, without allocating (what was
// erased is kept whole until then). A key is held by its live job, then until its hold expires
// (unique_for after the job finished); expired holds are forgotten a few hash buckets at a time,
// more after a transaction that finished many. Memory: about 150 bytes for each key held.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace crosstown {

class UniqueKeyIndex {
  public:
    // A finished job's key, for the file.
    struct Finished {
        std::string kind;
        std::string key;
        std::int64_t expires_ms;
    };

    bool taken(std::string_view kind, std::string_view key, std::int64_t now_ms) const;
    // Live job `job_id` takes the key; once it finishes the key stays held for unique_for_ms.
    void take(std::string_view kind, std::string_view key, std::int64_t job_id,
              std::int64_t unique_for_ms);
    // Job `job_id` finished at `now_ms` (completed, or dead): its key, if it has one, is held
    // until now_ms + its unique_for, and returned.
    std::optional<Finished> finish(std::int64_t job_id, std::int64_t now_ms);
    // Job `job_id` goes without running: its key, if it has one, is free at once.
    void free(std::int64_t job_id);
    // A hold as the file has it, at open: held by live job `job_id` (expires_ms 0), or until
    // expires_ms. A live job's hold wins over a finished one's; of two finished, the later.
    void load(std::string_view kind, std::string_view key, std::int64_t job_id,
              std::int64_t unique_for_ms, std::int64_t expires_ms);
    void clear();

    // A transaction: what changes between begin() and rollback() is undone by it.
    void begin();
    void commit();
    void rollback() noexcept;

    // Forgets the expired holds in the next buckets, from where the last sweep stopped: at
    // least `buckets` of them, and four for each hold finished since the last sweep, so that
    // forgetting keeps up with finishing. Nothing at all before the soonest a hold can expire
    // (known from the last full pass, and from the holds finished since), so that with a long
    // unique_for a sweep costs nothing for most of it.
    void sweep(std::int64_t now_ms, std::size_t buckets);
    // Holds in memory: those held, and expired ones not forgotten yet.
    std::size_t size() const { return holds_.size(); }

  private:
    struct Hold {
        std::int64_t job_id = 0;
        std::int64_t expires_ms = 0;  // 0 while its job lives
    };
    struct Holder {        // a live job that holds a key
        std::string name;  // its key's, as holds_ has it
        std::int64_t unique_for_ms = 0;
    };

    // Kind and key in one string, the kind's length first, so that no two pairs share one.
    static std::string name_of(std::string_view kind, std::string_view key);
    static std::pair<std::string, std::string> split(const std::string& name);
    using Holds = std::unordered_map<std::string, Hold>;
    using Holders = std::unordered_map<std::int64_t, Holder>;
    // How to undo one change of a map: put back the node erased, or the value replaced, or
    // erase the entry added.
    template <class Map>
    struct Undo {
        typename Map::key_type key;
        std::optional<typename Map::mapped_type> replaced;
        typename Map::node_type erased;
    };
    template <class Map>
    void set(Map& map, std::vector<Undo<Map>>& undo, const typename Map::key_type& key,
             std::optional<typename Map::mapped_type> value);
    template <class Map>
    static void undo_all(Map& map, std::vector<Undo<Map>>& undo) noexcept;

    Holds holds_;
    Holders holders_;
    void note_expiry(std::int64_t expires_ms);

    static constexpr std::int64_t kNever = std::numeric_limits<std::int64_t>::max();
    std::size_t next_bucket_ = 0;
    std::size_t finished_since_sweep_ = 0;
    std::int64_t soonest_ms_ = kNever;    // no finished hold expires before
    std::int64_t pass_soonest_ = kNever;  // of the holds seen, or finished, in this pass
    std::size_t pass_visited_ = 0;        // buckets visited in this pass
    std::size_t pass_buckets_ = 0;        // how many there were when it began
    bool in_transaction_ = false;
    // The changes of the open transaction, oldest first.
    std::vector<Undo<Holds>> undo_holds_;
    std::vector<Undo<Holders>> undo_holders_;
};

}  // namespace crosstown
