# Warnings as an INTERFACE target: every greenfed target links greenfed::warnings,
# so the flags live in one place and never leak to consumers of installed targets.
add_library(greenfed_warnings INTERFACE)
add_library(greenfed::warnings ALIAS greenfed_warnings)
target_compile_options(greenfed_warnings INTERFACE
  $<$<CXX_COMPILER_ID:GNU,Clang>:-Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
    -Wold-style-cast -Wcast-align -Woverloaded-virtual -Wnull-dereference
    -Wimplicit-fallthrough>
  $<$<AND:$<CXX_COMPILER_ID:GNU,Clang>,$<BOOL:${GREENFED_WARNINGS_AS_ERRORS}>>:-Werror>)
# Sanitizer/fuzzer instrumentation rides along (empty unless GREENFED_SANITIZE or
# GREENFED_BUILD_FUZZ is set; cmake/Sanitizers.cmake).
target_link_libraries(greenfed_warnings INTERFACE greenfed::sanitize)
