// The RAPL split of greenfed simulate (sim/rapl_split.h): the pure split by CPU share, the
// window ledger over a fake powercap tree that the test advances (with a wrap), the
// fallbacks when the counter goes backwards or becomes unreadable, the coordinator's
// meter, and the rapl-split label in nodes.csv.
#include <doctest/doctest.h>
#include <stdlib.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "greenfed/run_dir_schema.h"
#include "greenfed/sim/rapl_split.h"

namespace greenfed {
namespace {

namespace fs = std::filesystem;

// A fake powercap root with one package zone, intel-rapl:0, and a 1 J counter range.
class FakePowercap {
 public:
  explicit FakePowercap(uint64_t start_uj, uint64_t max_range_uj = 1000000) {
    std::string pattern = (fs::temp_directory_path() / "greenfed_split_XXXXXX").string();
    REQUIRE(mkdtemp(pattern.data()) != nullptr);
    root_ = pattern;
    zone_ = root_ / "intel-rapl:0";
    fs::create_directories(zone_);
    Write("name", "package-0");
    Write("max_energy_range_uj", std::to_string(max_range_uj));
    Set(start_uj);
  }
  ~FakePowercap() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  FakePowercap(const FakePowercap&) = delete;
  FakePowercap& operator=(const FakePowercap&) = delete;
  void Set(uint64_t energy_uj) { Write("energy_uj", std::to_string(energy_uj)); }
  void Remove() { fs::remove(zone_ / "energy_uj"); }
  std::string root() const { return root_.string(); }

 private:
  void Write(const std::string& file, const std::string& value) {
    const fs::path tmp = zone_ / (file + ".tmp");
    {
      std::ofstream out(tmp, std::ios::trunc);
      REQUIRE(out);
      out << value << "\n";
    }
    fs::rename(tmp, zone_ / file);
  }
  fs::path root_, zone_;
};

// Made-up CPU clocks: the test moves them.
struct FakeCpu {
  int64_t process_ns = 0;
  std::map<int64_t, int64_t> thread_ns;  // by clock key
};

// The ledger over the fake tree (no background polls during a test: a 1 h poll period).
std::shared_ptr<SplitLedger> OpenLedger(const FakePowercap& tree, FakeCpu* cpu) {
  StatusOr<std::unique_ptr<EnergyMeter>> rapl = OpenRaplMeter(tree.root(), 3600);
  REQUIRE_MESSAGE(rapl.ok(), rapl.status().ToString());
  SplitClocks clocks;
  std::shared_ptr<EnergyMeter> package(std::move(rapl).value());
  clocks.package_uj = [package] { return PackageMicrojoules(package.get()); };
  clocks.process_cpu_ns = [cpu] { return cpu->process_ns; };
  clocks.thread_cpu_ns = [cpu](int64_t clock) { return cpu->thread_ns[clock]; };
  StatusOr<std::unique_ptr<SplitLedger>> ledger = SplitLedger::Open(std::move(clocks));
  REQUIRE_MESSAGE(ledger.ok(), ledger.status().ToString());
  return std::shared_ptr<SplitLedger>(std::move(ledger).value());
}

uint64_t Sum(const std::vector<uint64_t>& v) {
  uint64_t s = 0;
  for (uint64_t x : v) s += x;
  return s;
}

class FakeEnv final : public Env {
 public:
  double NowSeconds() override { return wall_s; }
  double ProcessCpuSeconds() override { return cpu_s; }
  uint64_t ResidentBytes() override { return 0; }
  double wall_s = 0;
  double cpu_s = 0;
};

}  // namespace

TEST_CASE("rapl-split: SplitEnergyByCpu gives shares proportional to CPU that sum to the energy exactly") {
  CHECK(SplitEnergyByCpu(1000, {1, 1, 2}) == std::vector<uint64_t>{250, 250, 500});
  // 100 / 3: the one microjoule left goes to the largest remainder, ties to the lower index.
  CHECK(SplitEnergyByCpu(100, {1, 1, 1}) == std::vector<uint64_t>{34, 33, 33});
  CHECK(SplitEnergyByCpu(10, {2, 1}) == std::vector<uint64_t>{7, 3});
  // Items with no CPU (or a negative reading) get nothing; the others get it all.
  CHECK(SplitEnergyByCpu(7, {0, 5, -3}) == std::vector<uint64_t>{0, 7, 0});
  // A window with no work: no item gets anything (the ledger books it to the coordinator).
  CHECK(SplitEnergyByCpu(500, {0, 0}) == std::vector<uint64_t>{0, 0});
  CHECK(SplitEnergyByCpu(500, {}).empty());
  CHECK(SplitEnergyByCpu(0, {3, 4}) == std::vector<uint64_t>{0, 0});
  // No overflow at the extremes: 2^64 - 1 uJ over CPU times near 2^63 ns.
  const uint64_t big_uj = std::numeric_limits<uint64_t>::max();
  const int64_t big_ns = std::numeric_limits<int64_t>::max();
  const std::vector<uint64_t> big = SplitEnergyByCpu(big_uj, {big_ns, big_ns, 1});
  CHECK(Sum(big) == big_uj);
  CHECK(big[2] <= 1);
  // Many made-up shares: exact sums, each within 1 uJ of its exact proportion.
  uint64_t state = 12345;
  auto next = [&state] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return state >> 33;
  };
  for (int trial = 0; trial < 200; ++trial) {
    const uint64_t energy_uj = next() % 5000000000ULL;
    std::vector<int64_t> cpu(1 + next() % 12);
    double total = 0;
    for (auto& c : cpu) {
      c = (next() % 4 == 0) ? 0 : static_cast<int64_t>(next() % 3000000000ULL);
      total += static_cast<double>(c);
    }
    const std::vector<uint64_t> shares = SplitEnergyByCpu(energy_uj, cpu);
    REQUIRE(shares.size() == cpu.size());
    if (total == 0) {
      CHECK(Sum(shares) == 0);
      continue;
    }
    CHECK(Sum(shares) == energy_uj);
    for (size_t i = 0; i < cpu.size(); ++i) {
      const double exact = static_cast<double>(energy_uj) * static_cast<double>(cpu[i]) / total;
      CHECK(std::fabs(static_cast<double>(shares[i]) - exact) < 1.0 + exact * 1e-12);
      if (cpu[i] == 0) CHECK(shares[i] == 0);
    }
  }
}

TEST_CASE("rapl-split: the ledger splits each window over the work in it, through a counter wrap") {
  FakePowercap tree(/*start_uj=*/900000);  // 1 J range: the counter wraps at 1,000,000 uJ
  FakeCpu cpu;
  std::shared_ptr<SplitLedger> ledger = OpenLedger(tree, &cpu);

  // Window 1: nobody used CPU -> the package's 50,000 uJ go to the coordinator (idle).
  tree.Set(950000);
  StatusOr<uint64_t> coordinator = ledger->CoordinatorUj();
  REQUIRE(coordinator.ok());
  CHECK(*coordinator == 50000);

  // Two items on two threads; the coordinator works 1 ms alongside.
  const SplitLedger::ItemId a = ledger->Begin(1);
  const SplitLedger::ItemId b = ledger->Begin(2);
  tree.Set(100000);  // wrapped: 950,000 -> 1,000,000 = 0 -> 100,000, an increment of 150,000 uJ
  cpu.thread_ns[1] += 3000000;
  cpu.thread_ns[2] += 1000000;
  cpu.process_ns += 5000000;  // 3 + 1 ms of the items, 1 ms of the coordinator
  const SplitLedger::ItemShare share_a = ledger->End(a);
  CHECK(share_a.split);
  CHECK(share_a.energy_uj == 90000);  // 150,000 x 3/5
  CHECK(share_a.cpu_ns == 3000000);

  // b idles (no CPU) through the next window: it gets nothing of it; nobody worked, so the
  // coordinator gets all 20,000 uJ.
  tree.Set(120000);
  const SplitLedger::ItemShare share_b = ledger->End(b);
  CHECK(share_b.split);
  CHECK(share_b.energy_uj == 30000);  // 150,000 x 1/5, nothing of the idle window
  CHECK(share_b.cpu_ns == 1000000);

  // An item that used no CPU while the coordinator did gets 0.
  const SplitLedger::ItemId c = ledger->Begin(3);
  tree.Set(130000);
  cpu.process_ns += 2000000;
  const SplitLedger::ItemShare share_c = ledger->End(c);
  CHECK(share_c.split);
  CHECK(share_c.energy_uj == 0);

  coordinator = ledger->CoordinatorUj();
  REQUIRE(coordinator.ok());
  CHECK(*coordinator == 50000 + 30000 + 20000 + 10000);
  const SplitLedger::Totals t = ledger->totals();
  CHECK(t.package_uj == 230000);  // 50,000 + 150,000 + 20,000 + 10,000, the wrap resolved
  CHECK(t.items_uj + t.coordinator_uj == t.package_uj);
  CHECK(t.items_uj == 120000);
  CHECK(t.items == 3);
  CHECK_FALSE(ledger->Failure().has_value());
}

TEST_CASE("rapl-split: a counter that goes backwards or becomes unreadable stops the split, named, with nothing negative") {
  FakePowercap tree(/*start_uj=*/500000);
  FakeCpu cpu;
  std::shared_ptr<SplitLedger> ledger = OpenLedger(tree, &cpu);
  const SplitLedger::ItemId a = ledger->Begin(1);
  tree.Set(600000);
  cpu.thread_ns[1] += 1000000;
  cpu.process_ns += 1000000;
  const SplitLedger::ItemId b = ledger->Begin(2);  // closes a window: a gets 100,000 uJ

  std::string expected;
  SUBCASE("backwards") {
    tree.Set(550000);  // as a wrap, 950,000 uJ since the last poll: over half the 1 J range
    expected = "went backwards from 600000 to 550000 uJ";
  }
  SUBCASE("unreadable") {
    tree.Remove();
    expected = "energy_uj does not exist";
  }
  cpu.thread_ns[1] += 1000000;
  cpu.thread_ns[2] += 1000000;
  cpu.process_ns += 2000000;
  const SplitLedger::ItemShare share_a = ledger->End(a);
  CHECK_FALSE(share_a.split);  // the caller models it
  CHECK(share_a.energy_uj == 0);
  const std::optional<std::string> why = ledger->Failure();
  REQUIRE(why.has_value());
  CHECK(why->find("rapl-split stopped at window 3: ") == 0);
  CHECK(why->find(expected) != std::string::npos);
  // Everything after the failure is modelled; the totals stay what they were.
  CHECK_FALSE(ledger->End(b).split);
  CHECK_FALSE(ledger->End(ledger->Begin(3)).split);
  StatusOr<uint64_t> coordinator = ledger->CoordinatorUj();
  CHECK(coordinator.status().code() == Code::kUnavailable);
  CHECK(coordinator.status().message() == *why);
  const SplitLedger::Totals t = ledger->totals();
  CHECK(t.package_uj == 100000);
  CHECK(t.items_uj + t.coordinator_uj == t.package_uj);
  CHECK(t.items == 0);
}

TEST_CASE("rapl-split: the coordinator's meter books its share, then, once the split stops, the model") {
  FakePowercap tree(/*start_uj=*/0);
  FakeCpu cpu;
  std::shared_ptr<SplitLedger> ledger = OpenLedger(tree, &cpu);
  FakeEnv env;
  PowerModel model;
  model.watts_per_core = 10;
  SplitCoordinatorMeter meter(ledger, "rapl: 1 package (intel-rapl:0)", model, &env);
  CHECK(meter.source() == EnergySource::kRaplSplit);
  CHECK(meter.Describe().find("rapl-split: rapl: 1 package (intel-rapl:0)") == 0);
  tree.Set(250000);
  StatusOr<double> j = meter.EnergyJ();
  REQUIRE(j.ok());
  CHECK(*j == 0.25);

  tree.Set(1000);  // backwards
  StatusOr<double> failed = meter.EnergyJ();
  CHECK(failed.status().code() == Code::kUnavailable);
  CHECK(failed.status().message().find("went backwards") != std::string::npos);
  CHECK(failed.status().message().find("the coordinator's energy is modelled from the next phase on") !=
        std::string::npos);
  CHECK(meter.source() == EnergySource::kModel);
  const StatusOr<double> m0 = meter.EnergyJ();
  REQUIRE(m0.ok());
  env.cpu_s += 2;
  env.wall_s += 2;
  const StatusOr<double> m1 = meter.EnergyJ();
  REQUIRE(m1.ok());
  CHECK(*m1 - *m0 == doctest::Approx(20.0));  // 2 CPU s x 10 W
}

TEST_CASE("rapl: a counter that goes backwards is reported once by name, not counted as a wrap") {
  FakePowercap tree(/*start_uj=*/400000);
  StatusOr<std::unique_ptr<EnergyMeter>> meter = OpenRaplMeter(tree.root(), 3600);
  REQUIRE(meter.ok());
  tree.Set(300000);  // a wrap would be 900,000 uJ: more than half of the 1,000,000 range
  StatusOr<double> back = (*meter)->EnergyJ();
  CHECK(back.status().code() == Code::kDataLoss);
  CHECK(back.status().message().find("went backwards from 400000 to 300000 uJ") != std::string::npos);
  tree.Set(350000);  // the zone restarts from the backwards reading
  StatusOr<double> after = (*meter)->EnergyJ();
  REQUIRE(after.ok());
  CHECK(*after == 0.05);
  tree.Set(800000);
  after = (*meter)->EnergyJ();
  REQUIRE(after.ok());
  CHECK(*after == 0.5);
  tree.Set(100000);  // a real wrap: 100,000 + 1,000,000 - 800,000 = 300,000 uJ, under half the range
  after = (*meter)->EnergyJ();
  REQUIRE(after.ok());
  CHECK(*after == 0.8);  // 0.05 + 0.45 + 0.3
}

TEST_CASE("rapl-split: nodes.csv labels rapl-split rows apportioned, and refuses mismatched labels") {
  NodesCsvRow row;
  row.round = 1;
  row.node_id = "client-0";
  row.role = NodeRole::kClient;
  row.country = "FRA";
  row.train_j = 1.5;
  row.compute_j = 1.5;
  row.source = EnergySource::kRaplSplit;
  row.measured = IsMeasured(row.source);
  const std::string line = FormatNodesCsvRow(row);
  CHECK(line.find(",rapl-split,apportioned\n") != std::string::npos);
  StatusOr<std::vector<NodesCsvRow>> parsed = ParseNodesCsv(NodesCsvHeader() + line);
  REQUIRE_MESSAGE(parsed.ok(), parsed.status().ToString());
  REQUIRE(parsed->size() == 1);
  CHECK((*parsed)[0].source == EnergySource::kRaplSplit);
  CHECK((*parsed)[0].measured);

  std::string rapl_apportioned = line;
  rapl_apportioned.replace(rapl_apportioned.find("rapl-split"), 10, "rapl");
  StatusOr<std::vector<NodesCsvRow>> bad = ParseNodesCsv(NodesCsvHeader() + rapl_apportioned);
  CHECK(bad.status().message() ==
        "nodes.csv line 2, column measured: 'apportioned' does not go with source 'rapl' (apportioned goes "
        "with rapl-split, and only with it)");
  std::string split_measured = line;
  split_measured.replace(split_measured.find("apportioned"), 11, "measured");
  CHECK_FALSE(ParseNodesCsv(NodesCsvHeader() + split_measured).ok());
  CHECK(std::string(MeasuredLabel(EnergySource::kRapl, true)) == "measured");
  CHECK(std::string(MeasuredLabel(EnergySource::kModel, false)) == "modelled");
}

}  // namespace greenfed
