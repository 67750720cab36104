// share_socket_with_group: lets nginx's workers reach a benchmark backend's unix socket. When
// the benchmark runs as root, nginx's workers run as nobody: the socket goes to their group,
// read-write for owner and group only, as fcgi_app's --socket-group does. Exits on failure.
#pragma once

#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

inline void share_socket_with_group(const char* path, const char* group_name) {
    if (group_name != nullptr) {
        const group* found = ::getgrnam(group_name);
        if (found == nullptr || ::chown(path, static_cast<uid_t>(-1), found->gr_gid) != 0) {
            std::perror("chown");
            std::exit(1);
        }
    }
    ::chmod(path, 0660);
}
