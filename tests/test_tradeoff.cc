// The trade-off table and tradeoff.svg (report/src/tradeoff.cc): five canned FL run
// dirs (IID baseline, IID int8, IID carbon-aware, Dirichlet uniform, Dirichlet
// carbon-aware stopped by budget), every cell worked out by hand below, and golden
// files for the Markdown section and the plot (tests/golden/; regenerate with
// GREENFED_UPDATE_GOLDEN=1 after checking the cells).
#include <doctest/doctest.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "greenfed/carbon.h"
#include "greenfed/report/report.h"
#include "report_fixtures.h"

namespace greenfed {
namespace report {
namespace {

using greenfed::testing::kNodesHeader;
using greenfed::testing::kRoundsHeader;
using greenfed::testing::ReadText;
using greenfed::testing::TempDir;
using greenfed::testing::TestTable;
using greenfed::testing::WriteText;

struct Fixture {
  std::string name;                 // dir name and run id
  std::string scheme;               // "iid" or "dirichlet"
  std::string extra_config;         // JSON members added to config.json, with a leading comma
  std::vector<double> accuracies;   // per round
  std::string summary;              // reached/round_reached/stop_reason members
  std::string client_countries[2];  // client-0, client-1
  uint64_t uplink_bytes;            // per client per round
  double comm_j;                    // per client per round
};

// Per round: coordinator FRA PUE 1 compute 3,600 J; each client compute 7,200 J,
// comm `comm_j`, `uplink_bytes` sent, 1 MB received. All modelled.
std::string Write(const std::string& root, const Fixture& f) {
  const std::string dir = root + "/" + f.name;
  std::filesystem::create_directories(dir);
  WriteText(dir + "/config.json", R"({"format": 1, "kind": "federated", "run_id": ")" + f.name + R"(",
    "task": "fashion_mnist", "model": "cnn", "target_accuracy": 0.9, "max_rounds": 3,
    "partition": {"scheme": ")" + f.scheme + R"(", "alpha": 0.5, "seed": 1, "num_clients": 2},
    "strategy": {"name": "fedavg", "settings": "fedavg"},
    "node": {"country": "FRA", "pue": 1.0},
    "meter": {"kind": "model", "comm_kwh_per_gb": 0.00375})" + f.extra_config + "}");
  const double best = *std::max_element(f.accuracies.begin(), f.accuracies.end());
  WriteText(dir + "/summary.json", R"({"format": 1, "kind": "federated", "target_accuracy": 0.9, )" + f.summary +
                                       R"(, "rounds": )" + std::to_string(f.accuracies.size()) +
                                       R"(, "final_accuracy": )" + std::to_string(f.accuracies.back()) +
                                       R"(, "best_accuracy": )" + std::to_string(best) + R"(, "wall_s": 10})");
  std::string rounds = kRoundsHeader;
  std::string nodes = kNodesHeader;
  for (size_t r = 1; r <= f.accuracies.size(); ++r) {
    const std::string round = std::to_string(r);
    double g = 3600 / 3.6e6 * 50;
    for (const std::string& c : f.client_countries) g += (7200 + f.comm_j) / 3.6e6 * (c == "USA" ? 400 : 50);
    std::ostringstream row;
    row.precision(10);
    row << r << ",2,2,0," << f.accuracies[r - 1] << ",0.3,0.4,5," << 5 * r << ",2000000," << 2 * f.uplink_bytes
        << ",18000," << 2 * f.comm_j << "," << g << ",\n";
    rounds += row.str();
    nodes += round + ",coordinator,coordinator,FRA,1,5,5,0,3600,0,0,3600,0,0,0,model,modelled\n";
    for (int k = 0; k < 2; ++k) {
      std::ostringstream n;
      n << round << ",client-" << k << ",client," << f.client_countries[k] << ",1,5,10,7200,0,0,0,7200," << f.comm_j
        << "," << f.uplink_bytes << ",1000000,model,modelled\n";
      nodes += n.str();
    }
  }
  WriteText(dir + "/rounds.csv", rounds);
  WriteText(dir + "/nodes.csv", nodes);
  return dir;
}

const char kReached2[] = R"("reached": true, "round_reached": 2, "stop_reason": "target accuracy 0.9000 reached in round 2")";

// A, IID baseline (no uplink_codec, no sampling: a run dir from before either).
// Per round: coordinator 3600 J at FRA = 0.05 g; client USA (7200 + 360) J at 400 =
// 0.84 g; client FRA 7560 J at 50 = 0.105 g; 0.995 g a round, 1.99 g to round 2.
// Uplink 2 x 1 MB x 2 rounds = 4 MB; comm 4 x 360 J = 0.4 Wh; compute 2 x 18,000 J = 10 Wh.
Fixture Baseline() {
  return {"a-iid", "iid", "", {0.85, 0.905}, kReached2, {"USA", "FRA"}, 1000000, 360};
}
// B, IID int8: 0.25 MB uplink, comm 100 J per client-round, reaches at round 3.
// 1.5 MB; comm 600 J = 0.167 Wh; compute 15 Wh; grams 3 x (0.05 + 7300/3.6e6 x 400 +
// 7300/3.6e6 x 50) = 3 x 0.9625 = 2.8875: +0.8975 g = +45.1% of 1.99; accuracy at
// round 2 (the last both ran): 0.905 - 0.895 = +1 point.
Fixture Int8() {
  return {"b-int8", "iid", R"(, "uplink_codec": "int8")", {0.85, 0.895, 0.902},
          R"("reached": true, "round_reached": 3, "stop_reason": "target accuracy 0.9000 reached in round 3")",
          {"USA", "FRA"}, 250000, 100};
}
// C, IID carbon-aware, both sampled clients in FRA: 2 x (0.05 + 2 x 0.105) = 0.52 g,
// -1.47 g = -73.9%; accuracy at round 2: 0.905 - 0.901 = +0.4 points.
Fixture CarbonAware() {
  return {"c-carbon", "iid",
          R"js(, "uplink_codec": "none", "sampling": {"name": "carbon-aware", "settings": "carbon-aware(fairness_rounds=5)", "fairness_rounds": 5, "intensity_trace": ""})js",
          {0.86, 0.901}, kReached2, {"FRA", "FRA"}, 1000000, 360};
}
// D, Dirichlet uniform, misses the target: best 0.80 in 3 rounds.
Fixture DirichletUniform() {
  return {"d-dir", "dirichlet", R"(, "sampling": {"name": "uniform", "settings": "uniform"})", {0.7, 0.78, 0.8},
          R"("reached": false, "round_reached": null, "stop_reason": "max rounds (3) reached")", {"USA", "FRA"},
          1000000, 360};
}
// E, Dirichlet carbon-aware stopped by its budget after 2 rounds at 0.75: grams not
// comparable (neither reached); accuracy at round 2: 0.78 - 0.75 = +3 points.
Fixture DirichletCarbonBudget() {
  return {"e-dir-carbon", "dirichlet",
          R"js(, "sampling": {"name": "carbon-aware", "settings": "carbon-aware(fairness_rounds=3)"})js", {0.7, 0.75},
          R"("reached": false, "round_reached": null, "stop_reason": "budget: max-co2e-g 1 would be exceeded by round 3")",
          {"FRA", "FRA"}, 1000000, 360};
}

std::vector<RunData> LoadAll(const std::vector<std::string>& dirs) {
  std::vector<RunData> runs;
  for (const std::string& dir : dirs) {
    StatusOr<RunData> run = LoadRunDir(dir);
    REQUIRE_MESSAGE(run.ok(), run.status().ToString());
    runs.push_back(std::move(run).value());
  }
  return runs;
}

ReportOptions Options(const std::string& out) {
  ReportOptions o;
  o.countries = {"FRA"};
  o.centralized_pues = {};
  o.out_dir = out;
  o.tradeoff = true;
  return o;
}

std::string CellText(const ReportTable& t, const std::string& row, const std::string& column) {
  const ReportCell* c = t.Find(row, column);
  REQUIRE_MESSAGE(c != nullptr, row << " / " << column);
  return c->text;
}

void CheckGolden(const std::string& name, const std::string& text) {
  const std::string path = std::string(GREENFED_SOURCE_DIR) + "/tests/golden/" + name;
  if (std::getenv("GREENFED_UPDATE_GOLDEN") != nullptr) {
    WriteText(path, text);
    MESSAGE("rewrote " << path);
  }
  const std::string golden = ReadText(path);
  REQUIRE_MESSAGE(!golden.empty(), path << " is missing");
  CHECK_MESSAGE(text == golden, "differs from " << path << " (GREENFED_UPDATE_GOLDEN=1 rewrites it)");
}

}  // namespace

TEST_CASE("trade-off: every cell worked out by hand, the baseline per data split, labels and provenance") {
  TempDir tmp;
  std::vector<RunData> runs = LoadAll({Write(tmp.path(), Baseline()), Write(tmp.path(), Int8()),
                                       Write(tmp.path(), CarbonAware()), Write(tmp.path(), DirichletUniform()),
                                       Write(tmp.path(), DirichletCarbonBudget())});
  CHECK(runs[0].config.uplink_codec == "none");  // absent keys: the defaults
  CHECK(runs[0].config.sampling == "uniform");
  CHECK(runs[1].config.uplink_codec == "int8");
  CHECK(runs[2].config.sampling_settings == "carbon-aware(fairness_rounds=5)");
  StatusOr<ReportTables> report = BuildReport(runs, TestTable(), Options(tmp.path() + "/out"));
  REQUIRE_MESSAGE(report.ok(), report.status().ToString());
  REQUIRE(report->tradeoff.has_value());
  const ReportTable& t = *report->tradeoff;
  const std::string a = "FL IID, fedavg, none, uniform", b = "FL IID, fedavg, int8, uniform",
                    c = "FL IID, fedavg, none, carbon-aware", d = "FL Dirichlet α=0.5, fedavg, none, uniform",
                    e = "FL Dirichlet α=0.5, fedavg, none, carbon-aware";
  CHECK(t.rows == std::vector<std::string>{a, b, c, d, e});
  CHECK(report->tradeoff_labels == t.rows);
  CHECK(report->tradeoff_runs == std::vector<size_t>{0, 1, 2, 3, 4});

  CHECK(CellText(t, a, "uplink MB") == "4");
  CHECK(CellText(t, a, "comm Wh") == "0.4 (modelled)");
  CHECK(CellText(t, a, "compute Wh") == "10 (modelled)");
  CHECK(CellText(t, a, "g CO2e") == "1.99 (modelled)");
  CHECK(CellText(t, a, "outcome") == "2 rounds to 0.90");
  CHECK(CellText(t, a, "g CO2e vs baseline") == "baseline");
  CHECK(CellText(t, a, "accuracy cost vs baseline") == "baseline");
  CHECK(CellText(t, a, "compute energy is") == "modelled");

  CHECK(CellText(t, b, "uplink codec") == "int8");
  CHECK(CellText(t, b, "uplink MB") == "1.5");
  CHECK(CellText(t, b, "comm Wh") == "0.167 (modelled)");
  CHECK(CellText(t, b, "compute Wh") == "15 (modelled)");
  CHECK(CellText(t, b, "g CO2e") == "2.89 (modelled)");
  CHECK(CellText(t, b, "outcome") == "3 rounds to 0.90");
  CHECK(CellText(t, b, "g CO2e vs baseline") == "+0.898 g (+45.1%)");
  CHECK(CellText(t, b, "accuracy cost vs baseline") == "+1 pts at round 2");

  CHECK(CellText(t, c, "sampling") == "carbon-aware(fairness_rounds=5)");
  CHECK(CellText(t, c, "g CO2e") == "0.52 (modelled)");
  CHECK(CellText(t, c, "g CO2e vs baseline") == "−1.47 g (−73.9%)");
  CHECK(CellText(t, c, "accuracy cost vs baseline") == "+0.4 pts at round 2");
  CHECK(t.Find(c, "g CO2e vs baseline")->value.value() == doctest::Approx(-1.47));

  CHECK(CellText(t, d, "data") == "Dirichlet α=0.5");
  CHECK(CellText(t, d, "outcome") == "best 0.8000 in 3 rounds");
  CHECK(CellText(t, d, "g CO2e vs baseline") == "baseline");
  CHECK(CellText(t, e, "outcome") == "stopped by budget at accuracy 0.7500 after 2 rounds");
  CHECK(CellText(t, e, "g CO2e vs baseline") == "– (target not reached by both)");
  CHECK(CellText(t, e, "accuracy cost vs baseline") == "+3 pts at round 2");
  CHECK(t.Find(e, "outcome")->provenance == "not reached");

  // Without its baseline a row says so.
  std::vector<RunData> alone = LoadAll({runs[1].dir});
  StatusOr<ReportTables> solo = BuildReport(alone, TestTable(), Options(tmp.path() + "/solo"));
  REQUIRE(solo.ok());
  CHECK(CellText(*solo->tradeoff, b, "g CO2e vs baseline") == "–");
  CHECK(solo->tradeoff->notes.back().find("no baseline run") != std::string::npos);
  // Two runs with one label: the run id tells them apart.
  std::vector<RunData> twice = LoadAll({runs[0].dir, runs[0].dir});
  twice[1].config.run_id = "a-iid-again";
  StatusOr<ReportTables> both = BuildReport(twice, TestTable(), Options(tmp.path() + "/twice"));
  REQUIRE(both.ok());
  CHECK(both->tradeoff->rows == std::vector<std::string>{a + " (a-iid)", a + " (a-iid-again)"});
  // The baseline samples the same fraction of clients per round: at 0.5 the carbon-aware
  // row needs a uniform run at 0.5.
  std::vector<RunData> half = LoadAll({runs[0].dir, runs[2].dir});
  half[1].config.fraction_fit = 0.5;
  StatusOr<ReportTables> halves = BuildReport(half, TestTable(), Options(tmp.path() + "/half"));
  REQUIRE(halves.ok());
  CHECK(halves->tradeoff->rows[1] == c + ", fraction 0.5");
  CHECK(CellText(*halves->tradeoff, c + ", fraction 0.5", "g CO2e vs baseline") == "–");
  half[0].config.fraction_fit = 0.5;
  halves = BuildReport(half, TestTable(), Options(tmp.path() + "/half"));
  REQUIRE(halves.ok());
  CHECK(CellText(*halves->tradeoff, c + ", fraction 0.5", "g CO2e vs baseline") == "−1.47 g (−73.9%)");
  // Off by default.
  ReportOptions plain = Options(tmp.path() + "/plain");
  plain.tradeoff = false;
  CHECK_FALSE(BuildReport(runs, TestTable(), plain)->tradeoff.has_value());
}

TEST_CASE("trade-off: report.md section, report.csv rows and tradeoff.svg match their golden files") {
  TempDir tmp;
  std::vector<RunData> runs = LoadAll({Write(tmp.path(), Baseline()), Write(tmp.path(), Int8()),
                                       Write(tmp.path(), CarbonAware()), Write(tmp.path(), DirichletUniform()),
                                       Write(tmp.path(), DirichletCarbonBudget())});
  const ReportOptions options = Options(tmp.path() + "/out");
  StatusOr<ReportTables> report = BuildReport(runs, TestTable(), options);
  REQUIRE_MESSAGE(report.ok(), report.status().ToString());
  Status written = WriteReport(*report, runs, options);
  REQUIRE_MESSAGE(written.ok(), written.ToString());
  const std::string md = ReadText(options.out_dir + "/report.md");
  const size_t from = md.find("## Trade-off");
  REQUIRE(from != std::string::npos);
  const size_t to = md.find("## Runs", from);
  REQUIRE(to != std::string::npos);
  CheckGolden("tradeoff.md", md.substr(from, to - from));
  std::string csv_rows;
  std::istringstream csv(ReadText(options.out_dir + "/report.csv"));
  for (std::string line; std::getline(csv, line);) {
    if (line.rfind("tradeoff,", 0) == 0) csv_rows += line + "\n";
  }
  CheckGolden("tradeoff.csv", csv_rows);
  const std::string svg = ReadText(options.out_dir + "/tradeoff.svg");
  CHECK(svg.rfind("<svg ", 0) == 0);
  size_t polylines = 0;
  for (size_t at = svg.find("<polyline"); at != std::string::npos; at = svg.find("<polyline", at + 1)) ++polylines;
  CHECK(polylines == 5);  // one curve per run
  CHECK(svg.find(">carbon-aware(fairness_rounds=5)</text>") != std::string::npos);
  CheckGolden("tradeoff.svg", svg);
}

}  // namespace report
}  // namespace greenfed
