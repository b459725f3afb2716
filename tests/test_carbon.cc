// Carbon table (built-in and CSV parsing), lookups, PUE validation and CO2e arithmetic.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>

#include "greenfed/carbon.h"

namespace greenfed {
namespace {

namespace fs = std::filesystem;

constexpr char kHeader[] = "code,name,g_per_kwh,year,source\n";

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST_CASE("carbon: the built-in table parses and covers the required countries") {
  const CarbonTable table = CarbonTable::BuiltIn();
  CHECK(table.size() >= 31);
  const char* required[] = {"USA", "CHN", "FRA", "DEU", "GBR", "IND", "JPN",  "CAN", "BRA", "AUS",
                            "ZAF", "POL", "SWE", "NOR", "ITA", "ESP", "KOR",  "RUS", "MEX", "IDN",
                            "TUR", "SAU", "NLD", "BEL", "CHE", "AUT", "DNK",  "FIN", "IRL", "PRT",
                            "GRC", "CZE", "NZL", "ARG", "CHL", "EGY", "WORLD"};
  for (const char* code : required) {
    StatusOr<CarbonIntensity> row = table.Lookup(code);
    CHECK_MESSAGE(row.ok(), code);
  }
  for (const CarbonIntensity& row : table.All()) {
    CHECK_MESSAGE(row.g_per_kwh > 0, row.code);
    CHECK_MESSAGE(row.g_per_kwh < 1500, row.code);
    CHECK_MESSAGE(row.year == 2023, row.code);
    CHECK_MESSAGE(!row.name.empty(), row.code);
    CHECK_MESSAGE(Contains(row.source, "Our World in Data"), row.code);
  }
  StatusOr<CarbonIntensity> world = table.Lookup("WORLD");
  REQUIRE(world.ok());
  CHECK(world->g_per_kwh == 483.18);
  CHECK(world->name == "World");
}

TEST_CASE("carbon: the built-in table is the CSV in the source tree") {
  StatusOr<CarbonTable> file =
      CarbonTable::FromFile(std::string(GREENFED_SOURCE_DIR) + "/common/data/carbon_intensity.csv");
  REQUIRE_MESSAGE(file.ok(), file.status().ToString());
  const CarbonTable built_in = CarbonTable::BuiltIn();
  REQUIRE(file->size() == built_in.size());
  for (const CarbonIntensity& row : file->All()) {
    StatusOr<CarbonIntensity> same = built_in.Lookup(row.code);
    REQUIRE(same.ok());
    CHECK(same->g_per_kwh == row.g_per_kwh);
  }
}

TEST_CASE("carbon: lookups are case-insensitive, unknown codes give a hint") {
  const CarbonTable table = CarbonTable::BuiltIn();
  for (const char* code : {"FRA", "fra", "Fra"}) {
    StatusOr<CarbonIntensity> row = table.Lookup(code);
    REQUIRE_MESSAGE(row.ok(), code);
    CHECK(row->code == "FRA");
    CHECK(row->name == "France");
    CHECK(row->g_per_kwh == 53.26);
  }
  StatusOr<CarbonIntensity> unknown = table.Lookup("XYZ");
  CHECK(unknown.status().code() == Code::kNotFound);
  CHECK(unknown.status().message() ==
        "unknown country code 'XYZ' (use an ISO 3166-1 alpha-3 code such as USA, FRA, or WORLD; "
        "see `greenfed countries`)");
  CHECK(table.Lookup("FR").status().code() == Code::kNotFound);  // alpha-2 is not accepted
}

TEST_CASE("carbon: FromCsv accepts quoted fields and rejects malformed tables by line") {
  SUBCASE("valid, with quotes and CRLF") {
    StatusOr<CarbonTable> table =
        CarbonTable::FromCsv(std::string(kHeader) +
                             "aaa,\"Alpha, Republic of\",100.5,2023,\"src \"\"A\"\"\"\r\n"
                             "BBB,Beta,0,2022,src B\n\n");
    REQUIRE_MESSAGE(table.ok(), table.status().ToString());
    CHECK(table->size() == 2);
    StatusOr<CarbonIntensity> alpha = table->Lookup("AAA");
    REQUIRE(alpha.ok());
    CHECK(alpha->name == "Alpha, Republic of");
    CHECK(alpha->g_per_kwh == 100.5);
    CHECK(alpha->year == 2023);
    CHECK(alpha->source == "src \"A\"");
    CHECK(table->Lookup("bbb")->g_per_kwh == 0.0);
  }
  SUBCASE("bad header") {
    StatusOr<CarbonTable> table = CarbonTable::FromCsv("code,name,intensity,year,source\n");
    CHECK(table.status().code() == Code::kInvalidArgument);
    CHECK(table.status().message() ==
          "line 1: expected header 'code,name,g_per_kwh,year,source', got "
          "'code,name,intensity,year,source'");
  }
  SUBCASE("empty text") {
    CHECK(CarbonTable::FromCsv("").status().code() == Code::kInvalidArgument);
  }
  SUBCASE("bad number") {
    StatusOr<CarbonTable> table =
        CarbonTable::FromCsv(std::string(kHeader) + "AAA,A,1,2023,s\nBBB,B,12x,2023,s\n");
    CHECK(table.status().message() == "line 3: g_per_kwh '12x' is not a number");
  }
  SUBCASE("negative, infinite and NaN intensities") {
    for (const char* value : {"-1", "inf", "nan"}) {
      StatusOr<CarbonTable> table =
          CarbonTable::FromCsv(std::string(kHeader) + "AAA,A," + value + ",2023,s\n");
      CHECK_MESSAGE(table.status().code() == Code::kInvalidArgument, value);
      CHECK_MESSAGE(Contains(table.status().message(), "line 2: g_per_kwh"), value);
    }
  }
  SUBCASE("duplicate code, case-insensitively") {
    StatusOr<CarbonTable> table =
        CarbonTable::FromCsv(std::string(kHeader) + "FRA,France,53,2023,s\nfra,F,54,2023,s\n");
    CHECK(table.status().message() == "line 3: duplicate code 'FRA'");
  }
  SUBCASE("wrong column count") {
    StatusOr<CarbonTable> table = CarbonTable::FromCsv(std::string(kHeader) + "AAA,A,1,2023\n");
    CHECK(table.status().message() ==
          "line 2: expected 5 columns (code,name,g_per_kwh,year,source), got 4");
  }
  SUBCASE("bad year") {
    StatusOr<CarbonTable> table = CarbonTable::FromCsv(std::string(kHeader) + "AAA,A,1,20x3,s\n");
    CHECK(Contains(table.status().message(), "line 2: year '20x3'"));
  }
  SUBCASE("unterminated quote") {
    StatusOr<CarbonTable> table = CarbonTable::FromCsv(std::string(kHeader) + "AAA,\"A,1,2023,s\n");
    CHECK(table.status().message() == "line 2: unterminated quote");
  }
}

TEST_CASE("carbon: FromFile reads a table and names the file on errors") {
  std::string pattern = (fs::temp_directory_path() / "greenfed_carbon_XXXXXX").string();
  REQUIRE(mkdtemp(pattern.data()) != nullptr);
  const fs::path dir = pattern;
  const fs::path good = dir / "good.csv";
  const fs::path bad = dir / "bad.csv";
  {
    std::ofstream(good) << kHeader << "ZZZ,Zed,123,2021,test\n";
    std::ofstream(bad) << kHeader << "ZZZ,Zed,abc,2021,test\n";
  }
  StatusOr<CarbonTable> table = CarbonTable::FromFile(good.string());
  REQUIRE(table.ok());
  CHECK(table->Lookup("zzz")->g_per_kwh == 123.0);
  StatusOr<CarbonTable> broken = CarbonTable::FromFile(bad.string());
  CHECK(broken.status().message() == bad.string() + ": line 2: g_per_kwh 'abc' is not a number");
  StatusOr<CarbonTable> missing = CarbonTable::FromFile((dir / "missing.csv").string());
  CHECK(missing.status().code() == Code::kNotFound);
  std::error_code ec;
  fs::remove_all(dir, ec);
}

TEST_CASE("carbon: PUE must be finite and in [1, 5]") {
  CHECK(ValidatePue(1.0).ok());
  CHECK(ValidatePue(1.67).ok());
  CHECK(ValidatePue(5.0).ok());
  CHECK(ValidatePue(0.9).message() == "PUE must be in [1.0, 5] (got 0.9)");
  CHECK(ValidatePue(-1).message() == "PUE must be in [1.0, 5] (got -1)");
  // Issue 8: a forged report claimed PUE 1e300 and it was accepted.
  CHECK(ValidatePue(1e300).message() == "PUE must be in [1.0, 5] (got 1e+300)");
  CHECK(ValidatePue(-1).code() == Code::kInvalidArgument);
  CHECK_FALSE(ValidatePue(std::numeric_limits<double>::quiet_NaN()).ok());
  CHECK_FALSE(ValidatePue(std::numeric_limits<double>::infinity()).ok());
}

TEST_CASE("carbon: two nodes in two countries with different PUE") {
  const CarbonTable table = CarbonTable::BuiltIn();
  StatusOr<CarbonIntensity> fra = table.Lookup("FRA");  // 53.26 g/kWh
  StatusOr<CarbonIntensity> pol = table.Lookup("POL");  // 650.68 g/kWh
  REQUIRE(fra.ok());
  REQUIRE(pol.ok());
  CHECK(JoulesToKwh(3.6e6) == 1.0);
  // Node A: 1 kWh in France at PUE 1.2: 1 * 1.2 * 53.26 = 63.912 g.
  const double node_a_g = Co2eGrams(3.6e6, 1.2, fra->g_per_kwh);
  // Node B: 2 kWh in Poland at PUE 1.67: 2 * 1.67 * 650.68 = 2173.2712 g.
  const double node_b_g = Co2eGrams(7.2e6, 1.67, pol->g_per_kwh);
  CHECK(node_a_g == doctest::Approx(63.912).epsilon(1e-12));
  CHECK(node_b_g == doctest::Approx(2173.2712).epsilon(1e-12));
  CHECK(node_a_g + node_b_g == doctest::Approx(2237.1832).epsilon(1e-12));
  // Communication carries no PUE: 27000 J = 0.0075 kWh at the world average 483.18.
  CHECK(Co2eGrams(27000, 1.0, 483.18) == doctest::Approx(3.62385).epsilon(1e-12));
}

}  // namespace
}  // namespace greenfed

#include "greenfed/csv.h"

TEST_CASE("SplitCsvLine: quotes, escaped quotes, empty fields and errors") {
  auto f = greenfed::SplitCsvLine(R"(USA,"United States, of America",369,"say ""hi""",)");
  REQUIRE(f.ok());
  CHECK(*f == std::vector<std::string>{"USA", "United States, of America", "369", "say \"hi\"", ""});
  CHECK(greenfed::SplitCsvLine(R"(a,"open)").status().message() == "unterminated quote");
  CHECK(greenfed::SplitCsvLine(R"(a,"b"c)").status().message() == "text after a closing quote in field 2");
}
