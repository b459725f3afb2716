// Internal to greenfed::report: the accuracy-against-cumulative-g-CO2e plot
// (report.svg), one polyline per run on a log x axis, the target as a dashed line,
// a legend with each run's label.
// Contract: deterministic text for given tables and runs (same input, same bytes).
// Thread safety: pure function.
#pragma once

#include <string>
#include <vector>

#include "greenfed/report/report.h"

namespace greenfed {
namespace report {
namespace internal {

// The SVG document; runs[i] is drawn under tables.run_labels[i].
std::string ReportSvg(const ReportTables& tables, const std::vector<RunData>& runs);
// tradeoff.svg: the same plot for the trade-off table's runs (tables.tradeoff_runs),
// labelled by its rows, with the sampling policy under each label.
std::string TradeoffSvg(const ReportTables& tables, const std::vector<RunData>& runs);

}  // namespace internal
}  // namespace report
}  // namespace greenfed
