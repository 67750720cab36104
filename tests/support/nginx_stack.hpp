// A real nginx in front of a real fcgi_app, on a free loopback port and private paths, for
// integration tests. nginx's config is generated from script/lib/nginx.conf.in (the template
// script/server uses), which includes the shipped deploy/nginx snippets as they are.
//
// Run as root, nginx's workers are `nobody`: fcgi_app's socket then gets nobody's group
// (--socket-group) and keeps its default mode 0660, as in production with www-data.
#pragma once

#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/child_process.hpp"
#include "support/eventually.hpp"
#include "support/http_client.hpp"
#include "support/loopback.hpp"
#include "support/temp_dir.hpp"

namespace crosstown::test {

inline std::string replace_all(std::string text, const std::string& from, const std::string& to) {
    for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
        text.replace(at, from.size(), to);
    }
    return text;
}

inline std::string read_file(const std::string& path) {
    std::ifstream file(path);
    std::stringstream text;
    text << file.rdbuf();
    return text.str();
}

class NginxStack {
  public:
    // Starts fcgi_app with `app_args` (plus --listen) and nginx, and waits until a request
    // goes through both.
    explicit NginxStack(std::vector<std::string> app_args = {})
        : dir_("crosstown-it"), socket_(dir_ / "fcgi_app.sock") {
        ::chmod(dir_.path().c_str(), 0711);  // nginx's workers must reach the socket inside
        port_ = free_port();
        start_app(std::move(app_args));
        start_nginx();
    }
    ~NginxStack() {
        if (nginx_) {
            nginx_->signal(SIGQUIT);
            nginx_->wait(std::chrono::seconds(5));
        }
        if (app_ && app_->running()) {
            app_->signal(SIGTERM);
            app_->wait(std::chrono::seconds(10));
        }
        nginx_.reset();
        app_.reset();
    }

    int port() const { return port_; }
    const std::string& socket() const { return socket_; }
    // Stops nginx (SIGQUIT, as `nginx -s quit`) and starts it again on the same port.
    void restart_nginx() {
        nginx_->signal(SIGQUIT);
        nginx_->wait(std::chrono::seconds(10));
        nginx_.reset();
        start_nginx();
    }
    ChildProcess& app() { return *app_; }
    // Stops fcgi_app with `signal` (SIGKILL: a crash) and waits up to `timeout` for it to
    // exit; its exit code, or nullopt if it was still running. nginx keeps running (and
    // answers 502) until restart_app().
    std::optional<int> stop_app(int signal, std::chrono::milliseconds timeout = 10s) {
        app_->signal(signal);
        return app_->wait(timeout);
    }
    // Starts fcgi_app again, after stop_app(), on the same socket with the same arguments, and
    // waits until it listens. Each start logs to a file of its own: app().output() is the
    // current start's log.
    void restart_app() {
        if (app_->running()) throw std::logic_error("restart_app: fcgi_app is still running");
        app_.reset();
        start_app(app_args_);
    }
    std::string nginx_errors() const { return read_file(dir_ / "error.log"); }
    HttpReply get(const std::string& target) const { return http_get(port_, target); }

  private:
    void start_app(std::vector<std::string> args) {
        app_args_ = args;
        std::vector<std::string> argv{FCGI_APP_PATH, "--listen", socket_};
        if (::geteuid() == 0) {
            const passwd* nobody = ::getpwnam("nobody");
            const group* group = nobody ? ::getgrgid(nobody->pw_gid) : nullptr;
            if (group) argv.insert(argv.end(), {"--socket-group", group->gr_name});
        }
        argv.insert(argv.end(), args.begin(), args.end());
        const auto log = ++app_starts_ == 1 ? std::string("fcgi_app.log")
                                            : "fcgi_app-" + std::to_string(app_starts_) + ".log";
        app_ = std::make_unique<ChildProcess>(argv, dir_ / log);
        // Until it says it is listening (every responder waits), or has exited (an error of
        // its own). Tests that read its log from here on see only lines about their requests.
        const auto listening = [&] {
            return app_->output().find(" listening on ") != std::string::npos;
        };
        if (!eventually([&] { return listening() || !app_->running(); }) || !listening()) {
            throw std::runtime_error("fcgi_app did not start:\n" + app_->output());
        }
    }

    void start_nginx() {
        auto config = read_file(std::string(SOURCE_DIR) + "/script/lib/nginx.conf.in");
        const std::pair<std::string, std::string> substitutions[] = {
            {"@PREFIX@", dir_.path()}, {"@WORKERS@", "1"},       {"@ACCESS_LOG@", "off"},
            {"@SOCKET@", socket_},     {"@SOURCE@", SOURCE_DIR}, {"@PORT@", std::to_string(port_)}};
        for (const auto& [key, value] : substitutions) {
            config = replace_all(config, key, value);
        }
        std::ofstream(dir_ / "nginx.conf") << config;
        if (!std::filesystem::exists(dir_ / "fastcgi_params")) {
            std::filesystem::create_symlink("/etc/nginx/fastcgi_params", dir_ / "fastcgi_params");
        }
        const std::vector<std::string> base{NGINX_PATH, "-p", dir_.path(), "-c",
                                            dir_ / "nginx.conf"};
        {
            auto check = base;
            check.push_back("-t");
            ChildProcess test(check, dir_ / "nginx-t.log");
            if (test.wait(std::chrono::seconds(10)) != 0) {
                throw std::runtime_error("nginx -t failed:\n" + test.output());
            }
        }
        auto run = base;
        run.insert(run.end(), {"-g", "daemon off;"});
        nginx_ = std::make_unique<ChildProcess>(run, dir_ / "nginx.out");
        if (eventually([&] { return get("/healthz").status == 200; }, 5s, 10ms)) return;
        throw std::runtime_error("no answer through nginx:\n" + nginx_errors() + app_->output());
    }

    TempDir dir_;  // destroyed last: the children below are stopped first
    std::string socket_;
    int port_ = 0;
    std::vector<std::string> app_args_;  // for restart_app()
    int app_starts_ = 0;
    std::unique_ptr<ChildProcess> app_;
    std::unique_ptr<ChildProcess> nginx_;
};

}  // namespace crosstown::test
