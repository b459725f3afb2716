// Client: one federated participant. Connects a DEALER socket to the coordinator,
// joins, builds its own data shard from the Welcome (nothing but a seed and a few
// numbers travel), then trains and evaluates on request until told to shut down.
// In own-data mode (ClientOptions::own_data_task) it loads its own file first and
// declares the example count at Join instead; the coordinator bounds it.
//
// Training runs on a worker thread, so heartbeats keep flowing during long local
// epochs. The client meters every phase (idle, fit, evaluate, communication) and
// sends the records with its next message; its last heartbeat, sent in answer to
// Shutdown, carries the remainder.
// A client started before its coordinator keeps retrying with exponential backoff;
// one that loses its coordinator mid-run rejoins with the same index.
// Transport security: CURVE by default, pinned to the coordinator's public key;
// plaintext only with `insecure`. A CURVE handshake that fails (wrong server key, a
// key the coordinator does not allow, a plaintext coordinator) is silent in ZeroMQ:
// a socket monitor counts the failures, and after max_handshake_failures in a row
// Run() returns PERMISSION_DENIED "server key mismatch or handshake failed".
// Every message from the coordinator is received within max_message_bytes before
// it is copied (greenfed/transport.h): a hostile coordinator cannot make it buffer more.
// Thread safety: Run() blocks the calling thread; one Client per thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "greenfed/carbon.h"
#include "greenfed/env.h"
#include "greenfed/log.h"
#include "greenfed/meter.h"
#include "greenfed/protocol.h"
#include "greenfed/status.h"
#include "greenfed/task.h"

namespace greenfed {

struct ClientOptions {
  std::string connect = "tcp://127.0.0.1:5555";  // coordinator endpoint
  std::string client_id;                  // defaults to hostname-pid when empty
  int32_t requested_index = -1;           // -1: the coordinator assigns one
  uint32_t expected_num_clients = 0;      // 0: accept the coordinator's; else must match
  std::string expected_partition;         // "": accept the coordinator's scheme; else must match
  TaskOptions task;                       // data dir, threads, caps; partition comes from Welcome
  // Own-data mode (task.own_data_path set): the client prepares this registered task
  // with task.model on its own file before joining, declares its example count in
  // Join, and refuses a coordinator that runs another task or model, or partitions
  // (its Welcome scheme is not "none"). Unused in partitioned mode.
  std::string own_data_task;
  std::string country = "WORLD";          // ISO 3166-1 alpha-3 of this device
  double pue = 1.0;                       // 1.0 for a device at home
  CommModel comm;                         // energy per byte moved
  double connect_timeout_s = 300;         // give up when no coordinator answers this long (0 = never)
  double initial_backoff_s = 0.5;         // first retry delay; doubles up to max_backoff_s
  double max_backoff_s = 5.0;
  double coordinator_timeout_s = 120;     // silence after which the client rejoins
  uint64_t max_message_bytes = kDefaultMaxMessageBytes;  // larger messages are drained unread and refused
  // Transport security (docs/deployment.md, "Security").
  std::string curve_secret_key;           // this client's Z85 secret key; "" = no CURVE
  std::string curve_public_key;           // this client's Z85 public key (from the same .key file)
  std::string curve_server_key;           // the coordinator's Z85 public key, pinned
  bool insecure = false;                  // plaintext; must be asked for explicitly
  int max_handshake_failures = 3;         // failed CURVE handshakes in a row before giving up
  // Fault injection for robustness experiments (docs/strategies.md): this client
  // turns its honest update d = w_local - w_global into attack_scale * d before
  // sending, e.g. 100 (a scaled update) or -1 (a sign flip). 1 = honest.
  double attack_scale = 1.0;
  // Fit slots (client/fit_slots.h): with a directory set, each local training first takes one
  // of fit_slots lock files in it and holds it until the Fit returns; the wait is metered as
  // idle. `greenfed run` sets both so that its clients never train more at once than cores.
  std::string fit_slots_dir;              // "" = no limit
  uint32_t fit_slots = 0;                 // the number of slot files; >= 1 when fit_slots_dir is set
};

struct ClientResult {
  uint32_t client_index = 0;
  uint64_t rounds_trained = 0;
  std::string shutdown_reason;
};

class Client {
 public:
  // Pointers must outlive the client.
  Client(ClientOptions options, const TaskRegistry* tasks, PhaseMeter* meter, Env* env, Logger* log);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  // Runs until Shutdown (OK), a fatal error, or a readable stop_fd (-1 = none).
  StatusOr<ClientResult> Run(int stop_fd = -1);

 private:
  struct Impl;  // keeps zmq.hpp out of this header
  std::unique_ptr<Impl> impl_;
};

}  // namespace greenfed
