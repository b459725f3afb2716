#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "greenfed/coordinator/fedavg.h"

using greenfed::Code;
using greenfed::FedAvgAccumulator;
using greenfed::FloatValues;
using greenfed::MakeFloatBlob;
using greenfed::Parameters;

namespace {
Parameters Two(float a0, float a1, float b0) {
  return {MakeFloatBlob("w", {2}, {a0, a1}), MakeFloatBlob("b", {1}, {b0})};
}
}  // namespace

TEST_CASE("FedAvg matches a hand computation weighted by examples") {
  FedAvgAccumulator acc;
  REQUIRE(acc.Reset(Two(0, 0, 0)).ok());
  // client A: n=1, w=(1,2), b=10; client B: n=3, w=(3,4), b=-2
  REQUIRE(acc.Add(Two(1, 2, 10), false, 1).ok());
  REQUIRE(acc.Add(Two(3, 4, -2), false, 3).ok());
  auto r = acc.Result();
  REQUIRE(r.ok());
  // w = (1*1 + 3*3)/4 = 2.5, (1*2 + 3*4)/4 = 3.5; b = (10 - 6)/4 = 1
  CHECK(FloatValues((*r)[0]) == std::vector<float>{2.5f, 3.5f});
  CHECK(FloatValues((*r)[1]) == std::vector<float>{1.0f});
  CHECK(acc.total_examples() == 4);
  CHECK(acc.num_updates() == 2);
}

TEST_CASE("FedAvg of deltas equals FedAvg of weights") {
  const Parameters global = Two(1, -1, 0.5f);
  FedAvgAccumulator by_weights, by_deltas;
  REQUIRE(by_weights.Reset(global).ok());
  REQUIRE(by_deltas.Reset(global).ok());
  REQUIRE(by_weights.Add(Two(2, 0, 1), false, 2).ok());
  REQUIRE(by_weights.Add(Two(0, -3, 0), false, 6).ok());
  REQUIRE(by_deltas.Add(Two(1, 1, 0.5f), true, 2).ok());      // (2,0,1) - global
  REQUIRE(by_deltas.Add(Two(-1, -2, -0.5f), true, 6).ok());   // (0,-3,0) - global
  auto a = by_weights.Result();
  auto b = by_deltas.Result();
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  // (2*2 + 6*0)/8 = 0.5; (0 - 18)/8 = -2.25; (2 + 0)/8 = 0.25
  CHECK(FloatValues((*a)[0]) == std::vector<float>{0.5f, -2.25f});
  CHECK(FloatValues((*b)[0]) == std::vector<float>{0.5f, -2.25f});
  CHECK(FloatValues((*a)[1]) == std::vector<float>{0.25f});
  CHECK(FloatValues((*b)[1]) == std::vector<float>{0.25f});
}

TEST_CASE("FedAvg rejects bad updates and keeps the sum intact") {
  FedAvgAccumulator acc;
  REQUIRE(acc.Reset(Two(0, 0, 0)).ok());
  REQUIRE(acc.Add(Two(4, 4, 4), false, 2).ok());

  SUBCASE("wrong shape") {
    Parameters bad = {MakeFloatBlob("w", {3}, {1, 2, 3}), MakeFloatBlob("b", {1}, {0})};
    auto s = acc.Add(bad, false, 5);
    CHECK_FALSE(s.ok());
    CHECK(s.message().find("shape") != std::string::npos);
  }
  SUBCASE("wrong name") {
    Parameters bad = {MakeFloatBlob("x", {2}, {1, 2}), MakeFloatBlob("b", {1}, {0})};
    CHECK(acc.Add(bad, false, 5).message().find("'x'") != std::string::npos);
  }
  SUBCASE("missing tensor") {
    Parameters bad = {MakeFloatBlob("w", {2}, {1, 2})};
    CHECK(acc.Add(bad, false, 5).message().find("expected 2 tensors") != std::string::npos);
  }
  SUBCASE("NaN") {
    auto s = acc.Add(Two(std::numeric_limits<float>::quiet_NaN(), 0, 0), false, 5);
    CHECK(s.message().find("non-finite") != std::string::npos);
  }
  SUBCASE("infinity") {
    CHECK_FALSE(acc.Add(Two(0, std::numeric_limits<float>::infinity(), 0), false, 5).ok());
  }
  SUBCASE("zero examples") {
    CHECK(acc.Add(Two(1, 1, 1), false, 0).message().find("0 training examples") != std::string::npos);
  }
  // Whatever was rejected, the average is still that of the one good update.
  auto r = acc.Result();
  REQUIRE(r.ok());
  CHECK(FloatValues((*r)[0]) == std::vector<float>{4, 4});
  CHECK(acc.total_examples() == 2);
}

TEST_CASE("FedAvg without updates is an error, and Reset clears the sum") {
  FedAvgAccumulator acc;
  REQUIRE(acc.Reset(Two(1, 1, 1)).ok());
  CHECK(acc.Result().status().code() == greenfed::Code::kFailedPrecondition);
  REQUIRE(acc.Add(Two(3, 3, 3), false, 1).ok());
  REQUIRE(acc.Reset(Two(1, 1, 1)).ok());
  REQUIRE(acc.Add(Two(5, 5, 5), false, 1).ok());
  CHECK(FloatValues((*acc.Result())[0]) == std::vector<float>{5, 5});
}

TEST_CASE("FedAvg sums in double: many small updates do not drift") {
  FedAvgAccumulator acc;
  REQUIRE(acc.Reset({MakeFloatBlob("w", {1}, {0})}).ok());
  for (int k = 0; k < 1000; ++k) REQUIRE(acc.Add({MakeFloatBlob("w", {1}, {k % 2 ? 1e-4f : 3e-4f})}, false, 7).ok());
  CHECK(FloatValues((*acc.Result())[0])[0] == doctest::Approx(2e-4).epsilon(1e-6));
}

// Issue 8: num_examples = 2^64-1 wrapped the uint64 total, so two +1.0 deltas
// averaged to 3.7e16. The total is now checked (and kept exact in a double).
TEST_CASE("fedavg: example counts that would overflow the total are refused, and nothing is added") {
  FedAvgAccumulator acc;
  const Parameters global = {MakeFloatBlob("w", {1}, {0})};
  REQUIRE(acc.Reset(global).ok());
  const Parameters plus_one = {MakeFloatBlob("w", {1}, {1})};
  CHECK(acc.Add(plus_one, true, ~0ull).code() == Code::kOutOfRange);
  REQUIRE(acc.Add(plus_one, true, 1ull << 52).ok());
  CHECK(acc.Add(plus_one, true, (1ull << 52) + 1).code() == Code::kOutOfRange);
  CHECK(acc.num_updates() == 1);
  auto r = acc.Result();
  REQUIRE(r.ok());
  CHECK(FloatValues((*r)[0])[0] == doctest::Approx(1.0));
}

// Issue 8 (found by fuzz_round_machine): a client sending finite FLT_MAX values
// passed every check, and within three rounds the mean overflowed float32 and the
// run stopped as failed for everyone.
TEST_CASE("fedavg: absurdly large but finite values are refused with a named error") {
  FedAvgAccumulator acc;
  REQUIRE(acc.Reset({MakeFloatBlob("w", {2}, {0, 0})}).ok());
  const auto huge = acc.Add({MakeFloatBlob("w", {2}, {1, std::numeric_limits<float>::max()})}, true, 10);
  CHECK(huge.code() == Code::kOutOfRange);
  CHECK(huge.message().find("tensor 'w' element 1") != std::string::npos);
  CHECK(acc.num_updates() == 0);
  CHECK(acc.Add({MakeFloatBlob("w", {2}, {1, 1e8f})}, true, 10).ok());
}
