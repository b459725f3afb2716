// Internal to greenfed::coordinator: the element access and the seed mix shared by
// FedAvg, the strategies and the round machine, defined once.
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

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

// The float elements of a parameter set, flattened in tensor order: the space in
// which every strategy below does its arithmetic.
inline size_t FlatSize(const Parameters& p) {
  size_t n = 0;
  for (const auto& t : p) {
    if (IsFloat(t.dtype)) n += static_cast<size_t>(t.NumElements());
  }
  return n;
}

// update - global (or the update itself when it is a delta), flattened.
inline std::vector<double> FlatDelta(const Parameters& update, bool is_delta, const Parameters& global) {
  std::vector<double> d;
  d.reserve(FlatSize(global));
  for (size_t t = 0; t < global.size(); ++t) {
    if (!IsFloat(global[t].dtype)) continue;
    const auto n = static_cast<size_t>(global[t].NumElements());
    for (size_t i = 0; i < n; ++i) d.push_back(is_delta ? At(update[t], i) : At(update[t], i) - At(global[t], i));
  }
  return d;
}

// global + delta; non-float tensors stay as in global. Checks the result.
inline StatusOr<Parameters> ApplyDelta(const Parameters& global, const std::vector<double>& delta, const char* who) {
  Parameters out = global;
  size_t k = 0;
  for (auto& t : out) {
    if (!IsFloat(t.dtype)) continue;
    const auto n = static_cast<size_t>(t.NumElements());
    for (size_t i = 0; i < n; ++i) Put(&t, i, At(t, i) + delta[k++]);
  }
  for (const auto& p : out) GREENFED_RETURN_IF_ERROR(ValidateBlob(p).WithContext(std::string(who) + " result"));
  return out;
}

}  // namespace greenfed::detail
