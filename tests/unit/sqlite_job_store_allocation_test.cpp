#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <future>
#include <new>
#include <string>
#include <vector>

#include "crosstown/jobs/follow_response_durably.hpp"
#include "crosstown/jobs/sqlite/sqlite_job_store.hpp"
#include "support/journal_files.hpp"
#include "support/temp_dir.hpp"

// Allocation failure, injected: the n-th allocation from now on the thread that sets
// fail_allocation_in fails with std::bad_alloc. The writer's round runs on the committing
// thread (the leader), so a test reaches every allocation of a round this way. A file of its
// own: a program has one operator new, and clang's ThreadSanitizer runtime links its own.
namespace {
thread_local long fail_allocation_in = -1;  // -1: never
}  // namespace

void* operator new(std::size_t size) {
    if (fail_allocation_in > 0 && --fail_allocation_in == 0) {
        fail_allocation_in = -1;
        throw std::bad_alloc();
    }
    if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
    throw std::bad_alloc();
}
// GCC sees free() given what operator new returned once these are inlined: they are a pair.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace crosstown {
namespace {

using namespace std::chrono_literals;

std::vector<std::int64_t> commit(SqliteJobStore& writer, const std::vector<std::string>& payloads) {
    std::vector<NewJob> jobs;
    for (const auto& payload : payloads) jobs.push_back({"k", payload, "r"});
    return writer.commit(jobs);
}

// An allocation that fails anywhere in a commit, the writer's round included, fails that
// commit at most: the next commit goes through, and nothing waits for ever.
TEST(SqliteJobStore, AnAllocationFailureInARoundFailsOnlyThatCommit) {
    test::TempDir dir;
    const auto path = dir / "jobs.db";
    SqliteJobStore writer(test::open_rw(path));
    int refused = 0;
    std::size_t committed = 0;  // jobs
    for (long n = 1; n <= 40; ++n) {
        fail_allocation_in = n;
        try {
            committed += commit(writer, {"payload", "payload"}).size();
        } catch (const JournalUnavailable&) {
            ++refused;  // failed inside the round: the writer caught it
        } catch (const std::bad_alloc&) {
            // failed before the round, in the caller's own allocations
        }
        fail_allocation_in = -1;
        auto next = std::async(std::launch::async, [&] { return commit(writer, {"next"}); });
        ASSERT_EQ(next.wait_for(10s), std::future_status::ready)
            << "a commit hangs after an allocation failure at allocation " << n;
        ASSERT_EQ(next.get().size(), 1U);
        ++committed;
    }
    EXPECT_GT(refused, 0)
        << "no allocation failed inside the writer's round: the test proves little";
    writer.flush();
    EXPECT_EQ(test::stored(path).size(), committed) << "the journal holds what was committed";
}

}  // namespace
}  // namespace crosstown
