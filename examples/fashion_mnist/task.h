// FashionMnistTask: the greenfed::Task for Fashion-MNIST, with the models of
// model.h ("cnn" by default, "mlp"), trained by SGD with momentum in libtorch.
//
// Contract (beyond task.h):
//  - Data per role: kClient loads train and test and keeps its shard of each;
//    kCoordinator loads test only; kCentralized loads both whole.
//  - A client's training shard is PartitionIndices(train labels, options.partition,
//    client_index). Its test shard for federated evaluation is always an IID split
//    of the full test set (scheme "iid", same seed and num_clients, same index): the
//    client shards cover the test set exactly once, so the example-weighted mean of
//    client accuracies is the accuracy on the whole test set, whatever the training
//    skew.
//  - Own data (options.own_data_path, client role only): a directory holding the
//    client's own train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz (28x28,
//    the usual names) is the whole training set; the partition is ignored and the
//    client has no test shard (Evaluate fails with FailedPrecondition).
//  - max_train_examples / max_test_examples keep the first N examples (in index
//    order) after partitioning.
//  - Pixels become x / 255, then (x - 0.2860) / 0.3530 (Fashion-MNIST train
//    mean/std).
//  - Fit is deterministic for a given config.seed and thread count: the epoch
//    order comes from DeterministicRng(config.seed), momentum buffers start at
//    zero on every call, and the loss reported is the mean over the last epoch.
//  - Prepare sets libtorch's process-wide intra-op thread count
//    (torch::set_num_threads(options.threads)) and seeds its generator.
// This header does not include libtorch (pimpl).
// Thread safety: as greenfed::Task: one thread at a time.
#pragma once

#include <memory>
#include <vector>

#include "greenfed/status.h"
#include "greenfed/task.h"

namespace greenfed::fmnist {

// The name under which RegisterFashionMnist registers the task.
constexpr char kFashionMnistTaskName[] = "fashion_mnist";

class FashionMnistTask final : public Task {
 public:
  FashionMnistTask();
  ~FashionMnistTask() override;
  FashionMnistTask(const FashionMnistTask&) = delete;
  FashionMnistTask& operator=(const FashionMnistTask&) = delete;

  Status Prepare(const TaskOptions& options) override;
  StatusOr<Parameters> InitialParameters() override;
  StatusOr<FitResult> Fit(const FitRequest& request, ClientState& state) override;
  std::vector<std::string> Capabilities() const override;
  StatusOr<EvalResult> Evaluate(const Parameters& parameters) override;
  uint64_t NumTrainExamples() const override;
  std::vector<int64_t> TrainLabelHistogram() const override;
  // Reads the training labels from the prepared data_dir and cuts them as the
  // clients do (partition.h ShardSizes); needs Prepare first.
  StatusOr<std::vector<uint64_t>> ShardSizes(const PartitionSpec& spec) const override;
  // Loads train and test once into this task (data_dir from client_options); each
  // view keeps its train and test index lists and builds its shard's tensors and
  // its model for the length of one Fit or Evaluate.
  StatusOr<std::unique_ptr<Task>> NewShardView(const TaskOptions& client_options) override;

  // Number of test examples prepared (the client's test shard size).
  uint64_t NumTestExamples() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Registers FashionMnistTask as kFashionMnistTaskName ("fashion_mnist").
Status RegisterFashionMnist(TaskRegistry* registry);

}  // namespace greenfed::fmnist
