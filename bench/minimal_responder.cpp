// The floor: the obvious hand-written multi-threaded libfcgi responder, as in libfcgi's
// examples/threaded.c but without its accept mutex (platform-notes.md: not needed on Linux).
// Each thread blocks in FCGX_Accept_r on the shared socket and answers "hello\n".
//
//   minimal_responder SOCKET_PATH THREADS [GROUP]
#include <fcgiapp.h>
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace {

void serve(int listen_fd) {
    FCGX_Request request;
    FCGX_InitRequest(&request, listen_fd, 0);
    static constexpr char kReply[] =
        "Status: 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 6\r\n\r\n"
        "hello\n";
    while (FCGX_Accept_r(&request) >= 0) {
        FCGX_PutStr(kReply, sizeof kReply - 1, request.out);
        FCGX_Finish_r(&request);
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
    if (argc > 3) {
        const group* found = ::getgrnam(argv[3]);
        if (found == nullptr || ::chown(argv[1], static_cast<uid_t>(-1), found->gr_gid) != 0) {
            std::perror("chown");
            return 1;
        }
    }
    ::chmod(argv[1], 0660);
    std::vector<std::thread> threads;
    for (int i = 0; i < std::atoi(argv[2]); ++i) threads.emplace_back(serve, listen_fd);
    for (auto& thread : threads) thread.join();
}
