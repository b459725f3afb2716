// Wire codec (protocol.h): round trips of every message type, every rejection
// Decode promises, and a deterministic fuzz loop over a valid FitRes.
#include <doctest/doctest.h>

#include <msgpack.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "greenfed/codec.h"
#include "greenfed/protocol.h"

namespace greenfed {
namespace {

using Packer = msgpack::packer<msgpack::sbuffer>;
using HeaderMap = std::map<std::string, msgpack::object>;
using ObjMap = std::map<std::string, msgpack::object>;

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

TensorBlob RawBlob(std::string name, DType dtype, std::vector<int64_t> shape, std::vector<uint8_t> data) {
  TensorBlob b;
  b.name = std::move(name);
  b.dtype = dtype;
  b.shape = std::move(shape);
  b.data = std::move(data);
  return b;
}

template <typename T>
std::vector<uint8_t> BytesOf(const std::vector<T>& values) {
  std::vector<uint8_t> out(values.size() * sizeof(T));
  if (!out.empty()) std::memcpy(out.data(), values.data(), out.size());
  return out;
}

// One tensor of each dtype, plus a scalar and an empty one, with distinct values.
Parameters SampleParams() {
  Parameters p;
  p.push_back(MakeFloatBlob("conv1.weight", {2, 1, 3}, {0.5f, -1.25f, 3.0f, 1e-7f, -0.0f, 65504.0f}));
  p.push_back(RawBlob("fc.bias", DType::kFloat64, {2}, BytesOf<double>({-2.5, 1e300})));
  p.push_back(RawBlob("steps", DType::kInt64, {3}, BytesOf<int64_t>({-1, 0, std::numeric_limits<int64_t>::max()})));
  p.push_back(MakeFloatBlob("temperature", {}, {0.75f}));
  p.push_back(MakeFloatBlob("empty", {0, 4}, {}));
  return p;
}

std::vector<EnergyRecord> SampleEnergy() {
  EnergyRecord a;
  a.phase = Phase::kTrain;
  a.round = -3;
  a.wall_s = 12.5;
  a.cpu_s = 20.25;
  a.energy_j = 431.125;
  a.bytes_sent = 0;
  a.bytes_received = 0;
  a.source = EnergySource::kRapl;
  a.measured = true;
  EnergyRecord b;
  b.phase = Phase::kComm;
  b.round = 7;
  b.wall_s = 0.125;
  b.cpu_s = 0.0625;
  b.energy_j = 0.003;
  b.bytes_sent = 5'000'000'000ull;
  b.bytes_received = 423'464;
  b.source = EnergySource::kComm;
  b.measured = false;
  return {a, b};
}

FitResMsg SampleFitRes() {
  FitResMsg m;
  m.round = 17;
  m.is_delta = true;
  m.num_examples = 6000;
  m.train_loss = 0.4375;
  m.fit_s = 3.5;
  m.parameters = SampleParams();
  m.energy = SampleEnergy();
  return m;
}

HeartbeatMsg SampleHeartbeat() {
  HeartbeatMsg m;
  m.round = 4;
  m.energy = SampleEnergy();
  return m;
}

void CheckParamsEqual(const Parameters& got, const Parameters& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CAPTURE(want[i].name);
    CHECK(got[i].name == want[i].name);
    CHECK(got[i].dtype == want[i].dtype);
    CHECK(got[i].shape == want[i].shape);
    CHECK(got[i].data == want[i].data);
  }
}

void CheckEnergyEqual(const std::vector<EnergyRecord>& got, const std::vector<EnergyRecord>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    CHECK(got[i].phase == want[i].phase);
    CHECK(got[i].round == want[i].round);
    CHECK(got[i].wall_s == want[i].wall_s);
    CHECK(got[i].cpu_s == want[i].cpu_s);
    CHECK(got[i].energy_j == want[i].energy_j);
    CHECK(got[i].bytes_sent == want[i].bytes_sent);
    CHECK(got[i].bytes_received == want[i].bytes_received);
    CHECK(got[i].source == want[i].source);
    CHECK(got[i].measured == want[i].measured);
  }
}

// Encodes, checks the framing, decodes, and returns the message of type T.
template <typename T>
T RoundTrip(const T& msg, size_t expected_frames) {
  const Frames frames = Encode(Message(msg));
  CHECK(frames.size() == expected_frames);
  StatusOr<Message> decoded = Decode(frames);
  REQUIRE_MESSAGE(decoded.ok(), decoded.status().ToString());
  REQUIRE(std::holds_alternative<T>(*decoded));
  CHECK(TypeOf(*decoded) == TypeOf(Message(msg)));
  return std::get<T>(*decoded);
}

// Status message of decoding `frames`, which must fail with `code`.
std::string DecodeError(const Frames& frames, Code code = Code::kInvalidArgument,
                        uint64_t max_bytes = kDefaultMaxMessageBytes) {
  StatusOr<Message> decoded = Decode(frames, max_bytes);
  REQUIRE_FALSE(decoded.ok());
  CHECK_MESSAGE(decoded.status().code() == code, decoded.status().ToString());
  return decoded.status().message();
}

// Unpacks frame 0 into key -> value, lets `edit` change it, and packs it back.
Frames EditHeader(Frames frames, const std::function<void(HeaderMap&, msgpack::zone&)>& edit) {
  msgpack::object_handle h = msgpack::unpack(reinterpret_cast<const char*>(frames[0].data()), frames[0].size());
  HeaderMap m = h.get().as<HeaderMap>();
  msgpack::zone zone;
  edit(m, zone);
  msgpack::sbuffer buf;
  msgpack::pack(buf, m);
  const auto* p = reinterpret_cast<const uint8_t*>(buf.data());
  frames[0].assign(p, p + buf.size());
  return frames;
}

// A msgpack object built by `fill`, deep-copied into `zone`.
msgpack::object Packed(msgpack::zone& zone, const std::function<void(Packer&)>& fill) {
  msgpack::sbuffer buf;
  Packer pk(buf);
  fill(pk);
  // Unpacked straight into `zone` (strings copied, never referenced into `buf`). A deep
  // copy with msgpack::object(obj, zone) would memcpy from the null pointer msgpack keeps
  // for an empty string, which UBSan reports (the "key charset" case packs an empty key).
  return msgpack::unpack(zone, buf.data(), buf.size(), nullptr, nullptr, msgpack::unpack_limit());
}

// Replaces the manifest with one entry [name, dtype, shape, "params"].
Frames WithManifestEntry(Frames frames, const std::string& name, const std::string& dtype,
                         const std::vector<int64_t>& shape) {
  return EditHeader(std::move(frames), [&](HeaderMap& m, msgpack::zone& z) {
    m["tensors"] = Packed(z, [&](Packer& pk) {
      pk.pack_array(1);
      pk.pack_array(4);
      pk.pack(name);
      pk.pack(dtype);
      pk.pack(shape);
      pk.pack(std::string("params"));
    });
  });
}

// Edits one field of energy record 0.
Frames EditEnergy0(Frames frames, const std::function<void(ObjMap&, msgpack::zone&)>& edit) {
  return EditHeader(std::move(frames), [&](HeaderMap& m, msgpack::zone& z) {
    auto records = m["energy"].as<std::vector<ObjMap>>();
    edit(records.at(0), z);
    m["energy"] = msgpack::object(records, z);
  });
}

TEST_CASE("MsgTypeName and TypeOf cover every message type") {
  CHECK(std::string(MsgTypeName(MsgType::kJoin)) == "Join");
  CHECK(std::string(MsgTypeName(MsgType::kWelcome)) == "Welcome");
  CHECK(std::string(MsgTypeName(MsgType::kFit)) == "Fit");
  CHECK(std::string(MsgTypeName(MsgType::kFitRes)) == "FitRes");
  CHECK(std::string(MsgTypeName(MsgType::kEvaluate)) == "Evaluate");
  CHECK(std::string(MsgTypeName(MsgType::kEvaluateRes)) == "EvaluateRes");
  CHECK(std::string(MsgTypeName(MsgType::kHeartbeat)) == "Heartbeat");
  CHECK(std::string(MsgTypeName(MsgType::kShutdown)) == "Shutdown");
  CHECK(std::string(MsgTypeName(MsgType::kError)) == "Error");
  CHECK(std::string(MsgTypeName(static_cast<MsgType>(200))) == "Unknown");

  CHECK(TypeOf(JoinMsg{}) == MsgType::kJoin);
  CHECK(TypeOf(WelcomeMsg{}) == MsgType::kWelcome);
  CHECK(TypeOf(FitMsg{}) == MsgType::kFit);
  CHECK(TypeOf(FitResMsg{}) == MsgType::kFitRes);
  CHECK(TypeOf(EvaluateMsg{}) == MsgType::kEvaluate);
  CHECK(TypeOf(EvaluateResMsg{}) == MsgType::kEvaluateRes);
  CHECK(TypeOf(HeartbeatMsg{}) == MsgType::kHeartbeat);
  CHECK(TypeOf(ShutdownMsg{}) == MsgType::kShutdown);
  CHECK(TypeOf(ErrorMsg{}) == MsgType::kError);
}

TEST_CASE("FramesBytes sums all frames") {
  CHECK(FramesBytes({}) == 0);
  CHECK(FramesBytes({{1, 2, 3}, {}, {4}}) == 4);
  const FitResMsg m = SampleFitRes();
  const Frames frames = Encode(m);
  CHECK(FramesBytes(frames) == frames[0].size() + TotalBytes(m.parameters));
}

TEST_CASE("every message type round-trips with every field") {
  SUBCASE("Join") {
    JoinMsg m;
    m.client_id = "node-7.lab-1234";
    m.requested_index = -1;
    m.num_examples = 60'000;
    m.capabilities = {"delta", "evaluate", "meter:rapl"};
    m.country = "FRA";
    m.pue = 1.58;
    JoinMsg got = RoundTrip(m, 1);
    CHECK(got.client_id == m.client_id);
    CHECK(got.requested_index == -1);
    CHECK(got.num_examples == 60'000);
    CHECK(got.capabilities == m.capabilities);
    CHECK(got.country == "FRA");
    CHECK(got.pue == 1.58);
    m.requested_index = 2'000'000'000;
    CHECK(RoundTrip(m, 1).requested_index == 2'000'000'000);
  }
  SUBCASE("Welcome") {
    WelcomeMsg m;
    m.client_index = 3;
    m.partition.scheme = "dirichlet";
    m.partition.alpha = 0.1;
    m.partition.shards_per_client = 5;
    m.partition.seed = 0xFFFF'FFFF'FFFF'FFFFull;
    m.partition.num_clients = 10;
    m.task = "fashion_mnist";
    m.model = "cnn";
    m.run_id = "2024-06-11T10-00-00Z-abc";
    m.heartbeat_interval_ms = 250;
    WelcomeMsg got = RoundTrip(m, 1);
    CHECK(got.client_index == 3);
    CHECK(got.partition.scheme == "dirichlet");
    CHECK(got.partition.alpha == 0.1);
    CHECK(got.partition.shards_per_client == 5);
    CHECK(got.partition.seed == 0xFFFF'FFFF'FFFF'FFFFull);
    CHECK(got.partition.num_clients == 10);
    CHECK(got.task == "fashion_mnist");
    CHECK(got.model == "cnn");
    CHECK(got.run_id == m.run_id);
    CHECK(got.heartbeat_interval_ms == 250);
  }
  SUBCASE("Fit") {
    FitMsg m;
    m.round = 9;
    TrainConfig train;
    train.epochs = 3;
    train.batch_size = 64;
    train.learning_rate = 0.01;
    train.momentum = 0.5;
    train.seed = 0xFEDC'BA98'7654'3210ull;  // over INT64_MAX: travels as the same bits
    train.send_delta = true;
    PutTrainConfig(train, &m.config);
    m.config["proximal_mu"] = 0.01;
    m.config["tag"] = std::string("run-7");
    m.config["count"] = int64_t{-5};
    m.config["flag"] = false;
    m.parameters = SampleParams();
    m.groups["control"] = {MakeFloatBlob("conv1.weight", {2}, {0.25f, -0.5f})};
    FitMsg got = RoundTrip(m, 1 + m.parameters.size() + 1);
    CHECK(got.round == 9);
    CHECK(got.config == m.config);
    StatusOr<TrainConfig> parsed = ParseTrainConfig(got.config);
    REQUIRE_MESSAGE(parsed.ok(), parsed.status().ToString());
    CHECK(parsed->epochs == 3);
    CHECK(parsed->batch_size == 64);
    CHECK(parsed->learning_rate == 0.01);
    CHECK(parsed->momentum == 0.5);
    CHECK(parsed->seed == 0xFEDC'BA98'7654'3210ull);
    CHECK(parsed->send_delta == true);
    CHECK(*ConfigDouble(got.config, "proximal_mu", 0) == 0.01);
    CheckParamsEqual(got.parameters, m.parameters);
    REQUIRE(got.groups.size() == 1);
    CheckParamsEqual(got.groups.at("control"), m.groups.at("control"));
  }
  SUBCASE("FitRes") {
    const FitResMsg m = SampleFitRes();
    const Frames frames = Encode(m);
    // Frames 1..n are the raw tensor bytes, in manifest order.
    REQUIRE(frames.size() == 1 + m.parameters.size());
    for (size_t i = 0; i < m.parameters.size(); ++i) CHECK(frames[i + 1] == m.parameters[i].data);
    FitResMsg got = RoundTrip(m, 1 + m.parameters.size());
    CHECK(got.round == 17);
    CHECK(got.is_delta == true);
    CHECK(got.num_examples == 6000);
    CHECK(got.train_loss == 0.4375);
    CHECK(got.fit_s == 3.5);
    CheckParamsEqual(got.parameters, m.parameters);
    CHECK(got.groups.empty());
    CheckEnergyEqual(got.energy, m.energy);
  }
  SUBCASE("FitRes with tensor groups") {
    FitResMsg m = SampleFitRes();
    m.groups["control"] = {MakeFloatBlob("conv1.weight", {2}, {1.5f, 2.5f}), MakeFloatBlob("fc.bias", {1}, {-1})};
    m.groups["aux"] = {MakeFloatBlob("x", {}, {7})};
    FitResMsg got = RoundTrip(m, 1 + m.parameters.size() + 3);
    CheckParamsEqual(got.parameters, m.parameters);
    REQUIRE(got.groups.size() == 2);
    CheckParamsEqual(got.groups.at("control"), m.groups.at("control"));
    CheckParamsEqual(got.groups.at("aux"), m.groups.at("aux"));
  }
  SUBCASE("FitRes without tensors or energy") {
    FitResMsg m;
    m.round = 1;
    FitResMsg got = RoundTrip(m, 1);
    CHECK(got.round == 1);
    CHECK(got.parameters.empty());
    CHECK(got.energy.empty());
  }
  SUBCASE("Evaluate") {
    EvaluateMsg m;
    m.round = 12;
    m.parameters = SampleParams();
    EvaluateMsg got = RoundTrip(m, 1 + m.parameters.size());
    CHECK(got.round == 12);
    CheckParamsEqual(got.parameters, m.parameters);
  }
  SUBCASE("EvaluateRes") {
    EvaluateResMsg m;
    m.round = 12;
    m.loss = 0.375;
    m.accuracy = 0.875;
    m.num_examples = 10'000;
    m.energy = SampleEnergy();
    EvaluateResMsg got = RoundTrip(m, 1);
    CHECK(got.round == 12);
    CHECK(got.loss == 0.375);
    CHECK(got.accuracy == 0.875);
    CHECK(got.num_examples == 10'000);
    CheckEnergyEqual(got.energy, m.energy);
  }
  SUBCASE("Heartbeat") {
    const HeartbeatMsg m = SampleHeartbeat();
    HeartbeatMsg got = RoundTrip(m, 1);
    CHECK(got.round == 4);
    CheckEnergyEqual(got.energy, m.energy);
  }
  SUBCASE("Shutdown") {
    ShutdownMsg m;
    m.reason = "target reached: accuracy 0.85 \xE2\x89\xA5 0.85";
    CHECK(RoundTrip(m, 1).reason == m.reason);
  }
  SUBCASE("Error") {
    ErrorMsg m;
    m.code = ErrorCode::kBadUpdate;
    m.round = 7;
    m.message = "tensor 'fc.weight' has shape [64, 10], expected [10, 64]";
    ErrorMsg got = RoundTrip(m, 1);
    CHECK(got.code == ErrorCode::kBadUpdate);
    CHECK(got.round == 7);
    CHECK(got.message == m.message);
  }
  SUBCASE("every phase and source name survives") {
    HeartbeatMsg m;
    for (Phase p : {Phase::kFit, Phase::kEvaluate, Phase::kIdle, Phase::kComm, Phase::kAggregate, Phase::kTrain}) {
      for (EnergySource s : {EnergySource::kRapl, EnergySource::kNvml, EnergySource::kModel, EnergySource::kComm}) {
        EnergyRecord r;
        r.phase = p;
        r.source = s;
        r.measured = IsMeasured(s);
        r.energy_j = static_cast<double>(m.energy.size());
        m.energy.push_back(r);
      }
    }
    CheckEnergyEqual(RoundTrip(m, 1).energy, m.energy);
  }
}

TEST_CASE("the header is a msgpack map with v, t and the documented keys") {
  const Frames frames = Encode(Message(SampleHeartbeat()));
  msgpack::object_handle h = msgpack::unpack(reinterpret_cast<const char*>(frames[0].data()), frames[0].size());
  const HeaderMap m = h.get().as<HeaderMap>();
  CHECK(m.at("v").as<uint32_t>() == kProtocolVersion);
  CHECK(m.at("t").as<uint32_t>() == static_cast<uint32_t>(MsgType::kHeartbeat));
  CHECK(m.at("round").as<uint64_t>() == 4);
  CHECK(m.count("tensors") == 0);
  const auto records = m.at("energy").as<std::vector<ObjMap>>();
  REQUIRE(records.size() == 2);
  CHECK(records[0].at("phase").as<std::string>() == "train");
  CHECK(records[0].at("source").as<std::string>() == "rapl");
  CHECK(records[1].at("sent").as<uint64_t>() == 5'000'000'000ull);

  const Frames fit = Encode(Message(SampleFitRes()));
  msgpack::object_handle fh = msgpack::unpack(reinterpret_cast<const char*>(fit[0].data()), fit[0].size());
  const HeaderMap fm = fh.get().as<HeaderMap>();
  using Entry = std::tuple<std::string, std::string, std::vector<int64_t>, std::string>;
  const auto manifest = fm.at("tensors").as<std::vector<Entry>>();
  REQUIRE(manifest.size() == 5);
  CHECK(manifest[0] == Entry{"conv1.weight", "f32", {2, 1, 3}, "params"});
  CHECK(manifest[1] == Entry{"fc.bias", "f64", {2}, "params"});
  CHECK(manifest[2] == Entry{"steps", "i64", {3}, "params"});
  CHECK(manifest[3] == Entry{"temperature", "f32", {}, "params"});
  CHECK(manifest[4] == Entry{"empty", "f32", {0, 4}, "params"});

  FitMsg fit_msg;
  TrainConfig train;
  PutTrainConfig(train, &fit_msg.config);
  const Frames ff = Encode(Message(fit_msg));
  msgpack::object_handle ch = msgpack::unpack(reinterpret_cast<const char*>(ff[0].data()), ff[0].size());
  const ObjMap config = ch.get().as<HeaderMap>().at("config").as<ObjMap>();
  CHECK(config.at("epochs").as<int64_t>() == 1);
  CHECK(config.at("batch_size").as<int64_t>() == 32);
  CHECK(config.at("learning_rate").type == msgpack::type::FLOAT64);
  CHECK(config.at("momentum").as<double>() == 0.9);
  CHECK(config.at("seed").as<int64_t>() == 0);
  CHECK(config.at("send_delta").as<bool>() == false);
}

TEST_CASE("unknown extra keys are ignored") {
  const Frames frames = EditHeader(Encode(SampleFitRes()), [](HeaderMap& m, msgpack::zone& z) {
    m["zz_added_in_a_later_version"] = Packed(z, [](Packer& pk) {
      pk.pack_array(2);
      pk.pack(1);
      pk.pack(std::string("x"));
    });
  });
  const Frames with_energy_key = EditEnergy0(frames, [](ObjMap& r, msgpack::zone&) { r["carbon_g"] = msgpack::object(2.5); });
  StatusOr<Message> decoded = Decode(with_energy_key);
  REQUIRE_MESSAGE(decoded.ok(), decoded.status().ToString());
  const auto& got = std::get<FitResMsg>(*decoded);
  CHECK(got.round == 17);
  CheckParamsEqual(got.parameters, SampleParams());
  CheckEnergyEqual(got.energy, SampleEnergy());
}

TEST_CASE("float fields accept integers from other encoders") {
  const Frames frames = EditHeader(Encode(SampleFitRes()), [](HeaderMap& m, msgpack::zone&) {
    m["loss"] = msgpack::object(2);
    m["fit_s"] = msgpack::object(-1);
  });
  StatusOr<Message> decoded = Decode(frames);
  REQUIRE_MESSAGE(decoded.ok(), decoded.status().ToString());
  CHECK(std::get<FitResMsg>(*decoded).train_loss == 2.0);
  CHECK(std::get<FitResMsg>(*decoded).fit_s == -1.0);

  // A v4 peer with greenfed's encoder from before float64 everywhere wrote integral
  // doubles as integers: in a ConfigMap they arrive as int64, which ParseTrainConfig
  // and ConfigDouble read as doubles; one of 2^63 or more stays a named rejection.
  FitMsg fit;
  PutTrainConfig(TrainConfig{}, &fit.config);
  fit.config["proximal_mu"] = 0.5;
  const auto with_config = [&](int64_t lr, int64_t momentum, uint64_t mu) {
    return EditHeader(Encode(fit), [=](HeaderMap& m, msgpack::zone& z) {
      auto config = m["config"].as<ObjMap>();
      config["learning_rate"] = msgpack::object(lr);
      config["momentum"] = msgpack::object(momentum);
      config["proximal_mu"] = msgpack::object(mu);
      m["config"] = msgpack::object(config, z);
    });
  };
  StatusOr<Message> old_fit = Decode(with_config(1, 0, 3));
  REQUIRE_MESSAGE(old_fit.ok(), old_fit.status().ToString());
  const ConfigMap& config = std::get<FitMsg>(*old_fit).config;
  StatusOr<TrainConfig> train = ParseTrainConfig(config);
  REQUIRE_MESSAGE(train.ok(), train.status().ToString());
  CHECK(train->learning_rate == 1.0);
  CHECK(train->momentum == 0.0);
  CHECK(*ConfigDouble(config, "proximal_mu", 0) == 3.0);
  CHECK(Contains(DecodeError(with_config(1, 0, 16602069666338596864ull)),
                 "field 'config.proximal_mu' value 16602069666338596864 is out of range for int64"));
}

// The 9 bytes of `v` as a msgpack float64: 0xcb, then the IEEE-754 bits big-endian.
std::vector<uint8_t> Float64Wire(double v) {
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof bits);
  std::vector<uint8_t> out{0xcb};
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(bits >> (56 - 8 * i)));
  return out;
}

// The 9 bytes that follow each occurrence of key `k` (as a msgpack fixstr) in `header`:
// the value's encoding when that value is a float64.
std::vector<std::vector<uint8_t>> WireAfterKey(const std::vector<uint8_t>& header, const std::string& k) {
  std::vector<uint8_t> needle{static_cast<uint8_t>(0xa0 | k.size())};
  needle.insert(needle.end(), k.begin(), k.end());
  std::vector<std::vector<uint8_t>> out;
  for (auto it = header.begin();
       (it = std::search(it, header.end(), needle.begin(), needle.end())) != header.end(); ++it) {
    const auto value = it + static_cast<std::ptrdiff_t>(needle.size());
    const auto left = header.end() - value;
    out.emplace_back(value, value + std::min<std::ptrdiff_t>(left, 9));
  }
  return out;
}

bool SameBits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// Encode once used msgpack-cxx's pack_double, which writes an integral double as an
// integer: a TrainConfig momentum of 0.0 arrived as the int64 0, and 16602069666338596864.0
// (the decode fuzzer's finding, tests/fuzz/corpus/decode/config_integral_double) as a
// uint64 that Decode refused ("out of range for int64").
TEST_CASE("every double field travels as a msgpack float64, integral values included") {
  const double kValues[] = {0.0,
                            -0.0,
                            1.0,
                            -3.0,
                            16602069666338596864.0,
                            0x1p63,
                            -0x1p63,
                            0x1p64,
                            std::numeric_limits<double>::max(),
                            std::numeric_limits<double>::lowest(),
                            std::numeric_limits<double>::denorm_min()};
  // Checks that key `k` occurs `count` times in frame 0, each time as v's float64.
  const auto check_wire = [](const Frames& frames, const std::string& k, size_t count, double v) {
    CAPTURE(k);
    const auto found = WireAfterKey(frames.at(0), k);
    CHECK(found.size() == count);
    for (const auto& bytes : found) CHECK(bytes == Float64Wire(v));
  };
  SUBCASE("Join.pue") {
    for (const double v : kValues) {
      CAPTURE(v);
      JoinMsg m;
      m.client_id = "host-1";
      m.country = "DEU";
      m.pue = v;
      check_wire(Encode(m), "pue", 1, v);
      CHECK(SameBits(RoundTrip(m, 1).pue, v));
    }
  }
  SUBCASE("Welcome.partition.alpha") {
    for (const double v : kValues) {
      CAPTURE(v);
      WelcomeMsg m;
      m.partition.alpha = v;
      check_wire(Encode(m), "alpha", 1, v);
      CHECK(SameBits(RoundTrip(m, 1).partition.alpha, v));
    }
  }
  SUBCASE("Fit.config: TrainConfig's doubles and a strategy's key stay doubles") {
    for (const double v : kValues) {
      CAPTURE(v);
      FitMsg m;
      TrainConfig train;
      train.learning_rate = v;
      train.momentum = v;
      PutTrainConfig(train, &m.config);
      m.config["proximal_mu"] = v;
      const Frames f = Encode(m);
      for (const char* k : {"learning_rate", "momentum", "proximal_mu"}) check_wire(f, k, 1, v);
      const FitMsg got = RoundTrip(m, 1);
      for (const std::string k : {"learning_rate", "momentum", "proximal_mu"}) {
        CAPTURE(k);
        REQUIRE(got.config.count(k) == 1);
        const std::string arrived_as = ConfigTypeName(got.config.at(k));
        CAPTURE(arrived_as);
        const auto* d = std::get_if<double>(&got.config.at(k));
        REQUIRE(d != nullptr);
        CHECK(SameBits(*d, v));
      }
      CHECK(got.config == m.config);
    }
  }
  SUBCASE("FitRes loss, fit_s and its energy records") {
    for (const double v : kValues) {
      CAPTURE(v);
      FitResMsg m = SampleFitRes();
      m.train_loss = v;
      m.fit_s = v;
      for (auto& r : m.energy) r.wall_s = r.cpu_s = r.energy_j = v;
      const Frames f = Encode(m);
      check_wire(f, "loss", 1, v);
      check_wire(f, "fit_s", 1, v);
      for (const char* k : {"wall_s", "cpu_s", "energy_j"}) check_wire(f, k, m.energy.size(), v);
      const FitResMsg got = RoundTrip(m, 6);
      CHECK(SameBits(got.train_loss, v));
      CHECK(SameBits(got.fit_s, v));
      CheckEnergyEqual(got.energy, m.energy);
      for (const auto& r : got.energy) {
        CHECK(SameBits(r.wall_s, v));
        CHECK(SameBits(r.cpu_s, v));
        CHECK(SameBits(r.energy_j, v));
      }
    }
  }
  SUBCASE("EvaluateRes loss and accuracy, Heartbeat energy") {
    for (const double v : kValues) {
      CAPTURE(v);
      EvaluateResMsg m;
      m.loss = v;
      m.accuracy = v;
      const Frames f = Encode(m);
      check_wire(f, "loss", 1, v);
      check_wire(f, "accuracy", 1, v);
      const EvaluateResMsg got = RoundTrip(m, 1);
      CHECK(SameBits(got.loss, v));
      CHECK(SameBits(got.accuracy, v));
      HeartbeatMsg hb = SampleHeartbeat();
      for (auto& r : hb.energy) r.energy_j = v;
      check_wire(Encode(hb), "energy_j", hb.energy.size(), v);
      for (const auto& r : RoundTrip(hb, 1).energy) CHECK(SameBits(r.energy_j, v));
    }
  }
}

TEST_CASE("Decode rejects malformed messages with a reason") {
  const Frames fitres = Encode(SampleFitRes());

  SUBCASE("version mismatch") {
    // A version-1 peer (before numeric error codes) and a version-2 peer (before
    // config maps and tensor groups) are refused with a version error.
    // A version-3 peer (before codecs) likewise.
    const Frames f = EditHeader(fitres, [](HeaderMap& m, msgpack::zone&) { m["v"] = msgpack::object(1); });
    CHECK(Contains(DecodeError(f, Code::kFailedPrecondition), "protocol version 1, expected 4"));
    CHECK(DecodeErrorCode(Decode(f).status()) == ErrorCode::kVersionMismatch);
    const Frames v2 = EditHeader(fitres, [](HeaderMap& m, msgpack::zone&) { m["v"] = msgpack::object(2); });
    CHECK(Contains(DecodeError(v2, Code::kFailedPrecondition), "protocol version 2, expected 4"));
    CHECK(DecodeErrorCode(Decode(v2).status()) == ErrorCode::kVersionMismatch);
    const Frames v3 = EditHeader(fitres, [](HeaderMap& m, msgpack::zone&) { m["v"] = msgpack::object(3); });
    CHECK(Contains(DecodeError(v3, Code::kFailedPrecondition), "protocol version 3, expected 4"));
    CHECK(DecodeErrorCode(Decode(v3).status()) == ErrorCode::kVersionMismatch);
  }
  SUBCASE("missing version") {
    const Frames f = EditHeader(fitres, [](HeaderMap& m, msgpack::zone&) { m.erase("v"); });
    CHECK(Contains(DecodeError(f), "missing required field 'v'"));
  }
  SUBCASE("unknown type") {
    const Frames f = EditHeader(fitres, [](HeaderMap& m, msgpack::zone&) { m["t"] = msgpack::object(42); });
    CHECK(Contains(DecodeError(f), "unknown message type 42"));
    const Frames zero = EditHeader(fitres, [](HeaderMap& m, msgpack::zone&) { m["t"] = msgpack::object(0); });
    CHECK(Contains(DecodeError(zero), "unknown message type 0"));
  }
  SUBCASE("type of the wrong msgpack kind") {
    const Frames f = EditHeader(fitres, [](HeaderMap& m, msgpack::zone& z) { m["t"] = msgpack::object("FitRes", z); });
    CHECK(Contains(DecodeError(f), "field 't' must be an unsigned integer, got string"));
  }
  SUBCASE("empty message") {
    CHECK(Contains(DecodeError(Frames{}, Code::kDataLoss), "empty message"));
    CHECK(Contains(DecodeError(Frames{{}}, Code::kDataLoss), "empty header frame"));
  }
  SUBCASE("garbage header") {
    Frames f = fitres;
    f[0] = {0xc1, 0x00, 0x00};  // 0xc1 is never valid msgpack
    CHECK(Contains(DecodeError(f, Code::kDataLoss), "garbage header"));
  }
  SUBCASE("header that is not a map") {
    Frames f = fitres;
    f[0] = {0x93, 0x01, 0x02, 0x03};  // [1, 2, 3]
    CHECK(Contains(DecodeError(f, Code::kDataLoss), "header must be a msgpack map, got array"));
  }
  SUBCASE("truncated header") {
    Frames f = fitres;
    f[0].resize(f[0].size() - 3);
    CHECK(Contains(DecodeError(f, Code::kDataLoss), "truncated header"));
  }
  SUBCASE("container larger than the header claims") {
    Frames f = fitres;
    f[0] = {0xdf, 0xff, 0xff, 0xff, 0xff};  // map32 with 4G entries in 5 bytes
    CHECK(Contains(DecodeError(f, Code::kDataLoss), "garbage header"));
  }
  SUBCASE("trailing bytes after the map") {
    Frames f = fitres;
    f[0].push_back(0x00);
    f[0].push_back(0x01);
    CHECK(Contains(DecodeError(f, Code::kDataLoss), "2 trailing bytes after the header map"));
  }
  SUBCASE("non-string and duplicate keys") {
    msgpack::sbuffer buf;
    Packer pk(buf);
    pk.pack_map(3);
    pk.pack(std::string("v"));
    pk.pack(1);
    pk.pack(std::string("v"));
    pk.pack(1);
    pk.pack(std::string("t"));
    pk.pack(7);
    Frames f = {std::vector<uint8_t>(buf.data(), buf.data() + buf.size())};
    CHECK(Contains(DecodeError(f), "duplicate key 'v' in the header"));

    msgpack::sbuffer buf2;
    Packer pk2(buf2);
    pk2.pack_map(1);
    pk2.pack(5);
    pk2.pack(1);
    f = {std::vector<uint8_t>(buf2.data(), buf2.data() + buf2.size())};
    CHECK(Contains(DecodeError(f), "key #0 of the header must be a string, got unsigned integer"));
  }
  SUBCASE("missing required field") {
    const Frames f = EditHeader(fitres, [](HeaderMap& m, msgpack::zone&) { m.erase("round"); });
    CHECK(Contains(DecodeError(f), "FitRes: missing required field 'round'"));
    const Frames g = EditHeader(fitres, [](HeaderMap& m, msgpack::zone&) { m.erase("tensors"); });
    CHECK(Contains(DecodeError(g), "missing required field 'tensors'"));
    const Frames e = EditEnergy0(fitres, [](ObjMap& r, msgpack::zone&) { r.erase("energy_j"); });
    CHECK(Contains(DecodeError(e), "missing required field 'energy[0].energy_j'"));

    FitMsg fit;
    fit.round = 1;
    const Frames c = EditHeader(Encode(fit), [](HeaderMap& m, msgpack::zone&) { m["config"] = msgpack::object(); });
    CHECK(Contains(DecodeError(c), "field 'config' must be a map, got nil"));
  }
  SUBCASE("missing nested field") {
    WelcomeMsg w;
    const Frames f = EditHeader(Encode(w), [](HeaderMap& m, msgpack::zone& z) {
      auto partition = m["partition"].as<ObjMap>();
      partition.erase("alpha");
      m["partition"] = msgpack::object(partition, z);
    });
    CHECK(Contains(DecodeError(f), "Welcome: missing required field 'partition.alpha'"));
  }
  SUBCASE("wrong field type") {
    JoinMsg join;
    join.client_id = "a";
    join.country = "FRA";
    const Frames j = EditHeader(Encode(join), [](HeaderMap& m, msgpack::zone&) { m["client_id"] = msgpack::object(42); });
    CHECK(Contains(DecodeError(j), "field 'client_id' must be a string, got unsigned integer"));
    const Frames caps = EditHeader(Encode(join), [](HeaderMap& m, msgpack::zone& z) {
      m["caps"] = Packed(z, [](Packer& pk) {
        pk.pack_array(2);
        pk.pack(std::string("delta"));
        pk.pack(3.5);
      });
    });
    CHECK(Contains(DecodeError(caps), "field 'caps[1]' must be a string, got float64"));
    const Frames pue = EditHeader(Encode(join), [](HeaderMap& m, msgpack::zone&) { m["pue"] = msgpack::object(true); });
    CHECK(Contains(DecodeError(pue), "field 'pue' must be a number, got bool"));

    const Frames round = EditHeader(fitres, [](HeaderMap& m, msgpack::zone& z) { m["round"] = msgpack::object("17", z); });
    CHECK(Contains(DecodeError(round), "field 'round' must be an unsigned integer, got string"));
    const Frames neg = EditHeader(fitres, [](HeaderMap& m, msgpack::zone&) { m["round"] = msgpack::object(-1); });
    CHECK(Contains(DecodeError(neg), "field 'round' must be non-negative, got -1"));
    const Frames delta = EditHeader(fitres, [](HeaderMap& m, msgpack::zone&) { m["is_delta"] = msgpack::object(1); });
    CHECK(Contains(DecodeError(delta), "field 'is_delta' must be a bool, got unsigned integer"));
    const Frames energy = EditHeader(fitres, [](HeaderMap& m, msgpack::zone&) { m["energy"] = msgpack::object(0); });
    CHECK(Contains(DecodeError(energy), "field 'energy' must be an array, got unsigned integer"));

    WelcomeMsg w;
    const Frames big = EditHeader(Encode(w), [](HeaderMap& m, msgpack::zone&) {
      m["hb_ms"] = msgpack::object(uint64_t{5'000'000'000});
    });
    CHECK(Contains(DecodeError(big), "field 'hb_ms' value 5000000000 is out of range for uint32"));
    JoinMsg small;
    small.client_id = "a";
    small.country = "FRA";
    const Frames idx = EditHeader(Encode(small), [](HeaderMap& m, msgpack::zone&) {
      m["req_index"] = msgpack::object(int64_t{-3'000'000'000});
    });
    CHECK(Contains(DecodeError(idx), "field 'req_index' value -3000000000 is out of range for int32"));
  }
  SUBCASE("bad energy records") {
    const Frames phase =
        EditEnergy0(fitres, [](ObjMap& r, msgpack::zone& z) { r["phase"] = msgpack::object("nap", z); });
    const std::string pm = DecodeError(phase);
    CHECK(Contains(pm, "field 'energy[0].phase'"));
    CHECK(Contains(pm, "unknown phase 'nap'"));
    const Frames source =
        EditEnergy0(fitres, [](ObjMap& r, msgpack::zone& z) { r["source"] = msgpack::object("guess", z); });
    CHECK(Contains(DecodeError(source), "unknown energy source 'guess'"));
    const Frames measured = EditEnergy0(fitres, [](ObjMap& r, msgpack::zone&) { r["measured"] = msgpack::object(false); });
    CHECK(Contains(DecodeError(measured), "field 'energy[0].measured' is false but source 'rapl' is measured"));
    const Frames not_map = EditHeader(fitres, [](HeaderMap& m, msgpack::zone& z) {
      m["energy"] = Packed(z, [](Packer& pk) {
        pk.pack_array(1);
        pk.pack(std::string("fit"));
      });
    });
    CHECK(Contains(DecodeError(not_map), "field 'energy[0]' must be a map, got string"));
  }
  SUBCASE("frame count differs from the manifest") {
    Frames fewer = fitres;
    fewer.pop_back();
    CHECK(Contains(DecodeError(fewer, Code::kDataLoss), "manifest lists 5 tensors but the message has 4 tensor frames"));
    Frames more = fitres;
    more.push_back({1, 2, 3, 4});
    CHECK(Contains(DecodeError(more, Code::kDataLoss), "manifest lists 5 tensors but the message has 6 tensor frames"));
  }
  SUBCASE("frame size differs from numel * dtype size") {
    Frames f = fitres;
    f[2].pop_back();  // "fc.bias" f64[2]
    CHECK(Contains(DecodeError(f, Code::kDataLoss), "tensor 'fc.bias' f64[2] needs 16 bytes but its frame has 15"));
    Frames g = fitres;
    g[5].push_back(0);  // "empty" f32[0, 4]
    CHECK(Contains(DecodeError(g, Code::kDataLoss), "tensor 'empty' f32[0, 4] needs 0 bytes but its frame has 1"));
  }
  SUBCASE("non-finite tensor values") {
    FitResMsg m = SampleFitRes();
    m.parameters[0] = MakeFloatBlob("conv1.weight", {2, 1, 3}, {0, 0, 0, std::nanf(""), 0, 0});
    const std::string nan_msg = DecodeError(Encode(m));
    CHECK(Contains(nan_msg, "tensor 'conv1.weight' has a non-finite value"));
    CHECK(Contains(nan_msg, "element 3"));
    m = SampleFitRes();
    m.parameters[1] = RawBlob("fc.bias", DType::kFloat64, {2}, BytesOf<double>({0, -HUGE_VAL}));
    CHECK(Contains(DecodeError(Encode(m)), "tensor 'fc.bias' has a non-finite value"));
  }
  SUBCASE("message over max_bytes") {
    const uint64_t total = FramesBytes(fitres);
    CHECK(Decode(fitres, total).ok());
    const std::string msg = DecodeError(fitres, Code::kOutOfRange, total - 1);
    CHECK(Contains(msg, std::to_string(total) + " bytes"));
    CHECK(Contains(msg, "limit of " + std::to_string(total - 1) + " bytes"));
  }
  SUBCASE("unknown dtype") {
    EvaluateMsg e;
    e.parameters = {MakeFloatBlob("w", {2}, {1, 2})};
    const Frames f = WithManifestEntry(Encode(e), "w", "f16", {2});
    const std::string msg = DecodeError(f);
    CHECK(Contains(msg, "tensor 'w'"));
    CHECK(Contains(msg, "unknown dtype 'f16'"));
    const Frames g = EditHeader(Encode(e), [](HeaderMap& m, msgpack::zone& z) {
      m["tensors"] = Packed(z, [](Packer& pk) {
        pk.pack_array(1);
        pk.pack_array(4);
        pk.pack(std::string("w"));
        pk.pack(0);
        pk.pack(std::vector<int64_t>{2});
        pk.pack(std::string("params"));
      });
    });
    CHECK(Contains(DecodeError(g), "field 'tensors[0].dtype' must be a string, got unsigned integer"));
  }
  SUBCASE("negative dimensions") {
    EvaluateMsg e;
    e.parameters = {MakeFloatBlob("w", {2}, {1, 2})};
    const Frames f = WithManifestEntry(Encode(e), "w", "f32", {-2, -1});
    CHECK(Contains(DecodeError(f), "tensor 'w' has negative dimension -2 in shape [-2, -1]"));
  }
  SUBCASE("shape whose byte count overflows") {
    EvaluateMsg e;
    e.parameters = {MakeFloatBlob("w", {2}, {1, 2})};
    const Frames f = WithManifestEntry(Encode(e), "w", "f32", {int64_t{1} << 62, int64_t{1} << 62});
    CHECK(Contains(DecodeError(f, Code::kOutOfRange), "is too large"));
  }
  SUBCASE("malformed manifest entries") {
    EvaluateMsg e;
    e.parameters = {MakeFloatBlob("w", {2}, {1, 2})};
    const Frames f = EditHeader(Encode(e), [](HeaderMap& m, msgpack::zone& z) {
      m["tensors"] = Packed(z, [](Packer& pk) {
        pk.pack_array(1);
        pk.pack_array(2);
        pk.pack(std::string("w"));
        pk.pack(std::string("f32"));
      });
    });
    CHECK(Contains(DecodeError(f), "field 'tensors[0]' must be [name, dtype, shape, group], got an array of 2"));
    EvaluateMsg two;
    two.parameters = {MakeFloatBlob("w", {1}, {1}), MakeFloatBlob("w", {1}, {2})};
    CHECK(Contains(DecodeError(Encode(two)), "tensor name 'w' appears twice"));
  }
  SUBCASE("tensors on a message type that carries none") {
    const Frames hb = Encode(SampleHeartbeat());
    const Frames manifest = EditHeader(hb, [](HeaderMap& m, msgpack::zone& z) {
      m["tensors"] = Packed(z, [](Packer& pk) { pk.pack_array(0); });
    });
    CHECK(Contains(DecodeError(manifest), "field 'tensors' is present but Heartbeat messages carry no tensors"));
    Frames extra = hb;
    extra.push_back({0, 0, 0, 0});
    CHECK(Contains(DecodeError(extra, Code::kDataLoss), "Heartbeat messages carry no tensors, but this one has 1 extra frames"));
  }
}

// A Fit whose "tensors" manifest is rewritten to `entries` ([name, dtype, shape,
// group]), with one 4-byte f32 frame per entry.
Frames FitWithManifest(const std::vector<std::tuple<std::string, std::string>>& entries) {
  FitMsg fit;
  PutTrainConfig(TrainConfig{}, &fit.config);
  Frames frames = EditHeader(Encode(fit), [&](HeaderMap& m, msgpack::zone& z) {
    m["tensors"] = Packed(z, [&](Packer& pk) {
      pk.pack_array(static_cast<uint32_t>(entries.size()));
      for (const auto& [name, group] : entries) {
        pk.pack_array(4);
        pk.pack(name);
        pk.pack(std::string("f32"));
        pk.pack(std::vector<int64_t>{1});
        pk.pack(group);
      }
    });
  });
  for (size_t i = 0; i < entries.size(); ++i) frames.push_back({0, 0, 0x80, 0x3f});  // 1.0f
  return frames;
}

// A Fit whose config map is packed by `fill` (which packs exactly one map).
Frames FitWithConfig(const std::function<void(Packer&)>& fill) {
  FitMsg fit;
  return EditHeader(Encode(fit), [&](HeaderMap& m, msgpack::zone& z) { m["config"] = Packed(z, fill); });
}

TEST_CASE("protocol v3: config maps are typed and bounded and each rejection names the key") {
  SUBCASE("typed readers") {
    ConfigMap c{{"mu", 0.5}, {"n", int64_t{3}}, {"on", true}, {"s", std::string("x")}};
    CHECK(*ConfigDouble(c, "mu", 0) == 0.5);
    CHECK(*ConfigDouble(c, "n", 0) == 3.0);  // an int read as a double
    CHECK(*ConfigDouble(c, "absent", 1.25) == 1.25);
    CHECK(*ConfigInt(c, "n", 0) == 3);
    CHECK(*ConfigBool(c, "on", false) == true);
    CHECK(*ConfigString(c, "s", "") == "x");
    CHECK(ConfigDouble(c, "s", 0).status().message() == "config key 's' must be a double, got string");
    CHECK(ConfigInt(c, "mu", 0).status().message() == "config key 'mu' must be an int, got double");
    CHECK(ConfigBool(c, "n", false).status().message() == "config key 'n' must be a bool, got int");
    CHECK(ConfigString(c, "on", "").status().message() == "config key 'on' must be a string, got bool");
  }
  SUBCASE("ParseTrainConfig names a missing, mistyped or out-of-range key") {
    ConfigMap c;
    PutTrainConfig(TrainConfig{}, &c);
    REQUIRE(ParseTrainConfig(c).ok());
    for (const char* k : {"epochs", "batch_size", "learning_rate", "momentum", "seed", "send_delta"}) {
      ConfigMap missing = c;
      missing.erase(k);
      CHECK(ParseTrainConfig(missing).status().message() == std::string("config key '") + k + "' is missing");
    }
    ConfigMap typed = c;
    typed["send_delta"] = int64_t{1};
    CHECK(ParseTrainConfig(typed).status().message() == "config key 'send_delta' must be a bool, got int");
    ConfigMap big = c;
    big["epochs"] = int64_t{1} << 33;
    CHECK(Contains(ParseTrainConfig(big).status().message(), "config key 'epochs' value 8589934592 is out of range"));
    ConfigMap negative = c;
    negative["batch_size"] = int64_t{-1};
    CHECK(Contains(ParseTrainConfig(negative).status().message(), "config key 'batch_size' value -1 is out of range"));
  }
  SUBCASE("ValidateConfig") {
    ConfigMap ok{{"proximal_mu", 0.01}};
    CHECK(ValidateConfig(ok).ok());
    CHECK(Contains(ValidateConfig({{"bad key", 1.0}}).message(), "field 'config.bad key' has byte 0x20"));
    CHECK(ValidateConfig({{"mu", std::nan("")}}).message() == "config key 'mu' is not finite");
    CHECK(Contains(ValidateConfig({{"s", std::string(kMaxTextBytes + 1, 'x')}}).message(), "over the limit of 1024"));
    ConfigMap many;
    for (size_t i = 0; i <= kMaxConfigEntries; ++i) many["k" + std::to_string(i)] = int64_t{1};
    CHECK(Contains(ValidateConfig(many).message(), "65 entries, over the limit of 64"));
  }
  SUBCASE("too many entries") {
    const Frames f = FitWithConfig([](Packer& pk) {
      pk.pack_map(kMaxConfigEntries + 1);
      for (size_t i = 0; i <= kMaxConfigEntries; ++i) {
        pk.pack(std::string("k") + std::to_string(i));
        pk.pack(1);
      }
    });
    CHECK(Contains(DecodeError(f), "Fit: field 'config' holds 65 entries, over the limit of 64"));
  }
  SUBCASE("key charset") {
    const Frames f = FitWithConfig([](Packer& pk) {
      pk.pack_map(1);
      pk.pack(std::string("bad key"));
      pk.pack(1);
    });
    CHECK(Contains(DecodeError(f), "field 'config.bad key' has byte 0x20 at offset 3"));
    const Frames empty = FitWithConfig([](Packer& pk) {
      pk.pack_map(1);
      pk.pack(std::string(""));
      pk.pack(1);
    });
    CHECK(Contains(DecodeError(empty), "must be 1..64 bytes, got 0"));
    const Frames number = FitWithConfig([](Packer& pk) {
      pk.pack_map(1);
      pk.pack(7);
      pk.pack(1);
    });
    CHECK(Contains(DecodeError(number), "key #0 of 'config' must be a string, got unsigned integer"));
  }
  SUBCASE("duplicate key") {
    const Frames f = FitWithConfig([](Packer& pk) {
      pk.pack_map(2);
      pk.pack(std::string("epochs"));
      pk.pack(1);
      pk.pack(std::string("epochs"));
      pk.pack(2);
    });
    CHECK(Contains(DecodeError(f), "duplicate key 'epochs' in 'config'"));
  }
  SUBCASE("non-finite double") {
    for (double bad : {std::nan(""), HUGE_VAL, -HUGE_VAL}) {
      const Frames f = FitWithConfig([bad](Packer& pk) {
        pk.pack_map(1);
        pk.pack(std::string("proximal_mu"));
        pk.pack_double(bad);
      });
      CHECK(Contains(DecodeError(f), "field 'config.proximal_mu' is not finite"));
    }
  }
  SUBCASE("string over kMaxTextBytes") {
    const Frames f = FitWithConfig([](Packer& pk) {
      pk.pack_map(1);
      pk.pack(std::string("note"));
      pk.pack(std::string(kMaxTextBytes + 1, 'x'));
    });
    CHECK(Contains(DecodeError(f), "field 'config.note' is 1025 bytes, over the limit of 1024"));
  }
  SUBCASE("integer over int64") {
    const Frames f = FitWithConfig([](Packer& pk) {
      pk.pack_map(1);
      pk.pack(std::string("seed"));
      pk.pack_uint64(std::numeric_limits<uint64_t>::max());
    });
    CHECK(Contains(DecodeError(f), "field 'config.seed' value 18446744073709551615 is out of range for int64"));
  }
  SUBCASE("value of another type") {
    const Frames f = FitWithConfig([](Packer& pk) {
      pk.pack_map(1);
      pk.pack(std::string("list"));
      pk.pack_array(0);
    });
    CHECK(Contains(DecodeError(f), "field 'config.list' must be a bool, an integer, a float or a string, got array"));
    const Frames nil = FitWithConfig([](Packer& pk) {
      pk.pack_map(1);
      pk.pack(std::string("x"));
      pk.pack_nil();
    });
    CHECK(Contains(DecodeError(nil), "field 'config.x' must be a bool, an integer, a float or a string, got nil"));
  }
  SUBCASE("a hostile key is printed safely") {
    const Frames f = FitWithConfig([](Packer& pk) {
      pk.pack_map(1);
      pk.pack(std::string("a\nb\x01"));
      pk.pack(1);
    });
    const std::string msg = DecodeError(f);
    CHECK(Contains(msg, "field 'config.a?b?'"));
    CHECK_FALSE(Contains(msg, "\n"));
  }
}

TEST_CASE("protocol v3: tensor groups are named and contiguous and bounded") {
  SUBCASE("valid groups decode, a name may repeat across groups") {
    const Frames f = FitWithManifest({{"w", "params"}, {"b", "params"}, {"w", "control"}});
    StatusOr<Message> d = Decode(f);
    REQUIRE_MESSAGE(d.ok(), d.status().ToString());
    const auto& fit = std::get<FitMsg>(*d);
    CHECK(fit.parameters.size() == 2);
    REQUIRE(fit.groups.count("control") == 1);
    CHECK(fit.groups.at("control").size() == 1);
    CHECK(fit.groups.at("control")[0].name == "w");
  }
  SUBCASE("group name outside the charset") {
    CHECK(Contains(DecodeError(FitWithManifest({{"w", "params"}, {"w", "bad group"}})),
                   "field 'tensors[1].group' has byte 0x20 at offset 3"));
    CHECK(Contains(DecodeError(FitWithManifest({{"w", ""}})), "field 'tensors[0].group' must be 1..64 bytes, got 0"));
    CHECK(Contains(DecodeError(FitWithManifest({{"w", std::string(65, 'g')}})),
                   "field 'tensors[0].group' is 65 bytes, over the limit of 64"));
  }
  SUBCASE("group not a string") {
    FitMsg fit;
    PutTrainConfig(TrainConfig{}, &fit.config);
    fit.parameters = {MakeFloatBlob("w", {1}, {1})};
    const Frames f = EditHeader(Encode(fit), [](HeaderMap& m, msgpack::zone& z) {
      m["tensors"] = Packed(z, [](Packer& pk) {
        pk.pack_array(1);
        pk.pack_array(4);
        pk.pack(std::string("w"));
        pk.pack(std::string("f32"));
        pk.pack(std::vector<int64_t>{1});
        pk.pack(3);
      });
    });
    CHECK(Contains(DecodeError(f), "field 'tensors[0].group' must be a string, got unsigned integer"));
  }
  SUBCASE("a group that appears twice (not contiguous)") {
    CHECK(Contains(DecodeError(FitWithManifest({{"w", "params"}, {"c", "control"}, {"b", "params"}})),
                   "tensor group 'params' appears twice in the manifest (at tensors[2])"));
  }
  SUBCASE("duplicate tensor name within a group") {
    CHECK(Contains(DecodeError(FitWithManifest({{"w", "params"}, {"c", "control"}, {"c", "control"}})),
                   "tensor name 'c' appears twice in group 'control'"));
  }
  SUBCASE("too many groups") {
    std::vector<std::tuple<std::string, std::string>> entries;
    for (size_t g = 0; g <= kMaxTensorGroups; ++g) entries.emplace_back("w", "g" + std::to_string(g));
    CHECK(Contains(DecodeError(FitWithManifest(entries)), "the manifest names more than 16 tensor groups"));
    entries.pop_back();
    CHECK(Decode(FitWithManifest(entries)).ok());
  }
  SUBCASE("manifest and frames disagree") {
    Frames f = FitWithManifest({{"w", "params"}, {"c", "control"}});
    f.pop_back();
    CHECK(Contains(DecodeError(f, Code::kDataLoss), "manifest lists 2 tensors but the message has 1 tensor frames"));
    Frames g = FitWithManifest({{"w", "params"}, {"c", "control"}});
    g.back().push_back(0);
    CHECK(Contains(DecodeError(g, Code::kDataLoss), "tensor 'c' f32[1] needs 4 bytes but its frame has 5"));
  }
  SUBCASE("non-finite value in a group") {
    FitResMsg m = SampleFitRes();
    m.groups["control"] = {MakeFloatBlob("c", {2}, {1, std::numeric_limits<float>::quiet_NaN()})};
    CHECK(Contains(DecodeError(Encode(m)), "tensor 'c' has a non-finite value"));
  }
  SUBCASE("Evaluate carries only group params") {
    EvaluateMsg e;
    e.parameters = {MakeFloatBlob("w", {1}, {1})};
    const Frames f = EditHeader(Encode(e), [](HeaderMap& m, msgpack::zone& z) {
      m["tensors"] = Packed(z, [](Packer& pk) {
        pk.pack_array(1);
        pk.pack_array(4);
        pk.pack(std::string("w"));
        pk.pack(std::string("f32"));
        pk.pack(std::vector<int64_t>{1});
        pk.pack(std::string("control"));
      });
    });
    CHECK(Contains(DecodeError(f), "field 'tensors[0].group' is 'control', but this message carries only group 'params'"));
  }
  SUBCASE("an empty group does not travel") {
    FitResMsg m;
    m.groups["control"] = {};
    FitResMsg got = RoundTrip(m, 1);
    CHECK(got.groups.empty());
  }
}

TEST_CASE("Decode survives random, truncated and corrupted input (deterministic fuzz)") {
  std::mt19937_64 rng(0x9e3779b97f4a7c15ull);
  FitResMsg sample = SampleFitRes();
  const Frames valid = Encode(sample);
  auto uniform = [&rng](size_t lo, size_t hi) { return std::uniform_int_distribution<size_t>(lo, hi)(rng); };
  auto random_bytes = [&](size_t n) {
    std::vector<uint8_t> b(n);
    for (auto& x : b) x = static_cast<uint8_t>(uniform(0, 255));
    return b;
  };

  SUBCASE("random byte strings") {
    int rejected = 0;
    for (int i = 0; i < 2000; ++i) {
      Frames f;
      const size_t nframes = uniform(1, 4);
      for (size_t k = 0; k < nframes; ++k) f.push_back(random_bytes(uniform(0, 96)));
      StatusOr<Message> d = Decode(f);
      if (!d.ok()) {
        ++rejected;
        CHECK_FALSE(d.status().message().empty());
      }
    }
    // A random string that is a complete, valid FitRes header is not a realistic event.
    CHECK(rejected == 2000);
  }
  SUBCASE("random truncations") {
    int rejected = 0;
    for (int i = 0; i < 2000; ++i) {
      Frames f = valid;
      if (uniform(0, 3) == 0) {
        f.resize(uniform(0, f.size() - 1));  // drop trailing frames
      } else {
        size_t k = uniform(0, f.size() - 1);
        while (f[k].empty()) k = uniform(0, f.size() - 1);
        f[k].resize(uniform(0, f[k].size() - 1));  // cut one frame short
      }
      StatusOr<Message> d = Decode(f);
      if (!d.ok()) ++rejected;
    }
    CHECK(rejected == 2000);
  }
  SUBCASE("random single-byte flips") {
    int header_ok = 0;
    int header_rejected = 0;
    int tensor_ok = 0;
    int tensor_nonfinite = 0;
    for (int i = 0; i < 2000; ++i) {
      Frames f = valid;
      size_t k = uniform(0, 1) == 0 ? 0 : uniform(1, f.size() - 1);
      while (f[k].empty()) k = uniform(1, f.size() - 1);
      const size_t pos = uniform(0, f[k].size() - 1);
      f[k][pos] = static_cast<uint8_t>(f[k][pos] ^ uniform(1, 255));
      StatusOr<Message> d = Decode(f);
      if (k == 0) {
        if (d.ok()) {
          ++header_ok;
          // Whatever decoded must encode and decode again.
          CHECK(Decode(Encode(*d)).ok());
        } else {
          ++header_rejected;
          CHECK_FALSE(d.status().message().empty());
        }
      } else if (d.ok()) {
        // Tensor bytes travel verbatim: the flipped byte comes out as flipped.
        ++tensor_ok;
        REQUIRE(std::holds_alternative<FitResMsg>(*d));
        CHECK(std::get<FitResMsg>(*d).parameters[k - 1].data == f[k]);
      } else {
        ++tensor_nonfinite;
        CHECK(Contains(d.status().message(), "non-finite"));
      }
    }
    INFO("header flips: " << header_ok << " decoded, " << header_rejected << " rejected; tensor flips: "
                          << tensor_ok << " decoded, " << tensor_nonfinite << " non-finite");
    CHECK(header_ok + header_rejected + tensor_ok + tensor_nonfinite == 2000);
    CHECK(header_rejected > 0);
    CHECK(tensor_ok > 0);
  }
}

// Issue 8: identifiers, texts and record counts from the network are bounded at
// decode, each with a Status naming the field.
TEST_CASE("Decode bounds identifiers, texts and energy-record counts from hostile peers") {
  JoinMsg j;
  j.client_id = "host-1";
  j.country = "FRA";
  j.capabilities = {"delta", "meter:model"};
  REQUIRE(Decode(Encode(j)).ok());

  SUBCASE("a newline in client_id would forge a log line") {
    JoinMsg bad = j;
    bad.client_id = "host-1\ncoordinator | round 99 | acc 1.0000";
    CHECK(Contains(DecodeError(Encode(bad)), "field 'client_id' has byte 0x0a at offset 6"));
  }
  SUBCASE("a 60 MiB client_id is refused before it is copied") {
    JoinMsg bad = j;
    bad.client_id.assign(60u << 20, 'a');
    CHECK(Contains(DecodeError(Encode(bad), Code::kInvalidArgument, 128u << 20),
                   "field 'client_id' is 62914560 bytes, over the limit of 64"));
  }
  SUBCASE("empty client_id") {
    JoinMsg bad = j;
    bad.client_id.clear();
    CHECK(Contains(DecodeError(Encode(bad)), "field 'client_id' must be 1..64 bytes, got 0"));
  }
  SUBCASE("country outside A-Z0-9 or too long") {
    JoinMsg bad = j;
    bad.country = "fr\x1b[31m";
    CHECK(Contains(DecodeError(Encode(bad)), "field 'country'"));
    bad.country = std::string(100, 'A');
    CHECK(Contains(DecodeError(Encode(bad)), "field 'country' is 100 bytes, over the limit of 8"));
  }
  SUBCASE("too many or malformed capabilities") {
    JoinMsg bad = j;
    bad.capabilities.assign(kMaxCapabilities + 1, "x");
    CHECK(Contains(DecodeError(Encode(bad)), "lists 33 capabilities, over the limit of 32"));
    bad.capabilities = {"ok", "bad cap"};
    CHECK(Contains(DecodeError(Encode(bad)), "field 'caps[1]' has byte 0x20"));
  }
  SUBCASE("non-finite PUE") {
    JoinMsg bad = j;
    bad.pue = std::numeric_limits<double>::infinity();
    CHECK(Contains(DecodeError(Encode(bad)), "field 'pue' is not finite"));
  }
  SUBCASE("200,000 energy records in one heartbeat") {
    HeartbeatMsg hb;
    hb.round = 1;
    hb.energy.resize(kMaxEnergyRecords + 1);
    CHECK(Contains(DecodeError(Encode(hb)), "holds 257 records, over the limit of 256 per message"));
    hb.energy.resize(kMaxEnergyRecords);
    CHECK(Decode(Encode(hb)).ok());
  }
  SUBCASE("Error: unknown code, oversized message") {
    ErrorMsg e;
    e.code = static_cast<ErrorCode>(999);
    CHECK(Contains(DecodeError(Encode(e)), "unknown error code 999"));
    e.code = ErrorCode::kBusy;
    e.message.assign(kMaxTextBytes + 1, 'x');
    CHECK(Contains(DecodeError(Encode(e)), "field 'message' is 1025 bytes, over the limit of 1024"));
  }
  SUBCASE("every error code has a name") {
    for (uint16_t c = 1; c <= kMaxErrorCode; ++c) {
      CHECK(std::string(ErrorCodeName(static_cast<ErrorCode>(c))) != "UNKNOWN");
    }
  }
}


namespace {

// A FitRes whose group "params" is `update` encoded by `codec_name`, with a
// "control" group behind it (its frames follow the encoded frame).
FitResMsg EncodedFitRes(const std::string& codec_name, const Parameters& update) {
  auto codec = MakeCodec(codec_name);
  REQUIRE(codec.ok());
  auto bytes = (*codec)->Encode(update, nullptr);
  REQUIRE(bytes.ok());
  FitResMsg m = SampleFitRes();
  m.parameters.clear();
  m.is_delta = true;
  m.encoded.codec = codec_name;
  m.encoded.specs = SpecsOf(update);
  m.encoded.bytes = *bytes;
  m.groups["control"] = {MakeFloatBlob("c", {2}, {0.5f, -0.5f})};
  return m;
}

Parameters CodecUpdate() {
  return {MakeFloatBlob("conv.weight", {2, 3}, {0.1f, -0.2f, 0.3f, 0.05f, -0.4f, 0.25f}),
          MakeFloatBlob("conv.bias", {2}, {0.01f, -0.02f})};
}

}  // namespace

TEST_CASE("protocol v4: Fit and FitRes carry group params encoded by a codec, one frame, decoded strictly") {
  const Parameters update = CodecUpdate();
  SUBCASE("FitRes round trips with the codec's name, the specs and the bytes, other groups after it") {
    for (const char* name : {"fp16", "int8", "int8:channel", "topk:0.25"}) {
      CAPTURE(name);
      const FitResMsg m = EncodedFitRes(name, update);
      const FitResMsg got = RoundTrip(m, 3);  // header, encoded params, control
      CHECK(got.encoded.codec == name);
      CHECK(got.encoded.specs == m.encoded.specs);
      CHECK(got.encoded.bytes == m.encoded.bytes);
      CHECK(got.parameters.empty());
      REQUIRE(got.groups.count("control") == 1);
      CheckParamsEqual(got.groups.at("control"), m.groups.at("control"));
      CHECK(got.is_delta);
    }
  }
  SUBCASE("codec none is the plain group, as in v3; the header names it") {
    const FitResMsg got = RoundTrip(SampleFitRes(), 6);
    CHECK(got.encoded.codec == "none");
    CHECK(got.encoded.specs.empty());
    CheckParamsEqual(got.parameters, SampleParams());
    const Frames f = Encode(SampleFitRes());
    msgpack::object_handle h = msgpack::unpack(reinterpret_cast<const char*>(f[0].data()), f[0].size());
    CHECK(h.get().as<HeaderMap>().at("codec").as<std::string>() == "none");
  }
  SUBCASE("Fit carries the global model encoded by the downlink codec") {
    FitMsg fit;
    PutTrainConfig(TrainConfig{}, &fit.config);
    fit.config[kConfigDownlinkCodec] = std::string("fp16");
    auto codec = MakeCodec("fp16");
    REQUIRE(codec.ok());
    fit.encoded.codec = "fp16";
    fit.encoded.specs = SpecsOf(update);
    fit.encoded.bytes = *(*codec)->Encode(update, nullptr);
    const FitMsg got = RoundTrip(fit, 2);
    CHECK(got.encoded.codec == "fp16");
    CHECK(got.encoded.bytes == fit.encoded.bytes);
    CHECK(got.encoded.specs == fit.encoded.specs);
  }
  SUBCASE("rejections name the reason") {
    const Frames ok = Encode(EncodedFitRes("int8", update));
    REQUIRE(Decode(ok).ok());
    // Unknown codec (a codec MakeCodec does not know).
    const Frames unknown = EditHeader(ok, [](HeaderMap& m, msgpack::zone& z) {
      m["codec"] = msgpack::object(std::string("zstd"), z);
    });
    CHECK(Contains(DecodeError(unknown), "unknown codec 'zstd'"));
    const Frames bad_fraction = EditHeader(ok, [](HeaderMap& m, msgpack::zone& z) {
      m["codec"] = msgpack::object(std::string("topk:2"), z);
    });
    CHECK(Contains(DecodeError(bad_fraction), "topk fraction must be in (0, 1]"));
    // Missing codec field (a v3-shaped header under v4).
    const Frames missing = EditHeader(ok, [](HeaderMap& m, msgpack::zone&) { m.erase("codec"); });
    CHECK(Contains(DecodeError(missing), "missing required field 'codec'"));
    // A codec name outside the identifier charset.
    const Frames charset = EditHeader(ok, [](HeaderMap& m, msgpack::zone& z) {
      m["codec"] = msgpack::object(std::string("int8 "), z);
    });
    CHECK(Contains(DecodeError(charset), "field 'codec' has byte 0x20"));
    // Wrong size: one byte short, one byte long.
    Frames short_frame = ok;
    short_frame[1].pop_back();
    CHECK(Contains(DecodeError(short_frame, Code::kDataLoss), "wrong size"));
    Frames long_frame = ok;
    long_frame[1].push_back(0);
    CHECK(Contains(DecodeError(long_frame, Code::kDataLoss), "wrong size"));
    // The same bytes under another codec's name: sizes disagree.
    const Frames other = EditHeader(ok, [](HeaderMap& m, msgpack::zone& z) {
      m["codec"] = msgpack::object(std::string("fp16"), z);
    });
    CHECK(Contains(DecodeError(other, Code::kDataLoss), "wrong size"));
    // The encoded frame missing altogether, and a frame too many.
    Frames none_left = ok;
    none_left.resize(1);
    CHECK(Contains(DecodeError(none_left, Code::kDataLoss), "the encoded 'params' frame is missing"));
    Frames extra = ok;
    extra.push_back({0, 0, 0, 0});
    CHECK(Contains(DecodeError(extra, Code::kDataLoss), "beyond what the manifest lists"));
    Frames too_few = ok;
    too_few.pop_back();  // the control group's frame
    CHECK(Contains(DecodeError(too_few, Code::kDataLoss), "more plain tensors than the message has frames"));
    // A non-f32 tensor in an encoded group.
    FitResMsg f64 = EncodedFitRes("int8", update);
    f64.encoded.specs[1].dtype = DType::kFloat64;
    CHECK(Contains(DecodeError(Encode(f64)), "an encoded 'params' group carries float32 tensors only"));
    // The content (indices, scales, values) is the receiver's to check with the
    // codec it expects (RoundMachine, DecodeFitParameters); see test_codec_wiring.cc.
  }
}

}  // namespace
}  // namespace greenfed
