// DigitsTask: the greenfed::Task for the UCI 8x8 digits (data.h), with the plain
// C++ models of model.h ("mlp" by default, "softmax"), trained by mini-batch SGD
// with momentum. No libtorch: a digits client's footprint is the framework's.
//
// Contract (beyond task.h):
//  - Data: the real file (data_dir/digits.csv.gz) is split once, stratified, into
//    1,497 train and 300 test examples (data.h StratifiedSplit, kSplitSeed).
//    kClient keeps its partition shard of train (PartitionIndices(train labels,
//    options.partition, client_index)) and an IID shard of test (scheme "iid", same
//    seed, num_clients and index, so the client test shards cover the test set
//    once); kCoordinator loads test; kCentralized loads train and test whole.
//  - Own data: when options.own_data_path is set (kClient only), that CSV file (same
//    format) is the whole training set; the partition and data_dir are ignored, and
//    the client has no test data (Evaluate fails with FailedPrecondition).
//  - max_train_examples / max_test_examples keep the first N (index order) after
//    partitioning.
//  - Inputs are pixel / 16. Fit reads the SGD keys (ParseTrainConfig) and
//    "proximal_mu" (FedProx) from request.config; it is deterministic for a given
//    seed: the epoch order comes from DeterministicRng(seed), and momentum buffers
//    (PyTorch-style heavy ball: v = mu v + g; w -= lr v) start at zero on every call
//    unless options.persist_momentum, which keeps them in state group "momentum".
//    The loss reported is the mean over the last epoch; a non-finite loss is OutOfRange.
//  - SCAFFOLD (Karimireddy et al. 2020, option II): with group "control" (c) in the
//    request, every gradient gets c - c_i (c_i: state group "control", zero at
//    first); after K steps c_i+ = c_i - c + (x - y) / (K lr), kept in the state, and
//    the result carries group "control" = c_i+ - c_i.
//  - Capabilities: fedprox, scaffold.
// Thread safety: as greenfed::Task: one thread at a time.
#pragma once

#include <memory>
#include <vector>

#include "digits/data.h"
#include "digits/model.h"
#include "greenfed/status.h"
#include "greenfed/task.h"

namespace greenfed::digits {

// The name under which RegisterDigits registers the task.
constexpr char kDigitsTaskName[] = "digits";
constexpr char kDefaultModel[] = "mlp";

// SGD settings of one local training call.
struct SgdOptions {
  TrainConfig train;        // epochs, batch size, learning rate, momentum, seed
  double proximal_mu = 0;   // FedProx: adds mu/2 ||w - w_start||^2 to the loss; 0 = off
  // SCAFFOLD: added to every gradient (c - c_i, layout of the weights); null = off.
  const Weights* correction = nullptr;
  // Momentum buffers, in and out (layout of the weights); null = fresh zeros.
  Weights* velocity = nullptr;
};

struct SgdResult {
  double train_loss = 0;    // mean loss over the last epoch
  uint64_t steps = 0;       // optimizer steps taken (SCAFFOLD's K)
};

// Trains `model` in place on (x: n x 64 in [0, 1], y). Validates the options (epochs,
// batch size >= 1; learning rate finite > 0; momentum in [0, 1); proximal_mu finite
// >= 0; a correction of the weights' layout).
StatusOr<SgdResult> TrainSgd(DigitsModel* model, const std::vector<float>& x, const std::vector<uint8_t>& y,
                             const SgdOptions& options);

// Pixels / 16 as float, row-major.
std::vector<float> ScaledPixels(const DigitsData& data);

class DigitsTask final : public Task {
 public:
  DigitsTask();
  ~DigitsTask() override;
  DigitsTask(const DigitsTask&) = delete;
  DigitsTask& operator=(const DigitsTask&) = delete;

  Status Prepare(const TaskOptions& options) override;
  StatusOr<Parameters> InitialParameters() override;
  StatusOr<FitResult> Fit(const FitRequest& request, ClientState& state) override;
  std::vector<std::string> Capabilities() const override;
  StatusOr<EvalResult> Evaluate(const Parameters& parameters) override;
  uint64_t NumTrainExamples() const override;
  std::vector<int64_t> TrainLabelHistogram() const override;
  // The clients' shard sizes under `spec` (partition.h ShardSizes on the train
  // split's labels); needs Prepare with the real data (any role but own data).
  StatusOr<std::vector<uint64_t>> ShardSizes(const PartitionSpec& spec) const override;

  uint64_t NumTestExamples() const;
  // Reads the CSV once into this task; each view is a client task prepared from it
  // (the data set is 1,797 images, so a view keeps its shard's own scaled pixels:
  // at most 460 KB across all clients).
  StatusOr<std::unique_ptr<Task>> NewShardView(const TaskOptions& client_options) override;


 private:
  Status PrepareFrom(const TaskOptions& options, const DigitsData* shared);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Registers DigitsTask as kDigitsTaskName ("digits").
Status RegisterDigits(TaskRegistry* registry);

}  // namespace greenfed::digits
