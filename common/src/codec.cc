// Update codecs (codec.h).
#include "greenfed/codec.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <utility>

namespace greenfed {
namespace {

enum class CodecId : uint8_t { kNone = 0, kFp16 = 1, kInt8 = 2, kInt8Channel = 3, kTopK = 4 };
constexpr size_t kHeaderBytes = 2;  // codec id, layout version

std::string Num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

float LoadF32(const uint8_t* p) {
  float v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

void PutU32(uint32_t v, std::vector<uint8_t>* out) {
  uint8_t b[4];
  std::memcpy(b, &v, 4);
  out->insert(out->end(), b, b + 4);
}

void PutF32(float v, std::vector<uint8_t>* out) {
  uint8_t b[4];
  std::memcpy(b, &v, 4);
  out->insert(out->end(), b, b + 4);
}

uint32_t GetU32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

uint64_t TotalElements(const std::vector<TensorSpec>& specs) {
  uint64_t n = 0;
  for (const TensorSpec& s : specs) n += static_cast<uint64_t>(std::max<int64_t>(0, NumElements(s.shape)));
  return n;
}

// Float32 blobs of `specs`' shapes, all zero.
Parameters ZerosLike(const std::vector<TensorSpec>& specs) {
  Parameters out;
  out.reserve(specs.size());
  for (const TensorSpec& s : specs) {
    TensorBlob b;
    b.name = s.name;
    b.dtype = DType::kFloat32;
    b.shape = s.shape;
    b.data.assign(static_cast<size_t>(NumElements(s.shape)) * sizeof(float), 0);
    out.push_back(std::move(b));
  }
  return out;
}

// Base: header handling, input checks and error feedback; subclasses pack floats.
class CodecBase : public UpdateCodec {
 public:
  CodecBase(CodecId id, std::string name) : id_(id), name_(std::move(name)) {}
  std::string Name() const override { return name_; }

  StatusOr<std::vector<uint8_t>> Encode(const Parameters& update, Parameters* residual) const override {
    for (const TensorBlob& b : update) {
      if (b.dtype != DType::kFloat32) {
        return InvalidArgument(name_ + " encode: tensor '" + b.name + "' is " + DTypeName(b.dtype) +
                               "; codecs take float32 updates");
      }
      if (b.data.size() != static_cast<size_t>(std::max<int64_t>(0, b.NumElements())) * sizeof(float)) {
        return InvalidArgument(name_ + " encode: tensor '" + b.name + "': wrong size (" +
                               std::to_string(b.data.size()) + " bytes for shape " + ShapeString(b.shape) + ")");
      }
    }
    if (residual == nullptr) return EncodeChecked(update);
    const std::vector<TensorSpec> specs = SpecsOf(update);
    if (residual->empty()) *residual = ZerosLike(specs);
    if (SpecsOf(*residual) != specs) {
      return InvalidArgument(name_ + " encode: the residual's tensors do not match the update's");
    }
    // acc = update + residual; encode acc; residual = acc - decode(encoding).
    Parameters acc = update;
    for (size_t t = 0; t < acc.size(); ++t) {
      const size_t n = acc[t].data.size() / sizeof(float);
      uint8_t* a = acc[t].data.data();
      const uint8_t* r = (*residual)[t].data.data();
      for (size_t i = 0; i < n; ++i) {
        const float v = LoadF32(a + 4 * i) + LoadF32(r + 4 * i);
        std::memcpy(a + 4 * i, &v, 4);
      }
    }
    GREENFED_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, EncodeChecked(acc));
    GREENFED_ASSIGN_OR_RETURN(Parameters decoded, Decode(bytes, specs));
    for (size_t t = 0; t < acc.size(); ++t) {
      const size_t n = acc[t].data.size() / sizeof(float);
      const uint8_t* a = acc[t].data.data();
      const uint8_t* d = decoded[t].data.data();
      uint8_t* r = (*residual)[t].data.data();
      for (size_t i = 0; i < n; ++i) {
        const float v = LoadF32(a + 4 * i) - LoadF32(d + 4 * i);
        std::memcpy(r + 4 * i, &v, 4);
      }
    }
    return bytes;
  }

  StatusOr<Parameters> Decode(const std::vector<uint8_t>& bytes,
                              const std::vector<TensorSpec>& expected) const override {
    for (const TensorSpec& s : expected) {
      if (s.dtype != DType::kFloat32) {
        return InvalidArgument(name_ + " decode: expected tensor '" + s.name + "' is " + DTypeName(s.dtype) +
                               "; codecs carry float32 updates");
      }
    }
    if (bytes.size() < kHeaderBytes) {
      return InvalidArgument(name_ + " decode: wrong size: " + std::to_string(bytes.size()) +
                             " bytes, shorter than the 2-byte header");
    }
    if (bytes[0] != static_cast<uint8_t>(id_)) {
      return InvalidArgument(name_ + " decode: wrong codec: the bytes say codec id " + std::to_string(bytes[0]) +
                             ", expected " + std::to_string(static_cast<int>(id_)));
    }
    if (bytes[1] != kCodecLayoutVersion) {
      return InvalidArgument(name_ + " decode: wrong layout version " + std::to_string(bytes[1]) + ", expected " +
                             std::to_string(kCodecLayoutVersion));
    }
    return DecodePayload(bytes.data() + kHeaderBytes, bytes.size() - kHeaderBytes, expected);
  }

  using UpdateCodec::DecodeAdd;
  Status DecodeAdd(const std::vector<uint8_t>& bytes, const std::vector<TensorSpec>& expected, double weight,
                   std::vector<double>* sum, double max_abs) const override {
    if (sum == nullptr || sum->size() != TotalElements(expected)) {
      return InvalidArgument(name_ + " decode: wrong size: the sum has " +
                             std::to_string(sum == nullptr ? 0 : sum->size()) + " elements, the expected tensors " +
                             std::to_string(TotalElements(expected)));
    }
    if (!std::isfinite(weight)) return InvalidArgument(name_ + " decode: weight is not finite (" + Num(weight) + ")");
    if (Sparse() && bytes.size() >= kHeaderBytes && bytes[0] == static_cast<uint8_t>(id_) &&
        bytes[1] == kCodecLayoutVersion) {
      for (const TensorSpec& s : expected) {
        if (s.dtype != DType::kFloat32) return Decode(bytes, expected).status();  // names the dtype
      }
      return AddSparse(bytes.data() + kHeaderBytes, bytes.size() - kHeaderBytes, expected, weight, sum, max_abs);
    }
    GREENFED_ASSIGN_OR_RETURN(Parameters decoded, Decode(bytes, expected));
    // All values are checked before the sum is touched (all-or-nothing).
    for (const TensorBlob& b : decoded) {
      if (std::isinf(max_abs)) break;  // decoded values are finite already
      const size_t n = b.data.size() / 4;
      for (size_t i = 0; i < n; ++i) {
        const float v = LoadF32(b.data.data() + 4 * i);
        if (!(std::fabs(v) <= max_abs)) return OutOfBound(b.name, i, v, max_abs);
      }
    }
    size_t at = 0;
    for (const TensorBlob& b : decoded) {
      const size_t n = b.data.size() / 4;
      for (size_t i = 0; i < n; ++i) (*sum)[at + i] += weight * LoadF32(b.data.data() + 4 * i);
      at += n;
    }
    return Status::Ok();
  }

 protected:
  // `x`: float32 blobs of consistent size. Writes header + payload.
  virtual Status EncodePayload(const Parameters& x, std::vector<uint8_t>* out) const = 0;
  virtual StatusOr<Parameters> DecodePayload(const uint8_t* p, size_t n,
                                             const std::vector<TensorSpec>& expected) const = 0;
  virtual uint64_t PayloadBytes(const std::vector<TensorSpec>& specs) const = 0;
  // Sparse codecs fold their entries into a sum directly (AddSparse) instead of
  // decoding a dense update first.
  virtual bool Sparse() const { return false; }
  virtual Status AddSparse(const uint8_t* /*p*/, size_t /*n*/, const std::vector<TensorSpec>& /*expected*/,
                           double /*weight*/, std::vector<double>* /*sum*/, double /*max_abs*/) const {
    return Internal(name_ + ": no sparse fold");
  }

 public:
  uint64_t EncodedBytes(const std::vector<TensorSpec>& specs) const override {
    return kHeaderBytes + PayloadBytes(specs);
  }

 protected:
  Status WrongSize(size_t got, uint64_t want) const {
    return InvalidArgument(name_ + " decode: wrong size: payload of " + std::to_string(got) + " bytes, expected " +
                           std::to_string(want) + " for the expected tensors");
  }
  Status NotFinite(const std::string& tensor, size_t index, double value) const {
    return InvalidArgument(name_ + " decode: tensor '" + tensor + "' element " + std::to_string(index) +
                           ": value is not finite (" + Num(value) + ")");
  }
  Status OutOfBound(const std::string& tensor, size_t index, double value, double max_abs) const {
    return InvalidArgument(name_ + " decode: tensor '" + tensor + "' element " + std::to_string(index) +
                           ": value out of range (|" + Num(value) + "| > " + Num(max_abs) + ")");
  }
  const std::string& name() const { return name_; }

 private:
  StatusOr<std::vector<uint8_t>> EncodeChecked(const Parameters& x) const {
    for (const TensorBlob& b : x) {
      const size_t n = b.data.size() / sizeof(float);
      for (size_t i = 0; i < n; ++i) {
        const float v = LoadF32(b.data.data() + 4 * i);
        if (!std::isfinite(v)) {
          return InvalidArgument(name_ + " encode: tensor '" + b.name + "' element " + std::to_string(i) +
                                 ": value is not finite (" + Num(v) + ")");
        }
      }
    }
    std::vector<uint8_t> out;
    out.reserve(static_cast<size_t>(EncodedBytes(SpecsOf(x))));
    out.push_back(static_cast<uint8_t>(id_));
    out.push_back(kCodecLayoutVersion);
    GREENFED_RETURN_IF_ERROR(EncodePayload(x, &out));
    return out;
  }

  CodecId id_;
  std::string name_;
};

// ---- none ------------------------------------------------------------------------
class NoneCodec final : public CodecBase {
 public:
  NoneCodec() : CodecBase(CodecId::kNone, "none") {}
  bool Lossless() const override { return true; }

 protected:
  Status EncodePayload(const Parameters& x, std::vector<uint8_t>* out) const override {
    for (const TensorBlob& b : x) out->insert(out->end(), b.data.begin(), b.data.end());
    return Status::Ok();
  }
  uint64_t PayloadBytes(const std::vector<TensorSpec>& specs) const override {
    return TotalElements(specs) * sizeof(float);
  }
  StatusOr<Parameters> DecodePayload(const uint8_t* p, size_t n,
                                     const std::vector<TensorSpec>& expected) const override {
    if (n != PayloadBytes(expected)) return WrongSize(n, PayloadBytes(expected));
    Parameters out = ZerosLike(expected);
    for (TensorBlob& b : out) {
      std::memcpy(b.data.data(), p, b.data.size());
      for (size_t i = 0; i < b.data.size() / 4; ++i) {
        const float v = LoadF32(p + 4 * i);
        if (!std::isfinite(v)) return NotFinite(b.name, i, v);
      }
      p += b.data.size();
    }
    return out;
  }
};

// ---- fp16 ------------------------------------------------------------------------
class Fp16Codec final : public CodecBase {
 public:
  Fp16Codec() : CodecBase(CodecId::kFp16, "fp16") {}

 protected:
  Status EncodePayload(const Parameters& x, std::vector<uint8_t>* out) const override {
    for (const TensorBlob& b : x) {
      const size_t n = b.data.size() / 4;
      const size_t at = out->size();
      out->resize(at + 2 * n);
      uint8_t* dst = out->data() + at;
      for (size_t i = 0; i < n; ++i) {
        const float v = LoadF32(b.data.data() + 4 * i);
        const uint16_t h = FloatToHalf(v);
        if ((h & 0x7c00u) == 0x7c00u) {
          return InvalidArgument("fp16 encode: tensor '" + b.name + "' element " + std::to_string(i) + ": value " +
                                 Num(v) + " is beyond the fp16 range (|v| < 65520)");
        }
        std::memcpy(dst + 2 * i, &h, 2);
      }
    }
    return Status::Ok();
  }
  uint64_t PayloadBytes(const std::vector<TensorSpec>& specs) const override { return TotalElements(specs) * 2; }
  StatusOr<Parameters> DecodePayload(const uint8_t* p, size_t n,
                                     const std::vector<TensorSpec>& expected) const override {
    if (n != PayloadBytes(expected)) return WrongSize(n, PayloadBytes(expected));
    Parameters out = ZerosLike(expected);
    for (TensorBlob& b : out) {
      const size_t count = b.data.size() / 4;
      for (size_t i = 0; i < count; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        const float v = HalfToFloat(h);
        if (!std::isfinite(v)) return NotFinite(b.name, i, v);
        std::memcpy(b.data.data() + 4 * i, &v, 4);
      }
      p += 2 * count;
    }
    return out;
  }
};

// ---- int8 (affine) -----------------------------------------------------------------
class Int8Codec final : public CodecBase {
 public:
  explicit Int8Codec(bool per_channel)
      : CodecBase(per_channel ? CodecId::kInt8Channel : CodecId::kInt8, per_channel ? "int8:channel" : "int8"),
        per_channel_(per_channel) {}

 protected:
  // Quantisation groups of a tensor: its output channels (dim 0) for rank >= 2 in
  // per-channel mode, else the whole tensor. Empty tensors have none.
  uint64_t Groups(const std::vector<int64_t>& shape) const {
    const int64_t n = NumElements(shape);
    if (n <= 0) return 0;
    if (per_channel_ && shape.size() >= 2) return static_cast<uint64_t>(shape[0]);
    return 1;
  }

  Status EncodePayload(const Parameters& x, std::vector<uint8_t>* out) const override {
    for (const TensorBlob& b : x) {
      const uint64_t groups = Groups(b.shape);
      if (groups == 0) continue;
      const size_t n = b.data.size() / 4;
      const size_t per = n / groups;
      const uint8_t* src = b.data.data();
      std::vector<std::pair<float, float>> params(groups);  // (scale, zero_point)
      for (uint64_t g = 0; g < groups; ++g) {
        float lo = std::numeric_limits<float>::infinity();
        float hi = -lo;
        for (size_t i = g * per; i < (g + 1) * per; ++i) {
          const float v = LoadF32(src + 4 * i);
          lo = std::min(lo, v);
          hi = std::max(hi, v);
        }
        // Finite inputs give a finite scale: at most 2 x FLT_MAX / 255.
        const auto scale_f = static_cast<float>((static_cast<double>(hi) - lo) / 255.0);
        params[g] = {scale_f, lo};
        PutF32(scale_f, out);
        PutF32(lo, out);
      }
      const size_t at = out->size();
      out->resize(at + n);
      uint8_t* dst = out->data() + at;
      for (uint64_t g = 0; g < groups; ++g) {
        const double scale = params[g].first;
        const double zero = params[g].second;
        const double inv = scale > 0 ? 1.0 / scale : 0.0;
        for (size_t i = g * per; i < (g + 1) * per; ++i) {
          // Round half up by truncation of a value clamped to [0, 255]: cheaper than
          // nearbyint, and ties have no preferred side in this bound.
          const double q = (static_cast<double>(LoadF32(src + 4 * i)) - zero) * inv;
          dst[i] = static_cast<uint8_t>(std::min(255.0, std::max(0.0, q)) + 0.5);
        }
      }
    }
    return Status::Ok();
  }

  uint64_t PayloadBytes(const std::vector<TensorSpec>& specs) const override {
    uint64_t bytes = 0;
    for (const TensorSpec& s : specs) {
      const int64_t n = NumElements(s.shape);
      if (n <= 0) continue;
      bytes += Groups(s.shape) * 8 + static_cast<uint64_t>(n);
    }
    return bytes;
  }

  StatusOr<Parameters> DecodePayload(const uint8_t* p, size_t n,
                                     const std::vector<TensorSpec>& expected) const override {
    if (n != PayloadBytes(expected)) return WrongSize(n, PayloadBytes(expected));
    Parameters out = ZerosLike(expected);
    for (TensorBlob& b : out) {
      const uint64_t groups = Groups(b.shape);
      if (groups == 0) continue;
      const size_t count = b.data.size() / 4;
      const size_t per = count / groups;
      const uint8_t* q = p + groups * 8;
      for (uint64_t g = 0; g < groups; ++g) {
        const float scale = LoadF32(p + 8 * g);
        const float zero = LoadF32(p + 8 * g + 4);
        const std::string where = name() + " decode: tensor '" + b.name + "'" +
                                  (groups > 1 ? " channel " + std::to_string(g) : std::string()) + ": ";
        if (!std::isfinite(scale)) return InvalidArgument(where + "scale is not finite (" + Num(scale) + ")");
        if (scale < 0) return InvalidArgument(where + "scale is negative (" + Num(scale) + ")");
        if (!std::isfinite(zero)) return InvalidArgument(where + "zero point is not finite (" + Num(zero) + ")");
        // In double, so that the widest finite range decodes; code 255 gives the
        // largest value, so checking it bounds the group.
        const double top = static_cast<double>(zero) + static_cast<double>(scale) * 255.0;
        if (!(std::fabs(top) <= std::numeric_limits<float>::max())) {
          return InvalidArgument(where + "value is not finite (zero point " + Num(zero) + " + 255 x scale " +
                                 Num(scale) + " is beyond float range)");
        }
        for (size_t i = g * per; i < (g + 1) * per; ++i) {
          const auto v = static_cast<float>(static_cast<double>(zero) + static_cast<double>(scale) * q[i]);
          std::memcpy(b.data.data() + 4 * i, &v, 4);
        }
      }
      p = q + count;
    }
    return out;
  }

 private:
  bool per_channel_;
};

// ---- top-k -------------------------------------------------------------------------
class TopKCodec final : public CodecBase {
 public:
  TopKCodec(double fraction, std::string name) : CodecBase(CodecId::kTopK, std::move(name)), fraction_(fraction) {}

  // Entries kept out of `n`.
  uint64_t K(uint64_t n) const {
    if (n == 0) return 0;
    const double k = std::round(fraction_ * static_cast<double>(n));
    return std::min<uint64_t>(n, std::max<uint64_t>(1, static_cast<uint64_t>(k)));
  }

 protected:
  Status EncodePayload(const Parameters& x, std::vector<uint8_t>* out) const override {
    uint64_t n = 0;
    for (const TensorBlob& b : x) n += b.data.size() / 4;
    if (n > std::numeric_limits<uint32_t>::max()) {
      return InvalidArgument(name() + " encode: " + std::to_string(n) + " elements do not fit u32 indices");
    }
    std::vector<float> flat(static_cast<size_t>(n));
    size_t at = 0;
    for (const TensorBlob& b : x) {
      std::memcpy(flat.data() + at, b.data.data(), b.data.size());
      at += b.data.size() / 4;
    }
    const uint64_t k = K(n);
    // Largest |value| first; ties by lower index, so the choice is deterministic.
    // The k-th largest magnitude is the threshold; entries above it are kept, then
    // entries equal to it by increasing index until k. Indices come out sorted.
    std::vector<float> mag(flat.size());
    for (size_t i = 0; i < flat.size(); ++i) mag[i] = std::fabs(flat[i]);
    std::vector<uint32_t> idx;
    idx.reserve(static_cast<size_t>(k));
    if (k > 0) {
      std::vector<float> order = mag;
      std::nth_element(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k - 1), order.end(),
                       std::greater<float>());
      const float threshold = order[static_cast<size_t>(k - 1)];
      size_t above = 0;
      for (float m : mag) above += m > threshold;
      size_t ties = static_cast<size_t>(k) - above;
      for (uint32_t i = 0; i < mag.size(); ++i) {
        if (mag[i] > threshold) {
          idx.push_back(i);
        } else if (mag[i] == threshold && ties > 0) {
          idx.push_back(i);
          --ties;
        }
      }
    }
    PutU32(static_cast<uint32_t>(k), out);
    for (uint32_t i : idx) PutU32(i, out);
    for (uint32_t i : idx) PutF32(flat[i], out);
    return Status::Ok();
  }

  uint64_t PayloadBytes(const std::vector<TensorSpec>& specs) const override {
    return 4 + 8 * K(TotalElements(specs));
  }

  bool Sparse() const override { return true; }

  // Checks every entry before anything is written: k, sizes, indices, values.
  Status CheckEntries(const uint8_t* p, size_t n, const std::vector<TensorSpec>& expected,
                      double max_abs = std::numeric_limits<double>::infinity()) const {
    const uint64_t total = TotalElements(expected);
    if (n < 4) return WrongSize(n, PayloadBytes(expected));
    const uint32_t k = GetU32(p);
    if (k != K(total)) {
      return InvalidArgument(name() + " decode: wrong size: k is " + std::to_string(k) + ", expected " +
                             std::to_string(K(total)) + " for " + std::to_string(total) + " elements");
    }
    if (n != PayloadBytes(expected)) return WrongSize(n, PayloadBytes(expected));
    const uint8_t* indices = p + 4;
    const uint8_t* values = indices + 4 * static_cast<size_t>(k);
    int64_t previous = -1;
    size_t t = 0;
    uint64_t start = 0;  // flat index of tensor t's first element
    for (uint32_t j = 0; j < k; ++j) {
      const uint32_t i = GetU32(indices + 4 * j);
      if (i >= total) {
        return InvalidArgument(name() + " decode: entry " + std::to_string(j) + ": index out of range (" +
                               std::to_string(i) + " >= " + std::to_string(total) + " elements)");
      }
      if (static_cast<int64_t>(i) <= previous) {
        return InvalidArgument(name() + " decode: entry " + std::to_string(j) +
                               ": indices not strictly increasing (" + std::to_string(i) + " after " +
                               std::to_string(previous) + ")");
      }
      previous = i;
      const float v = LoadF32(values + 4 * j);
      if (!std::isfinite(v) || !(std::fabs(v) <= max_abs)) {
        while (i >= start + static_cast<uint64_t>(NumElements(expected[t].shape))) {
          start += static_cast<uint64_t>(NumElements(expected[t].shape));
          ++t;
        }
        if (!std::isfinite(v)) return NotFinite(expected[t].name, static_cast<size_t>(i - start), v);
        return OutOfBound(expected[t].name, static_cast<size_t>(i - start), v, max_abs);
      }
    }
    return Status::Ok();
  }

  StatusOr<Parameters> DecodePayload(const uint8_t* p, size_t n,
                                     const std::vector<TensorSpec>& expected) const override {
    GREENFED_RETURN_IF_ERROR(CheckEntries(p, n, expected));
    Parameters out = ZerosLike(expected);
    std::vector<uint64_t> starts;  // flat index of each tensor's first element
    uint64_t s = 0;
    for (const TensorBlob& b : out) {
      starts.push_back(s);
      s += b.data.size() / 4;
    }
    const uint32_t k = GetU32(p);
    const uint8_t* indices = p + 4;
    const uint8_t* values = indices + 4 * static_cast<size_t>(k);
    size_t t = 0;
    for (uint32_t j = 0; j < k; ++j) {
      const uint32_t i = GetU32(indices + 4 * j);
      while (t + 1 < starts.size() && i >= starts[t + 1]) ++t;
      std::memcpy(out[t].data.data() + 4 * static_cast<size_t>(i - starts[t]), values + 4 * j, 4);
    }
    return out;
  }

  Status AddSparse(const uint8_t* p, size_t n, const std::vector<TensorSpec>& expected, double weight,
                   std::vector<double>* sum, double max_abs) const override {
    GREENFED_RETURN_IF_ERROR(CheckEntries(p, n, expected, max_abs));
    const uint32_t k = GetU32(p);
    const uint8_t* indices = p + 4;
    const uint8_t* values = indices + 4 * static_cast<size_t>(k);
    for (uint32_t j = 0; j < k; ++j) (*sum)[GetU32(indices + 4 * j)] += weight * LoadF32(values + 4 * j);
    return Status::Ok();
  }

 private:
  double fraction_;
};

}  // namespace

uint16_t FloatToHalf(float value) {
  uint32_t x;
  std::memcpy(&x, &value, 4);
  const auto sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t exp = (x >> 23) & 0xffu;
  uint32_t mant = x & 0x7fffffu;
  if (exp == 0xffu) return static_cast<uint16_t>(sign | 0x7c00u | (mant ? 0x200u : 0u));  // inf, nan
  const int32_t e = static_cast<int32_t>(exp) - 127 + 15;
  if (e >= 31) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> inf
  if (e <= 0) {
    // fp16 subnormal (or zero): m x 2^-24 with m = (1.mant x 2^23) >> (14 - e).
    if (e < -10) return sign;
    mant |= 0x800000u;
    const auto shift = static_cast<uint32_t>(14 - e);
    uint32_t m = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (m & 1u))) ++m;  // may carry into the smallest normal
    return static_cast<uint16_t>(sign | m);
  }
  uint32_t h = (static_cast<uint32_t>(e) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // a carry may reach inf: correct
  return static_cast<uint16_t>(sign | h);
}

float HalfToFloat(uint16_t half) {
  const uint32_t sign = static_cast<uint32_t>(half & 0x8000u) << 16;
  const uint32_t exp = (half >> 10) & 0x1fu;
  const uint32_t mant = half & 0x3ffu;
  uint32_t x;
  if (exp == 0) {
    const float v = std::ldexp(static_cast<float>(mant), -24);
    return (half & 0x8000u) ? -v : v;
  }
  if (exp == 31) {
    x = sign | 0x7f800000u | (mant << 13);
  } else {
    x = sign | ((exp - 15 + 127) << 23) | (mant << 13);
  }
  float v;
  std::memcpy(&v, &x, 4);
  return v;
}

StatusOr<std::unique_ptr<UpdateCodec>> MakeCodec(const std::string& name) {
  if (name == "none") return std::unique_ptr<UpdateCodec>(std::make_unique<NoneCodec>());
  if (name == "fp16") return std::unique_ptr<UpdateCodec>(std::make_unique<Fp16Codec>());
  if (name == "int8") return std::unique_ptr<UpdateCodec>(std::make_unique<Int8Codec>(false));
  if (name == "int8:channel") return std::unique_ptr<UpdateCodec>(std::make_unique<Int8Codec>(true));
  const std::string topk = "topk:";
  if (name.compare(0, topk.size(), topk) == 0) {
    const std::string text = name.substr(topk.size());
    char* end = nullptr;
    const double fraction = text.empty() ? std::nan("") : std::strtod(text.c_str(), &end);
    if (text.empty() || end == nullptr || *end != '\0' || !std::isfinite(fraction)) {
      return InvalidArgument("codec '" + name + "': topk fraction '" + text + "' is not a number");
    }
    if (!(fraction > 0 && fraction <= 1)) {
      return InvalidArgument("codec '" + name + "': topk fraction must be in (0, 1], got " + Num(fraction));
    }
    return std::unique_ptr<UpdateCodec>(std::make_unique<TopKCodec>(fraction, name));
  }
  return InvalidArgument("unknown codec '" + name + "'; known: " + CodecNames());
}

std::string CodecNames() { return "none, fp16, int8, int8:channel, topk:FRACTION"; }

bool IsDownlinkCodec(const UpdateCodec& codec) { return codec.Name().compare(0, 5, "topk:") != 0; }

std::string DownlinkCodecNames() { return "none, fp16, int8, int8:channel"; }

std::string CodecCapability(const UpdateCodec& codec) {
  const std::string name = codec.Name();
  return "codec:" + name.substr(0, name.find(':'));
}

}  // namespace greenfed
