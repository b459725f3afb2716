// bench_flops: the physical limit of the Fashion-MNIST CNN on one core, and the
// kernel levers measured against today's path (issue 11).
//
// Sections (all on 1 intra-op thread unless stated):
//  flops   FLOPs per image of the "cnn" of model.cc, counted from its layer shapes
//          (a multiply-add is 2 FLOPs): forward, and forward + backward, where the
//          backward of a layer is its weight gradient plus, except for conv1 whose
//          input needs none, its input gradient (each as many FLOPs as the forward).
//  kernels GFLOP/s of libtorch's own conv2d and linear at the CNN's four layer
//          shapes, forward and forward+backward, at batch 32 and 512, and of the
//          whole network's forward+backward on random data at the same batches.
//  fit     FashionMnistTask::Fit over --examples real images (1 epoch, batch 32,
//          lr 0.05, momentum 0.9, seed 1), its GFLOP/s and the fraction of the
//          limits above; the process CPU-s of the fit and of one evaluation of the
//          10,000 test images (the denominators of the overhead ratio).
//  levers  each lever as a ratio lever / today's path, interleaved A B A B in this
//          process, --reps times: (a) oneDNN off, (b) channels-last, (d) inference
//          mode and evaluation batch sizes, (e) pre-shuffled contiguous batches,
//          (f) pinning to one CPU, (g) libtorch's relu(max_pool2d) instead of PoolRelu2x2
//          (today's path since 77cedd9, so B/A > 1 is what the kernel saves). The BLAS lever (c) needs another process: run
//          bench/bench_blas.sh, which calls this with --section linear.
//  linear  fc1 and fc2 forward+backward at batch 32 only, with getrusage user and
//          system CPU-s, for bench_blas.sh.
//  pool    relu(max_pool2d(x, 2)) through libtorch against model.cc's PoolRelu2x2 on the
//          CNN's real conv1 and conv2 activations at batch 32, forward and forward+backward,
//          interleaved, and whether the results are bit-identical; not in the default sections.
//  eval-threads  the coordinator's central evaluation (FashionMnistTask::Evaluate on the
//          10,000 test images, coordinator role) with 1 and with --eval-threads intra-op
//          threads, interleaved, --reps times: wall and process CPU-s, and the ratios.
//          In `greenfed run` the clients wait while the coordinator evaluates, so the
//          cores are free for it; not in the default sections.
// Every timing is wall-clock on a shared machine: read the ratios, not the times.
//
// usage: bench_flops [--section S]... [--reps R] [--examples N] [--eval-threads T] [--data-dir DIR]
#include <sched.h>
#include <sys/resource.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "greenfed/malloc_tuning.h"
#include "fashion_mnist/idx.h"
#include "fashion_mnist/model_torch.h"
#include "greenfed/partition.h"
#include "fashion_mnist/task.h"

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double ProcessCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

struct Rusage {
  double user_s = 0;
  double sys_s = 0;
};
Rusage SelfRusage() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return {static_cast<double>(ru.ru_utime.tv_sec) + 1e-6 * static_cast<double>(ru.ru_utime.tv_usec),
          static_cast<double>(ru.ru_stime.tv_sec) + 1e-6 * static_cast<double>(ru.ru_stime.tv_usec)};
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "bench_flops: %s\n", what.c_str());
  std::exit(1);
}

// ---- FLOP count ------------------------------------------------------------

struct LayerFlops {
  const char* name;
  double forward;     // per image
  bool input_grad;    // backward also computes the input gradient
  double Train() const { return forward * (input_grad ? 3.0 : 2.0); }
};

// model.cc "cnn": conv 1->16 3x3 pad 1 on 28x28; pool; conv 16->32 3x3 pad 1 on
// 14x14; pool; fc 1568->64; fc 64->10. Bias adds, ReLU, pooling and the loss are
// O(activations) and left out (under 1% of the total).
std::vector<LayerFlops> CnnFlops() {
  return {
      {"conv1", 2.0 * 16 * 28 * 28 * (1 * 3 * 3), false},
      {"conv2", 2.0 * 32 * 14 * 14 * (16 * 3 * 3), true},
      {"fc1", 2.0 * 64 * 1568, true},
      {"fc2", 2.0 * 10 * 64, true},
  };
}
double ForwardFlops() {
  double f = 0;
  for (const auto& l : CnnFlops()) f += l.forward;
  return f;
}
double TrainFlops() {
  double f = 0;
  for (const auto& l : CnnFlops()) f += l.Train();
  return f;
}

void PrintFlops() {
  std::printf("== flops: CNN FLOPs per image (multiply-add = 2)\n");
  std::printf("%-6s %14s %14s\n", "layer", "forward", "fwd+bwd");
  for (const auto& l : CnnFlops()) std::printf("%-6s %14.0f %14.0f\n", l.name, l.forward, l.Train());
  std::printf("%-6s %14.0f %14.0f   (fwd+bwd / fwd = %.2f; 3 x forward would be %.0f)\n", "total", ForwardFlops(),
              TrainFlops(), TrainFlops() / ForwardFlops(), 3 * ForwardFlops());
}

// ---- kernels ---------------------------------------------------------------

// Runs `body` until this thread has used at least `min_s` CPU-s (and at least 3
// times); returns thread CPU-s per call, best of `reps` such windows. Thread CPU
// time, not wall: with 1 intra-op thread libtorch computes on the calling thread,
// and other processes' load then does not count.
double TimePerCall(const std::function<void()>& body, int reps, double min_s = 0.15) {
  body();  // warm-up: first-call allocations and oneDNN primitive creation
  double best = 1e300;
  for (int r = 0; r < reps; ++r) {
    int calls = 0;
    const double start = ThreadCpuSeconds();
    do {
      body();
      ++calls;
    } while (calls < 3 || ThreadCpuSeconds() - start < min_s);
    best = std::min(best, (ThreadCpuSeconds() - start) / calls);
  }
  return best;
}

struct LayerShape {
  const char* name;
  bool conv;
  int64_t in_c, out_c, hw;  // conv: channels and spatial size; linear: in/out features
  bool input_grad;
};
const LayerShape kShapes[] = {
    {"conv1", true, 1, 16, 28, false},
    {"conv2", true, 16, 32, 14, true},
    {"fc1", false, 1568, 64, 0, true},
    {"fc2", false, 64, 10, 0, true},
};

// Seconds per call of one layer's forward (backward = false) or forward+backward.
// as_conv: a linear layer computed as a conv2d whose kernel covers its whole
// [C, H, W] input (fc1: 32 x 7 x 7), i.e. through oneDNN instead of BLAS.
double TimeLayer(const LayerShape& s, int64_t batch, bool backward, int reps, bool as_conv = false) {
  torch::manual_seed(0);
  if (as_conv) {
    torch::Tensor x = torch::randn({batch, 32, 7, 7});
    torch::Tensor w = torch::randn({s.out_c, 32, 7, 7});
    torch::Tensor b = torch::randn({s.out_c});
    if (!backward) {
      torch::NoGradGuard no_grad;
      return TimePerCall([&] { (void)torch::conv2d(x, w, b); }, reps);
    }
    w.requires_grad_(true);
    b.requires_grad_(true);
    x.requires_grad_(true);
    return TimePerCall(
        [&] {
          torch::Tensor out = torch::conv2d(x, w, b);
          out.backward(torch::ones_like(out));
          w.mutable_grad().reset();
          b.mutable_grad().reset();
          x.mutable_grad().reset();
        },
        reps);
  }
  torch::Tensor x = s.conv ? torch::randn({batch, s.in_c, s.hw, s.hw}) : torch::randn({batch, s.in_c});
  torch::Tensor w = s.conv ? torch::randn({s.out_c, s.in_c, 3, 3}) : torch::randn({s.out_c, s.in_c});
  torch::Tensor b = torch::randn({s.out_c});
  if (backward) {
    w.requires_grad_(true);
    b.requires_grad_(true);
    if (s.input_grad) x.requires_grad_(true);
  }
  auto fwd = [&] {
    return s.conv ? torch::conv2d(x, w, b, /*stride=*/1, /*padding=*/1) : torch::linear(x, w, b);
  };
  if (!backward) {
    torch::NoGradGuard no_grad;
    return TimePerCall([&] { (void)fwd(); }, reps);
  }
  return TimePerCall(
      [&] {
        torch::Tensor out = fwd();
        out.backward(torch::ones_like(out));
        w.mutable_grad().reset();
        b.mutable_grad().reset();
        if (s.input_grad) x.mutable_grad().reset();
      },
      reps);
}

// The "cnn" of model.cc written out (same layers and op order as model.cc and
// bench_train's PlainCnn).
struct CnnImpl : torch::nn::Module {
  CnnImpl()
      : conv1(register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 16, 3).padding(1)))),
        conv2(register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(16, 32, 3).padding(1)))),
        fc1(register_module("fc1", torch::nn::Linear(1568, 64))),
        fc2(register_module("fc2", torch::nn::Linear(64, 10))) {}
  torch::Tensor forward(const torch::Tensor& x) {
    // Pooling as model.cc does it (PoolRelu2x2), or libtorch's ops (lever (g), section "pool").
    auto pool = [this](const torch::Tensor& t) {
      return torch_pool ? torch::relu(torch::max_pool2d(t, 2)) : greenfed::fmnist::PoolRelu2x2(t);
    };
    torch::Tensor h = pool(conv1->forward(x));
    h = pool(conv2->forward(h));
    // reshape, not flatten: with channels-last activations flatten would fail.
    return fc2->forward(torch::relu(fc1->forward(h.reshape({h.size(0), -1}))));
  }
  torch::nn::Conv2d conv1;
  torch::nn::Conv2d conv2;
  torch::nn::Linear fc1;
  torch::nn::Linear fc2;
  bool torch_pool = false;  // relu(max_pool2d) through libtorch, as before 77cedd9
};
TORCH_MODULE(Cnn);

double TimeNet(int64_t batch, int reps) {
  torch::manual_seed(0);
  Cnn net;
  torch::Tensor x = torch::randn({batch, 1, 28, 28});
  torch::Tensor y = torch::randint(0, 10, {batch}, torch::kInt64);
  return TimePerCall(
      [&] {
        net->zero_grad();
        torch::nn::functional::cross_entropy(net->forward(x), y).backward();
      },
      reps);
}

// Returns the fwd+bwd GFLOP/s of the sum-of-layers limit at `batch` (the time of
// the four layers alone, summed).
double PrintKernels(int reps) {
  std::printf("== kernels: libtorch conv2d / linear at the CNN's shapes, 1 thread, thread CPU time, best of %d windows >= 0.15 CPU-s\n",
              reps);
  std::printf("%-6s %-6s %12s %10s %12s %10s\n", "layer", "batch", "fwd_us", "fwd_GF/s", "fwdbwd_us", "fb_GF/s");
  const auto flops = CnnFlops();
  double limit32 = 0;
  for (int64_t batch : {int64_t{32}, int64_t{512}}) {
    double sum_s = 0;
    for (size_t i = 0; i < flops.size(); ++i) {
      const double f = TimeLayer(kShapes[i], batch, false, reps);
      const double fb = TimeLayer(kShapes[i], batch, true, reps);
      sum_s += fb;
      std::printf("%-6s %-6lld %12.1f %10.2f %12.1f %10.2f\n", kShapes[i].name, static_cast<long long>(batch), f * 1e6,
                  flops[i].forward * static_cast<double>(batch) / f * 1e-9, fb * 1e6,
                  flops[i].Train() * static_cast<double>(batch) / fb * 1e-9);
    }
    const double layers_gf = TrainFlops() * static_cast<double>(batch) / sum_s * 1e-9;
    const double net_s = TimeNet(batch, reps);
    std::printf("%-6s %-6lld %12s %10s %12.1f %10.2f   (sum of the four layers)\n", "layers",
                static_cast<long long>(batch), "", "", sum_s * 1e6, layers_gf);
    std::printf("%-6s %-6lld %12s %10s %12.1f %10.2f   (whole net, loss + autograd, random data)\n", "net",
                static_cast<long long>(batch), "", "", net_s * 1e6,
                TrainFlops() * static_cast<double>(batch) / net_s * 1e-9);
    const double fc1c = TimeLayer(kShapes[2], batch, false, reps, true);
    const double fc1cb = TimeLayer(kShapes[2], batch, true, reps, true);
    std::printf("%-6s %-6lld %12.1f %10.2f %12.1f %10.2f   (fc1 as a 7x7 conv2d, oneDNN)\n", "fc1c",
                static_cast<long long>(batch), fc1c * 1e6, flops[2].forward * static_cast<double>(batch) / fc1c * 1e-9,
                fc1cb * 1e6, flops[2].Train() * static_cast<double>(batch) / fc1cb * 1e-9);
    at::globalContext().setUserEnabledMkldnn(false);  // libtorch's native im2col + BLAS path
    const double c1n = TimeLayer(kShapes[0], batch, false, reps);
    const double c1nb = TimeLayer(kShapes[0], batch, true, reps);
    at::globalContext().setUserEnabledMkldnn(true);
    std::printf("%-6s %-6lld %12.1f %10.2f %12.1f %10.2f   (conv1 with oneDNN off: im2col + BLAS)\n", "conv1n",
                static_cast<long long>(batch), c1n * 1e6, flops[0].forward * static_cast<double>(batch) / c1n * 1e-9,
                c1nb * 1e6, flops[0].Train() * static_cast<double>(batch) / c1nb * 1e-9);
    if (batch == 32) limit32 = layers_gf;
  }
  return limit32;
}

// ---- fit -------------------------------------------------------------------

greenfed::FitRequest FitRequestFor(const greenfed::Parameters& init) {
  greenfed::TrainConfig config;
  config.epochs = 1;
  config.batch_size = 32;
  config.learning_rate = 0.05;
  config.momentum = 0.9;
  config.seed = 1;
  greenfed::FitRequest request;
  greenfed::PutTrainConfig(config, &request.config);
  request.parameters = init;
  return request;
}

void PrintFit(const std::string& data_dir, uint64_t examples, int reps, double limit32) {
  using greenfed::fmnist::FashionMnistTask;
  FashionMnistTask task;
  greenfed::TaskOptions o;
  o.role = greenfed::TaskRole::kCentralized;
  o.data_dir = data_dir;
  o.threads = 1;
  o.max_train_examples = examples;
  if (auto s = task.Prepare(o); !s.ok()) Die(s.ToString());
  auto init = task.InitialParameters();
  if (!init.ok()) Die(init.status().ToString());
  const greenfed::FitRequest request = FitRequestFor(*init);
  const double n = static_cast<double>(task.NumTrainExamples());
  std::printf("== fit: FashionMnistTask::Fit, %.0f real images, 1 epoch, batch 32, 1 thread; %d reps\n", n, reps);
  std::printf("%-4s %10s %10s %10s %12s %12s %12s\n", "rep", "wall_s", "cpu_s", "GFLOP/s", "of_layers32", "eval_wall_s",
              "eval_cpu_s");
  for (int r = 0; r < reps; ++r) {
    greenfed::ClientState state;
    auto start = Clock::now();
    double cpu0 = ProcessCpuSeconds();
    auto fit = task.Fit(request, state);
    const double wall = Seconds(start);
    const double cpu = ProcessCpuSeconds() - cpu0;
    if (!fit.ok()) Die(fit.status().ToString());
    start = Clock::now();
    cpu0 = ProcessCpuSeconds();
    auto eval = task.Evaluate(fit->parameters);
    const double eval_wall = Seconds(start);
    const double eval_cpu = ProcessCpuSeconds() - cpu0;
    if (!eval.ok()) Die(eval.status().ToString());
    const double gf = n * TrainFlops() / cpu * 1e-9;
    std::printf("%-4d %10.3f %10.3f %10.2f %12.3f %12.3f %12.3f   loss %.6f\n", r, wall, cpu, gf,
                limit32 > 0 ? gf / limit32 : 0.0, eval_wall, eval_cpu, fit->train_loss);
  }
  std::printf("GFLOP/s here is per CPU-second (n x %.0f FLOP / fit cpu_s), so that load from other\n"
              "processes does not count against it; of_layers32 = that / the batch-32 sum-of-layers limit.\n"
              "Overhead denominators: sum of isolated fit CPU-s = 10 shards x this fit's cpu_s (6,000-image\n"
              "shards), plus eval_cpu_s per central evaluation (10,000 test images).\n",
              TrainFlops());
}

// ---- levers ----------------------------------------------------------------

struct Data {
  torch::Tensor train_x, train_y, test_x, test_y;
};

Data LoadData(const std::string& data_dir, int64_t examples) {
  auto data = greenfed::fmnist::LoadFashionMnist(data_dir, true, true);
  if (!data.ok()) Die(data.status().ToString());
  auto norm = [](greenfed::fmnist::IdxImages& im, int64_t n) {
    return torch::from_blob(im.pixels.data(), {n, 1, 28, 28}, torch::kUInt8)
        .to(torch::kFloat32)
        .div_(255.0f)
        .sub_(0.2860f)
        .div_(0.3530f);
  };
  Data d;
  const int64_t n = std::min<int64_t>(examples, data->train_images.count);
  d.train_x = norm(data->train_images, n);
  d.train_y = torch::from_blob(data->train_labels.labels.data(), {n}, torch::kUInt8).to(torch::kInt64);
  const int64_t t = data->test_images.count;
  d.test_x = norm(data->test_images, t);
  d.test_y = torch::from_blob(data->test_labels.labels.data(), {t}, torch::kUInt8).to(torch::kInt64);
  return d;
}

struct TrainVariant {
  bool mkldnn = true;
  bool channels_last = false;
  bool contiguous_batches = false;  // one index_select per epoch, then slices
  bool pin = false;
  bool torch_pool = false;  // (g) libtorch's pooling instead of PoolRelu2x2
};

struct TrainOutcome {
  double wall_s = 0;
  double cpu_s = 0;
  double loss = 0;
  std::vector<torch::Tensor> weights;
};

// One epoch of Fit's loop (same shuffle, SGD, per-batch loss read) from seed-0 weights.
TrainOutcome TrainEpoch(const Data& d, const TrainVariant& v) {
  at::globalContext().setUserEnabledMkldnn(v.mkldnn);
  cpu_set_t saved;
  CPU_ZERO(&saved);
  if (v.pin) {
    sched_getaffinity(0, sizeof(saved), &saved);
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    sched_setaffinity(0, sizeof(one), &one);
  }
  torch::manual_seed(0);
  Cnn net;
  net->torch_pool = v.torch_pool;
  if (v.channels_last) {
    torch::NoGradGuard no_grad;
    for (auto* conv : {&net->conv1, &net->conv2}) {
      (*conv)->weight.set_data((*conv)->weight.contiguous(torch::MemoryFormat::ChannelsLast));
    }
  }
  const auto start = Clock::now();
  const double cpu0 = ProcessCpuSeconds();
  net->train();
  torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  const int64_t n = d.train_x.size(0);
  greenfed::DeterministicRng rng(1);
  std::vector<uint32_t> order(static_cast<size_t>(n));
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<uint32_t>(i);
  rng.Shuffle(&order);
  torch::Tensor perm = torch::empty({n}, torch::kInt64);
  for (int64_t i = 0; i < n; ++i) perm.data_ptr<int64_t>()[i] = order[static_cast<size_t>(i)];
  torch::Tensor xs, ys;
  if (v.contiguous_batches) {
    xs = d.train_x.index_select(0, perm);
    ys = d.train_y.index_select(0, perm);
  }
  double loss_sum = 0;
  for (int64_t s = 0; s < n; s += 32) {
    const int64_t e = std::min<int64_t>(n, s + 32);
    torch::Tensor x, y;
    if (v.contiguous_batches) {
      x = xs.slice(0, s, e);
      y = ys.slice(0, s, e);
    } else {
      const torch::Tensor idx = perm.slice(0, s, e);
      x = d.train_x.index_select(0, idx);
      y = d.train_y.index_select(0, idx);
    }
    if (v.channels_last) x = x.contiguous(torch::MemoryFormat::ChannelsLast);
    opt.zero_grad();
    torch::Tensor loss = torch::nn::functional::cross_entropy(net->forward(x), y);
    loss.backward();
    opt.step();
    loss_sum += loss.item<double>() * static_cast<double>(e - s);
  }
  TrainOutcome out;
  out.wall_s = Seconds(start);
  out.cpu_s = ProcessCpuSeconds() - cpu0;
  out.loss = loss_sum / static_cast<double>(n);
  for (const auto& p : net->parameters()) out.weights.push_back(p.detach().contiguous().clone());
  if (v.pin) sched_setaffinity(0, sizeof(saved), &saved);
  at::globalContext().setUserEnabledMkldnn(true);
  return out;
}

double MaxDiff(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, (a[i] - b[i]).abs().max().item<double>());
  return m;
}

struct EvalVariant {
  bool inference_mode = false;
  int64_t batch = 256;  // task.cc kEvalBatch
  bool mkldnn = true;
  bool torch_pool = false;  // (g)
};

struct EvalOutcome {
  double wall_s = 0;
  double cpu_s = 0;
  double accuracy = 0;
  double loss = 0;
};

EvalOutcome Eval(Cnn& net, const Data& d, const EvalVariant& v) {
  at::globalContext().setUserEnabledMkldnn(v.mkldnn);
  const auto start = Clock::now();
  const double cpu0 = ProcessCpuSeconds();
  std::unique_ptr<torch::NoGradGuard> ng;
  std::unique_ptr<c10::InferenceMode> im;
  if (v.inference_mode) {
    im = std::make_unique<c10::InferenceMode>();
  } else {
    ng = std::make_unique<torch::NoGradGuard>();
  }
  net->eval();
  net->torch_pool = v.torch_pool;
  const int64_t n = d.test_x.size(0);
  double loss_sum = 0;
  int64_t correct = 0;
  const auto sum = torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum);
  for (int64_t s = 0; s < n; s += v.batch) {
    const int64_t e = std::min(n, s + v.batch);
    const torch::Tensor y = d.test_y.slice(0, s, e);
    const torch::Tensor logits = net->forward(d.test_x.slice(0, s, e));
    loss_sum += torch::nn::functional::cross_entropy(logits, y, sum).item<double>();
    correct += logits.argmax(1).eq(y).sum().item<int64_t>();
  }
  EvalOutcome out;
  out.wall_s = Seconds(start);
  out.cpu_s = ProcessCpuSeconds() - cpu0;
  out.accuracy = static_cast<double>(correct) / static_cast<double>(n);
  out.loss = loss_sum / static_cast<double>(n);
  at::globalContext().setUserEnabledMkldnn(true);
  return out;
}

// Interleaves A (baseline) and B (lever) `reps` times; prints per-rep CPU-s ratios
// B/A and their median (CPU-s, not wall: the machine is shared).
template <typename Outcome>
void Interleave(const char* name, int reps, const std::function<Outcome()>& a, const std::function<Outcome()>& b,
                const std::function<std::string(const Outcome&, const Outcome&)>& check) {
  std::vector<double> ratios, wall_ratios;
  std::string note;
  for (int r = 0; r < reps; ++r) {
    const Outcome oa = a();
    const Outcome ob = b();
    ratios.push_back(ob.cpu_s / oa.cpu_s);
    wall_ratios.push_back(ob.wall_s / oa.wall_s);
    note = check(oa, ob);
    std::printf("  %-34s rep %d: A %.3f cpu-s  B %.3f cpu-s  B/A %.3f (wall %.3f)\n", name, r, oa.cpu_s, ob.cpu_s,
                ratios.back(), wall_ratios.back());
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
  };
  std::printf("LEVER %-34s median B/A cpu %.3f [%.3f..%.3f] wall %.3f  (%d reps)  %s\n", name, median(ratios),
              *std::min_element(ratios.begin(), ratios.end()), *std::max_element(ratios.begin(), ratios.end()),
              median(wall_ratios), reps, note.c_str());
}

void PrintLevers(const Data& d, int reps) {
  std::printf("== levers: B/A in process CPU-s, A = today's path, interleaved A B, %d reps, %lld train images\n",
              reps, static_cast<long long>(d.train_x.size(0)));
  auto train_check = [](const TrainOutcome& a, const TrainOutcome& b) {
    char buf[160];
    std::snprintf(buf, sizeof(buf), "loss A %.6f B %.6f max|dw| %.3g", a.loss, b.loss, MaxDiff(a.weights, b.weights));
    return std::string(buf);
  };
  const TrainVariant base;
  auto lever = [&](const char* name, TrainVariant v) {
    Interleave<TrainOutcome>(name, reps, [&] { return TrainEpoch(d, base); }, [&] { return TrainEpoch(d, v); },
                             train_check);
  };
  TrainVariant v;
  v.mkldnn = false;
  lever("(a) train, oneDNN off", v);
  v = {};
  v.channels_last = true;
  lever("(b) train, channels-last", v);
  v = {};
  v.contiguous_batches = true;
  lever("(e) train, pre-shuffled contiguous", v);
  v = {};
  v.pin = true;
  lever("(f) train, pinned to one CPU", v);
  v = {};
  v.torch_pool = true;
  lever("(g) train, libtorch max_pool2d+relu", v);

  torch::manual_seed(0);
  Cnn net;
  auto eval_check = [](const EvalOutcome& a, const EvalOutcome& b) {
    char buf[160];
    std::snprintf(buf, sizeof(buf), "acc A %.4f B %.4f loss A %.6f B %.6f", a.accuracy, b.accuracy, a.loss, b.loss);
    return std::string(buf);
  };
  auto eval_lever = [&](const char* name, EvalVariant ev) {
    Interleave<EvalOutcome>(name, reps, [&] { return Eval(net, d, EvalVariant{}); }, [&] { return Eval(net, d, ev); },
                            eval_check);
  };
  eval_lever("(d) eval, InferenceMode", EvalVariant{true, 256, true});
  for (int64_t b : {int64_t{32}, int64_t{1000}, int64_t{10000}}) {
    const std::string name = "(d) eval, batch " + std::to_string(b);
    eval_lever(name.c_str(), EvalVariant{false, b, true});
  }
  eval_lever("(a) eval, oneDNN off", EvalVariant{false, 256, false});
  eval_lever("(g) eval, libtorch max_pool2d+relu", EvalVariant{false, 256, true, true});
}

// fc1 and fc2 forward+backward at batch 32, and the user / system CPU-s they took.
void PrintLinear(int reps) {
  const Rusage r0 = SelfRusage();
  double s1 = 0;
  double s2 = 0;
  for (int r = 0; r < reps; ++r) {
    s1 += TimeLayer(kShapes[2], 32, true, 1);
    s2 += TimeLayer(kShapes[3], 32, true, 1);
  }
  const Rusage r1 = SelfRusage();
  std::printf("LINEAR fc1_fwdbwd_us %.1f fc2_fwdbwd_us %.1f user_s %.3f sys_s %.3f (%d reps)\n", s1 / reps * 1e6,
              s2 / reps * 1e6, r1.user_s - r0.user_s, r1.sys_s - r0.sys_s, reps);
}

// relu(max_pool2d(x, 2)) through libtorch (A) and through PoolRelu2x2 (B, model.cc), on the
// CNN's two real activations: conv1 and conv2 outputs (seed-0 weights) of 32 real training
// images; forward alone (inference) and forward + backward, A and B alternating in one
// process, thread CPU-s per call (best of --reps windows); and the bits compared.
void PrintPool(const std::string& data_dir, int reps) {
  const Data d = LoadData(data_dir, 32);
  torch::manual_seed(0);
  Cnn net;
  torch::Tensor h1, h2;
  {
    torch::NoGradGuard no_grad;
    h1 = net->conv1->forward(d.train_x);
    h2 = net->conv2->forward(greenfed::fmnist::PoolRelu2x2(h1));
  }
  std::printf("== pool: relu(max_pool2d(x, 2)), libtorch (A) against PoolRelu2x2 (B), batch 32, 1 thread, "
              "thread CPU-s per call, best of %d\n", reps);
  std::printf("%-7s %-16s %10s %10s %8s %s\n", "input", "pass", "A_us", "B_us", "B/A", "bit-identical");
  for (const auto& [name, x] : std::vector<std::pair<const char*, torch::Tensor>>{{"conv1", h1}, {"conv2", h2}}) {
    torch::Tensor grad_out;
    {
      torch::NoGradGuard no_grad;
      grad_out = torch::randn_like(greenfed::fmnist::PoolRelu2x2(x));
    }
    auto libtorch_op = [](const torch::Tensor& t) { return torch::relu(torch::max_pool2d(t, 2)); };
    auto ours = [](const torch::Tensor& t) { return greenfed::fmnist::PoolRelu2x2(t); };
    bool same_fwd = false, same_bwd = false;
    {
      torch::NoGradGuard no_grad;
      same_fwd = torch::equal(libtorch_op(x), ours(x));
    }
    auto fwd_bwd = [&](const auto& op, torch::Tensor* grad) {
      torch::Tensor xi = x.detach().clone().requires_grad_(true);
      op(xi).backward(grad_out);
      if (grad != nullptr) *grad = xi.grad();
    };
    {
      torch::Tensor ga, gb;
      fwd_bwd(libtorch_op, &ga);
      fwd_bwd(ours, &gb);
      same_bwd = torch::equal(ga, gb);
    }
    double a_fwd = 1e300, b_fwd = 1e300, a_fb = 1e300, b_fb = 1e300;
    for (int r = 0; r < reps; ++r) {  // alternate A and B so that load hits both alike
      torch::NoGradGuard no_grad;
      a_fwd = std::min(a_fwd, TimePerCall([&] { (void)libtorch_op(x); }, 1));
      b_fwd = std::min(b_fwd, TimePerCall([&] { (void)ours(x); }, 1));
    }
    for (int r = 0; r < reps; ++r) {
      a_fb = std::min(a_fb, TimePerCall([&] { fwd_bwd(libtorch_op, nullptr); }, 1));
      b_fb = std::min(b_fb, TimePerCall([&] { fwd_bwd(ours, nullptr); }, 1));
    }
    std::printf("%-7s %-16s %10.1f %10.1f %8.3f %s\n", name, "forward", a_fwd * 1e6, b_fwd * 1e6, b_fwd / a_fwd,
                same_fwd ? "yes" : "NO");
    std::printf("%-7s %-16s %10.1f %10.1f %8.3f %s\n", name, "forward+backward", a_fb * 1e6, b_fb * 1e6, b_fb / a_fb,
                same_bwd ? "yes" : "NO");
  }
}

// The central evaluation at 1 thread (A) and `threads` threads (B), interleaved A B A B.
void PrintEvalThreads(const std::string& data_dir, int threads, int reps) {
  using greenfed::fmnist::FashionMnistTask;
  FashionMnistTask task;
  greenfed::TaskOptions o;
  o.role = greenfed::TaskRole::kCoordinator;
  o.data_dir = data_dir;
  o.threads = 1;
  if (auto s = task.Prepare(o); !s.ok()) Die(s.ToString());
  auto init = task.InitialParameters();
  if (!init.ok()) Die(init.status().ToString());
  std::printf("== eval-threads: central evaluation of the test set, 1 thread (A) vs %d threads (B), %d reps\n",
              threads, reps);
  std::vector<double> wall_ratio;
  std::vector<double> cpu_ratio;
  for (int r = 0; r < reps; ++r) {
    double wall[2];
    double cpu[2];
    double acc[2];
    for (int arm = 0; arm < 2; ++arm) {
      torch::set_num_threads(arm == 0 ? 1 : threads);
      const auto start = Clock::now();
      const double cpu0 = ProcessCpuSeconds();
      auto eval = task.Evaluate(*init);
      wall[arm] = Seconds(start);
      cpu[arm] = ProcessCpuSeconds() - cpu0;
      if (!eval.ok()) Die(eval.status().ToString());
      acc[arm] = eval->accuracy;
    }
    wall_ratio.push_back(wall[1] / wall[0]);
    cpu_ratio.push_back(cpu[1] / cpu[0]);
    std::printf("  rep %d: A wall %.3f cpu %.3f | B wall %.3f cpu %.3f | B/A wall %.3f cpu %.3f | acc %.4f %.4f\n", r,
                wall[0], cpu[0], wall[1], cpu[1], wall[1] / wall[0], cpu[1] / cpu[0], acc[0], acc[1]);
  }
  torch::set_num_threads(1);
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  };
  std::printf("EVAL_THREADS %d median B/A wall %.3f cpu %.3f (%d reps)\n", threads, median(wall_ratio),
              median(cpu_ratio), reps);
}

}  // namespace

int main(int argc, char** argv) {
  // As greenfed's main does, so that the figures here are those of the framework's processes.
  if (!greenfed::TuneMallocForTensors()) Die("mallopt refused the thresholds");
  std::set<std::string> sections;
  int reps = 5;
  int64_t examples = 6000;
  int64_t lever_examples = 1920;
  int eval_threads = 2;
  std::string data_dir = greenfed::fmnist::kDefaultDataDir;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--section" && i + 1 < argc) {
      sections.insert(argv[++i]);
    } else if (a == "--reps" && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--examples" && i + 1 < argc) {
      examples = std::max<int64_t>(1, std::atoll(argv[++i]));
    } else if (a == "--lever-examples" && i + 1 < argc) {
      lever_examples = std::max<int64_t>(32, std::atoll(argv[++i]));
    } else if (a == "--eval-threads" && i + 1 < argc) {
      eval_threads = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--data-dir" && i + 1 < argc) {
      data_dir = argv[++i];
    } else {
      Die("usage: bench_flops [--section flops|kernels|fit|levers|linear|eval-threads|pool]... [--reps R] "
          "[--examples N] [--lever-examples N] [--eval-threads T] [--data-dir DIR]");
    }
  }
  if (sections.empty()) sections = {"flops", "kernels", "fit", "levers"};
  torch::set_num_threads(1);
  try {
    if (sections.count("flops")) PrintFlops();
    double limit32 = 0;
    if (sections.count("kernels")) limit32 = PrintKernels(reps);
    if (sections.count("fit")) PrintFit(data_dir, static_cast<uint64_t>(examples), reps, limit32);
    if (sections.count("levers")) PrintLevers(LoadData(data_dir, lever_examples), reps);
    if (sections.count("linear")) PrintLinear(reps);
    if (sections.count("pool")) PrintPool(data_dir, reps);
    if (sections.count("eval-threads")) PrintEvalThreads(data_dir, eval_threads, reps);
  } catch (const c10::Error& e) {
    Die(e.what_without_backtrace());
  }
  const Rusage ru = SelfRusage();
  std::printf("process user_s %.3f sys_s %.3f\n", ru.user_s, ru.sys_s);
  return 0;
}
