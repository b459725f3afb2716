// The report's tables: Table 1 (g CO2e to target per country), Table 2 (energy and
// traffic per run, with provenance) and the Runs table (settings), from the runs
// LoadRunDir read and the energy accounting.h counts. Formulas: docs/report.md.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <set>

#include "accounting.h"
#include "format.h"
#include "greenfed/report/report.h"
#include "tradeoff.h"

namespace greenfed {
namespace report {
namespace {

using internal::AccountEnergy;
using internal::FormatAccuracy;
using internal::FormatPlain;
using internal::FormatTarget;
using internal::Join;
using internal::kBytesPerMb;
using internal::kDash;
using internal::kJoulesPerWh;
using internal::Lower;
using internal::Provenance;
using internal::ProvenanceName;
using internal::RoleIndex;
using internal::RunEnergy;
using internal::WallToTarget;

std::string PartitionLabel(const PartitionConfig& p) {
  const std::string scheme = Lower(p.scheme);
  if (scheme == partition_scheme::kIid) return "FL IID";
  if (scheme == partition_scheme::kDirichlet) return "FL non-IID (dirichlet α=" + FormatPlain(p.alpha) + ")";
  if (scheme == partition_scheme::kShards)
    return "FL non-IID (shards, " + std::to_string(p.shards_per_client) + "/client)";
  return "FL non-IID (" + p.scheme + ")";
}

std::string BaseLabel(const RunData& run) {
  if (run.config.kind == RunKind::kCentralized) return "Centralized";
  return PartitionLabel(*run.config.partition);
}

// Last component of a run dir, also for "runs/fl-iid/".
std::string DirName(const std::string& dir) {
  std::filesystem::path path = std::filesystem::path(dir).lexically_normal();
  if (path.filename().empty()) path = path.parent_path();
  return path.filename().string();
}

std::string RunName(const RunData& run) {
  if (!run.config.run_id.empty()) return run.config.run_id;
  return DirName(run.dir);
}

// Labels unique across the report: a label shared by several runs gets the run id,
// then (run ids shared too) the dir name, then an index.
std::vector<std::string> MakeLabels(const std::vector<RunData>& runs) {
  std::vector<std::string> labels;
  for (const RunData& run : runs) labels.push_back(BaseLabel(run));
  auto disambiguate = [&labels](const std::function<std::string(size_t)>& suffix) {
    std::map<std::string, int> count;
    for (const std::string& label : labels) ++count[label];
    for (size_t i = 0; i < labels.size(); ++i) {
      if (count[labels[i]] > 1) labels[i] += suffix(i);
    }
  };
  disambiguate([&runs](size_t i) {
    return runs[i].config.run_id.empty() ? std::string() : " (" + runs[i].config.run_id + ")";
  });
  disambiguate([&runs](size_t i) { return " [" + DirName(runs[i].dir) + "]"; });
  std::map<std::string, int> seen;
  for (std::string& label : labels) {
    int k = ++seen[label];
    if (k > 1) label += " #" + std::to_string(k);
  }
  return labels;
}

ReportCell TextCell(std::string text) {
  ReportCell cell;
  cell.text = std::move(text);
  return cell;
}

ReportCell NumberCell(double value, std::string text, std::string unit, std::string provenance) {
  ReportCell cell;
  cell.text = std::move(text);
  cell.numeric = true;
  cell.value = value;
  cell.unit = std::move(unit);
  cell.provenance = std::move(provenance);
  return cell;
}

// "110 (modelled)": energy figures carry their provenance in the cell itself.
ReportCell EnergyCell(double value, const std::string& unit, Provenance p) {
  std::string text = FormatSignificant(value);
  if (p != Provenance::kNone) text += std::string(" (") + ProvenanceName(p) + ")";
  return NumberCell(value, text, unit, ProvenanceName(p));
}

// "best 0.8842 after 30 rounds"
std::string BestText(const RunData& run) {
  const char* unit = run.config.kind == RunKind::kCentralized ? "epochs" : "rounds";
  return "best " + FormatAccuracy(run.summary.best_accuracy) + " after " +
         std::to_string(run.summary.rounds) + " " + unit;
}

// "stopped by budget at accuracy 0.8123 after 7 rounds": the accuracy of the model
// the run ended with.
std::string BudgetText(const RunData& run) {
  return "stopped by budget at accuracy " + FormatAccuracy(run.summary.final_accuracy) + " after " +
         std::to_string(run.summary.rounds) + " rounds";
}

std::string NotReachedText(const RunData& run) {
  if (run.summary.stopped_by_budget) return BudgetText(run);
  return "not reached (" + BestText(run) + ")";
}

ReportCell NotReachedCell(const RunData& run) {
  ReportCell cell;
  cell.text = NotReachedText(run);
  cell.numeric = true;
  cell.unit = "g CO2e";
  cell.provenance = "not reached";
  return cell;
}

std::string OptText(const std::optional<double>& v) { return v ? FormatPlain(*v) : kDash; }
std::string OptText(const std::optional<int64_t>& v) { return v ? std::to_string(*v) : kDash; }

std::string ScheduleText(const RunConfig& c) {
  if (!c.lr_schedule.empty()) return c.lr_schedule;
  if (!c.lr_decay) return kDash;
  if (*c.lr_decay == 1.0) return "constant";
  return "×" + FormatPlain(*c.lr_decay) + " per round";
}

std::string MeterText(const RunConfig& c) {
  std::string text = c.meter_kind.empty() ? std::string(kDash) : c.meter_kind;
  std::vector<std::string> parts;
  if (!c.meter_profile.empty()) parts.push_back(c.meter_profile);
  if (c.watts_per_core) parts.push_back(FormatPlain(*c.watts_per_core) + " W/core");
  if (c.watts_per_gb) parts.push_back(FormatPlain(*c.watts_per_gb) + " W/GB");
  if (c.comm_kwh_per_gb) parts.push_back(FormatPlain(*c.comm_kwh_per_gb) + " kWh/GB");
  if (!parts.empty()) text += " (" + Join(parts, ", ") + ")";
  return text;
}

ReportTable BuildRunsTable(const std::vector<RunData>& runs,
                           const std::vector<std::string>& labels) {
  ReportTable t;
  t.id = "runs";
  t.title = "Runs: the settings of each side";
  t.row_header = "run";
  t.columns = {"run dir",      "run id",
               "task / model", "partition",
               "clients",      "strategy",
               "max rounds/epochs",
               "local epochs", "batch",
               "lr",           "momentum",
               "lr schedule",  "target",
               "meter",        "node (country, PUE)"};
  for (size_t i = 0; i < runs.size(); ++i) {
    const RunConfig& c = runs[i].config;
    std::string partition = kDash;
    std::string clients = "1";
    if (c.partition) {
      const PartitionConfig& p = *c.partition;
      partition = p.scheme;
      if (Lower(p.scheme) == partition_scheme::kDirichlet) partition += " α=" + FormatPlain(p.alpha);
      if (Lower(p.scheme) == partition_scheme::kShards)
        partition += " " + std::to_string(p.shards_per_client) + "/client";
      partition += ", seed " + std::to_string(p.seed);
      clients = std::to_string(p.num_clients);
    }
    std::string node = c.node_country.empty() ? std::string(kDash) : c.node_country;
    node += ", " + OptText(c.node_pue);
    t.rows.push_back(labels[i]);
    t.cells.push_back({TextCell(runs[i].dir), TextCell(RunName(runs[i])),
                       TextCell((c.task.empty() ? std::string(kDash) : c.task) + " / " +
                                (c.model.empty() ? std::string(kDash) : c.model)),
                       TextCell(partition), TextCell(clients),
                       TextCell(c.strategy.empty() ? std::string(kDash) : c.strategy),
                       TextCell(std::to_string(c.max_rounds)), TextCell(OptText(c.epochs)),
                       TextCell(OptText(c.batch_size)), TextCell(OptText(c.learning_rate)),
                       TextCell(OptText(c.momentum)), TextCell(ScheduleText(c)),
                       TextCell(FormatTarget(c.target_accuracy)), TextCell(MeterText(c)),
                       TextCell(node)});
  }
  t.notes.push_back(
      "Local epochs, batch and lr are per client per round for FL runs and per epoch "
      "for centralized runs; a fair comparison tunes both sides.");
  return t;
}

}  // namespace

const ReportCell* ReportTable::Find(const std::string& row, const std::string& column) const {
  auto r = std::find(rows.begin(), rows.end(), row);
  auto c = std::find(columns.begin(), columns.end(), column);
  if (r == rows.end() || c == columns.end()) return nullptr;
  return &cells[static_cast<size_t>(r - rows.begin())][static_cast<size_t>(c - columns.begin())];
}

StatusOr<ReportTables> BuildReport(const std::vector<RunData>& runs, const CarbonTable& table,
                                   const ReportOptions& options) {
  if (runs.empty()) return InvalidArgument("report needs at least one run dir");
  if (options.countries.empty())
    return InvalidArgument("report needs at least one country for Table 1");
  for (double pue : options.centralized_pues) {
    Status pue_ok = ValidatePue(pue);
    if (!pue_ok.ok()) return pue_ok.WithContext("centralized PUE");
  }
  for (size_t i = 1; i < runs.size(); ++i) {
    const double a = runs[0].config.target_accuracy;
    const double b = runs[i].config.target_accuracy;
    if (std::fabs(a - b) > 1e-9) {
      return InvalidArgument("run dir " + runs[i].dir + " has target " + FormatTarget(b) + " but " +
                             runs[0].dir + " has " + FormatTarget(a) +
                             "; compare runs made to the same target");
    }
  }
  for (const RunData& run : runs) {
    if (run.config.kind == RunKind::kFederated && !run.config.partition) {
      return InvalidArgument("run dir " + run.dir +
                             ": federated run without a partition in config.json");
    }
  }

  ReportTables out;
  out.target_accuracy = runs[0].config.target_accuracy;
  out.task = runs[0].config.task;
  out.run_labels = MakeLabels(runs);
  std::set<std::string> used_codes;

  std::vector<RunEnergy> energy;
  for (const RunData& run : runs) energy.push_back(AccountEnergy(run));

  // Table 1.
  std::vector<CarbonIntensity> row_intensity;
  for (const std::string& code : options.countries) {
    GREENFED_ASSIGN_OR_RETURN(CarbonIntensity ci, table.Lookup(code));
    row_intensity.push_back(ci);
  }
  ReportTable& t1 = out.emissions;
  t1.id = "table1";
  t1.title = "Table 1: g CO2e to reach test accuracy " + FormatTarget(out.target_accuracy) +
             (out.task.empty() ? std::string() : " on " + out.task) +
             ", all electricity at the row's carbon intensity";
  t1.row_header = "country";
  struct Column {
    size_t run;
    std::optional<double> pue;  // set: centralized column re-expressed at this PUE
  };
  std::vector<Column> columns;
  for (size_t i = 0; i < runs.size(); ++i) {
    if (runs[i].config.kind != RunKind::kCentralized) continue;
    for (double pue : options.centralized_pues) {
      t1.columns.push_back(out.run_labels[i] + ", PUE " + FormatPlain(pue));
      columns.push_back(Column{i, pue});
    }
    if (options.centralized_pues.empty()) {
      t1.columns.push_back(out.run_labels[i] + ", own PUE");
      columns.push_back(Column{i, std::nullopt});
    }
  }
  for (size_t i = 0; i < runs.size(); ++i) {
    if (runs[i].config.kind != RunKind::kFederated) continue;
    t1.columns.push_back(out.run_labels[i]);
    columns.push_back(Column{i, std::nullopt});
  }
  for (const CarbonIntensity& ci : row_intensity) {
    used_codes.insert(ci.code);
    t1.rows.push_back(ci.name + " (" + ci.code + ")");
    std::vector<ReportCell> cells;
    for (const Column& col : columns) {
      const RunData& run = runs[col.run];
      const RunEnergy& e = energy[col.run];
      if (!e.reached) {
        cells.push_back(NotReachedCell(run));
        continue;
      }
      double co2e_g = 0;
      if (col.pue) {
        co2e_g =
            Co2eGrams(e.compute_j[0] + e.compute_j[1] + e.compute_j[2], *col.pue, ci.g_per_kwh);
      } else {
        co2e_g =
            Co2eGrams(e.compute_pue_j, 1.0, ci.g_per_kwh) + Co2eGrams(e.comm_j, 1.0, ci.g_per_kwh);
      }
      ReportCell cell =
          NumberCell(co2e_g, FormatSignificant(co2e_g), "g CO2e", ProvenanceName(e.Total()));
      cells.push_back(cell);
    }
    t1.cells.push_back(std::move(cells));
  }
  t1.notes.push_back(
      "Centralized columns: the centralized run's compute energy to target x the "
      "column's PUE x the row's intensity (its own PUE is replaced).");
  t1.notes.push_back(
      "FL columns: (sum over nodes of compute energy x that node's own PUE + "
      "client-side communication energy) x the row's intensity.");
  t1.notes.push_back(
      "Energy to target: nodes.csv rows with round <= the round (epoch) that first "
      "reached the target.");

  // Table 2.
  ReportTable& t2 = out.breakdown;
  t2.id = "table2";
  t2.title = "Table 2: energy and traffic to target (whole run when the target was not reached)";
  t2.row_header = "run";
  t2.columns = {"reached",
                "rounds/epochs",
                "best accuracy",
                "wall s",
                "compute Wh coordinator",
                "compute Wh clients",
                "compute Wh centralized",
                "comm Wh",
                "MB sent+received",
                "g CO2e (own country, own PUE)",
                "energy sources",
                "compute energy is"};
  for (size_t i = 0; i < runs.size(); ++i) {
    const RunData& run = runs[i];
    const RunEnergy& e = energy[i];
    const bool federated = run.config.kind == RunKind::kFederated;
    const std::string round_unit = federated ? "rounds" : "epochs";
    std::vector<ReportCell> cells;
    cells.push_back(NumberCell(e.reached ? 1 : 0, e.reached ? "yes"
                               : "no (" + (run.summary.stopped_by_budget ? BudgetText(run) : BestText(run)) + ")",
                               "bool", "counted"));
    cells.push_back(NumberCell(static_cast<double>(e.rounds_counted),
                               std::to_string(e.rounds_counted) + (e.reached ? "" : " (all)"),
                               round_unit, "counted"));
    cells.push_back(NumberCell(run.summary.best_accuracy, FormatAccuracy(run.summary.best_accuracy),
                               "fraction", "measured"));
    const double wall_s = WallToTarget(run);
    cells.push_back(NumberCell(wall_s, FormatSignificant(wall_s), "s", "measured"));
    // Provenance per role.
    for (NodeRole role : {NodeRole::kCoordinator, NodeRole::kClient, NodeRole::kCentralized}) {
      const size_t k = RoleIndex(role);
      if (!e.has_role[k]) {
        cells.push_back(TextCell(kDash));
        continue;
      }
      size_t rows = 0;
      size_t measured = 0;
      for (const NodeRow* n : e.counted) {
        if (n->role != role) continue;
        ++rows;
        if (n->measured) ++measured;
      }
      Provenance p = measured == rows
                         ? Provenance::kMeasured
                         : (measured == 0 ? Provenance::kModelled : Provenance::kMixed);
      cells.push_back(EnergyCell(e.compute_j[k] / kJoulesPerWh, "Wh", p));
    }
    if (federated) {
      cells.push_back(EnergyCell(e.comm_j / kJoulesPerWh, "Wh", Provenance::kModelled));
      const double mb = static_cast<double>(e.bytes) / kBytesPerMb;
      cells.push_back(NumberCell(mb, FormatSignificant(mb), "MB", "counted"));
    } else {
      cells.push_back(TextCell(kDash));
      cells.push_back(TextCell(kDash));
    }
    // Each node at its own country's intensity and its own PUE.
    double own_g = 0;
    for (const NodeRow* n : e.counted) {
      StatusOr<CarbonIntensity> ci = table.Lookup(n->country);
      if (!ci.ok()) {
        return ci.status().WithContext("run dir " + run.dir + ": nodes.csv node " + n->node_id +
                                       " round " + std::to_string(n->round));
      }
      used_codes.insert(ci->code);
      own_g += Co2eGrams(n->compute_j, n->pue, ci->g_per_kwh);
      if (n->role == NodeRole::kClient) own_g += Co2eGrams(n->comm_j, 1.0, ci->g_per_kwh);
    }
    cells.push_back(EnergyCell(own_g, "g CO2e", e.Total()));
    cells.push_back(
        TextCell(Join(std::vector<std::string>(e.sources.begin(), e.sources.end()), ", ")));
    cells.push_back(TextCell(ProvenanceName(e.Compute())));
    t2.rows.push_back(out.run_labels[i]);
    t2.cells.push_back(std::move(cells));
  }
  t2.notes.push_back(
      "Compute Wh is IT energy before PUE; comm Wh is counted once, on the client side "
      "(the coordinator's mirror of the same transfers is not added); MB = 10^6 bytes "
      "the clients sent and received.");
  t2.notes.push_back(
      "g CO2e (own country, own PUE) = sum over nodes of (compute J x node PUE + client "
      "comm J) / 3.6e6 x the intensity of the node's declared country.");
  for (size_t i = 0; i < runs.size(); ++i) {
    const RunConfig& c = runs[i].config;
    const RunEnergy& e = energy[i];
    if (e.measured_rows < e.rows) {
      std::string model = "Modelled: compute energy of " + out.run_labels[i] + " (" +
                          std::to_string(e.rows - e.measured_rows) + " of " +
                          std::to_string(e.rows) + " node records) by the CPU power model";
      if (!c.meter_profile.empty()) model += " '" + c.meter_profile + "'";
      model += ": J = CPU s x " +
               (c.watts_per_core ? FormatPlain(*c.watts_per_core) : std::string("?")) +
               " W/core + resident GB x " +
               (c.watts_per_gb ? FormatPlain(*c.watts_per_gb) : std::string("?")) +
               " W/GB x wall s (meter section of " + runs[i].dir +
               "/config.json; processes on other machines may declare their own).";
      t2.notes.push_back(model);
    }
    if (e.measured_rows > e.apportioned_rows) {
      std::vector<std::string> direct;
      for (const std::string& s : e.measured_sources) {
        auto parsed = ParseEnergySource(s);
        if (!parsed.ok() || !IsApportioned(*parsed)) direct.push_back(s);
      }
      t2.notes.push_back("Measured: compute energy of " + out.run_labels[i] + " (" +
                         std::to_string(e.measured_rows - e.apportioned_rows) + " of " +
                         std::to_string(e.rows) + " node records) by hardware counters (" +
                         Join(direct, ", ") + ").");
    }
    if (e.apportioned_rows > 0) {
      t2.notes.push_back(
          "Measured, then apportioned (rapl-split): compute energy of " + out.run_labels[i] + " (" +
          std::to_string(e.apportioned_rows) + " of " + std::to_string(e.rows) +
          " node records) is the RAPL package energy measured by greenfed simulate, split over the "
          "virtual clients' fits and evaluations and the coordinator by thread CPU-time share; the "
          "package's idle power and other processes' energy are split with it (docs/energy.md, "
          "\"Split RAPL\").");
    }
    if (c.kind == RunKind::kFederated) {
      t2.notes.push_back(
          "Modelled: communication energy of " + out.run_labels[i] + " = bytes moved x " +
          (c.comm_kwh_per_gb ? FormatPlain(*c.comm_kwh_per_gb) : std::string("?")) + " kWh/GB.");
    }
  }

  out.runs = BuildRunsTable(runs, out.run_labels);
  if (options.tradeoff) {
    GREENFED_ASSIGN_OR_RETURN(ReportTable tradeoff,
                              internal::BuildTradeoffTable(runs, table, &out.tradeoff_labels, &out.tradeoff_runs));
    out.tradeoff = std::move(tradeoff);
  }
  for (const std::string& code : used_codes) {
    GREENFED_ASSIGN_OR_RETURN(CarbonIntensity ci, table.Lookup(code));
    out.intensities.push_back(ci);
  }
  return out;
}

}  // namespace report
}  // namespace greenfed
