#!/bin/sh
# Split mode on one machine, a smoke test (ctest integration.bench_split*):
# the host, `hmaf-bench --serve`, runs in the background and the dpu side,
# `hmaf-bench --connect --quick`, after it. Both must exit 0.
#
# usage: split_smoke.sh BENCH ENGINE unix|comch
#   comch needs a bench built with DOCA: here, hmaf-bench-doca and the
#   emulation's default devices (host b1:00.0, dpu side 03:00.0).
set -u
bench=$1
engine=$2
channel=$3

# Once the dpu side has gone, the host notices within a tenth of a second
# and tears down; past this many seconds it is hung.
host_exit_s=30

# The dpu side reads the host's memory with process_vm_readv (the cma
# engine, and the DOCA emulation's DMA). The host grants that with
# PR_SET_PTRACER, which Yama's modes 2 and 3 do not honour.
scope=$(cat /proc/sys/kernel/yama/ptrace_scope 2>/dev/null || echo 0)
if [ "$scope" -ge 2 ]; then
    echo "skipped: Yama ptrace_scope is $scope"
    exit 77
fi

host=
dpu_pid=
# Whatever ends the script (a failure, ctest's timeout, ^C), no bench
# process may outlive it.
cleanup() {
    for pid in $host $dpu_pid; do
        kill "$pid" 2>/dev/null
    done
    rm -rf "$dir"
}
dir=$(mktemp -d /tmp/hmaf-bench-split.XXXXXX) || exit 1
trap cleanup EXIT
# A signal ends the shell without running the EXIT trap: exit instead.
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

case $channel in
unix)
    serve=unix:$dir/host.sock
    connect=$serve
    ;;
comch)
    # The emulation's comch names are machine-wide: one per run.
    name=hmaf-bench-$$
    serve=comch:$name@b1:00.0
    connect=comch:$name@03:00.0/b1:00.0
    ;;
*)
    echo "usage: split_smoke.sh BENCH ENGINE unix|comch" >&2
    exit 2
    ;;
esac

# The host's exit status once it has exited, waiting at most host_exit_s
# seconds; 124 (as timeout(1)) when it had to be killed.
wait_host() {
    waited=0
    while kill -0 "$host" 2>/dev/null; do
        if [ "$waited" -ge "$host_exit_s" ]; then
            echo "split mode: the host did not exit within ${host_exit_s}s" >&2
            kill "$host" 2>/dev/null
            wait "$host"
            return 124
        fi
        sleep 1
        waited=$((waited + 1))
    done
    wait "$host"
}

"$bench" --serve "$serve" --engine "$engine" &
host=$!
# In the background too: the shell runs a trap only once the foreground
# command is over, and `wait` lets a signal through at once.
"$bench" --connect "$connect" --engine "$engine" --quick --no-out &
dpu_pid=$!
wait "$dpu_pid"
dpu=$?
dpu_pid=
if [ "$dpu" -ne 0 ]; then
    kill "$host" 2>/dev/null # it would wait a minute for a run that never comes
fi
wait_host
host_status=$?
host=
echo "split mode: dpu side exited $dpu, host $host_status"
[ "$dpu" -eq 0 ] && [ "$host_status" -eq 0 ]
