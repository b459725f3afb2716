// LogisticTask: a greenfed Task written outside greenfed's tree, against the installed
// package only (find_package(greenfed)). Binary logistic regression on synthetic data,
// in plain C++: no libtorch, no data files.
//
// The problem: x ~ N(0, I) in kDims dimensions, label 1 when w*.x + b* + noise > 0, where
// w*, b* are fixed (kWorldSeed) so that every node agrees on the same problem. Client i's
// training shard (kExamplesPerClient examples) and its own test shard come from the
// partition seed and i; the coordinator's test set from a stream of its own. Only the
// "iid" scheme is offered: a synthetic shard has no labels to skew.
//
// Parameters: "w" f32 [kDims] and "b" f32 [1]. Fit runs minibatch SGD with momentum from
// the round's config (ParseTrainConfig), adds FedProx's proximal term when the config has
// "proximal_mu" (capability "fedprox"), and keeps its momentum buffer in the ClientState
// when TaskOptions::persist_momentum is set.
//
// Contract: as greenfed::Task: Prepare once, then any other call; nothing throws; every
// parameter set from the network is checked (names, shapes, dtypes, finite) before use.
// Thread safety: one thread at a time (greenfed::Task's rule).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "greenfed/task.h"

namespace custom_task {

inline constexpr int64_t kDims = 8;                    // features per example
inline constexpr uint64_t kExamplesPerClient = 400;    // training examples per client shard
inline constexpr uint64_t kClientTestExamples = 200;   // per client, for federated evaluation
inline constexpr uint64_t kCentralTestExamples = 2000; // the coordinator's test set
inline constexpr uint64_t kWorldSeed = 20261201;       // w*, b*: the same on every node

class LogisticTask : public greenfed::Task {
 public:
  greenfed::Status Prepare(const greenfed::TaskOptions& options) override;
  greenfed::StatusOr<greenfed::Parameters> InitialParameters() override;
  greenfed::StatusOr<greenfed::FitResult> Fit(const greenfed::FitRequest& request,
                                              greenfed::ClientState& state) override;
  std::vector<std::string> Capabilities() const override;
  greenfed::StatusOr<greenfed::EvalResult> Evaluate(const greenfed::Parameters& parameters) override;
  uint64_t NumTrainExamples() const override { return train_.labels.size(); }
  std::vector<int64_t> TrainLabelHistogram() const override;
  greenfed::StatusOr<std::vector<uint64_t>> ShardSizes(const greenfed::PartitionSpec& spec) const override;

 private:
  struct Dataset {
    std::vector<float> features;  // row-major, labels.size() x kDims
    std::vector<float> labels;    // 0 or 1
  };
  // Reads "w" and "b" out of `parameters` after checking them.
  greenfed::Status Unpack(const greenfed::Parameters& parameters, std::vector<float>* w, float* b) const;

  greenfed::TaskOptions options_;  // as given to Prepare
  bool prepared_ = false;          // Prepare succeeded
  Dataset train_;                  // empty on the coordinator
  Dataset test_;                   // the central test set, or this client's test shard
};

}  // namespace custom_task
