#include "greenfed/tensor.h"

#include <cmath>
#include <cstring>
#include <sstream>

namespace greenfed {

static_assert(sizeof(float) == 4 && sizeof(double) == 8, "IEEE-754 floats required");
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "greenfed moves tensors as little-endian bytes and supports little-endian hosts only"
#endif

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return 4;
    case DType::kFloat64: return 8;
    case DType::kInt64: return 8;
  }
  return 0;
}

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return "f32";
    case DType::kFloat64: return "f64";
    case DType::kInt64: return "i64";
  }
  return "?";
}

StatusOr<DType> ParseDType(const std::string& name) {
  if (name == "f32") return DType::kFloat32;
  if (name == "f64") return DType::kFloat64;
  if (name == "i64") return DType::kInt64;
  return InvalidArgument("unknown dtype '" + name + "' (expected f32, f64 or i64)");
}

int64_t NumElements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t TensorBlob::NumElements() const { return greenfed::NumElements(shape); }

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

TensorSpec SpecOf(const TensorBlob& blob) { return TensorSpec{blob.name, blob.dtype, blob.shape}; }

std::vector<TensorSpec> SpecsOf(const Parameters& params) {
  std::vector<TensorSpec> specs;
  specs.reserve(params.size());
  for (const auto& p : params) specs.push_back(SpecOf(p));
  return specs;
}

size_t TotalBytes(const Parameters& params) {
  size_t n = 0;
  for (const auto& p : params) n += p.data.size();
  return n;
}

namespace {
template <typename T>
bool AllFinite(const std::vector<uint8_t>& data, size_t* bad_index) {
  const size_t n = data.size() / sizeof(T);
  for (size_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, data.data() + i * sizeof(T), sizeof(T));
    if (!std::isfinite(v)) {
      *bad_index = i;
      return false;
    }
  }
  return true;
}
}  // namespace

Status ValidateBlob(const TensorBlob& blob) {
  constexpr int64_t kMaxElements = int64_t{1} << 40;
  int64_t n = 1;
  for (int64_t d : blob.shape) {
    if (d < 0) return InvalidArgument("tensor '" + blob.name + "' has negative dimension in shape " + ShapeString(blob.shape));
    if (d != 0 && n > kMaxElements / d) return OutOfRange("tensor '" + blob.name + "' shape " + ShapeString(blob.shape) + " is too large");
    n *= d;
  }
  const size_t expected = static_cast<size_t>(n) * DTypeSize(blob.dtype);
  if (blob.data.size() != expected) {
    return InvalidArgument("tensor '" + blob.name + "' " + DTypeName(blob.dtype) + ShapeString(blob.shape) + " needs " +
                           std::to_string(expected) + " bytes but carries " + std::to_string(blob.data.size()));
  }
  size_t bad = 0;
  bool finite = true;
  if (blob.dtype == DType::kFloat32) finite = AllFinite<float>(blob.data, &bad);
  if (blob.dtype == DType::kFloat64) finite = AllFinite<double>(blob.data, &bad);
  if (!finite) return InvalidArgument("tensor '" + blob.name + "' has a non-finite value (NaN or Inf) at element " + std::to_string(bad));
  return Status::Ok();
}

Status ValidateAgainst(const Parameters& params, const std::vector<TensorSpec>& expected) {
  if (params.size() != expected.size()) {
    return InvalidArgument("expected " + std::to_string(expected.size()) + " tensors, got " + std::to_string(params.size()));
  }
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& p = params[i];
    const auto& e = expected[i];
    if (p.name != e.name) return InvalidArgument("tensor " + std::to_string(i) + " is named '" + p.name + "', expected '" + e.name + "'");
    if (p.dtype != e.dtype) return InvalidArgument("tensor '" + p.name + "' has dtype " + DTypeName(p.dtype) + ", expected " + DTypeName(e.dtype));
    if (p.shape != e.shape) return InvalidArgument("tensor '" + p.name + "' has shape " + ShapeString(p.shape) + ", expected " + ShapeString(e.shape));
    GREENFED_RETURN_IF_ERROR(ValidateBlob(p));
  }
  return Status::Ok();
}

TensorBlob MakeFloatBlob(std::string name, std::vector<int64_t> shape, const std::vector<float>& values) {
  TensorBlob b;
  b.name = std::move(name);
  b.dtype = DType::kFloat32;
  b.shape = std::move(shape);
  b.data.resize(values.size() * sizeof(float));
  if (!values.empty()) std::memcpy(b.data.data(), values.data(), b.data.size());
  return b;
}

std::vector<float> FloatValues(const TensorBlob& blob) {
  std::vector<float> out(blob.data.size() / sizeof(float));
  if (!out.empty()) std::memcpy(out.data(), blob.data.data(), out.size() * sizeof(float));
  return out;
}

Status ValidateMagnitude(const Parameters& params, double max_abs) {
  for (const auto& t : params) {
    if (t.dtype != DType::kFloat32 && t.dtype != DType::kFloat64) continue;
    const size_t width = t.dtype == DType::kFloat32 ? 4 : 8;
    const size_t n = t.data.size() / width;
    for (size_t i = 0; i < n; ++i) {
      double v;
      if (width == 4) {
        float f;
        std::memcpy(&f, t.data.data() + i * 4, 4);
        v = f;
      } else {
        std::memcpy(&v, t.data.data() + i * 8, 8);
      }
      if (std::fabs(v) > max_abs) {
        std::ostringstream os;
        os << "tensor '" << t.name << "' element " << i << " is " << v << ", beyond the plausible magnitude "
           << max_abs;
        return OutOfRange(os.str());
      }
    }
  }
  return Status::Ok();
}

}  // namespace greenfed
