#include "greenfed/sim/rapl_split.h"

#include <pthread.h>
#include <time.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

namespace greenfed {
namespace {

// 128-bit products: energy (up to 2^64 uJ) x CPU ns (up to 2^63) does not fit in 64 bits.
__extension__ typedef unsigned __int128 Wide;

int64_t ClockNs(clockid_t clock) {
  timespec ts{};
  if (::clock_gettime(clock, &ts) != 0) return 0;
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + static_cast<int64_t>(ts.tv_nsec);
}

}  // namespace

std::vector<uint64_t> SplitEnergyByCpu(uint64_t energy_uj, const std::vector<int64_t>& cpu_ns) {
  std::vector<uint64_t> out(cpu_ns.size(), 0);
  Wide total = 0;
  for (int64_t c : cpu_ns) total += static_cast<Wide>(std::max<int64_t>(c, 0));
  if (total == 0 || energy_uj == 0) return out;
  std::vector<Wide> remainder(cpu_ns.size(), 0);
  uint64_t booked = 0;
  for (size_t i = 0; i < cpu_ns.size(); ++i) {
    const Wide product = static_cast<Wide>(energy_uj) * static_cast<Wide>(std::max<int64_t>(cpu_ns[i], 0));
    out[i] = static_cast<uint64_t>(product / total);  // <= energy_uj
    remainder[i] = product % total;
    booked += out[i];
  }
  // sum of floors >= energy_uj - (n - 1), so at most n - 1 microjoules are left.
  std::vector<size_t> order(cpu_ns.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return remainder[a] > remainder[b]; });
  for (size_t k = 0; booked < energy_uj && k < order.size(); ++k) {
    if (remainder[order[k]] == 0) break;
    ++out[order[k]];
    ++booked;
  }
  return out;
}

StatusOr<uint64_t> PackageMicrojoules(EnergyMeter* package) {
  GREENFED_ASSIGN_OR_RETURN(double joules, package->EnergyJ());
  if (!std::isfinite(joules) || joules < 0) return DataLoss(package->Describe() + ": reading is not a finite, non-negative number");
  return static_cast<uint64_t>(std::llround(joules * 1e6));
}

SplitClocks SystemSplitClocks(std::shared_ptr<EnergyMeter> package) {
  SplitClocks c;
  c.package_uj = [package] { return PackageMicrojoules(package.get()); };
  c.process_cpu_ns = [] { return ClockNs(CLOCK_PROCESS_CPUTIME_ID); };
  c.thread_cpu_ns = [](int64_t clock) { return ClockNs(static_cast<clockid_t>(clock)); };
  return c;
}

int64_t CurrentThreadClock() {
  clockid_t clock = CLOCK_THREAD_CPUTIME_ID;
  if (::pthread_getcpuclockid(::pthread_self(), &clock) != 0) clock = CLOCK_THREAD_CPUTIME_ID;
  return static_cast<int64_t>(clock);
}

SplitLedger::SplitLedger(Key, SplitClocks clocks) : clocks_(std::move(clocks)) {}

StatusOr<std::unique_ptr<SplitLedger>> SplitLedger::Open(SplitClocks clocks) {
  if (!clocks.package_uj || !clocks.process_cpu_ns || !clocks.thread_cpu_ns) {
    return InvalidArgument("SplitLedger needs all three clocks");
  }
  auto ledger = std::make_unique<SplitLedger>(Key{}, std::move(clocks));
  GREENFED_ASSIGN_OR_RETURN(ledger->last_package_uj_, ledger->clocks_.package_uj());
  ledger->last_process_cpu_ns_ = ledger->clocks_.process_cpu_ns();
  return ledger;
}

void SplitLedger::CloseWindowLocked() {
  if (failure_) return;
  StatusOr<uint64_t> package = clocks_.package_uj();
  if (package.ok() && *package < last_package_uj_) {
    package = DataLoss("the package total went backwards from " + std::to_string(last_package_uj_) + " to " +
                       std::to_string(*package) + " uJ");
  }
  if (!package.ok()) {
    failure_ = "rapl-split stopped at window " + std::to_string(totals_.windows + 1) + ": " +
               package.status().ToString();
    return;
  }
  const uint64_t energy_uj = *package - last_package_uj_;
  last_package_uj_ = *package;
  const int64_t process_ns = clocks_.process_cpu_ns();
  const int64_t process_delta_ns = std::max<int64_t>(0, process_ns - last_process_cpu_ns_);
  last_process_cpu_ns_ = process_ns;

  std::vector<int64_t> cpu;
  cpu.reserve(running_.size() + 1);
  int64_t items_ns = 0;
  for (auto& [id, item] : running_) {
    const int64_t now = clocks_.thread_cpu_ns(item.clock);
    const int64_t d = std::max<int64_t>(0, now - item.last_cpu_ns);
    item.last_cpu_ns = std::max(item.last_cpu_ns, now);
    cpu.push_back(d);
    items_ns += d;
  }
  cpu.push_back(std::max<int64_t>(0, process_delta_ns - items_ns));  // the coordinator
  std::vector<uint64_t> shares = SplitEnergyByCpu(energy_uj, cpu);
  if (items_ns == 0 && cpu.back() == 0) shares.back() = energy_uj;  // nobody worked: idle
  size_t i = 0;
  for (auto& [id, item] : running_) {
    item.energy_uj += shares[i];
    totals_.items_uj += shares[i];
    ++i;
  }
  totals_.coordinator_uj += shares.back();
  totals_.package_uj += energy_uj;
  ++totals_.windows;
}

SplitLedger::ItemId SplitLedger::Begin(int64_t clock) {
  std::lock_guard<std::mutex> lock(mu_);
  CloseWindowLocked();
  const ItemId id = next_id_++;
  Item item;
  item.clock = clock;
  item.last_cpu_ns = clocks_.thread_cpu_ns(clock);
  item.begin_cpu_ns = item.last_cpu_ns;
  running_.emplace(id, item);
  return id;
}

SplitLedger::ItemShare SplitLedger::End(ItemId id) {
  std::lock_guard<std::mutex> lock(mu_);
  CloseWindowLocked();
  ItemShare share;
  auto it = running_.find(id);
  if (it == running_.end()) return share;
  share.cpu_ns = std::max<int64_t>(0, it->second.last_cpu_ns - it->second.begin_cpu_ns);
  if (!failure_) {
    share.split = true;
    share.energy_uj = it->second.energy_uj;
    ++totals_.items;
  }
  running_.erase(it);
  return share;
}

StatusOr<uint64_t> SplitLedger::CoordinatorUj() {
  std::lock_guard<std::mutex> lock(mu_);
  CloseWindowLocked();
  if (failure_) return Unavailable(*failure_);
  return totals_.coordinator_uj;
}

SplitLedger::Totals SplitLedger::totals() {
  std::lock_guard<std::mutex> lock(mu_);
  return totals_;
}

std::optional<std::string> SplitLedger::Failure() {
  std::lock_guard<std::mutex> lock(mu_);
  return failure_;
}

SplitCoordinatorMeter::SplitCoordinatorMeter(std::shared_ptr<SplitLedger> ledger, std::string package,
                                             const PowerModel& model, Env* env)
    : ledger_(std::move(ledger)), package_(std::move(package)), model_(NewModelMeter(model, env)) {}

EnergySource SplitCoordinatorMeter::source() const {
  return modelled_.load() ? EnergySource::kModel : EnergySource::kRaplSplit;
}

StatusOr<double> SplitCoordinatorMeter::EnergyJ() {
  std::lock_guard<std::mutex> lock(mu_);
  if (modelled_.load()) return model_->EnergyJ();
  StatusOr<uint64_t> uj = ledger_->CoordinatorUj();
  if (!uj.ok()) {
    // Keep the model's reading current, so the next phase starts from now.
    static_cast<void>(model_->EnergyJ());
    modelled_.store(true);
    return Unavailable(uj.status().message() + "; the coordinator's energy is modelled from the next phase on");
  }
  // Keep the model integrating, so that its intervals stay short.
  static_cast<void>(model_->EnergyJ());
  return static_cast<double>(*uj) / 1e6;
}

std::string SplitCoordinatorMeter::Describe() const {
  if (modelled_.load()) return "rapl-split (stopped; now " + model_->Describe() + ")";
  return "rapl-split: " + package_ + ", split by thread CPU-time share (this process's work)";
}

}  // namespace greenfed
