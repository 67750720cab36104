#!/usr/bin/env bash
# Builds the .deb with `cpack -G DEB` from a configured build and checks what it holds: every
# file a deployment needs at its path, the config files marked as conffiles, library
# dependencies found by dpkg-shlibdeps, shipped files unchanged, and a binary that runs.
# Usage: package_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build_dir=$1
source_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cpack -G DEB -B "$work" --config "$build_dir/CPackConfig.cmake" >"$work/cpack.log" 2>&1 ||
    { cat "$work/cpack.log"; exit 1; }
deb=$(ls "$work"/*.deb)
echo "built $(basename "$deb")"

failed=0
check() { if "$@"; then echo "ok   $*"; else echo "FAIL $*"; failed=1; fi; }

contents=$(dpkg-deb -c "$deb" | awk '{print $6}')
for path in ./usr/bin/fcgi_app \
    ./usr/lib/systemd/system/fcgi_app.socket ./usr/lib/systemd/system/fcgi_app.service \
    ./usr/lib/systemd/system/fcgi_app@.socket ./usr/lib/systemd/system/fcgi_app@.service \
    ./etc/fcgi_app/fcgi_app.conf \
    ./etc/nginx/snippets/fcgi_app.conf ./etc/nginx/snippets/fcgi_app_upstream.conf \
    ./etc/nginx/sites-available/fcgi_app ./etc/nginx/sites-available/fcgi_app_instances \
    ./usr/share/doc/crosstown-fcgi-app/README.md; do
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
exit $failed
