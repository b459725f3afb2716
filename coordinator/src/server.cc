#include "greenfed/coordinator/server.h"

#include "greenfed/coordinator/peer_guard.h"
#include "greenfed/digest.h"
#include "greenfed/keys.h"
#include "greenfed/transport.h"
#include "energy_intake.h"
#include "zmq_server_transport.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <chrono>
#include <deque>
#include <future>
#include <new>
#include <iomanip>
#include <sstream>

namespace greenfed {

namespace {

// The UTC hour now, for the sampling policy's intensity trace (RoundMachine::NoteUtcHour).
int UtcHourNow() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  return gmtime_r(&t, &tm) ? tm.tm_hour : -1;
}

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

// The budget's view of ledger totals: what summary.json reports as co2e_g and total_wh.
BudgetSpend SpendOf(const EnergyTotals& t) {
  BudgetSpend spend;
  spend.co2e_g = t.co2e_g;
  spend.wh = (t.compute_pue_j + t.comm_j) / 3600.0;
  return spend;
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

  std::unique_ptr<ServerTransport> transport;
  bool bound = false;
  PeerByteBudget budget;
  RoutingIdBinding routing_ids;  // a routing id belongs to the first key seen with it
  std::set<ReceiveOutcome> logged_outcomes;  // each kind of refusal is logged once in full
  uint64_t refused_messages = 0, peak_copied_message_bytes = 0;

  double start_s = 0;
  uint64_t round_bytes_sent = 0, round_bytes_received = 0;
  uint64_t total_bytes_sent = 0, total_bytes_received = 0;
  PhaseMeter::Mark mark;
  NodeInfo self;
  double best_accuracy = 0, last_accuracy = 0;
  int64_t rounds_done = 0;
  std::optional<int64_t> round_reached;
  std::optional<StopAction> stopped;
  // The overlapped central evaluation in flight (StartEvaluation), and its round's bytes.
  std::future<StatusOr<EvalResult>> evaluation;
  uint64_t evaluation_round = 0;
  std::optional<std::pair<uint64_t, uint64_t>> closed_round_bytes;
  std::set<std::string> awaiting_final;          // peers sent Shutdown, final report not yet in
  // Peers' energy reports: plausibility bounds per peer and the booking (energy_intake.h).
  EnergyIntake energy;
  // Warnings about peers that have not joined are rate-limited: a stranger must
  // not be able to fill the log.
  double warn_window_start_s = 0;
  uint32_t warn_window_count = 0;
  uint64_t warn_suppressed = 0;

  Impl(ServerOptions o, std::unique_ptr<ServerTransport> tr, Task* t, Parameters init, const CarbonTable* c,
       PhaseMeter* m, RunDir* r, Env* e, Logger* l)
      : options(std::move(o)), task(t), carbon(c), meter(m), run_dir(r), env(e), log(l), machine(options.round),
        initial(std::move(init)), transport(std::move(tr)), budget(BudgetOptions(options)),
        energy(options.max_node_power_w, options.accept_apportioned_energy, c, r) {
    if (!transport) {
      ZmqServerTransportOptions z;
      z.bind = options.bind;
      z.max_message_bytes = options.max_message_bytes;
      z.curve_secret_key = options.curve_secret_key;
      z.allowed_client_keys = options.allowed_client_keys;
      z.insecure = options.insecure;
      z.receive_hwm_messages = options.receive_hwm_messages;
      z.stop_fd = options.stop_fd;
      transport = NewZmqServerTransport(std::move(z), log);
    }
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  static PeerBudgetOptions BudgetOptions(const ServerOptions& o) {
    PeerBudgetOptions b;
    const uint64_t four = o.max_message_bytes > UINT64_MAX / 4 ? UINT64_MAX : 4 * o.max_message_bytes;
    b.bytes_per_window = o.peer_bytes_per_window ? o.peer_bytes_per_window : four;
    b.window_s = o.peer_window_s;
    return b;
  }

  void SendFrames(const std::string& peer, const Frames& frames) {
    if (Status sent = transport->Send(peer, frames); !sent.ok()) {
      log->Warn(sent.message());
      return;
    }
    const uint64_t n = FramesBytes(frames);
    round_bytes_sent += n;
    total_bytes_sent += n;
    energy.ObserveSent(peer, n);
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

  // Books a peer's energy report through the intake (energy_intake.h): rejected records
  // are logged and answered with a kBadEnergy Error naming the reason; the rest are kept.
  void BookEnergy(const std::string& peer, const std::vector<EnergyRecord>& records) {
    const auto c = machine.ClientByPeer(peer);
    const EnergyIntake::Outcome o =
        energy.Book(peer, c ? &*c : nullptr, records, env->NowSeconds() - start_s,
                    static_cast<int64_t>(machine.round()));
    if (o.stranger) {
      WarnStranger("energy report from an unjoined peer ignored (" + std::to_string(records.size()) + " records)");
      return;
    }
    if (!o.node_error.ok()) {
      log->Warn(o.node_error.ToString());
      return;
    }
    if (o.rejected > 0) {
      log->Warn("rejected " + std::to_string(o.rejected) + " of " + std::to_string(records.size()) +
                " energy record(s) from " + PeerName(peer) + ": " + o.first_reason);
      SendError(peer, ErrorCode::kBadEnergy,
                "rejected " + std::to_string(o.rejected) + " energy record(s): " + o.first_reason);
    }
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
        if (std::holds_alternative<ShutdownMsg>(send->message)) awaiting_final.insert(send->peer);
        // Fit and Evaluate carry the global model: encoded from the machine's one
        // copy into each message's frames, never copied into the message first. A
        // downlink codec's Fit carries the round's encoded model instead (its bytes).
        auto* fit = std::get_if<FitMsg>(&send->message);
        const EncodedParams* down = fit != nullptr ? machine.downlink() : nullptr;
        if (down != nullptr) fit->encoded = *down;
        const bool carries_global = (fit != nullptr && down == nullptr) ||
                                    std::holds_alternative<EvaluateMsg>(send->message);
        SendFrames(send->peer, EncodeWithParameters(send->message, carries_global ? &machine.global() : nullptr));
      } else if (auto* eval = std::get_if<EvaluateGlobalAction>(&a)) {
        BookSelf(Phase::kAggregate, static_cast<int64_t>(eval->round));
        if (eval->overlapped && StartEvaluation(eval->round)) continue;  // answered by CollectEvaluation
        more = EvaluationDone(eval->round, task->Evaluate(machine.global()));
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

  // Overlapped central evaluation (round_machine.h): Evaluate runs on its own thread while the
  // loop serves the next round; the machine keeps global() unchanged until the answer is handed
  // over. False when the thread could not start (then the caller evaluates in line).
  bool StartEvaluation(uint64_t round) {
    // The round's own bytes end here: the next round's Fit messages follow at once.
    closed_round_bytes = std::make_pair(round_bytes_sent, round_bytes_received);
    round_bytes_sent = round_bytes_received = 0;
    try {
      evaluation = std::async(std::launch::async, [this] { return task->Evaluate(machine.global()); });
    } catch (const std::exception& e) {  // std::system_error: no thread
      log->Warn(std::string("central evaluation in line: no thread for it (") + e.what() + ")");
      return false;
    }
    evaluation_round = round;
    return true;
  }

  // Hands a finished overlapped evaluation to the machine. `wait`: block until it finishes.
  void CollectEvaluation(bool wait) {
    if (!evaluation.valid()) return;
    if (!wait && evaluation.wait_for(std::chrono::seconds(0)) != std::future_status::ready) return;
    StatusOr<EvalResult> result = evaluation.get();
    Execute(EvaluationDone(evaluation_round, std::move(result)));
  }

  std::vector<Action> EvaluationDone(uint64_t round, StatusOr<EvalResult> result) {
    BookSelf(Phase::kEvaluate, static_cast<int64_t>(round));
    if (!result.ok()) return machine.Handle(CentralEvalFailedEvent{round, result.status().ToString()}, env->NowSeconds());
    // The ledger as it stands after this round's evaluation, for the budget (budget.h).
    machine.NoteSpend(round, SpendOf(run_dir->Totals()), SpendOf(run_dir->RoundTotals(static_cast<int64_t>(round))));
    return machine.Handle(CentralEvalEvent{round, result->accuracy, result->loss}, env->NowSeconds());
  }

  void OnRoundDone(const RoundDoneAction& d) {
    const auto round = static_cast<int64_t>(d.round);
    // The coordinator's own transfers this round.
    EnergyRecord comm;
    comm.phase = Phase::kComm;
    comm.round = round;
    // An overlapped round's bytes were closed when its evaluation started (StartEvaluation).
    const bool closed = closed_round_bytes.has_value();
    const uint64_t sent = closed ? closed_round_bytes->first : round_bytes_sent;
    const uint64_t received = closed ? closed_round_bytes->second : round_bytes_received;
    closed_round_bytes.reset();
    comm.bytes_sent = sent;
    comm.bytes_received = received;
    comm.energy_j = CommEnergyJ(options.comm, sent, received);
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
    row.bytes_sent = sent;
    row.bytes_received = received;
    row.fed_accuracy = d.fed_accuracy;
    run_dir->AddRound(row);
    Status s = run_dir->Flush();
    if (!s.ok()) log->Error(s.ToString());

    rounds_done = round;
    last_accuracy = d.accuracy;
    best_accuracy = std::max(best_accuracy, d.accuracy);
    if (!round_reached && d.accuracy >= options.round.target_accuracy) round_reached = round;
    const bool checkpointed = options.write_checkpoints && SaveCheckpoint();

    // Energy booked so far for this round (clients' idle time may still arrive).
    const EnergyTotals t = run_dir->RoundTotals(round);
    std::string line = "round " + std::to_string(round) + "/" + std::to_string(options.round.max_rounds) +
                       " | acc " + Fixed(d.accuracy, 4) + " loss " + Fixed(d.loss, 4) + " | clients " +
                       std::to_string(d.succeeded) + "/" + std::to_string(d.sampled) + " ok";
    if (d.failed) line += ", " + std::to_string(d.failed) + " failed";
    line += " | " + Fixed(d.round_s, 1) + " s | " + EnergyText(t.compute_j + t.comm_j) + " " +
            t.label() + ", " + Fixed(t.co2e_g, 3) + " g CO2e | " +
            Human(static_cast<double>(sent + received));
    if (d.fed_accuracy) line += " | fed-acc " + Fixed(*d.fed_accuracy, 4);
    log->Progress(line);
    if (!closed) round_bytes_sent = round_bytes_received = 0;
    // Tell every client at once that what it reported is now in a checkpoint: a
    // client re-reports energy sent since the coordinator last spoke to it when a
    // restarted coordinator does not know it (docs/run-directory.md, --resume).
    if (checkpointed) {
      for (const auto& [peer, c] : machine.clients()) Send(peer, HeartbeatMsg{machine.round(), {}});
    }
    WriteSummary("in progress");
  }

  // RUN_DIR/checkpoint.bin: what --resume needs to continue after this round.
  // False (logged) when it could not be written.
  bool SaveCheckpoint() {
    Checkpoint c;
    c.identity = options.identity.run_id.empty() ? RunIdentityFor(options.round) : options.identity;
    c.machine = machine.Snapshot();
    c.server.best_accuracy = best_accuracy;
    c.server.last_accuracy = last_accuracy;
    c.server.round_reached = round_reached;
    c.server.total_bytes_sent = total_bytes_sent;
    c.server.total_bytes_received = total_bytes_received;
    c.server.elapsed_s = env->NowSeconds() - start_s;
    c.ledger = run_dir->Ledger();
    Status s = WriteCheckpoint(run_dir->path(), c);
    if (!s.ok()) log->Error("checkpoint not written: " + s.ToString());
    return s.ok();
  }

  // Server-level state of a resumed run, from its checkpoint.
  void RestoreFrom(const Checkpoint& c, double now) {
    start_s = now - c.server.elapsed_s;
    best_accuracy = c.server.best_accuracy;
    last_accuracy = c.server.last_accuracy;
    round_reached = c.server.round_reached;
    rounds_done = static_cast<int64_t>(c.machine.completed_rounds);
    total_bytes_sent = c.server.total_bytes_sent;
    total_bytes_received = c.server.total_bytes_received;
  }

  void WriteSummary(const std::string& reason) {
    SummaryInfo info;
    info.kind = run_kind::kFederated;
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
      energy.Track(peer);
      Execute(machine.Handle(JoinEvent{peer, std::move(*join), identity}, now));
      if (!machine.ClientByPeer(peer)) energy.Forget(peer);
      return;
    }
    if (auto* hb = std::get_if<HeartbeatMsg>(&m)) {
      if (!known && !awaiting_final.count(peer)) {
        SendError(peer, ErrorCode::kNotJoined, "unknown client: join first");
        return;
      }
      BookEnergy(peer, hb->energy);
      // The final report is the heartbeat with energy: a periodic one (empty) that
      // was on its way when Shutdown went out must not end the wait for it, or the
      // last round's bytes and idle joules are lost.
      if (!hb->energy.empty()) awaiting_final.erase(peer);
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

  static std::string BudgetKey(const std::string& routing_id, const std::string& user_id) {
    return user_id.empty() ? "id:" + routing_id : "key:" + user_id;
  }

  ReceiveLimits Limits() {
    ReceiveLimits l;
    l.max_message_bytes = options.max_message_bytes;
    l.routing_id = true;
    l.peer_limit = [this](const std::string& routing_id, const std::string& user_id) {
      return budget.Remaining(BudgetKey(routing_id, user_id), env->NowSeconds());
    };
    return l;
  }

  // A message drained unread: answered (the sender learns why), logged in full once
  // per kind of refusal, counted always.
  void RefuseReceived(const ReceivedMessage& r) {
    ++refused_messages;
    std::string text;
    if (r.outcome == ReceiveOutcome::kTooLarge) {
      text = "message of " + std::to_string(r.wire_bytes) + " bytes in " + std::to_string(r.num_frames) +
             " frames is over the limit of " + std::to_string(options.max_message_bytes) + " bytes";
    } else if (r.outcome == ReceiveOutcome::kOverBudget) {
      text = "over this peer's budget of " + std::to_string(budget.options().bytes_per_window) + " bytes per " +
             Fixed(budget.options().window_s, 0) + " s (" + std::to_string(r.wire_bytes) + " bytes refused)";
    } else {
      text = "out of memory receiving a message of " + std::to_string(r.wire_bytes) + " bytes";
    }
    if (logged_outcomes.insert(r.outcome).second) {
      log->Warn("refused a message from " + PeerName(r.routing_id) + " (" + ReceiveOutcomeName(r.outcome) +
                "), discarded unread: " + text + "; further refusals of this kind are counted, not logged");
    }
    SendError(r.routing_id, r.outcome == ReceiveOutcome::kNoMemory ? ErrorCode::kInternal : ErrorCode::kTooLarge, text);
  }

  // False (and answered) when the routing id was bound to another identity.
  bool BindIdentity(const std::string& peer, const std::string& identity) {
    std::string owner;
    switch (routing_ids.Bind(peer, identity, &owner)) {
      case BindResult::kBound:
        return true;
      case BindResult::kFull:
        SendError(peer, ErrorCode::kBusy, "too many connections; try again later");
        return false;
      case BindResult::kOtherIdentity:
        break;
    }
    WarnStranger("refused a message: routing id of " + PeerName(peer) + " is bound to key " +
                 KeyPrefix(owner.substr(6)) + ", this connection has key " + KeyPrefix(identity.substr(6)));
    SendError(peer, ErrorCode::kIdentityInUse, "this routing id belongs to another client key");
    return false;
  }

  // Receives everything queued (for at most one tick, so timers are not starved),
  // waiting up to timeout_s for the first message. Returns false when the stop fd fired.
  bool Poll(double timeout_s) {
    return transport->Poll(timeout_s, options.tick_s, Limits(), [this](ReceivedMessage& r) { OnReceived(r); });
  }

  void OnReceived(ReceivedMessage& r) {
    const double now = env->NowSeconds();
    const std::string identity = r.user_id.empty() ? std::string() : "curve:" + r.user_id;
    budget.Charge(BudgetKey(r.routing_id, r.user_id), r.wire_bytes, now);
    round_bytes_received += r.wire_bytes;
    total_bytes_received += r.wire_bytes;
    energy.ObserveReceived(r.routing_id, r.wire_bytes);
    peak_copied_message_bytes = std::max(peak_copied_message_bytes, r.peak_copied_bytes);
    if (r.outcome != ReceiveOutcome::kMessage) {
      RefuseReceived(r);
      return;
    }
    if (!BindIdentity(r.routing_id, identity)) return;
    try {
      OnMessage(r.routing_id, identity, r.frames, now);
    } catch (const std::bad_alloc&) {
      log->Error("out of memory while handling a message from " + PeerName(r.routing_id) + "; it was dropped");
      SendError(r.routing_id, ErrorCode::kInternal, "out of memory while handling this message");
    }
  }
};

Server::Server(ServerOptions options, Task* eval_task, Parameters initial, const CarbonTable* carbon,
               PhaseMeter* meter, RunDir* run_dir, Env* env, Logger* log)
    : Server(std::move(options), nullptr, eval_task, std::move(initial), carbon, meter, run_dir, env, log) {}

Server::Server(ServerOptions options, std::unique_ptr<ServerTransport> transport, Task* eval_task, Parameters initial,
               const CarbonTable* carbon, PhaseMeter* meter, RunDir* run_dir, Env* env, Logger* log)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(transport), eval_task, std::move(initial), carbon,
                                   meter, run_dir, env, log)) {}

Server::~Server() = default;

StatusOr<std::string> Server::Bind() {
  GREENFED_ASSIGN_OR_RETURN(std::string endpoint, impl_->transport->Bind());
  impl_->bound = true;
  return endpoint;
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
  s.machine.NoteUtcHour(UtcHourNow());
  if (s.options.resume) {
    Checkpoint resume = std::move(*s.options.resume);
    s.options.resume.reset();
    const double now = s.start_s;
    s.RestoreFrom(resume, now);
    s.log->Info("resuming " + resume.identity.run_id + " after round " +
                std::to_string(resume.machine.completed_rounds) + " (" + Fixed(resume.server.elapsed_s, 1) +
                " s so far)");
    s.Execute(s.machine.Resume(now, std::move(resume.machine)));
  } else {
    s.Execute(s.machine.Start(s.start_s, s.initial));
  }

  // While an overlapped evaluation runs the loop looks for its answer every 5 ms.
  constexpr double kEvaluationPollS = 0.005;
  while (!s.stopped) {
    s.machine.NoteUtcHour(UtcHourNow());  // rounds start inside the events handled below
    if (!s.Poll(s.evaluation.valid() ? std::min(kEvaluationPollS, s.options.tick_s) : s.options.tick_s)) {
      s.log->Warn("stop requested; shutting the federation down");
      s.Execute(s.machine.RequestStop("interrupted by signal"));
      break;
    }
    s.CollectEvaluation(/*wait=*/false);
    if (s.stopped) break;
    s.Execute(s.machine.Handle(TickEvent{}, s.env->NowSeconds()));
  }
  // An evaluation still running (a signal or a stop arrived meanwhile) reads the machine's
  // model: wait for it, without handing its answer over.
  if (s.evaluation.valid()) s.evaluation.wait();
  // Collect the clients' last energy reports, then close the books.
  const double grace_end = s.env->NowSeconds() + s.options.shutdown_grace_s;
  while (!s.awaiting_final.empty() && s.env->NowSeconds() < grace_end) {
    if (!s.Poll(0.05)) break;
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
                  EnergyText(t.compute_pue_j + t.comm_j) + " " + t.label() + ", " +
                  Fixed(t.co2e_g, 3) + " g CO2e | " +
                  Human(static_cast<double>(s.total_bytes_sent + s.total_bytes_received)));
  ServerResult r;
  r.reached = stop.reached;
  r.failed = stop.failed;
  r.rounds = s.rounds_done;
  r.final_accuracy = s.last_accuracy;
  r.stop_reason = stop.reason;
  r.refused_messages = s.refused_messages;
  r.peak_copied_message_bytes = s.peak_copied_message_bytes;
  r.refused_handshakes = s.transport->refused_handshakes();
  if (s.refused_messages) {
    s.log->Warn(std::to_string(s.refused_messages) + " message(s) refused unread (too large or over budget)");
  }
  return r;
}

}  // namespace greenfed
