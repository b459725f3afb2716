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
//   Fit            "round" uint, "config" TrainConfig, "tensors" manifest
//   FitRes         "round" uint, "is_delta" bool, "n_examples" uint, "loss" float,
//                  "fit_s" float, "tensors" manifest, "energy" [EnergyRecord]
//   Evaluate       "round" uint, "tensors" manifest
//   EvaluateRes    "round" uint, "loss" float, "accuracy" float, "n_examples" uint,
//                  "energy" [EnergyRecord]
//   Heartbeat      "round" uint, "energy" [EnergyRecord]
//   Shutdown       "reason" str
//   Error          "code" uint (ErrorCode), "round" uint, "message" str
// Nested maps:
//   PartitionSpec  "scheme" str, "alpha" float, "shards_per_client" uint, "seed" uint,
//                  "n_clients" uint
//   TrainConfig    "epochs" uint, "batch" uint, "lr" float, "momentum" float,
//                  "seed" uint, "delta" bool
//   EnergyRecord   "phase" str (PhaseName), "round" int, "wall_s" float, "cpu_s" float,
//                  "energy_j" float, "sent" uint, "received" uint,
//                  "source" str (EnergySourceName), "measured" bool
//   manifest       array of [name str, dtype str (DTypeName), shape [int]]
//
// Every listed field is required. Keys the decoder does not know are ignored, so a
// newer peer may add fields without a version bump (forward compatibility); removing
// a key or changing its type needs kProtocolVersion + 1. "float" fields also accept
// msgpack integers, because some encoders (e.g. JavaScript ones) shrink 1.0 to 1.
#include "greenfed/protocol.h"

#include <msgpack.hpp>

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
// Fit / TrainConfig
constexpr const char* kConfig = "config";
constexpr const char* kEpochs = "epochs";
constexpr const char* kBatchSize = "batch";
constexpr const char* kLearningRate = "lr";
constexpr const char* kMomentum = "momentum";
constexpr const char* kSendDelta = "delta";
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
  void Put(const char* k, double v) { Key(k).pack_double(v); }
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

void PutConfig(MapWriter& w, const TrainConfig& c) {
  MapWriter m;
  m.Put(key::kEpochs, c.epochs);
  m.Put(key::kBatchSize, c.batch_size);
  m.Put(key::kLearningRate, c.learning_rate);
  m.Put(key::kMomentum, c.momentum);
  m.Put(key::kSeed, c.seed);
  m.Put(key::kSendDelta, c.send_delta);
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

void PutManifest(MapWriter& w, const Parameters& params) {
  Packer& pk = w.Key(key::kTensors);
  pk.pack_array(static_cast<uint32_t>(params.size()));
  for (const auto& t : params) {
    pk.pack_array(3);
    MapWriter::PackString(pk, t.name);
    MapWriter::PackString(pk, DTypeName(t.dtype));
    pk.pack_array(static_cast<uint32_t>(t.shape.size()));
    for (int64_t d : t.shape) pk.pack_int64(d);
  }
}

// Each returns the tensors the message carries, or nullptr for a type without any.
const Parameters* PutFields(MapWriter& w, const JoinMsg& m) {
  w.Put(key::kClientId, m.client_id);
  w.Put(key::kRequestedIndex, m.requested_index);
  w.Put(key::kNumExamples, m.num_examples);
  w.Put(key::kCapabilities, m.capabilities);
  w.Put(key::kCountry, m.country);
  w.Put(key::kPue, m.pue);
  return nullptr;
}
const Parameters* PutFields(MapWriter& w, const WelcomeMsg& m) {
  w.Put(key::kClientIndex, m.client_index);
  PutPartition(w, m.partition);
  w.Put(key::kTask, m.task);
  w.Put(key::kModel, m.model);
  w.Put(key::kRunId, m.run_id);
  w.Put(key::kHeartbeatMs, m.heartbeat_interval_ms);
  return nullptr;
}
const Parameters* PutFields(MapWriter& w, const FitMsg& m) {
  w.Put(key::kRound, m.round);
  PutConfig(w, m.config);
  return &m.parameters;
}
const Parameters* PutFields(MapWriter& w, const FitResMsg& m) {
  w.Put(key::kRound, m.round);
  w.Put(key::kIsDelta, m.is_delta);
  w.Put(key::kNumExamples, m.num_examples);
  w.Put(key::kLoss, m.train_loss);
  w.Put(key::kFitS, m.fit_s);
  PutEnergy(w, m.energy);
  return &m.parameters;
}
const Parameters* PutFields(MapWriter& w, const EvaluateMsg& m) {
  w.Put(key::kRound, m.round);
  return &m.parameters;
}
const Parameters* PutFields(MapWriter& w, const EvaluateResMsg& m) {
  w.Put(key::kRound, m.round);
  w.Put(key::kLoss, m.loss);
  w.Put(key::kAccuracy, m.accuracy);
  w.Put(key::kNumExamples, m.num_examples);
  PutEnergy(w, m.energy);
  return nullptr;
}
const Parameters* PutFields(MapWriter& w, const HeartbeatMsg& m) {
  w.Put(key::kRound, m.round);
  PutEnergy(w, m.energy);
  return nullptr;
}
const Parameters* PutFields(MapWriter& w, const ShutdownMsg& m) {
  w.Put(key::kReason, m.reason);
  return nullptr;
}
const Parameters* PutFields(MapWriter& w, const ErrorMsg& m) {
  w.Put(key::kCode, static_cast<uint32_t>(m.code));
  w.Put(key::kRound, m.round);
  w.Put(key::kMessage, m.message);
  return nullptr;
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

Status ReadConfig(const MapReader& r, TrainConfig* c) {
  GREENFED_ASSIGN_OR_RETURN(MapReader m, r.Nested(key::kConfig));
  GREENFED_RETURN_IF_ERROR(m.Read(key::kEpochs, &c->epochs));
  GREENFED_RETURN_IF_ERROR(m.Read(key::kBatchSize, &c->batch_size));
  GREENFED_RETURN_IF_ERROR(m.Read(key::kLearningRate, &c->learning_rate));
  GREENFED_RETURN_IF_ERROR(m.Read(key::kMomentum, &c->momentum));
  GREENFED_RETURN_IF_ERROR(m.Read(key::kSeed, &c->seed));
  return m.Read(key::kSendDelta, &c->send_delta);
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
// that takes const frames must make).
Status ReadTensors(const MapReader& r, const Frames& frames, Parameters* out) {
  const msgpack::object_array* manifest = nullptr;
  GREENFED_RETURN_IF_ERROR(r.RequireArray(key::kTensors, &manifest));
  const size_t tensor_frames = frames.size() - 1;
  if (manifest->size != tensor_frames) {
    return DataLoss("manifest lists " + std::to_string(manifest->size) + " tensors but the message has " +
                    std::to_string(tensor_frames) + " tensor frames");
  }
  std::set<std::string> names;
  out->clear();
  out->reserve(manifest->size);
  for (uint32_t i = 0; i < manifest->size; ++i) {
    const std::string entry_name = std::string(key::kTensors) + "[" + std::to_string(i) + "]";
    const msgpack::object& entry = manifest->ptr[i];
    if (entry.type != mtype::ARRAY || entry.via.array.size != 3) {
      return InvalidArgument("field '" + entry_name + "' must be [name, dtype, shape], got " +
                             (entry.type == mtype::ARRAY ? "an array of " + std::to_string(entry.via.array.size)
                                                         : std::string(ObjectTypeName(entry))));
    }
    const msgpack::object* parts = entry.via.array.ptr;
    TensorBlob blob;
    GREENFED_RETURN_IF_ERROR(ReadValue(parts[0], entry_name + ".name", &blob.name));
    if (!names.insert(blob.name).second) return InvalidArgument("tensor name '" + blob.name + "' appears twice");
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
    const uint64_t expected = elements * elem_bytes;
    const std::vector<uint8_t>& frame = frames[i + 1];
    if (frame.size() != expected) {
      return DataLoss("tensor '" + blob.name + "' " + DTypeName(blob.dtype) + ShapeString(blob.shape) + " needs " +
                      std::to_string(expected) + " bytes but its frame has " + std::to_string(frame.size()));
    }
    blob.data = frame;
    GREENFED_RETURN_IF_ERROR(ValidateBlob(blob));
    out->push_back(std::move(blob));
  }
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
      GREENFED_RETURN_IF_ERROR(ReadTensors(r, frames, &m.parameters));
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
      GREENFED_RETURN_IF_ERROR(ReadTensors(r, frames, &m.parameters));
      return Message(std::move(m));
    }
    case MsgType::kEvaluate: {
      EvaluateMsg m;
      GREENFED_RETURN_IF_ERROR(r.Read(key::kRound, &m.round));
      GREENFED_RETURN_IF_ERROR(ReadTensors(r, frames, &m.parameters));
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

Frames Encode(const Message& m) {
  MapWriter w;
  w.Put(key::kVersion, kProtocolVersion);
  w.Put(key::kType, static_cast<uint32_t>(TypeOf(m)));
  const Parameters* tensors = std::visit([&w](const auto& msg) { return PutFields(w, msg); }, m);
  if (tensors != nullptr) PutManifest(w, *tensors);

  msgpack::sbuffer header;
  Packer pk(header);
  w.WriteTo(pk, header);

  Frames frames;
  frames.reserve(1 + (tensors != nullptr ? tensors->size() : 0));
  const auto* h = reinterpret_cast<const uint8_t*>(header.data());
  frames.emplace_back(h, h + header.size());
  if (tensors != nullptr) {
    for (const auto& t : *tensors) frames.push_back(t.data);  // the one copy of each tensor
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

size_t FramesBytes(const Frames& frames) {
  size_t total = 0;
  for (const auto& f : frames) total += f.size();
  return total;
}

}  // namespace greenfed
