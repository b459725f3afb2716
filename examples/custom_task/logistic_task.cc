#include "logistic_task.h"

#include <algorithm>
#include <cmath>
#include <new>
#include <numeric>

namespace custom_task {

namespace {

using greenfed::Parameters;
using greenfed::Status;
using greenfed::StatusOr;

// SplitMix64: a small, portable generator, so that a seed gives the same data on every
// platform (std::normal_distribution's output is up to the standard library).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double Normal() {                                                             // Box-Muller
    const double u1 = 1.0 - Uniform();                                         // (0, 1]
    const double u2 = Uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  uint64_t state_;
};

uint64_t Mix(uint64_t a, uint64_t b) { return Rng(a ^ Rng(b).Next()).Next(); }

struct World {
  std::vector<double> w;  // w*, kDims
  double b = 0.3;         // b*
};

World TheWorld() {
  Rng rng(kWorldSeed);
  World world;
  for (int64_t j = 0; j < kDims; ++j) world.w.push_back(rng.Normal());
  return world;
}

// Logistic loss of logit z for label y, without overflow: log(1 + e^-|z|) + max(z, 0) - y z.
double LogLoss(double z, double y) { return std::log1p(std::exp(-std::abs(z))) + std::max(z, 0.0) - y * z; }
double Sigmoid(double z) { return z >= 0 ? 1.0 / (1.0 + std::exp(-z)) : std::exp(z) / (1.0 + std::exp(z)); }

std::vector<greenfed::TensorSpec> ParameterSpecs() {
  return {{"w", greenfed::DType::kFloat32, {kDims}}, {"b", greenfed::DType::kFloat32, {1}}};
}

Parameters Pack(const std::vector<float>& w, float b) {
  return {greenfed::MakeFloatBlob("w", {kDims}, w), greenfed::MakeFloatBlob("b", {1}, {b})};
}

uint64_t Capped(uint64_t n, uint64_t cap) { return cap > 0 ? std::min(n, cap) : n; }

// Appends n examples drawn from `seed` (features and noisy labels of the fixed world).
void Generate(uint64_t seed, uint64_t n, std::vector<float>* features, std::vector<float>* labels) {
  static_assert(kDims > 0, "at least one feature");
  const World world = TheWorld();
  Rng rng(seed);
  for (uint64_t i = 0; i < n; ++i) {
    double z = world.b;
    for (int64_t j = 0; j < kDims; ++j) {
      const double x = rng.Normal();
      features->push_back(static_cast<float>(x));
      z += world.w[static_cast<size_t>(j)] * x;
    }
    labels->push_back(z + 0.5 * rng.Normal() > 0 ? 1.0f : 0.0f);
  }
}

}  // namespace

Status LogisticTask::Prepare(const greenfed::TaskOptions& options) try {
  if (prepared_) return greenfed::FailedPrecondition("custom_task: Prepare called twice");
  const greenfed::PartitionSpec& spec = options.partition;
  if (options.role != greenfed::TaskRole::kCoordinator && spec.scheme != "iid") {
    return greenfed::InvalidArgument("custom_task: partition scheme '" + spec.scheme +
                                     "' is not offered (synthetic shards have no labels to skew); use iid");
  }
  options_ = options;
  train_ = {};
  test_ = {};
  switch (options.role) {
    case greenfed::TaskRole::kClient: {
      if (spec.num_clients == 0 || options.client_index >= spec.num_clients) {
        return greenfed::OutOfRange("custom_task: client index " + std::to_string(options.client_index) +
                                    " is not below num_clients " + std::to_string(spec.num_clients));
      }
      const uint64_t i = options.client_index;
      Generate(Mix(spec.seed, 2 * i + 1), Capped(kExamplesPerClient, options.max_train_examples),
               &train_.features, &train_.labels);
      Generate(Mix(spec.seed, 2 * i + 2), Capped(kClientTestExamples, options.max_test_examples),
               &test_.features, &test_.labels);
      break;
    }
    case greenfed::TaskRole::kCoordinator:
      Generate(Mix(kWorldSeed, 0xC0FFEE), Capped(kCentralTestExamples, options.max_test_examples), &test_.features,
               &test_.labels);
      break;
    case greenfed::TaskRole::kCentralized:
      // Every client's shard in one training set: what the federation holds together.
      for (uint64_t i = 0; i < spec.num_clients; ++i) {
        Generate(Mix(spec.seed, 2 * i + 1), kExamplesPerClient, &train_.features, &train_.labels);
      }
      if (options.max_train_examples > 0 && train_.labels.size() > options.max_train_examples) {
        train_.labels.resize(options.max_train_examples);
        train_.features.resize(options.max_train_examples * static_cast<uint64_t>(kDims));
      }
      Generate(Mix(kWorldSeed, 0xC0FFEE), Capped(kCentralTestExamples, options.max_test_examples), &test_.features,
               &test_.labels);
      break;
  }
  prepared_ = true;
  return Status::Ok();
} catch (const std::bad_alloc&) {
  return greenfed::Internal("custom_task: out of memory while generating the data");
}

StatusOr<Parameters> LogisticTask::InitialParameters() {
  Rng rng(Mix(options_.init_seed, 0x1417));
  std::vector<float> w;
  for (int64_t j = 0; j < kDims; ++j) w.push_back(static_cast<float>(0.01 * rng.Normal()));
  return Pack(w, 0.0f);
}

std::vector<std::string> LogisticTask::Capabilities() const { return {greenfed::kCapabilityFedProx}; }

Status LogisticTask::Unpack(const Parameters& parameters, std::vector<float>* w, float* b) const {
  // From the network: names, dtypes, shapes and finiteness are checked before any use.
  if (Status s = greenfed::ValidateAgainst(parameters, ParameterSpecs()); !s.ok()) {
    return s.WithContext("custom_task: parameters");
  }
  *w = greenfed::FloatValues(parameters[0]);
  *b = greenfed::FloatValues(parameters[1])[0];
  return Status::Ok();
}

StatusOr<greenfed::FitResult> LogisticTask::Fit(const greenfed::FitRequest& request,
                                                greenfed::ClientState& state) try {
  if (!prepared_) return greenfed::FailedPrecondition("custom_task: Fit before Prepare");
  if (train_.labels.empty()) return greenfed::FailedPrecondition("custom_task: this node has no training data");
  GREENFED_ASSIGN_OR_RETURN(greenfed::TrainConfig train, greenfed::ParseTrainConfig(request.config));
  GREENFED_ASSIGN_OR_RETURN(double mu, greenfed::ConfigDouble(request.config, "proximal_mu", 0.0));
  if (!(mu >= 0) || !std::isfinite(mu)) {
    return greenfed::InvalidArgument("custom_task: proximal_mu must be finite and >= 0, got " + std::to_string(mu));
  }
  if (train.epochs == 0 || train.batch_size == 0) {
    return greenfed::InvalidArgument("custom_task: epochs and batch_size must be > 0");
  }
  std::vector<float> w0;
  float b0 = 0;
  GREENFED_RETURN_IF_ERROR(Unpack(request.parameters, &w0, &b0));
  std::vector<double> w(w0.begin(), w0.end());
  double b = b0;

  // Momentum buffers: fresh each round unless the client keeps them (--persist-momentum).
  std::vector<double> vw(static_cast<size_t>(kDims), 0.0);
  double vb = 0;
  if (options_.persist_momentum) {
    auto it = state.find("momentum");
    if (it != state.end() && greenfed::ValidateAgainst(it->second, ParameterSpecs()).ok()) {
      const auto kept_w = greenfed::FloatValues(it->second[0]);
      vw.assign(kept_w.begin(), kept_w.end());
      vb = greenfed::FloatValues(it->second[1])[0];
    }
  }

  const size_t n = train_.labels.size();
  const size_t batch = std::min<size_t>(train.batch_size, n);
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  Rng shuffle(Mix(train.seed, 0x5EED));
  double epoch_loss = 0;
  std::vector<double> gw(static_cast<size_t>(kDims));
  for (uint32_t epoch = 0; epoch < train.epochs; ++epoch) {
    for (size_t i = n - 1; i > 0; --i) std::swap(order[i], order[shuffle.Next() % (i + 1)]);  // Fisher-Yates
    epoch_loss = 0;
    for (size_t start = 0; start < n; start += batch) {
      const size_t end = std::min(n, start + batch);
      std::fill(gw.begin(), gw.end(), 0.0);
      double gb = 0;
      for (size_t k = start; k < end; ++k) {
        const float* x = &train_.features[order[k] * static_cast<size_t>(kDims)];
        const double y = train_.labels[order[k]];
        double z = b;
        for (size_t j = 0; j < gw.size(); ++j) z += w[j] * x[j];
        epoch_loss += LogLoss(z, y);
        const double err = Sigmoid(z) - y;
        for (size_t j = 0; j < gw.size(); ++j) gw[j] += err * x[j];
        gb += err;
      }
      const double scale = 1.0 / static_cast<double>(end - start);
      for (size_t j = 0; j < gw.size(); ++j) {
        const double g = gw[j] * scale + mu * (w[j] - w0[j]);  // FedProx: + mu (w - w_global)
        vw[j] = train.momentum * vw[j] + g;
        w[j] -= train.learning_rate * vw[j];
      }
      vb = train.momentum * vb + gb * scale + mu * (b - b0);
      b -= train.learning_rate * vb;
    }
  }

  greenfed::FitResult result;
  std::vector<float> wf(w.begin(), w.end());
  result.parameters = Pack(wf, static_cast<float>(b));
  if (Status s = greenfed::ValidateAgainst(result.parameters, ParameterSpecs()); !s.ok()) {
    return greenfed::OutOfRange("custom_task: training diverged (" + s.message() + "); lower learning_rate");
  }
  if (options_.persist_momentum) {
    state["momentum"] = Pack(std::vector<float>(vw.begin(), vw.end()), static_cast<float>(vb));
  }
  result.num_examples = n;
  result.train_loss = epoch_loss / static_cast<double>(n);
  return result;
} catch (const std::bad_alloc&) {
  return greenfed::Internal("custom_task: out of memory in Fit");
}

StatusOr<greenfed::EvalResult> LogisticTask::Evaluate(const Parameters& parameters) {
  if (!prepared_) return greenfed::FailedPrecondition("custom_task: Evaluate before Prepare");
  if (test_.labels.empty()) return greenfed::FailedPrecondition("custom_task: this node has no test data");
  std::vector<float> w;
  float b = 0;
  GREENFED_RETURN_IF_ERROR(Unpack(parameters, &w, &b));
  double loss = 0;
  uint64_t correct = 0;
  for (size_t i = 0; i < test_.labels.size(); ++i) {
    const float* x = &test_.features[i * static_cast<size_t>(kDims)];
    double z = b;
    for (size_t j = 0; j < w.size(); ++j) z += static_cast<double>(w[j]) * x[j];
    loss += LogLoss(z, test_.labels[i]);
    correct += (z > 0) == (test_.labels[i] > 0.5f) ? 1 : 0;
  }
  const double count = static_cast<double>(test_.labels.size());
  return greenfed::EvalResult{loss / count, static_cast<double>(correct) / count, test_.labels.size()};
}

std::vector<int64_t> LogisticTask::TrainLabelHistogram() const {
  std::vector<int64_t> histogram(2, 0);
  for (float y : train_.labels) histogram[y > 0.5f ? 1 : 0] += 1;
  return histogram;
}

StatusOr<std::vector<uint64_t>> LogisticTask::ShardSizes(const greenfed::PartitionSpec& spec) const {
  if (spec.scheme != "iid") {
    return greenfed::InvalidArgument("custom_task: partition scheme '" + spec.scheme + "' is not offered; use iid");
  }
  return std::vector<uint64_t>(spec.num_clients, Capped(kExamplesPerClient, options_.max_train_examples));
}

}  // namespace custom_task
