// greenfed_make_synthetic DIR [--train N] [--test N] [--seed S]
// Writes synthetic Fashion-MNIST IDX files (see synthetic_data.h) into DIR,
// creating it if needed. Used by the multi-process and network-namespace tests.
#include <cstdint>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <limits>
#include <string>

#include "synthetic_data.h"

namespace {

constexpr char kUsage[] = "usage: greenfed_make_synthetic DIR [--train N] [--test N] [--seed S]";

bool ParseU64(const std::string& text, uint64_t max, uint64_t* out) {
  if (text.empty() || text[0] == '-') return false;
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(text.c_str(), &end, 10);
  if (errno != 0 || end == text.c_str() || *end != '\0' || v > max) return false;
  *out = v;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  uint64_t train = 2000;
  uint64_t test = 500;
  uint64_t seed = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    uint64_t* target = nullptr;
    uint64_t max = std::numeric_limits<uint32_t>::max();
    if (arg == "--train") {
      target = &train;
    } else if (arg == "--test") {
      target = &test;
    } else if (arg == "--seed") {
      target = &seed;
      max = std::numeric_limits<uint64_t>::max();
    } else if (arg == "-h" || arg == "--help") {
      std::cout << kUsage << "\n";
      return 0;
    } else if (!arg.empty() && arg[0] != '-' && dir.empty()) {
      dir = arg;
      continue;
    } else {
      std::cerr << "unexpected argument '" << arg << "'\n" << kUsage << "\n";
      return 2;
    }
    if (i + 1 >= argc || !ParseU64(argv[i + 1], max, target)) {
      std::cerr << arg << " needs a non-negative integer <= " << max << "\n" << kUsage << "\n";
      return 2;
    }
    ++i;
  }
  if (dir.empty()) {
    std::cerr << kUsage << "\n";
    return 2;
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    std::cerr << "cannot create " << dir << ": " << ec.message() << "\n";
    return 1;
  }
  const greenfed::Status s = greenfed::WriteSyntheticFashionMnist(dir, static_cast<uint32_t>(train),
                                                                  static_cast<uint32_t>(test), seed);
  if (!s.ok()) {
    std::cerr << s.ToString() << "\n";
    return 1;
  }
  std::cout << "wrote " << train << " train and " << test << " test synthetic images to " << dir << "\n";
  return 0;
}
