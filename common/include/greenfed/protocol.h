// The greenfed wire protocol, defined in this one header: message types, the
// protocol version and every field of every message.
//
// Framing (one ZeroMQ multipart message; a ROUTER peer sees the routing id first):
//   frame 0      msgpack map: {"v": kProtocolVersion, "t": MsgType, ...fields}
//                When the message carries tensors, field "tensors" is the manifest:
//                an array of [name, dtype, shape] in frame order.
//   frames 1..n  raw little-endian tensor bytes, one frame per manifest entry;
//                no per-element encoding.
// Decoding rejects, with a Status naming the reason: a wrong version, an unknown
// type, a truncated or garbage header, a missing or unexpected field, a frame count
// or frame size that disagrees with the manifest, non-finite tensor values and
// messages over the size limit. Shape checks against the global model are the
// coordinator's (ValidateAgainst in tensor.h).
// Thread safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "greenfed/energy_record.h"
#include "greenfed/status.h"
#include "greenfed/tensor.h"

namespace greenfed {

constexpr uint32_t kProtocolVersion = 1;
// Default upper bound on one message (all frames). The model in examples/ is
// ~0.4 MB; 64 MiB leaves room for much larger models. Set on the socket as
// ZMQ_MAXMSGSIZE (per frame) and checked again on the whole message.
constexpr uint64_t kDefaultMaxMessageBytes = 64ull << 20;

enum class MsgType : uint8_t {
  kJoin = 1,
  kWelcome = 2,
  kFit = 3,
  kFitRes = 4,
  kEvaluate = 5,
  kEvaluateRes = 6,
  kHeartbeat = 7,
  kShutdown = 8,
  kError = 9,
};
const char* MsgTypeName(MsgType t);

// Client -> coordinator, first message of a session.
struct JoinMsg {
  std::string client_id;             // stable, human-readable (e.g. hostname-pid)
  int32_t requested_index = -1;      // -1: let the coordinator assign one
  uint64_t num_examples = 0;         // 0 when the shard is built after Welcome
  std::vector<std::string> capabilities;  // e.g. "delta", "evaluate", "meter:model"
  std::string country;               // ISO 3166-1 alpha-3, for carbon accounting
  double pue = 1.0;                  // 1.0 for a device at home
};

// How a client builds its own shard: nothing but these numbers travels.
struct PartitionSpec {
  std::string scheme = "iid";        // "iid", "shards", "dirichlet"
  double alpha = 0.5;                // Dirichlet concentration
  uint32_t shards_per_client = 2;    // pathological non-IID (McMahan et al. 2017)
  uint64_t seed = 0;
  uint32_t num_clients = 1;
};

// Coordinator -> client, answer to Join.
struct WelcomeMsg {
  uint32_t client_index = 0;         // this client's shard index, 0..num_clients-1
  PartitionSpec partition;
  std::string task;                  // registered task name, e.g. "fashion_mnist"
  std::string model;                 // registered model name, e.g. "cnn"
  std::string run_id;
  uint32_t heartbeat_interval_ms = 1000;
};

struct TrainConfig {
  uint32_t epochs = 1;
  uint32_t batch_size = 32;
  double learning_rate = 0.05;
  double momentum = 0.9;
  uint64_t seed = 0;                 // per round and client; makes local training repeatable
  bool send_delta = false;           // reply with w_local - w_global instead of w_local
};

struct FitMsg {
  uint64_t round = 0;
  TrainConfig config;
  Parameters parameters;             // global weights
};

struct FitResMsg {
  uint64_t round = 0;
  bool is_delta = false;
  uint64_t num_examples = 0;
  double train_loss = 0;
  double fit_s = 0;                  // wall seconds of local training
  Parameters parameters;             // local weights or delta
  std::vector<EnergyRecord> energy;  // records since the previous report
};

struct EvaluateMsg {
  uint64_t round = 0;
  Parameters parameters;
};

struct EvaluateResMsg {
  uint64_t round = 0;
  double loss = 0;
  double accuracy = 0;
  uint64_t num_examples = 0;
  std::vector<EnergyRecord> energy;
};

struct HeartbeatMsg {
  uint64_t round = 0;                // round the sender is working on, 0 if idle
  // Usually empty. A client answers Shutdown with a last heartbeat that carries the
  // energy it used since its last report, so that no joule goes unaccounted.
  std::vector<EnergyRecord> energy;
};

struct ShutdownMsg {
  std::string reason;                // e.g. "target reached", "max rounds"
};

struct ErrorMsg {
  std::string code;                  // CodeName() of the Status
  std::string message;
};

using Message = std::variant<JoinMsg, WelcomeMsg, FitMsg, FitResMsg, EvaluateMsg, EvaluateResMsg,
                             HeartbeatMsg, ShutdownMsg, ErrorMsg>;
MsgType TypeOf(const Message& m);

// One encoded message: the frames as sent, routing id excluded.
using Frames = std::vector<std::vector<uint8_t>>;

Frames Encode(const Message& m);
// `max_bytes` bounds the sum of all frame sizes.
StatusOr<Message> Decode(const Frames& frames, uint64_t max_bytes = kDefaultMaxMessageBytes);
size_t FramesBytes(const Frames& frames);

}  // namespace greenfed
