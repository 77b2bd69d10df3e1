#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The install_consume test: installs a tether build into a temporary prefix and builds a small
# program against it the two ways users do, then runs each build, which must print "consumer ok":
#   (a) cc $(pkg-config --cflags --libs tether), and again statically with --static;
#   (b) a CMake project using find_package(tether), linking tether::tether and tether::tether_static.
# usage: run.sh SOURCE_DIR BUILD_DIR [CC [CONFIG]]     (CMAKE in the environment names cmake)
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 SOURCE_DIR BUILD_DIR [CC [CONFIG]]" >&2
  exit 2
fi
src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
cc=${3:-${CC:-cc}}
config=${4:-}
cmake=${CMAKE:-cmake}
here=$(cd "$(dirname "$0")" && pwd)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tether-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

step() { echo "== $*"; }
fail() {
  echo "install_consume: FAIL: $*" >&2
  exit 1
}
# Runs a command with its output in a log, which is shown only when it fails.
quiet() {
  local log=$tmp/log
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    fail "$*"
  fi
}
# Runs a consumer binary; it must print exactly "consumer ok".
expect_ok() {
  local out
  out=$("$@" 2>&1) || fail "$* exited with $?: $out"
  [ "$out" = "consumer ok" ] || fail "$* printed '$out', not 'consumer ok'"
  echo "$*: $out"
}
# The binary must load libtether.so from the prefix, not from the build tree or the system.
expect_lib_from_prefix() {
  local bin=$1 line
  line=$(ldd "$bin" | grep 'libtether\.so' || true)
  case "$line" in
    *"=> $prefix/"*) ;;
    *) fail "$bin does not load libtether.so from $prefix: ${line:-not linked}" ;;
  esac
}

step "cmake --install $build --prefix $prefix"
quiet "$cmake" --install "$build" --prefix "$prefix" ${config:+--config "$config"}

# What got installed: the public headers and nothing internal.
[ -f "$prefix/include/tether.h" ] || fail "include/tether.h was not installed"
for h in "$src"/include/tether/*.h; do
  [ -f "$prefix/include/tether/$(basename "$h")" ] || fail "include/tether/$(basename "$h") missing"
done
if find "$prefix" -name internal.h -o -name switch.h | grep -q .; then
  fail "internal headers were installed: $(find "$prefix" -name internal.h -o -name switch.h)"
fi

# tether.pc lives wherever CMAKE_INSTALL_LIBDIR put it (lib, lib64, lib/<multiarch>).
mapfile -t pcs < <(find "$prefix" -name tether.pc)
[ ${#pcs[@]} -eq 1 ] || fail "expected one tether.pc under $prefix, found ${#pcs[@]}"
export PKG_CONFIG_PATH=$(dirname "${pcs[0]}")
unset PKG_CONFIG_SYSROOT_DIR PKG_CONFIG_ALLOW_SYSTEM_CFLAGS PKG_CONFIG_ALLOW_SYSTEM_LIBS
pc_prefix=$(pkg-config --variable=prefix tether) || fail "pkg-config cannot read ${pcs[0]}"
[ "$pc_prefix" = "$prefix" ] || fail "tether.pc says prefix=$pc_prefix, installed in $prefix"
libdir=$(pkg-config --variable=libdir tether)
[ -f "$libdir/libtether.so" ] || fail "no libtether.so in tether.pc's libdir $libdir"
[ -f "$libdir/libtether.a" ] || fail "no libtether.a in tether.pc's libdir $libdir"

# The shared library exports the public API only: tt_ names, never internal tt__ ones.
leaked=$(nm -D --defined-only "$libdir/libtether.so" | awk '{print $NF}' |
  grep -Ev '^(tt_[A-Za-z0-9]|_init$|_fini$|_edata$|_end$|__bss_start$)' || true)
[ -z "$leaked" ] || fail "libtether.so exports non-API symbols (missing static or hidden?):
$leaked"

step "(a) pkg-config: $(pkg-config --cflags --libs tether)"
# shellcheck disable=SC2046 # pkg-config's output is meant to be split into words
quiet "$cc" -std=c11 -Wall -Wextra -Werror -o "$tmp/consumer_pc" "$here/consumer/consumer.c" \
  $(pkg-config --cflags --libs tether)
(
  export LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  expect_lib_from_prefix "$tmp/consumer_pc"
  expect_ok "$tmp/consumer_pc"
)

# Statically: Libs.private must name everything libtether.a needs.
static_libs=$(pkg-config --libs --static tether)
step "(a) pkg-config --static: $static_libs"
# shellcheck disable=SC2046
quiet "$cc" -std=c11 -Wall -Wextra -Werror -o "$tmp/consumer_pc_static" \
  "$here/consumer/consumer.c" $(pkg-config --cflags tether) \
  ${static_libs/-ltether/-Wl,-Bstatic -ltether -Wl,-Bdynamic}
if ldd "$tmp/consumer_pc_static" | grep -q libtether; then
  fail "consumer_pc_static links libtether.so, not libtether.a"
fi
expect_ok "$tmp/consumer_pc_static"

step "(b) find_package(tether) with CMAKE_PREFIX_PATH=$prefix"
quiet "$cmake" -S "$here/consumer" -B "$tmp/consumer-build" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
  -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF
found=$(sed -n 's/^tether_DIR:PATH=//p' "$tmp/consumer-build/CMakeCache.txt")
case "$found" in
  "$prefix"/*) ;;
  *) fail "find_package found tether in '$found', not under $prefix" ;;
esac
quiet "$cmake" --build "$tmp/consumer-build"
expect_lib_from_prefix "$tmp/consumer-build/consumer"
expect_ok "$tmp/consumer-build/consumer"
if ldd "$tmp/consumer-build/consumer_static" | grep -q libtether; then
  fail "consumer_static links libtether.so, not libtether.a"
fi
expect_ok "$tmp/consumer-build/consumer_static"

echo "install_consume: ok"
