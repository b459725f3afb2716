// Task: everything model- and data-specific, behind an interface that moves
// parameters as TensorBlobs. The framework (coordinator/, client/) never names a
// model or a dataset; examples/ implement tasks, and apps/ register them by name.
//
// Contract: a Task is created for one role and prepared once (Prepare) before any
// other call. Fit and Evaluate never throw: library exceptions become a Status.
// Fit reads its settings from the round's ConfigMap (ParseTrainConfig for the SGD
// keys; strategy keys such as "proximal_mu") and may keep state across rounds in
// the ClientState the client passes in: the client owns it, keeps it for the whole
// process and starts it empty (a restarted client starts afresh).
// Thread safety: a Task is used by one thread at a time. The client calls it from
// its training thread while the socket thread keeps heartbeats going.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "greenfed/protocol.h"
#include "greenfed/status.h"
#include "greenfed/tensor.h"

namespace greenfed {

enum class TaskRole : uint8_t {
  kClient = 0,       // loads its own training shard (and test shard for federated eval)
  kCoordinator = 1,  // loads the test set only, for central evaluation
  kCentralized = 2,  // loads the whole training set and the test set
};

struct TaskOptions {
  TaskRole role = TaskRole::kClient;   // which data to load
  std::string data_dir;                // default chosen by the task (e.g. Debian's dataset path)
  std::string model = "cnn";           // model name, registered within the task
  PartitionSpec partition;             // client role: how to cut the shard
  uint32_t client_index = 0;           // client role: which shard, < partition.num_clients
  uint64_t init_seed = 0;              // seed of the initial weights (GetParameters)
  int threads = 1;                     // intra-op threads for the task's library
  uint64_t max_train_examples = 0;     // 0 = all; caps the data for quick runs
  uint64_t max_test_examples = 0;      // 0 = all
  // Client role, own-data mode (`greenfed client --data PATH`): this file is the
  // whole training set, in the task's own format; partition, client_index and
  // data_dir's training files are ignored. Empty = partitioned mode. A task that
  // cannot read own data fails Prepare with InvalidArgument saying so.
  std::string own_data_path;
  bool persist_momentum = false;       // client role: keep SGD momentum buffers across rounds
                                       // in the ClientState (default: fresh each round)
};

// One round's work for Task::Fit.
struct FitRequest {
  Parameters parameters;               // global weights (group "params")
  TensorGroups groups;                 // other groups from the coordinator, e.g. "control"
  ConfigMap config;                    // SGD keys (ParseTrainConfig) and strategy keys
};

struct FitResult {
  Parameters parameters;               // local weights after training (the client makes the delta)
  TensorGroups groups;                 // other groups for the coordinator, e.g. "control" = delta c_i
  uint64_t num_examples = 0;           // examples in the local training set
  double train_loss = 0;               // mean loss over the last local epoch
};

// What a client keeps across rounds for its task (e.g. SCAFFOLD's "c_i", momentum
// buffers), by name. Empty at start and after a restart.
using ClientState = TensorGroups;

// Capability names a task announces at Join and strategies may require.
constexpr const char* kCapabilityFedProx = "fedprox";    // reads config "proximal_mu"
constexpr const char* kCapabilityScaffold = "scaffold";  // reads and returns group "control"
// Names strategies and tasks agree on.
constexpr const char* kConfigProximalMu = "proximal_mu";  // FedProx's mu, a double >= 0
constexpr const char* kGroupControl = "control";          // SCAFFOLD: c in Fit, delta c_i in FitRes

struct EvalResult {
  double loss = 0;                     // mean cross-entropy
  double accuracy = 0;                 // top-1, in [0, 1]
  uint64_t num_examples = 0;
};

class Task {
 public:
  virtual ~Task() = default;
  // Loads data for the role. Missing or corrupt data -> a Status naming the file.
  virtual Status Prepare(const TaskOptions& options) = 0;
  // Initial parameters, deterministic from options.init_seed.
  virtual StatusOr<Parameters> InitialParameters() = 0;
  // Trains from request.parameters on this task's training data with
  // request.config; reads and updates `state` (kept by the caller across rounds).
  virtual StatusOr<FitResult> Fit(const FitRequest& request, ClientState& state) = 0;
  // What this task's Fit understands beyond plain SGD (kCapabilityFedProx, ...);
  // the client announces them at Join.
  virtual std::vector<std::string> Capabilities() const { return {}; }
  // Evaluates `parameters` on this task's test data.
  virtual StatusOr<EvalResult> Evaluate(const Parameters& parameters) = 0;
  // Number of training examples prepared (the client's shard size).
  virtual uint64_t NumTrainExamples() const = 0;
  // Labels of the prepared training examples, for reporting label skew.
  virtual std::vector<int64_t> TrainLabelHistogram() const = 0;
  // Training-shard size of every client index under `spec`, computed the way the
  // clients cut their shards; the coordinator bounds each client's num_examples
  // with it. Tasks whose clients bring their own data cannot tell: the default
  // says so, and the coordinator falls back to what clients declare at Join.
  virtual StatusOr<std::vector<uint64_t>> ShardSizes(const PartitionSpec& spec) const {
    (void)spec;
    return FailedPrecondition("this task cannot compute its clients' shard sizes");
  }
  // Shared data (greenfed simulate): a task for one client, `client_options` as
  // that client's Prepare would get them (role kClient, partition, client_index),
  // that reads this task's copy of the data set instead of loading its own. The
  // first call loads the data set into this task, read-only; every view shares it
  // and holds only its own index list (and builds what a Fit needs for the call).
  // The view is prepared; it may be used on another thread than this task, one
  // thread at a time as any Task. Called from one thread. Default: FailedPrecondition,
  // and the simulator prepares a task of the client's own instead.
  virtual StatusOr<std::unique_ptr<Task>> NewShardView(const TaskOptions& client_options) {
    (void)client_options;
    return FailedPrecondition("this task does not share its data set between clients");
  }
};

using TaskFactory = std::function<std::unique_ptr<Task>()>;

// Name -> factory. Built by the application and passed down; no global registry.
class TaskRegistry {
 public:
  Status Register(const std::string& name, TaskFactory factory);
  StatusOr<std::unique_ptr<Task>> Create(const std::string& name) const;
  std::vector<std::string> Names() const;

 private:
  std::map<std::string, TaskFactory> factories_;
};

}  // namespace greenfed
