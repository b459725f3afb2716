// Wire codec for the messages of protocol.h: frame 0 is a msgpack map, frames 1..n
// are raw tensor bytes in manifest order.
//
// Header keys (frame 0). They are spelled only in namespace `key` below; a key's
// meaning and type never change within one kProtocolVersion.
//   every message  "v" uint (kProtocolVersion), "t" uint (MsgType)
//   Join           "client_id" str, "req_index" int, "n_examples" uint, "caps" [str],
//                  "country" str, "pue" float
//   Welcome        "index" uint, "partition" PartitionSpec, "task" str, "model" str,
//                  "run_id" str, "hb_ms" uint
//   Fit            "round" uint, "config" ConfigMap, "codec" str, "tensors" manifest (groups)
//   FitRes         "round" uint, "is_delta" bool, "n_examples" uint, "loss" float,
//                  "fit_s" float, "codec" str, "tensors" manifest (groups),
//                  "energy" [EnergyRecord]
//   Evaluate       "round" uint, "tensors" manifest
//   EvaluateRes    "round" uint, "loss" float, "accuracy" float, "n_examples" uint,
//                  "energy" [EnergyRecord]
//   Heartbeat      "round" uint, "energy" [EnergyRecord]
//   Shutdown       "reason" str
//   Error          "code" uint (ErrorCode), "round" uint, "message" str
// Nested maps:
//   PartitionSpec  "scheme" str, "alpha" float, "shards_per_client" uint, "seed" uint,
//                  "n_clients" uint
//   ConfigMap      up to kMaxConfigEntries keys (ValidateIdentifier), each a bool,
//                  an integer (int64), a float (finite) or a str (<= kMaxTextBytes).
//                  TrainConfig lives in it as "epochs", "batch_size",
//                  "learning_rate", "momentum", "seed" (int64 bits), "send_delta".
//   EnergyRecord   "phase" str (PhaseName), "round" int, "wall_s" float, "cpu_s" float,
//                  "energy_j" float, "sent" uint, "received" uint,
//                  "source" str (EnergySourceName), "measured" bool
//   manifest       array of [name str, dtype str (DTypeName), shape [int], group str];
//                  group names follow ValidateIdentifier, a group's entries are
//                  contiguous, at most kMaxTensorGroups groups, names unique within
//                  a group. Evaluate's tensors are all group "params".
//   codec          (v4) the codec of group "params": "none" = one raw frame per
//                  tensor as above; otherwise a MakeCodec name, and the group's
//                  tensors (listed in the manifest, all f32) travel together as
//                  frame 1, exactly UpdateCodec::EncodedBytes(specs) long; the
//                  other groups' frames follow it.
//
// Every listed field is required. Keys the decoder does not know are ignored, so a
// newer peer may add fields without a version bump (forward compatibility); removing
// a key or changing its type needs kProtocolVersion + 1. Encode writes every "float"
// as a msgpack float64, integral values included (MapWriter::Put(double)). "float"
// fields also accept msgpack integers, because some encoders (e.g. JavaScript ones,
// and greenfed's own before 2026-12-01) shrink 1.0 to 1; in a ConfigMap such a value
// arrives as an int64, which ConfigDouble accepts.
#include "greenfed/protocol.h"

#include <msgpack.hpp>

#include "greenfed/codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <new>
#include <set>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <utility>

namespace greenfed {
namespace {

namespace key {
constexpr const char* kVersion = "v";
constexpr const char* kType = "t";
constexpr const char* kTensors = "tensors";
constexpr const char* kEnergy = "energy";
constexpr const char* kRound = "round";
constexpr const char* kNumExamples = "n_examples";
// Join
constexpr const char* kClientId = "client_id";
constexpr const char* kRequestedIndex = "req_index";
constexpr const char* kCapabilities = "caps";
constexpr const char* kCountry = "country";
constexpr const char* kPue = "pue";
// Welcome
constexpr const char* kClientIndex = "index";
constexpr const char* kPartition = "partition";
constexpr const char* kTask = "task";
constexpr const char* kModel = "model";
constexpr const char* kRunId = "run_id";
constexpr const char* kHeartbeatMs = "hb_ms";
// PartitionSpec
constexpr const char* kScheme = "scheme";
constexpr const char* kAlpha = "alpha";
constexpr const char* kShardsPerClient = "shards_per_client";
constexpr const char* kSeed = "seed";
constexpr const char* kNumClients = "n_clients";
// Fit
constexpr const char* kConfig = "config";
constexpr const char* kCodec = "codec";  // Fit, FitRes (v4)
// FitRes / EvaluateRes
constexpr const char* kIsDelta = "is_delta";
constexpr const char* kLoss = "loss";
constexpr const char* kFitS = "fit_s";
constexpr const char* kAccuracy = "accuracy";
// Shutdown / Error
constexpr const char* kReason = "reason";
constexpr const char* kCode = "code";
constexpr const char* kMessage = "message";
// EnergyRecord
constexpr const char* kPhase = "phase";
constexpr const char* kWallS = "wall_s";
constexpr const char* kCpuS = "cpu_s";
constexpr const char* kEnergyJ = "energy_j";
constexpr const char* kBytesSent = "sent";
constexpr const char* kBytesReceived = "received";
constexpr const char* kSource = "source";
constexpr const char* kMeasured = "measured";
}  // namespace key

// Deep enough for every message plus room for nested fields added later; a bound
// keeps hostile headers from recursing without limit.
constexpr size_t kMaxHeaderDepth = 32;

using Packer = msgpack::packer<msgpack::sbuffer>;
namespace mtype = msgpack::type;

// ---------------------------------------------------------------------------
// Encoding

// Packs one msgpack map whose size is known only at the end: the body goes to its
// own buffer and is appended behind the map header, so no code counts fields by hand.
class MapWriter {
 public:
  MapWriter() : pk_(body_) {}
  MapWriter(const MapWriter&) = delete;
  MapWriter& operator=(const MapWriter&) = delete;

  // Writes the key; the caller packs exactly one value next.
  Packer& Key(const char* k) {
    ++size_;
    const auto n = static_cast<uint32_t>(std::strlen(k));
    pk_.pack_str(n);
    pk_.pack_str_body(k, n);
    return pk_;
  }

  void Put(const char* k, uint64_t v) { Key(k).pack_uint64(v); }
  void Put(const char* k, uint32_t v) { Key(k).pack_uint32(v); }
  void Put(const char* k, int64_t v) { Key(k).pack_int64(v); }
  void Put(const char* k, int32_t v) { Key(k).pack_int32(v); }
  // Always a msgpack float64 (0xcb + 8 big-endian bytes). Not Packer::pack_double: it
  // writes an integral double (0.0, 3.0, 1.66e19) as a msgpack integer, which turns a
  // ConfigMap double into an int64 on the other side (or, at or above 2^63, into a
  // decode error), drops the sign of -0.0, and casts 2^64 to uint64 (undefined).
  void Put(const char* k, double v) {
    Key(k);
    uint64_t bits = 0;
    static_assert(sizeof bits == sizeof v, "double must be 64 bits");
    std::memcpy(&bits, &v, sizeof bits);
    char buf[9];
    buf[0] = static_cast<char>(0xcb);
    for (int i = 0; i < 8; ++i) buf[1 + i] = static_cast<char>((bits >> (56 - 8 * i)) & 0xff);
    body_.write(buf, sizeof buf);
  }
  void Put(const char* k, bool v) {
    if (v) {
      Key(k).pack_true();
    } else {
      Key(k).pack_false();
    }
  }
  void Put(const char* k, const std::string& v) { PackString(Key(k), v); }
  void Put(const char* k, const char* v) = delete;  // would silently pick the bool overload
  void Put(const char* k, const std::vector<std::string>& v) {
    Key(k).pack_array(static_cast<uint32_t>(v.size()));
    for (const auto& s : v) PackString(pk_, s);
  }
  void Put(const char* k, const MapWriter& nested) {
    Key(k);
    AppendValue(nested);
  }
  // Appends `nested` as a value (an array element after Key(k).pack_array(n)).
  void AppendValue(const MapWriter& nested) { nested.WriteTo(pk_, body_); }

  void WriteTo(Packer& pk, msgpack::sbuffer& buf) const {
    pk.pack_map(size_);
    buf.write(body_.data(), body_.size());
  }

  static void PackString(Packer& pk, const std::string& s) {
    const auto n = static_cast<uint32_t>(s.size());
    pk.pack_str(n);
    pk.pack_str_body(s.data(), n);
  }

 private:
  msgpack::sbuffer body_;
  Packer pk_;
  uint32_t size_ = 0;
};

void PutPartition(MapWriter& w, const PartitionSpec& p) {
  MapWriter m;
  m.Put(key::kScheme, p.scheme);
  m.Put(key::kAlpha, p.alpha);
  m.Put(key::kShardsPerClient, p.shards_per_client);
  m.Put(key::kSeed, p.seed);
  m.Put(key::kNumClients, p.num_clients);
  w.Put(key::kPartition, m);
}

void PutConfig(MapWriter& w, const ConfigMap& config) {
  MapWriter m;
  for (const auto& [k, v] : config) {
    if (const auto* b = std::get_if<bool>(&v)) {
      m.Put(k.c_str(), *b);
    } else if (const auto* i = std::get_if<int64_t>(&v)) {
      m.Put(k.c_str(), *i);
    } else if (const auto* d = std::get_if<double>(&v)) {
      m.Put(k.c_str(), *d);
    } else {
      m.Put(k.c_str(), std::get<std::string>(v));
    }
  }
  w.Put(key::kConfig, m);
}

void PutEnergy(MapWriter& w, const std::vector<EnergyRecord>& records) {
  w.Key(key::kEnergy).pack_array(static_cast<uint32_t>(records.size()));
  for (const auto& r : records) {
    MapWriter m;
    m.Put(key::kPhase, std::string(PhaseName(r.phase)));
    m.Put(key::kRound, r.round);
    m.Put(key::kWallS, r.wall_s);
    m.Put(key::kCpuS, r.cpu_s);
    m.Put(key::kEnergyJ, r.energy_j);
    m.Put(key::kBytesSent, r.bytes_sent);
    m.Put(key::kBytesReceived, r.bytes_received);
    m.Put(key::kSource, std::string(EnergySourceName(r.source)));
    m.Put(key::kMeasured, r.measured);
    w.AppendValue(m);
  }
}

// The tensors a message carries, group by group in frame order. `present` is false
// for a message type without tensors (no manifest at all).
// With `encoded` set, group "params" is encoded: its specs come first in the
// manifest and its bytes are frame 1; `groups` then holds the other groups only.
struct TensorList {
  bool present = false;
  const EncodedParams* encoded = nullptr;
  std::vector<std::pair<std::string, const Parameters*>> groups;

  static TensorList None() { return {}; }
  static TensorList Of(const Parameters& params, const TensorGroups* groups = nullptr,
                       const EncodedParams* encoded = nullptr) {
    TensorList l;
    l.present = true;
    if (encoded != nullptr && !encoded->plain()) {
      l.encoded = encoded;
    } else {
      l.groups.emplace_back(kParamsGroup, &params);
    }
    if (groups != nullptr) {
      for (const auto& [name, tensors] : *groups) {
        if (!tensors.empty()) l.groups.emplace_back(name, &tensors);
      }
    }
    return l;
  }
  size_t NumPlainTensors() const {
    size_t n = 0;
    for (const auto& g : groups) n += g.second->size();
    return n;
  }
  size_t NumEntries() const { return NumPlainTensors() + (encoded != nullptr ? encoded->specs.size() : 0); }
  size_t NumFrames() const { return NumPlainTensors() + (encoded != nullptr ? 1 : 0); }
};

void PackEntry(Packer& pk, const std::string& name, DType dtype, const std::vector<int64_t>& shape,
               const std::string& group) {
  pk.pack_array(4);
  MapWriter::PackString(pk, name);
  MapWriter::PackString(pk, DTypeName(dtype));
  pk.pack_array(static_cast<uint32_t>(shape.size()));
  for (int64_t d : shape) pk.pack_int64(d);
  MapWriter::PackString(pk, group);
}

void PutManifest(MapWriter& w, const TensorList& list) {
  Packer& pk = w.Key(key::kTensors);
  pk.pack_array(static_cast<uint32_t>(list.NumEntries()));
  if (list.encoded != nullptr) {
    for (const TensorSpec& s : list.encoded->specs) PackEntry(pk, s.name, s.dtype, s.shape, kParamsGroup);
  }
  for (const auto& [group, params] : list.groups) {
    for (const auto& t : *params) PackEntry(pk, t.name, t.dtype, t.shape, group);
  }
}

// Each returns the tensors the message carries.
TensorList PutFields(MapWriter& w, const JoinMsg& m) {
  w.Put(key::kClientId, m.client_id);
  w.Put(key::kRequestedIndex, m.requested_index);
  w.Put(key::kNumExamples, m.num_examples);
  w.Put(key::kCapabilities, m.capabilities);
  w.Put(key::kCountry, m.country);
  w.Put(key::kPue, m.pue);
  return TensorList::None();
}
TensorList PutFields(MapWriter& w, const WelcomeMsg& m) {
  w.Put(key::kClientIndex, m.client_index);
  PutPartition(w, m.partition);
  w.Put(key::kTask, m.task);
  w.Put(key::kModel, m.model);
  w.Put(key::kRunId, m.run_id);
  w.Put(key::kHeartbeatMs, m.heartbeat_interval_ms);
  return TensorList::None();
}
TensorList PutFields(MapWriter& w, const FitMsg& m) {
  w.Put(key::kRound, m.round);
  PutConfig(w, m.config);
  w.Put(key::kCodec, m.encoded.codec);
  return TensorList::Of(m.parameters, &m.groups, &m.encoded);
}
TensorList PutFields(MapWriter& w, const FitResMsg& m) {
  w.Put(key::kRound, m.round);
  w.Put(key::kIsDelta, m.is_delta);
  w.Put(key::kNumExamples, m.num_examples);
  w.Put(key::kLoss, m.train_loss);
  w.Put(key::kFitS, m.fit_s);
  PutEnergy(w, m.energy);
  w.Put(key::kCodec, m.encoded.codec);
  return TensorList::Of(m.parameters, &m.groups, &m.encoded);
}
TensorList PutFields(MapWriter& w, const EvaluateMsg& m) {
  w.Put(key::kRound, m.round);
  return TensorList::Of(m.parameters);
}
TensorList PutFields(MapWriter& w, const EvaluateResMsg& m) {
  w.Put(key::kRound, m.round);
  w.Put(key::kLoss, m.loss);
  w.Put(key::kAccuracy, m.accuracy);
  w.Put(key::kNumExamples, m.num_examples);
  PutEnergy(w, m.energy);
  return TensorList::None();
}
TensorList PutFields(MapWriter& w, const HeartbeatMsg& m) {
  w.Put(key::kRound, m.round);
  PutEnergy(w, m.energy);
  return TensorList::None();
}
TensorList PutFields(MapWriter& w, const ShutdownMsg& m) {
  w.Put(key::kReason, m.reason);
  return TensorList::None();
}
TensorList PutFields(MapWriter& w, const ErrorMsg& m) {
  w.Put(key::kCode, static_cast<uint32_t>(m.code));
  w.Put(key::kRound, m.round);
  w.Put(key::kMessage, m.message);
  return TensorList::None();
}

constexpr MsgType TypeOfMsg(const JoinMsg&) { return MsgType::kJoin; }
constexpr MsgType TypeOfMsg(const WelcomeMsg&) { return MsgType::kWelcome; }
constexpr MsgType TypeOfMsg(const FitMsg&) { return MsgType::kFit; }
constexpr MsgType TypeOfMsg(const FitResMsg&) { return MsgType::kFitRes; }
constexpr MsgType TypeOfMsg(const EvaluateMsg&) { return MsgType::kEvaluate; }
constexpr MsgType TypeOfMsg(const EvaluateResMsg&) { return MsgType::kEvaluateRes; }
constexpr MsgType TypeOfMsg(const HeartbeatMsg&) { return MsgType::kHeartbeat; }
constexpr MsgType TypeOfMsg(const ShutdownMsg&) { return MsgType::kShutdown; }
constexpr MsgType TypeOfMsg(const ErrorMsg&) { return MsgType::kError; }

// ---------------------------------------------------------------------------
// Decoding. Every value is type-checked by hand (no object::as<T>), so a wrong type
// becomes a Status naming the field instead of a msgpack::type_error.

const char* ObjectTypeName(const msgpack::object& o) {
  switch (o.type) {
    case mtype::NIL: return "nil";
    case mtype::BOOLEAN: return "bool";
    case mtype::POSITIVE_INTEGER: return "unsigned integer";
    case mtype::NEGATIVE_INTEGER: return "negative integer";
    case mtype::FLOAT32: return "float32";
    case mtype::FLOAT64: return "float64";
    case mtype::STR: return "string";
    case mtype::BIN: return "binary";
    case mtype::ARRAY: return "array";
    case mtype::MAP: return "map";
    case mtype::EXT: return "ext";
  }
  return "unknown msgpack type";
}

Status WrongType(const std::string& field, const char* expected, const msgpack::object& got) {
  return InvalidArgument("field '" + field + "' must be " + expected + ", got " + ObjectTypeName(got));
}

template <typename T>
const char* IntTypeName() {
  if (std::is_same_v<T, uint64_t>) return "uint64";
  if (std::is_same_v<T, uint32_t>) return "uint32";
  if (std::is_same_v<T, int64_t>) return "int64";
  if (std::is_same_v<T, int32_t>) return "int32";
  return "integer";
}

template <typename T, typename = std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>>>
Status ReadValue(const msgpack::object& o, const std::string& field, T* out) {
  if (o.type == mtype::POSITIVE_INTEGER) {
    if (o.via.u64 > static_cast<uint64_t>(std::numeric_limits<T>::max())) {
      return InvalidArgument("field '" + field + "' value " + std::to_string(o.via.u64) + " is out of range for " +
                             IntTypeName<T>());
    }
    *out = static_cast<T>(o.via.u64);
    return Status::Ok();
  }
  if (o.type == mtype::NEGATIVE_INTEGER) {
    if constexpr (std::is_signed_v<T>) {
      if (o.via.i64 < static_cast<int64_t>(std::numeric_limits<T>::min())) {
        return InvalidArgument("field '" + field + "' value " + std::to_string(o.via.i64) + " is out of range for " +
                               IntTypeName<T>());
      }
      *out = static_cast<T>(o.via.i64);
      return Status::Ok();
    } else {
      return InvalidArgument("field '" + field + "' must be non-negative, got " + std::to_string(o.via.i64));
    }
  }
  return WrongType(field, std::is_signed_v<T> ? "an integer" : "an unsigned integer", o);
}

Status ReadValue(const msgpack::object& o, const std::string& field, double* out) {
  switch (o.type) {
    case mtype::FLOAT32:
    case mtype::FLOAT64: *out = o.via.f64; return Status::Ok();
    case mtype::POSITIVE_INTEGER: *out = static_cast<double>(o.via.u64); return Status::Ok();
    case mtype::NEGATIVE_INTEGER: *out = static_cast<double>(o.via.i64); return Status::Ok();
    default: return WrongType(field, "a number", o);
  }
}

Status ReadValue(const msgpack::object& o, const std::string& field, bool* out) {
  if (o.type != mtype::BOOLEAN) return WrongType(field, "a bool", o);
  *out = o.via.boolean;
  return Status::Ok();
}

Status ReadValue(const msgpack::object& o, const std::string& field, std::string* out) {
  if (o.type != mtype::STR) return WrongType(field, "a string", o);
  out->assign(o.via.str.ptr, o.via.str.size);
  return Status::Ok();
}

Status ReadArray(const msgpack::object& o, const std::string& field, const msgpack::object_array** out) {
  if (o.type != mtype::ARRAY) return WrongType(field, "an array", o);
  *out = &o.via.array;
  return Status::Ok();
}

Status ReadValue(const msgpack::object& o, const std::string& field, std::vector<std::string>* out) {
  const msgpack::object_array* arr = nullptr;
  GREENFED_RETURN_IF_ERROR(ReadArray(o, field, &arr));
  out->clear();
  out->reserve(arr->size);
  for (uint32_t i = 0; i < arr->size; ++i) {
    std::string s;
    GREENFED_RETURN_IF_ERROR(ReadValue(arr->ptr[i], field + "[" + std::to_string(i) + "]", &s));
    out->push_back(std::move(s));
  }
  return Status::Ok();
}

// A view of one msgpack map with string keys. `path` names the map in errors
// ("config", "energy[2]"); empty for the header itself. Valid while the unpacked
// object lives.
class MapReader {
 public:
  static StatusOr<MapReader> Make(const msgpack::object& o, std::string path) {
    if (o.type != mtype::MAP) {
      if (path.empty()) return DataLoss(std::string("header must be a msgpack map, got ") + ObjectTypeName(o));
      return WrongType(path, "a map", o);
    }
    MapReader r;
    r.path_ = std::move(path);
    r.entries_.reserve(o.via.map.size);
    for (uint32_t i = 0; i < o.via.map.size; ++i) {
      const msgpack::object_kv& kv = o.via.map.ptr[i];
      if (kv.key.type != mtype::STR) {
        return InvalidArgument("key #" + std::to_string(i) + " of " + r.MapName() + " must be a string, got " +
                               ObjectTypeName(kv.key));
      }
      std::string_view k(kv.key.via.str.ptr, kv.key.via.str.size);
      if (r.Find(k) != nullptr) return InvalidArgument("duplicate key '" + std::string(k) + "' in " + r.MapName());
      r.entries_.emplace_back(k, &kv.val);
    }
    return r;
  }

  const std::vector<std::pair<std::string_view, const msgpack::object*>>& entries() const { return entries_; }

  // nullptr when absent. Maps are small (< 10 keys), so a linear scan is fastest.
  const msgpack::object* Find(std::string_view k) const {
    for (const auto& e : entries_) {
      if (e.first == k) return e.second;
    }
    return nullptr;
  }

  std::string Field(const char* k) const { return path_.empty() ? std::string(k) : path_ + "." + k; }

  template <typename T>
  Status Read(const char* k, T* out) const {
    const msgpack::object* o = nullptr;
    GREENFED_RETURN_IF_ERROR(Require(k, &o));
    return ReadValue(*o, Field(k), out);
  }

  Status Require(const char* k, const msgpack::object** out) const {
    *out = Find(k);
    if (*out == nullptr) return InvalidArgument("missing required field '" + Field(k) + "'");
    return Status::Ok();
  }

  StatusOr<MapReader> Nested(const char* k) const {
    const msgpack::object* o = nullptr;
    GREENFED_RETURN_IF_ERROR(Require(k, &o));
    return Make(*o, Field(k));
  }

  Status RequireArray(const char* k, const msgpack::object_array** out) const {
    const msgpack::object* o = nullptr;
    GREENFED_RETURN_IF_ERROR(Require(k, &o));
    return ReadArray(*o, Field(k), out);
  }

 private:
  std::string MapName() const { return path_.empty() ? std::string("the header") : "'" + path_ + "'"; }

  std::string path_;
  std::vector<std::pair<std::string_view, const msgpack::object*>> entries_;
};

// A string field with a length bound, checked before the bytes are copied.
Status ReadText(const MapReader& r, const char* k, size_t max_bytes, std::string* out) {
  const msgpack::object* o = nullptr;
  GREENFED_RETURN_IF_ERROR(r.Require(k, &o));
  if (o->type == mtype::STR && o->via.str.size > max_bytes) {
    return InvalidArgument("field '" + r.Field(k) + "' is " + std::to_string(o->via.str.size) +
                           " bytes, over the limit of " + std::to_string(max_bytes));
  }
  return ReadValue(*o, r.Field(k), out);
}

Status ReadPartition(const MapReader& r, PartitionSpec* p) {
  GREENFED_ASSIGN_OR_RETURN(MapReader m, r.Nested(key::kPartition));
  GREENFED_RETURN_IF_ERROR(m.Read(key::kScheme, &p->scheme));
  GREENFED_RETURN_IF_ERROR(m.Read(key::kAlpha, &p->alpha));
  GREENFED_RETURN_IF_ERROR(m.Read(key::kShardsPerClient, &p->shards_per_client));
  GREENFED_RETURN_IF_ERROR(m.Read(key::kSeed, &p->seed));
  return m.Read(key::kNumClients, &p->num_clients);
}

// A config key as it may appear in an error: printable ASCII kept, the rest as '?',
// cut at kMaxIdentifierBytes, so that a hostile key cannot garble the log.
std::string PrintableKey(std::string_view k) {
  std::string out;
  for (char ch : k.substr(0, kMaxIdentifierBytes)) out += (ch >= 0x20 && ch < 0x7f) ? ch : '?';
  if (k.size() > kMaxIdentifierBytes) out += "...";
  return out;
}

Status ReadConfig(const MapReader& r, ConfigMap* out) {
  const msgpack::object* o = nullptr;
  GREENFED_RETURN_IF_ERROR(r.Require(key::kConfig, &o));
  if (o->type == mtype::MAP && o->via.map.size > kMaxConfigEntries) {
    return InvalidArgument("field 'config' holds " + std::to_string(o->via.map.size) + " entries, over the limit of " +
                           std::to_string(kMaxConfigEntries));
  }
  GREENFED_ASSIGN_OR_RETURN(MapReader m, MapReader::Make(*o, key::kConfig));
  out->clear();
  for (const auto& [k, v] : m.entries()) {
    const std::string field = "config." + PrintableKey(k);
    const std::string name(k);
    GREENFED_RETURN_IF_ERROR(ValidateIdentifier(field, name));
    switch (v->type) {
      case mtype::BOOLEAN: (*out)[name] = v->via.boolean; break;
      case mtype::POSITIVE_INTEGER:
      case mtype::NEGATIVE_INTEGER: {
        int64_t i = 0;
        GREENFED_RETURN_IF_ERROR(ReadValue(*v, field, &i));
        (*out)[name] = i;
        break;
      }
      case mtype::FLOAT32:
      case mtype::FLOAT64:
        if (!std::isfinite(v->via.f64)) return InvalidArgument("field '" + field + "' is not finite");
        (*out)[name] = v->via.f64;
        break;
      case mtype::STR:
        if (v->via.str.size > kMaxTextBytes) {
          return InvalidArgument("field '" + field + "' is " + std::to_string(v->via.str.size) +
                                 " bytes, over the limit of " + std::to_string(kMaxTextBytes));
        }
        (*out)[name] = std::string(v->via.str.ptr, v->via.str.size);
        break;
      default: return WrongType(field, "a bool, an integer, a float or a string", *v);
    }
  }
  return Status::Ok();
}

Status ReadEnergyRecord(const MapReader& m, EnergyRecord* rec) {
  std::string phase;
  std::string source;
  GREENFED_RETURN_IF_ERROR(m.Read(key::kPhase, &phase));
  StatusOr<Phase> parsed_phase = ParsePhase(phase);
  if (!parsed_phase.ok()) return parsed_phase.status().WithContext("field '" + m.Field(key::kPhase) + "'");
  rec->phase = *parsed_phase;
  GREENFED_RETURN_IF_ERROR(m.Read(key::kRound, &rec->round));
  GREENFED_RETURN_IF_ERROR(m.Read(key::kWallS, &rec->wall_s));
  GREENFED_RETURN_IF_ERROR(m.Read(key::kCpuS, &rec->cpu_s));
  GREENFED_RETURN_IF_ERROR(m.Read(key::kEnergyJ, &rec->energy_j));
  GREENFED_RETURN_IF_ERROR(m.Read(key::kBytesSent, &rec->bytes_sent));
  GREENFED_RETURN_IF_ERROR(m.Read(key::kBytesReceived, &rec->bytes_received));
  GREENFED_RETURN_IF_ERROR(m.Read(key::kSource, &source));
  StatusOr<EnergySource> parsed_source = ParseEnergySource(source);
  if (!parsed_source.ok()) return parsed_source.status().WithContext("field '" + m.Field(key::kSource) + "'");
  rec->source = *parsed_source;
  GREENFED_RETURN_IF_ERROR(m.Read(key::kMeasured, &rec->measured));
  // energy_record.h: measured is always IsMeasured(source); a record that says
  // otherwise mixes measured and modelled joules.
  if (rec->measured != IsMeasured(rec->source)) {
    return InvalidArgument("field '" + m.Field(key::kMeasured) + "' is " + (rec->measured ? "true" : "false") +
                           " but source '" + source + "' is " + (IsMeasured(rec->source) ? "measured" : "modelled"));
  }
  return Status::Ok();
}

Status ReadEnergy(const MapReader& r, std::vector<EnergyRecord>* out) {
  const msgpack::object_array* arr = nullptr;
  GREENFED_RETURN_IF_ERROR(r.RequireArray(key::kEnergy, &arr));
  if (arr->size > kMaxEnergyRecords) {
    return InvalidArgument("field '" + r.Field(key::kEnergy) + "' holds " + std::to_string(arr->size) +
                           " records, over the limit of " + std::to_string(kMaxEnergyRecords) + " per message");
  }
  out->clear();
  out->reserve(arr->size);
  for (uint32_t i = 0; i < arr->size; ++i) {
    GREENFED_ASSIGN_OR_RETURN(MapReader m,
                              MapReader::Make(arr->ptr[i], r.Field(key::kEnergy) + "[" + std::to_string(i) + "]"));
    EnergyRecord rec;
    GREENFED_RETURN_IF_ERROR(ReadEnergyRecord(m, &rec));
    out->push_back(rec);
  }
  return Status::Ok();
}

// Reads the manifest and builds one blob per tensor frame (the one copy a decoder
// that takes const frames must make): group "params" into `params`, the others
// into `groups`; with `groups` == nullptr every entry must be group "params".
// With `encoded_specs` set, group "params" is encoded: its entries go there as
// specs, its bytes are frame 1 (the caller checks them) and the other groups'
// frames start at frame 2.
Status ReadTensors(const MapReader& r, const Frames& frames, Parameters* params, TensorGroups* groups,
                   std::vector<TensorSpec>* encoded_specs = nullptr) {
  const msgpack::object_array* manifest = nullptr;
  GREENFED_RETURN_IF_ERROR(r.RequireArray(key::kTensors, &manifest));
  const size_t tensor_frames = frames.size() - 1;
  const bool params_encoded = encoded_specs != nullptr;
  if (!params_encoded && manifest->size != tensor_frames) {
    return DataLoss("manifest lists " + std::to_string(manifest->size) + " tensors but the message has " +
                    std::to_string(tensor_frames) + " tensor frames");
  }
  if (params_encoded) {
    if (tensor_frames == 0) return DataLoss("the encoded 'params' frame is missing (the message has no frame 1)");
    encoded_specs->clear();
  }
  size_t next_frame = params_encoded ? 2 : 1;
  std::set<std::string> names;       // within the current group
  std::set<std::string> seen_groups;
  std::string current_group;
  params->clear();
  if (groups != nullptr) groups->clear();
  for (uint32_t i = 0; i < manifest->size; ++i) {
    const std::string entry_name = std::string(key::kTensors) + "[" + std::to_string(i) + "]";
    const msgpack::object& entry = manifest->ptr[i];
    if (entry.type != mtype::ARRAY || entry.via.array.size != 4) {
      return InvalidArgument("field '" + entry_name + "' must be [name, dtype, shape, group], got " +
                             (entry.type == mtype::ARRAY ? "an array of " + std::to_string(entry.via.array.size)
                                                         : std::string(ObjectTypeName(entry))));
    }
    const msgpack::object* parts = entry.via.array.ptr;
    std::string group;
    if (parts[3].type == mtype::STR && parts[3].via.str.size > kMaxIdentifierBytes) {
      return InvalidArgument("field '" + entry_name + ".group' is " + std::to_string(parts[3].via.str.size) +
                             " bytes, over the limit of " + std::to_string(kMaxIdentifierBytes));
    }
    GREENFED_RETURN_IF_ERROR(ReadValue(parts[3], entry_name + ".group", &group));
    GREENFED_RETURN_IF_ERROR(ValidateIdentifier(entry_name + ".group", group));
    if (groups == nullptr && group != kParamsGroup) {
      return InvalidArgument("field '" + entry_name + ".group' is '" + group + "', but this message carries only group '" +
                             kParamsGroup + "'");
    }
    if (i == 0 || group != current_group) {
      if (!seen_groups.insert(group).second) {
        return InvalidArgument("tensor group '" + group + "' appears twice in the manifest (at " + entry_name +
                               "); a group's tensors must be contiguous");
      }
      if (seen_groups.size() > kMaxTensorGroups) {
        return InvalidArgument("the manifest names more than " + std::to_string(kMaxTensorGroups) + " tensor groups");
      }
      current_group = group;
      names.clear();
    }
    Parameters* out = group == kParamsGroup ? params : &(*groups)[group];
    TensorBlob blob;
    GREENFED_RETURN_IF_ERROR(ReadValue(parts[0], entry_name + ".name", &blob.name));
    if (!names.insert(blob.name).second) {
      return InvalidArgument("tensor name '" + blob.name + "' appears twice in group '" + group + "'");
    }
    std::string dtype_name;
    GREENFED_RETURN_IF_ERROR(ReadValue(parts[1], entry_name + ".dtype", &dtype_name));
    StatusOr<DType> dtype = ParseDType(dtype_name);
    if (!dtype.ok()) return dtype.status().WithContext("tensor '" + blob.name + "'");
    blob.dtype = *dtype;

    const msgpack::object_array* dims = nullptr;
    GREENFED_RETURN_IF_ERROR(ReadArray(parts[2], entry_name + ".shape", &dims));
    blob.shape.resize(dims->size);
    for (uint32_t d = 0; d < dims->size; ++d) {
      GREENFED_RETURN_IF_ERROR(
          ReadValue(dims->ptr[d], entry_name + ".shape[" + std::to_string(d) + "]", &blob.shape[d]));
    }
    // Overflow-checked byte count, so that a hostile shape cannot wrap around to
    // match a small frame.
    const uint64_t elem_bytes = DTypeSize(blob.dtype);
    uint64_t elements = 1;
    for (int64_t d : blob.shape) {
      if (d < 0) {
        return InvalidArgument("tensor '" + blob.name + "' has negative dimension " + std::to_string(d) +
                               " in shape " + ShapeString(blob.shape));
      }
      const auto ud = static_cast<uint64_t>(d);
      if (ud != 0 && elements > std::numeric_limits<uint64_t>::max() / elem_bytes / ud) {
        return OutOfRange("tensor '" + blob.name + "' shape " + ShapeString(blob.shape) + " is too large");
      }
      elements *= ud;
    }
    if (params_encoded && group == kParamsGroup) {
      if (blob.dtype != DType::kFloat32) {
        return InvalidArgument("tensor '" + blob.name + "' is " + DTypeName(blob.dtype) +
                               ": an encoded 'params' group carries float32 tensors only");
      }
      encoded_specs->push_back(SpecOf(blob));
      continue;
    }
    if (next_frame >= frames.size()) {
      return DataLoss("manifest lists more plain tensors than the message has frames (at " + entry_name + ")");
    }
    const uint64_t expected = elements * elem_bytes;
    const std::vector<uint8_t>& frame = frames[next_frame++];
    if (frame.size() != expected) {
      return DataLoss("tensor '" + blob.name + "' " + DTypeName(blob.dtype) + ShapeString(blob.shape) + " needs " +
                      std::to_string(expected) + " bytes but its frame has " + std::to_string(frame.size()));
    }
    blob.data = frame;
    GREENFED_RETURN_IF_ERROR(ValidateBlob(blob));
    out->push_back(std::move(blob));
  }
  if (next_frame != frames.size()) {
    return DataLoss("the message has " + std::to_string(frames.size() - next_frame) +
                    " tensor frames beyond what the manifest lists");
  }
  return Status::Ok();
}

// Reads "codec" and the tensors of a Fit or FitRes: plain (codec "none") into
// `params`, or encoded into `encoded` with the frame checked against the codec.
Status ReadCodecTensors(const MapReader& r, const Frames& frames, Parameters* params, EncodedParams* encoded,
                        TensorGroups* groups) {
  GREENFED_RETURN_IF_ERROR(ReadText(r, key::kCodec, kMaxIdentifierBytes, &encoded->codec));
  GREENFED_RETURN_IF_ERROR(ValidateIdentifier(key::kCodec, encoded->codec));
  if (encoded->plain()) return ReadTensors(r, frames, params, groups);
  StatusOr<std::unique_ptr<UpdateCodec>> codec = MakeCodec(encoded->codec);
  if (!codec.ok()) return codec.status().WithContext("field 'codec'");
  GREENFED_RETURN_IF_ERROR(ReadTensors(r, frames, params, groups, &encoded->specs));
  const uint64_t want = (*codec)->EncodedBytes(encoded->specs);
  if (frames[1].size() != want) {
    return DataLoss("encoded 'params' (" + encoded->codec + "): wrong size: frame 1 has " +
                    std::to_string(frames[1].size()) + " bytes, the codec gives " + std::to_string(want) + " for the " +
                    std::to_string(encoded->specs.size()) + " tensors in the manifest");
  }
  encoded->bytes = frames[1];
  return Status::Ok();
}

Status RejectTensors(const MapReader& r, const Frames& frames, MsgType type) {
  if (r.Find(key::kTensors) != nullptr) {
    return InvalidArgument(std::string("field '") + key::kTensors + "' is present but " + MsgTypeName(type) +
                           " messages carry no tensors");
  }
  if (frames.size() > 1) {
    return DataLoss(std::string(MsgTypeName(type)) + " messages carry no tensors, but this one has " +
                    std::to_string(frames.size() - 1) + " extra frames");
  }
  return Status::Ok();
}

StatusOr<Message> DecodeBody(MsgType type, const MapReader& r, const Frames& frames) {
  switch (type) {
    case MsgType::kJoin: {
      GREENFED_RETURN_IF_ERROR(RejectTensors(r, frames, type));
      JoinMsg m;
      GREENFED_RETURN_IF_ERROR(ReadText(r, key::kClientId, kMaxIdentifierBytes, &m.client_id));
      GREENFED_RETURN_IF_ERROR(ValidateIdentifier(key::kClientId, m.client_id));
      GREENFED_RETURN_IF_ERROR(r.Read(key::kRequestedIndex, &m.requested_index));
      GREENFED_RETURN_IF_ERROR(r.Read(key::kNumExamples, &m.num_examples));
      {
        const msgpack::object_array* caps = nullptr;
        GREENFED_RETURN_IF_ERROR(r.RequireArray(key::kCapabilities, &caps));
        if (caps->size > kMaxCapabilities) {
          return InvalidArgument("field 'caps' lists " + std::to_string(caps->size) + " capabilities, over the limit of " +
                                 std::to_string(kMaxCapabilities));
        }
      }
      GREENFED_RETURN_IF_ERROR(r.Read(key::kCapabilities, &m.capabilities));
      for (size_t i = 0; i < m.capabilities.size(); ++i) {
        GREENFED_RETURN_IF_ERROR(ValidateIdentifier("caps[" + std::to_string(i) + "]", m.capabilities[i]));
      }
      GREENFED_RETURN_IF_ERROR(ReadText(r, key::kCountry, kMaxCountryBytes, &m.country));
      GREENFED_RETURN_IF_ERROR(ValidateCountryCode(key::kCountry, m.country));
      GREENFED_RETURN_IF_ERROR(r.Read(key::kPue, &m.pue));
      if (!std::isfinite(m.pue)) return InvalidArgument("field 'pue' is not finite");
      return Message(std::move(m));
    }
    case MsgType::kWelcome: {
      GREENFED_RETURN_IF_ERROR(RejectTensors(r, frames, type));
      WelcomeMsg m;
      GREENFED_RETURN_IF_ERROR(r.Read(key::kClientIndex, &m.client_index));
      GREENFED_RETURN_IF_ERROR(ReadPartition(r, &m.partition));
      GREENFED_RETURN_IF_ERROR(ReadText(r, key::kTask, kMaxTextBytes, &m.task));
      GREENFED_RETURN_IF_ERROR(ReadText(r, key::kModel, kMaxTextBytes, &m.model));
      GREENFED_RETURN_IF_ERROR(ReadText(r, key::kRunId, kMaxTextBytes, &m.run_id));
      GREENFED_RETURN_IF_ERROR(r.Read(key::kHeartbeatMs, &m.heartbeat_interval_ms));
      return Message(std::move(m));
    }
    case MsgType::kFit: {
      FitMsg m;
      GREENFED_RETURN_IF_ERROR(r.Read(key::kRound, &m.round));
      GREENFED_RETURN_IF_ERROR(ReadConfig(r, &m.config));
      GREENFED_RETURN_IF_ERROR(ReadCodecTensors(r, frames, &m.parameters, &m.encoded, &m.groups));
      return Message(std::move(m));
    }
    case MsgType::kFitRes: {
      FitResMsg m;
      GREENFED_RETURN_IF_ERROR(r.Read(key::kRound, &m.round));
      GREENFED_RETURN_IF_ERROR(r.Read(key::kIsDelta, &m.is_delta));
      GREENFED_RETURN_IF_ERROR(r.Read(key::kNumExamples, &m.num_examples));
      GREENFED_RETURN_IF_ERROR(r.Read(key::kLoss, &m.train_loss));
      GREENFED_RETURN_IF_ERROR(r.Read(key::kFitS, &m.fit_s));
      GREENFED_RETURN_IF_ERROR(ReadEnergy(r, &m.energy));
      GREENFED_RETURN_IF_ERROR(ReadCodecTensors(r, frames, &m.parameters, &m.encoded, &m.groups));
      return Message(std::move(m));
    }
    case MsgType::kEvaluate: {
      EvaluateMsg m;
      GREENFED_RETURN_IF_ERROR(r.Read(key::kRound, &m.round));
      GREENFED_RETURN_IF_ERROR(ReadTensors(r, frames, &m.parameters, nullptr));
      return Message(std::move(m));
    }
    case MsgType::kEvaluateRes: {
      GREENFED_RETURN_IF_ERROR(RejectTensors(r, frames, type));
      EvaluateResMsg m;
      GREENFED_RETURN_IF_ERROR(r.Read(key::kRound, &m.round));
      GREENFED_RETURN_IF_ERROR(r.Read(key::kLoss, &m.loss));
      GREENFED_RETURN_IF_ERROR(r.Read(key::kAccuracy, &m.accuracy));
      GREENFED_RETURN_IF_ERROR(r.Read(key::kNumExamples, &m.num_examples));
      GREENFED_RETURN_IF_ERROR(ReadEnergy(r, &m.energy));
      return Message(std::move(m));
    }
    case MsgType::kHeartbeat: {
      GREENFED_RETURN_IF_ERROR(RejectTensors(r, frames, type));
      HeartbeatMsg m;
      GREENFED_RETURN_IF_ERROR(r.Read(key::kRound, &m.round));
      GREENFED_RETURN_IF_ERROR(ReadEnergy(r, &m.energy));
      return Message(std::move(m));
    }
    case MsgType::kShutdown: {
      GREENFED_RETURN_IF_ERROR(RejectTensors(r, frames, type));
      ShutdownMsg m;
      GREENFED_RETURN_IF_ERROR(ReadText(r, key::kReason, kMaxTextBytes, &m.reason));
      return Message(std::move(m));
    }
    case MsgType::kError: {
      GREENFED_RETURN_IF_ERROR(RejectTensors(r, frames, type));
      ErrorMsg m;
      uint16_t code = 0;
      GREENFED_RETURN_IF_ERROR(r.Read(key::kCode, &code));
      if (code == 0 || code > kMaxErrorCode) return InvalidArgument("unknown error code " + std::to_string(code));
      m.code = static_cast<ErrorCode>(code);
      GREENFED_RETURN_IF_ERROR(r.Read(key::kRound, &m.round));
      GREENFED_RETURN_IF_ERROR(ReadText(r, key::kMessage, kMaxTextBytes, &m.message));
      return Message(std::move(m));
    }
  }
  return Internal("unhandled message type " + std::to_string(static_cast<unsigned>(type)));
}

bool IsKnownType(uint64_t t) {
  return t >= static_cast<uint64_t>(MsgType::kJoin) && t <= static_cast<uint64_t>(MsgType::kError);
}

StatusOr<Message> DecodeUnguarded(const Frames& frames, uint64_t max_bytes) {
  if (frames.empty()) return DataLoss("empty message: no frames");
  const size_t total = FramesBytes(frames);
  if (total > max_bytes) {
    return OutOfRange("message is " + std::to_string(total) + " bytes, over the limit of " +
                      std::to_string(max_bytes) + " bytes");
  }
  const std::vector<uint8_t>& header = frames[0];
  if (header.empty()) return DataLoss("empty header frame");

  // No msgpack container can hold more elements than the header has bytes; the
  // limits stop a 5-byte header from making the unpacker allocate gigabytes.
  const size_t n = header.size();
  const msgpack::unpack_limit limit(n, n, n, n, n, kMaxHeaderDepth);
  msgpack::object_handle handle;
  size_t offset = 0;
  try {
    handle = msgpack::unpack(reinterpret_cast<const char*>(header.data()), n, offset, nullptr, nullptr, limit);
  } catch (const msgpack::insufficient_bytes& e) {
    return DataLoss("truncated header: the " + std::to_string(n) + "-byte frame 0 ends inside a msgpack value (" +
                    e.what() + ")");
  } catch (const msgpack::unpack_error& e) {
    return DataLoss("garbage header: frame 0 (" + std::to_string(n) + " bytes) is not valid msgpack (" + e.what() +
                    ")");
  }
  if (offset != n) {
    return DataLoss(std::to_string(n - offset) + " trailing bytes after the header map (frame 0 is " +
                    std::to_string(n) + " bytes)");
  }
  GREENFED_ASSIGN_OR_RETURN(MapReader r, MapReader::Make(handle.get(), ""));

  uint64_t version = 0;
  GREENFED_RETURN_IF_ERROR(r.Read(key::kVersion, &version));
  if (version != kProtocolVersion) {
    return FailedPrecondition("protocol version " + std::to_string(version) + ", expected " +
                           std::to_string(kProtocolVersion));
  }
  uint64_t raw_type = 0;
  GREENFED_RETURN_IF_ERROR(r.Read(key::kType, &raw_type));
  if (!IsKnownType(raw_type)) return InvalidArgument("unknown message type " + std::to_string(raw_type));
  const auto type = static_cast<MsgType>(raw_type);
  StatusOr<Message> msg = DecodeBody(type, r, frames);
  if (!msg.ok()) return msg.status().WithContext(MsgTypeName(type));
  return msg;
}

}  // namespace

const char* ErrorCodeName(ErrorCode c) {
  switch (c) {
    case ErrorCode::kUnknown: return "UNKNOWN";
    case ErrorCode::kBadMessage: return "BAD_MESSAGE";
    case ErrorCode::kVersionMismatch: return "VERSION_MISMATCH";
    case ErrorCode::kTooLarge: return "TOO_LARGE";
    case ErrorCode::kNotJoined: return "NOT_JOINED";
    case ErrorCode::kRunOver: return "RUN_OVER";
    case ErrorCode::kIndexOutOfRange: return "INDEX_OUT_OF_RANGE";
    case ErrorCode::kIndexTaken: return "INDEX_TAKEN";
    case ErrorCode::kFederationFull: return "FEDERATION_FULL";
    case ErrorCode::kIdentityInUse: return "IDENTITY_IN_USE";
    case ErrorCode::kUnauthenticated: return "UNAUTHENTICATED";
    case ErrorCode::kBadUpdate: return "BAD_UPDATE";
    case ErrorCode::kBadEnergy: return "BAD_ENERGY";
    case ErrorCode::kBadIdentifier: return "BAD_IDENTIFIER";
    case ErrorCode::kBusy: return "BUSY";
    case ErrorCode::kFitFailed: return "FIT_FAILED";
    case ErrorCode::kEvalFailed: return "EVAL_FAILED";
    case ErrorCode::kExcluded: return "EXCLUDED";
    case ErrorCode::kIncompatible: return "INCOMPATIBLE";
    case ErrorCode::kUnexpected: return "UNEXPECTED";
    case ErrorCode::kInternal: return "INTERNAL";
  }
  return "UNKNOWN";
}

Status ValidateIdentifier(const std::string& field, const std::string& value) {
  if (value.empty() || value.size() > kMaxIdentifierBytes) {
    return InvalidArgument("field '" + field + "' must be 1.." + std::to_string(kMaxIdentifierBytes) +
                           " bytes, got " + std::to_string(value.size()));
  }
  for (size_t i = 0; i < value.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(value[i]);
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == ':' || c == '@' || c == '+' || c == '-';
    if (!ok) {
      return InvalidArgument("field '" + field + "' has byte 0x" + "0123456789abcdef"[c >> 4] +
                             "0123456789abcdef"[c & 15] + " at offset " + std::to_string(i) +
                             "; allowed: letters, digits and . _ : @ + -");
    }
  }
  return Status::Ok();
}

Status ValidateCountryCode(const std::string& field, const std::string& value) {
  if (value.size() < 2 || value.size() > kMaxCountryBytes) {
    return InvalidArgument("field '" + field + "' must be 2.." + std::to_string(kMaxCountryBytes) +
                           " bytes (an ISO 3166-1 alpha-3 code such as FRA, or WORLD), got " +
                           std::to_string(value.size()));
  }
  for (char ch : value) {
    if (!((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))) {
      return InvalidArgument("field '" + field + "' may hold only A-Z and 0-9 (e.g. FRA, WORLD, EU27)");
    }
  }
  return Status::Ok();
}

const char* MsgTypeName(MsgType t) {
  switch (t) {
    case MsgType::kJoin: return "Join";
    case MsgType::kWelcome: return "Welcome";
    case MsgType::kFit: return "Fit";
    case MsgType::kFitRes: return "FitRes";
    case MsgType::kEvaluate: return "Evaluate";
    case MsgType::kEvaluateRes: return "EvaluateRes";
    case MsgType::kHeartbeat: return "Heartbeat";
    case MsgType::kShutdown: return "Shutdown";
    case MsgType::kError: return "Error";
  }
  return "Unknown";
}

MsgType TypeOf(const Message& m) {
  return std::visit([](const auto& msg) { return TypeOfMsg(msg); }, m);
}

Frames Encode(const Message& m) { return EncodeWithParameters(m, nullptr); }

Frames EncodeWithParameters(const Message& m, const Parameters* parameters) {
  MapWriter w;
  w.Put(key::kVersion, kProtocolVersion);
  w.Put(key::kType, static_cast<uint32_t>(TypeOf(m)));
  TensorList tensors = std::visit([&w](const auto& msg) { return PutFields(w, msg); }, m);
  if (parameters != nullptr && tensors.present && !tensors.groups.empty() && tensors.groups[0].first == kParamsGroup) {
    tensors.groups[0].second = parameters;
  }
  if (tensors.present) PutManifest(w, tensors);

  msgpack::sbuffer header;
  Packer pk(header);
  w.WriteTo(pk, header);

  Frames frames;
  frames.reserve(1 + tensors.NumFrames());
  const auto* h = reinterpret_cast<const uint8_t*>(header.data());
  frames.emplace_back(h, h + header.size());
  if (tensors.encoded != nullptr) frames.push_back(tensors.encoded->bytes);
  for (const auto& group : tensors.groups) {
    for (const auto& t : *group.second) frames.push_back(t.data);  // the one copy of each tensor
  }
  return frames;
}

StatusOr<Message> Decode(const Frames& frames, uint64_t max_bytes) {
  // Values are type-checked by hand, so msgpack should not throw past the unpack
  // call; this is the boundary that guarantees no exception escapes regardless.
  try {
    StatusOr<Message> msg = DecodeUnguarded(frames, max_bytes);
    if (!msg.ok()) return msg.status().WithContext("decode");
    return msg;
  } catch (const msgpack::unpack_error& e) {
    return DataLoss(std::string("decode: invalid msgpack header: ") + e.what());
  } catch (const msgpack::type_error& e) {
    return InvalidArgument(std::string("decode: unexpected msgpack type: ") + e.what());
  } catch (const std::bad_cast& e) {
    return InvalidArgument(std::string("decode: unexpected msgpack type: ") + e.what());
  } catch (const std::bad_alloc&) {
    return OutOfRange("decode: out of memory while decoding a " + std::to_string(FramesBytes(frames)) +
                      "-byte message");
  } catch (const std::exception& e) {
    return Internal(std::string("decode: ") + e.what());
  }
}

ErrorCode DecodeErrorCode(const Status& s) {
  switch (s.code()) {
    case Code::kOutOfRange: return ErrorCode::kTooLarge;
    case Code::kFailedPrecondition: return ErrorCode::kVersionMismatch;
    default: return ErrorCode::kBadMessage;
  }
}

// ---------------------------------------------------------------------------
// Config map

const char* ConfigTypeName(const ConfigValue& v) {
  switch (v.index()) {
    case 0: return "bool";
    case 1: return "int";
    case 2: return "double";
    default: return "string";
  }
}

namespace {

Status ConfigWrongType(const std::string& key, const char* expected, const ConfigValue& got) {
  return InvalidArgument("config key '" + key + "' must be " + expected + ", got " + ConfigTypeName(got));
}

}  // namespace

StatusOr<double> ConfigDouble(const ConfigMap& config, const std::string& key, double fallback) {
  const auto it = config.find(key);
  if (it == config.end()) return fallback;
  if (const auto* d = std::get_if<double>(&it->second)) return *d;
  if (const auto* i = std::get_if<int64_t>(&it->second)) return static_cast<double>(*i);
  return ConfigWrongType(key, "a double", it->second);
}

StatusOr<int64_t> ConfigInt(const ConfigMap& config, const std::string& key, int64_t fallback) {
  const auto it = config.find(key);
  if (it == config.end()) return fallback;
  if (const auto* i = std::get_if<int64_t>(&it->second)) return *i;
  return ConfigWrongType(key, "an int", it->second);
}

StatusOr<bool> ConfigBool(const ConfigMap& config, const std::string& key, bool fallback) {
  const auto it = config.find(key);
  if (it == config.end()) return fallback;
  if (const auto* b = std::get_if<bool>(&it->second)) return *b;
  return ConfigWrongType(key, "a bool", it->second);
}

StatusOr<std::string> ConfigString(const ConfigMap& config, const std::string& key, const std::string& fallback) {
  const auto it = config.find(key);
  if (it == config.end()) return fallback;
  if (const auto* s = std::get_if<std::string>(&it->second)) return *s;
  return ConfigWrongType(key, "a string", it->second);
}

Status ValidateConfig(const ConfigMap& config) {
  if (config.size() > kMaxConfigEntries) {
    return InvalidArgument("config holds " + std::to_string(config.size()) + " entries, over the limit of " +
                           std::to_string(kMaxConfigEntries));
  }
  for (const auto& [k, v] : config) {
    GREENFED_RETURN_IF_ERROR(ValidateIdentifier("config." + PrintableKey(k), k));
    if (const auto* d = std::get_if<double>(&v); d != nullptr && !std::isfinite(*d)) {
      return InvalidArgument("config key '" + k + "' is not finite");
    }
    if (const auto* s = std::get_if<std::string>(&v); s != nullptr && s->size() > kMaxTextBytes) {
      return InvalidArgument("config key '" + k + "' is " + std::to_string(s->size()) + " bytes, over the limit of " +
                             std::to_string(kMaxTextBytes));
    }
  }
  return Status::Ok();
}

namespace train_key {
constexpr const char* kEpochs = "epochs";
constexpr const char* kBatchSize = "batch_size";
constexpr const char* kLearningRate = "learning_rate";
constexpr const char* kMomentum = "momentum";
constexpr const char* kSeed = "seed";
constexpr const char* kSendDelta = "send_delta";
}  // namespace train_key

void PutTrainConfig(const TrainConfig& train, ConfigMap* config) {
  (*config)[train_key::kEpochs] = static_cast<int64_t>(train.epochs);
  (*config)[train_key::kBatchSize] = static_cast<int64_t>(train.batch_size);
  (*config)[train_key::kLearningRate] = train.learning_rate;
  (*config)[train_key::kMomentum] = train.momentum;
  int64_t seed_bits = 0;
  std::memcpy(&seed_bits, &train.seed, sizeof(seed_bits));
  (*config)[train_key::kSeed] = seed_bits;
  (*config)[train_key::kSendDelta] = train.send_delta;
}

namespace {

Status RequireKey(const ConfigMap& config, const char* key) {
  if (config.count(key) == 0) return InvalidArgument(std::string("config key '") + key + "' is missing");
  return Status::Ok();
}

StatusOr<uint32_t> ConfigU32(const ConfigMap& config, const char* key) {
  GREENFED_RETURN_IF_ERROR(RequireKey(config, key));
  GREENFED_ASSIGN_OR_RETURN(int64_t v, ConfigInt(config, key, 0));
  if (v < 0 || v > static_cast<int64_t>(std::numeric_limits<uint32_t>::max())) {
    return InvalidArgument(std::string("config key '") + key + "' value " + std::to_string(v) +
                           " is out of range for uint32");
  }
  return static_cast<uint32_t>(v);
}

}  // namespace

StatusOr<TrainConfig> ParseTrainConfig(const ConfigMap& config) {
  TrainConfig t;
  GREENFED_ASSIGN_OR_RETURN(t.epochs, ConfigU32(config, train_key::kEpochs));
  GREENFED_ASSIGN_OR_RETURN(t.batch_size, ConfigU32(config, train_key::kBatchSize));
  GREENFED_RETURN_IF_ERROR(RequireKey(config, train_key::kLearningRate));
  GREENFED_ASSIGN_OR_RETURN(t.learning_rate, ConfigDouble(config, train_key::kLearningRate, 0));
  GREENFED_RETURN_IF_ERROR(RequireKey(config, train_key::kMomentum));
  GREENFED_ASSIGN_OR_RETURN(t.momentum, ConfigDouble(config, train_key::kMomentum, 0));
  GREENFED_RETURN_IF_ERROR(RequireKey(config, train_key::kSeed));
  GREENFED_ASSIGN_OR_RETURN(int64_t seed_bits, ConfigInt(config, train_key::kSeed, 0));
  std::memcpy(&t.seed, &seed_bits, sizeof(seed_bits));
  GREENFED_RETURN_IF_ERROR(RequireKey(config, train_key::kSendDelta));
  GREENFED_ASSIGN_OR_RETURN(t.send_delta, ConfigBool(config, train_key::kSendDelta, false));
  return t;
}

size_t FramesBytes(const Frames& frames) {
  size_t total = 0;
  for (const auto& f : frames) total += f.size();
  return total;
}

}  // namespace greenfed
