// Carbon intensity of electricity by country, and the CO2e arithmetic.
//
// The table ships as common/data/carbon_intensity.csv, compiled into the library so
// that no run ever needs the network or a data file at run time; a user may load
// another table from a file with the same columns.
// co2e_g = energy_kwh * pue * intensity_g_per_kwh   (compute energy)
// co2e_g = energy_kwh * intensity_g_per_kwh         (communication: no PUE)
//
// Thread safety: CarbonTable is immutable after loading; safe to share.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "greenfed/status.h"

namespace greenfed {

struct CarbonIntensity {
  std::string code;        // ISO 3166-1 alpha-3, or "WORLD"
  std::string name;        // "France"
  double g_per_kwh = 0;    // grams CO2e per kWh of electricity
  int year = 0;            // year of the figure
  std::string source;      // e.g. "Ember via Our World in Data"
};

class CarbonTable {
 public:
  // The table compiled into greenfed.
  static CarbonTable BuiltIn();
  // CSV with header: code,name,g_per_kwh,year,source
  static StatusOr<CarbonTable> FromCsv(const std::string& csv_text);
  static StatusOr<CarbonTable> FromFile(const std::string& path);

  // Case-insensitive lookup; unknown code -> NotFound naming the code and a hint.
  StatusOr<CarbonIntensity> Lookup(const std::string& code) const;
  std::vector<CarbonIntensity> All() const;
  size_t size() const { return rows_.size(); }

 private:
  std::map<std::string, CarbonIntensity> rows_;  // key: upper-case code
};

// Rejects PUE < 1.0 (a data centre cannot use less than its IT load) and non-finite.
constexpr double kMaxPue = 5.0;  // upper bound accepted for a PUE (carbon.cc says why)
Status ValidatePue(double pue);

double JoulesToKwh(double energy_j);
double Co2eGrams(double energy_j, double pue, double g_per_kwh);

}  // namespace greenfed
