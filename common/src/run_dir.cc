#include "greenfed/run_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <fstream>
#include <limits>
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

bool CountsComm(const NodeInfo& node) { return node.role == "client"; }

std::string Errno() { return std::strerror(errno); }

// Closes an fd on every path out.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int Release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

std::string DirOf(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

StatusOr<NodesCsvRow> NodeRow::CsvRow() const {
  auto role = ParseNodeRole(node.role);
  if (!role.ok()) return InvalidArgument("node " + node.node_id + " has role " + role.status().message());
  NodesCsvRow n;
  n.round = round;
  n.node_id = node.node_id;
  n.role = *role;
  n.country = node.country;
  n.pue = node.pue;
  n.wall_s = wall_s;
  n.cpu_s = cpu_s;
  n.train_j = train_j;
  n.evaluate_j = evaluate_j;
  n.aggregate_j = aggregate_j;
  n.idle_j = idle_j;
  n.compute_j = compute_j();
  n.comm_j = comm_j;
  n.bytes_sent = bytes_sent;
  n.bytes_received = bytes_received;
  n.source = source;
  n.measured = IsMeasured(source);
  return n;
}

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

const char* EnergyTotals::label() const {
  if (!measured()) return "modelled";
  for (auto s : sources) {
    if (IsApportioned(s)) return "measured, apportioned";
  }
  return "measured";
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

Status WriteFileDurable(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  {
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (fd.get() < 0) return Unavailable("cannot write " + tmp + ": " + Errno());
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Unavailable("write to " + tmp + " failed: " + Errno());
      done += static_cast<size_t>(n);
    }
    if (::fsync(fd.get()) != 0) return Unavailable("fsync of " + tmp + " failed: " + Errno());
    if (::close(fd.Release()) != 0) return Unavailable("close of " + tmp + " failed: " + Errno());
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return Unavailable("cannot rename " + tmp + " to " + path + ": " + Errno());
  }
  const std::string dir = DirOf(path);
  Fd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.get() < 0) return Unavailable("cannot open directory " + dir + " to sync it: " + Errno());
  if (::fsync(dfd.get()) != 0) return Unavailable("fsync of directory " + dir + " failed: " + Errno());
  return Status::Ok();
}

std::vector<std::string> DefaultReferenceCountries() {
  return {"USA", "CHN", "FRA", "DEU", "GBR", "IND", "WORLD"};
}

StatusOr<std::unique_ptr<RunDir>> RunDir::Create(const std::string& path) {
  if (path.empty()) return InvalidArgument("run directory path is empty");
  if (FileExists(path + "/" + kRoundsFile)) {
    return FailedPrecondition("run directory " + path +
                              " already holds a run (rounds.csv exists); choose another --run-dir");
  }
  GREENFED_RETURN_IF_ERROR(MakeDirs(path));
  return std::make_unique<RunDir>(Key{}, path);
}

StatusOr<std::unique_ptr<RunDir>> RunDir::Open(const std::string& path) {
  if (path.empty()) return InvalidArgument("run directory path is empty");
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return NotFound("run directory " + path + " does not exist; nothing to resume");
  }
  return std::make_unique<RunDir>(Key{}, path);
}

RunLedger RunDir::Ledger() const {
  RunLedger ledger;
  ledger.rounds = rounds_;
  ledger.nodes = NodeRows();
  return ledger;
}

Status RunDir::Restore(const RunLedger& ledger) {
  NodeMap nodes;
  for (const NodeRow& row : ledger.nodes) {
    if (row.source == EnergySource::kComm) {
      return InvalidArgument("ledger row (round " + std::to_string(row.round) + ", " + row.node.node_id +
                             ") has source comm; comm joins the node's meter row");
    }
    auto key = std::make_tuple(row.round, row.node.node_id, static_cast<int>(row.source));
    if (!nodes.emplace(key, NodeEntry{row, std::string(), true}).second) {
      return InvalidArgument("ledger has two rows for (round " + std::to_string(row.round) + ", " +
                             row.node.node_id + ", " + EnergySourceName(row.source) + ")");
    }
  }
  for (size_t i = 1; i < ledger.rounds.size(); ++i) {
    if (ledger.rounds[i].round <= ledger.rounds[i - 1].round) {
      return InvalidArgument("ledger round rows out of order or doubled: round " +
                             std::to_string(ledger.rounds[i].round) + " after round " +
                             std::to_string(ledger.rounds[i - 1].round));
    }
  }
  rounds_ = ledger.rounds;
  nodes_ = std::move(nodes);
  round_lines_.clear();  // every line is formatted afresh on the next Flush
  dirty_rounds_.clear();
  return Status::Ok();
}

Status RunDir::WriteConfig(const std::string& json_text) {
  return WriteFileAtomic(path_ + "/" + kConfigFile, json_text + "\n");
}

void RunDir::AddRound(const RoundRow& row) { rounds_.push_back(row); }

void RunDir::AddEnergy(const NodeInfo& node, const std::vector<EnergyRecord>& records) {
  for (const auto& r : records) {
    // Communication records have no meter of their own: they join the node's row
    // of its meter source (the model when no counter is known yet).
    EnergySource source = r.source;
    if (r.source == EnergySource::kComm) {
      // The node's first row of this round in key order (lowest source).
      source = EnergySource::kModel;
      auto first = nodes_.lower_bound(NodeKey(r.round, node.node_id, std::numeric_limits<int>::min()));
      if (first != nodes_.end() && std::get<0>(first->first) == r.round && std::get<1>(first->first) == node.node_id) {
        source = static_cast<EnergySource>(std::get<2>(first->first));
      }
    }
    auto key = std::make_tuple(r.round, node.node_id, static_cast<int>(source));
    auto [it, inserted] = nodes_.try_emplace(key);
    it->second.dirty = true;
    dirty_rounds_.insert(r.round);
    NodeRow& row = it->second.row;
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
  for (const auto& [key, entry] : nodes_) rows.push_back(entry.row);
  return rows;
}

RunDir::NodeMap::const_iterator RunDir::RoundBegin(int64_t round) const {
  return nodes_.lower_bound(NodeKey(round, std::string(), std::numeric_limits<int>::min()));
}

EnergyTotals RunDir::Sum(NodeMap::const_iterator first, NodeMap::const_iterator last) {
  EnergyTotals t;
  for (; first != last; ++first) {
    const NodeRow& row = first->second.row;
    t.compute_j += row.compute_j();
    t.compute_pue_j += row.compute_j() * row.node.pue;
    if (CountsComm(row.node)) t.comm_j += row.comm_j;
    t.co2e_g += row.co2e_g();
    t.sources.insert(row.source);
  }
  return t;
}

EnergyTotals RunDir::Totals(int64_t max_round) const {
  if (max_round < 0) return Sum(nodes_.begin(), nodes_.end());
  if (max_round == std::numeric_limits<int64_t>::max()) return Sum(nodes_.begin(), nodes_.end());
  return Sum(nodes_.begin(), RoundBegin(max_round + 1));
}

EnergyTotals RunDir::RoundTotals(int64_t round) const {
  auto first = RoundBegin(round);
  auto last = first;
  while (last != nodes_.end() && std::get<0>(last->first) == round) ++last;
  return Sum(first, last);
}

Status RunDir::Flush() {
  // Lines are a function of the ledger, so they are cached whether or not the
  // writes below succeed; only rows changed since the last Flush are formatted.
  const size_t valid = std::min(round_lines_.size(), rounds_.size());
  round_lines_.resize(rounds_.size());
  size_t bytes = 0;
  for (size_t i = 0; i < rounds_.size(); ++i) {
    if (i >= valid || dirty_rounds_.count(rounds_[i].round) != 0) {
      RoundRow row = rounds_[i];
      const EnergyTotals t = RoundTotals(row.round);
      row.energy_j = t.compute_j;
      row.comm_j = t.comm_j;
      row.co2e_g = t.co2e_g;
      round_lines_[i] = FormatRoundsCsvRow(row);
    }
    bytes += round_lines_[i].size();
  }
  dirty_rounds_.clear();
  std::string r = RoundsCsvHeader();
  r.reserve(r.size() + bytes);
  for (const std::string& line : round_lines_) r += line;
  GREENFED_RETURN_IF_ERROR(WriteFileAtomic(path_ + "/" + kRoundsFile, r));
  r = std::string();

  bytes = 0;
  for (auto& [key, entry] : nodes_) {
    if (entry.dirty) {
      GREENFED_ASSIGN_OR_RETURN(NodesCsvRow csv, entry.row.CsvRow());
      entry.line = FormatNodesCsvRow(csv);
      entry.dirty = false;
    }
    bytes += entry.line.size();
  }
  std::string n = NodesCsvHeader();
  n.reserve(n.size() + bytes);
  for (const auto& [key, entry] : nodes_) n += entry.line;
  return WriteFileAtomic(path_ + "/" + kNodesFile, n);
}

Status RunDir::WriteSummary(const SummaryInfo& info, const CarbonTable& table,
                            const std::vector<std::string>& reference_countries) {
  using nlohmann::json;
  namespace k = summary_key;
  json j;
  j[k::kFormat] = kRunDirFormat;
  j[k::kKind] = info.kind;
  j[k::kTargetAccuracy] = info.target_accuracy;
  j[k::kReached] = info.reached;
  j[k::kRoundReached] = info.round_reached ? json(*info.round_reached) : json(nullptr);
  j[k::kRounds] = info.rounds;
  j[k::kFinalAccuracy] = info.final_accuracy;
  j[k::kBestAccuracy] = info.best_accuracy;
  j[k::kWallS] = info.wall_s;
  j[k::kBytesSent] = info.bytes_sent;
  j[k::kBytesReceived] = info.bytes_received;
  j[k::kStopReason] = info.stop_reason;
  if (!info.model_sha256.empty()) j[k::kModelSha256] = info.model_sha256;

  auto energy_json = [](const EnergyTotals& t) {
    json e;
    e[k::kComputeWh] = t.compute_j / 3600.0;
    e[k::kComputePueWh] = t.compute_pue_j / 3600.0;
    e[k::kCommWh] = t.comm_j / 3600.0;
    e[k::kTotalWh] = (t.compute_pue_j + t.comm_j) / 3600.0;
    e[k::kMeasured] = t.measured();
    json sources = json::array();
    for (auto s : t.sources) sources.push_back(EnergySourceName(s));
    e[k::kSources] = sources;
    e[k::kCo2eG] = t.co2e_g;
    return e;
  };
  const EnergyTotals all = Totals();
  j[k::kEnergy] = energy_json(all);
  j[k::kCo2eG] = all.co2e_g;
  json by_country = json::object();
  for (const auto& code : reference_countries) {
    auto ci = table.Lookup(code);
    if (!ci.ok()) return ci.status();
    by_country[ci->code] = Co2eGrams(all.compute_pue_j + all.comm_j, 1.0, ci->g_per_kwh);
  }
  j[k::kCo2eGByCountry] = by_country;
  if (info.reached && info.round_reached) {
    j[k::kToTarget] = energy_json(Totals(*info.round_reached));
  } else {
    j[k::kToTarget] = nullptr;
  }
  return WriteFileAtomic(path_ + "/" + kSummaryFile, j.dump(2) + "\n");
}

}  // namespace greenfed
