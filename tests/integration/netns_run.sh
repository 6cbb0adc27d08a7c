#!/usr/bin/env bash
# Two machines on one: run a test with its host in one network namespace
# and its dpu side in another, joined by a veth pair, over tcp:
#
#   netns_run.sh ENGINE COMMAND [ARGS...]
#
# The namespaces and the veth pair are this run's own, and go on every
# exit path. COMMAND runs in the dpu side's namespace with HMAF_ENGINE set;
# tests/helpers/netns.h takes HMAF_TEST_HOST_NETNS and
# HMAF_TEST_HOST_ADDRESS: a forked host enters the host's namespace and
# listens at 10.199.0.1. UCX is held to tcp on the veth pair: its
# shared-memory lanes must not be picked across namespaces (they hang),
# nor loopback (each namespace has its own).
# Exits 77 when namespaces cannot be made here (not root, no ip(8)).
set -u

engine=$1
shift
if [ "$(id -u)" != 0 ]; then
    echo "netns_run: needs root for network namespaces; skipped" >&2
    exit 77
fi
if ! command -v ip >/dev/null; then
    echo "netns_run: ip(8) not installed (iproute2); skipped" >&2
    exit 77
fi

# Namespaces of runs that were killed (a timeout's SIGKILL skips the
# trap below) stay behind; those whose run is gone go now. Names carry
# the run's pid, and a random part, since pids come round again.
for stale in /run/netns/hmaf-[hd]-*; do
    pid=${stale#/run/netns/hmaf-?-}
    pid=${pid%%-*}
    if [ -e "$stale" ] && [ "$pid" != $$ ] && ! kill -0 "$pid" 2>/dev/null; then
        ip netns del "${stale#/run/netns/}" 2>/dev/null
    fi
done

name_pair() {
    local tag
    tag=$(printf '%x%04x' $$ $RANDOM)
    host_ns=hmaf-h-$$-$tag
    dpu_ns=hmaf-d-$$-$tag
    host_if=hh$tag # interface names: 15 characters at most
    dpu_if=hd$tag
}
name_pair

cleanup() {
    ip netns del "$host_ns" 2>/dev/null
    ip netns del "$dpu_ns" 2>/dev/null
    ip link del "$host_if" 2>/dev/null # still here when the move failed
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs "ip ARGS", keeping its complaint in $ip_error.
ip_quiet() {
    ip_error=$(ip "$@" 2>&1) && return 0
    ip_error="ip $*: $ip_error"
    return 1
}

make_pair() {
    ip_quiet netns add "$host_ns" && ip_quiet netns add "$dpu_ns" &&
        ip_quiet link add "$host_if" type veth peer name "$dpu_if"
}

# The first namespaces made on a machine race to set up /run/netns when
# two tests start together (the suite runs in parallel), and a name may
# be taken: a failure is retried under new names, and the last one is
# named.
for attempt in 1 2 3 4 5; do
    make_pair && break
    cleanup
    name_pair
    if [ "$attempt" = 5 ]; then
        echo "netns_run: cannot create network namespaces or a veth pair here ($ip_error); skipped" >&2
        exit 77
    fi
    sleep 0.$((attempt * 2))
done
set -e
ip link set "$host_if" netns "$host_ns"
ip link set "$dpu_if" netns "$dpu_ns"
ip -n "$host_ns" addr add 10.199.0.1/30 dev "$host_if"
ip -n "$dpu_ns" addr add 10.199.0.2/30 dev "$dpu_if"
for ns in "$host_ns" "$dpu_ns"; do
    ip -n "$ns" link set lo up
done
ip -n "$host_ns" link set "$host_if" up
ip -n "$dpu_ns" link set "$dpu_if" up
set +e

ip netns exec "$dpu_ns" env HMAF_ENGINE="$engine" \
    HMAF_TEST_HOST_NETNS="/run/netns/$host_ns" \
    HMAF_TEST_HOST_ADDRESS=tcp:10.199.0.1 \
    UCX_TLS=tcp UCX_NET_DEVICES="$host_if,$dpu_if" \
    "$@"
