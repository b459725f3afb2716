// Internal to greenfed::coordinator: the element access and the seed mix shared by
// FedAvg, the strategies and the round machine, defined once.
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <cstring>

#include "greenfed/tensor.h"

namespace greenfed::detail {

// SplitMix64: a fixed, portable mix, so that sampling and seeds are identical on
// every platform (std::*_distribution outputs are implementation-defined).
inline uint64_t Mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

inline bool IsFloat(DType d) { return d == DType::kFloat32 || d == DType::kFloat64; }

// Element i of a float32 or float64 blob, as double.
inline double At(const TensorBlob& b, size_t i) {
  if (b.dtype == DType::kFloat32) {
    float v;
    std::memcpy(&v, b.data.data() + i * 4, 4);
    return v;
  }
  double v;
  std::memcpy(&v, b.data.data() + i * 8, 8);
  return v;
}

inline void Put(TensorBlob* b, size_t i, double v) {
  if (b->dtype == DType::kFloat32) {
    const float f = static_cast<float>(v);
    std::memcpy(b->data.data() + i * 4, &f, 4);
  } else {
    std::memcpy(b->data.data() + i * 8, &v, 8);
  }
}

}  // namespace greenfed::detail
