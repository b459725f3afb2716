#include "fashion_mnist/task.h"

#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <string>
#include <utility>

#include "fashion_mnist/blas.h"
#include "fashion_mnist/idx.h"
#include "fashion_mnist/model.h"
#include "fashion_mnist/model_torch.h"
#include "greenfed/partition.h"

namespace greenfed::fmnist {
namespace {

// Fashion-MNIST training-set pixel mean and standard deviation on [0, 1].
constexpr float kPixelMean = 0.2860f;
constexpr float kPixelStd = 0.3530f;
// Evaluation batch. Measured here (bench-style loop, 10,000 images, 1 thread):
// batches of 32..256 take ~1.7 s, batches of 1000 ~7.0 s, because the larger
// activations fall out of cache and are freshly mapped on every allocation.
constexpr int64_t kEvalBatch = 256;
constexpr int64_t kImagePixels = int64_t{kImageRows} * kImageCols;

const char* RoleName(TaskRole role) {
  switch (role) {
    case TaskRole::kClient: return "client";
    case TaskRole::kCoordinator: return "coordinator";
    case TaskRole::kCentralized: return "centralized";
  }
  return "unknown";
}

std::vector<uint32_t> FirstN(uint32_t count) {
  std::vector<uint32_t> v(count);
  for (uint32_t i = 0; i < count; ++i) v[i] = i;
  return v;
}

void Cap(uint64_t max_examples, std::vector<uint32_t>* indices) {
  if (max_examples != 0 && indices->size() > max_examples) indices->resize(static_cast<size_t>(max_examples));
}

// [N, 1, 28, 28] normalised float images of `indices`, built once per Prepare so
// that training only index_selects batches out of it.
torch::Tensor ImagesTensor(const IdxImages& images, const std::vector<uint32_t>& indices) {
  float table[256];
  for (int v = 0; v < 256; ++v) table[v] = (static_cast<float>(v) / 255.0f - kPixelMean) / kPixelStd;
  const auto n = static_cast<int64_t>(indices.size());
  torch::Tensor x = torch::empty({n, 1, kImageRows, kImageCols}, torch::kFloat32);
  float* dst = x.data_ptr<float>();
  for (size_t i = 0; i < indices.size(); ++i) {
    const uint8_t* src = images.pixels.data() + size_t{indices[i]} * kImagePixels;
    float* out = dst + i * kImagePixels;
    for (int64_t p = 0; p < kImagePixels; ++p) out[p] = table[src[p]];
  }
  return x;
}

torch::Tensor LabelsTensor(const IdxLabels& labels, const std::vector<uint32_t>& indices) {
  torch::Tensor y = torch::empty({static_cast<int64_t>(indices.size())}, torch::kInt64);
  int64_t* dst = y.data_ptr<int64_t>();
  for (size_t i = 0; i < indices.size(); ++i) dst[i] = labels.labels[indices[i]];
  return y;
}

Status ValidateTrainConfig(const TrainConfig& config) {
  if (config.epochs == 0) return InvalidArgument("fashion_mnist Fit: epochs must be >= 1, got 0");
  if (config.batch_size == 0) return InvalidArgument("fashion_mnist Fit: batch_size must be >= 1, got 0");
  if (!(std::isfinite(config.learning_rate) && config.learning_rate > 0)) {
    return InvalidArgument("fashion_mnist Fit: learning_rate must be finite and > 0, got " +
                           std::to_string(config.learning_rate));
  }
  if (!(config.momentum >= 0 && config.momentum < 1)) {
    return InvalidArgument("fashion_mnist Fit: momentum must be in [0, 1), got " + std::to_string(config.momentum));
  }
  return Status::Ok();
}

// ClientState keys of this task.
constexpr const char* kStateControl = "scaffold.c_i";   // SCAFFOLD's client control variate c_i
constexpr const char* kStateMomentum = "sgd.momentum";  // SGD momentum buffers (persist_momentum)

// A float32 tensor holding a copy of `blob` (which must be f32).
torch::Tensor ToTensor(const TensorBlob& blob) {
  torch::Tensor t = torch::empty(blob.shape, torch::kFloat32);
  if (!blob.data.empty()) std::memcpy(t.data_ptr<float>(), blob.data.data(), blob.data.size());
  return t;
}

// `tensors` (contiguous float32, in Net::Impl::params order) as blobs named by `specs`.
Parameters ToBlobs(const std::vector<torch::Tensor>& tensors, const std::vector<TensorSpec>& specs) {
  Parameters out;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const torch::Tensor t = tensors[i].contiguous();
    TensorBlob b;
    b.name = specs[i].name;
    b.dtype = DType::kFloat32;
    b.shape = specs[i].shape;
    b.data.resize(static_cast<size_t>(t.numel()) * sizeof(float));
    if (!b.data.empty()) std::memcpy(b.data.data(), t.data_ptr<float>(), b.data.size());
    out.push_back(std::move(b));
  }
  return out;
}

std::vector<torch::Tensor> ToTensors(const Parameters& blobs) {
  std::vector<torch::Tensor> out;
  out.reserve(blobs.size());
  for (const auto& b : blobs) out.push_back(ToTensor(b));
  return out;
}

// Runs `body` and turns a libtorch or standard exception into Internal.
template <typename T, typename Body>
StatusOr<T> Guarded(const char* what, Body&& body) {
  try {
    return body();
  } catch (const c10::Error& e) {
    return Internal(std::string("fashion_mnist ") + what + ": " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    return Internal(std::string("fashion_mnist ") + what + ": " + e.what());
  }
}

}  // namespace

struct FashionMnistTask::Impl {
  TaskOptions options;
  ModelRegistry models;
  std::unique_ptr<Net> net;            // the model Fit and Evaluate load weights into
  bool prepared = false;
  torch::Tensor train_x;               // [N, 1, 28, 28] float32, normalised
  torch::Tensor train_y;               // [N] int64
  torch::Tensor test_x;
  torch::Tensor test_y;
  std::vector<int64_t> train_histogram;
  // Shared data (NewShardView). The base task: the data set, loaded once. A view:
  // the same pointer and its own index lists; its tensors and model exist only
  // during a Fit or an Evaluate.
  std::shared_ptr<const FashionMnist> shared;
  bool view = false;
  std::vector<uint32_t> view_train, view_test;

  Status PrepareData(const FashionMnist& data);
  Status ShardIndices(const FashionMnist& data, std::vector<uint32_t>* train, std::vector<uint32_t>* test) const;
  // A view's tensors and model for one call, and their release after it.
  Status Materialize();
  void Release();
  StatusOr<FitResult> Train(const FitRequest& request, const TrainConfig& config, double mu, ClientState& state);
  StatusOr<EvalResult> Test(const Parameters& parameters);
};

Status FashionMnistTask::Impl::PrepareData(const FashionMnist& data) {
  std::vector<uint32_t> train_indices;
  std::vector<uint32_t> test_indices;
  GREENFED_RETURN_IF_ERROR(ShardIndices(data, &train_indices, &test_indices));
  train_x = ImagesTensor(data.train_images, train_indices);
  train_y = LabelsTensor(data.train_labels, train_indices);
  test_x = ImagesTensor(data.test_images, test_indices);
  test_y = LabelsTensor(data.test_labels, test_indices);
  train_histogram = LabelHistogram(data.train_labels.labels, train_indices, kNumClasses);
  return Status::Ok();
}

Status FashionMnistTask::Impl::Materialize() {
  if (!view) return Status::Ok();
  train_x = ImagesTensor(shared->train_images, view_train);
  train_y = LabelsTensor(shared->train_labels, view_train);
  test_x = ImagesTensor(shared->test_images, view_test);
  test_y = LabelsTensor(shared->test_labels, view_test);
  GREENFED_ASSIGN_OR_RETURN(net, models.Create(options.model, options.init_seed));
  return Status::Ok();
}

void FashionMnistTask::Impl::Release() {
  if (!view) return;
  train_x = train_y = test_x = test_y = torch::Tensor();
  net.reset();
}

Status FashionMnistTask::Impl::ShardIndices(const FashionMnist& data, std::vector<uint32_t>* train_out,
                                            std::vector<uint32_t>* test_out) const {
  const TaskOptions& o = options;
  std::vector<uint32_t>& train_indices = *train_out;
  std::vector<uint32_t>& test_indices = *test_out;
  if (!o.own_data_path.empty()) {
    train_indices = FirstN(data.train_images.count);  // own data: all of it, no test set
  } else if (o.role == TaskRole::kClient) {
    GREENFED_ASSIGN_OR_RETURN(train_indices, PartitionIndices(data.train_labels.labels, o.partition, o.client_index, kNumClasses));
    PartitionSpec test_split;
    test_split.scheme = "iid";
    test_split.seed = o.partition.seed;
    test_split.num_clients = o.partition.num_clients;
    StatusOr<std::vector<uint32_t>> test_shard = PartitionIndices(data.test_labels.labels, test_split, o.client_index, kNumClasses);
    if (!test_shard.ok()) return test_shard.status().WithContext("fashion_mnist: splitting the test set");
    test_indices = std::move(test_shard).value();
  } else {
    if (o.role == TaskRole::kCentralized) train_indices = FirstN(data.train_images.count);
    test_indices = FirstN(data.test_images.count);
  }
  Cap(o.max_train_examples, &train_indices);
  Cap(o.max_test_examples, &test_indices);
  return Status::Ok();
}

// Local training. Beyond plain SGD (with momentum):
// - FedProx (Li et al. 2020): with mu > 0 the objective gains mu/2 ||w - w_global||^2,
//   i.e. the gradient gains mu (w - w_global), added to p.grad before each step.
// - SCAFFOLD (Karimireddy et al. 2020, Alg. 1, option II) when the request carries
//   group "control" (c): each step uses g(y) + c - c_i, with c_i from the state
//   (zeros when absent). With momentum > 0, which the paper does not define, the
//   corrected gradient goes into the SGD-momentum step as the plain one would.
//   After K steps: c_i+ = c_i - c + (x - y) / (K lr) (option II); the result
//   carries group "control" = c_i+ - c_i and the state keeps c_i+. For plain SGD
//   that is the mean of the K raw minibatch gradients g(y_k); with momentum the
//   steps are up to 1/(1 - momentum) times longer, so (x - y) / (K lr) would
//   overstate the gradient by that much (and the run diverges: measured with
//   momentum 0.9 on shards), and c_i+ is that mean of raw gradients instead.
// - persist_momentum: the momentum buffers start from the state and are kept there.
StatusOr<FitResult> FashionMnistTask::Impl::Train(const FitRequest& request, const TrainConfig& config, double mu,
                                                  ClientState& state) {
  GREENFED_RETURN_IF_ERROR(net->SetParameters(request.parameters));
  Net::Impl& m = net->impl();
  torch::manual_seed(config.seed);  // for any randomness inside a model; the built-ins have none
  m.module->train();
  torch::optim::SGD optimizer(m.module->parameters(),
                              torch::optim::SGDOptions(config.learning_rate).momentum(config.momentum));

  std::vector<torch::Tensor> global;  // x: the weights this round started from
  if (mu > 0 || request.groups.count(kGroupControl) != 0) global = ToTensors(request.parameters);

  const auto control = request.groups.find(kGroupControl);
  const bool scaffold = control != request.groups.end();
  std::vector<torch::Tensor> c, c_i, correction;  // correction = c - c_i
  if (scaffold) {
    GREENFED_RETURN_IF_ERROR(ValidateAgainst(control->second, m.specs).WithContext("group 'control'"));
    c = ToTensors(control->second);
    const auto kept = state.find(kStateControl);
    if (kept != state.end()) {
      GREENFED_RETURN_IF_ERROR(ValidateAgainst(kept->second, m.specs).WithContext("client state c_i"));
      c_i = ToTensors(kept->second);
    } else {
      for (const auto& t : c) c_i.push_back(torch::zeros_like(t));
    }
    for (size_t i = 0; i < c.size(); ++i) correction.push_back(c[i] - c_i[i]);
  }
  // With momentum: the sum of the raw minibatch gradients, for c_i+ (see above).
  const bool mean_gradient = scaffold && config.momentum > 0;
  std::vector<torch::Tensor> gradient_sum;
  if (mean_gradient) {
    for (const auto& p : m.params) gradient_sum.push_back(torch::zeros_like(p));
  }

  if (options.persist_momentum && config.momentum > 0) {
    const auto kept = state.find(kStateMomentum);
    if (kept != state.end()) {
      GREENFED_RETURN_IF_ERROR(ValidateAgainst(kept->second, m.specs).WithContext("client state momentum"));
      for (size_t i = 0; i < m.params.size(); ++i) {
        auto buffer = std::make_unique<torch::optim::SGDParamState>();
        buffer->momentum_buffer(ToTensor(kept->second[i]));
        optimizer.state()[c10::guts::to_string(m.params[i].unsafeGetTensorImpl())] = std::move(buffer);
      }
    }
  }

  const int64_t n = train_x.size(0);
  const int64_t batch = config.batch_size;
  uint64_t steps = 0;  // K
  DeterministicRng rng(config.seed);
  std::vector<uint32_t> order = FirstN(static_cast<uint32_t>(n));
  torch::Tensor perm = torch::empty({n}, torch::kInt64);
  double epoch_loss_sum = 0;
  for (uint32_t epoch = 0; epoch < config.epochs; ++epoch) {
    rng.Shuffle(&order);
    int64_t* p = perm.data_ptr<int64_t>();
    for (int64_t i = 0; i < n; ++i) p[i] = order[static_cast<size_t>(i)];
    epoch_loss_sum = 0;
    for (int64_t start = 0; start < n; start += batch) {
      const int64_t end = std::min(n, start + batch);
      const torch::Tensor idx = perm.slice(0, start, end);
      const torch::Tensor x = train_x.index_select(0, idx);
      const torch::Tensor y = train_y.index_select(0, idx);
      optimizer.zero_grad();
      torch::Tensor loss = torch::nn::functional::cross_entropy(m.forward(x), y);
      loss.backward();
      if (mu > 0 || scaffold) {
        torch::NoGradGuard no_grad;
        for (size_t i = 0; i < m.params.size(); ++i) {
          torch::Tensor& grad = m.params[i].mutable_grad();
          if (mean_gradient) gradient_sum[i].add_(grad);
          if (mu > 0) grad.add_(m.params[i] - global[i], mu);
          if (scaffold) grad.add_(correction[i]);
        }
      }
      optimizer.step();
      ++steps;
      const double batch_loss = loss.item<double>();
      if (!std::isfinite(batch_loss)) {
        return OutOfRange("fashion_mnist Fit: loss became " + std::to_string(batch_loss) + " in epoch " +
                          std::to_string(epoch + 1) + " at example " + std::to_string(start) +
                          " (learning_rate " + std::to_string(config.learning_rate) + " too high?)");
      }
      epoch_loss_sum += batch_loss * static_cast<double>(end - start);
    }
  }
  FitResult result;
  GREENFED_ASSIGN_OR_RETURN(result.parameters, net->GetParameters());
  if (scaffold) {
    torch::NoGradGuard no_grad;
    const double k_lr = static_cast<double>(steps) * config.learning_rate;
    std::vector<torch::Tensor> c_next, dc;
    for (size_t i = 0; i < m.params.size(); ++i) {
      c_next.push_back(mean_gradient ? gradient_sum[i] / static_cast<double>(steps)
                                     : c_i[i] - c[i] + (global[i] - m.params[i].detach()) / k_lr);
      dc.push_back(c_next[i] - c_i[i]);
    }
    result.groups[kGroupControl] = ToBlobs(dc, m.specs);
    state[kStateControl] = ToBlobs(c_next, m.specs);
  }
  if (options.persist_momentum && config.momentum > 0) {
    std::vector<torch::Tensor> buffers;
    for (const auto& p : m.params) {
      const auto it = optimizer.state().find(c10::guts::to_string(p.unsafeGetTensorImpl()));
      if (it == optimizer.state().end()) break;
      buffers.push_back(static_cast<torch::optim::SGDParamState&>(*it->second).momentum_buffer());
    }
    if (buffers.size() == m.params.size()) state[kStateMomentum] = ToBlobs(buffers, m.specs);
  }
  result.num_examples = static_cast<uint64_t>(n);
  result.train_loss = epoch_loss_sum / static_cast<double>(n);
  return result;
}

StatusOr<EvalResult> FashionMnistTask::Impl::Test(const Parameters& parameters) {
  GREENFED_RETURN_IF_ERROR(net->SetParameters(parameters));
  Net::Impl& m = net->impl();
  torch::NoGradGuard no_grad;
  m.module->eval();
  const int64_t n = test_x.size(0);
  double loss_sum = 0;
  int64_t correct = 0;
  const auto sum = torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum);
  for (int64_t start = 0; start < n; start += kEvalBatch) {
    const int64_t end = std::min(n, start + kEvalBatch);
    const torch::Tensor y = test_y.slice(0, start, end);
    const torch::Tensor logits = m.forward(test_x.slice(0, start, end));
    loss_sum += torch::nn::functional::cross_entropy(logits, y, sum).item<double>();
    correct += logits.argmax(1).eq(y).sum().item<int64_t>();
  }
  EvalResult result;
  result.num_examples = static_cast<uint64_t>(n);
  result.loss = loss_sum / static_cast<double>(n);
  result.accuracy = static_cast<double>(correct) / static_cast<double>(n);
  return result;
}

FashionMnistTask::FashionMnistTask() : impl_(std::make_unique<Impl>()) {}
FashionMnistTask::~FashionMnistTask() = default;

Status FashionMnistTask::Prepare(const TaskOptions& options) {
  auto fresh = std::make_unique<Impl>();
  fresh->options = options;
  if (fresh->options.data_dir.empty()) fresh->options.data_dir = kDefaultDataDir;
  if (options.threads < 1) {
    return InvalidArgument("fashion_mnist: threads must be >= 1, got " + std::to_string(options.threads));
  }
  if (options.role != TaskRole::kClient && options.role != TaskRole::kCoordinator &&
      options.role != TaskRole::kCentralized) {
    return InvalidArgument("fashion_mnist: unknown role " + std::to_string(static_cast<int>(options.role)));
  }
  GREENFED_RETURN_IF_ERROR(RegisterBuiltinModels(&fresh->models));
  if (!fresh->models.Contains(options.model)) {
    std::string known;
    for (const std::string& name : fresh->models.Names()) known += (known.empty() ? "" : ", ") + name;
    return NotFound("fashion_mnist: unknown model '" + options.model + "' (registered: " + known + ")");
  }
  const bool need_train = options.role != TaskRole::kCoordinator;
  const bool own_data = !options.own_data_path.empty();
  if (own_data && options.role != TaskRole::kClient) {
    return InvalidArgument(std::string("fashion_mnist: own data (--data) is for the client role, not ") +
                           RoleName(options.role));
  }
  GREENFED_ASSIGN_OR_RETURN(FashionMnist data,
                            own_data ? LoadFashionMnist(options.own_data_path, true, false)
                                     : LoadFashionMnist(fresh->options.data_dir, need_train, true));
  StatusOr<bool> done = Guarded<bool>("Prepare", [&]() -> StatusOr<bool> {
    torch::set_num_threads(options.threads);
    PinBlasToOneThread();  // blas.h: parallelism comes from processes and workers, not the BLAS
    GREENFED_RETURN_IF_ERROR(fresh->PrepareData(data));
    GREENFED_ASSIGN_OR_RETURN(fresh->net, fresh->models.Create(options.model, options.init_seed));
    return true;
  });
  if (!done.ok()) return done.status().WithContext(std::string("role ") + RoleName(options.role));
  fresh->prepared = true;
  impl_ = std::move(fresh);
  return Status::Ok();
}

StatusOr<Parameters> FashionMnistTask::InitialParameters() {
  if (!impl_->prepared) return FailedPrecondition("fashion_mnist: InitialParameters called before Prepare");
  // A fresh model each time: the result depends on init_seed only, not on earlier Fits.
  return Guarded<Parameters>("InitialParameters", [&]() -> StatusOr<Parameters> {
    GREENFED_ASSIGN_OR_RETURN(std::unique_ptr<Net> net,
                              impl_->models.Create(impl_->options.model, impl_->options.init_seed));
    return net->GetParameters();
  });
}

StatusOr<FitResult> FashionMnistTask::Fit(const FitRequest& request, ClientState& state) {
  if (!impl_->prepared) return FailedPrecondition("fashion_mnist: Fit called before Prepare");
  if (NumTrainExamples() == 0) {
    return FailedPrecondition(std::string("fashion_mnist: Fit needs training data, role ") +
                              RoleName(impl_->options.role) + " has none");
  }
  StatusOr<TrainConfig> parsed = ParseTrainConfig(request.config);
  if (!parsed.ok()) return parsed.status().WithContext("fashion_mnist Fit");
  const TrainConfig& config = *parsed;
  GREENFED_RETURN_IF_ERROR(ValidateTrainConfig(config));
  StatusOr<double> mu = ConfigDouble(request.config, kConfigProximalMu, 0.0);
  if (!mu.ok()) return mu.status().WithContext("fashion_mnist Fit");
  if (!(std::isfinite(*mu) && *mu >= 0)) {
    return InvalidArgument("fashion_mnist Fit: proximal_mu must be finite and >= 0, got " + std::to_string(*mu));
  }
  for (const auto& [name, group] : request.groups) {
    if (name != kGroupControl) {
      return InvalidArgument("fashion_mnist Fit: unknown tensor group '" + name + "' (knows 'control')");
    }
    (void)group;
  }
  // The state changes only when the whole Fit succeeds.
  ClientState next = state;
  StatusOr<FitResult> result = Guarded<FitResult>("Fit", [&]() -> StatusOr<FitResult> {
    GREENFED_RETURN_IF_ERROR(impl_->Materialize());
    StatusOr<FitResult> trained = impl_->Train(request, config, *mu, next);
    impl_->Release();
    return trained;
  });
  if (result.ok()) state = std::move(next);
  return result;
}

StatusOr<EvalResult> FashionMnistTask::Evaluate(const Parameters& parameters) {
  if (!impl_->prepared) return FailedPrecondition("fashion_mnist: Evaluate called before Prepare");
  if (NumTestExamples() == 0) return FailedPrecondition("fashion_mnist: Evaluate has no test examples");
  return Guarded<EvalResult>("Evaluate", [&]() -> StatusOr<EvalResult> {
    GREENFED_RETURN_IF_ERROR(impl_->Materialize());
    StatusOr<EvalResult> tested = impl_->Test(parameters);
    impl_->Release();
    return tested;
  });
}

uint64_t FashionMnistTask::NumTrainExamples() const {
  if (impl_->view) return impl_->view_train.size();
  return impl_->prepared ? static_cast<uint64_t>(impl_->train_x.size(0)) : 0;
}

StatusOr<std::vector<uint64_t>> FashionMnistTask::ShardSizes(const PartitionSpec& spec) const {
  if (!impl_->prepared) return FailedPrecondition("fashion_mnist: ShardSizes called before Prepare");
  GREENFED_ASSIGN_OR_RETURN(IdxLabels labels, ReadIdxLabels(impl_->options.data_dir + "/" + kTrainLabelsFile));
  return greenfed::ShardSizes(labels.labels, spec, kNumClasses);
}

uint64_t FashionMnistTask::NumTestExamples() const {
  if (impl_->view) return impl_->view_test.size();
  return impl_->prepared ? static_cast<uint64_t>(impl_->test_x.size(0)) : 0;
}

StatusOr<std::unique_ptr<Task>> FashionMnistTask::NewShardView(const TaskOptions& client_options) {
  if (client_options.role != TaskRole::kClient || !client_options.own_data_path.empty()) {
    return InvalidArgument("fashion_mnist: a shard view is for a partitioned client");
  }
  if (client_options.threads < 1) {
    return InvalidArgument("fashion_mnist: threads must be >= 1, got " + std::to_string(client_options.threads));
  }
  if (!impl_->shared) {
    const std::string dir = client_options.data_dir.empty() ? std::string(kDefaultDataDir) : client_options.data_dir;
    GREENFED_ASSIGN_OR_RETURN(FashionMnist data, LoadFashionMnist(dir, true, true));
    impl_->shared = std::make_shared<const FashionMnist>(std::move(data));
  }
  auto view = std::make_unique<FashionMnistTask>();
  Impl& v = *view->impl_;
  v.options = client_options;
  if (v.options.data_dir.empty()) v.options.data_dir = kDefaultDataDir;
  GREENFED_RETURN_IF_ERROR(RegisterBuiltinModels(&v.models));
  if (!v.models.Contains(v.options.model)) return NotFound("fashion_mnist: unknown model '" + v.options.model + "'");
  v.shared = impl_->shared;
  v.view = true;
  GREENFED_RETURN_IF_ERROR(v.ShardIndices(*v.shared, &v.view_train, &v.view_test));
  v.train_histogram = LabelHistogram(v.shared->train_labels.labels, v.view_train, kNumClasses);
  StatusOr<bool> threads = Guarded<bool>("NewShardView", [&]() -> StatusOr<bool> {
    torch::set_num_threads(client_options.threads);
    return true;
  });
  GREENFED_RETURN_IF_ERROR(threads.status());
  v.prepared = true;
  return std::unique_ptr<Task>(std::move(view));
}

std::vector<int64_t> FashionMnistTask::TrainLabelHistogram() const { return impl_->train_histogram; }

std::vector<std::string> FashionMnistTask::Capabilities() const { return {kCapabilityFedProx, kCapabilityScaffold}; }

Status RegisterFashionMnist(TaskRegistry* registry) {
  if (registry == nullptr) return InvalidArgument("RegisterFashionMnist needs a registry");
  return registry->Register(kFashionMnistTaskName,
                            []() -> std::unique_ptr<Task> { return std::make_unique<FashionMnistTask>(); });
}

}  // namespace greenfed::fmnist
