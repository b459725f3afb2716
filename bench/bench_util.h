// What the benchmarks share: process CPU time, an optimizer barrier, and the example
// CNN's tensor shapes (examples/fashion_mnist/model.cc, 105,866 float32 parameters in
// 8 tensors) with a seeded random model of those shapes.
//
// Contract: header-only, no state. Thread-safety: CpuSeconds and Escape are safe from
// any thread; RandomCnnModel uses only the generator it is given.
#pragma once

#include <cstdint>
#include <ctime>
#include <random>
#include <vector>

#include "greenfed/tensor.h"

namespace greenfed::bench {

// CPU seconds this process has used, all threads (the build machines are shared, so
// wall time would count other jobs).
inline double CpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Keeps the optimizer from dropping work whose result is otherwise unused.
inline void Escape(const void* p) { __asm__ __volatile__("" : : "g"(p) : "memory"); }

struct TensorShape {
  const char* name;
  std::vector<int64_t> dims;
};

// The example CNN's tensors, in its parameter order.
inline std::vector<TensorShape> CnnShapes() {
  return {{"conv1.weight", {16, 1, 3, 3}}, {"conv1.bias", {16}}, {"conv2.weight", {32, 16, 3, 3}}, {"conv2.bias", {32}},
          {"fc1.weight", {64, 1568}},      {"fc1.bias", {64}},   {"fc2.weight", {10, 64}},         {"fc2.bias", {10}}};
}

// A model of CnnShapes() with values drawn from N(0, 0.1) by `rng`.
inline Parameters RandomCnnModel(std::mt19937* rng) {
  std::normal_distribution<float> d(0.f, 0.1f);
  Parameters p;
  for (const auto& s : CnnShapes()) {
    std::vector<float> v(static_cast<size_t>(NumElements(s.dims)));
    for (auto& x : v) x = d(*rng);
    p.push_back(MakeFloatBlob(s.name, s.dims, v));
  }
  return p;
}

}  // namespace greenfed::bench
