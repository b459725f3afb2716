// IDX files (the (Fashion-)MNIST format): read gzipped or plain with zlib, write gzipped.
//
// Contract: readers check the magic number, the dimensions and the exact payload size
// (a truncated file and trailing bytes are both errors) and return a Status whose
// message names the file. ReadIdxLabels also checks every label < kNumClasses.
// A path ending in ".gz" that does not exist falls back to the same path without
// ".gz" (an uncompressed copy); zlib reads plain files transparently.
// LoadFashionMnist adds the Fashion-MNIST checks (28x28, image/label counts agree)
// and, for a missing file, says which Debian package provides it.
// Pure C++ and zlib: no libtorch, so data-only tools and tests build fast.
// Thread safety: free functions without shared state; safe to call concurrently.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "greenfed/status.h"

namespace greenfed::fmnist {

// Where Debian's dataset-fashion-mnist package installs the four files.
constexpr char kDefaultDataDir[] = "/usr/share/datasets/fashion-mnist";
constexpr char kTrainImagesFile[] = "train-images-idx3-ubyte.gz";
constexpr char kTrainLabelsFile[] = "train-labels-idx1-ubyte.gz";
constexpr char kTestImagesFile[] = "t10k-images-idx3-ubyte.gz";
constexpr char kTestLabelsFile[] = "t10k-labels-idx1-ubyte.gz";

constexpr uint32_t kImagesMagic = 0x00000803;  // unsigned bytes, 3 dimensions
constexpr uint32_t kLabelsMagic = 0x00000801;  // unsigned bytes, 1 dimension
constexpr uint32_t kNumClasses = 10;
constexpr uint32_t kImageRows = 28;
constexpr uint32_t kImageCols = 28;

struct IdxImages {
  uint32_t count = 0;           // number of images
  uint32_t rows = 0;            // pixels per column
  uint32_t cols = 0;            // pixels per row
  std::vector<uint8_t> pixels;  // count * rows * cols bytes, image-major, row-major
};

struct IdxLabels {
  std::vector<uint8_t> labels;  // one class id per example, each < kNumClasses
};

StatusOr<IdxImages> ReadIdxImages(const std::string& path);
StatusOr<IdxLabels> ReadIdxLabels(const std::string& path);

// Writes gzip-compressed IDX. Fails if pixels.size() != count * rows * cols.
Status WriteIdxImagesGz(const std::string& path, const IdxImages& images);
Status WriteIdxLabelsGz(const std::string& path, const IdxLabels& labels);

struct FashionMnist {
  IdxImages train_images;  // empty unless need_train
  IdxLabels train_labels;
  IdxImages test_images;   // empty unless need_test
  IdxLabels test_labels;
};

// Loads the requested halves from `data_dir` (kDefaultDataDir when empty).
StatusOr<FashionMnist> LoadFashionMnist(const std::string& data_dir, bool need_train, bool need_test);

}  // namespace greenfed::fmnist
