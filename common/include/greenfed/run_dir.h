// RunDir: the files one run leaves behind (docs/run-directory.md is the contract):
// config.json, rounds.csv, nodes.csv and summary.json. Column lists, JSON keys
// and the CSV row writer/reader live in run_dir_schema.h; this class keeps the
// ledger and decides what goes into the files.
//
// Energy arrives as EnergyRecords from many nodes, sometimes after the round they
// belong to (a client reports its idle time with its next result), so the ledger
// is kept in memory and both CSV files are rewritten whole, atomically (temp file +
// rename), on every Flush(). A run killed at any point leaves consistent files.
// Flush formats only the rows changed since the last Flush (each row's CSV line
// is cached beside it), and a round's totals come from that round's rows alone,
// so a Flush costs the bytes it writes plus O(rows changed), not a rescan of the
// ledger per round row (which was O(R^2 N) per Flush).
// Thread safety: not thread-safe; owned by the coordinator's (or trainer's) loop.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "greenfed/carbon.h"
#include "greenfed/energy_record.h"
#include "greenfed/run_dir_schema.h"
#include "greenfed/status.h"

namespace greenfed {

// Who a node is, for accounting. g_per_kwh is the intensity of `country`.
struct NodeInfo {
  std::string node_id;   // "coordinator", "client-3", "centralized"
  std::string role;      // "coordinator", "client", "centralized"
  std::string country;   // ISO 3166-1 alpha-3
  double pue = 1.0;
  double g_per_kwh = 0;
};

// One ledger entry: a node's energy for one round from one meter source. Unlike
// the nodes.csv row it keeps the node's intensity (g_per_kwh), so that a resumed
// run computes CO2e exactly as the run before the restart did.
struct NodeRow {
  int64_t round = 0;
  NodeInfo node;
  EnergySource source = EnergySource::kModel;
  double wall_s = 0;
  double cpu_s = 0;
  double train_j = 0;
  double evaluate_j = 0;
  double aggregate_j = 0;
  double idle_j = 0;
  double comm_j = 0;
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  double compute_j() const { return train_j + evaluate_j + aggregate_j + idle_j; }
  // g CO2e of this row at the node's own intensity and PUE. Communication counts
  // only on clients (see docs/run-directory.md).
  double co2e_g() const;
  // The nodes.csv row; InvalidArgument if node.role is not a known role.
  StatusOr<NodesCsvRow> CsvRow() const;
};

// Everything a RunDir accumulates in memory: what a checkpoint saves and a resumed
// run restores, so that rounds.csv and nodes.csv continue without a gap or a double.
struct RunLedger {
  std::vector<RoundRow> rounds;  // in the order they were added (round order)
  std::vector<NodeRow> nodes;    // one per (round, node_id, source)
};

struct EnergyTotals {
  double compute_j = 0;        // before PUE
  double compute_pue_j = 0;    // sum of compute_j * node PUE
  double comm_j = 0;           // counted once, client side
  double co2e_g = 0;           // each node at its own intensity and PUE
  std::set<EnergySource> sources;
  bool measured() const;       // all sources are hardware counters
  // For progress lines and summaries: "modelled" unless measured(); "measured, apportioned"
  // when a source is kRaplSplit (a measured counter split by CPU share); else "measured".
  const char* label() const;
};

struct SummaryInfo {
  std::string kind;            // "federated" or "centralized"
  double target_accuracy = 0;
  bool reached = false;
  std::optional<int64_t> round_reached;
  int64_t rounds = 0;
  double final_accuracy = 0;
  double best_accuracy = 0;
  double wall_s = 0;
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  std::string stop_reason;
  std::string model_sha256;    // digest of the final global model (digest.h); empty if unknown
};

class RunDir {
  struct Key {
    explicit Key() = default;
  };

 public:
  // Use Create() or Open(); the key keeps the constructor to this class.
  RunDir(Key, std::string path) : path_(std::move(path)) {}
  // Creates `path` (and parents). Refuses a directory that already holds a run
  // (rounds.csv present), so that no earlier result is overwritten.
  static StatusOr<std::unique_ptr<RunDir>> Create(const std::string& path);
  // Opens the existing run directory `path` to continue it (--resume): NotFound if
  // it is not a directory. The ledger starts empty; Restore() fills it.
  static StatusOr<std::unique_ptr<RunDir>> Open(const std::string& path);

  // The ledger so far (rounds and node rows).
  RunLedger Ledger() const;
  // Replaces the ledger with `ledger` (from a checkpoint). InvalidArgument, naming
  // the row, for two node rows with the same (round, node_id, source), two round
  // rows for one round, rounds out of order, or a kComm source.
  Status Restore(const RunLedger& ledger);

  const std::string& path() const { return path_; }
  Status WriteConfig(const std::string& json_text);
  void AddRound(const RoundRow& row);
  // Records whose phase is kComm carry bytes; the rest carry compute joules.
  void AddEnergy(const NodeInfo& node, const std::vector<EnergyRecord>& records);
  // Rewrites rounds.csv and nodes.csv.
  Status Flush();
  // Totals over rows with round <= max_round (all rows when max_round < 0).
  EnergyTotals Totals(int64_t max_round = -1) const;
  // Energy, CO2e of the round's rows.
  EnergyTotals RoundTotals(int64_t round) const;
  Status WriteSummary(const SummaryInfo& info, const CarbonTable& table,
                      const std::vector<std::string>& reference_countries);
  const std::vector<RoundRow>& rounds() const { return rounds_; }
  std::vector<NodeRow> NodeRows() const;

 private:
  using NodeKey = std::tuple<int64_t, std::string, int>;  // (round, node_id, source)
  struct NodeEntry {
    NodeRow row;
    std::string line;    // row's nodes.csv line as of the last Flush
    bool dirty = true;   // row changed since `line` was formatted
  };
  using NodeMap = std::map<NodeKey, NodeEntry>;
  // Sums rows in [first, last), in key order (the order the files list them).
  static EnergyTotals Sum(NodeMap::const_iterator first, NodeMap::const_iterator last);
  // First row of `round` or later.
  NodeMap::const_iterator RoundBegin(int64_t round) const;
  std::string path_;
  std::vector<RoundRow> rounds_;
  NodeMap nodes_;
  std::vector<std::string> round_lines_;  // rounds.csv line of rounds_[i], valid for i < round_lines_.size()
  std::set<int64_t> dirty_rounds_;        // rounds whose node rows changed since the last Flush
};

// Writes `text` to `path` through a temp file and rename().
Status WriteFileAtomic(const std::string& path, const std::string& text);
// As WriteFileAtomic, and durable: fsync of the temp file before the rename and of
// the directory after it, so that after a crash `path` holds either the old or the
// new bytes, whole. A leftover `path`.tmp from a crash is overwritten.
Status WriteFileDurable(const std::string& path, const std::string& bytes);
// Default reference countries for summaries and reports.
std::vector<std::string> DefaultReferenceCountries();

}  // namespace greenfed
