// The client's side of the update codecs (codec.h, docs/codecs.md), shared by the
// socket client and `greenfed simulate`, so that both encode and decode alike.
//
// Contract:
//   * EncodeUpdate encodes a float32 update (the delta w_local - w_base; a lossy
//     codec always carries deltas) with error feedback: the residual lives in the
//     client's ClientState, group kGroupCodecResidual, and is replaced by what
//     this encoding did not carry. A residual whose tensors do not match the
//     update's (another model) is dropped and feedback restarts from zero. The
//     state starts empty in every process and is dropped with the rest of the
//     ClientState when the client is given another index on rejoin.
//   * DecodeFitParameters turns a Fit's group "params" into the model the client
//     trains from: the plain tensors, or the downlink codec's decoding of them.
//     The client's delta is taken against this decoded model (docs/codecs.md,
//     "Downlink").
//   * Call both inside the metered fit, so that encode and decode CPU time is in
//     the client's compute energy.
// Thread safety: pure functions; the caller owns `state` (one thread at a time).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "greenfed/codec.h"
#include "greenfed/protocol.h"
#include "greenfed/status.h"
#include "greenfed/task.h"
#include "greenfed/tensor.h"

namespace greenfed {

// ClientState group of the error-feedback residual.
constexpr const char* kGroupCodecResidual = "codec_residual";

struct EncodedUpdate {
  EncodedParams encoded;        // what FitResMsg::encoded carries: codec name, specs, bytes
  uint64_t dense_bytes = 0;     // the update's plain f32 bytes, for logs and ratios
};

// Encodes `update` with `codec` (not "none": a lossless codec is not an encoding,
// the caller sends the plain tensors; FailedPrecondition) and error feedback in
// state group kGroupCodecResidual (`state` null = no feedback). The codec's
// InvalidArgument for a non-f32 or non-finite update passes through.
StatusOr<EncodedUpdate> EncodeUpdate(const UpdateCodec& codec, const Parameters& update, ClientState* state);

// The codec a Fit's config names under `key` (kConfigUplinkCodec or
// kConfigDownlinkCodec); "none" when the key is absent (a coordinator without
// codecs). InvalidArgument naming the key for an unknown codec or a non-string.
StatusOr<std::unique_ptr<UpdateCodec>> CodecFromConfig(const ConfigMap& config, const char* key);

// The global model of a Fit: `plain` when `encoded` is plain; otherwise the
// decoding of `encoded`, whose codec must be the one the config names under
// kConfigDownlinkCodec ("wrong codec" otherwise). Decoding is strict (codec.h).
StatusOr<Parameters> DecodeFitParameters(Parameters plain, const EncodedParams& encoded, const ConfigMap& config);

// The codec capabilities a client announces at Join: CodecCapability() of every
// lossy codec MakeCodec knows ("codec:fp16", "codec:int8", "codec:topk").
std::vector<std::string> CodecCapabilities();

}  // namespace greenfed
