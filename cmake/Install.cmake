# Install and export: `cmake --install BUILD [--prefix P]` puts in place
#   bin/greenfed                                       (component Runtime)
#   include/greenfed/...                               (component Development)
#   lib/<multiarch>/libgreenfed_{common,coordinator,client,sim,report}.{a|so}
#   lib/<multiarch>/cmake/greenfed/greenfed{Config,ConfigVersion,Targets*}.cmake
# so that another project can `find_package(greenfed 0.1 REQUIRED)` and link
# greenfed::common, greenfed::coordinator, greenfed::client, greenfed::sim, greenfed::report
# (examples/custom_task and tests/package_sim are such projects; tests/package_test.sh builds both).
#
# Static by default: one self-contained `greenfed` binary (what the Docker image and the
# tests use) and no ABI promise to keep. -DBUILD_SHARED_LIBS=ON builds shared libraries
# with VERSION/SOVERSION instead; the config file then needs only Threads, since a shared
# library's private dependencies stay its own business.
#
# Not exported: greenfed::warnings and greenfed::sanitize (build flags, BUILD_INTERFACE only,
# so they never reach a consumer) and the Fashion-MNIST task libraries (libtorch; they are
# part of the `greenfed` binary: docs/writing-a-task.md says why).
include(CMakePackageConfigHelpers)

set(GREENFED_EXPORTED_LIBRARIES greenfed_common greenfed_coordinator greenfed_client greenfed_sim greenfed_report)
set(GREENFED_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/greenfed CACHE STRING
    "Where greenfedConfig.cmake is installed, relative to the prefix")
if(BUILD_SHARED_LIBS)
  set(GREENFED_STATIC_LIBRARIES OFF)
else()
  set(GREENFED_STATIC_LIBRARIES ON)
endif()

# The ABI may change with every 0.x release, so while the major version is 0 the SONAME
# carries major.minor (libgreenfed_common.so.0.1) and find_package(greenfed 0.1) accepts
# 0.1.x only; from 1.0 on, the major version alone.
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(GREENFED_SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
  set(GREENFED_VERSION_COMPATIBILITY SameMinorVersion)
else()
  set(GREENFED_SOVERSION ${PROJECT_VERSION_MAJOR})
  set(GREENFED_VERSION_COMPATIBILITY SameMajorVersion)
endif()

foreach(target IN LISTS GREENFED_EXPORTED_LIBRARIES)
  string(REGEX REPLACE "^greenfed_" "" export_name ${target})
  set_target_properties(${target} PROPERTIES
    EXPORT_NAME ${export_name}
    VERSION ${PROJECT_VERSION}
    SOVERSION ${GREENFED_SOVERSION})
endforeach()
if(BUILD_SHARED_LIBS)
  # The installed command finds the installed libraries wherever the prefix is.
  file(RELATIVE_PATH _greenfed_bin_to_lib
       ${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR} ${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR})
  set_property(TARGET greenfed APPEND PROPERTY INSTALL_RPATH "$ORIGIN/${_greenfed_bin_to_lib}")
  unset(_greenfed_bin_to_lib)
endif()

install(TARGETS ${GREENFED_EXPORTED_LIBRARIES}
  EXPORT greenfedTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT Development
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT Runtime NAMELINK_COMPONENT Development
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT Runtime)
install(TARGETS greenfed RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT Runtime)

# Public headers: each library's include/ tree (greenfed/*.h, greenfed/<library>/*.h).
foreach(dir common client coordinator sim report)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${dir}/include/
    DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT Development
    FILES_MATCHING PATTERN "*.h")
endforeach()

install(EXPORT greenfedTargets
  NAMESPACE greenfed::
  FILE greenfedTargets.cmake
  DESTINATION ${GREENFED_INSTALL_CMAKEDIR}
  COMPONENT Development)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/greenfedConfig.cmake.in
  ${PROJECT_BINARY_DIR}/greenfedConfig.cmake
  INSTALL_DESTINATION ${GREENFED_INSTALL_CMAKEDIR}
  PATH_VARS CMAKE_INSTALL_BINDIR)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/greenfedConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY ${GREENFED_VERSION_COMPATIBILITY})
install(FILES ${PROJECT_BINARY_DIR}/greenfedConfig.cmake ${PROJECT_BINARY_DIR}/greenfedConfigVersion.cmake
  DESTINATION ${GREENFED_INSTALL_CMAKEDIR}
  COMPONENT Development)
install(FILES ${PROJECT_SOURCE_DIR}/LICENSE ${PROJECT_SOURCE_DIR}/README.md
  DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT Runtime OPTIONAL)

# `cmake --install --strip` and CPack (CPACK_STRIP_FILES) strip executables and shared
# libraries; do the same for the static archives' debug sections (RelWithDebInfo: 72 MB of
# archives, mostly DWARF), keeping their symbols so that they still link.
if(NOT BUILD_SHARED_LIBS)
  foreach(target IN LISTS GREENFED_EXPORTED_LIBRARIES)
    install(CODE "
      if(CMAKE_INSTALL_DO_STRIP)
        execute_process(COMMAND \"${CMAKE_STRIP}\" --strip-debug
          \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/$<TARGET_FILE_NAME:${target}>\"
          COMMAND_ERROR_IS_FATAL ANY)
      endif()" COMPONENT Development)
  endforeach()
endif()
