// NVML GPU energy counters, loaded with dlopen so that greenfed neither builds nor
// links against the NVIDIA driver: machines without it simply report Unavailable.
//
// nvmlDeviceGetTotalEnergyConsumption returns millijoules since the driver was
// loaded (Volta and newer); the meter reports the sum over all GPUs minus the sum at
// open. Like RAPL it covers the whole device, not this process.
#include <dlfcn.h>

#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "greenfed/meter.h"

namespace greenfed {
namespace {

// The few NVML declarations we need (nvml.h, stable C ABI).
using NvmlReturn = int;  // nvmlReturn_t
struct NvmlDeviceOpaque;
using NvmlDevice = NvmlDeviceOpaque*;  // nvmlDevice_t
constexpr NvmlReturn kNvmlSuccess = 0;
constexpr NvmlReturn kNvmlErrorNotSupported = 3;

using NvmlInitFn = NvmlReturn (*)();
using NvmlShutdownFn = NvmlReturn (*)();
using NvmlDeviceGetCountFn = NvmlReturn (*)(unsigned int*);
using NvmlDeviceGetHandleByIndexFn = NvmlReturn (*)(unsigned int, NvmlDevice*);
using NvmlDeviceGetTotalEnergyConsumptionFn = NvmlReturn (*)(NvmlDevice, unsigned long long*);
using NvmlErrorStringFn = const char* (*)(NvmlReturn);

// Owns the dlopen handle.
class SharedLibrary {
 public:
  explicit SharedLibrary(void* handle) : handle_(handle) {}
  ~SharedLibrary() {
    if (handle_ != nullptr) dlclose(handle_);
  }
  SharedLibrary(const SharedLibrary&) = delete;
  SharedLibrary& operator=(const SharedLibrary&) = delete;
  void* get() const { return handle_; }

 private:
  void* handle_;
};

struct NvmlApi {
  NvmlInitFn init = nullptr;
  NvmlShutdownFn shutdown = nullptr;
  NvmlDeviceGetCountFn get_count = nullptr;
  NvmlDeviceGetHandleByIndexFn get_handle = nullptr;
  NvmlDeviceGetTotalEnergyConsumptionFn get_energy = nullptr;
  NvmlErrorStringFn error_string = nullptr;  // optional: only for messages
};

template <typename Fn>
Status LoadSymbol(void* library, const char* name, const std::string& library_name, Fn* out) {
  dlerror();  // clear any earlier error
  void* symbol = dlsym(library, name);
  if (symbol == nullptr) {
    const char* error = dlerror();
    return Unavailable("NVML library " + library_name + " has no symbol " + name + ": " +
                       (error != nullptr ? error : "null symbol"));
  }
  *out = reinterpret_cast<Fn>(symbol);
  return Status::Ok();
}

std::string NvmlError(const NvmlApi& api, NvmlReturn code) {
  std::string text = "NVML error " + std::to_string(code);
  if (api.error_string != nullptr) {
    const char* message = api.error_string(code);
    if (message != nullptr) text += " (" + std::string(message) + ")";
  }
  return text;
}

class NvmlMeter final : public EnergyMeter {
 public:
  // Takes ownership of an initialised NVML session: shuts it down, then dlcloses.
  NvmlMeter(std::unique_ptr<SharedLibrary> library, NvmlApi api, std::vector<NvmlDevice> devices,
            unsigned long long baseline_mj)
      : library_(std::move(library)),
        api_(api),
        devices_(std::move(devices)),
        baseline_mj_(baseline_mj) {}

  ~NvmlMeter() override { api_.shutdown(); }  // library_ is closed after this body

  NvmlMeter(const NvmlMeter&) = delete;
  NvmlMeter& operator=(const NvmlMeter&) = delete;

  EnergySource source() const override { return EnergySource::kNvml; }

  StatusOr<double> EnergyJ() override {
    std::lock_guard<std::mutex> lock(mu_);
    unsigned long long total_mj = 0;
    for (size_t i = 0; i < devices_.size(); ++i) {
      unsigned long long mj = 0;
      const NvmlReturn rc = api_.get_energy(devices_[i], &mj);
      if (rc != kNvmlSuccess) {
        return Unavailable("nvmlDeviceGetTotalEnergyConsumption(GPU " + std::to_string(i) +
                           ") failed: " + NvmlError(api_, rc));
      }
      total_mj += mj;
    }
    // Counters reset only when the driver reloads; never report a decrease.
    if (total_mj > last_mj_) last_mj_ = total_mj;
    const unsigned long long since_open = last_mj_ > baseline_mj_ ? last_mj_ - baseline_mj_ : 0;
    return static_cast<double>(since_open) / 1e3;
  }

  std::string Describe() const override {
    const size_t n = devices_.size();
    return "nvml: " + std::to_string(n) + (n == 1 ? " GPU" : " GPUs");
  }

 private:
  std::unique_ptr<SharedLibrary> library_;  // declared first: destroyed last
  NvmlApi api_;
  std::vector<NvmlDevice> devices_;
  const unsigned long long baseline_mj_;
  std::mutex mu_;
  unsigned long long last_mj_ = 0;  // guarded by mu_
};

}  // namespace

StatusOr<std::unique_ptr<EnergyMeter>> OpenNvmlMeter(const std::string& library_name) {
  dlerror();
  auto library =
      std::make_unique<SharedLibrary>(dlopen(library_name.c_str(), RTLD_NOW | RTLD_LOCAL));
  if (library->get() == nullptr) {
    const char* error = dlerror();
    return Unavailable("cannot load NVML library " + library_name + ": " +
                       (error != nullptr ? error : "dlopen failed") +
                       " (no NVIDIA driver on this machine)");
  }

  NvmlApi api;
  GREENFED_RETURN_IF_ERROR(LoadSymbol(library->get(), "nvmlInit_v2", library_name, &api.init));
  GREENFED_RETURN_IF_ERROR(LoadSymbol(library->get(), "nvmlShutdown", library_name, &api.shutdown));
  GREENFED_RETURN_IF_ERROR(
      LoadSymbol(library->get(), "nvmlDeviceGetCount_v2", library_name, &api.get_count));
  GREENFED_RETURN_IF_ERROR(
      LoadSymbol(library->get(), "nvmlDeviceGetHandleByIndex_v2", library_name, &api.get_handle));
  GREENFED_RETURN_IF_ERROR(LoadSymbol(library->get(), "nvmlDeviceGetTotalEnergyConsumption",
                                      library_name, &api.get_energy));
  if (!LoadSymbol(library->get(), "nvmlErrorString", library_name, &api.error_string).ok()) {
    api.error_string = nullptr;
  }

  const NvmlReturn init_rc = api.init();
  if (init_rc != kNvmlSuccess) {
    return Unavailable("nvmlInit_v2 failed: " + NvmlError(api, init_rc));
  }
  // From here on every failure must shut NVML down before the library closes.
  auto fail = [&api](Status status) {
    api.shutdown();
    return status;
  };

  unsigned int count = 0;
  const NvmlReturn count_rc = api.get_count(&count);
  if (count_rc != kNvmlSuccess) {
    return fail(Unavailable("nvmlDeviceGetCount_v2 failed: " + NvmlError(api, count_rc)));
  }
  if (count == 0) return fail(Unavailable("NVML reports no GPUs"));

  std::vector<NvmlDevice> devices;
  unsigned long long baseline_mj = 0;
  for (unsigned int i = 0; i < count; ++i) {
    NvmlDevice device = nullptr;
    const NvmlReturn handle_rc = api.get_handle(i, &device);
    if (handle_rc != kNvmlSuccess) {
      return fail(Unavailable("nvmlDeviceGetHandleByIndex_v2(" + std::to_string(i) +
                              ") failed: " + NvmlError(api, handle_rc)));
    }
    unsigned long long mj = 0;
    const NvmlReturn energy_rc = api.get_energy(device, &mj);
    if (energy_rc == kNvmlErrorNotSupported) {
      return fail(Unavailable("GPU " + std::to_string(i) +
                              " has no energy counter (nvmlDeviceGetTotalEnergyConsumption "
                              "is NOT_SUPPORTED; it needs a Volta or newer GPU)"));
    }
    if (energy_rc != kNvmlSuccess) {
      return fail(Unavailable("nvmlDeviceGetTotalEnergyConsumption(GPU " + std::to_string(i) +
                              ") failed: " + NvmlError(api, energy_rc)));
    }
    devices.push_back(device);
    baseline_mj += mj;
  }
  return std::unique_ptr<EnergyMeter>(
      std::make_unique<NvmlMeter>(std::move(library), api, std::move(devices), baseline_mj));
}

}  // namespace greenfed
