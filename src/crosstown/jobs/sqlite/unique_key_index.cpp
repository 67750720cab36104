#include "crosstown/jobs/sqlite/unique_key_index.hpp"

#include <cstring>
#include <ranges>

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
    set_hold(name, Hold{job_id, 0});
    set_holder(job_id, Holder{std::move(name), unique_for_ms});
}

std::optional<UniqueKeyIndex::Finished> UniqueKeyIndex::finish(std::int64_t job_id,
                                                               std::int64_t now_ms) {
    const auto it = holders_.find(job_id);
    if (it == holders_.end()) return std::nullopt;
    const auto holder = it->second;
    const auto expires = now_ms + holder.unique_for_ms;
    set_hold(holder.name, Hold{job_id, expires});
    set_holder(job_id, std::nullopt);
    auto [kind, key] = split(holder.name);
    return Finished{std::move(kind), std::move(key), expires};
}

void UniqueKeyIndex::free(std::int64_t job_id) {
    const auto it = holders_.find(job_id);
    if (it == holders_.end()) return;
    const auto name = it->second.name;
    set_hold(name, std::nullopt);
    set_holder(job_id, std::nullopt);
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
    set_hold(name, Hold{job_id, expires_ms});
    if (expires_ms == 0) set_holder(job_id, Holder{std::move(name), unique_for_ms});
}

void UniqueKeyIndex::clear() {
    holds_.clear();
    holders_.clear();
    undo_holds_.clear();
    undo_holders_.clear();
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
}

// Each map's changes undone newest first: the two maps are independent of each other.
void UniqueKeyIndex::rollback() noexcept {
    for (auto& [name, hold] : std::views::reverse(undo_holds_)) {
        if (hold) {
            holds_.insert_or_assign(std::move(name), *hold);
        } else {
            holds_.erase(name);
        }
    }
    for (auto& [job_id, holder] : std::views::reverse(undo_holders_)) {
        if (holder) {
            holders_.insert_or_assign(job_id, std::move(*holder));
        } else {
            holders_.erase(job_id);
        }
    }
    in_transaction_ = false;
    undo_holds_.clear();
    undo_holders_.clear();
}

void UniqueKeyIndex::sweep(std::int64_t now_ms, std::size_t buckets) {
    std::vector<std::string> expired;
    for (std::size_t i = 0; i < buckets && i < holds_.bucket_count(); ++i) {
        const auto bucket = next_bucket_++ % holds_.bucket_count();
        for (auto it = holds_.begin(bucket); it != holds_.end(bucket); ++it) {
            if (it->second.expires_ms != 0 && it->second.expires_ms <= now_ms) {
                expired.push_back(it->first);
            }
        }
    }
    for (const auto& name : expired) set_hold(name, std::nullopt);
}

void UniqueKeyIndex::set_hold(const std::string& name, std::optional<Hold> hold) {
    if (in_transaction_) {
        const auto it = holds_.find(name);
        undo_holds_.emplace_back(
            name, it == holds_.end() ? std::nullopt : std::optional<Hold>(it->second));
    }
    if (hold) {
        holds_.insert_or_assign(name, *hold);
    } else {
        holds_.erase(name);
    }
}

void UniqueKeyIndex::set_holder(std::int64_t job_id, std::optional<Holder> holder) {
    if (in_transaction_) {
        const auto it = holders_.find(job_id);
        undo_holders_.emplace_back(
            job_id, it == holders_.end() ? std::nullopt : std::optional<Holder>(it->second));
    }
    if (holder) {
        holders_.insert_or_assign(job_id, std::move(*holder));
    } else {
        holders_.erase(job_id);
    }
}

}  // namespace crosstown
