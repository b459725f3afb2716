// greenfed simulate: `greenfed run`'s flags and run directory, with the clients as
// virtual clients in this process (sim/). The coordinator command runs whole, over
// the in-process transport instead of its socket, so the RoundMachine, strategy,
// ledger checks, run directory and checkpoints are the ones `run` uses.
//
// Energy: with --meter auto or rapl and RAPL package counters readable under
// --powercap-root, the package energy is measured and split over the virtual clients'
// fits and evaluations and the coordinator by thread CPU-time share (sim/rapl_split.h,
// source rapl-split); otherwise the virtual clients are modelled from their CPU time.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <thread>

#include "commands.h"
#include "greenfed/log.h"
#include "greenfed/sim/rapl_split.h"
#include "greenfed/sim/sim_transport.h"
#include "node_flags.h"

namespace greenfed {

int RunSimulateCommand(const std::vector<std::string>& args, const AppContext& ctx) {
  FlagSet flags("greenfed simulate",
                "Runs `greenfed run`'s federation in one process: the coordinator and --clients virtual clients "
                "(the same client logic as `greenfed client`), fits on --workers threads. Messages go through the "
                "protocol's encoder and decoder, so bytes are counted as on the wire. Same flags and run directory "
                "as `greenfed run`.");
  LocalRunFlags run;
  AddLocalRunFlags(&flags, &run);
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  int64_t workers = 0;
  flags.AddInt("workers", &workers, "worker threads for the virtual clients' fits; 0 = cores / --client-threads");
  std::string powercap_root = MeterOptions{}.powercap_root;
  flags.AddString("powercap-root", &powercap_root,
                  "root of the powercap tree whose RAPL package counters are split over the virtual clients "
                  "(--meter auto or rapl); a directory");
  if (int rc = ParseOrExit(&flags, args); rc >= 0) return rc;
  if (flags.WasSet("powercap-root")) {
    std::error_code ec;
    if (powercap_root.empty() || !std::filesystem::is_directory(powercap_root, ec)) {
      return Fail("simulate", InvalidArgument("--powercap-root: '" + powercap_root + "' is not a directory"), 2);
    }
  }
  if (Status s = ValidatePue(run.client_pue); !s.ok()) return Fail("simulate", s.WithContext("--client-pue"), 2);
  if (run.client_threads < 1) return Fail("simulate", InvalidArgument("--client-threads must be >= 1"), 2);
  if (workers < 0) return Fail("simulate", InvalidArgument("--workers must be >= 0"), 2);
  if (workers == 0) workers = std::max<int64_t>(1, static_cast<int64_t>(cores) / run.client_threads);
  if (run.fed.partition == "none") {
    return Fail("simulate", InvalidArgument("--partition none is for clients with their own data; simulate "
                                            "partitions one data set"), 2);
  }
  if (run.fed.num_clients == 0 || run.fed.num_clients > 100000) {
    return Fail("simulate", InvalidArgument("--clients must be in [1, 100000]"), 2);
  }
  if (!run.client_countries.empty() && !run.client_country.empty()) {
    return Fail("simulate", InvalidArgument("give --client-country or --client-countries, not both"), 2);
  }
  if (run.client_country.empty()) run.client_country = run.node.country;
  std::vector<std::string> client_countries = SplitList(run.client_countries);
  if (!run.client_countries.empty() && client_countries.empty()) {
    return Fail("simulate", InvalidArgument("--client-countries is empty: give codes like FRA,DEU"), 2);
  }
  {
    auto carbon = LoadCarbonTable(run.node);
    if (!carbon.ok()) return Fail("simulate", carbon.status(), 2);
    if (auto ci = carbon->Lookup(run.client_country); !ci.ok()) {
      return Fail("simulate", ci.status().WithContext("--client-country"), 2);
    }
    for (auto& country : client_countries) {
      auto ci = carbon->Lookup(country);
      if (!ci.ok()) return Fail("simulate", ci.status().WithContext("--client-countries"), 2);
      country = ci->code;
    }
  }
  auto meter_options = MeterOptionsFor(run.node);
  if (!meter_options.ok()) return Fail("simulate", meter_options.status(), 2);
  meter_options->powercap_root = powercap_root;
  Logger slog("simulate", &std::cout, &std::cerr);
  // The RAPL split, opened before anything runs so that its first window starts here.
  std::shared_ptr<SplitLedger> split;
  std::string package;
  if (run.node.meter == "auto" || run.node.meter == "rapl") {
    StatusOr<std::unique_ptr<SplitLedger>> ledger = InvalidArgument("unset");
    if (StatusOr<std::unique_ptr<EnergyMeter>> rapl = OpenRaplMeter(powercap_root, meter_options->rapl_poll_s);
        rapl.ok()) {
      package = (*rapl)->Describe();
      ledger = SplitLedger::Open(SystemSplitClocks(std::shared_ptr<EnergyMeter>(std::move(rapl).value())));
    } else {
      ledger = rapl.status();
    }
    if (ledger.ok()) {
      split = std::move(ledger).value();
    } else if (run.node.meter == "rapl") {
      return Fail("simulate", ledger.status().WithContext("--meter rapl (--powercap-root " + powercap_root + ")"), 2);
    } else {
      slog.Info("rapl-split: not used: " + ledger.status().ToString() + "; the virtual clients' energy is modelled");
    }
  }
  auto registry = BuildTaskRegistry();
  if (!registry.ok()) return Fail("simulate", registry.status(), 1);
  if (run.fed.run_dir.empty()) run.fed.run_dir = DefaultRunDir("sim", run.fed.partition);

  std::vector<std::string> own = LocalRunOwnFlags();
  own.push_back("workers");
  own.push_back("powercap-root");
  own.push_back("insecure");
  std::vector<std::string> coord_args = flags.SetFlagsAsArgs(own);
  coord_args.push_back("--bind=inproc://simulate");
  coord_args.push_back("--num-clients=" + std::to_string(run.fed.num_clients));
  coord_args.push_back("--run-dir=" + run.fed.run_dir);

  SimOptions so;
  so.num_clients = static_cast<uint32_t>(run.fed.num_clients);
  so.workers = static_cast<uint32_t>(workers);
  so.client.task.data_dir = run.node.data_dir;
  so.client.task.threads = static_cast<int>(run.client_threads);
  so.client.task.max_train_examples = run.fed.max_train_examples;
  so.client.task.persist_momentum = run.persist_momentum;
  so.client.country = run.client_country;
  so.client_countries = client_countries;
  so.client.pue = run.client_pue;
  so.client.comm.kwh_per_gb = run.node.comm_kwh_per_gb;
  so.client.expected_num_clients = static_cast<uint32_t>(run.fed.num_clients);
  so.power = meter_options->model;
  so.stop_fd = ctx.stop_fd;
  so.job_cpu_ns = std::make_shared<std::atomic<int64_t>>(0);
  AppContext coord_ctx = ctx;
  coord_ctx.engine = "simulate";
  // The coordinator's meter reads the process's CPU time, which here includes every virtual
  // client's fits; those are booked by the clients, so the coordinator's Env leaves them out.
  coord_ctx.env = [counter = so.job_cpu_ns] { return NewEnvExcludingJobs(NewSystemEnv(), counter); };
  so.split = split;
  if (split) {
    // The coordinator books its own share of the split: its CPU share and the idle windows.
    coord_ctx.meters = [split, package](const MeterOptions& m, Env* env) -> StatusOr<MeterSet> {
      MeterSet set;
      set.meters.push_back(std::make_unique<SplitCoordinatorMeter>(split, package, m.model, env));
      set.notes.push_back("rapl-split: " + package +
                          " measured, then apportioned over the virtual clients' fits and evaluations and the "
                          "coordinator by thread CPU-time share (source rapl-split)");
      if (m.kind == "auto") {
        if (auto nvml = OpenNvmlMeter(m.nvml_library); nvml.ok()) {
          set.notes.push_back("nvml: using " + (*nvml)->Describe() + " (measured, the coordinator's only)");
          set.meters.push_back(std::move(nvml).value());
        } else {
          set.notes.push_back("nvml: not used: " + nvml.status().ToString());
        }
      }
      return set;
    };
  } else {
    coord_ctx.meters = [powercap_root](const MeterOptions& m, Env* env) {
      MeterOptions o = m;
      o.powercap_root = powercap_root;
      return OpenMeters(o, env);
    };
  }
  const TaskRegistry* tasks = &*registry;
  coord_ctx.transport = [so, tasks](Env* env, Logger* log) { return NewSimTransport(so, tasks, env, log); };
  const int rc = RunCoordinatorCommand(coord_args, coord_ctx);
  if (split) {
    const SplitLedger::Totals t = split->totals();
    char line[512];
    std::snprintf(line, sizeof(line),
                  "rapl-split: the package counters advanced %.6f J over %llu windows; booked %.6f J to %llu fits "
                  "and evaluations of the virtual clients and %.6f J to the coordinator",
                  static_cast<double>(t.package_uj) / 1e6, static_cast<unsigned long long>(t.windows),
                  static_cast<double>(t.items_uj) / 1e6, static_cast<unsigned long long>(t.items),
                  static_cast<double>(t.coordinator_uj) / 1e6);
    slog.Info(line);
    if (auto why = split->Failure()) slog.Warn(*why);
  }
  return rc;
}

}  // namespace greenfed
