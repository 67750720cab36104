#!/usr/bin/env bash
# Runs one libFuzzer target for SECONDS from a seed corpus, writing what it finds to a scratch
# corpus (or OUT_DIR) rather than into the repository, and prints the number of executions.
# A crash, a leak, a sanitizer report or a timeout fails it and leaves the input in the
# scratch directory's artifacts.
# Usage: run_fuzzer.sh TARGET SEED_DIR SECONDS
set -euo pipefail
target=$1
seeds=$2
seconds=$3
out=${OUT_DIR:-$(mktemp -d)}
mkdir -p "$out/corpus" "$out/artifacts"
log=$out/$(basename "$target").log
if ! "$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$out/artifacts/" "$out/corpus" "$seeds" >"$log" 2>&1; then
    tail -60 "$log"
    echo "FAIL $(basename "$target"): see $out/artifacts/"
    exit 1
fi
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
echo "ok   $(basename "$target"): ${runs} executions in ${seconds}s, corpus $(ls "$out/corpus" | wc -l) inputs"
[ -n "${OUT_DIR:-}" ] || rm -rf "$out"
