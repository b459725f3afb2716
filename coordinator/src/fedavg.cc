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
  offset_.assign(global.size(), 0);
  size_t total = 0;
  for (size_t t = 0; t < global.size(); ++t) {
    offset_[t] = total;
    if (IsFloat(global[t].dtype)) total += static_cast<size_t>(global[t].NumElements());
  }
  sum_.assign(total, 0.0);
  total_examples_ = 0;
  num_updates_ = 0;
  return Status::Ok();
}

Status FedAvgAccumulator::CheckExamples(uint64_t num_examples) const {
  if (num_examples == 0) return InvalidArgument("update reports 0 training examples");
  // Checked: a wrapped total would turn the weighted mean into garbage. The bound
  // also keeps every example count exact in a double (2^53).
  constexpr uint64_t kMaxTotal = 1ull << 53;
  if (num_examples > kMaxTotal || total_examples_ > kMaxTotal - num_examples) {
    return OutOfRange("update's num_examples " + std::to_string(num_examples) + " would take the round's total past " +
                      std::to_string(kMaxTotal));
  }
  return Status::Ok();
}

Status FedAvgAccumulator::Add(const Parameters& update, bool is_delta, uint64_t num_examples) {
  GREENFED_RETURN_IF_ERROR(CheckExamples(num_examples));
  GREENFED_RETURN_IF_ERROR(ValidateAgainst(update, specs_));
  GREENFED_RETURN_IF_ERROR(ValidateMagnitude(update, kMaxAbsUpdateValue));
  const double n = static_cast<double>(num_examples);
  for (size_t t = 0; t < update.size(); ++t) {
    if (!IsFloat(update[t].dtype)) continue;
    double* s = sum_.data() + offset_[t];
    const auto count = static_cast<size_t>(update[t].NumElements());
    for (size_t i = 0; i < count; ++i) {
      const double delta = is_delta ? At(update[t], i) : At(update[t], i) - At(global_[t], i);
      s[i] += n * delta;
    }
  }
  total_examples_ += num_examples;
  ++num_updates_;
  return Status::Ok();
}

Status FedAvgAccumulator::AddEncoded(const UpdateCodec& codec, const EncodedParams& encoded, bool is_delta,
                                     uint64_t num_examples) {
  GREENFED_RETURN_IF_ERROR(CheckExamples(num_examples));
  if (!is_delta) return InvalidArgument("an update encoded with '" + codec.Name() + "' must be a delta (is_delta)");
  if (encoded.specs != specs_) {
    return InvalidArgument("the encoded update's " + std::to_string(encoded.specs.size()) +
                           " tensors do not match the global model's " + std::to_string(specs_.size()) +
                           " (names, dtypes, shapes)");
  }
  // sum_ covers the float tensors; DecodeAdd needs every tensor float32 (it names
  // a tensor that is not).
  GREENFED_RETURN_IF_ERROR(
      codec.DecodeAdd(encoded.bytes, specs_, static_cast<double>(num_examples), &sum_, kMaxAbsUpdateValue));
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
    const double* s = sum_.data() + offset_[t];
    const auto count = static_cast<size_t>(out[t].NumElements());
    for (size_t i = 0; i < count; ++i) Put(&out[t], i, At(global_[t], i) + s[i] / n);
  }
  for (const auto& p : out) GREENFED_RETURN_IF_ERROR(ValidateBlob(p).WithContext("FedAvg result"));
  return out;
}

}  // namespace greenfed
