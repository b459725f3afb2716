// Server: the coordinator's event loop. The only coordinator code that touches
// ZeroMQ: it decodes what arrives on a ROUTER socket into RoundMachine events,
// executes the machine's actions (send, evaluate centrally, write the run
// directory), meters the coordinator itself and books every client's energy.
//
// Bad input never stops the run: a message that fails to decode, a join with an
// unknown country, an update of the wrong shape — each is logged with its reason,
// answered with an Error where there is a peer to answer, and the loop carries on.
// Thread safety: Run() blocks the calling thread; one Server per thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "greenfed/carbon.h"
#include "greenfed/coordinator/round_machine.h"
#include "greenfed/env.h"
#include "greenfed/log.h"
#include "greenfed/meter.h"
#include "greenfed/run_dir.h"
#include "greenfed/status.h"
#include "greenfed/task.h"

namespace greenfed {

struct ServerOptions {
  std::string bind = "tcp://0.0.0.0:5555";  // ZeroMQ endpoint; "tcp://127.0.0.1:*" picks a free port
  RoundOptions round;                        // round logic
  uint64_t max_message_bytes = kDefaultMaxMessageBytes;  // larger messages are refused
  double tick_s = 0.1;                       // how often deadlines and heartbeats are checked
  double shutdown_grace_s = 3.0;             // wait for clients' last energy reports after Shutdown
  std::string country = "WORLD";             // the coordinator's own country (ISO alpha-3)
  double pue = 1.0;                          // the coordinator's own PUE
  CommModel comm;                            // energy per byte moved
  std::vector<std::string> reference_countries = DefaultReferenceCountries();  // for summary.json
  int stop_fd = -1;                          // readable fd (signalfd) that requests a clean stop; -1 = none
  double max_node_power_w = 10000;           // plausibility bound on a client's reported power (energy_record.h)
};

struct ServerResult {
  bool reached = false;     // target accuracy reached
  bool failed = false;      // stopped by an error, not by target or max rounds
  int64_t rounds = 0;
  double final_accuracy = 0;
  std::string stop_reason;
};

class Server {
 public:
  // All pointers must outlive the server. `eval_task` is prepared for the
  // coordinator role; `initial` are the starting global parameters.
  Server(ServerOptions options, Task* eval_task, Parameters initial, const CarbonTable* carbon,
         PhaseMeter* meter, RunDir* run_dir, Env* env, Logger* log);
  // Binds; returns the bound endpoint (useful with a wildcard port).
  StatusOr<std::string> Bind();
  // Runs until the machine stops. Requires Bind().
  StatusOr<ServerResult> Run();
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

 private:
  struct Impl;  // keeps zmq.hpp out of this header
  std::unique_ptr<Impl> impl_;
};

}  // namespace greenfed
