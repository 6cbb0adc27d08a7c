#!/usr/bin/env bash
# hmaf-info under what containers do to a process (docs/troubleshooting.md):
#   seccomp  process_vm_readv, process_vm_writev and userfaultfd denied by a
#            seccomp filter (EPERM, as docker's default profile answers):
#            it names both denials, the cma engine as unusable with the
#            reason, and exits 1 (the default engine is not usable); the
#            same in --json.
#   enosys   userfaultfd answered with ENOSYS: told apart from a denial.
#   config   the effective configuration: a setting from the environment
#            with its source, a bad value named as ignored with the
#            default kept, the rest defaults; the same in --json.
#   ptrace   run as nobody against a host process of root: the kernel's
#            ptrace check refuses (whatever Yama says, another user), and
#            hmaf-info says so and why, beside a missing CAP_SYS_PTRACE;
#            where vm.unprivileged_userfaultfd is 0, that a full
#            userfaultfd is refused for it and the user-mode-only one not.
# Usage: info_checks.sh SECCOMP_RUN HMAF_INFO CASE
set -uo pipefail
run=$1 info=$2 case=$3
out=$(mktemp)
sleeper=
cleanup() {
    [ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null
    rm -f "$out"
}
trap cleanup EXIT
fail() {
    echo "info_checks $case: $*"
    cat "$out"
    exit 1
}
# expect TEXT: the output has this fixed string
expect() {
    grep -qF -- "$1" "$out" || fail "missing: $1"
}
# Runs hmaf-info under the launcher; 77 from the launcher is a skip.
run_info() {
    local want=$1
    shift
    "$run" "$@" >"$out" 2>&1
    local rc=$?
    if [ $rc -eq 77 ]; then
        echo "skip: $(head -1 "$out")"
        exit 77
    fi
    [ $rc -eq "$want" ] || fail "exit status $rc, expected $want"
}

unset HMAF_ENGINE
case $case in
seccomp)
    run_info 1 --deny process_vm_readv --deny process_vm_writev \
        --deny userfaultfd -- "$info"
    cat "$out"
    expect "cma    NOT usable (HMAF_EPERM)"
    expect "process_vm_readv of its own memory fails with EPERM: a seccomp filter denies the system call"
    expect "default: cma, NOT usable"
    expect "seccomp: mode 2 (filter)"
    expect "[fail] process_vm_readv: EPERM (own memory)"
    expect "[fail] userfaultfd: user-mode-only: EPERM; full: EPERM"
    expect "userfaultfd denied"
    run_info 1 --deny process_vm_readv --deny userfaultfd -- "$info" --json
    expect '{"name": "cma", "usable": false, "error": "HMAF_EPERM"'
    expect '"default_usable": false'
    expect '{"name": "userfaultfd", "status": "fail", "value": "user-mode-only: EPERM; full: EPERM"'
    ;;
enosys)
    run_info 0 --deny userfaultfd:ENOSYS -- "$info"
    cat "$out"
    expect "cma    usable"
    expect "[fail] userfaultfd: user-mode-only: ENOSYS; full: ENOSYS"
    expect "the kernel lacks CONFIG_USERFAULTFD, or a seccomp filter answers ENOSYS"
    ;;
ptrace)
    if [ "$(id -u)" != 0 ]; then
        echo "skip: needs root, to run hmaf-info as nobody against root"
        exit 77
    fi
    sleep 60 &
    sleeper=$!
    run_info 0 --user 65534 -- "$info" --pid "$sleeper"
    cat "$out"
    expect "CAP_SYS_PTRACE: not in the effective set"
    expect "[fail] host pid: $sleeper: EPERM"
    expect "the kernel refuses ptrace access to pid $sleeper"
    expect "a session would fail with HMAF_EPERM"
    expect "fix: run the dpu side as the host's user, or give it CAP_SYS_PTRACE"
    # vm.unprivileged_userfaultfd=0 refuses nobody a full userfaultfd, not
    # the user-mode-only one mapping mode uses
    if [ "$(cat /proc/sys/vm/unprivileged_userfaultfd 2>/dev/null)" = 0 ]; then
        expect "[ok  ] userfaultfd: user-mode-only: allowed; full: EPERM"
        expect "a full descriptor is refused because vm.unprivileged_userfaultfd is 0 and this process lacks CAP_SYS_PTRACE"
    fi
    # the same as root: the check passes, so the failure above is the
    # user's, not the probe's
    "$info" --pid "$sleeper" >"$out" 2>&1 || fail "as root: exit $?"
    expect "[ok  ] host pid: $sleeper: may be read"
    ;;
config)
    HMAF_RPC_TIMEOUT=200ms HMAF_CACHE_MAX_BYTES=16x run_info 0 -- "$info"
    cat "$out"
    expect "session.rpc_timeout_ms       HMAF_RPC_TIMEOUT           200ms  [environment: HMAF_RPC_TIMEOUT=200ms]"
    expect "[default (environment ignored): HMAF_CACHE_MAX_BYTES=16x]"
    expect "HMAF_CACHE_MAX_BYTES=16x: not a size"
    expect "agent.mailbox_slots          HMAF_MAILBOX_SLOTS         16  [default]"
    HMAF_MAILBOX_SLOTS=32 run_info 0 -- "$info" --json
    expect '{"name": "agent.mailbox_slots", "env": "HMAF_MAILBOX_SLOTS", "value": "32", "default": "16", "source": "environment", "env_value": "32"}'
    expect '{"name": "session.rpc_timeout_ms", "env": "HMAF_RPC_TIMEOUT", "value": "5000ms", "default": "5000ms", "source": "default", "env_value": null}'
    ;;
*)
    echo "unknown case $case"
    exit 2
    ;;
esac
echo "info_checks $case: ok"
