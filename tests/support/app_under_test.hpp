#pragma once
// Which fcgi_app the integration tests run, and which sanitizers it was built with. By default
// the build tree's own (FCGI_APP_PATH, FCGI_APP_SANITIZE). A sanitizer preset does not compile
// the integration tests again: it runs the release tree's test binaries against its own
// instrumented fcgi_app, named in CROSSTOWN_FCGI_APP, with its sanitizers in
// CROSSTOWN_FCGI_APP_SANITIZE. What the sanitizers must watch is that process; the tests' own
// code (clients, JSON) is the same in every preset.

#include <cstdlib>
#include <string>

namespace crosstown::test {

inline std::string fcgi_app_path() {
    const char* path = std::getenv("CROSSTOWN_FCGI_APP");
    return path && *path ? path : FCGI_APP_PATH;
}

// "address,undefined", "thread", or empty: some bounds allow for what a sanitizer costs.
inline std::string fcgi_app_sanitizers() {
    const char* path = std::getenv("CROSSTOWN_FCGI_APP");
    if (!path || !*path) return FCGI_APP_SANITIZE;
    const char* sanitizers = std::getenv("CROSSTOWN_FCGI_APP_SANITIZE");
    return sanitizers ? sanitizers : "";
}

inline bool fcgi_app_sanitized() { return !fcgi_app_sanitizers().empty(); }

inline bool fcgi_app_has_ubsan() {
    return fcgi_app_sanitizers().find("undefined") != std::string::npos;
}

}  // namespace crosstown::test
