// The RAPL split of `greenfed simulate`: the package energy that RAPL measures, split
// over the work done in this one process by thread CPU-time share, so that each virtual
// client's fits and evaluations, and the coordinator, get measured joules of their own
// (source rapl-split, nodes.csv "apportioned"; docs/energy.md, "Split RAPL").
//
// Window-based split. The ledger closes a window whenever a work item (a virtual client's
// fit or evaluation, on a worker thread) begins or ends, and whenever the coordinator's
// meter is read. Over one window the package counter's increment E (integer microjoules)
// is split over the items that ran in it and the coordinator, in proportion to the CPU
// nanoseconds each used in the window: an item's from its thread's CPU clock
// (CLOCK_THREAD_CPUTIME_ID of that thread, read through pthread_getcpuclockid), the
// coordinator's as the process's CPU time minus the items'. A window in which nothing
// used CPU goes to the coordinator (the package idling while the coordinator waits).
// Every microjoule the counter advanced while the ledger was open is booked once:
// sum of items + coordinator == package increment, exactly (SplitEnergyByCpu gives the
// rounding remainder by largest remainder, in whole microjoules).
//
// Error, stated in docs/energy.md: the package counter covers the whole package, so its
// idle power and any other process's energy are split over greenfed's work in proportion
// to its CPU share; DRAM (a separate RAPL domain) is not in it.
//
// Fallback. A package reading that fails (the file is unreadable, the counter went
// backwards: rapl.cc) ends the split for the rest of the run. The ledger keeps what it
// booked up to the last good window; an item running then, or begun later, ends with
// split == false and its caller models it (source model); CoordinatorUj() returns the
// failure; Failure() names it. Nothing is negative, nothing throws.
//
// Thread safety: SplitLedger is thread-safe (one mutex; the clocks are called under it).
// SplitCoordinatorMeter is thread-safe like every EnergyMeter.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "greenfed/env.h"
#include "greenfed/meter.h"
#include "greenfed/status.h"

namespace greenfed {

// Splits `energy_uj` over items in proportion to their `cpu_ns` (a negative value counts
// as 0): item i gets floor(energy_uj * cpu_i / sum), and the microjoules those floors leave
// go one each to the items with the largest remainders (ties: the lower index). The result
// sums to energy_uj exactly; an item with no CPU gets 0. When no item used CPU, every
// share is 0 and the caller books the window elsewhere (SplitLedger: to the coordinator).
std::vector<uint64_t> SplitEnergyByCpu(uint64_t energy_uj, const std::vector<int64_t>& cpu_ns);

// What the ledger reads. Production: SystemSplitClocks; tests give made-up clocks.
struct SplitClocks {
  // The package counters' total since some start, in microjoules, non-decreasing; an error
  // when unreadable (a RAPL EnergyMeter through PackageMicrojoules).
  std::function<StatusOr<uint64_t>()> package_uj;
  // This process's CPU time (user + system), nanoseconds.
  std::function<int64_t()> process_cpu_ns;
  // The CPU time of the thread whose clock key is `clock` (SplitLedger::Begin), nanoseconds.
  std::function<int64_t(int64_t clock)> thread_cpu_ns;
};

// The package total of a RAPL meter in microjoules (its joules x 1e6, rounded; exact below
// 2^53 uJ, about 9 GJ).
StatusOr<uint64_t> PackageMicrojoules(EnergyMeter* package);
// The real clocks over `package`, which must outlive them: the process CPU clock and the
// threads' CPU clocks, keyed by CurrentThreadClock().
SplitClocks SystemSplitClocks(std::shared_ptr<EnergyMeter> package);
// The calling thread's CPU clock (pthread_getcpuclockid), as a key for SplitLedger::Begin
// with SystemSplitClocks; readable by any thread of the process while this one lives.
int64_t CurrentThreadClock();

class SplitLedger {
  struct Key {  // only Open() constructs a ledger
    explicit Key() = default;
  };

 public:
  // Takes the first readings; fails (with the package's error) when the package is unreadable.
  static StatusOr<std::unique_ptr<SplitLedger>> Open(SplitClocks clocks);
  SplitLedger(Key, SplitClocks clocks);

  using ItemId = uint64_t;
  // A work item begins on the thread whose clock key is `clock`; closes a window first.
  ItemId Begin(int64_t clock);
  struct ItemShare {
    bool split = false;     // false: the split failed during the item; model it instead
    uint64_t energy_uj = 0; // its share of the windows it ran in (0 when !split)
    int64_t cpu_ns = 0;     // its thread's CPU time from Begin to End
  };
  // The item ends (call it on the item's thread, before it starts another); closes a window.
  ItemShare End(ItemId id);
  // Closes a window; the coordinator's share so far (its CPU share and the idle windows),
  // or the failure once the split has failed.
  StatusOr<uint64_t> CoordinatorUj();

  struct Totals {
    uint64_t package_uj = 0;      // the counter's increment over the windows closed so far
    uint64_t items_uj = 0;        // booked to work items (ended or running)
    uint64_t coordinator_uj = 0;  // booked to the coordinator
    uint64_t windows = 0;         // windows closed
    uint64_t items = 0;           // items that ended with split == true
  };
  Totals totals();
  // Why the split stopped, e.g. "rapl-split stopped at window 12: DATA_LOSS: RAPL counter ...
  // went backwards ..."; empty while it works.
  std::optional<std::string> Failure();

 private:
  void CloseWindowLocked();
  struct Item {
    int64_t clock = 0;
    int64_t last_cpu_ns = 0;   // the thread's CPU at the last window
    int64_t begin_cpu_ns = 0;  // ... at Begin
    uint64_t energy_uj = 0;
  };
  SplitClocks clocks_;
  std::mutex mu_;
  uint64_t last_package_uj_ = 0;  // guarded by mu_, as is everything below
  int64_t last_process_cpu_ns_ = 0;
  std::map<ItemId, Item> running_;
  ItemId next_id_ = 1;
  Totals totals_;
  std::optional<std::string> failure_;
};

// The coordinator's meter in a split run: its share of the package (SplitLedger::
// CoordinatorUj), source rapl-split. After the split fails, the first reading returns the
// failure (PhaseMeter books that phase as 0 J with a warning) and from then on the
// meter is the CPU model over `env` (source model), so no record mixes the two.
class SplitCoordinatorMeter final : public EnergyMeter {
 public:
  // `ledger` and `env` must outlive the meter; `package` names the counters in Describe().
  SplitCoordinatorMeter(std::shared_ptr<SplitLedger> ledger, std::string package, const PowerModel& model, Env* env);
  EnergySource source() const override;
  StatusOr<double> EnergyJ() override;
  std::string Describe() const override;

 private:
  std::shared_ptr<SplitLedger> ledger_;
  const std::string package_;
  std::unique_ptr<EnergyMeter> model_;  // running from construction; read after the switch
  std::mutex mu_;                      // serialises EnergyJ()
  std::atomic<bool> modelled_{false};  // set once, by EnergyJ() under mu_
};

}  // namespace greenfed
