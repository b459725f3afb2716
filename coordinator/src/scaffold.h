// Internal to greenfed::coordinator: SCAFFOLD (Karimireddy et al. 2020,
// Algorithm 1 with option II for the client control update), made by MakeStrategy.
//
// Server state: x (the global model, kept by RoundMachine) and c, the server
// control variate: one value per float parameter, zeros at the start. Every Fit
// carries c as tensor group "control" (same names, dtypes and shapes as the
// model's float tensors). Each client i returns its model update dy_i (weights or
// delta; a delta y_i - x with send_delta) and group "control" = dc_i = c_i+ - c_i.
// With S the clients whose results were accepted and N the federation size:
//   dx = (1/|S|) sum dy_i,  dc = (1/|S|) sum dc_i          (unweighted, as the paper)
//   x <- x + eta_g dx       (eta_g = StrategyOptions::server_learning_rate)
//   c <- c + (|S|/N) dc
// c is the strategy's SaveState (layout "GFSC" | u64 n | n doubles).
// Memory: streamed; sums of dy and dc plus c, three model copies in double and c
// once more in the model's dtype, whatever the number of clients.
// Thread safety: as Strategy (not thread-safe).
#pragma once

#include <memory>

#include "greenfed/coordinator/strategy.h"

namespace greenfed::detail {

// InvalidArgument when federation_size is 0.
StatusOr<std::unique_ptr<Strategy>> MakeScaffold(const StrategyOptions& options);

}  // namespace greenfed::detail
