// RoundMachine: the coordinator's round logic as a pure state machine.
// Events go in (a client joined, a result arrived, time passed, the central
// evaluation finished) and actions come out (welcome X, send fit to Y, evaluate the
// global model, shut everyone down). It owns the client registry and the round's
// life cycle (deadlines, retries, stop); which clients a round samples and how
// results combine belong to its Strategy (strategy.h; FedAvg by default). It never
// touches a socket, a clock or a file, so tests drive it with made-up times.
//
// Round life cycle:
//   kWaitingForClients --(>= min_available_clients, or after client_wait_s with
//       >= min_fit_clients for round 1; >= min_fit_clients for later rounds)--> kFitting
//   kFitting --(all sampled answered, failed, or deadline)--> aggregate if
//       >= min_fit_clients succeeded, then kEvaluating; else retry the round
//   kEvaluating --(central result [+ federated results or deadline])--> next round
//       or kDone at the target accuracy, max_rounds, or when the next round would
//       go past options.budget (estimated from this round's cost; budget.h).
// Overlapped central evaluation (options.overlap_eval): the evaluation of round r does not
// feed round r+1's model, so when round r's fits are aggregated the machine asks for the
// evaluation (EvaluateGlobalAction{r, overlapped = true}) and starts round r+1 at once. The
// evaluation's answer for r then completes round r (RoundDoneAction, the target check; on
// the target, round r+1 is abandoned and its clients shut down). Round r+1's fits may finish
// first: they are not aggregated until r's evaluation is in, so global() does not change
// while the driver evaluates it, and the driver may read global() from another thread for
// that long. The last round (max_rounds), runs with federated evaluation and runs with a
// budget evaluate in sequence (kEvaluating).
// Late results (wrong round, after the deadline, from a client not sampled) are
// discarded with a logged reason. Energy accounting is not done here: the server
// records every report it receives, late or not, because that energy was spent.
//
// Liveness: no wait is unbounded. The first round after Start or Resume waits
// client_wait_s for min_available_clients, then starts with the clients it has
// (>= min_fit_clients); later rounds start at once with whoever is connected. With fewer than
// min_fit_clients for max_idle_s, the run stops with a reason. A client that fails
// (an Error, a rejected result, a missed deadline) exclude_after_failures times in
// a row is dropped and refused for exclude_rounds rounds, which frees its index.
//
// Identity: a client is known by JoinEvent::identity, which the transport proves
// (the CURVE public key). Its index is bound to that key for the whole run, and a
// new connection with the same key replaces the old one. Without CURVE
// (identity empty) the self-declared client_id stands in; then a live client is
// never displaced by a join under its name (kIdentityInUse).
//
// Thread safety: not thread-safe; driven by the coordinator's event loop only.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include <memory>

#include "greenfed/codec.h"
#include "greenfed/coordinator/budget.h"
#include "greenfed/coordinator/sampling.h"
#include "greenfed/coordinator/strategy.h"
#include "greenfed/protocol.h"
#include "greenfed/status.h"
#include "greenfed/tensor.h"

namespace greenfed {

struct RoundOptions {
  uint32_t num_clients = 10;            // federation size: clients get shard indices 0..num_clients-1
  uint32_t min_available_clients = 10;  // connected clients needed before a round starts
  double fraction_fit = 1.0;            // fraction of available clients sampled per round
  uint32_t min_fit_clients = 2;         // fewest sampled, and fewest results to aggregate
  uint64_t max_rounds = 50;             // stop after this many completed rounds
  double target_accuracy = 0.90;        // stop when central test accuracy reaches this
  double round_timeout_s = 600;         // per-round deadline for fit results
  double heartbeat_timeout_s = 30;      // a client silent this long is dropped
  uint32_t max_round_attempts = 5;      // consecutive failed attempts at one round before giving up
  uint64_t seed = 1;                    // sampling and per-client training seeds
  TrainConfig train;                    // sent to clients; its seed is derived per round and client
  uint32_t fed_eval_every = 0;          // federated evaluation every N rounds; 0 = off
  // Central evaluation of round r runs while round r+1's fits do (see "Overlapped central
  // evaluation" above). Off by default: when round r reaches the target, round r+1's fits
  // have begun and are abandoned, energy spent for nothing. Off in effect when
  // fed_eval_every > 0 or a budget is set: both need round r's result before round r+1.
  bool overlap_eval = false;
  double eval_timeout_s = 120;          // deadline for federated evaluation results
  PartitionSpec partition;              // sent in Welcome; num_clients is overwritten
  std::string task = "fashion_mnist";   // sent in Welcome
  std::string model = "cnn";            // sent in Welcome
  std::string run_id;                   // sent in Welcome
  uint32_t heartbeat_interval_ms = 1000;  // sent in Welcome
  double client_wait_s = 60;            // round 1: longest wait for min_available_clients
  double max_idle_s = 900;              // stop when no round could start for this long
  uint32_t exclude_after_failures = 2;  // consecutive failures before exclusion; 0 = never
  uint64_t exclude_rounds = 5;          // rounds an excluded client is refused
  // Upper bound on a client's num_examples, by client index: the shard sizes the
  // task computes from the partition spec. Empty when the task cannot tell; then
  // the client's Join declaration (if > 0) or max_examples_per_client bounds it.
  std::vector<uint64_t> shard_sizes;
  uint64_t max_examples_per_client = 1ull << 32;  // fallback bound; keeps every sum exact in double
  // Own-data mode (`--partition none`): clients train on their own files, so there
  // are no shard sizes; a Join must declare num_examples in [1, max_examples_per_client]
  // or is refused with INCOMPATIBLE, and the declaration bounds the client's results.
  bool own_data = false;
  StrategyOptions strategy;             // aggregation (strategy.h); FedAvg by default
  SamplingOptions sampling;             // which clients a round trains (sampling.h); uniform by default
  BudgetOptions budget;                 // --max-co2e-g / --max-wh (budget.h); no limit by default
  // Update codecs (codec.h, docs/codecs.md). Both names go into every Fit's config
  // (kConfigUplinkCodec, kConfigDownlinkCodec); a lossy one makes clients send
  // deltas (send_delta is forced on) and needs capability CodecCapability() at Join.
  std::string uplink_codec = "none";    // --uplink-codec: how clients encode their deltas
  std::string downlink_codec = "none";  // --downlink-codec: how Fit carries the global model (dense codecs)
};
Status ValidateRoundOptions(const RoundOptions& options);
// Both names known to MakeCodec, the downlink one dense (IsDownlinkCodec); the
// Status names the flag (--uplink-codec, --downlink-codec).
Status ValidateCodecOptions(const std::string& uplink, const std::string& downlink);

enum class MachineState : uint8_t { kIdle, kWaitingForClients, kFitting, kEvaluating, kDone };
const char* MachineStateName(MachineState s);

// ---- Events -------------------------------------------------------------------
// identity: "curve:<Z85 key>" when the transport authenticated the peer; "" when
// it did not (--insecure), in which case the self-declared client_id is used.
struct JoinEvent { std::string peer; JoinMsg join; std::string identity; };
struct HeartbeatEvent { std::string peer; };
struct FitResEvent { std::string peer; FitResMsg result; };
// A client reported that its work failed (an Error message), or sent a message
// the server rejected (undecodable update, implausible energy): it is marked failed
// for the work it owes at once, not at the deadline.
struct FitFailedEvent { std::string peer; std::string reason; };
struct EvaluateResEvent { std::string peer; EvaluateResMsg result; };
struct CentralEvalEvent { uint64_t round = 0; double accuracy = 0; double loss = 0; };
struct CentralEvalFailedEvent { uint64_t round = 0; std::string reason; };
struct TickEvent {};
using Event = std::variant<JoinEvent, HeartbeatEvent, FitResEvent, FitFailedEvent, EvaluateResEvent,
                           CentralEvalEvent, CentralEvalFailedEvent, TickEvent>;

// ---- Actions ------------------------------------------------------------------
// Send a message to one peer. Fit and Evaluate carry the current global parameters;
// the server fills them in from global() to avoid a copy per client.
struct SendAction { std::string peer; Message message; };
// Evaluate global() centrally and answer with CentralEvalEvent or CentralEvalFailedEvent.
// overlapped: the machine goes on with the next round meanwhile; global() stays unchanged
// until the answer is handed over, so the driver may evaluate it on another thread.
struct EvaluateGlobalAction { uint64_t round = 0; bool overlapped = false; };
struct RoundDoneAction {
  uint64_t round = 0;
  uint32_t sampled = 0, succeeded = 0, failed = 0;
  double accuracy = 0, loss = 0, train_loss = 0;
  double round_s = 0;
  std::optional<double> fed_accuracy;
};
// A message that should be logged: kWarn for rejected/late input, kInfo otherwise.
struct LogAction { bool warning = false; std::string text; };
// The run is over: the server sends Shutdown to every client (SendActions precede
// this) and writes the summary.
struct StopAction { std::string reason; bool reached = false; bool failed = false; };
using Action = std::variant<SendAction, EvaluateGlobalAction, RoundDoneAction, LogAction, StopAction>;

struct ClientEntry {
  std::string peer;
  std::string identity;           // registry key: the transport identity or "id:" + client_id
  std::string client_id;
  uint32_t index = 0;
  double joined_s = 0;
  double last_seen_s = 0;
  std::string country;
  double pue = 1.0;
  uint64_t max_examples = 0;      // bound on num_examples in this client's results
};

// What a checkpoint needs to continue the run (coordinator/checkpoint.h). The
// uniform draw and per-client seeds are pure functions of (seed, round, attempt),
// so no RNG state beyond completed_rounds is needed; the carbon-aware policy's
// fairness windows are in sampling_state.
struct MachineSnapshot {
  uint64_t completed_rounds = 0;        // rounds aggregated and evaluated
  Parameters global;                    // the global model after completed_rounds
  std::vector<uint8_t> strategy_state;  // server optimiser state; empty for FedAvg
  std::vector<uint8_t> sampling_state;  // SamplingPolicy state after completed_rounds; empty for uniform
};

class RoundMachine {
 public:
  // `strategy` null: the one options.strategy names (FedAvg by default). An
  // invalid name is reported by Start()/Resume() as a failed stop;
  // ValidateRoundOptions catches it earlier.
  explicit RoundMachine(RoundOptions options, std::unique_ptr<Strategy> strategy = nullptr);
  const Strategy& strategy() const { return *strategy_; }
  const SamplingPolicy& sampling() const { return *sampling_; }

  // Begins the run with the initial global parameters.
  std::vector<Action> Start(double now_s, Parameters initial);
  // Continues a run from a checkpoint: round completed_rounds + 1 comes next.
  std::vector<Action> Resume(double now_s, MachineSnapshot snapshot);
  // The state to checkpoint; complete right after a RoundDoneAction.
  MachineSnapshot Snapshot() const;
  // Handles one event at time now_s.
  std::vector<Action> Handle(const Event& event, double now_s);
  // The ledger's energy after round `round`'s evaluation: `total` for the whole run
  // so far, `this_round` for the round alone (the estimate of the next round's
  // cost). The server calls it before handing over that round's CentralEvalEvent;
  // the budget check (options.budget, budget.h) reads it when the round completes.
  // Without a call, the round counts as free.
  void NoteSpend(uint64_t round, const BudgetSpend& total, const BudgetSpend& this_round);
  // The current UTC hour (0..23), which the sampling policy reads when a round
  // starts (an intensity trace is by hour). The driver calls it before handing
  // over events; without a call (or with -1) the policy uses annual figures.
  void NoteUtcHour(int utc_hour) { utc_hour_ = utc_hour >= 0 && utc_hour < 24 ? utc_hour : -1; }
  // Ends the run from outside (a signal, a fatal I/O error): shuts clients down.
  std::vector<Action> RequestStop(const std::string& reason);

  MachineState state() const { return state_; }
  uint64_t round() const { return round_; }
  const Parameters& global() const { return global_; }
  // The current round's global model encoded by the downlink codec, for the Fit
  // messages; null when the downlink codec is "none" (send global() plain).
  // Clients train from its decoding and send deltas against it; the coordinator
  // adds their mean to its own full-precision global() (docs/codecs.md, "Downlink").
  const EncodedParams* downlink() const { return downlink_.plain() ? nullptr : &downlink_; }
  const std::map<std::string, ClientEntry>& clients() const { return clients_; }
  std::optional<ClientEntry> ClientByPeer(const std::string& peer) const;
  // The round whose central evaluation is outstanding while a later round runs (overlap_eval).
  std::optional<uint64_t> overlapped_eval_round() const {
    return overlapped_ ? std::optional<uint64_t>(overlapped_->done.round) : std::nullopt;
  }
  // Peers sampled in the current attempt that have not answered yet.
  const std::set<std::string>& pending() const { return pending_; }
  // Round deadline, if a round is in flight.
  std::optional<double> deadline_s() const;

 private:
  void OnJoin(const JoinEvent& e, double now, std::vector<Action>* out);
  void OnFitRes(const FitResEvent& e, double now, std::vector<Action>* out);
  void OnFitFailed(const FitFailedEvent& e, double now, std::vector<Action>* out);
  void OnEvaluateRes(const EvaluateResEvent& e, double now, std::vector<Action>* out);
  void OnCentralEval(const CentralEvalEvent& e, double now, std::vector<Action>* out);
  void OnTick(double now, std::vector<Action>* out);
  void MaybeStartRound(double now, std::vector<Action>* out);
  void StartRound(double now, std::vector<Action>* out);
  void FinishFit(double now, std::vector<Action>* out);
  // Every call site of FinishFit: defers it while an overlapped evaluation is outstanding.
  void CompleteFitPhase(double now, std::vector<Action>* out);
  bool OverlapAllowed() const;
  void OnOverlappedEval(const CentralEvalEvent& e, double now, std::vector<Action>* out);
  void MaybeCompleteRound(double now, std::vector<Action>* out);
  void Stop(const std::string& reason, bool reached, bool failed, std::vector<Action>* out);
  // `peer` by value: callers pass keys of clients_, which this erases.
  void DropClient(std::string peer, const std::string& reason, std::vector<Action>* out);
  // Counts a failure against the client; excludes it at the threshold.
  void NoteFailure(const std::string& peer, std::vector<Action>* out);
  void NoteSuccess(const std::string& peer);
  void Refuse(const std::string& peer, ErrorCode code, const std::string& why, const std::string& who,
              std::vector<Action>* out);
  bool Excluded(const std::string& identity) const;
  void EnterWaiting(double now);
  std::string Name(const std::string& peer) const;
  uint64_t ClientSeed(uint32_t index) const;
  uint64_t ExampleBound(uint32_t index, uint64_t declared) const;

  RoundOptions options_;
  MachineState state_ = MachineState::kIdle;
  Parameters global_;
  std::map<std::string, ClientEntry> clients_;  // by peer (routing id)

  // By identity, kept after a client leaves: index binding (CURVE identities
  // only), consecutive failures and exclusion.
  struct History {
    std::optional<uint32_t> bound_index;
    uint32_t consecutive_failures = 0;
    uint64_t excluded_until_round = 0;  // refused while round_ < this
  };
  std::map<std::string, History> history_;

  uint64_t round_ = 0;            // current round, 1-based once started
  uint64_t completed_rounds_ = 0;
  double waiting_since_s_ = 0;    // when the machine last entered kWaitingForClients
  // False until this machine (started or resumed) has run its first round: until
  // then it waits client_wait_s for min_available_clients, as clients (re)join.
  bool assembled_ = false;
  double last_wait_log_s_ = 0;
  uint32_t attempt_ = 0;          // attempt at the current round
  double round_start_s_ = 0;
  double deadline_s_ = 0;
  std::set<std::string> pending_;
  uint32_t sampled_ = 0, succeeded_ = 0, failed_ = 0;
  double train_loss_sum_ = 0;     // sum of n_k * loss_k
  std::unique_ptr<Strategy> strategy_;
  Status strategy_error_;
  std::unique_ptr<SamplingPolicy> sampling_;
  std::vector<uint8_t> sampling_state_;  // sampling_->SaveState() when completed_rounds_ was reached
  int utc_hour_ = -1;                    // NoteUtcHour
  std::unique_ptr<RoundAggregator> aggregator_;  // the current round's
  std::unique_ptr<UpdateCodec> uplink_codec_;    // options_.uplink_codec ("none" if invalid; see codec_error_)
  std::unique_ptr<UpdateCodec> downlink_codec_;  // options_.downlink_codec
  Status codec_error_;
  EncodedParams downlink_;                       // global_ encoded for downlink_round_
  uint64_t downlink_round_ = 0;

  // An overlapped evaluation: round `done.round` is aggregated and being evaluated while
  // round_ (a later round) runs. `done` holds its counts (accuracy filled in on arrival) and
  // `sampling_state` the policy's state before round_ sampled, for Snapshot().
  struct OverlappedEval {
    RoundDoneAction done;
    std::vector<uint8_t> sampling_state;
  };
  std::optional<OverlappedEval> overlapped_;
  bool fit_phase_waiting_ = false;  // round_'s fit phase ended while overlapped_ was outstanding
  // Snapshot() as of the RoundDoneAction that OnOverlappedEval emitted when the same call
  // went on to aggregate the next round; reset by the next Handle().
  std::optional<MachineSnapshot> held_snapshot_;

  // Evaluation phase of the current round.
  std::optional<CentralEvalEvent> central_;
  // NoteSpend of the current round: (round, total, this round).
  uint64_t spend_round_ = 0;
  BudgetSpend spent_total_;
  BudgetSpend spent_round_;
  std::set<std::string> eval_pending_;
  double eval_deadline_s_ = 0;
  double fed_correct_ = 0;        // sum of n_k * accuracy_k
  uint64_t fed_examples_ = 0;
};

}  // namespace greenfed
