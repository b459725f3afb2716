// Internal to greenfed::report: number and text formatting shared by the tables,
// the Markdown/CSV writers and the SVG plot. Not installed; include from report/src only.
// Contract: pure functions of their arguments, locale-independent printf formats.
// Thread safety: pure functions and constants.
#pragma once

#include <string>
#include <vector>

namespace greenfed {
namespace report {
namespace internal {

inline constexpr double kJoulesPerWh = 3600.0;
inline constexpr double kBytesPerMb = 1e6;
inline constexpr const char* kDash = "–";  // an absent setting or cell

// snprintf of one double into a std::string.
std::string Printf(const char* format, double value);
// Accuracies are fractions of 10,000 test images: four decimals are exact.
std::string FormatAccuracy(double accuracy);
// Targets as the user typed them, with at least two decimals: 0.9 -> "0.90".
std::string FormatTarget(double target);
// %g.
std::string FormatPlain(double value);
// Full precision for report.csv (%.10g).
std::string FormatCsvNumber(double value);
std::string Lower(std::string s);
std::string Join(const std::vector<std::string>& parts, const std::string& sep);

}  // namespace internal
}  // namespace report
}  // namespace greenfed
