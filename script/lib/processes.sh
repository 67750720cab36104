# Background processes a script starts and must stop, and loopback ports from the kernel.
# Sourced. Whatever a script starts this way, stop_started stops, and it fails when anything is
# still running afterwards. Use start and reserve_ports without job control (set -m), which
# would make setsid fork instead of leading the session itself.
#   start COMMAND...        in the background, in a new session
#   reserve_ports N         N free ports in reserved_ports, held until release_ports
#   stop_started            TERM, then KILL, then check; in the EXIT trap: stop_started || exit 1
#   work_dir NAME           makes $work, a private directory, and the EXIT trap that stops
#                           everything, removes $work and fails the script if anything is left
#   start_redis             a private redis-server in $work, its socket in redis_socket

# The ids of the sessions or process groups the script started: each leads a session (start)
# or at least a process group of its own (a job started under set -m, appended by the script).
leaders=()
# Directories private to this run: a process whose command line names one counts as started
# by the script even when it has left its session and group.
owned_dirs=()

# start COMMAND...: runs COMMAND in the background as the leader of a new session (setsid
# without a fork: the pid is the session id), so that what it forks (nginx's workers, PHP-FPM's
# children) stays in that session and is stopped with it. $! is its pid.
start() { setsid "$@" & leaders+=($!); }

# running: prints pid, state, user and command of every process still running from the
# script's sessions and process groups or naming one of its owned_dirs. Zombies have already
# stopped and are left out.
running() {
    local pids list dir
    list=$(IFS=,; echo "${leaders[*]}")
    pids=$({ [ -z "$list" ] || { pgrep -s "$list"; pgrep -g "$list"; }
        for dir in "${owned_dirs[@]}"; do pgrep -f -- "$dir"; done; } |
        sort -un | paste -sd,) || true
    [ -z "$pids" ] || ps -o pid=,stat=,user=,args= -p "$pids" | awk '$2 !~ /^Z/'
}

# stop_started: SIGTERM to every session and process group the script started, then SIGKILL
# to what is left a few seconds later (libfcgi's own SIGTERM handler only sets a flag that
# threads blocked in accept() or read() never see), and waits for the script's jobs. Returns 1
# and lists the processes on stderr when any is still running after that.
stop_started() {
    local - left id signal
    set +e
    for signal in TERM KILL; do
        for id in "${leaders[@]}"; do pkill -"$signal" -s "$id"; pkill -"$signal" -g "$id"; done
        for _ in $(seq 30); do [ -z "$(running)" ] && break; sleep 0.1; done
    done
    wait 2>/dev/null
    left=$(running)
    [ -z "$left" ] && return 0
    printf '%s: still running after cleanup (pid, state, user, command):\n%s\n' "${0#./}" \
        "$left" >&2
    return 1
}

# reserve_ports N: N ports on 127.0.0.1 from the kernel, in the array reserved_ports. A helper
# binds 127.0.0.1:0 N times and holds those sockets until release_ports. Both it and nginx set
# SO_REUSEADDR and the helper never listens, so nginx may bind the same ports meanwhile, while
# the kernel gives none of them to anyone else's bind() to port 0 or outgoing connection:
# there is no window in which another process can take a port between its choice and nginx's
# listen(). Call release_ports once nginx listens.
reserve_ports() {
    coproc port_reservation {
        exec setsid python3 -c '
import socket, sys
held = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in held:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in held), flush=True)
sys.stdin.read()  # until the script closes the pipe
' "$1"
    }
    leaders+=("$port_reservation_PID")
    read -r -a reserved_ports <&"${port_reservation[0]}" ||
        { echo "no ports from the kernel" >&2; return 1; }
}

# release_ports: lets the helper of reserve_ports go; the ports stay with whoever bound them.
release_ports() {
    local fd=${port_reservation[1]:-}
    [ -z "$fd" ] || exec {fd}>&-
}

# work_dir NAME: makes $work, a new directory /tmp/crosstown-NAME-XXXXXX that nginx's workers
# can reach (0711), owned by this run (owned_dirs), and sets the EXIT trap: a stack still up is
# stopped first (stack.sh), then everything started, then $work goes; the script fails when
# anything was left running.
work_dir() {
    work=$(mktemp -d "/tmp/crosstown-$1-XXXXXX")
    chmod 711 "$work"
    owned_dirs+=("$work")
    trap clean_up EXIT
}

clean_up() {
    local code=0
    ! declare -F stack_clean_up >/dev/null || stack_clean_up
    stop_started || code=$?
    rm -rf "$work"
    [ "$code" -eq 0 ] || exit 1
}

# start_redis: a private redis-server without persistence listening only on the unix socket
# $work/redis.sock (in redis_socket), started with start; returns once the socket is there.
start_redis() {
    redis_socket=$work/redis.sock
    start redis-server --port 0 --unixsocket "$redis_socket" --unixsocketperm 700 \
        --dir "$work" --save '' --appendonly no --daemonize no >"$work/redis.log" 2>&1
    for _ in $(seq 100); do [ -S "$redis_socket" ] && return 0; sleep 0.05; done
    echo "redis-server did not start:" >&2
    cat "$work/redis.log" >&2
    return 1
}
