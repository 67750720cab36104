#!/usr/bin/env bash
# Checks that the layers depend one way. Every file under include/crosstown and src/crosstown
# belongs to the layer of its folder (the top-level headers server.hpp, server_config.hpp and
# crosstown.hpp belong to service), and may include crosstown headers of its own layer or a
# lower one:
#     detail < observe < deferred < jobs < jobs/sqlite, jobs/redis < jobs/journal < http < fastcgi < service
# Inside jobs: jobs/ holds the runner and the store contract; each store has its own folder
# (jobs/sqlite, jobs/redis), and neither includes the other; jobs/journal opens the store that
# --journal names, so it alone in jobs knows both. A folder deeper than these is in no layer.
# testing sits beside them: it may include deferred, jobs, http, observe, detail and testing, and no
# other layer may include testing.
# Public headers (include/crosstown/**) must also stay installable on their own: they may
# include only other public headers, never a private one (a header found only under
# src/crosstown), libfcgi's headers or systemd's.
# Prints every violation as FILE:LINE: reason, and exits 1 if there is any.
# Usage: layering_test.sh SOURCE_DIR
set -euo pipefail
source_dir=${1:?usage: layering_test.sh SOURCE_DIR}
cd "$source_dir"
for dir in include/crosstown src/crosstown; do
    if [ ! -d "$dir" ]; then
        echo "FAIL: $source_dir/$dir is not a directory"
        exit 1
    fi
done

# The rank of each ordered layer; testing has none, it is handled on its own.
declare -A rank=([detail]=0 [observe]=10 [deferred]=20 [jobs]=30 [jobs/sqlite]=33 [jobs/redis]=33
    [jobs/journal]=36 [http]=40 [fastcgi]=50 [service]=60)
testing_may_include=" detail observe deferred jobs http testing "

# The layer of a path relative to crosstown/ (a file's or an included header's), or "".
layer_of() {
    local rel=$1
    case $rel in
        server.hpp | server_config.hpp | crosstown.hpp) echo service ;;
        jobs/sqlite/*/* | jobs/redis/*/* | jobs/journal/*/*) ;;
        jobs/sqlite/* | jobs/redis/* | jobs/journal/*) echo "${rel%/*}" ;;
        */*)
            local first=${rel%%/*}
            if [ -n "${rank[$first]+x}" ] || [ "$first" = testing ]; then echo "$first"; fi
            ;;
    esac
}

violations=0
checked=0
violation() {
    echo "$1:$2: $3"
    violations=$((violations + 1))
}

while IFS= read -r -d '' file; do
    case $file in
        include/crosstown/*) rel=${file#include/crosstown/} public=1 ;;
        *) rel=${file#src/crosstown/} public=0 ;;
    esac
    layer=$(layer_of "$rel")
    if [ -z "$layer" ]; then
        violation "$file" 1 "is in no layer (expected under one of: ${!rank[*]} testing)"
        continue
    fi
    checked=$((checked + 1))
    line_no=0
    while IFS= read -r line || [ -n "$line" ]; do
        line_no=$((line_no + 1))
        [[ $line =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*[\<\"]([^\>\"]+)[\>\"] ]] || continue
        header=${BASH_REMATCH[1]}
        if [ "$public" = 1 ]; then
            case $header in
                fcgiapp.h | fcgi_stdio.h | fcgio.h | fcgios.h | fcgi_config.h | fastcgi.h)
                    violation "$file" "$line_no" "public header includes libfcgi's $header"
                    ;;
                systemd/*)
                    violation "$file" "$line_no" "public header includes $header"
                    ;;
                crosstown/*)
                    if [ ! -f "include/$header" ]; then
                        if [ -f "src/$header" ]; then
                            violation "$file" "$line_no" "public header includes private $header"
                        else
                            violation "$file" "$line_no" "public header includes $header, which is not under include/"
                        fi
                    fi
                    ;;
            esac
        fi
        [[ $header == crosstown/* ]] || continue
        target=$(layer_of "${header#crosstown/}")
        if [ -z "$target" ]; then
            violation "$file" "$line_no" "$layer includes $header, which is in no layer"
        elif [ "$layer" = testing ]; then
            if [[ $testing_may_include != *" $target "* ]]; then
                violation "$file" "$line_no" "testing includes $header ($target)"
            fi
        elif [ "$target" = testing ]; then
            violation "$file" "$line_no" "$layer includes $header: only testing may include testing"
        elif [ "${rank[$target]}" -gt "${rank[$layer]}" ]; then
            violation "$file" "$line_no" "$layer includes $header from the higher layer $target"
        elif [ "${rank[$target]}" -eq "${rank[$layer]}" ] && [ "$target" != "$layer" ]; then
            violation "$file" "$line_no" "$layer includes $header from its sibling $target"
        fi
    done <"$file"
done < <(find include/crosstown src/crosstown -type f \( -name '*.hpp' -o -name '*.h' \
    -o -name '*.cpp' -o -name '*.cc' -o -name '*.ipp' \) -print0 | sort -z)

if [ "$violations" -gt 0 ]; then
    echo "FAIL: $violations layering violation(s)"
    exit 1
fi
if [ "$checked" -eq 0 ]; then
    echo "FAIL: no source files found under $source_dir"
    exit 1
fi
echo "ok   $checked files under include/crosstown and src/crosstown keep the layers"
