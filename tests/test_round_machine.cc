// The coordinator's round logic, driven without sockets or clocks: events in,
// actions out, times made up by the test.
#include <doctest/doctest.h>

#include <algorithm>

#include "greenfed/coordinator/round_machine.h"

using namespace greenfed;

namespace {

Parameters Model(float v) { return {MakeFloatBlob("w", {2}, {v, v})}; }

RoundOptions Opts(uint32_t n, uint32_t min_fit) {
  RoundOptions o;
  o.num_clients = n;
  o.min_available_clients = n;
  o.min_fit_clients = min_fit;
  o.fraction_fit = 1.0;
  o.max_rounds = 5;
  o.target_accuracy = 0.9;
  o.round_timeout_s = 10;
  o.heartbeat_timeout_s = 30;
  o.seed = 42;
  return o;
}

JoinEvent Join(const std::string& peer, int32_t index = -1) {
  JoinMsg j;
  j.client_id = "id-" + peer;
  j.requested_index = index;
  j.country = "FRA";
  return JoinEvent{peer, j, ""};
}

FitResEvent Result(const std::string& peer, uint64_t round, float v, uint64_t n = 10) {
  FitResMsg r;
  r.round = round;
  r.num_examples = n;
  r.train_loss = 0.5;
  r.parameters = Model(v);
  return FitResEvent{peer, r};
}

template <typename T>
std::vector<T> All(const std::vector<Action>& actions) {
  std::vector<T> out;
  for (const auto& a : actions) {
    if (auto* t = std::get_if<T>(&a)) out.push_back(*t);
  }
  return out;
}

std::vector<std::string> FitTargets(const std::vector<Action>& actions) {
  std::vector<std::string> peers;
  for (const auto& s : All<SendAction>(actions)) {
    if (std::holds_alternative<FitMsg>(s.message)) peers.push_back(s.peer);
  }
  return peers;
}

bool Logged(const std::vector<Action>& actions, const std::string& words) {
  for (const auto& l : All<LogAction>(actions)) {
    if (l.text.find(words) != std::string::npos) return true;
  }
  return false;
}

void JoinAll(RoundMachine* m, const std::vector<std::string>& peers, double t, std::vector<Action>* last) {
  for (const auto& p : peers) *last = m->Handle(Join(p), t);
}

// Round 1 with clients A, B, C: A (w=2) answers at t=1, B (w=4) at t=b_time; C is pending.
void TwoOfThreeIn(RoundMachine* m, double b_time) {
  (void)m->Start(0, Model(0));
  std::vector<Action> a;
  JoinAll(m, {"A", "B", "C"}, 0, &a);
  (void)m->Handle(Result("A", 1, 2.0f), 1);
  (void)m->Handle(Result("B", 1, 4.0f), b_time);
}

}  // namespace

TEST_CASE("the first round starts once min_available_clients have joined, with indices handed out in order") {
  RoundMachine m(Opts(3, 2));
  auto a = m.Start(0, Model(0));
  CHECK(m.state() == MachineState::kWaitingForClients);
  CHECK(FitTargets(a).empty());
  a = m.Handle(Join("A"), 1);
  auto welcomes = All<SendAction>(a);
  REQUIRE(welcomes.size() == 1);
  CHECK(std::get<WelcomeMsg>(welcomes[0].message).client_index == 0);
  CHECK(std::get<WelcomeMsg>(welcomes[0].message).partition.num_clients == 3);
  a = m.Handle(Join("B"), 1);
  CHECK(std::get<WelcomeMsg>(All<SendAction>(a)[0].message).client_index == 1);
  CHECK(m.state() == MachineState::kWaitingForClients);
  a = m.Handle(Join("C"), 2);
  CHECK(m.state() == MachineState::kFitting);
  CHECK(FitTargets(a) == std::vector<std::string>{"A", "B", "C"});  // sent in index order
  // Every fit carries a per-client seed; they differ.
  std::vector<uint64_t> seeds;
  for (const auto& s : All<SendAction>(a)) {
    if (auto* f = std::get_if<FitMsg>(&s.message)) {
      StatusOr<TrainConfig> train = ParseTrainConfig(f->config);
      REQUIRE_MESSAGE(train.ok(), train.status().ToString());
      seeds.push_back(train->seed);
    }
  }
  REQUIRE(seeds.size() == 3);
  CHECK(seeds[0] != seeds[1]);
  CHECK(seeds[1] != seeds[2]);
}

TEST_CASE("joins: requested index, taken index, out of range, full federation, rejoin") {
  RoundMachine m(Opts(2, 1));
  (void)m.Start(0, Model(0));
  auto a = m.Handle(Join("A", 1), 0);
  CHECK(std::get<WelcomeMsg>(All<SendAction>(a)[0].message).client_index == 1);
  a = m.Handle(Join("B", 1), 0);
  REQUIRE(All<SendAction>(a).size() == 1);
  CHECK(std::get<ErrorMsg>(All<SendAction>(a)[0].message).message.find("already taken") != std::string::npos);
  a = m.Handle(Join("C", 7), 0);
  CHECK(std::get<ErrorMsg>(All<SendAction>(a)[0].message).message.find("out of range") != std::string::npos);
  a = m.Handle(Join("D"), 0);
  CHECK(std::get<WelcomeMsg>(All<SendAction>(a)[0].message).client_index == 0);
  CHECK(m.clients().size() == 2);
  a = m.Handle(Join("E"), 0);
  CHECK(std::get<ErrorMsg>(All<SendAction>(a)[0].message).message.find("full") != std::string::npos);
  // Someone else joins under A's client_id while A is alive: refused, A keeps its slot.
  JoinEvent impostor = Join("X", 1);
  impostor.join.client_id = "id-A";
  a = m.Handle(impostor, 1);
  REQUIRE(All<SendAction>(a).size() == 1);
  CHECK(std::get<ErrorMsg>(All<SendAction>(a)[0].message).code == ErrorCode::kIdentityInUse);
  CHECK(m.clients().count("A") == 1);
  // The client behind A reconnects under a new routing id after going quiet: it replaces A.
  JoinEvent again = Join("A2", 1);
  again.join.client_id = "id-A";
  a = m.Handle(again, 5);
  CHECK(m.clients().count("A") == 0);
  CHECK(m.clients().at("A2").index == 1);
}

TEST_CASE("a complete round aggregates by examples, asks for central evaluation and moves on") {
  RoundMachine m(Opts(2, 2));
  (void)m.Start(0, Model(0));
  std::vector<Action> a;
  JoinAll(&m, {"A", "B"}, 0, &a);
  REQUIRE(m.state() == MachineState::kFitting);
  a = m.Handle(Result("A", 1, 1.0f, 10), 1);
  CHECK(m.state() == MachineState::kFitting);
  a = m.Handle(Result("B", 1, 4.0f, 20), 2);
  CHECK(m.state() == MachineState::kEvaluating);
  REQUIRE(All<EvaluateGlobalAction>(a).size() == 1);
  // (10*1 + 20*4) / 30 = 3
  CHECK(FloatValues(m.global()[0]) == std::vector<float>{3.0f, 3.0f});
  a = m.Handle(CentralEvalEvent{1, 0.5, 1.2}, 3);
  auto done = All<RoundDoneAction>(a);
  REQUIRE(done.size() == 1);
  CHECK(done[0].round == 1);
  CHECK(done[0].sampled == 2);
  CHECK(done[0].succeeded == 2);
  CHECK(done[0].failed == 0);
  CHECK(done[0].accuracy == 0.5);
  CHECK(done[0].round_s == 3.0);
  CHECK(m.round() == 2);
  CHECK(m.state() == MachineState::kFitting);  // round 2 started at once
  CHECK(FitTargets(a).size() == 2);
}

TEST_CASE("a straggler misses the deadline: the round completes without it and its late result is discarded") {
  RoundMachine m(Opts(3, 2));
  std::vector<Action> a;
  TwoOfThreeIn(&m, 2);
  CHECK(m.state() == MachineState::kFitting);
  // Heartbeats keep C registered, but its result is late.
  (void)m.Handle(HeartbeatEvent{"C"}, 9);
  a = m.Handle(TickEvent{}, 9.9);
  CHECK(m.state() == MachineState::kFitting);
  a = m.Handle(TickEvent{}, 10.0);
  CHECK(Logged(a, "missed the round 1 deadline"));
  CHECK(m.state() == MachineState::kEvaluating);
  CHECK(FloatValues(m.global()[0]) == std::vector<float>{3.0f, 3.0f});
  a = m.Handle(Result("C", 1, 100.0f), 11);
  CHECK(Logged(a, "discarded late or unexpected fit result"));
  CHECK(FloatValues(m.global()[0]) == std::vector<float>{3.0f, 3.0f});
  a = m.Handle(CentralEvalEvent{1, 0.3, 2}, 12);
  auto done = All<RoundDoneAction>(a);
  REQUIRE(done.size() == 1);
  CHECK(done[0].succeeded == 2);
  CHECK(done[0].failed == 1);
}

TEST_CASE("too few results at the deadline: the round is retried with a new sample, then the run gives up") {
  RoundOptions o = Opts(2, 2);
  o.max_round_attempts = 2;
  RoundMachine m(o);
  (void)m.Start(0, Model(0));
  std::vector<Action> a;
  JoinAll(&m, {"A", "B"}, 0, &a);
  (void)m.Handle(Result("A", 1, 1.0f), 1);
  (void)m.Handle(HeartbeatEvent{"B"}, 9);
  a = m.Handle(TickEvent{}, 10);
  CHECK(Logged(a, "fewer than min_fit_clients=2; retrying"));
  CHECK(m.round() == 1);
  CHECK(m.state() == MachineState::kFitting);  // attempt 2 started
  CHECK(FitTargets(a).size() == 2);
  CHECK(FloatValues(m.global()[0]) == std::vector<float>{0.0f, 0.0f});  // nothing was aggregated
  (void)m.Handle(HeartbeatEvent{"A"}, 19);
  (void)m.Handle(HeartbeatEvent{"B"}, 19);
  a = m.Handle(TickEvent{}, 20);
  auto stops = All<StopAction>(a);
  REQUIRE(stops.size() == 1);
  CHECK(stops[0].failed);
  CHECK(stops[0].reason.find("failed 2 times") != std::string::npos);
  CHECK(m.state() == MachineState::kDone);
  CHECK(All<SendAction>(a).size() == 2);  // shutdown to both
}

TEST_CASE("a silent client is dropped, the round ends early when nobody else is pending") {
  RoundMachine m(Opts(3, 2));
  (void)m.Start(0, Model(0));
  std::vector<Action> a;
  JoinAll(&m, {"A", "B", "C"}, 0, &a);
  (void)m.Handle(Result("A", 1, 1.0f), 5);
  (void)m.Handle(Result("B", 1, 1.0f), 6);
  a = m.Handle(TickEvent{}, 31);  // C last seen at 0, timeout 30 s
  CHECK(Logged(a, "dropped client-2"));
  CHECK(m.clients().size() == 2);
  CHECK(m.state() == MachineState::kEvaluating);
  a = m.Handle(CentralEvalEvent{1, 0.2, 2}, 32);
  CHECK(All<RoundDoneAction>(a)[0].failed == 1);
  // Round 2 goes on with the two clients left instead of waiting for a third.
  CHECK(m.state() == MachineState::kFitting);
  CHECK(FitTargets(a) == std::vector<std::string>{"A", "B"});
  CHECK(Logged(a, "round 2 starts with 2 of 3 clients"));
  a = m.Handle(Join("D"), 40);
  CHECK(std::get<WelcomeMsg>(All<SendAction>(a)[0].message).client_index == 2);  // the freed index
}

TEST_CASE("invalid updates count as failures and leave the average alone") {
  RoundMachine m(Opts(3, 1));
  (void)m.Start(0, Model(0));
  std::vector<Action> a;
  JoinAll(&m, {"A", "B", "C"}, 0, &a);
  FitResEvent wrong_shape = Result("A", 1, 0);
  wrong_shape.result.parameters = {MakeFloatBlob("w", {3}, {1, 2, 3})};
  a = m.Handle(wrong_shape, 1);
  CHECK(Logged(a, "rejected fit result from client-0"));
  CHECK(Logged(a, "shape"));
  FitResEvent nan_loss = Result("B", 1, 5);
  nan_loss.result.train_loss = std::numeric_limits<double>::quiet_NaN();
  a = m.Handle(nan_loss, 1);
  CHECK(Logged(a, "train_loss nan is not a finite, non-negative loss"));
  a = m.Handle(Result("C", 1, 6.0f), 2);
  CHECK(FloatValues(m.global()[0]) == std::vector<float>{6.0f, 6.0f});
  a = m.Handle(CentralEvalEvent{1, 0.1, 2}, 3);
  auto done = All<RoundDoneAction>(a);
  CHECK(done[0].succeeded == 1);
  CHECK(done[0].failed == 2);
}

TEST_CASE("results from unknown peers, wrong rounds and unsampled clients are discarded") {
  RoundOptions o = Opts(3, 1);
  o.fraction_fit = 0.34;  // ceil(0.34 * 3) = 2 of 3 clients per round
  RoundMachine m(o);
  (void)m.Start(0, Model(0));
  std::vector<Action> a;
  JoinAll(&m, {"A", "B", "C"}, 0, &a);
  auto sampled = FitTargets(a);
  REQUIRE(sampled.size() == 2);
  std::string unsampled;
  for (const auto& p : {"A", "B", "C"}) {
    if (std::find(sampled.begin(), sampled.end(), p) == sampled.end()) unsampled = p;
  }
  a = m.Handle(Result(unsampled, 1, 9.0f), 1);
  CHECK(Logged(a, "discarded late or unexpected"));
  a = m.Handle(Result("Z", 1, 9.0f), 1);
  CHECK(Logged(a, "unknown peer"));
  a = m.Handle(Result(sampled[0], 7, 9.0f), 1);
  CHECK(Logged(a, "for round 7 (current round 1"));
  CHECK(m.pending().size() == 2);
}

TEST_CASE("sampling is deterministic by seed and respects fraction_fit and min_fit_clients") {
  auto sample = [](uint64_t seed, double fraction, uint32_t min_fit) {
    RoundOptions o = Opts(10, min_fit);
    o.seed = seed;
    o.fraction_fit = fraction;
    RoundMachine m(o);
    (void)m.Start(0, Model(0));
    std::vector<Action> a;
    for (int i = 0; i < 10; ++i) a = m.Handle(Join("p" + std::to_string(i)), 0);
    return FitTargets(a);
  };
  CHECK(sample(1, 0.3, 2).size() == 3);
  CHECK(sample(1, 0.1, 4).size() == 4);   // min_fit_clients wins
  CHECK(sample(1, 1.0, 2).size() == 10);
  CHECK(sample(5, 0.3, 2) == sample(5, 0.3, 2));
  bool differs = false;
  for (uint64_t s = 2; s < 12 && !differs; ++s) differs = sample(s, 0.3, 2) != sample(1, 0.3, 2);
  CHECK(differs);
}

TEST_CASE("the run stops at the target, or at max_rounds, and shuts every client down") {
  SUBCASE("target") {
    RoundMachine m(Opts(2, 2));
    (void)m.Start(0, Model(0));
    std::vector<Action> a;
    JoinAll(&m, {"A", "B"}, 0, &a);
    (void)m.Handle(Result("A", 1, 1), 1);
    (void)m.Handle(Result("B", 1, 1), 1);
    a = m.Handle(CentralEvalEvent{1, 0.95, 0.1}, 2);
    auto stops = All<StopAction>(a);
    REQUIRE(stops.size() == 1);
    CHECK(stops[0].reached);
    CHECK_FALSE(stops[0].failed);
    int shutdowns = 0;
    for (const auto& s : All<SendAction>(a)) shutdowns += std::holds_alternative<ShutdownMsg>(s.message);
    CHECK(shutdowns == 2);
    CHECK(m.state() == MachineState::kDone);
    // After the end, a join is told the run is over.
    a = m.Handle(Join("late"), 3);
    CHECK(std::get<ErrorMsg>(All<SendAction>(a)[0].message).message == "the run is over");
  }
  SUBCASE("max rounds") {
    RoundOptions o = Opts(1, 1);
    o.max_rounds = 2;
    RoundMachine m(o);
    (void)m.Start(0, Model(0));
    std::vector<Action> a = m.Handle(Join("A"), 0);
    for (uint64_t r = 1; r <= 2; ++r) {
      (void)m.Handle(Result("A", r, 1), static_cast<double>(r));
      a = m.Handle(CentralEvalEvent{r, 0.5, 1}, static_cast<double>(r));
    }
    auto stops = All<StopAction>(a);
    REQUIRE(stops.size() == 1);
    CHECK_FALSE(stops[0].reached);
    CHECK_FALSE(stops[0].failed);
    CHECK(stops[0].reason.find("max rounds (2)") != std::string::npos);
  }
}

TEST_CASE("federated evaluation: example-weighted accuracy, and a deadline for the missing") {
  RoundOptions o = Opts(3, 3);
  o.fed_eval_every = 1;
  o.eval_timeout_s = 5;
  RoundMachine m(o);
  (void)m.Start(0, Model(0));
  std::vector<Action> a;
  JoinAll(&m, {"A", "B", "C"}, 0, &a);
  (void)m.Handle(Result("A", 1, 1), 1);
  (void)m.Handle(Result("B", 1, 1), 1);
  a = m.Handle(Result("C", 1, 1), 1);
  int evals = 0;
  for (const auto& s : All<SendAction>(a)) evals += std::holds_alternative<EvaluateMsg>(s.message);
  CHECK(evals == 3);
  a = m.Handle(CentralEvalEvent{1, 0.5, 1}, 2);
  CHECK(All<RoundDoneAction>(a).empty());  // still waiting for clients
  EvaluateResMsg ra;
  ra.round = 1;
  ra.accuracy = 0.5;
  ra.num_examples = 100;
  (void)m.Handle(EvaluateResEvent{"A", ra}, 3);
  ra.accuracy = 1.0;
  ra.num_examples = 300;
  (void)m.Handle(EvaluateResEvent{"B", ra}, 3);
  (void)m.Handle(HeartbeatEvent{"C"}, 5);
  a = m.Handle(TickEvent{}, 6.5);
  CHECK(Logged(a, "missed the deadline"));
  auto done = All<RoundDoneAction>(a);
  REQUIRE(done.size() == 1);
  REQUIRE(done[0].fed_accuracy.has_value());
  CHECK(*done[0].fed_accuracy == doctest::Approx((50.0 + 300.0) / 400.0));
}

TEST_CASE("options are validated with messages that name the flag") {
  RoundOptions o = Opts(3, 2);
  o.min_fit_clients = 4;
  CHECK(ValidateRoundOptions(o).message().find("--min-fit-clients") != std::string::npos);
  o = Opts(3, 2);
  o.fraction_fit = 0;
  CHECK(ValidateRoundOptions(o).message().find("--fraction-fit") != std::string::npos);
  o = Opts(3, 2);
  o.target_accuracy = 1.5;
  CHECK(ValidateRoundOptions(o).message().find("--target-accuracy") != std::string::npos);
  o = Opts(3, 2);
  o.min_available_clients = 4;
  CHECK(ValidateRoundOptions(o).message().find("--min-available-clients") != std::string::npos);
  CHECK(ValidateRoundOptions(Opts(3, 2)).ok());
}

TEST_CASE("a client that reports a failed fit counts as failed at once, not at the deadline") {
  RoundMachine m(Opts(3, 2));
  std::vector<Action> a;
  TwoOfThreeIn(&m, 1);
  a = m.Handle(FitFailedEvent{"C", "OUT_OF_RANGE: loss became nan"}, 2);
  CHECK(Logged(a, "client-2 (id-C) failed round 1: OUT_OF_RANGE: loss became nan"));
  CHECK(m.state() == MachineState::kEvaluating);
  a = m.Handle(CentralEvalEvent{1, 0.3, 2}, 3);
  CHECK(All<RoundDoneAction>(a)[0].failed == 1);
  CHECK(All<RoundDoneAction>(a)[0].round_s == 3.0);
  // Round 2 is under way with all three; a report from a peer that is not pending
  // changes nothing, one from a pending client fails it.
  REQUIRE(m.pending().size() == 3);
  a = m.Handle(FitFailedEvent{"Z", "stray"}, 4);
  CHECK(m.pending().size() == 3);
  a = m.Handle(FitFailedEvent{"A", "disk full"}, 4);
  CHECK(m.pending().size() == 2);
}

// ---- Issue 8: liveness, identity and bounds -------------------------------------

namespace {

ErrorCode ErrorTo(const std::vector<Action>& actions, const std::string& peer) {
  for (const auto& s : All<SendAction>(actions)) {
    if (s.peer != peer) continue;
    if (auto* e = std::get_if<ErrorMsg>(&s.message)) return e->code;
  }
  return ErrorCode::kUnknown;
}

JoinEvent KeyJoin(const std::string& peer, const std::string& key, int32_t index = -1) {
  JoinEvent e = Join(peer, index);
  e.identity = "curve:" + key;
  return e;
}

// Runs round `round` to completion with every pending client answering w=v.
std::vector<Action> CompleteRound(RoundMachine* m, uint64_t round, double t, float v = 1.0f) {
  const std::vector<std::string> pending(m->pending().begin(), m->pending().end());
  for (const auto& p : pending) (void)m->Handle(Result(p, round, v), t);
  return m->Handle(CentralEvalEvent{round, 0.5, 1.0}, t);
}

}  // namespace

TEST_CASE("default flags: a client killed after round 2 of 3 does not hang the run") {
  // Defaults: min_available_clients = num_clients. Before the fix, round 3 waited
  // for 3 of 3 forever once the dead client was dropped.
  RoundOptions o = Opts(3, 2);
  o.max_rounds = 4;
  o.round_timeout_s = 600;  // the default: only the heartbeat timeout can catch the dead client
  RoundMachine m(o);
  (void)m.Start(0, Model(0));
  std::vector<Action> a;
  JoinAll(&m, {"A", "B", "C"}, 0, &a);
  (void)CompleteRound(&m, 1, 1);
  (void)CompleteRound(&m, 2, 2);
  // C is killed: round 3 was sampled with it; A and B answer, C never does.
  (void)m.Handle(Result("A", 3, 1.0f), 3);
  (void)m.Handle(Result("B", 3, 1.0f), 3);
  for (double t = 3; t < 40; t += 1) {
    (void)m.Handle(HeartbeatEvent{"A"}, t);
    (void)m.Handle(HeartbeatEvent{"B"}, t);
    a = m.Handle(TickEvent{}, t);
    if (m.state() != MachineState::kFitting) break;
  }
  CHECK(m.clients().size() == 2);
  REQUIRE(m.state() == MachineState::kEvaluating);
  a = m.Handle(CentralEvalEvent{3, 0.5, 1.0}, 40);
  CHECK(m.state() == MachineState::kFitting);  // round 4 at once, with A and B
  CHECK(m.round() == 4);
  CHECK(Logged(a, "round 4 starts with 2 of 3 clients"));
}

TEST_CASE("round 1 waits client_wait_s for min_available_clients, then starts with the clients it has") {
  RoundOptions o = Opts(5, 2);
  o.client_wait_s = 60;
  RoundMachine m(o);
  (void)m.Start(0, Model(0));
  std::vector<Action> a;
  JoinAll(&m, {"A", "B", "C"}, 1, &a);
  for (double t = 10; t < 60; t += 10) {
    for (const auto& p : {"A", "B", "C"}) (void)m.Handle(HeartbeatEvent{p}, t);
    a = m.Handle(TickEvent{}, t);
  }
  a = m.Handle(TickEvent{}, 59);
  CHECK(m.state() == MachineState::kWaitingForClients);
  for (const auto& p : {"A", "B", "C"}) (void)m.Handle(HeartbeatEvent{p}, 59.5);
  CHECK(m.state() == MachineState::kWaitingForClients);
  a = m.Handle(TickEvent{}, 60.5);
  CHECK(m.state() == MachineState::kFitting);
  CHECK(FitTargets(a).size() == 3);
  CHECK(Logged(a, "round 1 starts with 3 of 5 clients (min_available_clients=5) after waiting 60.5 s"));
}

TEST_CASE("with fewer than min_fit_clients for max_idle_s the run stops with a reason, never hangs") {
  RoundOptions o = Opts(3, 2);
  o.max_idle_s = 100;
  RoundMachine m(o);
  (void)m.Start(0, Model(0));
  std::vector<Action> a = m.Handle(Join("A"), 0);
  bool logged_wait = false;
  for (double t = 1; t <= 101 && m.state() != MachineState::kDone; t += 1) {
    a = m.Handle(HeartbeatEvent{"A"}, t);
    const auto tick = m.Handle(TickEvent{}, t);
    a.insert(a.end(), tick.begin(), tick.end());
    logged_wait = logged_wait || Logged(a, "waiting for clients: 1 connected, 2 needed");
  }
  CHECK(logged_wait);
  REQUIRE(m.state() == MachineState::kDone);
  auto stops = All<StopAction>(a);
  REQUIRE(stops.size() == 1);
  CHECK(stops[0].failed);
  CHECK(stops[0].reason.find("fewer than min_fit_clients=2") != std::string::npos);
}

TEST_CASE("rejoin while sampled: the old connection fails the round at once, no ghost stays pending") {
  // Before the fix DropClient erased the map node and then read its key (ASan:
  // heap-use-after-free); without ASan a ghost stayed in pending() until the deadline.
  RoundMachine m(Opts(2, 1));
  (void)m.Start(0, Model(0));
  std::vector<Action> a;
  JoinAll(&m, {"A", "B"}, 0, &a);
  REQUIRE(m.pending().count("A") == 1);
  (void)m.Handle(Result("B", 1, 1.0f), 1);
  JoinEvent again = Join("A2");
  again.join.client_id = "id-A";  // A's process reconnects after a network blip
  a = m.Handle(again, 5);
  CHECK(m.pending().count("A") == 0);
  CHECK(m.clients().count("A") == 0);
  CHECK(m.clients().at("A2").index == 0);
  a = m.Handle(TickEvent{}, 5.1);
  CHECK(m.state() == MachineState::kEvaluating);  // not waiting for the deadline at t=10
}

TEST_CASE("CURVE identity: the index is bound to the key, the same key replaces its old connection") {
  RoundMachine m(Opts(3, 1));
  (void)m.Start(0, Model(0));
  auto a = m.Handle(KeyJoin("A", "KEY-A"), 0);
  CHECK(m.clients().at("A").index == 0);
  // Another key asks for A's index, also after A has left: refused.
  a = m.Handle(KeyJoin("X", "KEY-X", 0), 0.5);
  CHECK(ErrorTo(a, "X") == ErrorCode::kIndexTaken);
  // The key holder reconnects at once (no stale wait needed for a proven identity).
  a = m.Handle(KeyJoin("A2", "KEY-A"), 0.6);
  CHECK(m.clients().count("A") == 0);
  CHECK(m.clients().at("A2").index == 0);
  // A leaves for good; its index stays reserved for its key.
  a = m.Handle(TickEvent{}, 40);
  CHECK(m.clients().empty());
  a = m.Handle(KeyJoin("X", "KEY-X", 0), 41);
  CHECK(ErrorTo(a, "X") == ErrorCode::kIndexTaken);
  a = m.Handle(KeyJoin("X", "KEY-X"), 41);
  CHECK(m.clients().at("X").index == 1);
  a = m.Handle(KeyJoin("A3", "KEY-A"), 42);
  CHECK(m.clients().at("A3").index == 0);
  // A key that asks for an index other than its own is refused, and its live
  // connection stays.
  a = m.Handle(KeyJoin("X2", "KEY-X", 2), 42);
  CHECK(ErrorTo(a, "X2") == ErrorCode::kIndexTaken);
  CHECK(m.clients().count("X") == 1);
}

TEST_CASE("num_examples is bounded by the client's shard size, 2^62 and 2^64-1 cannot take over the model") {
  RoundOptions o = Opts(2, 1);
  o.shard_sizes = {100, 100};
  RoundMachine m(o);
  (void)m.Start(0, Model(0));
  std::vector<Action> a;
  JoinAll(&m, {"A", "B"}, 0, &a);
  a = m.Handle(Result("A", 1, 0.0f, 1ull << 62), 1);  // all-zero weights, 2^62 examples
  CHECK(ErrorTo(a, "A") == ErrorCode::kBadUpdate);
  CHECK(Logged(a, "num_examples 4611686018427387904 exceeds this client's shard size (100)"));
  a = m.Handle(Result("B", 1, 4.0f, 100), 1);
  REQUIRE(m.state() == MachineState::kEvaluating);
  CHECK(m.global()[0].data == Model(4.0f)[0].data);  // B's weights alone

  // Without shard sizes, the fallback bound still keeps the sum from wrapping.
  RoundMachine m2(Opts(2, 1));
  (void)m2.Start(0, Model(0));
  JoinAll(&m2, {"A", "B"}, 0, &a);
  a = m2.Handle(Result("A", 1, 1.0f, ~0ull), 1);
  CHECK(ErrorTo(a, "A") == ErrorCode::kBadUpdate);
  a = m2.Handle(Result("B", 1, 1.0f, 10), 1);
  REQUIRE(m2.state() == MachineState::kEvaluating);
  CHECK(m2.global()[0].data == Model(1.0f)[0].data);
}

TEST_CASE("two peers that fail every fit are excluded, freeing their slots, the honest clients finish the run") {
  // Before: "round 1 failed 5 times" in 0.2 s and the run ended with exit 1.
  RoundOptions o = Opts(3, 2);
  o.min_available_clients = 2;
  o.max_rounds = 2;
  o.target_accuracy = 1.0;
  RoundMachine m(o);
  (void)m.Start(0, Model(0));
  std::vector<Action> a;
  JoinAll(&m, {"E1", "E2"}, 0, &a);
  CHECK(m.state() == MachineState::kFitting);
  for (int attempt = 0; attempt < 2; ++attempt) {
    (void)m.Handle(FitFailedEvent{"E1", "FIT_FAILED: no"}, 0.1);
    a = m.Handle(FitFailedEvent{"E2", "FIT_FAILED: no"}, 0.1);
  }
  CHECK(m.clients().empty());
  CHECK(ErrorTo(a, "E2") == ErrorCode::kExcluded);
  CHECK(m.state() != MachineState::kDone);
  // They are refused while excluded...
  a = m.Handle(Join("E1"), 0.2);
  CHECK(ErrorTo(a, "E1") == ErrorCode::kExcluded);
  // ...and the honest clients take the freed slots and finish both rounds.
  JoinAll(&m, {"H1", "H2", "H3"}, 0.3, &a);
  REQUIRE(m.state() == MachineState::kFitting);
  a = CompleteRound(&m, 1, 1);
  a = CompleteRound(&m, 2, 2);
  auto stops = All<StopAction>(a);
  REQUIRE(stops.size() == 1);
  CHECK_FALSE(stops[0].failed);
}

TEST_CASE("Snapshot and Resume: a resumed machine continues with the same model, round and sample") {
  RoundOptions o = Opts(3, 2);
  o.fraction_fit = 0.67;
  RoundMachine m(o);
  (void)m.Start(0, Model(0));
  std::vector<Action> a;
  JoinAll(&m, {"A", "B", "C"}, 0, &a);
  (void)CompleteRound(&m, 1, 1, 2.0f);
  a = CompleteRound(&m, 2, 2, 3.0f);
  const MachineSnapshot snap = m.Snapshot();
  CHECK(snap.completed_rounds == 2);
  const std::vector<std::string> original = FitTargets(a);  // round 3's sample

  RoundMachine resumed(o);
  a = resumed.Resume(10, snap);
  CHECK(resumed.round() == 3);
  CHECK(resumed.global()[0].data == m.global()[0].data);
  JoinAll(&resumed, {"A", "B", "C"}, 10, &a);
  INFO("original " << original.size() << " resumed " << FitTargets(a).size());
  CHECK(FitTargets(a) == original);
  // A checkpoint taken at max_rounds ends at once.
  MachineSnapshot done = snap;
  done.completed_rounds = o.max_rounds;
  RoundMachine finished(o);
  a = finished.Resume(0, done);
  CHECK(finished.state() == MachineState::kDone);
}

TEST_CASE("own data: a join must declare num_examples in [1, max_examples_per_client], the declaration bounds results") {
  RoundOptions o = Opts(2, 2);
  o.own_data = true;
  o.max_examples_per_client = 500;
  RoundMachine m(o);
  (void)m.Start(0, Model(0));
  JoinEvent none = Join("Z");
  auto a = m.Handle(none, 0);
  REQUIRE(All<SendAction>(a).size() == 1);
  auto err = std::get<ErrorMsg>(All<SendAction>(a)[0].message);
  CHECK(err.code == ErrorCode::kIncompatible);
  CHECK(err.message.find("declare num_examples > 0 at join") != std::string::npos);
  JoinEvent big = Join("Y");
  big.join.num_examples = 501;
  a = m.Handle(big, 0);
  err = std::get<ErrorMsg>(All<SendAction>(a)[0].message);
  CHECK(err.code == ErrorCode::kIncompatible);
  CHECK(err.message == "declared num_examples 501 exceeds this federation's bound of 500 examples per client "
                       "(--max-client-examples)");
  CHECK(Logged(a, "refused join from id-Y: INCOMPATIBLE"));
  CHECK(m.clients().empty());
  JoinEvent ja = Join("A");
  ja.join.num_examples = 400;
  JoinEvent jb = Join("B");
  jb.join.num_examples = 500;
  (void)m.Handle(ja, 0);
  a = m.Handle(jb, 0);
  REQUIRE(m.clients().size() == 2);
  CHECK(m.clients().at("A").max_examples == 400);
  CHECK(m.clients().at("B").max_examples == 500);
  // A result claiming more than A declared is a failed fit, not a heavier vote.
  a = m.Handle(Result("A", 1, 1.0f, 401), 1);
  CHECK(Logged(a, "num_examples 401 exceeds this client's shard size (400)"));
}

// ---- Overlapped central evaluation (RoundOptions::overlap_eval) ----------------------------

namespace {
RoundOptions OverlapOpts(uint32_t n, uint32_t min_fit) {
  RoundOptions o = Opts(n, min_fit);
  o.overlap_eval = true;
  return o;
}

// Starts `m` with clients A and B and hands it round 1's two results (w = v, at t = 1 and 2);
// returns the actions of the second.
std::vector<Action> RoundOneIn(RoundMachine* m, float v) {
  (void)m->Start(0, Model(0));
  std::vector<Action> a;
  JoinAll(m, {"A", "B"}, 0, &a);
  (void)m->Handle(Result("A", 1, v), 1);
  return m->Handle(Result("B", 1, v), 2);
}
}  // namespace

TEST_CASE("overlap: round r's evaluation is asked for as round r+1's fits go out, and completes round r") {
  RoundMachine m(OverlapOpts(2, 2));
  (void)m.Start(0, Model(0));
  std::vector<Action> a;
  JoinAll(&m, {"A", "B"}, 0, &a);
  (void)m.Handle(Result("A", 1, 1.0f, 10), 1);
  a = m.Handle(Result("B", 1, 4.0f, 20), 2);
  auto eval = All<EvaluateGlobalAction>(a);
  REQUIRE(eval.size() == 1);
  CHECK(eval[0].round == 1);
  CHECK(eval[0].overlapped);
  CHECK(FitTargets(a).size() == 2);  // round 2 at once, not after the evaluation
  CHECK(m.round() == 2);
  CHECK(m.state() == MachineState::kFitting);
  CHECK(m.overlapped_eval_round() == std::optional<uint64_t>(1));
  CHECK(All<RoundDoneAction>(a).empty());
  CHECK(FloatValues(m.global()[0]) == std::vector<float>{3.0f, 3.0f});
  CHECK(m.Snapshot().completed_rounds == 0);  // round 1 is not complete before its evaluation

  a = m.Handle(CentralEvalEvent{1, 0.5, 1.2}, 3);
  auto done = All<RoundDoneAction>(a);
  REQUIRE(done.size() == 1);
  CHECK(done[0].round == 1);
  CHECK(done[0].succeeded == 2);
  CHECK(done[0].accuracy == 0.5);
  CHECK(done[0].loss == 1.2);
  CHECK(done[0].round_s == 2.0);  // start to aggregation; the evaluation overlapped round 2
  CHECK(done[0].train_loss == 0.5);
  CHECK_FALSE(m.overlapped_eval_round().has_value());
  CHECK(m.state() == MachineState::kFitting);
  CHECK(m.Snapshot().completed_rounds == 1);
}

TEST_CASE("overlap: round r+1's results wait for round r's evaluation, and the checkpoint after r holds model r") {
  RoundMachine m(OverlapOpts(2, 2));
  std::vector<Action> a = RoundOneIn(&m, 2.0f);  // round 1: model 2, evaluation outstanding
  (void)m.Handle(Result("A", 2, 6.0f), 3);
  a = m.Handle(Result("B", 2, 6.0f), 4);  // round 2's fit phase ends before round 1's evaluation
  CHECK(All<EvaluateGlobalAction>(a).empty());
  CHECK(FloatValues(m.global()[0]) == std::vector<float>{2.0f, 2.0f});  // not aggregated: being evaluated
  a = m.Handle(TickEvent{}, 5);
  CHECK(All<EvaluateGlobalAction>(a).empty());
  CHECK(FloatValues(m.global()[0]) == std::vector<float>{2.0f, 2.0f});

  a = m.Handle(CentralEvalEvent{1, 0.4, 1.0}, 6);
  auto done = All<RoundDoneAction>(a);
  REQUIRE(done.size() == 1);
  CHECK(done[0].round == 1);
  // Round 2 is aggregated in the same call, after RoundDone(1): its evaluation follows it.
  auto eval = All<EvaluateGlobalAction>(a);
  REQUIRE(eval.size() == 1);
  CHECK(eval[0].round == 2);
  size_t done_at = 0, eval_at = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::holds_alternative<RoundDoneAction>(a[i])) done_at = i;
    if (std::holds_alternative<EvaluateGlobalAction>(a[i])) eval_at = i;
  }
  CHECK(done_at < eval_at);
  CHECK(FloatValues(m.global()[0]) == std::vector<float>{6.0f, 6.0f});
  // What the driver checkpoints on RoundDone(1) is round 1's state, not round 2's.
  const MachineSnapshot s = m.Snapshot();
  CHECK(s.completed_rounds == 1);
  CHECK(FloatValues(s.global[0]) == std::vector<float>{2.0f, 2.0f});
  // The next event ends that hold.
  (void)m.Handle(TickEvent{}, 6.5);
  CHECK(FloatValues(m.Snapshot().global[0]) == std::vector<float>{6.0f, 6.0f});
}

TEST_CASE("overlap: the target reached in round r abandons round r+1 and shuts every client down") {
  RoundMachine m(OverlapOpts(2, 2));
  std::vector<Action> a = RoundOneIn(&m, 1.0f);
  (void)m.Handle(Result("A", 2, 9.0f), 3);  // one of round 2's results is in
  a = m.Handle(CentralEvalEvent{1, 0.95, 0.1}, 4);
  REQUIRE(All<RoundDoneAction>(a).size() == 1);
  auto stop = All<StopAction>(a);
  REQUIRE(stop.size() == 1);
  CHECK(stop[0].reached);
  CHECK(stop[0].reason.find("reached in round 1") != std::string::npos);
  CHECK(stop[0].reason.find("round 2, begun meanwhile, abandoned") != std::string::npos);
  size_t shutdowns = 0;
  for (const auto& s : All<SendAction>(a)) shutdowns += std::holds_alternative<ShutdownMsg>(s.message) ? 1 : 0;
  CHECK(shutdowns == 2);
  CHECK(m.state() == MachineState::kDone);
  CHECK(FloatValues(m.global()[0]) == std::vector<float>{1.0f, 1.0f});  // the model that reached it
  CHECK(m.Snapshot().completed_rounds == 1);
}

TEST_CASE("overlap: the last round, federated evaluation and a budget evaluate in sequence") {
  SUBCASE("max_rounds: the last round waits for its evaluation") {
    RoundOptions o = OverlapOpts(2, 2);
    o.max_rounds = 2;
    RoundMachine m(o);
    std::vector<Action> a = RoundOneIn(&m, 1.0f);
    REQUIRE(All<EvaluateGlobalAction>(a).size() == 1);
    CHECK(All<EvaluateGlobalAction>(a)[0].overlapped);
    (void)m.Handle(CentralEvalEvent{1, 0.1, 2}, 3);
    (void)m.Handle(Result("A", 2, 1.0f), 4);
    a = m.Handle(Result("B", 2, 1.0f), 5);
    REQUIRE(All<EvaluateGlobalAction>(a).size() == 1);
    CHECK_FALSE(All<EvaluateGlobalAction>(a)[0].overlapped);
    CHECK(m.state() == MachineState::kEvaluating);
    CHECK(FitTargets(a).empty());
    a = m.Handle(CentralEvalEvent{2, 0.2, 2}, 6);
    REQUIRE(All<StopAction>(a).size() == 1);
    CHECK(All<StopAction>(a)[0].reason.find("max rounds (2)") != std::string::npos);
  }
  for (int which = 0; which < 2; ++which) {
    CAPTURE(which);
    RoundOptions o = OverlapOpts(2, 2);
    if (which == 0) o.fed_eval_every = 1;
    if (which == 1) o.budget.max_wh = 1000;
    RoundMachine m(o);
    std::vector<Action> a = RoundOneIn(&m, 1.0f);
    REQUIRE(All<EvaluateGlobalAction>(a).size() == 1);
    CHECK_FALSE(All<EvaluateGlobalAction>(a)[0].overlapped);
    CHECK(m.state() == MachineState::kEvaluating);
    CHECK(FitTargets(a).empty());
  }
}

TEST_CASE("overlap: a failed evaluation of round r stops the run while round r+1 is fitting") {
  RoundMachine m(OverlapOpts(2, 2));
  std::vector<Action> a = RoundOneIn(&m, 1.0f);
  a = m.Handle(CentralEvalFailedEvent{1, "out of memory"}, 3);
  auto stop = All<StopAction>(a);
  REQUIRE(stop.size() == 1);
  CHECK(stop[0].failed);
  CHECK(stop[0].reason.find("central evaluation of round 1 failed") != std::string::npos);
  CHECK_FALSE(m.overlapped_eval_round().has_value());
  // Round 2's late results are refused as the run is over.
  a = m.Handle(Result("A", 2, 1.0f), 4);
  CHECK(All<RoundDoneAction>(a).empty());
}
