#!/usr/bin/env bash
# `nginx -t` on each shipped site, inside a private prefix holding the shipped snippets and
# Debian's fastcgi_params, exactly as they sit under /etc/nginx.
# Usage: nginx_config_test.sh SOURCE_DIR NGINX
set -euo pipefail
source_dir=$1
nginx=$2
failed=0
for site in "$source_dir"/deploy/nginx/sites-available/*; do
    prefix=$(mktemp -d)
    mkdir -p "$prefix/snippets" "$prefix/logs"
    cp "$source_dir"/deploy/nginx/snippets/*.conf "$prefix/snippets/"
    cp /etc/nginx/fastcgi_params "$prefix/"
    cat >"$prefix/nginx.conf" <<CONF
pid $prefix/nginx.pid;
error_log $prefix/logs/error.log;
events {}
http {
    access_log off;
    client_body_temp_path $prefix/client_body;
    proxy_temp_path $prefix/proxy;
    fastcgi_temp_path $prefix/fastcgi;
    uwsgi_temp_path $prefix/uwsgi;
    scgi_temp_path $prefix/scgi;
    include $site;
}
CONF
    if output=$("$nginx" -t -p "$prefix" -c "$prefix/nginx.conf" 2>&1); then
        echo "ok   nginx -t $(basename "$site")"
    else
        echo "FAIL nginx -t $(basename "$site"):"
        echo "$output"
        failed=1
    fi
    rm -rf "$prefix"
done
exit $failed
