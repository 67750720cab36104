// The floor: the obvious hand-written multi-threaded libfcgi responder, as in libfcgi's
// threaded example but without its accept mutex: on Linux, threads blocked in accept() on one
// socket are woken one per connection, so the mutex only serialises them. Each thread blocks
// in FCGX_Accept_r on the shared socket.
//
// It answers fcgi_app's two benchmark endpoints the obvious way:
//   - without ?count: "hello\n" (GET /hello);
//   - with ?count=N&latency_ms=M (POST /calls): 202 at once, then, after FCGX_Finish_r, the N
//     simulated calls of M ms one after the other on the same thread, which serves nothing
//     else meanwhile. For N > 1 it logs "all_done_after_ms=X" (from FCGX_Finish_r to the end
//     of the last call) to stderr, as fcgi_app's GET /calls/{batch} reports it.
//
//   minimal_responder SOCKET_PATH THREADS [GROUP]
#include <fcgiapp.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <thread>
#include <vector>

#include "socket_group.hpp"

namespace {

// The value of `name` in a query string such as "count=100&latency_ms=10", or 0.
long query_number(const char* query, std::string_view name) {
    for (std::string_view rest = query != nullptr ? query : ""; !rest.empty();) {
        const auto end = rest.find('&');
        const auto pair = rest.substr(0, end);
        if (pair.size() > name.size() && pair.starts_with(name) && pair[name.size()] == '=') {
            return std::atol(pair.data() + name.size() + 1);
        }
        rest = end == std::string_view::npos ? "" : rest.substr(end + 1);
    }
    return 0;
}

void place_calls(long count, long latency_ms) {
    const auto finished = std::chrono::steady_clock::now();
    for (long i = 0; i < count; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(latency_ms));
    if (count > 1) {
        const std::chrono::duration<double, std::milli> took =
            std::chrono::steady_clock::now() - finished;
        std::fprintf(stderr, "all_done_after_ms=%.3f\n", took.count());
    }
}

void serve(int listen_fd) {
    FCGX_Request request;
    FCGX_InitRequest(&request, listen_fd, 0);
    static constexpr char kHello[] =
        "Status: 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 6\r\n\r\n"
        "hello\n";
    static constexpr char kAccepted[] =
        "Status: 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
    while (FCGX_Accept_r(&request) >= 0) {
        const char* query = FCGX_GetParam("QUERY_STRING", request.envp);
        const long count = query_number(query, "count");
        const long latency_ms = query_number(query, "latency_ms");
        if (count <= 0) {
            FCGX_PutStr(kHello, sizeof kHello - 1, request.out);
            FCGX_Finish_r(&request);
            continue;
        }
        FCGX_PutStr(kAccepted, sizeof kAccepted - 1, request.out);
        FCGX_Finish_r(&request);
        place_calls(count, latency_ms);
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s SOCKET_PATH THREADS [GROUP]\n", argv[0]);
        return 2;
    }
    FCGX_Init();
    const int listen_fd = FCGX_OpenSocket(argv[1], 1024);
    share_socket_with_group(argv[1], argc > 3 ? argv[3] : nullptr);
    std::vector<std::thread> threads;
    for (int i = 0; i < std::atoi(argv[2]); ++i) threads.emplace_back(serve, listen_fd);
    for (auto& thread : threads) thread.join();
}
