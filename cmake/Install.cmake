# SPDX-License-Identifier: MIT
# Installing tether: the public headers, both libraries, a CMake package (find_package(tether)
# gives tether::tether, the shared library, and tether::tether_static) and a pkg-config file.
#
# Included from the top CMakeLists.txt once tether_shared and tether_static exist. To add what the
# library links to the pkg-config file, append to these before the include (the static library's
# plain link names, like ${CMAKE_DL_LIBS} or "unwind", are picked up without help):
#   TT_PC_LIBS_PRIVATE      flags for Libs.private, e.g. -lunwind -ldw -lz
#   TT_PC_REQUIRES_PRIVATE  pkg-config modules for Requires.private, e.g. libunwind libdw zlib
#   TT_CONFIG_DEPENDENCIES  CMake code run by tetherConfig.cmake before it loads the targets, e.g.
#                           "find_dependency(ZLIB)" when the library links an imported target.
#
# The installed tether.pc names the prefix given at install time (`cmake --install --prefix P`
# and CMAKE_INSTALL_PREFIX alike), and the CMake package is relocatable.
option(TT_INSTALL "Generate tether's install rules" ON)
if(NOT TT_INSTALL)
  return()
endif()

include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(TT_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/tether"
    CACHE STRING "Where tetherConfig.cmake goes, relative to the prefix")
set(TT_INSTALL_PKGCONFIGDIR "${CMAKE_INSTALL_LIBDIR}/pkgconfig"
    CACHE STRING "Where tether.pc goes, relative to the prefix")

# ---- Headers: tether.h and include/tether/*.h; src/ headers are internal and never installed.
install(FILES "${PROJECT_SOURCE_DIR}/include/tether.h"
        DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}" COMPONENT dev)
install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/tether/"
        DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}/tether" COMPONENT dev
        FILES_MATCHING PATTERN "*.h")

# ---- Libraries and the export set behind tether::tether and tether::tether_static.
install(TARGETS tether_shared tether_static EXPORT tetherTargets
        LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT runtime NAMELINK_COMPONENT dev
        ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT dev
        RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}" COMPONENT runtime)
install(EXPORT tetherTargets NAMESPACE tether:: FILE tetherTargets.cmake
        DESTINATION "${TT_INSTALL_CMAKEDIR}" COMPONENT dev)

# ---- tetherConfig.cmake and tetherConfigVersion.cmake. Before 1.0 a minor release may break the
# API, so only the same major.minor satisfies a request (find_package(tether 0.1)).
configure_package_config_file("${CMAKE_CURRENT_LIST_DIR}/tetherConfig.cmake.in"
                              "${PROJECT_BINARY_DIR}/tetherConfig.cmake"
                              INSTALL_DESTINATION "${TT_INSTALL_CMAKEDIR}")
write_basic_package_version_file("${PROJECT_BINARY_DIR}/tetherConfigVersion.cmake"
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES "${PROJECT_BINARY_DIR}/tetherConfig.cmake"
              "${PROJECT_BINARY_DIR}/tetherConfigVersion.cmake"
        DESTINATION "${TT_INSTALL_CMAKEDIR}" COMPONENT dev)

# ---- tether.pc. Libs.private is what a static link needs besides libtether.a: -lpthread for
# Threads::Threads, then every plain library name the static library links (so ${CMAKE_DL_LIBS}
# gives -ldl), then TT_PC_LIBS_PRIVATE. Anything else (an imported target, a generator expression)
# cannot be translated here and must be named in TT_PC_LIBS_PRIVATE or TT_PC_REQUIRES_PRIVATE.
set(tt_pc_libs -lpthread)
get_target_property(tt_static_links tether_static LINK_LIBRARIES)
if(NOT tt_static_links)
  set(tt_static_links "")
endif()
foreach(lib IN LISTS tt_static_links)
  if(lib STREQUAL "Threads::Threads")
    continue()
  elseif(TARGET "${lib}" OR lib MATCHES "[$<>:]")
    message(STATUS "tether.pc: not translating link item '${lib}': "
                   "name it in TT_PC_LIBS_PRIVATE or TT_PC_REQUIRES_PRIVATE")
  elseif(lib MATCHES "^/.*/lib([^/]+)\\.(so|a)(\\.[0-9.]+)?$")
    list(APPEND tt_pc_libs "-l${CMAKE_MATCH_1}")
  elseif(lib MATCHES "^-")
    list(APPEND tt_pc_libs "${lib}")
  elseif(lib MATCHES "^[A-Za-z0-9_.+-]+$")
    list(APPEND tt_pc_libs "-l${lib}")
  endif()
endforeach()
list(APPEND tt_pc_libs ${TT_PC_LIBS_PRIVATE})
list(REMOVE_DUPLICATES tt_pc_libs)
string(REPLACE ";" " " TT_PC_LIBS_PRIVATE_LINE "${tt_pc_libs}")
set(tt_pc_requires ${TT_PC_REQUIRES_PRIVATE})
if(tt_pc_requires)
  list(REMOVE_DUPLICATES tt_pc_requires)
  string(REPLACE ";" " " tt_pc_requires "${tt_pc_requires}")
  set(TT_PC_REQUIRES_PRIVATE_LINE "Requires.private: ${tt_pc_requires}\n")
else()
  set(TT_PC_REQUIRES_PRIVATE_LINE "")
endif()

# libdir and includedir relative to ${prefix} unless configured as absolute paths.
foreach(dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${dir}}")
    set(TT_PC_${dir} "${CMAKE_INSTALL_${dir}}")
  else()
    set(TT_PC_${dir} "\${prefix}/${CMAKE_INSTALL_${dir}}")
  endif()
endforeach()

# The prefix is only known at install time (cmake --install --prefix), so configure now with a
# placeholder and fill it in then.
set(TT_PC_PREFIX "@TT_PC_INSTALL_PREFIX@")
configure_file("${CMAKE_CURRENT_LIST_DIR}/tether.pc.in" "${PROJECT_BINARY_DIR}/tether.pc.in" @ONLY)
install(CODE "
  set(TT_PC_INSTALL_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
  configure_file(\"${PROJECT_BINARY_DIR}/tether.pc.in\" \"${PROJECT_BINARY_DIR}/tether.pc\" @ONLY)
" COMPONENT dev)
install(FILES "${PROJECT_BINARY_DIR}/tether.pc" DESTINATION "${TT_INSTALL_PKGCONFIGDIR}"
        COMPONENT dev)
