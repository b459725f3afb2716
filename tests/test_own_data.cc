// Own-data mode with real processes on loopback: `greenfed coordinator --partition
// none` and clients that each train on their own digits CSV file (`greenfed client
// --data PATH`), written by the test from the real data of Debian's python3-sklearn.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "digits/data.h"

extern char** environ;

namespace {

using namespace greenfed::digits;

const std::string kBinary = GREENFED_BINARY;

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

pid_t Spawn(const std::vector<std::string>& args, const std::string& log) {
  std::vector<std::string> argv = {kBinary};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> c;
  for (auto& a : argv) c.push_back(a.data());
  c.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = 0;
  REQUIRE(posix_spawn(&pid, kBinary.c_str(), &fa, nullptr, c.data(), environ) == 0);
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}

int Wait(pid_t pid, int timeout_s = 240) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > until) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::vector<uint32_t> Range(uint32_t begin, uint32_t end) {
  std::vector<uint32_t> v;
  for (uint32_t i = begin; i < end; ++i) v.push_back(i);
  return v;
}

}  // namespace

TEST_CASE("own data: two clients each on its own digits file run two rounds, one over the bound is refused") {
  char tmpl[] = "/tmp/greenfed-own-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::string dir = tmpl;
  auto real = ReadDigitsCsv(std::string(kDefaultDataDir) + "/" + kDigitsFile);
  REQUIRE_MESSAGE(real.ok(), real.status().ToString());
  // Disjoint rows of the real file: 400 and 300 examples, and 600 for the client over the bound.
  REQUIRE(WriteDigitsCsv(dir + "/client-a.csv", Select(*real, Range(0, 400))).ok());
  REQUIRE(WriteDigitsCsv(dir + "/client-b.csv.gz", Select(*real, Range(400, 700))).ok());
  REQUIRE(WriteDigitsCsv(dir + "/too-big.csv", Select(*real, Range(700, 1300))).ok());

  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(20000 + (getpid() + 4241) % 20000);
  const std::string run = dir + "/fl";
  pid_t coord = Spawn({"coordinator", "--bind=" + endpoint, "--task=digits", "--partition=none",
                       "--max-client-examples=500", "--num-clients=2", "--max-rounds=2", "--target-accuracy=1.0",
                       "--run-dir=" + run, "--insecure"},
                      dir + "/coordinator.log");
  auto client = [&](const std::string& data, const std::string& name) {
    std::vector<std::string> args = {"client", "--connect=" + endpoint, "--insecure", "--connect-timeout-s=60",
                                     "--client-id=" + name, "--task=digits"};
    if (!data.empty()) args.push_back("--data=" + data);
    return Spawn(args, dir + "/" + name + ".log");
  };
  // Over the bound, and a client with no data of its own: both refused, by name.
  const int too_big_rc = Wait(client(dir + "/too-big.csv", "too-big"), 90);
  const std::string too_big_log = Read(dir + "/too-big.log");
  INFO(too_big_log);
  CHECK(too_big_rc == 1);
  CHECK(too_big_log.find("own data " + dir + "/too-big.csv: 600 training examples") != std::string::npos);
  CHECK(too_big_log.find("INCOMPATIBLE: declared num_examples 600 exceeds this federation's bound of 500 examples "
                         "per client (--max-client-examples)") != std::string::npos);
  pid_t partitioned = Spawn({"client", "--connect=" + endpoint, "--insecure", "--connect-timeout-s=60",
                             "--client-id=partitioned"},
                            dir + "/partitioned.log");
  CHECK(Wait(partitioned, 90) == 1);
  CHECK(Read(dir + "/partitioned.log").find("declare num_examples > 0 at join (start the client with --data PATH)") !=
        std::string::npos);

  pid_t a = client(dir + "/client-a.csv", "client-a");
  pid_t b = client(dir + "/client-b.csv.gz", "client-b");
  const int rc = Wait(coord);
  const std::string log = Read(dir + "/coordinator.log");
  INFO(log);
  CHECK(rc == 0);
  CHECK(Wait(a) == 0);
  CHECK(Wait(b) == 0);
  CHECK(log.find("clients bring their own data (--partition none)") != std::string::npos);
  CHECK(log.find("refused join from too-big: INCOMPATIBLE") != std::string::npos);
  CHECK(Read(dir + "/client-a.log").find("trained on 400 examples") != std::string::npos);
  CHECK(Read(dir + "/client-b.log").find("trained on 300 examples") != std::string::npos);
  const auto summary = nlohmann::json::parse(Read(run + "/summary.json"));
  CHECK(summary["rounds"] == 2);
  const auto config = nlohmann::json::parse(Read(run + "/config.json"));
  CHECK(config["partition"]["scheme"] == "none");
  CHECK(config["partition"]["max_client_examples"] == 500);
  CHECK(config["model"] == "mlp");
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

TEST_CASE("own data: a client with --data against a partitioning coordinator stops with a named reason") {
  char tmpl[] = "/tmp/greenfed-own-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::string dir = tmpl;
  auto real = ReadDigitsCsv(std::string(kDefaultDataDir) + "/" + kDigitsFile);
  REQUIRE(real.ok());
  REQUIRE(WriteDigitsCsv(dir + "/mine.csv", Select(*real, Range(0, 100))).ok());
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(20000 + (getpid() + 7717) % 20000);
  pid_t coord = Spawn({"coordinator", "--bind=" + endpoint, "--task=digits", "--num-clients=1", "--max-rounds=1",
                       "--run-dir=" + dir + "/fl", "--insecure", "--client-wait-s=5", "--max-idle-s=20"},
                      dir + "/coordinator.log");
  pid_t c = Spawn({"client", "--connect=" + endpoint, "--insecure", "--connect-timeout-s=60", "--task=digits",
                   "--data=" + dir + "/mine.csv"},
                  dir + "/client.log");
  CHECK(Wait(c, 90) == 1);
  const std::string log = Read(dir + "/client.log");
  INFO(log);
  CHECK(log.find("this client trains on its own data (--data) but the coordinator partitions the data set "
                 "(--partition iid); start the coordinator with --partition none") != std::string::npos);
  kill(coord, SIGTERM);
  Wait(coord, 60);
  // Bad flags exit 2 before any network traffic.
  CHECK(Wait(Spawn({"client", "--data=" + dir + "/missing.csv", "--task=digits", "--insecure"}, dir + "/bad.log"),
             30) == 2);
  CHECK(Read(dir + "/bad.log").find("--data " + dir + "/missing.csv: cannot read the file") != std::string::npos);
  CHECK(Wait(Spawn({"client", "--task=digits", "--insecure"}, dir + "/bad2.log"), 30) == 2);
  CHECK(Read(dir + "/bad2.log").find("--task and --model are for --data") != std::string::npos);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}
