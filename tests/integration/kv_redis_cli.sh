#!/usr/bin/env bash
# The kv example driven by the stock Redis tools: each command on both
# ports, what one port writes the other reads, binary and 1 MiB values, a
# value over the limit refused, then a short redis-benchmark on each port.
#   kv_redis_cli.sh HMAF-KV-HOST HMAF-KV-DPU
set -uo pipefail
host_bin=$1 dpu_bin=$2

for tool in redis-cli redis-benchmark; do
    if ! command -v $tool >/dev/null; then
        echo "SKIP: $tool not installed (apt-get install redis-tools)" >&2
        exit 77
    fi
done

dir=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# start NAME VAR CMD...: start a server (a child of this shell, so that
# it can be waited for) and set VAR to its port, from its "ready port P".
start() {
    local name=$1 var=$2; shift 2
    local out=$dir/$name.out
    "$@" --port 0 >"$out" 2>&1 &
    pids+=($!)
    for _ in $(seq 200); do
        if grep -q '^ready port' "$out"; then
            printf -v "$var" %s "$(awk '/^ready port/ {print $3}' "$out")"
            return 0
        fi
        kill -0 $! 2>/dev/null || break
        sleep 0.05
    done
    cat "$out" >&2
    fail "$name did not start"
}

start host host "$host_bin" --address "unix:$dir/kv.sock" --token t
start dpu dpu "$dpu_bin" --address "unix:$dir/kv.sock" --token t

# expect PORT WANT CMD...: the raw answer must be WANT
expect() {
    local port=$1 want=$2; shift 2
    local got
    got=$(redis-cli -p "$port" --raw "$@" 2>&1)
    [[ "$got" == "$want" ]] || fail "port $port: $* -> '$got', want '$want'"
}

for p in $host $dpu; do
    expect "$p" PONG PING
    expect "$p" hi ECHO hi
    expect "$p" "" GET missing
    expect "$p" 0 EXISTS missing
done

writers=($host $dpu)

# expect_all PORT WANT: the commands on stdin, one per line, in one
# redis-cli (one process per step keeps the test short)
expect_all() {
    local port=$1 want=$2
    local cmds got
    cmds=$(cat)
    got=$(redis-cli -p "$port" --raw 2>&1 <<<"$cmds")
    [[ "$got" == "$want" ]] || fail "port $port: ${cmds//$'\n'/; } -> '$got', want '$want'"
}

notint="ERR value is not an integer or out of range"
for w in "${writers[@]}"; do
    for r in $host $dpu; do
        expect_all "$w" $'OK\nOK' <<<"SET k$w v$w
MSET a$w 1 b$w 2"
        expect_all "$r" "v$w"$'\n1\n2\n\n2' <<<"GET k$w
MGET a$w b$w nothing
EXISTS a$w b$w nothing"
        expect_all "$w" $'2\n12' <<<"INCR a$w
INCRBY a$w 10"
        expect "$r" 12 GET "a$w"
        expect_all "$w" $'13\n'"$notint"$'\n\n2' <<<"INCR a$w
INCR k$w
DEL a$w b$w nothing"
        expect "$r" "" GET "a$w"
        expect "$w" 1 DEL "k$w"
    done
done
expect "$host" OK SET counted 1
expect "$dpu" 1 DBSIZE
expect "$host" 1 DBSIZE
expect "$host" "ERR unknown command 'FROBNICATE'" FROBNICATE

# binary values, 1 MiB, and just over it
head -c 1000 /dev/urandom >"$dir/bin"
printf 'a\r\nb\0c' >>"$dir/bin"
head -c $((1 << 20)) /dev/urandom >"$dir/mib"
head -c $(((1 << 20) + 1)) /dev/urandom >"$dir/over"
for w in "${writers[@]}"; do
    for f in bin mib; do
        redis-cli -p "$w" -x SET "$f" <"$dir/$f" | grep -q OK || fail "SET $f on $w"
        for r in $host $dpu; do
            redis-cli -p "$r" --raw GET "$f" | head -c "$(stat -c %s "$dir/$f")" >"$dir/got"
            cmp -s "$dir/got" "$dir/$f" || fail "$f written on $w differs on $r"
        done
    done
    redis-cli -p "$w" -x SET over <"$dir/over" | grep -q ERR || fail "1 MiB + 1 accepted on $w"
done
expect "$host" "" GET over

# a short benchmark on each port, its answers checked by the tool itself
for p in $host $dpu; do
    redis-benchmark -p "$p" -t get,set,incr -n 3000 -r 500 -P 16 -c 8 -q >"$dir/bench" 2>&1 ||
        fail "redis-benchmark on $p"
    grep -q "requests per second" "$dir/bench" || { cat "$dir/bench"; fail "redis-benchmark output on $p"; }
done
for pid in "${pids[@]}"; do
    kill -0 "$pid" || fail "a server died"
done
# SIGTERM: each closes its clients, frees everything (ASan checks leaks)
# and exits 0; the dpu side first, so it can hand back what it holds
for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[i]}"
    status=0
    wait "${pids[i]}" || status=$?
    ((status == 0)) || { cat "$dir"/*.out >&2; fail "server ${pids[i]} exited $status on SIGTERM"; }
done
pids=()
echo "ok: host port $host, dpu port $dpu"
