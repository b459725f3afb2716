// The update codecs wired end to end, without sockets: the client's EncodeUpdate
// and DecodeFitParameters (client/update_encoding.h), FedAvg's DecodeAdd fold,
// the buffered strategies' decode-then-add, and RoundMachine's codec rules
// (capabilities at Join, the Fit config, the codec a result must use, the
// downlink's base). docs/codecs.md.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "greenfed/client/client_machine.h"
#include "greenfed/client/update_encoding.h"
#include "greenfed/codec.h"
#include "greenfed/coordinator/fedavg.h"
#include "greenfed/coordinator/round_machine.h"
#include "greenfed/coordinator/strategy.h"

using namespace greenfed;

namespace {

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::unique_ptr<UpdateCodec> Codec(const std::string& name) {
  auto c = MakeCodec(name);
  REQUIRE_MESSAGE(c.ok(), c.status().ToString());
  return std::move(c).value();
}

Parameters Update(float scale) {
  return {MakeFloatBlob("w", {2, 4}, {0.1f * scale, -0.7f * scale, 0.3f * scale, 0.05f * scale, -0.4f * scale,
                                      0.25f * scale, 0.9f * scale, -0.01f * scale}),
          MakeFloatBlob("b", {2}, {0.02f * scale, -0.6f * scale})};
}

std::vector<float> Flat(const Parameters& p) {
  std::vector<float> out;
  for (const auto& b : p) {
    const auto v = FloatValues(b);
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

EncodedParams Encoded(const std::string& name, const Parameters& update) {
  EncodedParams e;
  e.codec = name;
  e.specs = SpecsOf(update);
  auto bytes = Codec(name)->Encode(update, nullptr);
  REQUIRE(bytes.ok());
  e.bytes = *bytes;
  return e;
}

void PutF32(std::vector<uint8_t>* bytes, size_t at, float v) { std::memcpy(bytes->data() + at, &v, 4); }

}  // namespace

TEST_CASE("codec wiring: EncodeUpdate keeps the error-feedback residual in ClientState group codec_residual") {
  const auto topk = Codec("topk:0.25");
  ClientState state;
  std::vector<double> sent(10, 0.0), input(10, 0.0);
  for (int round = 1; round <= 4; ++round) {
    const Parameters u = Update(static_cast<float>(round));
    auto enc = EncodeUpdate(*topk, u, &state);
    REQUIRE_MESSAGE(enc.ok(), enc.status().ToString());
    CHECK(enc->encoded.codec == "topk:0.25");
    CHECK(enc->encoded.specs == SpecsOf(u));
    CHECK(enc->encoded.bytes.size() == topk->EncodedBytes(SpecsOf(u)));
    CHECK(enc->dense_bytes == 40);
    REQUIRE(state.count(kGroupCodecResidual) == 1);
    auto decoded = topk->Decode(enc->encoded.bytes, enc->encoded.specs);
    REQUIRE(decoded.ok());
    const auto d = Flat(*decoded);
    const auto x = Flat(u);
    for (size_t i = 0; i < 10; ++i) {
      sent[i] += d[i];
      input[i] += x[i];
    }
  }
  // Sum of what travelled + what is still owed == sum of the inputs.
  const auto r = Flat(state.at(kGroupCodecResidual));
  for (size_t i = 0; i < 10; ++i) CHECK(sent[i] + r[i] == doctest::Approx(input[i]).epsilon(1e-5));

  SUBCASE("a residual of another model is dropped, feedback restarts from zero") {
    ClientState other;
    other[kGroupCodecResidual] = {MakeFloatBlob("x", {3}, {9, 9, 9})};
    auto enc = EncodeUpdate(*topk, Update(1), &other);
    REQUIRE(enc.ok());
    CHECK(SpecsOf(other.at(kGroupCodecResidual)) == SpecsOf(Update(1)));
    auto fresh = topk->Encode(Update(1), nullptr);
    CHECK(enc->encoded.bytes == *fresh);
  }
  SUBCASE("without state: no feedback; a lossless codec is refused; encode errors pass through") {
    auto enc = EncodeUpdate(*topk, Update(1), nullptr);
    REQUIRE(enc.ok());
    CHECK(enc->encoded.bytes == *topk->Encode(Update(1), nullptr));
    auto none = EncodeUpdate(*Codec("none"), Update(1), &state);
    REQUIRE_FALSE(none.ok());
    CHECK(none.status().code() == Code::kFailedPrecondition);
    Parameters bad = Update(1);
    PutF32(&bad[1].data, 0, std::nanf(""));
    auto nan = EncodeUpdate(*Codec("int8"), bad, nullptr);
    REQUIRE_FALSE(nan.ok());
    CHECK(Contains(nan.status().message(), "value is not finite"));
  }
}

TEST_CASE("codec wiring: DecodeFitParameters, CodecFromConfig and the Join capabilities") {
  const Parameters global = Update(1);
  ConfigMap config;
  SUBCASE("plain model, no codec keys: passed through") {
    auto got = DecodeFitParameters(global, EncodedParams{}, config);
    REQUIRE(got.ok());
    CHECK(Flat(*got) == Flat(global));
    auto codec = CodecFromConfig(config, kConfigUplinkCodec);
    REQUIRE(codec.ok());
    CHECK((*codec)->Name() == "none");
  }
  SUBCASE("fp16 downlink: decoded within half an fp16 ulp") {
    config[kConfigDownlinkCodec] = std::string("fp16");
    auto got = DecodeFitParameters({}, Encoded("fp16", global), config);
    REQUIRE_MESSAGE(got.ok(), got.status().ToString());
    const auto a = Flat(*got), b = Flat(global);
    for (size_t i = 0; i < a.size(); ++i) CHECK(std::fabs(a[i] - b[i]) <= std::fabs(b[i]) * (1.0f / 2048) + 1e-7f);
  }
  SUBCASE("a codec the run did not ask for, a sparse downlink, a corrupt scale: named errors") {
    config[kConfigDownlinkCodec] = std::string("int8");
    auto wrong = DecodeFitParameters({}, Encoded("fp16", global), config);
    REQUIRE_FALSE(wrong.ok());
    CHECK(Contains(wrong.status().message(), "wrong codec"));
    auto plain = DecodeFitParameters(global, EncodedParams{}, config);
    REQUIRE_FALSE(plain.ok());
    CHECK(Contains(plain.status().message(), "wrong codec"));
    config[kConfigDownlinkCodec] = std::string("topk:0.5");
    auto sparse = DecodeFitParameters({}, Encoded("topk:0.5", global), config);
    REQUIRE_FALSE(sparse.ok());
    CHECK(Contains(sparse.status().message(), "not a downlink codec"));
    config[kConfigDownlinkCodec] = std::string("int8");
    EncodedParams bad = Encoded("int8", global);
    PutF32(&bad.bytes, 2, std::nanf(""));  // tensor w's scale
    auto scale = DecodeFitParameters({}, bad, config);
    REQUIRE_FALSE(scale.ok());
    CHECK(Contains(scale.status().message(), "scale is not finite"));
  }
  SUBCASE("unknown codec in the config names the key") {
    config[kConfigUplinkCodec] = std::string("zip");
    auto codec = CodecFromConfig(config, kConfigUplinkCodec);
    REQUIRE_FALSE(codec.ok());
    CHECK(Contains(codec.status().message(), "uplink_codec"));
    CHECK(Contains(codec.status().message(), "unknown codec 'zip'"));
  }
  CHECK(CodecCapabilities() == std::vector<std::string>{"codec:fp16", "codec:int8", "codec:topk"});
}

TEST_CASE("codec wiring: FedAvg folds encoded deltas with DecodeAdd, equal to adding the decoded update") {
  const Parameters global = {MakeFloatBlob("w", {2, 4}, std::vector<float>(8, 1.0f)),
                             MakeFloatBlob("b", {2}, {0.0f, 0.0f})};
  for (const char* name : {"fp16", "int8", "int8:channel", "topk:0.3"}) {
    CAPTURE(name);
    const auto codec = Codec(name);
    FedAvgAccumulator encoded, decoded;
    REQUIRE(encoded.Reset(global).ok());
    REQUIRE(decoded.Reset(global).ok());
    for (int k = 1; k <= 3; ++k) {
      const EncodedParams e = Encoded(name, Update(static_cast<float>(k)));
      REQUIRE(encoded.AddEncoded(*codec, e, true, 10 * k).ok());
      auto d = codec->Decode(e.bytes, e.specs);
      REQUIRE(d.ok());
      REQUIRE(decoded.Add(*d, true, 10 * k).ok());
    }
    auto a = encoded.Result();
    auto b = decoded.Result();
    REQUIRE(a.ok());
    REQUIRE(b.ok());
    CHECK(Flat(*a) == Flat(*b));
    CHECK(encoded.total_examples() == 60);
  }
  SUBCASE("refusals leave the sum unchanged and name the reason") {
    const auto topk = Codec("topk:0.3");
    FedAvgAccumulator acc;
    REQUIRE(acc.Reset(global).ok());
    EncodedParams e = Encoded("topk:0.3", Update(1));
    // k = 3 of 10: u32 k, 3 indices, 3 values after the 2-byte header.
    EncodedParams out_of_range = e;
    const uint32_t big = 10;
    std::memcpy(out_of_range.bytes.data() + 2 + 4 + 8, &big, 4);
    Status s = acc.AddEncoded(*topk, out_of_range, true, 5);
    CHECK(Contains(s.message(), "index out of range"));
    EncodedParams huge = e;
    PutF32(&huge.bytes, 2 + 4 + 12, 1e10f);
    s = acc.AddEncoded(*topk, huge, true, 5);
    CHECK(Contains(s.message(), "value out of range"));
    s = acc.AddEncoded(*topk, e, false, 5);
    CHECK(Contains(s.message(), "must be a delta"));
    EncodedParams other = Encoded("topk:0.3", {MakeFloatBlob("w", {10}, std::vector<float>(10, 1.0f))});
    s = acc.AddEncoded(*topk, other, true, 5);
    CHECK(Contains(s.message(), "do not match the global model"));
    const auto int8 = Codec("int8");
    EncodedParams big_scale = Encoded("int8", Update(1));
    PutF32(&big_scale.bytes, 2, 1e30f);  // finite, and far past kMaxAbsUpdateValue
    s = acc.AddEncoded(*int8, big_scale, true, 5);
    CHECK(Contains(s.message(), "value out of range"));
    CHECK(acc.num_updates() == 0);
    // Nothing of the refusals reached the sum: one honest update gives global + it.
    REQUIRE(acc.AddEncoded(*topk, e, true, 5).ok());
    auto r = acc.Result();
    REQUIRE(r.ok());
    auto d = topk->Decode(e.bytes, e.specs);
    const auto got = Flat(*r), delta = Flat(*d), g = Flat(global);
    for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == g[i] + delta[i]);
  }
}

TEST_CASE("codec wiring: the buffered strategies and scaffold decode to Parameters, then Add") {
  const Parameters global = {MakeFloatBlob("w", {2, 4}, std::vector<float>(8, 0.0f)),
                             MakeFloatBlob("b", {2}, {0.0f, 0.0f})};
  StrategyOptions so;
  so.name = "fedmedian";
  auto strategy = MakeStrategy(so);
  REQUIRE(strategy.ok());
  auto agg = (*strategy)->BeginRound(global);
  REQUIRE(agg.ok());
  const auto int8 = Codec("int8");
  for (int k = 1; k <= 3; ++k) {
    REQUIRE((*agg)->AddEncoded(*int8, Encoded("int8", Update(static_cast<float>(k))), {}, true, 10).ok());
  }
  auto median = (*agg)->Result();
  REQUIRE(median.ok());
  auto two = int8->Decode(Encoded("int8", Update(2)).bytes, SpecsOf(global));
  CHECK(Flat(*median) == Flat(*two));  // the median of k = 1, 2, 3 is k = 2's decoded update
  EncodedParams bad = Encoded("int8", Update(1));
  PutF32(&bad.bytes, 2, -1.0f);
  Status s = (*agg)->AddEncoded(*int8, bad, {}, true, 10);
  CHECK(Contains(s.message(), "scale is negative"));
}

namespace {

RoundOptions CodecOpts(const std::string& uplink, const std::string& downlink) {
  RoundOptions o;
  o.num_clients = 2;
  o.min_available_clients = 2;
  o.min_fit_clients = 2;
  o.max_rounds = 3;
  o.round_timeout_s = 10;
  o.uplink_codec = uplink;
  o.downlink_codec = downlink;
  return o;
}

JoinEvent CodecJoin(const std::string& peer, std::vector<std::string> caps) {
  JoinMsg j;
  j.client_id = "id-" + peer;
  j.country = "FRA";
  j.capabilities = std::move(caps);
  return JoinEvent{peer, j, ""};
}

template <typename T>
std::vector<T> All(const std::vector<Action>& actions) {
  std::vector<T> out;
  for (const auto& a : actions) {
    if (auto* t = std::get_if<T>(&a)) out.push_back(*t);
  }
  return out;
}

std::vector<FitMsg> Fits(const std::vector<Action>& actions) {
  std::vector<FitMsg> out;
  for (const auto& s : All<SendAction>(actions)) {
    if (auto* f = std::get_if<FitMsg>(&s.message)) out.push_back(*f);
  }
  return out;
}

std::vector<ErrorMsg> Errors(const std::vector<Action>& actions) {
  std::vector<ErrorMsg> out;
  for (const auto& s : All<SendAction>(actions)) {
    if (auto* e = std::get_if<ErrorMsg>(&s.message)) out.push_back(*e);
  }
  return out;
}

FitResEvent EncodedResult(const std::string& peer, const std::string& codec, const Parameters& delta) {
  FitResMsg r;
  r.round = 1;
  r.num_examples = 10;
  r.train_loss = 0.5;
  r.is_delta = true;
  if (codec == "none") {
    r.parameters = delta;
  } else {
    r.encoded = Encoded(codec, delta);
  }
  return FitResEvent{peer, r};
}

}  // namespace

TEST_CASE("codec wiring: RoundMachine asks Join for the codec, tells every Fit, and takes only that codec") {
  const Parameters global = Update(0);
  RoundMachine m(CodecOpts("int8", "none"));
  (void)m.Start(0, global);
  // A client without codec:int8 is refused with INCOMPATIBLE naming the codec.
  auto refused = m.Handle(CodecJoin("X", {"delta", "codec:fp16"}), 0);
  REQUIRE(Errors(refused).size() == 1);
  CHECK(Errors(refused)[0].code == ErrorCode::kIncompatible);
  CHECK(Contains(Errors(refused)[0].message, "uplink codec is int8"));
  CHECK(Contains(Errors(refused)[0].message, "'codec:int8'"));
  (void)m.Handle(CodecJoin("A", CodecCapabilities()), 0);
  auto started = m.Handle(CodecJoin("B", CodecCapabilities()), 0);
  const auto fits = Fits(started);
  REQUIRE(fits.size() == 2);
  for (const FitMsg& f : fits) {
    CHECK(std::get<std::string>(f.config.at(kConfigUplinkCodec)) == "int8");
    CHECK(std::get<std::string>(f.config.at(kConfigDownlinkCodec)) == "none");
    CHECK(std::get<bool>(f.config.at("send_delta")) == true);  // a lossy codec carries deltas
  }
  CHECK(m.downlink() == nullptr);
  // A plain result on an int8 run: a codec the run did not ask for.
  auto plain = m.Handle(EncodedResult("A", "none", Update(1)), 1);
  REQUIRE(Errors(plain).size() == 1);
  CHECK(Errors(plain)[0].code == ErrorCode::kBadUpdate);
  CHECK(Contains(Errors(plain)[0].message, "wrong codec"));
  CHECK(Contains(Errors(plain)[0].message, "'none'"));
}

TEST_CASE("codec wiring: RoundMachine aggregates int8 and topk results into global + the decoded mean") {
  for (const char* codec_name : {"int8", "topk:0.2", "fp16"}) {
    CAPTURE(codec_name);
    const Parameters global = Update(0);
    RoundMachine m(CodecOpts(codec_name, "none"));
    (void)m.Start(0, global);
    (void)m.Handle(CodecJoin("A", CodecCapabilities()), 0);
    (void)m.Handle(CodecJoin("B", CodecCapabilities()), 0);
    auto a = m.Handle(EncodedResult("A", codec_name, Update(1)), 1);
    CHECK(Errors(a).empty());
    auto b = m.Handle(EncodedResult("B", codec_name, Update(3)), 1);
    CHECK(Errors(b).empty());
    REQUIRE(All<EvaluateGlobalAction>(b).size() == 1);
    const auto codec = Codec(codec_name);
    const auto d1 = Flat(*codec->Decode(Encoded(codec_name, Update(1)).bytes, SpecsOf(global)));
    const auto d3 = Flat(*codec->Decode(Encoded(codec_name, Update(3)).bytes, SpecsOf(global)));
    const auto got = Flat(m.global());
    for (size_t i = 0; i < got.size(); ++i) {
      CHECK(got[i] == static_cast<float>((10.0 * d1[i] + 10.0 * d3[i]) / 20.0));
    }
  }
  SUBCASE("a result whose tensors are not the model's is refused (BAD_UPDATE) before decoding") {
    RoundMachine m(CodecOpts("int8", "none"));
    (void)m.Start(0, Update(0));
    (void)m.Handle(CodecJoin("A", CodecCapabilities()), 0);
    (void)m.Handle(CodecJoin("B", CodecCapabilities()), 0);
    auto bad = m.Handle(EncodedResult("A", "int8", {MakeFloatBlob("w", {10}, std::vector<float>(10, 0.1f))}), 1);
    REQUIRE(Errors(bad).size() == 1);
    CHECK(Contains(Errors(bad)[0].message, "do not match the global model"));
  }
}

TEST_CASE("codec wiring: with a lossy downlink, clients' deltas are added to the coordinator's full-precision model") {
  // 0.1 is not an fp16 value: fp16(0.1) = 0.0999755859375.
  const Parameters global = {MakeFloatBlob("w", {4}, {0.1f, 0.1f, 0.1f, 0.1f})};
  RoundMachine m(CodecOpts("none", "fp16"));
  (void)m.Start(0, global);
  (void)m.Handle(CodecJoin("A", CodecCapabilities()), 0);
  auto started = m.Handle(CodecJoin("B", CodecCapabilities()), 0);
  const auto fits = Fits(started);
  REQUIRE(fits.size() == 2);
  CHECK(std::get<std::string>(fits[0].config.at(kConfigDownlinkCodec)) == "fp16");
  CHECK(std::get<bool>(fits[0].config.at("send_delta")) == true);
  const EncodedParams* down = m.downlink();
  REQUIRE(down != nullptr);
  CHECK(down->codec == "fp16");
  // What a client trains from: the decoding of what it was sent.
  ConfigMap config = fits[0].config;
  auto base = DecodeFitParameters({}, *down, config);
  REQUIRE(base.ok());
  CHECK(FloatValues((*base)[0])[0] == 0.0999755859375f);
  // Both clients move every weight by +0.5 from the model they were sent.
  const Parameters delta = {MakeFloatBlob("w", {4}, {0.5f, 0.5f, 0.5f, 0.5f})};
  (void)m.Handle(EncodedResult("A", "none", delta), 1);
  auto done = m.Handle(EncodedResult("B", "none", delta), 1);
  REQUIRE(All<EvaluateGlobalAction>(done).size() == 1);
  // The coordinator's model moves from its own 0.1, not from fp16(0.1).
  CHECK(FloatValues(m.global()[0])[0] == static_cast<float>(0.1f + 0.5));
  // A client that announces no fp16 is refused, naming the downlink codec.
  RoundMachine m2(CodecOpts("none", "fp16"));
  (void)m2.Start(0, global);
  auto refused = m2.Handle(CodecJoin("X", {"codec:int8"}), 0);
  REQUIRE(Errors(refused).size() == 1);
  CHECK(Contains(Errors(refused)[0].message, "downlink codec is fp16"));
}

TEST_CASE("codec wiring: ValidateRoundOptions names the codec flag") {
  RoundOptions o = CodecOpts("zstd", "none");
  Status s = ValidateRoundOptions(o);
  CHECK(Contains(s.message(), "--uplink-codec"));
  CHECK(Contains(s.message(), "unknown codec 'zstd'"));
  o = CodecOpts("int8", "topk:0.1");
  s = ValidateRoundOptions(o);
  CHECK(Contains(s.message(), "--downlink-codec topk:0.1"));
  o = CodecOpts("topk:0.01", "int8:channel");
  CHECK(ValidateRoundOptions(o).ok());
  // An invalid codec given to the machine stops the run at Start, with the reason.
  RoundMachine m(CodecOpts("topk:0", "none"));
  auto out = m.Start(0, Update(0));
  REQUIRE(All<StopAction>(out).size() == 1);
  CHECK(Contains(All<StopAction>(out)[0].reason, "--uplink-codec"));
}

TEST_CASE("codec wiring: ClientMachine and RunFitWork decode the downlink, encode the delta in the metered fit") {
  // A task that adds 1 to every weight of the model it is given.
  struct Adds : Task {
    Status Prepare(const TaskOptions&) override { return Status::Ok(); }
    StatusOr<Parameters> InitialParameters() override { return Parameters{}; }
    StatusOr<FitResult> Fit(const FitRequest& req, ClientState&) override {
      FitResult r;
      for (const auto& b : req.parameters) {
        std::vector<float> v = FloatValues(b);
        for (float& x : v) x += 1;
        r.parameters.push_back(MakeFloatBlob(b.name, b.shape, v));
      }
      r.num_examples = 3;
      return r;
    }
    StatusOr<EvalResult> Evaluate(const Parameters&) override { return EvalResult{}; }
    uint64_t NumTrainExamples() const override { return 3; }
    std::vector<int64_t> TrainLabelHistogram() const override { return {}; }
  } task;
  ClientOptions opts;
  opts.client_id = "c";
  opts.connect = "inproc://test";
  ClientMachine m(opts, {});
  auto start = m.Start(0);
  std::vector<JoinMsg> joins;
  for (const auto& a : start) {
    if (auto* s = std::get_if<ClientSendAction>(&a)) {
      if (auto* j = std::get_if<JoinMsg>(&s->message)) joins.push_back(*j);
    }
  }
  REQUIRE(joins.size() == 1);
  for (const std::string& cap : CodecCapabilities()) {
    CHECK(std::find(joins[0].capabilities.begin(), joins[0].capabilities.end(), cap) != joins[0].capabilities.end());
  }
  WelcomeMsg w;
  w.client_index = 0;
  w.run_id = "r";
  w.task = "t";
  w.model = "m";
  w.partition.num_clients = 2;
  (void)m.Handle(ClientMessageEvent{w, 100}, 0.1);
  WorkDoneEvent prep;
  prep.kind = WorkKind::kPrepare;
  prep.num_train_examples = 3;
  (void)m.Handle(std::move(prep), 0.2);

  const Parameters global = Update(1);
  FitMsg fit;
  fit.round = 1;
  PutTrainConfig(TrainConfig{}, &fit.config);
  fit.config["send_delta"] = true;
  fit.config[kConfigUplinkCodec] = std::string("topk:0.2");
  fit.config[kConfigDownlinkCodec] = std::string("int8");
  fit.encoded = Encoded("int8", global);
  auto started = m.Handle(ClientMessageEvent{fit, 1000}, 1);
  std::vector<StartFitAction> fits;
  for (auto& a : started) {
    if (auto* f = std::get_if<StartFitAction>(&a)) fits.push_back(std::move(*f));
  }
  REQUIRE(fits.size() == 1);
  CHECK(fits[0].downlink.codec == "int8");
  CHECK(fits[0].request.parameters.empty());
  int metered = 0;
  WorkMeterFn meter = [&](Phase, int64_t, const std::function<void()>& fn) {
    fn();
    ++metered;
    return std::vector<EnergyRecord>{};
  };
  StartFitAction bad_action = fits[0];
  WorkDoneEvent r = RunFitWork(task, std::move(fits[0]), meter, [] { return 0.0; });
  REQUIRE_MESSAGE(r.status.ok(), r.status.ToString());
  CHECK(metered == 1);  // decode, fit and encode in one metered fit
  CHECK(r.is_delta);
  CHECK(r.fit.parameters.empty());
  CHECK(r.encoded.codec == "topk:0.2");
  REQUIRE(r.state.count(kGroupCodecResidual) == 1);
  // The delta is +1 everywhere against the decoded model; top-k keeps 2 of 10 ones.
  auto decoded = Codec("topk:0.2")->Decode(r.encoded.bytes, r.encoded.specs);
  REQUIRE(decoded.ok());
  // (x + 1) - x is 1 up to float rounding.
  int kept = 0;
  for (float v : Flat(*decoded)) kept += std::fabs(v - 1.0f) < 1e-6f;
  CHECK(kept == 2);
  int owed = 0;
  for (float v : Flat(r.state.at(kGroupCodecResidual))) owed += std::fabs(v - 1.0f) < 1e-6f;
  CHECK(owed == 8);  // what top-k left out is carried to the next round
  auto sent = m.Handle(std::move(r), 2);
  std::vector<FitResMsg> results;
  for (const auto& a : sent) {
    if (auto* s = std::get_if<ClientSendAction>(&a)) {
      if (auto* res = std::get_if<FitResMsg>(&s->message)) results.push_back(*res);
    }
  }
  REQUIRE(results.size() == 1);
  CHECK(results[0].encoded.codec == "topk:0.2");
  CHECK(results[0].parameters.empty());
  CHECK(m.state().count(kGroupCodecResidual) == 1);  // handed back to the machine

  // A lossy uplink that is asked for weights is refused by name; so is a model in
  // another codec than the config names.
  StartFitAction weights = bad_action;
  weights.request.config["send_delta"] = false;
  WorkDoneEvent refused = RunFitWork(task, std::move(weights), meter, [] { return 0.0; });
  CHECK(Contains(refused.status.message(), "carries deltas"));
  StartFitAction other = bad_action;
  other.downlink = Encoded("fp16", global);
  WorkDoneEvent wrong = RunFitWork(task, std::move(other), meter, [] { return 0.0; });
  CHECK(Contains(wrong.status.message(), "wrong codec"));
}
