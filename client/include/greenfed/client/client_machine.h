// ClientMachine: a federated client's logic as a pure state machine, in the style
// of the coordinator's RoundMachine. Events go in (a message from the coordinator
// with its wire size, local work finished, time passed) and actions come out
// (connect afresh, send this message, build the shard, start a fit or an
// evaluation, log, finish, fail). It owns what belongs to the client and not to
// its transport: the join/rejoin logic and the index it asks for, the Welcome and
// its checks, the task's ClientState (and its generation, so that a fit for an
// old shard cannot bring stale state back), the work queue (one Fit/Evaluate kept
// while the shard is being built, BUSY otherwise), and the per-round bookkeeping
// of energy records and bytes that travel with the next result.
//
// It touches no socket, clock, thread or meter: drivers do. `Client` (client.h)
// drives it with a DEALER socket and one worker thread; `greenfed simulate`
// (sim/) drives many of them over an in-process transport and a worker pool.
// Both run the same work functions (RunFitWork, RunEvaluateWork) on their
// workers, with their own meter.
//
// Driver contract:
//  - Call Start once; execute the actions of every call in order.
//  - SendAction: encode and send the message; on success call Sent() with the
//    encoded bytes (they are counted for the message's round). A failed send of a
//    message with `fatal_on_failure` ends the driver with that error.
//  - ConnectAction: drop the current connection (if any) and open a fresh one.
//  - StartPrepareAction / StartFitAction / StartEvaluateAction: run the work off
//    the event loop and hand back a WorkDoneEvent (only while joined(): work that
//    ends during a rejoin is handed back after the next Welcome). Metered energy
//    of the idle time before the work goes in through AddEnergy first.
//  - FinishAction: let running work end (AddEnergy its records), AddEnergy the idle
//    records up to LastRound(), execute Finish()'s actions and return Result().
//  - FailAction: return the status.
// Thread safety: not thread-safe; one driver thread per machine.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "greenfed/carbon.h"
#include "greenfed/energy_record.h"
#include "greenfed/meter.h"
#include "greenfed/protocol.h"
#include "greenfed/status.h"
#include "greenfed/task.h"

namespace greenfed {

struct ClientOptions {
  std::string connect = "tcp://127.0.0.1:5555";  // coordinator endpoint
  std::string client_id;                  // defaults to hostname-pid when empty
  int32_t requested_index = -1;           // -1: the coordinator assigns one
  uint32_t expected_num_clients = 0;      // 0: accept the coordinator's; else must match
  std::string expected_partition;         // "": accept the coordinator's scheme; else must match
  TaskOptions task;                       // data dir, threads, caps; partition comes from Welcome
  // Own-data mode (task.own_data_path set): the client prepares this registered task
  // with task.model on its own file before joining, declares its example count in
  // Join, and refuses a coordinator that runs another task or model, or partitions
  // (its Welcome scheme is not "none"). Unused in partitioned mode.
  std::string own_data_task;
  std::string country = "WORLD";          // ISO 3166-1 alpha-3 of this device
  double pue = 1.0;                       // 1.0 for a device at home
  CommModel comm;                         // energy per byte moved
  double connect_timeout_s = 300;         // give up when no coordinator answers this long (0 = never)
  double initial_backoff_s = 0.5;         // first retry delay; doubles up to max_backoff_s
  double max_backoff_s = 5.0;
  double coordinator_timeout_s = 120;     // silence after which the client rejoins
  uint64_t max_message_bytes = kDefaultMaxMessageBytes;  // larger messages are drained unread and refused
  // Transport security (docs/deployment.md, "Security"); read by Client only.
  std::string curve_secret_key;           // this client's Z85 secret key; "" = no CURVE
  std::string curve_public_key;           // this client's Z85 public key (from the same .key file)
  std::string curve_server_key;           // the coordinator's Z85 public key, pinned
  bool insecure = false;                  // plaintext; must be asked for explicitly
  int max_handshake_failures = 3;         // failed CURVE handshakes in a row before giving up
  // Fault injection for robustness experiments (docs/strategies.md): this client
  // turns its honest update d = w_local - w_global into attack_scale * d before
  // sending, e.g. 100 (a scaled update) or -1 (a sign flip). 1 = honest.
  double attack_scale = 1.0;
};

struct ClientResult {
  uint32_t client_index = 0;
  uint64_t rounds_trained = 0;
  std::string shutdown_reason;
};

// ---- Events -------------------------------------------------------------------
// A decoded message from the coordinator and the bytes it took on the wire.
struct ClientMessageEvent { Message message; uint64_t wire_bytes = 0; };
// Bytes that arrived but were refused or not decoded (the driver logs why).
struct ClientRefusedEvent { uint64_t wire_bytes = 0; };
enum class WorkKind : uint8_t { kPrepare, kFit, kEvaluate };
// Local work ended (the driver's worker ran it).
struct WorkDoneEvent {
  WorkKind kind = WorkKind::kPrepare;
  uint64_t round = 0;
  Status status;
  FitResult fit;                    // kFit
  bool is_delta = false;            // kFit: fit.parameters hold w_local - w_global
  EncodedParams encoded;            // kFit, lossy uplink codec: the encoded delta (fit.parameters empty)
  EvalResult eval;                  // kEvaluate
  uint64_t num_train_examples = 0;  // kPrepare: the shard's size
  ClientState state;                // kFit: the task's state after this round, handed back
  uint64_t state_generation = 0;    // kFit: the generation it was taken from
  double wall_s = 0;                // kFit: seconds the fit took
  std::vector<EnergyRecord> energy;  // what the work's meter recorded
};
// Time passed (heartbeats, join backoff, coordinator silence).
struct ClientTickEvent {};
// Stop from outside (a signal): finish as on Shutdown.
struct ClientStopEvent { std::string reason = "stopped by signal"; };
using ClientEvent = std::variant<ClientMessageEvent, ClientRefusedEvent, WorkDoneEvent, ClientTickEvent,
                                 ClientStopEvent>;

// ---- Actions ------------------------------------------------------------------
struct ClientSendAction { Message message; bool fatal_on_failure = false; };
struct ConnectAction {};
// Create task `task` from the registry and Prepare it with `options`.
struct StartPrepareAction { std::string task; TaskOptions options; };
struct StartFitAction {
  uint64_t round = 0;
  FitRequest request;             // request.parameters empty when the Fit's model is encoded
  EncodedParams downlink;         // the Fit's model as the downlink codec encoded it (codec "none": plain)
  ClientState state;              // moved to the worker; comes back in WorkDoneEvent
  uint64_t state_generation = 0;
  double attack_scale = 1.0;      // ClientOptions::attack_scale
};
struct StartEvaluateAction { uint64_t round = 0; Parameters parameters; };
struct ClientLogAction { bool warning = false; std::string text; };
struct FinishAction { std::string reason; };
struct FailAction { Status status; };
using ClientAction = std::variant<ClientSendAction, ConnectAction, StartPrepareAction, StartFitAction,
                                  StartEvaluateAction, ClientLogAction, FinishAction, FailAction>;

class ClientMachine {
 public:
  // `task_capabilities`: what the task announces at Join (AnnouncedCapabilities).
  // `own_data_examples`: own-data mode, the size of the file the driver prepared.
  ClientMachine(ClientOptions options, std::vector<std::string> task_capabilities, uint64_t own_data_examples = 0);

  std::vector<ClientAction> Start(double now_s);
  std::vector<ClientAction> Handle(ClientEvent event, double now_s);
  // The driver sent `message` in `wire_bytes` bytes.
  void Sent(const Message& message, uint64_t wire_bytes);
  // Metered records to report with the next message (idle time, unfinished work).
  void AddEnergy(std::vector<EnergyRecord> records);
  // After FinishAction: the last heartbeat (everything not yet reported) and the
  // log line; the driver sends it if it still has a connection.
  std::vector<ClientAction> Finish(const std::string& reason);
  ClientResult Result(const std::string& reason) const;

  bool joined() const { return phase_ == Stage::kJoined; }
  bool working() const { return working_; }
  // The round idle time belongs to: the latest round seen, at least 1.
  uint64_t LastRound() const { return std::max<uint64_t>(last_round_, 1); }
  // When the next timer is due (join backoff, heartbeat, coordinator silence).
  double NextWakeupS() const;
  const ClientState& state() const { return state_; }
  const std::optional<WelcomeMsg>& welcome() const { return welcome_; }
  uint64_t rounds_trained() const { return rounds_trained_; }

 private:
  enum class Stage : uint8_t { kIdle, kJoining, kJoined, kDone };
  void BeginJoin(double now, std::vector<ClientAction>* out);
  void SendJoin(std::vector<ClientAction>* out);
  void OnMessage(ClientMessageEvent& e, double now, std::vector<ClientAction>* out);
  void OnWelcome(const WelcomeMsg& w, double now, std::vector<ClientAction>* out);
  void OnWorkDone(WorkDoneEvent& r, std::vector<ClientAction>* out);
  void OnTick(double now, std::vector<ClientAction>* out);
  void StartPrepare(std::vector<ClientAction>* out);
  void StartWork(Message m, std::vector<ClientAction>* out);
  void Done(std::vector<ClientAction>* out, ClientAction last);
  Status CheckWelcome(const WelcomeMsg& w) const;
  std::vector<EnergyRecord> TakeEnergy();
  uint64_t RoundOf(const Message& m) const;
  bool OwnData() const { return !options_.task.own_data_path.empty(); }
  void Log(bool warning, std::string text, std::vector<ClientAction>* out) const;

  ClientOptions options_;
  std::vector<std::string> task_capabilities_;
  Stage phase_ = Stage::kIdle;
  // Joining: when the current attempt's wait ends, its backoff, and when the
  // coordinator was last heard of during the join (for connect_timeout_s).
  double join_wait_until_s_ = 0;
  double backoff_s_ = 0;
  double join_started_s_ = 0;

  std::optional<WelcomeMsg> welcome_;
  bool prepared_ = false;
  uint64_t num_train_examples_ = 0;
  bool working_ = false;
  std::optional<Message> queued_;  // a Fit/Evaluate that arrived while the shard was being built

  // The task's state across rounds (task.h ClientState). A fit moves it to the
  // worker and the WorkDoneEvent moves it back, so that only one thread ever holds
  // it. It starts empty; when the coordinator gives this client another shard on
  // rejoin, it is dropped and state_generation_ moves on, so that a fit still
  // running for the old shard cannot bring it back.
  ClientState state_;
  uint64_t state_generation_ = 0;

  std::vector<EnergyRecord> unreported_;
  // Energy sent since the coordinator last said anything. A coordinator that answers
  // kNotJoined ("join first") does not know this client (it was restarted, or dropped
  // us), so it booked none of it: it goes back to `unreported_` and is reported once,
  // after the rejoin.
  std::vector<EnergyRecord> unconfirmed_;
  // Bytes moved but not yet reported, by the round they belong to: a message about
  // round r (Fit, FitRes, Evaluate...) counts for r, heartbeats for the latest round seen.
  std::map<uint64_t, std::pair<uint64_t, uint64_t>> unreported_bytes_;  // round -> (sent, received)
  uint64_t last_round_ = 0;
  uint64_t rounds_trained_ = 0;
  double last_heard_s_ = 0;
  double last_heartbeat_s_ = 0;
};

// The capabilities a client announces for its task. The task is named only in the
// Welcome, so a client announces a capability only when every task registered
// supports it (for the usual one-task registry: that task's own); in own-data mode
// (`own` prepared before Join) the task's own. Bounded so that Join stays decodable.
std::vector<std::string> AnnouncedCapabilities(const TaskRegistry& tasks, const Task* own);

// ---- Work, run on the driver's worker -----------------------------------------
// Meters `work` as `phase` of `round` and returns its records.
using WorkMeterFn = std::function<std::vector<EnergyRecord>(Phase phase, int64_t round,
                                                            const std::function<void()>& work)>;
// Task::Fit with the client's update rules: the global model decoded when the Fit
// carries it encoded (DecodeFitParameters), the attack scale, then the delta when
// the config asks for it ("send_delta"), then, with a lossy uplink codec (config
// "uplink_codec"), the delta encoded with error feedback in the state's
// "codec_residual" group (EncodeUpdate, update_encoding.h). Decode, fit and encode
// are metered together as the fit. `now_s` reads the wall clock for fit_s.
WorkDoneEvent RunFitWork(Task& task, StartFitAction action, const WorkMeterFn& meter,
                         const std::function<double()>& now_s);
WorkDoneEvent RunEvaluateWork(Task& task, const StartEvaluateAction& action, const WorkMeterFn& meter);

}  // namespace greenfed
