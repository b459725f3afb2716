#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdlib>
#include <string>

#include "greenfed/flags.h"

using namespace greenfed;

TEST_CASE("flags parse both spellings, keep defaults, and list them in --help") {
  FlagSet f("greenfed test", "a test");
  std::string name = "x";
  int64_t count = 3;
  uint64_t rounds = 5;
  double rate = 0.5;
  bool fast = false;
  f.AddString("name", &name, "a name");
  f.AddInt("count", &count, "a count");
  f.AddUint("rounds", &rounds, "rounds");
  f.AddDouble("rate", &rate, "a rate");
  f.AddBool("fast", &fast, "go fast");
  std::vector<std::string> positional;
  auto r = f.Parse({"--name", "y", "--count=-4", "dir1", "--rate", "1e-3", "--fast", "dir2"}, &positional);
  REQUIRE(r.ok());
  CHECK_FALSE(*r);
  CHECK(name == "y");
  CHECK(count == -4);
  CHECK(rounds == 5);
  CHECK(rate == 0.001);
  CHECK(fast);
  CHECK(positional == std::vector<std::string>{"dir1", "dir2"});
  CHECK(f.WasSet("name"));
  CHECK_FALSE(f.WasSet("rounds"));
  const std::string help = f.Help();
  CHECK(help.find("--rounds VALUE") != std::string::npos);
  CHECK(help.find("(default: 5)") != std::string::npos);
  CHECK(help.find("(default: x)") != std::string::npos);  // defaults as declared, not as parsed
  auto h = f.Parse({"--help"});
  REQUIRE(h.ok());
  CHECK(*h);
}

TEST_CASE("bad flags are errors that name the flag") {
  FlagSet f("greenfed test", "a test");
  uint64_t rounds = 5;
  double rate = 0.5;
  bool fast = false;
  f.AddUint("rounds", &rounds, "rounds");
  f.AddDouble("rate", &rate, "a rate");
  f.AddBool("fast", &fast, "go fast");
  f.AddCheck([&]() -> Status { return rate > 1 ? InvalidArgument("--rate must be <= 1") : Status::Ok(); });
  CHECK(f.Parse({"--bogus"}).status().message().find("unknown flag --bogus") != std::string::npos);
  CHECK(f.Parse({"--rounds"}).status().message().find("--rounds needs a value") != std::string::npos);
  CHECK(f.Parse({"--rounds", "-1"}).status().message().find("--rounds=-1: expected a non-negative integer") !=
        std::string::npos);
  CHECK(f.Parse({"--rounds=12abc"}).status().message().find("expected a non-negative integer") != std::string::npos);
  CHECK(f.Parse({"--rate=nan"}).status().message().find("--rate=nan: expected a finite number") != std::string::npos);
  CHECK(f.Parse({"--fast=maybe"}).status().message().find("expected true or false") != std::string::npos);
  CHECK(f.Parse({"stray"}).status().message().find("unexpected argument 'stray'") != std::string::npos);
  CHECK(f.Parse({"--rate=2"}).status().message() == "--rate must be <= 1");
}

TEST_CASE("SplitList trims and drops empty parts") {
  CHECK(SplitList(" USA, fra ,,WORLD") == std::vector<std::string>{"USA", "fra", "WORLD"});
  CHECK(SplitList("").empty());
}

namespace {

std::string WriteToml(const std::string& text) {
  char tmpl[] = "/tmp/greenfed-config-XXXXXX";
  const int fd = mkstemp(tmpl);
  REQUIRE(fd >= 0);
  REQUIRE(write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  close(fd);
  return tmpl;
}

struct RunFlags {
  FlagSet f{"greenfed run", "a run"};
  std::string partition = "iid";
  uint64_t rounds = 50;
  double lr = 0.05;
  bool delta = false;
  int64_t index = -1;
  RunFlags() {
    f.AddString("partition", &partition, "partition");
    f.AddUint("max-rounds", &rounds, "rounds");
    f.AddDouble("lr", &lr, "learning rate");
    f.AddBool("send-delta", &delta, "deltas");
    f.AddInt("client-index", &index, "index");
    f.AddCheck([this]() -> Status { return lr > 0 ? Status::Ok() : InvalidArgument("--lr must be positive"); });
  }
};

}  // namespace

TEST_CASE("--config: a TOML file sets flags, the command line overrides it, tables pick the command") {
  const std::string path = WriteToml(
      "# an experiment\n"
      "partition = \"dirichlet\"\n"
      "max_rounds = 12\n"
      "lr = 1          # an integer is a fine number\n"
      "[run]\n"
      "send-delta = true\n"
      "[client]\n"
      "bogus-for-run = 3   # another command's table is skipped\n");
  RunFlags r;
  auto parsed = r.f.Parse({"--config", path, "--max-rounds=20"});
  REQUIRE_MESSAGE(parsed.ok(), parsed.status().ToString());
  CHECK(r.partition == "dirichlet");
  CHECK(r.rounds == 20);  // the command line wins
  CHECK(r.lr == 1.0);
  CHECK(r.delta);
  CHECK(r.f.config_path() == path);
  CHECK(r.f.Help().find("--config FILE") != std::string::npos);
}

TEST_CASE("--config: unknown keys, wrong types and bad values name the file, the line and the key") {
  auto error = [](const std::string& toml) {
    RunFlags r;
    const std::string path = WriteToml(toml);
    auto parsed = r.f.Parse({"--config=" + path});
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.status().code() == Code::kInvalidArgument);
    std::string m = parsed.status().message();
    REQUIRE(m.rfind(path, 0) == 0);
    return m.substr(path.size());
  };
  CHECK(error("partition = \"iid\"\nlrr = 0.1\n") == ":2: unknown key 'lrr' for greenfed run (see greenfed run --help)");
  CHECK(error("max-rounds = \"ten\"\n") == ":1: key 'max-rounds' must be a non-negative integer, got a string");
  CHECK(error("\n\nlr = true\n") == ":3: key 'lr' must be a number, got a boolean");
  CHECK(error("client-index = 1.5\n") == ":1: key 'client-index' must be an integer, got a float");
  CHECK(error("[run]\nmax-rounds = -3\n") ==
        ":2: key 'run.max-rounds': --max-rounds=-3: expected a non-negative integer");
  CHECK(error("[weird]\nlr = 1\n") == ":1: unknown key 'weird' for greenfed run (see greenfed run --help)");
  CHECK(error("lr = \n").find(":1:6: not valid TOML") == 0);
  // A range check on a value from the file says where the value came from.
  RunFlags r;
  const std::string path = WriteToml("\nlr = -0.5\n");
  auto parsed = r.f.Parse({"--config", path});
  REQUIRE_FALSE(parsed.ok());
  CHECK(parsed.status().message() == "--lr must be positive (from " + path + ":2, key 'lr')");
  // ... and not when the command line set it.
  RunFlags cli;
  CHECK(cli.f.Parse({"--config", path, "--lr=-1"}).status().message() == "--lr must be positive");
  RunFlags missing;
  CHECK(missing.f.Parse({"--config", "/nonexistent/x.toml"}).status().message().find(
            "cannot read config file /nonexistent/x.toml") == 0);
}
