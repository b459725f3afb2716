#include "scaffold.h"

#include <cmath>
#include <cstring>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "greenfed/coordinator/fedavg.h"
#include "greenfed/task.h"
#include "numeric.h"

namespace greenfed::detail {
namespace {

// What a round's aggregator hands to Update: the means of dy and dc over S.
struct ScaffoldRound {
  bool ready = false;
  uint32_t num_updates = 0;         // |S|
  std::vector<double> mean_dx;      // (1/|S|) sum dy_i, flat over float tensors
  std::vector<double> mean_dc;      // (1/|S|) sum dc_i
};

// The float tensors of `global`, whose names, dtypes and shapes the control group has.
std::vector<TensorSpec> ControlSpecs(const Parameters& global) {
  std::vector<TensorSpec> specs;
  for (const auto& t : global) {
    if (IsFloat(t.dtype)) specs.push_back(SpecOf(t));
  }
  return specs;
}

// The flat values of a control group that matches ControlSpecs.
std::vector<double> Flat(const Parameters& group) {
  std::vector<double> out;
  for (const auto& t : group) {
    const auto n = static_cast<size_t>(t.NumElements());
    for (size_t i = 0; i < n; ++i) out.push_back(At(t, i));
  }
  return out;
}

class ScaffoldAggregator final : public RoundAggregator {
 public:
  explicit ScaffoldAggregator(std::shared_ptr<ScaffoldRound> out) : out_(std::move(out)) {}

  Status Reset(const Parameters& global) {
    for (const auto& p : global) GREENFED_RETURN_IF_ERROR(ValidateBlob(p).WithContext("global parameters"));
    global_ = global;
    specs_ = SpecsOf(global);
    control_specs_ = ControlSpecs(global);
    const size_t n = FlatSize(global);
    sum_dx_.assign(n, 0.0);
    sum_dc_.assign(n, 0.0);
    out_->ready = false;
    return Status::Ok();
  }

  Status Add(const Parameters& update, const TensorGroups& groups, bool is_delta, uint64_t num_examples) override {
    if (num_examples == 0) return InvalidArgument("update reports 0 training examples");
    constexpr uint64_t kMaxTotal = 1ull << 53;
    if (num_examples > kMaxTotal || total_ > kMaxTotal - num_examples) {
      return OutOfRange("update's num_examples " + std::to_string(num_examples) + " would take the round's total past " +
                        std::to_string(kMaxTotal));
    }
    GREENFED_RETURN_IF_ERROR(ValidateAgainst(update, specs_));
    GREENFED_RETURN_IF_ERROR(ValidateMagnitude(update, kMaxAbsUpdateValue));
    const auto control = groups.find(kGroupControl);
    if (control == groups.end()) {
      return InvalidArgument(std::string("scaffold: the result lacks tensor group '") + kGroupControl +
                             "' (the client's delta c_i)");
    }
    for (const auto& [name, tensors] : groups) {
      if (name != kGroupControl) {
        return InvalidArgument("scaffold: unexpected tensor group '" + name + "' (takes only 'params' and 'control')");
      }
      (void)tensors;
    }
    GREENFED_RETURN_IF_ERROR(ValidateAgainst(control->second, control_specs_).WithContext("group 'control'"));
    GREENFED_RETURN_IF_ERROR(ValidateMagnitude(control->second, kMaxAbsUpdateValue).WithContext("group 'control'"));
    const std::vector<double> dx = FlatDelta(update, is_delta, global_);
    const std::vector<double> dc = Flat(control->second);
    for (size_t i = 0; i < dx.size(); ++i) sum_dx_[i] += dx[i];
    for (size_t i = 0; i < dc.size(); ++i) sum_dc_[i] += dc[i];
    ++num_updates_;
    total_ += num_examples;
    return Status::Ok();
  }

  uint64_t total_examples() const override { return total_; }
  uint32_t num_updates() const override { return num_updates_; }

  // x + dx (eta_g = 1); Update applies eta_g and moves c.
  StatusOr<Parameters> Result() override {
    if (num_updates_ == 0) return FailedPrecondition("no updates to aggregate");
    const double inv = 1.0 / static_cast<double>(num_updates_);
    out_->mean_dx.resize(sum_dx_.size());
    out_->mean_dc.resize(sum_dc_.size());
    for (size_t i = 0; i < sum_dx_.size(); ++i) out_->mean_dx[i] = sum_dx_[i] * inv;
    for (size_t i = 0; i < sum_dc_.size(); ++i) out_->mean_dc[i] = sum_dc_[i] * inv;
    out_->num_updates = num_updates_;
    out_->ready = true;
    return ApplyDelta(global_, out_->mean_dx, "scaffold");
  }

 private:
  std::shared_ptr<ScaffoldRound> out_;
  Parameters global_;
  std::vector<TensorSpec> specs_;
  std::vector<TensorSpec> control_specs_;
  std::vector<double> sum_dx_;
  std::vector<double> sum_dc_;
  uint32_t num_updates_ = 0;
  uint64_t total_ = 0;
};

std::string Num(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

class ScaffoldStrategy final : public Strategy {
 public:
  explicit ScaffoldStrategy(const StrategyOptions& o)
      : eta_g_(o.server_learning_rate), federation_size_(o.federation_size), round_(std::make_shared<ScaffoldRound>()) {}

  std::string Describe() const override { return "scaffold(server_learning_rate=" + Num(eta_g_) + ")"; }

  std::vector<std::string> RequiredCapabilities() const override { return {kCapabilityScaffold}; }

  StatusOr<std::unique_ptr<RoundAggregator>> BeginRound(const Parameters& global) override {
    const size_t n = FlatSize(global);
    if (c_.empty() && n > 0) c_.assign(n, 0.0);  // c = 0 at the start (or restored)
    if (c_.size() != n) {
      return FailedPrecondition("scaffold: the control variate has " + std::to_string(c_.size()) +
                                " entries but the model has " + std::to_string(n) + " float parameters");
    }
    // c in the model's layout, built once per round and copied into each Fit.
    c_group_.clear();
    size_t k = 0;
    for (const auto& t : global) {
      if (!IsFloat(t.dtype)) continue;
      TensorBlob b = t;
      const auto m = static_cast<size_t>(t.NumElements());
      for (size_t i = 0; i < m; ++i) Put(&b, i, c_[k++]);
      c_group_.push_back(std::move(b));
    }
    auto agg = std::make_unique<ScaffoldAggregator>(round_);
    GREENFED_RETURN_IF_ERROR(agg->Reset(global));
    return std::unique_ptr<RoundAggregator>(std::move(agg));
  }

  void ConfigureFit(uint64_t, ConfigMap*, TensorGroups* groups) const override {
    if (!c_group_.empty()) (*groups)[kGroupControl] = c_group_;
  }

  StatusOr<Parameters> Update(const Parameters& global, Parameters aggregate) override {
    (void)aggregate;  // x + dx at eta_g = 1; the step below uses the exact mean instead
    if (!round_->ready) return FailedPrecondition("scaffold: Update without the round's Result");
    round_->ready = false;
    if (round_->mean_dx.size() != c_.size()) {
      return FailedPrecondition("scaffold: the round's update has " + std::to_string(round_->mean_dx.size()) +
                                " entries but the control variate has " + std::to_string(c_.size()));
    }
    std::vector<double> step(round_->mean_dx.size());
    for (size_t i = 0; i < step.size(); ++i) step[i] = eta_g_ * round_->mean_dx[i];
    GREENFED_ASSIGN_OR_RETURN(Parameters next, ApplyDelta(global, step, "scaffold"));
    const double share = static_cast<double>(round_->num_updates) / static_cast<double>(federation_size_);
    for (size_t i = 0; i < c_.size(); ++i) c_[i] += share * round_->mean_dc[i];
    return next;
  }

  std::vector<uint8_t> SaveState() const override {
    std::vector<uint8_t> out(4 + 8 + c_.size() * 8);
    std::memcpy(out.data(), "GFSC", 4);
    const uint64_t n = c_.size();
    std::memcpy(out.data() + 4, &n, 8);
    if (n > 0) std::memcpy(out.data() + 12, c_.data(), n * 8);
    return out;
  }

  Status RestoreState(const std::vector<uint8_t>& s) override {
    if (s.empty()) {  // a checkpoint from before the first round
      c_.clear();
      return Status::Ok();
    }
    if (s.size() < 12 || std::memcmp(s.data(), "GFSC", 4) != 0) return DataLoss("scaffold state: bad magic");
    uint64_t n = 0;
    std::memcpy(&n, s.data() + 4, 8);
    if (n > (s.size() - 12) / 8 || s.size() != 12 + n * 8) {
      return DataLoss("scaffold state: " + std::to_string(s.size()) + " bytes do not hold " + std::to_string(n) +
                      " control values");
    }
    std::vector<double> c(n);
    if (n > 0) std::memcpy(c.data(), s.data() + 12, n * 8);
    for (size_t i = 0; i < n; ++i) {
      if (!std::isfinite(c[i])) return DataLoss("scaffold state: control value " + std::to_string(i) + " is not finite");
    }
    c_ = std::move(c);
    return Status::Ok();
  }

 private:
  double eta_g_;
  uint32_t federation_size_;
  std::vector<double> c_;        // server control variate, flat over float parameters
  Parameters c_group_;           // c in the model's layout, for ConfigureFit
  std::shared_ptr<ScaffoldRound> round_;
};

}  // namespace

StatusOr<std::unique_ptr<Strategy>> MakeScaffold(const StrategyOptions& options) {
  if (options.federation_size == 0) {
    return InvalidArgument("scaffold needs the federation size N (StrategyOptions::federation_size)");
  }
  return std::unique_ptr<Strategy>(std::make_unique<ScaffoldStrategy>(options));
}

}  // namespace greenfed::detail
