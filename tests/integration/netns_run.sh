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

host_ns=hmaf-h-$$
dpu_ns=hmaf-d-$$
host_if=hmh$$
dpu_if=hmd$$

cleanup() {
    ip netns del "$host_ns" 2>/dev/null
    ip netns del "$dpu_ns" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! ip netns add "$host_ns" 2>/dev/null || ! ip netns add "$dpu_ns" 2>/dev/null ||
   ! ip link add "$host_if" type veth peer name "$dpu_if" 2>/dev/null; then
    echo "netns_run: cannot create network namespaces or a veth pair here; skipped" >&2
    exit 77
fi
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
