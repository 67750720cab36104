// libFuzzer: percent-decoding and query parsing take whatever a client puts in a URL.
// Either they return, or they throw HttpError(400); nothing else (no crash, no other throw,
// no read past the input: ASan and UBSan watch).
#include <crosstown/http/http_error.hpp>
#include <crosstown/http/query_string.hpp>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    for (const bool plus_is_space : {false, true}) {
        if (const auto decoded = crosstown::percent_decode(text, plus_is_space)) {
            // Decoding never grows the text.
            if (decoded->size() > text.size()) std::abort();
        }
    }
    try {
        const auto params = crosstown::parse_query(text);
        (void)params;
    } catch (const crosstown::HttpError& e) {
        if (e.status() != 400) std::abort();
    }
    return 0;
}
