# greenfed::blas — which BLAS/LAPACK libtorch's sgemm_ & co bind to in the executables that
# load libtorch (linked through greenfed::fmnist, a static library, so every such executable
# gets it: greenfed, the task tests, bench_train, bench_flops).
#
# Debian's libtorch_cpu.so NEEDs libblas.so.3 and liblapack.so.3, which resolve through the
# machine-wide alternatives (the reference BLAS unless someone switched them). Instead of
# switching the alternative, the executable itself NEEDs the chosen libblas.so.3 and
# liblapack.so.3, linked by full path, and carries their directory in its RUNPATH. The loader
# maps an executable's own NEEDED entries before those of its libraries, so when libtorch_cpu
# asks for libblas.so.3 the chosen one is already loaded under that soname and is reused: one
# BLAS in the process, whatever the alternative says. tests/test_task.cc checks the binding
# (the file sgemm_ resolves to, that OpenBLAS is its pthread build, and that it runs one thread).
#
# GREENFED_BLAS:
#   openblas (default)        OpenBLAS's pthread build (libopenblas0-pthread), capped to ONE
#                             thread: the fashion_mnist task calls openblas_set_num_threads(1)
#                             in Prepare and `greenfed` exports OPENBLAS_NUM_THREADS=1 to the
#                             processes it starts, so no BLAS thread exists to spin in
#                             sched_yield. A Fit takes 0.56x the CPU-s of the reference BLAS
#                             (docs/benchmarks.md). Not the serial build (libopenblas0-serial):
#                             Debian builds it without USE_LOCKING, and concurrent sgemm_ calls
#                             from several threads of one process (greenfed simulate's worker
#                             pool) returned wrong products; the pthread build locks.
#   reference                 Debian's reference BLAS/LAPACK (libblas3, liblapack3), pinned the
#                             same way: the numerics of the results committed before 2026-12-01.
#   system                    link nothing: whatever libblas.so.3 the alternatives resolve to.
set(GREENFED_BLAS "openblas" CACHE STRING
    "BLAS that libtorch binds to in greenfed's executables: openblas, reference or system")
set_property(CACHE GREENFED_BLAS PROPERTY STRINGS openblas reference system)

add_library(greenfed_blas INTERFACE)
add_library(greenfed::blas ALIAS greenfed_blas)

set(_greenfed_libdir /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE})
if(GREENFED_BLAS STREQUAL "openblas")
  set(_greenfed_blas_dir ${_greenfed_libdir}/openblas-pthread)
  set(_greenfed_lapack_dir ${_greenfed_libdir}/openblas-pthread)
  set(_greenfed_blas_pkg libopenblas0-pthread)
elseif(GREENFED_BLAS STREQUAL "reference")
  set(_greenfed_blas_dir ${_greenfed_libdir}/blas)
  set(_greenfed_lapack_dir ${_greenfed_libdir}/lapack)
  set(_greenfed_blas_pkg "libblas3 and liblapack3")
elseif(NOT GREENFED_BLAS STREQUAL "system")
  message(FATAL_ERROR "GREENFED_BLAS='${GREENFED_BLAS}': expected openblas, reference or system")
endif()

# Directories the executables' RUNPATH must hold (apps/ and cmake/Install.cmake add them to the
# installed binary; in the build tree CMake adds them itself, as for any library by full path).
set(GREENFED_BLAS_RUNPATH "")
if(NOT GREENFED_BLAS STREQUAL "system")
  # The soname file itself: the unversioned libblas.so link is the -dev package's and, in the
  # top-level directory, an alternative of its own.
  find_library(GREENFED_BLAS_LIBRARY NAMES libblas.so.3
               PATHS ${_greenfed_blas_dir} NO_DEFAULT_PATH NO_CACHE)
  find_library(GREENFED_LAPACK_LIBRARY NAMES liblapack.so.3
               PATHS ${_greenfed_lapack_dir} NO_DEFAULT_PATH NO_CACHE)
  if(NOT GREENFED_BLAS_LIBRARY OR NOT GREENFED_LAPACK_LIBRARY)
    message(FATAL_ERROR "GREENFED_BLAS=${GREENFED_BLAS}: no libblas.so.3/liblapack.so.3 in "
            "${_greenfed_blas_dir} and ${_greenfed_lapack_dir}; install ${_greenfed_blas_pkg} "
            "(scripts/install-deps.sh), or configure with -DGREENFED_BLAS=system")
  endif()
  # The executables call no BLAS symbol themselves, and TorchConfig.cmake leaves --as-needed on
  # after libtorch's own entries, so the two are wrapped in --no-as-needed or the linker drops them.
  target_link_libraries(greenfed_blas INTERFACE
    "-Wl,--push-state,--no-as-needed" ${GREENFED_BLAS_LIBRARY} ${GREENFED_LAPACK_LIBRARY} "-Wl,--pop-state")
  list(APPEND GREENFED_BLAS_RUNPATH ${_greenfed_blas_dir} ${_greenfed_lapack_dir})
  list(REMOVE_DUPLICATES GREENFED_BLAS_RUNPATH)
  # For the binding test: the directory sgemm_ must come from.
  target_compile_definitions(greenfed_blas INTERFACE GREENFED_BLAS_DIR="${_greenfed_blas_dir}")
endif()
target_compile_definitions(greenfed_blas INTERFACE GREENFED_BLAS_NAME="${GREENFED_BLAS}")
message(STATUS "greenfed: libtorch's BLAS is ${GREENFED_BLAS} ${GREENFED_BLAS_LIBRARY}")
unset(_greenfed_libdir)
unset(_greenfed_blas_dir)
unset(_greenfed_lapack_dir)
unset(_greenfed_blas_pkg)
