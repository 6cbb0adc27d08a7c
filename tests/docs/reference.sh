#!/usr/bin/env bash
# docs.reference: the API reference builds without one warning (doxygen
# fails on any: docs/Doxyfile.in), and every public call has its man page,
# which man renders.
# Usage: reference.sh DOC_TARGET CMAKE BUILD_DIR STAMP MAN_DIR INCLUDE_DIR
# (DOC_TARGET is empty when configure found no doxygen).
set -euo pipefail
target=$1 cmake=$2 build=$3 stamp=$4 man_dir=$5 include=$6
if [ -z "$target" ]; then
    echo "skip: doxygen was not found when the build was configured" \
         "(apt-get install doxygen, then configure again)"
    exit 77
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# The target runs doxygen only when an input changed: make it run.
rm -f "$stamp"
status=0
"$cmake" --build "$build" --target "$target" >"$out" 2>&1 || status=$?
if ((status)) || grep -qE '(warning|error):' "$out" || [ ! -f "$stamp" ]; then
    cat "$out"
    echo "the reference does not build cleanly (status $status)"
    exit 1
fi
echo "doxygen: no warnings"

# Every exported call and seqlock.h's inline ones: a page of its own.
mapfile -t calls < <(grep -hE '^(HMAF_API|static inline) ' "$include"/hmaf/*.h |
                     grep -o 'hmaf_[a-z0-9_]*(' | tr -d '(' | sort -u)
if ((${#calls[@]} < 10)); then
    echo "found ${#calls[@]} public calls in $include/hmaf: the pattern broke"
    exit 1
fi
missing=0
for call in "${calls[@]}"; do
    if [ ! -f "$man_dir/man3/$call.3" ]; then
        echo "no man page for $call"
        missing=1
    fi
done
((missing == 0)) || exit 1
echo "man3: a page for each of the ${#calls[@]} public calls"

# A link page sources its header's page: man must find it from the
# installed layout (man3/ below a man directory).
if ! command -v man >/dev/null; then
    echo "man is not installed: the pages' rendering is not checked"
    exit 0
fi
page=$(cd "$man_dir" && MANWIDTH=80 MANPAGER=cat man -l man3/hmaf_session_read.3 2>"$out")
if [ -s "$out" ] || ! grep -q 'int hmaf_session_read (' <<<"$page" ||
   ! grep -q 'HMAF_ECONNRESET' <<<"$page"; then
    cat "$out"
    echo "man -l man3/hmaf_session_read.3 did not render its page"
    exit 1
fi
echo "man -l renders hmaf_session_read(3)"
