// Update codecs: how a model update (float32 tensors) is packed into bytes for the
// wire, and unpacked strictly on the other side (docs/codecs.md). Pure: no sockets,
// no libtorch.
//
//   none          4 bytes per element, bit-exact.
//   fp16          IEEE binary16, round to nearest even: within half an fp16 ulp.
//   int8          affine per tensor: x ~= zero_point + scale * q, q in [0, 255],
//                 scale = (max - min) / 255 and zero_point = min sent along as f32.
//                 Within scale/2 of x (the float zero point keeps that bound; an
//                 integer zero point would shift the grid by up to scale/2).
//   int8:channel  the same with one (scale, zero_point) per output channel (dim 0)
//                 of every tensor of rank >= 2; rank 0/1 tensors stay per tensor.
//   topk:F        the k = max(1, round(F * N)) largest |values| of the whole update
//                 (N elements in all), as k strictly increasing u32 flat indices and k
//                 f32 values; F in (0, 1]. Exact on the kept entries.
//
// Error feedback: Encode takes an optional residual, the client's state across rounds
// (empty at start or after a restart). With one, the codec encodes update + residual
// and leaves in it what the encoding did not carry, so that, over rounds,
// sum of decoded updates + residual == sum of inputs (up to float rounding of the
// additions). Top-k needs it to converge; the dense lossy codecs may use it too.
//
// Wire layout: u8 codec id, u8 layout version (1), then the codec's payload, all
// little-endian. The receiver knows the tensor specs (the manifest it expects), so
// names and shapes are not repeated.
//
// Decoding is strict: every malformed input is an InvalidArgument whose message
// names the codec, the tensor or index, and the reason, e.g.
// "int8 decode: tensor 'fc1.weight' channel 3: scale is not finite (nan)".
// Reasons used: "wrong codec", "wrong layout version", "wrong size",
// "index out of range", "indices not strictly increasing", "scale is not finite",
// "scale is negative", "zero point is not finite", "value is not finite",
// "value out of range" (DecodeAdd's max_abs).
//
// Thread safety: codecs are immutable after MakeCodec; Encode/Decode may run
// concurrently on one codec object (each call's residual is its own).
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "greenfed/status.h"
#include "greenfed/tensor.h"

namespace greenfed {

// Current layout version, the second byte of every encoding.
inline constexpr uint8_t kCodecLayoutVersion = 1;

class UpdateCodec {
 public:
  virtual ~UpdateCodec() = default;

  // The name MakeCodec accepts, e.g. "int8", "topk:0.01".
  virtual std::string Name() const = 0;

  // Encodes float32 `update`. `residual`: null = no error feedback; otherwise the
  // error-feedback state, empty (all zero) or matching `update`'s specs, replaced by
  // what this encoding left out. InvalidArgument for a non-f32 tensor, a residual of
  // other specs, a non-finite value, or (fp16) a value beyond the fp16 range.
  virtual StatusOr<std::vector<uint8_t>> Encode(const Parameters& update, Parameters* residual) const = 0;

  // Decodes bytes produced by Encode for tensors of `expected` (all f32). Strict: see
  // the file comment for the named reasons.
  virtual StatusOr<Parameters> Decode(const std::vector<uint8_t>& bytes,
                                      const std::vector<TensorSpec>& expected) const = 0;

  // Folds weight x the decoded update into `sum`, the tensors of `expected`
  // flattened in order (sum->size() == their element count, else InvalidArgument),
  // as a streaming aggregator does. Top-k adds only its k entries, without building
  // the dense update. Checked as strictly as Decode, and all-or-nothing: on any
  // error `sum` is left unchanged. `max_abs`: every decoded value must have
  // |value| <= max_abs, else InvalidArgument "value out of range" (an aggregator's
  // bound on a hostile but finite update, e.g. kMaxAbsUpdateValue).
  virtual Status DecodeAdd(const std::vector<uint8_t>& bytes, const std::vector<TensorSpec>& expected, double weight,
                           std::vector<double>* sum, double max_abs) const = 0;
  // The same without a bound on |value|.
  Status DecodeAdd(const std::vector<uint8_t>& bytes, const std::vector<TensorSpec>& expected, double weight,
                   std::vector<double>* sum) const {
    return DecodeAdd(bytes, expected, weight, sum, std::numeric_limits<double>::infinity());
  }

  // The exact number of bytes Encode produces for tensors of `specs`.
  virtual uint64_t EncodedBytes(const std::vector<TensorSpec>& specs) const = 0;

  // True when Decode(Encode(x)) == x bit for bit ("none").
  virtual bool Lossless() const { return false; }
};

// "none", "fp16", "int8", "int8:channel", "topk:FRACTION" with FRACTION in (0, 1].
// InvalidArgument naming the problem otherwise ("topk fraction must be in (0, 1]").
StatusOr<std::unique_ptr<UpdateCodec>> MakeCodec(const std::string& name);

// The names MakeCodec knows, for --help: "none, fp16, int8, int8:channel, topk:FRACTION".
std::string CodecNames();

// Whether `codec` may carry the global model in Fit (--downlink-codec): the dense
// ones. Top-k of the weights would zero 99% of the model, and a sparse encoding's
// size does not bound the model it claims to describe.
bool IsDownlinkCodec(const UpdateCodec& codec);
std::string DownlinkCodecNames();  // "none, fp16, int8, int8:channel"

// The capability a client announces at Join for a codec: "codec:" + the codec's
// family ("codec:int8", "codec:topk").
std::string CodecCapability(const UpdateCodec& codec);

// IEEE binary16 conversions (round to nearest even; overflow -> inf), exposed for tests.
uint16_t FloatToHalf(float value);
float HalfToFloat(uint16_t half);

}  // namespace greenfed
