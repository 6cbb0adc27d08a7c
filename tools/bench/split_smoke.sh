#!/bin/sh
# Split mode on one machine, a smoke test (ctest integration.bench_split*):
# the host, `hmaf-bench --serve`, runs in the background and the dpu side,
# `hmaf-bench --connect --quick`, in the foreground. Both must exit 0.
#
# usage: split_smoke.sh BENCH ENGINE unix|comch
#   comch needs a bench built with DOCA: here, hmaf-bench-doca and the
#   emulation's default devices (host b1:00.0, dpu side 03:00.0).
set -u
bench=$1
engine=$2
channel=$3

# The dpu side reads the host's memory with process_vm_readv (the cma
# engine, and the DOCA emulation's DMA). The host grants that with
# PR_SET_PTRACER, which Yama's modes 2 and 3 do not honour.
scope=$(cat /proc/sys/kernel/yama/ptrace_scope 2>/dev/null || echo 0)
if [ "$scope" -ge 2 ]; then
    echo "skipped: Yama ptrace_scope is $scope"
    exit 77
fi

dir=$(mktemp -d /tmp/hmaf-bench-split.XXXXXX) || exit 1
trap 'rm -rf "$dir"' EXIT
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

"$bench" --serve "$serve" --engine "$engine" &
host=$!
"$bench" --connect "$connect" --engine "$engine" --quick --no-out
dpu=$?
if [ "$dpu" -ne 0 ]; then
    kill "$host" 2>/dev/null # it would wait for a run that never comes
fi
wait "$host"
host_status=$?
echo "split mode: dpu side exited $dpu, host $host_status"
[ "$dpu" -eq 0 ] && [ "$host_status" -eq 0 ]
