# SPDX-License-Identifier: MIT
# Cross-compiles tether for aarch64 Linux with Debian's aarch64-linux-gnu toolchain and runs what
# it builds (ctest, try_run) under qemu-user, since the build host has no binfmt registration.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(TT_CROSS_TRIPLE aarch64-linux-gnu)
set(TT_CROSS_SYSROOT /usr/${TT_CROSS_TRIPLE})

set(CMAKE_C_COMPILER ${TT_CROSS_TRIPLE}-gcc)
# The .S files go through the C compiler's preprocessor and assembler driver.
set(CMAKE_ASM_COMPILER ${TT_CROSS_TRIPLE}-gcc)

# Libraries and headers come from the cross sysroot only; programs (the build's own tools) from
# the host.
set(CMAKE_FIND_ROOT_PATH ${TT_CROSS_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# -L points qemu's dynamic loader and /lib lookups at the cross sysroot. CTest prefixes every
# test command with this, so the suite runs unchanged.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64;-L;${TT_CROSS_SYSROOT})
