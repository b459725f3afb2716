// libFuzzer target: greenfed::Decode on hostile frames (tests/fuzz/fuzz_frames.h says how the
// input splits into frames). Decode must return a Status, never crash, throw or trip a
// sanitizer. For every message it accepts, the round trip must hold:
//   Decode(Encode(m)) succeeds, and Encode of that result is byte-identical to Encode(m)
// (the decoder loses nothing the encoder writes, and the encoder is deterministic).
// A rejected input must map to a known wire code (DecodeErrorCode, protocol v2).
// A violated invariant aborts, which libFuzzer reports as a crash with the input saved.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "fuzz_frames.h"
#include "greenfed/protocol.h"

namespace {

[[noreturn]] void Fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz_decode: invariant violated: %s: %s\n", what, detail.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace greenfed;
  const Frames frames = fuzz::SplitFrames(data, size);
  // A small limit as well as the default, so that the size check is exercised on every input.
  const uint64_t small_limit = FramesBytes(frames) / 2;
  (void)Decode(frames, small_limit);
  StatusOr<Message> decoded = Decode(frames);
  if (!decoded.ok()) {
    // Every failure maps to a code a peer may send back.
    const auto code = static_cast<uint16_t>(DecodeErrorCode(decoded.status()));
    if (code == 0 || code > kMaxErrorCode) Fail("DecodeErrorCode out of range", std::to_string(code));
    if (ErrorCodeName(static_cast<ErrorCode>(code)) == nullptr) Fail("ErrorCodeName is null", std::to_string(code));
    return 0;
  }
  const Frames once = Encode(decoded.value());
  StatusOr<Message> again = Decode(once);
  if (!again.ok()) Fail("Decode(Encode(m)) failed", again.status().ToString());
  if (TypeOf(again.value()) != TypeOf(decoded.value())) Fail("message type changed", MsgTypeName(TypeOf(again.value())));
  if (Encode(again.value()) != once) Fail("Encode(Decode(Encode(m))) != Encode(m)", MsgTypeName(TypeOf(again.value())));
  return 0;
}
