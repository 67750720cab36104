// Headless chromium for integration tests: what a page becomes in a real browser (its DOM once
// loaded, or a screenshot), with or without JavaScript. Each run has a private profile in a
// temporary directory, gone afterwards, and a deadline.
#pragma once

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "support/child_process.hpp"
#include "support/temp_dir.hpp"

namespace crosstown::test {

class HeadlessChromium {
  public:
    // `program`: chromium's path. `javascript` false: no page runs a script, as for a user who
    // turned JavaScript off.
    explicit HeadlessChromium(std::string program, bool javascript = true)
        : program_(std::move(program)), javascript_(javascript) {}

    // The document at `url` once loaded (and its scripts run, if allowed), serialised.
    std::string dom(const std::string& url) const { return run({"--dump-dom", url}); }

    // What `url` looks like in a 1280x1000 window, saved as a PNG at `png`.
    void screenshot(const std::string& url, const std::string& png) const {
        run({"--screenshot=" + png, url});
    }

  private:
    // Seconds on a quiet machine; only a broken browser takes this long.
    static constexpr std::chrono::seconds kDeadline{60};

    // Runs chromium with `args` after the common ones; its stdout. Throws when it fails or is
    // still running at the deadline (it is then killed, and its helper processes end with it).
    std::string run(const std::vector<std::string>& args) const {
        const TempDir dir("crosstown-chromium");
        const auto profile = dir / "profile";
        if (!javascript_) block_scripts(profile);
        // No sandbox: it needs user namespaces or root's consent, which containers and CI
        // machines often withhold; the pages are the test's own.
        std::vector<std::string> argv{program_,
                                      "--headless",
                                      "--no-sandbox",
                                      "--disable-gpu",
                                      "--hide-scrollbars",
                                      "--no-first-run",
                                      "--window-size=1280,1000",
                                      "--user-data-dir=" + profile};
        argv.insert(argv.end(), args.begin(), args.end());
        ChildProcess chromium(argv, dir / "stdout", dir / "stderr");
        const auto code = chromium.wait(kDeadline);
        if (code != 0) {
            throw std::runtime_error("chromium " +
                                     (code ? "exited with " + std::to_string(*code) : "timed out") +
                                     ":\n" + read(dir / "stderr"));
        }
        return chromium.output();
    }

    // Blocks JavaScript in the profile's settings. Not --blink-settings=scriptEnabled=false:
    // that also stops --dump-dom, which reads the document with a script of its own, and
    // prints nothing. A content setting blocks the page's scripts only.
    static void block_scripts(const std::string& profile) {
        std::filesystem::create_directories(profile + "/Default");
        std::ofstream(profile + "/Default/Preferences")
            << R"({"profile":{"default_content_setting_values":{"javascript":2}}})";
    }

    static std::string read(const std::string& path) {
        std::ifstream file(path);
        return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
    }

    std::string program_;
    bool javascript_;
};

}  // namespace crosstown::test
