// Internal to greenfed::report: report.md (every table as Markdown, the carbon
// intensities used, how to read the figures) and report.csv (one line per numeric
// cell of Tables 1 and 2, with unit and provenance).
// Contract: deterministic text for given tables and options.
// Thread safety: pure functions.
#pragma once

#include <string>

#include "greenfed/report/report.h"

namespace greenfed {
namespace report {
namespace internal {

std::string ReportMarkdown(const ReportTables& tables, const ReportOptions& options);
std::string ReportCsv(const ReportTables& tables);

}  // namespace internal
}  // namespace report
}  // namespace greenfed
