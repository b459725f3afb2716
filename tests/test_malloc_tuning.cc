// TuneMallocForTensors (greenfed/malloc_tuning.h): a freed multi-megabyte buffer is kept in
// the heap and reused, not unmapped and faulted in again. Checked on glibc's own counters
// (mallinfo2), not on time.
#include <doctest/doctest.h>
#include <malloc.h>

#include <cstdlib>
#include <cstring>

#include "greenfed/malloc_tuning.h"

namespace greenfed {
namespace {

// Under AddressSanitizer malloc is ASan's, which mallopt and mallinfo2 do not describe.
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GREENFED_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define GREENFED_ASAN 1
#endif
#ifndef GREENFED_ASAN
constexpr size_t kBytes = size_t{12} << 20;  // a batch-256 activation of the CNN's conv1

TEST_CASE("malloc tuning: a 12 MiB tensor buffer comes from the heap and stays there when freed") {
  // glibc's static default (what a process gets once anything sets M_TRIM_THRESHOLD alone):
  // the buffer is its own mmap, unmapped on free, so every reuse faults its pages in again.
  REQUIRE(mallopt(M_MMAP_THRESHOLD, 128 * 1024) == 1);
  {
    const size_t mapped_before = mallinfo2().hblkhd;
    void* p = std::malloc(kBytes);
    REQUIRE(p != nullptr);
    std::memset(p, 1, kBytes);
    CHECK(mallinfo2().hblkhd >= mapped_before + kBytes);
    std::free(p);
    CHECK(mallinfo2().hblkhd == mapped_before);
  }
  REQUIRE(TuneMallocForTensors());
  {
    const size_t mapped_before = mallinfo2().hblkhd;
    void* p = std::malloc(kBytes);
    REQUIRE(p != nullptr);
    std::memset(p, 1, kBytes);
    CHECK(mallinfo2().hblkhd == mapped_before);  // not an mmap of its own
    std::free(p);
    CHECK(mallinfo2().fordblks >= kBytes);       // kept in the heap for the next batch
    void* q = std::malloc(kBytes);
    CHECK(q == p);                               // ... and reused by it
    std::free(q);
  }
}
#endif  // GREENFED_ASAN

}  // namespace
}  // namespace greenfed
