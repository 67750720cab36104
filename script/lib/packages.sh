# What building crosstown and running its tests needs, as Debian 12 packages.
build_packages=(build-essential cmake ninja-build pkg-config libfmt-dev libboost-dev
    libboost-program-options-dev libfcgi-dev libsystemd-dev nlohmann-json3-dev libgtest-dev libgmock-dev
    libbenchmark-dev libsqlite3-dev libhiredis-dev ccache lld)
# The durable-jobs tests on Redis start a real server on loopback; the soak's smoke test loads
# fcgi_app with wrk and reads its figures with curl; kernel-chosen ports come from python3.
test_server_packages=(nginx redis-server wrk curl python3)
# The sanitizer and fuzz presets: clang, its sanitizer and libFuzzer runtimes, and
# llvm-symbolizer, which puts file names and lines in their reports.
clang_packages=(clang libclang-rt-14-dev llvm)
# The status page's integration test renders it in a real browser.
browser_packages=(chromium)

# ensure_packages PKG...: installs the Debian packages that are not installed yet.
# Quiet when everything is present; runs apt-get update once, only when something is missing;
# uses sudo when not root. Sourced by the scripts in script/.
ensure_packages() {
    local missing=()
    local pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0

    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    echo "== installing missing packages: ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}
