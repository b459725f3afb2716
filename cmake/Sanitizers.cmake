# Sanitizers and fuzzing instrumentation as an INTERFACE target, like greenfed::warnings.
#
#   -DGREENFED_SANITIZE="address,undefined"  adds -fsanitize=<list> -fno-omit-frame-pointer
#                                            (and -fno-sanitize-recover=undefined when the list
#                                            has "undefined", so that a UBSan finding fails the
#                                            process) to compiling AND linking every greenfed target.
#   -DGREENFED_BUILD_FUZZ=ON                 (clang only) also adds -fsanitize=fuzzer-no-link, the
#                                            coverage instrumentation libFuzzer needs, to every
#                                            greenfed target; tests/fuzz/ links -fsanitize=fuzzer.
#
# greenfed::warnings links greenfed::sanitize, so every target that already takes the warning
# flags gets these too; nothing else has to name it. Third-party libraries (libzmq, OpenSSL,
# libtorch) stay uninstrumented: ASan still checks every access our code makes.
set(GREENFED_SANITIZE "" CACHE STRING
    "Comma-separated -fsanitize= list for greenfed's own targets, e.g. address,undefined; empty: off")
option(GREENFED_BUILD_FUZZ "Build the libFuzzer targets in tests/fuzz (needs clang)" OFF)

add_library(greenfed_sanitize INTERFACE)
add_library(greenfed::sanitize ALIAS greenfed_sanitize)

if(GREENFED_BUILD_FUZZ AND NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "GREENFED_BUILD_FUZZ=ON needs clang (libFuzzer), got ${CMAKE_CXX_COMPILER_ID}; "
                      "configure with CC=clang CXX=clang++")
endif()

set(_greenfed_san_flags "")
if(NOT GREENFED_SANITIZE STREQUAL "")
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "^(GNU|Clang)$")
    message(FATAL_ERROR "GREENFED_SANITIZE needs GCC or Clang, got ${CMAKE_CXX_COMPILER_ID}")
  endif()
  list(APPEND _greenfed_san_flags -fsanitize=${GREENFED_SANITIZE} -fno-omit-frame-pointer)
  if(GREENFED_SANITIZE MATCHES "undefined")
    list(APPEND _greenfed_san_flags -fno-sanitize-recover=undefined)
  endif()
endif()
if(GREENFED_BUILD_FUZZ)
  list(APPEND _greenfed_san_flags -fsanitize=fuzzer-no-link)
endif()
if(_greenfed_san_flags)
  message(STATUS "greenfed: instrumenting own targets with ${_greenfed_san_flags}")
  target_compile_options(greenfed_sanitize INTERFACE ${_greenfed_san_flags})
  target_link_options(greenfed_sanitize INTERFACE ${_greenfed_san_flags})
endif()
unset(_greenfed_san_flags)
