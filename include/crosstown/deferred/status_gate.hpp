// crosstown::StatusGate: which response statuses let a deferred callback run.
//
// The default gate runs a callback after 1xx-3xx and skips it after 4xx/5xx, the default
// hendrix and Laravel agree on: work decided by a failed request should not happen.
// `crosstown::always` runs whatever the status. A gate can be written as text:
// "2xx", "302", "400-405", or a list of those separated by commas or spaces ("2xx, 304").
// Text is parsed when the gate is constructed, which is when the callback is registered, so
// a malformed filter fails in the handler (std::invalid_argument naming the bad token), never
// later on a pool thread. A gate is a small value: copy it freely.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace crosstown {

class StatusGate {
  public:
    // The default: 100-399.
    constexpr StatusGate() { add_range(100, 399); }

    // Parses a filter; throws std::invalid_argument naming the first bad token.
    StatusGate(std::string_view filter);  // NOLINT(google-explicit-constructor)
    StatusGate(const char* filter) : StatusGate(std::string_view(filter)) {}         // NOLINT
    StatusGate(const std::string& filter) : StatusGate(std::string_view(filter)) {}  // NOLINT

    static constexpr StatusGate any() {
        StatusGate gate{Empty{}};
        gate.always_ = true;
        return gate;
    }

    constexpr bool allows(int status) const {
        if (always_) return true;
        if (status < kLowest || status > kHighest) return false;
        const auto bit = static_cast<unsigned>(status - kLowest);
        return (bits_[bit / 64] >> (bit % 64)) & 1U;
    }

    // The gate in filter syntax, for logs and test listings ("always", "100-399", "2xx,302").
    std::string describe() const;

    friend constexpr bool operator==(const StatusGate&, const StatusGate&) = default;

  private:
    static constexpr int kLowest = 100;
    static constexpr int kHighest = 599;
    struct Empty {};
    constexpr explicit StatusGate(Empty) {}

    constexpr void add_range(int low, int high) {
        for (int status = low; status <= high; ++status) {
            const auto bit = static_cast<unsigned>(status - kLowest);
            bits_[bit / 64] |= std::uint64_t{1} << (bit % 64);
        }
    }
    void add_token(std::string_view token);

    std::array<std::uint64_t, 8> bits_{};  // one bit per status 100..599
    bool always_ = false;
};

// Run whatever the status: `.run_on = crosstown::always`.
inline constexpr StatusGate always = StatusGate::any();

}  // namespace crosstown
