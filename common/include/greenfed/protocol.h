// The greenfed wire protocol, defined in this one header: message types, the
// protocol version and every field of every message.
//
// Framing (one ZeroMQ multipart message; a ROUTER peer sees the routing id first):
//   frame 0      msgpack map: {"v": kProtocolVersion, "t": MsgType, ...fields}
//                When the message carries tensors, field "tensors" is the manifest:
//                an array of [name, dtype, shape, group] in frame order. The tensors
//                of one group are contiguous; group "params" holds the model.
//   frames 1..n  raw little-endian tensor bytes, one frame per manifest entry;
//                no per-element encoding.
// Decoding rejects, with a Status naming the reason: a wrong version (FailedPrecondition), an unknown
// type, a truncated or garbage header, a missing or unexpected field, a frame count
// or frame size that disagrees with the manifest, non-finite tensor values and
// messages over the size limit. Shape checks against the global model are the
// coordinator's (ValidateAgainst in tensor.h).
// Thread safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "greenfed/energy_record.h"
#include "greenfed/status.h"
#include "greenfed/tensor.h"

namespace greenfed {

// Version 2: Error carries a numeric ErrorCode and the round it answers; strings
// (ids, countries, messages) and energy-record counts are bounded at decode.
// Version 3: Fit carries an open, typed ConfigMap (the SGD settings are keys in it)
// and Fit/FitRes carry named tensor groups beside the model ("params"); every
// manifest entry names its group.
// Version 4: Fit and FitRes name the codec of group "params" ("codec"); with a
// codec other than "none" the group travels as one frame of encoded bytes
// (codec.h), its tensors still listed in the manifest (docs/codecs.md).
constexpr uint32_t kProtocolVersion = 4;
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

// Why a peer refused a message or a request. Numeric on the wire so that no peer
// ever has to match on message text; the text is for people. Append only: a
// value's meaning never changes within one kProtocolVersion.
enum class ErrorCode : uint16_t {
  kUnknown = 0,           // a code this build does not know (never sent)
  kBadMessage = 1,        // failed to decode: garbage, truncated, wrong field type, non-finite tensor
  kVersionMismatch = 2,   // protocol version differs
  kTooLarge = 3,          // over the message size limit or the peer's byte budget
  kNotJoined = 4,         // a session message from a peer that has not joined: join first
  kRunOver = 5,           // the run has ended; do not retry
  kIndexOutOfRange = 6,   // requested client index >= federation size; do not retry
  kIndexTaken = 7,        // requested client index is held by a live client (or bound to another key)
  kFederationFull = 8,    // no free client index
  kIdentityInUse = 9,     // another live connection holds this identity
  kUnauthenticated = 10,  // the transport could not authenticate the peer
  kBadUpdate = 11,        // a fit result was rejected (shape, num_examples, loss)
  kBadEnergy = 12,        // an energy record failed the plausibility bounds
  kBadIdentifier = 13,    // client_id, country or capability outside its charset or length
  kBusy = 14,             // the client is still working on earlier work
  kFitFailed = 15,        // the client's local training failed
  kEvalFailed = 16,       // the client's local evaluation failed
  kExcluded = 17,         // excluded for repeated failures; retry after the stated rounds
  kIncompatible = 18,     // task, partition or federation size differ from what the peer expects
  kUnexpected = 19,       // a message type this peer does not accept
  kInternal = 20,         // the peer itself failed (e.g. out of memory)
};
const char* ErrorCodeName(ErrorCode c);  // "BAD_MESSAGE", ...
constexpr uint16_t kMaxErrorCode = 20;

// Bounds enforced at decode; a value over them is a kBadMessage/kBadIdentifier
// with a Status naming the field.
constexpr size_t kMaxIdentifierBytes = 64;     // client_id, capability names
constexpr size_t kMaxCountryBytes = 8;         // "WORLD", "EU27", ISO alpha-3
constexpr size_t kMaxCapabilities = 32;
constexpr size_t kMaxTextBytes = 1024;         // Error.message, Shutdown.reason, Welcome names
constexpr size_t kMaxEnergyRecords = 256;      // per message; an honest client sends < 20
constexpr size_t kMaxConfigEntries = 64;       // per Fit config map
constexpr size_t kMaxTensorGroups = 16;        // groups per message, "params" included
// client_id and capabilities: [A-Za-z0-9._:@+-], 1..kMaxIdentifierBytes bytes.
// country: [A-Z0-9], 2..kMaxCountryBytes bytes.
Status ValidateIdentifier(const std::string& field, const std::string& value);
Status ValidateCountryCode(const std::string& field, const std::string& value);

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

// The per-round config a Fit carries: an open map from key to a typed value, read
// by the task. Keys follow ValidateIdentifier; at most kMaxConfigEntries entries;
// strings <= kMaxTextBytes; doubles finite. On the wire an int64 is a msgpack
// integer, a double a msgpack float (so 1.0 stays a double), a bool a bool.
using ConfigValue = std::variant<bool, int64_t, double, std::string>;
using ConfigMap = std::map<std::string, ConfigValue>;
const char* ConfigTypeName(const ConfigValue& v);  // "bool", "int", "double", "string"

// Typed readers: `fallback` when the key is absent; InvalidArgument naming the key
// and the expected type when it holds another type. ConfigDouble also takes an int
// (some encoders shrink 1.0 to 1).
StatusOr<double> ConfigDouble(const ConfigMap& config, const std::string& key, double fallback);
StatusOr<int64_t> ConfigInt(const ConfigMap& config, const std::string& key, int64_t fallback);
StatusOr<bool> ConfigBool(const ConfigMap& config, const std::string& key, bool fallback);
StatusOr<std::string> ConfigString(const ConfigMap& config, const std::string& key, const std::string& fallback);
// Checks the bounds Decode enforces (entry count, key charset, string length,
// finite doubles); the Status names the key.
Status ValidateConfig(const ConfigMap& config);

// Named tensor sets beside the model, e.g. "control" (SCAFFOLD's control variate).
// Group names follow ValidateIdentifier; "params" is the model's own group and is
// never a key here. A group travels only with at least one tensor.
using TensorGroups = std::map<std::string, Parameters>;
constexpr const char* kParamsGroup = "params";

// The typed view of the SGD keys of a ConfigMap: epochs, batch_size,
// learning_rate, momentum, seed, send_delta.
struct TrainConfig {
  uint32_t epochs = 1;
  uint32_t batch_size = 32;
  double learning_rate = 0.05;
  double momentum = 0.9;
  uint64_t seed = 0;                 // per round and client; makes local training repeatable
  bool send_delta = false;           // reply with w_local - w_global instead of w_local
};
// Writes the six keys (seed as the int64 with the same bits).
void PutTrainConfig(const TrainConfig& train, ConfigMap* config);
// Reads the six keys; each is required. The Status names a missing key, a wrong
// type or a value out of range (epochs and batch_size must fit uint32).
StatusOr<TrainConfig> ParseTrainConfig(const ConfigMap& config);

// Group "params" as an update codec encoded it (codec.h, docs/codecs.md). With
// codec "none" it is unused and the plain tensors travel in `parameters`, as in
// version 3. Otherwise `parameters` is empty on the wire: the manifest lists
// `specs` (group "params", all f32) and one frame carries `bytes`. Decode checks
// that the codec is one MakeCodec knows ("unknown codec"), that every spec is f32
// and that the frame is exactly codec.EncodedBytes(specs) long ("wrong size"); the
// receiver decodes the bytes (strictly: indices, scales, values) with the codec it
// expects, after checking that `codec` is that one.
struct EncodedParams {
  std::string codec = "none";        // a MakeCodec name: "none", "fp16", "int8", "int8:channel", "topk:0.01"
  std::vector<TensorSpec> specs;     // the encoded tensors, in order (codec != "none")
  std::vector<uint8_t> bytes;        // the codec's encoding of them (codec != "none")
  bool plain() const { return codec == "none"; }
};
constexpr const char* kCodecNone = "none";
// Config keys of every Fit: the run's codecs (--uplink-codec, --downlink-codec),
// so that a client knows what to encode its result with and what the Fit holds.
constexpr const char* kConfigUplinkCodec = "uplink_codec";
constexpr const char* kConfigDownlinkCodec = "downlink_codec";

struct FitMsg {
  uint64_t round = 0;
  ConfigMap config;                  // SGD keys (PutTrainConfig) and strategy keys
  Parameters parameters;             // global weights: group "params" (codec "none")
  EncodedParams encoded;             // or the global weights, encoded by the downlink codec
  TensorGroups groups;               // other groups, e.g. "control"
};

struct FitResMsg {
  uint64_t round = 0;
  bool is_delta = false;
  uint64_t num_examples = 0;
  double train_loss = 0;
  double fit_s = 0;                  // wall seconds of local training
  Parameters parameters;             // local weights or delta: group "params" (codec "none")
  EncodedParams encoded;             // or the delta, encoded by the uplink codec
  TensorGroups groups;               // other groups, e.g. "control" (SCAFFOLD's delta c_i)
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
  ErrorCode code = ErrorCode::kUnknown;
  uint64_t round = 0;                // the round the refused message was about; 0 if none
  std::string message;               // for people only, <= kMaxTextBytes; never parsed
};

using Message = std::variant<JoinMsg, WelcomeMsg, FitMsg, FitResMsg, EvaluateMsg, EvaluateResMsg,
                             HeartbeatMsg, ShutdownMsg, ErrorMsg>;
MsgType TypeOf(const Message& m);

// One encoded message: the frames as sent, routing id excluded.
using Frames = std::vector<std::vector<uint8_t>>;

Frames Encode(const Message& m);
// Encode(m) with `parameters` (when not null) in place of the message's group
// "params" (Fit, FitRes, Evaluate): the coordinator encodes the one global model
// into every client's Fit without copying it into each message first.
Frames EncodeWithParameters(const Message& m, const Parameters* parameters);
// `max_bytes` bounds the sum of all frame sizes.
StatusOr<Message> Decode(const Frames& frames, uint64_t max_bytes = kDefaultMaxMessageBytes);
size_t FramesBytes(const Frames& frames);
// The wire code for a Decode failure: kTooLarge (over max_bytes or a shape too
// large), kVersionMismatch, else kBadMessage.
ErrorCode DecodeErrorCode(const Status& decode_status);

}  // namespace greenfed
