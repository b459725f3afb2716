#include <doctest/doctest.h>

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
