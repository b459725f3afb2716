// Energy accounting of one run (accounting.h; formulas: docs/report.md).
#include "accounting.h"

#include <algorithm>
#include <limits>

namespace greenfed {
namespace report {
namespace internal {

const char* ProvenanceName(Provenance p) {
  switch (p) {
    case Provenance::kNone:
      return "";
    case Provenance::kMeasured:
      return "measured";
    case Provenance::kModelled:
      return "modelled";
    case Provenance::kMixed:
      return "mixed";
  }
  return "";
}

Provenance Combine(Provenance a, Provenance b) {
  if (a == Provenance::kNone) return b;
  if (b == Provenance::kNone) return a;
  return a == b ? a : Provenance::kMixed;
}

size_t RoleIndex(NodeRole role) { return static_cast<size_t>(role); }

RunEnergy AccountEnergy(const RunData& run) {
  RunEnergy e;
  e.reached = run.summary.reached;
  int64_t last = std::numeric_limits<int64_t>::max();
  if (run.summary.reached) last = *run.summary.round_reached;
  e.rounds_counted = run.summary.reached ? *run.summary.round_reached : run.summary.rounds;
  for (const NodeRow& n : run.nodes) {
    if (n.round > last) continue;
    e.counted.push_back(&n);
    e.compute_j[RoleIndex(n.role)] += n.compute_j;
    e.has_role[RoleIndex(n.role)] = true;
    e.compute_pue_j += n.compute_j * n.pue;
    // The coordinator's comm_j mirrors its clients' transfers: count them once.
    if (n.role == NodeRole::kClient) {
      e.comm_j += n.comm_j;
      e.bytes += n.bytes_sent + n.bytes_received;
      e.uplink_bytes += n.bytes_sent;
    }
    ++e.rows;
    if (n.measured) {
      ++e.measured_rows;
      e.measured_sources.insert(EnergySourceName(n.source));
      if (IsApportioned(n.source)) ++e.apportioned_rows;
    }
    e.sources.insert(EnergySourceName(n.source));
  }
  return e;
}

double WallToTarget(const RunData& run) {
  if (run.summary.reached) {
    for (const RoundRow& r : run.rounds) {
      if (r.round == *run.summary.round_reached) return r.elapsed_s;
    }
  }
  double wall_s = 0;
  for (const RoundRow& r : run.rounds) wall_s = std::max(wall_s, r.elapsed_s);
  return wall_s;
}

}  // namespace internal
}  // namespace report
}  // namespace greenfed
