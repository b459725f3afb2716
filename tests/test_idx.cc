// IDX reader/writer: error paths on hand-made files in temp dirs, and the real
// Fashion-MNIST files from Debian's dataset-fashion-mnist.
#include <doctest/doctest.h>
#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fashion_mnist/idx.h"
#include "greenfed/partition.h"
#include "run_helpers.h"

namespace {

using greenfed::testing::TempDir;
using greenfed::Code;
using namespace greenfed::fmnist;
using greenfed::LabelHistogram;

void PutBigEndian32(uint32_t v, std::vector<uint8_t>* out) {
  for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<uint8_t>(v >> shift));
}

std::vector<uint8_t> ImagesBytes(uint32_t magic, uint32_t count, uint32_t rows, uint32_t cols, size_t pixels) {
  std::vector<uint8_t> b;
  for (uint32_t v : {magic, count, rows, cols}) PutBigEndian32(v, &b);
  for (size_t i = 0; i < pixels; ++i) b.push_back(static_cast<uint8_t>(i * 7));
  return b;
}

std::vector<uint8_t> LabelsBytes(const std::vector<uint8_t>& labels, uint32_t declared) {
  std::vector<uint8_t> b;
  PutBigEndian32(kLabelsMagic, &b);
  PutBigEndian32(declared, &b);
  b.insert(b.end(), labels.begin(), labels.end());
  return b;
}

void WriteGzBytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

void WritePlainBytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

IdxImages SmallImages(uint32_t count, uint32_t rows, uint32_t cols) {
  IdxImages im;
  im.count = count;
  im.rows = rows;
  im.cols = cols;
  im.pixels.resize(size_t{count} * rows * cols);
  for (size_t i = 0; i < im.pixels.size(); ++i) im.pixels[i] = static_cast<uint8_t>((i * 31 + 5) % 256);
  return im;
}

}  // namespace

TEST_CASE("idx: a missing file names the file, the Debian package and --data-dir") {
  TempDir dir;
  auto data = LoadFashionMnist(dir.path(), true, false);
  REQUIRE_FALSE(data.ok());
  CHECK(data.status().code() == Code::kNotFound);
  const std::string& m = data.status().message();
  CHECK(Contains(m, "missing " + dir.File("train-images-idx3-ubyte.gz") + ": "));
  CHECK(Contains(m, "apt-get install dataset-fashion-mnist"));
  CHECK(Contains(m, "--data-dir"));

  // Only the test half requested: the train files are not looked at.
  auto test_only = LoadFashionMnist(dir.path(), false, true);
  REQUIRE_FALSE(test_only.ok());
  CHECK(Contains(test_only.status().message(), dir.File("t10k-images-idx3-ubyte.gz")));

  auto labels = ReadIdxLabels(dir.File("nothing.gz"));
  REQUIRE_FALSE(labels.ok());
  CHECK(labels.status().message() == "missing " + dir.File("nothing.gz"));
}

TEST_CASE("idx: write then read round-trips images and labels exactly") {
  TempDir dir;
  const IdxImages im = SmallImages(3, 4, 5);
  IdxLabels lb;
  lb.labels = {9, 0, 4};
  REQUIRE(WriteIdxImagesGz(dir.File("im.gz"), im).ok());
  REQUIRE(WriteIdxLabelsGz(dir.File("lb.gz"), lb).ok());
  auto im2 = ReadIdxImages(dir.File("im.gz"));
  auto lb2 = ReadIdxLabels(dir.File("lb.gz"));
  REQUIRE(im2.ok());
  REQUIRE(lb2.ok());
  CHECK(im2->count == 3);
  CHECK(im2->rows == 4);
  CHECK(im2->cols == 5);
  CHECK(im2->pixels == im.pixels);
  CHECK(lb2->labels == lb.labels);

  // The file really is gzip: magic bytes 1f 8b.
  std::ifstream raw(dir.File("im.gz"), std::ios::binary);
  unsigned char head[2] = {0, 0};
  raw.read(reinterpret_cast<char*>(head), 2);
  CHECK(head[0] == 0x1f);
  CHECK(head[1] == 0x8b);

  IdxImages bad = im;
  bad.pixels.pop_back();
  const greenfed::Status s = WriteIdxImagesGz(dir.File("bad.gz"), bad);
  CHECK(s.code() == Code::kInvalidArgument);
  CHECK(Contains(s.message(), "need 60 pixels, got 59"));
}

TEST_CASE("idx: an uncompressed file is read when the .gz is absent") {
  TempDir dir;
  WritePlainBytes(dir.File("plain-images"), ImagesBytes(kImagesMagic, 2, 2, 3, 12));
  auto im = ReadIdxImages(dir.File("plain-images.gz"));
  REQUIRE(im.ok());
  CHECK(im->count == 2);
  CHECK(im->pixels.size() == 12);
  CHECK(im->pixels[11] == static_cast<uint8_t>(11 * 7));
}

TEST_CASE("idx: wrong magic number") {
  TempDir dir;
  IdxLabels lb;
  lb.labels = {1, 2};
  REQUIRE(WriteIdxLabelsGz(dir.File("labels.gz"), lb).ok());
  auto im = ReadIdxImages(dir.File("labels.gz"));
  REQUIRE_FALSE(im.ok());
  CHECK(im.status().code() == Code::kDataLoss);
  CHECK(Contains(im.status().message(), dir.File("labels.gz")));
  CHECK(Contains(im.status().message(), "bad magic number 0x00000801, expected 0x00000803"));

  WriteGzBytes(dir.File("images.gz"), ImagesBytes(0x00000d03, 1, 2, 2, 4));  // float IDX
  auto lb2 = ReadIdxLabels(dir.File("images.gz"));
  REQUIRE_FALSE(lb2.ok());
  CHECK(Contains(lb2.status().message(), "bad magic number 0x00000d03, expected 0x00000801"));
}

TEST_CASE("idx: truncated files") {
  TempDir dir;
  SUBCASE("payload shorter than the header declares") {
    WriteGzBytes(dir.File("short.gz"), ImagesBytes(kImagesMagic, 3, 2, 2, 8));
    auto im = ReadIdxImages(dir.File("short.gz"));
    REQUIRE_FALSE(im.ok());
    CHECK(im.status().code() == Code::kDataLoss);
    CHECK(im.status().message() == dir.File("short.gz") +
                                       " is truncated: header declares 3 images of 2x2 (12 payload bytes), file has 8");
  }
  SUBCASE("header cut short") {
    WriteGzBytes(dir.File("hdr.gz"), {0, 0, 8, 3, 0, 0});
    auto im = ReadIdxImages(dir.File("hdr.gz"));
    REQUIRE_FALSE(im.ok());
    CHECK(im.status().message() == dir.File("hdr.gz") + " is truncated: IDX header needs 16 bytes, file has 6");
  }
  SUBCASE("gzip stream cut in the middle") {
    const IdxImages big = SmallImages(50, 28, 28);
    REQUIRE(WriteIdxImagesGz(dir.File("cut.gz"), big).ok());
    const auto size = std::filesystem::file_size(dir.File("cut.gz"));
    std::filesystem::resize_file(dir.File("cut.gz"), size / 2);
    auto im = ReadIdxImages(dir.File("cut.gz"));
    REQUIRE_FALSE(im.ok());
    CHECK(im.status().code() == Code::kDataLoss);
    CHECK(Contains(im.status().message(), dir.File("cut.gz") + " is truncated"));
  }
  SUBCASE("labels") {
    WriteGzBytes(dir.File("lb.gz"), LabelsBytes({1, 2, 3}, 5));
    auto lb = ReadIdxLabels(dir.File("lb.gz"));
    REQUIRE_FALSE(lb.ok());
    CHECK(lb.status().message() ==
          dir.File("lb.gz") + " is truncated: header declares 5 labels (5 payload bytes), file has 3");
  }
}

TEST_CASE("idx: trailing bytes after the payload") {
  TempDir dir;
  WriteGzBytes(dir.File("long.gz"), ImagesBytes(kImagesMagic, 2, 2, 2, 9));
  auto im = ReadIdxImages(dir.File("long.gz"));
  REQUIRE_FALSE(im.ok());
  CHECK(im.status().code() == Code::kDataLoss);
  CHECK(im.status().message() ==
        dir.File("long.gz") + " has trailing bytes after the 8 payload bytes of 2 images of 2x2");

  WriteGzBytes(dir.File("lb.gz"), LabelsBytes({1, 2, 3}, 2));
  auto lb = ReadIdxLabels(dir.File("lb.gz"));
  REQUIRE_FALSE(lb.ok());
  CHECK(Contains(lb.status().message(), "trailing bytes"));
}

TEST_CASE("idx: labels out of range") {
  TempDir dir;
  WriteGzBytes(dir.File("lb.gz"), LabelsBytes({0, 9, 3, 10, 1}, 5));
  auto lb = ReadIdxLabels(dir.File("lb.gz"));
  REQUIRE_FALSE(lb.ok());
  CHECK(lb.status().code() == Code::kDataLoss);
  CHECK(lb.status().message() == dir.File("lb.gz") + ": label 10 at index 3 is out of range (expected 0..9)");
}

TEST_CASE("idx: LoadFashionMnist checks counts and image size") {
  TempDir dir;
  IdxLabels lb;
  lb.labels = {1, 2, 3, 4};
  SUBCASE("image and label counts differ") {
    REQUIRE(WriteIdxImagesGz(dir.File(kTrainImagesFile), SmallImages(5, 28, 28)).ok());
    REQUIRE(WriteIdxLabelsGz(dir.File(kTrainLabelsFile), lb).ok());
    auto data = LoadFashionMnist(dir.path(), true, false);
    REQUIRE_FALSE(data.ok());
    CHECK(data.status().code() == Code::kDataLoss);
    CHECK(data.status().message() == dir.File(kTrainImagesFile) + " has 5 images but " + dir.File(kTrainLabelsFile) +
                                         " has 4 labels");
  }
  SUBCASE("images are not 28x28") {
    REQUIRE(WriteIdxImagesGz(dir.File(kTestImagesFile), SmallImages(4, 27, 28)).ok());
    REQUIRE(WriteIdxLabelsGz(dir.File(kTestLabelsFile), lb).ok());
    auto data = LoadFashionMnist(dir.path(), false, true);
    REQUIRE_FALSE(data.ok());
    CHECK(data.status().code() == Code::kInvalidArgument);
    CHECK(data.status().message() == dir.File(kTestImagesFile) + ": images are 27x28, Fashion-MNIST needs 28x28");
  }
  SUBCASE("a consistent pair loads") {
    REQUIRE(WriteIdxImagesGz(dir.File(kTestImagesFile), SmallImages(4, 28, 28)).ok());
    REQUIRE(WriteIdxLabelsGz(dir.File(kTestLabelsFile), lb).ok());
    auto data = LoadFashionMnist(dir.path() + "/", false, true);
    REQUIRE(data.ok());
    CHECK(data->test_images.count == 4);
    CHECK(data->test_labels.labels == lb.labels);
    CHECK(data->train_images.count == 0);
    CHECK(data->train_labels.labels.empty());
  }
}

TEST_CASE("idx: the real Fashion-MNIST files") {
  auto data = LoadFashionMnist(kDefaultDataDir, true, true);
  REQUIRE_MESSAGE(data.ok(), data.status().ToString());
  CHECK(data->train_images.count == 60000);
  CHECK(data->train_images.rows == 28);
  CHECK(data->train_images.cols == 28);
  CHECK(data->train_images.pixels.size() == size_t{60000} * 784);
  CHECK(data->test_images.count == 10000);
  CHECK(data->test_labels.labels.size() == 10000);

  std::vector<uint32_t> all_train(60000);
  for (uint32_t i = 0; i < 60000; ++i) all_train[i] = i;
  CHECK(LabelHistogram(data->train_labels.labels, all_train, kNumClasses) == std::vector<int64_t>(10, 6000));
  std::vector<uint32_t> all_test(10000);
  for (uint32_t i = 0; i < 10000; ++i) all_test[i] = i;
  CHECK(LabelHistogram(data->test_labels.labels, all_test, kNumClasses) == std::vector<int64_t>(10, 1000));

  // The first training and test images are both ankle boots (class 9).
  CHECK(data->train_labels.labels[0] == 9);
  CHECK(data->test_labels.labels[0] == 9);
}
