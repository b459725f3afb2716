// The coordinator's server and a client over real ZeroMQ sockets on loopback,
// with a small fake task so that the test is about the transport, not training.
#include <doctest/doctest.h>

#include "counting_task.h"

#include <msgpack.hpp>
#include <algorithm>
#include <optional>
#include <sstream>
#include <stdlib.h>
#include <thread>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "greenfed/client/client.h"
#include "greenfed/coordinator/server.h"
#include "run_helpers.h"

using namespace greenfed;

namespace {

using FakeTask = greenfed::testing::CountingTask;
using greenfed::testing::MakeTempDir;

struct Coordinator {
  FakeTask task;
  CarbonTable carbon = CarbonTable::BuiltIn();
  std::unique_ptr<Env> env = NewSystemEnv();
  std::unique_ptr<PhaseMeter> meter;
  std::unique_ptr<RunDir> run_dir;
  std::ostringstream out, diag;
  Logger log{"coordinator", &out, &diag};
  std::unique_ptr<Server> server;
  std::string endpoint;

  explicit Coordinator(ServerOptions options) {
    MeterOptions mo;
    mo.kind = "model";
    auto set = OpenMeters(mo, env.get());
    REQUIRE(set.ok());
    meter = std::make_unique<PhaseMeter>(std::move(set).value(), env.get());
    auto rd = RunDir::Create(MakeTempDir("greenfed-transport") + "/run");
    REQUIRE(rd.ok());
    run_dir = std::move(rd).value();
    options.bind = "tcp://127.0.0.1:*";
    server = std::make_unique<Server>(options, &task, Parameters{MakeFloatBlob("w", {2}, {0, 0})}, &carbon,
                                      meter.get(), run_dir.get(), env.get(), &log);
    auto ep = server->Bind();
    REQUIRE(ep.ok());
    endpoint = *ep;
  }
};

ServerOptions SmallFederation() {
  ServerOptions o;
  o.round.num_clients = 1;
  o.round.min_available_clients = 1;
  o.round.min_fit_clients = 1;
  o.round.max_rounds = 5;
  o.round.target_accuracy = 0.9;
  o.round.task = "fake";
  o.round.heartbeat_timeout_s = 30;
  o.shutdown_grace_s = 2;
  o.insecure = true;  // these tests are about the protocol; CURVE is tests/test_curve.cc
  return o;
}

Frames SendAndReceive(zmq::socket_t& s, const std::vector<std::string>& frames) {
  for (size_t i = 0; i < frames.size(); ++i) {
    s.send(zmq::buffer(frames[i]), i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }
  std::vector<zmq::message_t> parts;
  s.set(zmq::sockopt::rcvtimeo, 5000);
  auto got = zmq::recv_multipart(s, std::back_inserter(parts));
  Frames out;
  if (!got) return out;
  for (auto& p : parts) {
    const auto* d = static_cast<const uint8_t*>(p.data());
    out.emplace_back(d, d + p.size());
  }
  return out;
}

std::string ErrorText(const Frames& frames) {
  auto m = Decode(frames);
  if (!m.ok()) return "undecodable reply: " + m.status().message();
  if (auto* e = std::get_if<ErrorMsg>(&*m)) return e->message;
  return std::string("not an error: ") + MsgTypeName(TypeOf(*m));
}

ErrorCode ErrorCodeOf(const Frames& frames) {
  auto m = Decode(frames);
  if (!m.ok()) return ErrorCode::kUnknown;
  if (auto* e = std::get_if<ErrorMsg>(&*m)) return e->code;
  return ErrorCode::kUnknown;
}

std::string Packed(int version, int type) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_map(2);
  pk.pack(std::string("v"));
  pk.pack(version);
  pk.pack(std::string("t"));
  pk.pack(type);
  return std::string(buf.data(), buf.size());
}

}  // namespace

TEST_CASE("bad messages on a real socket get a named error, and a real client still completes the run") {
  ServerOptions o = SmallFederation();
  o.max_message_bytes = 4096;
  Coordinator c(o);
  StatusOr<ServerResult> result = Internal("not run");
  std::thread server([&] { result = c.server->Run(); });

  zmq::context_t ctx;
  zmq::socket_t rogue(ctx, zmq::socket_type::dealer);
  rogue.set(zmq::sockopt::linger, 0);
  rogue.connect(c.endpoint);
  CHECK(ErrorText(SendAndReceive(rogue, {"\xc1garbage"})).find("decode") != std::string::npos);
  CHECK(ErrorText(SendAndReceive(rogue, {Packed(1, 7)})).find("protocol version 1") != std::string::npos);
  CHECK(ErrorCodeOf(SendAndReceive(rogue, {Packed(1, 7)})) == ErrorCode::kVersionMismatch);
  CHECK(ErrorText(SendAndReceive(rogue, {Packed(kProtocolVersion, 99)})).find("99") != std::string::npos);
  const std::string big(3000, 'x');
  CHECK(ErrorText(SendAndReceive(rogue, {Packed(kProtocolVersion, 7), big, big})).find("4096") != std::string::npos);
  CHECK(ErrorCodeOf(SendAndReceive(rogue, {Packed(kProtocolVersion, 7), big, big})) == ErrorCode::kTooLarge);
  Frames hb = Encode(HeartbeatMsg{0, {}});
  CHECK(ErrorText(SendAndReceive(rogue, {std::string(hb[0].begin(), hb[0].end())})).find("join first") !=
        std::string::npos);
  JoinMsg bad_country;
  bad_country.client_id = "rogue";
  bad_country.country = "XXX";
  Frames j = Encode(bad_country);
  CHECK(ErrorText(SendAndReceive(rogue, {std::string(j[0].begin(), j[0].end())})).find("unknown country code 'XXX'") !=
        std::string::npos);

  // Now a real client joins and the run completes.
  TaskRegistry registry;
  REQUIRE(registry.Register("fake", [] { return std::make_unique<FakeTask>(); }).ok());
  ClientOptions co;
  co.connect = c.endpoint;
  co.insecure = true;
  co.country = "FRA";
  co.connect_timeout_s = 20;
  auto env = NewSystemEnv();
  MeterOptions mo;
  mo.kind = "model";
  auto set = OpenMeters(mo, env.get());
  REQUIRE(set.ok());
  PhaseMeter meter(std::move(set).value(), env.get());
  std::ostringstream cout_, cerr_;
  Logger clog("client", &cout_, &cerr_);
  Client client(co, &registry, &meter, env.get(), &clog);
  auto cres = client.Run();
  server.join();
  REQUIRE(cres.ok());
  CHECK(cres->rounds_trained == 3);
  CHECK(cres->shutdown_reason.find("reached in round 3") != std::string::npos);
  REQUIRE(result.ok());
  CHECK(result->reached);
  CHECK(result->rounds == 3);
  // Global model after 3 rounds of +1.
  CHECK(c.diag.str().find("rejected message from an unjoined peer") != std::string::npos);
  CHECK(c.diag.str().find("rejected join from rogue: unknown country code 'XXX'") != std::string::npos);
  const auto rows = c.run_dir->NodeRows();
  bool client_fra = false;
  for (const auto& r : rows) client_fra |= (r.node.node_id == "client-0" && r.node.country == "FRA");
  CHECK(client_fra);
  CHECK(c.out.str().find("round 3/5 | acc 0.9000") != std::string::npos);
}

TEST_CASE("a client with no coordinator retries with backoff, then gives up with a message naming the endpoint") {
  TaskRegistry registry;
  ClientOptions co;
  co.connect = "tcp://127.0.0.1:9";  // nothing listens on the discard port here
  co.insecure = true;
  co.connect_timeout_s = 1.2;
  co.initial_backoff_s = 0.2;
  auto env = NewSystemEnv();
  MeterOptions mo;
  mo.kind = "model";
  PhaseMeter meter(std::move(OpenMeters(mo, env.get())).value(), env.get());
  std::ostringstream out, diag;
  Logger log("client", &out, &diag);
  Client client(co, &registry, &meter, env.get(), &log);
  auto r = client.Run();
  CHECK(r.status().code() == Code::kUnavailable);
  CHECK(r.status().message().find("no coordinator answered at tcp://127.0.0.1:9") != std::string::npos);
  CHECK(diag.str().find("retrying in 0.4") != std::string::npos);  // backoff doubled
}

namespace {

Frames Receive(zmq::socket_t& s, int timeout_ms) {
  s.set(zmq::sockopt::rcvtimeo, timeout_ms);
  std::vector<zmq::message_t> parts;
  Frames out;
  if (!zmq::recv_multipart(s, std::back_inserter(parts))) return out;
  for (auto& p : parts) {
    const auto* d = static_cast<const uint8_t*>(p.data());
    out.emplace_back(d, d + p.size());
  }
  return out;
}

void SendFrames(zmq::socket_t& s, const Frames& frames) {
  for (size_t i = 0; i < frames.size(); ++i) {
    s.send(zmq::buffer(frames[i]), i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }
}

EnergyRecord Forged(Phase phase, int64_t round, double energy_j, double wall_s) {
  EnergyRecord r;
  r.phase = phase;
  r.round = round;
  r.energy_j = energy_j;
  r.wall_s = wall_s;
  r.cpu_s = wall_s;
  r.source = phase == Phase::kComm ? EnergySource::kComm : EnergySource::kModel;
  r.measured = false;
  return r;
}

}  // namespace

// Issue 8: a joined peer forges its energy ledger and answers every Fit with a
// NaN update. Each forged record is refused with BAD_ENERGY and never reaches the
// ledger; each NaN update fails that peer's slot at once (not at the deadline); after
// two failures the peer is excluded, and the honest client finishes the run.
TEST_CASE("a hostile joined peer cannot forge the energy ledger, and its NaN updates fail the round at once") {
  ServerOptions o = SmallFederation();
  o.round.num_clients = 2;
  o.round.min_available_clients = 2;
  o.round.round_timeout_s = 20;
  Coordinator c(o);
  StatusOr<ServerResult> result = Internal("not run");
  std::thread server([&] { result = c.server->Run(); });

  zmq::context_t ctx;
  zmq::socket_t rogue(ctx, zmq::socket_type::dealer);
  rogue.set(zmq::sockopt::linger, 0);
  rogue.connect(c.endpoint);
  JoinMsg join;
  join.client_id = "rogue";
  join.country = "FRA";
  join.requested_index = 1;
  SendFrames(rogue, Encode(join));
  auto welcome = Decode(Receive(rogue, 5000));
  REQUIRE(welcome.ok());
  REQUIRE(std::holds_alternative<WelcomeMsg>(*welcome));

  // The forged ledger, as measured on the landed main: 1e30 J, 1.7e308 J twice
  // (inf once summed), a round that has not happened, bytes near 2^64, a negative.
  HeartbeatMsg hb;
  hb.round = 1;
  hb.energy = {Forged(Phase::kFit, 1, 1e30, 1.0), Forged(Phase::kFit, 1, 1.7e308, 1.0),
               Forged(Phase::kFit, 1, 1.7e308, 1.0), Forged(Phase::kIdle, int64_t{1} << 62, 1.0, 1.0),
               Forged(Phase::kIdle, 1, -5, 1.0), Forged(Phase::kIdle, 1, 1.0, 1e9)};
  EnergyRecord bytes = Forged(Phase::kComm, 1, 1.0, 0);
  bytes.bytes_sent = ~0ull - 10;
  hb.energy.push_back(bytes);
  hb.energy.push_back(Forged(Phase::kIdle, 1, 0.5, 0.1));  // plausible: kept
  SendFrames(rogue, Encode(hb));

  // The honest client.
  TaskRegistry registry;
  REQUIRE(registry.Register("fake", [] { return std::make_unique<FakeTask>(); }).ok());
  ClientOptions co;
  co.connect = c.endpoint;
  co.insecure = true;
  co.country = "FRA";
  co.connect_timeout_s = 20;
  auto env = NewSystemEnv();
  MeterOptions mo;
  mo.kind = "model";
  PhaseMeter meter(std::move(OpenMeters(mo, env.get())).value(), env.get());
  std::ostringstream cout_, cerr_;
  Logger clog("client", &cout_, &cerr_);
  Client client(co, &registry, &meter, env.get(), &clog);
  StatusOr<ClientResult> cres = Internal("not run");
  std::thread honest([&] { cres = client.Run(); });

  // The rogue answers every Fit with a NaN update until it is excluded or shut down.
  std::vector<ErrorCode> codes;
  int fits = 0;
  for (int i = 0; i < 200; ++i) {
    Frames f = Receive(rogue, 200);
    if (f.empty()) continue;
    auto m = Decode(f);
    REQUIRE(m.ok());
    if (auto* e = std::get_if<ErrorMsg>(&*m)) {
      codes.push_back(e->code);
      if (e->code == ErrorCode::kExcluded) break;
    } else if (auto* fit = std::get_if<FitMsg>(&*m)) {
      ++fits;
      FitResMsg res;
      res.round = fit->round;
      res.num_examples = 10;
      res.parameters = {MakeFloatBlob("w", {2}, {std::numeric_limits<float>::quiet_NaN(), 0})};
      SendFrames(rogue, Encode(res));
    } else if (std::holds_alternative<ShutdownMsg>(*m)) {
      break;
    }
  }
  honest.join();
  server.join();
  REQUIRE(result.ok());
  CHECK(result->reached);
  REQUIRE(cres.ok());
  CHECK(fits == 2);
  CHECK(std::count(codes.begin(), codes.end(), ErrorCode::kBadEnergy) == 1);
  CHECK(std::count(codes.begin(), codes.end(), ErrorCode::kBadMessage) == 2);
  CHECK(std::count(codes.begin(), codes.end(), ErrorCode::kExcluded) == 1);
  CHECK(c.diag.str().find("rejected 7 of 8 energy record(s) from client-1") != std::string::npos);
  CHECK(c.diag.str().find("client-1 (rogue) failed round 1: BAD_MESSAGE") != std::string::npos);
  // Nothing implausible reached the ledger: client-1 has only the 0.5 J record.
  double rogue_j = 0;
  for (const auto& r : c.run_dir->NodeRows()) {
    CHECK(std::isfinite(r.compute_j()));
    CHECK(r.round <= result->rounds + 1);
    if (r.node.node_id == "client-1") rogue_j += r.compute_j() + r.comm_j;
  }
  CHECK(rogue_j == doctest::Approx(0.5));
  // The NaN update failed its slot at once: round 1 did not wait for the 20 s deadline.
  REQUIRE(!c.run_dir->rounds().empty());
  CHECK(c.run_dir->rounds()[0].clients_failed == 1);
  CHECK(c.run_dir->rounds()[0].round_s < o.round.round_timeout_s);
}

namespace {

// A task that counts its fits in the client state ("count") and reports the count it
// found as group "seen"; it announces capability "scaffold".
class StatefulTask : public Task {
 public:
  Status Prepare(const TaskOptions&) override { return Status::Ok(); }
  StatusOr<Parameters> InitialParameters() override { return Parameters{MakeFloatBlob("w", {2}, {0, 0})}; }
  StatusOr<FitResult> Fit(const FitRequest& request, ClientState& state) override {
    float seen = 0;
    if (auto it = state.find("count"); it != state.end()) seen = FloatValues(it->second[0])[0];
    state["count"] = {MakeFloatBlob("n", {1}, {seen + 1})};
    FitResult r;
    r.parameters = request.parameters;
    r.groups["seen"] = {MakeFloatBlob("n", {1}, {seen})};
    r.num_examples = 10;
    r.train_loss = 0.5;
    return r;
  }
  StatusOr<EvalResult> Evaluate(const Parameters&) override { return EvalResult{1.0, 0.5, 10}; }
  uint64_t NumTrainExamples() const override { return 10; }
  std::vector<int64_t> TrainLabelHistogram() const override { return {10}; }
  std::vector<std::string> Capabilities() const override { return {"scaffold"}; }
};

// The next message of type T from the client on a ROUTER socket (heartbeats and
// other types skipped); its routing id in *peer.
template <typename T>
std::optional<T> Next(zmq::socket_t& router, std::string* peer) {
  for (int i = 0; i < 100; ++i) {
    Frames f = Receive(router, 200);
    if (f.size() < 2) continue;
    *peer = std::string(f[0].begin(), f[0].end());
    Frames body(f.begin() + 1, f.end());
    auto m = Decode(body);
    REQUIRE_MESSAGE(m.ok(), m.status().ToString());
    if (auto* t = std::get_if<T>(&*m)) return *t;
  }
  return std::nullopt;
}

void SendTo(zmq::socket_t& router, const std::string& peer, const Message& m) {
  // Routing frame first, built by push_back: GCC 12's -Wnull-dereference flags
  // insert() at begin() of the encoded frames as a possible null dereference.
  const Frames body = Encode(m);
  Frames f;
  f.reserve(body.size() + 1);
  f.emplace_back(peer.begin(), peer.end());
  for (const auto& frame : body) f.push_back(frame);
  SendFrames(router, f);
}

WelcomeMsg WelcomeAs(uint32_t index) {
  WelcomeMsg w;
  w.client_index = index;
  w.partition.num_clients = 2;
  w.task = "stateful";
  w.run_id = "state-test";
  w.heartbeat_interval_ms = 100;
  return w;
}

FitMsg FitFor(uint64_t round) {
  FitMsg fit;
  fit.round = round;
  PutTrainConfig(TrainConfig{}, &fit.config);
  fit.parameters = {MakeFloatBlob("w", {2}, {0, 0})};
  return fit;
}

float Seen(const FitResMsg& r) {
  REQUIRE(r.groups.count("seen") == 1);
  return FloatValues(r.groups.at("seen")[0])[0];
}

}  // namespace

// Issue 10: the client owns its task's state across rounds, announces the task's
// capabilities at Join, starts empty (and says so), and drops the state when a
// rejoin gives it another client index.
TEST_CASE("client keeps its task state across rounds and drops it when a rejoin assigns another index") {
  zmq::context_t ctx;
  zmq::socket_t router(ctx, zmq::socket_type::router);
  router.set(zmq::sockopt::linger, 0);
  router.bind("tcp://127.0.0.1:*");
  const std::string endpoint = router.get(zmq::sockopt::last_endpoint);

  TaskRegistry registry;
  REQUIRE(registry.Register("stateful", [] { return std::make_unique<StatefulTask>(); }).ok());
  ClientOptions co;
  co.connect = endpoint;
  co.insecure = true;
  co.country = "FRA";
  co.connect_timeout_s = 20;
  auto env = NewSystemEnv();
  MeterOptions mo;
  mo.kind = "model";
  PhaseMeter meter(std::move(OpenMeters(mo, env.get())).value(), env.get());
  std::ostringstream out, err;
  Logger clog("client", &out, &err);
  Client client(co, &registry, &meter, env.get(), &clog);
  StatusOr<ClientResult> result = Internal("not run");
  std::thread run([&] { result = client.Run(); });

  std::string peer;
  auto join = Next<JoinMsg>(router, &peer);
  REQUIRE(join);
  CHECK(std::find(join->capabilities.begin(), join->capabilities.end(), "scaffold") != join->capabilities.end());
  SendTo(router, peer, WelcomeAs(0));
  std::vector<float> seen;
  for (uint64_t round = 1; round <= 2; ++round) {
    SendTo(router, peer, FitFor(round));
    auto res = Next<FitResMsg>(router, &peer);
    REQUIRE(res);
    seen.push_back(Seen(*res));
  }
  // "join first": the client rejoins, asking for its index 0, and gets index 1.
  SendTo(router, peer, ErrorMsg{ErrorCode::kNotJoined, 0, "join first"});
  auto rejoin = Next<JoinMsg>(router, &peer);
  REQUIRE(rejoin);
  CHECK(rejoin->requested_index == 0);
  SendTo(router, peer, WelcomeAs(1));
  SendTo(router, peer, FitFor(3));
  auto res = Next<FitResMsg>(router, &peer);
  REQUIRE(res);
  seen.push_back(Seen(*res));
  SendTo(router, peer, ShutdownMsg{"done"});
  run.join();
  REQUIRE_MESSAGE(result.ok(), result.status().ToString());
  CHECK(seen == std::vector<float>{0, 1, 0});  // kept across rounds 1-2, dropped with the new index
  const std::string log = out.str() + err.str();
  CHECK(log.find("client state: empty") != std::string::npos);
  CHECK(log.find("client state dropped (1 groups): the coordinator assigned client-1 instead of client-0 on rejoin") !=
        std::string::npos);
}
