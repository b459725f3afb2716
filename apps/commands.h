// The greenfed subcommands. Each takes its arguments (after the subcommand name)
// and returns the process exit code: 0 success, 1 runtime failure, 2 bad flags.
// Thread safety: each command runs on the thread that calls it; `run` calls the
// coordinator command on a thread of its own, sharing nothing but the AppContext copy.
#pragma once

#include <string>
#include <vector>

namespace greenfed {

struct AppContext {
  std::string self_exe;  // path of this binary, for the launcher's child processes
  int stop_fd = -1;      // signalfd for SIGINT/SIGTERM; -1 when signals are not routed
};

int RunCoordinatorCommand(const std::vector<std::string>& args, const AppContext& ctx);
int RunClientCommand(const std::vector<std::string>& args, const AppContext& ctx);
int RunCentralizedCommand(const std::vector<std::string>& args, const AppContext& ctx);
int RunReportCommand(const std::vector<std::string>& args, const AppContext& ctx);
int RunCountriesCommand(const std::vector<std::string>& args, const AppContext& ctx);
int RunKeygenCommand(const std::vector<std::string>& args, const AppContext& ctx);    // greenfed keygen
int RunLocalCommand(const std::vector<std::string>& args, const AppContext& ctx);    // greenfed run
int RunCompareCommand(const std::vector<std::string>& args, const AppContext& ctx);  // greenfed compare

}  // namespace greenfed
