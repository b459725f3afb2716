// Energy meters: RAPL against fake powercap trees in temp dirs, NVML absence, the
// power model and PhaseMeter with a fake Env, OpenMeters fallbacks, CommEnergyJ.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "greenfed/energy_record.h"
#include "greenfed/env.h"
#include "greenfed/meter.h"
#include "greenfed/log.h"

namespace greenfed {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kTypicalMaxRangeUj = 262143328850;  // a real Xeon package

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "greenfed_energy_XXXXXX").string();
    const char* made = mkdtemp(pattern.data());
    REQUIRE_MESSAGE(made != nullptr, "mkdtemp failed: " << std::strerror(errno));
    path_ = made;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Writes through a rename so that a concurrent poller never sees a half-written value.
void WriteFile(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    REQUIRE(out);
    out << text;
  }
  fs::rename(tmp, path);
}

void MakeZone(const fs::path& dir, const std::string& name, uint64_t energy_uj,
              uint64_t max_range_uj = kTypicalMaxRangeUj) {
  fs::create_directories(dir);
  WriteFile(dir / "name", name + "\n");
  WriteFile(dir / "energy_uj", std::to_string(energy_uj) + "\n");
  WriteFile(dir / "max_energy_range_uj", std::to_string(max_range_uj) + "\n");
}

void SetEnergy(const fs::path& dir, uint64_t energy_uj) {
  WriteFile(dir / "energy_uj", std::to_string(energy_uj) + "\n");
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

class FakeEnv final : public Env {
 public:
  double NowSeconds() override { return wall_s; }
  double ProcessCpuSeconds() override { return cpu_s; }
  uint64_t ResidentBytes() override { return rss_bytes; }
  double wall_s = 0;
  double cpu_s = 0;
  uint64_t rss_bytes = 0;
};

class FailingMeter final : public EnergyMeter {
 public:
  EnergySource source() const override { return EnergySource::kNvml; }
  StatusOr<double> EnergyJ() override { return Unavailable("GPU fell off the bus"); }
  std::string Describe() const override { return "nvml: broken"; }
};

PowerModel TestModel() {
  PowerModel model;
  model.watts_per_core = 10.0;
  model.watts_per_gb = 0.5;
  model.profile = "test";
  return model;
}

TEST_CASE("energy_record: names round-trip and bad names list the valid ones") {
  for (EnergySource s :
       {EnergySource::kRapl, EnergySource::kNvml, EnergySource::kModel, EnergySource::kComm,
        EnergySource::kRaplSplit}) {
    StatusOr<EnergySource> parsed = ParseEnergySource(EnergySourceName(s));
    REQUIRE(parsed.ok());
    CHECK(*parsed == s);
  }
  CHECK(std::string(EnergySourceName(EnergySource::kRapl)) == "rapl");
  CHECK(std::string(EnergySourceName(EnergySource::kComm)) == "comm");
  for (Phase p : {Phase::kFit, Phase::kEvaluate, Phase::kIdle, Phase::kComm, Phase::kAggregate,
                  Phase::kTrain}) {
    StatusOr<Phase> parsed = ParsePhase(PhaseName(p));
    REQUIRE(parsed.ok());
    CHECK(*parsed == p);
  }
  CHECK(std::string(PhaseName(Phase::kAggregate)) == "aggregate");

  StatusOr<EnergySource> bad_source = ParseEnergySource("joulemeter");
  CHECK(bad_source.status().code() == Code::kInvalidArgument);
  CHECK(bad_source.status().message() ==
        "unknown energy source 'joulemeter' (valid: rapl, nvml, model, comm, rapl-split)");
  StatusOr<Phase> bad_phase = ParsePhase("Fit");
  CHECK(bad_phase.status().message() ==
        "unknown phase 'Fit' (valid: fit, evaluate, idle, comm, aggregate, train)");

  CHECK(IsMeasured(EnergySource::kRapl));
  CHECK(IsMeasured(EnergySource::kNvml));
  CHECK_FALSE(IsMeasured(EnergySource::kModel));
  CHECK_FALSE(IsMeasured(EnergySource::kComm));
  // rapl-split: measured joules, apportioned by CPU share (sim/rapl_split.h).
  CHECK(std::string(EnergySourceName(EnergySource::kRaplSplit)) == "rapl-split");
  CHECK(IsMeasured(EnergySource::kRaplSplit));
  CHECK(IsApportioned(EnergySource::kRaplSplit));
  CHECK_FALSE(IsApportioned(EnergySource::kRapl));
  CHECK_FALSE(IsApportioned(EnergySource::kModel));
}

TEST_CASE("rapl: counts top-level packages once, skipping sub-zones, mmio and duplicates") {
  TempDir tmp;
  const fs::path root = tmp.path();
  fs::create_directories(root / "intel-rapl");  // the control-type directory: no zone
  MakeZone(root / "intel-rapl:0", "package-0", 1000000);
  MakeZone(root / "intel-rapl:0" / "intel-rapl:0:0", "core", 400000);
  MakeZone(root / "intel-rapl:0:0", "core", 400000);  // class-level view of the sub-zone
  MakeZone(root / "intel-rapl:1", "package-1", 5000000);
  MakeZone(root / "intel-rapl:1" / "intel-rapl:1:0", "dram", 700000);
  MakeZone(root / "intel-rapl:1:0", "dram", 700000);
  MakeZone(root / "intel-rapl-mmio:0", "package-0", 1000000);  // MMIO mirror of package 0
  MakeZone(root / "intel-rapl:2", "psys", 9000000);            // platform, not a package
  fs::create_directory_symlink(root / "intel-rapl:0", root / "intel-rapl:7");  // same zone

  StatusOr<std::unique_ptr<EnergyMeter>> meter = OpenRaplMeter(root.string(), 60);
  REQUIRE_MESSAGE(meter.ok(), meter.status().ToString());
  CHECK((*meter)->source() == EnergySource::kRapl);
  CHECK((*meter)->Describe() == "rapl: 2 packages (intel-rapl:0, intel-rapl:1)");
  StatusOr<double> start = (*meter)->EnergyJ();
  REQUIRE(start.ok());
  CHECK(*start == 0.0);

  SetEnergy(root / "intel-rapl:0", 3500000);                     // +2.5 J
  SetEnergy(root / "intel-rapl:1", 6000000);                     // +1.0 J
  SetEnergy(root / "intel-rapl:0" / "intel-rapl:0:0", 2400000);  // inside package 0
  SetEnergy(root / "intel-rapl:0:0", 2400000);
  SetEnergy(root / "intel-rapl:1:0", 10700000);
  SetEnergy(root / "intel-rapl-mmio:0", 3500000);
  SetEnergy(root / "intel-rapl:2", 59000000);

  StatusOr<double> after = (*meter)->EnergyJ();
  REQUIRE(after.ok());
  CHECK(*after == 3.5);
}

TEST_CASE("rapl: a counter wrap adds now + max_energy_range_uj - previous") {
  TempDir tmp;
  const fs::path zone = tmp.path() / "intel-rapl:0";
  MakeZone(zone, "package-0", 900000, /*max_range_uj=*/1000000);

  // poll_s = 0 derives the period from the 1 J range (clamped to 0.05 s), so the
  // background poller runs during the test; the result does not depend on when it
  // polls because every value it can see lies on the same monotone-with-one-wrap path.
  StatusOr<std::unique_ptr<EnergyMeter>> meter = OpenRaplMeter(tmp.path().string(), 0);
  REQUIRE_MESSAGE(meter.ok(), meter.status().ToString());
  CHECK((*meter)->Describe() == "rapl: 1 package (intel-rapl:0)");

  SetEnergy(zone, 950000);
  StatusOr<double> before_wrap = (*meter)->EnergyJ();
  REQUIRE(before_wrap.ok());
  CHECK(*before_wrap == 0.05);

  SetEnergy(zone, 100000);  // wrapped: 950000 -> 1000000 -> 0 -> 100000
  StatusOr<double> after_wrap = (*meter)->EnergyJ();
  REQUIRE(after_wrap.ok());
  CHECK(*after_wrap == 0.2);  // 50000 + (100000 + 1000000 - 950000) uJ

  SetEnergy(zone, 100000);
  StatusOr<double> unchanged = (*meter)->EnergyJ();
  REQUIRE(unchanged.ok());
  CHECK(*unchanged == 0.2);
}

TEST_CASE("rapl: no zones, bad files and non-finite poll periods are reported") {
  TempDir tmp;
  SUBCASE("missing root") {
    const std::string root = (tmp.path() / "no-such-powercap").string();
    StatusOr<std::unique_ptr<EnergyMeter>> meter = OpenRaplMeter(root, 1);
    CHECK(meter.status().code() == Code::kUnavailable);
    CHECK(meter.status().message() == "no RAPL package domains under " + root);
  }
  SUBCASE("only sub-zones and mirrors") {
    MakeZone(tmp.path() / "intel-rapl:0:0", "core", 1);
    MakeZone(tmp.path() / "intel-rapl-mmio:0", "package-0", 1);
    StatusOr<std::unique_ptr<EnergyMeter>> meter = OpenRaplMeter(tmp.path().string(), 1);
    CHECK(meter.status().code() == Code::kUnavailable);
  }
  SUBCASE("energy_uj is a directory") {
    const fs::path zone = tmp.path() / "intel-rapl:0";
    fs::create_directories(zone / "energy_uj");
    WriteFile(zone / "name", "package-0\n");
    WriteFile(zone / "max_energy_range_uj", "1000\n");
    StatusOr<std::unique_ptr<EnergyMeter>> meter = OpenRaplMeter(tmp.path().string(), 1);
    CHECK(meter.status().code() == Code::kUnavailable);
    CHECK(Contains(meter.status().message(), (zone / "energy_uj").string()));
  }
  SUBCASE("energy_uj is not a number") {
    MakeZone(tmp.path() / "intel-rapl:0", "package-0", 1);
    WriteFile(tmp.path() / "intel-rapl:0" / "energy_uj", "12ab\n");
    StatusOr<std::unique_ptr<EnergyMeter>> meter = OpenRaplMeter(tmp.path().string(), 1);
    CHECK(meter.status().code() == Code::kDataLoss);
    CHECK(Contains(meter.status().message(), "'12ab'"));
  }
  SUBCASE("infinite poll period") {
    MakeZone(tmp.path() / "intel-rapl:0", "package-0", 1);
    StatusOr<std::unique_ptr<EnergyMeter>> meter =
        OpenRaplMeter(tmp.path().string(), std::numeric_limits<double>::infinity());
    CHECK(meter.status().code() == Code::kInvalidArgument);
  }
}

// Runs `body` in a child process; returns what it wrote to the pipe, or "" with
// *ran = false when the child could not drop root (e.g. no CAP_SETUID).
std::string RunAsNobody(const std::function<std::string()>& body, bool* ran) {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(3);
    const std::string out = body();
    const ssize_t written = write(fds[1], out.data(), out.size());
    _exit(written == static_cast<ssize_t>(out.size()) ? 0 : 4);
  }
  close(fds[1]);
  std::string out;
  char buffer[512];
  ssize_t n = 0;
  while ((n = read(fds[0], buffer, sizeof(buffer))) > 0) out.append(buffer, static_cast<size_t>(n));
  close(fds[0]);
  int wstatus = 0;
  REQUIRE(waitpid(pid, &wstatus, 0) == pid);
  REQUIRE(WIFEXITED(wstatus));
  *ran = WEXITSTATUS(wstatus) == 0;
  return out;
}

TEST_CASE("rapl: root-only energy_uj gives PermissionDenied with the fix, auto falls back") {
  // Since CVE-2020-8694 energy_uj is mode 0400 root. Root ignores file modes, so when
  // the test runs as root the check runs in a child that drops to uid/gid 65534.
  TempDir tmp;
  fs::permissions(tmp.path(), fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                  fs::perms::others_read | fs::perms::others_exec);
  const fs::path zone = tmp.path() / "intel-rapl:0";
  MakeZone(zone, "package-0", 1000);
  fs::permissions(zone / "energy_uj", fs::perms::owner_read);  // 0400, as on real kernels
  const std::string root = tmp.path().string();

  bool ran = false;
  const std::string out = RunAsNobody(
      [&root] {
        StatusOr<std::unique_ptr<EnergyMeter>> meter = OpenRaplMeter(root, 1);
        std::string report =
            std::string(CodeName(meter.status().code())) + "\n" + meter.status().message() + "\n";
        FakeEnv env;
        MeterOptions options;
        options.powercap_root = root;
        options.nvml_library = "/nonexistent/libnvidia-ml.so.1";
        StatusOr<MeterSet> set = OpenMeters(options, &env);
        if (!set.ok()) return report + "OpenMeters failed: " + set.status().ToString();
        report += std::string(EnergySourceName(set->meters.at(0)->source())) + "\n";
        report += set->notes.at(0) + "\n";
        return report;
      },
      &ran);
  if (!ran) {
    MESSAGE("skipped: could not drop root privileges to test an unreadable energy_uj");
    return;
  }
  const std::string energy_path = (zone / "energy_uj").string();
  CHECK(Contains(out, "PERMISSION_DENIED\ncannot read " + energy_path + ": permission denied."));
  CHECK(Contains(out, "CVE-2020-8694"));
  CHECK(Contains(out, "sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj"));
  CHECK(Contains(out, "\nmodel\nrapl: not used: PERMISSION_DENIED: cannot read " + energy_path));
}

TEST_CASE("nvml: a missing library is Unavailable, naming the library") {
  StatusOr<std::unique_ptr<EnergyMeter>> meter = OpenNvmlMeter("/nonexistent/libnvidia-ml.so.1");
  CHECK(meter.status().code() == Code::kUnavailable);
  CHECK(Contains(meter.status().message(),
                 "cannot load NVML library /nonexistent/libnvidia-ml.so.1: "));
}

TEST_CASE("nvml: a library without the NVML symbols is Unavailable") {
  // libc is always loadable and has none of the NVML entry points.
  StatusOr<std::unique_ptr<EnergyMeter>> meter = OpenNvmlMeter("libc.so.6");
  CHECK(meter.status().code() == Code::kUnavailable);
  CHECK(Contains(meter.status().message(), "has no symbol nvmlInit_v2"));
}

TEST_CASE("OpenMeters: auto falls back to the model and says why for each source") {
  TempDir tmp;
  FakeEnv env;
  MeterOptions options;
  options.powercap_root = (tmp.path() / "no-powercap").string();
  options.nvml_library = "/nonexistent/libnvidia-ml.so.1";
  options.model = TestModel();

  StatusOr<MeterSet> set = OpenMeters(options, &env);
  REQUIRE_MESSAGE(set.ok(), set.status().ToString());
  REQUIRE(set->meters.size() == 1);
  CHECK(set->meters[0]->source() == EnergySource::kModel);
  CHECK(set->meters[0]->Describe() == "model: test (10 W/core, 0.5 W/GB)");
  REQUIRE(set->notes.size() == 3);
  CHECK(set->notes[0] ==
        "rapl: not used: UNAVAILABLE: no RAPL package domains under " + options.powercap_root);
  CHECK(Contains(set->notes[1],
                 "nvml: not used: UNAVAILABLE: cannot load NVML library "
                 "/nonexistent/libnvidia-ml.so.1"));
  CHECK(set->notes[2] ==
        "model: no hardware counter opened, so energy is modelled, not measured: "
        "model: test (10 W/core, 0.5 W/GB)");
}

TEST_CASE("OpenMeters: auto uses RAPL when present, explicit kinds fail loudly") {
  TempDir tmp;
  FakeEnv env;
  MakeZone(tmp.path() / "intel-rapl:0", "package-0", 42);
  MeterOptions options;
  options.powercap_root = tmp.path().string();
  options.nvml_library = "/nonexistent/libnvidia-ml.so.1";

  SUBCASE("auto") {
    StatusOr<MeterSet> set = OpenMeters(options, &env);
    REQUIRE(set.ok());
    REQUIRE(set->meters.size() == 1);
    CHECK(set->meters[0]->source() == EnergySource::kRapl);
    REQUIRE(set->notes.size() == 2);
    CHECK(set->notes[0] == "rapl: using rapl: 1 package (intel-rapl:0) (measured)");
    CHECK(Contains(set->notes[1], "nvml: not used: UNAVAILABLE"));
  }
  SUBCASE("rapl") {
    options.kind = "rapl";
    StatusOr<MeterSet> set = OpenMeters(options, &env);
    REQUIRE(set.ok());
    CHECK(set->meters.size() == 1);
    options.powercap_root = (tmp.path() / "missing").string();
    StatusOr<MeterSet> missing = OpenMeters(options, &env);
    CHECK(missing.status().code() == Code::kUnavailable);
    CHECK(missing.status().message() ==
          "meter kind 'rapl' requested: no RAPL package domains under " + options.powercap_root);
  }
  SUBCASE("nvml") {
    options.kind = "nvml";
    StatusOr<MeterSet> set = OpenMeters(options, &env);
    CHECK(set.status().code() == Code::kUnavailable);
    CHECK(Contains(set.status().message(), "meter kind 'nvml' requested: cannot load NVML"));
  }
  SUBCASE("model") {
    options.kind = "model";
    StatusOr<MeterSet> set = OpenMeters(options, &env);
    REQUIRE(set.ok());
    REQUIRE(set->meters.size() == 1);
    CHECK(set->meters[0]->source() == EnergySource::kModel);
    CHECK(set->notes.size() == 1);
  }
  SUBCASE("unknown kind") {
    options.kind = "wattmeter";
    StatusOr<MeterSet> set = OpenMeters(options, &env);
    CHECK(set.status().code() == Code::kInvalidArgument);
    CHECK(set.status().message() ==
          "unknown meter kind 'wattmeter' (valid: auto, model, rapl, nvml)");
  }
  SUBCASE("negative model watts") {
    options.kind = "model";
    options.model.watts_per_core = -1;
    StatusOr<MeterSet> set = OpenMeters(options, &env);
    CHECK(set.status().code() == Code::kInvalidArgument);
  }
}

TEST_CASE("model meter: cpu_s x W/core + mean resident GB x W/GB x wall_s") {
  FakeEnv env;
  env.wall_s = 100;
  env.cpu_s = 5;
  env.rss_bytes = 2000000000;  // 2 GB
  std::unique_ptr<EnergyMeter> meter = NewModelMeter(TestModel(), &env);
  CHECK(meter->source() == EnergySource::kModel);

  StatusOr<double> e0 = meter->EnergyJ();
  REQUIRE(e0.ok());
  CHECK(*e0 == 0.0);

  env.wall_s = 110;  // +10 s
  env.cpu_s = 9;     // +4 CPU s
  StatusOr<double> e1 = meter->EnergyJ();
  REQUIRE(e1.ok());
  CHECK(*e1 == 50.0);  // 4 * 10 + 2 * 0.5 * 10

  env.wall_s = 120;            // +10 s, idle
  env.rss_bytes = 4000000000;  // 4 GB: mean over the interval is 3 GB
  StatusOr<double> e2 = meter->EnergyJ();
  REQUIRE(e2.ok());
  CHECK(*e2 == 65.0);  // 50 + 3 * 0.5 * 10
}

TEST_CASE("power-model profiles") {
  StatusOr<PowerModel> ga = PowerModelProfile("green-algorithms");
  REQUIRE(ga.ok());
  CHECK(ga->watts_per_core == 12.0);
  CHECK(ga->watts_per_gb == 0.3725);
  StatusOr<PowerModel> cc = PowerModelProfile("codecarbon");
  REQUIRE(cc.ok());
  CHECK(cc->watts_per_core == 4.0);
  CHECK(cc->watts_per_gb == 0.375);
  CHECK(cc->profile == "codecarbon");
  StatusOr<PowerModel> rpi = PowerModelProfile("rpi4");
  REQUIRE(rpi.ok());
  CHECK(rpi->watts_per_core == doctest::Approx(0.925).epsilon(1e-12));
  StatusOr<PowerModel> jetson = PowerModelProfile("jetson-nano");
  REQUIRE(jetson.ok());
  CHECK(jetson->watts_per_core == 2.5);
  for (const std::string& name : PowerModelProfileNames()) {
    CHECK_MESSAGE(PowerModelProfile(name).ok(), name);
  }
  StatusOr<PowerModel> bad = PowerModelProfile("pdp-11");
  CHECK(bad.status().message() ==
        "unknown power-model profile 'pdp-11' (valid: green-algorithms, codecarbon, rpi4, "
        "jetson-nano)");
  // The header's defaults are the green-algorithms profile.
  PowerModel defaults;
  CHECK(defaults.watts_per_core == ga->watts_per_core);
  CHECK(defaults.watts_per_gb == ga->watts_per_gb);
}

TEST_CASE("PhaseMeter: one record per meter with exact fields, a failing meter warns") {
  FakeEnv env;
  env.wall_s = 0;
  env.cpu_s = 1;
  env.rss_bytes = 1000000000;  // 1 GB
  MeterSet set;
  set.meters.push_back(NewModelMeter(TestModel(), &env));
  set.meters.push_back(std::make_unique<FailingMeter>());
  PhaseMeter phases(std::move(set), &env);
  CHECK(phases.AnyMeasured());  // the failing meter claims to be NVML
  CHECK(phases.Describe() ==
        std::vector<std::string>{"model: test (10 W/core, 0.5 W/GB)", "nvml: broken"});

  env.wall_s = 10;
  env.cpu_s = 2;
  PhaseMeter::Mark mark = phases.Begin();
  CHECK(mark.wall_s == 10.0);
  CHECK(mark.cpu_s == 2.0);
  REQUIRE(mark.energy_j.size() == 2);

  env.wall_s = 14;  // 4 s
  env.cpu_s = 5;    // 3 CPU s
  std::vector<std::string> warnings;
  std::vector<EnergyRecord> records = phases.End(mark, Phase::kFit, 7, &warnings);
  REQUIRE(records.size() == 2);

  const EnergyRecord& model = records[0];
  CHECK(model.phase == Phase::kFit);
  CHECK(model.round == 7);
  CHECK(model.wall_s == 4.0);
  CHECK(model.cpu_s == 3.0);
  CHECK(model.energy_j == 32.0);  // 3 * 10 + 1 * 0.5 * 4
  CHECK(model.source == EnergySource::kModel);
  CHECK_FALSE(model.measured);
  CHECK(model.bytes_sent == 0);
  CHECK(model.bytes_received == 0);

  const EnergyRecord& broken = records[1];
  CHECK(broken.source == EnergySource::kNvml);
  CHECK(broken.measured);
  CHECK(broken.energy_j == 0.0);
  CHECK(broken.wall_s == 4.0);
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0] ==
        "nvml: broken: fit round 7 recorded as 0 J: UNAVAILABLE: GPU fell off the bus");
}

TEST_CASE("PhaseMeter: model-only sets are not measured") {
  FakeEnv env;
  MeterSet set;
  set.meters.push_back(NewModelMeter(TestModel(), &env));
  PhaseMeter phases(std::move(set), &env);
  CHECK_FALSE(phases.AnyMeasured());
  PhaseMeter::Mark mark = phases.Begin();
  env.wall_s = 2;
  std::vector<EnergyRecord> records = phases.End(mark, Phase::kIdle, 0);
  REQUIRE(records.size() == 1);
  CHECK(records[0].energy_j == 0.0);  // no CPU, no memory
  CHECK(records[0].phase == Phase::kIdle);
}

TEST_CASE("CommEnergyJ: (sent + received) GB x kWh/GB x 3.6e6") {
  CommModel half;
  half.kwh_per_gb = 0.5;
  CHECK(CommEnergyJ(half, 1500000000, 500000000) == 3.6e6);  // 2 GB x 0.5 kWh/GB = 1 kWh
  CHECK(CommEnergyJ(half, 0, 0) == 0.0);
  CommModel defaults;
  CHECK(defaults.kwh_per_gb == 0.00375);  // 0.06 * 0.5^4
  CHECK(CommEnergyJ(defaults, 1000000000, 1000000000) == doctest::Approx(27000.0).epsilon(1e-12));
}

TEST_CASE("system env: monotonic clock, growing CPU time, non-zero RSS") {
  std::unique_ptr<Env> env = NewSystemEnv();
  const double t0 = env->NowSeconds();
  const double cpu0 = env->ProcessCpuSeconds();
  // Spin until the kernel has charged some CPU time (bounded: no timing assertion).
  volatile double sink = 0;
  while (env->ProcessCpuSeconds() <= cpu0 && env->NowSeconds() - t0 < 30) {
    for (int i = 0; i < 1000000; ++i) sink = sink + static_cast<double>(i) * 1e-9;
  }
  CHECK(env->NowSeconds() >= t0);
  CHECK(env->ProcessCpuSeconds() > cpu0);
  CHECK(env->ResidentBytes() > 0);
  CHECK(env->ResidentBytes() % static_cast<uint64_t>(sysconf(_SC_PAGESIZE)) == 0);
}

}  // namespace
}  // namespace greenfed

namespace greenfed {
// Issue 8: the plausibility bounds on records from other nodes.
TEST_CASE("CheckEnergyRecord refuses impossible records with a named reason") {
  EnergyBounds b;
  b.max_round = 5;
  b.max_wall_s = 100;
  b.max_bytes_sent = 1000;
  b.max_bytes_received = 2000;
  EnergyRecord fit;
  fit.phase = Phase::kFit;
  fit.round = 3;
  fit.wall_s = 10;
  fit.cpu_s = 10;
  fit.energy_j = 120;
  fit.source = EnergySource::kModel;
  CHECK(CheckEnergyRecord(fit, b).ok());
  auto reason = [&](EnergyRecord r) { return CheckEnergyRecord(r, b).message(); };
  auto with = [&](auto edit) {
    EnergyRecord r = fit;
    edit(r);
    return reason(r);
  };
  CHECK(with([](EnergyRecord& r) { r.energy_j = std::numeric_limits<double>::infinity(); }).find("must be finite") !=
        std::string::npos);
  CHECK(with([](EnergyRecord& r) { r.energy_j = -1; }).find("must be >= 0") != std::string::npos);
  CHECK(with([](EnergyRecord& r) { r.energy_j = 1e30; }).find("is more than 10000 W") != std::string::npos);
  CHECK(with([](EnergyRecord& r) { r.round = int64_t{1} << 62; }).find("round must be in [1, 5]") != std::string::npos);
  CHECK(with([](EnergyRecord& r) { r.round = 0; }).find("round must be in [1, 5]") != std::string::npos);
  CHECK(with([](EnergyRecord& r) { r.wall_s = 101; r.cpu_s = 1; }).find("longer than the sender can have metered") !=
        std::string::npos);
  CHECK(with([](EnergyRecord& r) { r.cpu_s = 10 * 1025; }).find("exceeds wall_s x 1024 cores") != std::string::npos);
  CHECK(with([](EnergyRecord& r) { r.bytes_sent = 5; }).find("only comm records carry bytes") != std::string::npos);
  CHECK(with([](EnergyRecord& r) { r.source = EnergySource::kRapl; }).find("measured flag disagrees") !=
        std::string::npos);
  EnergyRecord comm;
  comm.phase = Phase::kComm;
  comm.round = 1;
  comm.source = EnergySource::kComm;
  comm.bytes_sent = 1000;
  comm.bytes_received = 2000;
  comm.energy_j = 3000 * 3.6e-3;
  CHECK(CheckEnergyRecord(comm, b).ok());
  comm.bytes_sent = ~0ull - 10;
  CHECK(reason(comm).find("more than moved with this peer") != std::string::npos);
  comm.bytes_sent = 1000;
  comm.energy_j = 1e6;
  CHECK(reason(comm).find("J/byte") != std::string::npos);
  comm.energy_j = 1;
  comm.source = EnergySource::kModel;
  CHECK_FALSE(CheckEnergyRecord(comm, b).ok());
}

TEST_CASE("EscapeForLog: peer text cannot forge a log line or fill the disk") {
  CHECK(EscapeForLog("plain text 1.0") == "plain text 1.0");
  CHECK(EscapeForLog("a\nb\r\x1b[31m") == "a\\x0ab\\x0d\\x1b[31m");
  CHECK(EscapeForLog("\\x0a") == "\\x5cx0a");  // a literal backslash cannot fake an escape
  CHECK(EscapeForLog(std::string(1 << 20, 'z'), 10) == "zzzzzzzzzz...");
}
}  // namespace greenfed
