// Real processes on loopback: the greenfed binary as users run it, on a small
// synthetic Fashion-MNIST look-alike so that each case takes seconds.
#include <doctest/doctest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>

#include "greenfed/run_dir_schema.h"
#include "run_helpers.h"
#include "synthetic_data.h"

namespace {

using greenfed::testing::MakeTempDir;
using greenfed::testing::ReadText;
using greenfed::testing::RunGreenfed;
using greenfed::testing::SpawnGreenfed;
using greenfed::testing::WaitExit;

int CountLines(const std::string& path) {
  std::ifstream in(path);
  int n = 0;
  std::string line;
  while (std::getline(in, line)) n += !line.empty();
  return n;
}

struct Fixture {
  std::string dir = MakeTempDir("greenfed-it");
  std::string data = dir + "/data";
  Fixture() {
    REQUIRE(::mkdir(data.c_str(), 0755) == 0);
    REQUIRE(greenfed::WriteSyntheticFashionMnist(data, 1500, 300, 3).ok());
  }
};

}  // namespace

TEST_CASE("greenfed run: a coordinator and 3 client processes complete 2 rounds and write the run directory") {
  Fixture f;
  const std::string run = f.dir + "/fl";
  // lr is tiny so that the easy synthetic task does not hit the target in round 1.
  const int rc = RunGreenfed({"run", "--clients=3", "--max-rounds=2", "--target-accuracy=1.0", "--lr=0.0005",
                              "--data-dir=" + f.data, "--run-dir=" + run, "--country=FRA", "--client-country=DEU"},
                             f.dir + "/run.log");
  INFO(ReadText(f.dir + "/run.log"));
  REQUIRE(rc == 0);
  CHECK(CountLines(run + "/rounds.csv") == 3);  // header + 2 rounds
  const auto summary = nlohmann::json::parse(ReadText(run + "/summary.json"));
  CHECK(summary["rounds"] == 2);
  CHECK(summary["reached"] == false);
  CHECK(summary["stop_reason"].get<std::string>().find("max rounds (2)") != std::string::npos);
  CHECK(summary["energy"]["measured"] == false);
  CHECK(summary["energy"]["compute_wh"].get<double>() > 0);
  const std::string nodes = ReadText(run + "/nodes.csv");
  for (const char* who : {"1,client-0,client,DEU", "2,client-2,client,DEU", "2,coordinator,coordinator,FRA"}) {
    CHECK(nodes.find(who) != std::string::npos);
  }
  const std::string log = ReadText(f.dir + "/run.log");
  CHECK(log.find("round 2/2 | acc") != std::string::npos);
  CHECK(log.find("modelled") != std::string::npos);
  // CURVE by default: keys generated into the run directory, every client allow-listed.
  CHECK(log.find("3 client key(s) allowed") != std::string::npos);
  struct stat key_stat {};
  REQUIRE(::stat((run + "/keys/clients/client-2.key").c_str(), &key_stat) == 0);
  CHECK((key_stat.st_mode & 0777) == 0600);
  const auto config = nlohmann::json::parse(ReadText(run + "/config.json"));
  CHECK(config["partition"]["num_clients"] == 3);
  CHECK(config["train"]["learning_rate"] == 0.0005);
}

// The name has no ';': ctest's test discovery splits names at ';', which had turned
// this case into two names that matched nothing and "passed" in 0.00 s.
TEST_CASE("clients started before the coordinator join it, and SIGKILL of one client under default flags does not stop the run") {
  Fixture f;
  const std::string run = f.dir + "/fl";
  // Port from the pid keeps parallel test runs apart.
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(20000 + getpid() % 20000);
  // CURVE keys as an operator makes them: `greenfed keygen`, client .pub files in one directory.
  const std::string keys = f.dir + "/keys";
  REQUIRE(RunGreenfed({"keygen", "--out=" + keys, "--name=coordinator"}, f.dir + "/keygen.log") == 0);
  for (int k = 0; k < 4; ++k) {
    REQUIRE(RunGreenfed({"keygen", "--out=" + keys + "/clients", "--name=client-" + std::to_string(k)},
                        f.dir + "/keygen.log") == 0);
  }
  // The clients come first: they must retry with backoff until the coordinator binds.
  std::vector<pid_t> clients;
  for (int k = 0; k < 4; ++k) {
    clients.push_back(
        SpawnGreenfed({"client", "--connect=" + endpoint, "--data-dir=" + f.data, "--connect-timeout-s=60",
                       "--secret-key=" + keys + "/clients/client-" + std::to_string(k) + ".key",
                       "--server-key=" + keys + "/coordinator.pub"},
                      f.dir + "/client-" + std::to_string(k) + ".log"));
  }
  // Start the coordinator only once client-0 has retried at least once, so that the
  // retry is observed whatever the load (a fixed 1.5 s head start was not enough on a
  // busy machine, where starting the client process alone can take longer).
  const std::string retried = "no answer from coordinator at " + endpoint + "; retrying";
  const auto retry_until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (ReadText(f.dir + "/client-0.log").find(retried) == std::string::npos &&
         std::chrono::steady_clock::now() < retry_until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  // Default --min-available-clients (= --num-clients) and --min-fit-clients: before
  // issue 8 the coordinator then waited for 4 of 4 forever once the dead client was
  // dropped. Only the heartbeat timeout is short, to keep the test short.
  pid_t coord = SpawnGreenfed(
      {"coordinator", "--bind=" + endpoint, "--num-clients=4", "--max-rounds=4", "--target-accuracy=1.0", "--lr=0.0005",
       "--local-epochs=4", "--heartbeat-timeout-s=3", "--round-timeout-s=60", "--data-dir=" + f.data,
       "--run-dir=" + run, "--secret-key=" + keys + "/coordinator.key", "--allow-clients=" + keys + "/clients"},
      f.dir + "/coordinator.log");
  // Kill one client once round 1 is in the books.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (CountLines(run + "/rounds.csv") < 2 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  REQUIRE(CountLines(run + "/rounds.csv") >= 2);
  kill(clients[3], SIGKILL);
  const int rc = WaitExit(coord);
  INFO(ReadText(f.dir + "/coordinator.log"));
  CHECK(rc == 0);
  CHECK(WaitExit(clients[3]) == 128 + SIGKILL);
  for (int k = 0; k < 3; ++k) CHECK(WaitExit(clients[static_cast<size_t>(k)]) == 0);
  CHECK(ReadText(f.dir + "/client-0.log").find("no answer from coordinator at " + endpoint + "; retrying") !=
        std::string::npos);
  CHECK(CountLines(run + "/rounds.csv") == 5);  // header + 4 rounds
  const std::string log = ReadText(f.dir + "/coordinator.log");
  CHECK(log.find("dropped client-") != std::string::npos);
  CHECK(log.find("starts with 3 of 4 clients") != std::string::npos);
  CHECK(log.find("round 4/4 | acc") != std::string::npos);
}

TEST_CASE("kill -9 of the coordinator mid-run, then --resume: every round once, every joule once") {
  Fixture f;
  const std::string run = f.dir + "/fl";
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(20000 + (getpid() + 7919) % 20000);
  std::vector<pid_t> clients;
  for (int k = 0; k < 3; ++k) {
    clients.push_back(SpawnGreenfed(
        {"client", "--insecure", "--connect=" + endpoint, "--data-dir=" + f.data, "--connect-timeout-s=120"},
        f.dir + "/client-" + std::to_string(k) + ".log"));
  }
  const std::vector<std::string> coordinator = {
      "coordinator", "--insecure", "--bind=" + endpoint, "--num-clients=3", "--max-rounds=5", "--target-accuracy=1.0",
      "--lr=0.0005", "--local-epochs=3", "--round-timeout-s=60", "--data-dir=" + f.data, "--run-dir=" + run};
  pid_t first = SpawnGreenfed(coordinator, f.dir + "/coordinator-1.log");
  // Kill it once round 2's checkpoint is written and round 3's fit instructions are
  // out (logged after they are sent, plus a moment for ZeroMQ to deliver them): the
  // clients are then training round 3 for a coordinator that is gone.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (ReadText(f.dir + "/coordinator-1.log").find("round 3: sampled") == std::string::npos &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const int rounds_at_kill = CountLines(run + "/rounds.csv") - 1;
  kill(first, SIGKILL);
  CHECK(WaitExit(first) == 128 + SIGKILL);
  INFO(ReadText(f.dir + "/coordinator-1.log"));
  REQUIRE(rounds_at_kill >= 2);
  REQUIRE(::access((run + "/checkpoint.bin").c_str(), F_OK) == 0);

  // Without --resume the directory is refused, and the message says how to continue.
  CHECK(RunGreenfed(coordinator, f.dir + "/refused.log", 60) == 2);
  CHECK(ReadText(f.dir + "/refused.log").find("add --resume") != std::string::npos);
  // Another federation size is refused, naming the setting.
  std::vector<std::string> other = coordinator;
  other[3] = "--num-clients=2";  // after "coordinator", "--insecure", "--bind=..."
  other.push_back("--resume");
  CHECK(RunGreenfed(other, f.dir + "/mismatch.log", 60) == 2);
  CHECK(ReadText(f.dir + "/mismatch.log").find("checkpoint was written for --num-clients 3, this run has 2") !=
        std::string::npos);
  // A corrupt checkpoint is refused, naming the digest; the intact one is put back.
  const std::string intact = ReadText(run + "/checkpoint.bin");
  {
    std::string corrupt = intact;
    corrupt[corrupt.size() / 2] = static_cast<char>(corrupt[corrupt.size() / 2] ^ 0x20);
    std::ofstream(run + "/checkpoint.bin", std::ios::binary | std::ios::trunc) << corrupt;
  }
  std::vector<std::string> resume = coordinator;
  resume.push_back("--resume");
  CHECK(RunGreenfed(resume, f.dir + "/corrupt.log", 60) == 2);
  CHECK(ReadText(f.dir + "/corrupt.log").find("SHA-256 digest mismatch") != std::string::npos);
  std::ofstream(run + "/checkpoint.bin", std::ios::binary | std::ios::trunc) << intact;

  // The clients never stopped: they rejoin the resumed coordinator by themselves.
  const int rc = RunGreenfed(resume, f.dir + "/coordinator-2.log");
  const std::string log = ReadText(f.dir + "/coordinator-2.log");
  INFO(log);
  REQUIRE(rc == 0);
  for (int k = 0; k < 3; ++k) CHECK(WaitExit(clients[static_cast<size_t>(k)]) == 0);
  const size_t at = log.find("after round ");
  REQUIRE(at != std::string::npos);
  const int checkpointed = std::stoi(log.substr(at + 12));
  CHECK(rounds_at_kill - checkpointed >= 0);
  CHECK(rounds_at_kill - checkpointed <= 1);  // rounds lost to the kill
  CHECK(log.find("round 5/5 | acc") != std::string::npos);
  // The clients were training round 3 when the coordinator died: their results reach
  // the new coordinator before they rejoin and are refused unbooked. Each client then
  // reports that energy again, so it is booked once.
  size_t refused = 0, reported_again = 0;
  for (size_t p = log.find("message FitRes from a peer that has not joined"); p != std::string::npos;
       p = log.find("message FitRes from a peer that has not joined", p + 1)) {
    ++refused;
  }
  for (int k = 0; k < 3; ++k) {
    if (ReadText(f.dir + "/client-" + std::to_string(k) + ".log").find("will be reported again") != std::string::npos) {
      ++reported_again;
    }
  }
  CHECK(refused >= 1);
  CHECK(reported_again >= refused);

  // rounds.csv: rounds 1..5, each once.
  auto rounds = greenfed::ParseRoundsCsv(ReadText(run + "/rounds.csv"));
  REQUIRE_MESSAGE(rounds.ok(), rounds.status().ToString());
  REQUIRE(rounds->size() == 5);
  for (size_t i = 0; i < rounds->size(); ++i) CHECK((*rounds)[i].round == static_cast<int64_t>(i + 1));
  // elapsed_s carries over the time before the kill.
  for (size_t i = 1; i < rounds->size(); ++i) CHECK((*rounds)[i].elapsed_s > (*rounds)[i - 1].elapsed_s);
  // nodes.csv: one row per (round, node, source), the coordinator in every round.
  auto nodes = greenfed::ParseNodesCsv(ReadText(run + "/nodes.csv"));
  REQUIRE_MESSAGE(nodes.ok(), nodes.status().ToString());
  std::set<std::tuple<int64_t, std::string, int>> keys;
  std::set<int64_t> coordinator_rounds;
  double compute_j = 0, total_j = 0;
  for (const auto& n : *nodes) {
    CHECK(keys.insert({n.round, n.node_id, static_cast<int>(n.source)}).second);
    if (n.node_id == "coordinator") coordinator_rounds.insert(n.round);
    compute_j += n.compute_j;
    total_j += n.compute_j * n.pue + (n.role == greenfed::NodeRole::kClient ? n.comm_j : 0.0);
  }
  for (int64_t r = 1; r <= 5; ++r) CHECK(coordinator_rounds.count(r) == 1);
  // summary.json's energy is the sum of nodes.csv.
  const auto summary = nlohmann::json::parse(ReadText(run + "/summary.json"));
  CHECK(summary["rounds"] == 5);
  CHECK(summary["energy"]["compute_wh"].get<double>() == doctest::Approx(compute_j / 3600).epsilon(1e-8));
  CHECK(summary["energy"]["total_wh"].get<double>() == doctest::Approx(total_j / 3600).epsilon(1e-8));
  // Sampling and seeds depend only on (seed, round, attempt): the resumed run ends with
  // the very model an uninterrupted run with the same settings ends with.
  const std::string straight = f.dir + "/straight";
  REQUIRE(RunGreenfed({"run", "--clients=3", "--max-rounds=5", "--target-accuracy=1.0", "--lr=0.0005",
                       "--local-epochs=3", "--data-dir=" + f.data, "--run-dir=" + straight},
                      f.dir + "/straight.log") == 0);
  const auto uninterrupted = nlohmann::json::parse(ReadText(straight + "/summary.json"));
  CHECK(summary["model_sha256"].get<std::string>().size() == 64);
  CHECK(summary["model_sha256"] == uninterrupted["model_sha256"]);
  MESSAGE("rounds at kill " << rounds_at_kill << ", checkpointed " << checkpointed << "; summary total_wh "
                            << summary["energy"]["total_wh"].get<double>() << ", nodes.csv sum "
                            << total_j / 3600 << " Wh");
}

TEST_CASE("kill -9 of greenfed run takes its clients along, and run --resume finishes the run") {
  Fixture f;
  const std::string run = f.dir + "/fl";
  const std::vector<std::string> args = {"run", "--clients=2", "--max-rounds=3", "--target-accuracy=1.0",
                                         "--lr=0.0005", "--local-epochs=2", "--data-dir=" + f.data,
                                         "--run-dir=" + run};
  const pid_t launcher = SpawnGreenfed(args, f.dir + "/run-1.log");
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (ReadText(f.dir + "/run-1.log").find("round 2: sampled") == std::string::npos &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // The launcher's children: its client processes.
  std::vector<pid_t> children;
  {
    std::ifstream in("/proc/" + std::to_string(launcher) + "/task/" + std::to_string(launcher) + "/children");
    pid_t pid = 0;
    while (in >> pid) children.push_back(pid);
  }
  kill(launcher, SIGKILL);
  CHECK(WaitExit(launcher) == 128 + SIGKILL);
  INFO(ReadText(f.dir + "/run-1.log"));
  REQUIRE(children.size() == 2);
  // They stop by themselves (--parent-pid); without it they would retry for minutes.
  for (pid_t child : children) {
    const auto gone_by = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (kill(child, 0) == 0 && std::chrono::steady_clock::now() < gone_by) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    const bool gone = kill(child, 0) != 0;
    CHECK(gone);
    if (!gone) kill(child, SIGKILL);
  }
  std::vector<std::string> resume = args;
  resume.push_back("--resume");
  const int rc = RunGreenfed(resume, f.dir + "/run-2.log");
  INFO(ReadText(f.dir + "/run-2.log"));
  REQUIRE(rc == 0);
  auto rounds = greenfed::ParseRoundsCsv(ReadText(run + "/rounds.csv"));
  REQUIRE(rounds.ok());
  REQUIRE(rounds->size() == 3);
  for (size_t i = 0; i < 3; ++i) CHECK((*rounds)[i].round == static_cast<int64_t>(i + 1));
  CHECK(ReadText(f.dir + "/run-2.log").find("resuming fl after round 1") != std::string::npos);
  // The clients' logs of both starts are kept.
  CHECK(ReadText(run + "/client-0.log").find("stopped by signal") != std::string::npos);
  CHECK(ReadText(run + "/client-0.log").find("max rounds (3) reached") != std::string::npos);
}

TEST_CASE("centralized baseline and report on the same synthetic data") {
  Fixture f;
  const std::string central = f.dir + "/central", fl = f.dir + "/fl", out = f.dir + "/report";
  REQUIRE(RunGreenfed({"centralized", "--max-epochs=2", "--target-accuracy=0.5", "--data-dir=" + f.data,
                       "--run-dir=" + central, "--country=USA", "--pue=1.5"},
                      f.dir + "/central.log") == 0);
  const auto summary = nlohmann::json::parse(ReadText(central + "/summary.json"));
  CHECK(summary["kind"] == "centralized");
  CHECK(summary["reached"] == true);
  CHECK(ReadText(central + "/nodes.csv").find("1,centralized,centralized,USA,1.5,") != std::string::npos);
  REQUIRE(RunGreenfed({"run", "--clients=2", "--max-rounds=3", "--target-accuracy=0.5", "--data-dir=" + f.data,
                       "--run-dir=" + fl},
                      f.dir + "/fl.log") == 0);
  const int rc = RunGreenfed({"report", central, fl, "--out=" + out}, f.dir + "/report.log");
  INFO(ReadText(f.dir + "/report.log"));
  REQUIRE(rc == 0);
  const std::string md = ReadText(out + "/report.md");
  CHECK(md.find("Centralized") != std::string::npos);
  CHECK(md.find("FL IID") != std::string::npos);
  CHECK(ReadText(out + "/report.svg").find("<svg") != std::string::npos);
  // A run made to another target cannot be compared.
  const std::string other = f.dir + "/other";
  REQUIRE(RunGreenfed(
              {"centralized", "--max-epochs=1", "--target-accuracy=0.3", "--data-dir=" + f.data, "--run-dir=" + other},
              f.dir + "/other.log") == 0);
  CHECK(RunGreenfed({"report", central, other, "--out=" + out}, f.dir + "/mismatch.log") == 1);
  CHECK(ReadText(f.dir + "/mismatch.log").find("target") != std::string::npos);
}

TEST_CASE("a tiny carbon budget stops greenfed run before round 2 with the reason in summary.json and the report") {
  Fixture f;
  const std::string run = f.dir + "/fl", out = f.dir + "/report";
  // Round 1 always runs (there is no estimate before it); its cost alone exceeds 1e-9 g.
  const int rc = RunGreenfed({"run", "--clients=2", "--max-rounds=5", "--target-accuracy=1.0", "--lr=0.0005",
                              "--insecure", "--max-co2e-g=1e-9", "--data-dir=" + f.data, "--run-dir=" + run},
                             f.dir + "/run.log");
  INFO(ReadText(f.dir + "/run.log"));
  REQUIRE(rc == 0);
  const auto summary = nlohmann::json::parse(ReadText(run + "/summary.json"));
  CHECK(summary["rounds"] == 1);
  CHECK(summary["reached"] == false);
  const std::string reason = summary["stop_reason"].get<std::string>();
  CHECK(reason.rfind("budget: max-co2e-g 1e-09 would be exceeded by round 2 (estimated ", 0) == 0);
  CHECK(summary["co2e_g"].get<double>() > 1e-9);
  CHECK(CountLines(run + "/rounds.csv") == 2);  // header + round 1
  const auto config = nlohmann::json::parse(ReadText(run + "/config.json"));
  CHECK(config["budget"]["max_co2e_g"] == 1e-9);
  CHECK(config["budget"]["max_wh"] == 0);
  REQUIRE(RunGreenfed({"report", run, "--out=" + out}, f.dir + "/report.log") == 0);
  const double accuracy = summary["final_accuracy"].get<double>();
  char expected[96];
  std::snprintf(expected, sizeof(expected), "stopped by budget at accuracy %.4f after 1 rounds", accuracy);
  INFO(ReadText(out + "/report.md"));
  CHECK(ReadText(out + "/report.md").find(expected) != std::string::npos);
  // A budget that is not a number >= 0 is a bad flag: exit 2, naming it.
  CHECK(RunGreenfed(
            {"run", "--clients=2", "--max-wh=-1", "--insecure", "--data-dir=" + f.data, "--run-dir=" + f.dir + "/bad"},
            f.dir + "/bad.log") == 2);
  CHECK(ReadText(f.dir + "/bad.log").find("--max-wh") != std::string::npos);
}

TEST_CASE("bad flags and bad inputs exit with a message that names the problem") {
  Fixture f;
  struct Case {
    std::vector<std::string> args;
    int code;
    std::string words;
  };
  // Config files (issue 13): a wrong type, an unknown key, a range error from the file.
  const std::string typo = f.dir + "/typo.toml", range = f.dir + "/range.toml";
  {
    std::ofstream(typo) << "[coordinator]\nnum-clients = 4\nlearning-rate = 0.1\n";
    std::ofstream(range) << "[coordinator]\nmin-fit-clients = 20\n";
  }
  // A directory that holds a run but no checkpoint (it completed no round).
  const std::string existing = f.dir + "/existing";
  REQUIRE(::mkdir(existing.c_str(), 0755) == 0);
  std::ofstream(existing + "/rounds.csv") << greenfed::RoundsCsvHeader();
  const std::vector<Case> cases = {
      {{"coordinator", "--config=" + typo}, 2, typo + ":3: unknown key 'coordinator.learning-rate'"},
      {{"coordinator", "--config=" + range}, 2, "(from " + range + ":2, key 'min-fit-clients')"},
      {{"run", "--config=/nonexistent.toml"}, 2, "cannot read config file /nonexistent.toml"},
      {{"run", "--clients=abc"}, 2, "--clients=abc: expected a non-negative integer"},
      {{"run", "--clients=2", "--run-dir=" + existing}, 2, "already holds a run (rounds.csv exists)"},
      {{"coordinator", "--insecure", "--data-dir=" + f.data, "--run-dir=" + existing}, 2, "or add --resume to continue it"},
      {{"centralized", "--data-dir=" + f.data, "--run-dir=" + existing}, 2, "already holds a run"},
      {{"coordinator", "--insecure", "--resume"}, 2, "--resume needs the --run-dir of the run to continue"},
      {{"coordinator", "--insecure", "--resume", "--run-dir=" + existing}, 2, "checkpoint.bin is missing"},
      {{"coordinator", "--insecure", "--resume", "--run-dir=" + f.dir + "/absent"}, 2, "does not exist; nothing to resume"},
      {{"run", "--bogus"}, 2, "unknown flag --bogus"},
      {{"coordinator", "--partition=weird"}, 2, "--partition must be iid, shards, dirichlet or none"},
      {{"run", "--partition=none"}, 2, "--partition none is for clients with their own data"},
      {{"coordinator", "--max-client-examples=5"}, 2, "--max-client-examples bounds own-data clients; it needs --partition none"},
      {{"compare", "--task=nope"}, 2, "--task nope: compare has no defaults for it"},
      {{"coordinator", "--partition=none", "--fed-eval-every=1"}, 2, "--fed-eval-every needs partitioned clients"},
      {{"coordinator", "--min-fit-clients=20"}, 2, "--min-fit-clients"},
      {{"client", "--country=XXX"}, 2, "unknown country code 'XXX'"},
      {{"client", "--pue=0.5"}, 2, "PUE must be in [1.0, 5]"},
      {{"centralized", "--data-dir=/nonexistent", "--run-dir=" + f.dir + "/nodata"}, 1, "dataset-fashion-mnist"},
      {{"report"}, 2, "give at least one run directory"},
      {{"report", "/nonexistent-run"}, 1, "/nonexistent-run"},
      {{"frobnicate"}, 2, "unknown command 'frobnicate'"},
  };
  for (const auto& c : cases) {
    const std::string log = f.dir + "/bad.log";
    const int rc = RunGreenfed(c.args, log, 60);
    const std::string text = ReadText(log);
    INFO(c.args[0] << " " << (c.args.size() > 1 ? c.args[1] : "") << " -> " << text);
    CHECK(rc == c.code);
    CHECK(text.find(c.words) != std::string::npos);
  }
  CHECK(RunGreenfed({"run", "--help"}, f.dir + "/help.log") == 0);
  CHECK(ReadText(f.dir + "/help.log").find("--target-accuracy VALUE") != std::string::npos);
}

TEST_CASE("CURVE across processes: unlisted, wrong-server-key and plaintext clients fail clearly, listed clients finish") {
  Fixture f;
  const std::string run = f.dir + "/fl", keys = f.dir + "/keys";
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(20000 + (getpid() + 7919) % 20000);
  for (const char* name : {"coordinator", "impostor-server"}) {
    REQUIRE(RunGreenfed({"keygen", "--out=" + keys, "--name=" + std::string(name)}, f.dir + "/keygen.log") == 0);
  }
  for (const char* name : {"client-0", "client-1"}) {
    REQUIRE(RunGreenfed({"keygen", "--out=" + keys + "/allowed", "--name=" + std::string(name)},
                        f.dir + "/keygen.log") == 0);
  }
  REQUIRE(RunGreenfed({"keygen", "--out=" + keys + "/other", "--name=stranger"}, f.dir + "/keygen.log") == 0);
  // The allow-list as a file: one key per line with comments.
  const std::string allow = keys + "/allowed.txt";
  {
    std::ofstream out(allow);
    out << "# clients admitted to this run\n"
        << ReadText(keys + "/allowed/client-0.pub") << ReadText(keys + "/allowed/client-1.pub");
  }
  pid_t coord = SpawnGreenfed({"coordinator", "--bind=" + endpoint, "--num-clients=2", "--max-rounds=2",
                               "--target-accuracy=1.0", "--lr=0.0005", "--data-dir=" + f.data, "--run-dir=" + run,
                               "--secret-key=" + keys + "/coordinator.key", "--allow-clients=" + allow},
                              f.dir + "/coordinator.log");
  const std::vector<std::string> common = {"client", "--connect=" + endpoint, "--data-dir=" + f.data,
                                           "--connect-timeout-s=60"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = common;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  pid_t stranger =
      SpawnGreenfed(with({"--secret-key=" + keys + "/other/stranger.key", "--server-key=" + keys + "/coordinator.pub"}),
                    f.dir + "/stranger.log");
  pid_t wrong_server =
      SpawnGreenfed(with({"--secret-key=" + keys + "/allowed/client-1.key",
                          "--server-key=" + keys + "/impostor-server.pub", "--client-id=wrong-server"}),
                    f.dir + "/wrong-server.log");
  pid_t plaintext = SpawnGreenfed(with({"--insecure", "--client-id=plaintext"}), f.dir + "/plaintext.log");
  CHECK(WaitExit(stranger, 60) == 1);
  CHECK(WaitExit(wrong_server, 60) == 1);
  CHECK(WaitExit(plaintext, 60) == 1);
  const std::string stranger_log = ReadText(f.dir + "/stranger.log");
  INFO(stranger_log);
  CHECK(stranger_log.find("server key mismatch or handshake failed") != std::string::npos);
  CHECK(stranger_log.find("refused this client's key") != std::string::npos);
  CHECK(ReadText(f.dir + "/wrong-server.log").find("server key mismatch or handshake failed with " + endpoint) !=
        std::string::npos);
  const std::string plaintext_log = ReadText(f.dir + "/plaintext.log");
  CHECK(plaintext_log.find("--insecure: plaintext transport without authentication") != std::string::npos);
  CHECK(plaintext_log.find("server key mismatch or handshake failed") != std::string::npos);
  // Now the two listed clients join and the run completes.
  std::vector<pid_t> honest;
  for (int k = 0; k < 2; ++k) {
    honest.push_back(SpawnGreenfed(with({"--secret-key=" + keys + "/allowed/client-" + std::to_string(k) + ".key",
                                         "--server-key=" + keys + "/coordinator.pub"}),
                                   f.dir + "/client-" + std::to_string(k) + ".log"));
  }
  const int rc = WaitExit(coord);
  const std::string log = ReadText(f.dir + "/coordinator.log");
  INFO(log);
  CHECK(rc == 0);
  for (pid_t p : honest) CHECK(WaitExit(p) == 0);
  CHECK(CountLines(run + "/rounds.csv") == 3);
  CHECK(log.find("refused a CURVE handshake from 127.0.0.1: unlisted-key") != std::string::npos);
  CHECK(log.find("wrong-server") == std::string::npos);  // never joined
  CHECK(log.find("plaintext") == std::string::npos);     // never joined
  const auto summary = nlohmann::json::parse(ReadText(run + "/summary.json"));
  CHECK(summary["rounds"] == 2);
}

TEST_CASE("key flags: missing keys, bad key files and bad keygen arguments exit 2 naming the flag and the file") {
  Fixture f;
  const std::string keys = f.dir + "/keys";
  REQUIRE(RunGreenfed({"keygen", "--out=" + keys, "--name=node"}, f.dir + "/keygen.log") == 0);
  CHECK(ReadText(f.dir + "/keygen.log").find("public key: ") != std::string::npos);
  struct stat st {};
  REQUIRE(::stat((keys + "/node.key").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  const std::string open_key = f.dir + "/open.key";
  {
    std::ofstream out(open_key);
    out << ReadText(keys + "/node.key");
  }
  REQUIRE(::chmod(open_key.c_str(), 0644) == 0);
  const std::string bad_pub = f.dir + "/bad.pub";
  {
    std::ofstream out(bad_pub);
    out << "# a comment\nthis is not a key\n";
  }
  struct Case {
    std::vector<std::string> args;
    std::string words;
  };
  const std::string rd = "--run-dir=" + f.dir + "/never";
  const std::vector<Case> cases = {
      {{"coordinator", rd}, "missing --secret-key"},
      {{"coordinator", rd, "--secret-key=" + keys + "/node.key"}, "missing --allow-clients"},
      {{"coordinator", rd, "--secret-key=" + open_key, "--allow-clients=" + keys}, "run 'chmod 600 " + open_key + "'"},
      {{"coordinator", rd, "--secret-key=" + keys + "/node.key", "--allow-clients=" + bad_pub},
       "--allow-clients: " + bad_pub + ":2: a CURVE key is 40 Z85 characters"},
      {{"coordinator", rd, "--secret-key=" + keys + "/node.pub", "--allow-clients=" + keys},
       "--secret-key: " + keys + "/node.pub: secret key file has mode 0644"},
      {{"coordinator", rd, "--insecure", "--secret-key=" + keys + "/node.key"}, "--insecure cannot be combined"},
      {{"client"}, "missing --secret-key"},
      {{"client", "--secret-key=" + keys + "/node.key"}, "missing --server-key"},
      {{"client", "--secret-key=" + keys + "/node.key", "--server-key=" + bad_pub}, "--server-key: " + bad_pub + ":2:"},
      {{"client", "--secret-key=" + keys + "/node.key", "--server-key=" + keys + "/node.key"}, "holds a secret key"},
      {{"keygen", "--out=" + keys, "--name=node"}, "node.key already exists; refusing to overwrite"},
      {{"keygen", "--out=" + keys, "--name=a/b"}, "--name: key name 'a/b' may only hold"},
      {{"keygen", "--name=x"}, "missing --out"},
  };
  for (const auto& c : cases) {
    const std::string log = f.dir + "/bad.log";
    const int rc = RunGreenfed(c.args, log, 60);
    const std::string text = ReadText(log);
    INFO(c.args[0] << " " << (c.args.size() > 2 ? c.args[2] : "") << " -> " << text);
    CHECK(rc == 2);
    CHECK(text.find(c.words) != std::string::npos);
  }
}

TEST_CASE("greenfed run --insecure runs plaintext with a warning, without it the keys are in RUN_DIR/keys") {
  Fixture f;
  const std::string run = f.dir + "/fl";
  const int rc = RunGreenfed({"run", "--insecure", "--clients=1", "--max-rounds=1", "--min-fit-clients=1",
                              "--data-dir=" + f.data, "--run-dir=" + run},
                             f.dir + "/run.log");
  const std::string log = ReadText(f.dir + "/run.log");
  INFO(log);
  CHECK(rc == 0);
  CHECK(log.find("--insecure: plaintext transport without authentication") != std::string::npos);
  CHECK(ReadText(run + "/client-0.log").find("--insecure: plaintext transport") != std::string::npos);
  CHECK(::access((run + "/keys").c_str(), F_OK) != 0);
}

namespace {

// One coordinator and 5 client processes on the synthetic set; client 4 sends
// attack_scale x its honest update. Returns the final central test accuracy.
double RobustRun(const Fixture& f, const std::string& strategy, double attack, const std::string& tag) {
  const std::string run = f.dir + "/" + tag;
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(21000 + (getpid() * 7 + static_cast<int>(tag.size()) * 131) % 20000);
  pid_t coord =
      SpawnGreenfed({"coordinator", "--bind=" + endpoint, "--num-clients=5", "--max-rounds=4", "--target-accuracy=1.0",
                     "--lr=0.01", "--data-dir=" + f.data, "--run-dir=" + run, "--strategy=" + strategy,
                     "--num-malicious-clients=1", "--num-clients-to-keep=3", "--insecure"},
                    f.dir + "/" + tag + "-coordinator.log");
  std::vector<pid_t> clients;
  for (int k = 0; k < 5; ++k) {
    clients.push_back(
        SpawnGreenfed({"client", "--connect=" + endpoint, "--client-index=" + std::to_string(k), "--data-dir=" + f.data,
                       "--attack-scale=" + std::to_string(k == 4 ? attack : 1.0), "--insecure"},
                      f.dir + "/" + tag + "-client-" + std::to_string(k) + ".log"));
  }
  const int rc = WaitExit(coord);
  for (pid_t c : clients) WaitExit(c);
  INFO(ReadText(f.dir + "/" + tag + "-coordinator.log"));
  REQUIRE(rc == 0);
  return nlohmann::json::parse(ReadText(run + "/summary.json"))["final_accuracy"].get<double>();
}

}  // namespace

// Issue 10: 1 of 5 clients sends its update scaled x100. fedmedian, fedtrimmedavg
// and krum still reach what a clean fedavg run reaches; fedavg does not.
TEST_CASE("robust strategies hold one x100 client to the clean run's accuracy, and fedavg does not") {
  Fixture f;
  const double clean = RobustRun(f, "fedavg", 1.0, "clean");
  const double fedavg = RobustRun(f, "fedavg", 100.0, "fedavg-attacked");
  const double median = RobustRun(f, "fedmedian", 100.0, "median-attacked");
  const double trimmed = RobustRun(f, "fedtrimmedavg", 100.0, "trimmed-attacked");
  const double krum = RobustRun(f, "krum", 100.0, "krum-attacked");
  MESSAGE("final accuracy: clean fedavg " << clean << ", attacked: fedavg " << fedavg << ", fedmedian " << median
                                          << ", fedtrimmedavg " << trimmed << ", krum " << krum);
  CHECK(clean > 0.6);
  CHECK(fedavg < clean - 0.3);
  CHECK(median >= clean - 0.05);
  CHECK(trimmed >= clean - 0.05);
  CHECK(krum >= clean - 0.05);
}

// Issue 10: SCAFFOLD and FedProx over real processes. The Fits carry group
// "control" and config proximal_mu, the clients keep c_i (and, with
// --persist-momentum, their momentum buffers) across rounds, and each client
// process says that it started with an empty state.
TEST_CASE("greenfed run --strategy scaffold and fedprox complete their rounds with client state") {
  Fixture f;
  for (const auto& [name, extra] : {std::make_pair(std::string("scaffold"), std::string("--persist-momentum")),
                                    std::make_pair(std::string("fedprox"), std::string("--proximal-mu=0.01"))}) {
    CAPTURE(name);
    const std::string run = f.dir + "/" + name;
    const int rc = RunGreenfed({"run", "--clients=3", "--max-rounds=3", "--target-accuracy=1.0", "--lr=0.01",
                                "--data-dir=" + f.data, "--run-dir=" + run, "--strategy=" + name, extra, "--insecure"},
                               f.dir + "/" + name + ".log");
    INFO(ReadText(f.dir + "/" + name + ".log"));
    REQUIRE(rc == 0);
    const auto summary = nlohmann::json::parse(ReadText(run + "/summary.json"));
    CHECK(summary["rounds"] == 3);
    CHECK(summary["final_accuracy"].get<double>() > 0.3);  // 10 classes: well above chance
    const auto config = nlohmann::json::parse(ReadText(run + "/config.json"));
    CHECK(config["strategy"]["settings"] ==
          (name == "scaffold" ? "scaffold(server_learning_rate=1)" : "fedprox(proximal_mu=0.01)"));
    const std::string client_log = ReadText(run + "/client-0.log");
    CHECK(client_log.find("client state: empty") != std::string::npos);
    CHECK(client_log.find("round 3: trained") != std::string::npos);
    CHECK(ReadText(f.dir + "/" + name + ".log").find("rejected fit result") == std::string::npos);
  }
  // FedProx without its mu is a flag error, as in Flower.
  CHECK(RunGreenfed({"run", "--clients=2", "--strategy=fedprox", "--data-dir=" + f.data, "--run-dir=" + f.dir + "/nomu",
                     "--insecure"},
                    f.dir + "/nomu.log") == 2);
  CHECK(ReadText(f.dir + "/nomu.log").find("--proximal-mu is required with --strategy fedprox") != std::string::npos);
  // compare checks each FL run's strategy before any run starts.
  CHECK(RunGreenfed({"compare", "--non-iid-strategy=fedprox", "--out=" + f.dir + "/cmp"}, f.dir + "/cmp.log") == 2);
  CHECK(ReadText(f.dir + "/cmp.log").find("--non-iid-strategy: --proximal-mu is required") != std::string::npos);
  CHECK(RunGreenfed({"compare", "--iid-strategy=fedsgd", "--out=" + f.dir + "/cmp"}, f.dir + "/cmp2.log") == 2);
  CHECK(ReadText(f.dir + "/cmp2.log").find("--iid-strategy: --strategy must be one of") != std::string::npos);
}

namespace {

// Sum of bytes_sent over the nodes.csv rows of `role` ("client", "coordinator").
uint64_t BytesSent(const std::string& nodes_csv, const std::string& role) {
  std::istringstream in(ReadText(nodes_csv));
  std::string line;
  std::getline(in, line);
  std::vector<std::string> header;
  {
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, ',')) header.push_back(cell);
  }
  const auto col = [&](const std::string& name) {
    const auto it = std::find(header.begin(), header.end(), name);
    REQUIRE(it != header.end());
    return static_cast<size_t>(it - header.begin());
  };
  const size_t role_col = col("role"), bytes_col = col("bytes_sent");
  uint64_t total = 0;
  while (std::getline(in, line)) {
    std::vector<std::string> cells;
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, ',')) cells.push_back(cell);
    if (cells.size() > std::max(role_col, bytes_col) && cells[role_col] == role) total += std::stoull(cells[bytes_col]);
  }
  return total;
}

}  // namespace

// Issue 12: update codecs over real processes. Every FitRes carries the encoded
// delta, so the clients' bytes_sent (what crossed their sockets) shrink by the
// codec's factor; the run completes and config.json names the codecs.
TEST_CASE("greenfed run --uplink-codec int8 and topk:0.01 shrink the clients' uplink bytes by the codec's factor") {
  Fixture f;
  constexpr int kClients = 3, kRounds = 3;
  constexpr uint64_t kDense = 423'464;  // the CNN's 105,866 float32 parameters
  std::map<std::string, uint64_t> client_bytes, coordinator_bytes;
  for (const std::string codec : {"none", "int8", "topk:0.01", "int8+fp16"}) {
    CAPTURE(codec);
    const bool down = codec == "int8+fp16";
    const std::string uplink = down ? "int8" : codec;
    const std::string run = f.dir + "/" + (codec == "topk:0.01" ? std::string("topk") : down ? "down" : codec);
    std::vector<std::string> args = {"run", "--clients=" + std::to_string(kClients),
                                     "--max-rounds=" + std::to_string(kRounds), "--target-accuracy=1.0",
                                     "--lr=0.01", "--data-dir=" + f.data, "--run-dir=" + run, "--insecure",
                                     "--uplink-codec=" + uplink};
    if (down) args.push_back("--downlink-codec=fp16");
    const int rc = RunGreenfed(args, run + ".log");
    INFO(ReadText(run + ".log"));
    REQUIRE(rc == 0);
    const auto summary = nlohmann::json::parse(ReadText(run + "/summary.json"));
    CHECK(summary["rounds"] == kRounds);
    CHECK(ReadText(run + ".log").find("rejected fit result") == std::string::npos);
    const auto config = nlohmann::json::parse(ReadText(run + "/config.json"));
    CHECK(config["uplink_codec"] == uplink);
    CHECK(config["downlink_codec"] == (down ? "fp16" : "none"));
    CHECK(config["train"]["send_delta"] == (codec != "none"));
    CHECK(ReadText(run + "/client-0.log").find("round 3: trained") != std::string::npos);
    if (codec != "topk:0.01") CHECK(summary["final_accuracy"].get<double>() > 0.3);
    client_bytes[codec] = BytesSent(run + "/nodes.csv", "client");
    coordinator_bytes[codec] = BytesSent(run + "/nodes.csv", "coordinator");
  }
  const double none = static_cast<double>(client_bytes["none"]);
  MESSAGE("client bytes sent: none " << client_bytes["none"] << ", int8 " << client_bytes["int8"] << ", topk:0.01 "
                                     << client_bytes["topk:0.01"]);
  // The saving is the encoded FitRes frames' (105,932 and 8,478 bytes, docs/codecs.md),
  // give or take heartbeats (their number depends on timing): within 2%.
  const double updates = kClients * kRounds;
  CHECK(none - static_cast<double>(client_bytes["int8"]) == doctest::Approx(updates * (kDense - 105'932)).epsilon(0.02));
  CHECK(none - static_cast<double>(client_bytes["topk:0.01"]) ==
        doctest::Approx(updates * (kDense - 8'478)).epsilon(0.02));
  CHECK(none / static_cast<double>(client_bytes["int8"]) >= 3.5);
  CHECK(none / static_cast<double>(client_bytes["topk:0.01"]) >= 20.0);
  // fp16 on the downlink halves what the coordinator sends (Fit is nearly all of it).
  CHECK(static_cast<double>(coordinator_bytes["none"]) / static_cast<double>(coordinator_bytes["int8+fp16"]) >= 1.8);
  CHECK(client_bytes["int8+fp16"] == doctest::Approx(client_bytes["int8"]).epsilon(0.02));

  // Bad codec flags: exit 2 naming the flag.
  CHECK(RunGreenfed({"run", "--clients=2", "--uplink-codec=topk:2", "--insecure", "--data-dir=" + f.data,
                     "--run-dir=" + f.dir + "/bad1"},
                    f.dir + "/bad1.log") == 2);
  CHECK(ReadText(f.dir + "/bad1.log").find("--uplink-codec") != std::string::npos);
  CHECK(RunGreenfed({"run", "--clients=2", "--downlink-codec=topk:0.1", "--insecure", "--data-dir=" + f.data,
                     "--run-dir=" + f.dir + "/bad2"},
                    f.dir + "/bad2.log") == 2);
  CHECK(ReadText(f.dir + "/bad2.log").find("--downlink-codec topk:0.1") != std::string::npos);
}
