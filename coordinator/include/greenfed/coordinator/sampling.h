// SamplingPolicy: which of the available clients a round trains. A seam beside
// Strategy (which says how results combine), so every policy composes with every
// strategy. RoundMachine asks its policy once per round attempt, passing each
// available client's index, declared country and PUE (from its Join) and the UTC
// hour of the round, which the driver supplies (RoundMachine::NoteUtcHour): the
// machine itself reads no clock.
//
//   uniform       k = max(ceil(fraction * n), min_fit) capped at n, drawn by a
//                 partial Fisher-Yates seeded by (seed, round, attempt) with
//                 SplitMix64: the draw greenfed has always made, bit for bit.
//   carbon-aware  the same k, filled with the clients whose electricity is
//                 cleanest (g CO2e/kWh x PUE; ties broken by a hash seeded by
//                 (seed, round, attempt, index)), after the fairness floor.
//
// Fairness floor (carbon-aware), a guarantee: a client index that is in the
// available set of K = fairness_rounds consecutive rounds is sampled (sent a Fit)
// in at least one of them. A client that has waited K-1 of its available rounds
// unsampled is "due" and is sampled before any other; when more clients are due
// than k, the round samples all of them (more than k; the log says so) rather than
// break the floor. A client that leaves starts a new window when it comes back. The
// floor counts being sampled, not a result that arrived.
//
// Intensity of a client: the trace's figure for (country, UTC hour) when a trace
// is given and holds the country, else the carbon table's annual figure for it,
// else the table's WORLD figure. A trace (CSV: country,utc_hour,g_co2e_per_kwh) is
// parsed strictly: every bad line is named with file:line.
//
// State: the carbon-aware policy remembers per client index the last round it was
// sampled and when its current availability began; SaveState/RestoreState carry it
// through checkpoints (MachineSnapshot::sampling_state).
//
// Thread safety: policies are not thread-safe; owned by one RoundMachine. An
// IntensityTrace is immutable after parsing and safe to share.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "greenfed/carbon.h"
#include "greenfed/status.h"

namespace greenfed {

// Hourly carbon intensity per country: a daily profile of 24 hours.
class IntensityTrace {
 public:
  // CSV text with the header "country,utc_hour,g_co2e_per_kwh"; blank lines and
  // lines starting with '#' are skipped. Each country needs all 24 hours 0..23 once.
  // `name` (a path) starts every error: "trace.csv:7: utc_hour '24' is not in 0..23".
  static StatusOr<IntensityTrace> Parse(const std::string& text, const std::string& name);
  // Parse() of a file's content; NotFound naming the path when it cannot be read.
  static StatusOr<IntensityTrace> Load(const std::string& path);
  // g CO2e/kWh of `country` (upper-case alpha-3) at `utc_hour` (0..23); false when
  // the trace does not hold the country.
  bool Lookup(const std::string& country, int utc_hour, double* g_per_kwh) const;
  // The trace's countries, ascending.
  std::vector<std::string> Countries() const;

 private:
  std::map<std::string, std::vector<double>> by_country_;  // 24 figures each
};

struct SamplingOptions {
  std::string name = "uniform";       // uniform | carbon-aware (--sampling)
  uint32_t fairness_rounds = 5;       // carbon-aware: K of the fairness floor, >= 1 (--fairness-rounds)
  std::string intensity_trace_path;   // carbon-aware: the trace's path, for logs and config.json ("" = none)
  std::shared_ptr<const IntensityTrace> trace;  // carbon-aware: the parsed trace; null = the table only
  std::shared_ptr<const CarbonTable> table;     // annual figures; null = CarbonTable::BuiltIn()
};

// One available client as the policy sees it.
struct SamplingCandidate {
  uint32_t index = 0;         // client index
  std::string country;        // declared at Join (ISO 3166-1 alpha-3)
  double pue = 1.0;           // declared at Join
};

struct SamplingRequest {
  uint64_t round = 1;         // 1-based round
  uint32_t attempt = 1;       // 1-based attempt at the round
  uint64_t seed = 1;          // run seed (RoundOptions::seed)
  double fraction = 1.0;      // RoundOptions::fraction_fit
  uint32_t min_fit = 1;       // RoundOptions::min_fit_clients
  int utc_hour = -1;          // 0..23, the hour of the round's start; -1 = unknown (table figures)
};

struct SamplingDecision {
  std::vector<uint32_t> indices;  // the sampled client indices, ascending
  // Compact text for the progress log, empty for uniform; carbon-aware:
  // "carbon-aware 14h UTC: 0 FRA 56, 3 IND* 713" (g/kWh x PUE; * = fairness floor).
  std::string note;
  uint32_t due = 0;               // clients sampled by the fairness floor
};

class SamplingPolicy {
 public:
  virtual ~SamplingPolicy() = default;
  // "uniform" or "carbon-aware(fairness_rounds=5, trace=FILE)"; config.json and logs.
  virtual std::string Describe() const = 0;
  // The clients of one attempt at a round, from `available` (ascending indices, no
  // duplicates). Records what it sampled (the fairness floor's state).
  virtual SamplingDecision Sample(const std::vector<SamplingCandidate>& available, const SamplingRequest& request) = 0;
  // State across rounds, for checkpoints; empty for a stateless policy.
  virtual std::vector<uint8_t> SaveState() const { return {}; }
  // Restores SaveState() output; DataLoss naming the problem when it does not fit.
  virtual Status RestoreState(const std::vector<uint8_t>& state);
};

// k for n available clients: max(ceil(fraction * n), min_fit), capped at n.
uint32_t SampleCount(uint32_t n, double fraction, uint32_t min_fit);
// The uniform draw (ascending): partial Fisher-Yates seeded by (seed, round, attempt).
std::vector<uint32_t> UniformDraw(const std::vector<uint32_t>& available, uint64_t round, uint32_t attempt,
                                  uint64_t seed, double fraction, uint32_t min_fit);

// Checks name and fairness_rounds (names the flag: --sampling, --fairness-rounds, --intensity-trace).
Status ValidateSamplingOptions(const SamplingOptions& options);
StatusOr<std::unique_ptr<SamplingPolicy>> MakeSamplingPolicy(const SamplingOptions& options);
// "uniform, carbon-aware" for help texts.
std::string SamplingNames();

}  // namespace greenfed
