// Own-data mode with real processes on loopback: `greenfed coordinator --partition
// none` and clients that each train on their own digits CSV file (`greenfed client
// --data PATH`), written by the test from the real data of Debian's python3-sklearn.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "digits/data.h"
#include "run_helpers.h"

namespace {

using greenfed::testing::MakeTempDir;
using greenfed::testing::ReadText;
using greenfed::testing::SpawnGreenfed;
using greenfed::testing::WaitExit;
using namespace greenfed::digits;

std::vector<uint32_t> Range(uint32_t begin, uint32_t end) {
  std::vector<uint32_t> v;
  for (uint32_t i = begin; i < end; ++i) v.push_back(i);
  return v;
}

}  // namespace

TEST_CASE("own data: two clients each on its own digits file run two rounds, one over the bound is refused") {
  const std::string dir = MakeTempDir("greenfed-own");
  auto real = ReadDigitsCsv(std::string(kDefaultDataDir) + "/" + kDigitsFile);
  REQUIRE_MESSAGE(real.ok(), real.status().ToString());
  // Disjoint rows of the real file: 400 and 300 examples, and 600 for the client over the bound.
  REQUIRE(WriteDigitsCsv(dir + "/client-a.csv", Select(*real, Range(0, 400))).ok());
  REQUIRE(WriteDigitsCsv(dir + "/client-b.csv.gz", Select(*real, Range(400, 700))).ok());
  REQUIRE(WriteDigitsCsv(dir + "/too-big.csv", Select(*real, Range(700, 1300))).ok());

  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(20000 + (getpid() + 4241) % 20000);
  const std::string run = dir + "/fl";
  pid_t coord = SpawnGreenfed(
      {"coordinator", "--bind=" + endpoint, "--task=digits", "--partition=none", "--max-client-examples=500",
       "--num-clients=2", "--max-rounds=2", "--target-accuracy=1.0", "--run-dir=" + run, "--insecure"},
      dir + "/coordinator.log");
  auto client = [&](const std::string& data, const std::string& name) {
    std::vector<std::string> args = {"client", "--connect=" + endpoint, "--insecure", "--connect-timeout-s=60",
                                     "--client-id=" + name, "--task=digits"};
    if (!data.empty()) args.push_back("--data=" + data);
    return SpawnGreenfed(args, dir + "/" + name + ".log");
  };
  // Over the bound, and a client with no data of its own: both refused, by name.
  const int too_big_rc = WaitExit(client(dir + "/too-big.csv", "too-big"), 90);
  const std::string too_big_log = ReadText(dir + "/too-big.log");
  INFO(too_big_log);
  CHECK(too_big_rc == 1);
  CHECK(too_big_log.find("own data " + dir + "/too-big.csv: 600 training examples") != std::string::npos);
  CHECK(too_big_log.find("INCOMPATIBLE: declared num_examples 600 exceeds this federation's bound of 500 examples "
                         "per client (--max-client-examples)") != std::string::npos);
  pid_t partitioned = SpawnGreenfed(
      {"client", "--connect=" + endpoint, "--insecure", "--connect-timeout-s=60", "--client-id=partitioned"},
      dir + "/partitioned.log");
  CHECK(WaitExit(partitioned, 90) == 1);
  CHECK(
      ReadText(dir + "/partitioned.log").find("declare num_examples > 0 at join (start the client with --data PATH)") !=
      std::string::npos);

  pid_t a = client(dir + "/client-a.csv", "client-a");
  pid_t b = client(dir + "/client-b.csv.gz", "client-b");
  const int rc = WaitExit(coord);
  const std::string log = ReadText(dir + "/coordinator.log");
  INFO(log);
  CHECK(rc == 0);
  CHECK(WaitExit(a) == 0);
  CHECK(WaitExit(b) == 0);
  CHECK(log.find("clients bring their own data (--partition none)") != std::string::npos);
  CHECK(log.find("refused join from too-big: INCOMPATIBLE") != std::string::npos);
  CHECK(ReadText(dir + "/client-a.log").find("trained on 400 examples") != std::string::npos);
  CHECK(ReadText(dir + "/client-b.log").find("trained on 300 examples") != std::string::npos);
  const auto summary = nlohmann::json::parse(ReadText(run + "/summary.json"));
  CHECK(summary["rounds"] == 2);
  const auto config = nlohmann::json::parse(ReadText(run + "/config.json"));
  CHECK(config["partition"]["scheme"] == "none");
  CHECK(config["partition"]["max_client_examples"] == 500);
  CHECK(config["model"] == "mlp");
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

TEST_CASE("own data: a client with --data against a partitioning coordinator stops with a named reason") {
  const std::string dir = MakeTempDir("greenfed-own");
  auto real = ReadDigitsCsv(std::string(kDefaultDataDir) + "/" + kDigitsFile);
  REQUIRE(real.ok());
  REQUIRE(WriteDigitsCsv(dir + "/mine.csv", Select(*real, Range(0, 100))).ok());
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(20000 + (getpid() + 7717) % 20000);
  pid_t coord =
      SpawnGreenfed({"coordinator", "--bind=" + endpoint, "--task=digits", "--num-clients=1", "--max-rounds=1",
                     "--run-dir=" + dir + "/fl", "--insecure", "--client-wait-s=5", "--max-idle-s=20"},
                    dir + "/coordinator.log");
  pid_t c = SpawnGreenfed({"client", "--connect=" + endpoint, "--insecure", "--connect-timeout-s=60", "--task=digits",
                           "--data=" + dir + "/mine.csv"},
                          dir + "/client.log");
  CHECK(WaitExit(c, 90) == 1);
  const std::string log = ReadText(dir + "/client.log");
  INFO(log);
  CHECK(log.find("this client trains on its own data (--data) but the coordinator partitions the data set "
                 "(--partition iid); start the coordinator with --partition none") != std::string::npos);
  kill(coord, SIGTERM);
  WaitExit(coord, 60);
  // Bad flags exit 2 before any network traffic.
  CHECK(WaitExit(SpawnGreenfed({"client", "--data=" + dir + "/missing.csv", "--task=digits", "--insecure"},
                               dir + "/bad.log"),
                 30) == 2);
  CHECK(ReadText(dir + "/bad.log").find("--data " + dir + "/missing.csv: cannot read the file") != std::string::npos);
  CHECK(WaitExit(SpawnGreenfed({"client", "--task=digits", "--insecure"}, dir + "/bad2.log"), 30) == 2);
  CHECK(ReadText(dir + "/bad2.log").find("--task and --model are for --data") != std::string::npos);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}
