#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdlib.h>

#include "greenfed/run_dir.h"

using namespace greenfed;

namespace {
std::string TempDir() {
  char tmpl[] = "/tmp/greenfed-rundir-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  return tmpl;
}
std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
EnergyRecord Rec(Phase phase, int64_t round, double j, EnergySource src = EnergySource::kModel) {
  EnergyRecord r;
  r.phase = phase;
  r.round = round;
  r.energy_j = j;
  r.wall_s = 1;
  r.cpu_s = 0.5;
  r.source = src;
  r.measured = IsMeasured(src);
  return r;
}
EnergyRecord Comm(int64_t round, double j, uint64_t sent, uint64_t received) {
  EnergyRecord r;
  r.phase = Phase::kComm;
  r.round = round;
  r.energy_j = j;
  r.bytes_sent = sent;
  r.bytes_received = received;
  r.source = EnergySource::kComm;
  return r;
}
}  // namespace

TEST_CASE("the ledger aggregates per node, round and source, comm counts once on clients, CO2e per node") {
  const std::string dir = TempDir() + "/run";
  auto rd = RunDir::Create(dir);
  REQUIRE(rd.ok());
  const NodeInfo coord{"coordinator", "coordinator", "USA", 1.5, 400};
  const NodeInfo client{"client-0", "client", "FRA", 1.0, 50};
  (*rd)->AddEnergy(client, {Rec(Phase::kIdle, 1, 100), Rec(Phase::kFit, 1, 3500), Comm(1, 360, 10, 20)});
  (*rd)->AddEnergy(client, {Rec(Phase::kIdle, 2, 7200)});  // late idle report for round 2
  (*rd)->AddEnergy(coord, {Rec(Phase::kAggregate, 1, 1000), Rec(Phase::kEvaluate, 1, 2600), Comm(1, 360, 20, 10)});
  RoundRow row;
  row.round = 1;
  row.test_accuracy = 0.5;
  (*rd)->AddRound(row);
  REQUIRE((*rd)->Flush().ok());

  const EnergyTotals r1 = (*rd)->RoundTotals(1);
  CHECK(r1.compute_j == 100 + 3500 + 1000 + 2600);
  CHECK(r1.compute_pue_j == 3600 + 3600 * 1.5);
  CHECK(r1.comm_j == 360);  // the coordinator's mirror is not added
  // client: (3600 J + 360 J) = 0.0011 kWh x 50 g = 0.055 g; coordinator: 3600 J x 1.5 = 0.0015 kWh x 400 = 0.6 g
  CHECK(r1.co2e_g == doctest::Approx(0.055 + 0.6));
  CHECK_FALSE(r1.measured());
  CHECK((*rd)->Totals(1).compute_j == r1.compute_j);
  CHECK((*rd)->Totals().compute_j == r1.compute_j + 7200);

  const std::string nodes = Read(dir + "/nodes.csv");
  CHECK(nodes.find("1,client-0,client,FRA,1,2,1,3500,0,0,100,3600,360,10,20,model,modelled") != std::string::npos);
  CHECK(nodes.find("1,coordinator,coordinator,USA,1.5,2,1,0,2600,1000,0,3600,360,20,10,model,modelled") !=
        std::string::npos);
  CHECK(nodes.find("2,client-0,client,FRA,1,1,0.5,0,0,0,7200,7200,0,0,0,model,modelled") != std::string::npos);
  const std::string rounds = Read(dir + "/rounds.csv");
  CHECK(rounds.find("\n1,0,0,0,0.5,") != std::string::npos);

  REQUIRE((*rd)->WriteSummary(SummaryInfo{"federated", 0.9, true, 1, 1, 0.91, 0.91, 10, 5, 6, "target", ""},
                              CarbonTable::BuiltIn(), {"FRA", "WORLD"})
              .ok());
  auto j = nlohmann::json::parse(Read(dir + "/summary.json"));
  CHECK(j["reached"] == true);
  CHECK(j["round_reached"] == 1);
  CHECK(j["energy"]["sources"] == nlohmann::json::array({"model"}));
  CHECK(j["to_target"]["compute_wh"].get<double>() == doctest::Approx(7200.0 / 3600));
  CHECK(j["energy"]["compute_wh"].get<double>() == doctest::Approx(14400.0 / 3600));
  // Re-expressed for France: (compute with PUE + client comm) x FRA intensity.
  const double fra = CarbonTable::BuiltIn().Lookup("FRA")->g_per_kwh;
  CHECK(j["co2e_g_by_country"]["FRA"].get<double>() ==
        doctest::Approx((3600 + 5400 + 7200 + 360) / 3.6e6 * fra));
}

TEST_CASE("a directory that already holds a run is refused, so nothing is overwritten") {
  const std::string dir = TempDir();
  auto first = RunDir::Create(dir);
  REQUIRE(first.ok());
  REQUIRE((*first)->Flush().ok());
  auto second = RunDir::Create(dir);
  CHECK(second.status().code() == Code::kFailedPrecondition);
  CHECK(second.status().message().find("already holds a run") != std::string::npos);
}

TEST_CASE("measured sources are reported as measured") {
  auto rd = RunDir::Create(TempDir() + "/m");
  REQUIRE(rd.ok());
  (*rd)->AddEnergy(NodeInfo{"centralized", "centralized", "FRA", 1.1, 50},
                   {Rec(Phase::kTrain, 1, 10, EnergySource::kRapl)});
  CHECK((*rd)->Totals().measured());
  REQUIRE((*rd)->Flush().ok());
  (*rd)->AddEnergy(NodeInfo{"centralized", "centralized", "FRA", 1.1, 50}, {Rec(Phase::kTrain, 1, 10)});
  CHECK_FALSE((*rd)->Totals().measured());  // mixed
}
