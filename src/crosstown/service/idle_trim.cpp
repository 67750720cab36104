#include "crosstown/service/idle_trim.hpp"

#if __has_include(<features.h>)
#include <features.h>  // defines __GLIBC__ with glibc
#endif
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
