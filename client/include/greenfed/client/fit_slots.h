// FitSlots: at most N concurrent fits across the processes of one machine.
//
// `greenfed run` starts every client on one host; ten clients on two cores that all train at
// once time-share the cores and lose ~20% to the contention (issue 11). The launcher therefore
// makes a directory of N slot files in the run directory and passes it to each client
// (`--fit-slots-dir DIR --fit-slots N`); a client holds one slot for the duration of each Fit.
//
// A slot is an advisory lock (flock(2), LOCK_EX) on DIR/slot-K.lock, 0 <= K < N. The kernel
// drops a process's locks when it exits or is killed, so a crashed client never leaks a slot.
// Acquire() sweeps the slots with LOCK_NB, starting at a per-client offset so that clients do
// not all contend for slot 0, and sleeps between sweeps (1 ms doubling to max_poll_s, 10 ms by
// default); the files are opened once per wait, so a sweep is N flock calls and a waiter costs
// ~100 wake-ups a second. Measured with the first version (4 ms, files reopened per sweep):
// ~4.6 CPU-s over a 100 s run of 10 clients on 2 slots, the reason for both changes. Waiting is not fair (no queue): a slot
// that frees goes to whichever waiter sweeps next. Every process must use the same N for one
// DIR; a process with a smaller N simply never takes the higher slots.
//
// Time spent in Acquire() is the caller's to meter; the client meters it as idle, not fit.
//
// Thread safety: a FitSlots may be shared by threads of one process (each Acquire() opens
// its own descriptor, so two threads of one process exclude each other as two processes
// do); a FitSlot is owned by one thread at a time and releases its slot when destroyed.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "greenfed/status.h"

namespace greenfed {

struct FitSlotsOptions {
  std::string dir;               // directory of the slot files; created (one level) when missing
  uint32_t slots = 1;            // N, the number of concurrent holders allowed; 1..4096
  double max_poll_s = 0.01;      // longest sleep between two sweeps over the slots
};

// One held slot; releases it (closes the descriptor, which drops the lock) when destroyed.
class FitSlot {
 public:
  FitSlot() = default;  // holds nothing
  FitSlot(FitSlot&& other) noexcept;
  FitSlot& operator=(FitSlot&& other) noexcept;
  FitSlot(const FitSlot&) = delete;
  FitSlot& operator=(const FitSlot&) = delete;
  ~FitSlot();

  bool held() const { return fd_ >= 0; }
  uint32_t index() const { return index_; }  // K of DIR/slot-K.lock; meaningful when held()
  void Release();

 private:
  friend class FitSlots;
  FitSlot(int fd, uint32_t index) : fd_(fd), index_(index) {}
  int fd_ = -1;
  uint32_t index_ = 0;
};

class FitSlots {
 public:
  // Checks the options and creates the directory and the N slot files.
  [[nodiscard]] static StatusOr<FitSlots> Open(FitSlotsOptions options);

  // Blocks until a slot is free and returns it held. Sweeps start at slot (first_hint % N).
  // UNAVAILABLE "stopped while waiting" when *cancel becomes true while waiting (nullptr: wait
  // for ever), or UNAVAILABLE naming the file when a slot file cannot be opened or locked for a
  // reason other than "held by another".
  [[nodiscard]] StatusOr<FitSlot> Acquire(uint32_t first_hint, const std::atomic<bool>* cancel = nullptr) const;
  // One sweep, no waiting: a held slot, or an unheld FitSlot when every slot is taken.
  [[nodiscard]] StatusOr<FitSlot> TryAcquire(uint32_t first_hint) const;

  const FitSlotsOptions& options() const { return options_; }
  std::string SlotPath(uint32_t index) const;

 private:
  explicit FitSlots(FitSlotsOptions options) : options_(std::move(options)) {}
  // One LOCK_NB sweep over the descriptors in *fds (a SlotFds of fit_slots.cc), opening those
  // not yet open, so that a waiting Acquire() opens each file once.
  StatusOr<FitSlot> Sweep(uint32_t first_hint, void* fds) const;
  FitSlotsOptions options_;
};

}  // namespace greenfed
