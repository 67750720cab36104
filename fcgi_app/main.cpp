// fcgi_app: crosstown's reference application. See routes.hpp for its endpoints,
// `fcgi_app --help` for its options and `fcgi_app jobs --help` for its durable jobs.
#include <chrono>
#include <crosstown/jobs/jobs_command.hpp>
#include <crosstown/server.hpp>
#include <cstdio>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <system_error>

#include "call_ledger.hpp"
#include "routes.hpp"
#include "witness.hpp"

int main(int argc, char** argv) {
    if (argc > 1 && std::string_view(argv[1]) == "jobs") {
        return crosstown::jobs_command(argc - 1, argv + 1, "fcgi_app jobs");
    }
    const crosstown::ProgramInfo program{
        .name = "fcgi_app",
        .version = CROSSTOWN_VERSION,
        .summary = "the crosstown reference application",
        .app_options = {{"witness",
                         "append each placed durable call to this file (for tests "
                         "and demonstrations)"},
                        {"call-backoff",
                         "durable calls: the wait before a failed call's second attempt, then "
                         "doubling (default 200ms; tests make failed calls wait longer)"},
                        {"call-rate",
                         "durable calls: at most N starts a second, across every instance "
                         "sharing a Redis journal, as N or N/BURST (default: no limit)"}}};
    const auto parsed = crosstown::parse_server_config(argc, argv, program);
    if (!parsed.config) return parsed.exit_code;

    crosstown::Server server(*parsed.config);
    fcgi_app::CallLedger ledger;
    const auto& options = server.config().app_options;
    std::optional<fcgi_app::Witness> witness;
    auto call_backoff = std::chrono::milliseconds(200);
    crosstown::JobRate call_rate;
    try {
        if (const auto it = options.find("call-rate"); it != options.end()) {
            call_rate = fcgi_app::parse_rate(it->second);
        }
        witness.emplace(options.contains("witness") ? options.find("witness")->second : "");
        if (const auto it = options.find("call-backoff"); it != options.end()) {
            call_backoff = crosstown::parse_duration(it->second);
            if (call_backoff.count() <= 0) throw std::invalid_argument("must be positive");
        }
    } catch (const std::system_error& e) {
        std::fprintf(stderr, "fcgi_app: %s\n", e.what());
        return 2;
    } catch (const fcgi_app::BadRate& e) {
        std::fprintf(stderr, "fcgi_app: --call-rate: %s\n", e.what());
        return 2;
    } catch (const std::invalid_argument& e) {
        std::fprintf(stderr, "fcgi_app: --call-backoff: %s\n", e.what());
        return 2;
    }
    if (server.config().journal.enabled()) {
        fcgi_app::define_place_call(server.jobs(), ledger, *witness, call_backoff, call_rate);
    }
    const fcgi_app::App app{ledger,
                            server.config().limits.max_deferred_per_request,
                            [&server] { return server.metrics(); },
                            [&server] { return server.accepting(); },
                            server.status_page(),
                            server.config().journal.is_redis()};
    fcgi_app::add_routes(server.router(), app);
    return server.run();
}
