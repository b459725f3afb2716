#include "greenfed/client/update_encoding.h"

#include <utility>

namespace greenfed {

StatusOr<EncodedUpdate> EncodeUpdate(const UpdateCodec& codec, const Parameters& update, ClientState* state) {
  if (codec.Lossless()) {
    return FailedPrecondition("codec '" + codec.Name() +
                              "' is lossless: send the plain tensors instead of an encoding");
  }
  Parameters* residual = nullptr;
  if (state != nullptr) {
    residual = &(*state)[kGroupCodecResidual];
    // Another model's residual (a task that changed its tensors) cannot be added
    // to this update: feedback restarts from zero.
    if (!residual->empty() && SpecsOf(*residual) != SpecsOf(update)) residual->clear();
  }
  EncodedUpdate out;
  out.dense_bytes = TotalBytes(update);
  out.encoded.codec = codec.Name();
  out.encoded.specs = SpecsOf(update);
  // Encode writes the residual only once the encoding has succeeded (a failed one
  // leaves it as it was, or all zero where it was empty).
  GREENFED_ASSIGN_OR_RETURN(out.encoded.bytes, codec.Encode(update, residual));
  return out;
}

StatusOr<std::unique_ptr<UpdateCodec>> CodecFromConfig(const ConfigMap& config, const char* key) {
  GREENFED_ASSIGN_OR_RETURN(std::string name, ConfigString(config, key, kCodecNone));
  StatusOr<std::unique_ptr<UpdateCodec>> codec = MakeCodec(name);
  if (!codec.ok()) return codec.status().WithContext(std::string("config key '") + key + "'");
  return codec;
}

StatusOr<Parameters> DecodeFitParameters(Parameters plain, const EncodedParams& encoded, const ConfigMap& config) {
  GREENFED_ASSIGN_OR_RETURN(std::string want, ConfigString(config, kConfigDownlinkCodec, kCodecNone));
  if (encoded.codec != want) {
    return InvalidArgument("Fit: wrong codec: the model is encoded with '" + encoded.codec +
                           "' but the run's downlink codec is '" + want + "'");
  }
  if (encoded.plain()) return plain;
  GREENFED_ASSIGN_OR_RETURN(std::unique_ptr<UpdateCodec> codec, MakeCodec(encoded.codec));
  // A sparse encoding's size says nothing about the model's: a hostile Fit could
  // claim 10^10 elements in a few bytes. Weights travel dense.
  if (!IsDownlinkCodec(*codec)) {
    return InvalidArgument("Fit: codec '" + encoded.codec + "' is not a downlink codec (" + DownlinkCodecNames() + ")");
  }
  StatusOr<Parameters> decoded = codec->Decode(encoded.bytes, encoded.specs);
  if (!decoded.ok()) return decoded.status().WithContext("Fit: the global model");
  return decoded;
}

std::vector<std::string> CodecCapabilities() {
  std::vector<std::string> caps;
  for (const char* name : {"fp16", "int8", "topk:1"}) {
    StatusOr<std::unique_ptr<UpdateCodec>> codec = MakeCodec(name);
    if (codec.ok()) caps.push_back(CodecCapability(**codec));
  }
  return caps;
}

}  // namespace greenfed
