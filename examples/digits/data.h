// The UCI optical-recognition digits (the copy scikit-learn ships; Debian package
// python3-sklearn, file sklearn/datasets/data/digits.csv.gz): 1,797 images of 8x8
// pixels, each pixel a count 0..16, one CSV row per image: 64 pixel fields, then the
// label 0..9. No header. A client's own data file (own-data mode) has the same format.
//
// Contract: ReadDigitsCsv reads gzipped or plain CSV (zlib reads plain files
// transparently) and is strict: every row has exactly 65 fields, every field is a
// decimal integer without sign, spaces or fraction, pixels are in 0..16 and labels in
// 0..9. The first problem found is returned as InvalidArgument (DataLoss for a broken
// gzip stream) whose message names the file, the 1-based line and, where one is at
// fault, the 1-based field: "PATH:LINE: field F: ...". A final newline is optional;
// "\r\n" line ends are accepted; an empty line, an empty file or a file over
// kMaxDigitsCsvBytes uncompressed (or kMaxDigitsRows rows) is an error.
// StratifiedSplit is deterministic for a seed (partition.h DeterministicRng).
// Pure C++ and zlib: no libtorch.
// Thread safety: free functions without shared state; safe to call concurrently.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "greenfed/status.h"

namespace greenfed::digits {

// Where Debian's python3-sklearn installs scikit-learn's bundled data sets.
constexpr char kDefaultDataDir[] = "/usr/lib/python3/dist-packages/sklearn/datasets/data";
constexpr char kDigitsFile[] = "digits.csv.gz";
constexpr char kDataPackage[] = "python3-sklearn";

constexpr uint32_t kNumFeatures = 64;   // 8 x 8 pixels
constexpr uint32_t kNumClasses = 10;    // digits 0..9
constexpr uint32_t kMaxPixel = 16;      // pixel counts are 0..16
// Bounds on what a reader accepts (own-data files come from outside): far above the
// 1,797 rows (~200 kB) of the real file, far below what would exhaust memory.
constexpr uint64_t kMaxDigitsCsvBytes = uint64_t{256} << 20;  // uncompressed
constexpr uint64_t kMaxDigitsRows = 1'000'000;
// The fixed train/test split of the real file: 30 test images per class (300),
// the other 1,497 train, drawn with this seed.
constexpr uint32_t kTestPerClass = 30;
constexpr uint64_t kSplitSeed = 20261201;

struct DigitsData {
  std::vector<uint8_t> pixels;  // count() * kNumFeatures values 0..16, row-major
  std::vector<uint8_t> labels;  // one class id 0..9 per example
  size_t count() const { return labels.size(); }
};

StatusOr<DigitsData> ReadDigitsCsv(const std::string& path);

// Writes `data` in the same CSV format, gzip-compressed when `path` ends in ".gz".
// Fails when pixels.size() != count() * kNumFeatures or a value is out of range.
Status WriteDigitsCsv(const std::string& path, const DigitsData& data);

// The rows `indices` of `data`, in that order (indices must be < data.count()).
DigitsData Select(const DigitsData& data, const std::vector<uint32_t>& indices);

struct TrainTestSplit {
  std::vector<uint32_t> train;  // ascending
  std::vector<uint32_t> test;   // ascending
};
// Per class: a seeded shuffle of that class's examples, the first test_per_class go
// to test (all of them when the class is smaller), the rest to train.
TrainTestSplit StratifiedSplit(const std::vector<uint8_t>& labels, uint32_t test_per_class, uint64_t seed);

}  // namespace greenfed::digits
