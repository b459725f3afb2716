// greenfed simulate against greenfed run (real client processes on loopback): the
// same FL, so the same accuracy per round and the same final model, bit for bit,
// with one thread per fit (docs/simulation.md, "Determinism").
#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "run_helpers.h"
#include "synthetic_data.h"

namespace {

using greenfed::testing::MakeTempDir;
using greenfed::testing::ReadText;

const std::string kBin = GREENFED_BINARY;

int Greenfed(const std::string& args, const std::string& log) {
  const int status = std::system((kBin + " " + args + " > " + log + " 2>&1").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

// rounds.csv's columns by name, one vector of cells per row.
std::vector<std::vector<std::string>> Columns(const std::string& csv, const std::vector<std::string>& names) {
  std::stringstream in(csv);
  std::string line;
  std::getline(in, line);
  std::vector<std::string> header;
  {
    std::stringstream h(line);
    std::string cell;
    while (std::getline(h, cell, ',')) header.push_back(cell);
  }
  std::vector<size_t> at;
  for (const auto& n : names) {
    size_t i = 0;
    while (i < header.size() && header[i] != n) ++i;
    REQUIRE(i < header.size());
    at.push_back(i);
  }
  std::vector<std::vector<std::string>> rows;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::vector<std::string> cells;
    std::stringstream r(line);
    std::string cell;
    while (std::getline(r, cell, ',')) cells.push_back(cell);
    cells.resize(header.size());
    std::vector<std::string> picked;
    for (size_t i : at) picked.push_back(cells[i]);
    rows.push_back(picked);
  }
  return rows;
}

}  // namespace

TEST_CASE("simulate and run, same seed and settings, one thread per fit: the same rounds and final model bit for bit") {
  const std::string dir = MakeTempDir("greenfed-sim");
  const std::string data = dir + "/data";
  REQUIRE(::mkdir(data.c_str(), 0755) == 0);
  REQUIRE(greenfed::WriteSyntheticFashionMnist(data, 1500, 300, 3).ok());
  const std::string common = "--clients=3 --max-rounds=3 --target-accuracy=1.0 --lr=0.002 --seed=11 "
                             "--client-threads=1 --data-dir=" + data + " --country=FRA --client-country=DEU";
  REQUIRE(Greenfed("run " + common + " --run-dir=" + dir + "/run", dir + "/run.log") == 0);
  const int rc = Greenfed("simulate " + common + " --workers=2 --run-dir=" + dir + "/sim", dir + "/sim.log");
  INFO(ReadText(dir + "/sim.log"));
  REQUIRE(rc == 0);

  // Not the byte columns: heartbeats (and the server's answers) follow the clock.
  const std::vector<std::string> cols = {"round", "clients_succeeded", "test_accuracy", "test_loss", "train_loss"};
  const auto run_rows = Columns(ReadText(dir + "/run/rounds.csv"), cols);
  const auto sim_rows = Columns(ReadText(dir + "/sim/rounds.csv"), cols);
  REQUIRE(run_rows.size() == 3);
  CHECK(sim_rows == run_rows);
  const auto run_summary = nlohmann::json::parse(ReadText(dir + "/run/summary.json"));
  const auto sim_summary = nlohmann::json::parse(ReadText(dir + "/sim/summary.json"));
  CHECK(sim_summary["model_sha256"] == run_summary["model_sha256"]);
  CHECK(sim_summary["final_accuracy"].get<double>() == run_summary["final_accuracy"].get<double>());

  // The same outputs as a real run: virtual clients are clients in nodes.csv, modelled.
  const std::string nodes = ReadText(dir + "/sim/nodes.csv");
  for (const char* who : {"1,client-0,client,DEU", "3,client-2,client,DEU", "3,coordinator,coordinator,FRA"}) {
    CHECK(nodes.find(who) != std::string::npos);
  }
  std::stringstream lines(nodes);
  std::string line;
  std::getline(lines, line);  // header
  while (std::getline(lines, line)) CHECK(line.substr(line.size() - 9) == ",modelled");
  CHECK(nlohmann::json::parse(ReadText(dir + "/sim/config.json"))["engine"] == "simulate");
  CHECK(nlohmann::json::parse(ReadText(dir + "/run/config.json"))["engine"] == "run");
  CHECK(ReadText(dir + "/sim.log").find("round 3/3 | acc") != std::string::npos);
  // The report reads a simulate run directory like any other.
  REQUIRE(Greenfed("report " + dir + "/sim " + dir + "/run --out " + dir + "/report", dir + "/report.log") == 0);
  CHECK(ReadText(dir + "/report/report.md").find("client") != std::string::npos);
}

TEST_CASE("simulate: bad flags exit 2 naming the flag") {
  const std::string dir = MakeTempDir("greenfed-sim");
  CHECK(Greenfed("simulate --workers=-1 --run-dir=" + dir + "/a", dir + "/a.log") == 2);
  CHECK(ReadText(dir + "/a.log").find("--workers") != std::string::npos);
  CHECK(Greenfed("simulate --partition=none --run-dir=" + dir + "/b", dir + "/b.log") == 2);
  CHECK(Greenfed("simulate --clients=0 --run-dir=" + dir + "/c", dir + "/c.log") == 2);
  CHECK(Greenfed("simulate --no-such-flag", dir + "/d.log") == 2);
}

// In one process the process's CPU time is the coordinator's plus every virtual client's. The
// virtual clients book their fits from their threads' CPU time, so the coordinator must not
// book them again: its meter reads the process's CPU minus the clients' metered jobs
// (NewEnvExcludingJobs). Until that, the coordinator's cpu_s in nodes.csv held every fit too
// (13.2 of a 10-client round's 25.2 CPU-s on Fashion-MNIST, against 1.06 in `run`).
TEST_CASE("simulate: the coordinator does not book the virtual clients' CPU time a second time") {
  const std::string dir = MakeTempDir("greenfed-sim");
  const std::string data = dir + "/data";
  REQUIRE(::mkdir(data.c_str(), 0755) == 0);
  REQUIRE(greenfed::WriteSyntheticFashionMnist(data, 3000, 300, 5).ok());
  const int rc = Greenfed("simulate --clients=3 --max-rounds=3 --target-accuracy=1.0 --lr=0.002 --seed=3 "
                          "--local-epochs=2 --client-threads=1 --workers=2 --meter=model --data-dir=" +
                              data + " --run-dir=" + dir + "/sim",
                          dir + "/sim.log");
  INFO(ReadText(dir + "/sim.log"));
  REQUIRE(rc == 0);
  const auto rows = Columns(ReadText(dir + "/sim/nodes.csv"), {"role", "cpu_s"});
  double coordinator_s = 0, clients_s = 0;
  for (const auto& r : rows) (r[0] == "client" ? clients_s : coordinator_s) += std::stod(r[1]);
  INFO("coordinator cpu_s ", coordinator_s, ", virtual clients' cpu_s ", clients_s);
  REQUIRE(clients_s > 0.5);  // enough training that double booking would show
  CHECK(coordinator_s < clients_s / 2);
}
