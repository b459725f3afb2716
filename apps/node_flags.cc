#include "node_flags.h"

#include <algorithm>
#include <cstdint>
#include <ctime>
#include <iostream>

#include "digits/task.h"
#include "fashion_mnist/task.h"
#include "greenfed/codec.h"
#include "greenfed/keys.h"

namespace greenfed {

void AddNodeFlags(FlagSet* f, NodeFlags* n) {
  f->AddString("country", &n->country, "ISO 3166-1 alpha-3 code of this node's electricity grid (see `greenfed countries`)");
  f->AddDouble("pue", &n->pue, "power usage effectiveness of this node's site: 1.0 at home, ~1.1-1.7 in a data centre");
  f->AddString("meter", &n->meter, "energy source: auto (RAPL/NVML when readable, else the model), model, rapl, nvml");
  f->AddString("power-profile", &n->power_profile, "power-model profile: green-algorithms, codecarbon, rpi4, jetson-nano");
  f->AddDouble("watts-per-core", &n->watts_per_core, "model: watts per fully used core; overrides the profile when >= 0");
  f->AddDouble("watts-per-gb", &n->watts_per_gb, "model: watts per GB of resident memory; overrides the profile when >= 0");
  f->AddDouble("comm-kwh-per-gb", &n->comm_kwh_per_gb, "network energy per GB moved (Aslan et al. 2018, extrapolated to 2023)");
  f->AddString("data-dir", &n->data_dir,
                "data set directory; empty = the task's default: fashion_mnist /usr/share/datasets/fashion-mnist "
                "(Debian: dataset-fashion-mnist), digits /usr/lib/python3/dist-packages/sklearn/datasets/data "
                "(Debian: python3-sklearn)");
  f->AddString("carbon-table", &n->carbon_table, "CSV carbon-intensity table to use instead of the built-in one");
  f->AddInt("threads", &n->threads, "intra-op threads for training and evaluation");
  f->AddCheck([n]() -> Status {
    if (n->threads < 1 || n->threads > 256) return InvalidArgument("--threads must be in [1, 256]");
    if (!(n->comm_kwh_per_gb >= 0)) return InvalidArgument("--comm-kwh-per-gb must be >= 0");
    return ValidatePue(n->pue).WithContext("--pue");
  });
}

StatusOr<MeterOptions> MeterOptionsFor(const NodeFlags& n) {
  MeterOptions m;
  m.kind = n.meter;
  GREENFED_ASSIGN_OR_RETURN(m.model, PowerModelProfile(n.power_profile));
  if (n.watts_per_core >= 0) {
    m.model.watts_per_core = n.watts_per_core;
    m.model.profile += "+custom";
  }
  if (n.watts_per_gb >= 0) m.model.watts_per_gb = n.watts_per_gb;
  return m;
}

StatusOr<CarbonTable> LoadCarbonTable(const NodeFlags& n) {
  if (n.carbon_table.empty()) return CarbonTable::BuiltIn();
  return CarbonTable::FromFile(n.carbon_table);
}

Status CheckNode(const NodeFlags& n, const CarbonTable& table) {
  auto ci = table.Lookup(n.country);
  if (!ci.ok()) return ci.status().WithContext("--country");
  return ValidatePue(n.pue).WithContext("--pue");
}

void AddFederationFlags(FlagSet* f, FederationFlags* d, bool with_num_clients) {
  if (with_num_clients) {
    f->AddUint("num-clients", &d->num_clients, "federation size: clients get shard indices 0..N-1");
  }
  f->AddUint("min-available-clients", &d->min_available_clients, "connected clients needed before a round starts (0 = num-clients)");
  f->AddUint("min-fit-clients", &d->min_fit_clients, "fewest clients sampled, and fewest results to aggregate a round (0 = min(2, min-available-clients))");
  f->AddDouble("fraction-fit", &d->fraction_fit, "fraction of available clients sampled per round");
  f->AddUint("max-rounds", &d->max_rounds, "stop after this many rounds even if the target is not reached");
  f->AddDouble("target-accuracy", &d->target_accuracy, "stop when central test accuracy reaches this (top-1)");
  f->AddUint("local-epochs", &d->local_epochs, "local epochs per round");
  f->AddUint("batch-size", &d->batch_size, "local mini-batch size");
  f->AddDouble("lr", &d->lr, "local SGD learning rate");
  f->AddDouble("momentum", &d->momentum,
                "local SGD momentum (buffers restart every round unless the clients run with --persist-momentum)");
  f->AddString("partition", &d->partition,
                "iid | shards (McMahan et al. 2017, 2 per client) | dirichlet (label skew) | none (clients bring their "
                "own data: `greenfed client --data PATH`)");
  f->AddUint("max-client-examples", &d->max_client_examples,
             "--partition none: refuse a client that declares more training examples than this (0 = 2^32)");
  f->AddDouble("alpha", &d->alpha, "Dirichlet concentration for --partition dirichlet (smaller = more skew)");
  f->AddUint("shards-per-client", &d->shards_per_client, "shards per client for --partition shards");
  f->AddUint("seed", &d->seed, "seed of partitions, sampling, initial weights and local shuffling");
  f->AddDouble("round-timeout-s", &d->round_timeout_s, "per-round deadline; late results are discarded");
  f->AddDouble("heartbeat-timeout-s", &d->heartbeat_timeout_s, "a client silent this long is dropped");
  f->AddDouble("client-wait-s", &d->client_wait_s,
                "round 1 waits this long for --min-available-clients, then starts with >= --min-fit-clients");
  f->AddDouble("max-idle-s", &d->max_idle_s, "stop the run when no round could start for this long");
  f->AddUint("exclude-after-failures", &d->exclude_after_failures,
             "exclude a client after this many consecutive failed rounds (0 = never)");
  f->AddUint("exclude-rounds", &d->exclude_rounds, "rounds an excluded client is refused");
  f->AddDouble("max-node-power-w", &d->max_node_power_w,
               "plausibility bound: energy reports above this many watts per node are rejected");
  f->AddDouble("max-co2e-g", &d->budget.max_co2e_g,
               "carbon budget: stop before a round that would take the run's g CO2e past this, estimated from "
               "the last round (0 = no limit; docs/energy.md, \"Budgets\")");
  f->AddDouble("max-wh", &d->budget.max_wh,
               "energy budget: stop before a round that would take the run's Wh (compute x PUE + communication) "
               "past this, estimated from the last round (0 = no limit)");
  f->AddString("strategy", &d->strategy.name, "aggregation: " + StrategyNames() + " (docs/strategies.md)");
  f->AddString("sampling", &d->sampling,
               "which clients a round trains: uniform (seeded draw) or carbon-aware (cleanest grids first, with "
               "the --fairness-rounds floor; docs/strategies.md, \"Sampling\")");
  f->AddUint("fairness-rounds", &d->fairness_rounds,
             "carbon-aware: every available client is sampled at least once in any K consecutive rounds");
  f->AddString("intensity-trace", &d->intensity_trace,
               "carbon-aware: hourly intensities, CSV country,utc_hour,g_co2e_per_kwh (docs/energy.md; "
               "examples/carbon/intensity-trace.csv); countries not in it use the carbon table");
  f->AddDouble("server-learning-rate", &d->strategy.server_learning_rate,
                "fedavgm: server learning rate; scaffold: global step size eta_g");
  f->AddDouble("proximal-mu", &d->strategy.proximal_mu,
               "fedprox: proximal term mu in the clients' objective; required with --strategy fedprox (-1 = not set)");
  f->AddDouble("server-momentum", &d->strategy.server_momentum, "fedavgm: server momentum (0 = FedAvg)");
  f->AddDouble("eta", &d->strategy.eta, "fedadagrad/fedadam/fedyogi: server learning rate (-1 = 0.1, fedyogi 0.01)");
  f->AddDouble("beta-1", &d->strategy.beta_1, "fedadam/fedyogi/fedadagrad: first moment (-1 = 0.9, fedadagrad 0)");
  f->AddDouble("beta-2", &d->strategy.beta_2, "fedadam/fedyogi: second moment");
  f->AddDouble("tau", &d->strategy.tau, "fedadagrad/fedadam/fedyogi: adaptivity (-1 = 1e-9, fedyogi 1e-3)");
  f->AddDouble("trim-beta", &d->strategy.trim_beta, "fedtrimmedavg: fraction trimmed from each end");
  f->AddUint("num-malicious-clients", &d->num_malicious_clients, "krum: clients assumed malicious (f)");
  f->AddUint("num-clients-to-keep", &d->num_clients_to_keep, "krum: 0 = Krum, m > 0 = Multi-Krum over the m best");
  f->AddUint("fed-eval-every", &d->fed_eval_every, "federated evaluation on the clients every N rounds (0 = off)");
  f->AddBool("overlap-eval", &d->overlap_eval,
             "evaluate round r centrally while round r+1's fits run: less wall time, but the round begun when "
             "round r reaches the target is abandoned (its energy spent); in sequence with --fed-eval-every or a "
             "budget");
  f->AddBool("send-delta", &d->send_delta, "clients send w_local - w_global instead of w_local");
  f->AddString("uplink-codec", &d->uplink_codec,
               "how clients encode their updates: " + CodecNames() +
                   "; lossy ones send deltas with error feedback (docs/codecs.md)");
  f->AddString("downlink-codec", &d->downlink_codec,
               "how Fit carries the global model: " + DownlinkCodecNames() +
                   "; clients train from the decoded model (docs/codecs.md, \"Downlink\")");
  f->AddString("task", &d->task, "registered task");
  f->AddString("model", &d->model,
                "model registered within the task (fashion_mnist: cnn, mlp; digits: mlp, softmax); empty = the task's "
                "default (cnn, mlp)");
  f->AddString("run-dir", &d->run_dir, "output directory (empty = runs/fl-<partition>-<UTC time>)");
  f->AddBool("resume", &d->resume,
             "continue the run in --run-dir from its checkpoint.bin (after a crash or kill); the settings must match");
  f->AddUint("max-train-examples", &d->max_train_examples, "cap on each client's training examples (0 = all; for quick runs)");
  f->AddUint("max-test-examples", &d->max_test_examples, "cap on test examples used by central evaluation (0 = all 10,000)");
  f->AddCheck([d]() -> Status {
    if (d->partition != "iid" && d->partition != "shards" && d->partition != "dirichlet" && d->partition != "none") {
      return InvalidArgument("--partition must be iid, shards, dirichlet or none, got '" + d->partition + "'");
    }
    if (d->fed_eval_every > 0 && d->partition == "none") {
      return InvalidArgument("--fed-eval-every needs partitioned clients: clients with their own data "
                             "(--partition none) have no test shard; central evaluation still runs every round");
    }
    if (d->max_client_examples > 0 && d->partition != "none") {
      return InvalidArgument("--max-client-examples bounds own-data clients; it needs --partition none");
    }
    if (d->model.empty()) d->model = DefaultModelFor(d->task);
    if (!(d->alpha > 0)) return InvalidArgument("--alpha must be positive");
    if (d->shards_per_client == 0) return InvalidArgument("--shards-per-client must be at least 1");
    if (d->resume && d->run_dir.empty()) return InvalidArgument("--resume needs the --run-dir of the run to continue");
    if (!(d->max_node_power_w > 0)) return InvalidArgument("--max-node-power-w must be positive");
    GREENFED_RETURN_IF_ERROR(ValidateCodecOptions(d->uplink_codec, d->downlink_codec));
    return ValidateBudgetOptions(d->budget);
  });
}

StatusOr<RoundOptions> RoundOptionsFor(const FederationFlags& d, const std::string& run_id) {
  RoundOptions o;
  o.num_clients = static_cast<uint32_t>(d.num_clients);
  o.min_available_clients = static_cast<uint32_t>(d.min_available_clients ? d.min_available_clients : d.num_clients);
  o.min_fit_clients = d.min_fit_clients ? static_cast<uint32_t>(d.min_fit_clients)
                                        : std::min<uint32_t>(2, o.min_available_clients);
  o.fraction_fit = d.fraction_fit;
  o.max_rounds = d.max_rounds;
  o.target_accuracy = d.target_accuracy;
  o.round_timeout_s = d.round_timeout_s;
  o.heartbeat_timeout_s = d.heartbeat_timeout_s;
  o.client_wait_s = d.client_wait_s;
  o.max_idle_s = d.max_idle_s;
  o.exclude_after_failures = static_cast<uint32_t>(d.exclude_after_failures);
  o.exclude_rounds = d.exclude_rounds;
  o.strategy = d.strategy;
  o.sampling.name = d.sampling;
  o.sampling.fairness_rounds = static_cast<uint32_t>(std::min<uint64_t>(d.fairness_rounds, UINT32_MAX));
  if (d.fairness_rounds > UINT32_MAX) return InvalidArgument("--fairness-rounds is too large");
  o.sampling.intensity_trace_path = d.intensity_trace;
  if (!d.intensity_trace.empty()) {
    auto trace = IntensityTrace::Load(d.intensity_trace);
    if (!trace.ok()) return trace.status().WithContext("--intensity-trace");
    o.sampling.trace = std::make_shared<const IntensityTrace>(std::move(trace).value());
  }
  o.budget = d.budget;
  o.strategy.num_malicious_clients = static_cast<uint32_t>(d.num_malicious_clients);
  o.strategy.num_clients_to_keep = static_cast<uint32_t>(d.num_clients_to_keep);
  o.strategy.federation_size = o.num_clients;  // scaffold's N
  o.seed = d.seed;
  o.train.epochs = static_cast<uint32_t>(d.local_epochs);
  o.train.batch_size = static_cast<uint32_t>(d.batch_size);
  o.train.learning_rate = d.lr;
  o.train.momentum = d.momentum;
  o.train.send_delta = d.send_delta;
  o.uplink_codec = d.uplink_codec;
  o.downlink_codec = d.downlink_codec;
  // A lossy codec carries deltas (docs/codecs.md); RoundMachine forces it too.
  if (d.uplink_codec != kCodecNone || d.downlink_codec != kCodecNone) o.train.send_delta = true;
  o.fed_eval_every = static_cast<uint32_t>(d.fed_eval_every);
  o.overlap_eval = d.overlap_eval;
  o.partition.scheme = d.partition;
  o.partition.alpha = d.alpha;
  o.partition.shards_per_client = static_cast<uint32_t>(d.shards_per_client);
  o.partition.seed = d.seed;
  o.partition.num_clients = o.num_clients;
  o.own_data = d.partition == "none";
  if (d.max_client_examples > 0) o.max_examples_per_client = d.max_client_examples;
  o.task = d.task;
  o.model = d.model;
  o.run_id = run_id;
  GREENFED_RETURN_IF_ERROR(ValidateRoundOptions(o));
  return o;
}

std::string DefaultRunDir(const std::string& kind, const std::string& detail) {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
  return "runs/" + kind + (detail.empty() ? "" : "-" + detail) + "-" + stamp;
}

std::string RunIdOf(const std::string& run_dir) {
  std::string d = run_dir;
  while (!d.empty() && d.back() == '/') d.pop_back();
  auto slash = d.find_last_of('/');
  return slash == std::string::npos ? d : d.substr(slash + 1);
}

void AddLocalRunFlags(FlagSet* flags, LocalRunFlags* run) {
  flags->AddUint("clients", &run->fed.num_clients, "number of clients (the federation size)");
  AddFederationFlags(flags, &run->fed, /*with_num_clients=*/false);
  AddNodeFlags(flags, &run->node);
  flags->AddString("client-country", &run->client_country, "clients' country (empty = --country)");
  flags->AddString("client-countries", &run->client_countries,
                   "a mixed federation: clients' countries, comma-separated, cycled over the client indices (client K "
                   "gets entry K mod the list's length), e.g. FRA,DEU,USA,CHN,IND; instead of --client-country");
  flags->AddDouble("client-pue", &run->client_pue, "clients' PUE (1.0: devices at home)");
  flags->AddInt("client-threads", &run->client_threads, "intra-op threads per client (process or virtual client)");
  flags->AddBool("persist-momentum", &run->persist_momentum,
                 "clients keep their SGD momentum buffers across rounds (greenfed client --persist-momentum)");
  flags->AddBool("insecure", &run->insecure,
                 "plaintext without authentication instead of CURVE keys in RUN_DIR/keys (tests only)");
}

std::vector<std::string> LocalRunOwnFlags() {
  return {"clients", "client-country", "client-countries", "client-pue", "client-threads", "persist-momentum"};
}

void AddCoordinatorSecurityFlags(FlagSet* f, SecurityFlags* s) {
  f->AddString("secret-key", &s->secret_key, "the coordinator's CURVE key file NAME.key (from `greenfed keygen`, mode 0600)");
  f->AddString("allow-clients", &s->allow_clients,
               "client public keys admitted: a file with one Z85 key per line ('#' comments), or a directory of *.pub");
  f->AddBool("insecure", &s->insecure, "plaintext without authentication: anyone who reaches --bind may join (tests only)");
}

void AddClientSecurityFlags(FlagSet* f, SecurityFlags* s) {
  f->AddString("secret-key", &s->secret_key, "this client's CURVE key file NAME.key (from `greenfed keygen`, mode 0600)");
  f->AddString("server-key", &s->server_key, "the coordinator's public key file NAME.pub: the only coordinator this client talks to");
  f->AddBool("insecure", &s->insecure, "plaintext without authentication, to an --insecure coordinator (tests only)");
}

namespace {

const char* kInsecureWarning =
    "--insecure: plaintext transport without authentication. Anyone who can reach this endpoint can read and alter "
    "the model and join under any name. Use CURVE keys (`greenfed keygen`) outside a test.";

}  // namespace

StatusOr<CoordinatorKeys> LoadCoordinatorKeys(const SecurityFlags& s, Logger* log) {
  CoordinatorKeys k;
  if (s.insecure) {
    if (!s.secret_key.empty() || !s.allow_clients.empty()) {
      return InvalidArgument("--insecure cannot be combined with --secret-key or --allow-clients");
    }
    log->Warn(kInsecureWarning);
    return k;
  }
  if (s.secret_key.empty()) {
    return InvalidArgument("missing --secret-key (the coordinator's NAME.key from `greenfed keygen`); "
                           "or pass --insecure for plaintext without authentication");
  }
  if (s.allow_clients.empty()) {
    return InvalidArgument("missing --allow-clients (a file of client public keys or a directory of *.pub); "
                           "or pass --insecure for plaintext without authentication");
  }
  auto pair = LoadSecretKeyFile(s.secret_key);
  if (!pair.ok()) return pair.status().WithContext("--secret-key");
  auto allowed = LoadAllowList(s.allow_clients);
  if (!allowed.ok()) return allowed.status().WithContext("--allow-clients");
  k.allowed_keys = std::move(allowed).value();
  k.secret_key = pair->secret_key;
  if (!CurveAvailable()) return Unavailable("this libzmq has no CURVE support (built without libsodium)");
  log->Info("CURVE: coordinator key " + KeyPrefix(pair->public_key) + ", " + std::to_string(k.allowed_keys.size()) +
            " client key(s) allowed");
  return k;
}

StatusOr<ClientKeys> LoadClientKeys(const SecurityFlags& s, Logger* log) {
  ClientKeys k;
  if (s.insecure) {
    if (!s.secret_key.empty() || !s.server_key.empty()) {
      return InvalidArgument("--insecure cannot be combined with --secret-key or --server-key");
    }
    log->Warn(kInsecureWarning);
    return k;
  }
  if (s.secret_key.empty()) {
    return InvalidArgument("missing --secret-key (this client's NAME.key from `greenfed keygen`); "
                           "or pass --insecure for plaintext without authentication");
  }
  if (s.server_key.empty()) {
    return InvalidArgument("missing --server-key (the coordinator's NAME.pub); "
                           "or pass --insecure for plaintext without authentication");
  }
  auto pair = LoadSecretKeyFile(s.secret_key);
  if (!pair.ok()) return pair.status().WithContext("--secret-key");
  auto server = LoadPublicKeyFile(s.server_key);
  if (!server.ok()) return server.status().WithContext("--server-key");
  k.server_key = *server;
  k.secret_key = pair->secret_key;
  k.public_key = pair->public_key;
  if (!CurveAvailable()) return Unavailable("this libzmq has no CURVE support (built without libsodium)");
  return k;
}

StatusOr<TaskRegistry> BuildTaskRegistry() {
  TaskRegistry registry;
  GREENFED_RETURN_IF_ERROR(fmnist::RegisterFashionMnist(&registry));
  GREENFED_RETURN_IF_ERROR(digits::RegisterDigits(&registry));
  return registry;
}

std::string DefaultModelFor(const std::string& task) {
  if (task == fmnist::kFashionMnistTaskName) return "cnn";
  if (task == digits::kDigitsTaskName) return digits::kDefaultModel;
  return "";
}

int Fail(const std::string& command, const Status& status, int code) {
  std::cerr << "greenfed " << command << ": " << status.message() << "\n";
  return code;
}

int ParseOrExit(FlagSet* flags, const std::vector<std::string>& args, std::vector<std::string>* positional) {
  auto parsed = flags->Parse(args, positional);
  if (!parsed.ok()) {
    std::cerr << "greenfed: " << parsed.status().message() << "\n";
    return 2;
  }
  if (*parsed) {
    std::cout << flags->Help();
    return 0;
  }
  return -1;
}

}  // namespace greenfed
