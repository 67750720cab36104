// Throughput of no-op durable jobs, end to end: each of 8 threads (standing for responders)
// commits one job per "request" through the journal's group commit and starts it, and the
// iteration ends when every job has run and its completion is written (the row deleted). Beside
// it, in the same binary and run, the same requests with an in-memory follow_response
// callback instead, so the figure reads as a ratio. The first argument is --journal-sync: 0
// normal, 1 full; the second, 1 when every job has a unique key of its own (what keying costs:
// each request's key is new, so none is deduplicated). The journal lives in a fresh directory
// under /tmp (JOURNAL_DIR to choose another filesystem; the label names the one used).
//
// The ceiling for full: each commit waits for one fdatasync, so 8 committers and a group
// commit that always groups make at most 8 / (fdatasync's latency) jobs/s. The bench measures
// that latency on the journal's filesystem (fdatasync_us) and reports the ceiling
// (full_ceiling_per_s) and the share of it reached (of_ceiling).
//
//   build/release/bench/jobs_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <latch>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "crosstown/deferred/pool.hpp"
#include "crosstown/jobs/job_batch.hpp"
#include "crosstown/jobs/job_runner.hpp"
#include "crosstown/jobs/sqlite/sqlite_job_database.hpp"
#include "crosstown/jobs/sqlite/sqlite_job_store.hpp"

namespace {

constexpr int kThreads = 8;
constexpr int kRequestsPerThread = 2'500;
constexpr int kJobs = kThreads * kRequestsPerThread;

// A journal in a directory of its own, removed afterwards.
struct ScratchJournal {
    std::filesystem::path dir;
    ScratchJournal() {
        const char* parent = std::getenv("JOURNAL_DIR");
        std::string pattern =
            std::string(parent != nullptr ? parent : "/tmp") + "/jobs_bench-XXXXXX";
        if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp " + pattern);
        dir = pattern;
    }
    ~ScratchJournal() { std::filesystem::remove_all(dir); }
    std::string path() const { return (dir / "jobs.db").string(); }
};

// The median latency of fdatasync after rewriting one 4 KiB page in place, as a commit to the
// WAL does once the WAL has wrapped, in `dir`.
double median_fdatasync_seconds(const std::filesystem::path& dir) {
    const auto path = dir / "fdatasync-probe";
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) throw std::runtime_error("open " + path.string());
    std::array<char, 4096> page{};
    std::vector<double> seconds;
    for (int i = 0; i < 200; ++i) {
        page[0] = static_cast<char>(i);
        const auto start = std::chrono::steady_clock::now();
        if (::pwrite(fd, page.data(), page.size(), (i % 16) * 4096) < 0 || ::fdatasync(fd) != 0)
            throw std::runtime_error("pwrite/fdatasync " + path.string());
        seconds.push_back(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    ::close(fd);
    std::filesystem::remove(path);
    std::nth_element(seconds.begin(), seconds.begin() + 100, seconds.end());
    return seconds[100];
}

std::string filesystem_of(const std::filesystem::path& dir) {
    struct statfs fs{};
    if (::statfs(dir.c_str(), &fs) != 0) return "unknown";
    switch (static_cast<unsigned long>(fs.f_type)) {
        case 0xEF53: return "ext4";
        case 0x01021994: return "tmpfs";
        case 0x58465342: return "xfs";
        case 0x9123683E: return "btrfs";
        case 0x794C7630: return "overlayfs";
        default: return "filesystem 0x" + std::to_string(fs.f_type);
    }
}

// Runs `request(thread, i)` kRequestsPerThread times on each of kThreads threads.
template <class Request>
void from_threads(Request request) {
    std::vector<std::jthread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&request, t] {
            for (int i = 0; i < kRequestsPerThread; ++i) request(t, i);
        });
    }
}

void durable_noop_jobs(benchmark::State& state) {
    const auto sync =
        state.range(0) == 1 ? crosstown::JournalSync::full : crosstown::JournalSync::normal;
    ScratchJournal scratch;
    crosstown::Pool pool;
    crosstown::JobKinds kinds;
    kinds.define("noop", {}, [](const crosstown::Job&, std::stop_token) {});
    crosstown::SqliteJobStore writer(crosstown::SqliteJobDatabase::open(
        scratch.path(), sync, crosstown::SqliteJobDatabase::Access::read_write));
    crosstown::JobRunner runner(kinds, writer, pool);
    const bool keyed = state.range(1) == 1;
    int round = 0;
    const auto outcome = std::make_shared<const crosstown::ResponseOutcome>(
        crosstown::ResponseOutcome{"bench", 200, true, nullptr, {}});
    std::chrono::steady_clock::duration elapsed{};
    for (auto _ : state) {
        const auto start = std::chrono::steady_clock::now();
        ++round;
        from_threads([&](int thread, int i) {
            crosstown::JobBatch batch(&kinds, 1);
            crosstown::DurableOptions options;
            if (keyed) options.unique_key = fmt::format("{}-{}-{}", round, thread, i);
            batch.add("noop", "{}", options);
            runner.start(runner.commit(batch, 200, "bench"), outcome);
        });
        runner.wait_idle();
        writer.flush();
        elapsed += std::chrono::steady_clock::now() - start;
    }
    state.SetItemsProcessed(state.iterations() * kJobs);
    const auto sizes = writer.batch_sizes();
    state.counters["jobs_per_commit"] =
        sizes.count == 0 ? 0.0 : static_cast<double>(sizes.sum) / static_cast<double>(sizes.count);
    state.SetLabel("journal on " + filesystem_of(scratch.dir));
    if (sync != crosstown::JournalSync::full) return;
    const double fdatasync = median_fdatasync_seconds(scratch.dir);
    const double ceiling = kThreads / fdatasync;
    const double jobs_per_s = static_cast<double>(state.iterations() * kJobs) /
                              std::chrono::duration<double>(elapsed).count();
    state.counters["fdatasync_us"] = fdatasync * 1e6;
    state.counters["full_ceiling_per_s"] = ceiling;
    state.counters["of_ceiling"] = jobs_per_s / ceiling;
}

// A closed loop of kConnections clients, each sending its next request when its response is
// out, served by kThreads responders that leave each request to its commit
// (JobRunner::commit_then) as the server's do: what follows the commit (here: the jobs start,
// and the client's next request arrives) runs on whichever thread wrote it.
class Arrivals {
  public:
    void arrive(int connection) {
        {
            std::lock_guard lock(mutex_);
            waiting_.push_back(connection);
        }
        cv_.notify_one();
    }
    // The next request's connection, or -1 once closed.
    int next() {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [&] { return closed_ || !waiting_.empty(); });
        if (waiting_.empty()) return -1;
        const int connection = waiting_.front();
        waiting_.pop_front();
        return connection;
    }
    void close() {
        {
            std::lock_guard lock(mutex_);
            closed_ = true;
        }
        cv_.notify_all();
    }

  private:
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<int> waiting_;
    bool closed_ = false;
};

void durable_noop_jobs_left_to_commit(benchmark::State& state) {
    constexpr int kConnections = 64;
    ScratchJournal scratch;
    crosstown::Pool pool;
    crosstown::JobKinds kinds;
    kinds.define("noop", {}, [](const crosstown::Job&, std::stop_token) {});
    crosstown::SqliteJobStore writer(crosstown::SqliteJobDatabase::open(
        scratch.path(), crosstown::JournalSync::normal,
        crosstown::SqliteJobDatabase::Access::read_write));
    crosstown::JobRunner runner(kinds, writer, pool);
    const auto outcome = std::make_shared<const crosstown::ResponseOutcome>(
        crosstown::ResponseOutcome{"bench", 200, true, nullptr, {}});

    struct Answer final : crosstown::AfterCommit {
        Answer(crosstown::JobRunner& runner, Arrivals& arrivals, std::atomic<int>& sent,
               std::shared_ptr<const crosstown::ResponseOutcome> outcome, int connection)
            : runner(runner), arrivals(arrivals), sent(sent), outcome(std::move(outcome)),
              connection(connection) {}
        void committed(std::vector<crosstown::CommittedJob> jobs,
                       std::exception_ptr failure) noexcept override {
            if (failure) std::terminate();  // a bench on a healthy disk
            runner.start(std::move(jobs), outcome);
            if (sent.fetch_add(1) < kJobs - kConnections) arrivals.arrive(connection);
        }
        crosstown::JobRunner& runner;
        Arrivals& arrivals;
        std::atomic<int>& sent;
        std::shared_ptr<const crosstown::ResponseOutcome> outcome;
        int connection;
    };

    for (auto _ : state) {
        Arrivals arrivals;
        std::atomic<int> sent{0};
        for (int c = 0; c < kConnections; ++c) arrivals.arrive(c);
        {
            std::vector<std::jthread> responders;
            for (int t = 0; t < kThreads; ++t) {
                responders.emplace_back([&] {
                    for (int c = arrivals.next(); c >= 0; c = arrivals.next()) {
                        crosstown::JobBatch batch(&kinds, 1);
                        batch.add("noop", "{}", {});
                        runner.commit_then(batch, 200, "bench",
                                           std::make_unique<Answer>(runner, arrivals, sent,
                                                                    outcome, c));
                    }
                });
            }
            while (sent.load() < kJobs) std::this_thread::sleep_for(std::chrono::milliseconds(1));
            arrivals.close();
        }
        runner.wait_idle();
        writer.flush();
    }
    state.SetItemsProcessed(state.iterations() * kJobs);
    const auto sizes = writer.batch_sizes();
    state.counters["jobs_per_commit"] =
        sizes.count == 0 ? 0.0 : static_cast<double>(sizes.sum) / static_cast<double>(sizes.count);
}

void in_memory_noop_callbacks(benchmark::State& state) {
    crosstown::Pool pool;
    for (auto _ : state) {
        std::latch done(kJobs);
        from_threads([&](int, int) {
            pool.submit({[&done] { done.count_down(); }, "noop", nullptr, {}});
        });
        done.wait();
    }
    state.SetItemsProcessed(state.iterations() * kJobs);
}

}  // namespace

BENCHMARK(in_memory_noop_callbacks)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(durable_noop_jobs)
    ->Args({0, 0})
    ->Args({0, 1})
    ->Args({1, 0})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(durable_noop_jobs_left_to_commit)->UseRealTime()->Unit(benchmark::kMillisecond);
