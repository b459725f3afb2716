// The run directory's schema, defined once (docs/run-directory.md is the prose
// contract): file names, the column lists of rounds.csv and nodes.csv, the JSON
// keys of config.json and summary.json, and the CSV row types with their one
// writer (Format*) and one reader (Parse*). RunDir (the writer), the coordinator's
// resume path and greenfed::report (the reader) all go through this header, so the
// two sides cannot drift apart.
//
// Contract: Format* writes exactly the bytes of format 1 (numbers with 10
// significant digits, integers in decimal, an empty cell for an absent optional).
// Parse* accepts what Format* writes and refuses anything else with DataLoss naming
// the file, the 1-based line and, for a bad cell, the column: "nodes.csv line 3,
// column compute_j: '36O000' is not a finite number". Format then Parse gives back
// the row up to the 10 printed digits.
// Thread safety: pure functions and constants.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "greenfed/energy_record.h"
#include "greenfed/status.h"

namespace greenfed {

// `format` in config.json and summary.json.
inline constexpr int64_t kRunDirFormat = 1;

// File names inside a run directory.
inline constexpr const char kConfigFile[] = "config.json";
inline constexpr const char kRoundsFile[] = "rounds.csv";
inline constexpr const char kNodesFile[] = "nodes.csv";
inline constexpr const char kSummaryFile[] = "summary.json";
inline constexpr const char kCheckpointFile[] = "checkpoint.bin";  // federated runs, coordinator/checkpoint.h

// Values of config.json and summary.json "kind".
namespace run_kind {
inline constexpr const char kFederated[] = "federated";
inline constexpr const char kCentralized[] = "centralized";
}  // namespace run_kind

// Values of config.json "partition.scheme".
namespace partition_scheme {
inline constexpr const char kIid[] = "iid";
inline constexpr const char kDirichlet[] = "dirichlet";
inline constexpr const char kShards[] = "shards";
}  // namespace partition_scheme

// What a report shows for a federated run dir whose config.json has no "strategy"
// object (written before strategies existed): those runs aggregated with FedAvg.
inline constexpr const char kDefaultStrategy[] = "fedavg";
// ... and for one without "sampling" (written before sampling policies existed).
inline constexpr const char kDefaultSampling[] = "uniform";

// JSON keys of config.json. Nested keys are relative to their object; report
// readers address them by dotted path, e.g. "train.learning_rate".
namespace config_key {
inline constexpr const char kFormat[] = "format";
inline constexpr const char kVersion[] = "greenfed_version";
inline constexpr const char kKind[] = "kind";  // "federated" or "centralized"
inline constexpr const char kRunId[] = "run_id";
inline constexpr const char kTask[] = "task";
inline constexpr const char kModel[] = "model";
inline constexpr const char kTargetAccuracy[] = "target_accuracy";
inline constexpr const char kMaxRounds[] = "max_rounds";
inline constexpr const char kPartition[] = "partition";  // object:
inline constexpr const char kScheme[] = "scheme";
inline constexpr const char kAlpha[] = "alpha";
inline constexpr const char kShardsPerClient[] = "shards_per_client";
inline constexpr const char kSeed[] = "seed";
inline constexpr const char kNumClients[] = "num_clients";
inline constexpr const char kTrain[] = "train";  // object:
inline constexpr const char kEpochs[] = "epochs";
inline constexpr const char kBatchSize[] = "batch_size";
inline constexpr const char kLearningRate[] = "learning_rate";
inline constexpr const char kMomentum[] = "momentum";
inline constexpr const char kLrDecay[] = "lr_decay";
inline constexpr const char kLrSchedule[] = "lr_schedule";
inline constexpr const char kSendDelta[] = "send_delta";
inline constexpr const char kMomentumRestarts[] = "momentum_restarts";
inline constexpr const char kStrategy[] = "strategy";        // object, federated only:
inline constexpr const char kStrategyName[] = "name";          // e.g. "fedavgm"
inline constexpr const char kStrategySettings[] = "settings";  // Strategy::Describe(), e.g. "fedavgm(server_learning_rate=1, ...)"
inline constexpr const char kUplinkCodec[] = "uplink_codec";      // federated only: --uplink-codec, e.g. "int8"
inline constexpr const char kDownlinkCodec[] = "downlink_codec";  // federated only: --downlink-codec
inline constexpr const char kCoordinator[] = "coordinator";  // object, federated only
inline constexpr const char kBudget[] = "budget";            // object, federated only:
inline constexpr const char kMaxCo2eG[] = "max_co2e_g";      // 0 = no limit
inline constexpr const char kMaxWh[] = "max_wh";             // 0 = no limit
inline constexpr const char kSampling[] = "sampling";        // object, federated only (absent = uniform):
inline constexpr const char kSamplingName[] = "name";          // "uniform" | "carbon-aware"
inline constexpr const char kSamplingSettings[] = "settings";  // SamplingPolicy::Describe()
inline constexpr const char kFairnessRounds[] = "fairness_rounds";
inline constexpr const char kIntensityTrace[] = "intensity_trace";  // path, "" = none
inline constexpr const char kData[] = "data";                // object
inline constexpr const char kNode[] = "node";                // object:
inline constexpr const char kCountry[] = "country";
inline constexpr const char kPue[] = "pue";
inline constexpr const char kThreads[] = "threads";
inline constexpr const char kMeter[] = "meter";  // object:
inline constexpr const char kMeterKind[] = "kind";
inline constexpr const char kProfile[] = "profile";
inline constexpr const char kWattsPerCore[] = "watts_per_core";
inline constexpr const char kWattsPerGb[] = "watts_per_gb";
inline constexpr const char kCommKwhPerGb[] = "comm_kwh_per_gb";
}  // namespace config_key

// JSON keys of summary.json.
namespace summary_key {
inline constexpr const char kFormat[] = "format";
inline constexpr const char kKind[] = "kind";
inline constexpr const char kTargetAccuracy[] = "target_accuracy";
inline constexpr const char kReached[] = "reached";
inline constexpr const char kRoundReached[] = "round_reached";  // null when not reached
inline constexpr const char kRounds[] = "rounds";
inline constexpr const char kFinalAccuracy[] = "final_accuracy";
inline constexpr const char kBestAccuracy[] = "best_accuracy";
inline constexpr const char kWallS[] = "wall_s";
inline constexpr const char kBytesSent[] = "bytes_sent";
inline constexpr const char kBytesReceived[] = "bytes_received";
inline constexpr const char kStopReason[] = "stop_reason";
// Every stop_reason of a run that a budget stopped starts with this
// (coordinator/budget.h): "budget: max-co2e-g 12.5 would be exceeded by round 7 ...".
inline constexpr const char kBudgetStopPrefix[] = "budget: ";
inline constexpr const char kModelSha256[] = "model_sha256";  // absent when unknown
inline constexpr const char kEnergy[] = "energy";             // energy object, all rows
inline constexpr const char kToTarget[] = "to_target";        // energy object, rows <= round_reached; or null
inline constexpr const char kCo2eG[] = "co2e_g";
inline constexpr const char kCo2eGByCountry[] = "co2e_g_by_country";
// Keys of an energy object.
inline constexpr const char kComputeWh[] = "compute_wh";
inline constexpr const char kComputePueWh[] = "compute_pue_wh";
inline constexpr const char kCommWh[] = "comm_wh";
inline constexpr const char kTotalWh[] = "total_wh";
inline constexpr const char kMeasured[] = "measured";
inline constexpr const char kSources[] = "sources";
}  // namespace summary_key

// Column lists, in file order (the header line is these joined with ',').
const std::vector<std::string>& RoundsCsvColumns();
const std::vector<std::string>& NodesCsvColumns();
std::string RoundsCsvHeader();  // with the trailing '\n'
std::string NodesCsvHeader();   // with the trailing '\n'

// One rounds.csv row. RunDir::AddRound takes it with the three energy columns
// unset; RunDir::Flush fills them from the ledger.
struct RoundRow {
  int64_t round = 0;                 // 1-based round (epoch for centralized)
  uint32_t clients_sampled = 0;      // clients sent a fit instruction
  uint32_t clients_succeeded = 0;    // valid results aggregated
  uint32_t clients_failed = 0;       // timed out, disconnected or rejected
  double test_accuracy = 0;          // central evaluation, in [0, 1]
  double test_loss = 0;              // mean cross-entropy, central evaluation
  double train_loss = 0;             // example-weighted clients' training loss
  double round_s = 0;                // wall seconds of this round
  double elapsed_s = 0;              // wall seconds since the run started
  uint64_t bytes_sent = 0;           // by the coordinator this round
  uint64_t bytes_received = 0;       // by the coordinator this round
  double energy_j = 0;               // compute energy of all nodes for this round, before PUE
  double comm_j = 0;                 // communication energy, counted once (client side)
  double co2e_g = 0;                 // each node at its own intensity and PUE
  std::optional<double> fed_accuracy;  // federated evaluation; empty cell when not run
};

// Values of nodes.csv "measured": how the row's joules were obtained. Every row of source
// rapl-split (IsApportioned) is "apportioned": measured by the package counter, then split
// by CPU-time share (docs/energy.md, "Split RAPL"); other measured sources are "measured".
namespace measured_label {
inline constexpr const char kMeasured[] = "measured";
inline constexpr const char kApportioned[] = "apportioned";
inline constexpr const char kModelled[] = "modelled";
}  // namespace measured_label
// The label of a row with `source` and `measured` (one of measured_label).
const char* MeasuredLabel(EnergySource source, bool measured);

enum class NodeRole : uint8_t { kCoordinator = 0, kClient = 1, kCentralized = 2 };
const char* NodeRoleName(NodeRole role);  // "coordinator", "client", "centralized"
StatusOr<NodeRole> ParseNodeRole(const std::string& name);

// One nodes.csv row: one node's energy for one round from one meter source.
struct NodesCsvRow {
  int64_t round = 0;       // round (epoch) the energy belongs to
  std::string node_id;     // "coordinator", "client-K", "centralized"
  NodeRole role = NodeRole::kClient;
  std::string country;     // ISO 3166-1 alpha-3 the node declared
  double pue = 1.0;        // the node's declared PUE
  double wall_s = 0;       // wall seconds covered by the records
  double cpu_s = 0;        // process CPU seconds in them
  double train_j = 0;
  double evaluate_j = 0;
  double aggregate_j = 0;
  double idle_j = 0;
  double compute_j = 0;    // train + evaluate + aggregate + idle, before PUE
  double comm_j = 0;       // bytes x kWh/GB; counted only on client rows
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  EnergySource source = EnergySource::kModel;  // rapl, nvml, model or rapl-split (never comm)
  // "measured" / "apportioned" / "modelled" in the file (MeasuredLabel); true for the first
  // two. IsMeasured(source) when written by greenfed.
  bool measured = false;
};

// One line, with the trailing '\n'.
std::string FormatRoundsCsvRow(const RoundRow& row);
std::string FormatNodesCsvRow(const NodesCsvRow& row);

// A parsed CSV file: header checked against the required columns (extra columns
// are allowed and ignored; order is free), rows of the header's width.
struct CsvTable {
  std::string name;                  // "nodes.csv", for messages
  std::vector<std::string> header;
  std::vector<int> lines;            // 1-based line of each row
  std::vector<std::vector<std::string>> rows;
};
// DataLoss when empty, a line does not split, a row's width differs from the
// header's, or a required column is missing.
StatusOr<CsvTable> ParseCsvTable(const std::string& text, const std::string& name,
                                 const std::vector<std::string>& required);

// Whole files. An empty file, a bad header or a bad cell -> DataLoss naming file,
// line and column. A header with no rows gives an empty vector.
StatusOr<std::vector<RoundRow>> ParseRoundsCsv(const std::string& text);
StatusOr<std::vector<NodesCsvRow>> ParseNodesCsv(const std::string& text);

// Number formatting of both CSV files: 10 significant digits, no trailing zeros.
std::string CsvNumber(double value);

}  // namespace greenfed
