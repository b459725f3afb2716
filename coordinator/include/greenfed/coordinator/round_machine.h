// RoundMachine: the coordinator's round logic as a pure state machine.
// Events go in (a client joined, a result arrived, time passed, the central
// evaluation finished) and actions come out (welcome X, send fit to Y, evaluate the
// global model, shut everyone down). It owns the client registry, sampling, the
// per-round deadline and the streaming FedAvg sum; it never touches a socket, a
// clock or a file, so tests drive it with made-up times.
//
// Round life cycle:
//   kWaitingForClients --(>= min_available_clients)--> kFitting
//   kFitting --(all sampled answered, failed, or deadline)--> aggregate if
//       >= min_fit_clients succeeded, then kEvaluating; else retry the round
//   kEvaluating --(central result [+ federated results or deadline])--> next round
//       or kDone at the target accuracy or max_rounds.
// Late results (wrong round, after the deadline, from a client not sampled) are
// discarded with a logged reason. Energy accounting is not done here: the server
// records every report it receives, late or not, because that energy was spent.
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

#include "greenfed/coordinator/fedavg.h"
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
  double eval_timeout_s = 120;          // deadline for federated evaluation results
  PartitionSpec partition;              // sent in Welcome; num_clients is overwritten
  std::string task = "fashion_mnist";   // sent in Welcome
  std::string model = "cnn";            // sent in Welcome
  std::string run_id;                   // sent in Welcome
  uint32_t heartbeat_interval_ms = 1000;  // sent in Welcome
};
Status ValidateRoundOptions(const RoundOptions& options);

enum class MachineState : uint8_t { kIdle, kWaitingForClients, kFitting, kEvaluating, kDone };
const char* MachineStateName(MachineState s);

// ---- Events -------------------------------------------------------------------
struct JoinEvent { std::string peer; JoinMsg join; };
struct HeartbeatEvent { std::string peer; };
struct FitResEvent { std::string peer; FitResMsg result; };
// A sampled client reported that its local training failed (an Error message).
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
struct EvaluateGlobalAction { uint64_t round = 0; };
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
  std::string client_id;
  uint32_t index = 0;
  double last_seen_s = 0;
  std::string country;
  double pue = 1.0;
};

// TEMPORARY (helper ckpt) until the lead's version lands on main (BRIEF): the
// machine's state after a completed round; sampling and client seeds are pure
// functions of (seed, round, attempt), so nothing else needs saving.
struct MachineSnapshot {
  uint64_t completed_rounds = 0;        // rounds aggregated and evaluated
  Parameters global;                    // global model after round completed_rounds
  std::vector<uint8_t> strategy_state;  // empty for FedAvg
};

class RoundMachine {
 public:
  explicit RoundMachine(RoundOptions options);

  // Begins the run with the initial global parameters.
  std::vector<Action> Start(double now_s, Parameters initial);
  // TEMPORARY (see MachineSnapshot). Valid right after a RoundDoneAction.
  MachineSnapshot Snapshot() const;
  // Instead of Start: continues after snapshot.completed_rounds.
  std::vector<Action> Resume(double now_s, MachineSnapshot snapshot);
  // Handles one event at time now_s.
  std::vector<Action> Handle(const Event& event, double now_s);
  // Ends the run from outside (a signal, a fatal I/O error): shuts clients down.
  std::vector<Action> RequestStop(const std::string& reason);

  MachineState state() const { return state_; }
  uint64_t round() const { return round_; }
  const Parameters& global() const { return global_; }
  const std::map<std::string, ClientEntry>& clients() const { return clients_; }
  std::optional<ClientEntry> ClientByPeer(const std::string& peer) const;
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
  void MaybeCompleteRound(double now, std::vector<Action>* out);
  void Stop(const std::string& reason, bool reached, bool failed, std::vector<Action>* out);
  void DropClient(const std::string& peer, const std::string& reason, std::vector<Action>* out);
  std::string Name(const std::string& peer) const;
  uint64_t ClientSeed(uint32_t index) const;

  RoundOptions options_;
  MachineState state_ = MachineState::kIdle;
  Parameters global_;
  std::map<std::string, ClientEntry> clients_;  // by peer (routing id)

  uint64_t round_ = 0;            // current round, 1-based once started
  uint64_t completed_rounds_ = 0;  // last round that produced a RoundDoneAction
  uint32_t attempt_ = 0;          // attempt at the current round
  double round_start_s_ = 0;
  double deadline_s_ = 0;
  std::set<std::string> pending_;
  uint32_t sampled_ = 0, succeeded_ = 0, failed_ = 0;
  double train_loss_sum_ = 0;     // sum of n_k * loss_k
  FedAvgAccumulator fedavg_;

  // Evaluation phase of the current round.
  std::optional<CentralEvalEvent> central_;
  std::set<std::string> eval_pending_;
  double eval_deadline_s_ = 0;
  double fed_correct_ = 0;        // sum of n_k * accuracy_k
  uint64_t fed_examples_ = 0;
};

}  // namespace greenfed
