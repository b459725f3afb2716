// Carbon-aware sampling with real processes: `greenfed run --sampling carbon-aware
// --client-countries ...` on the small synthetic set, the fairness floor checked
// from nodes.csv (a client trained in a round iff it has train_j > 0 there), and
// the sampling flags' refusals (exit 2, naming the flag, the file and the line).
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "greenfed/run_dir_schema.h"
#include "run_helpers.h"
#include "synthetic_data.h"

namespace {

using greenfed::testing::MakeTempDir;
using greenfed::testing::ReadText;
using greenfed::testing::RunGreenfed;

}  // namespace

TEST_CASE("greenfed run --sampling carbon-aware on a mixed federation: cleanest grids first, the fairness floor "
          "holds in nodes.csv") {
  const std::string dir = MakeTempDir("greenfed-sampling-it"), data = dir + "/data", run = dir + "/fl";
  REQUIRE(::mkdir(data.c_str(), 0755) == 0);
  REQUIRE(greenfed::WriteSyntheticFashionMnist(data, 1500, 300, 3).ok());
  constexpr int kRounds = 6, kFloor = 3, kClients = 5;
  const std::vector<std::string> countries = {"FRA", "DEU", "USA", "CHN", "IND"};
  // 2 of 5 clients a round (fraction 0.4); every client at least once in any 3 rounds.
  const int rc = RunGreenfed(
      {"run", "--clients=5", "--max-rounds=" + std::to_string(kRounds), "--target-accuracy=1.0", "--lr=0.0005",
       "--insecure", "--fraction-fit=0.4", "--sampling=carbon-aware", "--fairness-rounds=" + std::to_string(kFloor),
       "--client-countries=FRA,DEU,USA,CHN,IND", "--meter=model", "--data-dir=" + data, "--run-dir=" + run},
      dir + "/run.log", 280);
  const std::string log = ReadText(dir + "/run.log");
  INFO(log);
  REQUIRE(rc == 0);
  const auto config = nlohmann::json::parse(ReadText(run + "/config.json"));
  CHECK(config["sampling"]["name"] == "carbon-aware");
  CHECK(config["sampling"]["settings"] == "carbon-aware(fairness_rounds=3)");
  CHECK(config["sampling"]["fairness_rounds"] == kFloor);
  // The progress log names the sampled clients with their grids.
  CHECK(log.find("; carbon-aware ") != std::string::npos);
  CHECK(log.find(" 0 FRA ") != std::string::npos);

  auto nodes = greenfed::ParseNodesCsv(ReadText(run + "/nodes.csv"));
  REQUIRE_MESSAGE(nodes.ok(), nodes.status().ToString());
  std::map<std::string, std::set<int64_t>> trained;  // node -> rounds with train_j > 0
  for (const auto& n : *nodes) {
    if (n.role != greenfed::NodeRole::kClient) continue;
    const int k = std::stoi(n.node_id.substr(n.node_id.find('-') + 1));
    CHECK(n.country == countries[static_cast<size_t>(k) % countries.size()]);  // cycled over the indices
    if (n.train_j > 0) trained[n.node_id].insert(n.round);
  }
  auto rounds = greenfed::ParseRoundsCsv(ReadText(run + "/rounds.csv"));
  REQUIRE(rounds.ok());
  REQUIRE(rounds->size() == static_cast<size_t>(kRounds));
  for (const auto& r : *rounds) CHECK(r.clients_sampled >= 2);
  // Every client trained at least once in every window of kFloor consecutive rounds.
  for (int k = 0; k < kClients; ++k) {
    const std::string id = "client-" + std::to_string(k);
    for (int start = 1; start + kFloor - 1 <= kRounds; ++start) {
      bool any = false;
      for (int r = start; r < start + kFloor; ++r) any = any || trained[id].count(r) > 0;
      CHECK_MESSAGE(any, id << " did not train in rounds " << start << ".." << start + kFloor - 1);
    }
  }
  // The cleanest grid (client-0, France) trains more often than the dirtiest (client-4,
  // India), which trains only when the floor makes it due.
  CHECK(trained["client-0"].size() > trained["client-4"].size());
  CHECK(log.find("IND* ") != std::string::npos);
}

TEST_CASE("sampling flags: a bad policy, a bad trace line and an unknown country exit 2 naming the problem") {
  const std::string dir = MakeTempDir("greenfed-sampling-it");
  const std::string trace = dir + "/trace.csv";
  std::ofstream(trace) << "country,utc_hour,g_co2e_per_kwh\nFRA,0,50\nFRA,25,50\n";
  struct Case {
    std::vector<std::string> args;
    std::string words;
  };
  const std::vector<Case> cases = {
      {{"run", "--clients=2", "--insecure", "--sampling=greedy"}, "--sampling must be one of uniform, carbon-aware"},
      {{"coordinator", "--insecure", "--sampling=carbon-aware", "--intensity-trace=" + trace},
       trace + ":3: utc_hour '25' is not an integer in 0..23"},
      {{"coordinator", "--insecure", "--sampling=carbon-aware", "--intensity-trace=" + dir + "/none.csv"},
       dir + "/none.csv"},
      {{"coordinator", "--insecure", "--intensity-trace=" + trace}, "--intensity-trace"},
      {{"coordinator", "--insecure", "--sampling=carbon-aware", "--fairness-rounds=0"}, "--fairness-rounds"},
      {{"run", "--clients=2", "--insecure", "--client-countries=FRA,XXX"}, "--client-countries"},
      {{"run", "--clients=2", "--insecure", "--client-countries=FRA", "--client-country=DEU"},
       "give --client-country or --client-countries, not both"},
      {{"compare", "--tradeoff", "--sampling-fraction=0"}, "--sampling-fraction must be in (0, 1]"},
  };
  for (const auto& c : cases) {
    const std::string log = dir + "/bad.log";
    const int rc = RunGreenfed(c.args, log, 60);
    const std::string text = ReadText(log);
    INFO(c.args[0] << " " << c.args.back() << " -> " << text);
    CHECK(rc == 2);
    CHECK(text.find(c.words) != std::string::npos);
  }
}

TEST_CASE("greenfed compare --tradeoff (codecs none and int8) runs the sampling pairs on the mixed federation and "
          "writes the trade-off report") {
  const std::string dir = MakeTempDir("greenfed-sampling-it"), data = dir + "/data", out = dir + "/results";
  REQUIRE(::mkdir(data.c_str(), 0755) == 0);
  REQUIRE(greenfed::WriteSyntheticFashionMnist(data, 1500, 300, 3).ok());
  const int rc = RunGreenfed({"compare", "--tradeoff", "--tradeoff-codecs=none,int8", "--clients=4", "--max-rounds=2",
                              "--target-accuracy=1.0", "--fl-lr=0.0005", "--meter=model", "--fairness-rounds=2",
                              "--data-dir=" + data, "--out=" + out},
                             dir + "/compare.log", 290);
  const std::string log = ReadText(dir + "/compare.log");
  INFO(log);
  REQUIRE(rc == 0);
  CHECK(log.find("--client-countries=FRA,DEU,USA,CHN,IND") != std::string::npos);
  CHECK(log.find("--fraction-fit=0.5 --sampling=carbon-aware --fairness-rounds=2") != std::string::npos);
  CHECK(log.find("--uplink-codec=int8") != std::string::npos);
  CHECK(log.find("--uplink-codec=none") == std::string::npos);  // codec none passes no codec flag
  std::string report_dir;
  for (const auto& entry : std::filesystem::directory_iterator(out)) {
    const std::string name = entry.path().filename().string();
    if (name.size() > 16 && name.compare(name.size() - 16, 16, "-tradeoff-report") == 0) report_dir = entry.path();
  }
  REQUIRE(!report_dir.empty());
  const std::string md = ReadText(report_dir + "/report.md");
  INFO(md);
  for (const char* row : {"| FL IID, fedavg, none, uniform |", "| FL IID, fedavg, int8, uniform |", "| FL IID, fedavg, none, uniform, fraction 0.5 |",
                          "| FL IID, fedavg, none, carbon-aware, fraction 0.5 |",
                          "| FL Dirichlet α=0.5, fedavg, none, uniform, fraction 0.5 |",
                          "| FL Dirichlet α=0.5, fedavg, none, carbon-aware, fraction 0.5 |"}) {
    CHECK(md.find(row) != std::string::npos);
  }
  CHECK(md.find("](tradeoff.svg)") != std::string::npos);
  CHECK(ReadText(report_dir + "/tradeoff.svg").rfind("<svg ", 0) == 0);
}

// The trade-off's FL runs take --engine like the plain comparison's (they ran as `run` whatever
// --engine said, until this test).
TEST_CASE("greenfed compare --tradeoff --engine simulate runs every FL run as simulate") {
  const std::string dir = MakeTempDir("greenfed-sampling-it"), data = dir + "/data", out = dir + "/results";
  REQUIRE(::mkdir(data.c_str(), 0755) == 0);
  REQUIRE(greenfed::WriteSyntheticFashionMnist(data, 1500, 300, 3).ok());
  const int rc = RunGreenfed({"compare", "--tradeoff", "--engine=simulate", "--tradeoff-codecs=none", "--clients=4",
                              "--max-rounds=1", "--target-accuracy=1.0", "--fl-lr=0.0005", "--meter=model",
                              "--data-dir=" + data, "--out=" + out},
                             dir + "/compare.log", 290);
  const std::string log = ReadText(dir + "/compare.log");
  INFO(log);
  REQUIRE(rc == 0);
  CHECK(log.find("==> greenfed run ") == std::string::npos);
  int runs = 0;
  for (const auto& entry : std::filesystem::directory_iterator(out)) {
    const std::string config = entry.path().string() + "/config.json";
    if (!std::filesystem::exists(config)) continue;
    ++runs;
    const std::string text = ReadText(config);
    INFO(entry.path().string());
    CHECK(text.find("\"engine\": \"simulate\"") != std::string::npos);
  }
  CHECK(runs == 5);  // codec none, then uniform and carbon-aware on IID and Dirichlet
}
