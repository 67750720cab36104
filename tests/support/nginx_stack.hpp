// A real nginx in front of a real fcgi_app (or several, as one upstream), on a free loopback
// port and private paths, for integration tests. nginx serves the shipped site and snippets
// from deploy/nginx as they are, but for its upstream's sockets and its port, inside
// script/lib/nginx.conf.in: what script/server runs.
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
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/app_under_test.hpp"
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
    // One fcgi_app, named "fcgi_app", with `app_args` (plus --listen) behind nginx; waits
    // until a request goes through both.
    explicit NginxStack(std::vector<std::string> app_args = {}) : NginxStack(Instances{}) {
        port_ = free_port();
        start_app(kOne, std::move(app_args));
        start_nginx({kOne});
    }
    // Nothing started yet: start_app() each instance, then start_nginx() with an upstream of
    // those that serve. For several instances sharing a journal (a Redis server).
    struct Instances {
        std::string dir_prefix = "crosstown-it";
    };
    explicit NginxStack(Instances instances) : dir_(instances.dir_prefix) {
        ::chmod(dir_.path().c_str(), 0711);  // nginx's workers must reach the sockets inside
    }
    ~NginxStack() {
        if (nginx_) {
            nginx_->signal(SIGQUIT);
            nginx_->wait(std::chrono::seconds(5));
        }
        for (auto& [name, app] : apps_) {
            if (app->running()) {
                app->signal(SIGTERM);
                app->wait(std::chrono::seconds(15));
            }
        }
        nginx_.reset();
        apps_.clear();
    }

    int port() const { return port_; }
    const std::string& dir() const { return dir_.path(); }
    std::string socket_of(const std::string& name) const { return dir_ / (name + ".sock"); }
    std::string socket() const { return socket_of(kOne); }
    ChildProcess& app(const std::string& name = kOne) { return *apps_.at(name); }

    // Starts instance `name`: fcgi_app listening on socket_of(name) unless `args` say
    // otherwise (a worker has no socket), and waits until it serves or runs jobs. Each start
    // logs to a file of its own: app(name).output() is the current start's log.
    void start_app(const std::string& name, std::vector<std::string> args) {
        args_[name] = args;
        std::vector<std::string> argv{fcgi_app_path(), "--listen", socket_of(name)};
        if (::geteuid() == 0) {  // nginx's workers run as nobody: the socket is for its group
            const passwd* nobody = ::getpwnam("nobody");
            const group* group = nobody ? ::getgrgid(nobody->pw_gid) : nullptr;
            if (group) argv.insert(argv.end(), {"--socket-group", group->gr_name});
        }
        argv.insert(argv.end(), args.begin(), args.end());
        const int start = ++starts_[name];
        const auto log = start == 1 ? name + ".log" : name + "-" + std::to_string(start) + ".log";
        auto& app = apps_[name];
        app = std::make_unique<ChildProcess>(argv, dir_ / log);
        // Until it says it is listening (every responder waits) or running jobs (a worker), or
        // has exited (an error of its own). Tests that read its log from here on see only lines
        // about their requests.
        const auto started = [&] {
            const auto output = app->output();
            return output.find(" listening on ") != std::string::npos ||
                   output.find("worker: running durable jobs") != std::string::npos;
        };
        if (!eventually([&] { return started() || !app->running(); }) || !started()) {
            throw std::runtime_error("fcgi_app " + name + " did not start:\n" + app->output());
        }
    }
    // nginx on a free port (the same one again after restart_nginx), its upstream the sockets
    // of `upstream`.
    void start_nginx(std::vector<std::string> upstream) {
        if (port_ == 0) port_ = free_port();
        upstream_ = std::move(upstream);
        write_config();
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
        throw std::runtime_error("no answer through nginx:\n" + nginx_errors());
    }
    // Stops nginx (SIGQUIT, as `nginx -s quit`) and starts it again on the same port.
    void restart_nginx() {
        nginx_->signal(SIGQUIT);
        nginx_->wait(std::chrono::seconds(10));
        nginx_.reset();
        start_nginx(upstream_);
    }
    // Stops fcgi_app with `signal` (SIGKILL: a crash) and waits up to `timeout` for it to
    // exit; its exit code, or nullopt if it was still running. nginx keeps running (and
    // answers 502) until restart_app().
    std::optional<int> stop_app(int signal, std::chrono::milliseconds timeout = 10s,
                                const std::string& name = kOne) {
        app(name).signal(signal);
        return app(name).wait(timeout);
    }
    // Starts the instance again, after stop_app(), on the same socket with the same arguments.
    void restart_app(const std::string& name = kOne) {
        if (app(name).running()) throw std::logic_error("restart_app: " + name + " still runs");
        start_app(name, args_.at(name));
    }
    std::string nginx_errors() const { return read_file(dir_ / "error.log"); }
    HttpReply get(const std::string& target) const { return http_get(port_, target); }

  private:
    static constexpr const char* kOne = "fcgi_app";

    // nginx's configuration in dir_, as script/server's: script/lib/nginx.sh writes it, the
    // shipped site with its upstream on the instances' sockets and its listen on port_.
    void write_config() const {
        std::vector<std::string> argv{
            "/bin/bash", "-c",
            "cd \"$1\" && source script/lib/nginx.sh && nginx_prefix \"$2\" 1 off && "
            "shipped_site fcgi_app \"$3\" \"${@:4}\" >\"$2/site.conf\"",
            "nginx_stack", SOURCE_DIR, dir_.path(), std::to_string(port_)};
        for (const auto& name : upstream_) argv.push_back(socket_of(name));
        ChildProcess write(argv, dir_ / "nginx-config.log");
        if (write.wait(std::chrono::seconds(10)) != 0) {
            throw std::runtime_error("script/lib/nginx.sh failed:\n" + write.output());
        }
    }

    TempDir dir_;  // destroyed last: the children below are stopped first
    int port_ = 0;
    std::vector<std::string> upstream_;                          // for restart_nginx()
    std::map<std::string, std::vector<std::string>> args_;       // for restart_app()
    std::map<std::string, int> starts_;                          // for each start's log
    std::map<std::string, std::unique_ptr<ChildProcess>> apps_;  // by name
    std::unique_ptr<ChildProcess> nginx_;
};

}  // namespace crosstown::test
