// FashionMnistTask with libtorch: parameter export, training on synthetic data,
// rejection of bad updates, roles and shards, and a short run on the real data.
#include <doctest/doctest.h>
#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "fashion_mnist/blas.h"
#include "fashion_mnist/idx.h"
#include "fashion_mnist/task.h"
#include "synthetic_data.h"

namespace {

using greenfed::Code;
using greenfed::EvalResult;
using greenfed::FitResult;
using greenfed::Parameters;
using greenfed::TaskOptions;
using greenfed::TaskRole;
using greenfed::TrainConfig;
using greenfed::fmnist::FashionMnistTask;

// A directory of synthetic IDX files, removed at scope exit.
class SyntheticDir {
 public:
  SyntheticDir(uint32_t train, uint32_t test, uint64_t seed) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "greenfed_task_XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
    const greenfed::Status s = greenfed::WriteSyntheticFashionMnist(path_, train, test, seed);
    REQUIRE_MESSAGE(s.ok(), s.ToString());
  }
  SyntheticDir(const SyntheticDir&) = delete;
  SyntheticDir& operator=(const SyntheticDir&) = delete;
  ~SyntheticDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TaskOptions Options(TaskRole role, const std::string& dir) {
  TaskOptions o;
  o.role = role;
  o.data_dir = dir;
  o.threads = 1;
  return o;
}

TrainConfig Config(uint32_t epochs, uint64_t seed) {
  TrainConfig c;
  c.epochs = epochs;
  c.batch_size = 32;
  c.learning_rate = 0.05;
  c.momentum = 0.9;
  c.seed = seed;
  return c;
}

// One Fit from `p` with `c` and a fresh (empty) client state.
greenfed::StatusOr<FitResult> FitOnce(FashionMnistTask& task, const Parameters& p, const TrainConfig& c) {
  greenfed::FitRequest request;
  request.parameters = p;
  greenfed::PutTrainConfig(c, &request.config);
  greenfed::ClientState state;
  return task.Fit(request, state);
}

int64_t TotalElements(const Parameters& p) {
  int64_t n = 0;
  for (const auto& b : p) n += b.NumElements();
  return n;
}

}  // namespace

TEST_CASE("task: InitialParameters is deterministic by init_seed, with the expected names and shapes") {
  SyntheticDir dir(100, 50, 1);
  FashionMnistTask task;
  TaskOptions o = Options(TaskRole::kCoordinator, dir.path());
  o.init_seed = 42;
  REQUIRE(task.Prepare(o).ok());
  auto a = task.InitialParameters();
  auto b = task.InitialParameters();
  REQUIRE(a.ok());
  REQUIRE(b.ok());

  const std::vector<std::string> names = {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                                          "fc1.weight",   "fc1.bias",   "fc2.weight",   "fc2.bias"};
  const std::vector<std::vector<int64_t>> shapes = {{16, 1, 3, 3}, {16}, {32, 16, 3, 3}, {32},
                                                    {64, 1568},    {64}, {10, 64},       {10}};
  REQUIRE(a->size() == names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    CHECK((*a)[i].name == names[i]);
    CHECK((*a)[i].shape == shapes[i]);
    CHECK((*a)[i].dtype == greenfed::DType::kFloat32);
    CHECK((*a)[i].data == (*b)[i].data);
  }
  CHECK(TotalElements(*a) == 105866);
  CHECK(greenfed::TotalBytes(*a) == 105866u * 4);

  // Another task with the same seed agrees byte for byte; another seed does not.
  FashionMnistTask same;
  REQUIRE(same.Prepare(o).ok());
  auto c = same.InitialParameters();
  REQUIRE(c.ok());
  for (size_t i = 0; i < names.size(); ++i) CHECK((*c)[i].data == (*a)[i].data);
  o.init_seed = 43;
  FashionMnistTask other;
  REQUIRE(other.Prepare(o).ok());
  auto d = other.InitialParameters();
  REQUIRE(d.ok());
  CHECK((*d)[0].data != (*a)[0].data);
  CHECK((*d)[6].data != (*a)[6].data);

  // Not a silly initialisation: weights are small, not all equal, and finite.
  const std::vector<float> w = greenfed::FloatValues((*a)[4]);
  float max_abs = 0;
  for (float v : w) max_abs = std::max(max_abs, std::fabs(v));
  CHECK(max_abs > 0.0f);
  CHECK(max_abs <= 1.0f / std::sqrt(1568.0f) + 1e-6f);  // kaiming-uniform bound of nn::Linear
}

TEST_CASE("task: the mlp model has 784-128-10 parameters") {
  SyntheticDir dir(100, 50, 1);
  FashionMnistTask task;
  TaskOptions o = Options(TaskRole::kCoordinator, dir.path());
  o.model = "mlp";
  REQUIRE(task.Prepare(o).ok());
  auto p = task.InitialParameters();
  REQUIRE(p.ok());
  REQUIRE(p->size() == 4);
  CHECK((*p)[0].name == "fc1.weight");
  CHECK((*p)[0].shape == std::vector<int64_t>{128, 784});
  CHECK((*p)[3].name == "fc2.bias");
  CHECK(TotalElements(*p) == 101770);
}

TEST_CASE("task: Fit on synthetic data lowers the loss and reaches > 0.8 accuracy") {
  SyntheticDir dir(2000, 500, 7);
  FashionMnistTask task;
  REQUIRE(task.Prepare(Options(TaskRole::kCentralized, dir.path())).ok());
  CHECK(task.NumTrainExamples() == 2000);
  CHECK(task.NumTestExamples() == 500);
  CHECK(task.TrainLabelHistogram() == std::vector<int64_t>(10, 200));

  auto init = task.InitialParameters();
  REQUIRE(init.ok());
  auto before = task.Evaluate(*init);
  REQUIRE(before.ok());
  CHECK(before->num_examples == 500);
  CHECK(before->accuracy < 0.3);

  auto fit = FitOnce(task, *init, Config(2, 5));
  REQUIRE_MESSAGE(fit.ok(), fit.status().ToString());
  CHECK(fit->num_examples == 2000);
  CHECK(std::isfinite(fit->train_loss));
  CHECK(fit->train_loss < before->loss);
  CHECK(greenfed::SpecsOf(fit->parameters) == greenfed::SpecsOf(*init));

  auto after = task.Evaluate(fit->parameters);
  REQUIRE(after.ok());
  MESSAGE("synthetic: loss ", before->loss, " -> ", after->loss, ", accuracy ", before->accuracy, " -> ",
          after->accuracy, ", train loss ", fit->train_loss);
  CHECK(after->loss < before->loss);
  CHECK(after->accuracy > 0.8);

  // Same parameters, config and thread count: the same weights, byte for byte.
  auto again = FitOnce(task, *init, Config(2, 5));
  REQUIRE(again.ok());
  for (size_t i = 0; i < init->size(); ++i) CHECK(again->parameters[i].data == fit->parameters[i].data);
  CHECK(again->train_loss == fit->train_loss);
  // Another seed shuffles differently.
  auto reshuffled = FitOnce(task, *init, Config(2, 6));
  REQUIRE(reshuffled.ok());
  CHECK(reshuffled->parameters[0].data != fit->parameters[0].data);
}

TEST_CASE("task: Fit and Evaluate reject malformed parameters and configs") {
  SyntheticDir dir(200, 50, 2);
  FashionMnistTask task;
  REQUIRE(task.Prepare(Options(TaskRole::kCentralized, dir.path())).ok());
  auto init = task.InitialParameters();
  REQUIRE(init.ok());

  SUBCASE("wrong shape") {
    Parameters p = *init;
    p[7] = greenfed::MakeFloatBlob("fc2.bias", {11}, std::vector<float>(11, 0.0f));
    auto r = FitOnce(task, p, Config(1, 0));
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Code::kInvalidArgument);
    CHECK(r.status().message() == "tensor 'fc2.bias' has shape [11], expected [10]");
    CHECK(task.Evaluate(p).status().message() == "tensor 'fc2.bias' has shape [11], expected [10]");
  }
  SUBCASE("non-finite value") {
    Parameters p = *init;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(p[2].data.data() + 5 * sizeof(float), &nan, sizeof(float));
    auto r = FitOnce(task, p, Config(1, 0));
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Code::kInvalidArgument);
    CHECK(r.status().message() == "tensor 'conv2.weight' has a non-finite value (NaN or Inf) at element 5");
  }
  SUBCASE("missing tensor and wrong name") {
    Parameters p = *init;
    p.pop_back();
    CHECK(FitOnce(task, p, Config(1, 0)).status().message() == "expected 8 tensors, got 7");
    Parameters q = *init;
    q[0].name = "conv0.weight";
    CHECK(FitOnce(task, q, Config(1, 0)).status().message() == "tensor 0 is named 'conv0.weight', expected 'conv1.weight'");
  }
  SUBCASE("bad config") {
    TrainConfig c = Config(1, 0);
    c.batch_size = 0;
    CHECK(FitOnce(task, *init, c).status().message() == "fashion_mnist Fit: batch_size must be >= 1, got 0");
    c = Config(0, 0);
    CHECK(FitOnce(task, *init, c).status().message() == "fashion_mnist Fit: epochs must be >= 1, got 0");
    c = Config(1, 0);
    c.learning_rate = -0.1;
    CHECK(FitOnce(task, *init, c).status().code() == Code::kInvalidArgument);
    c = Config(1, 0);
    c.momentum = 1.0;
    CHECK(FitOnce(task, *init, c).status().code() == Code::kInvalidArgument);
  }
  SUBCASE("divergence is reported, not returned as weights") {
    TrainConfig c = Config(1, 0);
    c.learning_rate = 1e30;
    auto r = FitOnce(task, *init, c);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Code::kOutOfRange);
    CHECK(r.status().message().find("fashion_mnist Fit: loss became") == 0);
  }
}

TEST_CASE("task: roles load the right data and clients take their shards") {
  SyntheticDir dir(2000, 500, 3);
  SUBCASE("client: iid shard of train, iid shard of test") {
    TaskOptions o = Options(TaskRole::kClient, dir.path());
    o.partition.scheme = "iid";
    o.partition.num_clients = 4;
    o.partition.seed = 9;
    o.client_index = 3;
    FashionMnistTask task;
    REQUIRE(task.Prepare(o).ok());
    CHECK(task.NumTrainExamples() == 500);
    CHECK(task.NumTestExamples() == 125);
    const auto h = task.TrainLabelHistogram();
    CHECK(std::accumulate(h.begin(), h.end(), int64_t{0}) == 500);
  }
  SUBCASE("client: label shards train, IID test") {
    TaskOptions o = Options(TaskRole::kClient, dir.path());
    o.partition.scheme = "shards";
    o.partition.num_clients = 10;
    o.partition.shards_per_client = 1;
    o.client_index = 0;
    FashionMnistTask task;
    REQUIRE(task.Prepare(o).ok());
    CHECK(task.NumTrainExamples() == 200);
    CHECK(task.NumTestExamples() == 50);
    const auto h = task.TrainLabelHistogram();
    CHECK(std::count(h.begin(), h.end(), 200) == 1);  // one whole class
    auto init = task.InitialParameters();
    REQUIRE(init.ok());
    auto eval = task.Evaluate(*init);
    REQUIRE(eval.ok());
    CHECK(eval->num_examples == 50);
  }
  SUBCASE("caps keep the first N after partitioning") {
    TaskOptions o = Options(TaskRole::kClient, dir.path());
    o.partition.num_clients = 2;
    o.client_index = 1;
    o.max_train_examples = 100;
    o.max_test_examples = 30;
    FashionMnistTask task;
    REQUIRE(task.Prepare(o).ok());
    CHECK(task.NumTrainExamples() == 100);
    CHECK(task.NumTestExamples() == 30);
  }
  SUBCASE("coordinator: test only, so Fit is refused") {
    FashionMnistTask task;
    REQUIRE(task.Prepare(Options(TaskRole::kCoordinator, dir.path())).ok());
    CHECK(task.NumTrainExamples() == 0);
    CHECK(task.NumTestExamples() == 500);
    auto init = task.InitialParameters();
    REQUIRE(init.ok());
    auto r = FitOnce(task, *init, Config(1, 0));
    CHECK(r.status().code() == Code::kFailedPrecondition);
    CHECK(r.status().message() == "fashion_mnist: Fit needs training data, role coordinator has none");
  }
  SUBCASE("errors: before Prepare, unknown model, bad shard, missing data") {
    FashionMnistTask task;
    CHECK(task.InitialParameters().status().code() == Code::kFailedPrecondition);
    TaskOptions o = Options(TaskRole::kCentralized, dir.path());
    o.model = "resnet";
    const greenfed::Status unknown = task.Prepare(o);
    CHECK(unknown.code() == Code::kNotFound);
    CHECK(unknown.message() == "fashion_mnist: unknown model 'resnet' (registered: cnn, mlp)");
    TaskOptions c = Options(TaskRole::kClient, dir.path());
    c.partition.num_clients = 2;
    c.client_index = 2;
    CHECK(task.Prepare(c).code() == Code::kInvalidArgument);
    const greenfed::Status missing = task.Prepare(Options(TaskRole::kCoordinator, dir.path() + "/nope"));
    CHECK(missing.code() == Code::kNotFound);
    CHECK(missing.message().find("dataset-fashion-mnist") != std::string::npos);
    CHECK(task.NumTrainExamples() == 0);  // failed Prepares leave the task unprepared
  }
}

TEST_CASE("task: RegisterFashionMnist registers \"fashion_mnist\"") {
  greenfed::TaskRegistry registry;
  REQUIRE(greenfed::fmnist::RegisterFashionMnist(&registry).ok());
  CHECK(registry.Names() == std::vector<std::string>{"fashion_mnist"});
  auto task = registry.Create("fashion_mnist");
  REQUIRE(task.ok());
  CHECK(dynamic_cast<FashionMnistTask*>(task->get()) != nullptr);
  CHECK(greenfed::fmnist::RegisterFashionMnist(&registry).code() == Code::kInvalidArgument);
}

// cmake/Blas.cmake pins libtorch's BLAS through the executable's own NEEDED entries and RUNPATH;
// this checks that the pin holds: the sgemm_ that libtorch_cpu's calls resolve to (the first
// definition in the global scope) lives in the chosen directory, and for OpenBLAS that it is the
// pthread build (openblas_get_parallel() == 1: it locks, unlike Debian's serial build) and that
// Prepare caps it to one thread (fashion_mnist/blas.h), so no pool thread spins.
TEST_CASE("task: libtorch's sgemm_ binds to the BLAS the build chose (GREENFED_BLAS)") {
#ifndef GREENFED_BLAS_DIR
  MESSAGE("GREENFED_BLAS=" GREENFED_BLAS_NAME ": no pin, nothing to check");
#else
  void* sgemm = dlsym(RTLD_DEFAULT, "sgemm_");
  REQUIRE_MESSAGE(sgemm != nullptr, "sgemm_ is not in the process (libtorch not loaded?)");
  Dl_info info{};
  REQUIRE(dladdr(sgemm, &info) != 0);
  REQUIRE(info.dli_fname != nullptr);
  const std::filesystem::path lib = std::filesystem::canonical(info.dli_fname);
  const std::filesystem::path want = std::filesystem::canonical(GREENFED_BLAS_DIR);
  MESSAGE("GREENFED_BLAS=" GREENFED_BLAS_NAME ": sgemm_ from ", lib.string());
  CHECK(lib.parent_path() == want);
  void* parallel = dlsym(RTLD_DEFAULT, "openblas_get_parallel");
  if (std::string(GREENFED_BLAS_NAME) == "openblas") {
    REQUIRE_MESSAGE(parallel != nullptr, "no openblas_get_parallel: the BLAS loaded is not OpenBLAS");
    using GetParallel = int (*)();
    CHECK(reinterpret_cast<GetParallel>(parallel)() == 1);  // 0 = sequential, 1 = pthreads, 2 = OpenMP
    FashionMnistTask task;
    REQUIRE(task.Prepare(Options(TaskRole::kCoordinator, greenfed::fmnist::kDefaultDataDir)).ok());
    CHECK(greenfed::fmnist::BlasThreads() == 1);
  } else {
    CHECK(parallel == nullptr);  // reference: no OpenBLAS anywhere in the process
    CHECK(greenfed::fmnist::PinBlasToOneThread() == -1);
  }
#endif
}

// greenfed simulate runs fits on several worker threads of one process, so the BLAS must give
// the same product whichever threads call it at once. Debian's serial OpenBLAS (built without
// USE_LOCKING) failed this: wrong products in 2 of 6 processes of a C version of this check
// (8 threads x 300 calls); the pthread build at one thread and the reference BLAS passed every time.
TEST_CASE("task: concurrent sgemm_ calls from several threads give the single-threaded product") {
  using Sgemm = void (*)(const char*, const char*, const int*, const int*, const int*, const float*, const float*,
                         const int*, const float*, const int*, const float*, float*, const int*);
  void* sym = dlsym(RTLD_DEFAULT, "sgemm_");
  REQUIRE(sym != nullptr);
  const auto sgemm = reinterpret_cast<Sgemm>(sym);
  greenfed::fmnist::PinBlasToOneThread();
  constexpr int m = 64, n = 128, k = 512;
  std::vector<float> a(static_cast<size_t>(m) * k), b(static_cast<size_t>(k) * n);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>((i * 37) % 101) / 101.0f;
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>((i * 53) % 97) / 97.0f;
  const float one = 1.0f, zero = 0.0f;
  auto multiply = [&](std::vector<float>* c) {
    sgemm("N", "N", &m, &n, &k, &one, a.data(), &m, b.data(), &k, &zero, c->data(), &m);
  };
  std::vector<float> expected(static_cast<size_t>(m) * n);
  multiply(&expected);
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      std::vector<float> c(expected.size());
      for (int it = 0; it < 400; ++it) {
        multiply(&c);
        if (std::memcmp(c.data(), expected.data(), c.size() * sizeof(float)) != 0) bad.fetch_add(1);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  CHECK_MESSAGE(bad.load() == 0, bad.load(), " of 3200 concurrent products differ from the single-threaded one");
}

TEST_CASE("task: one epoch on 6000 real Fashion-MNIST images") {
  FashionMnistTask task;
  TaskOptions o = Options(TaskRole::kCentralized, greenfed::fmnist::kDefaultDataDir);
  o.max_train_examples = 6000;
  o.max_test_examples = 2000;
  o.threads = 2;
  const greenfed::Status prepared = task.Prepare(o);
  REQUIRE_MESSAGE(prepared.ok(), prepared.ToString());
  auto init = task.InitialParameters();
  REQUIRE(init.ok());
  auto fit = FitOnce(task, *init, Config(1, 0));
  REQUIRE_MESSAGE(fit.ok(), fit.status().ToString());
  auto eval = task.Evaluate(fit->parameters);
  REQUIRE(eval.ok());
  MESSAGE("real data, 6000 train / 2000 test, 1 epoch: train loss ", fit->train_loss, ", test loss ", eval->loss,
          ", test accuracy ", eval->accuracy);
  CHECK(eval->num_examples == 2000);
  CHECK(eval->accuracy > 0.70);
}

TEST_CASE("fashion_mnist own data: a client's own IDX directory is its whole training set, with no test set") {
  SyntheticDir mine(120, 10, 9);
  TaskOptions o = Options(TaskRole::kClient, "/nonexistent");  // data_dir is not read in own-data mode
  o.own_data_path = mine.path();
  o.partition.num_clients = 4;
  o.client_index = 3;
  FashionMnistTask task;
  const greenfed::Status prepared = task.Prepare(o);
  REQUIRE_MESSAGE(prepared.ok(), prepared.ToString());
  CHECK(task.NumTrainExamples() == 120);
  CHECK(task.NumTestExamples() == 0);
  auto init = task.InitialParameters();
  REQUIRE(init.ok());
  auto fit = FitOnce(task, *init, Config(1, 3));
  REQUIRE_MESSAGE(fit.ok(), fit.status().ToString());
  CHECK(fit->num_examples == 120);
  CHECK(task.Evaluate(*init).status().code() == Code::kFailedPrecondition);
  o.role = TaskRole::kCoordinator;
  CHECK(FashionMnistTask().Prepare(o).message() == "fashion_mnist: own data (--data) is for the client role, not coordinator");
}

namespace {

// A Fit with an explicit request and state.
greenfed::StatusOr<FitResult> FitWith(FashionMnistTask& task, const Parameters& p, const TrainConfig& c,
                                      greenfed::ClientState& state, const greenfed::ConfigMap& extra = {},
                                      const greenfed::TensorGroups& groups = {}) {
  greenfed::FitRequest request;
  request.parameters = p;
  request.groups = groups;
  greenfed::PutTrainConfig(c, &request.config);
  for (const auto& [k, v] : extra) request.config[k] = v;
  return task.Fit(request, state);
}

// Every tensor of `p` filled with `value`.
Parameters Filled(const Parameters& p, float value) {
  Parameters out = p;
  for (auto& b : out) b = greenfed::MakeFloatBlob(b.name, b.shape, std::vector<float>(b.NumElements(), value));
  return out;
}

double SquaredDistance(const Parameters& a, const Parameters& b) {
  double s = 0;
  for (size_t t = 0; t < a.size(); ++t) {
    const auto x = greenfed::FloatValues(a[t]);
    const auto y = greenfed::FloatValues(b[t]);
    for (size_t i = 0; i < x.size(); ++i) s += (double{x[i]} - y[i]) * (double{x[i]} - y[i]);
  }
  return s;
}

// A client on 200 real Fashion-MNIST training images (the task's default data).
void PrepareRealClient(FashionMnistTask* task, bool persist_momentum = false) {
  TaskOptions o = Options(TaskRole::kCentralized, greenfed::fmnist::kDefaultDataDir);
  o.max_train_examples = 200;
  o.max_test_examples = 10;
  o.persist_momentum = persist_momentum;
  const greenfed::Status prepared = task->Prepare(o);
  REQUIRE_MESSAGE(prepared.ok(), prepared.ToString());
}

}  // namespace

TEST_CASE("task: fedprox with proximal_mu = 0 is FedAvg's local training bit for bit and mu = 1 pulls towards w_global") {
  FashionMnistTask task;
  PrepareRealClient(&task);
  CHECK(task.Capabilities() == std::vector<std::string>{"fedprox", "scaffold"});
  auto init = task.InitialParameters();
  REQUIRE(init.ok());
  TrainConfig c = Config(1, 3);
  greenfed::ClientState s1, s2, s3;
  auto plain = FitWith(task, *init, c, s1);
  auto mu0 = FitWith(task, *init, c, s2, {{"proximal_mu", 0.0}});
  auto mu1 = FitWith(task, *init, c, s3, {{"proximal_mu", 1.0}});
  REQUIRE(plain.ok());
  REQUIRE(mu0.ok());
  REQUIRE_MESSAGE(mu1.ok(), mu1.status().ToString());
  for (size_t i = 0; i < init->size(); ++i) CHECK(mu0->parameters[i].data == plain->parameters[i].data);
  CHECK(mu0->train_loss == plain->train_loss);
  const double d_plain = SquaredDistance(plain->parameters, *init);
  const double d_prox = SquaredDistance(mu1->parameters, *init);
  MESSAGE("||w - w_global||^2 after one epoch: plain ", d_plain, ", proximal_mu=1 ", d_prox);
  CHECK(d_prox < d_plain);
  CHECK(s1.empty());  // nothing kept without SCAFFOLD or persist_momentum
  greenfed::ClientState s4;
  CHECK(FitWith(task, *init, c, s4, {{"proximal_mu", -1.0}}).status().message() ==
        "fashion_mnist Fit: proximal_mu must be finite and >= 0, got -1.000000");
  CHECK(FitWith(task, *init, c, s4, {{"proximal_mu", std::string("x")}}).status().message() ==
        "fashion_mnist Fit: config key 'proximal_mu' must be a double, got string");
}

TEST_CASE("task: scaffold client step y -= lr (g + c - c_i) and c_i+ = c_i - c + (x - y) / (K lr)") {
  FashionMnistTask task;
  PrepareRealClient(&task);
  auto init = task.InitialParameters();
  REQUIRE(init.ok());
  TrainConfig one_step = Config(1, 4);
  one_step.batch_size = 200;  // K = 1
  one_step.momentum = 0;
  const float c_value = 0.01f;
  const greenfed::TensorGroups control = {{"control", Filled(*init, c_value)}};

  SUBCASE("K = 1: the step is the plain step minus lr (c - c_i), c_i = 0 at the start") {
    greenfed::ClientState empty, state;
    auto plain = FitWith(task, *init, one_step, empty);
    auto corrected = FitWith(task, *init, one_step, state, {}, control);
    REQUIRE(plain.ok());
    REQUIRE_MESSAGE(corrected.ok(), corrected.status().ToString());
    for (size_t t = 0; t < init->size(); ++t) {
      const auto y0 = greenfed::FloatValues(plain->parameters[t]);
      const auto y = greenfed::FloatValues(corrected->parameters[t]);
      for (size_t i = 0; i < y.size(); ++i) {
        REQUIRE(y[i] == doctest::Approx(y0[i] - one_step.learning_rate * c_value).epsilon(1e-4));
      }
    }
    // The state now holds c_i+; with c_i = c the correction is exactly zero, so
    // the next fit equals the plain one bit for bit: the state is read.
    REQUIRE(state.count("scaffold.c_i") == 1);
    greenfed::ClientState same = {{"scaffold.c_i", Filled(*init, c_value)}};
    auto zero_corr = FitWith(task, *init, one_step, same, {}, control);
    REQUIRE(zero_corr.ok());
    for (size_t t = 0; t < init->size(); ++t) CHECK(zero_corr->parameters[t].data == plain->parameters[t].data);
  }
  SUBCASE("K = 2: the returned delta c_i and the kept c_i+ follow option II") {
    TrainConfig two_steps = one_step;
    two_steps.batch_size = 100;  // 200 images: K = 2
    const float ci_value = -0.02f;
    greenfed::ClientState state = {{"scaffold.c_i", Filled(*init, ci_value)}};
    auto r = FitWith(task, *init, two_steps, state, {}, control);
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    REQUIRE(r->groups.count("control") == 1);
    const Parameters& dc = r->groups.at("control");
    const Parameters& kept = state.at("scaffold.c_i");
    const double k_lr = 2 * two_steps.learning_rate;
    for (size_t t = 0; t < init->size(); ++t) {
      const auto x = greenfed::FloatValues((*init)[t]);
      const auto y = greenfed::FloatValues(r->parameters[t]);
      const auto d = greenfed::FloatValues(dc[t]);
      const auto c_next = greenfed::FloatValues(kept[t]);
      for (size_t i = 0; i < x.size(); ++i) {
        const double expected_next = ci_value - c_value + (double{x[i]} - y[i]) / k_lr;
        REQUIRE(c_next[i] == doctest::Approx(expected_next).epsilon(1e-4).scale(1e-3));
        REQUIRE(d[i] == doctest::Approx(expected_next - ci_value).epsilon(1e-4).scale(1e-3));
      }
    }
  }
  SUBCASE("with momentum: c_i+ is the mean of the K raw gradients, not (x - y) / (K lr)") {
    // K = 2 and c = c_i (no correction). The first step of SGD with momentum is a
    // plain one, so both runs below reach the same y_1 on the same batches, and the
    // plain run's (x - y_2) / (2 lr) is (g(x) + g(y_1)) / 2: the mean the momentum
    // run must keep. The literal formula would give (1.9 g(x) + g(y_1)) / 2.
    TrainConfig plain_cfg = one_step;
    plain_cfg.batch_size = 100;
    TrainConfig momentum = plain_cfg;
    momentum.momentum = 0.9;
    greenfed::ClientState empty;
    greenfed::ClientState state = {{"scaffold.c_i", Filled(*init, c_value)}};
    auto plain = FitWith(task, *init, plain_cfg, empty);
    auto r = FitWith(task, *init, momentum, state, {}, control);
    REQUIRE(plain.ok());
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    const Parameters& kept = state.at("scaffold.c_i");
    for (size_t t = 0; t < init->size(); ++t) {
      const auto x = greenfed::FloatValues((*init)[t]);
      const auto y0 = greenfed::FloatValues(plain->parameters[t]);
      const auto c_next = greenfed::FloatValues(kept[t]);
      for (size_t i = 0; i < x.size(); ++i) {
        const double mean_gradient = (double{x[i]} - y0[i]) / (2 * plain_cfg.learning_rate);
        REQUIRE(c_next[i] == doctest::Approx(mean_gradient).epsilon(1e-3).scale(1e-2));
      }
    }
  }
  SUBCASE("malformed control groups are refused, and the state is unchanged") {
    greenfed::ClientState state;
    greenfed::TensorGroups wrong = {{"control", Parameters(init->begin(), init->end() - 1)}};
    CHECK(FitWith(task, *init, one_step, state, {}, wrong).status().message().find("group 'control'") == 0);
    CHECK(FitWith(task, *init, one_step, state, {}, {{"other", *init}}).status().message() ==
          "fashion_mnist Fit: unknown tensor group 'other' (knows 'control')");
    CHECK(state.empty());
  }
}

TEST_CASE("task: persist_momentum keeps the SGD momentum buffers in the client state and is off by default") {
  TrainConfig c = Config(1, 5);
  SUBCASE("off") {
    FashionMnistTask task;
    PrepareRealClient(&task);
    auto init = task.InitialParameters();
    REQUIRE(init.ok());
    greenfed::ClientState state;
    auto a = FitWith(task, *init, c, state);
    auto b = FitWith(task, *init, c, state);
    REQUIRE(a.ok());
    REQUIRE(b.ok());
    CHECK(state.empty());
    for (size_t t = 0; t < init->size(); ++t) CHECK(a->parameters[t].data == b->parameters[t].data);
  }
  SUBCASE("on") {
    FashionMnistTask task;
    PrepareRealClient(&task, /*persist_momentum=*/true);
    auto init = task.InitialParameters();
    REQUIRE(init.ok());
    greenfed::ClientState state;
    auto a = FitWith(task, *init, c, state);
    REQUIRE(a.ok());
    REQUIRE(state.count("sgd.momentum") == 1);
    CHECK(greenfed::SpecsOf(state.at("sgd.momentum")) == greenfed::SpecsOf(*init));
    greenfed::ClientState fresh;
    auto b = FitWith(task, *init, c, state);
    auto b_fresh = FitWith(task, *init, c, fresh);
    REQUIRE(b.ok());
    REQUIRE(b_fresh.ok());
    CHECK(b_fresh->parameters[0].data == a->parameters[0].data);  // an empty state is a fresh start
    CHECK(b->parameters[0].data != a->parameters[0].data);        // the kept buffers carry over
  }
}

TEST_CASE("task: a shard view (NewShardView) fits and evaluates bit for bit like a prepared client, on shared data") {
  SyntheticDir dir(1200, 300, 5);
  TaskOptions o = Options(TaskRole::kClient, dir.path());
  o.partition.scheme = "dirichlet";
  o.partition.alpha = 0.5;
  o.partition.num_clients = 6;
  o.partition.seed = 4;
  o.client_index = 2;
  o.max_train_examples = 150;
  FashionMnistTask prepared;
  REQUIRE(prepared.Prepare(o).ok());
  FashionMnistTask base;  // never prepared: holds the shared data set for its views
  auto view = base.NewShardView(o);
  REQUIRE(view.ok());
  auto second = base.NewShardView(o);  // the data set is loaded once; a second view shares it
  REQUIRE(second.ok());
  CHECK((*view)->NumTrainExamples() == prepared.NumTrainExamples());
  CHECK((*view)->TrainLabelHistogram() == prepared.TrainLabelHistogram());

  auto init = prepared.InitialParameters();
  REQUIRE(init.ok());
  greenfed::FitRequest request;
  request.parameters = *init;
  greenfed::PutTrainConfig(Config(1, 77), &request.config);
  greenfed::ClientState s1, s2;
  auto a = prepared.Fit(request, s1);
  auto b = (*view)->Fit(request, s2);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  CHECK(a->train_loss == b->train_loss);
  REQUIRE(a->parameters.size() == b->parameters.size());
  for (size_t i = 0; i < a->parameters.size(); ++i) CHECK(a->parameters[i].data == b->parameters[i].data);
  auto ea = prepared.Evaluate(a->parameters);
  auto eb = (*view)->Evaluate(a->parameters);
  REQUIRE(ea.ok());
  REQUIRE(eb.ok());
  CHECK(ea->loss == eb->loss);
  CHECK(ea->accuracy == eb->accuracy);
  CHECK(ea->num_examples == eb->num_examples);

  TaskOptions coordinator = Options(TaskRole::kCoordinator, dir.path());
  CHECK_FALSE(base.NewShardView(coordinator).ok());  // views are for clients
}
