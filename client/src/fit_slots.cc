#include "greenfed/client/fit_slots.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

namespace greenfed {

namespace {
constexpr uint32_t kMaxSlots = 4096;
}  // namespace

FitSlot::FitSlot(FitSlot&& other) noexcept : fd_(std::exchange(other.fd_, -1)), index_(other.index_) {}

FitSlot& FitSlot::operator=(FitSlot&& other) noexcept {
  if (this != &other) {
    Release();
    fd_ = std::exchange(other.fd_, -1);
    index_ = other.index_;
  }
  return *this;
}

FitSlot::~FitSlot() { Release(); }

void FitSlot::Release() {
  if (fd_ >= 0) {
    ::close(fd_);  // drops the flock
    fd_ = -1;
  }
}

StatusOr<FitSlots> FitSlots::Open(FitSlotsOptions options) {
  if (options.dir.empty()) return InvalidArgument("fit slots: the directory is empty");
  if (options.slots < 1 || options.slots > kMaxSlots) {
    return InvalidArgument("fit slots: the number of slots must be in [1, " + std::to_string(kMaxSlots) + "], got " +
                           std::to_string(options.slots));
  }
  if (!(options.max_poll_s > 0) || !std::isfinite(options.max_poll_s)) {
    return InvalidArgument("fit slots: max_poll_s must be a positive number of seconds");
  }
  if (::mkdir(options.dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return Unavailable("fit slots: cannot create " + options.dir + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (::stat(options.dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return InvalidArgument("fit slots: " + options.dir + " is not a directory");
  }
  FitSlots slots(std::move(options));
  for (uint32_t k = 0; k < slots.options_.slots; ++k) {
    const std::string path = slots.SlotPath(k);
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return Unavailable("fit slots: cannot create " + path + ": " + std::strerror(errno));
    ::close(fd);
  }
  return slots;
}

std::string FitSlots::SlotPath(uint32_t index) const {
  return options_.dir + "/slot-" + std::to_string(index) + ".lock";
}

namespace {

// The open descriptors of one Acquire()/TryAcquire() call, one per slot, opened once and
// swept with LOCK_NB until one locks; the others are closed when it returns.
class SlotFds {
 public:
  explicit SlotFds(uint32_t n) : fds_(n, -1) {}
  SlotFds(const SlotFds&) = delete;
  SlotFds& operator=(const SlotFds&) = delete;
  ~SlotFds() {
    for (int fd : fds_) {
      if (fd >= 0) ::close(fd);
    }
  }
  int& operator[](uint32_t k) { return fds_[k]; }
  int Take(uint32_t k) { return std::exchange(fds_[k], -1); }

 private:
  std::vector<int> fds_;
};

}  // namespace

StatusOr<FitSlot> FitSlots::Sweep(uint32_t first_hint, void* fds_ptr) const {
  SlotFds& fds = *static_cast<SlotFds*>(fds_ptr);
  const uint32_t n = options_.slots;
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t k = static_cast<uint32_t>((static_cast<uint64_t>(first_hint) + i) % n);
    // A descriptor of this call's own: flock locks belong to the open file description, so two
    // threads of one process, each with its own open(), exclude each other.
    if (fds[k] < 0) {
      const std::string path = SlotPath(k);
      fds[k] = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
      if (fds[k] < 0) return Unavailable("fit slots: cannot open " + path + ": " + std::strerror(errno));
    }
    int rc;
    do {
      rc = ::flock(fds[k], LOCK_EX | LOCK_NB);
    } while (rc != 0 && errno == EINTR);
    if (rc == 0) return FitSlot(fds.Take(k), k);
    if (errno != EWOULDBLOCK) {
      return Unavailable("fit slots: cannot lock " + SlotPath(k) + ": " + std::strerror(errno));
    }
  }
  return FitSlot();
}

StatusOr<FitSlot> FitSlots::TryAcquire(uint32_t first_hint) const {
  SlotFds fds(options_.slots);
  return Sweep(first_hint, &fds);
}

StatusOr<FitSlot> FitSlots::Acquire(uint32_t first_hint, const std::atomic<bool>* cancel) const {
  SlotFds fds(options_.slots);
  double sleep_s = 0.001;
  for (;;) {
    GREENFED_ASSIGN_OR_RETURN(FitSlot slot, Sweep(first_hint, &fds));
    if (slot.held()) return slot;
    if (cancel != nullptr && cancel->load()) return Unavailable("fit slots: stopped while waiting for a slot");
    std::this_thread::sleep_for(std::chrono::duration<double>(std::min(sleep_s, options_.max_poll_s)));
    sleep_s *= 2;
  }
}

}  // namespace greenfed
