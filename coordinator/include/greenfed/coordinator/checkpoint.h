// Checkpoint: what a coordinator needs to continue a run after it was killed
// (`--resume`), saved as RUN_DIR/checkpoint.bin after every completed round.
// Pure file logic: no sockets, no clocks.
//
// Contract:
// - The file is written whole or not at all (WriteFileDurable: temp file, fsync,
//   rename, fsync of the directory); a leftover checkpoint.bin.tmp is ignored.
// - It carries a SHA-256 of everything before it. LoadCheckpoint refuses, with
//   DataLoss naming the reason, a file that is truncated, has trailing bytes, has a
//   wrong magic or format version, fails the digest, or decodes to values that cannot
//   be (invalid tensors, ledger with doubled rows).
// - CheckSameRun refuses (FailedPrecondition) a checkpoint written for another
//   configuration and names every setting that differs, in flag terms:
//   "checkpoint was written for --num-clients 10, this run has 3".
// - The ledger in the checkpoint is the energy ledger at the end of the checkpoint's
//   round: a resumed run restores it instead of re-reading the CSV files, so no
//   joule is counted twice. Energy reported to the coordinator after its last
//   checkpoint and before it died is not in it (docs/run-directory.md).
// Layout (little-endian): docs/run-directory.md, "checkpoint.bin".
// Thread safety: pure functions on values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "greenfed/coordinator/round_machine.h"
#include "greenfed/run_dir.h"
#include "greenfed/status.h"
#include "greenfed/tensor.h"

namespace greenfed {

// Version of checkpoint.bin's layout; a file with another version is refused.
// 2: the sampling policy's state follows the strategy state (format 1 had none).
inline constexpr uint32_t kCheckpointFormat = 2;

// The settings that define a run: a checkpoint resumes only a run with the same.
struct RunIdentity {
  std::string run_id;  // config.json run_id (the run directory's name)
  // (flag, value) in a fixed order, e.g. ("--num-clients", "10"); values are the
  // shortest text that reads back to the same number.
  std::vector<std::pair<std::string, std::string>> settings;
  // SHA-256 (hex) of run_id and settings: the "config digest" stored in the file.
  std::string ConfigDigest() const;
  bool operator==(const RunIdentity& o) const { return run_id == o.run_id && settings == o.settings; }
};
// Identity of the run that `options` describe: task, model, partition (scheme,
// alpha, shards, seed), num_clients, seed, sampling, local training, target and
// max rounds, federated evaluation, the strategy and its hyper-parameters, the
// sampling policy (with its fairness rounds and trace path). Timeouts and min_available_clients are not in
// it: they may change on resume.
RunIdentity RunIdentityFor(const RoundOptions& options);
// OK when `now` is the run `checkpoint` was written for; else FailedPrecondition
// naming every difference.
Status CheckSameRun(const RunIdentity& checkpoint, const RunIdentity& now);

// Coordinator-level state that is not in the machine or the ledger.
struct ServerState {
  double best_accuracy = 0;              // best central test accuracy so far
  double last_accuracy = 0;              // accuracy after the last completed round
  std::optional<int64_t> round_reached;  // first round at the target, if any
  uint64_t total_bytes_sent = 0;         // by the coordinator, whole run so far
  uint64_t total_bytes_received = 0;     // by the coordinator, whole run so far
  double elapsed_s = 0;                  // wall seconds of the run so far (all processes)
  bool operator==(const ServerState& o) const;
};

struct Checkpoint {
  RunIdentity identity;   // must match the resuming run
  MachineSnapshot machine;  // completed_rounds, global model, strategy state
  ServerState server;
  RunLedger ledger;       // rounds.csv and nodes.csv rows so far
};

// The file's bytes; Internal if hashing fails.
StatusOr<std::string> EncodeCheckpoint(const Checkpoint& checkpoint);
// Parses `bytes` (the content of `name`, used in messages).
StatusOr<Checkpoint> DecodeCheckpoint(const std::string& bytes, const std::string& name = kCheckpointFile);

// RUN_DIR/checkpoint.bin, written durably.
std::string CheckpointPath(const std::string& run_dir);
Status WriteCheckpoint(const std::string& run_dir, const Checkpoint& checkpoint);
// NotFound (saying the run has no completed round to resume from) when the file is
// missing; otherwise DecodeCheckpoint's errors prefixed with the path.
StatusOr<Checkpoint> LoadCheckpoint(const std::string& run_dir);

}  // namespace greenfed
