#!/usr/bin/env bash
# Checks every relative Markdown link in README.md, CHANGELOG.md and doc/*.md: the file (or
# directory) it names exists, and a #anchor is produced by a heading of the target, by
# GitHub's rules (lower case; punctuation dropped; each space a '-'; a repeated heading gets
# -1, -2, ...). http(s):// and mailto: links are not checked, nor anything inside fenced code
# blocks or `code spans`. Prints each broken link as FILE:LINE: reason and exits 1 if there is
# any; else prints "ok   N links in M files resolve".
# Usage: docs_links_test.sh SOURCE_DIR
set -euo pipefail
export LC_ALL=C

if [ $# -ne 1 ] || [ ! -d "$1" ]; then
    echo "usage: $0 SOURCE_DIR" >&2
    exit 2
fi
cd "$1"

files=()
for file in README.md CHANGELOG.md doc/*.md; do
    [ -f "$file" ] && files+=("$file")
done
if [ ${#files[@]} -eq 0 ]; then
    echo "no Markdown files under $(pwd)" >&2
    exit 2
fi

# Prints LINE<TAB>TARGET for each link of a Markdown file, outside fenced code blocks and code
# spans: inline links and images, [text](target "title"), and reference definitions.
# Fenced code blocks (``` or ~~~, closed by a run at least as long): both readers skip them.
fences='
        function fence_open(line) {
            if (match(line, /^ ? ? ?(```+|~~~+)/)) {
                marker = substr(line, RSTART, RLENGTH); sub(/^ +/, "", marker)
                return 1
            }
            return 0
        }
        function fence_closes(line,   run) {
            if (!match(line, /^ ? ? ?(```+|~~~+)[ \t]*$/)) return 0
            run = substr(line, RSTART, RLENGTH); sub(/^ +/, "", run); sub(/[ \t]+$/, "", run)
            return substr(run, 1, 1) == substr(marker, 1, 1) && length(run) >= length(marker)
        }
'

links_of() {
    awk "$fences"'
        function emit(target) {
            sub(/^[ \t]+/, "", target)
            if (target ~ /^</) { sub(/^</, "", target); sub(/>.*$/, "", target) }
            else sub(/[ \t].*$/, "", target)
            if (target != "") printf "%d\t%s\n", NR, target
        }
        {
            if (in_fence) { if (fence_closes($0)) in_fence = 0; next }
            if (fence_open($0)) { in_fence = 1; next }
            line = $0
            gsub(/``[^`]*``/, "", line)
            gsub(/`[^`]*`/, "", line)
            if (match(line, /^ ? ? ?\[[^]]+\]:[ \t]*[^ \t]+/)) {
                target = line; sub(/^ ? ? ?\[[^]]+\]:/, "", target); emit(target); next
            }
            while (match(line, /\]\([^)]*\)/)) {
                emit(substr(line, RSTART + 2, RLENGTH - 3))
                line = substr(line, RSTART + RLENGTH)
            }
        }' "$1"
}

# Prints the anchors a Markdown file's headings produce, one a line, by GitHub's rules; also
# the names of <a name="..."> and id="..." anchors.
anchors_of() {
    awk "$fences"'
        function slug(text) {
            sub(/^[ \t]+/, "", text); sub(/[ \t]+$/, "", text)
            while (match(text, /!?\[[^]]*\]\([^)]*\)/)) {   # a link or image: its text only
                inner = substr(text, RSTART, RLENGTH)
                sub(/^!?\[/, "", inner); sub(/\]\(.*$/, "", inner)
                text = substr(text, 1, RSTART - 1) inner substr(text, RSTART + RLENGTH)
            }
            gsub(/<[^>]*>/, "", text)
            text = tolower(text)
            gsub(/[^a-z0-9 _-]/, "", text)
            gsub(/ /, "-", text)
            return text
        }
        function add(s) {
            if (s in seen) { print s "-" seen[s]; seen[s]++ } else { print s; seen[s] = 1 }
        }
        {
            if (in_fence) { if (fence_closes($0)) in_fence = 0; previous = ""; next }
            if (fence_open($0)) { in_fence = 1; previous = ""; next }
            line = $0
            rest = line
            while (match(rest, /(name|id)="[^"]+"/)) {
                anchor = substr(rest, RSTART, RLENGTH); sub(/^[a-z]+="/, "", anchor)
                sub(/"$/, "", anchor); print anchor
                rest = substr(rest, RSTART + RLENGTH)
            }
            if (match(line, /^ ? ? ?#+([ \t]|$)/) && match(line, /#+/) && RLENGTH <= 6) {
                text = line
                sub(/^ *#+/, "", text)
                sub(/[ \t]+#+[ \t]*$/, "", text)
                add(slug(text)); previous = ""; next
            }
            if (previous != "" && (line ~ /^ ? ? ?=+[ \t]*$/ || line ~ /^ ? ? ?-+[ \t]*$/)) {
                add(slug(previous)); previous = ""; next
            }
            previous = (line ~ /^[ \t]*$/ || line ~ /^ ? ? ?([-*+>|]|[0-9]+[.)])/) ? "" : line
        }' "$1"
}

# %XX escapes in a link's path, decoded.
decode() {
    printf '%b' "${1//%/\\x}"
}

declare -A anchor_cache
broken=0
checked=0
for file in "${files[@]}"; do
    dir=$(dirname "$file")
    while IFS=$'\t' read -r line target; do
        case $target in
            http://* | https://* | mailto:*) continue ;;
        esac
        checked=$((checked + 1))
        path=${target%%#*}
        anchor=""
        [[ $target == *'#'* ]] && anchor=${target#*#}
        if [ -z "$path" ]; then
            resolved=$file
        elif [[ $path == /* ]]; then
            echo "$file:$line: $target: an absolute path; link relative to the file"
            broken=$((broken + 1))
            continue
        else
            resolved=$(decode "$path")
            [ "$dir" = . ] || resolved=$dir/$resolved
        fi
        if [ ! -e "$resolved" ]; then
            echo "$file:$line: $target: no such file ($resolved)"
            broken=$((broken + 1))
            continue
        fi
        [ -n "$anchor" ] || continue
        if [[ $resolved != *.md ]] || [ -d "$resolved" ]; then
            echo "$file:$line: $target: an anchor into a file that is not Markdown"
            broken=$((broken + 1))
            continue
        fi
        key=$(realpath "$resolved")
        if [ -z "${anchor_cache[$key]+set}" ]; then
            anchor_cache[$key]=$'\n'$(anchors_of "$resolved")$'\n'
        fi
        if [[ ${anchor_cache[$key]} != *$'\n'"$anchor"$'\n'* ]]; then
            echo "$file:$line: $target: no heading in $resolved makes #$anchor"
            broken=$((broken + 1))
        fi
    done < <(links_of "$file")
done

if [ "$broken" -gt 0 ]; then
    echo "FAIL $broken of $checked links in ${#files[@]} files are broken"
    exit 1
fi
echo "ok   $checked links in ${#files[@]} files resolve"
