// The libtorch side of model.h: what a Net holds, and how to wrap a module as one.
// Include only from translation units that already pay for torch/torch.h
// (model.cc, task.cc, bench/, tests/test_task.cc).
//
// Contract: Impl::params[i] is the tensor behind Impl::specs[i]; every parameter
// is a contiguous float32 CPU tensor, so blobs convert with one memcpy each.
// Thread safety: as Net.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <vector>

#include "fashion_mnist/model.h"

namespace greenfed::fmnist {

struct Net::Impl {
  std::shared_ptr<torch::nn::Module> module;                 // owns the weights; train()/eval()
  std::function<torch::Tensor(const torch::Tensor&)> forward;  // [N,1,28,28] -> [N,10] logits
  std::vector<torch::Tensor> params;                         // named_parameters() order
  std::vector<TensorSpec> specs;                             // same order
};

// torch::relu(torch::max_pool2d(x, 2)), forward and backward bit for bit, through the
// branch-free kernels of pool_kernels.h for 4-d float32 CPU inputs with even H and W (the
// libtorch ops otherwise). docs/benchmarks.md, "Pooling", has the measurement.
torch::Tensor PoolRelu2x2(const torch::Tensor& x);

// Wraps `module` (whose forward is `forward`) as a Net, for use in a NetFactory.
// InvalidArgument if a parameter is not a contiguous float32 CPU tensor.
StatusOr<std::unique_ptr<Net>> MakeNet(std::shared_ptr<torch::nn::Module> module,
                             std::function<torch::Tensor(const torch::Tensor&)> forward);

}  // namespace greenfed::fmnist
