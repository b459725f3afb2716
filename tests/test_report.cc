// greenfed::report: three canned run dirs (centralized, FL IID, FL non-IID) with
// hand-made numbers, a hand-made carbon table, and every expected cell worked out
// by hand in the comments.
#include <doctest/doctest.h>
#include <stdlib.h>

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

// Centralized, USA, PUE 1.2, 1.8e6 J per epoch; reaches 0.90 at epoch 2 of 3.
// To target: 2 x 1.8e6 J = 3.6e6 J = 1 kWh.
std::string WriteCentralized(const std::string& root, double target = 0.90) {
  const std::string dir = root + "/central";
  std::filesystem::create_directories(dir);
  WriteText(dir + "/config.json", R"({"format": 1, "kind": "centralized", "run_id": "central-1",
    "task": "fashion_mnist", "model": "cnn", "target_accuracy": )" +
                                      std::to_string(target) + R"(,
    "max_rounds": 3,
    "train": {"epochs": 1, "batch_size": 64, "learning_rate": 0.01, "momentum": 0.9,
              "lr_decay": 1.0, "lr_schedule": "cosine"},
    "node": {"country": "USA", "pue": 1.2},
    "meter": {"kind": "model", "watts_per_core": 12.0, "watts_per_gb": 0.3725,
              "profile": "green-algorithms", "comm_kwh_per_gb": 0.00375}})");
  WriteText(dir + "/summary.json", R"({"format": 1, "kind": "centralized", "target_accuracy": )" +
                                       std::to_string(target) + R"(,
    "reached": true, "round_reached": 2, "rounds": 3, "final_accuracy": 0.91, "best_accuracy": 0.91,
    "wall_s": 301.0, "stop_reason": "max rounds"})");
  WriteText(dir + "/rounds.csv", std::string(kRoundsHeader) +
                                     "1,1,1,0,0.85,0.4,0.5,100,100,0,0,1800000,0,240,\n"
                                     "2,1,1,0,0.905,0.3,0.4,100,200,0,0,1800000,0,240,\n"
                                     "3,1,1,0,0.91,0.29,0.35,100,300,0,0,1800000,0,240,\n");
  WriteText(dir + "/nodes.csv", std::string(kNodesHeader) +
                                    "1,centralized,centralized,USA,1.2,100,150,1700000,100000,0,0,"
                                    "1800000,0,0,0,model,modelled\n"
                                    "2,centralized,centralized,USA,1.2,100,150,1700000,100000,0,0,"
                                    "1800000,0,0,0,model,modelled\n"
                                    "3,centralized,centralized,USA,1.2,100,150,1700000,100000,0,0,"
                                    "1800000,0,0,0,model,modelled\n");
  return dir;
}

// FL IID, reaches 0.90 at round 1 of 2. Counted rows (round <= 1):
//   round 0 coordinator FRA PUE 1.4: compute 36,000 J
//   round 1 coordinator FRA PUE 1.4: compute 360,000 J, comm 72,000 J (mirror: NOT counted)
//   round 1 client-0    USA PUE 1.0: compute 720,000 J, comm 36,000 J, 1 MB + 1 MB   (model)
//   round 1 client-1    FRA PUE 1.0: compute 720,000 J, comm 36,000 J, 1 MB + 1 MB   (rapl)
// compute x PUE = 396,000 x 1.4 + 1,440,000 = 1,994,400 J; comm = 72,000 J;
// total 2,066,400 J = 0.574 kWh.
std::string WriteFlIid(const std::string& root) {
  const std::string dir = root + "/fl-iid";
  std::filesystem::create_directories(dir);
  WriteText(dir + "/config.json", R"({"format": 1, "greenfed_version": "0.1.0", "kind": "federated",
    "run_id": "fl-iid-1", "task": "fashion_mnist", "model": "cnn", "target_accuracy": 0.90,
    "max_rounds": 2,
    "partition": {"scheme": "iid", "alpha": 0.5, "shards_per_client": 2, "seed": 1, "num_clients": 2},
    "train": {"epochs": 1, "batch_size": 32, "learning_rate": 0.05, "momentum": 0.9,
              "lr_decay": 0.99, "send_delta": false},
    "coordinator": {"bind": "tcp://127.0.0.1:5555"},
    "node": {"country": "FRA", "pue": 1.4},
    "meter": {"kind": "auto", "watts_per_core": 12.0, "watts_per_gb": 0.3725,
              "profile": "green-algorithms", "comm_kwh_per_gb": 0.00375}})");
  WriteText(dir + "/summary.json", R"({"format": 1, "kind": "federated", "target_accuracy": 0.9,
    "reached": true, "round_reached": 1, "rounds": 2, "final_accuracy": 0.91, "best_accuracy": 0.91,
    "wall_s": 61.0, "stop_reason": "max rounds"})");
  WriteText(dir + "/rounds.csv",
            std::string(kRoundsHeader) +
                "1,2,2,0,0.902,0.3,0.4,30,30.5,4000000,4000000,1836000,72000,102.2,0.9\n"
                "2,2,2,0,0.91,0.28,0.35,30,60.5,4000000,4000000,1800000,72000,100,\n");
  WriteText(dir + "/nodes.csv",
            std::string(kNodesHeader) +
                "0,coordinator,coordinator,FRA,1.4,3,3,0,36000,0,0,36000,0,0,0,model,modelled\n"
                "1,coordinator,coordinator,FRA,1.4,30,30,0,50000,10000,300000,360000,72000,2000000,"
                "2000000,model,modelled\n"
                "1,client-0,client,USA,1.0,30,60,700000,20000,0,0,720000,36000,1000000,1000000,"
                "model,modelled\n"
                "1,client-1,client,FRA,1.0,30,60,700000,20000,0,0,720000,36000,1000000,1000000,"
                "rapl,measured\n"
                "2,coordinator,coordinator,FRA,1.4,30,30,0,50000,10000,300000,360000,72000,2000000,"
                "2000000,model,modelled\n"
                "2,client-0,client,USA,1.0,30,60,700000,20000,0,0,720000,36000,1000000,1000000,"
                "model,modelled\n"
                "2,client-1,client,FRA,1.0,30,60,700000,20000,0,0,720000,36000,1000000,1000000,"
                "rapl,measured\n");
  return dir;
}

// FL non-IID (Dirichlet 0.5): never reaches 0.90; best 0.8842 after 3 rounds. Per round:
// coordinator FRA PUE 1.4 compute 3,600 J; client-0 USA compute 36,000 J, comm 3,600 J,
// 0.5 MB + 0.5 MB.
std::string WriteFlNonIid(const std::string& root) {
  const std::string dir = root + "/fl-dirichlet";
  std::filesystem::create_directories(dir);
  WriteText(dir + "/config.json", R"js({"format": 1, "kind": "federated", "run_id": "fl-dir-1",
    "task": "fashion_mnist", "model": "cnn", "target_accuracy": 0.9, "max_rounds": 3,
    "partition": {"scheme": "dirichlet", "alpha": 0.5, "shards_per_client": 2, "seed": 7, "num_clients": 1},
    "train": {"epochs": 2, "batch_size": 32, "learning_rate": 0.05, "momentum": 0.0, "lr_decay": 1.0},
    "strategy": {"name": "fedavgm", "settings": "fedavgm(server_learning_rate=1, server_momentum=0.9)"},
    "node": {"country": "FRA", "pue": 1.4},
    "meter": {"kind": "model", "watts_per_core": 12.0, "watts_per_gb": 0.3725,
              "profile": "green-algorithms", "comm_kwh_per_gb": 0.00375}})js");
  WriteText(dir + "/summary.json", R"({"format": 1, "kind": "federated", "target_accuracy": 0.9,
    "reached": false, "round_reached": null, "rounds": 3, "final_accuracy": 0.8842,
    "best_accuracy": 0.8842, "wall_s": 90.0, "stop_reason": "max rounds", "to_target": null})");
  WriteText(dir + "/rounds.csv",
            std::string(kRoundsHeader) +
                "1,1,1,0,0.80,0.6,0.7,30,30,1000000,1000000,39600,3600,4.47,\n"
                "2,1,1,0,0.86,0.5,0.6,30,60,1000000,1000000,39600,3600,4.47,\n"
                "3,1,1,0,0.8842,0.45,0.5,30,90,1000000,1000000,39600,3600,4.47,\n");
  std::string nodes = kNodesHeader;
  for (int r = 1; r <= 3; ++r) {
    const std::string round = std::to_string(r);
    nodes +=
        round +
        ",coordinator,coordinator,FRA,1.4,30,1,0,3600,0,0,3600,3600,500000,500000,model,modelled\n";
    nodes +=
        round + ",client-0,client,USA,1,30,3,36000,0,0,0,36000,3600,500000,500000,model,modelled\n";
  }
  WriteText(dir + "/nodes.csv", nodes);
  return dir;
}

ReportOptions TestOptions(const std::string& out_dir) {
  ReportOptions options;
  options.countries = {"USA", "FRA", "WORLD"};
  options.centralized_pues = {1.67, 1.11};
  options.out_dir = out_dir;
  options.command = "greenfed report runs/central runs/fl-iid runs/fl-dirichlet";
  options.generated_by = "greenfed 0.1.0, 2026-11-23 19:00 UTC";
  return options;
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

const ReportCell& Cell(const ReportTable& table, const std::string& row,
                       const std::string& column) {
  const ReportCell* cell = table.Find(row, column);
  REQUIRE_MESSAGE(cell != nullptr, (row + " / " + column));
  return *cell;
}

// Stack-based tag matcher: enough to prove the SVG is well-formed XML as written.
bool TagsBalanced(const std::string& xml) {
  std::vector<std::string> stack;
  size_t pos = 0;
  while ((pos = xml.find('<', pos)) != std::string::npos) {
    size_t end = xml.find('>', pos);
    if (end == std::string::npos) return false;
    std::string tag = xml.substr(pos + 1, end - pos - 1);
    pos = end + 1;
    if (tag.empty()) return false;
    if (tag[0] == '/') {
      if (stack.empty() || stack.back() != tag.substr(1)) return false;
      stack.pop_back();
    } else if (tag.back() != '/') {
      stack.push_back(tag.substr(0, tag.find_first_of(" \t\n")));
    }
  }
  return stack.empty();
}

bool AmpersandsEscaped(const std::string& xml) {
  for (size_t pos = xml.find('&'); pos != std::string::npos; pos = xml.find('&', pos + 1)) {
    const std::string rest = xml.substr(pos, 6);
    if (rest.rfind("&amp;", 0) != 0 && rest.rfind("&lt;", 0) != 0 && rest.rfind("&gt;", 0) != 0 &&
        rest.rfind("&quot;", 0) != 0 && rest.rfind("&apos;", 0) != 0) {
      return false;
    }
  }
  return true;
}

size_t Count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1))
    ++n;
  return n;
}

TEST_CASE("report: FormatSignificant keeps 3 significant digits without exponents") {
  CHECK(FormatSignificant(668.0000000001) == "668");
  CHECK(FormatSignificant(12345) == "12300");
  CHECK(FormatSignificant(1000.0000001) == "1000");
  CHECK(FormatSignificant(0.012345) == "0.0123");
  CHECK(FormatSignificant(28.7) == "28.7");
  CHECK(FormatSignificant(0) == "0");
  CHECK(FormatSignificant(1.5e-6) == "1.5e-06");
}

TEST_CASE("report: LoadRunDir parses the contract files") {
  TempDir tmp;
  StatusOr<RunData> run = LoadRunDir(WriteFlIid(tmp.path()));
  REQUIRE_MESSAGE(run.ok(), run.status().ToString());
  CHECK(run->config.kind == RunKind::kFederated);
  CHECK(run->config.run_id == "fl-iid-1");
  REQUIRE(run->config.partition.has_value());
  CHECK(run->config.partition->scheme == "iid");
  CHECK(run->config.partition->num_clients == 2);
  CHECK(run->config.learning_rate.value() == doctest::Approx(0.05));
  CHECK(run->summary.reached);
  CHECK(run->summary.round_reached.value() == 1);
  REQUIRE(run->rounds.size() == 2);
  CHECK(run->rounds[0].fed_accuracy.value() == doctest::Approx(0.9));
  CHECK_FALSE(run->rounds[1].fed_accuracy.has_value());
  REQUIRE(run->nodes.size() == 7);
  CHECK(run->nodes[3].node_id == "client-1");
  CHECK(run->nodes[3].role == NodeRole::kClient);
  CHECK(run->nodes[3].measured);
  CHECK(run->nodes[3].bytes_received == 1000000u);
}

TEST_CASE("report: Table 1 cells worked out by hand") {
  TempDir tmp;
  std::vector<RunData> runs =
      LoadAll({WriteCentralized(tmp.path()), WriteFlIid(tmp.path()), WriteFlNonIid(tmp.path())});
  StatusOr<ReportTables> report = BuildReport(runs, TestTable(), TestOptions(tmp.path() + "/out"));
  REQUIRE_MESSAGE(report.ok(), report.status().ToString());
  const ReportTable& t1 = report->emissions;

  CHECK(t1.rows ==
        std::vector<std::string>{"United States (USA)", "France (FRA)", "World (WORLD)"});
  CHECK(t1.columns == std::vector<std::string>{"Centralized, PUE 1.67", "Centralized, PUE 1.11",
                                               "FL IID", "FL non-IID (dirichlet α=0.5)"});

  SUBCASE("centralized: 1 kWh at the column's PUE, not its own 1.2") {
    // 1 kWh x 1.67 x 400 = 668; x 1.11 x 400 = 444; x 1.67 x 50 = 83.5; x 1.11 x 500 = 555.
    const ReportCell& usa = Cell(t1, "United States (USA)", "Centralized, PUE 1.67");
    CHECK(usa.text == "668");
    CHECK(usa.value.value() == doctest::Approx(668));
    CHECK(usa.unit == "g CO2e");
    CHECK(usa.provenance == "modelled");
    CHECK(Cell(t1, "United States (USA)", "Centralized, PUE 1.11").text == "444");
    CHECK(Cell(t1, "France (FRA)", "Centralized, PUE 1.67").text == "83.5");
    CHECK(Cell(t1, "World (WORLD)", "Centralized, PUE 1.11").text == "555");
  }
  SUBCASE("FL: own PUEs, client-side comm once, round 0 included, round 2 excluded") {
    // 0.574 kWh x 400 = 229.6 -> "230"; x 50 = 28.7; x 500 = 287.
    // Adding the coordinator's mirrored comm (72,000 J) would give 0.594 kWh -> 238 / 29.7 / 297.
    const ReportCell& usa = Cell(t1, "United States (USA)", "FL IID");
    CHECK(usa.text == "230");
    CHECK(usa.value.value() == doctest::Approx(229.6));
    // client-1 is measured (rapl), the rest and comm modelled.
    CHECK(usa.provenance == "mixed");
    CHECK(Cell(t1, "France (FRA)", "FL IID").text == "28.7");
    CHECK(Cell(t1, "World (WORLD)", "FL IID").text == "287");
  }
  SUBCASE("not reached shows the best accuracy and the rounds run") {
    const ReportCell& cell = Cell(t1, "France (FRA)", "FL non-IID (dirichlet α=0.5)");
    CHECK(cell.text == "not reached (best 0.8842 after 3 rounds)");
    CHECK_FALSE(cell.value.has_value());
    CHECK(cell.provenance == "not reached");
  }
}

TEST_CASE("report: Table 2 breakdown worked out by hand") {
  TempDir tmp;
  std::vector<RunData> runs =
      LoadAll({WriteCentralized(tmp.path()), WriteFlIid(tmp.path()), WriteFlNonIid(tmp.path())});
  StatusOr<ReportTables> report = BuildReport(runs, TestTable(), TestOptions(tmp.path() + "/out"));
  REQUIRE_MESSAGE(report.ok(), report.status().ToString());
  const ReportTable& t2 = report->breakdown;
  REQUIRE(t2.rows ==
          std::vector<std::string>{"Centralized", "FL IID", "FL non-IID (dirichlet α=0.5)"});

  // Centralized: 2 epochs, 200 s, 3.6e6 J = 1000 Wh; own 1 kWh x 1.2 x 400 = 480 g.
  CHECK(Cell(t2, "Centralized", "rounds/epochs").text == "2");
  CHECK(Cell(t2, "Centralized", "wall s").text == "200");
  CHECK(Cell(t2, "Centralized", "compute Wh centralized").text == "1000 (modelled)");
  CHECK(Cell(t2, "Centralized", "compute Wh clients").text == "–");
  CHECK(Cell(t2, "Centralized", "comm Wh").text == "–");
  CHECK(Cell(t2, "Centralized", "g CO2e (own country, own PUE)").text == "480 (modelled)");

  // FL IID to round 1: coordinator 396,000 J = 110 Wh; clients 1,440,000 J = 400 Wh (one
  // of two client rows measured -> mixed); comm 72,000 J = 20 Wh; 4 MB.
  // Own: coordinator 0.11 kWh x 1.4 x 50 = 7.7; client-0 0.21 kWh x 400 = 84;
  // client-1 0.21 kWh x 50 = 10.5; total 102.2 -> "102".
  CHECK(Cell(t2, "FL IID", "reached").text == "yes");
  CHECK(Cell(t2, "FL IID", "rounds/epochs").text == "1");
  CHECK(Cell(t2, "FL IID", "wall s").text == "30.5");
  CHECK(Cell(t2, "FL IID", "compute Wh coordinator").text == "110 (modelled)");
  CHECK(Cell(t2, "FL IID", "compute Wh clients").text == "400 (mixed)");
  CHECK(Cell(t2, "FL IID", "comm Wh").text == "20 (modelled)");
  CHECK(Cell(t2, "FL IID", "MB sent+received").text == "4");
  const ReportCell& own = Cell(t2, "FL IID", "g CO2e (own country, own PUE)");
  CHECK(own.text == "102 (mixed)");
  CHECK(own.value.value() == doctest::Approx(102.2));
  CHECK(Cell(t2, "FL IID", "energy sources").text == "model, rapl");
  CHECK(Cell(t2, "FL IID", "compute energy is").text == "mixed");

  // FL non-IID, whole run (3 rounds): coordinator 10,800 J = 3 Wh; client 108,000 J = 30 Wh;
  // comm 10,800 J = 3 Wh; 3 MB. Own: 10,800 J x 1.4 x 50 + 118,800 J x 400 = 0.21 + 13.2 = 13.41.
  CHECK(Cell(t2, "FL non-IID (dirichlet α=0.5)", "reached").text ==
        "no (best 0.8842 after 3 rounds)");
  CHECK(Cell(t2, "FL non-IID (dirichlet α=0.5)", "reached").value.value() == 0);
  CHECK(Cell(t2, "FL non-IID (dirichlet α=0.5)", "rounds/epochs").text == "3 (all)");
  CHECK(Cell(t2, "FL non-IID (dirichlet α=0.5)", "compute Wh coordinator").text == "3 (modelled)");
  CHECK(Cell(t2, "FL non-IID (dirichlet α=0.5)", "compute Wh clients").text == "30 (modelled)");
  CHECK(Cell(t2, "FL non-IID (dirichlet α=0.5)", "MB sent+received").text == "3");
  CHECK(Cell(t2, "FL non-IID (dirichlet α=0.5)", "g CO2e (own country, own PUE)").text ==
        "13.4 (modelled)");

  // Runs table shows both sides' settings.
  const ReportTable& settings = report->runs;
  CHECK(Cell(settings, "Centralized", "lr schedule").text == "cosine");
  CHECK(Cell(settings, "FL IID", "lr schedule").text == "×0.99 per round");
  CHECK(Cell(settings, "FL IID", "clients").text == "2");
  CHECK(Cell(settings, "FL non-IID (dirichlet α=0.5)", "partition").text ==
        "dirichlet α=0.5, seed 7");
  CHECK(Cell(settings, "Centralized", "batch").text == "64");
  // The strategy with its settings; a run dir from before strategies shows fedavg.
  CHECK(Cell(settings, "FL non-IID (dirichlet α=0.5)", "strategy").text ==
        "fedavgm(server_learning_rate=1, server_momentum=0.9)");
  CHECK(Cell(settings, "FL IID", "strategy").text == "fedavg");
  CHECK(Cell(settings, "Centralized", "strategy").text == "–");
}

// greenfed simulate with RAPL readable: rows of source rapl-split (measured, then apportioned
// by CPU share) are counted like any other and named as such in the energy sources and notes.
TEST_CASE("report: rapl-split rows count like the others and are labelled measured, then apportioned") {
  TempDir tmp;
  const std::string dir = WriteFlIid(tmp.path());
  std::string nodes = ReadText(dir + "/nodes.csv");
  for (size_t at; (at = nodes.find("rapl,measured")) != std::string::npos;) {
    nodes.replace(at, 13, "rapl-split,apportioned");
  }
  WriteText(dir + "/nodes.csv", nodes);
  std::vector<RunData> runs = LoadAll({WriteCentralized(tmp.path()), dir});
  StatusOr<ReportTables> report = BuildReport(runs, TestTable(), TestOptions(tmp.path() + "/out"));
  REQUIRE_MESSAGE(report.ok(), report.status().ToString());
  const ReportTable& t2 = report->breakdown;
  // The same joules as the rapl rows they replace: 400 Wh of clients to round 1.
  CHECK(Cell(t2, "FL IID", "compute Wh clients").text == "400 (mixed)");
  CHECK(Cell(t2, "FL IID", "energy sources").text == "model, rapl-split");
  bool apportioned = false, direct = false;
  std::string all_notes;
  for (const std::string& note : t2.notes) all_notes += note + "\n";
  INFO(all_notes);
  for (const std::string& note : t2.notes) {
    if (note.find("Measured, then apportioned (rapl-split): compute energy of FL IID (1 of 4 node records)") == 0) {
      apportioned = true;
    }
    if (note.find("Measured: compute energy of FL IID") == 0) direct = true;
  }
  CHECK(apportioned);
  CHECK_FALSE(direct);
}

TEST_CASE("report: a run stopped by its budget shows the accuracy it stopped at") {
  TempDir tmp;
  const std::string dir = WriteFlNonIid(tmp.path());
  WriteText(dir + "/summary.json", R"js({"format": 1, "kind": "federated", "target_accuracy": 0.9,
    "reached": false, "round_reached": null, "rounds": 3, "final_accuracy": 0.8842,
    "best_accuracy": 0.8842, "wall_s": 90.0,
    "stop_reason": "budget: max-co2e-g 20 would be exceeded by round 4 (estimated 21.3 g)"})js");
  std::vector<RunData> runs = LoadAll({WriteFlIid(tmp.path()), dir});
  CHECK(runs[1].summary.stopped_by_budget);
  CHECK_FALSE(runs[0].summary.stopped_by_budget);
  StatusOr<ReportTables> report = BuildReport(runs, TestTable(), TestOptions(tmp.path()));
  REQUIRE_MESSAGE(report.ok(), report.status().ToString());
  const std::string label = "FL non-IID (dirichlet α=0.5)";
  CHECK(Cell(report->emissions, "France (FRA)", label).text ==
        "stopped by budget at accuracy 0.8842 after 3 rounds");
  CHECK_FALSE(Cell(report->emissions, "France (FRA)", label).value.has_value());
  CHECK(Cell(report->breakdown, label, "reached").text ==
        "no (stopped by budget at accuracy 0.8842 after 3 rounds)");
  // A run that ran out of rounds still reads "not reached".
  CHECK(Cell(report->emissions, "France (FRA)", "FL IID").text == "28.7");
}

TEST_CASE("report: no centralized PUEs keeps the centralized run's own PUE") {
  TempDir tmp;
  std::vector<RunData> runs = LoadAll({WriteCentralized(tmp.path())});
  ReportOptions options = TestOptions(tmp.path());
  options.centralized_pues.clear();
  StatusOr<ReportTables> report = BuildReport(runs, TestTable(), options);
  REQUIRE_MESSAGE(report.ok(), report.status().ToString());
  // 1 kWh x its own PUE 1.2 x 50 = 60.
  CHECK(report->emissions.columns == std::vector<std::string>{"Centralized, own PUE"});
  CHECK(Cell(report->emissions, "France (FRA)", "Centralized, own PUE").text == "60");
}

TEST_CASE("report: runs sharing a label are told apart by run id, then dir name") {
  TempDir tmp;
  const std::string iid = WriteFlIid(tmp.path());
  std::filesystem::copy(iid, tmp.path() + "/fl-iid-copy");
  std::vector<RunData> runs = LoadAll(
      {WriteCentralized(tmp.path()), iid, tmp.path() + "/fl-iid-copy/", WriteFlNonIid(tmp.path())});
  StatusOr<ReportTables> report = BuildReport(runs, TestTable(), TestOptions(tmp.path()));
  REQUIRE_MESSAGE(report.ok(), report.status().ToString());
  CHECK(report->run_labels == std::vector<std::string>{"Centralized", "FL IID (fl-iid-1) [fl-iid]",
                                                       "FL IID (fl-iid-1) [fl-iid-copy]",
                                                       "FL non-IID (dirichlet α=0.5)"});
  // Same energy, same cells.
  CHECK(Cell(report->emissions, "France (FRA)", "FL IID (fl-iid-1) [fl-iid-copy]").text == "28.7");
}

TEST_CASE("report: runs made to different targets are refused") {
  TempDir tmp;
  const std::string central = WriteCentralized(tmp.path(), 0.85);
  const std::string iid = WriteFlIid(tmp.path());
  std::vector<RunData> runs = LoadAll({iid, central});
  StatusOr<ReportTables> report = BuildReport(runs, TestTable(), TestOptions(tmp.path()));
  REQUIRE_FALSE(report.ok());
  CHECK(report.status().code() == Code::kInvalidArgument);
  CHECK(report.status().message() == "run dir " + central + " has target 0.85 but " + iid +
                                         " has 0.90; compare runs made to the same target");
}

TEST_CASE("report: an unknown country gives the carbon table's NotFound") {
  TempDir tmp;
  std::vector<RunData> runs = LoadAll({WriteCentralized(tmp.path())});
  ReportOptions options = TestOptions(tmp.path());
  options.countries = {"USA", "XYZ"};
  StatusOr<ReportTables> report = BuildReport(runs, TestTable(), options);
  REQUIRE_FALSE(report.ok());
  CHECK(report.status().code() == Code::kNotFound);
  CHECK(report.status().message() == TestTable().Lookup("XYZ").status().message());
}

TEST_CASE("report: broken run dirs name the file and the line") {
  TempDir tmp;
  const std::string dir = WriteFlIid(tmp.path());

  SUBCASE("missing nodes.csv") {
    std::filesystem::remove(dir + "/nodes.csv");
    StatusOr<RunData> run = LoadRunDir(dir);
    REQUIRE_FALSE(run.ok());
    CHECK(run.status().code() == Code::kNotFound);
    CHECK(run.status().message().rfind(
              "run dir " + dir + ": cannot open nodes.csv (" + dir + "/nodes.csv)", 0) == 0);
  }
  SUBCASE("bad number in nodes.csv") {
    std::string nodes = ReadText(dir + "/nodes.csv");
    const size_t pos = nodes.find("360000");  // first on line 3
    REQUIRE(pos != std::string::npos);
    nodes.replace(pos, 6, "36O000");
    WriteText(dir + "/nodes.csv", nodes);
    StatusOr<RunData> run = LoadRunDir(dir);
    REQUIRE_FALSE(run.ok());
    CHECK(run.status().code() == Code::kDataLoss);
    CHECK(run.status().message() ==
          "run dir " + dir +
              ": nodes.csv line 3, column compute_j: '36O000' is not a finite number");
  }
  SUBCASE("nodes.csv with a header and no rows") {
    WriteText(dir + "/nodes.csv", kNodesHeader);
    StatusOr<RunData> run = LoadRunDir(dir);
    REQUIRE_FALSE(run.ok());
    CHECK(run.status().message() ==
          "run dir " + dir + ": nodes.csv has a header but no rows: the run completed no round");
  }
  SUBCASE("short row in rounds.csv") {
    WriteText(dir + "/rounds.csv", std::string(kRoundsHeader) + "1,2,2,0,0.902\n");
    StatusOr<RunData> run = LoadRunDir(dir);
    REQUIRE_FALSE(run.ok());
    CHECK(run.status().message() ==
          "run dir " + dir + ": rounds.csv line 2: 5 fields, header has 15");
  }
  SUBCASE("corrupt config.json") {
    WriteText(dir + "/config.json", "{\"format\": 1,\n \"kind\": }");
    StatusOr<RunData> run = LoadRunDir(dir);
    REQUIRE_FALSE(run.ok());
    CHECK(run.status().code() == Code::kDataLoss);
    CHECK(run.status().message().find("config.json") != std::string::npos);
    CHECK(run.status().message().find("line 2") != std::string::npos);
  }
  SUBCASE("no node rows up to round_reached") {
    std::string nodes = ReadText(dir + "/nodes.csv");
    nodes = nodes.substr(0, nodes.find('\n') + 1) +
            "2,client-0,client,USA,1.0,30,60,700000,20000,0,0,720000,36000,1,1,model,modelled\n";
    WriteText(dir + "/nodes.csv", nodes);
    StatusOr<RunData> run = LoadRunDir(dir);
    REQUIRE_FALSE(run.ok());
    CHECK(run.status().message() ==
          "run dir " + dir +
              ": nodes.csv has no row for rounds <= 1 (summary.json round_reached): no energy to "
              "target");
  }
  SUBCASE("round_reached without a rounds.csv row") {
    WriteText(dir + "/rounds.csv",
              std::string(kRoundsHeader) +
                  "2,2,2,0,0.91,0.28,0.35,30,60.5,4000000,4000000,1800000,72000,100,\n");
    StatusOr<RunData> run = LoadRunDir(dir);
    REQUIRE_FALSE(run.ok());
    CHECK(run.status().message() ==
          "run dir " + dir +
              ": summary.json round_reached is 1 but rounds.csv has no row for that round");
  }
}

TEST_CASE("report: WriteReport writes report.md, report.csv and a well-formed report.svg") {
  TempDir tmp;
  std::vector<RunData> runs =
      LoadAll({WriteCentralized(tmp.path()), WriteFlIid(tmp.path()), WriteFlNonIid(tmp.path())});
  const ReportOptions options = TestOptions(tmp.path() + "/out");
  StatusOr<ReportTables> report = BuildReport(runs, TestTable(), options);
  REQUIRE_MESSAGE(report.ok(), report.status().ToString());
  Status written = WriteReport(*report, runs, options);
  REQUIRE_MESSAGE(written.ok(), written.ToString());

  const std::string md = ReadText(options.out_dir + "/report.md");
  CHECK(md.rfind("# greenfed report: g CO2e to reach 0.90 test accuracy (fashion_mnist)", 0) == 0);
  CHECK(md.find(options.command) != std::string::npos);
  CHECK(md.find(options.generated_by) != std::string::npos);
  CHECK(
      md.find(
          "| United States (USA) | 668 | 444 | 230 | not reached (best 0.8842 after 3 rounds) |") !=
      std::string::npos);
  CHECK(md.find("![test accuracy against cumulative g CO2e](report.svg)") != std::string::npos);
  CHECK(md.find("## How to read this") != std::string::npos);
  // The provenance lines under Table 2 name the model and its parameters, and the counters.
  CHECK(md.find("- Modelled: compute energy of FL IID (3 of 4 node records) by the CPU power model "
                "'green-algorithms': J = CPU s x 12 W/core + resident GB x 0.3725 W/GB x wall s") !=
        std::string::npos);
  CHECK(md.find("- Measured: compute energy of FL IID (1 of 4 node records) by hardware counters "
                "(rapl).") != std::string::npos);
  CHECK(md.find("- Modelled: communication energy of FL IID = bytes moved x 0.00375 kWh/GB.") !=
        std::string::npos);

  const std::string csv = ReadText(options.out_dir + "/report.csv");
  CHECK(csv.rfind("table,row,column,value,unit,provenance\n", 0) == 0);
  CHECK(csv.find("\ntable1,United States (USA),\"Centralized, PUE 1.67\",668,g CO2e,modelled\n") !=
        std::string::npos);
  CHECK(csv.find("\ntable1,France (FRA),FL non-IID (dirichlet α=0.5),,g CO2e,not reached\n") !=
        std::string::npos);
  CHECK(csv.find("\ntable2,FL IID,comm Wh,20,Wh,modelled\n") != std::string::npos);
  CHECK(csv.find("\ntable2,FL IID,MB sent+received,4,MB,counted\n") != std::string::npos);
  // 3 x 4 Table 1 cells. Table 2 numbers: reached, rounds, best, wall and own g CO2e for every
  // run, plus compute Wh per role present and, for FL, comm Wh and MB: 5 + 1 and 5 + 2 + 2 (x 2).
  CHECK(Count(csv, "\ntable1,") == 12);
  CHECK(Count(csv, "\ntable2,") == 6 + 9 + 9);

  const std::string svg = ReadText(options.out_dir + "/report.svg");
  CHECK(svg.rfind("<svg ", 0) == 0);
  CHECK(svg.find("</svg>") == svg.size() - 7);
  CHECK(TagsBalanced(svg));
  CHECK(AmpersandsEscaped(svg));
  CHECK(Count(svg, "<polyline") == 3);
  CHECK(svg.find("stroke-dasharray") != std::string::npos);  // the target line
  CHECK(svg.find("target 0.90") != std::string::npos);
  CHECK(svg.find(">FL non-IID (dirichlet α=0.5)</text>") != std::string::npos);
  // The legend names each FL run's strategy, broken after a comma.
  CHECK(svg.find(">fedavgm(server_learning_rate=1,</text>") != std::string::npos);
  CHECK(svg.find(">server_momentum=0.9)</text>") != std::string::npos);
  CHECK(svg.find(">fedavg</text>") != std::string::npos);
  CHECK(md.find("| fedavgm(server_learning_rate=1, server_momentum=0.9) |") != std::string::npos);
}

}  // namespace
}  // namespace report
}  // namespace greenfed
