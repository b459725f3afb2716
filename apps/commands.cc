#include "commands.h"

#include <sys/prctl.h>
#include <sys/select.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "greenfed/client/client.h"
#include "greenfed/coordinator/checkpoint.h"
#include "greenfed/coordinator/server.h"
#include "greenfed/digest.h"
#include "greenfed/keys.h"
#include "greenfed/report/report.h"
#include "greenfed/run_dir.h"
#include "node_flags.h"

namespace greenfed {

namespace {

using nlohmann::json;
namespace ck = config_key;  // config.json keys, run_dir_schema.h

std::string Fixed(double v, int p) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(p) << v;
  return os.str();
}

json MeterJson(const NodeFlags& node, const MeterOptions& m, const PhaseMeter& meter) {
  json j;
  j[ck::kMeterKind] = node.meter;
  j[ck::kProfile] = m.model.profile;
  j[ck::kWattsPerCore] = m.model.watts_per_core;
  j[ck::kWattsPerGb] = m.model.watts_per_gb;
  j[ck::kCommKwhPerGb] = node.comm_kwh_per_gb;
  j["meters"] = meter.Describe();
  j["measured"] = meter.AnyMeasured();
  return j;
}

// Opens this node's meters and logs why each source was or was not used.
// `open` replaces OpenMeters when set (AppContext::meters).
StatusOr<std::unique_ptr<PhaseMeter>> OpenNodeMeter(const MeterOptions& m, Env* env, Logger* log,
                                                    const std::function<StatusOr<MeterSet>(const MeterOptions&, Env*)>& open = {}) {
  GREENFED_ASSIGN_OR_RETURN(MeterSet set, open ? open(m, env) : OpenMeters(m, env));
  for (const auto& note : set.notes) log->Info("meter: " + note);
  auto meter = std::make_unique<PhaseMeter>(std::move(set), env);
  for (const auto& d : meter->Describe()) log->Info("energy source: " + d);
  return meter;
}

// What must match between a run and the checkpoint it resumes.
RunIdentity IdentityOf(const FederationFlags& fed, const RoundOptions& round) {
  RunIdentity id = RunIdentityFor(round);
  id.settings.emplace_back("--max-train-examples", std::to_string(fed.max_train_examples));
  id.settings.emplace_back("--max-test-examples", std::to_string(fed.max_test_examples));
  return id;
}

// --resume: the run directory with its ledger restored from checkpoint.bin, which
// must be intact and written for these settings. Every refusal is exit code 2.
Status OpenForResume(const FederationFlags& fed, const RunIdentity& identity, std::unique_ptr<RunDir>* run_dir,
                     std::optional<Checkpoint>* checkpoint) {
  GREENFED_ASSIGN_OR_RETURN(*run_dir, RunDir::Open(fed.run_dir));
  GREENFED_ASSIGN_OR_RETURN(Checkpoint c, LoadCheckpoint(fed.run_dir));
  GREENFED_RETURN_IF_ERROR(CheckSameRun(c.identity, identity));
  if (c.server.round_reached || c.machine.completed_rounds >= fed.max_rounds) {
    return FailedPrecondition("the run in " + fed.run_dir + " is already complete (" +
                              std::to_string(c.machine.completed_rounds) + " rounds" +
                              (c.server.round_reached ? ", target reached" : "") + "); nothing to resume");
  }
  GREENFED_RETURN_IF_ERROR((*run_dir)->Restore(c.ledger).WithContext(CheckpointPath(fed.run_dir)));
  // rounds.csv and nodes.csv as of the checkpoint: a round booked after it is redone.
  GREENFED_RETURN_IF_ERROR((*run_dir)->Flush());
  *checkpoint = std::move(c);
  return Status::Ok();
}

}  // namespace

// ---------------------------------------------------------------- coordinator
int RunCoordinatorCommand(const std::vector<std::string>& args, const AppContext& ctx) {
  FlagSet flags("greenfed coordinator", "Aggregates model updates (FedAvg) from clients that connect to --bind.");
  std::string bind = "tcp://0.0.0.0:5555";
  NodeFlags node;
  FederationFlags fed;
  SecurityFlags security;
  flags.AddString("bind", &bind, "ZeroMQ endpoint to listen on");
  AddFederationFlags(&flags, &fed);
  AddNodeFlags(&flags, &node);
  AddCoordinatorSecurityFlags(&flags, &security);
  if (int rc = ParseOrExit(&flags, args); rc >= 0) return rc;

  Logger log("coordinator", &std::cout, &std::cerr);
  auto carbon = LoadCarbonTable(node);
  if (!carbon.ok()) return Fail("coordinator", carbon.status(), 2);
  if (Status s = CheckNode(node, *carbon); !s.ok()) return Fail("coordinator", s, 2);
  auto meter_options = MeterOptionsFor(node);
  if (!meter_options.ok()) return Fail("coordinator", meter_options.status(), 2);
  if (fed.run_dir.empty()) fed.run_dir = DefaultRunDir("fl", fed.partition);
  auto round = RoundOptionsFor(fed, RunIdOf(fed.run_dir));
  if (!round.ok()) return Fail("coordinator", flags.Annotate(round.status()), 2);
  round->sampling.table = std::make_shared<const CarbonTable>(*carbon);
  if (Status s = ValidateRoundOptions(*round); !s.ok()) return Fail("coordinator", flags.Annotate(s), 2);
  // Another transport (simulate's in-process one) has no socket to secure.
  auto keys = ctx.transport ? StatusOr<CoordinatorKeys>(CoordinatorKeys{}) : LoadCoordinatorKeys(security, &log);
  if (!keys.ok()) return Fail("coordinator", keys.status(), 2);

  // Refuse an existing run (or a bad checkpoint) before the (slow) data loading, so
  // nothing is overwritten.
  const RunIdentity identity = IdentityOf(fed, *round);
  std::unique_ptr<RunDir> opened;
  std::optional<Checkpoint> checkpoint;
  if (fed.resume) {
    if (Status s = OpenForResume(fed, identity, &opened, &checkpoint); !s.ok()) return Fail("coordinator", s, 2);
  } else {
    auto created = RunDir::Create(fed.run_dir);
    if (!created.ok() && created.status().code() == Code::kFailedPrecondition) {
      return Fail("coordinator",
                  FailedPrecondition(created.status().message() + ", or add --resume to continue it from its " +
                                     kCheckpointFile),
                  2);
    }
    if (!created.ok()) return Fail("coordinator", created.status(), 1);
    opened = std::move(created).value();
  }
  RunDir* run_dir = opened.get();
  auto registry = BuildTaskRegistry();
  if (!registry.ok()) return Fail("coordinator", registry.status(), 1);
  auto task = registry->Create(fed.task);
  if (!task.ok()) return Fail("coordinator", task.status(), 2);
  TaskOptions topt;
  topt.role = TaskRole::kCoordinator;
  topt.data_dir = node.data_dir;
  topt.model = fed.model;
  topt.init_seed = fed.seed;
  topt.threads = static_cast<int>(node.threads);
  topt.max_test_examples = fed.max_test_examples;
  if (Status s = (*task)->Prepare(topt); !s.ok()) return Fail("coordinator", s, 1);
  // Bounds on each client's num_examples, from the partition (a client cannot
  // weigh in with more examples than its shard holds). Own-data clients have no
  // shard: the round machine refuses declarations above --max-client-examples.
  if (round->own_data) {
    log.Info("clients bring their own data (--partition none): each declares num_examples at join, bounded by " +
             std::to_string(round->max_examples_per_client));
  } else if (auto sizes = (*task)->ShardSizes(round->partition); sizes.ok()) {
    round->shard_sizes = std::move(sizes).value();
    if (fed.max_train_examples > 0) {
      for (auto& n : round->shard_sizes) n = std::min<uint64_t>(n, fed.max_train_examples);
    }
  } else {
    log.Warn("num_examples bound: " + sizes.status().message() + "; using what clients declare at join");
  }
  auto initial = (*task)->InitialParameters();
  if (!initial.ok()) return Fail("coordinator", initial.status(), 1);

  std::unique_ptr<Env> env = ctx.env ? ctx.env() : NewSystemEnv();
  auto meter = OpenNodeMeter(*meter_options, env.get(), &log, ctx.meters);
  if (!meter.ok()) return Fail("coordinator", meter.status(), 2);

  json config;
  config[ck::kFormat] = kRunDirFormat;
  config[ck::kVersion] = "0.1.0";
  config[ck::kKind] = run_kind::kFederated;
  config[ck::kRunId] = RunIdOf(fed.run_dir);
  config[ck::kTask] = fed.task;
  config[ck::kModel] = fed.model;
  config["config_file"] = flags.config_path();
  config[ck::kTargetAccuracy] = fed.target_accuracy;
  config[ck::kMaxRounds] = fed.max_rounds;
  config[ck::kPartition] = {{ck::kScheme, fed.partition},
                         {ck::kAlpha, fed.alpha},
                         {ck::kShardsPerClient, fed.shards_per_client},
                         {ck::kSeed, fed.seed},
                         {ck::kNumClients, fed.num_clients},
                         {"max_client_examples", round->max_examples_per_client}};
  config[ck::kTrain] = {{ck::kEpochs, fed.local_epochs}, {ck::kBatchSize, fed.batch_size}, {ck::kLearningRate, fed.lr},
                     {ck::kMomentum, fed.momentum}, {ck::kLrDecay, 1.0}, {ck::kSendDelta, round->train.send_delta},
                     {ck::kMomentumRestarts, "every round"}};
  if (auto strategy = MakeStrategy(round->strategy); strategy.ok()) {
    config[ck::kStrategy] = {{ck::kStrategyName, round->strategy.name},
                             {ck::kStrategySettings, (*strategy)->Describe()}};
    log.Info("strategy: " + (*strategy)->Describe());
  }
  if (auto sampling = MakeSamplingPolicy(round->sampling); sampling.ok()) {
    config[ck::kSampling] = {{ck::kSamplingName, round->sampling.name},
                             {ck::kSamplingSettings, (*sampling)->Describe()},
                             {ck::kFairnessRounds, round->sampling.fairness_rounds},
                             {ck::kIntensityTrace, round->sampling.intensity_trace_path}};
    log.Info("sampling: " + (*sampling)->Describe());
  }
  config["engine"] = ctx.engine;
  config[ck::kBudget] = {{ck::kMaxCo2eG, fed.budget.max_co2e_g}, {ck::kMaxWh, fed.budget.max_wh}};
  config[ck::kUplinkCodec] = fed.uplink_codec;
  config[ck::kDownlinkCodec] = fed.downlink_codec;
  config[ck::kCoordinator] = {{"bind", bind},
                           {"fraction_fit", fed.fraction_fit},
                           {"min_fit_clients", round->min_fit_clients},
                           {"min_available_clients", round->min_available_clients},
                           {"round_timeout_s", fed.round_timeout_s},
                           {"heartbeat_timeout_s", fed.heartbeat_timeout_s},
                           {"client_wait_s", fed.client_wait_s},
                           {"max_idle_s", fed.max_idle_s},
                           {"exclude_after_failures", fed.exclude_after_failures},
                           {"exclude_rounds", fed.exclude_rounds},
                           {"max_node_power_w", fed.max_node_power_w},
                           {"fed_eval_every", fed.fed_eval_every}};
  config[ck::kData] = {{"data_dir", node.data_dir},
                    {"max_train_examples", fed.max_train_examples},
                    {"max_test_examples", fed.max_test_examples}};
  config[ck::kNode] = {{ck::kCountry, node.country}, {ck::kPue, node.pue}, {ck::kThreads, node.threads}};
  config[ck::kMeter] = MeterJson(node, *meter_options, **meter);
  // A resumed run keeps the config.json of its first start (the settings match).
  if (!fed.resume) {
    if (Status s = run_dir->WriteConfig(config.dump(2)); !s.ok()) return Fail("coordinator", s, 1);
  }

  ServerOptions so;
  so.bind = bind;
  so.round = *round;
  so.country = node.country;
  so.pue = node.pue;
  so.comm.kwh_per_gb = node.comm_kwh_per_gb;
  so.stop_fd = ctx.stop_fd;
  so.insecure = security.insecure;
  so.curve_secret_key = keys->secret_key;
  so.allowed_client_keys = keys->allowed_keys;
  so.max_node_power_w = fed.max_node_power_w;
  so.accept_apportioned_energy = ctx.engine == "simulate";
  so.identity = identity;
  so.resume = std::move(checkpoint);
  Server server(so, ctx.transport ? ctx.transport(env.get(), &log) : nullptr, task->get(), std::move(initial).value(),
                &*carbon, meter->get(), run_dir, env.get(), &log);
  auto endpoint = server.Bind();
  if (!endpoint.ok()) return Fail("coordinator", endpoint.status(), 1);
  log.Info("listening on " + *endpoint + "; run directory " + fed.run_dir);
  auto result = server.Run();
  if (!result.ok()) return Fail("coordinator", result.status(), 1);
  return result->failed ? 1 : 0;
}

// ---------------------------------------------------------------------- client
int RunClientCommand(const std::vector<std::string>& args, const AppContext& ctx) {
  FlagSet flags("greenfed client", "Joins the coordinator at --connect and trains on its own shard.");
  ClientOptions co;
  NodeFlags node;
  int64_t client_index = -1;
  uint64_t num_clients = 0;
  std::string partition;
  uint64_t max_train = 0, max_test = 0;
  int64_t parent_pid = 0;
  uint64_t fit_slots = 0;  // --fit-slots
  std::string own_data, task_name = "fashion_mnist", model;
  flags.AddString("connect", &co.connect, "coordinator endpoint");
  flags.AddString("data", &own_data,
                  "own-data mode: train on this client's own data instead of a partition shard (digits: a CSV file "
                  "like digits.csv.gz; fashion_mnist: a directory with train-images-idx3-ubyte.gz and "
                  "train-labels-idx1-ubyte.gz); the coordinator must run --partition none (docs/deployment.md)");
  flags.AddString("task", &task_name, "--data: the registered task to load the file with (must match the coordinator's)");
  flags.AddString("model", &model, "--data: the model (must match the coordinator's; empty = the task's default)");
  flags.AddInt("client-index", &client_index, "shard index to ask for; -1 lets the coordinator assign the lowest free one");
  flags.AddUint("num-clients", &num_clients, "expected federation size; 0 accepts the coordinator's");
  flags.AddString("partition", &partition, "expected partition scheme; empty accepts the coordinator's");
  flags.AddString("client-id", &co.client_id, "name in the coordinator's logs (empty = hostname-pid)");
  flags.AddDouble("connect-timeout-s", &co.connect_timeout_s, "give up when no coordinator answers this long (0 = never)");
  flags.AddDouble("coordinator-timeout-s", &co.coordinator_timeout_s, "rejoin after this long without a word from the coordinator");
  flags.AddUint("max-train-examples", &max_train, "cap on this client's training examples (0 = all)");
  flags.AddUint("max-test-examples", &max_test, "cap on this client's test examples for federated evaluation (0 = all)");
  flags.AddInt("parent-pid", &parent_pid,
               "stop (as on SIGTERM) when process PID exits; `greenfed run` sets it so that its clients do not "
               "outlive it (0 = off)");
  flags.AddBool("persist-momentum", &co.task.persist_momentum,
                "keep the local SGD momentum buffers across rounds in this client's state (default: fresh each round; "
                "a restarted client starts afresh)");
  flags.AddString("fit-slots-dir", &co.fit_slots_dir,
                  "hold one of --fit-slots lock files in DIR for each local training, so that the clients of one "
                  "machine never train more at once than it has slots (`greenfed run` sets both; empty = off)");
  flags.AddUint("fit-slots", &fit_slots, "number of slot files in --fit-slots-dir (1..4096)");
  flags.AddDouble("attack-scale", &co.attack_scale,
                  "fault injection for robustness experiments: send attack_scale x the honest update (1 = honest, "
                  "-1 = sign flip)");
  AddNodeFlags(&flags, &node);
  SecurityFlags security;
  AddClientSecurityFlags(&flags, &security);
  if (int rc = ParseOrExit(&flags, args); rc >= 0) return rc;
  if (client_index < -1) return Fail("client", InvalidArgument("--client-index must be >= 0, or -1 for automatic"), 2);
  if (own_data.empty() && (flags.WasSet("task") || flags.WasSet("model"))) {
    return Fail("client", InvalidArgument("--task and --model are for --data; a partitioned client takes them from "
                                          "the coordinator"), 2);
  }
  if (!own_data.empty() && !partition.empty() && partition != "none") {
    return Fail("client", InvalidArgument("--data trains on the client's own file; it cannot be combined with "
                                          "--partition " + partition), 2);
  }
  if (!own_data.empty() && ::access(own_data.c_str(), R_OK) != 0) {
    return Fail("client", InvalidArgument("--data " + own_data + ": cannot read the file"), 2);
  }
  if (parent_pid < 0) return Fail("client", InvalidArgument("--parent-pid must be a process id, or 0"), 2);
  if (co.fit_slots_dir.empty() != (fit_slots == 0)) {
    return Fail("client", InvalidArgument("--fit-slots-dir and --fit-slots N (N >= 1) go together"), 2);
  }
  if (fit_slots > 4096) return Fail("client", InvalidArgument("--fit-slots must be in [1, 4096]"), 2);
  co.fit_slots = static_cast<uint32_t>(fit_slots);
  if (parent_pid > 0) {
    // SIGTERM reaches the stop signalfd like a user's: the client reports and exits.
    if (::prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || ::getppid() != static_cast<pid_t>(parent_pid)) {
      return Fail("client", Unavailable("the launching process " + std::to_string(parent_pid) + " is gone"), 1);
    }
  }
  if (!partition.empty() && partition != "iid" && partition != "shards" && partition != "dirichlet" &&
      partition != "none") {
    return Fail("client", InvalidArgument("--partition must be iid, shards, dirichlet or none, got '" + partition + "'"),
                2);
  }
  if (num_clients > 0 && client_index >= static_cast<int64_t>(num_clients)) {
    return Fail("client", InvalidArgument("--client-index " + std::to_string(client_index) + " must be < --num-clients " +
                                          std::to_string(num_clients)), 2);
  }
  if (!std::isfinite(co.attack_scale)) return Fail("client", InvalidArgument("--attack-scale must be finite"), 2);
  auto carbon = LoadCarbonTable(node);
  if (!carbon.ok()) return Fail("client", carbon.status(), 2);
  if (Status s = CheckNode(node, *carbon); !s.ok()) return Fail("client", s, 2);
  auto meter_options = MeterOptionsFor(node);
  if (!meter_options.ok()) return Fail("client", meter_options.status(), 2);

  co.requested_index = static_cast<int32_t>(client_index);
  co.expected_num_clients = static_cast<uint32_t>(num_clients);
  co.expected_partition = partition;
  co.country = (*carbon->Lookup(node.country)).code;
  co.pue = node.pue;
  co.comm.kwh_per_gb = node.comm_kwh_per_gb;
  co.task.data_dir = node.data_dir;
  co.task.threads = static_cast<int>(node.threads);
  co.task.max_train_examples = max_train;
  co.task.max_test_examples = max_test;
  co.task.own_data_path = own_data;
  if (!own_data.empty()) {
    co.own_data_task = task_name;
    co.task.model = model.empty() ? DefaultModelFor(task_name) : model;
  }

  Logger log(client_index >= 0 ? "client-" + std::to_string(client_index) : "client", &std::cout, &std::cerr);
  auto keys = LoadClientKeys(security, &log);
  if (!keys.ok()) return Fail("client", keys.status(), 2);
  co.insecure = security.insecure;
  co.curve_secret_key = keys->secret_key;
  co.curve_public_key = keys->public_key;
  co.curve_server_key = keys->server_key;
  auto registry = BuildTaskRegistry();
  if (!registry.ok()) return Fail("client", registry.status(), 1);
  auto env = NewSystemEnv();
  auto meter = OpenNodeMeter(*meter_options, env.get(), &log);
  if (!meter.ok()) return Fail("client", meter.status(), 2);
  Client client(co, &*registry, meter->get(), env.get(), &log);
  auto result = client.Run(ctx.stop_fd);
  if (!result.ok()) return Fail("client", result.status(), 1);
  log.Info("client-" + std::to_string(result->client_index) + " trained " + std::to_string(result->rounds_trained) +
           " rounds; " + result->shutdown_reason);
  return 0;
}

// ----------------------------------------------------------------- centralized
int RunCentralizedCommand(const std::vector<std::string>& args, const AppContext& ctx) {
  FlagSet flags("greenfed centralized",
                "The centralized baseline: the same model on the whole training set on one node, under the same "
                "meter, evaluated on the same test set after every epoch, until the same target.");
  NodeFlags node;
  node.threads = 2;
  double target = 0.90, lr = 0.01, momentum = 0.9, lr_decay = 1.0;
  uint64_t max_epochs = 30, batch = 32, seed = 1, max_train = 0, max_test = 0;
  std::string model, task_name = "fashion_mnist", run_dir_path;
  flags.AddDouble("target-accuracy", &target, "stop when test accuracy reaches this (top-1)");
  flags.AddUint("max-epochs", &max_epochs, "stop after this many epochs even if the target is not reached");
  flags.AddDouble("lr", &lr, "SGD learning rate of the first epoch");
  flags.AddDouble("lr-decay", &lr_decay, "learning rate multiplier applied after every epoch");
  flags.AddDouble("momentum", &momentum, "SGD momentum (buffers restart every epoch, as on FL clients every round)");
  flags.AddUint("batch-size", &batch, "mini-batch size");
  flags.AddUint("seed", &seed, "seed of initial weights and shuffling");
  flags.AddString("task", &task_name, "registered task");
  flags.AddString("model", &model,
                  "model registered within the task (fashion_mnist: cnn, mlp; digits: mlp, softmax); empty = the "
                  "task's default (cnn, mlp)");
  flags.AddString("run-dir", &run_dir_path, "output directory (empty = runs/centralized-<UTC time>)");
  flags.AddUint("max-train-examples", &max_train, "cap on training examples (0 = all 60,000; for quick runs)");
  flags.AddUint("max-test-examples", &max_test, "cap on test examples (0 = all 10,000)");
  AddNodeFlags(&flags, &node);
  flags.AddCheck([&]() -> Status {
    if (!(target > 0 && target <= 1)) return InvalidArgument("--target-accuracy must be in (0, 1]");
    if (!(lr > 0)) return InvalidArgument("--lr must be positive");
    if (!(lr_decay > 0 && lr_decay <= 1)) return InvalidArgument("--lr-decay must be in (0, 1]");
    if (!(momentum >= 0 && momentum < 1)) return InvalidArgument("--momentum must be in [0, 1)");
    if (max_epochs == 0 || batch == 0) return InvalidArgument("--max-epochs and --batch-size must be >= 1");
    if (model.empty()) model = DefaultModelFor(task_name);
    return Status::Ok();
  });
  if (int rc = ParseOrExit(&flags, args); rc >= 0) return rc;

  Logger log("centralized", &std::cout, &std::cerr);
  auto carbon = LoadCarbonTable(node);
  if (!carbon.ok()) return Fail("centralized", carbon.status(), 2);
  if (Status s = CheckNode(node, *carbon); !s.ok()) return Fail("centralized", s, 2);
  auto meter_options = MeterOptionsFor(node);
  if (!meter_options.ok()) return Fail("centralized", meter_options.status(), 2);
  const CarbonIntensity intensity = *carbon->Lookup(node.country);
  if (run_dir_path.empty()) run_dir_path = DefaultRunDir("centralized", "");
  auto run_dir = RunDir::Create(run_dir_path);
  // An existing run is a bad --run-dir (exit 2), as for the coordinator.
  if (!run_dir.ok()) {
    return Fail("centralized", run_dir.status(), run_dir.status().code() == Code::kFailedPrecondition ? 2 : 1);
  }
  auto registry = BuildTaskRegistry();
  if (!registry.ok()) return Fail("centralized", registry.status(), 1);
  auto task = registry->Create(task_name);
  if (!task.ok()) return Fail("centralized", task.status(), 2);
  TaskOptions topt;
  topt.role = TaskRole::kCentralized;
  topt.data_dir = node.data_dir;
  topt.model = model;
  topt.init_seed = seed;
  topt.threads = static_cast<int>(node.threads);
  topt.max_train_examples = max_train;
  topt.max_test_examples = max_test;
  if (Status s = (*task)->Prepare(topt); !s.ok()) return Fail("centralized", s, 1);
  auto params = (*task)->InitialParameters();
  if (!params.ok()) return Fail("centralized", params.status(), 1);
  auto env = NewSystemEnv();
  auto meter = OpenNodeMeter(*meter_options, env.get(), &log);
  if (!meter.ok()) return Fail("centralized", meter.status(), 2);

  json config;
  config[ck::kFormat] = kRunDirFormat;
  config[ck::kVersion] = "0.1.0";
  config[ck::kKind] = run_kind::kCentralized;
  config[ck::kRunId] = RunIdOf(run_dir_path);
  config[ck::kTask] = task_name;
  config[ck::kModel] = model;
  config[ck::kTargetAccuracy] = target;
  config[ck::kMaxRounds] = max_epochs;
  config[ck::kTrain] = {{ck::kEpochs, 1}, {ck::kBatchSize, batch}, {ck::kLearningRate, lr}, {ck::kMomentum, momentum},
                     {ck::kLrDecay, lr_decay}, {ck::kLrSchedule, "lr * lr_decay^(epoch-1)"},
                     {ck::kMomentumRestarts, "every epoch"}, {ck::kSeed, seed}};
  config[ck::kData] = {{"data_dir", node.data_dir}, {"max_train_examples", max_train}, {"max_test_examples", max_test},
                    {"train_examples", (*task)->NumTrainExamples()}};
  config[ck::kNode] = {{ck::kCountry, intensity.code}, {ck::kPue, node.pue}, {ck::kThreads, node.threads}};
  config[ck::kMeter] = MeterJson(node, *meter_options, **meter);
  if (Status s = (*run_dir)->WriteConfig(config.dump(2)); !s.ok()) return Fail("centralized", s, 1);

  const NodeInfo self{"centralized", "centralized", intensity.code, node.pue, intensity.g_per_kwh};
  const double start = env->NowSeconds();
  SummaryInfo info;
  info.kind = run_kind::kCentralized;
  info.target_accuracy = target;
  info.stop_reason = "max epochs (" + std::to_string(max_epochs) + ") reached without the target accuracy";
  double epoch_lr = lr;
  bool interrupted = false;
  ClientState state;  // stays empty: momentum restarts every epoch (persist_momentum is off)
  for (uint64_t epoch = 1; epoch <= max_epochs; ++epoch, epoch_lr *= lr_decay) {
    TrainConfig cfg;
    cfg.epochs = 1;
    cfg.batch_size = static_cast<uint32_t>(batch);
    cfg.learning_rate = epoch_lr;
    cfg.momentum = momentum;
    cfg.seed = seed * 1000003ull + epoch;
    const double t0 = env->NowSeconds();
    auto mark = (*meter)->Begin();
    FitRequest request;
    request.parameters = std::move(*params);
    PutTrainConfig(cfg, &request.config);
    auto fit = (*task)->Fit(request, state);
    (*run_dir)->AddEnergy(self, (*meter)->End(mark, Phase::kTrain, static_cast<int64_t>(epoch)));
    if (!fit.ok()) return Fail("centralized", fit.status(), 1);
    *params = std::move(fit->parameters);
    mark = (*meter)->Begin();
    auto eval = (*task)->Evaluate(*params);
    (*run_dir)->AddEnergy(self, (*meter)->End(mark, Phase::kEvaluate, static_cast<int64_t>(epoch)));
    if (!eval.ok()) return Fail("centralized", eval.status(), 1);

    RoundRow row;
    row.round = static_cast<int64_t>(epoch);
    row.clients_sampled = row.clients_succeeded = 1;
    row.test_accuracy = eval->accuracy;
    row.test_loss = eval->loss;
    row.train_loss = fit->train_loss;
    row.round_s = env->NowSeconds() - t0;
    row.elapsed_s = env->NowSeconds() - start;
    (*run_dir)->AddRound(row);
    if (Status s = (*run_dir)->Flush(); !s.ok()) return Fail("centralized", s, 1);
    const EnergyTotals t = (*run_dir)->RoundTotals(row.round);
    log.Progress("epoch " + std::to_string(epoch) + "/" + std::to_string(max_epochs) + " | acc " +
                 Fixed(eval->accuracy, 4) + " loss " + Fixed(eval->loss, 4) + " | lr " + Fixed(epoch_lr, 5) + " | " +
                 Fixed(row.round_s, 1) + " s | " + Fixed(t.compute_j, 1) + " J " +
                 t.label() + ", " + Fixed(t.co2e_g, 3) + " g CO2e");
    info.rounds = row.round;
    info.final_accuracy = eval->accuracy;
    info.best_accuracy = std::max(info.best_accuracy, eval->accuracy);
    info.wall_s = row.elapsed_s;
    if (auto digest = Sha256Hex(*params); digest.ok()) info.model_sha256 = *digest;
    if (eval->accuracy >= target) {
      info.reached = true;
      info.round_reached = row.round;
      info.stop_reason = "target accuracy " + Fixed(target, 4) + " reached in epoch " + std::to_string(epoch);
    }
    if (Status s = (*run_dir)->WriteSummary(info, *carbon, DefaultReferenceCountries()); !s.ok()) {
      return Fail("centralized", s, 1);
    }
    if (info.reached) break;
    if (ctx.stop_fd >= 0) {
      // Checked between epochs: a signal ends the run after the current epoch.
      fd_set set;
      FD_ZERO(&set);
      FD_SET(ctx.stop_fd, &set);
      timeval zero{0, 0};
      if (::select(ctx.stop_fd + 1, &set, nullptr, nullptr, &zero) > 0) {
        interrupted = true;
        info.stop_reason = "interrupted by signal";
        (void)(*run_dir)->WriteSummary(info, *carbon, DefaultReferenceCountries());
        break;
      }
    }
  }
  const EnergyTotals t = (*run_dir)->Totals();
  log.Progress("done: " + info.stop_reason + " | " + std::to_string(info.rounds) + " epochs, best acc " +
               Fixed(info.best_accuracy, 4) + " | " + Fixed(info.wall_s, 1) + " s | " +
               Fixed(t.compute_pue_j / 3600.0, 3) + " Wh " + t.label() + ", " +
               Fixed(t.co2e_g, 3) + " g CO2e");
  return interrupted ? 1 : 0;
}

// ---------------------------------------------------------------------- keygen
int RunKeygenCommand(const std::vector<std::string>& args, const AppContext&) {
  FlagSet flags("greenfed keygen",
                "Writes a CURVE key pair: OUT/NAME.key (public and secret key, mode 0600; stays on this node) and "
                "OUT/NAME.pub (the public key; give it to the other side: clients' .pub files go into the "
                "coordinator's --allow-clients, the coordinator's .pub is every client's --server-key).");
  std::string out, name;
  flags.AddString("out", &out, "directory for NAME.key and NAME.pub (created with mode 0700 when missing)");
  flags.AddString("name", &name, "file name stem, e.g. coordinator or client-3: [A-Za-z0-9_.-], 1-64 characters");
  if (int rc = ParseOrExit(&flags, args); rc >= 0) return rc;
  if (out.empty()) return Fail("keygen", InvalidArgument("missing --out DIR"), 2);
  if (name.empty()) return Fail("keygen", InvalidArgument("missing --name NAME"), 2);
  if (Status s = ValidateKeyName(name); !s.ok()) return Fail("keygen", s.WithContext("--name"), 2);
  auto keys = GenerateCurveKeyPair();
  if (!keys.ok()) return Fail("keygen", keys.status(), 1);
  auto stem = WriteKeyPair(out, name, *keys);
  if (!stem.ok()) {
    const Code c = stem.status().code();
    return Fail("keygen", stem.status(), c == Code::kUnavailable ? 1 : 2);
  }
  std::cout << "wrote " << *stem << ".key (secret, mode 0600) and " << *stem << ".pub\n"
            << "public key: " << keys->public_key << "\n";
  return 0;
}

// ------------------------------------------------------------------- countries
int RunCountriesCommand(const std::vector<std::string>& args, const AppContext&) {
  FlagSet flags("greenfed countries", "Lists the built-in carbon-intensity table (g CO2e per kWh).");
  if (int rc = ParseOrExit(&flags, args); rc >= 0) return rc;
  const CarbonTable table = CarbonTable::BuiltIn();
  std::cout << "code   g/kWh  year  name  (source)\n";
  for (const auto& c : table.All()) {
    std::cout << std::left << std::setw(6) << c.code << " " << std::right << std::setw(5) << Fixed(c.g_per_kwh, 0)
              << "  " << c.year << "  " << c.name << "  (" << c.source << ")\n";
  }
  return 0;
}

}  // namespace greenfed
