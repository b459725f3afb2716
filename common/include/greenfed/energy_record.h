// EnergyRecord: one metered phase on one node. The unit of the energy ledger.
//
// Contract: every record says where its joules came from (`source`) and whether
// they were measured by a hardware counter or modelled; the two are never mixed
// within one record. Communication records carry bytes and use source kComm.
// Thread safety: plain values.
#pragma once

#include <cstdint>
#include <string>

#include "greenfed/status.h"

namespace greenfed {

enum class EnergySource : uint8_t {
  kRapl = 0,   // /sys/class/powercap package counters: measured
  kNvml = 1,   // nvmlDeviceGetTotalEnergyConsumption: measured
  kModel = 2,  // CPU seconds x W/core + resident GB x W/GB: modelled
  kComm = 3,   // bytes x kWh/GB: modelled
};
const char* EnergySourceName(EnergySource s);  // "rapl", "nvml", "model", "comm"
StatusOr<EnergySource> ParseEnergySource(const std::string& name);
// True for hardware counters (RAPL, NVML); false for the models.
bool IsMeasured(EnergySource s);

enum class Phase : uint8_t { kFit = 0, kEvaluate = 1, kIdle = 2, kComm = 3, kAggregate = 4, kTrain = 5 };
const char* PhaseName(Phase p);  // "fit", "evaluate", "idle", "comm", "aggregate", "train"
StatusOr<Phase> ParsePhase(const std::string& name);

struct EnergyRecord {
  Phase phase = Phase::kFit;
  int64_t round = 0;        // federated round or centralized epoch this belongs to
  double wall_s = 0;        // elapsed time of the phase
  double cpu_s = 0;         // process CPU time (user + sys) during the phase
  double energy_j = 0;      // joules attributed to the phase, before PUE
  uint64_t bytes_sent = 0;  // comm records only
  uint64_t bytes_received = 0;
  EnergySource source = EnergySource::kModel;
  bool measured = false;    // always IsMeasured(source); carried so files need no lookup
};

}  // namespace greenfed
