// Reading run directories: config.json and summary.json through the keys of
// run_dir_schema.h, rounds.csv and nodes.csv through its one CSV reader.
// docs/run-directory.md is the prose contract.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "format.h"
#include "greenfed/report/report.h"
#include "greenfed/run_dir_schema.h"

namespace greenfed {
namespace report {
namespace {

using nlohmann::json;
using internal::FormatPlain;
using internal::FormatTarget;

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
  if (kind == run_kind::kFederated) return RunKind::kFederated;
  if (kind == run_kind::kCentralized) return RunKind::kCentralized;
  return DataLoss(file + ": field '" + config_key::kKind + "' is \"" + kind + "\", expected \"" +
                  run_kind::kFederated + "\" or \"" + run_kind::kCentralized + "\"");
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
  if (config.kind == RunKind::kFederated) {
    // An object {name, settings}; a plain string is taken as the settings.
    GREENFED_ASSIGN_OR_RETURN(const json* strategy, FindField(root, config_key::kStrategy, file));
    if (strategy != nullptr && strategy->is_string()) {
      config.strategy = strategy->get<std::string>();
    } else if (strategy != nullptr) {
      GREENFED_ASSIGN_OR_RETURN(std::optional<std::string> settings,
                                OptString(root, Key(config_key::kStrategy, config_key::kStrategySettings), file));
      GREENFED_ASSIGN_OR_RETURN(std::optional<std::string> name,
                                OptString(root, Key(config_key::kStrategy, config_key::kStrategyName), file));
      config.strategy = settings.value_or(name.value_or(""));
    }
    if (config.strategy.empty()) config.strategy = kDefaultStrategy;
    // The uplink codec (config.json "uplink_codec", a name such as "int8"; an object
    // {name} is read too); absent = none, as before codecs existed.
    GREENFED_ASSIGN_OR_RETURN(const json* codec, FindField(root, config_key::kUplinkCodec, file));
    if (codec != nullptr && codec->is_object()) {
      GREENFED_ASSIGN_OR_RETURN(std::optional<std::string> name, OptString(root, Key(config_key::kUplinkCodec, "name"), file));
      config.uplink_codec = name.value_or("");
    } else {
      GREENFED_ASSIGN_OR_RETURN(std::optional<std::string> name, OptString(root, config_key::kUplinkCodec, file));
      config.uplink_codec = name.value_or("");
    }
    if (config.uplink_codec.empty()) config.uplink_codec = "none";
    GREENFED_ASSIGN_OR_RETURN(std::optional<std::string> sampling,
                              OptString(root, Key(config_key::kSampling, config_key::kSamplingName), file));
    config.sampling = sampling.value_or(kDefaultSampling);
    GREENFED_ASSIGN_OR_RETURN(std::optional<std::string> sampling_settings,
                              OptString(root, Key(config_key::kSampling, config_key::kSamplingSettings), file));
    config.sampling_settings = sampling_settings.value_or(config.sampling);
    GREENFED_ASSIGN_OR_RETURN(std::optional<double> fraction,
                              OptNumber(root, Key(config_key::kCoordinator, "fraction_fit"), file));
    config.fraction_fit = fraction.value_or(1.0);
  }
  if (config.kind == RunKind::kFederated && !config.partition) {
    return Missing(file, config_key::kPartition, "an object (every federated run records its partition)");
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
  summary.stopped_by_budget = summary.stop_reason.rfind(summary_key::kBudgetStopPrefix, 0) == 0;
  return summary;
}

}  // namespace

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

}  // namespace report
}  // namespace greenfed
