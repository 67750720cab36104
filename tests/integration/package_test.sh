#!/usr/bin/env bash
# Builds the .debs with `cpack -G DEB` from a configured build and checks what they hold.
# crosstown-fcgi-app: every file a deployment needs at its path, the config files marked as
# conffiles, library dependencies found by dpkg-shlibdeps, shipped files unchanged, and a
# binary that runs. libcrosstown-dev: the public headers and nothing private, both libraries,
# the CMake and pkg-config files, Depends on the -dev packages, and the example application
# built, tested and served through nginx against the extracted package, as the getting-started
# guide tells users to (install_test.sh prefix).
# Usage: package_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build_dir=$1
source_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cpack -G DEB -B "$work" --config "$build_dir/CPackConfig.cmake" >"$work/cpack.log" 2>&1 ||
    { cat "$work/cpack.log"; exit 1; }
deb=$(ls "$work"/crosstown-fcgi-app_*.deb)
dev_deb=$(ls "$work"/libcrosstown-dev_*.deb)
echo "built $(basename "$deb") $(basename "$dev_deb")"

failed=0
check() { if "$@"; then echo "ok   $*"; else echo "FAIL $*"; failed=1; fi; }

contents=$(dpkg-deb -c "$deb" | awk '{print $6}')
for path in ./usr/bin/fcgi_app \
    ./usr/lib/systemd/system/fcgi_app.socket ./usr/lib/systemd/system/fcgi_app.service \
    ./usr/lib/systemd/system/fcgi_app@.socket ./usr/lib/systemd/system/fcgi_app@.service \
    ./etc/fcgi_app/fcgi_app.conf \
    ./etc/nginx/snippets/fcgi_app.conf ./etc/nginx/snippets/fcgi_app_upstream.conf \
    ./etc/nginx/sites-available/fcgi_app ./etc/nginx/sites-available/fcgi_app_instances \
    ./usr/share/doc/crosstown-fcgi-app/README.md \
    ./usr/share/doc/crosstown-fcgi-app/doc/deploying.md \
    ./usr/share/doc/crosstown-fcgi-app/doc/operating.md; do
    check grep -q -x -F "$path" <<<"$contents"
done
# Nothing enabled behind the administrator's back, and no build output.
check test -z "$(grep -E 'sites-enabled|\.wants/|\.a$|\.o$|include/' <<<"$contents")"

depends=$(dpkg-deb -f "$deb" Depends)
for library in libfcgi0ldbl libfmt9 libsystemd0 libboost-program-options; do
    check grep -q "$library" <<<"$depends"
done
check grep -q nginx <<<"$(dpkg-deb -f "$deb" Recommends)"

dpkg-deb -e "$deb" "$work/control"
check diff "$source_dir/deploy/debian/conffiles" "$work/control/conffiles"
check test -x "$work/control/postinst"

dpkg-deb -x "$deb" "$work/root"
for unit in fcgi_app.socket fcgi_app.service fcgi_app@.socket fcgi_app@.service; do
    check cmp "$source_dir/systemd/$unit" "$work/root/usr/lib/systemd/system/$unit"
done
check cmp "$source_dir/deploy/fcgi_app.conf" "$work/root/etc/fcgi_app/fcgi_app.conf"
version=$("$work/root/usr/bin/fcgi_app" --version)
check test "$version" = "fcgi_app $(dpkg-deb -f "$deb" Version)"
# The packaged binary reads the packaged config file.
check "$work/root/usr/bin/fcgi_app" --config "$work/root/etc/fcgi_app/fcgi_app.conf" --help

# The development package: exactly the public headers, the libraries and both config files.
dev_contents=$(dpkg-deb -c "$dev_deb" | awk '{print $6}' | grep -v '/$')
libdir=$(sed -n 's/^CMAKE_INSTALL_LIBDIR:[A-Z]*=//p' "$build_dir/CMakeCache.txt")
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build_dir/CMakeCache.txt")
expected=$( (cd "$source_dir/include" && find crosstown -type f | sed 's|^|./usr/include/|')
    for file in libcrosstown.a libcrosstown_testing.a pkgconfig/crosstown.pc \
        pkgconfig/crosstown-testing.pc cmake/crosstown/crosstownConfig.cmake \
        cmake/crosstown/crosstownConfigVersion.cmake cmake/crosstown/crosstownTargets.cmake \
        "cmake/crosstown/crosstownTargets-${build_type,,}.cmake"; do
        echo "./usr/$libdir/$file"
    done)
check diff <(sort <<<"$expected") <(sort <<<"$dev_contents")
dev_depends=$(dpkg-deb -f "$dev_deb" Depends)
for package in libfmt-dev libfcgi-dev libsystemd-dev libboost-program-options-dev pkg-config; do
    check grep -q "$package" <<<"$dev_depends"
done
# The README's install line names the file script/package makes.
check grep -q -x -F 'sudo apt install ./build/package/libcrosstown-dev_*.deb' \
    "$source_dir/README.md"
check grep -q 'cpack -G DEB -B build/package' "$source_dir/script/package"
dpkg-deb -x "$dev_deb" "$work/dev"
check "$source_dir/tests/integration/install_test.sh" prefix "$build_dir" "$source_dir" \
    "$work/dev/usr"
exit $failed
