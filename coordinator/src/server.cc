#include "greenfed/coordinator/server.h"

#include "greenfed/digest.h"

#include <sys/signalfd.h>
#include <unistd.h>

#include <cmath>
#include <deque>
#include <iomanip>
#include <sstream>
#include <zmq.hpp>
#include <zmq_addon.hpp>

namespace greenfed {

namespace {

std::string Fixed(double v, int p) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(p) << v;
  return os.str();
}

std::string Human(double bytes) {
  const char* units[] = {"B", "KB", "MB", "GB"};
  int u = 0;
  while (bytes >= 1000 && u < 3) {
    bytes /= 1000;
    ++u;
  }
  return Fixed(bytes, u == 0 ? 0 : 1) + " " + units[u];
}

std::string EnergyText(double joules) {
  if (joules >= 3600) return Fixed(joules / 3600.0, 2) + " Wh";
  return Fixed(joules, 1) + " J";
}

}  // namespace

struct Server::Impl {
  ServerOptions options;
  Task* task;
  const CarbonTable* carbon;
  PhaseMeter* meter;
  RunDir* run_dir;
  Env* env;
  Logger* log;
  RoundMachine machine;
  Parameters initial;

  zmq::context_t ctx{1};
  zmq::socket_t socket{ctx, zmq::socket_type::router};
  bool bound = false;

  double start_s = 0;
  uint64_t round_bytes_sent = 0, round_bytes_received = 0;
  uint64_t total_bytes_sent = 0, total_bytes_received = 0;
  PhaseMeter::Mark mark;
  NodeInfo self;
  double best_accuracy = 0, last_accuracy = 0;
  int64_t rounds_done = 0;
  std::optional<int64_t> round_reached;
  std::optional<StopAction> stopped;
  std::map<std::string, NodeInfo> client_nodes;  // by peer; kept after a client leaves
  std::set<std::string> awaiting_final;          // peers sent Shutdown, final report not yet in
  // What each peer has moved with us and claimed in its energy reports, for the
  // plausibility bounds (energy_record.h): a peer cannot claim more bytes than
  // crossed this socket, nor more metered seconds per source than the run lasted.
  struct PeerLedger {
    uint64_t observed_sent = 0, observed_received = 0;  // by us, to and from the peer
    uint64_t claimed_sent = 0, claimed_received = 0;    // by the peer, in comm records
    std::map<int, double> claimed_wall_s;               // by source
  };
  std::map<std::string, PeerLedger> peer_ledgers;
  // Warnings about peers that have not joined are rate-limited: a stranger must
  // not be able to fill the log.
  double warn_window_start_s = 0;
  uint32_t warn_window_count = 0;
  uint64_t warn_suppressed = 0;

  Impl(ServerOptions o, Task* t, Parameters init, const CarbonTable* c, PhaseMeter* m, RunDir* r, Env* e, Logger* l)
      : options(std::move(o)), task(t), carbon(c), meter(m), run_dir(r), env(e), log(l), machine(options.round),
        initial(std::move(init)) {}

  void SendFrames(const std::string& peer, const Frames& frames) {
    try {
      socket.send(zmq::buffer(peer), zmq::send_flags::sndmore);
      for (size_t i = 0; i < frames.size(); ++i) {
        socket.send(zmq::buffer(frames[i]), i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
      }
    } catch (const zmq::error_t& e) {
      log->Warn(std::string("send failed: ") + e.what());
      return;
    }
    const uint64_t n = FramesBytes(frames);
    round_bytes_sent += n;
    total_bytes_sent += n;
    if (auto it = peer_ledgers.find(peer); it != peer_ledgers.end()) it->second.observed_sent += n;
  }

  // A warning caused by a stranger: at most 20 per 10 s, then a count.
  void WarnStranger(const std::string& text) {
    const double now = env->NowSeconds();
    if (now - warn_window_start_s >= 10) {
      if (warn_suppressed > 0) {
        log->Warn("suppressed " + std::to_string(warn_suppressed) + " similar warning(s) about unjoined peers");
      }
      warn_window_start_s = now;
      warn_window_count = 0;
      warn_suppressed = 0;
    }
    if (++warn_window_count <= 20) {
      log->Warn(text);
    } else {
      ++warn_suppressed;
    }
  }

  void SendError(const std::string& peer, ErrorCode code, const std::string& message) {
    Send(peer, ErrorMsg{code, machine.round(), message});
  }

  void Send(const std::string& peer, const Message& m) { SendFrames(peer, Encode(m)); }

  StatusOr<NodeInfo> NodeFor(const ClientEntry& c) {
    NodeInfo n;
    n.node_id = "client-" + std::to_string(c.index);
    n.role = "client";
    n.country = c.country;
    n.pue = c.pue;
    GREENFED_ASSIGN_OR_RETURN(CarbonIntensity ci, carbon->Lookup(c.country));
    n.g_per_kwh = ci.g_per_kwh;
    return n;
  }

  // Books a peer's energy report. Each record is checked against the plausibility
  // bounds; a rejected one is logged and answered with a kBadEnergy Error naming
  // the reason, and never reaches the ledger. The rest are kept.
  void BookEnergy(const std::string& peer, const std::vector<EnergyRecord>& records) {
    if (records.empty()) return;
    auto c = machine.ClientByPeer(peer);
    auto it = client_nodes.find(peer);
    if (it == client_nodes.end()) {
      if (!c) {
        WarnStranger("energy report from an unjoined peer ignored (" + std::to_string(records.size()) + " records)");
        return;
      }
      auto node = NodeFor(*c);
      if (!node.ok()) {
        log->Warn(node.status().ToString());
        return;
      }
      it = client_nodes.emplace(peer, *node).first;
    }
    PeerLedger& ledger = peer_ledgers[peer];
    // A client meters from its own start, which may precede ours by its connect
    // wait (300 s by default): allow 600 s on top of the run's length.
    constexpr double kPreJoinSlackS = 600;
    // Bytes in flight when a coordinator restarted, or counted at the far end of a
    // message we then refused, may be claimed: 4 MiB of slack (~10 model transfers).
    constexpr uint64_t kByteSlack = 4ull << 20;
    const double allowed_wall_s = (env->NowSeconds() - start_s) + kPreJoinSlackS;
    std::vector<EnergyRecord> kept;
    kept.reserve(records.size());
    std::string first_reason;
    size_t rejected = 0;
    for (const EnergyRecord& r : records) {
      EnergyBounds b;
      b.max_round = static_cast<int64_t>(std::max<uint64_t>(machine.round(), 1));
      b.max_power_w = options.max_node_power_w;
      const double claimed = ledger.claimed_wall_s[static_cast<int>(r.source)];
      b.max_wall_s = std::max(0.0, allowed_wall_s - claimed);
      b.max_bytes_sent = ledger.observed_received + kByteSlack - std::min(ledger.claimed_sent, ledger.observed_received + kByteSlack);
      b.max_bytes_received = ledger.observed_sent + kByteSlack - std::min(ledger.claimed_received, ledger.observed_sent + kByteSlack);
      Status ok = CheckEnergyRecord(r, b);
      if (!ok.ok()) {
        ++rejected;
        if (first_reason.empty()) first_reason = ok.message();
        continue;
      }
      if (r.phase == Phase::kComm) {
        ledger.claimed_sent += r.bytes_sent;
        ledger.claimed_received += r.bytes_received;
      } else {
        ledger.claimed_wall_s[static_cast<int>(r.source)] += r.wall_s;
      }
      kept.push_back(r);
    }
    if (rejected > 0) {
      log->Warn("rejected " + std::to_string(rejected) + " of " + std::to_string(records.size()) +
                " energy record(s) from " + PeerName(peer) + ": " + first_reason);
      SendError(peer, ErrorCode::kBadEnergy,
                "rejected " + std::to_string(rejected) + " energy record(s): " + first_reason);
    }
    if (!kept.empty()) run_dir->AddEnergy(it->second, kept);
  }

  void BookSelf(Phase phase, int64_t round) {
    std::vector<std::string> warnings;
    auto records = meter->End(mark, phase, round, &warnings);
    for (const auto& w : warnings) log->Warn(w);
    run_dir->AddEnergy(self, records);
    mark = meter->Begin();
  }

  // Validates a join's accounting fields before the machine sees it.
  Status CheckJoin(const JoinMsg& j) {
    auto ci = carbon->Lookup(j.country);
    if (!ci.ok()) return ci.status();
    return ValidatePue(j.pue);
  }

  // The work a peer owes now fails at once: its last message was refused.
  void FailPending(const std::string& peer, const std::string& reason, double now) {
    if (machine.pending().count(peer) || machine.state() == MachineState::kEvaluating) {
      Execute(machine.Handle(FitFailedEvent{peer, reason}, now));
    }
  }

  void Execute(std::vector<Action> actions) {
    std::deque<Action> queue(std::make_move_iterator(actions.begin()), std::make_move_iterator(actions.end()));
    while (!queue.empty()) {
      Action a = std::move(queue.front());
      queue.pop_front();
      std::vector<Action> more;
      if (auto* send = std::get_if<SendAction>(&a)) {
        if (auto* fit = std::get_if<FitMsg>(&send->message)) fit->parameters = machine.global();
        if (auto* ev = std::get_if<EvaluateMsg>(&send->message)) ev->parameters = machine.global();
        if (std::holds_alternative<ShutdownMsg>(send->message)) awaiting_final.insert(send->peer);
        Send(send->peer, send->message);
      } else if (auto* eval = std::get_if<EvaluateGlobalAction>(&a)) {
        BookSelf(Phase::kAggregate, static_cast<int64_t>(eval->round));
        auto result = task->Evaluate(machine.global());
        BookSelf(Phase::kEvaluate, static_cast<int64_t>(eval->round));
        if (result.ok()) {
          more = machine.Handle(CentralEvalEvent{eval->round, result->accuracy, result->loss}, env->NowSeconds());
        } else {
          more = machine.Handle(CentralEvalFailedEvent{eval->round, result.status().ToString()}, env->NowSeconds());
        }
      } else if (auto* done = std::get_if<RoundDoneAction>(&a)) {
        OnRoundDone(*done);
      } else if (auto* l = std::get_if<LogAction>(&a)) {
        if (l->warning) {
          log->Warn(l->text);
        } else {
          log->Info(l->text);
        }
      } else if (auto* stop = std::get_if<StopAction>(&a)) {
        stopped = *stop;
      }
      for (auto& m : more) queue.push_back(std::move(m));
    }
  }

  void OnRoundDone(const RoundDoneAction& d) {
    const auto round = static_cast<int64_t>(d.round);
    // The coordinator's own transfers this round.
    EnergyRecord comm;
    comm.phase = Phase::kComm;
    comm.round = round;
    comm.bytes_sent = round_bytes_sent;
    comm.bytes_received = round_bytes_received;
    comm.energy_j = CommEnergyJ(options.comm, round_bytes_sent, round_bytes_received);
    comm.source = EnergySource::kComm;
    run_dir->AddEnergy(self, {comm});

    RoundRow row;
    row.round = round;
    row.clients_sampled = d.sampled;
    row.clients_succeeded = d.succeeded;
    row.clients_failed = d.failed;
    row.test_accuracy = d.accuracy;
    row.test_loss = d.loss;
    row.train_loss = d.train_loss;
    row.round_s = d.round_s;
    row.elapsed_s = env->NowSeconds() - start_s;
    row.bytes_sent = round_bytes_sent;
    row.bytes_received = round_bytes_received;
    row.fed_accuracy = d.fed_accuracy;
    run_dir->AddRound(row);
    Status s = run_dir->Flush();
    if (!s.ok()) log->Error(s.ToString());

    rounds_done = round;
    last_accuracy = d.accuracy;
    best_accuracy = std::max(best_accuracy, d.accuracy);
    if (!round_reached && d.accuracy >= options.round.target_accuracy) round_reached = round;

    // Energy booked so far for this round (clients' idle time may still arrive).
    const EnergyTotals t = run_dir->RoundTotals(round);
    std::string line = "round " + std::to_string(round) + "/" + std::to_string(options.round.max_rounds) +
                       " | acc " + Fixed(d.accuracy, 4) + " loss " + Fixed(d.loss, 4) + " | clients " +
                       std::to_string(d.succeeded) + "/" + std::to_string(d.sampled) + " ok";
    if (d.failed) line += ", " + std::to_string(d.failed) + " failed";
    line += " | " + Fixed(d.round_s, 1) + " s | " + EnergyText(t.compute_j + t.comm_j) + " " +
            (t.measured() ? "measured" : "modelled") + ", " + Fixed(t.co2e_g, 3) + " g CO2e | " +
            Human(static_cast<double>(round_bytes_sent + round_bytes_received));
    if (d.fed_accuracy) line += " | fed-acc " + Fixed(*d.fed_accuracy, 4);
    log->Progress(line);
    round_bytes_sent = round_bytes_received = 0;
    WriteSummary("in progress");
  }

  void WriteSummary(const std::string& reason) {
    SummaryInfo info;
    info.kind = "federated";
    info.target_accuracy = options.round.target_accuracy;
    info.reached = round_reached.has_value();
    info.round_reached = round_reached;
    info.rounds = rounds_done;
    info.final_accuracy = last_accuracy;
    info.best_accuracy = best_accuracy;
    info.wall_s = env->NowSeconds() - start_s;
    info.bytes_sent = total_bytes_sent;
    info.bytes_received = total_bytes_received;
    info.stop_reason = reason;
    if (auto digest = Sha256Hex(machine.global()); digest.ok()) info.model_sha256 = *digest;
    Status s = run_dir->WriteSummary(info, *carbon, options.reference_countries);
    if (!s.ok()) log->Error(s.ToString());
  }

  void OnMessage(const std::string& peer, const std::string& identity, const Frames& frames, double now) {
    auto decoded = Decode(frames, options.max_message_bytes);
    const bool known = machine.ClientByPeer(peer).has_value();
    if (!decoded.ok()) {
      const ErrorCode code = DecodeErrorCode(decoded.status());
      const std::string text = "rejected message from " + PeerName(peer) + ": " + ErrorCodeName(code) + ": " +
                               decoded.status().message();
      if (known) {
        log->Warn(text);
      } else {
        WarnStranger(text);
      }
      SendError(peer, code, decoded.status().message());
      if (known) FailPending(peer, std::string(ErrorCodeName(code)) + ": " + decoded.status().message(), now);
      return;
    }
    Message& m = *decoded;
    if (auto* join = std::get_if<JoinMsg>(&m)) {
      Status ok = CheckJoin(*join);
      if (!ok.ok()) {
        WarnStranger("rejected join from " + join->client_id + ": " + ok.message());
        SendError(peer, ErrorCode::kBadIdentifier, ok.message());
        return;
      }
      peer_ledgers.try_emplace(peer);
      Execute(machine.Handle(JoinEvent{peer, std::move(*join), identity}, now));
      if (!machine.ClientByPeer(peer)) peer_ledgers.erase(peer);
      return;
    }
    if (auto* hb = std::get_if<HeartbeatMsg>(&m)) {
      if (!known && !awaiting_final.count(peer)) {
        SendError(peer, ErrorCode::kNotJoined, "unknown client: join first");
        return;
      }
      BookEnergy(peer, hb->energy);
      awaiting_final.erase(peer);
      if (!stopped) {
        Execute(machine.Handle(HeartbeatEvent{peer}, now));
        Send(peer, HeartbeatMsg{machine.round(), {}});
      }
      return;
    }
    if (!known) {
      WarnStranger("message " + std::string(MsgTypeName(TypeOf(m))) + " from a peer that has not joined");
      SendError(peer, ErrorCode::kNotJoined, "unknown client: join first");
      return;
    }
    if (auto* res = std::get_if<FitResMsg>(&m)) {
      BookEnergy(peer, res->energy);
      Execute(machine.Handle(FitResEvent{peer, std::move(*res)}, now));
    } else if (auto* ev = std::get_if<EvaluateResMsg>(&m)) {
      BookEnergy(peer, ev->energy);
      Execute(machine.Handle(EvaluateResEvent{peer, std::move(*ev)}, now));
    } else if (auto* err = std::get_if<ErrorMsg>(&m)) {
      const std::string what = std::string(ErrorCodeName(err->code)) + " (round " + std::to_string(err->round) +
                               "): " + EscapeForLog(err->message);
      log->Warn(PeerName(peer) + " reported " + what);
      // A sampled client that cannot train is a failure now, not at the deadline.
      Execute(machine.Handle(FitFailedEvent{peer, what}, now));
    } else {
      log->Warn("unexpected " + std::string(MsgTypeName(TypeOf(m))) + " from " + PeerName(peer));
      SendError(peer, ErrorCode::kUnexpected, std::string("a coordinator does not accept ") + MsgTypeName(TypeOf(m)));
    }
  }

  std::string PeerName(const std::string& peer) const {
    auto c = machine.ClientByPeer(peer);
    if (c) return "client-" + std::to_string(c->index);
    return "an unjoined peer";
  }

  // Receives everything queued, waiting up to timeout_ms for the first message.
  // Returns false when the stop fd fired.
  bool Poll(long timeout_ms) {
    std::vector<zmq::pollitem_t> items = {{static_cast<void*>(socket), 0, ZMQ_POLLIN, 0}};
    if (options.stop_fd >= 0) items.push_back({nullptr, options.stop_fd, ZMQ_POLLIN, 0});
    try {
      zmq::poll(items.data(), items.size(), std::chrono::milliseconds(timeout_ms));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) return true;
      log->Error(std::string("poll failed: ") + e.what());
      return false;
    }
    if (items.size() > 1 && (items[1].revents & ZMQ_POLLIN)) {
      signalfd_siginfo info{};
      if (::read(options.stop_fd, &info, sizeof(info)) < 0) { /* the request stands either way */ }
      return false;
    }
    if (!(items[0].revents & ZMQ_POLLIN)) return true;
    for (int budget = 0; budget < 1000; ++budget) {
      std::vector<zmq::message_t> parts;
      zmq::recv_result_t got;
      try {
        got = zmq::recv_multipart(socket, std::back_inserter(parts), zmq::recv_flags::dontwait);
      } catch (const zmq::error_t& e) {
        log->Warn(std::string("receive failed: ") + e.what());
        break;
      }
      if (!got) break;
      if (parts.size() < 2) continue;  // a ROUTER always prefixes the routing id
      const std::string peer = parts[0].to_string();
      Frames frames;
      frames.reserve(parts.size() - 1);
      uint64_t n = 0;
      for (size_t i = 1; i < parts.size(); ++i) {
        const auto* p = static_cast<const uint8_t*>(parts[i].data());
        frames.emplace_back(p, p + parts[i].size());
        n += parts[i].size();
      }
      round_bytes_received += n;
      total_bytes_received += n;
      if (auto it = peer_ledgers.find(peer); it != peer_ledgers.end()) it->second.observed_received += n;
      OnMessage(peer, /*identity=*/"", frames, env->NowSeconds());
    }
    return true;
  }
};

Server::Server(ServerOptions options, Task* eval_task, Parameters initial, const CarbonTable* carbon,
               PhaseMeter* meter, RunDir* run_dir, Env* env, Logger* log)
    : impl_(std::make_unique<Impl>(std::move(options), eval_task, std::move(initial), carbon, meter, run_dir, env,
                                   log)) {}

Server::~Server() = default;

StatusOr<std::string> Server::Bind() {
  Impl& s = *impl_;
  try {
    s.socket.set(zmq::sockopt::linger, 0);
    s.socket.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(s.options.max_message_bytes));
    s.socket.bind(s.options.bind);
    s.bound = true;
    return s.socket.get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    return Unavailable("cannot bind " + s.options.bind + ": " + e.what());
  }
}

StatusOr<ServerResult> Server::Run() {
  Impl& s = *impl_;
  if (!s.bound) return FailedPrecondition("Server::Run called before Bind");
  GREENFED_RETURN_IF_ERROR(ValidateRoundOptions(s.options.round));
  auto self_ci = s.carbon->Lookup(s.options.country);
  if (!self_ci.ok()) return self_ci.status();
  GREENFED_RETURN_IF_ERROR(ValidatePue(s.options.pue));
  s.self = NodeInfo{"coordinator", "coordinator", self_ci->code, s.options.pue, self_ci->g_per_kwh};
  s.start_s = s.env->NowSeconds();
  s.mark = s.meter->Begin();
  s.Execute(s.machine.Start(s.start_s, s.initial));

  const auto tick_ms = static_cast<long>(s.options.tick_s * 1000);
  while (!s.stopped) {
    if (!s.Poll(tick_ms)) {
      s.log->Warn("stop requested; shutting the federation down");
      s.Execute(s.machine.RequestStop("interrupted by signal"));
      break;
    }
    s.Execute(s.machine.Handle(TickEvent{}, s.env->NowSeconds()));
  }
  // Collect the clients' last energy reports, then close the books.
  const double grace_end = s.env->NowSeconds() + s.options.shutdown_grace_s;
  while (!s.awaiting_final.empty() && s.env->NowSeconds() < grace_end) {
    if (!s.Poll(50)) break;
  }
  if (!s.awaiting_final.empty()) {
    s.log->Warn(std::to_string(s.awaiting_final.size()) + " client(s) sent no final energy report");
  }
  s.BookSelf(Phase::kIdle, std::max<int64_t>(s.rounds_done, 1));
  Status flushed = s.run_dir->Flush();
  if (!flushed.ok()) s.log->Error(flushed.ToString());
  const StopAction stop = s.stopped.value_or(StopAction{"stopped", false, true});
  s.WriteSummary(stop.reason);
  const EnergyTotals t = s.run_dir->Totals();
  s.log->Progress("done: " + stop.reason + " | " + std::to_string(s.rounds_done) + " rounds, best acc " +
                  Fixed(s.best_accuracy, 4) + " | " + Fixed(s.env->NowSeconds() - s.start_s, 1) + " s | " +
                  EnergyText(t.compute_pue_j + t.comm_j) + " " + (t.measured() ? "measured" : "modelled") + ", " +
                  Fixed(t.co2e_g, 3) + " g CO2e | " +
                  Human(static_cast<double>(s.total_bytes_sent + s.total_bytes_received)));
  ServerResult r;
  r.reached = stop.reached;
  r.failed = stop.failed;
  r.rounds = s.rounds_done;
  r.final_accuracy = s.last_accuracy;
  r.stop_reason = stop.reason;
  return r;
}

}  // namespace greenfed
