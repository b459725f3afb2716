// Each strategy's aggregation time per round and its peak heap, as ratios to
// FedAvg's streaming sum, measured in the same run on updates with the shapes of the
// example CNN (105,866 parameters). Prints one line per strategy and client count.
//
//   build/bench/bench_strategy [rounds=5]
//
// Peak heap: glibc's mallinfo2().uordblks (bytes in use) sampled after every Add and
// after Result/Update, minus the bytes in use before the round (the updates
// themselves are allocated before and not counted).
#include <malloc.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "bench_util.h"
#include "greenfed/coordinator/strategy.h"

namespace {

using greenfed::bench::RandomCnnModel;

size_t InUse() { return mallinfo2().uordblks; }

struct Figures {
  double ms_per_round = 0;
  double peak_bytes = 0;
};

Figures Measure(const std::string& name, const greenfed::Parameters& global,
                const std::vector<greenfed::Parameters>& updates, int rounds) {
  greenfed::StrategyOptions o;
  o.name = name;
  o.num_malicious_clients = 1;
  if (name == "fedprox") o.proximal_mu = 0.01;
  o.federation_size = static_cast<uint32_t>(updates.size());  // scaffold: every client sampled
  const bool scaffold = name == "scaffold";
  auto made = greenfed::MakeStrategy(o);
  if (!made.ok()) {
    std::fprintf(stderr, "%s\n", made.status().ToString().c_str());
    std::exit(1);
  }
  auto& strategy = *made;
  Figures f;
  double seconds = 0;
  for (int r = 0; r < rounds; ++r) {
    const size_t before = InUse();
    size_t peak = before;
    const auto t0 = std::chrono::steady_clock::now();
    auto agg = strategy->BeginRound(global);
    if (!agg.ok()) std::exit(1);
    for (size_t k = 0; k < updates.size(); ++k) {
      // scaffold: each client's delta c_i (its update's values stand in) and the
      // control group that ConfigureFit copies into each Fit.
      greenfed::TensorGroups groups;
      if (scaffold) {
        greenfed::ConfigMap config;
        strategy->ConfigureFit(1, &config, &groups);
        groups["control"] = updates[k];
      }
      if (!(*agg)->Add(updates[k], groups, false, 100 + k).ok()) std::exit(1);
      peak = std::max(peak, InUse());
    }
    auto combined = (*agg)->Result();
    peak = std::max(peak, InUse());
    if (!combined.ok()) std::exit(1);
    auto next = strategy->Update(global, std::move(combined).value());
    peak = std::max(peak, InUse());
    if (!next.ok()) std::exit(1);
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    f.peak_bytes = std::max(f.peak_bytes, static_cast<double>(peak - before));
  }
  f.ms_per_round = seconds / rounds * 1e3;
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 5;
  std::mt19937 rng(11);
  const greenfed::Parameters global = RandomCnnModel(&rng);
  for (int clients : {10, 100}) {
    std::vector<greenfed::Parameters> updates;
    for (int k = 0; k < clients; ++k) updates.push_back(RandomCnnModel(&rng));
    (void)Measure("fedavg", global, updates, 1);  // warm-up: page in the updates and the allocator
    for (const char* name : {"fedavg", "fedavgm", "fedadagrad", "fedadam", "fedyogi", "fedmedian", "fedtrimmedavg",
                             "krum", "fedprox", "scaffold"}) {
      // The baseline is measured right before each strategy, so that both see the
      // same state of a shared, noisy machine.
      const Figures base = Measure("fedavg", global, updates, rounds);
      const Figures f = Measure(name, global, updates, rounds);
      std::printf("%-13s %3d clients: %8.2f ms/round (%6.2fx fedavg), peak heap %7.1f MB (%6.2fx fedavg)\n", name,
                  clients, f.ms_per_round, f.ms_per_round / base.ms_per_round, f.peak_bytes / 1e6,
                  f.peak_bytes / base.peak_bytes);
    }
  }
  return 0;
}
