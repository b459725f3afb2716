// A consumer of the installed greenfed::sim (tests/package_test.sh): its public headers
// compile outside greenfed's tree and its symbols link.
#include <cstdio>
#include <vector>

#include "greenfed/sim/rapl_split.h"
#include "greenfed/sim/sim_transport.h"

int main() {
  const std::vector<uint64_t> shares = greenfed::SplitEnergyByCpu(1000, {1, 1, 2});
  std::printf("sim_consumer: SplitEnergyByCpu(1000 uJ, 1:1:2) = %llu %llu %llu; thread CPU %s\n",
              static_cast<unsigned long long>(shares[0]), static_cast<unsigned long long>(shares[1]),
              static_cast<unsigned long long>(shares[2]), greenfed::ThreadCpuSeconds() >= 0 ? "ok" : "bad");
  return shares == std::vector<uint64_t>{250, 250, 500} ? 0 : 1;
}
