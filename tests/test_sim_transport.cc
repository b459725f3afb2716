// greenfed simulate's engine without processes: the real Server over SimTransport,
// virtual clients (ClientMachines) on a worker pool, a fake task.
#include <doctest/doctest.h>
#include <stdlib.h>

#include <fstream>
#include <sstream>

#include "counting_task.h"
#include "greenfed/coordinator/server.h"
#include "greenfed/sim/sim_transport.h"
#include "run_helpers.h"

using namespace greenfed;

namespace {

using greenfed::testing::MakeTempDir;
using greenfed::testing::ReadText;

}  // namespace

TEST_CASE("sim transport: 20 virtual clients, half sampled per round, run the real server to its target") {
  TaskRegistry registry;
  REQUIRE(registry.Register("counting", [] { return std::make_unique<testing::CountingTask>(); }).ok());
  testing::CountingTask eval_task;
  CarbonTable carbon = CarbonTable::BuiltIn();
  std::unique_ptr<Env> env = NewSystemEnv();
  MeterOptions mo;
  mo.kind = "model";
  PhaseMeter meter(std::move(OpenMeters(mo, env.get())).value(), env.get());
  const std::string dir = MakeTempDir("greenfed-simt") + "/run";
  auto run_dir = RunDir::Create(dir);
  REQUIRE(run_dir.ok());
  std::ostringstream out, diag;
  Logger log("coordinator", &out, &diag);

  ServerOptions so;
  so.round.num_clients = 20;
  so.round.min_available_clients = 20;
  so.round.min_fit_clients = 2;
  so.round.fraction_fit = 0.5;
  so.round.max_rounds = 5;
  so.round.target_accuracy = 0.9;
  so.round.task = "counting";
  so.shutdown_grace_s = 5;
  so.insecure = true;
  SimOptions sim;
  sim.num_clients = 20;
  sim.workers = 2;
  sim.client.country = "DEU";
  Server server(so, NewSimTransport(sim, &registry, env.get(), &log), &eval_task,
                Parameters{MakeFloatBlob("w", {2}, {0, 0})}, &carbon, &meter, run_dir->get(), env.get(), &log);
  auto bound = server.Bind();
  REQUIRE(bound.ok());
  CHECK(bound->find("20 virtual clients") != std::string::npos);
  auto result = server.Run();
  const std::string logs = out.str() + diag.str();
  INFO(logs);
  REQUIRE(result.ok());
  CHECK(result->reached);
  CHECK(result->rounds == 3);
  CHECK(result->refused_messages == 0);
  // The task has no shard views: every virtual client prepared its own (logged).
  CHECK(logs.find("every virtual client loads its own shard") != std::string::npos);
  CHECK(out.str().find("sent no final energy report") == std::string::npos);
  CHECK(diag.str().find("sent no final energy report") == std::string::npos);
  // Each round: 10 fits of 10 examples each; the virtual clients' records are in
  // nodes.csv like a real client's, modelled.
  const std::string rounds = ReadText(dir + "/rounds.csv");
  CHECK(rounds.find("\n1,10,10,0,") != std::string::npos);
  const std::string nodes = ReadText(dir + "/nodes.csv");
  CHECK(nodes.find(",client-0,client,DEU,") != std::string::npos);
  CHECK(nodes.find(",client-19,client,DEU,") != std::string::npos);
  CHECK(nodes.find(",measured\n", nodes.find('\n')) == std::string::npos);
}
