// FedAvg (McMahan et al. 2017), streamed: each result is folded into a running sum
// as it arrives, so memory stays at two copies of the model whatever the number of
// clients.
//   w_next = w_global + sum_k n_k (w_k - w_global) / sum_k n_k
//          = sum_k n_k w_k / sum_k n_k
// Updates may be weights or deltas (w_k - w_global); both land in the same sum.
// Sums are kept in double so that the order of arrival barely matters.
//
// Thread safety: not thread-safe; one accumulator per round, owned by the round
// state machine.
#pragma once

#include <cstdint>
#include <vector>

#include "greenfed/status.h"
#include "greenfed/tensor.h"

namespace greenfed {

// Largest |value| accepted in an update (weights or delta). Finite but huge values
// (FLT_MAX) pass every other check, yet their mean overflows float32 within a few
// rounds and ends the run for everyone; no SGD step on a sane model comes near 1e9.
constexpr double kMaxAbsUpdateValue = 1e9;

class FedAvgAccumulator {
 public:
  // Starts a round from `global`. Float tensors (f32, f64) are averaged; i64
  // tensors are taken from `global` unchanged.
  Status Reset(const Parameters& global);
  // Validates `update` against the global specs (names, dtypes, shapes, finite,
  // |value| <= kMaxAbsUpdateValue) and folds it in. On error nothing is added.
  Status Add(const Parameters& update, bool is_delta, uint64_t num_examples);
  uint64_t total_examples() const { return total_examples_; }
  uint32_t num_updates() const { return num_updates_; }
  // The averaged parameters. FailedPrecondition when nothing was added.
  StatusOr<Parameters> Result() const;

 private:
  Parameters global_;
  std::vector<TensorSpec> specs_;
  std::vector<std::vector<double>> sum_;  // sum of n_k * delta_k per float tensor
  uint64_t total_examples_ = 0;
  uint32_t num_updates_ = 0;
};

}  // namespace greenfed
