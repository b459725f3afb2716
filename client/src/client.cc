// Client: the socket driver of ClientMachine (client_machine.h). It owns the
// DEALER socket, the handshake monitor, the worker thread and the meters; every
// decision about what to send and when is the machine's.
#include "greenfed/client/client.h"

#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <new>
#include <optional>
#include <random>
#include <sstream>
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

// What one Receive saw.
struct Received {
  std::optional<ClientEvent> event;  // a message, or bytes refused
  bool stop = false;                 // stop_fd fired
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
  std::future<WorkDoneEvent> work;
  bool working = false;
  PhaseMeter::Mark idle_mark;
  std::optional<ClientMachine> machine;
  // Fit slots (fit_slots.h): opened in Run() from the options; a fit waits for one, metered as
  // idle. stop_slot_wait ends such a wait when the client shuts down.
  std::optional<FitSlots> fit_slots;
  std::atomic<bool> stop_slot_wait{false};

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
    if (!socket) return Unavailable("not connected");
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
    machine->Sent(m, FramesBytes(frames));
    return Status::Ok();
  }

  // Waits up to timeout_ms. Returns what arrived (nothing on timeout) or an error
  // (including a failed CURVE handshake).
  StatusOr<Received> Receive(long timeout_ms, int stop_fd) {
    Received out;
    GREENFED_RETURN_IF_ERROR(handshakes.Check());
    std::vector<zmq::pollitem_t> items = {{static_cast<void*>(*socket), 0, ZMQ_POLLIN, 0}};
    const size_t stop_item = items.size();
    if (stop_fd >= 0) items.push_back({nullptr, stop_fd, ZMQ_POLLIN, 0});
    if (void* m = handshakes.pollable()) items.push_back({m, 0, ZMQ_POLLIN, 0});
    try {
      zmq::poll(items.data(), items.size(), std::chrono::milliseconds(timeout_ms));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) return out;
      return Unavailable(std::string("poll failed: ") + e.what());
    }
    if (stop_fd >= 0 && (items[stop_item].revents & ZMQ_POLLIN)) {
      signalfd_siginfo info{};
      if (::read(stop_fd, &info, sizeof(info)) < 0) { /* the request stands either way */ }
      out.stop = true;
      return out;
    }
    GREENFED_RETURN_IF_ERROR(handshakes.Check());
    if (!(items[0].revents & ZMQ_POLLIN)) return out;
    ReceiveLimits limits;
    limits.max_message_bytes = options.max_message_bytes;
    StatusOr<std::optional<ReceivedMessage>> got = Internal("not received");
    try {
      got = ReceiveBounded(static_cast<void*>(*socket), limits);
    } catch (const std::bad_alloc&) {
      log->Warn("out of memory while receiving a message from the coordinator; it was dropped");
      return out;
    }
    if (!got.ok()) return got.status();
    if (!*got) return out;
    ReceivedMessage& r = **got;
    if (r.outcome != ReceiveOutcome::kMessage) {
      out.event = ClientRefusedEvent{r.wire_bytes};
      if (!logged_too_large) {
        log->Warn(std::string("refused a message from the coordinator (") + ReceiveOutcomeName(r.outcome) + "): " +
                  std::to_string(r.wire_bytes) + " bytes in " + std::to_string(r.num_frames) +
                  " frames, limit " + std::to_string(options.max_message_bytes) +
                  " bytes; discarded unread (logged once)");
        logged_too_large = true;
      }
      return out;
    }
    StatusOr<Message> m = Internal("not decoded");
    try {
      m = Decode(r.frames, options.max_message_bytes);
    } catch (const std::bad_alloc&) {
      m = OutOfRange("out of memory decoding a message of " + std::to_string(r.wire_bytes) + " bytes");
    }
    if (!m.ok()) {
      out.event = ClientRefusedEvent{r.wire_bytes};
      log->Warn("rejected message from the coordinator: " + m.status().message());
      return out;
    }
    out.event = ClientMessageEvent{std::move(m).value(), r.wire_bytes};
    return out;
  }

  // Idle time since the last work ended goes to the machine, tagged with `round`.
  void CloseIdle(uint64_t round) {
    std::vector<std::string> warnings;
    auto records = meter->End(idle_mark, Phase::kIdle, static_cast<int64_t>(round), &warnings);
    for (const auto& w : warnings) log->Warn(w);
    machine->AddEnergy(std::move(records));
    idle_mark = meter->Begin();
  }

  WorkMeterFn Metered() {
    PhaseMeter* pm = meter;
    return [pm](Phase phase, int64_t round, const std::function<void()>& fn) {
      auto mark = pm->Begin();
      fn();
      return pm->End(mark, phase, round);
    };
  }

  void StartPrepare(StartPrepareAction a) {
    auto created = tasks->Create(a.task);
    working = true;
    if (!created.ok()) {
      std::promise<WorkDoneEvent> p;
      WorkDoneEvent r;
      r.status = created.status();
      p.set_value(std::move(r));
      work = p.get_future();
      return;
    }
    task = std::move(created).value();
    Task* t = task.get();
    work = std::async(std::launch::async, [t, topt = std::move(a.options)] {
      WorkDoneEvent r;
      r.kind = WorkKind::kPrepare;
      r.status = t->Prepare(topt);
      if (r.status.ok()) r.num_train_examples = t->NumTrainExamples();
      return r;
    });
  }

  // Executes the machine's actions. Returns the run's end when one of them ends it.
  std::optional<StatusOr<ClientResult>> Execute(std::vector<ClientAction> actions) {
    for (ClientAction& a : actions) {
      if (auto* s = std::get_if<ClientSendAction>(&a)) {
        Status sent = Send(s->message);
        if (!sent.ok() && s->fatal_on_failure) return StatusOr<ClientResult>(sent);
      } else if (std::holds_alternative<ConnectAction>(a)) {
        Close();
        Status opened = Open();
        if (!opened.ok()) return StatusOr<ClientResult>(opened);
      } else if (auto* p = std::get_if<StartPrepareAction>(&a)) {
        StartPrepare(std::move(*p));
      } else if (auto* f = std::get_if<StartFitAction>(&a)) {
        CloseIdle(f->round);
        working = true;
        Task* t = task.get();
        Env* e = env;
        const FitSlots* slots = fit_slots ? &*fit_slots : nullptr;
        const uint32_t hint = options.requested_index >= 0 ? static_cast<uint32_t>(options.requested_index) : 0;
        std::atomic<bool>* stop_wait = &stop_slot_wait;
        PhaseMeter* pm = meter;
        work = std::async(std::launch::async, [t, e, pm, slots, hint, stop_wait, m = Metered(),
                                               act = std::move(*f)]() mutable {
          // `greenfed run`: no more concurrent fits than cores. The wait is idle time, not fit.
          std::vector<EnergyRecord> waited;
          FitSlot slot;
          if (slots != nullptr) {
            auto mark = pm->Begin();
            auto got = slots->Acquire(hint, stop_wait);
            waited = pm->End(mark, Phase::kIdle, static_cast<int64_t>(act.round));
            if (!got.ok()) {
              WorkDoneEvent r;
              r.kind = WorkKind::kFit;
              r.round = act.round;
              r.state_generation = act.state_generation;
              r.state = std::move(act.state);
              r.status = got.status();
              r.energy = std::move(waited);
              return r;
            }
            slot = std::move(got).value();
          }
          WorkDoneEvent r = RunFitWork(*t, std::move(act), m, [e] { return e->NowSeconds(); });
          slot.Release();
          r.energy.insert(r.energy.begin(), waited.begin(), waited.end());
          return r;
        });
      } else if (auto* ev = std::get_if<StartEvaluateAction>(&a)) {
        CloseIdle(ev->round);
        working = true;
        Task* t = task.get();
        work = std::async(std::launch::async, [t, m = Metered(), act = std::move(*ev)] {
          return RunEvaluateWork(*t, act, m);
        });
      } else if (auto* l = std::get_if<ClientLogAction>(&a)) {
        if (l->warning) {
          log->Warn(l->text);
        } else {
          log->Info(l->text);
        }
      } else if (auto* fin = std::get_if<FinishAction>(&a)) {
        return Finish(fin->reason);
      } else if (auto* fail = std::get_if<FailAction>(&a)) {
        return StatusOr<ClientResult>(fail->status);
      }
    }
    return std::nullopt;
  }

  StatusOr<ClientResult> Finish(const std::string& reason) {
    if (working) {
      stop_slot_wait = true;         // a fit still waiting for its slot gives up
      WorkDoneEvent r = work.get();  // let local work end; its energy is still ours
      working = false;
      machine->AddEnergy(std::move(r.energy));
    }
    CloseIdle(machine->LastRound());
    std::vector<ClientAction> last = machine->Finish(reason);
    if (socket) {
      try {
        socket->set(zmq::sockopt::linger, 2000);  // let the last report leave
      } catch (const zmq::error_t&) {
      }
    }
    for (ClientAction& a : last) {
      if (auto* s = std::get_if<ClientSendAction>(&a)) {
        if (socket) (void)Send(s->message);
      } else if (auto* l = std::get_if<ClientLogAction>(&a)) {
        log->Info(l->text);
      }
    }
    Close();
    return machine->Result(reason);
  }

  StatusOr<ClientResult> Run(int stop_fd) {
    const Task* own = nullptr;
    uint64_t own_examples = 0;
    if (!options.task.own_data_path.empty()) {
      // Own-data mode: the task is prepared on the client's own file before the
      // first Join, so that Join can declare its example count.
      GREENFED_ASSIGN_OR_RETURN(task, tasks->Create(options.own_data_task));
      TaskOptions topt = options.task;
      topt.role = TaskRole::kClient;
      GREENFED_RETURN_IF_ERROR(task->Prepare(topt).WithContext("own data " + options.task.own_data_path));
      own_examples = task->NumTrainExamples();
      own = task.get();
      log->Info("own data " + options.task.own_data_path + ": " + std::to_string(own_examples) +
                " training examples (" + options.own_data_task + ")");
    }
    if (!options.fit_slots_dir.empty()) {
      FitSlotsOptions so;
      so.dir = options.fit_slots_dir;
      so.slots = options.fit_slots;
      GREENFED_ASSIGN_OR_RETURN(FitSlots opened, FitSlots::Open(so));
      fit_slots.emplace(std::move(opened));
      log->Info("fit slots: at most " + std::to_string(so.slots) + " concurrent fits on this machine (" + so.dir + ")");
    }
    machine.emplace(options, AnnouncedCapabilities(*tasks, own), own_examples);
    idle_mark = meter->Begin();
    if (auto end = Execute(machine->Start(env->NowSeconds()))) return std::move(*end);
    for (;;) {
      const double now = env->NowSeconds();
      const double wake = machine->NextWakeupS();
      long wait_ms = 100;
      if (!machine->joined()) wait_ms = std::clamp(static_cast<long>((wake - now) * 1000) + 1, 1L, 100L);
      GREENFED_ASSIGN_OR_RETURN(Received got, Receive(wait_ms, stop_fd));
      if (got.stop) {
        if (auto end = Execute(machine->Handle(ClientStopEvent{}, env->NowSeconds()))) return std::move(*end);
      }
      if (machine->joined() && working && work.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
        WorkDoneEvent r = work.get();
        working = false;
        idle_mark = meter->Begin();
        if (auto end = Execute(machine->Handle(std::move(r), env->NowSeconds()))) return std::move(*end);
      }
      if (auto end = Execute(machine->Handle(ClientTickEvent{}, env->NowSeconds()))) return std::move(*end);
      if (got.event) {
        if (auto end = Execute(machine->Handle(std::move(*got.event), env->NowSeconds()))) {
          return std::move(*end);
        }
      }
    }
  }
};

Client::Client(ClientOptions options, const TaskRegistry* tasks, PhaseMeter* meter, Env* env, Logger* log)
    : impl_(std::make_unique<Impl>(std::move(options), tasks, meter, env, log)) {}

Client::~Client() = default;

StatusOr<ClientResult> Client::Run(int stop_fd) { return impl_->Run(stop_fd); }

}  // namespace greenfed
