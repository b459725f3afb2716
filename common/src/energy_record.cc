#include "greenfed/energy_record.h"

#include <array>
#include <cmath>
#include <sstream>
#include <string>
#include <utility>

namespace greenfed {
namespace {

constexpr std::array<std::pair<EnergySource, const char*>, 5> kSources = {{
    {EnergySource::kRapl, "rapl"},
    {EnergySource::kNvml, "nvml"},
    {EnergySource::kModel, "model"},
    {EnergySource::kComm, "comm"},
    {EnergySource::kRaplSplit, "rapl-split"},
}};

constexpr std::array<std::pair<Phase, const char*>, 6> kPhases = {{
    {Phase::kFit, "fit"},
    {Phase::kEvaluate, "evaluate"},
    {Phase::kIdle, "idle"},
    {Phase::kComm, "comm"},
    {Phase::kAggregate, "aggregate"},
    {Phase::kTrain, "train"},
}};

// "a, b, c" for error messages that list the valid names.
template <typename Table>
std::string JoinNames(const Table& table) {
  std::string out;
  for (const auto& entry : table) {
    if (!out.empty()) out += ", ";
    out += entry.second;
  }
  return out;
}

}  // namespace

const char* EnergySourceName(EnergySource s) {
  for (const auto& entry : kSources) {
    if (entry.first == s) return entry.second;
  }
  return "unknown";
}

StatusOr<EnergySource> ParseEnergySource(const std::string& name) {
  for (const auto& entry : kSources) {
    if (name == entry.second) return entry.first;
  }
  return InvalidArgument("unknown energy source '" + name + "' (valid: " + JoinNames(kSources) +
                         ")");
}

bool IsMeasured(EnergySource s) {
  return s == EnergySource::kRapl || s == EnergySource::kNvml || s == EnergySource::kRaplSplit;
}

bool IsApportioned(EnergySource s) { return s == EnergySource::kRaplSplit; }

const char* PhaseName(Phase p) {
  for (const auto& entry : kPhases) {
    if (entry.first == p) return entry.second;
  }
  return "unknown";
}

StatusOr<Phase> ParsePhase(const std::string& name) {
  for (const auto& entry : kPhases) {
    if (name == entry.second) return entry.first;
  }
  return InvalidArgument("unknown phase '" + name + "' (valid: " + JoinNames(kPhases) + ")");
}

namespace {
std::string Num(double v) {
  std::ostringstream os;
  os.precision(6);
  os << v;
  return os.str();
}
}  // namespace

Status CheckEnergyRecord(const EnergyRecord& r, const EnergyBounds& b) {
  const std::string what = std::string(PhaseName(r.phase)) + " record for round " + std::to_string(r.round) + ": ";
  if (!std::isfinite(r.energy_j) || !std::isfinite(r.wall_s) || !std::isfinite(r.cpu_s)) {
    return InvalidArgument(what + "energy_j, wall_s and cpu_s must be finite");
  }
  if (r.energy_j < 0 || r.wall_s < 0 || r.cpu_s < 0) {
    return InvalidArgument(what + "energy_j, wall_s and cpu_s must be >= 0 (got " + Num(r.energy_j) + " J, " +
                           Num(r.wall_s) + " s, " + Num(r.cpu_s) + " CPU s)");
  }
  if (r.round < 1 || r.round > b.max_round) {
    return InvalidArgument(what + "round must be in [1, " + std::to_string(b.max_round) + "], the rounds so far");
  }
  if (r.measured != IsMeasured(r.source)) return InvalidArgument(what + "measured flag disagrees with its source");
  if ((r.phase == Phase::kComm) != (r.source == EnergySource::kComm)) {
    return InvalidArgument(what + "phase comm goes with source comm, and only with it");
  }
  if (r.wall_s > b.max_wall_s) {
    return InvalidArgument(what + "wall_s " + Num(r.wall_s) + " is longer than the sender can have metered (" +
                           Num(b.max_wall_s) + " s)");
  }
  if (r.cpu_s > r.wall_s * b.max_cores) {
    return InvalidArgument(what + "cpu_s " + Num(r.cpu_s) + " exceeds wall_s x " + Num(b.max_cores) + " cores");
  }
  if (r.phase == Phase::kComm) {
    if (r.bytes_sent > b.max_bytes_sent || r.bytes_received > b.max_bytes_received) {
      return InvalidArgument(what + "claims " + std::to_string(r.bytes_sent) + " bytes sent and " +
                             std::to_string(r.bytes_received) + " received, more than moved with this peer (at most " +
                             std::to_string(b.max_bytes_sent) + " and " + std::to_string(b.max_bytes_received) + ")");
    }
    const double bytes = static_cast<double>(r.bytes_sent) + static_cast<double>(r.bytes_received);
    if (r.energy_j > bytes * b.max_comm_j_per_byte) {
      return InvalidArgument(what + Num(r.energy_j) + " J for " + Num(bytes) + " bytes is over " +
                             Num(b.max_comm_j_per_byte) + " J/byte");
    }
  } else {
    if (r.bytes_sent != 0 || r.bytes_received != 0) return InvalidArgument(what + "only comm records carry bytes");
    if (r.energy_j > r.wall_s * b.max_power_w) {
      return InvalidArgument(what + Num(r.energy_j) + " J over " + Num(r.wall_s) + " s is more than " +
                             Num(b.max_power_w) + " W");
    }
  }
  return Status::Ok();
}

}  // namespace greenfed
