#include "greenfed/client/client.h"

#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <iterator>
#include <cstring>
#include <future>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <new>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "greenfed/client/fit_slots.h"
#include "greenfed/keys.h"
#include "greenfed/transport.h"
#include "handshake_monitor.h"

namespace greenfed {

namespace {

std::string DefaultClientId() {
  char host[256] = {0};
  if (::gethostname(host, sizeof(host) - 1) != 0) std::strcpy(host, "host");
  return std::string(host) + "-" + std::to_string(::getpid());
}

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

enum class WorkKind { kPrepare, kFit, kEvaluate };

struct WorkResult {
  WorkKind kind = WorkKind::kPrepare;
  uint64_t round = 0;
  Status status;
  FitResult fit;
  EvalResult eval;
  bool is_delta = false;
  ClientState state;            // kFit: the task's state after this round, handed back
  uint64_t state_generation = 0;  // the generation it was taken from
  double wall_s = 0;
  std::vector<EnergyRecord> energy;
};

}  // namespace

struct Client::Impl {
  ClientOptions options;
  const TaskRegistry* tasks;
  PhaseMeter* meter;
  Env* env;
  Logger* log;

  zmq::context_t ctx{1};
  std::unique_ptr<zmq::socket_t> socket;
  HandshakeMonitor handshakes;            // why a connection never completes
  bool logged_too_large = false;
  std::mt19937_64 rng{std::random_device{}()};

  std::unique_ptr<Task> task;
  bool prepared = false;
  std::optional<WelcomeMsg> welcome;
  std::future<WorkResult> work;
  bool working = false;
  std::optional<Message> queued;  // a Fit/Evaluate that arrived while the shard was being built
  // Fit slots (fit_slots.h): set from options in Run(); a fit waits for one, metered as idle.
  // stop_slot_wait ends such a wait when the client shuts down.
  std::optional<FitSlots> fit_slots;
  std::atomic<bool> stop_slot_wait{false};

  // The task's state across rounds (task.h ClientState). A fit moves it to the
  // worker and FinishWork moves it back, so that only one thread ever holds it. It
  // starts empty in every process; when the coordinator gives this client another
  // shard on rejoin, it is dropped and state_generation moves on, so that a fit
  // still running for the old shard cannot bring it back.
  ClientState state;
  uint64_t state_generation = 0;
  std::optional<std::vector<std::string>> task_capabilities;  // announced at Join

  std::vector<EnergyRecord> unreported;
  // Energy sent since the coordinator last said anything. A coordinator that answers
  // kNotJoined ("join first") does not know this client (it was restarted, or dropped us), so it
  // booked none of it: it goes back to `unreported` and is reported once, after the
  // rejoin.
  std::vector<EnergyRecord> unconfirmed;
  // Bytes moved but not yet reported, by the round they belong to: a message
  // about round r (Fit, FitRes, Evaluate...) counts for r, heartbeats for the
  // latest round seen.
  std::map<uint64_t, std::pair<uint64_t, uint64_t>> unreported_bytes;  // round -> (sent, received)
  PhaseMeter::Mark idle_mark;
  uint64_t last_round = 0;
  uint64_t rounds_trained = 0;
  double last_heard_s = 0;
  double last_heartbeat_s = 0;

  Impl(ClientOptions o, const TaskRegistry* t, PhaseMeter* m, Env* e, Logger* l)
      : options(std::move(o)), tasks(t), meter(m), env(e), log(l),
        handshakes(options.connect, options.max_handshake_failures, options.insecure) {
    if (options.client_id.empty()) options.client_id = DefaultClientId();
  }

  Status Open() {
    const bool curve = !options.curve_secret_key.empty();
    if (!curve && !options.insecure) {
      return FailedPrecondition("no CURVE keys for this client (--secret-key and --server-key); plaintext needs --insecure");
    }
    if (curve) {
      GREENFED_RETURN_IF_ERROR(ValidateZ85Key(options.curve_secret_key).WithContext("client secret key"));
      GREENFED_RETURN_IF_ERROR(ValidateZ85Key(options.curve_public_key).WithContext("client public key"));
      if (options.curve_server_key.empty()) return FailedPrecondition("CURVE needs the coordinator's public key (--server-key)");
      GREENFED_RETURN_IF_ERROR(ValidateZ85Key(options.curve_server_key).WithContext("coordinator public key"));
    }
    try {
      socket = std::make_unique<zmq::socket_t>(ctx, zmq::socket_type::dealer);
      std::ostringstream id;
      id << options.client_id << "-" << std::hex << rng();
      socket->set(zmq::sockopt::routing_id, id.str());
      socket->set(zmq::sockopt::linger, 0);
      socket->set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(options.max_message_bytes));
      if (curve) {
        socket->set(zmq::sockopt::curve_serverkey, options.curve_server_key);
        socket->set(zmq::sockopt::curve_publickey, options.curve_public_key);
        socket->set(zmq::sockopt::curve_secretkey, options.curve_secret_key);
      }
      // The handshake fails silently in ZeroMQ; its monitor tells (a plaintext client
      // meeting a CURVE coordinator fails the same way).
      GREENFED_RETURN_IF_ERROR(handshakes.Attach(&ctx, socket.get()));
      socket->connect(options.connect);
    } catch (const zmq::error_t& e) {
      return InvalidArgument("cannot connect to " + options.connect + ": " + e.what());
    }
    return Status::Ok();
  }

  void Close() {
    handshakes.Detach();
    if (socket) socket->close();
    socket.reset();
  }

  Status Send(const Message& m) {
    const Frames frames = Encode(m);
    try {
      for (size_t i = 0; i < frames.size(); ++i) {
        auto r = socket->send(zmq::buffer(frames[i]),
                              i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::dontwait);
        if (!r) return Unavailable("send queue full");
      }
    } catch (const zmq::error_t& e) {
      return Unavailable(std::string("send failed: ") + e.what());
    }
    unreported_bytes[RoundOf(m)].first += FramesBytes(frames);
    const std::vector<EnergyRecord>* energy = nullptr;
    if (auto* f = std::get_if<FitResMsg>(&m)) energy = &f->energy;
    if (auto* e = std::get_if<EvaluateResMsg>(&m)) energy = &e->energy;
    if (auto* h = std::get_if<HeartbeatMsg>(&m)) energy = &h->energy;
    if (energy != nullptr) unconfirmed.insert(unconfirmed.end(), energy->begin(), energy->end());
    return Status::Ok();
  }

  // Waits up to timeout_ms. Returns: a decoded message, nullopt on timeout, or an
  // error (including a failed CURVE handshake). Sets *stop when stop_fd fired.
  StatusOr<std::optional<Message>> Receive(long timeout_ms, int stop_fd, bool* stop) {
    GREENFED_RETURN_IF_ERROR(handshakes.Check());
    std::vector<zmq::pollitem_t> items = {{static_cast<void*>(*socket), 0, ZMQ_POLLIN, 0}};
    const size_t stop_item = items.size();
    if (stop_fd >= 0) items.push_back({nullptr, stop_fd, ZMQ_POLLIN, 0});
    if (void* m = handshakes.pollable()) items.push_back({m, 0, ZMQ_POLLIN, 0});
    try {
      zmq::poll(items.data(), items.size(), std::chrono::milliseconds(timeout_ms));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) return std::optional<Message>();
      return Unavailable(std::string("poll failed: ") + e.what());
    }
    if (stop_fd >= 0 && (items[stop_item].revents & ZMQ_POLLIN)) {
      signalfd_siginfo info{};
      if (::read(stop_fd, &info, sizeof(info)) < 0) { /* the request stands either way */ }
      *stop = true;
      return std::optional<Message>();
    }
    GREENFED_RETURN_IF_ERROR(handshakes.Check());
    if (!(items[0].revents & ZMQ_POLLIN)) return std::optional<Message>();
    ReceiveLimits limits;
    limits.max_message_bytes = options.max_message_bytes;
    StatusOr<std::optional<ReceivedMessage>> got = Internal("not received");
    try {
      got = ReceiveBounded(static_cast<void*>(*socket), limits);
    } catch (const std::bad_alloc&) {
      log->Warn("out of memory while receiving a message from the coordinator; it was dropped");
      return std::optional<Message>();
    }
    if (!got.ok()) return got.status();
    if (!*got) return std::optional<Message>();
    ReceivedMessage& r = **got;
    if (r.outcome != ReceiveOutcome::kMessage) {
      unreported_bytes[std::max<uint64_t>(last_round, 1)].second += r.wire_bytes;
      if (!logged_too_large) {
        log->Warn(std::string("refused a message from the coordinator (") + ReceiveOutcomeName(r.outcome) + "): " +
                  std::to_string(r.wire_bytes) + " bytes in " + std::to_string(r.num_frames) +
                  " frames, limit " + std::to_string(options.max_message_bytes) +
                  " bytes; discarded unread (logged once)");
        logged_too_large = true;
      }
      return std::optional<Message>();
    }
    StatusOr<Message> m = Internal("not decoded");
    try {
      m = Decode(r.frames, options.max_message_bytes);
    } catch (const std::bad_alloc&) {
      m = OutOfRange("out of memory decoding a message of " + std::to_string(r.wire_bytes) + " bytes");
    }
    if (!m.ok()) {
      unreported_bytes[std::max<uint64_t>(last_round, 1)].second += r.wire_bytes;
      log->Warn("rejected message from the coordinator: " + m.status().message());
      return std::optional<Message>();
    }
    unreported_bytes[RoundOf(*m)].second += r.wire_bytes;
    last_heard_s = env->NowSeconds();
    const auto* err = std::get_if<ErrorMsg>(&*m);
    if (err != nullptr && err->code == ErrorCode::kNotJoined && !unconfirmed.empty()) {
      log->Info("the coordinator does not know this client: " + std::to_string(unconfirmed.size()) +
                " energy records it did not book will be reported again after rejoining");
      unreported.insert(unreported.end(), unconfirmed.begin(), unconfirmed.end());
    }
    unconfirmed.clear();
    return std::optional<Message>(std::move(m).value());
  }

  uint64_t RoundOf(const Message& m) const {
    uint64_t r = last_round;
    if (auto* f = std::get_if<FitMsg>(&m)) r = f->round;
    if (auto* f = std::get_if<FitResMsg>(&m)) r = f->round;
    if (auto* e = std::get_if<EvaluateMsg>(&m)) r = e->round;
    if (auto* e = std::get_if<EvaluateResMsg>(&m)) r = e->round;
    return std::max<uint64_t>(r, 1);
  }

  // Moves idle time into `unreported`, tagged with `round`.
  void CloseIdle(uint64_t round) {
    std::vector<std::string> warnings;
    auto records = meter->End(idle_mark, Phase::kIdle, static_cast<int64_t>(round), &warnings);
    for (const auto& w : warnings) log->Warn(w);
    unreported.insert(unreported.end(), records.begin(), records.end());
    idle_mark = meter->Begin();
  }

  // Everything not yet reported: metered phases and one comm record per round.
  std::vector<EnergyRecord> TakeEnergy() {
    std::vector<EnergyRecord> out = std::move(unreported);
    unreported.clear();
    for (const auto& [round, bytes] : unreported_bytes) {
      EnergyRecord comm;
      comm.phase = Phase::kComm;
      comm.round = static_cast<int64_t>(round);
      comm.bytes_sent = bytes.first;
      comm.bytes_received = bytes.second;
      comm.energy_j = CommEnergyJ(options.comm, bytes.first, bytes.second);
      comm.source = EnergySource::kComm;
      comm.measured = false;
      out.push_back(comm);
    }
    unreported_bytes.clear();
    return out;
  }

  void StartPrepare() {
    TaskOptions topt = options.task;
    topt.role = TaskRole::kClient;
    topt.partition = welcome->partition;
    topt.client_index = welcome->client_index;
    topt.model = welcome->model;
    auto created = tasks->Create(welcome->task);
    if (!created.ok()) {
      std::promise<WorkResult> p;
      WorkResult r;
      r.status = created.status();
      p.set_value(std::move(r));
      work = p.get_future();
      working = true;
      return;
    }
    task = std::move(created).value();
    Task* t = task.get();
    working = true;
    work = std::async(std::launch::async, [t, topt] {
      WorkResult r;
      r.kind = WorkKind::kPrepare;
      r.status = t->Prepare(topt);
      return r;
    });
  }

  void StartWork(Message m) {
    if (auto* fit = std::get_if<FitMsg>(&m)) {
      CloseIdle(fit->round);
      last_round = fit->round;
      Task* t = task.get();
      PhaseMeter* pm = meter;
      Env* e = env;
      working = true;
      const double attack = options.attack_scale;
      const FitSlots* slots = fit_slots ? &*fit_slots : nullptr;
      const uint32_t slot_hint = welcome ? welcome->client_index : 0;
      std::atomic<bool>* stop_wait = &stop_slot_wait;
      FitRequest request;
      request.parameters = std::move(fit->parameters);
      request.groups = std::move(fit->groups);
      request.config = std::move(fit->config);
      const uint64_t round = fit->round;
      work = std::async(std::launch::async, [t, pm, e, attack, round, slots, slot_hint, stop_wait,
                                             req = std::move(request), st = std::move(state),
                                             gen = state_generation]() mutable {
        WorkResult r;
        r.kind = WorkKind::kFit;
        r.round = round;
        r.state_generation = gen;
        StatusOr<bool> send_delta = ConfigBool(req.config, "send_delta", false);
        if (!send_delta.ok()) {
          r.status = send_delta.status();
          r.state = std::move(st);
          return r;
        }
        // Wait for a fit slot (`greenfed run`: no more concurrent fits than cores); the wait
        // is idle time, not training.
        FitSlot slot;
        if (slots != nullptr) {
          auto wait_mark = pm->Begin();
          auto got = slots->Acquire(slot_hint, stop_wait);
          r.energy = pm->End(wait_mark, Phase::kIdle, static_cast<int64_t>(round));
          if (!got.ok()) {
            r.status = got.status();
            r.state = std::move(st);
            return r;
          }
          slot = std::move(got).value();
        }
        const double t0 = e->NowSeconds();
        auto mark = pm->Begin();
        auto res = t->Fit(req, st);
        auto fit_energy = pm->End(mark, Phase::kFit, static_cast<int64_t>(round));
        r.wall_s = e->NowSeconds() - t0;
        slot.Release();
        r.energy.insert(r.energy.end(), fit_energy.begin(), fit_energy.end());
        r.state = std::move(st);
        if (!res.ok()) {
          r.status = res.status();
          return r;
        }
        r.fit = std::move(res).value();
        if (attack != 1.0) r.fit.parameters = ScaleUpdate(r.fit.parameters, req.parameters, attack);
        if (*send_delta) {
          r.fit.parameters = Delta(r.fit.parameters, req.parameters);
          r.is_delta = true;
        }
        return r;
      });
    } else if (auto* ev = std::get_if<EvaluateMsg>(&m)) {
      CloseIdle(ev->round);
      Task* t = task.get();
      PhaseMeter* pm = meter;
      working = true;
      work = std::async(std::launch::async, [t, pm, msg = std::move(*ev)] {
        WorkResult r;
        r.kind = WorkKind::kEvaluate;
        r.round = msg.round;
        auto mark = pm->Begin();
        auto res = t->Evaluate(msg.parameters);
        r.energy = pm->End(mark, Phase::kEvaluate, static_cast<int64_t>(msg.round));
        if (!res.ok()) {
          r.status = res.status();
          return r;
        }
        r.eval = *res;
        return r;
      });
    }
  }

  // Sends the result of finished work. A failed Prepare is fatal.
  Status FinishWork() {
    WorkResult r = work.get();
    working = false;
    idle_mark = meter->Begin();
    if (r.kind == WorkKind::kFit && r.state_generation == state_generation) state = std::move(r.state);
    unreported.insert(unreported.end(), r.energy.begin(), r.energy.end());
    if (r.kind == WorkKind::kPrepare) {
      if (!r.status.ok()) {
        (void)Send(ErrorMsg{ErrorCode::kFitFailed, 0, "cannot build its shard: " + r.status.message()});
        return r.status.WithContext("client-" + std::to_string(welcome->client_index) + " cannot build its shard");
      }
      prepared = true;
      log->Info("client-" + std::to_string(welcome->client_index) + " ready: " +
                std::to_string(task->NumTrainExamples()) + " training examples (" + welcome->partition.scheme + ")");
      if (queued) {
        Message m = std::move(*queued);
        queued.reset();
        StartWork(std::move(m));
      }
      return Status::Ok();
    }
    if (!r.status.ok()) {
      log->Warn("round " + std::to_string(r.round) + " failed locally: " + r.status.ToString());
      return Send(ErrorMsg{r.kind == WorkKind::kEvaluate ? ErrorCode::kEvalFailed : ErrorCode::kFitFailed, r.round,
                           r.status.ToString()});
    }
    if (r.kind == WorkKind::kFit) {
      FitResMsg res;
      res.round = r.round;
      res.is_delta = r.is_delta;
      res.num_examples = r.fit.num_examples;
      res.train_loss = r.fit.train_loss;
      res.fit_s = r.wall_s;
      res.parameters = std::move(r.fit.parameters);
      res.groups = std::move(r.fit.groups);
      res.energy = TakeEnergy();
      ++rounds_trained;
      log->Info("round " + std::to_string(r.round) + ": trained on " + std::to_string(res.num_examples) +
                " examples in " + std::to_string(r.wall_s) + " s, loss " + std::to_string(res.train_loss));
      return Send(res);
    }
    EvaluateResMsg res;
    res.round = r.round;
    res.loss = r.eval.loss;
    res.accuracy = r.eval.accuracy;
    res.num_examples = r.eval.num_examples;
    res.energy = TakeEnergy();
    return Send(res);
  }

  enum class JoinOutcome { kWelcomed, kRunOver };

  StatusOr<JoinOutcome> Join(int stop_fd, bool* stop) {
    double started = env->NowSeconds();
    double backoff = options.initial_backoff_s;
    for (;;) {
      GREENFED_RETURN_IF_ERROR(Open());
      JoinMsg j;
      j.client_id = options.client_id;
      j.requested_index = welcome ? static_cast<int32_t>(welcome->client_index) : options.requested_index;
      j.num_examples = prepared ? task->NumTrainExamples() : 0;
      j.capabilities = {"delta", "evaluate", "meter"};
      for (const std::string& cap : TaskCapabilities()) j.capabilities.push_back(cap);
      j.country = options.country;
      j.pue = options.pue;
      GREENFED_RETURN_IF_ERROR(Send(j));
      const double wait_until = env->NowSeconds() + backoff;
      while (env->NowSeconds() < wait_until) {
        const auto left_ms = static_cast<long>((wait_until - env->NowSeconds()) * 1000) + 1;
        GREENFED_ASSIGN_OR_RETURN(auto m, Receive(left_ms, stop_fd, stop));
        if (*stop) return JoinOutcome::kRunOver;
        if (!m) continue;
        if (auto* w = std::get_if<WelcomeMsg>(&*m)) {
          GREENFED_RETURN_IF_ERROR(CheckWelcome(*w));
          const bool same_shard = welcome && welcome->client_index == w->client_index &&
                                  welcome->partition.scheme == w->partition.scheme &&
                                  welcome->partition.seed == w->partition.seed &&
                                  welcome->partition.num_clients == w->partition.num_clients &&
                                  welcome->partition.alpha == w->partition.alpha;
          if (!same_shard && !OwnData()) prepared = false;
          if (welcome && !same_shard && !OwnData()) DropState(*w);
          welcome = *w;
          log->Info("joined " + options.connect + " as client-" + std::to_string(w->client_index) + " of " +
                    std::to_string(w->partition.num_clients) + " (run " + w->run_id + ")");
          return JoinOutcome::kWelcomed;
        }
        if (auto* err = std::get_if<ErrorMsg>(&*m)) {
          started = env->NowSeconds();  // an answer: the coordinator is there, so keep trying
          const std::string what = std::string(ErrorCodeName(err->code)) + ": " + EscapeForLog(err->message);
          switch (err->code) {
            case ErrorCode::kRunOver:
              return JoinOutcome::kRunOver;
            case ErrorCode::kIndexOutOfRange:
            case ErrorCode::kIncompatible:
            case ErrorCode::kBadIdentifier:
            case ErrorCode::kVersionMismatch:
            case ErrorCode::kBadMessage:
              // Retrying cannot help: the same join would be refused again.
              return InvalidArgument("coordinator refused to admit this client: " + what);
            default:
              // Index taken, identity in use, federation full, excluded: the
              // holder may leave or the exclusion end, so retry with backoff.
              log->Warn("coordinator answered " + what);
          }
        }
      }
      Close();
      if (options.connect_timeout_s > 0 && env->NowSeconds() - started >= options.connect_timeout_s) {
        return Unavailable("no coordinator answered at " + options.connect + " within " +
                           std::to_string(static_cast<int>(options.connect_timeout_s)) + " s");
      }
      log->Info("no answer from coordinator at " + options.connect + "; retrying in " + std::to_string(backoff) + " s");
      backoff = std::min(backoff * 2, options.max_backoff_s);
    }
  }

  bool OwnData() const { return !options.task.own_data_path.empty(); }

  // Own-data mode: the task is prepared on the client's own file before the first
  // Join, so that Join can declare its example count.
  Status PrepareOwnData() {
    GREENFED_ASSIGN_OR_RETURN(task, tasks->Create(options.own_data_task));
    TaskOptions topt = options.task;
    topt.role = TaskRole::kClient;
    GREENFED_RETURN_IF_ERROR(task->Prepare(topt).WithContext("own data " + options.task.own_data_path));
    prepared = true;
    log->Info("own data " + options.task.own_data_path + ": " + std::to_string(task->NumTrainExamples()) +
              " training examples (" + options.own_data_task + ")");
    return Status::Ok();
  }

  // The capabilities this client announces for its task. The task is named only in
  // the Welcome, so a client announces a capability only when every task it has
  // registered supports it (for the usual one-task registry: that task's own).
  const std::vector<std::string>& TaskCapabilities() {
    if (task_capabilities) return *task_capabilities;
    if (OwnData() && task) {
      // Own data: the task is known (and prepared) before Join, so announce its own.
      std::vector<std::string> own = task->Capabilities();
      if (own.size() + 3 > kMaxCapabilities) own.resize(kMaxCapabilities - 3);
      task_capabilities = std::move(own);
      return *task_capabilities;
    }
    std::vector<std::string> common;
    bool first = true;
    for (const std::string& name : tasks->Names()) {
      auto created = tasks->Create(name);
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
    if (common.size() + 3 > kMaxCapabilities) common.resize(kMaxCapabilities - 3);
    task_capabilities = std::move(common);
    return *task_capabilities;
  }

  // The coordinator gave this client another shard: what the task kept for the
  // old one does not belong to the new one.
  void DropState(const WelcomeMsg& w) {
    ++state_generation;
    log->Info("client state dropped (" + std::to_string(state.size()) + " groups): the coordinator assigned client-" +
              std::to_string(w.client_index) + " instead of client-" + std::to_string(welcome->client_index) +
              " on rejoin");
    state.clear();
  }

  Status CheckWelcome(const WelcomeMsg& w) {
    if (OwnData()) {
      if (w.partition.scheme != "none") {
        return InvalidArgument("this client trains on its own data (--data) but the coordinator partitions the data "
                               "set (--partition " + w.partition.scheme + "); start the coordinator with --partition none");
      }
      if (w.task != options.own_data_task || w.model != options.task.model) {
        return InvalidArgument("this client was started with --task " + options.own_data_task + " --model " +
                               options.task.model + " but the coordinator runs task " + w.task + ", model " + w.model);
      }
    }
    if (options.expected_num_clients != 0 && w.partition.num_clients != options.expected_num_clients) {
      return InvalidArgument("this client was started with --num-clients " +
                             std::to_string(options.expected_num_clients) + " but the coordinator runs " +
                             std::to_string(w.partition.num_clients));
    }
    if (!options.expected_partition.empty() && w.partition.scheme != options.expected_partition) {
      return InvalidArgument("this client was started with --partition " + options.expected_partition +
                             " but the coordinator uses " + w.partition.scheme);
    }
    return Status::Ok();
  }

  StatusOr<ClientResult> Run(int stop_fd) {
    if (!options.fit_slots_dir.empty()) {
      FitSlotsOptions so;
      so.dir = options.fit_slots_dir;
      so.slots = options.fit_slots;
      GREENFED_ASSIGN_OR_RETURN(FitSlots opened, FitSlots::Open(so));
      fit_slots.emplace(std::move(opened));
      log->Info("fit slots: at most " + std::to_string(so.slots) + " concurrent fits on this machine (" + so.dir + ")");
    }
    if (OwnData()) GREENFED_RETURN_IF_ERROR(PrepareOwnData());
    idle_mark = meter->Begin();
    log->Info("client state: empty (a new client process keeps nothing from an earlier one)");
    bool stop = false;
    for (;;) {
      GREENFED_ASSIGN_OR_RETURN(JoinOutcome joined, Join(stop_fd, &stop));
      if (joined == JoinOutcome::kRunOver || stop) return Finish(stop ? "stopped by signal" : "the run is over");
      last_heard_s = last_heartbeat_s = env->NowSeconds();
      if (!prepared && !working) StartPrepare();
      const double hb_s = welcome->heartbeat_interval_ms / 1000.0;
      bool rejoin = false;
      while (!rejoin) {
        GREENFED_ASSIGN_OR_RETURN(auto m, Receive(100, stop_fd, &stop));
        if (stop) return Finish("stopped by signal");
        if (working && work.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
          GREENFED_RETURN_IF_ERROR(FinishWork());
        }
        const double now = env->NowSeconds();
        if (now - last_heartbeat_s >= hb_s) {
          (void)Send(HeartbeatMsg{last_round, {}});
          last_heartbeat_s = now;
        }
        if (now - last_heard_s > options.coordinator_timeout_s) {
          log->Warn("coordinator silent for " + std::to_string(options.coordinator_timeout_s) + " s; rejoining");
          rejoin = true;
        }
        if (!m) continue;
        if (std::holds_alternative<FitMsg>(*m) || std::holds_alternative<EvaluateMsg>(*m)) {
          if (working || !prepared) {
            if (!prepared && !queued) {
              queued = std::move(*m);
            } else {
              (void)Send(ErrorMsg{ErrorCode::kBusy, RoundOf(*m), "busy with earlier work"});
            }
          } else {
            StartWork(std::move(*m));
          }
        } else if (auto* s = std::get_if<ShutdownMsg>(&*m)) {
          return Finish(s->reason);
        } else if (auto* err = std::get_if<ErrorMsg>(&*m)) {
          log->Warn("coordinator: " + std::string(ErrorCodeName(err->code)) + " (round " + std::to_string(err->round) +
                    "): " + EscapeForLog(err->message));
          if (err->code == ErrorCode::kRunOver) return Finish("the run is over");
          // Not (or no longer) joined, or excluded for a while: join again; the join
          // loop backs off while the coordinator refuses.
          if (err->code == ErrorCode::kNotJoined || err->code == ErrorCode::kExcluded) rejoin = true;
        }
      }
      Close();
    }
  }

  StatusOr<ClientResult> Finish(const std::string& reason) {
    if (working) {
      stop_slot_wait = true;      // a fit still waiting for its slot gives up
      WorkResult r = work.get();  // let local work end; its energy is still ours
      working = false;
      unreported.insert(unreported.end(), r.energy.begin(), r.energy.end());
    }
    CloseIdle(std::max<uint64_t>(last_round, 1));
    if (socket) {
      HeartbeatMsg last{last_round, {}};
      last.energy = TakeEnergy();
      try {
        socket->set(zmq::sockopt::linger, 2000);  // let the last report leave
      } catch (const zmq::error_t&) {
      }
      (void)Send(last);
      Close();
    }
    log->Info("shutting down: " + reason);
    ClientResult res;
    res.client_index = welcome ? welcome->client_index : 0;
    res.rounds_trained = rounds_trained;
    res.shutdown_reason = reason;
    return res;
  }
};

Client::Client(ClientOptions options, const TaskRegistry* tasks, PhaseMeter* meter, Env* env, Logger* log)
    : impl_(std::make_unique<Impl>(std::move(options), tasks, meter, env, log)) {}

Client::~Client() = default;

StatusOr<ClientResult> Client::Run(int stop_fd) { return impl_->Run(stop_fd); }

}  // namespace greenfed
