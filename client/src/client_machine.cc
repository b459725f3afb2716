#include "greenfed/client/client_machine.h"

#include <algorithm>
#include <cstring>
#include <iterator>

#include "greenfed/client/update_encoding.h"
#include "greenfed/log.h"

namespace greenfed {

namespace {

// w_local - w_global for float32 tensors; other dtypes are sent as they are.
Parameters Delta(const Parameters& local, const Parameters& global) {
  Parameters out = local;
  for (size_t t = 0; t < out.size() && t < global.size(); ++t) {
    if (out[t].dtype != DType::kFloat32 || out[t].data.size() != global[t].data.size()) continue;
    const size_t n = out[t].data.size() / 4;
    for (size_t i = 0; i < n; ++i) {
      float a, b;
      std::memcpy(&a, local[t].data.data() + i * 4, 4);
      std::memcpy(&b, global[t].data.data() + i * 4, 4);
      const float d = a - b;
      std::memcpy(out[t].data.data() + i * 4, &d, 4);
    }
  }
  return out;
}

// w_global + scale * (w_local - w_global) for float32 tensors: the attack of
// ClientOptions::attack_scale.
Parameters ScaleUpdate(const Parameters& local, const Parameters& global, double scale) {
  Parameters out = Delta(local, global);
  for (size_t t = 0; t < out.size() && t < global.size(); ++t) {
    if (out[t].dtype != DType::kFloat32 || out[t].data.size() != global[t].data.size()) continue;
    const size_t n = out[t].data.size() / 4;
    for (size_t i = 0; i < n; ++i) {
      float d, g;
      std::memcpy(&d, out[t].data.data() + i * 4, 4);
      std::memcpy(&g, global[t].data.data() + i * 4, 4);
      const float w = g + static_cast<float>(scale) * d;
      std::memcpy(out[t].data.data() + i * 4, &w, 4);
    }
  }
  return out;
}

// Capabilities every client announces besides its task's: delta, evaluate, meter
// and the three codec families (CodecCapabilities()).
constexpr size_t kFixedCapabilities = 6;

// The fit of RunFitWork, metered as a whole: downlink decode, Task::Fit, attack,
// delta, uplink encode.
Status FitAndEncode(Task& task, bool send_delta, const UpdateCodec& uplink, StartFitAction* a, WorkDoneEvent* r) {
  FitRequest& req = a->request;
  GREENFED_ASSIGN_OR_RETURN(req.parameters, DecodeFitParameters(std::move(req.parameters), a->downlink, req.config));
  if (!uplink.Lossless() && !send_delta) {
    return FailedPrecondition("uplink codec '" + uplink.Name() +
                              "' carries deltas, but the Fit asks for weights (send_delta false)");
  }
  GREENFED_ASSIGN_OR_RETURN(r->fit, task.Fit(req, a->state));
  if (a->attack_scale != 1.0) r->fit.parameters = ScaleUpdate(r->fit.parameters, req.parameters, a->attack_scale);
  if (send_delta) {
    r->fit.parameters = Delta(r->fit.parameters, req.parameters);
    r->is_delta = true;
  }
  if (!uplink.Lossless()) {
    GREENFED_ASSIGN_OR_RETURN(EncodedUpdate enc, EncodeUpdate(uplink, r->fit.parameters, &a->state));
    r->encoded = std::move(enc.encoded);
    r->fit.parameters.clear();
  }
  return Status::Ok();
}

}  // namespace

ClientMachine::ClientMachine(ClientOptions options, std::vector<std::string> task_capabilities,
                             uint64_t own_data_examples)
    : options_(std::move(options)), task_capabilities_(std::move(task_capabilities)) {
  if (OwnData()) {
    prepared_ = true;
    num_train_examples_ = own_data_examples;
  }
}

void ClientMachine::Log(bool warning, std::string text, std::vector<ClientAction>* out) const {
  out->push_back(ClientLogAction{warning, std::move(text)});
}

std::vector<ClientAction> ClientMachine::Start(double now_s) {
  std::vector<ClientAction> out;
  if (phase_ != Stage::kIdle) return out;
  Log(false, "client state: empty (a new client process keeps nothing from an earlier one)", &out);
  BeginJoin(now_s, &out);
  return out;
}

void ClientMachine::BeginJoin(double now, std::vector<ClientAction>* out) {
  phase_ = Stage::kJoining;
  join_started_s_ = now;
  backoff_s_ = options_.initial_backoff_s;
  join_wait_until_s_ = now + backoff_s_;
  out->push_back(ConnectAction{});
  SendJoin(out);
}

void ClientMachine::SendJoin(std::vector<ClientAction>* out) {
  JoinMsg j;
  j.client_id = options_.client_id;
  j.requested_index = welcome_ ? static_cast<int32_t>(welcome_->client_index) : options_.requested_index;
  j.num_examples = prepared_ ? num_train_examples_ : 0;
  j.capabilities = {"delta", "evaluate", "meter"};
  for (const std::string& cap : CodecCapabilities()) j.capabilities.push_back(cap);
  for (const std::string& cap : task_capabilities_) j.capabilities.push_back(cap);
  j.country = options_.country;
  j.pue = options_.pue;
  out->push_back(ClientSendAction{std::move(j), true});
}

std::vector<ClientAction> ClientMachine::Handle(ClientEvent event, double now_s) {
  std::vector<ClientAction> out;
  if (phase_ == Stage::kDone || phase_ == Stage::kIdle) return out;
  if (auto* m = std::get_if<ClientMessageEvent>(&event)) {
    OnMessage(*m, now_s, &out);
  } else if (auto* r = std::get_if<ClientRefusedEvent>(&event)) {
    unreported_bytes_[LastRound()].second += r->wire_bytes;
  } else if (auto* w = std::get_if<WorkDoneEvent>(&event)) {
    OnWorkDone(*w, &out);
  } else if (std::holds_alternative<ClientTickEvent>(event)) {
    OnTick(now_s, &out);
  } else if (auto* s = std::get_if<ClientStopEvent>(&event)) {
    Done(&out, FinishAction{s->reason});
  }
  return out;
}

void ClientMachine::Done(std::vector<ClientAction>* out, ClientAction last) {
  phase_ = Stage::kDone;
  out->push_back(std::move(last));
}

uint64_t ClientMachine::RoundOf(const Message& m) const {
  uint64_t r = last_round_;
  if (auto* f = std::get_if<FitMsg>(&m)) r = f->round;
  if (auto* f = std::get_if<FitResMsg>(&m)) r = f->round;
  if (auto* e = std::get_if<EvaluateMsg>(&m)) r = e->round;
  if (auto* e = std::get_if<EvaluateResMsg>(&m)) r = e->round;
  return std::max<uint64_t>(r, 1);
}

void ClientMachine::Sent(const Message& m, uint64_t wire_bytes) {
  unreported_bytes_[RoundOf(m)].first += wire_bytes;
  const std::vector<EnergyRecord>* energy = nullptr;
  if (auto* f = std::get_if<FitResMsg>(&m)) energy = &f->energy;
  if (auto* e = std::get_if<EvaluateResMsg>(&m)) energy = &e->energy;
  if (auto* h = std::get_if<HeartbeatMsg>(&m)) energy = &h->energy;
  if (energy != nullptr) unconfirmed_.insert(unconfirmed_.end(), energy->begin(), energy->end());
}

void ClientMachine::AddEnergy(std::vector<EnergyRecord> records) {
  unreported_.insert(unreported_.end(), std::make_move_iterator(records.begin()),
                     std::make_move_iterator(records.end()));
}

std::vector<EnergyRecord> ClientMachine::TakeEnergy() {
  std::vector<EnergyRecord> out = std::move(unreported_);
  unreported_.clear();
  for (const auto& [round, bytes] : unreported_bytes_) {
    EnergyRecord comm;
    comm.phase = Phase::kComm;
    comm.round = static_cast<int64_t>(round);
    comm.bytes_sent = bytes.first;
    comm.bytes_received = bytes.second;
    comm.energy_j = CommEnergyJ(options_.comm, bytes.first, bytes.second);
    comm.source = EnergySource::kComm;
    comm.measured = false;
    out.push_back(comm);
  }
  unreported_bytes_.clear();
  return out;
}

void ClientMachine::OnMessage(ClientMessageEvent& e, double now, std::vector<ClientAction>* out) {
  Message& m = e.message;
  unreported_bytes_[RoundOf(m)].second += e.wire_bytes;
  last_heard_s_ = now;
  const auto* err = std::get_if<ErrorMsg>(&m);
  if (err != nullptr && err->code == ErrorCode::kNotJoined && !unconfirmed_.empty()) {
    Log(false, "the coordinator does not know this client: " + std::to_string(unconfirmed_.size()) +
                   " energy records it did not book will be reported again after rejoining", out);
    unreported_.insert(unreported_.end(), unconfirmed_.begin(), unconfirmed_.end());
  }
  unconfirmed_.clear();

  if (phase_ == Stage::kJoining) {
    if (auto* w = std::get_if<WelcomeMsg>(&m)) {
      OnWelcome(*w, now, out);
    } else if (err != nullptr) {
      join_started_s_ = now;  // an answer: the coordinator is there, so keep trying
      const std::string what = std::string(ErrorCodeName(err->code)) + ": " + EscapeForLog(err->message);
      switch (err->code) {
        case ErrorCode::kRunOver:
          Done(out, FinishAction{"the run is over"});
          return;
        case ErrorCode::kIndexOutOfRange:
        case ErrorCode::kIncompatible:
        case ErrorCode::kBadIdentifier:
        case ErrorCode::kVersionMismatch:
        case ErrorCode::kBadMessage:
          // Retrying cannot help: the same join would be refused again.
          Done(out, FailAction{InvalidArgument("coordinator refused to admit this client: " + what)});
          return;
        default:
          // Index taken, identity in use, federation full, excluded: the holder may
          // leave or the exclusion end, so retry with backoff.
          Log(true, "coordinator answered " + what, out);
      }
    }
    return;  // anything else before the Welcome is not for us yet
  }

  if (std::holds_alternative<FitMsg>(m) || std::holds_alternative<EvaluateMsg>(m)) {
    if (working_ || !prepared_) {
      if (!prepared_ && !queued_) {
        queued_ = std::move(m);
      } else {
        out->push_back(ClientSendAction{ErrorMsg{ErrorCode::kBusy, RoundOf(m), "busy with earlier work"}, false});
      }
    } else {
      StartWork(std::move(m), out);
    }
  } else if (auto* s = std::get_if<ShutdownMsg>(&m)) {
    Done(out, FinishAction{s->reason});
  } else if (err != nullptr) {
    Log(true, "coordinator: " + std::string(ErrorCodeName(err->code)) + " (round " + std::to_string(err->round) +
                  "): " + EscapeForLog(err->message), out);
    if (err->code == ErrorCode::kRunOver) {
      Done(out, FinishAction{"the run is over"});
    } else if (err->code == ErrorCode::kNotJoined || err->code == ErrorCode::kExcluded) {
      // Not (or no longer) joined, or excluded for a while: join again; the join
      // loop backs off while the coordinator refuses.
      BeginJoin(now, out);
    }
  }
}

Status ClientMachine::CheckWelcome(const WelcomeMsg& w) const {
  if (OwnData()) {
    if (w.partition.scheme != "none") {
      return InvalidArgument("this client trains on its own data (--data) but the coordinator partitions the data "
                             "set (--partition " + w.partition.scheme + "); start the coordinator with --partition none");
    }
    if (w.task != options_.own_data_task || w.model != options_.task.model) {
      return InvalidArgument("this client was started with --task " + options_.own_data_task + " --model " +
                             options_.task.model + " but the coordinator runs task " + w.task + ", model " + w.model);
    }
  }
  if (options_.expected_num_clients != 0 && w.partition.num_clients != options_.expected_num_clients) {
    return InvalidArgument("this client was started with --num-clients " +
                           std::to_string(options_.expected_num_clients) + " but the coordinator runs " +
                           std::to_string(w.partition.num_clients));
  }
  if (!options_.expected_partition.empty() && w.partition.scheme != options_.expected_partition) {
    return InvalidArgument("this client was started with --partition " + options_.expected_partition +
                           " but the coordinator uses " + w.partition.scheme);
  }
  return Status::Ok();
}

void ClientMachine::OnWelcome(const WelcomeMsg& w, double now, std::vector<ClientAction>* out) {
  Status ok = CheckWelcome(w);
  if (!ok.ok()) {
    Done(out, FailAction{std::move(ok)});
    return;
  }
  const bool same_shard = welcome_ && welcome_->client_index == w.client_index &&
                          welcome_->partition.scheme == w.partition.scheme &&
                          welcome_->partition.seed == w.partition.seed &&
                          welcome_->partition.num_clients == w.partition.num_clients &&
                          welcome_->partition.alpha == w.partition.alpha;
  if (!same_shard && !OwnData()) prepared_ = false;
  if (welcome_ && !same_shard && !OwnData()) {
    // The coordinator gave this client another shard: what the task kept for the
    // old one does not belong to the new one.
    ++state_generation_;
    Log(false, "client state dropped (" + std::to_string(state_.size()) + " groups): the coordinator assigned client-" +
                   std::to_string(w.client_index) + " instead of client-" + std::to_string(welcome_->client_index) +
                   " on rejoin", out);
    state_.clear();
  }
  welcome_ = w;
  Log(false, "joined " + options_.connect + " as client-" + std::to_string(w.client_index) + " of " +
                 std::to_string(w.partition.num_clients) + " (run " + w.run_id + ")", out);
  phase_ = Stage::kJoined;
  last_heard_s_ = last_heartbeat_s_ = now;
  if (!prepared_ && !working_) StartPrepare(out);
}

void ClientMachine::StartPrepare(std::vector<ClientAction>* out) {
  StartPrepareAction a;
  a.task = welcome_->task;
  a.options = options_.task;
  a.options.role = TaskRole::kClient;
  a.options.partition = welcome_->partition;
  a.options.client_index = welcome_->client_index;
  a.options.model = welcome_->model;
  working_ = true;
  out->push_back(std::move(a));
}

void ClientMachine::StartWork(Message m, std::vector<ClientAction>* out) {
  if (auto* fit = std::get_if<FitMsg>(&m)) {
    last_round_ = fit->round;
    StartFitAction a;
    a.round = fit->round;
    a.request.parameters = std::move(fit->parameters);
    a.downlink = std::move(fit->encoded);
    a.request.groups = std::move(fit->groups);
    a.request.config = std::move(fit->config);
    a.state = std::move(state_);
    state_.clear();
    a.state_generation = state_generation_;
    a.attack_scale = options_.attack_scale;
    working_ = true;
    out->push_back(std::move(a));
  } else if (auto* ev = std::get_if<EvaluateMsg>(&m)) {
    working_ = true;
    out->push_back(StartEvaluateAction{ev->round, std::move(ev->parameters)});
  }
}

void ClientMachine::OnWorkDone(WorkDoneEvent& r, std::vector<ClientAction>* out) {
  working_ = false;
  if (r.kind == WorkKind::kFit && r.state_generation == state_generation_) state_ = std::move(r.state);
  AddEnergy(std::move(r.energy));
  if (r.kind == WorkKind::kPrepare) {
    const uint32_t index = welcome_ ? welcome_->client_index : 0;
    if (!r.status.ok()) {
      out->push_back(ClientSendAction{ErrorMsg{ErrorCode::kFitFailed, 0, "cannot build its shard: " + r.status.message()},
                                      false});
      Done(out, FailAction{r.status.WithContext("client-" + std::to_string(index) + " cannot build its shard")});
      return;
    }
    prepared_ = true;
    num_train_examples_ = r.num_train_examples;
    Log(false, "client-" + std::to_string(index) + " ready: " + std::to_string(r.num_train_examples) +
                   " training examples (" + (welcome_ ? welcome_->partition.scheme : std::string()) + ")", out);
    if (queued_) {
      Message m = std::move(*queued_);
      queued_.reset();
      StartWork(std::move(m), out);
    }
    return;
  }
  if (!r.status.ok()) {
    Log(true, "round " + std::to_string(r.round) + " failed locally: " + r.status.ToString(), out);
    out->push_back(ClientSendAction{
        ErrorMsg{r.kind == WorkKind::kEvaluate ? ErrorCode::kEvalFailed : ErrorCode::kFitFailed, r.round,
                 r.status.ToString()},
        true});
  } else if (r.kind == WorkKind::kFit) {
    FitResMsg res;
    res.round = r.round;
    res.is_delta = r.is_delta;
    res.num_examples = r.fit.num_examples;
    res.train_loss = r.fit.train_loss;
    res.fit_s = r.wall_s;
    res.parameters = std::move(r.fit.parameters);
    res.encoded = std::move(r.encoded);
    res.groups = std::move(r.fit.groups);
    res.energy = TakeEnergy();
    ++rounds_trained_;
    Log(false, "round " + std::to_string(r.round) + ": trained on " + std::to_string(res.num_examples) +
                   " examples in " + std::to_string(r.wall_s) + " s, loss " + std::to_string(res.train_loss) +
                   (res.encoded.plain() ? std::string()
                                        : ", update " + res.encoded.codec + " " +
                                              std::to_string(res.encoded.bytes.size()) + " bytes"),
        out);
    out->push_back(ClientSendAction{std::move(res), true});
  } else {
    EvaluateResMsg res;
    res.round = r.round;
    res.loss = r.eval.loss;
    res.accuracy = r.eval.accuracy;
    res.num_examples = r.eval.num_examples;
    res.energy = TakeEnergy();
    out->push_back(ClientSendAction{std::move(res), true});
  }
  // A rejoin onto another shard while this work ran: build the new shard now.
  if (phase_ == Stage::kJoined && !prepared_ && !working_) StartPrepare(out);
}

void ClientMachine::OnTick(double now, std::vector<ClientAction>* out) {
  if (phase_ == Stage::kJoining) {
    if (now < join_wait_until_s_) return;
    if (options_.connect_timeout_s > 0 && now - join_started_s_ >= options_.connect_timeout_s) {
      Done(out, FailAction{Unavailable("no coordinator answered at " + options_.connect + " within " +
                                       std::to_string(static_cast<int>(options_.connect_timeout_s)) + " s")});
      return;
    }
    Log(false, "no answer from coordinator at " + options_.connect + "; retrying in " + std::to_string(backoff_s_) +
                   " s", out);
    backoff_s_ = std::min(backoff_s_ * 2, options_.max_backoff_s);
    join_wait_until_s_ = now + backoff_s_;
    out->push_back(ConnectAction{});
    SendJoin(out);
    return;
  }
  if (phase_ != Stage::kJoined) return;
  const double hb_s = welcome_->heartbeat_interval_ms / 1000.0;
  if (now - last_heartbeat_s_ >= hb_s) {
    out->push_back(ClientSendAction{HeartbeatMsg{last_round_, {}}, false});
    last_heartbeat_s_ = now;
  }
  if (now - last_heard_s_ > options_.coordinator_timeout_s) {
    Log(true, "coordinator silent for " + std::to_string(options_.coordinator_timeout_s) + " s; rejoining", out);
    BeginJoin(now, out);
  }
}

double ClientMachine::NextWakeupS() const {
  if (phase_ == Stage::kJoining) return join_wait_until_s_;
  if (phase_ != Stage::kJoined) return 0;
  const double hb = last_heartbeat_s_ + welcome_->heartbeat_interval_ms / 1000.0;
  return std::min(hb, last_heard_s_ + options_.coordinator_timeout_s);
}

std::vector<ClientAction> ClientMachine::Finish(const std::string& reason) {
  std::vector<ClientAction> out;
  HeartbeatMsg last{last_round_, {}};
  last.energy = TakeEnergy();
  out.push_back(ClientSendAction{std::move(last), false});
  Log(false, "shutting down: " + reason, &out);
  return out;
}

ClientResult ClientMachine::Result(const std::string& reason) const {
  ClientResult res;
  res.client_index = welcome_ ? welcome_->client_index : 0;
  res.rounds_trained = rounds_trained_;
  res.shutdown_reason = reason;
  return res;
}

std::vector<std::string> AnnouncedCapabilities(const TaskRegistry& tasks, const Task* own) {
  if (own != nullptr) {
    std::vector<std::string> caps = own->Capabilities();
    if (caps.size() + kFixedCapabilities > kMaxCapabilities) caps.resize(kMaxCapabilities - kFixedCapabilities);
    return caps;
  }
  std::vector<std::string> common;
  bool first = true;
  for (const std::string& name : tasks.Names()) {
    auto created = tasks.Create(name);
    if (!created.ok()) continue;
    std::vector<std::string> caps = (*created)->Capabilities();
    std::sort(caps.begin(), caps.end());
    if (first) {
      common = caps;
      first = false;
    } else {
      std::vector<std::string> both;
      std::set_intersection(common.begin(), common.end(), caps.begin(), caps.end(), std::back_inserter(both));
      common = std::move(both);
    }
  }
  // Join's decoder bounds the list; never announce more than it accepts.
  if (common.size() + kFixedCapabilities > kMaxCapabilities) common.resize(kMaxCapabilities - kFixedCapabilities);
  return common;
}

WorkDoneEvent RunFitWork(Task& task, StartFitAction action, const WorkMeterFn& meter,
                         const std::function<double()>& now_s) {
  WorkDoneEvent r;
  r.kind = WorkKind::kFit;
  r.round = action.round;
  r.state_generation = action.state_generation;
  const FitRequest& req = action.request;
  StatusOr<bool> send_delta = ConfigBool(req.config, "send_delta", false);
  StatusOr<std::unique_ptr<UpdateCodec>> uplink = send_delta.status();
  if (send_delta.ok()) uplink = CodecFromConfig(req.config, kConfigUplinkCodec);
  if (!uplink.ok()) {
    r.status = uplink.status();
    r.state = std::move(action.state);
    return r;
  }
  const double t0 = now_s();
  Status status = Internal("fit did not run");
  r.energy = meter(Phase::kFit, static_cast<int64_t>(action.round),
                   [&] { status = FitAndEncode(task, *send_delta, **uplink, &action, &r); });
  r.wall_s = now_s() - t0;
  r.state = std::move(action.state);
  r.status = std::move(status);
  if (!r.status.ok()) {
    r.fit = FitResult{};
    r.encoded = EncodedParams{};
  }
  return r;
}

WorkDoneEvent RunEvaluateWork(Task& task, const StartEvaluateAction& action, const WorkMeterFn& meter) {
  WorkDoneEvent r;
  r.kind = WorkKind::kEvaluate;
  r.round = action.round;
  StatusOr<EvalResult> res = Internal("evaluation did not run");
  r.energy = meter(Phase::kEvaluate, static_cast<int64_t>(action.round),
                   [&] { res = task.Evaluate(action.parameters); });
  if (!res.ok()) {
    r.status = res.status();
    return r;
  }
  r.eval = *res;
  return r;
}

}  // namespace greenfed
