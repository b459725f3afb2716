#include "fashion_mnist/idx.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>

namespace greenfed::fmnist {
namespace {

// Read in slices so that a garbage header that claims billions of images fails on
// truncation instead of allocating the claimed size up front.
constexpr size_t kReadChunkBytes = size_t{1} << 20;

std::string Hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%08x", v);
  return buf;
}

uint32_t DecodeBigEndian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

void AppendBigEndian32(uint32_t v, std::vector<uint8_t>* out) {
  out->push_back(static_cast<uint8_t>(v >> 24));
  out->push_back(static_cast<uint8_t>(v >> 16));
  out->push_back(static_cast<uint8_t>(v >> 8));
  out->push_back(static_cast<uint8_t>(v));
}

bool FileExists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

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
  // Closes now and reports the result; writers must check it (it flushes).
  int Close() {
    const int rc = gzclose(file_);
    file_ = nullptr;
    return rc;
  }

 private:
  gzFile file_;
};

// Opens `path` for reading, or its uncompressed twin when `path` ends in ".gz" and
// is absent. NotFound's message is exactly "missing <path>" so callers can add hints.
StatusOr<std::string> ResolveReadPath(const std::string& path) {
  if (FileExists(path)) return path;
  const std::string gz = ".gz";
  if (path.size() > gz.size() && path.compare(path.size() - gz.size(), gz.size(), gz) == 0) {
    std::string plain = path.substr(0, path.size() - gz.size());
    if (FileExists(plain)) return plain;
  }
  return NotFound("missing " + path);
}

StatusOr<std::unique_ptr<GzFile>> OpenForRead(const std::string& path) {
  errno = 0;
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) {
    const int err = errno;
    if (err == EACCES) return PermissionDenied("cannot read " + path + ": " + std::strerror(err));
    return Unavailable("cannot open " + path + ": " + (err != 0 ? std::strerror(err) : "zlib could not allocate"));
  }
  return std::make_unique<GzFile>(f);
}

// Reads up to `n` bytes into `out` (appending). Returns the byte count read; short
// only at end of data. A zlib error (corrupt or cut-off gzip stream) is DataLoss.
StatusOr<size_t> ReadUpTo(GzFile& file, const std::string& path, size_t n, std::vector<uint8_t>* out) {
  size_t total = 0;
  while (total < n) {
    const size_t want = std::min(n - total, kReadChunkBytes);
    const size_t old_size = out->size();
    out->resize(old_size + want);
    const int got = gzread(file.get(), out->data() + old_size, static_cast<unsigned>(want));
    if (got < 0) {
      int errnum = Z_OK;
      const char* msg = gzerror(file.get(), &errnum);
      out->resize(old_size);
      if (errnum == Z_BUF_ERROR) return DataLoss(path + " is truncated: " + msg);
      return DataLoss(path + " is not a valid gzip/IDX file: " + msg);
    }
    out->resize(old_size + static_cast<size_t>(got));
    total += static_cast<size_t>(got);
    if (static_cast<size_t>(got) < want) {
      // End of data, or a cut-off gzip stream that zlib reports after a short read.
      int errnum = Z_OK;
      const char* msg = gzerror(file.get(), &errnum);
      if (errnum != Z_OK) return DataLoss(path + " is truncated: " + msg);
      break;
    }
  }
  return total;
}

// Reads the IDX header of `path`: magic number, then `num_dims` big-endian sizes.
Status ReadHeader(GzFile& file, const std::string& path, uint32_t expected_magic, const char* what,
                  size_t num_dims, std::vector<uint32_t>* dims) {
  std::vector<uint8_t> header;
  const size_t header_bytes = 4 * (1 + num_dims);
  GREENFED_ASSIGN_OR_RETURN(size_t got, ReadUpTo(file, path, header_bytes, &header));
  if (got >= 4) {
    const uint32_t magic = DecodeBigEndian32(header.data());
    if (magic != expected_magic) {
      return DataLoss(path + ": bad magic number " + Hex32(magic) + ", expected " + Hex32(expected_magic) + " (" +
                      what + ")");
    }
  }
  if (got < header_bytes) {
    return DataLoss(path + " is truncated: IDX header needs " + std::to_string(header_bytes) + " bytes, file has " +
                    std::to_string(got));
  }
  dims->clear();
  for (size_t i = 0; i < num_dims; ++i) dims->push_back(DecodeBigEndian32(header.data() + 4 * (i + 1)));
  return Status::Ok();
}

// Reads exactly `n` payload bytes and checks that nothing follows them.
Status ReadPayload(GzFile& file, const std::string& path, uint64_t n, const std::string& what,
                   std::vector<uint8_t>* out) {
  if (n > std::numeric_limits<size_t>::max()) return OutOfRange(path + ": " + what + " does not fit in memory");
  out->clear();
  out->reserve(static_cast<size_t>(std::min<uint64_t>(n, uint64_t{64} << 20)));
  GREENFED_ASSIGN_OR_RETURN(size_t got, ReadUpTo(file, path, static_cast<size_t>(n), out));
  if (got < n) {
    return DataLoss(path + " is truncated: header declares " + what + " (" + std::to_string(n) +
                    " payload bytes), file has " + std::to_string(got));
  }
  std::vector<uint8_t> extra;
  GREENFED_ASSIGN_OR_RETURN(size_t trailing, ReadUpTo(file, path, 1, &extra));
  if (trailing != 0) {
    return DataLoss(path + " has trailing bytes after the " + std::to_string(n) + " payload bytes of " + what);
  }
  return Status::Ok();
}

Status WriteGz(const std::string& path, const std::vector<uint8_t>& header, const std::vector<uint8_t>& payload) {
  errno = 0;
  gzFile f = gzopen(path.c_str(), "wb");
  if (f == nullptr) {
    const int err = errno;
    return Unavailable("cannot create " + path + ": " + (err != 0 ? std::strerror(err) : "zlib could not allocate"));
  }
  GzFile file(f);
  for (const std::vector<uint8_t>* part : {&header, &payload}) {
    size_t done = 0;
    while (done < part->size()) {
      const size_t want = std::min(part->size() - done, kReadChunkBytes);
      const int wrote = gzwrite(file.get(), part->data() + done, static_cast<unsigned>(want));
      if (wrote <= 0) {
        int errnum = Z_OK;
        return Unavailable("cannot write " + path + ": " + gzerror(file.get(), &errnum));
      }
      done += static_cast<size_t>(wrote);
    }
  }
  if (file.Close() != Z_OK) return Unavailable("cannot finish writing " + path + " (disk full?)");
  return Status::Ok();
}

std::string JoinPath(const std::string& dir, const char* file) {
  if (!dir.empty() && dir.back() == '/') return dir + file;
  return dir + "/" + file;
}

Status AddInstallHint(const Status& s) {
  if (s.code() != Code::kNotFound) return s;
  return NotFound(s.message() +
                  ": install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or pass --data-dir");
}

// Reads one images/labels pair and applies the Fashion-MNIST checks.
Status LoadPair(const std::string& dir, const char* images_file, const char* labels_file, IdxImages* images,
                IdxLabels* labels) {
  const std::string images_path = JoinPath(dir, images_file);
  const std::string labels_path = JoinPath(dir, labels_file);
  StatusOr<IdxImages> im = ReadIdxImages(images_path);
  if (!im.ok()) return AddInstallHint(im.status());
  StatusOr<IdxLabels> lb = ReadIdxLabels(labels_path);
  if (!lb.ok()) return AddInstallHint(lb.status());
  if (im->rows != kImageRows || im->cols != kImageCols) {
    return InvalidArgument(images_path + ": images are " + std::to_string(im->rows) + "x" + std::to_string(im->cols) +
                           ", Fashion-MNIST needs " + std::to_string(kImageRows) + "x" + std::to_string(kImageCols));
  }
  if (im->count == 0) return DataLoss(images_path + " holds no images");
  if (im->count != lb->labels.size()) {
    return DataLoss(images_path + " has " + std::to_string(im->count) + " images but " + labels_path + " has " +
                    std::to_string(lb->labels.size()) + " labels");
  }
  *images = std::move(im).value();
  *labels = std::move(lb).value();
  return Status::Ok();
}

}  // namespace

StatusOr<IdxImages> ReadIdxImages(const std::string& path) {
  GREENFED_ASSIGN_OR_RETURN(std::string resolved, ResolveReadPath(path));
  GREENFED_ASSIGN_OR_RETURN(std::unique_ptr<GzFile> file, OpenForRead(resolved));
  std::vector<uint32_t> dims;
  GREENFED_RETURN_IF_ERROR(
      ReadHeader(*file, resolved, kImagesMagic, "IDX images: unsigned bytes, 3 dimensions", 3, &dims));
  IdxImages out;
  out.count = dims[0];
  out.rows = dims[1];
  out.cols = dims[2];
  if (out.rows == 0 || out.cols == 0) {
    return DataLoss(resolved + ": image size " + std::to_string(out.rows) + "x" + std::to_string(out.cols) +
                    " has a zero dimension");
  }
  const uint64_t n = uint64_t{out.count} * out.rows * out.cols;
  GREENFED_RETURN_IF_ERROR(ReadPayload(*file, resolved, n,
                                       std::to_string(out.count) + " images of " + std::to_string(out.rows) + "x" +
                                           std::to_string(out.cols),
                                       &out.pixels));
  return out;
}

StatusOr<IdxLabels> ReadIdxLabels(const std::string& path) {
  GREENFED_ASSIGN_OR_RETURN(std::string resolved, ResolveReadPath(path));
  GREENFED_ASSIGN_OR_RETURN(std::unique_ptr<GzFile> file, OpenForRead(resolved));
  std::vector<uint32_t> dims;
  GREENFED_RETURN_IF_ERROR(
      ReadHeader(*file, resolved, kLabelsMagic, "IDX labels: unsigned bytes, 1 dimension", 1, &dims));
  IdxLabels out;
  GREENFED_RETURN_IF_ERROR(ReadPayload(*file, resolved, dims[0], std::to_string(dims[0]) + " labels", &out.labels));
  for (size_t i = 0; i < out.labels.size(); ++i) {
    if (out.labels[i] >= kNumClasses) {
      return DataLoss(resolved + ": label " + std::to_string(out.labels[i]) + " at index " + std::to_string(i) +
                      " is out of range (expected 0.." + std::to_string(kNumClasses - 1) + ")");
    }
  }
  return out;
}

Status WriteIdxImagesGz(const std::string& path, const IdxImages& images) {
  const uint64_t n = uint64_t{images.count} * images.rows * images.cols;
  if (images.pixels.size() != n) {
    return InvalidArgument("cannot write " + path + ": " + std::to_string(images.count) + " images of " +
                           std::to_string(images.rows) + "x" + std::to_string(images.cols) + " need " +
                           std::to_string(n) + " pixels, got " + std::to_string(images.pixels.size()));
  }
  std::vector<uint8_t> header;
  for (uint32_t v : {kImagesMagic, images.count, images.rows, images.cols}) AppendBigEndian32(v, &header);
  return WriteGz(path, header, images.pixels);
}

Status WriteIdxLabelsGz(const std::string& path, const IdxLabels& labels) {
  if (labels.labels.size() > std::numeric_limits<uint32_t>::max()) {
    return OutOfRange("cannot write " + path + ": " + std::to_string(labels.labels.size()) +
                      " labels exceed the IDX limit of 2^32-1");
  }
  std::vector<uint8_t> header;
  AppendBigEndian32(kLabelsMagic, &header);
  AppendBigEndian32(static_cast<uint32_t>(labels.labels.size()), &header);
  return WriteGz(path, header, labels.labels);
}

StatusOr<FashionMnist> LoadFashionMnist(const std::string& data_dir, bool need_train, bool need_test) {
  const std::string dir = data_dir.empty() ? std::string(kDefaultDataDir) : data_dir;
  FashionMnist out;
  if (need_train) {
    GREENFED_RETURN_IF_ERROR(
        LoadPair(dir, kTrainImagesFile, kTrainLabelsFile, &out.train_images, &out.train_labels));
  }
  if (need_test) {
    GREENFED_RETURN_IF_ERROR(LoadPair(dir, kTestImagesFile, kTestLabelsFile, &out.test_images, &out.test_labels));
  }
  return out;
}

}  // namespace greenfed::fmnist
