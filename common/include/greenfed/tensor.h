// TensorBlob: a named tensor as raw little-endian bytes, so that the framework can
// move, check and average parameters without libtorch.
//
// Contract: data.size() == NumElements(shape) * DTypeSize(dtype). Only tasks
// (examples/) convert to and from torch::Tensor.
// Thread safety: plain values.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "greenfed/status.h"

namespace greenfed {

enum class DType : uint8_t { kFloat32 = 0, kFloat64 = 1, kInt64 = 2 };

size_t DTypeSize(DType dtype);
const char* DTypeName(DType dtype);             // "f32", "f64", "i64"
StatusOr<DType> ParseDType(const std::string& name);

struct TensorBlob {
  std::string name;              // e.g. "conv1.weight"; unique within a parameter set
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;    // empty shape = scalar
  std::vector<uint8_t> data;     // little-endian, row-major

  int64_t NumElements() const;
  size_t ByteSize() const { return data.size(); }
};

using Parameters = std::vector<TensorBlob>;

// Manifest entry: what a blob is, without its bytes.
struct TensorSpec {
  std::string name;
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;
  bool operator==(const TensorSpec& o) const {
    return name == o.name && dtype == o.dtype && shape == o.shape;
  }
};

int64_t NumElements(const std::vector<int64_t>& shape);
std::string ShapeString(const std::vector<int64_t>& shape);  // "[16, 1, 3, 3]"
TensorSpec SpecOf(const TensorBlob& blob);
std::vector<TensorSpec> SpecsOf(const Parameters& params);
size_t TotalBytes(const Parameters& params);

// Checks the blob's own consistency: non-negative dims, byte count, and (for float
// dtypes) that every value is finite. The error names the tensor and the problem.
Status ValidateBlob(const TensorBlob& blob);

// Checks that `params` match `expected` one to one (same order, names, dtypes,
// shapes) and that each blob is valid. Used on every update a client sends.
Status ValidateAgainst(const Parameters& params, const std::vector<TensorSpec>& expected);

// Checks that every float value has |v| <= max_abs; the error names the tensor,
// the element and the value.
Status ValidateMagnitude(const Parameters& params, double max_abs);

// Builds a float32 blob from host floats (host must be little-endian; checked at
// compile time in tensor.cc).
TensorBlob MakeFloatBlob(std::string name, std::vector<int64_t> shape, const std::vector<float>& values);
std::vector<float> FloatValues(const TensorBlob& blob);  // requires dtype kFloat32

}  // namespace greenfed
