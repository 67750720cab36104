#!/usr/bin/env bash
# Compiles the C++ code blocks of README.md and doc/*.md against the public headers, so that a
# guide cannot show an API that does not exist. Each ```cpp block follows a marker that says
# what it is:
#   <!-- compiles: file -->         declarations and definitions, as in a source file
#   <!-- compiles: statements -->   the body of a handler: req, res, server and router in scope
#   <!-- compiles: main -->         the body of main: argc and argv in scope, returns int
#   <!-- excerpt: PATH -->          lines of PATH as they are (PATH is compiled and tested by
#                                   its own build): checked to appear there, in order, unbroken
# The names a guide's prose assumes (a mailer, a phone API) come from docs_prelude.hpp. A cpp
# block without a marker fails the test. Prints "ok   N blocks in M files" when all pass.
# Usage: docs_snippets_test.sh SOURCE_DIR CXX
set -euo pipefail
export LC_ALL=C

if [ $# -ne 2 ] || [ ! -d "$1" ]; then
    echo "usage: $0 SOURCE_DIR CXX" >&2
    exit 2
fi
source_dir=$(cd "$1" && pwd)
cxx=$2
cd "$source_dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Writes each cpp block of FILE to $work/N.block with its marker in $work/N.kind and its
# origin (FILE:LINE) in $work/N.where; N continues from $3.
extract() {
    awk -v file="$1" -v out="$work" -v n="$2" '
        /^<!-- (compiles|excerpt): [^ ]+ -->$/ { kind = $2 " " $3; next }
        /^```(cpp|c\+\+)[ \t]*$/ {
            ++n; inside = 1
            print (kind == "" ? "none" : kind) > (out "/" n ".kind")
            print file ":" NR > (out "/" n ".where")
            printf "" > (out "/" n ".block")
            kind = ""; next
        }
        inside && /^```/ { inside = 0; next }
        inside { print > (out "/" n ".block") }
        /^```/ { kind = "" }
        END { print n }' "$3"
}

count=0
files=0
for file in README.md doc/*.md; do
    count=$(extract "$file" "$count" "$file")
    files=$((files + 1))
done

# The block as a translation unit, by its kind; the compiler's messages name the guide's lines.
wrap() {
    local n=$1 kind=$2 where file line
    where=$(cat "$work/$n.where")
    file=${where%:*}
    line=${where##*:}
    echo "#include \"$source_dir/tests/docs_prelude.hpp\""
    case $kind in
        file) ;;
        statements) echo "void docs_snippet(crosstown::Request& req, crosstown::Response& res," \
            "crosstown::Server& server, crosstown::Router& router) {" ;;
        main) echo "int docs_snippet(int argc, char** argv) {" ;;
        *) echo "#error unknown marker: compiles: $kind" ;;
    esac
    echo "#line $((line + 1)) \"$file\""
    cat "$work/$n.block"
    case $kind in
        statements) echo "}" ;;
        main) echo "return 0; }" ;;
    esac
}

failed=0
fail() { echo "FAIL $*"; failed=1; }
for n in $(seq "$count"); do
    kind=$(cat "$work/$n.kind")
    where=$(cat "$work/$n.where")
    case $kind in
        "compiles: "*) wrap "$n" "${kind#compiles: }" >"$work/$n.cpp" ;;
        "excerpt: "*) ;;
        none) fail "$where: a cpp block without a compiles: or excerpt: marker" ;;
    esac
done
# The excerpts: the block's text, whole, inside the file it names.
for n in $(seq "$count"); do
    kind=$(cat "$work/$n.kind")
    [[ $kind == "excerpt:"* ]] || continue
    path=${kind#excerpt: }
    [ -f "$path" ] || { fail "$(cat "$work/$n.where"): no file $path"; continue; }
    [[ "$(cat "$path")" == *"$(cat "$work/$n.block")"* ]] ||
        fail "$(cat "$work/$n.where"): not a part of $path as it is"
done
# The compiled ones, one compiler per core.
if ls "$work"/*.cpp >/dev/null 2>&1; then
    ls "$work"/*.cpp | xargs -P "$(nproc)" -I '{}' sh -c \
        '"$0" -std=c++20 -fsyntax-only -Wall -Wextra -Wno-unused-parameter \
            -Wno-unused-variable -I "$1/include" "$2" >"$2.log" 2>&1 ||
            { echo "FAIL does not compile:"; cat "$2.log"; exit 1; }' \
        "$cxx" "$source_dir" '{}' || failed=1
fi
[ "$failed" -eq 0 ] || exit 1
echo "ok   $count blocks in $files files"
