#!/usr/bin/env bash
# Every example and tool answers --help: its usage on stdout, nothing on
# stderr, success; hmaf-bench and hmaf-info --version name the library's
# version.
# Usage: help.sh VERSION PROGRAM...
set -euo pipefail
version=$1
shift
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
for prog in "$@"; do
    if ! "$prog" --help >"$out" 2>"$err"; then
        echo "$prog --help failed"; exit 1
    fi
    if ! head -1 "$out" | grep -q '^usage: '; then
        echo "$prog --help: no usage line"; cat "$out"; exit 1
    fi
    if [ -s "$err" ]; then
        echo "$prog --help wrote to stderr:"; cat "$err"; exit 1
    fi
    echo "$(basename "$prog"): $(head -1 "$out")"
done
bench=$(printf '%s\n' "$@" | grep '/hmaf-bench$')
"$bench" --version | grep -qx "hmaf-bench $version (libhmaf $version)"
info=$(printf '%s\n' "$@" | grep '/hmaf-info$')
"$info" --version | grep -qx "hmaf-info $version (libhmaf $version)"
echo "help: ok"
