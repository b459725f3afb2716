// RAPL package energy counters from the Linux powercap tree.
//
// Layout (Documentation/power/powercap/powercap.rst): <root>/intel-rapl:N is one CPU
// package; <root>/intel-rapl:N:M are its sub-zones (core, uncore, dram), whose energy
// is already inside the package counter or is a separate domain we do not add, and
// <root>/intel-rapl-mmio:N mirrors the package counter through MMIO. Counting only
// intel-rapl:N whose `name` starts with "package" avoids double counting. The class
// directory holds symlinks into /sys/devices, so zones are de-duplicated by real path.
//
// Scope: the counters cover the whole package, not this process. Several greenfed
// processes on one machine each see all of the package's energy (including every
// other process's); summing their records over-counts by the number of processes.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <limits>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "greenfed/meter.h"

namespace greenfed {
namespace {

namespace fs = std::filesystem;

// Closes the descriptor on every path out of ReadSysfsFile.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

std::string PermissionHint(const std::string& path) {
  return "cannot read " + path +
         ": permission denied. RAPL energy counters are readable only by root since the "
         "CVE-2020-8694 fix (Linux 5.10 and stable backports). To get measured figures run "
         "greenfed as root, or grant read access until the next reboot with "
         "`sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj`";
}

// Reads a small sysfs attribute. EACCES/EPERM become PermissionDenied with the fix.
StatusOr<std::string> ReadSysfsFile(const std::string& path) {
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    const int err = errno;
    if (err == EACCES || err == EPERM) return PermissionDenied(PermissionHint(path));
    if (err == ENOENT) return NotFound("RAPL file " + path + " does not exist");
    return Unavailable("cannot open " + path + ": " + std::strerror(err));
  }
  std::string text;
  char buffer[128];
  while (true) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
    if (n < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      if (err == EACCES || err == EPERM) return PermissionDenied(PermissionHint(path));
      return Unavailable("cannot read " + path + ": " + std::strerror(err));
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
    if (text.size() > 4096) return DataLoss(path + " is larger than a sysfs attribute");
  }
  return text;
}

StatusOr<uint64_t> ReadMicrojoules(const std::string& path) {
  GREENFED_ASSIGN_OR_RETURN(std::string text, ReadSysfsFile(path));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) {
    return DataLoss(path + ": expected an unsigned integer (microjoules), got '" + text + "'");
  }
  errno = 0;
  char* end = nullptr;
  const unsigned long long value = std::strtoull(text.c_str(), &end, 10);
  if (errno == ERANGE) return DataLoss(path + ": value '" + text + "' overflows 64 bits");
  return static_cast<uint64_t>(value);
}

// "intel-rapl:<digits>" exactly: sub-zones have a second colon, MMIO mirrors a
// different prefix.
bool IsPackageZoneName(const std::string& entry, uint64_t* index) {
  static constexpr char kPrefix[] = "intel-rapl:";
  const size_t prefix_len = sizeof(kPrefix) - 1;
  if (entry.compare(0, prefix_len, kPrefix) != 0) return false;
  const std::string digits = entry.substr(prefix_len);
  if (digits.empty() || digits.size() > 9 ||
      digits.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  *index = std::stoull(digits);
  return true;
}

struct Zone {
  std::string label;        // directory name, e.g. "intel-rapl:0"
  std::string energy_path;  // <zone>/energy_uj
  uint64_t max_range_uj = 0;
  uint64_t last_uj = 0;   // raw counter at the previous poll
  uint64_t total_uj = 0;  // accumulated since open, wraps resolved
};

class RaplMeter final : public EnergyMeter {
 public:
  RaplMeter(std::vector<Zone> zones, double poll_s) : zones_(std::move(zones)), poll_s_(poll_s) {
    poller_ = std::thread([this] { PollLoop(); });
  }

  ~RaplMeter() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    poller_.join();
  }

  RaplMeter(const RaplMeter&) = delete;
  RaplMeter& operator=(const RaplMeter&) = delete;

  EnergySource source() const override { return EnergySource::kRapl; }

  StatusOr<double> EnergyJ() override {
    std::lock_guard<std::mutex> lock(mu_);
    const Status polled = PollLocked();
    // A counter that went backwards, seen by the background poller, is reported once here.
    if (!backwards_.ok()) {
      Status seen = backwards_;
      backwards_ = Status::Ok();
      return seen;
    }
    GREENFED_RETURN_IF_ERROR(polled);
    uint64_t total_uj = 0;
    for (const Zone& zone : zones_) total_uj += zone.total_uj;
    return static_cast<double>(total_uj) / 1e6;
  }

  std::string Describe() const override {
    std::string labels;
    for (const Zone& zone : zones_) {
      if (!labels.empty()) labels += ", ";
      labels += zone.label;
    }
    const size_t n = zones_.size();
    return "rapl: " + std::to_string(n) + (n == 1 ? " package (" : " packages (") + labels + ")";
  }

 private:
  // Reads every zone once and folds the increments into total_uj. A zone that cannot
  // be read keeps its previous reading, so the next successful poll still sees the
  // whole increment (unless the counter wrapped twice meanwhile).
  //
  // A reading below the previous one is a wrap (now + max_energy_range_uj - previous)
  // unless that would be more than half the range since the previous poll: polls come
  // at least twice per wrap at 1 kW, so such a reading is a counter that went
  // backwards (a reset, a different counter). It adds nothing, the zone restarts
  // from it, and the error (DataLoss, "went backwards") is kept in backwards_ until
  // the next EnergyJ() reports it, even when the background poller saw it.
  Status PollLocked() {
    Status first_error;
    for (Zone& zone : zones_) {
      StatusOr<uint64_t> now = ReadMicrojoules(zone.energy_path);
      if (!now.ok()) {
        if (first_error.ok()) first_error = now.status();
        continue;
      }
      const uint64_t value = *now;
      uint64_t delta = value - zone.last_uj;
      if (value < zone.last_uj) {
        delta = value + zone.max_range_uj - zone.last_uj;
        if (value > zone.max_range_uj || delta > zone.max_range_uj / 2) {
          if (backwards_.ok()) {
            backwards_ = DataLoss("RAPL counter " + zone.energy_path + " went backwards from " +
                                  std::to_string(zone.last_uj) + " to " + std::to_string(value) +
                                  " uJ (as a wrap it would be " + std::to_string(delta) +
                                  " uJ since the previous poll, over half of max_energy_range_uj " +
                                  std::to_string(zone.max_range_uj) + "); the increment is not counted");
          }
          delta = 0;
        }
      }
      zone.total_uj += delta;
      zone.last_uj = value;
    }
    return first_error;
  }

  void PollLoop() {
    const auto period = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(poll_s_));
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      if (wake_.wait_for(lock, period, [this] { return stop_; })) break;
      // Errors are reported by the next EnergyJ(), which polls again.
      static_cast<void>(PollLocked());
    }
  }

  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;        // guarded by mu_
  Status backwards_;         // guarded by mu_: a backwards step not yet reported
  std::vector<Zone> zones_;  // guarded by mu_ (labels and paths never change)
  const double poll_s_;
  std::thread poller_;  // last: starts after every other member exists
};

}  // namespace

StatusOr<std::unique_ptr<EnergyMeter>> OpenRaplMeter(const std::string& powercap_root,
                                                     double poll_s) {
  if (!std::isfinite(poll_s)) {
    return InvalidArgument("RAPL poll period must be finite (got " + std::to_string(poll_s) + ")");
  }

  std::error_code ec;
  std::vector<std::pair<uint64_t, fs::path>> candidates;
  for (fs::directory_iterator it(powercap_root, ec), end; !ec && it != end; it.increment(ec)) {
    uint64_t index = 0;
    if (IsPackageZoneName(it->path().filename().string(), &index)) {
      candidates.emplace_back(index, it->path());
    }
  }
  if (ec && ec != std::errc::no_such_file_or_directory) {
    if (ec == std::errc::permission_denied) {
      return PermissionDenied("cannot list " + powercap_root + ": permission denied");
    }
    return Unavailable("cannot list " + powercap_root + ": " + ec.message());
  }
  std::sort(candidates.begin(), candidates.end());

  std::vector<Zone> zones;
  std::set<std::string> seen_real_paths;
  for (const auto& [index, path] : candidates) {
    std::error_code canon_ec;
    const fs::path real = fs::canonical(path, canon_ec);
    if (canon_ec) continue;  // dangling symlink: not a zone
    if (!seen_real_paths.insert(real.string()).second) continue;

    StatusOr<std::string> name = ReadSysfsFile((path / "name").string());
    if (!name.ok()) {
      if (name.status().code() == Code::kNotFound) continue;  // not a powercap zone
      return name.status();
    }
    if (name->rfind("package", 0) != 0) continue;  // e.g. "psys": platform, not a package

    Zone zone;
    zone.label = path.filename().string();
    zone.energy_path = (path / "energy_uj").string();
    GREENFED_ASSIGN_OR_RETURN(zone.max_range_uj,
                              ReadMicrojoules((path / "max_energy_range_uj").string()));
    GREENFED_ASSIGN_OR_RETURN(zone.last_uj, ReadMicrojoules(zone.energy_path));
    if (zone.max_range_uj == 0) {
      return DataLoss((path / "max_energy_range_uj").string() + " is 0; cannot resolve wraps");
    }
    zones.push_back(std::move(zone));
  }
  if (zones.empty()) return Unavailable("no RAPL package domains under " + powercap_root);

  if (poll_s <= 0) {
    // Poll at least twice per wrap at 1 kW per package: a wrap is never missed.
    uint64_t min_range_uj = std::numeric_limits<uint64_t>::max();
    for (const Zone& zone : zones) min_range_uj = std::min(min_range_uj, zone.max_range_uj);
    const double seconds_to_wrap_at_1kw = static_cast<double>(min_range_uj) / 1e6 / 1000.0;
    poll_s = std::clamp(seconds_to_wrap_at_1kw / 2.0, 0.05, 60.0);
  }
  return std::unique_ptr<EnergyMeter>(std::make_unique<RaplMeter>(std::move(zones), poll_s));
}

}  // namespace greenfed
