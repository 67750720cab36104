#include "crosstown/service/idle_trim.hpp"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace crosstown {

void trim_malloc_heaps() {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

}  // namespace crosstown
