// 2x2 max pooling (stride 2) fused with ReLU, forward and backward, on raw float planes.
//
// Why: libtorch 1.13's CPU max_pool2d_with_indices runs a generic kernel whose comparisons
// are data-dependent branches. On conv outputs they mispredict: pooling one batch of 32
// conv1 outputs (32x16x28x28) took ~1.9 ms against ~0.18 ms here, more than conv1 itself,
// and pooling was the largest part of the CNN's forward pass (docs/benchmarks.md,
// "Pooling"). These kernels do the one case the CNN needs without branches, so the compiler
// vectorises them (the file is built with -O3).
//
// Contract, for `rows` row pairs of width `w` (w even; rows = N*C*H/2 for an NCHW tensor with
// H even; contiguous input):
//   out[r][j]   = relu(max of the 2x2 window (2r', 2j) of the input), exactly as
//                 torch::relu(torch::max_pool2d(x, 2)): the first maximum in row-major
//                 window order wins, a NaN wins (and stays NaN through the ReLU);
//   where[r][j] = the winner's window position 0..3 (row-major), or kPoolNoGrad where
//                 relu cut the output (output <= 0), as relu's backward passes gradient
//                 only where the output is not <= 0 (so NaN outputs pass it).
// Backward writes every element of dx (no zero fill needed): dx at the winner gets the
// output gradient, every other element 0. This is max_pool2d's backward followed by relu's,
// bit for bit, because 2x2/stride-2 windows do not overlap.
// Thread safety: pure functions of their arguments.
#pragma once

#include <cstdint>

namespace greenfed::fmnist {

inline constexpr uint8_t kPoolNoGrad = 4;

// `where` may be null (inference: no indices kept).
void PoolRelu2x2Forward(const float* x, float* out, uint8_t* where, int64_t rows, int64_t w);
void PoolRelu2x2Backward(const float* grad_out, const uint8_t* where, float* dx, int64_t rows, int64_t w);

}  // namespace greenfed::fmnist
