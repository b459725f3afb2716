#include "greenfed/energy_record.h"

#include <array>
#include <utility>

namespace greenfed {
namespace {

constexpr std::array<std::pair<EnergySource, const char*>, 4> kSources = {{
    {EnergySource::kRapl, "rapl"},
    {EnergySource::kNvml, "nvml"},
    {EnergySource::kModel, "model"},
    {EnergySource::kComm, "comm"},
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

bool IsMeasured(EnergySource s) { return s == EnergySource::kRapl || s == EnergySource::kNvml; }

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

}  // namespace greenfed
