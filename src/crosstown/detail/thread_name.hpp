// crosstown::detail::name_this_thread: gives the calling thread a name that `top -H`,
// `ps -L`, gdb and perf show, so an operator can tell responders from pool workers and from
// the journal's threads. Linux keeps 15 bytes of it; longer names are cut.
#pragma once

#include <pthread.h>

#include <string_view>

namespace crosstown::detail {

inline void name_this_thread(std::string_view name) {
    char buffer[16]{};
    name.copy(buffer, sizeof buffer - 1);
    ::pthread_setname_np(::pthread_self(), buffer);
}

}  // namespace crosstown::detail
