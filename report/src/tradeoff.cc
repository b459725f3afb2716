// The trade-off table (tradeoff.h).
#include "tradeoff.h"

#include <cmath>
#include <map>

#include "accounting.h"
#include "format.h"

namespace greenfed {
namespace report {
namespace internal {
namespace {

std::string DataLabel(const PartitionConfig& p) {
  const std::string scheme = Lower(p.scheme);
  if (scheme == partition_scheme::kIid) return "IID";
  if (scheme == partition_scheme::kDirichlet) return "Dirichlet α=" + FormatPlain(p.alpha);
  if (scheme == partition_scheme::kShards) return "shards " + std::to_string(p.shards_per_client) + "/client";
  return p.scheme;
}

// "fedavgm(server_momentum=0.9)" -> "fedavgm".
std::string StrategyName(const std::string& settings) { return settings.substr(0, settings.find('(')); }

ReportCell Text(std::string text) {
  ReportCell cell;
  cell.text = std::move(text);
  return cell;
}

ReportCell Number(double value, std::string text, std::string unit, std::string provenance) {
  ReportCell cell;
  cell.text = std::move(text);
  cell.numeric = true;
  cell.value = value;
  cell.unit = std::move(unit);
  cell.provenance = std::move(provenance);
  return cell;
}

ReportCell Energy(double value, const std::string& unit, Provenance p) {
  return Number(value, FormatSignificant(value) + " (" + ProvenanceName(p) + ")", unit, ProvenanceName(p));
}

// Central test accuracy after `round`; the last row at or before it.
double AccuracyAt(const RunData& run, int64_t round) {
  double acc = 0;
  for (const RoundRow& r : run.rounds) {
    if (r.round <= round) acc = r.test_accuracy;
  }
  return acc;
}

// ", fraction 0.5" when a round samples part of the clients; "" for all of them.
std::string FractionText(const RunConfig& c) {
  return c.fraction_fit < 1.0 ? ", fraction " + FormatPlain(c.fraction_fit) : std::string();
}

int64_t LastRound(const RunData& run) { return run.rounds.empty() ? 0 : run.rounds.back().round; }

std::string Signed(double v, const std::string& unit) {
  std::string text = FormatSignificant(std::fabs(v)) + unit;
  if (v > 0) return "+" + text;
  if (v < 0) return "−" + text;
  return text;
}

}  // namespace

StatusOr<ReportTable> BuildTradeoffTable(const std::vector<RunData>& runs, const CarbonTable& table,
                                         std::vector<std::string>* labels, std::vector<size_t>* runs_in_table) {
  ReportTable t;
  t.id = "tradeoff";
  const double target = runs.empty() ? 0 : runs[0].config.target_accuracy;
  t.title = "Trade-off: bytes, energy and g CO2e against accuracy (to " + FormatTarget(target) +
            ", the whole run when missed)";
  t.row_header = "run";
  t.columns = {"data",
               "strategy",
               "uplink codec",
               "sampling",
               "uplink MB",
               "comm Wh",
               "compute Wh",
               "g CO2e",
               "outcome",
               "g CO2e vs baseline",
               "accuracy cost vs baseline",
               "compute energy is"};
  labels->clear();
  runs_in_table->clear();
  std::vector<RunEnergy> energy;
  std::vector<double> grams;
  for (size_t i = 0; i < runs.size(); ++i) {
    const RunData& run = runs[i];
    if (run.config.kind != RunKind::kFederated || !run.config.partition) continue;
    runs_in_table->push_back(i);
    energy.push_back(AccountEnergy(run));
    double g = 0;
    for (const NodeRow* n : energy.back().counted) {
      StatusOr<CarbonIntensity> ci = table.Lookup(n->country);
      if (!ci.ok()) {
        return ci.status().WithContext("run dir " + run.dir + ": nodes.csv node " + n->node_id + " round " +
                                       std::to_string(n->round));
      }
      g += Co2eGrams(n->compute_j, n->pue, ci->g_per_kwh);
      if (n->role == NodeRole::kClient) g += Co2eGrams(n->comm_j, 1.0, ci->g_per_kwh);
    }
    grams.push_back(g);
    labels->push_back("FL " + DataLabel(*run.config.partition) + ", " + StrategyName(run.config.strategy) + ", " +
                      run.config.uplink_codec + ", " + run.config.sampling + FractionText(run.config));
  }
  // Unique labels: the run id (else the dir) after a label that repeats.
  std::map<std::string, int> count;
  for (const auto& l : *labels) ++count[l];
  for (size_t r = 0; r < labels->size(); ++r) {
    if (count[(*labels)[r]] > 1) {
      const RunData& run = runs[(*runs_in_table)[r]];
      (*labels)[r] += " (" + (run.config.run_id.empty() ? run.dir : run.config.run_id) + ")";
    }
  }

  // Baseline of each row: the first run with the same data and strategy, no codec, uniform.
  auto key = [&](const RunData& run) {
    return DataLabel(*run.config.partition) + "|" + StrategyName(run.config.strategy) + FractionText(run.config);
  };
  std::map<std::string, size_t> baseline;  // key -> row
  for (size_t r = 0; r < runs_in_table->size(); ++r) {
    const RunData& run = runs[(*runs_in_table)[r]];
    if (run.config.uplink_codec == "none" && run.config.sampling == kDefaultSampling) baseline.emplace(key(run), r);
  }

  bool any_missing_baseline = false;
  for (size_t r = 0; r < runs_in_table->size(); ++r) {
    const RunData& run = runs[(*runs_in_table)[r]];
    const RunEnergy& e = energy[r];
    std::vector<ReportCell> cells;
    cells.push_back(Text(DataLabel(*run.config.partition)));
    cells.push_back(Text(run.config.strategy));
    cells.push_back(Text(run.config.uplink_codec));
    cells.push_back(Text(run.config.sampling_settings));
    const double uplink_mb = static_cast<double>(e.uplink_bytes) / kBytesPerMb;
    cells.push_back(Number(uplink_mb, FormatSignificant(uplink_mb), "MB", "counted"));
    cells.push_back(Energy(e.comm_j / kJoulesPerWh, "Wh", Provenance::kModelled));
    const double compute_j = e.compute_j[0] + e.compute_j[1] + e.compute_j[2];
    cells.push_back(Energy(compute_j / kJoulesPerWh, "Wh", e.Compute()));
    cells.push_back(Energy(grams[r], "g CO2e", e.Total()));
    std::string outcome;
    if (run.summary.reached) {
      outcome = std::to_string(*run.summary.round_reached) + " rounds to " + FormatTarget(target);
    } else if (run.summary.stopped_by_budget) {
      outcome = "stopped by budget at accuracy " + FormatAccuracy(run.summary.final_accuracy) + " after " +
                std::to_string(run.summary.rounds) + " rounds";
    } else {
      outcome = "best " + FormatAccuracy(run.summary.best_accuracy) + " in " + std::to_string(run.summary.rounds) +
                " rounds";
    }
    cells.push_back(Number(run.summary.reached ? static_cast<double>(*run.summary.round_reached)
                                               : static_cast<double>(run.summary.rounds),
                           outcome, "rounds", run.summary.reached ? "counted" : "not reached"));
    auto b = baseline.find(key(run));
    if (b == baseline.end()) {
      any_missing_baseline = true;
      cells.push_back(Text(kDash));
      cells.push_back(Text(kDash));
    } else if (b->second == r) {
      cells.push_back(Text("baseline"));
      cells.push_back(Text("baseline"));
    } else {
      const RunData& base = runs[(*runs_in_table)[b->second]];
      // g CO2e: comparable at the same target only.
      if (run.summary.reached && base.summary.reached && grams[b->second] > 0) {
        const double diff = grams[r] - grams[b->second];
        cells.push_back(Number(diff, Signed(diff, " g") + " (" + Signed(100 * diff / grams[b->second], "%") + ")",
                               "g CO2e", ProvenanceName(Combine(e.Total(), energy[b->second].Total()))));
      } else {
        cells.push_back(Text("– (target not reached by both)"));
      }
      // Accuracy: the baseline's minus this run's, after the last round both ran.
      const int64_t at = std::min(LastRound(run), LastRound(base));
      const double points = 100 * (AccuracyAt(base, at) - AccuracyAt(run, at));
      cells.push_back(Number(points, Signed(points, " pts") + " at round " + std::to_string(at), "points",
                             "measured"));
    }
    cells.push_back(Text(ProvenanceName(e.Compute())));
    t.rows.push_back((*labels)[r]);
    t.cells.push_back(std::move(cells));
  }
  t.notes.push_back(
      "Uplink MB: bytes the clients sent (updates as encoded, energy reports, joins), to the target; 10^6 bytes.");
  t.notes.push_back(
      "Compute Wh: every node's compute energy before PUE, to the target; it includes the CPU time of encoding and "
      "decoding updates. Comm Wh is modelled (bytes x kWh/GB), counted once on the client side.");
  t.notes.push_back(
      "g CO2e: each node at its own declared country's intensity and PUE (a mixed federation keeps each client's "
      "grid), communication without PUE.");
  t.notes.push_back(
      "Baseline: the run with the same data split, strategy and fraction of clients per round, uplink codec none "
      "and uniform sampling. g CO2e vs "
      "baseline compares grams to the same target (both must reach it); accuracy cost = the baseline's central test "
      "accuracy minus this run's after the last round both ran, in percentage points (positive = this run is "
      "behind).");
  if (any_missing_baseline) {
    t.notes.push_back("–: no baseline run (no codec, uniform) with the same data and strategy among these runs.");
  }
  return t;
}

}  // namespace internal
}  // namespace report
}  // namespace greenfed
