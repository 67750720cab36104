#!/usr/bin/env bash
# bench/durable_soak as a smoke test: SECONDS_TOTAL (default 60) of load on each store, the
# SQLite one and the Redis one side by side, each with the FCGI_APP this build made and a
# fixed pool of 32 workers; fails when either soak fails, and shows both. Idle RSS may be 30%
# above its size at start (18-20% measured here with the idle trim, 21-31% without it; 33-66%
# with glibc's malloc untuned), a margin for machines other than this one.
# Usage: durable_soak_test.sh SOURCE_DIR FCGI_APP
set -uo pipefail
source_dir=$1
export FCGI_APP=$2 SECONDS_TOTAL=${SECONDS_TOTAL:-60} CONNECTIONS=${CONNECTIONS:-8} \
    APP_ARGS=${APP_ARGS:---workers 32} IDLE_LIMIT_PERCENT=${IDLE_LIMIT_PERCENT:-30}
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
STORE=sqlite "$source_dir/bench/durable_soak" >"$log/sqlite" 2>&1 &
sqlite=$!
STORE=redis "$source_dir/bench/durable_soak" >"$log/redis" 2>&1 &
redis=$!
failed=0
wait "$sqlite" || failed=1
wait "$redis" || failed=1
for store in sqlite redis; do
    echo "== $store"
    cat "$log/$store"
done
exit $failed
