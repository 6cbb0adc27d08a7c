#!/bin/sh
# hmaf-bench --quick end to end (ctest integration.bench_smoke*): the run
# exits 0; results.json has the "meta" object and a cell of every pattern
# the engine runs; results.csv has the "# key: value" metadata lines and a
# row of every pattern; with gnuplot, each pattern has its PNG chart, and
# without it the run says that charts were skipped. Then (on cma) a short
# run with gnuplot out of PATH must say the same and still write its files.
# Neither the figures nor the run's time are judged (docs/benchmarks.md).
#
# usage: bench_smoke.sh BENCH ENGINE
set -u
bench=$1
engine=$2

# The dpu side reads the host's memory with process_vm_readv, which the
# host grants with PR_SET_PTRACER; Yama's modes 2 and 3 do not honour it.
scope=$(cat /proc/sys/kernel/yama/ptrace_scope 2>/dev/null || echo 0)
if [ "$scope" -ge 2 ]; then
    echo "skipped: Yama ptrace_scope is $scope"
    exit 77
fi

# Every pattern hmaf-bench --quick runs on each engine (main.c, patterns[]);
# mapping mode's where userfaultfd works.
common="read-one write-one read-sparse write-sparse read-seq read-random
        read-random-2t batch16 batch256 batch256-seq chase1 chase16 ping"
mapping="map-random map-seq map-reread"
case $engine in
cma)
    patterns="$common sessions one-cpu regions-miss regions-hit regions-reg
              regions-close"
    ;;
ucx)
    patterns=$common
    ;;
*)
    echo "usage: bench_smoke.sh BENCH cma|ucx" >&2
    exit 2
    ;;
esac

dir=$(mktemp -d /tmp/hmaf-bench-smoke.XXXXXX) || exit 1
failed=0
fail() {
    echo "FAIL: $*"
    failed=1
}
# Kept when something failed, for a look at the files.
cleanup() {
    if [ "$failed" -eq 0 ]; then
        rm -rf "$dir"
    else
        echo "files kept in $dir"
    fi
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

out=$dir/out
if ! "$bench" --quick --engine "$engine" --out "$out" >"$dir/stdout"; then
    failed=1
    cat "$dir/stdout"
    echo "FAIL: hmaf-bench --quick --engine $engine exited non-zero"
    exit 1
fi
json=$out/results.json
csv=$out/results.csv

if grep -q '"mapping": {"available": true' "$json"; then
    patterns="$patterns $mapping"
else
    echo "mapping mode not available here: its patterns not expected"
fi

# JSON: well formed (where python3 can tell), the meta object's keys one a
# line, the engine the one asked for, a cell of every pattern.
if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$json" ||
        fail "$json is not valid JSON"
fi
grep -q '^  "meta": {$' "$json" || fail "no meta object in $json"
grep -q "^    \"engine\": \"$engine\",\$" "$json" ||
    fail "meta.engine is not $engine"
for key in commit date_utc hostname cpu kernel; do
    grep -q "^    \"$key\": \"..*\",\$" "$json" || fail "no meta.$key"
done
grep -q '^    "nproc": [1-9][0-9]*,$' "$json" || fail "no meta.nproc"
for key in load_start load_end; do
    grep -q "^    \"$key\": \[[-0-9.]*, [-0-9.]*, [-0-9.]*\]" "$json" ||
        fail "no meta.$key"
done
for p in $patterns; do
    grep -q "^    {\"pattern\": \"$p\", \"title\"" "$json" ||
        fail "no $p cell in $json"
done

# CSV: the metadata lines first, then the header, a row of every pattern.
for key in engine commit date_utc hostname cpu nproc kernel load_start \
    load_end; do
    sed -n '/^#/!q; p' "$csv" | grep -q "^# $key: ." ||
        fail "no '# $key:' line before the header of $csv"
done
grep -qx "# engine: $engine" "$csv" || fail "$csv: engine is not $engine"
grep -v '^#' "$csv" | head -n 1 | grep -q '^pattern,threads,' ||
    fail "$csv: the header row does not follow the metadata lines"
for p in $patterns; do
    grep -q "^$p," "$csv" || fail "no $p row in $csv"
done

# Charts: one PNG per pattern (gnuplot's scripts beside them).
if command -v gnuplot >/dev/null 2>&1; then
    for p in $patterns; do
        png=$out/$p.png
        if [ ! -s "$png" ] || [ "$(head -c 4 "$png" | od -An -c | tr -d ' ')" != '211PNG' ]; then
            fail "no chart $png"
        fi
    done
    grep -q '^charts: [0-9]* PNG files in ' "$dir/stdout" ||
        fail "no 'charts:' line"
else
    echo "gnuplot not installed: charts not checked"
    grep -qx 'gnuplot: not installed, charts skipped' "$dir/stdout" ||
        fail "without gnuplot, no 'charts skipped' line"
fi

# Without gnuplot on PATH: charts skipped with a message, files written.
# The same code whatever the engine: once, on cma.
if [ "$engine" = cma ]; then
    mkdir "$dir/empty" && out=$dir/no-gnuplot
    if ! PATH=$dir/empty "$bench" --quick --engine "$engine" --only ping \
        --out "$out" >"$dir/stdout2"; then
        cat "$dir/stdout2"
        fail "hmaf-bench --only ping without gnuplot on PATH exited non-zero"
    fi
    grep -qx 'gnuplot: not installed, charts skipped' "$dir/stdout2" ||
        fail "gnuplot not on PATH: no 'charts skipped' line"
    [ -s "$out/results.json" ] && [ -s "$out/results.csv" ] ||
        fail "gnuplot not on PATH: results not written"
    ls "$out"/*.png >/dev/null 2>&1 && fail "gnuplot not on PATH, yet a PNG"
fi

if [ "$failed" -ne 0 ]; then
    cat "$dir/stdout"
    exit 1
fi
echo "hmaf-bench --quick --engine $engine: outputs as expected" \
    "($(echo $patterns | wc -w) patterns)"
