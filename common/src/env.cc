#include "greenfed/env.h"

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <fstream>

namespace greenfed {
namespace {

double TimevalSeconds(const timeval& tv) {
  return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) * 1e-6;
}

// Stateless: every call asks the kernel, so one instance is safe on any thread.
class SystemEnv final : public Env {
 public:
  double NowSeconds() override {
    const auto since_origin = std::chrono::steady_clock::now().time_since_epoch();
    return std::chrono::duration<double>(since_origin).count();
  }

  double ProcessCpuSeconds() override {
    rusage usage{};
    if (getrusage(RUSAGE_SELF, &usage) != 0) return 0;
    return TimevalSeconds(usage.ru_utime) + TimevalSeconds(usage.ru_stime);
  }

  uint64_t ResidentBytes() override {
    // /proc/self/statm: size resident shared text lib data dt, in pages.
    std::ifstream statm("/proc/self/statm");
    uint64_t size_pages = 0;
    uint64_t resident_pages = 0;
    if (!(statm >> size_pages >> resident_pages)) return 0;
    const long page_bytes = sysconf(_SC_PAGESIZE);
    if (page_bytes <= 0) return 0;
    return resident_pages * static_cast<uint64_t>(page_bytes);
  }
};

}  // namespace

std::unique_ptr<Env> NewSystemEnv() { return std::make_unique<SystemEnv>(); }

}  // namespace greenfed
