#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs a test-framework example and checks its output: usage expect.sh PROGRAM STATUS REGEX...
# passes when PROGRAM exits with STATUS ("nonzero" for any failure) and its output (stdout and
# stderr) has a line matching each extended regular expression.
prog=$1 want=$2
shift 2
out=$("$prog" 2>&1)
status=$?
printf '%s\n' "$out"
if [ "$want" = nonzero ]; then
  [ "$status" -ne 0 ] || { echo "expect.sh: $prog exited 0, expected a failure"; exit 1; }
elif [ "$status" -ne "$want" ]; then
  echo "expect.sh: $prog exited $status, expected $want"
  exit 1
fi
for re in "$@"; do
  printf '%s\n' "$out" | grep -Eq -- "$re" || { echo "expect.sh: no line matches: $re"; exit 1; }
done
echo "expect.sh: ok"
