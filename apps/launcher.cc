// `greenfed run`: one coordinator (in this process) and N client processes on
// loopback. `greenfed compare`: the whole comparison (centralized, FL IID, FL
// non-IID, report), each step a child process of this binary.
#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <atomic>
#include <chrono>
#include <cstring>
#include <ctime>
#include <iostream>
#include <sstream>
#include <thread>

#include "commands.h"
#include "greenfed/client/fit_slots.h"
#include "greenfed/coordinator/server.h"
#include "greenfed/coordinator/strategy.h"
#include "greenfed/keys.h"
#include "greenfed/report/report.h"
#include "node_flags.h"

extern char** environ;

namespace greenfed {

namespace {

// The cores this process may run on (its affinity mask, which a container's cpuset narrows).
int64_t UsableCores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int64_t>(n) : 1;
}

// A child process; SIGTERM then SIGKILL if still running when destroyed.
class ChildProcess {
  struct Key {
    explicit Key() = default;
  };

 public:
  ChildProcess(Key, pid_t pid) : pid_(pid) {}
  static StatusOr<std::unique_ptr<ChildProcess>> Spawn(const std::vector<std::string>& argv,
                                                       const std::string& log_path, bool append_log = false) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    if (!log_path.empty()) {
      posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(),
                                       O_WRONLY | O_CREAT | (append_log ? O_APPEND : O_TRUNC), 0644);
      posix_spawn_file_actions_adddup2(&actions, 1, 2);
    }
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t empty;
    sigemptyset(&empty);
    posix_spawnattr_setsigmask(&attr, &empty);  // main() blocked SIGINT/SIGTERM; children need them back
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    std::vector<char*> cargv;
    for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    pid_t pid = 0;
    const int rc = posix_spawn(&pid, argv[0].c_str(), &actions, &attr, cargv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) return Unavailable("cannot start " + argv[0] + ": " + std::strerror(rc));
    return std::make_unique<ChildProcess>(Key{}, pid);
  }

  ~ChildProcess() {
    if (pid_ <= 0 || exited_) return;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 50 && !Poll(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (!exited_) {
      ::kill(pid_, SIGKILL);
      Wait();
    }
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // True once the child has exited (non-blocking).
  bool Poll() {
    if (exited_) return true;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) Record(status);
    return exited_;
  }
  int Wait() {
    if (!exited_) {
      int status = 0;
      if (::waitpid(pid_, &status, 0) == pid_) Record(status);
    }
    return exit_code_;
  }
  pid_t pid() const { return pid_; }
  int exit_code() const { return exit_code_; }

 private:
  void Record(int status) {
    exited_ = true;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  pid_t pid_;
  bool exited_ = false;
  int exit_code_ = -1;
};

std::string Str(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

}  // namespace

// ------------------------------------------------------------------------ run
int RunLocalCommand(const std::vector<std::string>& args, const AppContext& ctx) {
  FlagSet flags("greenfed run",
                "Starts one coordinator (this process) and --clients client processes on loopback and trains to "
                "--target-accuracy. Client logs go to RUN_DIR/client-K.log. The processes talk CURVE with keys "
                "generated into RUN_DIR/keys/ (coordinator.key, clients/client-K.key), unless --insecure.");
  LocalRunFlags run;
  AddLocalRunFlags(&flags, &run);
  FederationFlags& fed = run.fed;
  NodeFlags& node = run.node;
  std::string& client_country = run.client_country;
  const std::string& client_countries_list = run.client_countries;
  const double& client_pue = run.client_pue;
  const int64_t& client_threads = run.client_threads;
  const bool& persist_momentum = run.persist_momentum;
  const bool& insecure = run.insecure;
  int64_t fit_slots = -1;  // -1: cores / client threads
  flags.AddInt("fit-slots", &fit_slots,
               "at most this many clients train at once (lock files in RUN_DIR/fit-slots; default: this machine's "
               "cores / --client-threads, at least 1; 0 = no limit)");
  if (int rc = ParseOrExit(&flags, args); rc >= 0) return rc;
  if (Status s = ValidatePue(client_pue); !s.ok()) return Fail("run", s.WithContext("--client-pue"), 2);
  if (client_threads < 1) return Fail("run", InvalidArgument("--client-threads must be >= 1"), 2);
  if (!client_countries_list.empty() && !client_country.empty()) {
    return Fail("run", InvalidArgument("give --client-country or --client-countries, not both"), 2);
  }
  if (fit_slots < -1 || fit_slots > 4096) {
    return Fail("run", InvalidArgument("--fit-slots must be in [0, 4096] (0 = no limit)"), 2);
  }
  if (fit_slots == -1) fit_slots = std::max<int64_t>(1, UsableCores() / client_threads);
  if (client_country.empty()) client_country = node.country;
  std::vector<std::string> client_countries = SplitList(client_countries_list);
  if (!client_countries_list.empty() && client_countries.empty()) {
    return Fail("run", InvalidArgument("--client-countries is empty: give codes like FRA,DEU"), 2);
  }
  if (client_countries.empty()) client_countries = {client_country};
  if (fed.partition == "none") {
    return Fail("run", InvalidArgument("--partition none is for clients with their own data, started one by one with "
                                       "`greenfed client --data PATH` against `greenfed coordinator --partition none`"),
                2);
  }

  Logger log("coordinator", &std::cout, &std::cerr);
  auto carbon = LoadCarbonTable(node);
  if (!carbon.ok()) return Fail("run", carbon.status(), 2);
  if (Status s = CheckNode(node, *carbon); !s.ok()) return Fail("run", s, 2);
  for (auto& country : client_countries) {
    auto ci = carbon->Lookup(country);
    if (!ci.ok()) {
      return Fail("run", ci.status().WithContext(client_countries_list.empty() ? "--client-country" : "--client-countries"), 2);
    }
    country = ci->code;
  }
  if (fed.run_dir.empty()) fed.run_dir = DefaultRunDir("fl", fed.partition);
  if (auto r = RoundOptionsFor(fed, RunIdOf(fed.run_dir)); !r.ok()) return Fail("run", flags.Annotate(r.status()), 2);
  // A package counter sees every process on the package: with the whole federation
  // on one host, each node would report the same joules. Say so before it happens.
  if (node.meter == "auto" || node.meter == "rapl") {
    if (auto rapl = OpenRaplMeter(MeterOptions{}.powercap_root, 0); rapl.ok()) {
      log.Warn("RAPL is readable here and counts the whole CPU package: with " + std::to_string(fed.num_clients + 1) +
               " greenfed processes on this host, each reports all of the package's energy, so the run's totals "
               "count it " + std::to_string(fed.num_clients + 1) + " times. Use --meter model for per-process "
               "figures, or compare per-host totals (docs/energy.md).");
    }
  }

  // The coordinator runs in a thread of this process; clients are processes. The
  // coordinator command is reused whole so `run` and `coordinator` cannot drift.
  // Every flag the launcher was given, from the command line or --config, except
  // its own; values as parsed, so a config file is read once, here.
  std::vector<std::string> coord_args =
      flags.SetFlagsAsArgs([] {
        std::vector<std::string> own = LocalRunOwnFlags();
        own.push_back("fit-slots");  // run's own: the clients get --fit-slots-dir/--fit-slots
        return own;
      }());
  // Loopback port: pick a free one by binding port 0 first.
  int port = 0;
  {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port = ntohs(addr.sin_port);
    }
    if (fd >= 0) ::close(fd);
    if (port == 0) return Fail("run", Unavailable("cannot find a free loopback port"), 1);
  }
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(port);
  coord_args.push_back("--bind=" + endpoint);
  coord_args.push_back("--num-clients=" + std::to_string(fed.num_clients));
  coord_args.push_back("--run-dir=" + fed.run_dir);

  // Client logs live in the run directory, so it must exist before they start. With
  // --resume the coordinator checks the directory and its checkpoint (exit 2).
  if (!fed.resume && ::access((fed.run_dir + "/rounds.csv").c_str(), F_OK) == 0) {
    return Fail("run", FailedPrecondition("run directory " + fed.run_dir +
                                          " already holds a run (rounds.csv exists); choose another --run-dir, "
                                          "or add --resume to continue it from its checkpoint.bin"), 2);
  }
  {
    std::string partial;
    std::stringstream ss(fed.run_dir);
    std::string piece;
    if (!fed.run_dir.empty() && fed.run_dir[0] == '/') partial = "/";
    while (std::getline(ss, piece, '/')) {
      if (piece.empty()) continue;
      partial += piece + "/";
      if (::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) {
        return Fail("run", Unavailable("cannot create " + partial + ": " + std::strerror(errno)), 1);
      }
    }
  }
  // Fit slots: the clients share this machine's cores; more concurrent fits than cores only
  // time-share them (issue 11: ten clients on two cores lost ~21% to it).
  std::vector<std::string> slot_args;
  if (fit_slots > 0) {
    FitSlotsOptions so;
    so.dir = fed.run_dir + "/fit-slots";
    so.slots = static_cast<uint32_t>(fit_slots);
    if (auto slots = FitSlots::Open(so); !slots.ok()) return Fail("run", slots.status(), 1);
    slot_args = {"--fit-slots-dir=" + so.dir, "--fit-slots=" + std::to_string(fit_slots)};
    log.Info("at most " + std::to_string(fit_slots) + " concurrent fits (--fit-slots; " +
             std::to_string(UsableCores()) + " cores, " + std::to_string(client_threads) + " threads per client)");
  }
  // CURVE by default: one key pair for the coordinator, one per client, all in the
  // run directory; the clients' public keys are the coordinator's allow-list.
  std::vector<std::vector<std::string>> client_security(fed.num_clients);
  if (insecure) {
    for (auto& c : client_security) c = {"--insecure"};
  } else {
    const std::string keys_dir = fed.run_dir + "/keys", clients_dir = keys_dir + "/clients";
    // A resumed run keeps the keys of its first start (the same identities rejoin);
    // a new run makes them.
    auto key_pair = [&](const std::string& dir, const std::string& name) -> StatusOr<std::string> {
      const std::string stem = dir + "/" + name;
      if (fed.resume && ::access((stem + ".key").c_str(), F_OK) == 0) {
        GREENFED_RETURN_IF_ERROR(LoadSecretKeyFile(stem + ".key").status());
        return stem;
      }
      GREENFED_ASSIGN_OR_RETURN(CurveKeyPair keys, GenerateCurveKeyPair());
      return WriteKeyPair(dir, name, keys);
    };
    auto coordinator_stem = key_pair(keys_dir, "coordinator");
    if (!coordinator_stem.ok()) return Fail("run", coordinator_stem.status(), 1);
    for (uint64_t k = 0; k < fed.num_clients; ++k) {
      auto stem = key_pair(clients_dir, "client-" + std::to_string(k));
      if (!stem.ok()) return Fail("run", stem.status(), 1);
      client_security[k] = {"--secret-key=" + *stem + ".key", "--server-key=" + *coordinator_stem + ".pub"};
    }
    coord_args.push_back("--secret-key=" + *coordinator_stem + ".key");
    coord_args.push_back("--allow-clients=" + clients_dir);
  }
  // The coordinator thread stops when this eventfd is written: on SIGINT/SIGTERM,
  // or when every client process has died (nobody is left to train).
  const int coord_stop = ::eventfd(0, EFD_CLOEXEC);
  AppContext coord_ctx = ctx;
  coord_ctx.stop_fd = coord_stop;
  std::atomic<bool> coordinator_done{false};
  int coordinator_rc = 1;
  std::thread coordinator([&] {
    coordinator_rc = RunCoordinatorCommand(coord_args, coord_ctx);
    coordinator_done = true;
  });
  // Clients may start before the coordinator binds; they retry with backoff.
  std::vector<std::unique_ptr<ChildProcess>> clients;
  for (uint64_t k = 0; k < fed.num_clients; ++k) {
    std::vector<std::string> argv = {ctx.self_exe, "client", "--connect=" + endpoint,
                                     "--client-index=" + std::to_string(k),
                                     "--num-clients=" + std::to_string(fed.num_clients),
                                     "--partition=" + fed.partition,
                                     "--country=" + client_countries[k % client_countries.size()],
                                     "--pue=" + Str(client_pue),
                                     "--meter=" + node.meter, "--power-profile=" + node.power_profile,
                                     "--watts-per-core=" + Str(node.watts_per_core),
                                     "--watts-per-gb=" + Str(node.watts_per_gb),
                                     "--comm-kwh-per-gb=" + Str(node.comm_kwh_per_gb),
                                     "--data-dir=" + node.data_dir,
                                     "--threads=" + std::to_string(client_threads),
                                     "--max-train-examples=" + std::to_string(fed.max_train_examples),
                                     "--connect-timeout-s=120",
                                     // Clients end with this process, also on kill -9 (a
                                     // resumed run starts its own on a new port).
                                     "--parent-pid=" + std::to_string(::getpid())};
    if (!node.carbon_table.empty()) argv.push_back("--carbon-table=" + node.carbon_table);
    if (persist_momentum) argv.push_back("--persist-momentum");
    argv.insert(argv.end(), slot_args.begin(), slot_args.end());
    argv.insert(argv.end(), client_security[k].begin(), client_security[k].end());
    // A resumed run appends to the clients' logs of the first start.
    auto child = ChildProcess::Spawn(argv, fed.run_dir + "/client-" + std::to_string(k) + ".log", fed.resume);
    if (!child.ok()) {
      log.Error(child.status().ToString());
      continue;
    }
    clients.push_back(std::move(child).value());
  }
  log.Info("started " + std::to_string(clients.size()) + " client processes (logs in " + fed.run_dir + "/client-K.log)");
  bool stop_sent = false;
  while (!coordinator_done) {
    pollfd pfd{ctx.stop_fd, POLLIN, 0};
    const bool signalled = ctx.stop_fd >= 0 && ::poll(&pfd, 1, 200) > 0 && (pfd.revents & POLLIN);
    if (ctx.stop_fd < 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    bool all_dead = !clients.empty();
    for (auto& c : clients) all_dead = all_dead && c->Poll();
    if ((signalled || all_dead || clients.empty()) && !stop_sent) {
      if (signalled) {
        signalfd_siginfo info{};
        if (::read(ctx.stop_fd, &info, sizeof(info)) < 0) { /* stopping either way */ }
      }
      log.Warn(signalled ? "signal received; stopping the run" : "every client process has exited; stopping the run");
      const uint64_t one = 1;
      if (::write(coord_stop, &one, sizeof(one)) < 0) log.Error("cannot signal the coordinator thread");
      stop_sent = true;
    }
  }
  coordinator.join();
  ::close(coord_stop);
  // Clients exit on Shutdown; give them a moment, then the destructors end them.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  for (auto& c : clients) {
    while (!c->Poll() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (c->Poll() && c->exit_code() != 0) {
      log.Warn("client process " + std::to_string(c->pid()) + " exited with code " + std::to_string(c->exit_code()));
    }
  }
  return coordinator_rc;
}

// -------------------------------------------------------------------- compare
namespace {

// compare's settings that depend on the task, chosen by measurement: Fashion-MNIST's
// in docs/energy.md and docs/results/fashion-mnist-2026-11-23, digits' in
// docs/results/digits-2026-12-01/README.md.
struct CompareDefaults {
  double target = 0.90;          // target top-1 test accuracy of every run
  uint64_t max_rounds = 40;      // FL rounds at most
  uint64_t max_epochs = 30;      // centralized epochs at most
  double central_lr = 0.02;      // centralized SGD learning rate
  double central_lr_decay = 0.9; // centralized learning-rate multiplier per epoch
  double fl_lr = 0.05;           // clients' local SGD learning rate
  uint64_t local_epochs = 1;     // clients' local epochs per round
};

StatusOr<CompareDefaults> CompareDefaultsFor(const std::string& task) {
  if (task == "fashion_mnist") return CompareDefaults{};
  if (task == "digits") {
    CompareDefaults d;
    d.target = 0.95;
    d.max_rounds = 40;
    d.max_epochs = 30;
    d.central_lr = 0.1;
    d.central_lr_decay = 0.9;
    d.fl_lr = 0.1;
    d.local_epochs = 5;
    return d;
  }
  return InvalidArgument("--task " + task + ": compare has no defaults for it (fashion_mnist, digits)");
}

}  // namespace

int RunCompareCommand(const std::vector<std::string>& args, const AppContext& ctx) {
  FlagSet flags("greenfed compare",
                "The main job: centralized baseline, FL IID and FL non-IID on one task (Fashion-MNIST by default) to "
                "the same target, then the emission comparison report in OUT/<UTC time>-report/report.md.");
  std::string out = "results";
  bool quick = false;
  std::string task = "fashion_mnist", model;
  CompareDefaults d;  // the defaults shown by --help are Fashion-MNIST's
  double target = d.target;
  uint64_t clients = 10, max_rounds = d.max_rounds, max_epochs = d.max_epochs, local_epochs = d.local_epochs;
  double central_lr = d.central_lr, central_lr_decay = d.central_lr_decay, fl_lr = d.fl_lr;
  std::string non_iid = "dirichlet";
  double alpha = 0.5;
  std::string country = "WORLD", client_country;
  std::string data_dir;
  std::string meter = "auto";
  std::string iid_strategy = "fedavg", non_iid_strategy = "fedavg";
  // Strategy settings, passed (when given) to each FL run whose strategy reads them.
  struct StrategyFlag {
    const char* name;
    std::vector<std::string> readers;  // strategies that take the flag
    double value;
    const char* help;
  };
  std::vector<StrategyFlag> strategy_flags = {
      {"proximal-mu", {"fedprox"}, -1, "fedprox: proximal term mu (required with fedprox)"},
      {"server-momentum", {"fedavgm"}, 0, "fedavgm: server momentum"},
      {"server-learning-rate", {"fedavgm", "scaffold"}, 1, "fedavgm, scaffold: server learning rate"},
      {"eta", {"fedadagrad", "fedadam", "fedyogi"}, -1, "fedadagrad/fedadam/fedyogi: server learning rate"},
      {"beta-1", {"fedadagrad", "fedadam", "fedyogi"}, -1, "fedadagrad/fedadam/fedyogi: first moment"},
      {"beta-2", {"fedadam", "fedyogi"}, 0.99, "fedadam/fedyogi: second moment"},
      {"tau", {"fedadagrad", "fedadam", "fedyogi"}, -1, "fedadagrad/fedadam/fedyogi: adaptivity"},
  };
  flags.AddString("out", &out, "directory for the three run directories and the report");
  flags.AddString("task", &task,
                  "registered task: fashion_mnist or digits; the settings below that are not given take this task's "
                  "defaults (digits: target 0.95, 40 rounds, central lr 0.1 decay 0.9, fl lr 0.1, 5 local epochs)");
  flags.AddString("model", &model, "model within the task (empty = the task's default: cnn, mlp)");
  flags.AddUint("local-epochs", &local_epochs, "clients' local epochs per round");
  flags.AddBool("quick", &quick, "a small comparison for a smoke test: 5 clients, 6000 examples each, target 0.80");
  flags.AddDouble("target-accuracy", &target, "target top-1 test accuracy shared by all runs");
  flags.AddUint("clients", &clients, "federated clients");
  flags.AddUint("max-rounds", &max_rounds, "federated rounds at most");
  flags.AddUint("max-epochs", &max_epochs, "centralized epochs at most");
  flags.AddDouble("central-lr", &central_lr, "centralized SGD learning rate (its own tuning: see docs/energy.md)");
  flags.AddDouble("central-lr-decay", &central_lr_decay, "centralized learning-rate multiplier per epoch");
  flags.AddDouble("fl-lr", &fl_lr, "clients' local SGD learning rate");
  flags.AddString("non-iid", &non_iid, "non-IID scheme: dirichlet or shards");
  flags.AddDouble("alpha", &alpha, "Dirichlet concentration for --non-iid dirichlet");
  flags.AddString("country", &country, "country of the coordinator and the centralized node");
  flags.AddString("client-country", &client_country, "clients' country (empty = --country)");
  std::string client_countries;
  flags.AddString("client-countries", &client_countries,
                  "a mixed federation for every FL run: countries cycled over the client indices (greenfed run "
                  "--client-countries); --tradeoff defaults to FRA,DEU,USA,CHN,IND");
  bool tradeoff = false;
  flags.AddBool("tradeoff", &tradeoff,
                "the trade-off comparison instead: FedAvg IID with each --tradeoff-codecs uplink codec, then uniform "
                "vs carbon-aware sampling on the mixed federation, IID and --non-iid, at --sampling-fraction; the "
                "report gets the trade-off table and tradeoff.svg (docs/report.md)");
  std::string tradeoff_codecs = "none,fp16,int8,topk:0.01";
  flags.AddString("tradeoff-codecs", &tradeoff_codecs,
                  "--tradeoff: uplink codecs of the FedAvg IID runs (each but none is passed as --uplink-codec)");
  double sampling_fraction = 0.5;
  flags.AddDouble("sampling-fraction", &sampling_fraction,
                  "--tradeoff: --fraction-fit of the sampling runs (sampling matters only when some clients sit out)");
  uint64_t fairness_rounds = 5;
  flags.AddUint("fairness-rounds", &fairness_rounds, "--tradeoff: the carbon-aware runs' --fairness-rounds");
  std::string intensity_trace;
  flags.AddString("intensity-trace", &intensity_trace, "--tradeoff: the carbon-aware runs' --intensity-trace");
  flags.AddString("data-dir", &data_dir, "data set directory (empty = the task's default)");
  flags.AddString("meter", &meter, "energy source for every node: auto, model, rapl, nvml");
  flags.AddString("iid-strategy", &iid_strategy, "strategy of the FL IID run: " + StrategyNames());
  flags.AddString("non-iid-strategy", &non_iid_strategy, "strategy of the FL non-IID run: " + StrategyNames());
  for (auto& sf : strategy_flags) flags.AddDouble(sf.name, &sf.value, sf.help);
  std::string engine = "run";
  flags.AddString("engine", &engine, "how the FL runs execute: run (client processes on loopback) or simulate "
                                     "(virtual clients in one process)");
  if (int rc = ParseOrExit(&flags, args); rc >= 0) return rc;
  if (engine != "run" && engine != "simulate") {
    return Fail("compare", InvalidArgument("--engine must be run or simulate, got '" + engine + "'"), 2);
  }
  if (non_iid != "dirichlet" && non_iid != "shards") {
    return Fail("compare", InvalidArgument("--non-iid must be dirichlet or shards, got '" + non_iid + "'"), 2);
  }
  // Each FL run's strategy flags: the settings given that its strategy reads.
  auto strategy_args = [&](const std::string& strategy) {
    std::vector<std::string> a = {"--strategy=" + strategy};
    for (const auto& sf : strategy_flags) {
      const bool reads = std::find(sf.readers.begin(), sf.readers.end(), strategy) != sf.readers.end();
      if (reads && flags.WasSet(sf.name)) a.push_back(std::string("--") + sf.name + "=" + Str(sf.value));
    }
    return a;
  };
  for (const auto& [flag, strategy] : {std::make_pair("--iid-strategy", iid_strategy),
                                       std::make_pair("--non-iid-strategy", non_iid_strategy)}) {
    StrategyOptions so;
    so.name = strategy;
    so.federation_size = static_cast<uint32_t>(clients);
    for (const auto& sf : strategy_flags) {
      const bool reads = std::find(sf.readers.begin(), sf.readers.end(), strategy) != sf.readers.end();
      if (!reads) continue;
      const std::string n = sf.name;
      if (n == "proximal-mu") so.proximal_mu = sf.value;
      if (n == "server-momentum") so.server_momentum = sf.value;
      if (n == "server-learning-rate") so.server_learning_rate = sf.value;
      if (n == "eta") so.eta = sf.value;
      if (n == "beta-1") so.beta_1 = sf.value;
      if (n == "beta-2") so.beta_2 = sf.value;
      if (n == "tau") so.tau = sf.value;
    }
    if (auto made = MakeStrategy(so); !made.ok()) return Fail("compare", made.status().WithContext(flag), 2);
  }
  if (!client_countries.empty() && !client_country.empty()) {
    return Fail("compare", InvalidArgument("give --client-country or --client-countries, not both"), 2);
  }
  if (tradeoff && client_countries.empty() && client_country.empty()) client_countries = "FRA,DEU,USA,CHN,IND";
  if (client_country.empty()) client_country = country;
  if (!(sampling_fraction > 0 && sampling_fraction <= 1)) {
    return Fail("compare", InvalidArgument("--sampling-fraction must be in (0, 1]"), 2);
  }
  if (fairness_rounds == 0) return Fail("compare", InvalidArgument("--fairness-rounds must be at least 1"), 2);
  if (tradeoff && SplitList(tradeoff_codecs).empty()) {
    return Fail("compare", InvalidArgument("--tradeoff-codecs is empty (e.g. none,int8)"), 2);
  }
  auto defaults = CompareDefaultsFor(task);
  if (!defaults.ok()) return Fail("compare", defaults.status(), 2);
  if (!flags.WasSet("target-accuracy")) target = defaults->target;
  if (!flags.WasSet("max-rounds")) max_rounds = defaults->max_rounds;
  if (!flags.WasSet("max-epochs")) max_epochs = defaults->max_epochs;
  if (!flags.WasSet("central-lr")) central_lr = defaults->central_lr;
  if (!flags.WasSet("central-lr-decay")) central_lr_decay = defaults->central_lr_decay;
  if (!flags.WasSet("fl-lr")) fl_lr = defaults->fl_lr;
  if (!flags.WasSet("local-epochs")) local_epochs = defaults->local_epochs;
  if (model.empty()) model = DefaultModelFor(task);
  std::vector<std::string> extra_fl;
  if (quick) {
    if (!flags.WasSet("target-accuracy")) target = 0.80;
    if (!flags.WasSet("clients")) clients = 5;
    if (!flags.WasSet("max-rounds")) max_rounds = 8;
    if (!flags.WasSet("max-epochs")) max_epochs = 8;
    if (task == "fashion_mnist") extra_fl = {"--max-train-examples=6000"};
  }
  const std::string stamp = RunIdOf(DefaultRunDir("x", ""));
  const std::string base = out + "/" + stamp.substr(2);
  const std::string central_dir = base + "-centralized", iid_dir = base + "-fl-iid", noniid_dir = base + "-fl-" + non_iid;

  // The clients' countries of every FL run: one country, or the mixed federation.
  const std::string client_country_arg =
      client_countries.empty() ? "--client-country=" + client_country : "--client-countries=" + client_countries;
  if (tradeoff) {
    // FL runs only: no centralized side in the trade-off.
    std::vector<std::vector<std::string>> steps;
    std::vector<std::string> dirs;
    auto fl_run = [&](const std::string& scheme, const std::string& dir, std::vector<std::string> extra) {
      std::vector<std::string> fl = {ctx.self_exe, engine, "--clients=" + std::to_string(clients),
                                     "--partition=" + scheme, "--alpha=" + Str(alpha),
                                     "--target-accuracy=" + Str(target), "--max-rounds=" + std::to_string(max_rounds),
                                     "--lr=" + Str(fl_lr), "--run-dir=" + dir, "--country=" + country,
                                     client_country_arg, "--data-dir=" + data_dir, "--meter=" + meter,
                                     "--task=" + task, "--model=" + model,
                                     "--local-epochs=" + std::to_string(local_epochs)};
      fl.insert(fl.end(), extra_fl.begin(), extra_fl.end());
      const std::vector<std::string> strategy = strategy_args(iid_strategy);
      fl.insert(fl.end(), strategy.begin(), strategy.end());
      fl.insert(fl.end(), extra.begin(), extra.end());
      steps.push_back(fl);
      dirs.push_back(dir);
    };
    for (const std::string& codec : SplitList(tradeoff_codecs)) {
      std::string stem = codec;
      for (char& ch : stem) {
        if (ch == ':' || ch == '.') ch = '_';
      }
      fl_run("iid", base + "-tradeoff-iid-" + stem,
             codec == "none" ? std::vector<std::string>{} : std::vector<std::string>{"--uplink-codec=" + codec});
    }
    for (const std::string& scheme : {std::string("iid"), non_iid}) {
      for (const std::string sampling : {"uniform", "carbon-aware"}) {
        std::vector<std::string> extra = {"--fraction-fit=" + Str(sampling_fraction), "--sampling=" + sampling};
        if (sampling == "carbon-aware") {
          extra.push_back("--fairness-rounds=" + std::to_string(fairness_rounds));
          if (!intensity_trace.empty()) extra.push_back("--intensity-trace=" + intensity_trace);
        }
        fl_run(scheme, base + "-tradeoff-" + scheme + "-" + sampling, extra);
      }
    }
    for (const auto& step : steps) {
      std::cout << "==> greenfed";
      for (size_t i = 1; i < step.size(); ++i) std::cout << " " << step[i];
      std::cout << std::endl;
      auto child = ChildProcess::Spawn(step, "");
      if (!child.ok()) return Fail("compare", child.status(), 1);
      const int rc = (*child)->Wait();
      if (rc != 0) return Fail("compare", Internal("step failed with exit code " + std::to_string(rc)), 1);
    }
    const std::string report_dir = base + "-tradeoff-report";
    std::vector<std::string> report_args = dirs;
    report_args.push_back("--out=" + report_dir);
    report_args.push_back("--tradeoff");
    std::cout << "==> greenfed report";
    for (const auto& a : report_args) std::cout << " " << a;
    std::cout << std::endl;
    return RunReportCommand(report_args, ctx);
  }

  std::vector<std::vector<std::string>> steps;
  std::vector<std::string> central = {ctx.self_exe, "centralized", "--target-accuracy=" + Str(target),
                                      "--max-epochs=" + std::to_string(max_epochs), "--lr=" + Str(central_lr),
                                      "--lr-decay=" + Str(central_lr_decay), "--run-dir=" + central_dir,
                                      "--country=" + country, "--data-dir=" + data_dir, "--meter=" + meter,
                                      "--threads=2", "--task=" + task, "--model=" + model};
  if (quick && task == "fashion_mnist") central.push_back("--max-train-examples=" + std::to_string(6000 * clients));
  steps.push_back(central);
  for (const auto& [scheme, dir] : {std::make_pair(std::string("iid"), iid_dir), std::make_pair(non_iid, noniid_dir)}) {
    const std::vector<std::string> strategy = strategy_args(scheme == "iid" ? iid_strategy : non_iid_strategy);
    std::vector<std::string> fl = {ctx.self_exe, engine, "--clients=" + std::to_string(clients),
                                   "--partition=" + scheme, "--alpha=" + Str(alpha),
                                   "--target-accuracy=" + Str(target), "--max-rounds=" + std::to_string(max_rounds),
                                   "--lr=" + Str(fl_lr), "--run-dir=" + dir, "--country=" + country,
                                   client_country_arg, "--data-dir=" + data_dir,
                                   "--meter=" + meter, "--task=" + task, "--model=" + model,
                                   "--local-epochs=" + std::to_string(local_epochs)};
    fl.insert(fl.end(), extra_fl.begin(), extra_fl.end());
    fl.insert(fl.end(), strategy.begin(), strategy.end());
    steps.push_back(fl);
  }
  for (const auto& step : steps) {
    std::cout << "==> greenfed";
    for (size_t i = 1; i < step.size(); ++i) std::cout << " " << step[i];
    std::cout << std::endl;
    auto child = ChildProcess::Spawn(step, "");
    if (!child.ok()) return Fail("compare", child.status(), 1);
    const int rc = (*child)->Wait();
    if (rc != 0) return Fail("compare", Internal("step failed with exit code " + std::to_string(rc)), 1);
  }
  // Each comparison keeps its own report, so a second run never overwrites the first.
  const std::string report_dir = base + "-report";
  std::vector<std::string> report_args = {central_dir, iid_dir, noniid_dir, "--out=" + report_dir};
  std::cout << "==> greenfed report " << central_dir << " " << iid_dir << " " << noniid_dir
            << " --out=" << report_dir << std::endl;
  return RunReportCommand(report_args, ctx);
}

// --------------------------------------------------------------------- report
int RunReportCommand(const std::vector<std::string>& args, const AppContext&) {
  FlagSet flags("greenfed report RUN_DIR...",
                "Reads run directories and writes OUT/report.md, report.csv and report.svg: g CO2e to the target "
                "for centralized vs FL runs across countries (Table 1) and the energy breakdown (Table 2).");
  std::string out = ".";
  std::string countries = "USA,CHN,FRA,DEU,GBR,IND,WORLD";
  std::string pues = "1.67,1.11";
  std::string carbon_path;
  flags.AddString("out", &out, "directory for report.md, report.csv, report.svg");
  flags.AddString("countries", &countries, "rows of Table 1: ISO 3166-1 alpha-3 codes, comma-separated");
  flags.AddString("centralized-pues", &pues, "PUEs at which centralized runs are shown (Qiu et al.: 1.67, 1.11)");
  flags.AddString("carbon-table", &carbon_path, "CSV carbon-intensity table instead of the built-in one");
  bool tradeoff = false;
  flags.AddBool("tradeoff", &tradeoff,
                "also the trade-off table (uplink codec and sampling of each FL run against its no-codec, uniform "
                "baseline) and tradeoff.svg (docs/report.md, \"Trade-off table\")");
  std::vector<std::string> dirs;
  if (int rc = ParseOrExit(&flags, args, &dirs); rc >= 0) return rc;
  if (dirs.empty()) return Fail("report", InvalidArgument("give at least one run directory"), 2);

  report::ReportOptions options;
  options.out_dir = out;
  options.tradeoff = tradeoff;
  options.countries = SplitList(countries);
  options.centralized_pues.clear();
  for (const auto& p : SplitList(pues)) {
    char* end = nullptr;
    const double v = std::strtod(p.c_str(), &end);
    if (end == p.c_str() || *end != '\0') return Fail("report", InvalidArgument("--centralized-pues: '" + p + "' is not a number"), 2);
    if (Status s = ValidatePue(v); !s.ok()) return Fail("report", s.WithContext("--centralized-pues"), 2);
    options.centralized_pues.push_back(v);
  }
  std::ostringstream cmd;
  cmd << "greenfed report";
  for (const auto& a : args) cmd << " " << a;
  options.command = cmd.str();
  options.generated_by = "greenfed 0.1.0";
  StatusOr<CarbonTable> table = carbon_path.empty() ? StatusOr<CarbonTable>(CarbonTable::BuiltIn())
                                                    : CarbonTable::FromFile(carbon_path);
  if (!table.ok()) return Fail("report", table.status(), 2);
  std::vector<report::RunData> runs;
  for (const auto& d : dirs) {
    auto run = report::LoadRunDir(d);
    if (!run.ok()) return Fail("report", run.status(), 1);
    runs.push_back(std::move(run).value());
  }
  auto tables = report::BuildReport(runs, *table, options);
  if (!tables.ok()) return Fail("report", tables.status(), 1);
  if (Status s = ::mkdir(out.c_str(), 0755) == 0 || errno == EEXIST ? Status::Ok() : Unavailable("cannot create " + out);
      !s.ok()) {
    return Fail("report", s, 1);
  }
  if (Status s = report::WriteReport(*tables, runs, options); !s.ok()) return Fail("report", s, 1);
  std::cout << "wrote " << out << "/report.md, " << out << "/report.csv, " << out << "/report.svg"
            << (tradeoff ? ", " + out + "/tradeoff.svg" : std::string()) << "\n";
  return 0;
}

}  // namespace greenfed
