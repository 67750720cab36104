#include "crosstown/jobs/sqlite/unique_key_index.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

namespace crosstown {

std::string UniqueKeyIndex::name_of(std::string_view kind, std::string_view key) {
    const auto length = static_cast<std::uint32_t>(kind.size());
    std::string name(sizeof length, '\0');
    std::memcpy(name.data(), &length, sizeof length);
    name.append(kind).append(key);
    return name;
}

std::pair<std::string, std::string> UniqueKeyIndex::split(const std::string& name) {
    std::uint32_t length = 0;
    std::memcpy(&length, name.data(), sizeof length);
    return {name.substr(sizeof length, length), name.substr(sizeof length + length)};
}

bool UniqueKeyIndex::taken(std::string_view kind, std::string_view key, std::int64_t now_ms) const {
    const auto it = holds_.find(name_of(kind, key));
    return it != holds_.end() && (it->second.expires_ms == 0 || it->second.expires_ms > now_ms);
}

void UniqueKeyIndex::take(std::string_view kind, std::string_view key, std::int64_t job_id,
                          std::int64_t unique_for_ms) {
    auto name = name_of(kind, key);
    set(holds_, undo_holds_, name, Hold{job_id, 0});
    set(holders_, undo_holders_, job_id, Holder{std::move(name), unique_for_ms});
}

std::optional<UniqueKeyIndex::Finished> UniqueKeyIndex::finish(std::int64_t job_id,
                                                               std::int64_t now_ms) {
    const auto it = holders_.find(job_id);
    if (it == holders_.end()) return std::nullopt;
    const auto holder = it->second;
    const auto expires = now_ms + holder.unique_for_ms;
    set(holds_, undo_holds_, holder.name, Hold{job_id, expires});
    set(holders_, undo_holders_, job_id, std::nullopt);
    ++finished_since_sweep_;
    note_expiry(expires);
    auto [kind, key] = split(holder.name);
    return Finished{std::move(kind), std::move(key), expires};
}

void UniqueKeyIndex::free(std::int64_t job_id) {
    const auto it = holders_.find(job_id);
    if (it == holders_.end()) return;
    const auto name = it->second.name;
    set(holds_, undo_holds_, name, std::nullopt);
    set(holders_, undo_holders_, job_id, std::nullopt);
}

void UniqueKeyIndex::load(std::string_view kind, std::string_view key, std::int64_t job_id,
                          std::int64_t unique_for_ms, std::int64_t expires_ms) {
    auto name = name_of(kind, key);
    const auto it = holds_.find(name);
    if (it != holds_.end()) {
        const auto& held = it->second;
        if (held.expires_ms == 0) return;
        if (expires_ms != 0 && expires_ms <= held.expires_ms) return;
    }
    set(holds_, undo_holds_, name, Hold{job_id, expires_ms});
    if (expires_ms != 0) note_expiry(expires_ms);
    if (expires_ms == 0) {
        set(holders_, undo_holders_, job_id, Holder{std::move(name), unique_for_ms});
    }
}

void UniqueKeyIndex::clear() {
    holds_.clear();
    holders_.clear();
    undo_holds_.clear();
    undo_holders_.clear();
    in_transaction_ = false;
    soonest_ms_ = pass_soonest_ = kNever;
    pass_visited_ = 0;
}

void UniqueKeyIndex::begin() {
    in_transaction_ = true;
    undo_holds_.clear();
    undo_holders_.clear();
}

void UniqueKeyIndex::commit() {
    in_transaction_ = false;
    undo_holds_.clear();
    undo_holders_.clear();
    // A transaction of many changes (an upgrade, a long outage's backlog) leaves no memory
    // behind.
    constexpr std::size_t kKeptCapacity = 4096;
    if (undo_holds_.capacity() > kKeptCapacity) undo_holds_.shrink_to_fit();
    if (undo_holders_.capacity() > kKeptCapacity) undo_holders_.shrink_to_fit();
}

void UniqueKeyIndex::rollback() noexcept {
    // What comes back may have expired (a sweep of this transaction erased it) or expire
    // sooner than the sweep now expects.
    for (const auto& undo : undo_holds_) {
        const auto& hold =
            !undo.erased.empty() ? std::optional<Hold>(undo.erased.mapped()) : undo.replaced;
        if (hold && hold->expires_ms != 0) note_expiry(hold->expires_ms);
    }
    undo_all(holds_, undo_holds_);
    undo_all(holders_, undo_holders_);
    in_transaction_ = false;
}

// Each map's changes undone newest first (the two maps are independent of each other). No
// allocation: an erased node goes back whole, into buckets that never shrank.
template <class Map>
void UniqueKeyIndex::undo_all(Map& map, std::vector<Undo<Map>>& undo) noexcept {
    for (auto it = undo.rbegin(); it != undo.rend(); ++it) {
        if (!it->erased.empty()) {
            map.insert(std::move(it->erased));
        } else if (it->replaced) {
            map.find(it->key)->second = std::move(*it->replaced);
        } else {
            map.erase(it->key);
        }
    }
    undo.clear();
}

void UniqueKeyIndex::note_expiry(std::int64_t expires_ms) {
    soonest_ms_ = std::min(soonest_ms_, expires_ms);
    pass_soonest_ = std::min(pass_soonest_, expires_ms);
}

void UniqueKeyIndex::sweep(std::int64_t now_ms, std::size_t buckets) {
    if (now_ms < soonest_ms_) return;  // the finishes counted so far wait for when it runs
    buckets = std::max(buckets, 4 * std::exchange(finished_since_sweep_, 0));
    const auto count = holds_.bucket_count();
    if (count != pass_buckets_) {  // rehashed: holds moved between buckets, start again
        pass_buckets_ = count;
        pass_visited_ = 0;
    }
    // A pass sees every hold there is when it starts; what it does not see was finished since,
    // and noted then.
    if (pass_visited_ == 0) pass_soonest_ = kNever;
    buckets = std::min(buckets, count);
    std::vector<std::string> expired;
    for (std::size_t i = 0; i < buckets; ++i) {
        const auto bucket = next_bucket_++ % count;
        for (auto it = holds_.begin(bucket); it != holds_.end(bucket); ++it) {
            const auto expires = it->second.expires_ms;
            if (expires == 0) continue;
            if (expires <= now_ms) {
                expired.push_back(it->first);
            } else {
                pass_soonest_ = std::min(pass_soonest_, expires);
            }
        }
    }
    for (const auto& name : expired) set(holds_, undo_holds_, name, std::nullopt);
    pass_visited_ += buckets;
    if (pass_visited_ >= count) {
        soonest_ms_ = pass_soonest_;
        pass_soonest_ = kNever;
        pass_visited_ = 0;
    }
}

// Sets or erases `key`'s entry, and in a transaction notes how to undo it. The note's room is
// made first: once the map changed, noting it cannot fail.
template <class Map>
void UniqueKeyIndex::set(Map& map, std::vector<Undo<Map>>& undo, const typename Map::key_type& key,
                         std::optional<typename Map::mapped_type> value) {
    if (in_transaction_ && undo.size() == undo.capacity()) {
        undo.reserve(std::max<std::size_t>(16, 2 * undo.capacity()));
    }
    const auto it = map.find(key);
    if (!value) {
        if (it == map.end()) return;
        auto node = map.extract(it);
        if (in_transaction_) undo.push_back({key, std::nullopt, std::move(node)});
        return;
    }
    if (it == map.end()) {
        if (in_transaction_) undo.push_back({key, std::nullopt, {}});
        map.emplace(key, std::move(*value));
        return;
    }
    if (in_transaction_) undo.push_back({key, std::move(it->second), {}});
    it->second = std::move(*value);
}

}  // namespace crosstown
