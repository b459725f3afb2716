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
// The logic (join, rejoin, shard, state, bookkeeping) is ClientMachine's
// (client_machine.h); this class is its driver: socket, worker thread, meters.
// Thread safety: Run() blocks the calling thread; one Client per thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "greenfed/client/client_machine.h"
#include "greenfed/carbon.h"
#include "greenfed/env.h"
#include "greenfed/log.h"
#include "greenfed/meter.h"
#include "greenfed/protocol.h"
#include "greenfed/status.h"
#include "greenfed/task.h"

namespace greenfed {

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
