// Task: everything model- and data-specific, behind an interface that moves
// parameters as TensorBlobs. The framework (coordinator/, client/) never names a
// model or a dataset; examples/ implement tasks, and apps/ register them by name.
//
// Contract: a Task is created for one role and prepared once (Prepare) before any
// other call. Fit and Evaluate never throw: library exceptions become a Status.
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
};

struct FitResult {
  Parameters parameters;               // local weights after training
  uint64_t num_examples = 0;           // examples in the local training set
  double train_loss = 0;               // mean loss over the last local epoch
};

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
  // Trains from `parameters` on this task's training data with `config`.
  virtual StatusOr<FitResult> Fit(const Parameters& parameters, const TrainConfig& config) = 0;
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
