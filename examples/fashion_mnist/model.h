// Models of the Fashion-MNIST task behind a name -> factory registry, and the
// conversion of their parameters to and from TensorBlobs.
//
// Contract: a Net exports its parameters as float32 blobs in one fixed order
// (libtorch's named_parameters() order, names like "conv1.weight"); Specs() lists
// that order and SetParameters accepts exactly it. Built-in models (input
// [N, 1, 28, 28] float, output [N, 10] logits):
//   "cnn": conv 1->16 3x3 pad 1, ReLU, maxpool 2; conv 16->32 3x3 pad 1, ReLU,
//          maxpool 2; flatten; fc 1568->64, ReLU; fc 64->10   (105,866 parameters)
//   "mlp": flatten; fc 784->128, ReLU; fc 128->10              (101,770 parameters)
// This header is free of libtorch: Net is opaque here, and model_torch.h defines
// Net::Impl (the module) for the translation units that include torch.
// Thread safety: a Net is used by one thread at a time. ModelRegistry is immutable
// after registration; Create seeds libtorch's process-wide generator.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "greenfed/status.h"
#include "greenfed/tensor.h"

namespace greenfed::fmnist {

class Net {
 public:
  struct Impl;  // model_torch.h
  explicit Net(std::unique_ptr<Impl> impl);
  ~Net();
  Net(Net&&) noexcept;
  Net& operator=(Net&&) noexcept;
  Net(const Net&) = delete;
  Net& operator=(const Net&) = delete;

  // Names, dtypes (always float32) and shapes of the parameters, in export order.
  const std::vector<TensorSpec>& Specs() const;
  // Total number of scalar parameters.
  int64_t NumParameters() const;
  // Copies the current weights out, in Specs() order.
  StatusOr<Parameters> GetParameters() const;
  // Checks `params` with ValidateAgainst(Specs()) (names, shapes, finite values)
  // and copies them in; on error the weights are unchanged.
  Status SetParameters(const Parameters& params);

  Impl& impl() { return *impl_; }
  const Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// Builds an untrained model. libtorch may throw inside it; ModelRegistry::Create
// turns exceptions into a Status.
using NetFactory = std::function<StatusOr<std::unique_ptr<Net>>()>;

class ModelRegistry {
 public:
  Status Register(const std::string& name, NetFactory factory);
  // Builds model `name` after torch::manual_seed(init_seed), so its initial weights
  // are a function of init_seed alone (for a given libtorch build).
  StatusOr<std::unique_ptr<Net>> Create(const std::string& name, uint64_t init_seed) const;
  bool Contains(const std::string& name) const { return factories_.count(name) != 0; }
  std::vector<std::string> Names() const;

 private:
  std::map<std::string, NetFactory> factories_;
};

// Registers "cnn" and "mlp".
Status RegisterBuiltinModels(ModelRegistry* registry);

}  // namespace greenfed::fmnist
