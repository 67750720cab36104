# A private nginx's configuration in a directory of its own, from script/lib/nginx.conf.in.
# Sourced; run from the source tree's root.
#   nginx_prefix DIR WORKERS ACCESS_LOG    DIR/nginx.conf (serving DIR/site.conf, which the
#                                          caller writes), DIR/snippets (the shipped ones) and
#                                          DIR/fastcgi_params (Debian's)
#   shipped_site SITE PORT SOCKET...       the shipped site deploy/nginx/sites-available/SITE
#                                          on stdout, its upstream on the unix SOCKETs and its
#                                          only listen on 127.0.0.1:PORT
#   $NGINX                                 the nginx binary: from PATH, else /usr/sbin (not in
#                                          a user's PATH on Debian)

NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}

nginx_prefix() {
    local dir=$1 workers=$2 access_log=$3
    sed -e "s|@PREFIX@|${dir}|g" -e "s|@WORKERS@|${workers}|" -e "s|@ACCESS_LOG@|${access_log}|" \
        script/lib/nginx.conf.in >"$dir/nginx.conf"
    ln -sfn "$PWD/deploy/nginx/snippets" "$dir/snippets"
    ln -sf /etc/nginx/fastcgi_params "$dir/fastcgi_params"
}

shipped_site() {
    local site=$1 port=$2 servers='' socket
    shift 2
    for socket in "$@"; do servers+="    server unix:${socket};\n"; done
    awk -v servers="$servers" -v port="$port" '
        /^ *server unix:/ { if (!done) printf "%s", servers; done = 1; next }
        /^ *listen \[::\]/ { next }
        /^ *listen / { sub(/listen [^;]*;/, "listen 127.0.0.1:" port ";") }
        { print }' "deploy/nginx/sites-available/$site"
}
