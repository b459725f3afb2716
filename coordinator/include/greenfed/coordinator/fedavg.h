// FedAvg (McMahan et al. 2017), streamed: each result is folded into a running sum
// as it arrives, so memory stays at two copies of the model whatever the number of
// clients.
//   w_next = w_global + sum_k n_k (w_k - w_global) / sum_k n_k
//          = sum_k n_k w_k / sum_k n_k
// Updates may be weights or deltas (w_k - w_global); both land in the same sum.
// Sums are kept in double so that the order of arrival barely matters. An update
// encoded by a codec (codec.h) is folded in with DecodeAdd, without a dense copy
// where the codec allows it (top-k).
//
// Thread safety: not thread-safe; one accumulator per round, owned by the round
// state machine.
#pragma once

#include <cstdint>
#include <vector>

#include "greenfed/codec.h"
#include "greenfed/protocol.h"
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
  // Folds a delta encoded by `codec` straight into the sum with DecodeAdd (top-k
  // adds its k entries and never builds the dense update). The encoded specs must
  // be the global model's, all float32; every value is checked (codec.h's named
  // reasons, |value| <= kMaxAbsUpdateValue) before the sum is touched.
  Status AddEncoded(const UpdateCodec& codec, const EncodedParams& encoded, bool is_delta, uint64_t num_examples);
  uint64_t total_examples() const { return total_examples_; }
  uint32_t num_updates() const { return num_updates_; }
  // The averaged parameters. FailedPrecondition when nothing was added.
  StatusOr<Parameters> Result() const;

 private:
  Parameters global_;
  std::vector<TensorSpec> specs_;
  Status CheckExamples(uint64_t num_examples) const;

  // Sum of n_k * delta_k over the float tensors, flattened in tensor order (the
  // layout DecodeAdd folds into when every tensor is float32); tensor t starts at
  // offset_[t].
  std::vector<double> sum_;
  std::vector<size_t> offset_;
  uint64_t total_examples_ = 0;
  uint32_t num_updates_ = 0;
};

}  // namespace greenfed
