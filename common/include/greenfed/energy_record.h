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
  // RAPL package energy measured over a window, then apportioned over the work done in it
  // by thread CPU-time share (greenfed simulate's virtual clients and their coordinator,
  // sim/rapl_split.h): measured joules, modelled attribution.
  kRaplSplit = 4,
};
// "rapl", "nvml", "model", "comm", "rapl-split"
const char* EnergySourceName(EnergySource s);
StatusOr<EnergySource> ParseEnergySource(const std::string& name);
// True for joules read from hardware counters (RAPL, NVML, and RAPL split by CPU share);
// false for the models.
bool IsMeasured(EnergySource s);
// True for measured joules whose attribution to this record is a share (rapl-split).
bool IsApportioned(EnergySource s);

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

// Plausibility bounds for a record that arrived from another node. The ledger is
// self-declared (docs/deployment.md, "Security"): these bounds cannot prove a
// record true, but they keep an impossible one (non-finite, negative, more power
// than any one machine draws, a round that has not happened, more bytes than
// moved) out of nodes.csv and out of every sum.
struct EnergyBounds {
  int64_t max_round = 1;          // the receiver's current round; rounds start at 1
  double max_wall_s = 0;          // seconds the sender can have metered so far
  // 10 kW per node: above any single machine greenfed runs on (an 8-GPU server
  // draws about 6.5 kW at full load); a figure above it is not a measurement.
  double max_power_w = 10000;
  double max_cores = 1024;        // cpu_s <= wall_s * max_cores
  // 1 kWh per GB, about 270x the default communication model (0.00375 kWh/GB).
  double max_comm_j_per_byte = 3.6e6 / 1e9;
  uint64_t max_bytes_sent = 0;      // bytes the sender can have sent to the receiver
  uint64_t max_bytes_received = 0;  // bytes the sender can have received from it
};
// OK, or InvalidArgument naming the field and the bound it broke.
Status CheckEnergyRecord(const EnergyRecord& r, const EnergyBounds& bounds);

}  // namespace greenfed
