// Power-model profiles, the model meter, OpenMeters, CommEnergyJ and PhaseMeter.
// The RAPL and NVML meters live in rapl.cc and nvml.cc.
#include "greenfed/meter.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <utility>

namespace greenfed {
namespace {

constexpr double kBytesPerGb = 1e9;  // SI gigabyte, as in "W/GB"
constexpr double kJoulesPerKwh = 3.6e6;

// "%g" without trailing noise, for notes and Describe().
std::string FormatNumber(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%g", value);
  return buffer;
}

std::string DescribeModel(const PowerModel& model) {
  return "model: " + model.profile + " (" + FormatNumber(model.watts_per_core) + " W/core, " +
         FormatNumber(model.watts_per_gb) + " W/GB)";
}

Status ValidateModel(const PowerModel& model) {
  if (!std::isfinite(model.watts_per_core) || model.watts_per_core < 0) {
    return InvalidArgument("power model '" + model.profile +
                           "': watts_per_core must be finite and >= 0 (got " +
                           FormatNumber(model.watts_per_core) + ")");
  }
  if (!std::isfinite(model.watts_per_gb) || model.watts_per_gb < 0) {
    return InvalidArgument("power model '" + model.profile +
                           "': watts_per_gb must be finite and >= 0 (got " +
                           FormatNumber(model.watts_per_gb) + ")");
  }
  return Status::Ok();
}

// Integrates the power model over time: each EnergyJ() adds the CPU seconds and the
// resident-memory GB-seconds since the previous call. Memory uses the trapezoid rule
// over the two RSS samples that bound the interval.
class ModelMeter final : public EnergyMeter {
 public:
  ModelMeter(const PowerModel& model, Env* env) : model_(model), env_(env) {
    last_wall_s_ = env_->NowSeconds();
    last_cpu_s_ = env_->ProcessCpuSeconds();
    last_rss_gb_ = static_cast<double>(env_->ResidentBytes()) / kBytesPerGb;
  }

  EnergySource source() const override { return EnergySource::kModel; }

  StatusOr<double> EnergyJ() override {
    std::lock_guard<std::mutex> lock(mu_);
    const double wall_s = env_->NowSeconds();
    const double cpu_s = env_->ProcessCpuSeconds();
    const double rss_gb = static_cast<double>(env_->ResidentBytes()) / kBytesPerGb;
    const double d_wall_s = std::max(0.0, wall_s - last_wall_s_);
    const double d_cpu_s = std::max(0.0, cpu_s - last_cpu_s_);
    const double mean_rss_gb = (rss_gb + last_rss_gb_) / 2.0;
    energy_j_ += d_cpu_s * model_.watts_per_core + mean_rss_gb * model_.watts_per_gb * d_wall_s;
    last_wall_s_ = wall_s;
    last_cpu_s_ = cpu_s;
    last_rss_gb_ = rss_gb;
    return energy_j_;
  }

  std::string Describe() const override { return DescribeModel(model_); }

 private:
  const PowerModel model_;
  Env* const env_;
  std::mutex mu_;
  double last_wall_s_ = 0;  // guarded by mu_ (as are the three below)
  double last_cpu_s_ = 0;
  double last_rss_gb_ = 0;
  double energy_j_ = 0;
};

}  // namespace

// Profiles. Only "green-algorithms" and "codecarbon" are the tools' own defaults;
// "rpi4" and "jetson-nano" divide a vendor or published whole-board figure by the
// core count. None of these numbers were measured by greenfed.
StatusOr<PowerModel> PowerModelProfile(const std::string& name) {
  PowerModel model;
  model.profile = name;
  if (name == "green-algorithms") {
    // Lannelongue, Grealey & Inouye, "Green Algorithms", Adv. Sci. 2021: 12 W per core
    // for an unknown CPU; memory 0.3725 W/GB (after Karyakin & Salem 2017).
    model.watts_per_core = 12.0;
    model.watts_per_gb = 0.3725;
  } else if (name == "codecarbon") {
    // CodeCarbon (mlco2/codecarbon, codecarbon/core/cpu.py DEFAULT_POWER_PER_CORE = 4):
    // 4 W per thread when the CPU model is not in its table; RAM 3 W per 8 GB = 0.375 W/GB.
    model.watts_per_core = 4.0;
    model.watts_per_gb = 0.375;
  } else if (name == "rpi4") {
    // Raspberry Pi 4 Model B, published third-party board measurement (Jeff Geerling,
    // "Power Consumption Benchmarks", pidramble.com): idle 540 mA = 2.7 W, `stress --cpu 4`
    // 1280 mA = 6.4 W at 5 V. Dynamic CPU power (6.4 - 2.7) / 4 cores = 0.925 W/core.
    // Not measured here. Memory: Green Algorithms' 0.3725 W/GB (no board-specific figure).
    model.watts_per_core = (6.4 - 2.7) / 4.0;
    model.watts_per_gb = 0.3725;
  } else if (name == "jetson-nano") {
    // NVIDIA Jetson Nano (4x Cortex-A57): vendor 10 W power mode (nvpmodel MAXN) is the
    // whole-module budget; 10 W / 4 cores = 2.5 W/core, an upper bound. Not measured
    // here. Memory: Green Algorithms' 0.3725 W/GB.
    model.watts_per_core = 10.0 / 4.0;
    model.watts_per_gb = 0.3725;
  } else {
    std::string valid;
    for (const std::string& known : PowerModelProfileNames()) {
      if (!valid.empty()) valid += ", ";
      valid += known;
    }
    return InvalidArgument("unknown power-model profile '" + name + "' (valid: " + valid + ")");
  }
  return model;
}

std::vector<std::string> PowerModelProfileNames() {
  return {"green-algorithms", "codecarbon", "rpi4", "jetson-nano"};
}

std::unique_ptr<EnergyMeter> NewModelMeter(const PowerModel& model, Env* env) {
  return std::make_unique<ModelMeter>(model, env);
}

StatusOr<MeterSet> OpenMeters(const MeterOptions& options, Env* env) {
  const std::string& kind = options.kind;
  if (kind != "auto" && kind != "model" && kind != "rapl" && kind != "nvml") {
    return InvalidArgument("unknown meter kind '" + kind + "' (valid: auto, model, rapl, nvml)");
  }
  if (env == nullptr) return InvalidArgument("OpenMeters needs an Env (got null)");
  GREENFED_RETURN_IF_ERROR(ValidateModel(options.model));

  MeterSet set;
  if (kind == "rapl") {
    StatusOr<std::unique_ptr<EnergyMeter>> rapl =
        OpenRaplMeter(options.powercap_root, options.rapl_poll_s);
    if (!rapl.ok()) return rapl.status().WithContext("meter kind 'rapl' requested");
    set.notes.push_back("rapl: using " + (*rapl)->Describe() + " (measured)");
    set.meters.push_back(std::move(rapl).value());
    return set;
  }
  if (kind == "nvml") {
    StatusOr<std::unique_ptr<EnergyMeter>> nvml = OpenNvmlMeter(options.nvml_library);
    if (!nvml.ok()) return nvml.status().WithContext("meter kind 'nvml' requested");
    set.notes.push_back("nvml: using " + (*nvml)->Describe() + " (measured)");
    set.meters.push_back(std::move(nvml).value());
    return set;
  }
  if (kind == "auto") {
    StatusOr<std::unique_ptr<EnergyMeter>> rapl =
        OpenRaplMeter(options.powercap_root, options.rapl_poll_s);
    if (rapl.ok()) {
      set.notes.push_back("rapl: using " + (*rapl)->Describe() + " (measured)");
      set.meters.push_back(std::move(rapl).value());
    } else {
      set.notes.push_back("rapl: not used: " + rapl.status().ToString());
    }
    StatusOr<std::unique_ptr<EnergyMeter>> nvml = OpenNvmlMeter(options.nvml_library);
    if (nvml.ok()) {
      set.notes.push_back("nvml: using " + (*nvml)->Describe() + " (measured)");
      set.meters.push_back(std::move(nvml).value());
    } else {
      set.notes.push_back("nvml: not used: " + nvml.status().ToString());
    }
    if (!set.meters.empty()) return set;
    set.notes.push_back("model: no hardware counter opened, so energy is modelled, not measured: " +
                        DescribeModel(options.model));
  } else {
    set.notes.push_back("model: meter kind 'model' requested, so energy is modelled: " +
                        DescribeModel(options.model));
  }
  set.meters.push_back(NewModelMeter(options.model, env));
  return set;
}

double CommEnergyJ(const CommModel& model, uint64_t bytes_sent, uint64_t bytes_received) {
  const double gigabytes =
      (static_cast<double>(bytes_sent) + static_cast<double>(bytes_received)) / kBytesPerGb;
  return gigabytes * model.kwh_per_gb * kJoulesPerKwh;
}

PhaseMeter::PhaseMeter(MeterSet meters, Env* env) : meters_(std::move(meters)), env_(env) {}

PhaseMeter::Mark PhaseMeter::Begin() {
  std::lock_guard<std::mutex> lock(mu_);
  Mark mark;
  mark.wall_s = env_->NowSeconds();
  mark.cpu_s = env_->ProcessCpuSeconds();
  mark.energy_j.reserve(meters_.meters.size());
  for (const auto& meter : meters_.meters) {
    StatusOr<double> reading = meter->EnergyJ();
    // NaN marks a failed start reading; End() turns it into a warning.
    mark.energy_j.push_back(reading.ok() ? *reading : std::numeric_limits<double>::quiet_NaN());
  }
  return mark;
}

std::vector<EnergyRecord> PhaseMeter::End(const Mark& start, Phase phase, int64_t round,
                                          std::vector<std::string>* warnings) {
  std::lock_guard<std::mutex> lock(mu_);
  const double wall_s = std::max(0.0, env_->NowSeconds() - start.wall_s);
  const double cpu_s = std::max(0.0, env_->ProcessCpuSeconds() - start.cpu_s);
  std::vector<EnergyRecord> records;
  records.reserve(meters_.meters.size());
  for (size_t i = 0; i < meters_.meters.size(); ++i) {
    EnergyMeter& meter = *meters_.meters[i];
    EnergyRecord record;
    record.phase = phase;
    record.round = round;
    record.wall_s = wall_s;
    record.cpu_s = cpu_s;
    record.source = meter.source();
    record.measured = IsMeasured(record.source);
    StatusOr<double> reading = meter.EnergyJ();
    const bool have_start = i < start.energy_j.size() && !std::isnan(start.energy_j[i]);
    if (!reading.ok() || !have_start) {
      if (warnings != nullptr) {
        const std::string why = !reading.ok()
                                    ? reading.status().ToString()
                                    : std::string("the reading at the phase start failed");
        warnings->push_back(meter.Describe() + ": " + PhaseName(phase) + " round " +
                            std::to_string(round) + " recorded as 0 J: " + why);
      }
    } else {
      record.energy_j = std::max(0.0, *reading - start.energy_j[i]);
    }
    records.push_back(record);
  }
  return records;
}

// meters_ never changes after construction and the meters are thread-safe, so the
// const accessors need no lock.
std::vector<std::string> PhaseMeter::Describe() const {
  std::vector<std::string> lines;
  for (const auto& meter : meters_.meters) lines.push_back(meter->Describe());
  return lines;
}

bool PhaseMeter::AnyMeasured() const {
  return std::any_of(meters_.meters.begin(), meters_.meters.end(),
                     [](const auto& meter) { return IsMeasured(meter->source()); });
}

}  // namespace greenfed
