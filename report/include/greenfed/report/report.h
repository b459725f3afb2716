// greenfed::report — reads run directories (docs/run-directory.md) and builds the
// emission comparison: Table 1 (g CO2e to reach the target accuracy, per country),
// Table 2 (energy breakdown and provenance per run), the Runs table (settings of
// each side), written as report.md, report.csv and report.svg. docs/report.md gives
// the formulas.
//
// Contract: energy to target = nodes.csv rows with round <= round_reached (all rows
// when the target was not reached). Compute energy is compute_j x the node's PUE;
// communication energy is counted once, on the client side (coordinator comm_j is
// a mirror and never added) and never gets a PUE. All runs must share one
// target_accuracy. Every failure names the run dir, the file and, for CSV files,
// the line.
// Thread safety: free functions on values; no shared state, safe to call from any
// thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "greenfed/carbon.h"
#include "greenfed/run_dir_schema.h"
#include "greenfed/status.h"

namespace greenfed {
namespace report {

struct ReportOptions {
  // Table 1 rows: carbon-table codes; an unknown code fails BuildReport with the
  // CarbonTable's NotFound message.
  std::vector<std::string> countries = {"USA", "CHN", "FRA", "DEU", "GBR", "IND", "WORLD"};
  // Table 1 columns for each centralized run: its compute energy re-expressed at
  // these PUEs (the two PUEs of Qiu et al.'s centralized columns). Empty: one column
  // per centralized run at its nodes' own PUE.
  std::vector<double> centralized_pues = {1.67, 1.11};
  // Directory that receives report.md, report.csv and report.svg; created if missing.
  std::string out_dir;
  // Command line that produced the report, printed verbatim in report.md.
  std::string command;
  // Who and when, e.g. "greenfed 0.1.0, 2026-11-23 19:00 UTC"; printed in report.md.
  std::string generated_by;
  // Also build the trade-off table (codec x sampling per federated run, against
  // its no-codec/uniform baseline) and write tradeoff.svg; `greenfed report
  // --tradeoff`, `greenfed compare --tradeoff`.
  bool tradeoff = false;
};

enum class RunKind { kFederated, kCentralized };
using NodeRole = greenfed::NodeRole;  // run_dir_schema.h

// config.json "partition" (federated runs only).
struct PartitionConfig {
  std::string scheme = "iid";     // "iid", "dirichlet" or "shards"
  double alpha = 0.5;             // Dirichlet concentration, used by "dirichlet"
  int64_t shards_per_client = 2;  // used by "shards"
  int64_t seed = 0;               // partition seed
  int64_t num_clients = 0;        // clients the data was split over
};

// The parts of config.json the report uses. Settings that a run dir may omit are
// optional and print as "–" in the Runs table.
struct RunConfig {
  RunKind kind = RunKind::kFederated;
  std::string run_id;                        // falls back to the dir name
  std::string task;                          // e.g. "fashion_mnist"
  std::string model;                         // e.g. "cnn"
  double target_accuracy = 0;                // required
  int64_t max_rounds = 0;                    // rounds (federated) or epochs (centralized)
  std::optional<PartitionConfig> partition;  // required for federated runs
  // Federated runs: config.json strategy.settings (Strategy::Describe(), e.g.
  // "fedavgm(server_learning_rate=1, server_momentum=0.9)"), else strategy.name;
  // kDefaultStrategy ("fedavg") for run dirs written before strategies existed.
  // Empty for centralized runs.
  std::string strategy;
  // Federated runs: config.json "uplink_codec" ("none", "fp16", "int8", "topk:0.01");
  // "none" when absent (run dirs from before codecs). Empty for centralized runs.
  std::string uplink_codec;
  // Federated runs: config.json sampling.name ("uniform", "carbon-aware") and
  // sampling.settings (SamplingPolicy::Describe()); kDefaultSampling when absent.
  std::string sampling;
  std::string sampling_settings;
  // Federated runs: config.json coordinator.fraction_fit; 1 when absent.
  double fraction_fit = 1.0;
  std::optional<int64_t> epochs;             // local epochs per round
  std::optional<int64_t> batch_size;         // examples per SGD step
  std::optional<double> learning_rate;       // SGD step size
  std::optional<double> momentum;            // SGD momentum
  std::optional<double> lr_decay;            // per-round learning-rate factor
  std::string lr_schedule;                   // train.lr_schedule as JSON text; empty if absent
  std::string node_country;                  // this process's declared country code
  std::optional<double> node_pue;            // this process's declared PUE
  std::string meter_kind;                    // "auto", "model", "rapl", "nvml"
  std::optional<double> watts_per_core;      // CPU power model, W per busy core
  std::optional<double> watts_per_gb;        // CPU power model, W per resident GB
  std::string meter_profile;                 // power-model profile name
  std::optional<double> comm_kwh_per_gb;     // communication model, kWh per GB moved
};

// The parts of summary.json the report uses.
struct RunSummary {
  bool reached = false;                  // target accuracy reached
  std::optional<int64_t> round_reached;  // set iff reached
  int64_t rounds = 0;                    // rounds (epochs) completed
  double best_accuracy = 0;              // best central test accuracy
  double final_accuracy = 0;             // accuracy after the last round
  double wall_s = 0;                     // whole run
  std::string stop_reason;               // e.g. "target reached"
  bool stopped_by_budget = false;        // stop_reason starts with kBudgetStopPrefix
};

// The rows as run_dir_schema.h reads them: one definition for writer and reader.
using RoundRow = greenfed::RoundRow;
using NodeRow = greenfed::NodesCsvRow;

struct RunData {
  std::string dir;  // as given to LoadRunDir
  RunConfig config;
  RunSummary summary;
  std::vector<RoundRow> rounds;
  std::vector<NodeRow> nodes;
};

// Reads and validates config.json, summary.json, rounds.csv and nodes.csv of `dir`.
// Missing file -> NotFound naming it; unparsable value -> DataLoss naming file, line
// and column; a CSV with no data rows -> DataLoss saying so.
StatusOr<RunData> LoadRunDir(const std::string& dir);

// One table cell: the text shown in report.md and, for numbers, the value for
// report.csv.
struct ReportCell {
  std::string text;             // as printed in report.md
  bool numeric = false;         // written to report.csv
  std::optional<double> value;  // empty for a numeric cell that has no value (not reached)
  std::string unit;             // e.g. "g CO2e", "Wh", "MB"
  std::string provenance;       // "measured", "modelled", "mixed", "counted", "not reached"
};

struct ReportTable {
  std::string id;                              // "table1", "table2", "runs": report.csv `table`
  std::string title;                           // heading in report.md
  std::string row_header;                      // header of the label column
  std::vector<std::string> columns;            // value columns
  std::vector<std::string> rows;               // row labels
  std::vector<std::vector<ReportCell>> cells;  // [row][column]
  std::vector<std::string> notes;              // lines printed under the table

  // nullptr when there is no such row or column.
  const ReportCell* Find(const std::string& row, const std::string& column) const;
};

struct ReportTables {
  double target_accuracy = 0;
  std::string task;
  ReportTable emissions;                     // Table 1: g CO2e to target, countries x runs
  ReportTable breakdown;                     // Table 2: one row per run
  ReportTable runs;                          // settings of each run
  std::vector<std::string> run_labels;       // per input run, as in Table 2 and the plot legend
  std::vector<CarbonIntensity> intensities;  // every carbon-table row the report used
  // ReportOptions::tradeoff: one row per federated run (docs/report.md, "Trade-off table").
  std::optional<ReportTable> tradeoff;
  std::vector<std::string> tradeoff_labels;  // per row, the tradeoff.svg legend
  std::vector<size_t> tradeoff_runs;         // per row, the index of its run in the input
};

// Builds the three tables. All runs must have the same target_accuracy, else
// InvalidArgument naming both run dirs and both targets.
StatusOr<ReportTables> BuildReport(const std::vector<RunData>& runs, const CarbonTable& table,
                                   const ReportOptions& options);

// Writes options.out_dir/report.md, report.csv and report.svg (and tradeoff.svg
// when tables.tradeoff is set).
Status WriteReport(const ReportTables& tables, const std::vector<RunData>& runs,
                   const ReportOptions& options);

// `value` with `digits` significant digits, without exponent for 1e-4 <= |value| < 1e15
// (12345 -> "12300", 0.012345 -> "0.0123").
std::string FormatSignificant(double value, int digits = 3);

}  // namespace report
}  // namespace greenfed
