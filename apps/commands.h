// The greenfed subcommands. Each takes its arguments (after the subcommand name)
// and returns the process exit code: 0 success, 1 runtime failure, 2 bad flags.
// Thread safety: each command runs on the thread that calls it; `run` calls the
// coordinator command on a thread of its own, sharing nothing but the AppContext copy.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "greenfed/meter.h"

namespace greenfed {

class Env;
class Logger;
class ServerTransport;

struct AppContext {
  std::string self_exe;  // path of this binary, for the launcher's child processes
  int stop_fd = -1;      // signalfd for SIGINT/SIGTERM; -1 when signals are not routed
  // The coordinator command's transport; empty = its ZeroMQ socket (--bind). Set by
  // `simulate` to the in-process transport, so both engines run one coordinator.
  std::function<std::unique_ptr<ServerTransport>(Env* env, Logger* log)> transport;
  std::string engine = "run";  // recorded in config.json: "run" or "simulate"
  // The coordinator command's Env (clock, CPU, RSS for its meter); empty = NewSystemEnv().
  // `simulate` sets one that leaves out the virtual clients' CPU, which they book themselves.
  std::function<std::unique_ptr<Env>()> env;
  // The coordinator command's meters; empty = OpenMeters(its --meter options). `simulate`
  // sets one that books the coordinator's share of the split RAPL energy (sim/rapl_split.h).
  std::function<StatusOr<MeterSet>(const MeterOptions& options, Env* env)> meters;
};

int RunCoordinatorCommand(const std::vector<std::string>& args, const AppContext& ctx);
int RunClientCommand(const std::vector<std::string>& args, const AppContext& ctx);
int RunCentralizedCommand(const std::vector<std::string>& args, const AppContext& ctx);
int RunReportCommand(const std::vector<std::string>& args, const AppContext& ctx);
int RunCountriesCommand(const std::vector<std::string>& args, const AppContext& ctx);
int RunKeygenCommand(const std::vector<std::string>& args, const AppContext& ctx);    // greenfed keygen
int RunLocalCommand(const std::vector<std::string>& args, const AppContext& ctx);    // greenfed run
int RunSimulateCommand(const std::vector<std::string>& args, const AppContext& ctx);  // greenfed simulate
int RunCompareCommand(const std::vector<std::string>& args, const AppContext& ctx);  // greenfed compare

}  // namespace greenfed
