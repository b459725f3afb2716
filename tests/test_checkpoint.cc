// checkpoint.bin: round trip, refusals (corrupt, truncated, wrong version, another
// run's settings) and atomic replacement. Pure file logic, no sockets.
#include <doctest/doctest.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "greenfed/coordinator/checkpoint.h"
#include "run_helpers.h"

using namespace greenfed;

namespace {

using greenfed::testing::MakeTempDir;
using greenfed::testing::ReadText;
using greenfed::testing::WriteText;

RoundOptions Options() {
  RoundOptions o;
  o.num_clients = 10;
  o.min_available_clients = 10;
  o.run_id = "fl-iid-test";
  o.train.learning_rate = 0.05;
  return o;
}

Checkpoint Sample() {
  Checkpoint c;
  c.identity = RunIdentityFor(Options());
  c.machine.completed_rounds = 2;
  c.machine.global = {MakeFloatBlob("conv1.weight", {2, 3}, {0.1f, -0.2f, 0.3f, 1e-8f, -4.5f, 6.f}),
                      MakeFloatBlob("fc.bias", {2}, {0.25f, -0.75f})};
  c.machine.strategy_state = {1, 2, 3};
  c.machine.sampling_state = {9, 8, 7, 6};
  c.server.best_accuracy = 0.8123;
  c.server.last_accuracy = 0.8011;
  c.server.total_bytes_sent = 123456789;
  c.server.total_bytes_received = 987654321;
  c.server.elapsed_s = 42.125;
  for (int64_t r = 1; r <= 2; ++r) {
    RoundRow row;
    row.round = r;
    row.clients_sampled = 10;
    row.clients_succeeded = 9;
    row.clients_failed = 1;
    row.test_accuracy = 0.7 + 0.1 * static_cast<double>(r) / 3;  // not representable in 10 digits
    row.elapsed_s = 20.0 * static_cast<double>(r);
    row.bytes_sent = 1000 * static_cast<uint64_t>(r);
    if (r == 2) row.fed_accuracy = 0.75;
    c.ledger.rounds.push_back(row);
  }
  NodeRow coord;
  coord.round = 1;
  coord.node = NodeInfo{"coordinator", "coordinator", "FRA", 1.4, 56.7};
  coord.aggregate_j = 1.0 / 3.0;
  coord.comm_j = 0.1;
  NodeRow client;
  client.round = 2;
  client.node = NodeInfo{"client-3", "client", "DEU", 1.0, 380.5};
  client.source = EnergySource::kRapl;
  client.train_j = 1234.5678901234;
  client.bytes_received = 77;
  NodeRow virtual_client;  // greenfed simulate with RAPL readable (sim/rapl_split.h)
  virtual_client.round = 2;
  virtual_client.node = NodeInfo{"client-4", "client", "DEU", 1.0, 380.5};
  virtual_client.source = EnergySource::kRaplSplit;
  virtual_client.train_j = 2.5;
  c.ledger.nodes = {coord, client, virtual_client};
  return c;
}

bool SameLedger(const RunLedger& a, const RunLedger& b) {
  if (a.rounds.size() != b.rounds.size() || a.nodes.size() != b.nodes.size()) return false;
  for (size_t i = 0; i < a.rounds.size(); ++i) {
    const RoundRow &x = a.rounds[i], &y = b.rounds[i];
    if (x.round != y.round || x.clients_sampled != y.clients_sampled || x.clients_succeeded != y.clients_succeeded ||
        x.clients_failed != y.clients_failed || x.test_accuracy != y.test_accuracy || x.test_loss != y.test_loss ||
        x.train_loss != y.train_loss || x.round_s != y.round_s || x.elapsed_s != y.elapsed_s ||
        x.bytes_sent != y.bytes_sent || x.bytes_received != y.bytes_received || x.fed_accuracy != y.fed_accuracy) {
      return false;
    }
  }
  for (size_t i = 0; i < a.nodes.size(); ++i) {
    const NodeRow &x = a.nodes[i], &y = b.nodes[i];
    if (x.round != y.round || x.node.node_id != y.node.node_id || x.node.role != y.node.role ||
        x.node.country != y.node.country || x.node.pue != y.node.pue || x.node.g_per_kwh != y.node.g_per_kwh ||
        x.source != y.source || x.wall_s != y.wall_s || x.cpu_s != y.cpu_s || x.train_j != y.train_j ||
        x.evaluate_j != y.evaluate_j || x.aggregate_j != y.aggregate_j || x.idle_j != y.idle_j ||
        x.comm_j != y.comm_j || x.bytes_sent != y.bytes_sent || x.bytes_received != y.bytes_received) {
      return false;
    }
  }
  return true;
}

}  // namespace

TEST_CASE("checkpoint round trip: identical model bytes, ledger, rounds and server state") {
  const std::string dir = MakeTempDir("greenfed-ckpt");
  const Checkpoint c = Sample();
  REQUIRE(WriteCheckpoint(dir, c).ok());
  auto back = LoadCheckpoint(dir);
  REQUIRE_MESSAGE(back.ok(), back.status().ToString());
  CHECK(back->identity == c.identity);
  CHECK(back->machine.completed_rounds == 2);
  REQUIRE(back->machine.global.size() == 2);
  for (size_t i = 0; i < 2; ++i) {
    CHECK(back->machine.global[i].name == c.machine.global[i].name);
    CHECK(back->machine.global[i].shape == c.machine.global[i].shape);
    CHECK(back->machine.global[i].data == c.machine.global[i].data);  // bit for bit
  }
  CHECK(back->machine.strategy_state == c.machine.strategy_state);
  CHECK(back->machine.sampling_state == c.machine.sampling_state);
  CHECK(back->server == c.server);
  CHECK(SameLedger(back->ledger, c.ledger));  // doubles bit for bit, g_per_kwh kept
  CHECK_FALSE(std::filesystem::exists(dir + "/checkpoint.bin.tmp"));
}

TEST_CASE("a restored ledger writes the same rounds.csv and nodes.csv as the original") {
  const std::string a = MakeTempDir("greenfed-ckpt") + "/a", b = MakeTempDir("greenfed-ckpt") + "/b";
  auto first = RunDir::Create(a);
  REQUIRE(first.ok());
  const Checkpoint c = Sample();
  REQUIRE((*first)->Restore(c.ledger).ok());
  REQUIRE((*first)->Flush().ok());
  auto encoded = EncodeCheckpoint(Checkpoint{c.identity, c.machine, c.server, (*first)->Ledger()});
  REQUIRE(encoded.ok());
  auto decoded = DecodeCheckpoint(*encoded);
  REQUIRE(decoded.ok());
  REQUIRE(std::filesystem::create_directories(b));
  auto second = RunDir::Open(b);
  REQUIRE(second.ok());
  REQUIRE((*second)->Restore(decoded->ledger).ok());
  REQUIRE((*second)->Flush().ok());
  CHECK(ReadText(a + "/rounds.csv") == ReadText(b + "/rounds.csv"));
  CHECK(ReadText(a + "/nodes.csv") == ReadText(b + "/nodes.csv"));
  CHECK((*second)->Totals().co2e_g == (*first)->Totals().co2e_g);
}

TEST_CASE("a corrupt byte is refused, naming the digest") {
  const std::string dir = MakeTempDir("greenfed-ckpt");
  REQUIRE(WriteCheckpoint(dir, Sample()).ok());
  std::string bytes = ReadText(CheckpointPath(dir));
  bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x01);  // inside the payload
  WriteText(CheckpointPath(dir), bytes);
  auto back = LoadCheckpoint(dir);
  REQUIRE_FALSE(back.ok());
  CHECK(back.status().code() == Code::kDataLoss);
  CHECK(back.status().message().find("SHA-256 digest mismatch") != std::string::npos);
  CHECK(back.status().message().find("checkpoint.bin") != std::string::npos);
}

TEST_CASE("a truncated checkpoint is refused as truncated, at any length") {
  auto bytes = EncodeCheckpoint(Sample());
  REQUIRE(bytes.ok());
  for (size_t keep : {size_t{0}, size_t{7}, size_t{30}, bytes->size() / 2, bytes->size() - 1}) {
    auto back = DecodeCheckpoint(bytes->substr(0, keep));
    INFO("kept " << keep << " of " << bytes->size() << ": " << back.status().message());
    REQUIRE_FALSE(back.ok());
    CHECK(back.status().code() == Code::kDataLoss);
    CHECK(back.status().message().find("truncated") != std::string::npos);
  }
  auto longer = DecodeCheckpoint(*bytes + "x");
  REQUIRE_FALSE(longer.ok());
  CHECK(longer.status().message().find("unexpected bytes") != std::string::npos);
}

TEST_CASE("a checkpoint of another format version or no checkpoint at all is refused") {
  auto bytes = EncodeCheckpoint(Sample());
  REQUIRE(bytes.ok());
  std::string v3 = *bytes;
  v3[8] = 3;  // format version, right after the 8 magic bytes
  auto back = DecodeCheckpoint(v3);
  REQUIRE_FALSE(back.ok());
  CHECK(back.status().message().find("checkpoint format version 3; this greenfed reads 2") != std::string::npos);
  // Format 1 (before the sampling policy's state) is refused by name.
  std::string v1 = *bytes;
  v1[8] = 1;
  auto old = DecodeCheckpoint(v1);
  REQUIRE_FALSE(old.ok());
  CHECK(old.status().message().find("format version 1, written by a greenfed from before the sampling policy") !=
        std::string::npos);
  std::string magic = *bytes;
  magic[0] = 'X';
  CHECK(DecodeCheckpoint(magic).status().message().find("not a greenfed checkpoint") != std::string::npos);
  auto missing = LoadCheckpoint(MakeTempDir("greenfed-ckpt"));
  CHECK(missing.status().code() == Code::kNotFound);
  CHECK(missing.status().message().find("checkpoint.bin is missing") != std::string::npos);
}

TEST_CASE("a checkpoint written for other settings is refused, naming each setting that differs") {
  const RunIdentity original = RunIdentityFor(Options());
  CHECK(CheckSameRun(original, RunIdentityFor(Options())).ok());
  RoundOptions other = Options();
  other.num_clients = 3;
  other.partition.scheme = "dirichlet";
  other.round_timeout_s = 5;  // operational: may change on resume
  other.min_available_clients = 3;
  const Status s = CheckSameRun(original, RunIdentityFor(other));
  REQUIRE_FALSE(s.ok());
  CHECK(s.code() == Code::kFailedPrecondition);
  CHECK(s.message().find("checkpoint was written for --num-clients 10, this run has 3") != std::string::npos);
  CHECK(s.message().find("checkpoint was written for --partition iid, this run has dirichlet") != std::string::npos);
  CHECK(s.message().find("timeout") == std::string::npos);
  RoundOptions lr = Options();
  lr.train.learning_rate = 0.0005;
  CHECK(CheckSameRun(original, RunIdentityFor(lr)).message().find("--lr 0.05, this run has 0.0005") !=
        std::string::npos);
  RoundOptions adam = Options();
  adam.strategy.name = "fedadam";
  CHECK(CheckSameRun(original, RunIdentityFor(adam)).message().find(
            "checkpoint was written for --strategy fedavg, this run has fedadam") != std::string::npos);
  RoundOptions renamed = Options();
  renamed.run_id = "elsewhere";
  CHECK(CheckSameRun(original, RunIdentityFor(renamed)).message().find("run fl-iid-test, this run is elsewhere") !=
        std::string::npos);
  CHECK(original.ConfigDigest().size() == 64);
  CHECK(original.ConfigDigest() != RunIdentityFor(other).ConfigDigest());
}

TEST_CASE("checkpoint writes are atomic: a leftover temp file is ignored and replaced") {
  const std::string dir = MakeTempDir("greenfed-ckpt");
  Checkpoint c = Sample();
  REQUIRE(WriteCheckpoint(dir, c).ok());
  // A crash in the middle of the next write leaves a partial temp file behind.
  const std::string full = ReadText(CheckpointPath(dir));
  WriteText(CheckpointPath(dir) + ".tmp", full.substr(0, full.size() / 3));
  auto back = LoadCheckpoint(dir);
  REQUIRE(back.ok());
  CHECK(back->machine.completed_rounds == 2);
  // The next write replaces both.
  c.machine.completed_rounds = 3;
  RoundRow third;
  third.round = 3;
  c.ledger.rounds.push_back(third);
  REQUIRE(WriteCheckpoint(dir, c).ok());
  CHECK_FALSE(std::filesystem::exists(CheckpointPath(dir) + ".tmp"));
  back = LoadCheckpoint(dir);
  REQUIRE(back.ok());
  CHECK(back->machine.completed_rounds == 3);
}

TEST_CASE("a checkpoint whose ledger disagrees with its round count is refused") {
  Checkpoint c = Sample();
  c.machine.completed_rounds = 3;  // but only two round rows
  auto bytes = EncodeCheckpoint(c);
  REQUIRE(bytes.ok());
  auto back = DecodeCheckpoint(*bytes);
  REQUIRE_FALSE(back.ok());
  CHECK(back.status().message().find("2 round rows for 3 completed rounds") != std::string::npos);
}

TEST_CASE("a checkpoint node row whose source is comm or unknown is refused, naming the source") {
  for (const uint8_t source : {uint8_t{3}, uint8_t{5}, uint8_t{255}}) {
    CAPTURE(int(source));
    Checkpoint c = Sample();
    c.ledger.nodes[1].source = static_cast<EnergySource>(source);
    auto bytes = EncodeCheckpoint(c);
    REQUIRE(bytes.ok());
    auto back = DecodeCheckpoint(*bytes);
    REQUIRE_FALSE(back.ok());
    CHECK(back.status().message().find("node row: source " + std::to_string(source) + " is not a meter source") !=
          std::string::npos);
  }
}
