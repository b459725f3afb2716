// custom_task_demo: a whole federation in one process, built against the installed greenfed
// package. One coordinator (greenfed::Server) and --clients clients (greenfed::Client), each
// on its own thread, talk ZeroMQ over loopback (CURVE with keys generated for this run, or
// plaintext with --insecure) and train LogisticTask for --rounds rounds. The coordinator
// prints one progress line per round; the run directory (config.json, rounds.csv, nodes.csv,
// summary.json) is what `greenfed report` reads.
//
//   custom_task_demo --run-dir runs/demo --clients 3 --rounds 2
//   greenfed report runs/demo           # the installed command, if it is installed
//
// The task is registered in a TaskRegistry this program builds: no global registration.
// Exit codes: 0 run completed, 1 the run failed, 2 bad flags.
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "greenfed/carbon.h"
#include "greenfed/client/client.h"
#include "greenfed/coordinator/server.h"
#include "greenfed/coordinator/strategy.h"
#include "greenfed/env.h"
#include "greenfed/flags.h"
#include "greenfed/keys.h"
#include "greenfed/log.h"
#include "greenfed/meter.h"
#include "greenfed/run_dir.h"
#include "greenfed/run_dir_schema.h"
#include "greenfed/task.h"
#include "logistic_task.h"

namespace {

constexpr const char kTaskName[] = "logistic";

struct DemoFlags {
  uint64_t clients = 3;                   // federation size; every client trains every round
  uint64_t rounds = 2;                    // rounds to run
  uint64_t seed = 1;                      // partition, sampling and initial-weights seed
  std::string run_dir = "custom_task_run";  // created; refused if it already holds a run
  std::string country = "WORLD";          // every node's grid (ISO alpha-3, or WORLD)
  std::string meter = "model";            // "model" (CPU model) or "auto" (RAPL/NVML when readable)
  double learning_rate = 0.1;             // local SGD step
  double target_accuracy = 1.0;           // stop early at this central accuracy; 1 = run every round
  std::string strategy = "fedavg";        // aggregation (greenfed/coordinator/strategy.h)
  bool insecure = false;                  // plaintext instead of CURVE
};

int Fail(const std::string& what, const greenfed::Status& status, int code) {
  std::cerr << "custom_task_demo: " << what << ": " << status.ToString() << "\n";
  return code;
}

std::unique_ptr<greenfed::PhaseMeter> NewMeter(const std::string& kind, greenfed::Env* env,
                                               greenfed::Status* status) {
  greenfed::MeterOptions options;
  options.kind = kind;
  auto set = greenfed::OpenMeters(options, env);
  if (!set.ok()) {
    *status = set.status();
    return nullptr;
  }
  return std::make_unique<greenfed::PhaseMeter>(std::move(set).value(), env);
}

// config.json in the run-directory contract (docs/run-directory.md; the keys are
// greenfed/run_dir_schema.h's), so that `greenfed report` reads this run like its own.
std::string ConfigJson(const DemoFlags& f, const greenfed::RoundOptions& round, const std::string& strategy) {
  namespace ck = greenfed::config_key;
  auto q = [](const std::string& text) {  // a JSON string; our texts hold no control characters
    std::string out = "\"";
    for (char c : text) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    return out + "\"";
  };
  std::ostringstream os;
  os << "{\n  " << q(ck::kFormat) << ": " << greenfed::kRunDirFormat << ",\n  " << q(ck::kKind) << ": "
     << q("federated") << ",\n  " << q(ck::kRunId) << ": " << q(round.run_id) << ",\n  " << q(ck::kTask) << ": "
     << q(round.task) << ",\n  " << q(ck::kModel) << ": " << q(round.model) << ",\n  " << q(ck::kTargetAccuracy)
     << ": " << round.target_accuracy << ",\n  " << q(ck::kMaxRounds) << ": " << round.max_rounds << ",\n  "
     << q(ck::kPartition) << ": {" << q(ck::kScheme) << ": " << q(round.partition.scheme) << ", " << q(ck::kSeed)
     << ": " << round.partition.seed << ", " << q(ck::kNumClients) << ": " << round.partition.num_clients
     << "},\n  " << q(ck::kTrain) << ": {" << q(ck::kEpochs) << ": " << round.train.epochs << ", "
     << q(ck::kBatchSize) << ": " << round.train.batch_size << ", " << q(ck::kLearningRate) << ": "
     << round.train.learning_rate << ", " << q(ck::kMomentum) << ": " << round.train.momentum << "},\n  "
     << q(ck::kStrategy) << ": {" << q("name") << ": " << q(round.strategy.name) << ", " << q("settings") << ": "
     << q(strategy) << "},\n  "
     << q(ck::kNode) << ": {" << q(ck::kCountry) << ": " << q(f.country) << ", " << q(ck::kPue) << ": 1.0},\n  "
     << q(ck::kMeter) << ": {" << q(ck::kMeterKind) << ": " << q(f.meter) << "},\n  " << q("transport") << ": "
     << q(f.insecure ? "plaintext" : "curve") << "\n}\n";
  return os.str();
}

}  // namespace

int main(int argc, char** argv) {
  DemoFlags f;
  greenfed::FlagSet flags("custom_task_demo",
                          "Runs a coordinator and clients of the LogisticTask example on loopback.");
  flags.AddUint("clients", &f.clients, "number of clients (threads)");
  flags.AddUint("rounds", &f.rounds, "federated rounds");
  flags.AddUint("seed", &f.seed, "partition, sampling and initial-weights seed");
  flags.AddString("run-dir", &f.run_dir, "run directory to create");
  flags.AddString("country", &f.country, "grid of every node (ISO 3166-1 alpha-3, or WORLD)");
  flags.AddString("meter", &f.meter, "energy meter: model or auto");
  flags.AddDouble("learning-rate", &f.learning_rate, "local SGD learning rate");
  flags.AddDouble("target-accuracy", &f.target_accuracy,
                  "stop once central test accuracy reaches this (1 runs every round: label noise keeps it below 1)");
  flags.AddString("strategy", &f.strategy, "aggregation strategy, e.g. fedavg, fedavgm, fedadam (docs/strategies.md)");
  flags.AddBool("insecure", &f.insecure, "plaintext ZeroMQ instead of CURVE with generated keys");
  flags.AddCheck([&f]() -> greenfed::Status {
    if (f.clients < 1 || f.clients > 64) return greenfed::InvalidArgument("--clients must be in [1, 64]");
    if (f.rounds < 1) return greenfed::InvalidArgument("--rounds must be >= 1");
    if (!(f.learning_rate > 0 && f.learning_rate <= 10)) {
      return greenfed::InvalidArgument("--learning-rate must be in (0, 10]");
    }
    return greenfed::Status::Ok();
  });
  auto help = flags.Parse(std::vector<std::string>(argv + 1, argv + argc));
  if (!help.ok()) return Fail("flags", help.status(), 2);
  if (*help) {
    std::cout << flags.Help();
    return 0;
  }

  // The program's own registry: the one place that knows the task's name.
  greenfed::TaskRegistry registry;
  if (auto s = registry.Register(kTaskName, [] { return std::make_unique<custom_task::LogisticTask>(); }); !s.ok()) {
    return Fail("registry", s, 1);
  }

  const greenfed::CarbonTable carbon = greenfed::CarbonTable::BuiltIn();
  auto country = carbon.Lookup(f.country);
  if (!country.ok()) return Fail("--country", country.status(), 2);
  std::unique_ptr<greenfed::Env> env = greenfed::NewSystemEnv();

  greenfed::RoundOptions round;
  round.num_clients = static_cast<uint32_t>(f.clients);
  round.min_available_clients = round.num_clients;
  round.min_fit_clients = round.num_clients;
  round.max_rounds = f.rounds;
  round.target_accuracy = f.target_accuracy;
  round.seed = f.seed;
  round.task = kTaskName;
  round.model = "logistic";
  round.partition.scheme = "iid";
  round.partition.seed = f.seed;
  round.partition.num_clients = round.num_clients;
  round.train.epochs = 1;
  round.train.batch_size = 32;
  round.train.learning_rate = f.learning_rate;
  round.train.momentum = 0.9;
  round.run_id = "custom_task";
  round.round_timeout_s = 60;
  round.client_wait_s = 30;  // a client that never comes ends the demo soon, not in 15 minutes
  round.max_idle_s = 60;
  round.strategy.name = f.strategy;
  if (auto s = greenfed::ValidateRoundOptions(round); !s.ok()) return Fail("flags", s, 2);
  auto strategy = greenfed::MakeStrategy(round.strategy);
  if (!strategy.ok()) return Fail("--strategy", strategy.status(), 2);

  // The coordinator's copy of the task: central evaluation and the initial weights.
  auto eval_task = registry.Create(kTaskName);
  if (!eval_task.ok()) return Fail("task", eval_task.status(), 1);
  greenfed::TaskOptions coordinator_task;
  coordinator_task.role = greenfed::TaskRole::kCoordinator;
  coordinator_task.partition = round.partition;
  coordinator_task.init_seed = f.seed;
  if (auto s = (*eval_task)->Prepare(coordinator_task); !s.ok()) return Fail("coordinator task", s, 1);
  auto shard_sizes = (*eval_task)->ShardSizes(round.partition);
  if (!shard_sizes.ok()) return Fail("shard sizes", shard_sizes.status(), 1);
  round.shard_sizes = *shard_sizes;
  auto initial = (*eval_task)->InitialParameters();
  if (!initial.ok()) return Fail("initial parameters", initial.status(), 1);

  // CURVE keys for this run only: the coordinator pins nothing but these clients.
  greenfed::ServerOptions so;
  so.bind = "tcp://127.0.0.1:*";
  so.round = round;
  so.country = country->code;
  so.insecure = f.insecure;
  so.shutdown_grace_s = 1;
  std::vector<greenfed::CurveKeyPair> client_keys(f.clients);
  std::string server_public;
  if (!f.insecure) {
    auto server_keys = greenfed::GenerateCurveKeyPair();
    if (!server_keys.ok()) return Fail("CURVE keys", server_keys.status(), 1);
    so.curve_secret_key = server_keys->secret_key;
    server_public = server_keys->public_key;
    for (auto& k : client_keys) {
      auto pair = greenfed::GenerateCurveKeyPair();
      if (!pair.ok()) return Fail("CURVE keys", pair.status(), 1);
      k = *pair;
      so.allowed_client_keys.push_back(k.public_key);
    }
  }

  auto run_dir = greenfed::RunDir::Create(f.run_dir);
  if (!run_dir.ok()) return Fail("run directory", run_dir.status(), 2);
  if (auto s = (*run_dir)->WriteConfig(ConfigJson(f, round, (*strategy)->Describe())); !s.ok()) return Fail("config.json", s, 1);

  greenfed::Status meter_status;
  auto coordinator_meter = NewMeter(f.meter, env.get(), &meter_status);
  if (!coordinator_meter) return Fail("--meter", meter_status, 2);
  greenfed::Logger coordinator_log("coordinator", &std::cout, &std::cerr);
  greenfed::Server server(so, eval_task->get(), std::move(initial).value(), &carbon, coordinator_meter.get(),
                          run_dir->get(), env.get(), &coordinator_log);
  auto endpoint = server.Bind();
  if (!endpoint.ok()) return Fail("bind", endpoint.status(), 1);
  std::cout << "custom_task_demo: " << f.clients << " clients, " << f.rounds << " rounds, "
            << (f.insecure ? "plaintext" : "CURVE") << " on " << *endpoint << ", run directory " << f.run_dir
            << "\n";

  // Clients: each with its own meter and log (their lines go to stderr), all made before
  // the coordinator starts, so that a bad --meter stops the program here.
  struct ClientSlot {
    std::unique_ptr<greenfed::PhaseMeter> meter;
    std::unique_ptr<greenfed::Logger> log;
    greenfed::StatusOr<greenfed::ClientResult> result = greenfed::Internal("not run");
  };
  std::vector<ClientSlot> slots(f.clients);
  for (uint64_t i = 0; i < f.clients; ++i) {
    slots[i].meter = NewMeter(f.meter, env.get(), &meter_status);
    if (!slots[i].meter) return Fail("--meter", meter_status, 2);
    slots[i].log = std::make_unique<greenfed::Logger>("client-" + std::to_string(i), &std::cerr, &std::cerr);
  }

  greenfed::StatusOr<greenfed::ServerResult> server_result = greenfed::Internal("not run");
  std::thread server_thread([&] { server_result = server.Run(); });
  std::vector<std::thread> client_threads;
  for (uint64_t i = 0; i < f.clients; ++i) {
    greenfed::ClientOptions co;
    co.connect = *endpoint;
    co.client_id = "client-" + std::to_string(i);
    co.requested_index = static_cast<int32_t>(i);
    co.country = country->code;
    co.connect_timeout_s = 30;
    co.insecure = f.insecure;
    co.curve_secret_key = client_keys[i].secret_key;
    co.curve_public_key = client_keys[i].public_key;
    co.curve_server_key = server_public;
    client_threads.emplace_back([&registry, &env, &slots, co, i] {
      greenfed::Client client(co, &registry, slots[i].meter.get(), env.get(), slots[i].log.get());
      slots[i].result = client.Run();
    });
  }
  for (auto& t : client_threads) t.join();
  server_thread.join();

  int rc = 0;
  for (uint64_t i = 0; i < f.clients; ++i) {
    if (!slots[i].result.ok()) rc = Fail("client-" + std::to_string(i), slots[i].result.status(), 1);
  }
  if (!server_result.ok()) return Fail("coordinator", server_result.status(), 1);
  if (server_result->failed) {
    std::cerr << "custom_task_demo: the run failed: " << server_result->stop_reason << "\n";
    return 1;
  }
  std::cout << "custom_task_demo: done after " << server_result->rounds << " rounds, final accuracy "
            << server_result->final_accuracy << "; run directory " << f.run_dir << "\n";
  return rc;
}
