// The client's logic, driven without sockets, threads or clocks: events in,
// actions out, times made up by the test.
#include <doctest/doctest.h>

#include "greenfed/client/client_machine.h"

using namespace greenfed;

namespace {

ClientOptions Opts() {
  ClientOptions o;
  o.client_id = "c";
  o.connect = "inproc://test";
  o.initial_backoff_s = 1;
  o.max_backoff_s = 4;
  o.connect_timeout_s = 10;
  o.coordinator_timeout_s = 20;
  return o;
}

template <typename T>
std::vector<T> All(const std::vector<ClientAction>& actions) {
  std::vector<T> out;
  for (const auto& a : actions) {
    if (auto* t = std::get_if<T>(&a)) out.push_back(*t);
  }
  return out;
}

template <typename M>
std::vector<M> Sent(const std::vector<ClientAction>& actions) {
  std::vector<M> out;
  for (const auto& s : All<ClientSendAction>(actions)) {
    if (auto* m = std::get_if<M>(&s.message)) out.push_back(*m);
  }
  return out;
}

WelcomeMsg Welcome(uint32_t index, uint64_t seed = 7) {
  WelcomeMsg w;
  w.client_index = index;
  w.run_id = "r";
  w.task = "t";
  w.model = "m";
  w.partition.scheme = "iid";
  w.partition.seed = seed;
  w.partition.num_clients = 4;
  w.heartbeat_interval_ms = 1000;
  return w;
}

ClientMessageEvent Msg(Message m, uint64_t bytes = 100) { return ClientMessageEvent{std::move(m), bytes}; }

FitMsg Fit(uint64_t round) {
  FitMsg f;
  f.round = round;
  f.parameters = {MakeFloatBlob("w", {2}, {1, 2})};
  return f;
}

// The machine as far as a prepared shard: Start, Welcome, prepare done.
struct Joined {
  ClientMachine m{Opts(), {"fedprox"}};
  std::vector<ClientAction> last;
  explicit Joined(uint32_t index = 2) {
    auto start = m.Start(0);
    last = m.Handle(Msg(Welcome(index)), 0.1);
    WorkDoneEvent prep;
    prep.kind = WorkKind::kPrepare;
    prep.num_train_examples = 60;
    auto ready = m.Handle(std::move(prep), 0.2);
    last.insert(last.end(), ready.begin(), ready.end());
  }
};

}  // namespace

TEST_CASE("client machine: Start connects and joins with its capabilities, Welcome starts the shard") {
  ClientMachine m(Opts(), {"fedprox"});
  auto a = m.Start(0);
  REQUIRE(All<ConnectAction>(a).size() == 1);
  auto joins = Sent<JoinMsg>(a);
  REQUIRE(joins.size() == 1);
  CHECK(joins[0].requested_index == -1);
  CHECK(joins[0].num_examples == 0);
  CHECK(joins[0].capabilities == std::vector<std::string>{"delta", "evaluate", "meter", "codec:fp16", "codec:int8",
                                                          "codec:topk", "fedprox"});
  CHECK_FALSE(m.joined());

  auto w = m.Handle(Msg(Welcome(3)), 0.5);
  CHECK(m.joined());
  auto prep = All<StartPrepareAction>(w);
  REQUIRE(prep.size() == 1);
  CHECK(prep[0].task == "t");
  CHECK(prep[0].options.model == "m");
  CHECK(prep[0].options.client_index == 3);
  CHECK(prep[0].options.partition.scheme == "iid");
  CHECK(m.working());
}

TEST_CASE("client machine: no answer backs off (doubling, capped), an Error answer resets the give-up clock") {
  ClientMachine m(Opts(), {});
  (void)m.Start(0);
  CHECK(m.Handle(ClientTickEvent{}, 0.5).empty());      // still waiting the first 1 s
  auto retry = m.Handle(ClientTickEvent{}, 1.0);
  CHECK(All<ConnectAction>(retry).size() == 1);
  CHECK(Sent<JoinMsg>(retry).size() == 1);
  CHECK(m.NextWakeupS() == doctest::Approx(3.0));       // backoff 2 s
  (void)m.Handle(ClientTickEvent{}, 3.0);
  CHECK(m.NextWakeupS() == doctest::Approx(7.0));       // 4 s
  (void)m.Handle(ClientTickEvent{}, 7.0);
  CHECK(m.NextWakeupS() == doctest::Approx(11.0));      // capped at 4 s
  // An INDEX_TAKEN answer at 8 s: the coordinator is there, so the 10 s clock restarts.
  auto warn = m.Handle(Msg(ErrorMsg{ErrorCode::kIndexTaken, 0, "taken"}), 8.0);
  CHECK(All<ClientLogAction>(warn).size() == 1);
  auto later = m.Handle(ClientTickEvent{}, 11.0);
  CHECK(All<FailAction>(later).empty());
  CHECK(Sent<JoinMsg>(later).size() == 1);
  auto fail = m.Handle(ClientTickEvent{}, 18.1);
  REQUIRE(All<FailAction>(fail).size() == 1);
  CHECK(All<FailAction>(fail)[0].status.code() == Code::kUnavailable);
  CHECK(m.Handle(ClientTickEvent{}, 30).empty());       // done: nothing more
}

TEST_CASE("client machine: refusals that retrying cannot fix fail the client, RUN_OVER finishes it") {
  for (ErrorCode code : {ErrorCode::kIndexOutOfRange, ErrorCode::kIncompatible, ErrorCode::kVersionMismatch}) {
    ClientMachine m(Opts(), {});
    (void)m.Start(0);
    auto a = m.Handle(Msg(ErrorMsg{code, 0, "no"}), 0.1);
    REQUIRE(All<FailAction>(a).size() == 1);
    CHECK(All<FailAction>(a)[0].status.message().find(ErrorCodeName(code)) != std::string::npos);
  }
  ClientMachine m(Opts(), {});
  (void)m.Start(0);
  auto over = m.Handle(Msg(ErrorMsg{ErrorCode::kRunOver, 0, "over"}), 0.1);
  REQUIRE(All<FinishAction>(over).size() == 1);
  CHECK(All<FinishAction>(over)[0].reason == "the run is over");
}

TEST_CASE("client machine: a Welcome that contradicts the client's flags fails it, naming both") {
  ClientOptions o = Opts();
  o.expected_num_clients = 9;
  ClientMachine m(o, {});
  (void)m.Start(0);
  auto a = m.Handle(Msg(Welcome(1)), 0.1);
  REQUIRE(All<FailAction>(a).size() == 1);
  CHECK(All<FailAction>(a)[0].status.message().find("--num-clients 9") != std::string::npos);
}

TEST_CASE("client machine: a Fit during shard building is queued, a second one is BUSY, and the queue runs when ready") {
  ClientMachine m(Opts(), {});
  (void)m.Start(0);
  (void)m.Handle(Msg(Welcome(1)), 0.1);
  CHECK(m.Handle(Msg(Fit(1)), 0.2).empty());            // queued
  auto busy = Sent<ErrorMsg>(m.Handle(Msg(Fit(1)), 0.3));
  REQUIRE(busy.size() == 1);
  CHECK(busy[0].code == ErrorCode::kBusy);
  WorkDoneEvent prep;
  prep.kind = WorkKind::kPrepare;
  prep.num_train_examples = 60;
  auto ready = m.Handle(std::move(prep), 0.4);
  auto fits = All<StartFitAction>(ready);
  REQUIRE(fits.size() == 1);
  CHECK(fits[0].round == 1);
  CHECK(fits[0].request.parameters.size() == 1);
}

TEST_CASE("client machine: a failed shard build sends FIT_FAILED and fails the client") {
  ClientMachine m(Opts(), {});
  (void)m.Start(0);
  (void)m.Handle(Msg(Welcome(1)), 0.1);
  WorkDoneEvent prep;
  prep.kind = WorkKind::kPrepare;
  prep.status = NotFound("no data");
  auto a = m.Handle(std::move(prep), 0.2);
  REQUIRE(Sent<ErrorMsg>(a).size() == 1);
  CHECK(Sent<ErrorMsg>(a)[0].code == ErrorCode::kFitFailed);
  REQUIRE(All<FailAction>(a).size() == 1);
  CHECK(All<FailAction>(a)[0].status.message().find("client-1 cannot build its shard") != std::string::npos);
}

TEST_CASE("client machine: a fit's result carries its energy and the bytes per round, and the state comes back") {
  Joined j;
  (void)j.m.Handle(ClientMessageEvent{Fit(1), 500}, 1.0);
  ClientState st;
  st["c_i"] = {MakeFloatBlob("c", {1}, {3})};
  auto starts = j.m.Handle(Msg(Fit(2), 400), 1.0);
  // The machine is busy with round 1's fit: round 2 gets BUSY.
  CHECK(Sent<ErrorMsg>(starts).size() == 1);

  WorkDoneEvent done;
  done.kind = WorkKind::kFit;
  done.round = 1;
  done.fit.num_examples = 60;
  done.fit.train_loss = 0.25;
  done.fit.parameters = {MakeFloatBlob("w", {2}, {0, 0})};
  done.state = st;
  done.wall_s = 2;
  EnergyRecord e;
  e.phase = Phase::kFit;
  e.round = 1;
  e.energy_j = 5;
  done.energy = {e};
  auto a = j.m.Handle(std::move(done), 3.0);
  auto res = Sent<FitResMsg>(a);
  REQUIRE(res.size() == 1);
  CHECK(res[0].round == 1);
  CHECK(res[0].num_examples == 60);
  CHECK(res[0].fit_s == 2);
  CHECK(j.m.state().count("c_i") == 1);
  CHECK(j.m.rounds_trained() == 1);
  // The fit's record and one comm record per round moved: round 1 got the Welcome
  // (100) and the Fit (500) in, the Join out (not yet Sent() here); round 2 the BUSY's Fit (400).
  uint64_t received1 = 0, received2 = 0;
  bool fit_record = false;
  for (const auto& r : res[0].energy) {
    if (r.phase == Phase::kFit) fit_record = r.energy_j == 5;
    if (r.phase == Phase::kComm && r.round == 1) received1 = r.bytes_received;
    if (r.phase == Phase::kComm && r.round == 2) received2 = r.bytes_received;
  }
  CHECK(fit_record);
  CHECK(received1 == 600);
  CHECK(received2 == 400);
  // Sent() counts the result's own bytes for its round, in the next report.
  j.m.Sent(res[0], 1234);
  auto fin = Sent<HeartbeatMsg>(j.m.Finish("bye"));
  REQUIRE(fin.size() == 1);
  REQUIRE(fin[0].energy.size() == 1);
  CHECK(fin[0].energy[0].bytes_sent == 1234);
  CHECK(fin[0].energy[0].round == 1);
}

TEST_CASE("client machine: NOT_JOINED rejoins with the same index and re-reports the energy the coordinator did not book") {
  Joined j(2);
  HeartbeatMsg hb{0, {}};
  EnergyRecord e;
  e.phase = Phase::kIdle;
  e.round = 1;
  e.energy_j = 1;
  hb.energy = {e};
  j.m.Sent(hb, 10);
  auto a = j.m.Handle(Msg(ErrorMsg{ErrorCode::kNotJoined, 0, "join first"}), 5);
  CHECK_FALSE(j.m.joined());
  REQUIRE(All<ConnectAction>(a).size() == 1);
  auto joins = Sent<JoinMsg>(a);
  REQUIRE(joins.size() == 1);
  CHECK(joins[0].requested_index == 2);
  CHECK(joins[0].num_examples == 60);
  (void)j.m.Handle(Msg(Welcome(2)), 5.5);
  CHECK(j.m.joined());
  auto fin = Sent<HeartbeatMsg>(j.m.Finish("bye"));
  REQUIRE(fin.size() == 1);
  bool idle_again = false;
  for (const auto& r : fin[0].energy) idle_again |= r.phase == Phase::kIdle && r.energy_j == 1;
  CHECK(idle_again);
}

TEST_CASE("client machine: another index on rejoin drops the state, and a fit for the old shard cannot bring it back") {
  Joined j(2);
  auto start = j.m.Handle(Msg(Fit(1)), 1);
  REQUIRE(All<StartFitAction>(start).size() == 1);
  const uint64_t generation = All<StartFitAction>(start)[0].state_generation;
  // Coordinator silent: rejoin, and it assigns index 3 this time.
  auto silent = j.m.Handle(ClientTickEvent{}, 30);
  CHECK(Sent<HeartbeatMsg>(silent).size() == 1);
  CHECK(All<ConnectAction>(silent).size() == 1);
  auto w = j.m.Handle(Msg(Welcome(3)), 31);
  bool dropped_log = false;
  for (const auto& l : All<ClientLogAction>(w)) dropped_log |= l.text.find("client state dropped") != std::string::npos;
  CHECK(dropped_log);
  CHECK(All<StartPrepareAction>(w).empty());  // the old fit still runs
  WorkDoneEvent done;
  done.kind = WorkKind::kFit;
  done.round = 1;
  done.state_generation = generation;
  done.state["c_i"] = {MakeFloatBlob("c", {1}, {3})};
  auto after = j.m.Handle(std::move(done), 32);
  CHECK(j.m.state().empty());
  // The new shard is built once the old work is out of the way.
  REQUIRE(All<StartPrepareAction>(after).size() == 1);
  CHECK(All<StartPrepareAction>(after)[0].options.client_index == 3);
}

TEST_CASE("client machine: heartbeats follow the Welcome's interval, and Shutdown and a stop finish") {
  Joined j;
  CHECK(Sent<HeartbeatMsg>(j.m.Handle(ClientTickEvent{}, 0.5)).empty());
  CHECK(Sent<HeartbeatMsg>(j.m.Handle(ClientTickEvent{}, 1.2)).size() == 1);
  CHECK(Sent<HeartbeatMsg>(j.m.Handle(ClientTickEvent{}, 1.5)).empty());
  auto s = j.m.Handle(Msg(ShutdownMsg{"target reached"}), 2);
  REQUIRE(All<FinishAction>(s).size() == 1);
  CHECK(All<FinishAction>(s)[0].reason == "target reached");
  CHECK(j.m.Result("target reached").client_index == 2);

  Joined k;
  auto stop = k.m.Handle(ClientStopEvent{}, 1);
  REQUIRE(All<FinishAction>(stop).size() == 1);
  CHECK(All<FinishAction>(stop)[0].reason == "stopped by signal");
}

TEST_CASE("client machine: own-data mode declares its examples and refuses a partitioning coordinator") {
  ClientOptions o = Opts();
  o.task.own_data_path = "/tmp/mine.csv";
  o.own_data_task = "t";
  o.task.model = "m";
  ClientMachine m(o, {}, 77);
  auto joins = Sent<JoinMsg>(m.Start(0));
  REQUIRE(joins.size() == 1);
  CHECK(joins[0].num_examples == 77);
  auto a = m.Handle(Msg(Welcome(0)), 0.1);  // scheme "iid"
  REQUIRE(All<FailAction>(a).size() == 1);
  CHECK(All<FailAction>(a)[0].status.message().find("--partition none") != std::string::npos);
}

TEST_CASE("client machine: RunFitWork applies the attack scale and the delta, and hands the state back") {
  struct Adds : Task {
    Status Prepare(const TaskOptions&) override { return Status::Ok(); }
    StatusOr<Parameters> InitialParameters() override { return Parameters{}; }
    StatusOr<FitResult> Fit(const FitRequest& req, ClientState& state) override {
      FitResult r;
      r.parameters = {MakeFloatBlob("w", {2}, {FloatValues(req.parameters[0])[0] + 1, FloatValues(req.parameters[0])[1] + 1})};
      r.num_examples = 3;
      state["seen"] = req.parameters;
      return r;
    }
    StatusOr<EvalResult> Evaluate(const Parameters&) override { return EvalResult{}; }
    uint64_t NumTrainExamples() const override { return 3; }
    std::vector<int64_t> TrainLabelHistogram() const override { return {}; }
  } task;
  int metered = 0;
  WorkMeterFn meter = [&](Phase phase, int64_t round, const std::function<void()>& fn) {
    fn();
    ++metered;
    EnergyRecord e;
    e.phase = phase;
    e.round = round;
    return std::vector<EnergyRecord>{e};
  };
  StartFitAction a;
  a.round = 4;
  a.request.parameters = {MakeFloatBlob("w", {2}, {1, 2})};
  a.request.config["send_delta"] = true;
  a.attack_scale = -2;
  a.state_generation = 9;
  double t = 0;
  WorkDoneEvent r = RunFitWork(task, a, meter, [&] { return t += 1; });
  REQUIRE(r.status.ok());
  CHECK(metered == 1);
  CHECK(r.is_delta);
  CHECK(r.state_generation == 9);
  CHECK(r.state.count("seen") == 1);
  CHECK(r.wall_s == 1);
  CHECK(FloatValues(r.fit.parameters[0]) == std::vector<float>{-2, -2});  // -2 * (+1)
  CHECK(r.energy.size() == 1);
  CHECK(r.energy[0].round == 4);

  a.request.config["send_delta"] = std::string("yes");
  WorkDoneEvent bad = RunFitWork(task, a, meter, [&] { return 0.0; });
  CHECK_FALSE(bad.status.ok());
  CHECK(metered == 1);  // refused before the fit
}
