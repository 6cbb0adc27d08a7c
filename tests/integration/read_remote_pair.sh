#!/usr/bin/env bash
# The smallest pair (README): serve_buffer exposes and publishes a buffer,
# read_remote, another process, reads its first bytes; a wrong token is
# refused with HMAF_EAUTH; serve_buffer ends cleanly on SIGTERM.
# Usage: read_remote_pair.sh SERVE_BUFFER READ_REMOTE
set -euo pipefail
serve=$1 read=$2
dir=$(mktemp -d)
host=
cleanup() {
    [ -n "$host" ] && kill -KILL "$host" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
"$serve" "unix:$dir/app.sock" s3cret >"$dir/host.out" &
host=$!
for _ in $(seq 1 200); do
    grep -q "^serve_buffer: serving greeting" "$dir/host.out" && break
    kill -0 "$host"
    sleep 0.05
done
grep -q "^serve_buffer: serving greeting at unix:$dir/app.sock" "$dir/host.out"

"$read" "unix:$dir/app.sock" s3cret greeting 32 >"$dir/read.out"
cat "$dir/read.out"
# "hello from serve_buffer", then zeros
head -1 "$dir/read.out" | grep -q ': 68 65 6c 6c 6f 20 66 72 6f 6d 20 73 65 72 76 65$'
sed -n 2p "$dir/read.out" | grep -q ': 5f 62 75 66 66 65 72 00 00 00 00 00 00 00 00 00$'

if "$read" "unix:$dir/app.sock" wrong greeting 2>"$dir/err.out"; then
    echo "a wrong token was taken"; exit 1
fi
grep -q "HMAF_EAUTH" "$dir/err.out"

kill -TERM "$host"
status=0
wait "$host" || status=$?
host=
[ "$status" -eq 0 ] || { echo "serve_buffer ended with $status"; exit 1; }
echo "read_remote_pair: ok"
