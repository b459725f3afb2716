// EnergyIntake (coordinator/src/energy_intake.h): the per-peer plausibility bounds and the
// booking of peers' energy reports, without sockets. The real-socket forgery test is
// test_transport.cc ("a hostile joined peer cannot forge the energy ledger ...").
#include <doctest/doctest.h>

#include <limits>

#include "../coordinator/src/energy_intake.h"
#include "run_helpers.h"

namespace greenfed {
namespace {

EnergyRecord Fit(int64_t round, double wall_s, double energy_j) {
  EnergyRecord r;
  r.phase = Phase::kFit;
  r.round = round;
  r.wall_s = wall_s;
  r.cpu_s = wall_s;
  r.energy_j = energy_j;
  return r;
}

EnergyRecord Comm(int64_t round, uint64_t sent, uint64_t received) {
  EnergyRecord r;
  r.phase = Phase::kComm;
  r.round = round;
  r.bytes_sent = sent;
  r.bytes_received = received;
  r.energy_j = 0.001;
  r.source = EnergySource::kComm;
  return r;
}

ClientEntry Client(uint32_t index) {
  ClientEntry c;
  c.peer = "p" + std::to_string(index);
  c.index = index;
  c.country = "FRA";
  c.pue = 1.2;
  return c;
}

TEST_CASE("energy intake: a client's plausible records are booked under its node, a stranger's are not") {
  const CarbonTable carbon = CarbonTable::BuiltIn();
  auto rd = RunDir::Create(testing::MakeTempDir("greenfed-intake") + "/run");
  REQUIRE(rd.ok());
  EnergyIntake intake(10000, false, &carbon, rd->get());
  const ClientEntry c = Client(3);
  intake.Track(c.peer);

  EnergyIntake::Outcome o = intake.Book("nobody", nullptr, {Fit(1, 1, 10)}, 100, 1);
  CHECK(o.stranger);
  CHECK((*rd)->Totals().compute_j == 0);

  o = intake.Book(c.peer, &c, {Fit(1, 2, 24)}, 100, 1);
  CHECK_FALSE(o.stranger);
  CHECK(o.kept == 1);
  CHECK(o.rejected == 0);
  CHECK((*rd)->Totals().compute_j == doctest::Approx(24));
  // After the client left (no entry), its node is remembered: late reports still count.
  o = intake.Book(c.peer, nullptr, {Fit(1, 1, 6)}, 100, 1);
  CHECK(o.kept == 1);
  CHECK((*rd)->Totals().compute_j == doctest::Approx(30));
}

TEST_CASE("energy intake: bounds per peer: future rounds, excess power, seconds beyond the run, bytes never moved") {
  const CarbonTable carbon = CarbonTable::BuiltIn();
  auto rd = RunDir::Create(testing::MakeTempDir("greenfed-intake") + "/run");
  REQUIRE(rd.ok());
  EnergyIntake intake(1000, false, &carbon, rd->get());
  const ClientEntry c = Client(0);
  intake.Track(c.peer);
  intake.ObserveSent(c.peer, 1000);      // we sent it 1 kB
  intake.ObserveReceived(c.peer, 2000);  // it sent us 2 kB

  // A round that has not begun.
  EnergyIntake::Outcome o = intake.Book(c.peer, &c, {Fit(5, 1, 1)}, 100, 2);
  CHECK(o.rejected == 1);
  CHECK(o.kept == 0);
  CHECK_FALSE(o.first_reason.empty());
  // 2,000 W over 1 s on a 1,000 W bound.
  o = intake.Book(c.peer, &c, {Fit(1, 1, 2000)}, 100, 2);
  CHECK(o.rejected == 1);
  // Metered seconds: the run's 100 s plus the 600 s pre-join slack, summed over reports.
  o = intake.Book(c.peer, &c, {Fit(1, 500, 1)}, 100, 2);
  CHECK(o.kept == 1);
  o = intake.Book(c.peer, &c, {Fit(1, 250, 1)}, 100, 2);  // 750 > 700
  CHECK(o.rejected == 1);
  // Bytes: at most what crossed the socket plus 4 MiB, summed over reports.
  const uint64_t slack = EnergyIntake::kByteSlack;
  o = intake.Book(c.peer, &c, {Comm(1, 2000 + slack, 1000)}, 100, 2);
  CHECK(o.kept == 1);
  o = intake.Book(c.peer, &c, {Comm(1, 1, 0)}, 100, 2);  // one byte past the bound
  CHECK(o.rejected == 1);
  // A mixed report keeps the plausible records and names the first bad one.
  o = intake.Book(c.peer, &c, {Fit(1, 1, 1), Fit(9, 1, 1), Fit(1, 1, 5000)}, 100, 2);
  CHECK(o.kept == 1);
  CHECK(o.rejected == 2);
}

TEST_CASE("energy intake: traffic of a peer that is not tracked does not raise its byte bound") {
  const CarbonTable carbon = CarbonTable::BuiltIn();
  auto rd = RunDir::Create(testing::MakeTempDir("greenfed-intake") + "/run");
  REQUIRE(rd.ok());
  EnergyIntake intake(10000, false, &carbon, rd->get());
  const ClientEntry c = Client(1);
  intake.ObserveReceived(c.peer, 100u << 20);  // before Track: not counted
  intake.Track(c.peer);
  EnergyIntake::Outcome o = intake.Book(c.peer, &c, {Comm(1, (100u << 20), 0)}, 100, 1);
  CHECK(o.rejected == 1);
  intake.Forget(c.peer);
  intake.ObserveReceived(c.peer, 100u << 20);  // after Forget: not counted either
  intake.Track(c.peer);
  o = intake.Book(c.peer, &c, {Comm(1, (100u << 20), 0)}, 100, 1);
  CHECK(o.rejected == 1);
}

TEST_CASE("energy intake: non-finite, negative and absurd but finite values are refused, the rest kept") {
  const CarbonTable carbon = CarbonTable::BuiltIn();
  auto rd = RunDir::Create(testing::MakeTempDir("greenfed-intake") + "/run");
  REQUIRE(rd.ok());
  EnergyIntake intake(10000, false, &carbon, rd->get());
  const ClientEntry c = Client(2);
  intake.Track(c.peer);
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  std::vector<EnergyRecord> bad = {Fit(1, 1, nan), Fit(1, nan, 1), Fit(1, 1, inf), Fit(1, 1, -5), Fit(1, -1, 1),
                                   Fit(1, 1, 1e300), Fit(-1, 1, 1)};
  EnergyRecord cpu = Fit(1, 1, 1);
  cpu.cpu_s = -3;
  bad.push_back(cpu);
  for (const EnergyRecord& r : bad) {
    CAPTURE(r.energy_j);
    CAPTURE(r.wall_s);
    CAPTURE(r.round);
    const EnergyIntake::Outcome o = intake.Book(c.peer, &c, {r, Fit(1, 1, 2)}, 100, 1);
    CHECK(o.rejected == 1);
    CHECK(o.kept == 1);
    CHECK_FALSE(o.first_reason.empty());
  }
  CHECK((*rd)->Totals().compute_j == doctest::Approx(2.0 * static_cast<double>(bad.size())));
}

TEST_CASE("energy intake: one client's traffic and claims never count under another client's name") {
  const CarbonTable carbon = CarbonTable::BuiltIn();
  auto rd = RunDir::Create(testing::MakeTempDir("greenfed-intake") + "/run");
  REQUIRE(rd.ok());
  EnergyIntake intake(10000, false, &carbon, rd->get());
  const ClientEntry a = Client(0), b = Client(1);
  intake.Track(a.peer);
  intake.Track(b.peer);
  intake.ObserveReceived(a.peer, 50u << 20);  // A sent 50 MiB; B sent nothing
  const uint64_t slack = EnergyIntake::kByteSlack;
  // B may not claim A's bytes.
  EnergyIntake::Outcome o = intake.Book(b.peer, &b, {Comm(1, slack + 1, 0)}, 100, 1);
  CHECK(o.rejected == 1);
  CHECK(intake.Book(a.peer, &a, {Comm(1, 50u << 20, 0)}, 100, 1).kept == 1);
  // A's metered seconds do not use up B's, and each books under its own node.
  CHECK(intake.Book(a.peer, &a, {Fit(1, 650, 1)}, 100, 1).kept == 1);
  CHECK(intake.Book(b.peer, &b, {Fit(1, 650, 3)}, 100, 1).kept == 1);
  CHECK(intake.Book(a.peer, &a, {Fit(1, 100, 1)}, 100, 1).rejected == 1);  // A: 750 > 700
  CHECK((*rd)->Totals().compute_j == doctest::Approx(1 + 3));
}

TEST_CASE("energy intake: rapl-split records are refused from the network and kept from simulate's virtual clients") {
  const CarbonTable carbon = CarbonTable::BuiltIn();
  for (const bool in_process : {false, true}) {
    CAPTURE(in_process);
    auto rd = RunDir::Create(testing::MakeTempDir("greenfed-intake") + "/run");
    REQUIRE(rd.ok());
    EnergyIntake intake(10000, in_process, &carbon, rd->get());
    const ClientEntry c = Client(0);
    intake.Track(c.peer);
    EnergyRecord split = Fit(1, 1, 5);
    split.source = EnergySource::kRaplSplit;
    split.measured = IsMeasured(split.source);
    const EnergyIntake::Outcome o = intake.Book(c.peer, &c, {split}, 100, 1);
    if (in_process) {
      CHECK(o.kept == 1);
      CHECK((*rd)->Totals().measured());
    } else {
      CHECK(o.rejected == 1);
      CHECK(o.first_reason.find("source 'rapl-split'") != std::string::npos);
      CHECK((*rd)->Totals().compute_j == 0);
    }
  }
}

}  // namespace
}  // namespace greenfed
