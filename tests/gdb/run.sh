#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The gdb_static and gdb_shared tests: tools/gdb/tether.py on the program tests/gdb/target.c,
#   (a) on a core dump (the program aborts; skipped with a message when the kernel's core_pattern
#       pipes cores away or the core size limit cannot be raised), and
#   (b) on the live process, stopped by `gdb -p` (skipped with a message when ptrace is refused);
# at least one of the two must run. Each runs `info coroutines` and `coroutine N bt` in batch mode
# and checks the listing (ids, states, wait reasons, names, creation sites) and the backtraces
# (the parked functions, with file:line). For the shared build, (c) gdb auto-loads the copy of the
# script beside libtether.so (no -x). Skips (77) under qemu-user and without gdb.
# usage: run.sh TARGET SCRIPT static|shared
set -uo pipefail

if [ $# -ne 3 ]; then
  echo "usage: $0 TARGET SCRIPT static|shared" >&2
  exit 2
fi
target=$(readlink -f "$1")
script=$(readlink -f "$2")
kind=$3
src=$(cd "$(dirname "$0")" && pwd)/target.c

if [ -n "${TT_TEST_EMULATOR:-}" ]; then
  echo "gdb_$kind: skipped under the emulator ($TT_TEST_EMULATOR): gdb cannot attach to or read" \
    "the cores of programs run by qemu-user"
  exit 77
fi
if ! command -v gdb >/dev/null; then
  echo "gdb_$kind: skipped: no gdb (scripts/install-deps installs it)"
  exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tether-gdb.XXXXXX")
pid=
cleanup() {
  if [ -n "$pid" ]; then
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

failures=0
fail() {
  echo "gdb_$kind: FAIL: $*" >&2
  failures=$((failures + 1))
}

# The line of a marker comment in target.c.
line_of() { grep -n "$1" "$src" | head -1 | cut -d: -f1; }
f_line=$(line_of "f_inner: parked here")
g_line=$(line_of "g_inner: parked here")
h_line=$(line_of "h_inner: parked here")

# The commands every run gives gdb.
# (each backtrace after a marker line, so that the checks can tell them apart).
commands=(-ex 'info coroutines')
for n in 2 3 4; do
  commands+=(-ex "echo @@ coroutine $n bt\\n" -ex "coroutine $n bt")
done
commands+=(-ex 'echo @@\n' -ex 'coroutine 1 bt' -ex 'coroutine 4 frame 1' -ex 'coroutine 9 bt'
  -ex 'bt 1')

# expect WHAT OUT REGEX: OUT must have a line matching the extended regular expression.
expect() {
  if ! grep -Eq -- "$3" "$2"; then
    fail "$1: no line matches /$3/"
    return 1
  fi
}

# The lines `coroutine N bt` printed: those after its marker up to the next marker.
bt_of() { # OUT N
  awk -v m="@@ coroutine $2 bt" '$0 == m { on = 1; next } /^@@/ { on = 0 } on' "$1"
}

# check OUT LABEL: the assertions on one gdb run's output.
check() {
  local out=$1 what=$2
  echo "---- gdb on the $what ----"
  cat "$out"
  echo "----"
  if grep -Eq 'Python Exception|Traceback|Error occurred in Python' "$out"; then
    fail "$what: the script raised a Python exception"
  fi
  expect "$what" "$out" '^ *Id +State +Wait reason +Waiting +Name +Created at$'
  expect "$what" "$out" '^ *1 +running\(w[0-9]+\) +- +- +main +tt_main .*sched\.c:[0-9]+$'
  expect "$what" "$out" \
    '^ *2 +waiting +chan receive +[0-9.]+(us|ms|s) +receiver +main_fn .*tests/gdb/target\.c:[0-9]+$'
  expect "$what" "$out" '^ *3 +waiting +sleep +[0-9.]+(us|ms|s) +sleeper +main_fn .*target\.c:[0-9]+$'
  expect "$what" "$out" '^ *4 +waiting +sync\.Mutex\.Lock +[0-9.]+(us|ms|s) +- +main_fn .*target\.c:[0-9]+$'
  expect "$what" "$out" '^\(4 coroutines; wait times against '
  [ "$(grep -Ec '^ *[0-9]+ +(running|waiting|runnable)' "$out")" = 4 ] ||
    fail "$what: the listing does not have exactly 4 coroutines"

  # Backtraces: innermost first, numbered from 1 (frame 0 is the thread's own), the parked call,
  # then the function's helper at its marker line, then the function, then the entry.
  local bt
  for spec in "2 f_inner f $f_line tt_chan_recv" "3 g_inner g $g_line tt_sleep" \
    "4 h_inner h $h_line tt_mutex_lock"; do
    # shellcheck disable=SC2086 # the spec's words are the arguments
    set -- $spec
    bt=$(bt_of "$out" "$1")
    if [ -z "$bt" ]; then
      fail "$what: coroutine $1's backtrace has no frame in $2"
      continue
    fi
    echo "$bt" | head -1 | grep -Eq '^#1  0x[0-9a-f]+ in switch_away ' ||
      fail "$what: coroutine $1's backtrace does not start at #1 in switch_away"
    echo "$bt" | grep -Eq " in $5 \\(.*\\) at .*\\.c:[0-9]+$" ||
      fail "$what: coroutine $1's backtrace has no $5 frame with file:line"
    echo "$bt" | grep -Eq " in $2 \\(\\) at .*tests/gdb/target\\.c:$4$" ||
      fail "$what: coroutine $1's backtrace has no '$2 () at target.c:$4'"
    echo "$bt" | grep -Eq " in $3 \\(arg=.*\\) at .*tests/gdb/target\\.c:[0-9]+$" ||
      fail "$what: coroutine $1's backtrace has no frame in $3 (its body) at target.c"
    # Order: the parked call, then the helper, then the body, then the entry, which ends it.
    local order
    order=$(echo "$bt" | sed -E 's/^#[0-9]+ +(0x[0-9a-f]+ in )?([A-Za-z_0-9]+) .*/\2/' |
      grep -Ex "$5|$2|$3|tt__coro_entry" | tr '\n' ' ')
    [ "$order" = "$5 $2 $3 tt__coro_entry " ] ||
      fail "$what: coroutine $1's frames are out of order: $order"
  done
  expect "$what" "$out" '^coroutine 1 is running on worker [0-9]+ \(see thread [0-9]+\)$'
  # shellcheck disable=SC2016 # the backquotes are gdb's text
  expect "$what" "$out" '^coroutine: no coroutine 9 \(see `info coroutines`\)$'
  # `coroutine 4 frame 1` selects the coroutine's innermost frame, as the backtrace numbers it.
  expect "$what" "$out" '^#1  0x[0-9a-f]+ in switch_away \(.*sched\.c:[0-9]+$'
  return 0
}

ran=0

# ---- (a) A core dump.
pattern=$(cat /proc/sys/kernel/core_pattern 2>/dev/null || echo "?")
case "$pattern" in
  '|'* | /* | '?')
    echo "gdb_$kind: core part skipped: /proc/sys/kernel/core_pattern is '$pattern' (a pipe or" \
      "another directory): no core file to find"
    ;;
  *)
    (cd "$tmp" && exec "$target" core >"$tmp/core.log" 2>&1)
    status=$?
    core=$(find "$tmp" -maxdepth 1 -name 'core*' -type f ! -name core.log | head -1)
    if [ "$status" -ne 134 ]; then
      fail "the core run ended with status $status, not 134 (SIGABRT): $(cat "$tmp/core.log")"
    elif [ -z "$core" ]; then
      echo "gdb_$kind: core part skipped: no core written (core_pattern '$pattern', hard" \
        "limit $(ulimit -Hc))"
    else
      gdb -nx -batch -x "$script" "${commands[@]}" "$target" "$core" >"$tmp/core.out" 2>&1
      check "$tmp/core.out" "core dump"
      expect "core dump" "$tmp/core.out" "wait times against the runtime's last clock reading\\)"
      ran=$((ran + 1))
    fi
    rm -f "$core"
    ;;
esac

# ---- (b) The live process, attached with gdb -p.
"$target" live >"$tmp/live.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do
  grep -q '^ready ' "$tmp/live.log" && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if ! grep -q "^ready $pid\$" "$tmp/live.log"; then
  fail "the live target never got ready: $(cat "$tmp/live.log")"
else
  sleep 0.3 # the waits' times grow: at least this much
  gdb -nx -batch -x "$script" "${commands[@]}" -p "$pid" >"$tmp/live.out" 2>&1
  if grep -Eq 'ptrace: Operation not permitted|Could not attach' "$tmp/live.out"; then
    echo "gdb_$kind: live part skipped: gdb cannot attach here: $(grep -E 'ptrace|attach' "$tmp/live.out" | head -1)"
  else
    check "$tmp/live.out" "live process"
    expect "live process" "$tmp/live.out" 'wait times against now\)'
    # The sleeper has been asleep for at least the 0.3 s above.
    grep -Eq '^ *3 +waiting +sleep +([0-9]{3}ms|[0-9.]+s|[0-9]+m[0-9]+s) ' "$tmp/live.out" ||
      fail "live process: coroutine 3's wait time is below 100ms"
    ran=$((ran + 1))

    # ---- (c) The shared library: gdb auto-loads libtether.so.X.Y.Z-gdb.py from beside it.
    if [ "$kind" = shared ]; then
      lib=$(sed -n 's|^[0-9a-f-]* [r-][w-][x-]p .* \(/.*libtether\.so[.0-9]*\)$|\1|p' \
        "/proc/$pid/maps" | head -1)
      real=$(readlink -f "$lib")
      if [ ! -f "$real-gdb.py" ]; then
        fail "no auto-load script beside the library: $real-gdb.py"
      else
        gdb -nx -batch -iex "add-auto-load-safe-path $(dirname "$real")" \
          -ex 'info coroutines' -ex 'coroutine 2 bt' -p "$pid" >"$tmp/auto.out" 2>&1
        echo "---- gdb with the auto-loaded script ----"
        cat "$tmp/auto.out"
        expect "auto-load" "$tmp/auto.out" '^ *2 +waiting +chan receive .* receiver '
        expect "auto-load" "$tmp/auto.out" ' in f_inner \(\) at .*target\.c:[0-9]+$'
      fi
    fi
  fi
fi

if [ "$ran" -eq 0 ] && [ "$failures" -eq 0 ]; then
  echo "gdb_$kind: skipped: neither a core file nor gdb -p is available here"
  exit 77
fi
if [ "$failures" -ne 0 ]; then
  echo "gdb_$kind: $failures failure(s)" >&2
  exit 1
fi
echo "gdb_$kind: ok ($ran of core and live)"
