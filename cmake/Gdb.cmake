# SPDX-License-Identifier: MIT
# tools/gdb/tether.py where gdb auto-loads it for libtether.so, under gdb's objfile-gdb.py naming
# (a script named after the library's real file name plus "-gdb.py"; docs/DIAGNOSTICS.md,
# "Coroutines in gdb"):
#   - in the build tree, beside the library: gdb looks beside every objfile it loads, once the
#     directory is in its auto-load safe-path (add-auto-load-safe-path BUILD_DIR);
#   - installed, under PREFIX/share/gdb/auto-load/ followed by the library's absolute directory,
#     the place distributions use (libstdc++'s printers live there): with the prefix /usr that is
#     gdb's own $datadir/auto-load, which its default safe-path already trusts.
# Chosen over a .debug_gdb_scripts section: the section only names a script (found through the
# same directories and the same safe-path), or embeds its text in every program linked with
# libtether.a, where it would go stale behind the copy in tools/gdb.
set(TT_GDB_SCRIPT_NAME "libtether.so.${PROJECT_VERSION}-gdb.py")
# Every build refreshes the copy (copy_if_different: the script changes without the library).
add_custom_target(tether-gdb-script ALL
  COMMAND "${CMAKE_COMMAND}" -E copy_if_different "${PROJECT_SOURCE_DIR}/tools/gdb/tether.py"
          "$<TARGET_FILE_DIR:tether_shared>/${TT_GDB_SCRIPT_NAME}"
  COMMENT "" VERBATIM)

if(TT_INSTALL)
  # The prefix is known only at install time (cmake --install --prefix): escaped, it is expanded
  # by the install script.
  if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
    set(tt_gdb_libdir "${CMAKE_INSTALL_LIBDIR}")
  else()
    set(tt_gdb_libdir "\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}")
  endif()
  install(FILES "${PROJECT_SOURCE_DIR}/tools/gdb/tether.py" RENAME "${TT_GDB_SCRIPT_NAME}"
          DESTINATION "${CMAKE_INSTALL_DATADIR}/gdb/auto-load${tt_gdb_libdir}" COMPONENT runtime)
endif()
