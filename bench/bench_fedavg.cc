// FedAvg accumulation against a plain weighted-sum loop over the same floats,
// measured in the same run. Prints one line with both times and their ratio.
//
//   build/bench/bench_fedavg [clients=10] [iterations=20]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "bench_util.h"
#include "greenfed/coordinator/fedavg.h"

namespace {

using greenfed::bench::RandomCnnModel;

double Seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

int main(int argc, char** argv) {
  const int clients = argc > 1 ? std::atoi(argv[1]) : 10;
  const int iterations = argc > 2 ? std::atoi(argv[2]) : 20;
  std::mt19937 rng(7);
  const greenfed::Parameters global = RandomCnnModel(&rng);
  std::vector<greenfed::Parameters> updates;
  for (int k = 0; k < clients; ++k) updates.push_back(RandomCnnModel(&rng));

  // Baseline: the weighted sum a hand-written loop would do, float in, double sum.
  std::vector<std::vector<float>> flat;
  for (const auto& u : updates) {
    std::vector<float> all;
    for (const auto& b : u) {
      auto v = greenfed::FloatValues(b);
      all.insert(all.end(), v.begin(), v.end());
    }
    flat.push_back(std::move(all));
  }
  double checksum = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (int it = 0; it < iterations; ++it) {
    std::vector<double> sum(flat[0].size(), 0.0);
    for (int k = 0; k < clients; ++k) {
      const double n = 100.0 + k;
      for (size_t i = 0; i < sum.size(); ++i) sum[i] += n * flat[static_cast<size_t>(k)][i];
    }
    checksum += sum[it % sum.size()];
  }
  auto t1 = std::chrono::steady_clock::now();

  greenfed::FedAvgAccumulator acc;
  for (int it = 0; it < iterations; ++it) {
    if (!acc.Reset(global).ok()) return 1;
    for (int k = 0; k < clients; ++k) {
      if (!acc.Add(updates[static_cast<size_t>(k)], false, static_cast<uint64_t>(100 + k)).ok()) return 1;
    }
    auto r = acc.Result();
    if (!r.ok()) return 1;
    checksum += static_cast<double>(r->size());
  }
  auto t2 = std::chrono::steady_clock::now();
  const double base = Seconds(t0, t1) / iterations * 1e3;
  const double fedavg = Seconds(t1, t2) / iterations * 1e3;
  std::printf("fedavg %d clients x 105866 params: %.2f ms/round, plain weighted-sum loop %.2f ms/round, ratio %.2f "
              "(checksum %.3g)\n",
              clients, fedavg, base, fedavg / base, checksum);
  return 0;
}
