// Frame splitting shared by the libFuzzer targets and the seed-corpus generator.
//
// Input format ("length-prefixed frames"): the input is a sequence of records
//   [u32 little-endian length L][L bytes]
// each of which becomes one ZeroMQ frame, in order. A length that runs past the end
// of the input is cut to the bytes that remain (so every input splits somehow), a
// trailing record shorter than its 4-byte prefix is ignored, and at most kMaxFrames
// frames are taken. JoinFrames is the inverse, used to write seeds from Encode().
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "greenfed/protocol.h"

namespace greenfed::fuzz {

constexpr size_t kMaxFrames = 64;

inline Frames SplitFrames(const uint8_t* data, size_t size) {
  Frames frames;
  size_t at = 0;
  while (size - at >= 4 && frames.size() < kMaxFrames) {
    uint32_t len = 0;
    for (int i = 3; i >= 0; --i) len = (len << 8) | data[at + static_cast<size_t>(i)];
    at += 4;
    const size_t take = len < size - at ? len : size - at;
    frames.emplace_back(data + at, data + at + take);
    at += take;
  }
  return frames;
}

inline std::vector<uint8_t> JoinFrames(const Frames& frames) {
  std::vector<uint8_t> out;
  for (const auto& f : frames) {
    const auto len = static_cast<uint32_t>(f.size());
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(len >> (8 * i)));
    out.insert(out.end(), f.begin(), f.end());
  }
  return out;
}

}  // namespace greenfed::fuzz
