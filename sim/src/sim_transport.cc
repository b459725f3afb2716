#include "greenfed/sim/sim_transport.h"

#include <poll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace greenfed {

double ThreadCpuSeconds() {
  timespec ts{};
  if (::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

namespace {

// A fixed pool of threads running jobs; finished jobs' results wait in `done`.
class WorkerPool {
 public:
  struct Finished {
    size_t client = 0;
    WorkDoneEvent event;
  };
  explicit WorkerPool(uint32_t n) {
    for (uint32_t i = 0; i < std::max<uint32_t>(n, 1); ++i) threads_.emplace_back([this] { Loop(); });
  }
  ~WorkerPool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    jobs_cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void Submit(size_t client, std::function<WorkDoneEvent()> job) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      jobs_.push_back({client, std::move(job)});
    }
    jobs_cv_.notify_one();
  }
  // Finished jobs, waiting up to `wait` for the first one.
  std::vector<Finished> Take(std::chrono::duration<double> wait) {
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait_for(lock, wait, [this] { return !done_.empty(); });
    std::vector<Finished> out(std::make_move_iterator(done_.begin()), std::make_move_iterator(done_.end()));
    done_.clear();
    return out;
  }

 private:
  struct Job {
    size_t client;
    std::function<WorkDoneEvent()> run;
  };
  void Loop() {
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        jobs_cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
        if (stopping_) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      Finished f{job.client, job.run()};
      {
        std::lock_guard<std::mutex> lock(mu_);
        done_.push_back(std::move(f));
      }
      done_cv_.notify_one();
    }
  }
  std::mutex mu_;
  std::condition_variable jobs_cv_, done_cv_;
  std::deque<Job> jobs_;
  std::deque<Finished> done_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

struct VirtualClient {
  std::string peer;
  std::unique_ptr<ClientMachine> machine;
  std::unique_ptr<Task> task;      // its shard: a view into the shared data, or its own
  bool working = false;
  std::optional<std::string> finishing;  // Finish waits for the running job
  bool done = false;
};

class SimTransport : public ServerTransport {
 public:
  SimTransport(SimOptions o, const TaskRegistry* tasks, Env* env, Logger* log)
      : options_(std::move(o)), tasks_(tasks), env_(env), log_(log), pool_(options_.workers) {}

  StatusOr<std::string> Bind() override {
    if (options_.num_clients == 0) return InvalidArgument("simulate needs at least one virtual client");
    const std::vector<std::string> caps = AnnouncedCapabilities(*tasks_, nullptr);
    clients_.resize(options_.num_clients);
    for (uint32_t k = 0; k < options_.num_clients; ++k) {
      VirtualClient& c = clients_[k];
      c.peer = "sim-" + std::to_string(k);
      ClientOptions co = options_.client;
      co.client_id = c.peer;
      if (!options_.client_countries.empty()) co.country = options_.client_countries[k % options_.client_countries.size()];
      co.requested_index = static_cast<int32_t>(k);
      co.connect = "inproc://simulate";
      co.insecure = true;
      c.machine = std::make_unique<ClientMachine>(co, caps);
      by_peer_[c.peer] = k;
    }
    const double now = env_->NowSeconds();
    for (size_t k = 0; k < clients_.size(); ++k) Execute(k, clients_[k].machine->Start(now));
    return std::string("inproc://simulate (" + std::to_string(options_.num_clients) + " virtual clients, " +
                       std::to_string(std::max<uint32_t>(options_.workers, 1)) + " workers)");
  }

  Status Send(const std::string& peer, const Frames& frames) override {
    auto it = by_peer_.find(peer);
    if (it == by_peer_.end()) return NotFound("no virtual client " + peer);
    to_clients_.push_back({it->second, frames});
    return Status::Ok();
  }

  bool Poll(double timeout_s, double budget_s, const ReceiveLimits& limits,
            const std::function<void(ReceivedMessage&)>& on_message) override {
    const auto start = std::chrono::steady_clock::now();
    const auto until = start + std::chrono::duration<double>(timeout_s);
    for (;;) {
      if (StopRequested()) return false;
      Pump(std::chrono::duration<double>(0));
      if (!to_server_.empty()) break;
      const auto now = std::chrono::steady_clock::now();
      if (now >= until) return true;
      // Wait for a worker, in slices so the stop fd and timers are seen.
      Pump(std::min<std::chrono::duration<double>>(until - now, std::chrono::milliseconds(20)));
      if (!to_server_.empty()) break;
    }
    const auto budget_end = std::chrono::steady_clock::now() + std::chrono::duration<double>(budget_s);
    while (!to_server_.empty() && std::chrono::steady_clock::now() < budget_end) {
      ReceivedMessage r = std::move(to_server_.front());
      to_server_.pop_front();
      if (r.wire_bytes > limits.max_message_bytes) {
        r.outcome = ReceiveOutcome::kTooLarge;
        r.frames.clear();
      }
      on_message(r);
    }
    return true;
  }

 private:
  bool StopRequested() {
    if (options_.stop_fd < 0) return false;
    pollfd p{options_.stop_fd, POLLIN, 0};
    if (::poll(&p, 1, 0) > 0 && (p.revents & POLLIN)) {
      signalfd_siginfo info{};
      if (::read(options_.stop_fd, &info, sizeof(info)) < 0) { /* the request stands either way */ }
      return true;
    }
    return false;
  }

  // Delivers the server's messages, finished work and timers to the machines.
  void Pump(std::chrono::duration<double> wait) {
    while (!to_clients_.empty()) {
      auto [k, frames] = std::move(to_clients_.front());
      to_clients_.pop_front();
      VirtualClient& c = clients_[k];
      if (c.done) continue;
      const uint64_t bytes = FramesBytes(frames);
      StatusOr<Message> m = Decode(frames, options_.client.max_message_bytes);
      const double now = env_->NowSeconds();
      if (!m.ok()) {
        log_->Warn(c.peer + ": rejected message from the coordinator: " + m.status().message());
        Execute(k, c.machine->Handle(ClientRefusedEvent{bytes}, now));
        continue;
      }
      Execute(k, c.machine->Handle(ClientMessageEvent{std::move(m).value(), bytes}, now));
    }
    std::vector<WorkerPool::Finished> finished = pool_.Take(wait);
    if (options_.split && !split_warned_ && !finished.empty()) {
      if (std::optional<std::string> why = options_.split->Failure()) {
        split_warned_ = true;
        log_->Warn(*why + "; the virtual clients' energy is modelled from here on (source model)");
      }
    }
    for (auto& f : finished) {
      VirtualClient& c = clients_[f.client];
      c.working = false;
      if (c.finishing) {
        c.machine->AddEnergy(std::move(f.event.energy));
        FinishClient(f.client);
        continue;
      }
      Execute(f.client, c.machine->Handle(std::move(f.event), env_->NowSeconds()));
    }
    const double now = env_->NowSeconds();
    if (now >= next_tick_s_) {
      next_tick_s_ = now + 0.1;
      for (size_t k = 0; k < clients_.size(); ++k) {
        if (!clients_[k].done) Execute(k, clients_[k].machine->Handle(ClientTickEvent{}, now));
      }
    }
  }

  WorkMeterFn Meter() const {
    const PowerModel power = options_.power;
    Env* env = env_;
    const double workers = std::max<uint32_t>(options_.workers, 1);
    std::shared_ptr<std::atomic<int64_t>> job_cpu_ns = options_.job_cpu_ns;
    std::shared_ptr<SplitLedger> split = options_.split;
    return [power, env, workers, job_cpu_ns, split](Phase phase, int64_t round, const std::function<void()>& fn) {
      const double wall0 = env->NowSeconds();
      const double cpu0 = ThreadCpuSeconds();
      const SplitLedger::ItemId item = split ? split->Begin(CurrentThreadClock()) : 0;
      fn();
      const SplitLedger::ItemShare share = split ? split->End(item) : SplitLedger::ItemShare{};
      EnergyRecord e;
      e.phase = phase;
      e.round = round;
      e.wall_s = env->NowSeconds() - wall0;
      e.cpu_s = ThreadCpuSeconds() - cpu0;
      if (job_cpu_ns) job_cpu_ns->fetch_add(static_cast<int64_t>(std::llround(e.cpu_s * 1e9)));
      if (share.split) {
        // Measured package joules, this item's CPU share of the windows it ran in. No memory
        // term: DRAM is a RAPL domain of its own, outside the package counter.
        e.energy_j = static_cast<double>(share.energy_uj) / 1e6;
        e.source = EnergySource::kRaplSplit;
      } else {
        const double share_gb = static_cast<double>(env->ResidentBytes()) / 1e9 / workers;
        e.energy_j = e.cpu_s * power.watts_per_core + share_gb * power.watts_per_gb * e.wall_s;
        e.source = EnergySource::kModel;
      }
      e.measured = IsMeasured(e.source);
      return std::vector<EnergyRecord>{e};
    };
  }

  void Execute(size_t k, std::vector<ClientAction> actions) {
    VirtualClient& c = clients_[k];
    for (ClientAction& a : actions) {
      if (auto* s = std::get_if<ClientSendAction>(&a)) {
        Frames frames = Encode(s->message);
        const uint64_t bytes = FramesBytes(frames);
        c.machine->Sent(s->message, bytes);
        ReceivedMessage r;
        r.routing_id = c.peer;
        r.wire_bytes = bytes;
        r.num_frames = frames.size();
        r.frames = std::move(frames);
        to_server_.push_back(std::move(r));
      } else if (auto* p = std::get_if<StartPrepareAction>(&a)) {
        StartPrepare(k, std::move(*p));
      } else if (auto* f = std::get_if<StartFitAction>(&a)) {
        c.working = true;
        Task* t = c.task.get();
        Env* env = env_;
        auto act = std::make_shared<StartFitAction>(std::move(*f));
        pool_.Submit(k, [t, env, act, m = Meter()] {
          return RunFitWork(*t, std::move(*act), m, [env] { return env->NowSeconds(); });
        });
      } else if (auto* ev = std::get_if<StartEvaluateAction>(&a)) {
        c.working = true;
        Task* t = c.task.get();
        auto act = std::make_shared<StartEvaluateAction>(std::move(*ev));
        pool_.Submit(k, [t, act, m = Meter()] { return RunEvaluateWork(*t, *act, m); });
      } else if (auto* l = std::get_if<ClientLogAction>(&a)) {
        if (l->warning) {
          log_->Warn(c.peer + ": " + l->text);
        } else if (options_.log_clients) {
          log_->Info(c.peer + ": " + l->text);
        }
      } else if (auto* fin = std::get_if<FinishAction>(&a)) {
        c.finishing = fin->reason;
        if (!c.working) FinishClient(k);
        return;
      } else if (auto* fail = std::get_if<FailAction>(&a)) {
        log_->Error(c.peer + ": " + fail->status.ToString());
        c.done = true;
        return;
      }
      // ConnectAction: an in-process peer is always connected.
    }
  }

  // The shard: a view into the data set loaded once (Task::NewShardView), or, for a
  // task without views, a task of the client's own prepared on a worker.
  void StartPrepare(size_t k, StartPrepareAction p) {
    VirtualClient& c = clients_[k];
    c.working = true;
    auto base = bases_.find(p.task);
    if (base == bases_.end()) {
      auto created = tasks_->Create(p.task);
      if (!created.ok()) {
        WorkDoneEvent r;
        r.status = created.status();
        pool_.Submit(k, [r]() { return r; });
        return;
      }
      base = bases_.emplace(p.task, std::move(created).value()).first;
    }
    if (!no_views_.count(p.task)) {
      StatusOr<std::unique_ptr<Task>> view = base->second->NewShardView(p.options);
      if (view.ok() || view.status().code() != Code::kFailedPrecondition) {
        WorkDoneEvent r;
        r.kind = WorkKind::kPrepare;
        if (view.ok()) {
          c.task = std::move(view).value();
          r.num_train_examples = c.task->NumTrainExamples();
        } else {
          r.status = view.status();
        }
        pool_.Submit(k, [r]() { return r; });
        return;
      }
      log_->Info("task " + p.task + ": " + view.status().message() + "; every virtual client loads its own shard");
      no_views_.insert(p.task);
    }
    auto created = tasks_->Create(p.task);
    if (!created.ok()) {
      WorkDoneEvent r;
      r.status = created.status();
      pool_.Submit(k, [r]() { return r; });
      return;
    }
    c.task = std::move(created).value();
    Task* t = c.task.get();
    pool_.Submit(k, [t, topt = std::move(p.options)] {
      WorkDoneEvent r;
      r.kind = WorkKind::kPrepare;
      r.status = t->Prepare(topt);
      if (r.status.ok()) r.num_train_examples = t->NumTrainExamples();
      return r;
    });
  }

  void FinishClient(size_t k) {
    VirtualClient& c = clients_[k];
    const std::string reason = c.finishing.value_or("finished");
    c.done = true;
    for (ClientAction& a : c.machine->Finish(reason)) {
      if (auto* s = std::get_if<ClientSendAction>(&a)) {
        Frames frames = Encode(s->message);
        ReceivedMessage r;
        r.routing_id = c.peer;
        r.wire_bytes = FramesBytes(frames);
        r.num_frames = frames.size();
        r.frames = std::move(frames);
        to_server_.push_back(std::move(r));
      }
    }
    c.task.reset();
  }

  SimOptions options_;
  const TaskRegistry* tasks_;
  Env* env_;
  Logger* log_;
  std::vector<VirtualClient> clients_;
  std::map<std::string, size_t> by_peer_;
  std::map<std::string, std::unique_ptr<Task>> bases_;  // by task name: the shared data set
  std::set<std::string> no_views_;                      // tasks without NewShardView
  std::deque<std::pair<size_t, Frames>> to_clients_;
  std::deque<ReceivedMessage> to_server_;
  double next_tick_s_ = 0;
  bool split_warned_ = false;  // the split's failure is logged once
  WorkerPool pool_;  // last: its threads stop before the clients' tasks go
};

}  // namespace

std::unique_ptr<ServerTransport> NewSimTransport(SimOptions options, const TaskRegistry* tasks, Env* env, Logger* log) {
  return std::make_unique<SimTransport>(std::move(options), tasks, env, log);
}

namespace {

class EnvExcludingJobs : public Env {
 public:
  EnvExcludingJobs(std::unique_ptr<Env> base, std::shared_ptr<std::atomic<int64_t>> job_cpu_ns)
      : base_(std::move(base)), job_cpu_ns_(std::move(job_cpu_ns)) {}
  double NowSeconds() override { return base_->NowSeconds(); }
  uint64_t ResidentBytes() override { return base_->ResidentBytes(); }
  double ProcessCpuSeconds() override {
    const double jobs_s = job_cpu_ns_ ? static_cast<double>(job_cpu_ns_->load()) / 1e9 : 0.0;
    const double own_s = base_->ProcessCpuSeconds() - jobs_s;
    std::lock_guard<std::mutex> lock(mu_);
    last_s_ = std::max(last_s_, own_s);
    return last_s_;
  }

 private:
  std::unique_ptr<Env> base_;
  std::shared_ptr<std::atomic<int64_t>> job_cpu_ns_;
  std::mutex mu_;
  double last_s_ = 0;
};

}  // namespace

std::unique_ptr<Env> NewEnvExcludingJobs(std::unique_ptr<Env> base, std::shared_ptr<std::atomic<int64_t>> job_cpu_ns) {
  return std::make_unique<EnvExcludingJobs>(std::move(base), std::move(job_cpu_ns));
}

}  // namespace greenfed
