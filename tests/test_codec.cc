// Update codecs (codec.h): round-trip bounds, error feedback, and every malformed
// encoding refused with its named reason.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "greenfed/codec.h"
#include "greenfed/tensor.h"

namespace greenfed {
namespace {

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::unique_ptr<UpdateCodec> Codec(const std::string& name) {
  auto c = MakeCodec(name);
  REQUIRE_MESSAGE(c.ok(), c.status().ToString());
  return std::move(c).value();
}

// A small CNN-like update: a conv weight, its bias, a dense weight; seeded normal values.
Parameters SmallUpdate(uint32_t seed, float scale = 0.05f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  auto blob = [&](const std::string& name, std::vector<int64_t> shape) {
    std::vector<float> v(static_cast<size_t>(NumElements(shape)));
    for (float& x : v) x = dist(rng);
    return MakeFloatBlob(name, shape, v);
  };
  return {blob("conv.weight", {4, 2, 3, 3}), blob("conv.bias", {4}), blob("fc.weight", {5, 12})};
}

std::vector<float> Flat(const Parameters& p) {
  std::vector<float> out;
  for (const TensorBlob& b : p) {
    std::vector<float> v = FloatValues(b);
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

// Spacing of fp16 numbers at |x| (normal range; 2^-24 below it).
double HalfUlp(double x) {
  const double a = std::fabs(x);
  if (a < std::ldexp(1.0, -14)) return std::ldexp(1.0, -24);
  return std::ldexp(1.0, static_cast<int>(std::floor(std::log2(a))) - 10);
}

TEST_CASE("codec: MakeCodec knows the names and refuses bad ones by name") {
  for (const char* name : {"none", "fp16", "int8", "int8:channel", "topk:0.01", "topk:1"}) {
    auto c = MakeCodec(name);
    REQUIRE_MESSAGE(c.ok(), c.status().ToString());
    CHECK((*c)->Name() == name);
  }
  CHECK(CodecCapability(*Codec("int8:channel")) == "codec:int8");
  CHECK(CodecCapability(*Codec("topk:0.01")) == "codec:topk");
  for (const char* bad : {"topk:0", "topk:-0.1", "topk:1.5", "topk:nan", "topk:inf"}) {
    auto c = MakeCodec(bad);
    REQUIRE_FALSE(c.ok());
    INFO(c.status().ToString());
    CHECK((Contains(c.status().message(), "must be in (0, 1]") ||
           Contains(c.status().message(), "is not a number")));
  }
  CHECK(Contains(MakeCodec("topk:").status().message(), "is not a number"));
  CHECK(Contains(MakeCodec("topk:0.1x").status().message(), "is not a number"));
  CHECK(Contains(MakeCodec("zstd").status().message(), "unknown codec 'zstd'"));
}

TEST_CASE("codec: none is bit-exact and sized 4 bytes per element") {
  const Parameters u = SmallUpdate(1);
  auto c = Codec("none");
  auto bytes = c->Encode(u, nullptr);
  REQUIRE(bytes.ok());
  CHECK(bytes->size() == c->EncodedBytes(SpecsOf(u)));
  CHECK(bytes->size() == 2 + 4 * Flat(u).size());
  auto back = c->Decode(*bytes, SpecsOf(u));
  REQUIRE(back.ok());
  for (size_t t = 0; t < u.size(); ++t) CHECK((*back)[t].data == u[t].data);
}

TEST_CASE("codec: fp16 is within half an fp16 ulp, with exact conversions at the edges") {
  CHECK(FloatToHalf(1.0f) == 0x3c00);
  CHECK(FloatToHalf(-2.0f) == 0xc000);
  CHECK(FloatToHalf(65504.0f) == 0x7bff);
  CHECK(FloatToHalf(65520.0f) == 0x7c00);                // rounds up to inf
  CHECK(FloatToHalf(std::ldexp(1.0f, -24)) == 0x0001);   // smallest subnormal
  CHECK(FloatToHalf(std::ldexp(1.0f, -25)) == 0x0000);   // tie -> even (zero)
  CHECK(FloatToHalf(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);  // tie -> even
  CHECK(HalfToFloat(0x3555) == doctest::Approx(0.33325195).epsilon(1e-7));
  CHECK(HalfToFloat(0x0001) == std::ldexp(1.0f, -24));
  for (uint32_t h = 0; h < 0x7c00; ++h) {  // every finite positive half round-trips
    REQUIRE(FloatToHalf(HalfToFloat(static_cast<uint16_t>(h))) == h);
  }

  Parameters u = SmallUpdate(2);
  // Also values across the range: subnormal, large, negative.
  u.push_back(MakeFloatBlob("edge", {6}, {1e-7f, -3e-6f, 60000.0f, -1234.567f, 0.0f, 0.1f}));
  auto c = Codec("fp16");
  auto bytes = c->Encode(u, nullptr);
  REQUIRE(bytes.ok());
  CHECK(bytes->size() == c->EncodedBytes(SpecsOf(u)));
  CHECK(bytes->size() == 2 + 2 * Flat(u).size());
  auto back = c->Decode(*bytes, SpecsOf(u));
  REQUIRE(back.ok());
  const std::vector<float> x = Flat(u);
  const std::vector<float> y = Flat(*back);
  for (size_t i = 0; i < x.size(); ++i) {
    INFO("element " << i << ": " << x[i] << " -> " << y[i]);
    CHECK(std::fabs(static_cast<double>(x[i]) - y[i]) <= 0.5 * HalfUlp(x[i]));
  }
  auto over = c->Encode({MakeFloatBlob("big", {2}, {1.0f, 70000.0f})}, nullptr);
  REQUIRE_FALSE(over.ok());
  CHECK(Contains(over.status().message(), "tensor 'big' element 1"));
  CHECK(Contains(over.status().message(), "beyond the fp16 range"));
}

TEST_CASE("codec: int8 per tensor and per channel are within scale/2 of every element") {
  const Parameters u = SmallUpdate(3);
  for (const char* name : {"int8", "int8:channel"}) {
    INFO(name);
    auto c = Codec(name);
    auto bytes = c->Encode(u, nullptr);
    REQUIRE(bytes.ok());
    CHECK(bytes->size() == c->EncodedBytes(SpecsOf(u)));
    auto back = c->Decode(*bytes, SpecsOf(u));
    REQUIRE(back.ok());
    const bool per_channel = std::string(name) == "int8:channel";
    for (size_t t = 0; t < u.size(); ++t) {
      const std::vector<float> x = FloatValues(u[t]);
      const std::vector<float> y = FloatValues((*back)[t]);
      const size_t groups = per_channel && u[t].shape.size() >= 2 ? static_cast<size_t>(u[t].shape[0]) : 1;
      const size_t per = x.size() / groups;
      for (size_t g = 0; g < groups; ++g) {
        size_t argmin = g * per;
        float hi = x[g * per];
        for (size_t i = g * per; i < (g + 1) * per; ++i) {
          if (x[i] < x[argmin]) argmin = i;
          hi = std::max(hi, x[i]);
        }
        const float lo = x[argmin];
        const double scale = (static_cast<double>(hi) - lo) / 255.0;
        for (size_t i = g * per; i < (g + 1) * per; ++i) {
          INFO(u[t].name << " element " << i);
          // scale/2, plus the float rounding of zero_point + scale * q.
          CHECK(std::fabs(static_cast<double>(x[i]) - y[i]) <= scale / 2 + 4e-7 * std::fabs(x[i]) + 1e-12);
        }
        // The minimum is exact: it is the zero point, code 0.
        CHECK(y[argmin] == lo);
      }
    }
  }
  // Per tensor: 2 + sum(8 + n); per channel: one (scale, zero point) per output channel of rank >= 2.
  CHECK(Codec("int8")->EncodedBytes(SpecsOf(u)) == 2 + (8 + 72) + (8 + 4) + (8 + 60));
  CHECK(Codec("int8:channel")->EncodedBytes(SpecsOf(u)) == 2 + (4 * 8 + 72) + (8 + 4) + (5 * 8 + 60));
  // A constant tensor: scale 0, every value exact.
  const Parameters flat = {MakeFloatBlob("c", {3}, {0.25f, 0.25f, 0.25f})};
  auto c = Codec("int8");
  auto back = c->Decode(*c->Encode(flat, nullptr), SpecsOf(flat));
  REQUIRE(back.ok());
  CHECK(FloatValues((*back)[0]) == std::vector<float>{0.25f, 0.25f, 0.25f});
}

TEST_CASE("codec: top-k keeps the k largest entries exactly and zeroes the rest") {
  const Parameters u = {MakeFloatBlob("a", {4}, {0.1f, -5.0f, 0.3f, 0.0f}),
                        MakeFloatBlob("b", {2, 3}, {2.0f, -0.2f, 0.05f, -3.0f, 0.4f, 1.0f})};
  // N = 10, fraction 0.3 -> k = 3: -5 (a[1]), -3 (b[3]), 2 (b[0]).
  auto c = Codec("topk:0.3");
  auto bytes = c->Encode(u, nullptr);
  REQUIRE(bytes.ok());
  CHECK(bytes->size() == 2 + 4 + 8 * 3);
  CHECK(bytes->size() == c->EncodedBytes(SpecsOf(u)));
  auto back = c->Decode(*bytes, SpecsOf(u));
  REQUIRE(back.ok());
  CHECK(FloatValues((*back)[0]) == std::vector<float>{0.0f, -5.0f, 0.0f, 0.0f});
  CHECK(FloatValues((*back)[1]) == std::vector<float>{2.0f, 0.0f, 0.0f, -3.0f, 0.0f, 0.0f});
  // k is at least 1, and the fraction rounds: 105,866 x 0.01 -> 1,059 entries.
  CHECK(Codec("topk:0.0001")->EncodedBytes(SpecsOf(u)) == 2 + 4 + 8);
  CHECK(Codec("topk:0.01")->EncodedBytes({TensorSpec{"w", DType::kFloat32, {105866}}}) == 2 + 4 + 8 * 1059);
}

TEST_CASE("codec: error feedback carries the residual: sum of decoded + residual == sum of inputs") {
  for (const char* name : {"topk:0.05", "int8", "int8:channel", "fp16", "none"}) {
    INFO(name);
    auto c = Codec(name);
    Parameters residual;  // empty at start: all zero
    std::vector<double> sum_in, sum_out;
    for (uint32_t round = 0; round < 20; ++round) {
      const Parameters u = SmallUpdate(100 + round);
      auto bytes = c->Encode(u, &residual);
      REQUIRE_MESSAGE(bytes.ok(), bytes.status().ToString());
      auto back = c->Decode(*bytes, SpecsOf(u));
      REQUIRE(back.ok());
      const std::vector<float> x = Flat(u);
      const std::vector<float> y = Flat(*back);
      if (sum_in.empty()) sum_in.assign(x.size(), 0), sum_out.assign(x.size(), 0);
      for (size_t i = 0; i < x.size(); ++i) sum_in[i] += x[i], sum_out[i] += y[i];
    }
    const std::vector<float> r = Flat(residual);
    double worst = 0;
    for (size_t i = 0; i < r.size(); ++i) worst = std::max(worst, std::fabs(sum_out[i] + r[i] - sum_in[i]));
    // Only the float rounding of the 20 additions update + residual remains.
    CHECK(worst < 1e-5);
  }
  // Exactly, for values whose sums are exact in float (multiples of 1/64).
  auto c = Codec("topk:0.25");
  Parameters residual;
  std::vector<float> in(8, 0), out(8, 0);
  for (int round = 0; round < 6; ++round) {
    std::vector<float> v(8);
    for (int i = 0; i < 8; ++i) v[static_cast<size_t>(i)] = static_cast<float>(((i * 7 + round * 3) % 11) - 5) / 64.0f;
    const Parameters u = {MakeFloatBlob("w", {8}, v)};
    auto bytes = c->Encode(u, &residual);
    REQUIRE(bytes.ok());
    const std::vector<float> y = FloatValues((*c->Decode(*bytes, SpecsOf(u)))[0]);
    for (size_t i = 0; i < 8; ++i) in[i] += v[i], out[i] += y[i];
  }
  const std::vector<float> r = FloatValues(residual[0]);
  for (size_t i = 0; i < 8; ++i) CHECK(out[i] + r[i] == in[i]);
  // A residual of other tensors is refused.
  Parameters other = {MakeFloatBlob("x", {3}, {0, 0, 0})};
  auto mismatch = c->Encode(SmallUpdate(1), &other);
  REQUIRE_FALSE(mismatch.ok());
  CHECK(Contains(mismatch.status().message(), "residual"));
}

TEST_CASE("codec: encode refuses non-f32 and non-finite input by name") {
  TensorBlob ints;
  ints.name = "steps";
  ints.dtype = DType::kInt64;
  ints.shape = {1};
  ints.data.assign(8, 0);
  for (const char* name : {"none", "fp16", "int8", "topk:0.5"}) {
    INFO(name);
    auto c = Codec(name);
    CHECK(Contains(c->Encode({ints}, nullptr).status().message(), "tensor 'steps' is i64"));
    auto nan = c->Encode({MakeFloatBlob("w", {2}, {1.0f, std::nanf("")})}, nullptr);
    REQUIRE_FALSE(nan.ok());
    CHECK(Contains(nan.status().message(), "tensor 'w' element 1: value is not finite"));
  }
  // The widest finite range still quantises: scale 2 x 3e38 / 255 is finite.
  const Parameters wide = {MakeFloatBlob("w", {2}, {-3e38f, 3e38f})};
  auto c = Codec("int8");
  auto back = c->Decode(*c->Encode(wide, nullptr), SpecsOf(wide));
  REQUIRE(back.ok());
  CHECK(FloatValues((*back)[0])[0] == -3e38f);
}

void SetF32(std::vector<uint8_t>* bytes, size_t at, float v) { std::memcpy(bytes->data() + at, &v, 4); }
void SetU32(std::vector<uint8_t>* bytes, size_t at, uint32_t v) { std::memcpy(bytes->data() + at, &v, 4); }

// Decoding `bytes` with `codec` fails with a message containing `reason`.
void CheckRefused(const UpdateCodec& codec, const std::vector<uint8_t>& bytes, const std::vector<TensorSpec>& specs,
                  const std::string& reason) {
  auto r = codec.Decode(bytes, specs);
  REQUIRE_FALSE(r.ok());
  INFO(r.status().ToString());
  CHECK(r.status().code() == Code::kInvalidArgument);
  CHECK(Contains(r.status().message(), reason));
}

TEST_CASE("codec: every malformed encoding is refused with a named reason") {
  const Parameters u = SmallUpdate(7);
  const std::vector<TensorSpec> specs = SpecsOf(u);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();

  SUBCASE("header and size, every codec") {
    for (const char* name : {"none", "fp16", "int8", "int8:channel", "topk:0.1"}) {
      INFO(name);
      auto c = Codec(name);
      std::vector<uint8_t> good = *c->Encode(u, nullptr);
      CheckRefused(*c, {}, specs, "wrong size");
      CheckRefused(*c, {good[0]}, specs, "wrong size");
      std::vector<uint8_t> b = good;
      b[0] ^= 0x40;
      CheckRefused(*c, b, specs, "wrong codec");
      b = good;
      b[1] = 2;
      CheckRefused(*c, b, specs, "wrong layout version");
      b = good;
      b.pop_back();
      CheckRefused(*c, b, specs, "wrong size");
      b = good;
      b.push_back(0);
      CheckRefused(*c, b, specs, "wrong size");
      // Against other tensors than the ones encoded.
      std::vector<TensorSpec> fewer(specs.begin(), specs.end() - 1);
      CheckRefused(*c, good, fewer, "wrong size");
      std::vector<TensorSpec> ints = specs;
      ints[0].dtype = DType::kInt64;
      CheckRefused(*c, good, ints, "is i64");
    }
    // Bytes from one codec offered to another.
    CheckRefused(*Codec("int8"), *Codec("fp16")->Encode(u, nullptr), specs, "wrong codec");
  }
  SUBCASE("none and fp16: non-finite values") {
    auto none = Codec("none");
    std::vector<uint8_t> b = *none->Encode(u, nullptr);
    SetF32(&b, 2 + 4 * 5, inf);
    CheckRefused(*none, b, specs, "tensor 'conv.weight' element 5: value is not finite");
    auto fp16 = Codec("fp16");
    b = *fp16->Encode(u, nullptr);
    const uint16_t half_nan = 0x7e00;
    std::memcpy(b.data() + 2 + 2 * 72, &half_nan, 2);  // first element of conv.bias
    CheckRefused(*fp16, b, specs, "tensor 'conv.bias' element 0: value is not finite");
  }
  SUBCASE("int8: scales and zero points") {
    auto c = Codec("int8:channel");
    const std::vector<uint8_t> good = *c->Encode(u, nullptr);
    // conv.weight: 4 channels, (scale, zero point) pairs at 2 + 8g.
    std::vector<uint8_t> b = good;
    SetF32(&b, 2 + 8 * 3, nan);
    CheckRefused(*c, b, specs, "tensor 'conv.weight' channel 3: scale is not finite");
    b = good;
    SetF32(&b, 2 + 8 * 1, inf);
    CheckRefused(*c, b, specs, "channel 1: scale is not finite");
    b = good;
    SetF32(&b, 2 + 8 * 2, -0.5f);
    CheckRefused(*c, b, specs, "channel 2: scale is negative");
    b = good;
    SetF32(&b, 2 + 8 * 0 + 4, -inf);
    CheckRefused(*c, b, specs, "channel 0: zero point is not finite");
    b = good;
    SetF32(&b, 2 + 8 * 0, 3e38f);
    SetF32(&b, 2 + 8 * 0 + 4, 3e38f);
    CheckRefused(*c, b, specs, "channel 0: value is not finite");
    // Per tensor: conv.bias's pair follows conv.weight's 8 + 72 bytes.
    auto t = Codec("int8");
    b = *t->Encode(u, nullptr);
    SetF32(&b, 2 + 8 + 72, nan);
    CheckRefused(*t, b, specs, "tensor 'conv.bias': scale is not finite");
  }
  SUBCASE("top-k: k, indices and values") {
    auto c = Codec("topk:0.1");  // N = 136 -> k = 14
    const std::vector<uint8_t> good = *c->Encode(u, nullptr);
    REQUIRE(good.size() == 2 + 4 + 8 * 14);
    const size_t idx = 2 + 4;
    const size_t val = idx + 4 * 14;
    std::vector<uint8_t> b = good;
    SetU32(&b, 2, 15);
    CheckRefused(*c, b, specs, "wrong size: k is 15, expected 14");
    b = good;
    SetU32(&b, 2, 0xffffffffu);
    CheckRefused(*c, b, specs, "wrong size: k is 4294967295");
    b = good;
    SetU32(&b, idx + 4 * 13, 136);
    CheckRefused(*c, b, specs, "entry 13: index out of range (136 >= 136 elements)");
    b = good;
    uint32_t first;
    std::memcpy(&first, b.data() + idx, 4);
    SetU32(&b, idx + 4, first);  // duplicate
    CheckRefused(*c, b, specs, "entry 1: indices not strictly increasing");
    b = good;
    uint32_t second;
    std::memcpy(&second, b.data() + idx + 4, 4);
    SetU32(&b, idx, second);
    SetU32(&b, idx + 4, first);  // swapped: unsorted
    CheckRefused(*c, b, specs, "entry 1: indices not strictly increasing");
    b = good;
    SetF32(&b, val + 4 * 2, nan);
    CheckRefused(*c, b, specs, "value is not finite");
    b = good;
    b.resize(5);
    CheckRefused(*c, b, specs, "wrong size");
  }
}

}  // namespace
}  // namespace greenfed

namespace greenfed {
namespace {

TEST_CASE("codec: DecodeAdd folds weight x the decoded update into a sum, all or nothing") {
  const Parameters u = SmallUpdate(11);
  const std::vector<TensorSpec> specs = SpecsOf(u);
  const size_t n = Flat(u).size();
  for (const char* name : {"none", "fp16", "int8", "int8:channel", "topk:0.1"}) {
    INFO(name);
    auto c = Codec(name);
    const std::vector<uint8_t> bytes = *c->Encode(u, nullptr);
    const std::vector<float> decoded = Flat(*c->Decode(bytes, specs));
    std::vector<double> sum(n, 1.0);
    REQUIRE(c->DecodeAdd(bytes, specs, 3.0, &sum).ok());
    for (size_t i = 0; i < n; ++i) CHECK(sum[i] == 1.0 + 3.0 * static_cast<double>(decoded[i]));
    // Wrong sum size, non-finite weight: refused, the sum untouched.
    std::vector<double> short_sum(n - 1, 0.0);
    CHECK(Contains(c->DecodeAdd(bytes, specs, 1.0, &short_sum).message(), "wrong size"));
    const std::vector<double> before = sum;
    CHECK(Contains(c->DecodeAdd(bytes, specs, std::nan(""), &sum).message(), "weight is not finite"));
    // A corrupt last byte region: refused by name, the sum untouched.
    std::vector<uint8_t> bad = bytes;
    bad[0] ^= 0x40;
    CHECK(Contains(c->DecodeAdd(bad, specs, 1.0, &sum).message(), "wrong codec"));
    CHECK(sum == before);
  }
  // Top-k: an index out of range in the LAST entry leaves the sum as it was (the
  // entries before it are not half-added).
  auto c = Codec("topk:0.1");  // k = 14
  std::vector<uint8_t> bytes = *c->Encode(u, nullptr);
  SetU32(&bytes, 2 + 4 + 4 * 13, 1000);
  std::vector<double> sum(n, 0.5);
  const Status s = c->DecodeAdd(bytes, specs, 1.0, &sum);
  CHECK(Contains(s.message(), "entry 13: index out of range"));
  CHECK(sum == std::vector<double>(n, 0.5));
  bytes = *c->Encode(u, nullptr);
  SetF32(&bytes, 2 + 4 + 4 * 14 + 4 * 13, std::numeric_limits<float>::infinity());
  CHECK(Contains(c->DecodeAdd(bytes, specs, 1.0, &sum).message(), "value is not finite"));
  CHECK(sum == std::vector<double>(n, 0.5));
  // int8: a bad scale in the last tensor leaves the sum as it was.
  auto q = Codec("int8");
  bytes = *q->Encode(u, nullptr);
  SetF32(&bytes, 2 + (8 + 72) + (8 + 4), std::nanf(""));
  CHECK(Contains(q->DecodeAdd(bytes, specs, 1.0, &sum).message(), "tensor 'fc.weight': scale is not finite"));
  CHECK(sum == std::vector<double>(n, 0.5));
}

}  // namespace
}  // namespace greenfed
