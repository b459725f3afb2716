// Status / StatusOr (status.h) and the TensorBlob helpers (tensor.h).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "greenfed/status.h"
#include "greenfed/tensor.h"

namespace greenfed {
namespace {

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

StatusOr<int> ParsePositive(int v) {
  if (v <= 0) return OutOfRange("value " + std::to_string(v) + " must be positive");
  return v;
}

// Uses GREENFED_ASSIGN_OR_RETURN twice in one scope (the temporaries must not clash)
// and GREENFED_RETURN_IF_ERROR; `*steps` counts how far it got.
StatusOr<int> SumPositive(int a, int b, int* steps) {
  GREENFED_ASSIGN_OR_RETURN(int x, ParsePositive(a));
  ++*steps;
  GREENFED_ASSIGN_OR_RETURN(int y, ParsePositive(b));
  ++*steps;
  GREENFED_RETURN_IF_ERROR(x + y > 100 ? InvalidArgument("sum too big") : Status::Ok());
  ++*steps;
  return x + y;
}

TensorBlob Blob(std::string name, DType dtype, std::vector<int64_t> shape, size_t bytes) {
  TensorBlob b;
  b.name = std::move(name);
  b.dtype = dtype;
  b.shape = std::move(shape);
  b.data.assign(bytes, 0);
  return b;
}

TEST_CASE("Status basics") {
  const Status ok;
  CHECK(ok.ok());
  CHECK(ok.code() == Code::kOk);
  CHECK(ok.ToString() == "OK");
  CHECK(Status::Ok().ok());

  const Status s = InvalidArgument("field 'round' is negative");
  CHECK_FALSE(s.ok());
  CHECK(s.code() == Code::kInvalidArgument);
  CHECK(s.message() == "field 'round' is negative");
  CHECK(s.ToString() == "INVALID_ARGUMENT: field 'round' is negative");

  CHECK(NotFound("x").code() == Code::kNotFound);
  CHECK(DataLoss("x").code() == Code::kDataLoss);
  CHECK(OutOfRange("x").code() == Code::kOutOfRange);
  CHECK(FailedPrecondition("x").code() == Code::kFailedPrecondition);
  CHECK(Unavailable("x").code() == Code::kUnavailable);
  CHECK(PermissionDenied("x").code() == Code::kPermissionDenied);
  CHECK(DeadlineExceeded("x").code() == Code::kDeadlineExceeded);
  CHECK(Internal("x").code() == Code::kInternal);
  CHECK(std::string(CodeName(Code::kDataLoss)) == "DATA_LOSS");
  CHECK(std::string(CodeName(Code::kPermissionDenied)) == "PERMISSION_DENIED");
  CHECK(std::string(CodeName(Code::kOk)) == "OK");
}

TEST_CASE("Status::WithContext prefixes errors and leaves OK alone") {
  const Status s = DataLoss("truncated").WithContext("reading a.idx").WithContext("loading shard");
  CHECK(s.code() == Code::kDataLoss);
  CHECK(s.message() == "loading shard: reading a.idx: truncated");
  CHECK(s.ToString() == "DATA_LOSS: loading shard: reading a.idx: truncated");
  const Status ok = Status::Ok().WithContext("ignored");
  CHECK(ok.ok());
  CHECK(ok.message().empty());
}

TEST_CASE("StatusOr holds a value or an error") {
  StatusOr<std::string> v = std::string("fc.weight");
  REQUIRE(v.ok());
  CHECK(*v == "fc.weight");
  CHECK(v->size() == 9);
  CHECK(v.value() == "fc.weight");
  const std::string moved = std::move(v).value();
  CHECK(moved == "fc.weight");

  StatusOr<std::string> e = NotFound("no such task 'mnist'");
  CHECK_FALSE(e.ok());
  CHECK(e.status().code() == Code::kNotFound);
  CHECK(e.status().message() == "no such task 'mnist'");
}

TEST_CASE("GREENFED_ASSIGN_OR_RETURN and GREENFED_RETURN_IF_ERROR propagate the first error") {
  int steps = 0;
  StatusOr<int> sum = SumPositive(2, 3, &steps);
  REQUIRE(sum.ok());
  CHECK(*sum == 5);
  CHECK(steps == 3);

  steps = 0;
  sum = SumPositive(-1, 3, &steps);
  CHECK(sum.status().code() == Code::kOutOfRange);
  CHECK(sum.status().message() == "value -1 must be positive");
  CHECK(steps == 0);

  steps = 0;
  sum = SumPositive(1, 0, &steps);
  CHECK(sum.status().message() == "value 0 must be positive");
  CHECK(steps == 1);

  steps = 0;
  sum = SumPositive(60, 50, &steps);
  CHECK(sum.status().code() == Code::kInvalidArgument);
  CHECK(sum.status().message() == "sum too big");
  CHECK(steps == 2);
}

TEST_CASE("dtype helpers") {
  CHECK(DTypeSize(DType::kFloat32) == 4);
  CHECK(DTypeSize(DType::kFloat64) == 8);
  CHECK(DTypeSize(DType::kInt64) == 8);
  for (DType d : {DType::kFloat32, DType::kFloat64, DType::kInt64}) {
    StatusOr<DType> parsed = ParseDType(DTypeName(d));
    REQUIRE(parsed.ok());
    CHECK(*parsed == d);
  }
  CHECK(std::string(DTypeName(DType::kFloat64)) == "f64");
  StatusOr<DType> bad = ParseDType("bf16");
  CHECK(bad.status().code() == Code::kInvalidArgument);
  CHECK(Contains(bad.status().message(), "unknown dtype 'bf16'"));
}

TEST_CASE("shapes, specs and sizes") {
  CHECK(NumElements({16, 1, 3, 3}) == 144);
  CHECK(NumElements({}) == 1);
  CHECK(NumElements({0, 5}) == 0);
  CHECK(ShapeString({16, 1, 3, 3}) == "[16, 1, 3, 3]");
  CHECK(ShapeString({}) == "[]");

  const TensorBlob w = MakeFloatBlob("fc.weight", {2, 3}, {1, 2, 3, 4, 5, 6});
  CHECK(w.NumElements() == 6);
  CHECK(w.ByteSize() == 24);
  CHECK(FloatValues(w) == std::vector<float>{1, 2, 3, 4, 5, 6});
  const TensorBlob b = MakeFloatBlob("fc.bias", {2}, {-1, 1});
  const Parameters params = {w, b};
  CHECK(TotalBytes(params) == 32);
  CHECK(SpecOf(w) == TensorSpec{"fc.weight", DType::kFloat32, {2, 3}});
  const std::vector<TensorSpec> specs = SpecsOf(params);
  REQUIRE(specs.size() == 2);
  CHECK(specs[1] == TensorSpec{"fc.bias", DType::kFloat32, {2}});
  CHECK_FALSE(specs[0] == specs[1]);

  const TensorBlob empty = MakeFloatBlob("empty", {0}, {});
  CHECK(empty.data.empty());
  CHECK(FloatValues(empty).empty());
}

TEST_CASE("ValidateBlob") {
  CHECK(ValidateBlob(MakeFloatBlob("w", {2, 2}, {1, -2, 3.5f, 0})).ok());
  CHECK(ValidateBlob(MakeFloatBlob("scalar", {}, {7})).ok());
  CHECK(ValidateBlob(Blob("empty", DType::kFloat64, {3, 0}, 0)).ok());

  SUBCASE("negative dimension") {
    const Status s = ValidateBlob(Blob("w", DType::kFloat32, {2, -1}, 0));
    CHECK(s.code() == Code::kInvalidArgument);
    CHECK(s.message() == "tensor 'w' has negative dimension in shape [2, -1]");
  }
  SUBCASE("byte count disagrees with the shape") {
    const Status s = ValidateBlob(Blob("conv.bias", DType::kFloat32, {2, 3}, 20));
    CHECK(s.code() == Code::kInvalidArgument);
    CHECK(s.message() == "tensor 'conv.bias' f32[2, 3] needs 24 bytes but carries 20");
  }
  SUBCASE("shape too large") {
    const Status s = ValidateBlob(Blob("huge", DType::kFloat32, {int64_t{1} << 30, int64_t{1} << 30}, 0));
    CHECK(s.code() == Code::kOutOfRange);
    CHECK(Contains(s.message(), "tensor 'huge' shape"));
  }
  SUBCASE("non-finite float32") {
    const float inf = std::numeric_limits<float>::infinity();
    const Status s = ValidateBlob(MakeFloatBlob("w", {3}, {0, 1, inf}));
    CHECK(s.code() == Code::kInvalidArgument);
    CHECK(s.message() == "tensor 'w' has a non-finite value (NaN or Inf) at element 2");
  }
  SUBCASE("non-finite float64") {
    TensorBlob d = Blob("d", DType::kFloat64, {2}, 16);
    const double nan = std::numeric_limits<double>::quiet_NaN();
    std::memcpy(d.data.data(), &nan, sizeof(nan));
    CHECK(Contains(ValidateBlob(d).message(), "at element 0"));
  }
  SUBCASE("int64 bytes are never non-finite") {
    TensorBlob i = Blob("steps", DType::kInt64, {2}, 16);
    std::memset(i.data.data(), 0xff, i.data.size());  // NaN bit pattern if read as a double
    CHECK(ValidateBlob(i).ok());
  }
}

TEST_CASE("ValidateAgainst") {
  const Parameters params = {MakeFloatBlob("fc.weight", {2, 3}, {1, 2, 3, 4, 5, 6}),
                             MakeFloatBlob("fc.bias", {2}, {0, 0})};
  const std::vector<TensorSpec> expected = SpecsOf(params);
  CHECK(ValidateAgainst(params, expected).ok());
  CHECK(ValidateAgainst({}, {}).ok());

  CHECK(ValidateAgainst({params[0]}, expected).message() == "expected 2 tensors, got 1");

  Parameters renamed = params;
  renamed[1].name = "fc.b";
  CHECK(ValidateAgainst(renamed, expected).message() == "tensor 1 is named 'fc.b', expected 'fc.bias'");

  Parameters retyped = params;
  retyped[1].dtype = DType::kInt64;
  retyped[1].data.resize(16);
  CHECK(ValidateAgainst(retyped, expected).message() == "tensor 'fc.bias' has dtype i64, expected f32");

  Parameters reshaped = params;
  reshaped[0].shape = {3, 2};
  CHECK(ValidateAgainst(reshaped, expected).message() ==
        "tensor 'fc.weight' has shape [3, 2], expected [2, 3]");

  Parameters poisoned = params;
  poisoned[1] = MakeFloatBlob("fc.bias", {2}, {0, std::nanf("")});
  const Status s = ValidateAgainst(poisoned, expected);
  CHECK(s.code() == Code::kInvalidArgument);
  CHECK(s.message() == "tensor 'fc.bias' has a non-finite value (NaN or Inf) at element 1");

  Parameters short_data = params;
  short_data[0].data.pop_back();
  CHECK(Contains(ValidateAgainst(short_data, expected).message(), "needs 24 bytes but carries 23"));
}

}  // namespace
}  // namespace greenfed

#include "greenfed/digest.h"

TEST_CASE("SHA-256 of parameters: the known digest of empty input, and every field counts") {
  auto empty = greenfed::Sha256Hex({});
  REQUIRE(empty.ok());
  CHECK(*empty == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  const greenfed::Parameters a = {greenfed::MakeFloatBlob("w", {2}, {1.0f, 2.0f})};
  greenfed::Parameters renamed = a, reshaped = a, changed = a;
  renamed[0].name = "v";
  reshaped[0].shape = {1, 2};
  changed[0].data[0] ^= 1;
  const std::string base = *greenfed::Sha256Hex(a);
  CHECK(base.size() == 64);
  CHECK(*greenfed::Sha256Hex(a) == base);
  CHECK(*greenfed::Sha256Hex(renamed) != base);
  CHECK(*greenfed::Sha256Hex(reshaped) != base);
  CHECK(*greenfed::Sha256Hex(changed) != base);
}
