// Env: the seam between greenfed and the operating system for time and process
// statistics. Production code uses NewSystemEnv(); tests pass a fake with a clock
// and CPU counters they control.
//
// Thread safety: implementations must be safe to call from several threads.
#pragma once

#include <cstdint>
#include <memory>

namespace greenfed {

class Env {
 public:
  virtual ~Env() = default;
  // Monotonic seconds since an arbitrary origin.
  virtual double NowSeconds() = 0;
  // CPU seconds (user + sys) consumed by this process and its threads so far.
  virtual double ProcessCpuSeconds() = 0;
  // Resident set size of this process in bytes (0 if unknown).
  virtual uint64_t ResidentBytes() = 0;
};

// The real clock (steady_clock), getrusage(RUSAGE_SELF) and /proc/self/statm.
std::unique_ptr<Env> NewSystemEnv();

}  // namespace greenfed
