// Energy meters and the per-node energy ledger.
//
// A node picks its meter once at start (OpenMeters): RAPL package counters and
// NVML GPU counters when the hardware exposes them (measured), otherwise the CPU
// model (modelled). Every fallback is explained in `notes`, never silent.
// PhaseMeter turns meter readings into EnergyRecords, one per meter per phase.
//
// Thread safety: EnergyMeter implementations are thread-safe (RAPL polls on its own
// thread). PhaseMeter serialises Begin()/End() with an internal mutex.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "greenfed/energy_record.h"
#include "greenfed/env.h"
#include "greenfed/status.h"

namespace greenfed {

// A cumulative energy counter for this node.
class EnergyMeter {
 public:
  virtual ~EnergyMeter() = default;
  virtual EnergySource source() const = 0;
  // Joules since the meter was opened; non-decreasing.
  virtual StatusOr<double> EnergyJ() = 0;
  // One line for logs, e.g. "rapl: 2 packages (intel-rapl:0, intel-rapl:1)".
  virtual std::string Describe() const = 0;
};

// Power model for machines with no counter.
// power_w = cpu_utilisation_cores * watts_per_core + resident_gb * watts_per_gb
// i.e. energy_j = cpu_s * watts_per_core + resident_gb * watts_per_gb * wall_s,
// with GB = 1e9 bytes and resident_gb the mean of the RSS samples that bound each
// interval between EnergyJ() calls. Only this process is counted; idle board power
// is not.
struct PowerModel {
  // Watts per fully used core. Default 12 W: Green Algorithms (Lannelongue et al.
  // 2021) per-core figure for an unknown CPU. CodeCarbon uses 4 W per thread.
  double watts_per_core = 12.0;
  // Watts per GB of resident memory. Default 0.3725 W/GB: Green Algorithms
  // (Lannelongue et al. 2021), after Karyakin & Salem 2017.
  double watts_per_gb = 0.3725;
  // Name of the profile the numbers came from, reported in nodes.csv.
  std::string profile = "green-algorithms";
};

// Known device profiles ("green-algorithms", "codecarbon", "rpi4", "jetson-nano").
StatusOr<PowerModel> PowerModelProfile(const std::string& name);
std::vector<std::string> PowerModelProfileNames();

struct MeterOptions {
  // "auto": RAPL and NVML when available, else the model. "model": model only.
  // "rapl", "nvml": require that counter; fail if unavailable.
  std::string kind = "auto";
  // Root of the powercap tree; tests point it at a temp dir.
  std::string powercap_root = "/sys/class/powercap";
  // NVML shared library opened with dlopen; tests point it at a missing file.
  std::string nvml_library = "libnvidia-ml.so.1";
  // RAPL poll period in seconds; 0 derives it from max_energy_range_uj so that a
  // counter cannot wrap twice between polls even at 1 kW per package.
  double rapl_poll_s = 0;
  PowerModel model;            // used when no counter is available
};

struct MeterSet {
  std::vector<std::unique_ptr<EnergyMeter>> meters;  // never empty
  std::vector<std::string> notes;                    // why each source was or was not used
};

// Opens the meters for this node. Fails only when options.kind demands a counter
// that is not there, or names an unknown kind.
StatusOr<MeterSet> OpenMeters(const MeterOptions& options, Env* env);

// Individual meters, exposed for tests and for users who wire their own.
// RAPL and NVML counters cover the whole package / GPU, not this process: several
// greenfed processes on one machine each see all of its energy.
// OpenRaplMeter: PermissionDenied (with the chmod fix) when energy_uj is root-only,
// Unavailable when there is no package zone under powercap_root.
// Its EnergyJ() resolves wraps (now + max_energy_range_uj - previous) and returns DataLoss
// ("went backwards"), once, for a smaller reading that as a wrap would be more than half
// the range since the previous poll; that increment is not counted.
// OpenNvmlMeter: Unavailable when the library, a symbol, a GPU or its counter is missing.
StatusOr<std::unique_ptr<EnergyMeter>> OpenRaplMeter(const std::string& powercap_root, double poll_s);
StatusOr<std::unique_ptr<EnergyMeter>> OpenNvmlMeter(const std::string& library);
std::unique_ptr<EnergyMeter> NewModelMeter(const PowerModel& model, Env* env);

// Energy of moving bytes over the network.
// energy_j = (bytes_sent + bytes_received) / 1e9 * kwh_per_gb * 3.6e6.
struct CommModel {
  // kWh per GB. Default: Aslan et al. 2018 (J. Industrial Ecology 22(4)):
  // 0.06 kWh/GB in 2015, halving every 2 years, extrapolated to 2023:
  // 0.06 * 0.5^4 = 0.00375 kWh/GB.
  double kwh_per_gb = 0.00375;
};
double CommEnergyJ(const CommModel& model, uint64_t bytes_sent, uint64_t bytes_received);

// Measures phases on one node with a set of meters: Begin() then End() yields one
// record per meter, tagged with the meter's source.
class PhaseMeter {
 public:
  PhaseMeter(MeterSet meters, Env* env);
  struct Mark {
    double wall_s = 0;
    double cpu_s = 0;
    std::vector<double> energy_j;   // one per meter
  };
  Mark Begin();
  // Records for the interval since `start`, one per meter. A meter that fails to
  // read yields a record with energy 0 and a line in `warnings`; the other meters'
  // records are kept.
  std::vector<EnergyRecord> End(const Mark& start, Phase phase, int64_t round,
                                std::vector<std::string>* warnings = nullptr);
  std::vector<std::string> Describe() const;
  bool AnyMeasured() const;

 private:
  MeterSet meters_;
  Env* env_;
  std::mutex mu_;
};

}  // namespace greenfed
