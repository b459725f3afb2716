// TuneMallocForTensors: glibc malloc settings for a process that allocates and frees
// multi-megabyte buffers many times a second (tensors of a training step, parameter
// messages).
//
// Why: with glibc's defaults a buffer above the mmap threshold (128 KiB until the dynamic
// rule raises it) is mmap'ed and munmap'ed on every allocation, and heap tops above the
// trim threshold go back to the kernel; every reuse then faults its pages in again. On this
// VM that made encode+decode 140x a memcpy (bench/bench_codec, ~4x with these settings),
// a batch-32 conv1 forward 1.7 ms against 0.17 ms, and the central evaluation of 10,000
// images 1.0 CPU-s against 0.4, most of it in the kernel (docs/benchmarks.md, "Pooling and
// the allocator").
//
// Contract: sets M_MMAP_THRESHOLD to kMallocMmapThresholdBytes (glibc's largest allowed value
// on 64-bit) and M_TRIM_THRESHOLD to kMallocTrimThresholdBytes; returns false if glibc
// refused either. Memory stays bounded by the peak: freed chunks are reused, not returned.
// Idempotent. Thread safety: call early in main, before worker threads start.
#pragma once

#include <cstddef>

namespace greenfed {

inline constexpr size_t kMallocMmapThresholdBytes = size_t{32} << 20;
inline constexpr size_t kMallocTrimThresholdBytes = size_t{256} << 20;

[[nodiscard]] bool TuneMallocForTensors();

}  // namespace greenfed
