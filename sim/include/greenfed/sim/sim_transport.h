// The in-process transport of `greenfed simulate`: a ServerTransport
// (coordinator/server_transport.h) whose peers are virtual clients in this
// process. Each virtual client is a ClientMachine (client/client_machine.h), the
// same logic the socket client runs, holding only its own ClientState, its shard
// (a view into the shared data set where the task offers Task::NewShardView) and
// its bookkeeping. Fits and evaluations run on a pool of worker threads.
//
// The same data path: every message between the coordinator and a virtual client
// is encoded and decoded with the protocol's Encode/Decode, so the bytes the server
// and the clients count (and the comm energy they book) are the bytes the same run
// would put on the wire.
//
// Energy per virtual client: the CPU time of each fit and evaluation on its worker
// thread (CLOCK_THREAD_CPUTIME_ID) through the CPU power model (meter.h
// PowerModel: cpu_s * watts_per_core, plus the process's resident memory divided
// among the workers at watts_per_gb): source "model". With a SplitLedger
// (SimOptions::split, RAPL readable), each fit and evaluation is a work item of the
// ledger instead and its record carries its share of the measured package energy:
// source "rapl-split" (rapl_split.h); if the split stops, the records are modelled
// again and the transport logs the reason once, as a warning.
//
// Thread safety: Bind/Send/Poll from the server's thread only; the machines are
// touched only there. Workers run tasks; a virtual client has one job at a time.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "greenfed/client/client_machine.h"
#include "greenfed/coordinator/server_transport.h"
#include "greenfed/env.h"
#include "greenfed/log.h"
#include "greenfed/meter.h"
#include "greenfed/sim/rapl_split.h"
#include "greenfed/task.h"

namespace greenfed {

struct SimOptions {
  uint32_t num_clients = 10;       // virtual clients, indices 0..num_clients-1
  uint32_t workers = 1;            // worker threads that run fits and evaluations
  ClientOptions client;            // every virtual client's settings (task options, country, PUE, comm)
  // A mixed federation: virtual client K declares client_countries[K mod size] instead of
  // client.country (greenfed simulate --client-countries). Empty = client.country for all.
  std::vector<std::string> client_countries;
  PowerModel power;                // CPU model for the virtual clients' compute energy
  int stop_fd = -1;                // readable fd that requests a stop; -1 = none
  bool log_clients = false;        // virtual clients' info lines to the log (warnings always)
  // When set, every metered job (a virtual client's fit or evaluation) adds its thread CPU
  // time here, in nanoseconds, when it ends. NewEnvExcludingJobs reads it, so that the
  // coordinator's own meter, which reads the process's CPU time, does not count the virtual
  // clients' CPU a second time.
  std::shared_ptr<std::atomic<int64_t>> job_cpu_ns;
  // When set, the virtual clients' fits and evaluations take their energy from this split of
  // the measured package energy (source rapl-split) instead of the model. Null = the model.
  std::shared_ptr<SplitLedger> split;
};

// `tasks`, `env` and `log` must outlive the transport.
std::unique_ptr<ServerTransport> NewSimTransport(SimOptions options, const TaskRegistry* tasks, Env* env, Logger* log);

// Per-thread CPU seconds of the calling thread (CLOCK_THREAD_CPUTIME_ID).
double ThreadCpuSeconds();

// An Env whose ProcessCpuSeconds() is `base`'s minus the CPU seconds in `job_cpu_ns` (the
// virtual clients' metered jobs), for the coordinator of a simulation: in one process, the
// process's CPU time is the coordinator's plus every virtual client's, and the clients
// already book theirs. The CPU of a job still running is in the process figure but not yet
// in the counter; the result is kept monotonic (never below a value it returned), and it is
// exact at the points where no job runs, e.g. when a round's results are all in.
// Other calls pass through. Thread-safe.
std::unique_ptr<Env> NewEnvExcludingJobs(std::unique_ptr<Env> base, std::shared_ptr<std::atomic<int64_t>> job_cpu_ns);

}  // namespace greenfed
