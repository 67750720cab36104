// libFuzzer: the status-gate filter syntax ("2xx,304", "400-405", "always"). A filter either
// parses or throws std::invalid_argument; a parsed gate describes itself in a form that parses
// back to the very same gate.
#include <crosstown/deferred/status_gate.hpp>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    try {
        const crosstown::StatusGate gate(text);
        const crosstown::StatusGate again(gate.describe());
        for (int status = 0; status < 1000; ++status) {
            if (gate.allows(status) != again.allows(status)) std::abort();
        }
    } catch (const std::invalid_argument&) {
    }
    return 0;
}
