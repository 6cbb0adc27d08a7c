#!/usr/bin/env bash
# The kv example's figures (docs/kv.md): redis-benchmark GET and SET, the
# same settings on the host port, the dpu port and a stock redis-server
# (when installed), at pipeline 1 and 16, each run REPEAT times (median);
# then the host process's CPU time while the dpu port serves GETS GETs and
# while the host port serves the same GETs itself (/proc/PID/stat).
#   tools/kv-bench.sh [BUILD_DIR]     env: REPEAT (3), N (200000),
#                                     GETS (1000000), CLIENTS (50)
set -euo pipefail
build=${1:-build}
repeat=${REPEAT:-3} n=${N:-200000} gets=${GETS:-1000000} clients=${CLIENTS:-50}
keys=100000
command -v redis-benchmark >/dev/null || { echo "redis-benchmark missing (apt-get install redis-tools)" >&2; exit 77; }

dir=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

start() { # name var cmd...: sets var to the port
    local name=$1 var=$2; shift 2
    "$@" --port 0 >"$dir/$name.out" 2>&1 &
    pids+=($!)
    printf -v "${name}_pid" %s $!
    for _ in $(seq 200); do
        grep -q '^ready port' "$dir/$name.out" && {
            printf -v "$var" %s "$(awk '/^ready port/ {print $3}' "$dir/$name.out")"
            return
        }
        sleep 0.05
    done
    cat "$dir/$name.out" >&2; exit 1
}

start host host_port "$build/examples/hmaf-kv-host" --address "unix:$dir/kv.sock" --token bench
start dpu dpu_port "$build/examples/hmaf-kv-dpu" --address "unix:$dir/kv.sock" --token bench
declare -A port=([host]=$host_port [dpu]=$dpu_port)
targets=(host dpu)
if command -v redis-server >/dev/null; then
    redis-server --port 0 --unixsocket "$dir/r.sock" --save '' --appendonly no >/dev/null 2>&1 &
    rpid=$!; pids+=($rpid)
    for _ in $(seq 100); do redis-cli -s "$dir/r.sock" ping >/dev/null 2>&1 && break; sleep 0.05; done
    # a TCP port like the others
    redis-cli -s "$dir/r.sock" shutdown nosave >/dev/null 2>&1 || true
    wait $rpid 2>/dev/null || true
    rport=$((20000 + RANDOM % 20000))
    redis-server --port $rport --save '' --appendonly no >/dev/null 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do redis-cli -p $rport ping >/dev/null 2>&1 && break; sleep 0.05; done
    port[redis]=$rport; targets+=(redis)
else
    echo "redis-server not installed: no stock Redis figures" >&2
fi

rps() { # port test pipeline [n]: requests per second
    redis-benchmark -p "$1" -t "$2" -n "${4:-$n}" -r $keys -P "$3" -c "$clients" --csv 2>/dev/null |
        awk -F, '/"/ {gsub(/"/, "", $2); v=$2} END {printf "%.0f", v}'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }

# the keys the GETs hit, in every store
for t in "${targets[@]}"; do
    [[ $t == dpu ]] && continue
    rps "${port[$t]}" set 16 $((2 * keys)) >/dev/null
done

echo "| server | test | pipeline | requests/s (median of $repeat) |"
echo "|---|---|---|---|"
for t in "${targets[@]}"; do
    for test in get set; do
        for p in 1 16; do
            r=$(for _ in $(seq "$repeat"); do rps "${port[$t]}" $test $p; echo; done | median)
            echo "| $t | $test | $p | $r |"
        done
    done
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
echo
echo "| GETs served by | wall s | host CPU s | host CPU % | dpu-port process CPU s |"
echo "|---|---|---|---|---|"
for t in dpu host; do
    h0=$(cpu_ticks "$host_pid") d0=$(cpu_ticks "$dpu_pid") w0=$(date +%s.%N)
    rps "${port[$t]}" get 16 "$gets" >/dev/null
    h1=$(cpu_ticks "$host_pid") d1=$(cpu_ticks "$dpu_pid") w1=$(date +%s.%N)
    awk -v t=$t -v h=$((h1 - h0)) -v d=$((d1 - d0)) -v w0=$w0 -v w1=$w1 -v hz=$hz \
        'BEGIN {w = w1 - w0; printf "| %s port | %.2f | %.2f | %.1f | %.2f |\n", t, w, h / hz, 100 * h / hz / w, d / hz}'
done
