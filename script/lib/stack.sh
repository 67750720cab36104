# fcgi_app behind a private, unprivileged nginx on 127.0.0.1 serving the shipped site, for
# script/server, script/soak and bench/fanout. Sourced; needs a release build of fcgi_app.
#   start_stack PORT ACCESS_LOG [fcgi_app args...]   sets stack_dir, stack_app, stack_nginx
#     ACCESS_LOG: on (nginx's, in stack_dir) or off; fcgi_app's log goes to STACK_LOG or stderr;
#     STACK_APP: the fcgi_app binary (default: the release build's)
#   stop_stack                                       fcgi_app drains; returns its exit code
# With processes.sh's work_dir, a stack still up when the script exits is stopped and its
# processes checked with the rest. Start it under set -m: fcgi_app and nginx then each lead a
# process group that the check covers.

source script/lib/nginx.sh

stack_app='' stack_nginx='' stack_dir=''
# glibc's malloc as the shipped systemd units set it (their Environment=GLIBC_TUNABLES, which
# a test keeps equal to this); a GLIBC_TUNABLES in the environment wins (GLIBC_TUNABLES= for
# glibc's defaults).
stack_malloc_tunables=glibc.malloc.arena_max=2:glibc.malloc.tcache_count=0

start_stack() {
    local port=$1 access_log=$2
    shift 2
    stack_dir=$(mktemp -d /tmp/crosstown-stack-XXXXXX)
    chmod 711 "$stack_dir"  # nginx's workers must reach the socket inside
    local socket="$stack_dir/fcgi_app.sock"
    # Run as root, nginx's workers are `nobody`: give the socket nobody's group and keep mode
    # 0660, as production does with www-data.
    local socket_args=()
    [ "$(id -u)" -ne 0 ] || socket_args=(--socket-group "$(id -gn nobody)")
    [ "$access_log" = off ] || access_log="$stack_dir/access.log"

    nginx_prefix "$stack_dir" auto "$access_log"
    shipped_site fcgi_app "$port" "$socket" >"$stack_dir/site.conf"

    GLIBC_TUNABLES=${GLIBC_TUNABLES-$stack_malloc_tunables} \
        "${STACK_APP:-build/release/fcgi_app/fcgi_app}" --listen "$socket" "${socket_args[@]}" "$@" \
        2>>"${STACK_LOG:-/dev/stderr}" &
    stack_app=$!
    for _ in $(seq 500); do
        [ -S "$socket" ] && break
        kill -0 "$stack_app" 2>/dev/null || { wait "$stack_app"; return $?; }
        sleep 0.01
    done
    local nginx_cmd=("$NGINX" -p "$stack_dir" -c "$stack_dir/nginx.conf")
    "${nginx_cmd[@]}" -t -q
    "${nginx_cmd[@]}" -g 'daemon off;' &
    stack_nginx=$!
    for _ in $(seq 200); do
        curl -fsS --max-time 1 -o /dev/null "http://127.0.0.1:${port}/healthz" 2>/dev/null && return 0
        sleep 0.02
    done
    echo "no answer through nginx on port ${port}" >&2
    return 1
}

stop_stack() {
    kill -QUIT "$stack_nginx" 2>/dev/null || true
    kill -TERM "$stack_app" 2>/dev/null || true
    # fcgi_app drains for --drain-timeout (30 s by default) and then exits; one that hangs
    # past a minute is killed, so that a script (or a test under a timeout) always ends.
    for _ in $(seq 600); do kill -0 "$stack_app" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$stack_app" 2>/dev/null || true
    local code=0
    wait "$stack_app" || code=$?
    wait "$stack_nginx" 2>/dev/null || true
    rm -rf "$stack_dir"
    stack_app='' stack_nginx=''
    return "$code"
}

# stack_clean_up: for clean_up (processes.sh); a stack still up stops, and whatever is left of
# it counts as started by the script.
stack_clean_up() {
    owned_dirs+=(${stack_dir:+"$stack_dir"})
    [ -z "$stack_app" ] || {
        leaders+=("$stack_app" ${stack_nginx:+"$stack_nginx"})
        stop_stack >/dev/null 2>&1 || true
    }
}
