#!/usr/bin/env bash
# The README's first command as a newcomer runs it: script/server, then every command line it
# prints under "Try:", as printed. Each must succeed, /hello must answer 200 and /fail 500;
# then the stop that Ctrl-C asks for must end fcgi_app and nginx cleanly, exit 0, and leave
# nothing running. SIGTERM stands in for Ctrl-C's SIGINT (script/server traps both the same
# way): a shell ignores SIGINT in what it starts in the background, and so would the script.
# Its port comes from the kernel and its journal goes to a private directory.
# Usage: quickstart_test.sh SOURCE_DIR
set -euo pipefail
cd "$1"
source script/lib/processes.sh
work_dir quickstart
reserve_ports 1
port=${reserved_ports[0]}
release_ports
PORT=$port STATE_DIR=$work/state start script/server >"$work/server.log" 2>&1
server=$!
for _ in $(seq 600); do
    grep -q '^Ctrl-C stops both' "$work/server.log" && break
    kill -0 "$server" 2>/dev/null || { cat "$work/server.log"; exit 1; }
    sleep 0.1
done

failed=0
ran=0
while IFS= read -r line; do
    ran=$((ran + 1))
    # Every line succeeds; what curl prints is never empty (the witness may be, this soon).
    if ! output=$(bash -c "$line" 2>&1) || { [[ $line == curl* ]] && [ -z "$output" ]; }; then
        echo "FAIL $line"
        echo "$output"
        failed=1
        continue
    fi
    case $line in
        *"/hello") grep -q '^HTTP/1.1 200' <<<"$output" || { echo "FAIL not 200: $line"; failed=1; } ;;
        *"/fail") grep -q '^HTTP/1.1 500' <<<"$output" || { echo "FAIL not 500: $line"; failed=1; } ;;
    esac
    echo "ok   $line"
done < <(sed -n '/Try:$/,/^Ctrl-C/p' "$work/server.log" | grep -E '^(curl|batch=|cat|build/)')
[ "$ran" -ge 10 ] || { echo "FAIL only $ran command lines printed"; failed=1; }

kill -TERM "$server"
code=0
wait "$server" || code=$?
[ "$code" -eq 0 ] || { echo "FAIL script/server exited with $code"; tail -5 "$work/server.log"; failed=1; }
exit $failed
