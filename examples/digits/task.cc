#include "digits/task.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "greenfed/partition.h"

namespace greenfed::digits {

namespace {

const char* RoleName(TaskRole role) {
  switch (role) {
    case TaskRole::kClient:
      return "client";
    case TaskRole::kCoordinator:
      return "coordinator";
    case TaskRole::kCentralized:
      return "centralized";
  }
  return "unknown";
}

void Cap(uint64_t max_examples, std::vector<uint32_t>* indices) {
  if (max_examples > 0 && indices->size() > max_examples) indices->resize(static_cast<size_t>(max_examples));
}

std::vector<uint8_t> LabelsOf(const std::vector<uint8_t>& labels, const std::vector<uint32_t>& indices) {
  std::vector<uint8_t> out;
  out.reserve(indices.size());
  for (uint32_t i : indices) out.push_back(labels[i]);
  return out;
}

std::vector<uint32_t> FirstN(size_t n) {
  std::vector<uint32_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint32_t>(i);
  return v;
}

Status ValidateSgd(const SgdOptions& o) {
  const TrainConfig& c = o.train;
  if (c.epochs == 0) return InvalidArgument("digits Fit: epochs must be >= 1, got 0");
  if (c.batch_size == 0) return InvalidArgument("digits Fit: batch_size must be >= 1, got 0");
  if (!(std::isfinite(c.learning_rate) && c.learning_rate > 0)) {
    return InvalidArgument("digits Fit: learning_rate must be finite and > 0, got " + std::to_string(c.learning_rate));
  }
  if (!(c.momentum >= 0 && c.momentum < 1)) {
    return InvalidArgument("digits Fit: momentum must be in [0, 1), got " + std::to_string(c.momentum));
  }
  if (!(std::isfinite(o.proximal_mu) && o.proximal_mu >= 0)) {
    return InvalidArgument("digits Fit: proximal_mu must be finite and >= 0, got " + std::to_string(o.proximal_mu));
  }
  return Status::Ok();
}

}  // namespace

std::vector<float> ScaledPixels(const DigitsData& data) {
  std::vector<float> x(data.pixels.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(data.pixels[i]) / static_cast<float>(kMaxPixel);
  return x;
}

StatusOr<SgdResult> TrainSgd(DigitsModel* model, const std::vector<float>& x, const std::vector<uint8_t>& y,
                             const SgdOptions& options) {
  GREENFED_RETURN_IF_ERROR(ValidateSgd(options));
  if (options.correction != nullptr) {
    bool same = options.correction->size() == model->weights().size();
    for (size_t t = 0; same && t < model->weights().size(); ++t) {
      same = (*options.correction)[t].size() == model->weights()[t].size();
    }
    if (!same) return InvalidArgument("digits Fit: the control variate's shapes differ from the model's");
  }
  if (options.velocity != nullptr && !options.velocity->empty()) {
    bool same = options.velocity->size() == model->weights().size();
    for (size_t t = 0; same && t < model->weights().size(); ++t) {
      same = (*options.velocity)[t].size() == model->weights()[t].size();
    }
    if (!same) return InvalidArgument("digits Fit: the kept momentum buffers' shapes differ from the model's");
  }
  const TrainConfig& c = options.train;
  const size_t n = y.size();
  if (n == 0) return FailedPrecondition("digits Fit: no training examples");
  Weights& w = model->weights();
  const Weights start = w;  // the proximal term's anchor (the global weights)
  Weights fresh_velocity;
  if (options.velocity == nullptr || options.velocity->empty()) fresh_velocity = model->ZerosLike();
  Weights& velocity = options.velocity != nullptr && !options.velocity->empty() ? *options.velocity : fresh_velocity;
  Weights grads = model->ZerosLike();
  std::vector<float> batch_x;
  std::vector<uint8_t> batch_y;
  DeterministicRng rng(c.seed);
  std::vector<uint32_t> order = FirstN(n);
  const auto lr = static_cast<float>(c.learning_rate);
  const auto mu = static_cast<float>(c.momentum);
  const auto prox = static_cast<float>(options.proximal_mu);
  double epoch_loss_sum = 0;
  uint64_t steps = 0;
  for (uint32_t epoch = 0; epoch < c.epochs; ++epoch) {
    rng.Shuffle(&order);
    epoch_loss_sum = 0;
    for (size_t begin = 0; begin < n; begin += c.batch_size) {
      const size_t end = std::min(n, begin + c.batch_size);
      batch_x.clear();
      batch_y.clear();
      for (size_t i = begin; i < end; ++i) {
        const auto row = x.begin() + static_cast<std::ptrdiff_t>(size_t{order[i]} * kNumFeatures);
        batch_x.insert(batch_x.end(), row, row + kNumFeatures);
        batch_y.push_back(y[order[i]]);
      }
      for (auto& g : grads) std::fill(g.begin(), g.end(), 0.0f);
      const double loss = model->LossAndGrad(batch_x.data(), batch_y.data(), end - begin, &grads);
      if (!std::isfinite(loss)) {
        return OutOfRange("digits Fit: loss became " + std::to_string(loss) + " in epoch " +
                          std::to_string(epoch + 1) + " at example " + std::to_string(begin) + " (learning_rate " +
                          std::to_string(c.learning_rate) + " too high?)");
      }
      for (size_t t = 0; t < w.size(); ++t) {
        for (size_t k = 0; k < w[t].size(); ++k) {
          float g = grads[t][k];
          if (prox > 0) g += prox * (w[t][k] - start[t][k]);
          if (options.correction != nullptr) g += (*options.correction)[t][k];
          velocity[t][k] = mu * velocity[t][k] + g;
          w[t][k] -= lr * velocity[t][k];
        }
      }
      epoch_loss_sum += loss * static_cast<double>(end - begin);
      ++steps;
    }
  }
  for (const auto& t : w) {
    for (float v : t) {
      if (!std::isfinite(v)) return OutOfRange("digits Fit: a weight became non-finite (learning_rate too high?)");
    }
  }
  if (options.velocity != nullptr && options.velocity->empty()) *options.velocity = std::move(fresh_velocity);
  SgdResult result;
  result.train_loss = epoch_loss_sum / static_cast<double>(n);
  result.steps = steps;
  return result;
}

struct DigitsTask::Impl {
  TaskOptions options;
  bool prepared = false;
  std::unique_ptr<DigitsModel> model;
  std::vector<float> train_x;
  std::vector<uint8_t> train_y;
  std::vector<float> test_x;
  std::vector<uint8_t> test_y;
  std::vector<uint8_t> all_train_labels;  // labels of the whole train split (ShardSizes); empty with own data
  std::vector<int64_t> train_histogram;
  std::shared_ptr<const DigitsData> shared;  // NewShardView: the CSV, read once
};

DigitsTask::DigitsTask() : impl_(std::make_unique<Impl>()) {}
DigitsTask::~DigitsTask() = default;

Status DigitsTask::Prepare(const TaskOptions& options) { return PrepareFrom(options, nullptr); }

StatusOr<std::unique_ptr<Task>> DigitsTask::NewShardView(const TaskOptions& client_options) {
  if (client_options.role != TaskRole::kClient || !client_options.own_data_path.empty()) {
    return InvalidArgument("digits: a shard view is for a partitioned client");
  }
  if (!impl_->shared) {
    const std::string dir = client_options.data_dir.empty() ? std::string(kDefaultDataDir) : client_options.data_dir;
    GREENFED_ASSIGN_OR_RETURN(DigitsData all, ReadDigitsCsv(dir + "/" + kDigitsFile));
    impl_->shared = std::make_shared<const DigitsData>(std::move(all));
  }
  auto view = std::make_unique<DigitsTask>();
  GREENFED_RETURN_IF_ERROR(view->PrepareFrom(client_options, impl_->shared.get()));
  return std::unique_ptr<Task>(std::move(view));
}

Status DigitsTask::PrepareFrom(const TaskOptions& options, const DigitsData* shared) {
  auto fresh = std::make_unique<Impl>();
  fresh->options = options;
  TaskOptions& o = fresh->options;
  if (o.data_dir.empty()) o.data_dir = kDefaultDataDir;
  if (o.model.empty()) o.model = kDefaultModel;
  if (o.role != TaskRole::kClient && o.role != TaskRole::kCoordinator && o.role != TaskRole::kCentralized) {
    return InvalidArgument("digits: unknown role " + std::to_string(static_cast<int>(o.role)));
  }
  if (!o.own_data_path.empty() && o.role != TaskRole::kClient) {
    return InvalidArgument(std::string("digits: own data (--data) is for the client role, not ") + RoleName(o.role));
  }
  GREENFED_ASSIGN_OR_RETURN(DigitsModel model, DigitsModel::Create(o.model));
  model.Initialize(o.init_seed);
  fresh->model = std::make_unique<DigitsModel>(std::move(model));

  DigitsData train;
  DigitsData test;
  if (!o.own_data_path.empty()) {
    GREENFED_ASSIGN_OR_RETURN(train, ReadDigitsCsv(o.own_data_path));
    std::vector<uint32_t> keep = FirstN(train.count());
    Cap(o.max_train_examples, &keep);
    train = Select(train, keep);
  } else {
    DigitsData read;
    if (shared == nullptr) {
      GREENFED_ASSIGN_OR_RETURN(read, ReadDigitsCsv(o.data_dir + "/" + kDigitsFile));
    }
    const DigitsData& all = shared != nullptr ? *shared : read;
    const TrainTestSplit split = StratifiedSplit(all.labels, kTestPerClass, kSplitSeed);
    fresh->all_train_labels = LabelsOf(all.labels, split.train);
    const std::vector<uint8_t> test_labels = LabelsOf(all.labels, split.test);
    std::vector<uint32_t> train_pick;  // indices into split.train
    std::vector<uint32_t> test_pick;   // indices into split.test
    if (o.role == TaskRole::kClient) {
      auto shard = PartitionIndices(fresh->all_train_labels, o.partition, o.client_index, kNumClasses);
      if (!shard.ok()) return shard.status().WithContext("digits: partitioning the training set");
      train_pick = std::move(shard).value();
      PartitionSpec test_split;
      test_split.scheme = "iid";
      test_split.seed = o.partition.seed;
      test_split.num_clients = o.partition.num_clients;
      auto test_shard = PartitionIndices(test_labels, test_split, o.client_index, kNumClasses);
      if (!test_shard.ok()) return test_shard.status().WithContext("digits: splitting the test set");
      test_pick = std::move(test_shard).value();
    } else {
      if (o.role == TaskRole::kCentralized) train_pick = FirstN(split.train.size());
      test_pick = FirstN(split.test.size());
    }
    Cap(o.max_train_examples, &train_pick);
    Cap(o.max_test_examples, &test_pick);
    std::vector<uint32_t> train_rows;
    for (uint32_t i : train_pick) train_rows.push_back(split.train[i]);
    std::vector<uint32_t> test_rows;
    for (uint32_t i : test_pick) test_rows.push_back(split.test[i]);
    train = Select(all, train_rows);
    test = Select(all, test_rows);
  }
  fresh->train_x = ScaledPixels(train);
  fresh->train_y = train.labels;
  fresh->test_x = ScaledPixels(test);
  fresh->test_y = test.labels;
  fresh->train_histogram = LabelHistogram(train.labels, FirstN(train.count()), kNumClasses);
  fresh->prepared = true;
  impl_ = std::move(fresh);
  return Status::Ok();
}

StatusOr<Parameters> DigitsTask::InitialParameters() {
  if (!impl_->prepared) return FailedPrecondition("digits: InitialParameters called before Prepare");
  // A fresh model each time: depends on init_seed only, not on earlier Fits.
  GREENFED_ASSIGN_OR_RETURN(DigitsModel model, DigitsModel::Create(impl_->options.model));
  model.Initialize(impl_->options.init_seed);
  return model.GetParameters();
}

namespace {

constexpr char kControlGroup[] = "control";
constexpr char kMomentumGroup[] = "momentum";

// A tensor group of the model's layout as weights (ValidateAgainst the model's specs).
StatusOr<Weights> GroupWeights(const DigitsModel& model, const Parameters& group, const std::string& what) {
  GREENFED_RETURN_IF_ERROR(ValidateAgainst(group, model.Specs()).WithContext("digits Fit: group " + what));
  Weights w;
  for (const TensorBlob& b : group) w.push_back(FloatValues(b));
  return w;
}

Parameters GroupOf(const DigitsModel& model, const Weights& w) {
  Parameters out;
  const std::vector<TensorSpec> specs = model.Specs();
  for (size_t t = 0; t < specs.size(); ++t) out.push_back(MakeFloatBlob(specs[t].name, specs[t].shape, w[t]));
  return out;
}

}  // namespace

StatusOr<FitResult> DigitsTask::Fit(const FitRequest& request, ClientState& state) {
  if (!impl_->prepared) return FailedPrecondition("digits: Fit called before Prepare");
  if (impl_->train_y.empty()) {
    return FailedPrecondition(std::string("digits: Fit needs training data, role ") + RoleName(impl_->options.role) +
                              " has none");
  }
  SgdOptions sgd;
  StatusOr<TrainConfig> parsed = ParseTrainConfig(request.config);
  if (!parsed.ok()) return parsed.status().WithContext("digits Fit");
  sgd.train = *parsed;
  StatusOr<double> mu = ConfigDouble(request.config, "proximal_mu", 0.0);
  if (!mu.ok()) return mu.status().WithContext("digits Fit");
  sgd.proximal_mu = *mu;
  DigitsModel& model = *impl_->model;
  GREENFED_RETURN_IF_ERROR(model.SetParameters(request.parameters));
  const Weights global = model.weights();

  // SCAFFOLD: c from the coordinator, c_i from this client's state (zero at first).
  const auto c_it = request.groups.find(kControlGroup);
  const bool scaffold = c_it != request.groups.end();
  Weights c;
  Weights c_i = model.ZerosLike();
  Weights correction;
  if (scaffold) {
    GREENFED_ASSIGN_OR_RETURN(c, GroupWeights(model, c_it->second, kControlGroup));
    if (auto s = state.find(kControlGroup); s != state.end()) {
      GREENFED_ASSIGN_OR_RETURN(c_i, GroupWeights(model, s->second, "control (client state)"));
    }
    correction = model.ZerosLike();
    for (size_t t = 0; t < c.size(); ++t) {
      for (size_t k = 0; k < c[t].size(); ++k) correction[t][k] = c[t][k] - c_i[t][k];
    }
    sgd.correction = &correction;
  }
  Weights velocity;
  if (impl_->options.persist_momentum) {
    if (auto s = state.find(kMomentumGroup); s != state.end()) {
      GREENFED_ASSIGN_OR_RETURN(velocity, GroupWeights(model, s->second, "momentum (client state)"));
    }
    sgd.velocity = &velocity;
  }

  GREENFED_ASSIGN_OR_RETURN(SgdResult trained, TrainSgd(&model, impl_->train_x, impl_->train_y, sgd));
  FitResult result;
  result.parameters = model.GetParameters();
  result.num_examples = impl_->train_y.size();
  result.train_loss = trained.train_loss;
  if (scaffold && trained.steps > 0) {
    const double scale = 1.0 / (static_cast<double>(trained.steps) * sgd.train.learning_rate);
    Weights c_new = model.ZerosLike();
    Weights delta = model.ZerosLike();
    const Weights& local = model.weights();
    for (size_t t = 0; t < c.size(); ++t) {
      for (size_t k = 0; k < c[t].size(); ++k) {
        c_new[t][k] = static_cast<float>(c_i[t][k] - c[t][k] + (global[t][k] - local[t][k]) * scale);
        delta[t][k] = c_new[t][k] - c_i[t][k];
      }
    }
    result.groups[kControlGroup] = GroupOf(model, delta);
    state[kControlGroup] = GroupOf(model, c_new);
  }
  if (impl_->options.persist_momentum) state[kMomentumGroup] = GroupOf(model, velocity);
  return result;
}

std::vector<std::string> DigitsTask::Capabilities() const { return {kCapabilityFedProx, kCapabilityScaffold}; }

StatusOr<EvalResult> DigitsTask::Evaluate(const Parameters& parameters) {
  if (!impl_->prepared) return FailedPrecondition("digits: Evaluate called before Prepare");
  if (impl_->test_y.empty()) {
    return FailedPrecondition(impl_->options.own_data_path.empty()
                                  ? "digits: Evaluate has no test examples"
                                  : "digits: a client on its own data (--data) has no test set to evaluate on");
  }
  GREENFED_RETURN_IF_ERROR(impl_->model->SetParameters(parameters));
  double loss_sum = 0;
  uint64_t correct = 0;
  impl_->model->Evaluate(impl_->test_x.data(), impl_->test_y.data(), impl_->test_y.size(), &loss_sum, &correct);
  EvalResult r;
  r.num_examples = impl_->test_y.size();
  r.loss = loss_sum / static_cast<double>(r.num_examples);
  r.accuracy = static_cast<double>(correct) / static_cast<double>(r.num_examples);
  if (!std::isfinite(r.loss)) return OutOfRange("digits Evaluate: the loss is not finite");
  return r;
}

uint64_t DigitsTask::NumTrainExamples() const { return impl_->prepared ? impl_->train_y.size() : 0; }
uint64_t DigitsTask::NumTestExamples() const { return impl_->prepared ? impl_->test_y.size() : 0; }
std::vector<int64_t> DigitsTask::TrainLabelHistogram() const { return impl_->train_histogram; }

StatusOr<std::vector<uint64_t>> DigitsTask::ShardSizes(const PartitionSpec& spec) const {
  if (!impl_->prepared) return FailedPrecondition("digits: ShardSizes called before Prepare");
  if (impl_->all_train_labels.empty()) {
    return FailedPrecondition("digits: clients on their own data have no partition to size");
  }
  return greenfed::ShardSizes(impl_->all_train_labels, spec, kNumClasses);
}

Status RegisterDigits(TaskRegistry* registry) {
  if (registry == nullptr) return InvalidArgument("RegisterDigits needs a registry");
  return registry->Register(kDigitsTaskName, []() -> std::unique_ptr<Task> { return std::make_unique<DigitsTask>(); });
}

}  // namespace greenfed::digits
