// bench_codec: time to Encode + Decode a FitRes carrying the example CNN's parameters
// (105,866 floats), as a ratio against copying the same bytes twice with memcpy (out
// to a frame, back into a blob) into buffers allocated up front. A second baseline
// allocates fresh vectors for each copy, as the codec must (it returns owned frames
// and blobs): with glibc's default trim threshold the ~400 KB fc1.weight buffers go
// back to the kernel every op and are page-faulted in again, so that baseline shows
// how much of the codec's time is the allocator rather than the codec.
// All three are measured in this run, interleaved, best of 5 repetitions, as process
// CPU time (the build machines are shared, so wall time would count other jobs).
//
// Usage: bench_codec [iterations_per_repetition]   (default 1000)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench_util.h"
#include "greenfed/protocol.h"

namespace {

using greenfed::bench::CnnShapes;
using greenfed::bench::CpuSeconds;
using greenfed::bench::Escape;

greenfed::FitResMsg MakeFitRes() {
  greenfed::FitResMsg m;
  m.round = 12;
  m.is_delta = true;
  m.num_examples = 6000;
  m.train_loss = 0.41;
  m.fit_s = 3.2;
  size_t k = 0;
  for (const auto& s : CnnShapes()) {
    std::vector<float> values(static_cast<size_t>(greenfed::NumElements(s.dims)));
    for (auto& v : values) v = 0.05f * std::sin(static_cast<float>(k++));
    m.parameters.push_back(greenfed::MakeFloatBlob(s.name, s.dims, values));
  }
  greenfed::EnergyRecord fit;
  fit.phase = greenfed::Phase::kFit;
  fit.round = 12;
  fit.wall_s = 3.2;
  fit.cpu_s = 6.1;
  fit.energy_j = 88.0;
  fit.source = greenfed::EnergySource::kModel;
  greenfed::EnergyRecord comm = fit;
  comm.phase = greenfed::Phase::kComm;
  comm.source = greenfed::EnergySource::kComm;
  comm.bytes_sent = 424000;
  m.energy = {fit, comm};
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  long iterations = 1000;
  if (argc > 1) {
    char* end = nullptr;
    iterations = std::strtol(argv[1], &end, 10);
    if (end == argv[1] || *end != '\0' || iterations <= 0) {
      std::fprintf(stderr, "usage: %s [iterations_per_repetition > 0], got '%s'\n", argv[0], argv[1]);
      return 2;
    }
  }
  constexpr int kRepetitions = 5;

  const greenfed::Message msg = MakeFitRes();
  const greenfed::Parameters& params = std::get<greenfed::FitResMsg>(msg).parameters;
  const size_t message_bytes = greenfed::FramesBytes(greenfed::Encode(msg));

  // Baseline buffers exist up front: the baseline is the copy alone.
  std::vector<std::vector<uint8_t>> out(params.size());
  std::vector<std::vector<uint8_t>> back(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    out[i].resize(params[i].data.size());
    back[i].resize(params[i].data.size());
  }

  auto run_codec = [&]() -> bool {
    for (long it = 0; it < iterations; ++it) {
      const greenfed::Frames frames = greenfed::Encode(msg);
      greenfed::StatusOr<greenfed::Message> decoded = greenfed::Decode(frames);
      if (!decoded.ok()) {
        std::fprintf(stderr, "decode failed: %s\n", decoded.status().ToString().c_str());
        return false;
      }
      Escape(&decoded.value());
    }
    return true;
  };
  auto run_memcpy = [&]() {
    for (long it = 0; it < iterations; ++it) {
      for (size_t i = 0; i < params.size(); ++i) {
        std::memcpy(out[i].data(), params[i].data.data(), params[i].data.size());
        Escape(out[i].data());
        std::memcpy(back[i].data(), out[i].data(), out[i].size());
        Escape(back[i].data());
      }
    }
  };
  auto run_alloc_copy = [&]() {
    for (long it = 0; it < iterations; ++it) {
      for (const auto& p : params) {
        std::vector<uint8_t> frame(p.data);
        Escape(frame.data());
        std::vector<uint8_t> blob(frame);
        Escape(blob.data());
      }
    }
  };
  auto seconds_of = [](auto&& fn) {
    const double start = CpuSeconds();
    fn();
    return CpuSeconds() - start;
  };

  // Warm-up: page in buffers and the allocator's arenas.
  if (!run_codec()) return 1;
  run_memcpy();
  run_alloc_copy();

  double codec_s = 1e300;
  double memcpy_s = 1e300;
  double alloc_s = 1e300;
  for (int r = 0; r < kRepetitions; ++r) {
    bool ok = true;
    codec_s = std::min(codec_s, seconds_of([&] { ok = run_codec(); }));
    if (!ok) return 1;
    memcpy_s = std::min(memcpy_s, seconds_of(run_memcpy));
    alloc_s = std::min(alloc_s, seconds_of(run_alloc_copy));
  }
  for (size_t i = 0; i < params.size(); ++i) {
    if (back[i] != params[i].data) {
      std::fprintf(stderr, "memcpy baseline corrupted tensor %s\n", params[i].name.c_str());
      return 1;
    }
  }

  const double codec_us = codec_s / static_cast<double>(iterations) * 1e6;
  const double memcpy_us = memcpy_s / static_cast<double>(iterations) * 1e6;
  const double alloc_us = alloc_s / static_cast<double>(iterations) * 1e6;
  std::printf(
      "codec encode+decode %.0f KB: %.1f us/op, memcpy baseline %.1f us/op, ratio %.2f "
      "(alloc+memcpy baseline %.1f us/op, ratio %.2f)\n",
      static_cast<double>(message_bytes) / 1000.0, codec_us, memcpy_us, codec_us / memcpy_us, alloc_us,
      codec_us / alloc_us);
  return 0;
}
