// Models of the digits task, in plain C++ (no libtorch, so a digits client stays
// small): "softmax", multinomial logistic regression 64 -> 10; and "mlp", one hidden
// layer 64 -> 32 (ReLU) -> 10. Both end in a softmax with cross-entropy loss.
//
// Contract: parameters are float32 TensorBlobs, named and shaped like PyTorch's
// nn.Linear ("fc.weight" [10, 64], "fc.bias" [10]; or "fc1.weight" [32, 64],
// "fc1.bias" [32], "fc2.weight" [10, 32], "fc2.bias" [10]). Initialize is
// deterministic for a seed (PyTorch's default: uniform in +-1/sqrt(fan_in), drawn
// from partition.h DeterministicRng). Inputs are the 64 pixels scaled to [0, 1].
// LossAndGrad and Evaluate are pure functions of the weights and the batch; they
// compute in float with double accumulators for the loss.
// Thread safety: a DigitsModel is a value; const methods may run concurrently.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "greenfed/status.h"
#include "greenfed/tensor.h"

namespace greenfed::digits {

constexpr uint32_t kMlpHidden = 32;  // hidden units of "mlp"

// Weights as flat float vectors, one per tensor, in Specs() order.
using Weights = std::vector<std::vector<float>>;

class DigitsModel {
 public:
  // "softmax" or "mlp"; anything else is InvalidArgument naming both.
  static StatusOr<DigitsModel> Create(const std::string& name);
  static std::vector<std::string> Names();  // {"mlp", "softmax"}

  const std::string& name() const { return name_; }
  std::vector<TensorSpec> Specs() const;
  void Initialize(uint64_t seed);
  // Loads `params` after ValidateAgainst(Specs()) (finite float32 of the right shapes).
  Status SetParameters(const Parameters& params);
  Parameters GetParameters() const;
  Weights& weights() { return weights_; }
  const Weights& weights() const { return weights_; }
  // Zeroed weights of the same layout (gradient and momentum buffers).
  Weights ZerosLike() const;

  // Mean cross-entropy over the n examples at x (n x 64, row-major) with labels y;
  // adds the gradient of that mean to *grads (layout of weights(), not cleared).
  double LossAndGrad(const float* x, const uint8_t* y, size_t n, Weights* grads) const;
  // Sum of cross-entropy and number of correct top-1 predictions over n examples.
  void Evaluate(const float* x, const uint8_t* y, size_t n, double* loss_sum, uint64_t* correct) const;

 private:
  DigitsModel(std::string name, uint32_t hidden);
  // Logits of one example; `hidden_out` gets the post-ReLU activations (mlp only).
  void Forward(const float* x, float* hidden_out, float* logits) const;

  std::string name_;
  uint32_t hidden_ = 0;  // 0 = softmax regression
  Weights weights_;
};

}  // namespace greenfed::digits
