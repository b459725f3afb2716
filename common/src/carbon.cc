#include "greenfed/carbon.h"

#include "greenfed/csv.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <utility>

namespace greenfed {
namespace internal {
// Generated at configure time from common/data/carbon_intensity.csv.
extern const char kBuiltInCarbonCsv[];
}  // namespace internal

namespace {

constexpr char kHeader[] = "code,name,g_per_kwh,year,source";
constexpr double kJoulesPerKwh = 3.6e6;

std::string Upper(std::string text) {
  for (char& c : text) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return text;
}

std::string FormatNumber(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%g", value);
  return buffer;
}

StatusOr<double> ParseIntensity(const std::string& text, int line_number) {
  const std::string where = "line " + std::to_string(line_number) + ": g_per_kwh '" + text + "'";
  if (text.empty()) return InvalidArgument(where + " is empty");
  errno = 0;
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || errno == ERANGE) {
    return InvalidArgument(where + " is not a number");
  }
  if (!std::isfinite(value) || value < 0) {
    return InvalidArgument(where + " must be a finite number >= 0");
  }
  return value;
}

StatusOr<int> ParseYear(const std::string& text, int line_number) {
  const std::string where = "line " + std::to_string(line_number) + ": year '" + text + "'";
  if (text.empty() || text.size() > 4 ||
      text.find_first_not_of("0123456789") != std::string::npos) {
    return InvalidArgument(where + " is not a year (expected up to 4 digits)");
  }
  return std::stoi(text);
}

}  // namespace

CarbonTable CarbonTable::BuiltIn() {
  StatusOr<CarbonTable> table = FromCsv(internal::kBuiltInCarbonCsv);
  // The built-in table is checked by tests/test_carbon.cc; a broken CSV in the tree
  // is a build defect, not a run-time condition.
  if (!table.ok()) {
    std::fprintf(stderr, "greenfed: built-in carbon table is invalid: %s\n",
                 table.status().ToString().c_str());
    std::abort();
  }
  return std::move(table).value();
}

StatusOr<CarbonTable> CarbonTable::FromCsv(const std::string& csv_text) {
  std::istringstream input(csv_text);
  std::string line;
  int line_number = 0;
  bool saw_header = false;
  CarbonTable table;
  while (std::getline(input, line)) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!saw_header) {
      if (line != kHeader) {
        return InvalidArgument("line 1: expected header '" + std::string(kHeader) + "', got '" +
                               line + "'");
      }
      saw_header = true;
      continue;
    }
    if (line.empty()) continue;
    auto split = SplitCsvLine(line);
    if (!split.ok()) return split.status().WithContext("line " + std::to_string(line_number));
    std::vector<std::string> fields = std::move(split).value();
    if (fields.size() != 5) {
      return InvalidArgument("line " + std::to_string(line_number) + ": expected 5 columns (" +
                             kHeader + "), got " + std::to_string(fields.size()));
    }
    CarbonIntensity row;
    row.code = Upper(fields[0]);
    if (row.code.empty()) {
      return InvalidArgument("line " + std::to_string(line_number) + ": empty code");
    }
    row.name = fields[1];
    GREENFED_ASSIGN_OR_RETURN(row.g_per_kwh, ParseIntensity(fields[2], line_number));
    GREENFED_ASSIGN_OR_RETURN(row.year, ParseYear(fields[3], line_number));
    row.source = fields[4];
    const std::string key = row.code;
    if (!table.rows_.emplace(key, std::move(row)).second) {
      return InvalidArgument("line " + std::to_string(line_number) + ": duplicate code '" + key +
                             "'");
    }
  }
  if (!saw_header)
    return InvalidArgument("empty carbon table (expected header '" + std::string(kHeader) + "')");
  return table;
}

StatusOr<CarbonTable> CarbonTable::FromFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return NotFound("cannot open carbon table " + path);
  std::ostringstream text;
  text << file.rdbuf();
  if (file.bad()) return DataLoss("error reading carbon table " + path);
  StatusOr<CarbonTable> table = FromCsv(text.str());
  if (!table.ok()) return table.status().WithContext(path);
  return table;
}

StatusOr<CarbonIntensity> CarbonTable::Lookup(const std::string& code) const {
  const auto it = rows_.find(Upper(code));
  if (it == rows_.end()) {
    return NotFound("unknown country code '" + code +
                    "' (use an ISO 3166-1 alpha-3 code such as USA, FRA, or WORLD; see "
                    "`greenfed countries`)");
  }
  return it->second;
}

std::vector<CarbonIntensity> CarbonTable::All() const {
  std::vector<CarbonIntensity> all;
  all.reserve(rows_.size());
  for (const auto& entry : rows_) all.push_back(entry.second);
  return all;
}

Status ValidatePue(double pue) {
  // 5.0 is far above any operating data centre (the 2023 average is about 1.6,
  // old sites rarely pass 3); a larger figure is a typo or a forged report.
  if (!std::isfinite(pue) || pue < 1.0 || pue > kMaxPue) {
    return InvalidArgument("PUE must be in [1.0, " + FormatNumber(kMaxPue) + "] (got " + FormatNumber(pue) + ")");
  }
  return Status::Ok();
}

double JoulesToKwh(double energy_j) { return energy_j / kJoulesPerKwh; }

double Co2eGrams(double energy_j, double pue, double g_per_kwh) {
  return JoulesToKwh(energy_j) * pue * g_per_kwh;
}

}  // namespace greenfed
