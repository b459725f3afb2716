#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdlib.h>

#include "greenfed/digest.h"
#include "greenfed/run_dir.h"
#include "run_helpers.h"

using namespace greenfed;

namespace {
using greenfed::testing::MakeTempDir;
using greenfed::testing::ReadText;

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
  const std::string dir = MakeTempDir("greenfed-rundir") + "/run";
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

  const std::string nodes = ReadText(dir + "/nodes.csv");
  CHECK(nodes.find("1,client-0,client,FRA,1,2,1,3500,0,0,100,3600,360,10,20,model,modelled") != std::string::npos);
  CHECK(nodes.find("1,coordinator,coordinator,USA,1.5,2,1,0,2600,1000,0,3600,360,20,10,model,modelled") !=
        std::string::npos);
  CHECK(nodes.find("2,client-0,client,FRA,1,1,0.5,0,0,0,7200,7200,0,0,0,model,modelled") != std::string::npos);
  const std::string rounds = ReadText(dir + "/rounds.csv");
  CHECK(rounds.find("\n1,0,0,0,0.5,") != std::string::npos);

  REQUIRE((*rd)->WriteSummary(SummaryInfo{"federated", 0.9, true, 1, 1, 0.91, 0.91, 10, 5, 6, "target", ""},
                              CarbonTable::BuiltIn(), {"FRA", "WORLD"})
              .ok());
  auto j = nlohmann::json::parse(ReadText(dir + "/summary.json"));
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
  const std::string dir = MakeTempDir("greenfed-rundir");
  auto first = RunDir::Create(dir);
  REQUIRE(first.ok());
  REQUIRE((*first)->Flush().ok());
  auto second = RunDir::Create(dir);
  CHECK(second.status().code() == Code::kFailedPrecondition);
  CHECK(second.status().message().find("already holds a run") != std::string::npos);
}

TEST_CASE("measured sources are reported as measured") {
  auto rd = RunDir::Create(MakeTempDir("greenfed-rundir") + "/m");
  REQUIRE(rd.ok());
  (*rd)->AddEnergy(NodeInfo{"centralized", "centralized", "FRA", 1.1, 50},
                   {Rec(Phase::kTrain, 1, 10, EnergySource::kRapl)});
  CHECK((*rd)->Totals().measured());
  CHECK(std::string((*rd)->Totals().label()) == "measured");
  REQUIRE((*rd)->Flush().ok());
  (*rd)->AddEnergy(NodeInfo{"centralized", "centralized", "FRA", 1.1, 50}, {Rec(Phase::kTrain, 1, 10)});
  CHECK_FALSE((*rd)->Totals().measured());  // mixed
  CHECK(std::string((*rd)->Totals().label()) == "modelled");
}

TEST_CASE("RAPL energy apportioned over virtual clients is labelled measured, apportioned") {
  auto rd = RunDir::Create(MakeTempDir("greenfed-rundir") + "/split");
  REQUIRE(rd.ok());
  (*rd)->AddEnergy(NodeInfo{"client-0", "client", "FRA", 1.0, 50}, {Rec(Phase::kTrain, 1, 10, EnergySource::kRaplSplit)});
  (*rd)->AddEnergy(NodeInfo{"coordinator", "coordinator", "FRA", 1.0, 50},
                   {Rec(Phase::kAggregate, 1, 2, EnergySource::kRapl)});
  CHECK((*rd)->Totals().measured());
  CHECK(std::string((*rd)->Totals().label()) == "measured, apportioned");
}

TEST_CASE("schema round trip: RunDir writes rounds.csv and nodes.csv, the schema reader gives the rows back") {
  const std::string dir = MakeTempDir("greenfed-rundir") + "/rt";
  auto rd = RunDir::Create(dir);
  REQUIRE(rd.ok());
  const NodeInfo coord{"coordinator", "coordinator", "USA", 1.5, 400};
  const NodeInfo client{"client-1", "client", "FRA", 1.0, 50};
  (*rd)->AddEnergy(client, {Rec(Phase::kFit, 1, 3500.25, EnergySource::kRapl), Comm(1, 0.125, 10, 20)});
  (*rd)->AddEnergy(coord, {Rec(Phase::kAggregate, 1, 1000), Rec(Phase::kEvaluate, 2, 26)});
  for (int64_t r = 1; r <= 2; ++r) {
    RoundRow row;
    row.round = r;
    row.clients_sampled = 2;
    row.clients_succeeded = 1;
    row.clients_failed = 1;
    row.test_accuracy = 0.625;
    row.test_loss = 1.5;
    row.train_loss = 2.25;
    row.round_s = 3.5;
    row.elapsed_s = 7.0 * static_cast<double>(r);
    row.bytes_sent = 11;
    row.bytes_received = 12;
    if (r == 2) row.fed_accuracy = 0.5;
    (*rd)->AddRound(row);
  }
  REQUIRE((*rd)->Flush().ok());

  auto rounds = ParseRoundsCsv(ReadText(dir + "/rounds.csv"));
  REQUIRE_MESSAGE(rounds.ok(), rounds.status().ToString());
  REQUIRE(rounds->size() == 2);
  for (size_t i = 0; i < 2; ++i) {
    const RoundRow& w = (*rd)->rounds()[i];
    const RoundRow& r = (*rounds)[i];
    CHECK(r.round == w.round);
    CHECK(r.clients_sampled == w.clients_sampled);
    CHECK(r.clients_succeeded == w.clients_succeeded);
    CHECK(r.clients_failed == w.clients_failed);
    CHECK(r.test_accuracy == w.test_accuracy);
    CHECK(r.test_loss == w.test_loss);
    CHECK(r.train_loss == w.train_loss);
    CHECK(r.round_s == w.round_s);
    CHECK(r.elapsed_s == w.elapsed_s);
    CHECK(r.bytes_sent == w.bytes_sent);
    CHECK(r.bytes_received == w.bytes_received);
    CHECK(r.fed_accuracy == w.fed_accuracy);
    const EnergyTotals t = (*rd)->RoundTotals(w.round);
    CHECK(r.energy_j == t.compute_j);
    CHECK(r.comm_j == t.comm_j);
    CHECK(r.co2e_g == doctest::Approx(t.co2e_g).epsilon(1e-9));
  }

  auto nodes = ParseNodesCsv(ReadText(dir + "/nodes.csv"));
  REQUIRE_MESSAGE(nodes.ok(), nodes.status().ToString());
  const std::vector<NodeRow> ledger = (*rd)->NodeRows();
  REQUIRE(nodes->size() == ledger.size());
  for (size_t i = 0; i < ledger.size(); ++i) {
    auto w = ledger[i].CsvRow();
    REQUIRE(w.ok());
    const NodesCsvRow& r = (*nodes)[i];
    CHECK(r.round == w->round);
    CHECK(r.node_id == w->node_id);
    CHECK(r.role == w->role);
    CHECK(r.country == w->country);
    CHECK(r.pue == w->pue);
    CHECK(r.wall_s == w->wall_s);
    CHECK(r.cpu_s == w->cpu_s);
    CHECK(r.train_j == w->train_j);
    CHECK(r.evaluate_j == w->evaluate_j);
    CHECK(r.aggregate_j == w->aggregate_j);
    CHECK(r.idle_j == w->idle_j);
    CHECK(r.compute_j == w->compute_j);
    CHECK(r.comm_j == w->comm_j);
    CHECK(r.bytes_sent == w->bytes_sent);
    CHECK(r.bytes_received == w->bytes_received);
    CHECK(r.source == w->source);
    CHECK(r.measured == w->measured);
    // Formatting the parsed row gives the file's line back, byte for byte.
    CHECK(FormatNodesCsvRow(r) == FormatNodesCsvRow(*w));
  }
  CHECK(ReadText(dir + "/rounds.csv").rfind(RoundsCsvHeader(), 0) == 0);
  CHECK(ReadText(dir + "/nodes.csv").rfind(NodesCsvHeader(), 0) == 0);
}

TEST_CASE("schema reader names file, line and column of a bad cell") {
  auto bad_role = ParseNodesCsv(NodesCsvHeader() + "1,client-0,server,FRA,1,1,1,0,0,0,0,0,0,0,0,model,modelled\n");
  REQUIRE_FALSE(bad_role.ok());
  CHECK(bad_role.status().message() ==
        "nodes.csv line 2, column role: 'server', expected coordinator, client or centralized");
  auto comm = ParseNodesCsv(NodesCsvHeader() + "1,client-0,client,FRA,1,1,1,0,0,0,0,0,0,0,0,comm,modelled\n");
  CHECK(comm.status().message() == "nodes.csv line 2, column source: 'comm', expected rapl, nvml, model or rapl-split");
  auto acc = ParseRoundsCsv(RoundsCsvHeader() + "1,1,1,0,1.5,0,0,0,0,0,0,0,0,0,\n");
  CHECK(acc.status().message() == "rounds.csv line 2, column test_accuracy: 1.5 is outside [0, 1]");
  auto neg = ParseRoundsCsv(RoundsCsvHeader() + "\n1,-1,1,0,0.5,0,0,0,0,0,0,0,0,0,\n");
  CHECK(neg.status().message() == "rounds.csv line 3, column clients_sampled: -1 is negative");
  auto header = ParseRoundsCsv("round,clients_sampled\n");
  CHECK(header.status().message().rfind("rounds.csv line 1: header lacks column 'clients_succeeded'", 0) == 0);
  CHECK(ParseRoundsCsv("").status().message() == "rounds.csv is empty: expected a header line");
  auto none = ParseNodesCsv(NodesCsvHeader());
  REQUIRE(none.ok());
  CHECK(none->empty());
}

TEST_CASE("Open continues an existing run directory, and Restore refuses a doubled ledger row") {
  const std::string dir = MakeTempDir("greenfed-rundir");
  CHECK(RunDir::Open(dir + "/absent").status().code() == Code::kNotFound);
  auto rd = RunDir::Create(dir);
  REQUIRE(rd.ok());
  (*rd)->AddEnergy(NodeInfo{"client-0", "client", "FRA", 1.0, 50}, {Rec(Phase::kFit, 1, 10)});
  RoundRow row;
  row.round = 1;
  (*rd)->AddRound(row);
  REQUIRE((*rd)->Flush().ok());
  const std::string before = ReadText(dir + "/nodes.csv");
  auto again = RunDir::Open(dir);  // rounds.csv exists: Open does not refuse it
  REQUIRE(again.ok());
  REQUIRE((*again)->Restore((*rd)->Ledger()).ok());
  REQUIRE((*again)->Flush().ok());
  CHECK(ReadText(dir + "/nodes.csv") == before);

  RunLedger doubled = (*rd)->Ledger();
  doubled.nodes.push_back(doubled.nodes.front());
  const Status s = (*again)->Restore(doubled);
  CHECK(s.code() == Code::kInvalidArgument);
  CHECK(s.message() == "ledger has two rows for (round 1, client-0, model)");
  RunLedger rounds = (*rd)->Ledger();
  rounds.rounds.push_back(rounds.rounds.front());
  CHECK((*again)->Restore(rounds).message() == "ledger round rows out of order or doubled: round 1 after round 1");
}

namespace {
// A 6-round ledger with what a real run sends: three nodes (one of them metered
// by RAPL and by the model in one round), comm records before and after the
// meter rows, idle reports that arrive rounds late, fractional joules. Flushes
// after every round; at round 4 the run "restarts" (Open + Restore of the
// ledger) and goes on in the new RunDir. Returns every flush's rounds.csv and
// nodes.csv, concatenated.
std::string FlushHistory(const std::string& dir) {
  auto created = RunDir::Create(dir);
  REQUIRE(created.ok());
  std::unique_ptr<RunDir> rd = std::move(created).value();
  const NodeInfo coord{"coordinator", "coordinator", "USA", 1.5, 400};
  const NodeInfo c0{"client-0", "client", "FRA", 1.0, 50};
  const NodeInfo c1{"client-1", "client", "DEU", 1.2, 350};
  std::string history;
  for (int64_t round = 1; round <= 6; ++round) {
    const double f = static_cast<double>(round);
    rd->AddEnergy(c0, {Comm(round, 0.25 * f, 1000 + round, 2000), Rec(Phase::kFit, round, 10.1 * f)});
    rd->AddEnergy(c1, {Rec(Phase::kFit, round, 7.3 * f, round == 3 ? EnergySource::kRapl : EnergySource::kModel),
                       Comm(round, 0.5, 3000, 4000 + round)});
    if (round == 3) rd->AddEnergy(c1, {Rec(Phase::kIdle, 3, 0.7)});
    if (round >= 2) rd->AddEnergy(c0, {Rec(Phase::kIdle, round - 1, 1.0 / 3.0 * f)});   // one round late
    if (round >= 3) rd->AddEnergy(c1, {Rec(Phase::kIdle, round - 2, 0.1 * f)});         // two rounds late
    rd->AddEnergy(coord, {Rec(Phase::kAggregate, round, 0.01 * f), Rec(Phase::kEvaluate, round, 3.3),
                          Comm(round, 0.75, 5000, 6000)});
    RoundRow row;
    row.round = round;
    row.clients_sampled = 2;
    row.clients_succeeded = 2;
    row.test_accuracy = 0.5 + 0.01 * f;
    row.test_loss = 1.0 / f;
    row.train_loss = 2.0 / f;
    row.round_s = 1.25;
    row.elapsed_s = 1.25 * f;
    row.bytes_sent = 8000;
    row.bytes_received = 9000;
    if (round % 2 == 0) row.fed_accuracy = 0.4 + 0.01 * f;
    rd->AddRound(row);
    REQUIRE(rd->Flush().ok());
    history += ReadText(dir + "/rounds.csv") + ReadText(dir + "/nodes.csv");
    if (round == 4) {  // the resume path: a new RunDir from the checkpointed ledger
      auto reopened = RunDir::Open(dir);
      REQUIRE(reopened.ok());
      REQUIRE((*reopened)->Restore(rd->Ledger()).ok());
      rd = std::move(reopened).value();
    }
  }
  return history;
}
}  // namespace

TEST_CASE("Flush writes the same bytes round after round as the full rewrite did, across a restore") {
  const std::string dir = MakeTempDir("greenfed-rundir") + "/run";
  const std::string history = FlushHistory(dir);
  // Recorded from the full-rescan Flush (before the incremental one): the files
  // after the last round, and the digest of every flush's files.
  const std::string rounds = R"csv(round,clients_sampled,clients_succeeded,clients_failed,test_accuracy,test_loss,train_loss,round_s,elapsed_s,bytes_sent,bytes_received,energy_j,comm_j,co2e_g,fed_accuracy
1,2,2,0,0.51,1,2,1.25,1.25,8000,9000,21.67666667,0.75,0.001639953704,
2,2,2,0,0.52,0.5,1,1.25,2.5,8000,9000,39.52,1,0.002653333333,0.42
3,2,2,0,0.53,0.3333333333,0.6666666667,1.25,3.75,8000,9000,58.06333333,1.25,0.00374837963,
4,2,2,0,0.54,0.25,0.5,1.25,5,8000,9000,75.20666667,1.5,0.004680092593,0.44
5,2,2,0,0.55,0.2,0.4,1.25,6.25,8000,9000,92.35,1.75,0.005611805556,
6,2,2,0,0.56,0.1666666667,0.3333333333,1.25,7.5,8000,9000,107.76,2,0.006581111111,0.46
)csv";
  const std::string nodes = R"csv(round,node_id,role,country,pue,wall_s,cpu_s,train_j,evaluate_j,aggregate_j,idle_j,compute_j,comm_j,bytes_sent,bytes_received,source,measured
1,client-0,client,FRA,1,2,1,10.1,0,0,0.6666666667,10.76666667,0.25,1001,2000,model,modelled
1,client-1,client,DEU,1.2,2,1,7.3,0,0,0.3,7.6,0.5,3000,4001,model,modelled
1,coordinator,coordinator,USA,1.5,2,1,0,3.3,0.01,0,3.31,0.75,5000,6000,model,modelled
2,client-0,client,FRA,1,2,1,20.2,0,0,1,21.2,0.5,1002,2000,model,modelled
2,client-1,client,DEU,1.2,2,1,14.6,0,0,0.4,15,0.5,3000,4002,model,modelled
2,coordinator,coordinator,USA,1.5,2,1,0,3.3,0.02,0,3.32,0.75,5000,6000,model,modelled
3,client-0,client,FRA,1,2,1,30.3,0,0,1.333333333,31.63333333,0.75,1003,2000,model,modelled
3,client-1,client,DEU,1.2,1,0.5,21.9,0,0,0,21.9,0.5,3000,4003,rapl,measured
3,client-1,client,DEU,1.2,2,1,0,0,0,1.2,1.2,0,0,0,model,modelled
3,coordinator,coordinator,USA,1.5,2,1,0,3.3,0.03,0,3.33,0.75,5000,6000,model,modelled
4,client-0,client,FRA,1,2,1,40.4,0,0,1.666666667,42.06666667,1,1004,2000,model,modelled
4,client-1,client,DEU,1.2,2,1,29.2,0,0,0.6,29.8,0.5,3000,4004,model,modelled
4,coordinator,coordinator,USA,1.5,2,1,0,3.3,0.04,0,3.34,0.75,5000,6000,model,modelled
5,client-0,client,FRA,1,2,1,50.5,0,0,2,52.5,1.25,1005,2000,model,modelled
5,client-1,client,DEU,1.2,1,0.5,36.5,0,0,0,36.5,0.5,3000,4005,model,modelled
5,coordinator,coordinator,USA,1.5,2,1,0,3.3,0.05,0,3.35,0.75,5000,6000,model,modelled
6,client-0,client,FRA,1,1,0.5,60.6,0,0,0,60.6,1.5,1006,2000,model,modelled
6,client-1,client,DEU,1.2,1,0.5,43.8,0,0,0,43.8,0.5,3000,4006,model,modelled
6,coordinator,coordinator,USA,1.5,2,1,0,3.3,0.06,0,3.36,0.75,5000,6000,model,modelled
)csv";
  CHECK(ReadText(dir + "/rounds.csv") == rounds);
  CHECK(ReadText(dir + "/nodes.csv") == nodes);
  auto digest = Sha256(history.data(), history.size());
  REQUIRE(digest.ok());
  CHECK(HexOf(digest->data(), digest->size()) == "c9fd0dc438e486f8977906c4387aaff2392fc307c6947fa7e558f057651fa5b4");
}
