#include "greenfed/coordinator/strategy.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <sstream>

#include "greenfed/coordinator/fedavg.h"
#include "greenfed/task.h"
#include "numeric.h"
#include "scaffold.h"

namespace greenfed {

namespace {

using detail::ApplyDelta;
using detail::At;
using detail::FlatDelta;
using detail::FlatSize;
using detail::IsFloat;
using detail::Mix;
using detail::Put;

// The aggregators of strategies that send no tensor groups take none back.
Status RejectGroups(const TensorGroups& groups) {
  if (groups.empty()) return Status::Ok();
  return InvalidArgument("unexpected tensor group '" + groups.begin()->first +
                         "': this strategy sends none and takes only the model ('params')");
}

std::string Num(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

}  // namespace

Status RoundAggregator::AddEncoded(const UpdateCodec& codec, const EncodedParams& encoded, const TensorGroups& groups,
                                   bool is_delta, uint64_t num_examples) {
  StatusOr<Parameters> decoded = codec.Decode(encoded.bytes, encoded.specs);
  if (!decoded.ok()) return decoded.status();
  return Add(*decoded, groups, is_delta, num_examples);
}

namespace {

// ---- fedavg family: streamed -------------------------------------------------

class StreamingAggregator final : public RoundAggregator {
 public:
  Status Reset(const Parameters& global) { return acc_.Reset(global); }
  Status Add(const Parameters& update, const TensorGroups& groups, bool is_delta, uint64_t num_examples) override {
    GREENFED_RETURN_IF_ERROR(RejectGroups(groups));
    return acc_.Add(update, is_delta, num_examples);
  }
  Status AddEncoded(const UpdateCodec& codec, const EncodedParams& encoded, const TensorGroups& groups,
                    bool is_delta, uint64_t num_examples) override {
    GREENFED_RETURN_IF_ERROR(RejectGroups(groups));
    return acc_.AddEncoded(codec, encoded, is_delta, num_examples);
  }
  uint64_t total_examples() const override { return acc_.total_examples(); }
  uint32_t num_updates() const override { return acc_.num_updates(); }
  StatusOr<Parameters> Result() override { return acc_.Result(); }

 private:
  FedAvgAccumulator acc_;
};

// ---- robust: buffered --------------------------------------------------------

enum class Robust { kMedian, kTrimmedMean, kKrum };

class BufferedAggregator final : public RoundAggregator {
 public:
  BufferedAggregator(Robust kind, const StrategyOptions& o) : kind_(kind), options_(o) {}

  Status Reset(const Parameters& global) {
    for (const auto& p : global) GREENFED_RETURN_IF_ERROR(ValidateBlob(p).WithContext("global parameters"));
    global_ = global;
    specs_ = SpecsOf(global);
    return Status::Ok();
  }

  Status Add(const Parameters& update, const TensorGroups& groups, bool is_delta, uint64_t num_examples) override {
    GREENFED_RETURN_IF_ERROR(RejectGroups(groups));
    if (num_examples == 0) return InvalidArgument("update reports 0 training examples");
    constexpr uint64_t kMaxTotal = 1ull << 53;
    if (num_examples > kMaxTotal || total_ > kMaxTotal - num_examples) {
      return OutOfRange("update's num_examples " + std::to_string(num_examples) + " would take the round's total past " +
                        std::to_string(kMaxTotal));
    }
    GREENFED_RETURN_IF_ERROR(ValidateAgainst(update, specs_));
    GREENFED_RETURN_IF_ERROR(ValidateMagnitude(update, kMaxAbsUpdateValue));
    deltas_.push_back(FlatDelta(update, is_delta, global_));
    examples_.push_back(num_examples);
    total_ += num_examples;
    return Status::Ok();
  }

  uint64_t total_examples() const override { return total_; }
  uint32_t num_updates() const override { return static_cast<uint32_t>(deltas_.size()); }

  StatusOr<Parameters> Result() override {
    if (deltas_.empty()) return FailedPrecondition("no updates to aggregate");
    switch (kind_) {
      case Robust::kMedian: return ApplyDelta(global_, Coordinatewise(0), "fedmedian");
      case Robust::kTrimmedMean: {
        const auto cut = static_cast<size_t>(std::floor(options_.trim_beta * static_cast<double>(deltas_.size())));
        if (2 * cut >= deltas_.size()) {
          return FailedPrecondition("fedtrimmedavg: trimming " + std::to_string(cut) + " from each end of " +
                                    std::to_string(deltas_.size()) + " updates leaves none");
        }
        return ApplyDelta(global_, Coordinatewise(cut), "fedtrimmedavg");
      }
      case Robust::kKrum: return Krum();
    }
    return Internal("unknown robust aggregator");
  }

 private:
  // cut == 0 and kind median: the median; otherwise the mean of the sorted values
  // without `cut` at each end.
  std::vector<double> Coordinatewise(size_t cut) const {
    const size_t n = deltas_.size();
    const size_t dim = deltas_[0].size();
    std::vector<double> out(dim), column(n);
    for (size_t i = 0; i < dim; ++i) {
      for (size_t k = 0; k < n; ++k) column[k] = deltas_[k][i];
      if (kind_ == Robust::kMedian) {
        // Selection, not a sort: O(n) per coordinate.
        const auto mid = column.begin() + static_cast<long>(n / 2);
        std::nth_element(column.begin(), mid, column.end());
        out[i] = n % 2 ? *mid : 0.5 * (*std::max_element(column.begin(), mid) + *mid);
      } else {
        std::sort(column.begin(), column.end());
        double s = 0;
        for (size_t k = cut; k < n - cut; ++k) s += column[k];
        out[i] = s / static_cast<double>(n - 2 * cut);
      }
    }
    return out;
  }

  StatusOr<Parameters> Krum() const {
    const size_t n = deltas_.size();
    const size_t dim = deltas_[0].size();
    // Squared Euclidean distances between updates (Blanchard et al. 2017).
    std::vector<std::vector<double>> dist(n, std::vector<double>(n, 0.0));
    for (size_t a = 0; a < n; ++a) {
      for (size_t b = a + 1; b < n; ++b) {
        double s = 0;
        for (size_t i = 0; i < dim; ++i) {
          const double d = deltas_[a][i] - deltas_[b][i];
          s += d * d;
        }
        dist[a][b] = dist[b][a] = s;
      }
    }
    // Score: the sum of distances to the n - f - 2 closest others (at least 1),
    // as Flower's aggregate_krum.
    const long closest = std::max<long>(1, static_cast<long>(n) - static_cast<long>(options_.num_malicious_clients) - 2);
    std::vector<double> score(n, 0.0);
    for (size_t a = 0; a < n; ++a) {
      std::vector<double> row;
      for (size_t b = 0; b < n; ++b) {
        if (b != a) row.push_back(dist[a][b]);
      }
      std::sort(row.begin(), row.end());
      for (size_t k = 0; k < row.size() && static_cast<long>(k) < closest; ++k) score[a] += row[k];
    }
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return score[x] < score[y]; });
    const size_t keep = options_.num_clients_to_keep == 0
                            ? 1
                            : std::min<size_t>(options_.num_clients_to_keep, n);
    // Multi-Krum: the example-weighted mean of the `keep` best (Flower weights by examples).
    std::vector<double> out(dim, 0.0);
    double weight = 0;
    for (size_t r = 0; r < keep; ++r) {
      const size_t k = order[r];
      const double w = keep == 1 ? 1.0 : static_cast<double>(examples_[k]);
      for (size_t i = 0; i < dim; ++i) out[i] += w * deltas_[k][i];
      weight += w;
    }
    for (double& v : out) v /= weight;
    return ApplyDelta(global_, out, "krum");
  }

  Robust kind_;
  StrategyOptions options_;
  Parameters global_;
  std::vector<TensorSpec> specs_;
  std::vector<std::vector<double>> deltas_;  // one flat delta per update: clients x model
  std::vector<uint64_t> examples_;
  uint64_t total_ = 0;
};

// ---- strategies ----------------------------------------------------------------

class FedAvgStrategy : public Strategy {
 public:
  std::string Describe() const override { return "fedavg"; }
  StatusOr<std::unique_ptr<RoundAggregator>> BeginRound(const Parameters& global) override {
    auto agg = std::make_unique<StreamingAggregator>();
    GREENFED_RETURN_IF_ERROR(agg->Reset(global));
    return std::unique_ptr<RoundAggregator>(std::move(agg));
  }
};

// FedProx (Li et al. 2020): the client adds mu/2 ||w - w_global||^2 to its local
// objective; the server aggregates as FedAvg. mu travels in every Fit.
class FedProxStrategy final : public FedAvgStrategy {
 public:
  explicit FedProxStrategy(double mu) : mu_(mu) {}
  std::string Describe() const override { return "fedprox(proximal_mu=" + Num(mu_) + ")"; }
  void ConfigureFit(uint64_t, ConfigMap* config, TensorGroups*) const override {
    (*config)[kConfigProximalMu] = mu_;
  }
  std::vector<std::string> RequiredCapabilities() const override { return {kCapabilityFedProx}; }

 private:
  double mu_;
};

// Server optimisers on the pseudo-gradient d = mean - global (Reddi et al. 2021,
// Algorithm 2; Hsu et al. 2019 for momentum). State: m (and v), one double per
// float parameter.
class ServerOptStrategy final : public FedAvgStrategy {
 public:
  enum class Rule { kMomentum, kAdagrad, kAdam, kYogi };
  ServerOptStrategy(Rule rule, const StrategyOptions& o) : rule_(rule), o_(o) {
    const bool yogi = rule == Rule::kYogi;
    eta_ = rule == Rule::kMomentum ? o.server_learning_rate : (o.eta >= 0 ? o.eta : (yogi ? 1e-2 : 1e-1));
    beta_1_ = o.beta_1 >= 0 ? o.beta_1 : (rule == Rule::kAdagrad ? 0.0 : 0.9);
    tau_ = o.tau >= 0 ? o.tau : (yogi ? 1e-3 : 1e-9);
  }

  std::string Describe() const override {
    switch (rule_) {
      case Rule::kMomentum:
        return "fedavgm(server_learning_rate=" + Num(eta_) + ", server_momentum=" + Num(o_.server_momentum) + ")";
      case Rule::kAdagrad: return "fedadagrad(eta=" + Num(eta_) + ", beta_1=" + Num(beta_1_) + ", tau=" + Num(tau_) + ")";
      case Rule::kAdam:
      case Rule::kYogi:
        return std::string(rule_ == Rule::kAdam ? "fedadam" : "fedyogi") + "(eta=" + Num(eta_) + ", beta_1=" +
               Num(beta_1_) + ", beta_2=" + Num(o_.beta_2) + ", tau=" + Num(tau_) + ")";
    }
    return "?";
  }

  StatusOr<Parameters> Update(const Parameters& global, Parameters aggregate) override {
    const std::vector<double> d = FlatDelta(aggregate, /*is_delta=*/false, global);
    if (m_.empty()) {
      m_.assign(d.size(), 0.0);
      // Reddi et al. initialise v at tau^2 (v_{-1} >= tau^2).
      if (rule_ != Rule::kMomentum) v_.assign(d.size(), tau_ * tau_);
    }
    if (m_.size() != d.size()) {
      return FailedPrecondition("server optimiser state has " + std::to_string(m_.size()) +
                                " entries but the model has " + std::to_string(d.size()));
    }
    std::vector<double> step(d.size());
    for (size_t i = 0; i < d.size(); ++i) {
      if (rule_ == Rule::kMomentum) {
        m_[i] = o_.server_momentum * m_[i] + d[i];
        step[i] = eta_ * m_[i];
        continue;
      }
      m_[i] = beta_1_ * m_[i] + (1 - beta_1_) * d[i];
      const double d2 = d[i] * d[i];
      switch (rule_) {
        case Rule::kAdagrad: v_[i] += d2; break;
        case Rule::kAdam: v_[i] = o_.beta_2 * v_[i] + (1 - o_.beta_2) * d2; break;
        case Rule::kYogi: {
          const double diff = v_[i] - d2;
          v_[i] -= (1 - o_.beta_2) * d2 * (diff > 0 ? 1.0 : (diff < 0 ? -1.0 : 0.0));
          break;
        }
        case Rule::kMomentum: break;
      }
      step[i] = eta_ * m_[i] / (std::sqrt(v_[i]) + tau_);
    }
    ++steps_;
    return ApplyDelta(global, step, Describe().c_str());
  }

  // Layout: "GFSO" | u32 rule | u64 steps | u64 |m| | m doubles | u64 |v| | v doubles.
  std::vector<uint8_t> SaveState() const override {
    std::vector<uint8_t> out;
    auto put = [&out](const void* p, size_t n) {
      const auto* b = static_cast<const uint8_t*>(p);
      out.insert(out.end(), b, b + n);
    };
    put("GFSO", 4);
    const auto rule = static_cast<uint32_t>(rule_);
    put(&rule, 4);
    put(&steps_, 8);
    for (const auto* vec : {&m_, &v_}) {
      const uint64_t n = vec->size();
      put(&n, 8);
      put(vec->data(), n * 8);
    }
    return out;
  }

  Status RestoreState(const std::vector<uint8_t>& s) override {
    size_t off = 0;
    auto get = [&](void* p, size_t n) {
      if (n == 0) return true;  // an empty vector's data() may be null: no memcpy
      if (s.size() - off < n) return false;
      std::memcpy(p, s.data() + off, n);
      off += n;
      return true;
    };
    char magic[4];
    uint32_t rule = 0;
    uint64_t steps = 0;
    if (!get(magic, 4) || std::memcmp(magic, "GFSO", 4) != 0) return DataLoss("strategy state: bad magic");
    if (!get(&rule, 4) || rule != static_cast<uint32_t>(rule_)) {
      return DataLoss("strategy state was saved by another server optimiser (rule " + std::to_string(rule) + ")");
    }
    if (!get(&steps, 8)) return DataLoss("strategy state: truncated");
    std::vector<double> m, v;
    for (auto* vec : {&m, &v}) {
      uint64_t n = 0;
      if (!get(&n, 8) || n > (s.size() - off) / 8) return DataLoss("strategy state: truncated");
      vec->resize(n);
      if (!get(vec->data(), n * 8)) return DataLoss("strategy state: truncated");
    }
    if (off != s.size()) return DataLoss("strategy state: " + std::to_string(s.size() - off) + " trailing bytes");
    m_ = std::move(m);
    v_ = std::move(v);
    steps_ = steps;
    return Status::Ok();
  }

 private:
  Rule rule_;
  StrategyOptions o_;
  double eta_ = 1, beta_1_ = 0, tau_ = 0;
  std::vector<double> m_, v_;
  uint64_t steps_ = 0;
};

class RobustStrategy final : public Strategy {
 public:
  RobustStrategy(Robust kind, const StrategyOptions& o) : kind_(kind), o_(o) {}
  std::string Describe() const override {
    switch (kind_) {
      case Robust::kMedian: return "fedmedian";
      case Robust::kTrimmedMean: return "fedtrimmedavg(beta=" + Num(o_.trim_beta) + ")";
      case Robust::kKrum:
        return "krum(num_malicious_clients=" + std::to_string(o_.num_malicious_clients) +
               ", num_clients_to_keep=" + std::to_string(o_.num_clients_to_keep) + ")";
    }
    return "?";
  }
  StatusOr<std::unique_ptr<RoundAggregator>> BeginRound(const Parameters& global) override {
    auto agg = std::make_unique<BufferedAggregator>(kind_, o_);
    GREENFED_RETURN_IF_ERROR(agg->Reset(global));
    return std::unique_ptr<RoundAggregator>(std::move(agg));
  }

 private:
  Robust kind_;
  StrategyOptions o_;
};

}  // namespace

std::vector<uint32_t> Strategy::Sample(const std::vector<uint32_t>& available, uint64_t round, uint32_t attempt,
                                       uint64_t seed, double fraction, uint32_t min_fit) const {
  std::vector<uint32_t> pool = available;
  const auto n = static_cast<uint32_t>(pool.size());
  uint32_t k = static_cast<uint32_t>(std::ceil(fraction * n - 1e-9));
  k = std::min(n, std::max(k, min_fit));
  // Deterministic partial Fisher-Yates by (seed, round, attempt).
  uint64_t state = Mix(seed ^ Mix(round * 7919ull + attempt));
  for (uint32_t i = 0; i < k; ++i) {
    state = Mix(state);
    const uint32_t j = i + static_cast<uint32_t>(state % (n - i));
    std::swap(pool[i], pool[j]);
  }
  pool.resize(k);
  std::sort(pool.begin(), pool.end());
  return pool;
}

StatusOr<Parameters> Strategy::Update(const Parameters&, Parameters aggregate) { return aggregate; }

Status Strategy::RestoreState(const std::vector<uint8_t>& state) {
  if (!state.empty()) {
    return DataLoss(Describe() + " keeps no state, but the checkpoint holds " + std::to_string(state.size()) +
                    " bytes of it");
  }
  return Status::Ok();
}

std::string StrategyNames() {
  return "fedavg, fedavgm, fedadagrad, fedadam, fedyogi, fedmedian, fedtrimmedavg, krum, fedprox, scaffold";
}

Status ValidateStrategyOptions(const StrategyOptions& o) {
  auto positive = [](double v) { return std::isfinite(v) && v > 0; };
  if (!positive(o.server_learning_rate)) return InvalidArgument("--server-learning-rate must be positive");
  if (!(o.server_momentum >= 0 && o.server_momentum < 1)) return InvalidArgument("--server-momentum must be in [0, 1)");
  if (o.eta != -1 && !positive(o.eta)) return InvalidArgument("--eta must be positive");
  if (o.beta_1 != -1 && !(o.beta_1 >= 0 && o.beta_1 < 1)) return InvalidArgument("--beta-1 must be in [0, 1)");
  if (!(o.beta_2 >= 0 && o.beta_2 < 1)) return InvalidArgument("--beta-2 must be in [0, 1)");
  if (o.tau != -1 && !positive(o.tau)) return InvalidArgument("--tau must be positive");
  if (!(o.trim_beta >= 0 && o.trim_beta < 0.5)) return InvalidArgument("--trim-beta must be in [0, 0.5)");
  if (o.name == "fedprox") {
    if (o.proximal_mu == -1) {
      return InvalidArgument("--proximal-mu is required with --strategy fedprox (as in Flower's FedProx; e.g. 0.01)");
    }
    if (!(std::isfinite(o.proximal_mu) && o.proximal_mu >= 0)) {
      return InvalidArgument("--proximal-mu must be finite and >= 0, got " + Num(o.proximal_mu));
    }
  } else if (o.proximal_mu != -1) {
    return InvalidArgument("--proximal-mu applies to --strategy fedprox only, not " + o.name);
  }
  return Status::Ok();
}

StatusOr<std::unique_ptr<Strategy>> MakeStrategy(const StrategyOptions& o) {
  GREENFED_RETURN_IF_ERROR(ValidateStrategyOptions(o));
  using Rule = ServerOptStrategy::Rule;
  std::unique_ptr<Strategy> s;
  if (o.name == "fedavg") s = std::make_unique<FedAvgStrategy>();
  if (o.name == "fedavgm") s = std::make_unique<ServerOptStrategy>(Rule::kMomentum, o);
  if (o.name == "fedadagrad") s = std::make_unique<ServerOptStrategy>(Rule::kAdagrad, o);
  if (o.name == "fedadam") s = std::make_unique<ServerOptStrategy>(Rule::kAdam, o);
  if (o.name == "fedyogi") s = std::make_unique<ServerOptStrategy>(Rule::kYogi, o);
  if (o.name == "fedmedian") s = std::make_unique<RobustStrategy>(Robust::kMedian, o);
  if (o.name == "fedtrimmedavg") s = std::make_unique<RobustStrategy>(Robust::kTrimmedMean, o);
  if (o.name == "krum") s = std::make_unique<RobustStrategy>(Robust::kKrum, o);
  if (o.name == "fedprox") s = std::make_unique<FedProxStrategy>(o.proximal_mu);
  if (o.name == "scaffold") {
    GREENFED_ASSIGN_OR_RETURN(s, detail::MakeScaffold(o));
  }
  if (!s) return InvalidArgument("--strategy must be one of " + StrategyNames() + "; got '" + o.name + "'");
  return s;
}

}  // namespace greenfed
