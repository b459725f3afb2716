#include "digits/data.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include "greenfed/partition.h"

namespace greenfed::digits {

namespace {

constexpr size_t kReadChunkBytes = size_t{1} << 20;
constexpr uint32_t kFieldsPerRow = kNumFeatures + 1;

// Owns a gzFile; closes it on every path.
class GzFile {
 public:
  explicit GzFile(gzFile file) : file_(file) {}
  GzFile(const GzFile&) = delete;
  GzFile& operator=(const GzFile&) = delete;
  ~GzFile() {
    if (file_ != nullptr) gzclose(file_);
  }
  gzFile get() const { return file_; }
  // Closes now and reports a write error (a full disk shows here).
  int Close() {
    const int rc = gzclose(file_);
    file_ = nullptr;
    return rc;
  }

 private:
  gzFile file_;
};

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The whole (decompressed) file, at most kMaxDigitsCsvBytes.
StatusOr<std::string> ReadAll(const std::string& path) {
  gzFile raw = gzopen(path.c_str(), "rb");
  if (raw == nullptr) {
    const int err = errno;
    std::string why = path + ": cannot open: " + std::strerror(err);
    if (err == ENOENT && EndsWith(path, std::string("/") + kDigitsFile)) {
      why += " (Debian: apt-get install " + std::string(kDataPackage) + ")";
    }
    return NotFound(why);
  }
  GzFile file(raw);
  std::string text;
  for (;;) {
    const size_t old_size = text.size();
    text.resize(old_size + kReadChunkBytes);
    const int got = gzread(file.get(), text.data() + old_size, static_cast<unsigned>(kReadChunkBytes));
    if (got < 0) {
      int errnum = 0;
      const char* msg = gzerror(file.get(), &errnum);
      return DataLoss(path + ": not a valid gzip/CSV file: " + msg);
    }
    text.resize(old_size + static_cast<size_t>(got));
    if (text.size() > kMaxDigitsCsvBytes) {
      return InvalidArgument(path + ": larger than " + std::to_string(kMaxDigitsCsvBytes) +
                             " bytes uncompressed; not a digits CSV file");
    }
    if (got == 0) break;
  }
  int errnum = 0;
  const char* msg = gzerror(file.get(), &errnum);
  if (errnum != Z_OK && errnum != Z_STREAM_END) return DataLoss(path + ": truncated or corrupt gzip stream: " + msg);
  return text;
}

std::string Where(const std::string& path, uint64_t line) { return path + ":" + std::to_string(line) + ": "; }

// Appends the 65 fields of one line (without its '\n') to `data`.
Status ParseRow(const std::string& path, uint64_t line_no, const char* begin, const char* end, DigitsData* data) {
  if (end > begin && end[-1] == '\r') --end;
  if (begin == end) return InvalidArgument(Where(path, line_no) + "empty line (expected 65 comma-separated fields)");
  uint32_t field = 0;
  const char* p = begin;
  for (;;) {
    ++field;
    const char* field_end = std::find(p, end, ',');
    if (field > kFieldsPerRow) {
      return InvalidArgument(Where(path, line_no) + "more than " + std::to_string(kFieldsPerRow) +
                             " fields (64 pixels and a label)");
    }
    const std::string text(p, field_end);
    if (text.empty()) return InvalidArgument(Where(path, line_no) + "field " + std::to_string(field) + ": empty");
    uint32_t value = 0;
    for (char c : text) {
      if (c < '0' || c > '9') {
        return InvalidArgument(Where(path, line_no) + "field " + std::to_string(field) + ": '" +
                               text.substr(0, 32) + "' is not a non-negative integer");
      }
      // Saturates: any value above 1000 is out of range below, however long.
      value = std::min<uint32_t>(1001, value * 10 + static_cast<uint32_t>(c - '0'));
    }
    const bool is_label = field == kFieldsPerRow;
    const uint32_t max = is_label ? kNumClasses - 1 : kMaxPixel;
    if (value > max) {
      return InvalidArgument(Where(path, line_no) + "field " + std::to_string(field) + ": " +
                             (is_label ? "label " : "pixel ") + text.substr(0, 32) + " is out of range (expected 0.." +
                             std::to_string(max) + ")");
    }
    if (is_label) {
      data->labels.push_back(static_cast<uint8_t>(value));
    } else {
      data->pixels.push_back(static_cast<uint8_t>(value));
    }
    if (field_end == end) break;
    p = field_end + 1;
  }
  if (field != kFieldsPerRow) {
    return InvalidArgument(Where(path, line_no) + std::to_string(field) + " fields, expected " +
                           std::to_string(kFieldsPerRow) + " (64 pixels and a label)");
  }
  return Status::Ok();
}

}  // namespace

StatusOr<DigitsData> ReadDigitsCsv(const std::string& path) {
  GREENFED_ASSIGN_OR_RETURN(std::string text, ReadAll(path));
  if (text.empty()) return InvalidArgument(path + ": empty file (expected rows of 64 pixels and a label)");
  DigitsData data;
  const char* p = text.data();
  const char* const end = text.data() + text.size();
  uint64_t line_no = 0;
  while (p < end) {
    ++line_no;
    if (line_no > kMaxDigitsRows) {
      return InvalidArgument(path + ": more than " + std::to_string(kMaxDigitsRows) + " rows");
    }
    const char* eol = std::find(p, end, '\n');
    GREENFED_RETURN_IF_ERROR(ParseRow(path, line_no, p, eol, &data));
    p = eol == end ? end : eol + 1;
  }
  return data;
}

Status WriteDigitsCsv(const std::string& path, const DigitsData& data) {
  if (data.pixels.size() != data.count() * kNumFeatures) {
    return InvalidArgument("WriteDigitsCsv " + path + ": " + std::to_string(data.pixels.size()) + " pixels for " +
                           std::to_string(data.count()) + " labels (expected 64 per label)");
  }
  std::string text;
  for (size_t i = 0; i < data.count(); ++i) {
    for (uint32_t f = 0; f < kNumFeatures; ++f) {
      const uint8_t v = data.pixels[i * kNumFeatures + f];
      if (v > kMaxPixel) return InvalidArgument("WriteDigitsCsv " + path + ": pixel out of range in row " + std::to_string(i));
      text += std::to_string(v);
      text += ',';
    }
    if (data.labels[i] >= kNumClasses) {
      return InvalidArgument("WriteDigitsCsv " + path + ": label out of range in row " + std::to_string(i));
    }
    text += std::to_string(data.labels[i]);
    text += '\n';
  }
  const bool gz = EndsWith(path, ".gz");
  gzFile raw = gzopen(path.c_str(), gz ? "wb" : "wbT");  // "T": plain, no gzip wrapping
  if (raw == nullptr) return Unavailable("WriteDigitsCsv: cannot open " + path + ": " + std::strerror(errno));
  GzFile file(raw);
  size_t done = 0;
  while (done < text.size()) {
    const auto n = static_cast<unsigned>(std::min(text.size() - done, kReadChunkBytes));
    if (gzwrite(file.get(), text.data() + done, n) != static_cast<int>(n)) {
      return Unavailable("WriteDigitsCsv: write to " + path + " failed");
    }
    done += n;
  }
  if (file.Close() != Z_OK) return Unavailable("WriteDigitsCsv: closing " + path + " failed");
  return Status::Ok();
}

DigitsData Select(const DigitsData& data, const std::vector<uint32_t>& indices) {
  DigitsData out;
  out.labels.reserve(indices.size());
  out.pixels.reserve(indices.size() * kNumFeatures);
  for (uint32_t i : indices) {
    out.labels.push_back(data.labels[i]);
    const auto row = data.pixels.begin() + static_cast<std::ptrdiff_t>(size_t{i} * kNumFeatures);
    out.pixels.insert(out.pixels.end(), row, row + kNumFeatures);
  }
  return out;
}

TrainTestSplit StratifiedSplit(const std::vector<uint8_t>& labels, uint32_t test_per_class, uint64_t seed) {
  std::vector<std::vector<uint32_t>> by_class(256);
  for (size_t i = 0; i < labels.size(); ++i) by_class[labels[i]].push_back(static_cast<uint32_t>(i));
  DeterministicRng rng(seed);
  TrainTestSplit split;
  for (auto& cls : by_class) {
    if (cls.empty()) continue;
    rng.Shuffle(&cls);
    const size_t n_test = std::min<size_t>(test_per_class, cls.size());
    split.test.insert(split.test.end(), cls.begin(), cls.begin() + static_cast<std::ptrdiff_t>(n_test));
    split.train.insert(split.train.end(), cls.begin() + static_cast<std::ptrdiff_t>(n_test), cls.end());
  }
  std::sort(split.train.begin(), split.train.end());
  std::sort(split.test.begin(), split.test.end());
  return split;
}

}  // namespace greenfed::digits
