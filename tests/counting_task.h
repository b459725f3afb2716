// A fake Task for transport tests: parameters are one tensor "w" of 2 floats, each
// Fit adds 1, and accuracy grows by 0.3 per evaluation, so a target of 0.9 is met
// in round 3. The tests are then about sockets and trust, not training.
// Thread safety: as greenfed::Task (one thread at a time).
#pragma once

#include <cstdint>
#include <vector>

#include "greenfed/task.h"

namespace greenfed::testing {

class CountingTask : public Task {
 public:
  Status Prepare(const TaskOptions&) override { return Status::Ok(); }
  StatusOr<Parameters> InitialParameters() override { return Parameters{MakeFloatBlob("w", {2}, {0, 0})}; }
  StatusOr<FitResult> Fit(const FitRequest& request, ClientState&) override {
    auto v = FloatValues(request.parameters[0]);
    FitResult r;
    r.parameters = {MakeFloatBlob("w", {2}, {v[0] + 1, v[1] + 1})};
    r.num_examples = 10;
    r.train_loss = 0.25;
    return r;
  }
  StatusOr<EvalResult> Evaluate(const Parameters&) override {
    calls_ += 1;
    return EvalResult{1.0, 0.3 * calls_ + 1e-9, 100};
  }
  uint64_t NumTrainExamples() const override { return 10; }
  std::vector<int64_t> TrainLabelHistogram() const override { return {10}; }

 private:
  int calls_ = 0;
};

}  // namespace greenfed::testing
