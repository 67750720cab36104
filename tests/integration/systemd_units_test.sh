#!/usr/bin/env bash
# Checks the shipped systemd units offline: `systemd-analyze verify` must print nothing (it
# exits 0 even on unknown keys and bad values, so any output fails the test), and every
# service must score at most 1.5 in `systemd-analyze security` (--threshold counts tenths).
# The templates must match the single units except for naming.
# Usage: systemd_units_test.sh SOURCE_DIR FCGI_APP_BINARY
set -euo pipefail
source_dir=$1
binary=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# verify insists that ExecStart exists: point it at the binary just built.
cp "$source_dir"/systemd/*.socket "$source_dir"/systemd/*.service "$work"/
sed -i "s#^ExecStart=/usr/bin/fcgi_app #ExecStart=$binary #" "$work"/*.service
cd "$work"

failed=0
for unit in fcgi_app.socket fcgi_app.service fcgi_app@.socket fcgi_app@.service; do
    output=$(systemd-analyze verify "./$unit" 2>&1) || true
    if [ -n "$output" ]; then
        echo "FAIL verify $unit:"
        echo "$output"
        failed=1
    else
        echo "ok   verify $unit"
    fi
done

for unit in fcgi_app.service fcgi_app@.service; do
    score=$(systemd-analyze security --offline=true "./$unit" 2>&1 | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p')
    if systemd-analyze security --offline=true --threshold=15 "./$unit" >/dev/null 2>&1; then
        echo "ok   security $unit: exposure $score"
    else
        echo "FAIL security $unit: exposure ${score:-?} is above 1.5"
        failed=1
    fi
done

# The instance units are the single ones with %i: the same directives, so hardening added to
# one cannot be forgotten in the other. Each instance has a state directory (its journal of
# durable jobs) of its own: fcgi_app/%i, where the single unit has fcgi_app.
directives() {
    grep -v '^#' "$1" | grep -v -E '^(Description|Requires|After|Also|ListenStream|SyslogIdentifier)=' |
        sed -e '/^$/d' -e 's|^StateDirectory=fcgi_app/%i$|StateDirectory=fcgi_app|'
}
for kind in socket service; do
    if diff <(directives "fcgi_app.$kind") <(directives "fcgi_app@.$kind") >/dev/null; then
        echo "ok   fcgi_app@.$kind matches fcgi_app.$kind"
    else
        echo "FAIL fcgi_app@.$kind differs from fcgi_app.$kind:"
        diff <(directives "fcgi_app.$kind") <(directives "fcgi_app@.$kind") || true
        failed=1
    fi
done

# What the drain promises depends on these: check they are there.
expect() {
    if grep -q -x "$2" "$1"; then echo "ok   $1: $2"; else echo "FAIL $1 lacks $2"; failed=1; fi
}
expect fcgi_app.service 'Type=notify'
expect fcgi_app.service 'KillMode=mixed'
expect fcgi_app.service 'NonBlocking=yes'
expect fcgi_app.socket 'SocketMode=0660'
expect fcgi_app.socket 'SocketGroup=www-data'
# The units' malloc settings are the ones the test and bench stacks run with.
tunables=$(sed -n 's/^stack_malloc_tunables=//p' "$source_dir/script/lib/stack.sh")
expect fcgi_app.service "Environment=GLIBC_TUNABLES=${tunables:?not found in script/lib/stack.sh}"
# TimeoutStopSec above the default --drain-timeout (30s).
stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s$/\1/p' fcgi_app.service)
if [ "${stop:-0}" -gt 30 ]; then echo "ok   TimeoutStopSec=${stop}s > drain 30s"; else echo "FAIL TimeoutStopSec=${stop:-?}"; failed=1; fi
exit $failed
