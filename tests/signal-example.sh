#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs the signal_shutdown example, sends it a real SIGTERM once it says "ready", and checks that
# it cleaned up every server and exited with status 0. Usage: signal-example.sh PROGRAM
set -euo pipefail
prog=$1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$prog" >"$out" 2>&1 &
pid=$!
for _ in $(seq 1 500); do
  grep -q '^ready$' "$out" && break
  sleep 0.01
done
grep -q '^ready$' "$out" || { echo "never became ready:"; cat "$out"; kill -9 "$pid"; exit 1; }
sleep 0.05 # let the servers start serving
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
cat "$out"
[ "$status" -eq 0 ] || { echo "FAIL: exit status $status, want 0"; exit 1; }
grep -q '^signal 15 (SIGTERM): 3 servers cleaned up, 3 flushed, group error 0$' "$out" ||
  { echo "FAIL: cleanup line missing"; exit 1; }
grep -q '^coroutines left: 0$' "$out" || { echo "FAIL: coroutines left behind"; exit 1; }
echo "PASS"
