#!/usr/bin/env bash
# `nginx -t` on each shipped site as it is, inside a private prefix (script/lib/nginx.sh)
# holding the shipped snippets and Debian's fastcgi_params, as they sit under /etc/nginx.
# Usage: nginx_config_test.sh SOURCE_DIR NGINX
set -euo pipefail
source_dir=$1
nginx=$2
cd "$source_dir"
source script/lib/nginx.sh
failed=0
for site in "$source_dir"/deploy/nginx/sites-available/*; do
    prefix=$(mktemp -d)
    nginx_prefix "$prefix" 1 off
    cp "$site" "$prefix/site.conf"
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
