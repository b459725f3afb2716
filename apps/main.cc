// greenfed: one binary, one subcommand per role. See `greenfed --help`.
#include <cstdio>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "commands.h"
#include "fashion_mnist/blas.h"
#include "greenfed/malloc_tuning.h"

namespace {

constexpr const char* kUsage = R"(greenfed: federated learning that meters its own energy

usage: greenfed COMMAND [flags]        (greenfed COMMAND --help for its flags)

commands:
  run          one coordinator and N client processes on this machine (loopback)
  simulate     run's flags and run directory, N virtual clients in this process
  coordinator  the coordinator alone: aggregates updates from remote clients
  client       one client: connects to a coordinator and trains on its shard
  centralized  the centralized baseline: same model, same meter, whole data set
  compare      centralized + FL IID + FL non-IID, then the report (the main job)
  report       emission comparison tables from run directories
  countries    the built-in carbon-intensity table
  keygen       a CURVE key pair for a coordinator or a client (NAME.key, NAME.pub)

exit codes: 0 success, 1 runtime failure, 2 bad flags
)";

std::string SelfExe(const char* argv0) {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n > 0) return std::string(buf, static_cast<size_t>(n));
  return argv0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::cout << kUsage;
    return argc < 2 ? 2 : 0;
  }
  // Tensors and parameter messages are freed and reallocated many times a second; glibc's
  // defaults fault their pages in again each time (malloc_tuning.h has the figures).
  if (!greenfed::TuneMallocForTensors()) std::fprintf(stderr, "greenfed: warning: mallopt refused the thresholds\n");
  // One BLAS thread (fashion_mnist/blas.h): here for this process, whose OpenBLAS has already
  // started its pool, and in the environment for the processes it spawns (run, compare),
  // whose OpenBLAS then starts no pool thread at all. A user's own setting is kept.
  setenv("OPENBLAS_NUM_THREADS", "1", /*overwrite=*/0);
  greenfed::fmnist::PinBlasToOneThread();

  const std::string command = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);

  // SIGINT/SIGTERM become a readable fd that the event loops poll: a clean stop
  // with no global flag. Blocked here, before any thread starts, so every thread
  // inherits the mask; child processes get an empty mask back (launcher.cc).
  greenfed::AppContext ctx;
  ctx.self_exe = SelfExe(argv[0]);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  if (pthread_sigmask(SIG_BLOCK, &mask, nullptr) == 0) ctx.stop_fd = signalfd(-1, &mask, SFD_CLOEXEC);

  int code = 2;
  if (command == "run") {
    code = greenfed::RunLocalCommand(args, ctx);
  } else if (command == "simulate") {
    code = greenfed::RunSimulateCommand(args, ctx);
  } else if (command == "coordinator") {
    code = greenfed::RunCoordinatorCommand(args, ctx);
  } else if (command == "client") {
    code = greenfed::RunClientCommand(args, ctx);
  } else if (command == "centralized") {
    code = greenfed::RunCentralizedCommand(args, ctx);
  } else if (command == "compare") {
    code = greenfed::RunCompareCommand(args, ctx);
  } else if (command == "report") {
    code = greenfed::RunReportCommand(args, ctx);
  } else if (command == "keygen") {
    code = greenfed::RunKeygenCommand(args, ctx);
  } else if (command == "countries") {
    code = greenfed::RunCountriesCommand(args, ctx);
  } else {
    std::cerr << "greenfed: unknown command '" << command << "'\n\n" << kUsage;
  }
  if (ctx.stop_fd >= 0) ::close(ctx.stop_fd);
  return code;
}
