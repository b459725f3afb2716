// Carbon and energy budgets of a federated run (`--max-co2e-g`, `--max-wh`;
// docs/energy.md, "Budgets"). After each completed round the round machine asks
// BudgetStopReason whether the next round may start: with the ledger's total so far
// T and the cost of the round just completed C (the estimate of the next round's
// cost), the run stops before round r+1 when T + C > the budget. Round 1 always
// runs: there is no estimate before it. A budget of 0 means no limit.
//
// Contract: pure functions of their arguments. The spend figures are what
// summary.json reports: co2e_g with each node at its own intensity and PUE, and
// total_wh = (compute x PUE + communication) / 3600.
// Thread safety: pure functions on values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "greenfed/status.h"

namespace greenfed {

struct BudgetOptions {
  double max_co2e_g = 0;  // g CO2e the whole run may emit; 0 = no limit
  double max_wh = 0;      // Wh (compute x PUE + communication) the run may use; 0 = no limit
  bool enabled() const { return max_co2e_g > 0 || max_wh > 0; }
};
// InvalidArgument naming the flag for a negative or non-finite limit.
Status ValidateBudgetOptions(const BudgetOptions& budget);

// Energy booked in the ledger, in the units of the budget.
struct BudgetSpend {
  double co2e_g = 0;  // each node at its own intensity and PUE
  double wh = 0;      // compute x PUE + communication
};

// Empty: round `next_round` may start. Otherwise the stop reason, which starts with
// summary_key::kBudgetStopPrefix (run_dir_schema.h), e.g.
// "budget: max-co2e-g 12.5 would be exceeded by round 7 (estimated 13.1 g)".
// The g CO2e limit is checked first, then the Wh limit.
std::optional<std::string> BudgetStopReason(const BudgetOptions& budget, const BudgetSpend& total,
                                            const BudgetSpend& last_round, uint64_t next_round);

}  // namespace greenfed
