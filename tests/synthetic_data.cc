#include "synthetic_data.h"

#include <vector>

#include "fashion_mnist/idx.h"
#include "greenfed/partition.h"

namespace greenfed {
namespace {

using fmnist::IdxImages;
using fmnist::IdxLabels;

constexpr uint32_t kBlobSize = 5;
constexpr uint32_t kMaxJitter = 2;
constexpr uint32_t kBackgroundLevels = 64;  // noise in [0, 63]
constexpr uint32_t kBlobFloor = 200;        // blob pixels in [200, 255]
// One example in kConfusedOneIn draws its blob at a random class's slot, so the
// best achievable accuracy is about 0.91 and training does not saturate at once.
constexpr uint64_t kConfusedOneIn = 10;

// Top-left corner of class c's blob before jitter: slots 5 columns apart, two rows.
uint32_t BlobRow(uint32_t c) { return 2 + (c / 5) * 13; }
uint32_t BlobCol(uint32_t c) { return 1 + (c % 5) * 5; }

void MakeSplit(uint32_t count, uint64_t seed, IdxImages* images, IdxLabels* labels) {
  DeterministicRng rng(seed);
  std::vector<uint32_t> order(count);
  for (uint32_t i = 0; i < count; ++i) order[i] = i % fmnist::kNumClasses;
  rng.Shuffle(&order);

  images->count = count;
  images->rows = fmnist::kImageRows;
  images->cols = fmnist::kImageCols;
  images->pixels.assign(size_t{count} * fmnist::kImageRows * fmnist::kImageCols, 0);
  labels->labels.resize(count);
  for (uint32_t i = 0; i < count; ++i) {
    const uint32_t c = order[i];
    labels->labels[i] = static_cast<uint8_t>(c);
    uint8_t* img = images->pixels.data() + size_t{i} * fmnist::kImageRows * fmnist::kImageCols;
    for (uint32_t p = 0; p < fmnist::kImageRows * fmnist::kImageCols; ++p) {
      img[p] = static_cast<uint8_t>(rng.UniformBelow(kBackgroundLevels));
    }
    uint32_t drawn = c;
    if (rng.UniformBelow(kConfusedOneIn) == 0) drawn = static_cast<uint32_t>(rng.UniformBelow(fmnist::kNumClasses));
    const uint32_t r0 = BlobRow(drawn) + static_cast<uint32_t>(rng.UniformBelow(kMaxJitter + 1));
    const uint32_t c0 = BlobCol(drawn) + static_cast<uint32_t>(rng.UniformBelow(kMaxJitter + 1));
    for (uint32_t r = r0; r < r0 + kBlobSize; ++r) {
      for (uint32_t col = c0; col < c0 + kBlobSize; ++col) {
        img[r * fmnist::kImageCols + col] = static_cast<uint8_t>(kBlobFloor + rng.UniformBelow(256 - kBlobFloor));
      }
    }
  }
}

}  // namespace

Status WriteSyntheticFashionMnist(const std::string& dir, uint32_t train_count, uint32_t test_count, uint64_t seed) {
  const std::string prefix = dir.empty() || dir.back() == '/' ? dir : dir + "/";
  IdxImages images;
  IdxLabels labels;
  MakeSplit(train_count, seed, &images, &labels);
  GREENFED_RETURN_IF_ERROR(fmnist::WriteIdxImagesGz(prefix + fmnist::kTrainImagesFile, images));
  GREENFED_RETURN_IF_ERROR(fmnist::WriteIdxLabelsGz(prefix + fmnist::kTrainLabelsFile, labels));
  // A different stream for the test split, so test images are not train images.
  MakeSplit(test_count, seed ^ 0x9e3779b97f4a7c15ull, &images, &labels);
  GREENFED_RETURN_IF_ERROR(fmnist::WriteIdxImagesGz(prefix + fmnist::kTestImagesFile, images));
  GREENFED_RETURN_IF_ERROR(fmnist::WriteIdxLabelsGz(prefix + fmnist::kTestLabelsFile, labels));
  return Status::Ok();
}

}  // namespace greenfed
