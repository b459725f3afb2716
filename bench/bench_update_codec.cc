// bench_update_codec: encode and decode throughput of each update codec (codec.h) on
// the example CNN's update (105,866 float32 parameters, 8 tensors, 423,464 bytes), as
// a ratio against one memcpy of the same 423,464 bytes into a buffer allocated up
// front, measured in the same run; "fold" is DecodeAdd into a double sum with the
// |value| <= 1e9 bound (what FedAvg's streaming aggregator does with each result). Also prints each codec's encoded bytes and the
// ratio of float32 bytes to encoded bytes.
// Process CPU time, best of 5 repetitions, interleaved (the build machines are
// shared, so wall time would count other jobs). Rows marked EF run with error
// feedback (a residual carried across iterations), as a top-k client runs it.
//
// Usage: bench_update_codec [iterations_per_repetition]   (default 200)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench_util.h"
#include "greenfed/codec.h"
#include "greenfed/tensor.h"

namespace {

using greenfed::bench::CnnShapes;
using greenfed::bench::CpuSeconds;
using greenfed::bench::Escape;

// The CNN's shapes (examples/fashion_mnist/model.cc), values like a delta update.
greenfed::Parameters CnnUpdate() {
  greenfed::Parameters p;
  size_t k = 0;
  for (const auto& s : CnnShapes()) {
    std::vector<float> values(static_cast<size_t>(greenfed::NumElements(s.dims)));
    for (auto& v : values) {
      v = 0.01f * std::sin(0.37f * static_cast<float>(k)) * std::cos(static_cast<float>(k % 97));
      ++k;
    }
    p.push_back(greenfed::MakeFloatBlob(s.name, s.dims, values));
  }
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  long iterations = 200;
  if (argc > 1) {
    char* end = nullptr;
    iterations = std::strtol(argv[1], &end, 10);
    if (end == argv[1] || *end != '\0' || iterations <= 0) {
      std::fprintf(stderr, "usage: %s [iterations_per_repetition > 0], got '%s'\n", argv[0], argv[1]);
      return 2;
    }
  }
  constexpr int kRepetitions = 5;
  const greenfed::Parameters update = CnnUpdate();
  const std::vector<greenfed::TensorSpec> specs = greenfed::SpecsOf(update);
  const size_t float_bytes = greenfed::TotalBytes(update);

  std::vector<uint8_t> copy(float_bytes);
  auto run_memcpy = [&] {
    for (long it = 0; it < iterations; ++it) {
      size_t at = 0;
      for (const auto& b : update) {
        std::memcpy(copy.data() + at, b.data.data(), b.data.size());
        at += b.data.size();
      }
      Escape(copy.data());
    }
  };
  auto seconds_of = [](auto&& fn) {
    const double start = CpuSeconds();
    fn();
    return CpuSeconds() - start;
  };
  run_memcpy();
  double memcpy_s = 1e300;
  for (int r = 0; r < kRepetitions; ++r) memcpy_s = std::min(memcpy_s, seconds_of(run_memcpy));
  const double memcpy_us = memcpy_s / static_cast<double>(iterations) * 1e6;
  std::printf("update: %zu floats, %zu bytes; memcpy baseline %.1f us/op\n", float_bytes / 4, float_bytes, memcpy_us);
  std::printf("%-14s %-4s %10s %8s %12s %8s %12s %8s %12s %8s\n", "codec", "", "bytes", "x fewer", "encode us",
              "ratio", "decode us", "ratio", "fold us", "ratio");

  struct Case {
    const char* name;
    bool feedback;  // carry a residual across iterations (error feedback)
  };
  for (const Case& c : {Case{"none", false}, Case{"fp16", false}, Case{"int8", false}, Case{"int8:channel", false},
                        Case{"topk:0.01", false}, Case{"topk:0.01", true}, Case{"topk:0.1", true},
                        Case{"int8", true}}) {
    const char* name = c.name;
    const bool feedback = c.feedback;
    auto codec = greenfed::MakeCodec(name);
    if (!codec.ok()) {
      std::fprintf(stderr, "%s\n", codec.status().ToString().c_str());
      return 1;
    }
    greenfed::Parameters residual;
    std::vector<uint8_t> encoded;
    bool ok = true;
    auto run_encode = [&] {
      for (long it = 0; it < iterations && ok; ++it) {
        auto bytes = (*codec)->Encode(update, feedback ? &residual : nullptr);
        if (!bytes.ok()) {
          std::fprintf(stderr, "%s encode: %s\n", name, bytes.status().ToString().c_str());
          ok = false;
          return;
        }
        encoded = std::move(bytes).value();
        Escape(encoded.data());
      }
    };
    auto run_decode = [&] {
      for (long it = 0; it < iterations && ok; ++it) {
        auto back = (*codec)->Decode(encoded, specs);
        if (!back.ok()) {
          std::fprintf(stderr, "%s decode: %s\n", name, back.status().ToString().c_str());
          ok = false;
          return;
        }
        Escape(back->data());
      }
    };
    std::vector<double> sum(float_bytes / 4, 0.0);
    auto run_fold = [&] {
      for (long it = 0; it < iterations && ok; ++it) {
        // With FedAvg's bound on |value| (kMaxAbsUpdateValue), as FedAvgAccumulator::AddEncoded calls it.
        greenfed::Status folded = (*codec)->DecodeAdd(encoded, specs, 0.5, &sum, 1e9);
        if (!folded.ok()) {
          std::fprintf(stderr, "%s fold: %s\n", name, folded.ToString().c_str());
          ok = false;
          return;
        }
        Escape(sum.data());
      }
    };
    run_encode();
    run_decode();
    run_fold();
    double encode_s = 1e300;
    double decode_s = 1e300;
    double fold_s = 1e300;
    for (int r = 0; r < kRepetitions && ok; ++r) {
      encode_s = std::min(encode_s, seconds_of(run_encode));
      decode_s = std::min(decode_s, seconds_of(run_decode));
      fold_s = std::min(fold_s, seconds_of(run_fold));
    }
    if (!ok) return 1;
    const double encode_us = encode_s / static_cast<double>(iterations) * 1e6;
    const double decode_us = decode_s / static_cast<double>(iterations) * 1e6;
    const double fold_us = fold_s / static_cast<double>(iterations) * 1e6;
    std::printf("%-14s %-4s %10zu %8.2f %12.1f %8.2f %12.1f %8.2f %12.1f %8.2f\n", name, feedback ? "EF" : "",
                encoded.size(), static_cast<double>(float_bytes) / static_cast<double>(encoded.size()), encode_us,
                encode_us / memcpy_us, decode_us, decode_us / memcpy_us, fold_us, fold_us / memcpy_us);
  }
  return 0;
}
