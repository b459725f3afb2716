#include "greenfed/run_dir.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>

namespace greenfed {

namespace {

Status MakeDirs(const std::string& path) {
  std::string cur;
  std::stringstream ss(path);
  std::string part;
  if (!path.empty() && path[0] == '/') cur = "/";
  while (std::getline(ss, part, '/')) {
    if (part.empty()) continue;
    cur += part + "/";
    if (::mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) {
      return Unavailable("cannot create directory " + cur + ": " + std::strerror(errno));
    }
  }
  return Status::Ok();
}

bool FileExists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

std::string Num(double v) {
  std::ostringstream os;
  os << std::setprecision(10) << v;
  return os.str();
}

bool CountsComm(const NodeInfo& node) { return node.role == "client"; }

}  // namespace

double NodeRow::co2e_g() const {
  double energy = compute_j() * node.pue + (CountsComm(node) ? comm_j : 0.0);
  return Co2eGrams(energy, 1.0, node.g_per_kwh);
}

bool EnergyTotals::measured() const {
  if (sources.empty()) return false;
  for (auto s : sources) {
    if (!IsMeasured(s)) return false;
  }
  return true;
}

Status WriteFileAtomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return Unavailable("cannot write " + tmp + ": " + std::strerror(errno));
    out << text;
    out.flush();
    if (!out) return Unavailable("write to " + tmp + " failed: " + std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return Unavailable("cannot rename " + tmp + " to " + path + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

std::vector<std::string> DefaultReferenceCountries() {
  return {"USA", "CHN", "FRA", "DEU", "GBR", "IND", "WORLD"};
}

StatusOr<std::unique_ptr<RunDir>> RunDir::Create(const std::string& path) {
  if (path.empty()) return InvalidArgument("run directory path is empty");
  if (FileExists(path + "/rounds.csv")) {
    return FailedPrecondition("run directory " + path +
                              " already holds a run (rounds.csv exists); choose another --run-dir");
  }
  GREENFED_RETURN_IF_ERROR(MakeDirs(path));
  return std::make_unique<RunDir>(Key{}, path);
}

Status RunDir::WriteConfig(const std::string& json_text) {
  return WriteFileAtomic(path_ + "/config.json", json_text + "\n");
}

void RunDir::AddRound(const RoundRow& row) { rounds_.push_back(row); }

void RunDir::AddEnergy(const NodeInfo& node, const std::vector<EnergyRecord>& records) {
  for (const auto& r : records) {
    // Communication records have no meter of their own: they join the node's row
    // of its meter source (the model when no counter is known yet).
    EnergySource source = r.source;
    if (r.source == EnergySource::kComm) {
      source = EnergySource::kModel;
      for (const auto& [key, row] : nodes_) {
        if (std::get<0>(key) == r.round && std::get<1>(key) == node.node_id) {
          source = static_cast<EnergySource>(std::get<2>(key));
          break;
        }
      }
    }
    auto key = std::make_tuple(r.round, node.node_id, static_cast<int>(source));
    auto [it, inserted] = nodes_.try_emplace(key);
    NodeRow& row = it->second;
    if (inserted) {
      row.round = r.round;
      row.source = source;
    }
    row.node = node;
    if (r.source == EnergySource::kComm) {
      row.comm_j += r.energy_j;
      row.bytes_sent += r.bytes_sent;
      row.bytes_received += r.bytes_received;
      continue;
    }
    row.wall_s += r.wall_s;
    row.cpu_s += r.cpu_s;
    switch (r.phase) {
      case Phase::kFit:
      case Phase::kTrain: row.train_j += r.energy_j; break;
      case Phase::kEvaluate: row.evaluate_j += r.energy_j; break;
      case Phase::kAggregate: row.aggregate_j += r.energy_j; break;
      case Phase::kIdle: row.idle_j += r.energy_j; break;
      case Phase::kComm: row.comm_j += r.energy_j; break;
    }
  }
}

std::vector<NodeRow> RunDir::NodeRows() const {
  std::vector<NodeRow> rows;
  rows.reserve(nodes_.size());
  for (const auto& [key, row] : nodes_) rows.push_back(row);
  return rows;
}

EnergyTotals RunDir::Sum(const std::function<bool(int64_t)>& round_filter) const {
  EnergyTotals t;
  for (const auto& [key, row] : nodes_) {
    if (!round_filter(row.round)) continue;
    t.compute_j += row.compute_j();
    t.compute_pue_j += row.compute_j() * row.node.pue;
    if (CountsComm(row.node)) t.comm_j += row.comm_j;
    t.co2e_g += row.co2e_g();
    t.sources.insert(row.source);
  }
  return t;
}

EnergyTotals RunDir::Totals(int64_t max_round) const {
  return Sum([max_round](int64_t round) { return max_round < 0 || round <= max_round; });
}

EnergyTotals RunDir::RoundTotals(int64_t round) const {
  return Sum([round](int64_t r) { return r == round; });
}

Status RunDir::Flush() {
  std::ostringstream r;
  r << "round,clients_sampled,clients_succeeded,clients_failed,test_accuracy,test_loss,train_loss,"
       "round_s,elapsed_s,bytes_sent,bytes_received,energy_j,comm_j,co2e_g,fed_accuracy\n";
  for (const auto& row : rounds_) {
    EnergyTotals t = RoundTotals(row.round);
    r << row.round << "," << row.clients_sampled << "," << row.clients_succeeded << "," << row.clients_failed << ","
      << Num(row.test_accuracy) << "," << Num(row.test_loss) << "," << Num(row.train_loss) << ","
      << Num(row.round_s) << "," << Num(row.elapsed_s) << "," << row.bytes_sent << "," << row.bytes_received << ","
      << Num(t.compute_j) << "," << Num(t.comm_j) << "," << Num(t.co2e_g) << ","
      << (row.fed_accuracy ? Num(*row.fed_accuracy) : "") << "\n";
  }
  GREENFED_RETURN_IF_ERROR(WriteFileAtomic(path_ + "/rounds.csv", r.str()));

  std::ostringstream n;
  n << "round,node_id,role,country,pue,wall_s,cpu_s,train_j,evaluate_j,aggregate_j,idle_j,compute_j,comm_j,"
       "bytes_sent,bytes_received,source,measured\n";
  for (const auto& [key, row] : nodes_) {
    n << row.round << "," << row.node.node_id << "," << row.node.role << "," << row.node.country << ","
      << Num(row.node.pue) << "," << Num(row.wall_s) << "," << Num(row.cpu_s) << "," << Num(row.train_j) << ","
      << Num(row.evaluate_j) << "," << Num(row.aggregate_j) << "," << Num(row.idle_j) << ","
      << Num(row.compute_j()) << "," << Num(row.comm_j) << "," << row.bytes_sent << "," << row.bytes_received
      << "," << EnergySourceName(row.source) << "," << (IsMeasured(row.source) ? "measured" : "modelled") << "\n";
  }
  return WriteFileAtomic(path_ + "/nodes.csv", n.str());
}

Status RunDir::WriteSummary(const SummaryInfo& info, const CarbonTable& table,
                            const std::vector<std::string>& reference_countries) {
  using nlohmann::json;
  json j;
  j["format"] = 1;
  j["kind"] = info.kind;
  j["target_accuracy"] = info.target_accuracy;
  j["reached"] = info.reached;
  j["round_reached"] = info.round_reached ? json(*info.round_reached) : json(nullptr);
  j["rounds"] = info.rounds;
  j["final_accuracy"] = info.final_accuracy;
  j["best_accuracy"] = info.best_accuracy;
  j["wall_s"] = info.wall_s;
  j["bytes_sent"] = info.bytes_sent;
  j["bytes_received"] = info.bytes_received;
  j["stop_reason"] = info.stop_reason;
  if (!info.model_sha256.empty()) j["model_sha256"] = info.model_sha256;

  auto energy_json = [](const EnergyTotals& t) {
    json e;
    e["compute_wh"] = t.compute_j / 3600.0;
    e["compute_pue_wh"] = t.compute_pue_j / 3600.0;
    e["comm_wh"] = t.comm_j / 3600.0;
    e["total_wh"] = (t.compute_pue_j + t.comm_j) / 3600.0;
    e["measured"] = t.measured();
    json sources = json::array();
    for (auto s : t.sources) sources.push_back(EnergySourceName(s));
    e["sources"] = sources;
    e["co2e_g"] = t.co2e_g;
    return e;
  };
  const EnergyTotals all = Totals();
  j["energy"] = energy_json(all);
  j["co2e_g"] = all.co2e_g;
  json by_country = json::object();
  for (const auto& code : reference_countries) {
    auto ci = table.Lookup(code);
    if (!ci.ok()) return ci.status();
    by_country[ci->code] = Co2eGrams(all.compute_pue_j + all.comm_j, 1.0, ci->g_per_kwh);
  }
  j["co2e_g_by_country"] = by_country;
  if (info.reached && info.round_reached) {
    j["to_target"] = energy_json(Totals(*info.round_reached));
  } else {
    j["to_target"] = nullptr;
  }
  return WriteFileAtomic(path_ + "/summary.json", j.dump(2) + "\n");
}

}  // namespace greenfed
