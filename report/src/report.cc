// Run-directory reader and the emission comparison tables. Formulas: docs/report.md.
#include "greenfed/report/report.h"

#include "greenfed/csv.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace greenfed {
namespace report {
namespace {

using nlohmann::json;

constexpr double kJoulesPerWh = 3600.0;
constexpr double kBytesPerMb = 1e6;
constexpr const char* kDash = "–";

// ---------------------------------------------------------------------------------
// Formatting.

std::string Printf(const char* format, double value) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), format, value);
  return buf;
}

// Accuracies are fractions of 10,000 test images: four decimals are exact.
std::string FormatAccuracy(double accuracy) { return Printf("%.4f", accuracy); }

// Targets as the user typed them, with at least two decimals: 0.9 -> "0.90".
std::string FormatTarget(double target) {
  for (int decimals = 2; decimals <= 6; ++decimals) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.*f", decimals, target);
    if (std::fabs(std::strtod(buf, nullptr) - target) < 1e-12) return buf;
  }
  return Printf("%.17g", target);
}

std::string FormatPlain(double value) { return Printf("%g", value); }

// Full precision for report.csv.
std::string FormatCsvNumber(double value) { return Printf("%.10g", value); }

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string Join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) out += sep;
    out += parts[i];
  }
  return out;
}

// ---------------------------------------------------------------------------------
// Files.

StatusOr<std::string> ReadWholeFile(const std::string& path, const std::string& name) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return NotFound("cannot open " + name + " (" + path + "): " + std::strerror(errno));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return DataLoss("error reading " + name + " (" + path + ")");
  return text.str();
}

Status WriteWholeFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return NotFound("cannot create " + path + ": " + std::strerror(errno));
  out << text;
  out.flush();
  if (!out) return DataLoss("error writing " + path);
  return Status::Ok();
}

// ---------------------------------------------------------------------------------
// JSON fields, addressed by dotted path ("train.learning_rate").

// nullptr when the field or one of its parents is absent or null.
StatusOr<const json*> FindField(const json& root, const std::string& path,
                                const std::string& file) {
  const json* node = &root;
  size_t start = 0;
  while (start <= path.size()) {
    size_t dot = path.find('.', start);
    std::string key =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!node->is_object()) {
      return DataLoss(file + ": field '" + path + "': parent of '" + key + "' is not an object");
    }
    auto it = node->find(key);
    if (it == node->end() || it->is_null()) return static_cast<const json*>(nullptr);
    node = &*it;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return node;
}

StatusOr<std::optional<double>> OptNumber(const json& root, const std::string& path,
                                          const std::string& file) {
  GREENFED_ASSIGN_OR_RETURN(const json* field, FindField(root, path, file));
  if (field == nullptr) return std::optional<double>();
  if (!field->is_number()) {
    return DataLoss(file + ": field '" + path + "' is " + field->dump() + ", expected a number");
  }
  double value = field->get<double>();
  if (!std::isfinite(value)) return DataLoss(file + ": field '" + path + "' is not finite");
  return std::optional<double>(value);
}

StatusOr<std::optional<int64_t>> OptInt(const json& root, const std::string& path,
                                        const std::string& file) {
  GREENFED_ASSIGN_OR_RETURN(const json* field, FindField(root, path, file));
  if (field == nullptr) return std::optional<int64_t>();
  if (field->is_number_integer()) return std::optional<int64_t>(field->get<int64_t>());
  if (field->is_number_float()) {
    double value = field->get<double>();
    if (std::isfinite(value) && value == std::floor(value) && std::fabs(value) < 9e15) {
      return std::optional<int64_t>(static_cast<int64_t>(value));
    }
  }
  return DataLoss(file + ": field '" + path + "' is " + field->dump() + ", expected an integer");
}

StatusOr<std::optional<std::string>> OptString(const json& root, const std::string& path,
                                               const std::string& file) {
  GREENFED_ASSIGN_OR_RETURN(const json* field, FindField(root, path, file));
  if (field == nullptr) return std::optional<std::string>();
  if (!field->is_string()) {
    return DataLoss(file + ": field '" + path + "' is " + field->dump() + ", expected a string");
  }
  return std::optional<std::string>(field->get<std::string>());
}

Status Missing(const std::string& file, const std::string& path, const std::string& expected) {
  return DataLoss(file + ": required field '" + path + "' is missing; expected " + expected);
}

StatusOr<double> ReqNumber(const json& root, const std::string& path, const std::string& file) {
  GREENFED_ASSIGN_OR_RETURN(std::optional<double> value, OptNumber(root, path, file));
  if (!value) return Missing(file, path, "a number");
  return *value;
}

StatusOr<int64_t> ReqInt(const json& root, const std::string& path, const std::string& file) {
  GREENFED_ASSIGN_OR_RETURN(std::optional<int64_t> value, OptInt(root, path, file));
  if (!value) return Missing(file, path, "an integer");
  return *value;
}

StatusOr<std::string> ReqString(const json& root, const std::string& path,
                                const std::string& file) {
  GREENFED_ASSIGN_OR_RETURN(std::optional<std::string> value, OptString(root, path, file));
  if (!value) return Missing(file, path, "a string");
  return *value;
}

StatusOr<bool> ReqBool(const json& root, const std::string& path, const std::string& file) {
  GREENFED_ASSIGN_OR_RETURN(const json* field, FindField(root, path, file));
  if (field == nullptr) return Missing(file, path, "true or false");
  if (!field->is_boolean()) {
    return DataLoss(file + ": field '" + path + "' is " + field->dump() +
                    ", expected true or false");
  }
  return field->get<bool>();
}

StatusOr<json> ParseJsonFile(const std::string& dir, const std::string& name) {
  GREENFED_ASSIGN_OR_RETURN(std::string text, ReadWholeFile(dir + "/" + name, name));
  try {
    json root = json::parse(text);
    if (!root.is_object()) return DataLoss(name + ": top level is not a JSON object");
    return root;
  } catch (const json::exception& e) {
    // e.what() carries "at line L, column C".
    return DataLoss(name + ": " + e.what());
  }
}

// A dotted path of schema keys: Key(config_key::kTrain, config_key::kEpochs) = "train.epochs".
std::string Key(const char* object, const char* field) { return std::string(object) + "." + field; }

StatusOr<RunKind> ParseKind(const std::string& kind, const std::string& file) {
  if (kind == "federated") return RunKind::kFederated;
  if (kind == "centralized") return RunKind::kCentralized;
  return DataLoss(file + ": field 'kind' is \"" + kind +
                  "\", expected \"federated\" or \"centralized\"");
}

Status CheckFormat(const json& root, const std::string& file) {
  GREENFED_ASSIGN_OR_RETURN(int64_t format, ReqInt(root, config_key::kFormat, file));
  if (format != kRunDirFormat) {
    return DataLoss(file + ": format " + std::to_string(format) +
                    "; this greenfed reads run-directory format 1");
  }
  return Status::Ok();
}

StatusOr<RunConfig> ParseConfig(const json& root) {
  const std::string file = kConfigFile;
  GREENFED_RETURN_IF_ERROR(CheckFormat(root, file));
  RunConfig config;
  GREENFED_ASSIGN_OR_RETURN(std::string kind, ReqString(root, config_key::kKind, file));
  GREENFED_ASSIGN_OR_RETURN(config.kind, ParseKind(kind, file));
  GREENFED_ASSIGN_OR_RETURN(std::optional<std::string> run_id, OptString(root, config_key::kRunId, file));
  config.run_id = run_id.value_or("");
  GREENFED_ASSIGN_OR_RETURN(std::optional<std::string> task, OptString(root, config_key::kTask, file));
  config.task = task.value_or("");
  GREENFED_ASSIGN_OR_RETURN(std::optional<std::string> model, OptString(root, config_key::kModel, file));
  config.model = model.value_or("");
  GREENFED_ASSIGN_OR_RETURN(config.target_accuracy, ReqNumber(root, config_key::kTargetAccuracy, file));
  if (!(config.target_accuracy > 0 && config.target_accuracy <= 1)) {
    return DataLoss(file + ": target_accuracy is " + FormatPlain(config.target_accuracy) +
                    ", expected a fraction in (0, 1]");
  }
  GREENFED_ASSIGN_OR_RETURN(config.max_rounds, ReqInt(root, config_key::kMaxRounds, file));

  GREENFED_ASSIGN_OR_RETURN(const json* partition, FindField(root, config_key::kPartition, file));
  if (partition != nullptr && config.kind == RunKind::kFederated) {
    PartitionConfig p;
    GREENFED_ASSIGN_OR_RETURN(p.scheme, ReqString(root, Key(config_key::kPartition, config_key::kScheme), file));
    GREENFED_ASSIGN_OR_RETURN(std::optional<double> alpha,
                              OptNumber(root, Key(config_key::kPartition, config_key::kAlpha), file));
    p.alpha = alpha.value_or(p.alpha);
    GREENFED_ASSIGN_OR_RETURN(std::optional<int64_t> shards,
                              OptInt(root, Key(config_key::kPartition, config_key::kShardsPerClient), file));
    p.shards_per_client = shards.value_or(p.shards_per_client);
    GREENFED_ASSIGN_OR_RETURN(std::optional<int64_t> seed, OptInt(root, Key(config_key::kPartition, config_key::kSeed), file));
    p.seed = seed.value_or(p.seed);
    GREENFED_ASSIGN_OR_RETURN(std::optional<int64_t> clients,
                              OptInt(root, Key(config_key::kPartition, config_key::kNumClients), file));
    p.num_clients = clients.value_or(p.num_clients);
    config.partition = p;
  }
  if (config.kind == RunKind::kFederated && !config.partition) {
    return Missing(file, "partition", "an object (every federated run records its partition)");
  }

  GREENFED_ASSIGN_OR_RETURN(config.epochs, OptInt(root, Key(config_key::kTrain, config_key::kEpochs), file));
  GREENFED_ASSIGN_OR_RETURN(config.batch_size, OptInt(root, Key(config_key::kTrain, config_key::kBatchSize), file));
  GREENFED_ASSIGN_OR_RETURN(config.learning_rate, OptNumber(root, Key(config_key::kTrain, config_key::kLearningRate), file));
  GREENFED_ASSIGN_OR_RETURN(config.momentum, OptNumber(root, Key(config_key::kTrain, config_key::kMomentum), file));
  GREENFED_ASSIGN_OR_RETURN(config.lr_decay, OptNumber(root, Key(config_key::kTrain, config_key::kLrDecay), file));
  GREENFED_ASSIGN_OR_RETURN(const json* schedule, FindField(root, Key(config_key::kTrain, config_key::kLrSchedule), file));
  if (schedule != nullptr) {
    config.lr_schedule = schedule->is_string() ? schedule->get<std::string>() : schedule->dump();
  }
  GREENFED_ASSIGN_OR_RETURN(std::optional<std::string> country,
                            OptString(root, Key(config_key::kNode, config_key::kCountry), file));
  config.node_country = country.value_or("");
  GREENFED_ASSIGN_OR_RETURN(config.node_pue, OptNumber(root, Key(config_key::kNode, config_key::kPue), file));
  GREENFED_ASSIGN_OR_RETURN(std::optional<std::string> meter_kind,
                            OptString(root, Key(config_key::kMeter, config_key::kMeterKind), file));
  config.meter_kind = meter_kind.value_or("");
  GREENFED_ASSIGN_OR_RETURN(config.watts_per_core, OptNumber(root, Key(config_key::kMeter, config_key::kWattsPerCore), file));
  GREENFED_ASSIGN_OR_RETURN(config.watts_per_gb, OptNumber(root, Key(config_key::kMeter, config_key::kWattsPerGb), file));
  GREENFED_ASSIGN_OR_RETURN(std::optional<std::string> profile,
                            OptString(root, Key(config_key::kMeter, config_key::kProfile), file));
  config.meter_profile = profile.value_or("");
  GREENFED_ASSIGN_OR_RETURN(config.comm_kwh_per_gb, OptNumber(root, Key(config_key::kMeter, config_key::kCommKwhPerGb), file));
  return config;
}

StatusOr<RunSummary> ParseSummary(const json& root, const RunConfig& config) {
  const std::string file = kSummaryFile;
  GREENFED_RETURN_IF_ERROR(CheckFormat(root, file));
  GREENFED_ASSIGN_OR_RETURN(std::string kind_name, ReqString(root, summary_key::kKind, file));
  GREENFED_ASSIGN_OR_RETURN(RunKind kind, ParseKind(kind_name, file));
  if (kind != config.kind) {
    return DataLoss(file + ": kind \"" + kind_name + "\" disagrees with config.json");
  }
  GREENFED_ASSIGN_OR_RETURN(double target, ReqNumber(root, summary_key::kTargetAccuracy, file));
  if (std::fabs(target - config.target_accuracy) > 1e-9) {
    return DataLoss(file + ": target_accuracy " + FormatTarget(target) +
                    " disagrees with config.json's " + FormatTarget(config.target_accuracy));
  }
  RunSummary summary;
  GREENFED_ASSIGN_OR_RETURN(summary.reached, ReqBool(root, summary_key::kReached, file));
  GREENFED_ASSIGN_OR_RETURN(summary.round_reached, OptInt(root, summary_key::kRoundReached, file));
  if (summary.reached && !summary.round_reached) {
    return DataLoss(file + ": reached is true but round_reached is null");
  }
  if (!summary.reached) summary.round_reached.reset();
  GREENFED_ASSIGN_OR_RETURN(summary.rounds, ReqInt(root, summary_key::kRounds, file));
  GREENFED_ASSIGN_OR_RETURN(summary.best_accuracy, ReqNumber(root, summary_key::kBestAccuracy, file));
  GREENFED_ASSIGN_OR_RETURN(std::optional<double> final_accuracy,
                            OptNumber(root, summary_key::kFinalAccuracy, file));
  summary.final_accuracy = final_accuracy.value_or(0);
  GREENFED_ASSIGN_OR_RETURN(std::optional<double> wall_s, OptNumber(root, summary_key::kWallS, file));
  summary.wall_s = wall_s.value_or(0);
  GREENFED_ASSIGN_OR_RETURN(std::optional<std::string> stop, OptString(root, summary_key::kStopReason, file));
  summary.stop_reason = stop.value_or("");
  return summary;
}

// ---------------------------------------------------------------------------------
// Energy accounting (docs/report.md, "Formulas").

enum class Provenance { kNone, kMeasured, kModelled, kMixed };

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

struct RunEnergy {
  bool reached = false;
  int64_t rounds_counted = 0;       // round_reached, or summary.rounds when not reached
  double compute_j[3] = {0, 0, 0};  // by NodeRole, before PUE
  bool has_role[3] = {false, false, false};
  double compute_pue_j = 0;  // sum of compute_j x node PUE
  double comm_j = 0;         // client rows only
  uint64_t bytes = 0;        // client rows: sent + received
  size_t rows = 0;
  size_t measured_rows = 0;
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
    }
    ++e.rows;
    if (n.measured) {
      ++e.measured_rows;
      e.measured_sources.insert(EnergySourceName(n.source));
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

std::string PartitionLabel(const PartitionConfig& p) {
  const std::string scheme = Lower(p.scheme);
  if (scheme == "iid") return "FL IID";
  if (scheme == "dirichlet") return "FL non-IID (dirichlet α=" + FormatPlain(p.alpha) + ")";
  if (scheme == "shards")
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

std::string NotReachedText(const RunData& run) { return "not reached (" + BestText(run) + ")"; }

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
               "clients",      "max rounds/epochs",
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
      if (Lower(p.scheme) == "dirichlet") partition += " α=" + FormatPlain(p.alpha);
      if (Lower(p.scheme) == "shards")
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

// -----------------------------------------------------------------------------------
// Public functions.

std::string FormatSignificant(double value, int digits) {
  if (!std::isfinite(value)) return std::isnan(value) ? "nan" : (value > 0 ? "inf" : "-inf");
  if (value == 0) return "0";
  digits = std::max(1, digits);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*g", digits, value);
  double magnitude = std::fabs(value);
  if (std::strchr(buf, 'e') != nullptr && magnitude >= 1 && magnitude < 1e15) {
    // %g switched to an exponent because the integer part has more digits than
    // `digits`; print the already-rounded value plainly: 1.23e+04 -> 12300.
    std::snprintf(buf, sizeof(buf), "%.0f", std::strtod(buf, nullptr));
  }
  return buf;
}

const ReportCell* ReportTable::Find(const std::string& row, const std::string& column) const {
  auto r = std::find(rows.begin(), rows.end(), row);
  auto c = std::find(columns.begin(), columns.end(), column);
  if (r == rows.end() || c == columns.end()) return nullptr;
  return &cells[static_cast<size_t>(r - rows.begin())][static_cast<size_t>(c - columns.begin())];
}

StatusOr<RunData> LoadRunDir(const std::string& dir) {
  const std::string context = "run dir " + dir;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return NotFound(context + ": not a directory");
  }
  RunData run;
  run.dir = dir;

  StatusOr<json> config_json = ParseJsonFile(dir, kConfigFile);
  if (!config_json.ok()) return config_json.status().WithContext(context);
  StatusOr<RunConfig> config = ParseConfig(*config_json);
  if (!config.ok()) return config.status().WithContext(context);
  run.config = std::move(config).value();

  StatusOr<json> summary_json = ParseJsonFile(dir, kSummaryFile);
  if (!summary_json.ok()) return summary_json.status().WithContext(context);
  StatusOr<RunSummary> summary = ParseSummary(*summary_json, run.config);
  if (!summary.ok()) return summary.status().WithContext(context);
  run.summary = std::move(summary).value();

  // One reader for both CSV files: run_dir_schema.h.
  auto no_rows = [&context](const char* file) {
    return DataLoss(context + ": " + file + " has a header but no rows: the run completed no round");
  };
  StatusOr<std::string> rounds_text = ReadWholeFile(dir + "/" + kRoundsFile, kRoundsFile);
  if (!rounds_text.ok()) return rounds_text.status().WithContext(context);
  StatusOr<std::vector<RoundRow>> rounds = ParseRoundsCsv(*rounds_text);
  if (!rounds.ok()) return rounds.status().WithContext(context);
  if (rounds->empty()) return no_rows(kRoundsFile);
  run.rounds = std::move(rounds).value();
  std::sort(run.rounds.begin(), run.rounds.end(),
            [](const RoundRow& a, const RoundRow& b) { return a.round < b.round; });

  StatusOr<std::string> nodes_text = ReadWholeFile(dir + "/" + kNodesFile, kNodesFile);
  if (!nodes_text.ok()) return nodes_text.status().WithContext(context);
  StatusOr<std::vector<NodeRow>> nodes = ParseNodesCsv(*nodes_text);
  if (!nodes.ok()) return nodes.status().WithContext(context);
  if (nodes->empty()) return no_rows(kNodesFile);
  run.nodes = std::move(nodes).value();

  if (run.summary.reached) {
    const int64_t reached = *run.summary.round_reached;
    bool found = std::any_of(run.rounds.begin(), run.rounds.end(),
                             [reached](const RoundRow& r) { return r.round == reached; });
    if (!found) {
      return DataLoss(context + ": summary.json round_reached is " + std::to_string(reached) +
                      " but rounds.csv has no row for that round");
    }
    bool has_energy = std::any_of(run.nodes.begin(), run.nodes.end(),
                                  [reached](const NodeRow& n) { return n.round <= reached; });
    if (!has_energy) {
      return DataLoss(context + ": nodes.csv has no row for rounds <= " + std::to_string(reached) +
                      " (summary.json round_reached): no energy to target");
    }
  }
  return run;
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
    cells.push_back(NumberCell(e.reached ? 1 : 0, e.reached ? "yes" : "no (" + BestText(run) + ")",
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
    if (e.measured_rows > 0) {
      t2.notes.push_back(
          "Measured: compute energy of " + out.run_labels[i] + " (" +
          std::to_string(e.measured_rows) + " of " + std::to_string(e.rows) +
          " node records) by hardware counters (" +
          Join(std::vector<std::string>(e.measured_sources.begin(), e.measured_sources.end()),
               ", ") +
          ").");
    }
    if (c.kind == RunKind::kFederated) {
      t2.notes.push_back(
          "Modelled: communication energy of " + out.run_labels[i] + " = bytes moved x " +
          (c.comm_kwh_per_gb ? FormatPlain(*c.comm_kwh_per_gb) : std::string("?")) + " kWh/GB.");
    }
  }

  out.runs = BuildRunsTable(runs, out.run_labels);
  for (const std::string& code : used_codes) {
    GREENFED_ASSIGN_OR_RETURN(CarbonIntensity ci, table.Lookup(code));
    out.intensities.push_back(ci);
  }
  return out;
}

// -----------------------------------------------------------------------------------
// Writers.

namespace {

std::string MdEscape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '|') {
      out += "\\|";
    } else if (c == '\n' || c == '\r') {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

std::string MarkdownTable(const ReportTable& t) {
  std::string md = "## " + MdEscape(t.title) + "\n\n| " + MdEscape(t.row_header) + " |";
  for (const std::string& col : t.columns) md += " " + MdEscape(col) + " |";
  md += "\n|---|";
  for (size_t i = 0; i < t.columns.size(); ++i) md += "---|";
  md += "\n";
  for (size_t r = 0; r < t.rows.size(); ++r) {
    md += "| " + MdEscape(t.rows[r]) + " |";
    for (const ReportCell& cell : t.cells[r]) md += " " + MdEscape(cell.text) + " |";
    md += "\n";
  }
  if (!t.notes.empty()) {
    md += "\n";
    for (const std::string& note : t.notes) md += "- " + MdEscape(note) + "\n";
  }
  return md + "\n";
}

std::string CsvField(const std::string& text) {
  if (text.find_first_of(",\"\n\r") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string XmlEscape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string ReportMarkdown(const ReportTables& tables, const ReportOptions& options) {
  std::string md = "# greenfed report: g CO2e to reach " + FormatTarget(tables.target_accuracy) +
                   " test accuracy" +
                   (tables.task.empty() ? std::string() : " (" + tables.task + ")") + "\n\n";
  if (!options.generated_by.empty())
    md += "Generated by " + MdEscape(options.generated_by) + ".\n\n";
  if (!options.command.empty()) md += "Command:\n\n```\n" + options.command + "\n```\n\n";
  md += MarkdownTable(tables.emissions);
  md += MarkdownTable(tables.breakdown);
  md += MarkdownTable(tables.runs);

  md +=
      "## Carbon intensities used\n\n| code | name | g CO2e/kWh | year | source "
      "|\n|---|---|---|---|---|\n";
  for (const CarbonIntensity& ci : tables.intensities) {
    md += "| " + MdEscape(ci.code) + " | " + MdEscape(ci.name) + " | " + FormatPlain(ci.g_per_kwh) +
          " | " + std::to_string(ci.year) + " | " + MdEscape(ci.source) + " |\n";
  }
  md +=
      "\n## Accuracy against cumulative emissions\n\n![test accuracy against cumulative g "
      "CO2e](report.svg)\n\n";
  md +=
      "## How to read this\n\n"
      "- **Measured vs modelled.** A node's compute energy is *measured* when it came from a "
      "hardware "
      "counter (RAPL for CPU packages, NVML for NVIDIA GPUs) and *modelled* otherwise (CPU seconds "
      "x "
      "W per core + resident GB x W per GB). Communication energy is always modelled (bytes x "
      "kWh/GB). "
      "Every energy figure above says which it is; the lines under Table 2 name the models and "
      "their "
      "parameters.\n"
      "- **Communication is counted once**, on the client side. The coordinator logs the same "
      "transfers "
      "from its end; adding both would double them.\n"
      "- **PUE applies to compute only.** A node's compute energy is multiplied by its declared "
      "PUE "
      "(1.0 for a device at home); communication energy is network energy and gets none.\n"
      "- **Table 1 re-expresses energy, it does not re-run anything.** Each row puts all the "
      "electricity "
      "of a run on one country's grid; the centralized columns also swap the data centre's PUE. "
      "Table 2 "
      "keeps each node's own country and PUE.\n"
      "- **To target** means up to and including the first round (epoch) whose central test "
      "accuracy "
      "reached the target; a run that never reached it shows its best accuracy instead of a "
      "number.\n"
      "- **Limits of the comparison with Qiu et al. (arXiv 2102.07627).** Table 1 has the shape of "
      "their table (countries x centralized at two PUEs and FL), but their figures come from their "
      "hardware (data-centre GPUs for centralized training) and their energy model; these runs use "
      "whatever hardware ran them, and on a machine without RAPL or NVML every compute figure is "
      "modelled, not measured. Their model, data split, client count and hyper-parameters also "
      "differ "
      "(see the Runs table for ours). Compare the shape of the tables (ratios between columns, "
      "ranking "
      "of countries), not absolute grams. See docs/report.md.\n";
  return md;
}

std::string ReportCsv(const ReportTables& tables) {
  std::string csv = "table,row,column,value,unit,provenance\n";
  for (const ReportTable* t : {&tables.emissions, &tables.breakdown}) {
    for (size_t r = 0; r < t->rows.size(); ++r) {
      for (size_t c = 0; c < t->columns.size(); ++c) {
        const ReportCell& cell = t->cells[r][c];
        if (!cell.numeric) continue;
        csv += CsvField(t->id) + "," + CsvField(t->rows[r]) + "," + CsvField(t->columns[c]) + "," +
               (cell.value ? FormatCsvNumber(*cell.value) : std::string()) + "," +
               CsvField(cell.unit) + "," + CsvField(cell.provenance) + "\n";
      }
    }
  }
  return csv;
}

std::string TickLabel(double value) {
  if (value >= 1e-3 && value < 1e6) return FormatPlain(value);
  return Printf("%.0e", value);
}

std::string ReportSvg(const ReportTables& tables, const std::vector<RunData>& runs) {
  constexpr double kWidth = 800, kHeight = 500;
  constexpr double kLeft = 70, kRight = 560, kTop = 50, kBottom = 430;
  static const char* const kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                        "#8c564b", "#e377c2", "#7f7f7f", "#17becf", "#bcbd22"};

  // Points: (cumulative g CO2e, test accuracy) per round.
  std::vector<std::vector<std::pair<double, double>>> curves;
  double x_min = std::numeric_limits<double>::infinity();
  double x_max = 0;
  double y_floor = tables.target_accuracy;
  for (const RunData& run : runs) {
    std::vector<std::pair<double, double>> points;
    double cumulative_g = 0;
    for (const RoundRow& r : run.rounds) {
      cumulative_g += r.co2e_g;
      if (cumulative_g <= 0) continue;  // log axis
      points.emplace_back(cumulative_g, r.test_accuracy);
      x_min = std::min(x_min, cumulative_g);
      x_max = std::max(x_max, cumulative_g);
      y_floor = std::min(y_floor, r.test_accuracy);
    }
    curves.push_back(std::move(points));
  }
  int decade_lo = -3;
  int decade_hi = 0;
  if (x_max > 0) {
    decade_lo = static_cast<int>(std::floor(std::log10(x_min)));
    decade_hi = static_cast<int>(std::ceil(std::log10(x_max)));
    if (decade_hi <= decade_lo) decade_hi = decade_lo + 1;
  }
  // Zoom to [0.5, 1] unless some point lies lower; then step down by 0.1.
  const double y_lo = std::max(0.0, std::min(0.5, std::floor(y_floor * 10) / 10));
  auto x_of = [&](double g) {
    return kLeft + (std::log10(g) - decade_lo) / (decade_hi - decade_lo) * (kRight - kLeft);
  };
  auto y_of = [&](double acc) { return kBottom - (acc - y_lo) / (1.0 - y_lo) * (kBottom - kTop); };
  auto num = [](double v) { return Printf("%.1f", v); };

  std::string svg =
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"800\" height=\"500\" viewBox=\"0 0 " +
      num(kWidth) + " " + num(kHeight) + "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  svg += "<rect x=\"0\" y=\"0\" width=\"800\" height=\"500\" fill=\"white\"/>\n";
  svg += "<text x=\"400\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">" +
         XmlEscape("Test accuracy against cumulative g CO2e" +
                   (tables.task.empty() ? std::string() : " (" + tables.task + ")")) +
         "</text>\n";
  // Grid and ticks.
  svg += "<g stroke=\"#dddddd\" stroke-width=\"1\">\n";
  for (int d = decade_lo; d < decade_hi; ++d) {
    for (int m = 2; m <= 9; ++m) {
      double x = x_of(m * std::pow(10.0, d));
      svg += "<line x1=\"" + num(x) + "\" y1=\"" + num(kBottom) + "\" x2=\"" + num(x) + "\" y2=\"" +
             num(kBottom - 4) + "\" stroke=\"#999999\"/>\n";
    }
  }
  for (int d = decade_lo; d <= decade_hi; ++d) {
    double x = x_of(std::pow(10.0, d));
    svg += "<line x1=\"" + num(x) + "\" y1=\"" + num(kTop) + "\" x2=\"" + num(x) + "\" y2=\"" +
           num(kBottom) + "\"/>\n";
  }
  const int y_steps = static_cast<int>(std::lround((1.0 - y_lo) * 10));
  for (int s = 0; s <= y_steps; ++s) {
    double y = y_of(y_lo + s * 0.1);
    svg += "<line x1=\"" + num(kLeft) + "\" y1=\"" + num(y) + "\" x2=\"" + num(kRight) +
           "\" y2=\"" + num(y) + "\"/>\n";
  }
  svg += "</g>\n<g fill=\"#333333\">\n";
  for (int d = decade_lo; d <= decade_hi; ++d) {
    svg += "<text x=\"" + num(x_of(std::pow(10.0, d))) + "\" y=\"" + num(kBottom + 16) +
           "\" text-anchor=\"middle\">" + XmlEscape(TickLabel(std::pow(10.0, d))) + "</text>\n";
  }
  for (int s = 0; s <= y_steps; ++s) {
    double acc = y_lo + s * 0.1;
    svg += "<text x=\"" + num(kLeft - 6) + "\" y=\"" + num(y_of(acc) + 4) +
           "\" text-anchor=\"end\">" + Printf("%.1f", acc) + "</text>\n";
  }
  svg += "</g>\n";
  svg += "<rect x=\"" + num(kLeft) + "\" y=\"" + num(kTop) + "\" width=\"" + num(kRight - kLeft) +
         "\" height=\"" + num(kBottom - kTop) + "\" fill=\"none\" stroke=\"#333333\"/>\n";
  svg +=
      "<text x=\"" + num((kLeft + kRight) / 2) + "\" y=\"" + num(kBottom + 38) +
      "\" text-anchor=\"middle\">" +
      XmlEscape("cumulative g CO2e, log scale (each node at its own country's intensity and PUE)") +
      "</text>\n";
  svg += "<text x=\"18\" y=\"" + num((kTop + kBottom) / 2) +
         "\" text-anchor=\"middle\" transform=\"rotate(-90 18 " + num((kTop + kBottom) / 2) +
         ")\">test accuracy (top-1)</text>\n";
  // Target.
  const double y_target = y_of(tables.target_accuracy);
  svg += "<line x1=\"" + num(kLeft) + "\" y1=\"" + num(y_target) + "\" x2=\"" + num(kRight) +
         "\" y2=\"" + num(y_target) +
         "\" stroke=\"#000000\" stroke-width=\"1.2\" stroke-dasharray=\"6 4\"/>\n";
  svg += "<text x=\"" + num(kLeft + 4) + "\" y=\"" + num(y_target - 5) + "\">" +
         XmlEscape("target " + FormatTarget(tables.target_accuracy)) + "</text>\n";
  // Curves and legend.
  double legend_y = kTop + 10;
  for (size_t i = 0; i < curves.size(); ++i) {
    const std::string color = kColors[i % (sizeof(kColors) / sizeof(kColors[0]))];
    std::string points;
    for (const auto& p : curves[i]) {
      if (!points.empty()) points += ' ';
      points += num(x_of(p.first)) + "," + num(y_of(p.second));
    }
    svg += "<polyline fill=\"none\" stroke=\"" + color + "\" stroke-width=\"2\" points=\"" +
           points + "\"/>\n";
    for (const auto& p : curves[i]) {
      svg += "<circle cx=\"" + num(x_of(p.first)) + "\" cy=\"" + num(y_of(p.second)) +
             "\" r=\"2.5\" fill=\"" + color + "\"/>\n";
    }
    svg += "<line x1=\"575\" y1=\"" + num(legend_y) + "\" x2=\"600\" y2=\"" + num(legend_y) +
           "\" stroke=\"" + color + "\" stroke-width=\"2\"/>\n";
    std::string label = tables.run_labels[i];
    if (curves[i].empty()) label += " (no CO2e data)";
    // 190 px of legend fit about 30 characters: break a longer label at a space.
    constexpr size_t kLegendChars = 30;
    std::string second;
    if (label.size() > kLegendChars) {
      const size_t cut = label.rfind(' ', kLegendChars);
      if (cut != std::string::npos && cut > 0) {
        second = label.substr(cut + 1);
        label.resize(cut);
      }
    }
    svg += "<text x=\"606\" y=\"" + num(legend_y + 4) + "\">" + XmlEscape(label);
    if (!second.empty()) {
      svg += "<tspan x=\"606\" dy=\"14\">" + XmlEscape(second) + "</tspan>";
      legend_y += 14;
    }
    svg += "</text>\n";
    legend_y += 22;
  }
  svg += "</svg>\n";
  return svg;
}

}  // namespace

Status WriteReport(const ReportTables& tables, const std::vector<RunData>& runs,
                   const ReportOptions& options) {
  if (options.out_dir.empty()) return InvalidArgument("report out_dir is empty");
  if (runs.size() != tables.run_labels.size()) {
    return InvalidArgument("WriteReport got " + std::to_string(runs.size()) +
                           " runs but the tables were built from " +
                           std::to_string(tables.run_labels.size()));
  }
  std::error_code ec;
  std::filesystem::create_directories(options.out_dir, ec);
  if (ec) return NotFound("cannot create report dir " + options.out_dir + ": " + ec.message());
  GREENFED_RETURN_IF_ERROR(
      WriteWholeFile(options.out_dir + "/report.md", ReportMarkdown(tables, options)));
  GREENFED_RETURN_IF_ERROR(WriteWholeFile(options.out_dir + "/report.csv", ReportCsv(tables)));
  GREENFED_RETURN_IF_ERROR(
      WriteWholeFile(options.out_dir + "/report.svg", ReportSvg(tables, runs)));
  return Status::Ok();
}

}  // namespace report
}  // namespace greenfed
