#!/usr/bin/env bash
# Builds and runs examples/signup the ways the getting-started guide tells users to, and checks
# that each of the guide's snippets is what the test actually ran (and that the README, which
# repeats the install snippets, shows the same). NGINX: the nginx binary.
# Usage: install_test.sh prefix BUILD_DIR SOURCE_DIR DIR   find_package and pkg-config against
#                                                          an installed DIR (the extracted
#                                                          .deb's usr/), each header on its
#                                                          own, and the example served
#                                                          through nginx
#        install_test.sh fetchcontent BUILD_DIR SOURCE_DIR FetchContent from the source tree
set -euo pipefail
mode=$1
build_dir=$(cd "$2" && pwd)
source_dir=$(cd "$3" && pwd)
source "$source_dir/script/lib/processes.sh"
source "$source_dir/script/lib/nginx.sh"
work_dir install
cache() { sed -n "s/^$1:[A-Z]*=//p" "$build_dir/CMakeCache.txt"; }
cxx=$(cache CMAKE_CXX_COMPILER)
libdir=$(cache CMAKE_INSTALL_LIBDIR)
failed=0
check() { if "$@"; then echo "ok   $*"; else echo "FAIL $*"; failed=1; fi; }

# The code block that follows <!-- snippet: NAME --> in the getting-started guide (or FILE).
snippet() {
    awk -v marker="<!-- snippet: $1 -->" '
        $0 == marker { found = 1; next }
        found && /^```/ { if (inside) exit; inside = 1; next }
        inside { print }' "$source_dir/${2:-doc/getting-started.md}"
}

# The README repeats the guide's install snippets; they must not drift apart.
readme_repeats_guide() {
    local name
    for name in deb find_package fetchcontent pkg-config; do
        [ "$(snippet "$name" README.md)" = "$(snippet "$name")" ] ||
            { echo "README's $name snippet differs from the guide's"; return 1; }
    done
}

# Every line of the guide's CMake snippet NAME is a line of the example's CMakeLists.txt.
snippet_in_example() {
    local line
    [ -n "$(snippet "$1")" ] || return 1
    while IFS= read -r line; do
        grep -q -x -F "$line" <(sed 's/^ *//' "$source_dir/examples/signup/CMakeLists.txt") ||
            { echo "not in examples/signup/CMakeLists.txt: $line"; return 1; }
    done < <(snippet "$1")
}

# Configures, builds and tests the example with CMake; extra arguments go to the configure.
# Through ccache when crosstown's own build found it: a user's build is the same either way,
# and the fetched library's sources (under the source tree) are lookups from the second run.
build_example() {
    local dir=$1; shift
    local launcher=()
    local ccache
    ccache=$(cache CROSSTOWN_CCACHE)
    [ -x "$ccache" ] && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER="$ccache")
    CCACHE_BASEDIR=$source_dir CCACHE_NOHASHDIR=1 \
        cmake -S "$source_dir/examples/signup" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_CXX_COMPILER="$cxx" "${launcher[@]}" "$@" >"$dir.log" 2>&1 ||
        { cat "$dir.log"; return 1; }
    CCACHE_BASEDIR=$source_dir CCACHE_NOHASHDIR=1 cmake --build "$dir" >>"$dir.log" 2>&1 ||
        { cat "$dir.log"; return 1; }
    ctest --test-dir "$dir" --output-on-failure >>"$dir.log" 2>&1 || { cat "$dir.log"; return 1; }
    "$dir/signup" --version | grep -q -x 'signup 1.0'
}

# Runs the guide's pkg-config lines in a copy of the example (every line must succeed), then
# the server and the test they built.
build_with_pkg_config() {
    local prefix=$1
    cp -r "$source_dir/examples/signup" "$work/pc"
    (cd "$work/pc" && export PKG_CONFIG_PATH="$prefix/$libdir/pkgconfig" CXX="$cxx" &&
        bash -euo pipefail -c "$(snippet pkg-config | sed 's/^c++ /"$CXX" /')" &&
        ./signup --version | grep -q -x 'signup 1.0' && ./signup_test >/dev/null)
}

# Each public header compiles on its own, from the installed tree alone; as many compilers at
# once as the builds run (CMAKE_BUILD_PARALLEL_LEVEL, else one per core).
headers_stand_alone() {
    local prefix=$1
    (cd "$prefix/include" && find crosstown -name '*.hpp' | sort) |
        xargs -P "${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" -I '{}' sh -c 'echo "#include <$2>" |
            "$0" -std=c++20 -fsyntax-only -I "$1" -x c++ - || { echo "does not compile alone: $2"; exit 1; }' \
            "$cxx" "$prefix/include" '{}'
}

# The guide's "Serving it", as written: the example on a unix socket for nginx's workers'
# group, a copy of the shipped site with its upstream on that socket (shipped_site), the curl
# line. Here the socket is in $work, the group the one nginx's workers get, and the port one
# from the kernel.
serves_behind_nginx() {
    local app_dir=$1 dir=$work/serve group port serve try reply
    mkdir -p "$dir"
    chmod 711 "$work" "$dir"
    group=$(id -gn)
    [ "$(id -u)" -ne 0 ] || group=$(id -gn nobody)
    serve=$(snippet serve)
    [[ $serve == "build/signup --listen /tmp/signup.sock --socket-group www-data" ]] ||
        { echo "the guide's serve command changed: $serve"; return 1; }
    serve=${serve/build\/signup/$app_dir/signup}
    serve=${serve/\/tmp\/signup.sock/$dir/signup.sock}
    start bash -c "exec ${serve/www-data/$group} 2>'$dir/signup.log'"
    for _ in $(seq 200); do [ -S "$dir/signup.sock" ] && break; sleep 0.02; done
    [ -S "$dir/signup.sock" ] || { echo "the example did not listen:"; cat "$dir/signup.log"; return 1; }

    reserve_ports 1
    port=${reserved_ports[0]}
    (cd "$source_dir" && nginx_prefix "$dir" 1 off &&
        shipped_site fcgi_app "$port" "$dir/signup.sock" >"$dir/site.conf")
    start "$NGINX" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;'
    # The pid file is written once nginx listens: only then may the port go.
    for _ in $(seq 200); do [ -s "$dir/nginx.pid" ] && break; sleep 0.02; done
    release_ports
    try=$(snippet try)
    try=${try/http:\/\/localhost/http://127.0.0.1:$port}
    for _ in $(seq 100); do
        reply=$(bash -c "$try" 2>/dev/null) && [ -n "$reply" ] && break
        sleep 0.05
    done
    grep -q '^HTTP/1.1 201 Created' <<<"$reply" && grep -q -F '{"id":1}' <<<"$reply" ||
        { echo "through nginx: $reply"; cat "$dir/error.log" "$dir/signup.log"; return 1; }
    for _ in $(seq 100); do
        grep -q -F 'welcome mail sent to ada@example.org (account 1)' "$dir/signup.log" && break
        sleep 0.05
    done
    grep -q -F 'welcome mail sent to ada@example.org (account 1)' "$dir/signup.log" ||
        { echo "no welcome mail in the log:"; cat "$dir/signup.log"; return 1; }
    stop_started
}

case $mode in
    prefix)
        prefix=$(cd "$4" && pwd)
        check snippet_in_example find_package
        check build_example "$work/find_package" -DCMAKE_PREFIX_PATH="$prefix"
        check build_with_pkg_config "$prefix"
        check headers_stand_alone "$prefix"
        check serves_behind_nginx "$work/find_package"
        check readme_repeats_guide
        ;;
    fetchcontent)
        check snippet_in_example fetchcontent
        # Neither optimised nor with debug information (build type None: the compiler's
        # defaults), and in a unity build: what is checked is that the fetched library builds
        # and links into the example, in about a third of a release build's processor time;
        # the release preset compiles each of its files on its own.
        check build_example "$work/fetchcontent" -DSIGNUP_FETCH_CROSSTOWN=ON \
            -DFETCHCONTENT_SOURCE_DIR_CROSSTOWN="$source_dir" -DCMAKE_BUILD_TYPE=None \
            -DCMAKE_UNITY_BUILD=ON
        # Nested, crosstown builds the library only: no fcgi_app, no tests of its own.
        check test ! -e "$work/fetchcontent/_deps/crosstown-build/fcgi_app"
        check test "$(ctest --test-dir "$work/fetchcontent" -N | grep -c 'Test *#')" -eq 1
        ;;
    *) echo "unknown mode $mode" >&2; exit 2 ;;
esac
exit $failed
