# SPDX-License-Identifier: MIT
# The commands the README promises. Each target installs what is missing first, so `make demo`
# and `make test` work as the only command on a fresh Debian machine.
BUILD     ?= build
JOBS      ?= $(shell nproc 2>/dev/null || echo 2)
CTEST_J   ?= 2
WERROR    ?= $(if $(CI),ON,OFF)
CMAKE_GEN := -DTT_WERROR=$(WERROR)

.PHONY: all deps build demo test test-asan test-tsan test-aarch64 test-valgrind bench soak format check-format clean

all: build

deps:
	@scripts/install-deps

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_GEN) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

demo: build
	@$(BUILD)/examples/leakhunt

test: build
	@ctest --test-dir $(BUILD) --output-on-failure -j $(CTEST_J)
	@$(MAKE) --no-print-directory test-aarch64

# ASan+UBSan: the whole suite. Timing tolerances widen (TT_TEST_SLOW).
test-asan: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTT_SANITIZE=address -DTT_BUILD_BENCH=OFF $(CMAKE_GEN) >/dev/null
	@cmake --build build-asan -j $(JOBS)
	@TT_TEST_SCALE=0.1 TT_TEST_SLOW=4 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir build-asan --output-on-failure -j $(CTEST_J)

# TSan supports at most ~8,000 live fibers: big tests scale down (TT_TEST_SCALE).
test-tsan: deps
	@cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DTT_SANITIZE=thread -DTT_BUILD_BENCH=OFF $(CMAKE_GEN) >/dev/null
	@cmake --build build-tsan -j $(JOBS)
	@TT_TEST_SCALE=0.005 TT_TEST_SLOW=6 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  ctest --test-dir build-tsan --output-on-failure -j $(CTEST_J)

# The aarch64 build, cross-compiled and run under qemu-user.
test-aarch64: deps
	@scripts/test-aarch64

# Valgrind's memcheck, with every coroutine stack registered (-DTT_VALGRIND=ON).
test-valgrind: deps
	@scripts/test-valgrind

bench: deps
	@scripts/bench

# The leak proof's behavioural oracle over many random programs (SOAK_SEEDS, from SOAK_FIRST).
soak: build
	@TT_ORACLE_SEEDS=$${SOAK_SEEDS:-5000} TT_ORACLE_FIRST=$${SOAK_FIRST:-1000} \
	  $(BUILD)/tests/tether-tests leak_oracle_seeds_0 | tail -3

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

check-format:
	@scripts/check-format

clean:
	rm -rf $(BUILD) build-asan build-tsan build-aarch64 build-bench build-valgrind
