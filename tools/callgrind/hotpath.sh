#!/bin/sh
# Instructions the data path adds to the system call it makes, counted by
# callgrind (user space only: the kernel's part is the same either way).
#
#   tools/callgrind/hotpath.sh [BUILD_DIR [N [M]]]     (build, 10000, 100)
#
# Builds hotpath.c against BUILD_DIR's libhmaf.so, runs it under
# callgrind and prints, per call, each loop's inclusive instructions and
# HMAF's minus raw's: 64 B read and write one at a time, and 256 random
# 64 B reads posted then flushed (or one hmaf_session_readv) against one
# vectored process_vm_readv of the same iovecs.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-build}" && pwd)
n=${2:-10000}
m=${3:-100}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

${CC:-cc} -O2 -g -I"$here/../../include" "$here/hotpath.c" -o "$work/hotpath" \
    -L"$build" -lhmaf -Wl,-rpath,"$build"
valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
    "$work/hotpath" "$n" "$m" >/dev/null 2>"$work/valgrind.log" || {
    cat "$work/valgrind.log" >&2
    exit 1
}
callgrind_annotate --inclusive=yes --threshold=100 "$work/cg.out" \
    >"$work/annotate.txt"

# Inclusive instructions of a run_* function.
ir() {
    awk -v f="$1" '$0 ~ (":" f " ") || $0 ~ (" " f " ") {
        gsub(",", "", $1); print $1; exit }' "$work/annotate.txt"
}

awk -v n="$n" -v m="$m" \
    -v hr="$(ir run_hmaf_read)" -v rr="$(ir run_raw_read)" \
    -v hw="$(ir run_hmaf_write)" -v rw="$(ir run_raw_write)" \
    -v hp="$(ir run_hmaf_posted)" -v hv="$(ir run_hmaf_readv)" \
    -v rv="$(ir run_raw_vec)" 'BEGIN {
    printf "%-34s %10s %10s %10s\n", "instructions per call", "hmaf", "raw",
           "added"
    printf "%-34s %10.1f %10.1f %10.1f\n", "64 B read", hr / n, rr / n,
           (hr - rr) / n
    printf "%-34s %10.1f %10.1f %10.1f\n", "64 B write", hw / n, rw / n,
           (hw - rw) / n
    printf "%-34s %10.1f %10.1f %10.1f\n", "256 x 64 B posted + flush",
           hp / m, rv / m, (hp - rv) / m
    printf "%-34s %10.1f %10.1f %10.1f\n", "256 x 64 B readv", hv / m,
           rv / m, (hv - rv) / m
}'
