// The fused 2x2 max-pool + ReLU kernels (examples/fashion_mnist/pool_kernels.h) against a
// reference written from max_pool2d's CPU rule and relu's backward, without libtorch. The
// libtorch comparison itself is in test_task.cc ("PoolRelu2x2 ...").
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "fashion_mnist/pool_kernels.h"

namespace greenfed::fmnist {
namespace {

struct Pooled {
  std::vector<float> out;
  std::vector<uint8_t> where;
};

// max_pool2d (CPU): scan the window in row-major order, keep v when v > max or v is NaN.
// relu: clamp_min(v, 0), NaN stays NaN; its backward passes the gradient unless output <= 0.
Pooled Reference(const std::vector<float>& x, int64_t rows, int64_t w) {
  Pooled p;
  const int64_t ow = w / 2;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < ow; ++j) {
      const float v[4] = {x[r * 2 * w + 2 * j], x[r * 2 * w + 2 * j + 1], x[(r * 2 + 1) * w + 2 * j],
                          x[(r * 2 + 1) * w + 2 * j + 1]};
      float m = v[0];
      uint8_t k = 0;
      for (uint8_t i = 1; i < 4; ++i) {
        if (v[i] > m || std::isnan(v[i])) {
          m = v[i];
          k = i;
        }
      }
      const float out = std::isnan(m) ? m : std::max(m, 0.0f);
      p.out.push_back(out);
      p.where.push_back(out <= 0.0f ? kPoolNoGrad : k);
    }
  }
  return p;
}

bool SameFloat(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return a == b;  // +0 and -0 are both "zero out"
}

void CheckAgainstReference(const std::vector<float>& x, int64_t rows, int64_t w) {
  const Pooled want = Reference(x, rows, w);
  std::vector<float> out(want.out.size(), -1);
  std::vector<uint8_t> where(want.where.size(), 99);
  PoolRelu2x2Forward(x.data(), out.data(), where.data(), rows, w);
  std::vector<float> out_only(want.out.size(), -1);
  PoolRelu2x2Forward(x.data(), out_only.data(), nullptr, rows, w);
  for (size_t i = 0; i < want.out.size(); ++i) {
    INFO("output " << i);
    CHECK(SameFloat(out[i], want.out[i]));
    CHECK(SameFloat(out_only[i], want.out[i]));
    CHECK(int(where[i]) == int(want.where[i]));
  }
  // Backward: every input element written, the winner gets the gradient, the rest 0.
  std::vector<float> grad(want.out.size());
  for (size_t i = 0; i < grad.size(); ++i) grad[i] = 0.5f + static_cast<float>(i);
  std::vector<float> dx(x.size(), std::numeric_limits<float>::quiet_NaN());
  PoolRelu2x2Backward(grad.data(), where.data(), dx.data(), rows, w);
  const int64_t ow = w / 2;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < ow; ++j) {
      const size_t o = static_cast<size_t>(r * ow + j);
      const size_t at[4] = {static_cast<size_t>(r * 2 * w + 2 * j), static_cast<size_t>(r * 2 * w + 2 * j + 1),
                            static_cast<size_t>((r * 2 + 1) * w + 2 * j),
                            static_cast<size_t>((r * 2 + 1) * w + 2 * j + 1)};
      for (uint8_t k = 0; k < 4; ++k) {
        INFO("window " << o << " position " << int(k));
        CHECK(dx[at[k]] == (want.where[o] == k ? grad[o] : 0.0f));
      }
    }
  }
}

TEST_CASE("pool kernels: random values give max_pool2d + relu's outputs, positions and gradients") {
  std::mt19937 gen(7);
  std::normal_distribution<float> normal;
  for (const auto& [rows, w] : std::vector<std::pair<int64_t, int64_t>>{{1, 2}, {14 * 16, 28}, {7 * 32, 14}, {3, 30}}) {
    std::vector<float> x(static_cast<size_t>(rows * 2 * w));
    for (float& v : x) v = normal(gen);
    CheckAgainstReference(x, rows, w);
  }
}

TEST_CASE("pool kernels: ties go to the first position, non-positive windows pass no gradient") {
  // Windows (row-major): all equal positive; all equal negative; all zero; -0 and +0 mixed;
  // a tie of the max in positions 1 and 3; a tie in 2 and 3; +inf; -inf everywhere.
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<std::vector<float>> windows = {
      {0.5f, 0.5f, 0.5f, 0.5f}, {-1, -1, -1, -1}, {0, 0, 0, 0}, {-0.0f, 0.0f, -0.0f, 0.0f},
      {1, 3, 2, 3},             {-5, -6, 2, 2},   {1, inf, 2, inf}, {-inf, -inf, -inf, -inf}};
  for (const auto& win : windows) {
    // One window: row pair of width 2.
    const std::vector<float> x = {win[0], win[1], win[2], win[3]};
    CheckAgainstReference(x, 1, 2);
  }
}

TEST_CASE("pool kernels: a NaN anywhere takes the exact path: NaN wins its window and passes its gradient") {
  std::mt19937 gen(3);
  std::normal_distribution<float> normal;
  std::vector<float> x(static_cast<size_t>(4 * 2 * 8));
  for (float& v : x) v = normal(gen);
  x[5] = std::numeric_limits<float>::quiet_NaN();   // row pair 0, upper row, window 2
  x[8 * 3 + 6] = std::numeric_limits<float>::quiet_NaN();  // row pair 1, lower row, window 3
  CheckAgainstReference(x, 4, 8);
  // A NaN that is not the first element of its window still wins it.
  const Pooled p = Reference(x, 4, 8);
  CHECK(std::isnan(p.out[2]));
  CHECK(int(p.where[2]) == 1);
}

}  // namespace
}  // namespace greenfed::fmnist
