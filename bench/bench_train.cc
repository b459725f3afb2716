// bench_train: cost of FashionMnistTask::Fit against a plain libtorch loop.
//
// For 1 and 2 intra-op threads, trains one epoch over the first N real training
// images (default 6000) twice: through FashionMnistTask::Fit, and through a loop
// written inline here with the same CNN, the same initial weights, the same
// batches (same shuffle) and the same SGD. Prints both times (best of --reps) and
// the ratio Fit / plain; the final weights of both must agree to float rounding.
// With --full it also times one central epoch over all 60,000 images and one
// evaluation of the 10,000 test images.
//
// usage: bench_train [--full] [--examples N] [--reps R] [--data-dir DIR]
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fashion_mnist/idx.h"
#include "greenfed/malloc_tuning.h"
#include "greenfed/partition.h"
#include "fashion_mnist/task.h"

namespace {

using greenfed::Parameters;
using greenfed::TaskOptions;
using greenfed::TaskRole;
using greenfed::TrainConfig;
using greenfed::fmnist::FashionMnistTask;

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The "cnn" of model.cc, written out plainly (same layers, same op order).
struct PlainCnnImpl : torch::nn::Module {
  PlainCnnImpl()
      : conv1(register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 16, 3).padding(1)))),
        conv2(register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(16, 32, 3).padding(1)))),
        fc1(register_module("fc1", torch::nn::Linear(1568, 64))),
        fc2(register_module("fc2", torch::nn::Linear(64, 10))) {}
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor h = torch::relu(torch::max_pool2d(conv1->forward(x), 2));
    h = torch::relu(torch::max_pool2d(conv2->forward(h), 2));
    return fc2->forward(torch::relu(fc1->forward(h.flatten(1))));
  }
  torch::nn::Conv2d conv1;
  torch::nn::Conv2d conv2;
  torch::nn::Linear fc1;
  torch::nn::Linear fc2;
};

struct PlainResult {
  double seconds = 0;
  std::vector<torch::Tensor> weights;
};

// One epoch of the inline loop from `init`, batches in the order Fit uses.
PlainResult PlainEpoch(const torch::Tensor& x, const torch::Tensor& y, const Parameters& init, const TrainConfig& c) {
  auto model = std::make_shared<PlainCnnImpl>();
  {
    torch::NoGradGuard no_grad;
    auto params = model->parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      std::memcpy(params[i].data_ptr<float>(), init[i].data.data(), init[i].data.size());
    }
  }
  const auto start = std::chrono::steady_clock::now();
  model->train();
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(c.learning_rate).momentum(c.momentum));
  const int64_t n = x.size(0);
  greenfed::DeterministicRng rng(c.seed);
  std::vector<uint32_t> order(static_cast<size_t>(n));
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<uint32_t>(i);
  rng.Shuffle(&order);
  torch::Tensor perm = torch::empty({n}, torch::kInt64);
  for (int64_t i = 0; i < n; ++i) perm.data_ptr<int64_t>()[i] = order[static_cast<size_t>(i)];
  for (int64_t s = 0; s < n; s += c.batch_size) {
    const torch::Tensor idx = perm.slice(0, s, std::min<int64_t>(n, s + c.batch_size));
    opt.zero_grad();
    torch::Tensor loss =
        torch::nn::functional::cross_entropy(model->forward(x.index_select(0, idx)), y.index_select(0, idx));
    loss.backward();
    opt.step();
    (void)loss.item<double>();  // Fit reads every batch loss; so does the baseline
  }
  PlainResult r;
  r.seconds = Seconds(start);
  for (const auto& p : model->parameters()) r.weights.push_back(p.detach().clone());
  return r;
}

double MaxAbsDiff(const std::vector<torch::Tensor>& a, const Parameters& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const std::vector<float> v = greenfed::FloatValues(b[i]);
    const torch::Tensor t = torch::from_blob(const_cast<float*>(v.data()), a[i].sizes(), torch::kFloat32);
    m = std::max(m, (a[i] - t).abs().max().item<double>());
  }
  return m;
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "bench_train: %s\n", what.c_str());
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  // As greenfed's main does, so that the figures here are those of the framework's processes.
  if (!greenfed::TuneMallocForTensors()) std::fprintf(stderr, "bench_train: mallopt refused the thresholds\n");
  bool full = false;
  uint64_t examples = 6000;
  int reps = 2;
  std::string data_dir = greenfed::fmnist::kDefaultDataDir;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--full") {
      full = true;
    } else if (a == "--examples" && i + 1 < argc) {
      examples = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--reps" && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--data-dir" && i + 1 < argc) {
      data_dir = argv[++i];
    } else {
      Die("usage: bench_train [--full] [--examples N] [--reps R] [--data-dir DIR]");
    }
  }

  TrainConfig config;
  config.epochs = 1;
  config.batch_size = 32;
  config.learning_rate = 0.05;
  config.momentum = 0.9;
  config.seed = 1;
  greenfed::FitRequest request;
  greenfed::PutTrainConfig(config, &request.config);

  // The baseline's data: the first `examples` training images, normalised as Fit does.
  auto data = greenfed::fmnist::LoadFashionMnist(data_dir, true, false);
  if (!data.ok()) Die(data.status().ToString());
  const int64_t n = std::min<int64_t>(static_cast<int64_t>(examples), data->train_images.count);
  torch::Tensor x = torch::from_blob(data->train_images.pixels.data(), {n, 1, 28, 28}, torch::kUInt8)
                        .to(torch::kFloat32)
                        .div_(255.0f)
                        .sub_(0.2860f)
                        .div_(0.3530f);
  torch::Tensor y = torch::from_blob(data->train_labels.labels.data(), {n}, torch::kUInt8).to(torch::kInt64);

  std::printf("bench_train: one epoch, %lld examples, batch %u, lr %.2f, momentum %.1f, best of %d\n",
              static_cast<long long>(n), config.batch_size, config.learning_rate, config.momentum, reps);
  std::printf("%-8s %-12s %-12s %-8s %s\n", "threads", "fit_s", "plain_s", "ratio", "max|w_fit-w_plain|");
  for (int threads : {1, 2}) {
    FashionMnistTask task;
    TaskOptions o;
    o.role = TaskRole::kCentralized;
    o.data_dir = data_dir;
    o.threads = threads;
    o.max_train_examples = static_cast<uint64_t>(n);
    o.max_test_examples = 1000;
    if (auto s = task.Prepare(o); !s.ok()) Die(s.ToString());
    auto init = task.InitialParameters();
    if (!init.ok()) Die(init.status().ToString());
    torch::set_num_threads(threads);

    double fit_best = 1e300;
    double plain_best = 1e300;
    double diff = 0;
    for (int r = 0; r < reps; ++r) {
      PlainResult plain = PlainEpoch(x, y, *init, config);
      plain_best = std::min(plain_best, plain.seconds);
      const auto start = std::chrono::steady_clock::now();
      request.parameters = *init;
      greenfed::ClientState state;  // empty: fresh momentum, as every round
      auto fit = task.Fit(request, state);
      fit_best = std::min(fit_best, Seconds(start));
      if (!fit.ok()) Die(fit.status().ToString());
      diff = MaxAbsDiff(plain.weights, fit->parameters);
    }
    std::printf("%-8d %-12.3f %-12.3f %-8.3f %.3g\n", threads, fit_best, plain_best, fit_best / plain_best, diff);
  }

  if (full) {
    std::printf("full central epoch (60000 train images) and evaluation (10000 test images):\n");
    std::printf("%-8s %-12s %-12s %s\n", "threads", "epoch_s", "eval_s", "test_accuracy");
    for (int threads : {1, 2}) {
      FashionMnistTask task;
      TaskOptions o;
      o.role = TaskRole::kCentralized;
      o.data_dir = data_dir;
      o.threads = threads;
      if (auto s = task.Prepare(o); !s.ok()) Die(s.ToString());
      auto init = task.InitialParameters();
      if (!init.ok()) Die(init.status().ToString());
      auto start = std::chrono::steady_clock::now();
      request.parameters = *init;
      greenfed::ClientState state;  // empty: fresh momentum, as every round
      auto fit = task.Fit(request, state);
      const double epoch_s = Seconds(start);
      if (!fit.ok()) Die(fit.status().ToString());
      start = std::chrono::steady_clock::now();
      auto eval = task.Evaluate(fit->parameters);
      const double eval_s = Seconds(start);
      if (!eval.ok()) Die(eval.status().ToString());
      std::printf("%-8d %-12.3f %-12.3f %.4f\n", threads, epoch_s, eval_s, eval->accuracy);
    }
  }
  return 0;
}
