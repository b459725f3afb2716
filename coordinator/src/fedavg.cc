#include "greenfed/coordinator/fedavg.h"

#include <cstring>

#include "numeric.h"

namespace greenfed {

using detail::At;
using detail::IsFloat;
using detail::Put;

Status FedAvgAccumulator::Reset(const Parameters& global) {
  for (const auto& p : global) GREENFED_RETURN_IF_ERROR(ValidateBlob(p).WithContext("global parameters"));
  global_ = global;
  specs_ = SpecsOf(global);
  sum_.assign(global.size(), {});
  for (size_t t = 0; t < global.size(); ++t) {
    if (IsFloat(global[t].dtype)) sum_[t].assign(static_cast<size_t>(global[t].NumElements()), 0.0);
  }
  total_examples_ = 0;
  num_updates_ = 0;
  return Status::Ok();
}

Status FedAvgAccumulator::Add(const Parameters& update, bool is_delta, uint64_t num_examples) {
  if (num_examples == 0) return InvalidArgument("update reports 0 training examples");
  // Checked: a wrapped total would turn the weighted mean into garbage. The bound
  // also keeps every example count exact in a double (2^53).
  constexpr uint64_t kMaxTotal = 1ull << 53;
  if (num_examples > kMaxTotal || total_examples_ > kMaxTotal - num_examples) {
    return OutOfRange("update's num_examples " + std::to_string(num_examples) + " would take the round's total past " +
                      std::to_string(kMaxTotal));
  }
  GREENFED_RETURN_IF_ERROR(ValidateAgainst(update, specs_));
  GREENFED_RETURN_IF_ERROR(ValidateMagnitude(update, kMaxAbsUpdateValue));
  const double n = static_cast<double>(num_examples);
  for (size_t t = 0; t < update.size(); ++t) {
    if (!IsFloat(update[t].dtype)) continue;
    auto& s = sum_[t];
    for (size_t i = 0; i < s.size(); ++i) {
      const double delta = is_delta ? At(update[t], i) : At(update[t], i) - At(global_[t], i);
      s[i] += n * delta;
    }
  }
  total_examples_ += num_examples;
  ++num_updates_;
  return Status::Ok();
}

StatusOr<Parameters> FedAvgAccumulator::Result() const {
  if (num_updates_ == 0) return FailedPrecondition("FedAvg has no updates to average");
  Parameters out = global_;
  const double n = static_cast<double>(total_examples_);
  for (size_t t = 0; t < out.size(); ++t) {
    if (!IsFloat(out[t].dtype)) continue;
    for (size_t i = 0; i < sum_[t].size(); ++i) Put(&out[t], i, At(global_[t], i) + sum_[t][i] / n);
  }
  for (const auto& p : out) GREENFED_RETURN_IF_ERROR(ValidateBlob(p).WithContext("FedAvg result"));
  return out;
}

}  // namespace greenfed
