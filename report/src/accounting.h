// Internal to greenfed::report: energy accounting of one run (docs/report.md,
// "Formulas"): which nodes.csv rows count (round <= round_reached, all rows when the
// target was not reached), compute energy by role before and after PUE,
// communication energy and bytes counted once on the client side, and provenance.
// Thread safety: pure functions on values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "greenfed/report/report.h"

namespace greenfed {
namespace report {
namespace internal {

enum class Provenance { kNone, kMeasured, kModelled, kMixed };

// "", "measured", "modelled", "mixed".
const char* ProvenanceName(Provenance p);
// kNone is neutral; two different provenances make kMixed.
Provenance Combine(Provenance a, Provenance b);

struct RunEnergy {
  bool reached = false;
  int64_t rounds_counted = 0;       // round_reached, or summary.rounds when not reached
  double compute_j[3] = {0, 0, 0};  // by NodeRole, before PUE
  bool has_role[3] = {false, false, false};
  double compute_pue_j = 0;  // sum of compute_j x node PUE
  double comm_j = 0;         // client rows only
  uint64_t bytes = 0;        // client rows: sent + received
  uint64_t uplink_bytes = 0; // client rows: sent (client -> coordinator updates and reports)
  size_t rows = 0;
  size_t measured_rows = 0;         // rows of a measured source, apportioned ones included
  size_t apportioned_rows = 0;      // rows of source rapl-split (IsApportioned)
  std::set<std::string> sources;
  std::set<std::string> measured_sources;
  std::vector<const NodeRow*> counted;  // rows inside the window

  Provenance Compute() const {
    if (rows == 0) return Provenance::kNone;
    if (measured_rows == rows) return Provenance::kMeasured;
    return measured_rows == 0 ? Provenance::kModelled : Provenance::kMixed;
  }
  // Communication energy is always the bytes x kWh/GB model.
  Provenance Total() const {
    return Combine(Compute(), comm_j > 0 ? Provenance::kModelled : Provenance::kNone);
  }
};

// Index of a role in RunEnergy::compute_j / has_role.
size_t RoleIndex(NodeRole role);
// The energy of `run`'s counted rows; RunEnergy::counted points into run.nodes.
RunEnergy AccountEnergy(const RunData& run);
// Wall seconds to the round that reached the target, else of the whole run.
double WallToTarget(const RunData& run);

}  // namespace internal
}  // namespace report
}  // namespace greenfed
