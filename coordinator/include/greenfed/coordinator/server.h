// Server: the coordinator's event loop. It decodes what arrives through its
// ServerTransport (server_transport.h: a ZeroMQ ROUTER socket by default, the
// in-process transport of `greenfed simulate`) into RoundMachine events,
// executes the machine's actions (send, evaluate centrally, write the run
// directory), meters the coordinator itself and books every client's energy.
//
// Bad input never stops the run: a message that fails to decode, a join with an
// unknown country, an update of the wrong shape — each is logged with its reason,
// answered with an Error where there is a peer to answer, and the loop carries on.
// Transport security: CURVE by default. Bind() refuses to start without a secret key
// and a non-empty allow-list unless `insecure` is set. With CURVE, a ZAP handler
// (coordinator/src/zap.h) admits only allow-listed client keys, and every message
// reaches the machine with identity "curve:<Z85 client key>"; a routing id, once
// seen with one identity, is refused under another.
// Byte budgets, before anything is copied: a message over max_message_bytes, or over
// its peer's remaining budget, is drained frame by frame without being kept and
// answered with an Error (greenfed/transport.h). The loop copies one message at a
// time, so its memory for received data is max_message_bytes whatever the number of
// senders; libzmq's own queue is bounded per peer by receive_hwm_messages complete
// messages (plus one incomplete multipart: see transport.h and docs/deployment.md).
// Thread safety: Run() blocks the calling thread; one Server per thread. With CURVE
// the server owns one more thread, the ZAP handler's.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "greenfed/carbon.h"
#include "greenfed/coordinator/checkpoint.h"
#include "greenfed/coordinator/round_machine.h"
#include "greenfed/coordinator/server_transport.h"
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
  uint64_t max_message_bytes = kDefaultMaxMessageBytes;  // larger messages are drained unread and refused
  // Transport security (docs/deployment.md, "Security").
  std::string curve_secret_key;              // the coordinator's Z85 secret key; "" = no CURVE
  std::vector<std::string> allowed_client_keys;  // Z85 public keys admitted with CURVE
  bool insecure = false;                     // plaintext, anyone may join; must be asked for explicitly
  // Per-peer budget (by CURVE key, else by routing id): bytes one peer may send per
  // window; beyond it its messages are drained unread and refused until the window ends.
  uint64_t peer_bytes_per_window = 0;        // 0 = 4 x max_message_bytes
  double peer_window_s = 10.0;               // budget window in seconds
  int receive_hwm_messages = 16;             // ZMQ_RCVHWM: complete messages libzmq queues per peer
  double tick_s = 0.1;                       // how often deadlines and heartbeats are checked
  double shutdown_grace_s = 3.0;             // wait for clients' last energy reports after Shutdown
  std::string country = "WORLD";             // the coordinator's own country (ISO alpha-3)
  double pue = 1.0;                          // the coordinator's own PUE
  CommModel comm;                            // energy per byte moved
  std::vector<std::string> reference_countries = DefaultReferenceCountries();  // for summary.json
  int stop_fd = -1;                          // readable fd (signalfd) that requests a clean stop; -1 = none
  double max_node_power_w = 10000;           // plausibility bound on a client's reported power (energy_record.h)
  // Energy records with source rapl-split: only greenfed simulate's in-process virtual clients
  // produce them (sim/rapl_split.h), so a peer over a network that claims one is refused.
  bool accept_apportioned_energy = false;
  bool write_checkpoints = true;             // RUN_DIR/checkpoint.bin after every completed round
  RunIdentity identity;                      // stored in checkpoints; empty run_id = RunIdentityFor(round)
  // Continue this checkpoint's run (--resume) instead of starting at round 1. The
  // RunDir's ledger must already be restored from it (RunDir::Restore). Empty = a new run.
  std::optional<Checkpoint> resume;
};

struct ServerResult {
  bool reached = false;     // target accuracy reached
  bool failed = false;      // stopped by an error, not by target or max rounds
  int64_t rounds = 0;
  double final_accuracy = 0;
  std::string stop_reason;
  // Transport figures of the run.
  uint64_t refused_messages = 0;        // drained unread: too large, over budget or out of memory
  uint64_t peak_copied_message_bytes = 0;  // most bytes the receive path held for one message
  uint64_t refused_handshakes = 0;      // CURVE handshakes the ZAP handler refused
};

class Server {
 public:
  // All pointers must outlive the server. `eval_task` is prepared for the
  // coordinator role; `initial` are the starting global parameters.
  Server(ServerOptions options, Task* eval_task, Parameters initial, const CarbonTable* carbon,
         PhaseMeter* meter, RunDir* run_dir, Env* env, Logger* log);
  // The same server over another transport (server_transport.h), e.g. greenfed
  // simulate's in-process one; null = the ZeroMQ ROUTER socket from `options`.
  Server(ServerOptions options, std::unique_ptr<ServerTransport> transport, Task* eval_task, Parameters initial,
         const CarbonTable* carbon, PhaseMeter* meter, RunDir* run_dir, Env* env, Logger* log);
  // Binds; returns the bound endpoint (useful with a wildcard port).
  StatusOr<std::string> Bind();
  // Runs until the machine stops. Requires Bind(). With options.resume, continues
  // after the checkpoint's last completed round: elapsed time, byte counts, best
  // accuracy and the round that reached the target carry over.
  StatusOr<ServerResult> Run();
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

 private:
  struct Impl;  // keeps zmq.hpp out of this header
  std::unique_ptr<Impl> impl_;
};

}  // namespace greenfed
