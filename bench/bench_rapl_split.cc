// bench_rapl_split: what the RAPL split (sim/rapl_split.h) adds to each metered fit or
// evaluation in greenfed simulate. One item = SplitLedger::Begin + End, two windows, each
// reading the package counter (a fake powercap tree in a temp dir: a page-cache file, not
// sysfs) and the CPU clocks of every running item. Baseline, measured in the same run: the
// model's metering of one item (two reads of the thread CPU clock). Prints microseconds per
// item and the ratio, with 0, 3 and 15 other items running (workers - 1).
//   build/bench/bench_rapl_split [items]
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "greenfed/sim/rapl_split.h"
#include "greenfed/sim/sim_transport.h"

namespace {

double Seconds(std::chrono::steady_clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  const int n = argc > 1 ? std::atoi(argv[1]) : 20000;
  std::string tmpl = (fs::temp_directory_path() / "greenfed_bench_split_XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) return 1;
  const fs::path zone = fs::path(tmpl) / "intel-rapl:0";
  fs::create_directories(zone);
  std::ofstream(zone / "name") << "package-0\n";
  std::ofstream(zone / "max_energy_range_uj") << "262143328850\n";
  std::ofstream(zone / "energy_uj") << "1000\n";

  auto t0 = std::chrono::steady_clock::now();
  double sink = 0;
  for (int i = 0; i < n; ++i) sink += greenfed::ThreadCpuSeconds() - greenfed::ThreadCpuSeconds();
  const double model_s = Seconds(std::chrono::steady_clock::now() - t0) / n;
  std::printf("baseline (model metering, 2 thread-CPU reads): %.3f us per item%s\n", model_s * 1e6,
              sink > 1 ? "!" : "");

  for (int others : {0, 3, 15}) {
    auto rapl = greenfed::OpenRaplMeter(tmpl, 3600);
    if (!rapl.ok()) return 1;
    auto ledger = greenfed::SplitLedger::Open(
        greenfed::SystemSplitClocks(std::shared_ptr<greenfed::EnergyMeter>(std::move(rapl).value())));
    if (!ledger.ok()) return 1;
    const int64_t clock = greenfed::CurrentThreadClock();
    std::vector<greenfed::SplitLedger::ItemId> running;
    for (int k = 0; k < others; ++k) running.push_back((*ledger)->Begin(clock));
    t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) (*ledger)->End((*ledger)->Begin(clock));
    const double split_s = Seconds(std::chrono::steady_clock::now() - t0) / n;
    std::printf("rapl-split, %2d other items running: %.3f us per item (%.0fx the baseline)\n", others,
                split_s * 1e6, split_s / model_s);
  }
  fs::remove_all(tmpl);
  return 0;
}
