# Debian packages with CPack: in the build directory, `cpack -G DEB` writes
#   greenfed_<version>_<arch>.deb          the `greenfed` command (component Runtime; with
#                                          -DBUILD_SHARED_LIBS=ON also the shared libraries)
#   libgreenfed-dev_<version>_<arch>.deb   headers, libraries, greenfedConfig.cmake (Development)
# installed under /usr. Runtime dependencies are computed by dpkg-shlibdeps (dpkg-dev) from
# the ELF files, so they name exactly the Debian 12 packages of the libraries greenfed links
# (libtorch1.13, libzmq5, libssl3, zlib1g, libtomlplusplus3, libc6, libstdc++6, ...). The -dev
# package depends on the -dev packages that greenfedConfig.cmake's find_dependency calls need.
set(CPACK_GENERATOR DEB CACHE STRING "CPack generators (cpack -G overrides)")
set(CPACK_PACKAGE_NAME greenfed)
set(CPACK_PACKAGE_VENDOR "greenfed")
set(CPACK_PACKAGE_CONTACT "greenfed maintainers <greenfed@localhost>" CACHE STRING
    "Maintainer field of the .deb packages")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Federated learning with per-node energy and carbon accounting")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_RESOURCE_FILE_LICENSE ${PROJECT_SOURCE_DIR}/LICENSE)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)  # the RelWithDebInfo binary is mostly DWARF

set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL Runtime Development)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)

set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME greenfed)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION science)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SHLIBDEPS ON)
# dpkg-shlibdeps maps libblas.so.3 to "libblas3 | libblas.so.3", which any BLAS satisfies; the
# binary's RUNPATH wants OpenBLAS (pthread build)'s directory (cmake/Blas.cmake), so name the package.
if(GREENFED_BLAS STREQUAL "openblas")
  set(CPACK_DEBIAN_RUNTIME_PACKAGE_DEPENDS "libopenblas0-pthread")
endif()
# The data set of the built-in task; greenfed runs without it (--data-dir, other tasks).
set(CPACK_DEBIAN_RUNTIME_PACKAGE_RECOMMENDS "dataset-fashion-mnist")
set(CPACK_COMPONENT_RUNTIME_DESCRIPTION
    "The greenfed command: coordinator, client, centralized baseline, compare and report.")

set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_NAME libgreenfed-dev)
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_SECTION libdevel)
set(CPACK_COMPONENT_DEVELOPMENT_DESCRIPTION
    "Headers, libraries and CMake package (find_package(greenfed)) to write greenfed tasks and programs.")
if(BUILD_SHARED_LIBS)
  # The shared libraries are in the runtime package; their private dependencies are theirs.
  set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_DEPENDS "greenfed (= ${PROJECT_VERSION})")
else()
  # Static libraries: a consumer links their private dependencies (greenfedConfig.cmake).
  set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_DEPENDS "cppzmq-dev, libzmq3-dev, libssl-dev, libtomlplusplus-dev (>= 3)")
  set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_RECOMMENDS "greenfed (= ${PROJECT_VERSION}), cmake (>= 3.22), g++")
endif()

include(CPack)
