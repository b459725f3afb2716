#include "greenfed/coordinator/sampling.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <tuple>

#include "greenfed/csv.h"
#include "numeric.h"

namespace greenfed {

namespace {

using detail::Mix;

constexpr char kTraceHeader[] = "country,utc_hour,g_co2e_per_kwh";
constexpr int kHours = 24;
// Above every grid on record (coal plants emit ~1,000 g/kWh): a figure past this
// is a unit error (kg, or g/MWh), not a dirty grid.
constexpr double kMaxTraceGPerKwh = 5000;

std::string Trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\r')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r')) --e;
  return s.substr(b, e - b);
}

bool ValidCountry(const std::string& c) {
  if (c.size() < 2 || c.size() > 8) return false;
  for (char ch : c) {
    if (!((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))) return false;
  }
  return true;
}

std::string Num(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

// ---- uniform -------------------------------------------------------------------

class UniformPolicy final : public SamplingPolicy {
 public:
  std::string Describe() const override { return "uniform"; }
  SamplingDecision Sample(const std::vector<SamplingCandidate>& available, const SamplingRequest& r) override {
    std::vector<uint32_t> indices;
    indices.reserve(available.size());
    for (const auto& c : available) indices.push_back(c.index);
    SamplingDecision d;
    d.indices = UniformDraw(indices, r.round, r.attempt, r.seed, r.fraction, r.min_fit);
    return d;
  }
};

// ---- carbon-aware --------------------------------------------------------------

class CarbonAwarePolicy final : public SamplingPolicy {
 public:
  explicit CarbonAwarePolicy(const SamplingOptions& o)
      : options_(o), table_(o.table ? o.table : std::make_shared<const CarbonTable>(CarbonTable::BuiltIn())) {
    if (auto world = table_->Lookup("WORLD"); world.ok()) world_g_per_kwh_ = world->g_per_kwh;
  }

  std::string Describe() const override {
    return "carbon-aware(fairness_rounds=" + std::to_string(options_.fairness_rounds) +
           (options_.intensity_trace_path.empty() ? "" : ", trace=" + options_.intensity_trace_path) + ")";
  }

  SamplingDecision Sample(const std::vector<SamplingCandidate>& available, const SamplingRequest& r) override {
    const auto n = static_cast<uint32_t>(available.size());
    const uint32_t k = SampleCount(n, r.fraction, r.min_fit);
    const uint64_t K = options_.fairness_rounds;
    struct Scored {
      const SamplingCandidate* c;
      double score;       // g/kWh x PUE
      uint64_t waited;    // available rounds unsampled, this one included
      uint64_t tie;       // seeded tie-break
    };
    std::vector<Scored> all;
    all.reserve(n);
    double available_score = 0;
    const uint64_t tie_seed = Mix(r.seed ^ Mix(r.round * 7919ull + r.attempt) ^ 0xC0FFEEull);
    for (const auto& c : available) {
      Window& w = windows_[c.index];
      // A client absent from the previous round starts a new window; a retry of
      // the same round (last_available == round) keeps it.
      if (w.last_available + 1 < r.round) w.streak_start = r.round;
      w.last_available = r.round;
      const uint64_t from = std::max(w.last_sampled + 1, w.streak_start);
      const uint64_t waited = r.round >= from ? r.round - from + 1 : 0;
      all.push_back({&c, Intensity(c, r.utc_hour) * c.pue, waited, Mix(tie_seed ^ c.index)});
      available_score += all.back().score;
    }
    // Due first (longest wait first), then cleanest, then the seeded tie-break.
    std::sort(all.begin(), all.end(), [K](const Scored& a, const Scored& b) {
      const bool da = a.waited >= K, db = b.waited >= K;
      if (da != db) return da;
      if (da && a.waited != b.waited) return a.waited > b.waited;
      if (a.score != b.score) return a.score < b.score;
      if (a.tie != b.tie) return a.tie < b.tie;
      return a.c->index < b.c->index;
    });
    uint32_t due = 0;
    for (const auto& s : all) due += s.waited >= K ? 1 : 0;
    const uint32_t take = std::max(k, due);
    all.resize(std::min<size_t>(take, all.size()));
    std::sort(all.begin(), all.end(), [](const Scored& a, const Scored& b) { return a.c->index < b.c->index; });
    SamplingDecision d;
    d.due = due;
    d.note = "carbon-aware " + (r.utc_hour >= 0 ? std::to_string(r.utc_hour) + "h UTC" : std::string("annual")) + ":";
    double sampled_score = 0;
    for (size_t i = 0; i < all.size(); ++i) {
      const Scored& s = all[i];
      d.indices.push_back(s.c->index);
      windows_[s.c->index].last_sampled = r.round;
      sampled_score += s.score;
      if (i < kNoteClients) {
        d.note += (i ? ", " : " ") + std::to_string(s.c->index) + " " + s.c->country + (s.waited >= K ? "*" : "") +
                  " " + std::to_string(static_cast<long long>(std::llround(s.score)));
      }
    }
    if (all.size() > kNoteClients) {
      // Large federations: the first clients, then the mean of the sample against all available.
      d.note += ", ... (" + std::to_string(all.size() - kNoteClients) + " more; mean " +
                std::to_string(static_cast<long long>(std::llround(sampled_score / static_cast<double>(all.size())))) +
                " sampled, " + std::to_string(static_cast<long long>(std::llround(available_score / n))) +
                " available)";
    }
    if (due > k) {
      d.note += " (fairness floor: " + std::to_string(due) + " due, more than k=" + std::to_string(k) + ")";
    }
    return d;
  }

  std::vector<uint8_t> SaveState() const override {
    // Layout (little-endian): u32 version 1, u64 count, then per client index
    // u32 index, u64 last_sampled, u64 streak_start, u64 last_available.
    std::vector<uint8_t> out;
    auto put = [&out](auto v) {
      uint8_t buf[sizeof(v)];
      std::memcpy(buf, &v, sizeof(v));
      out.insert(out.end(), buf, buf + sizeof(v));
    };
    put(kStateVersion);
    put(static_cast<uint64_t>(windows_.size()));
    for (const auto& [index, w] : windows_) {
      put(index);
      put(w.last_sampled);
      put(w.streak_start);
      put(w.last_available);
    }
    return out;
  }

  Status RestoreState(const std::vector<uint8_t>& state) override {
    const std::string what = Describe() + " state";
    if (state.empty()) {  // a run that sampled nothing yet
      windows_.clear();
      return Status::Ok();
    }
    size_t pos = 0;
    auto get = [&](auto* v) {
      if (state.size() - pos < sizeof(*v)) return false;
      std::memcpy(v, state.data() + pos, sizeof(*v));
      pos += sizeof(*v);
      return true;
    };
    uint32_t version = 0;
    uint64_t count = 0;
    if (!get(&version) || !get(&count)) {
      return DataLoss(what + " is " + std::to_string(state.size()) + " bytes, shorter than its 12-byte header");
    }
    if (version != kStateVersion) {
      return DataLoss(what + " has version " + std::to_string(version) + ", expected " + std::to_string(kStateVersion));
    }
    constexpr size_t kEntry = 4 + 3 * 8;
    if (count > (state.size() - pos) / kEntry || state.size() - pos != count * kEntry) {
      return DataLoss(what + " says " + std::to_string(count) + " clients but holds " +
                      std::to_string(state.size() - pos) + " bytes of " + std::to_string(kEntry) + "-byte entries");
    }
    std::map<uint32_t, Window> windows;
    for (uint64_t i = 0; i < count; ++i) {
      uint32_t index = 0;
      Window w;
      (void)(get(&index) && get(&w.last_sampled) && get(&w.streak_start) && get(&w.last_available));
      if (!windows.emplace(index, w).second) {
        return DataLoss(what + " lists client index " + std::to_string(index) + " twice");
      }
    }
    windows_ = std::move(windows);
    return Status::Ok();
  }

 private:
  static constexpr uint32_t kStateVersion = 1;
  static constexpr size_t kNoteClients = 16;  // clients named in the log line; the rest are summarised
  struct Window {
    uint64_t last_sampled = 0;    // last round sampled; 0 = never
    uint64_t streak_start = 0;    // first round of the current run of available rounds
    uint64_t last_available = 0;  // last round in the available set; 0 = never
  };

  double Intensity(const SamplingCandidate& c, int utc_hour) const {
    double g = 0;
    if (options_.trace && utc_hour >= 0 && options_.trace->Lookup(c.country, utc_hour, &g)) return g;
    if (auto ci = table_->Lookup(c.country); ci.ok()) return ci->g_per_kwh;
    return world_g_per_kwh_;
  }

  SamplingOptions options_;
  std::shared_ptr<const CarbonTable> table_;
  double world_g_per_kwh_ = 0;
  std::map<uint32_t, Window> windows_;  // by client index
};

}  // namespace

// ---- IntensityTrace ------------------------------------------------------------

StatusOr<IntensityTrace> IntensityTrace::Parse(const std::string& text, const std::string& name) {
  IntensityTrace t;
  std::map<std::string, int> first_line;                   // country -> line of its first row
  std::map<std::pair<std::string, int>, int> seen;         // (country, hour) -> line
  std::istringstream in(text);
  std::string raw;
  int line = 0;
  bool header = false;
  while (std::getline(in, raw)) {
    ++line;
    const std::string s = Trim(raw);
    if (s.empty() || s[0] == '#') continue;
    const std::string at = name + ":" + std::to_string(line) + ": ";
    auto fields = SplitCsvLine(s);
    if (!fields.ok()) return InvalidArgument(at + fields.status().message());
    for (auto& f : *fields) f = Trim(f);
    if (!header) {
      std::string got;
      for (size_t i = 0; i < fields->size(); ++i) got += (i ? "," : "") + (*fields)[i];
      if (got != kTraceHeader) {
        return InvalidArgument(at + "header is '" + got + "', expected '" + kTraceHeader + "'");
      }
      header = true;
      continue;
    }
    if (fields->size() != 3) {
      return InvalidArgument(at + std::to_string(fields->size()) + " fields, expected 3 (" + kTraceHeader + ")");
    }
    const std::string& country = (*fields)[0];
    const std::string& hour_text = (*fields)[1];
    const std::string& g_text = (*fields)[2];
    if (!ValidCountry(country)) {
      return InvalidArgument(at + "country '" + country + "' is not an upper-case code of 2..8 letters or digits");
    }
    if (hour_text.empty() || hour_text.size() > 2 || hour_text.find_first_not_of("0123456789") != std::string::npos ||
        std::atoi(hour_text.c_str()) >= kHours) {
      return InvalidArgument(at + "utc_hour '" + hour_text + "' is not an integer in 0..23");
    }
    const int hour = std::atoi(hour_text.c_str());
    errno = 0;
    char* end = nullptr;
    const double g = std::strtod(g_text.c_str(), &end);
    if (g_text.empty() || end != g_text.c_str() + g_text.size() || errno == ERANGE || !std::isfinite(g)) {
      return InvalidArgument(at + "g_co2e_per_kwh '" + g_text + "' is not a finite number");
    }
    if (g < 0 || g > kMaxTraceGPerKwh) {
      return InvalidArgument(at + "g_co2e_per_kwh " + g_text + " is outside 0.." + Num(kMaxTraceGPerKwh) +
                             " (a unit error? the column is grams per kWh)");
    }
    if (auto [it, fresh] = seen.emplace(std::make_pair(country, hour), line); !fresh) {
      return InvalidArgument(at + country + " hour " + std::to_string(hour) + " is given twice (first on line " +
                             std::to_string(it->second) + ")");
    }
    first_line.emplace(country, line);
    auto& hours = t.by_country_[country];
    if (hours.empty()) hours.assign(kHours, -1);
    hours[static_cast<size_t>(hour)] = g;
  }
  if (!header) return InvalidArgument(name + ": no header line (expected '" + std::string(kTraceHeader) + "')");
  if (t.by_country_.empty()) return InvalidArgument(name + ": the trace has a header but no rows");
  for (const auto& [country, hours] : t.by_country_) {
    std::string missing;
    for (int h = 0; h < kHours; ++h) {
      if (hours[static_cast<size_t>(h)] < 0) missing += (missing.empty() ? "" : ",") + std::to_string(h);
    }
    if (!missing.empty()) {
      return InvalidArgument(name + ":" + std::to_string(first_line[country]) + ": " + country +
                             " lacks utc_hour " + missing + " (each country needs all 24 hours 0..23)");
    }
  }
  return t;
}

StatusOr<IntensityTrace> IntensityTrace::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("cannot read intensity trace " + path + ": " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return DataLoss("error reading intensity trace " + path);
  return Parse(ss.str(), path);
}

std::vector<std::string> IntensityTrace::Countries() const {
  std::vector<std::string> out;
  for (const auto& [country, hours] : by_country_) out.push_back(country);
  return out;
}

bool IntensityTrace::Lookup(const std::string& country, int utc_hour, double* g_per_kwh) const {
  if (utc_hour < 0 || utc_hour >= kHours) return false;
  auto it = by_country_.find(country);
  if (it == by_country_.end()) return false;
  *g_per_kwh = it->second[static_cast<size_t>(utc_hour)];
  return true;
}

// ---- shared --------------------------------------------------------------------

Status SamplingPolicy::RestoreState(const std::vector<uint8_t>& state) {
  if (!state.empty()) {
    return DataLoss("sampling " + Describe() + " keeps no state, but the checkpoint holds " +
                    std::to_string(state.size()) + " bytes of it");
  }
  return Status::Ok();
}

uint32_t SampleCount(uint32_t n, double fraction, uint32_t min_fit) {
  uint32_t k = static_cast<uint32_t>(std::ceil(fraction * n - 1e-9));
  return std::min(n, std::max(k, min_fit));
}

std::vector<uint32_t> UniformDraw(const std::vector<uint32_t>& available, uint64_t round, uint32_t attempt,
                                  uint64_t seed, double fraction, uint32_t min_fit) {
  std::vector<uint32_t> pool = available;
  const auto n = static_cast<uint32_t>(pool.size());
  const uint32_t k = SampleCount(n, fraction, min_fit);
  // Deterministic partial Fisher-Yates by (seed, round, attempt).
  uint64_t state = Mix(seed ^ Mix(round * 7919ull + attempt));
  for (uint32_t i = 0; i < k; ++i) {
    state = Mix(state);
    const uint32_t j = i + static_cast<uint32_t>(state % (n - i));
    std::swap(pool[i], pool[j]);
  }
  pool.resize(k);
  std::sort(pool.begin(), pool.end());
  return pool;
}

std::string SamplingNames() { return "uniform, carbon-aware"; }

Status ValidateSamplingOptions(const SamplingOptions& o) {
  if (o.name != "uniform" && o.name != "carbon-aware") {
    return InvalidArgument("--sampling must be one of " + SamplingNames() + ", got '" + o.name + "'");
  }
  if (o.fairness_rounds == 0) return InvalidArgument("--fairness-rounds must be at least 1");
  if (o.name == "uniform" && (o.trace || !o.intensity_trace_path.empty())) {
    return InvalidArgument("--intensity-trace needs --sampling carbon-aware (uniform sampling reads no intensity)");
  }
  if (o.trace) {
    // Every country of the trace must be one the table knows: a typo would never
    // match a client, and the run would silently use annual figures.
    const CarbonTable builtin = o.table ? CarbonTable() : CarbonTable::BuiltIn();
    const CarbonTable& table = o.table ? *o.table : builtin;
    for (const auto& country : o.trace->Countries()) {
      if (!table.Lookup(country).ok()) {
        return InvalidArgument("--intensity-trace " + o.intensity_trace_path + ": country " + country +
                               " is not in the carbon table (see `greenfed countries`)");
      }
    }
  }
  return Status::Ok();
}

StatusOr<std::unique_ptr<SamplingPolicy>> MakeSamplingPolicy(const SamplingOptions& o) {
  GREENFED_RETURN_IF_ERROR(ValidateSamplingOptions(o));
  if (o.name == "carbon-aware") return std::unique_ptr<SamplingPolicy>(std::make_unique<CarbonAwarePolicy>(o));
  return std::unique_ptr<SamplingPolicy>(std::make_unique<UniformPolicy>());
}

}  // namespace greenfed
