// Internal to greenfed::report: the trade-off table (docs/report.md, "Trade-off
// table"): one row per federated run with its strategy, uplink codec and sampling
// policy, what it moved and spent (uplink bytes, comm Wh, compute Wh, g CO2e) to
// the target (the whole run when it missed), how it ended (rounds to the target,
// "best X in R rounds" or "stopped by budget at accuracy X"), and what it cost or
// saved against its baseline: the run with the same data split and strategy, no
// codec and uniform sampling.
// Contract: deterministic for given runs; centralized runs are left out; labels are
// unique ("FL IID, fedavg, int8, uniform", then the run id when two runs share one).
// Thread safety: pure functions.
#pragma once

#include <string>
#include <vector>

#include "greenfed/report/report.h"

namespace greenfed {
namespace report {
namespace internal {

// The table and, in `labels`, one label per federated run in input order (the
// plot's legend). `runs_in_table` receives the indices into `runs` of its rows.
StatusOr<ReportTable> BuildTradeoffTable(const std::vector<RunData>& runs, const CarbonTable& table,
                                         std::vector<std::string>* labels, std::vector<size_t>* runs_in_table);

}  // namespace internal
}  // namespace report
}  // namespace greenfed
