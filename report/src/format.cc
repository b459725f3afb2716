// Number and text formatting of the report (format.h), and FormatSignificant (report.h).
#include "format.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "greenfed/report/report.h"

namespace greenfed {
namespace report {
namespace internal {

std::string Printf(const char* format, double value) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), format, value);
  return buf;
}

// Accuracies are fractions of 10,000 test images: four decimals are exact.
std::string FormatAccuracy(double accuracy) { return Printf("%.4f", accuracy); }

// Targets as the user typed them, with at least two decimals: 0.9 -> "0.90".
std::string FormatTarget(double target) {
  for (int decimals = 2; decimals <= 6; ++decimals) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.*f", decimals, target);
    if (std::fabs(std::strtod(buf, nullptr) - target) < 1e-12) return buf;
  }
  return Printf("%.17g", target);
}

std::string FormatPlain(double value) { return Printf("%g", value); }

// Full precision for report.csv.
std::string FormatCsvNumber(double value) { return Printf("%.10g", value); }

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string Join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) out += sep;
    out += parts[i];
  }
  return out;
}

}  // namespace internal

std::string FormatSignificant(double value, int digits) {
  if (!std::isfinite(value)) return std::isnan(value) ? "nan" : (value > 0 ? "inf" : "-inf");
  if (value == 0) return "0";
  digits = std::max(1, digits);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*g", digits, value);
  double magnitude = std::fabs(value);
  if (std::strchr(buf, 'e') != nullptr && magnitude >= 1 && magnitude < 1e15) {
    // %g switched to an exponent because the integer part has more digits than
    // `digits`; print the already-rounded value plainly: 1.23e+04 -> 12300.
    std::snprintf(buf, sizeof(buf), "%.0f", std::strtod(buf, nullptr));
  }
  return buf;
}

}  // namespace report
}  // namespace greenfed
