#include "greenfed/coordinator/round_machine.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "numeric.h"

namespace greenfed {

namespace {

using detail::Mix;

std::string Fmt(double v, int precision = 4) {
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(precision);
  os << v;
  return os.str();
}

}  // namespace

const char* MachineStateName(MachineState s) {
  switch (s) {
    case MachineState::kIdle: return "idle";
    case MachineState::kWaitingForClients: return "waiting-for-clients";
    case MachineState::kFitting: return "fitting";
    case MachineState::kEvaluating: return "evaluating";
    case MachineState::kDone: return "done";
  }
  return "?";
}

Status ValidateRoundOptions(const RoundOptions& o) {
  if (o.num_clients == 0) return InvalidArgument("--num-clients must be at least 1");
  if (o.min_available_clients == 0 || o.min_available_clients > o.num_clients) {
    return InvalidArgument("--min-available-clients must be in [1, num-clients=" + std::to_string(o.num_clients) +
                           "], got " + std::to_string(o.min_available_clients));
  }
  if (o.min_fit_clients == 0 || o.min_fit_clients > o.min_available_clients) {
    return InvalidArgument("--min-fit-clients must be in [1, min-available-clients=" +
                           std::to_string(o.min_available_clients) + "], got " + std::to_string(o.min_fit_clients));
  }
  if (!(o.fraction_fit > 0.0 && o.fraction_fit <= 1.0)) {
    return InvalidArgument("--fraction-fit must be in (0, 1], got " + Fmt(o.fraction_fit));
  }
  if (o.max_rounds == 0) return InvalidArgument("--max-rounds must be at least 1");
  if (!(o.target_accuracy > 0.0 && o.target_accuracy <= 1.0)) {
    return InvalidArgument("--target-accuracy must be in (0, 1], got " + Fmt(o.target_accuracy));
  }
  if (!(o.round_timeout_s > 0)) return InvalidArgument("--round-timeout-s must be positive");
  if (!(o.heartbeat_timeout_s > 0)) return InvalidArgument("--heartbeat-timeout-s must be positive");
  if (o.max_round_attempts == 0) return InvalidArgument("--max-round-attempts must be at least 1");
  if (!(o.client_wait_s >= 0)) return InvalidArgument("--client-wait-s must be >= 0");
  if (!(o.max_idle_s > 0)) return InvalidArgument("--max-idle-s must be positive");
  if (o.max_examples_per_client == 0) return InvalidArgument("max_examples_per_client must be at least 1");
  if (o.train.epochs == 0) return InvalidArgument("--local-epochs must be at least 1");
  StrategyOptions strategy = o.strategy;
  strategy.federation_size = o.num_clients;
  if (auto made = MakeStrategy(strategy); !made.ok()) return made.status();
  GREENFED_RETURN_IF_ERROR(ValidateSamplingOptions(o.sampling));
  GREENFED_RETURN_IF_ERROR(ValidateBudgetOptions(o.budget));
  if (o.train.batch_size == 0) return InvalidArgument("--batch-size must be at least 1");
  if (!(o.train.learning_rate > 0)) return InvalidArgument("--lr must be positive");
  if (!(o.train.momentum >= 0 && o.train.momentum < 1)) return InvalidArgument("--momentum must be in [0, 1)");
  return ValidateCodecOptions(o.uplink_codec, o.downlink_codec);
}

Status ValidateCodecOptions(const std::string& uplink, const std::string& downlink) {
  if (auto made = MakeCodec(uplink); !made.ok()) return made.status().WithContext("--uplink-codec");
  auto made = MakeCodec(downlink);
  if (!made.ok()) return made.status().WithContext("--downlink-codec");
  if (!IsDownlinkCodec(**made)) {
    return InvalidArgument("--downlink-codec " + downlink + ": the global model travels dense (" +
                           DownlinkCodecNames() + "); top-k of the weights would zero most of the model");
  }
  return Status::Ok();
}

RoundMachine::RoundMachine(RoundOptions options, std::unique_ptr<Strategy> strategy)
    : options_(std::move(options)), strategy_(std::move(strategy)) {
  options_.partition.num_clients = options_.num_clients;
  options_.strategy.federation_size = options_.num_clients;
  if (!strategy_) {
    auto made = MakeStrategy(options_.strategy);
    if (made.ok()) {
      strategy_ = std::move(made).value();
    } else {
      strategy_error_ = made.status();
      strategy_ = std::move(MakeStrategy(StrategyOptions{})).value();
    }
  }
  if (auto made = MakeSamplingPolicy(options_.sampling); made.ok()) {
    sampling_ = std::move(made).value();
  } else {
    if (strategy_error_.ok()) strategy_error_ = made.status();
    sampling_ = std::move(MakeSamplingPolicy(SamplingOptions{})).value();
  }
  codec_error_ = ValidateCodecOptions(options_.uplink_codec, options_.downlink_codec);
  if (!codec_error_.ok()) options_.uplink_codec = options_.downlink_codec = kCodecNone;
  uplink_codec_ = std::move(MakeCodec(options_.uplink_codec)).value();
  downlink_codec_ = std::move(MakeCodec(options_.downlink_codec)).value();
  // A lossy codec carries deltas (docs/codecs.md).
  if (!uplink_codec_->Lossless() || !downlink_codec_->Lossless()) options_.train.send_delta = true;
}

std::optional<ClientEntry> RoundMachine::ClientByPeer(const std::string& peer) const {
  auto it = clients_.find(peer);
  if (it == clients_.end()) return std::nullopt;
  return it->second;
}

std::optional<double> RoundMachine::deadline_s() const {
  if (state_ == MachineState::kFitting) return deadline_s_;
  if (state_ == MachineState::kEvaluating && !eval_pending_.empty()) return eval_deadline_s_;
  return std::nullopt;
}

uint64_t RoundMachine::ExampleBound(uint32_t index, uint64_t declared) const {
  if (index < options_.shard_sizes.size()) return options_.shard_sizes[index];
  if (declared > 0) return std::min(declared, options_.max_examples_per_client);
  return options_.max_examples_per_client;
}

bool RoundMachine::Excluded(const std::string& identity) const {
  auto it = history_.find(identity);
  return it != history_.end() && round_ < it->second.excluded_until_round;
}

void RoundMachine::Refuse(const std::string& peer, ErrorCode code, const std::string& why, const std::string& who,
                          std::vector<Action>* out) {
  out->push_back(SendAction{peer, ErrorMsg{code, round_, why}});
  out->push_back(LogAction{true, "refused join from " + who + ": " + ErrorCodeName(code) + ": " + why});
}

void RoundMachine::EnterWaiting(double now) {
  state_ = MachineState::kWaitingForClients;
  waiting_since_s_ = now;
  last_wait_log_s_ = now;
}

MachineSnapshot RoundMachine::Snapshot() const {
  if (held_snapshot_) return *held_snapshot_;
  MachineSnapshot s;
  s.completed_rounds = completed_rounds_;
  s.global = global_;
  s.strategy_state = strategy_->SaveState();
  s.sampling_state = sampling_state_;
  return s;
}

std::vector<Action> RoundMachine::Resume(double now_s, MachineSnapshot snapshot) {
  std::vector<Action> out;
  if (!strategy_error_.ok()) {
    Stop(strategy_error_.message(), false, true, &out);
    return out;
  }
  global_ = std::move(snapshot.global);
  completed_rounds_ = snapshot.completed_rounds;
  if (Status restored = strategy_->RestoreState(snapshot.strategy_state); !restored.ok()) {
    Stop("cannot resume " + strategy_->Describe() + ": " + restored.message(), false, true, &out);
    return out;
  }
  if (Status restored = sampling_->RestoreState(snapshot.sampling_state); !restored.ok()) {
    Stop("cannot resume: " + restored.message(), false, true, &out);
    return out;
  }
  sampling_state_ = std::move(snapshot.sampling_state);
  round_ = completed_rounds_ + 1;
  attempt_ = 0;
  EnterWaiting(now_s);
  out.push_back(LogAction{false, "resuming after round " + std::to_string(completed_rounds_) + "; waiting for " +
                                     std::to_string(options_.min_available_clients) + " of " +
                                     std::to_string(options_.num_clients) + " clients"});
  if (completed_rounds_ >= options_.max_rounds) {
    Stop("max rounds (" + std::to_string(options_.max_rounds) + ") already completed", false, false, &out);
    return out;
  }
  MaybeStartRound(now_s, &out);
  return out;
}

std::string RoundMachine::Name(const std::string& peer) const {
  auto it = clients_.find(peer);
  if (it == clients_.end()) return "unknown peer";
  return "client-" + std::to_string(it->second.index) + " (" + it->second.client_id + ")";
}

uint64_t RoundMachine::ClientSeed(uint32_t index) const {
  return Mix(options_.seed ^ Mix(round_ * 1000003ull + index));
}

std::vector<Action> RoundMachine::Start(double now_s, Parameters initial) {
  std::vector<Action> out;
  if (!strategy_error_.ok() || !codec_error_.ok()) {
    Stop(!strategy_error_.ok() ? strategy_error_.message() : codec_error_.message(), false, true, &out);
    return out;
  }
  global_ = std::move(initial);
  sampling_state_ = sampling_->SaveState();
  round_ = 1;
  completed_rounds_ = 0;
  attempt_ = 0;
  EnterWaiting(now_s);
  out.push_back(LogAction{false, "waiting for " + std::to_string(options_.min_available_clients) + " of " +
                                     std::to_string(options_.num_clients) + " clients"});
  MaybeStartRound(now_s, &out);
  return out;
}

std::vector<Action> RoundMachine::Handle(const Event& event, double now_s) {
  std::vector<Action> out;
  held_snapshot_.reset();  // it described the RoundDoneAction of the previous call
  if (state_ == MachineState::kDone || state_ == MachineState::kIdle) {
    if (const auto* j = std::get_if<JoinEvent>(&event)) {
      out.push_back(SendAction{j->peer, ErrorMsg{ErrorCode::kRunOver, round_, "the run is over"}});
    }
    return out;
  }
  std::visit(
      [&](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, JoinEvent>) {
          OnJoin(e, now_s, &out);
        } else if constexpr (std::is_same_v<T, HeartbeatEvent>) {
          auto it = clients_.find(e.peer);
          if (it != clients_.end()) it->second.last_seen_s = now_s;
          if (state_ == MachineState::kWaitingForClients) MaybeStartRound(now_s, &out);
        } else if constexpr (std::is_same_v<T, FitResEvent>) {
          OnFitRes(e, now_s, &out);
        } else if constexpr (std::is_same_v<T, FitFailedEvent>) {
          OnFitFailed(e, now_s, &out);
        } else if constexpr (std::is_same_v<T, EvaluateResEvent>) {
          OnEvaluateRes(e, now_s, &out);
        } else if constexpr (std::is_same_v<T, CentralEvalEvent>) {
          OnCentralEval(e, now_s, &out);
        } else if constexpr (std::is_same_v<T, CentralEvalFailedEvent>) {
          Stop("central evaluation of round " + std::to_string(e.round) + " failed: " + e.reason, false, true, &out);
        } else if constexpr (std::is_same_v<T, TickEvent>) {
          OnTick(now_s, &out);
        }
      },
      event);
  return out;
}

void RoundMachine::NoteSpend(uint64_t round, const BudgetSpend& total, const BudgetSpend& this_round) {
  spend_round_ = round;
  spent_total_ = total;
  spent_round_ = this_round;
}

std::vector<Action> RoundMachine::RequestStop(const std::string& reason) {
  std::vector<Action> out;
  if (state_ != MachineState::kDone) Stop(reason, false, true, &out);
  return out;
}

void RoundMachine::OnJoin(const JoinEvent& e, double now, std::vector<Action>* out) {
  const JoinMsg& j = e.join;
  const bool authenticated = !e.identity.empty();
  const std::string identity = authenticated ? e.identity : "id:" + j.client_id;
  const std::string who = j.client_id + (authenticated ? " [" + identity.substr(0, 14) + "...]" : "");
  for (const std::string& cap : strategy_->RequiredCapabilities()) {
    if (std::find(j.capabilities.begin(), j.capabilities.end(), cap) == j.capabilities.end()) {
      Refuse(e.peer, ErrorCode::kIncompatible,
             "strategy " + strategy_->Describe() + " needs capability '" + cap +
                 "', which this client's task does not announce",
             who, out);
      return;
    }
  }
  for (const auto& [flag, codec] : {std::pair<const char*, const UpdateCodec*>{"uplink", uplink_codec_.get()},
                                    std::pair<const char*, const UpdateCodec*>{"downlink", downlink_codec_.get()}}) {
    if (codec->Lossless()) continue;
    const std::string cap = CodecCapability(*codec);
    if (std::find(j.capabilities.begin(), j.capabilities.end(), cap) == j.capabilities.end()) {
      Refuse(e.peer, ErrorCode::kIncompatible,
             std::string("this run's ") + flag + " codec is " + codec->Name() + " (--" + flag +
                 "-codec), which needs capability '" + cap + "'; this client does not announce it",
             who, out);
      return;
    }
  }
  if (Excluded(identity)) {
    Refuse(e.peer, ErrorCode::kExcluded,
           "excluded until round " + std::to_string(history_[identity].excluded_until_round) +
               " after repeated failures",
           who, out);
    return;
  }
  if (options_.own_data && (j.num_examples == 0 || j.num_examples > options_.max_examples_per_client)) {
    // Own-data clients weigh in with what they declare, so the declaration is the bound.
    Refuse(e.peer, ErrorCode::kIncompatible,
           j.num_examples == 0
               ? std::string("this federation's clients bring their own data (--partition none): declare "
                             "num_examples > 0 at join (start the client with --data PATH)")
               : "declared num_examples " + std::to_string(j.num_examples) +
                     " exceeds this federation's bound of " + std::to_string(options_.max_examples_per_client) +
                     " examples per client (--max-client-examples)",
           who, out);
    return;
  }
  if (auto it = clients_.find(e.peer); it != clients_.end()) {
    if (it->second.identity != identity) {
      Refuse(e.peer, ErrorCode::kIdentityInUse, "this connection already joined under another identity", who, out);
      return;
    }
    // Duplicate join on the same connection: answer again, keep the index.
    it->second.last_seen_s = now;
  } else {
    // The same identity on another connection: with a proven identity it is the
    // key holder reconnecting, so the new connection replaces the old one. A
    // self-declared name replaces only a connection that has gone quiet, so that
    // nobody takes a live client's slot by using its name. The old connection is
    // dropped only once the new join is known to succeed.
    std::optional<std::string> replaces;
    for (const auto& [peer, c] : clients_) {
      if (c.identity != identity) continue;
      const double quiet_s = now - c.last_seen_s;
      const double stale_s = 3.0 * options_.heartbeat_interval_ms / 1000.0;
      if (!authenticated && quiet_s < stale_s) {
        Refuse(e.peer, ErrorCode::kIdentityInUse,
               "client_id '" + j.client_id + "' is held by a live connection (seen " + Fmt(quiet_s, 1) +
                   " s ago); retry later or use CURVE keys",
               who, out);
        return;
      }
      replaces = peer;
      break;
    }
    std::set<uint32_t> used;
    for (const auto& [peer, c] : clients_) {
      if (!replaces || peer != *replaces) used.insert(c.index);
    }
    // Indices bound to other keys stay reserved for them.
    std::map<uint32_t, std::string> bound;
    for (const auto& [id, h] : history_) {
      if (h.bound_index && id != identity) bound[*h.bound_index] = id;
    }
    std::optional<uint32_t> mine;
    if (auto h = history_.find(identity); h != history_.end()) mine = h->second.bound_index;
    uint32_t index = 0;
    if (j.requested_index >= 0) {
      if (static_cast<uint32_t>(j.requested_index) >= options_.num_clients) {
        Refuse(e.peer, ErrorCode::kIndexOutOfRange,
               "client index " + std::to_string(j.requested_index) + " is out of range: this federation has " +
                   std::to_string(options_.num_clients) + " clients (0.." + std::to_string(options_.num_clients - 1) +
                   ")",
               who, out);
        return;
      }
      index = static_cast<uint32_t>(j.requested_index);
      if (mine && *mine != index) {
        Refuse(e.peer, ErrorCode::kIndexTaken,
               "this key is bound to client index " + std::to_string(*mine) + ", not " + std::to_string(index), who,
               out);
        return;
      }
      if (used.count(index) || bound.count(index)) {
        Refuse(e.peer, ErrorCode::kIndexTaken,
               "client index " + std::to_string(index) +
                   (used.count(index) ? " is already taken" : " is bound to another client's key"),
               who, out);
        return;
      }
    } else if (mine) {
      index = *mine;
    } else {
      while (index < options_.num_clients && (used.count(index) || bound.count(index))) ++index;
      if (index >= options_.num_clients) {
        Refuse(e.peer, ErrorCode::kFederationFull,
               "federation is full (" + std::to_string(options_.num_clients) + " clients)", who, out);
        return;
      }
    }
    if (replaces) DropClient(*replaces, "replaced by a new connection of the same identity", out);
    if (authenticated) history_[identity].bound_index = index;
    ClientEntry entry;
    entry.peer = e.peer;
    entry.identity = identity;
    entry.client_id = j.client_id;
    entry.index = index;
    entry.joined_s = now;
    entry.last_seen_s = now;
    entry.country = j.country;
    entry.pue = j.pue;
    entry.max_examples = ExampleBound(index, j.num_examples);
    clients_[e.peer] = std::move(entry);
    out->push_back(LogAction{false, "client-" + std::to_string(index) + " joined (" + who + ", " +
                                        std::to_string(clients_.size()) + "/" +
                                        std::to_string(options_.num_clients) + " connected)"});
  }
  WelcomeMsg w;
  w.client_index = clients_[e.peer].index;
  w.partition = options_.partition;
  w.task = options_.task;
  w.model = options_.model;
  w.run_id = options_.run_id;
  w.heartbeat_interval_ms = options_.heartbeat_interval_ms;
  out->push_back(SendAction{e.peer, w});
  if (state_ == MachineState::kWaitingForClients) MaybeStartRound(now, out);
}

void RoundMachine::MaybeStartRound(double now, std::vector<Action>* out) {
  if (state_ != MachineState::kWaitingForClients) return;
  const auto n = static_cast<uint32_t>(clients_.size());
  if (n >= options_.min_available_clients) {
    StartRound(now, out);
    return;
  }
  const double waited = now - waiting_since_s_;
  // Round 1 waits a bounded time for the federation to assemble; after that, and
  // in every later round, the clients at hand are enough when they can make a
  // round count (min_fit_clients). A dead client never holds the run.
  const bool may_start = assembled_ || waited >= options_.client_wait_s;
  if (may_start && n >= options_.min_fit_clients) {
    out->push_back(LogAction{true, "round " + std::to_string(round_) + " starts with " + std::to_string(n) + " of " +
                                       std::to_string(options_.num_clients) + " clients (min_available_clients=" +
                                       std::to_string(options_.min_available_clients) + ")" +
                                       (!assembled_ ? " after waiting " + Fmt(waited, 1) + " s" : "")});
    StartRound(now, out);
    return;
  }
  if (waited >= options_.max_idle_s) {
    Stop("no round could start for " + Fmt(waited, 0) + " s: " + std::to_string(n) +
             " client(s) connected, fewer than min_fit_clients=" + std::to_string(options_.min_fit_clients),
         false, true, out);
    return;
  }
  if (now - last_wait_log_s_ >= 30) {
    last_wait_log_s_ = now;
    out->push_back(LogAction{true, "round " + std::to_string(round_) + ": waiting for clients: " +
                                       std::to_string(n) + " connected, " + std::to_string(options_.min_fit_clients) +
                                       " needed to start (" + Fmt(waited, 0) + " s so far, stop after " +
                                       Fmt(options_.max_idle_s, 0) + " s)"});
  }
}

void RoundMachine::StartRound(double now, std::vector<Action>* out) {
  ++attempt_;
  std::map<uint32_t, const ClientEntry*> by_index;
  for (const auto& [peer, c] : clients_) by_index[c.index] = &c;
  std::vector<SamplingCandidate> candidates;
  for (const auto& [index, c] : by_index) candidates.push_back({index, c->country, c->pue});
  const auto n = static_cast<uint32_t>(candidates.size());
  const SamplingDecision decision = sampling_->Sample(
      candidates, {round_, attempt_, options_.seed, options_.fraction_fit, options_.min_fit_clients, utc_hour_});
  const std::vector<uint32_t>& chosen = decision.indices;
  const auto k = static_cast<uint32_t>(chosen.size());
  std::vector<const ClientEntry*> available;
  for (uint32_t index : chosen) available.push_back(by_index.at(index));

  auto aggregator = strategy_->BeginRound(global_);
  if (!aggregator.ok()) {
    Stop("cannot start round: " + aggregator.status().ToString(), false, true, out);
    return;
  }
  if (!downlink_codec_->Lossless() && downlink_round_ != round_) {
    // Encoded once per round, whatever the number of clients and attempts.
    auto bytes = downlink_codec_->Encode(global_, nullptr);
    if (!bytes.ok()) {
      Stop("cannot encode the global model for the downlink: " + bytes.status().ToString(), false, true, out);
      return;
    }
    downlink_.codec = downlink_codec_->Name();
    downlink_.specs = SpecsOf(global_);
    downlink_.bytes = std::move(bytes).value();
    downlink_round_ = round_;
  }
  aggregator_ = std::move(aggregator).value();
  state_ = MachineState::kFitting;
  assembled_ = true;
  round_start_s_ = now;
  deadline_s_ = now + options_.round_timeout_s;
  pending_.clear();
  sampled_ = k;
  succeeded_ = failed_ = 0;
  train_loss_sum_ = 0;
  std::string who;
  for (uint32_t i = 0; i < k; ++i) {
    const ClientEntry& c = *available[i];
    pending_.insert(c.peer);
    FitMsg fit;
    fit.round = round_;
    TrainConfig train = options_.train;
    train.seed = ClientSeed(c.index);
    PutTrainConfig(train, &fit.config);
    fit.config[kConfigUplinkCodec] = options_.uplink_codec;
    fit.config[kConfigDownlinkCodec] = options_.downlink_codec;
    strategy_->ConfigureFit(round_, &fit.config, &fit.groups);
    out->push_back(SendAction{c.peer, std::move(fit)});
    who += (who.empty() ? "" : ",") + std::to_string(c.index);
  }
  out->push_back(LogAction{false, "round " + std::to_string(round_) +
                                      (attempt_ > 1 ? " (attempt " + std::to_string(attempt_) + ")" : "") +
                                      ": sampled " + std::to_string(k) + " of " + std::to_string(n) +
                                      " clients [" + who + "]" +
                                      (decision.note.empty() ? "" : "; " + decision.note)});
}

void RoundMachine::OnFitRes(const FitResEvent& e, double now, std::vector<Action>* out) {
  auto it = clients_.find(e.peer);
  if (it == clients_.end()) {
    out->push_back(LogAction{true, "discarded fit result from an unknown peer (not joined)"});
    return;
  }
  it->second.last_seen_s = now;
  const FitResMsg& r = e.result;
  if (state_ != MachineState::kFitting || r.round != round_ || !pending_.count(e.peer)) {
    out->push_back(LogAction{true, "discarded late or unexpected fit result from " + Name(e.peer) + " for round " +
                                       std::to_string(r.round) + " (current round " + std::to_string(round_) +
                                       ", state " + MachineStateName(state_) + ")"});
    return;
  }
  pending_.erase(e.peer);
  Status s;
  if (!std::isfinite(r.train_loss) || r.train_loss < 0) {
    s = InvalidArgument("train_loss " + Fmt(r.train_loss) + " is not a finite, non-negative loss");
  } else if (r.num_examples > it->second.max_examples) {
    s = InvalidArgument("num_examples " + std::to_string(r.num_examples) + " exceeds this client's shard size (" +
                        std::to_string(it->second.max_examples) + ")");
  } else if (r.encoded.codec != options_.uplink_codec) {
    s = InvalidArgument("wrong codec: the update is encoded with '" + r.encoded.codec + "', this run's uplink codec is '" +
                        options_.uplink_codec + "' (--uplink-codec)");
  } else if (r.encoded.plain()) {
    s = aggregator_->Add(r.parameters, r.groups, r.is_delta, r.num_examples);
  } else if (r.encoded.specs != SpecsOf(global_)) {
    // Checked before any decoding: a top-k encoding of a few bytes may claim a
    // model of any size.
    s = InvalidArgument("the encoded update's " + std::to_string(r.encoded.specs.size()) +
                        " tensors do not match the global model's " + std::to_string(global_.size()) +
                        " (names, dtypes, shapes)");
  } else {
    s = aggregator_->AddEncoded(*uplink_codec_, r.encoded, r.groups, r.is_delta, r.num_examples);
  }
  if (!s.ok()) {
    ++failed_;
    out->push_back(LogAction{true, "rejected fit result from " + Name(e.peer) + ": " + s.message()});
    out->push_back(SendAction{e.peer, ErrorMsg{ErrorCode::kBadUpdate, r.round, s.message()}});
    NoteFailure(e.peer, out);
  } else {
    ++succeeded_;
    train_loss_sum_ += static_cast<double>(r.num_examples) * r.train_loss;
    NoteSuccess(e.peer);
  }
  if (pending_.empty()) CompleteFitPhase(now, out);
}

void RoundMachine::OnFitFailed(const FitFailedEvent& e, double now, std::vector<Action>* out) {
  auto it = clients_.find(e.peer);
  if (it == clients_.end()) return;
  it->second.last_seen_s = now;
  if (state_ == MachineState::kEvaluating && eval_pending_.erase(e.peer)) {
    out->push_back(LogAction{true, Name(e.peer) + " failed evaluation of round " + std::to_string(round_) + ": " +
                                       e.reason});
    MaybeCompleteRound(now, out);
    return;
  }
  if (state_ != MachineState::kFitting || !pending_.count(e.peer)) return;
  pending_.erase(e.peer);
  ++failed_;
  out->push_back(LogAction{true, Name(e.peer) + " failed round " + std::to_string(round_) + ": " + e.reason});
  NoteFailure(e.peer, out);
  if (state_ == MachineState::kFitting && pending_.empty()) CompleteFitPhase(now, out);
}

void RoundMachine::NoteSuccess(const std::string& peer) {
  auto it = clients_.find(peer);
  if (it != clients_.end()) history_[it->second.identity].consecutive_failures = 0;
}

void RoundMachine::NoteFailure(const std::string& peer, std::vector<Action>* out) {
  auto it = clients_.find(peer);
  if (it == clients_.end() || options_.exclude_after_failures == 0) return;
  History& h = history_[it->second.identity];
  if (++h.consecutive_failures < options_.exclude_after_failures) return;
  h.consecutive_failures = 0;
  h.excluded_until_round = round_ + options_.exclude_rounds;
  const std::string why = "excluded until round " + std::to_string(h.excluded_until_round) + " after " +
                          std::to_string(options_.exclude_after_failures) + " consecutive failures";
  out->push_back(SendAction{peer, ErrorMsg{ErrorCode::kExcluded, round_, why}});
  DropClient(peer, why, out);
}

void RoundMachine::DropClient(std::string peer, const std::string& reason, std::vector<Action>* out) {
  auto it = clients_.find(peer);
  if (it == clients_.end()) return;
  out->push_back(LogAction{true, "dropped " + Name(peer) + ": " + reason});
  clients_.erase(it);
  if (pending_.erase(peer)) ++failed_;
  eval_pending_.erase(peer);
}

void RoundMachine::OnTick(double now, std::vector<Action>* out) {
  std::vector<std::string> silent;
  for (const auto& [peer, c] : clients_) {
    if (now - c.last_seen_s > options_.heartbeat_timeout_s) silent.push_back(peer);
  }
  for (const auto& peer : silent) {
    DropClient(peer, "no heartbeat for " + Fmt(options_.heartbeat_timeout_s, 1) + " s", out);
  }
  if (state_ == MachineState::kFitting) {
    if (now >= deadline_s_ && !pending_.empty()) {
      const std::vector<std::string> late(pending_.begin(), pending_.end());
      pending_.clear();
      for (const auto& peer : late) {
        out->push_back(LogAction{true, Name(peer) + " missed the round " + std::to_string(round_) +
                                           " deadline (" + Fmt(options_.round_timeout_s, 1) + " s)"});
        ++failed_;
        NoteFailure(peer, out);
      }
    }
    if (state_ == MachineState::kFitting && pending_.empty()) CompleteFitPhase(now, out);
  } else if (state_ == MachineState::kEvaluating) {
    if (!eval_pending_.empty() && now >= eval_deadline_s_) {
      out->push_back(LogAction{true, std::to_string(eval_pending_.size()) +
                                         " federated evaluation result(s) missed the deadline"});
      eval_pending_.clear();
    }
    MaybeCompleteRound(now, out);
  } else if (state_ == MachineState::kWaitingForClients) {
    MaybeStartRound(now, out);
  }
}

void RoundMachine::FinishFit(double now, std::vector<Action>* out) {
  if (succeeded_ < options_.min_fit_clients) {
    out->push_back(LogAction{true, "round " + std::to_string(round_) + " attempt " + std::to_string(attempt_) +
                                       ": " + std::to_string(succeeded_) + " result(s), fewer than min_fit_clients=" +
                                       std::to_string(options_.min_fit_clients) + "; retrying"});
    if (attempt_ >= options_.max_round_attempts) {
      Stop("round " + std::to_string(round_) + " failed " + std::to_string(attempt_) + " times", false, true, out);
      return;
    }
    EnterWaiting(now);
    MaybeStartRound(now, out);
    return;
  }
  auto combined = aggregator_->Result();
  auto result = combined.ok() ? strategy_->Update(global_, std::move(combined).value()) : combined;
  if (!result.ok()) {
    Stop("aggregation failed (" + strategy_->Describe() + "): " + result.status().ToString(), false, true, out);
    return;
  }
  global_ = std::move(result).value();
  if (OverlapAllowed()) {
    // Round round_ is aggregated; its evaluation runs beside round round_ + 1 (header).
    OverlappedEval o;
    o.done.round = round_;
    o.done.sampled = sampled_;
    o.done.succeeded = succeeded_;
    o.done.failed = failed_;
    const uint64_t examples = aggregator_ ? aggregator_->total_examples() : 0;
    o.done.train_loss = examples ? train_loss_sum_ / static_cast<double>(examples) : 0;
    o.done.round_s = now - round_start_s_;  // fits and aggregation; the evaluation overlaps the next round
    o.sampling_state = sampling_->SaveState();
    overlapped_ = std::move(o);
    fit_phase_waiting_ = false;
    out->push_back(EvaluateGlobalAction{round_, /*overlapped=*/true});
    ++round_;
    attempt_ = 0;
    EnterWaiting(now);
    MaybeStartRound(now, out);
    return;
  }
  state_ = MachineState::kEvaluating;
  central_.reset();
  eval_pending_.clear();
  fed_correct_ = 0;
  fed_examples_ = 0;
  out->push_back(EvaluateGlobalAction{round_});
  if (options_.fed_eval_every > 0 && round_ % options_.fed_eval_every == 0) {
    eval_deadline_s_ = now + options_.eval_timeout_s;
    for (const auto& [peer, c] : clients_) {
      eval_pending_.insert(peer);
      out->push_back(SendAction{peer, EvaluateMsg{round_, {}}});
    }
  }
}

void RoundMachine::OnEvaluateRes(const EvaluateResEvent& e, double now, std::vector<Action>* out) {
  auto it = clients_.find(e.peer);
  if (it != clients_.end()) it->second.last_seen_s = now;
  if (state_ != MachineState::kEvaluating || e.result.round != round_ || !eval_pending_.count(e.peer)) {
    out->push_back(LogAction{true, "discarded late or unexpected evaluation result from " + Name(e.peer)});
    return;
  }
  eval_pending_.erase(e.peer);
  const auto& r = e.result;
  if (!(r.accuracy >= 0 && r.accuracy <= 1) || !std::isfinite(r.loss) || r.num_examples == 0 ||
      r.num_examples > options_.max_examples_per_client) {
    out->push_back(LogAction{true, "rejected evaluation result from " + Name(e.peer) + ": accuracy " +
                                       Fmt(r.accuracy) + " over " + std::to_string(r.num_examples) + " examples"});
  } else {
    fed_correct_ += r.accuracy * static_cast<double>(r.num_examples);
    fed_examples_ += r.num_examples;
  }
  MaybeCompleteRound(now, out);
}

bool RoundMachine::OverlapAllowed() const {
  return options_.overlap_eval && options_.fed_eval_every == 0 && !options_.budget.enabled() &&
         round_ < options_.max_rounds;
}

void RoundMachine::CompleteFitPhase(double now, std::vector<Action>* out) {
  if (overlapped_) {
    fit_phase_waiting_ = true;  // aggregated once the outstanding evaluation is in
    return;
  }
  FinishFit(now, out);
}

void RoundMachine::OnOverlappedEval(const CentralEvalEvent& e, double now, std::vector<Action>* out) {
  OverlappedEval o = std::move(*overlapped_);
  overlapped_.reset();
  o.done.accuracy = e.accuracy;
  o.done.loss = e.loss;
  out->push_back(o.done);
  completed_rounds_ = o.done.round;
  sampling_state_ = std::move(o.sampling_state);
  // Round round_'s results may be aggregated below, in this same call, before the driver
  // handles the RoundDoneAction and checkpoints: hold the state as of o.done.round for it.
  if (fit_phase_waiting_) held_snapshot_ = Snapshot();
  if (e.accuracy >= options_.target_accuracy) {
    Stop("target accuracy " + Fmt(options_.target_accuracy) + " reached in round " + std::to_string(o.done.round) +
             (state_ == MachineState::kFitting ? " (round " + std::to_string(round_) + ", begun meanwhile, abandoned)"
                                               : std::string()),
         true, false, out);
    return;
  }
  if (fit_phase_waiting_) {
    fit_phase_waiting_ = false;
    FinishFit(now, out);
  }
}

void RoundMachine::OnCentralEval(const CentralEvalEvent& e, double now, std::vector<Action>* out) {
  if (overlapped_ && e.round == overlapped_->done.round) {
    OnOverlappedEval(e, now, out);
    return;
  }
  if (state_ != MachineState::kEvaluating || e.round != round_) {
    out->push_back(LogAction{true, "ignored central evaluation for round " + std::to_string(e.round)});
    return;
  }
  central_ = e;
  MaybeCompleteRound(now, out);
}

void RoundMachine::MaybeCompleteRound(double now, std::vector<Action>* out) {
  if (state_ != MachineState::kEvaluating || !central_ || !eval_pending_.empty()) return;
  RoundDoneAction done;
  done.round = round_;
  done.sampled = sampled_;
  done.succeeded = succeeded_;
  done.failed = failed_;
  done.accuracy = central_->accuracy;
  done.loss = central_->loss;
  const uint64_t examples = aggregator_ ? aggregator_->total_examples() : 0;
  done.train_loss = examples ? train_loss_sum_ / static_cast<double>(examples) : 0;
  done.round_s = now - round_start_s_;
  if (fed_examples_ > 0) done.fed_accuracy = fed_correct_ / static_cast<double>(fed_examples_);
  out->push_back(done);
  completed_rounds_ = round_;
  // The policy's state as of this round, for Snapshot(): the next round's draw
  // (below, in this same call) must not leak into this round's checkpoint.
  sampling_state_ = sampling_->SaveState();
  if (central_->accuracy >= options_.target_accuracy) {
    Stop("target accuracy " + Fmt(options_.target_accuracy) + " reached in round " + std::to_string(round_), true,
         false, out);
    return;
  }
  if (round_ >= options_.max_rounds) {
    Stop("max rounds (" + std::to_string(options_.max_rounds) + ") reached without the target accuracy " +
             Fmt(options_.target_accuracy),
         false, false, out);
    return;
  }
  const bool noted = spend_round_ == round_;
  if (auto over = BudgetStopReason(options_.budget, noted ? spent_total_ : BudgetSpend{},
                                   noted ? spent_round_ : BudgetSpend{}, round_ + 1)) {
    Stop(*over, false, false, out);
    return;
  }
  ++round_;
  attempt_ = 0;
  EnterWaiting(now);
  MaybeStartRound(now, out);
}

void RoundMachine::Stop(const std::string& reason, bool reached, bool failed, std::vector<Action>* out) {
  state_ = MachineState::kDone;
  overlapped_.reset();
  fit_phase_waiting_ = false;
  pending_.clear();
  eval_pending_.clear();
  for (const auto& [peer, c] : clients_) out->push_back(SendAction{peer, ShutdownMsg{reason}});
  out->push_back(StopAction{reason, reached, failed});
}

}  // namespace greenfed
