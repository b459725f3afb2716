// Budget decision (budget.h).
#include "greenfed/coordinator/budget.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "greenfed/run_dir_schema.h"

namespace greenfed {
namespace {

// Three significant digits, without an exponent for values >= 1: 13.14 -> "13.1",
// 12345 -> "12300", 0.002134 -> "0.00213".
std::string Sig3(double value) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.3g", value);
  if (std::strchr(buf, 'e') != nullptr && std::fabs(value) >= 1) {
    std::snprintf(buf, sizeof(buf), "%.0f", std::strtod(buf, nullptr));
  }
  return buf;
}

std::string Plain(double value) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%g", value);
  return buf;
}

}  // namespace

Status ValidateBudgetOptions(const BudgetOptions& b) {
  if (!std::isfinite(b.max_co2e_g) || b.max_co2e_g < 0) {
    return InvalidArgument("--max-co2e-g must be a finite number >= 0 (0 = no limit), got " + Plain(b.max_co2e_g));
  }
  if (!std::isfinite(b.max_wh) || b.max_wh < 0) {
    return InvalidArgument("--max-wh must be a finite number >= 0 (0 = no limit), got " + Plain(b.max_wh));
  }
  return Status::Ok();
}

std::optional<std::string> BudgetStopReason(const BudgetOptions& budget, const BudgetSpend& total,
                                            const BudgetSpend& last_round, uint64_t next_round) {
  const std::string round = std::to_string(next_round);
  if (budget.max_co2e_g > 0) {
    const double estimate_g = total.co2e_g + last_round.co2e_g;
    if (estimate_g > budget.max_co2e_g) {
      return std::string(summary_key::kBudgetStopPrefix) + "max-co2e-g " + Plain(budget.max_co2e_g) +
             " would be exceeded by round " + round + " (estimated " + Sig3(estimate_g) + " g)";
    }
  }
  if (budget.max_wh > 0) {
    const double estimate_wh = total.wh + last_round.wh;
    if (estimate_wh > budget.max_wh) {
      return std::string(summary_key::kBudgetStopPrefix) + "max-wh " + Plain(budget.max_wh) + " would be exceeded by round " +
             round + " (estimated " + Sig3(estimate_wh) + " Wh)";
    }
  }
  return std::nullopt;
}

}  // namespace greenfed
