// Flags and wiring shared by the subcommands: a node's accounting (country, PUE,
// meter) and the federated settings shared by `coordinator` and `run`.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "greenfed/carbon.h"
#include "greenfed/coordinator/round_machine.h"
#include "greenfed/env.h"
#include "greenfed/flags.h"
#include "greenfed/log.h"
#include "greenfed/meter.h"
#include "greenfed/task.h"

namespace greenfed {

struct NodeFlags {
  std::string country = "WORLD";        // ISO 3166-1 alpha-3 of this node
  double pue = 1.0;                     // power usage effectiveness of this node's site
  std::string meter = "auto";           // auto | model | rapl | nvml
  std::string power_profile = "green-algorithms";  // model defaults, see `--power-profile`
  double watts_per_core = -1;           // overrides the profile when >= 0
  double watts_per_gb = -1;             // overrides the profile when >= 0
  double comm_kwh_per_gb = CommModel{}.kwh_per_gb;
  std::string data_dir;                 // empty = the task's default (DefaultDataDirHelp())
  std::string carbon_table;             // CSV path; empty = built-in table
  int64_t threads = 1;                  // intra-op threads of the task
};
void AddNodeFlags(FlagSet* flags, NodeFlags* node);
// Resolves the power model and checks country and PUE against the carbon table.
StatusOr<MeterOptions> MeterOptionsFor(const NodeFlags& node);
StatusOr<CarbonTable> LoadCarbonTable(const NodeFlags& node);
Status CheckNode(const NodeFlags& node, const CarbonTable& table);

struct FederationFlags {
  uint64_t num_clients = 10;
  uint64_t min_available_clients = 0;   // 0 = num_clients
  uint64_t min_fit_clients = 0;        // 0 = min(2, min_available_clients)
  double fraction_fit = 1.0;
  uint64_t max_rounds = 50;
  double target_accuracy = 0.90;
  uint64_t local_epochs = 1;
  uint64_t batch_size = 32;
  double lr = 0.05;
  double momentum = 0.9;
  std::string partition = "iid";
  double alpha = 0.5;
  uint64_t shards_per_client = 2;
  uint64_t seed = 1;
  double round_timeout_s = 600;
  double heartbeat_timeout_s = 30;
  double client_wait_s = 60;            // RoundOptions::client_wait_s
  double max_idle_s = 900;              // RoundOptions::max_idle_s
  uint64_t exclude_after_failures = 2;  // RoundOptions::exclude_after_failures
  uint64_t exclude_rounds = 5;          // RoundOptions::exclude_rounds
  double max_node_power_w = 10000;      // ServerOptions::max_node_power_w
  StrategyOptions strategy;             // --strategy and its settings (strategy.h)
  std::string sampling = "uniform";     // --sampling: uniform | carbon-aware (sampling.h)
  uint64_t fairness_rounds = 5;         // --fairness-rounds: carbon-aware's K
  std::string intensity_trace;          // --intensity-trace: CSV country,utc_hour,g_co2e_per_kwh ("" = none)
  BudgetOptions budget;                 // --max-co2e-g, --max-wh (budget.h); 0 = no limit
  uint64_t num_malicious_clients = 0;   // StrategyOptions::num_malicious_clients
  uint64_t num_clients_to_keep = 0;     // StrategyOptions::num_clients_to_keep
  uint64_t fed_eval_every = 0;
  bool overlap_eval = false;            // RoundOptions::overlap_eval (--overlap-eval)
  bool send_delta = false;
  std::string uplink_codec = "none";    // RoundOptions::uplink_codec (codec.h names)
  std::string downlink_codec = "none";  // RoundOptions::downlink_codec (dense codecs)
  std::string task = "fashion_mnist";
  std::string model;                    // empty = DefaultModelFor(task), set by the flags' check
  std::string run_dir;                  // empty = runs/<kind>-<partition>-<UTC time>
  bool resume = false;                  // continue --run-dir from its checkpoint.bin
  uint64_t max_train_examples = 0;
  uint64_t max_test_examples = 0;
  // --partition none (own-data clients): Join declarations above this are refused;
  // 0 = RoundOptions' default bound (2^32).
  uint64_t max_client_examples = 0;
};
// `greenfed run` names the federation size --clients, so it passes false.
void AddFederationFlags(FlagSet* flags, FederationFlags* fed, bool with_num_clients = true);
// Reads --intensity-trace (a bad file is an InvalidArgument naming file:line);
// sampling.table stays null (the built-in table): callers with --carbon-table set it.
StatusOr<RoundOptions> RoundOptionsFor(const FederationFlags& fed, const std::string& run_id);
std::string DefaultRunDir(const std::string& kind, const std::string& detail);
std::string RunIdOf(const std::string& run_dir);

// The flags of `greenfed run`, which `greenfed simulate` takes too (one definition).
struct LocalRunFlags {
  FederationFlags fed;                  // --clients is the federation size
  NodeFlags node;                       // the coordinator's node (and the clients' meter settings)
  std::string client_country;           // clients' country; empty = --country
  std::string client_countries;         // a mixed federation: countries cycled over client indices; "" = none
  double client_pue = 1.0;              // clients' PUE (1.0: devices at home)
  int64_t client_threads = 1;           // intra-op threads per client
  bool persist_momentum = false;        // clients keep SGD momentum buffers across rounds
  bool insecure = false;                // run: plaintext instead of CURVE keys in RUN_DIR/keys
};
void AddLocalRunFlags(FlagSet* flags, LocalRunFlags* run);
// The run directory's kind prefix and the flags `run` handles itself (not passed to
// the coordinator command).
std::vector<std::string> LocalRunOwnFlags();

// Transport security of a coordinator or a client (docs/deployment.md, "Security").
struct SecurityFlags {
  std::string secret_key;     // --secret-key: this node's NAME.key (mode 0600)
  std::string allow_clients;  // coordinator --allow-clients: file of public keys, or a directory of *.pub
  std::string server_key;     // client --server-key: the coordinator's NAME.pub, pinned
  bool insecure = false;      // --insecure: plaintext, no authentication
};
void AddCoordinatorSecurityFlags(FlagSet* flags, SecurityFlags* sec);
void AddClientSecurityFlags(FlagSet* flags, SecurityFlags* sec);
// Loads the key files named by the flags. Errors name the missing flag or the bad
// file (callers exit 2). In --insecure mode, logs a warning and loads nothing.
struct CoordinatorKeys {
  std::string secret_key;                 // Z85; empty with --insecure
  std::vector<std::string> allowed_keys;  // Z85 client public keys
};
StatusOr<CoordinatorKeys> LoadCoordinatorKeys(const SecurityFlags& sec, Logger* log);
struct ClientKeys {
  std::string secret_key, public_key;  // Z85; empty with --insecure
  std::string server_key;              // Z85 coordinator public key
};
StatusOr<ClientKeys> LoadClientKeys(const SecurityFlags& sec, Logger* log);

// Registers every task this binary knows.
StatusOr<TaskRegistry> BuildTaskRegistry();
// The model a task trains when --model is not given: "cnn" for fashion_mnist,
// "mlp" for digits, "" (the task decides) for any other.
std::string DefaultModelFor(const std::string& task);

// Prints a Status to stderr as "greenfed COMMAND: message" and returns `code`.
int Fail(const std::string& command, const Status& status, int code);
// Parses flags; on error prints it and returns 2; on --help prints help, returns 0;
// otherwise returns -1 (go on).
int ParseOrExit(FlagSet* flags, const std::vector<std::string>& args, std::vector<std::string>* positional = nullptr);

}  // namespace greenfed
