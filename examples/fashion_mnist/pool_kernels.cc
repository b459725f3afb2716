#include "fashion_mnist/pool_kernels.h"

#include <algorithm>
#include <cmath>

namespace greenfed::fmnist {
namespace {

// max_pool2d's own rule, scalar and branchy: the reference, and the path for inputs with a
// NaN (rare: a diverged model), where std::max's NaN handling would differ.
void ForwardExact(const float* x, float* out, uint8_t* where, int64_t rows, int64_t w) {
  const int64_t ow = w / 2;
  for (int64_t row = 0; row < rows; ++row) {
    const float* r0 = x + row * 2 * w;
    const float* r1 = r0 + w;
    for (int64_t j = 0; j < ow; ++j) {
      float m = r0[2 * j];
      uint8_t k = 0;
      const float v1 = r0[2 * j + 1], v2 = r1[2 * j], v3 = r1[2 * j + 1];
      if (v1 > m || std::isnan(v1)) { m = v1; k = 1; }
      if (v2 > m || std::isnan(v2)) { m = v2; k = 2; }
      if (v3 > m || std::isnan(v3)) { m = v3; k = 3; }
      const float r = std::isnan(m) ? m : (m > 0.0f ? m : 0.0f);  // clamp_min(m, 0) keeps NaN
      out[row * ow + j] = r;
      if (where != nullptr) where[row * ow + j] = r <= 0.0f ? kPoolNoGrad : k;
    }
  }
}

// Branch-free: the maximum by std::max, the first window position equal to it by arithmetic
// on comparison results. Equal to ForwardExact when no NaN is present (ties: the first equal
// element is the one the strict ">" scan keeps; -0.0 == 0.0, so a tie of signed zeros picks
// the same position, and the value written is the max, whose sign of zero ReLU makes +0 or
// leaves as the window's first zero: a zero output either way). Returns false when it saw a
// NaN, and the caller reruns ForwardExact.
bool ForwardFast(const float* __restrict x, float* __restrict out, uint8_t* __restrict where, int64_t rows,
                 int64_t w) {
  const int64_t ow = w / 2;
  int nan = 0;
  for (int64_t row = 0; row < rows; ++row) {
    const float* r0 = x + row * 2 * w;
    const float* r1 = r0 + w;
    float* o = out + row * ow;
    if (where != nullptr) {
      uint8_t* q = where + row * ow;
      for (int64_t j = 0; j < ow; ++j) {
        const float a = r0[2 * j], b = r0[2 * j + 1], c = r1[2 * j], d = r1[2 * j + 1];
        const float m = std::max(std::max(a, b), std::max(c, d));
        nan |= static_cast<int>(a != a) | static_cast<int>(b != b) | static_cast<int>(c != c) |
               static_cast<int>(d != d);
        const int not_a = a != m, not_b = b != m, not_c = c != m;
        const int k = not_a * (1 + not_b * (1 + not_c));
        o[j] = m > 0.0f ? m : 0.0f;
        q[j] = static_cast<uint8_t>(m > 0.0f ? k : kPoolNoGrad);
      }
    } else {
      for (int64_t j = 0; j < ow; ++j) {
        const float a = r0[2 * j], b = r0[2 * j + 1], c = r1[2 * j], d = r1[2 * j + 1];
        const float m = std::max(std::max(a, b), std::max(c, d));
        nan |= static_cast<int>(a != a) | static_cast<int>(b != b) | static_cast<int>(c != c) |
               static_cast<int>(d != d);
        o[j] = m > 0.0f ? m : 0.0f;
      }
    }
  }
  return nan == 0;
}

}  // namespace

void PoolRelu2x2Forward(const float* x, float* out, uint8_t* where, int64_t rows, int64_t w) {
  if (!ForwardFast(x, out, where, rows, w)) ForwardExact(x, out, where, rows, w);
}

void PoolRelu2x2Backward(const float* __restrict grad_out, const uint8_t* __restrict where, float* __restrict dx,
                         int64_t rows, int64_t w) {
  const int64_t ow = w / 2;
  for (int64_t row = 0; row < rows; ++row) {
    float* d0 = dx + row * 2 * w;
    float* d1 = d0 + w;
    const float* g = grad_out + row * ow;
    const uint8_t* q = where + row * ow;
    for (int64_t j = 0; j < ow; ++j) {
      const float v = g[j];
      const uint8_t k = q[j];
      d0[2 * j] = k == 0 ? v : 0.0f;
      d0[2 * j + 1] = k == 1 ? v : 0.0f;
      d1[2 * j] = k == 2 ? v : 0.0f;
      d1[2 * j + 1] = k == 3 ? v : 0.0f;
    }
  }
}

}  // namespace greenfed::fmnist
