#include "greenfed/run_dir_schema.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <iomanip>
#include <map>
#include <sstream>

#include "greenfed/carbon.h"
#include "greenfed/csv.h"

namespace greenfed {

namespace {

std::string Join(const std::vector<std::string>& parts) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) out += ",";
    out += parts[i];
  }
  return out;
}

std::string Plain(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

// Typed access to one row by column name; every error names file, line and column.
class RowView {
 public:
  RowView(const CsvTable& table, size_t index, const std::map<std::string, size_t>& column)
      : table_(table), index_(index), column_(column) {}

  const std::string& Str(const std::string& col) const { return table_.rows[index_][column_.at(col)]; }

  StatusOr<std::string> NonEmpty(const std::string& col) const {
    if (Str(col).empty()) return Error(col, "empty");
    return Str(col);
  }

  StatusOr<double> Double(const std::string& col) const {
    const std::string& text = Str(col);
    char* end = nullptr;
    errno = 0;
    const double value = std::strtod(text.c_str(), &end);
    if (text.empty() || end != text.c_str() + text.size() || errno == ERANGE || !std::isfinite(value)) {
      return Error(col, "'" + text + "' is not a finite number");
    }
    return value;
  }

  StatusOr<std::optional<double>> OptDouble(const std::string& col) const {
    if (Str(col).empty()) return std::optional<double>();
    GREENFED_ASSIGN_OR_RETURN(double value, Double(col));
    return std::optional<double>(value);
  }

  StatusOr<double> NonNegative(const std::string& col) const {
    GREENFED_ASSIGN_OR_RETURN(double value, Double(col));
    if (value < 0) return Error(col, Plain(value) + " is negative");
    return value;
  }

  StatusOr<int64_t> Int(const std::string& col) const {
    const std::string& text = Str(col);
    char* end = nullptr;
    errno = 0;
    const long long value = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || end != text.c_str() + text.size() || errno == ERANGE) {
      return Error(col, "'" + text + "' is not an integer");
    }
    return static_cast<int64_t>(value);
  }

  StatusOr<uint64_t> Bytes(const std::string& col) const {
    GREENFED_ASSIGN_OR_RETURN(int64_t value, Int(col));
    if (value < 0) return Error(col, std::to_string(value) + " is negative");
    return static_cast<uint64_t>(value);
  }

  StatusOr<uint32_t> Count(const std::string& col) const {
    GREENFED_ASSIGN_OR_RETURN(int64_t value, Int(col));
    if (value < 0) return Error(col, std::to_string(value) + " is negative");
    if (value > static_cast<int64_t>(UINT32_MAX)) return Error(col, std::to_string(value) + " is too large");
    return static_cast<uint32_t>(value);
  }

  Status Error(const std::string& col, const std::string& what) const {
    return DataLoss(table_.name + " line " + std::to_string(table_.lines[index_]) + ", column " + col + ": " +
                    what);
  }

 private:
  const CsvTable& table_;
  size_t index_;
  const std::map<std::string, size_t>& column_;
};

std::map<std::string, size_t> ColumnIndex(const CsvTable& table) {
  std::map<std::string, size_t> column;
  for (size_t i = 0; i < table.header.size(); ++i) column.emplace(table.header[i], i);
  return column;
}

StatusOr<RoundRow> ParseRoundRow(const RowView& v) {
  RoundRow r;
  GREENFED_ASSIGN_OR_RETURN(r.round, v.Int("round"));
  GREENFED_ASSIGN_OR_RETURN(r.clients_sampled, v.Count("clients_sampled"));
  GREENFED_ASSIGN_OR_RETURN(r.clients_succeeded, v.Count("clients_succeeded"));
  GREENFED_ASSIGN_OR_RETURN(r.clients_failed, v.Count("clients_failed"));
  GREENFED_ASSIGN_OR_RETURN(r.test_accuracy, v.Double("test_accuracy"));
  if (r.test_accuracy < 0 || r.test_accuracy > 1) {
    return v.Error("test_accuracy", Plain(r.test_accuracy) + " is outside [0, 1]");
  }
  GREENFED_ASSIGN_OR_RETURN(r.test_loss, v.Double("test_loss"));
  GREENFED_ASSIGN_OR_RETURN(r.train_loss, v.Double("train_loss"));
  GREENFED_ASSIGN_OR_RETURN(r.round_s, v.NonNegative("round_s"));
  GREENFED_ASSIGN_OR_RETURN(r.elapsed_s, v.NonNegative("elapsed_s"));
  GREENFED_ASSIGN_OR_RETURN(r.bytes_sent, v.Bytes("bytes_sent"));
  GREENFED_ASSIGN_OR_RETURN(r.bytes_received, v.Bytes("bytes_received"));
  GREENFED_ASSIGN_OR_RETURN(r.energy_j, v.NonNegative("energy_j"));
  GREENFED_ASSIGN_OR_RETURN(r.comm_j, v.NonNegative("comm_j"));
  GREENFED_ASSIGN_OR_RETURN(r.co2e_g, v.NonNegative("co2e_g"));
  GREENFED_ASSIGN_OR_RETURN(r.fed_accuracy, v.OptDouble("fed_accuracy"));
  return r;
}

StatusOr<NodesCsvRow> ParseNodeRow(const RowView& v) {
  NodesCsvRow n;
  GREENFED_ASSIGN_OR_RETURN(n.round, v.Int("round"));
  GREENFED_ASSIGN_OR_RETURN(n.node_id, v.NonEmpty("node_id"));
  auto role = ParseNodeRole(v.Str("role"));
  if (!role.ok()) return v.Error("role", role.status().message());
  n.role = *role;
  GREENFED_ASSIGN_OR_RETURN(n.country, v.NonEmpty("country"));
  GREENFED_ASSIGN_OR_RETURN(n.pue, v.Double("pue"));
  if (Status pue_ok = ValidatePue(n.pue); !pue_ok.ok()) return v.Error("pue", pue_ok.message());
  GREENFED_ASSIGN_OR_RETURN(n.wall_s, v.NonNegative("wall_s"));
  GREENFED_ASSIGN_OR_RETURN(n.cpu_s, v.NonNegative("cpu_s"));
  GREENFED_ASSIGN_OR_RETURN(n.train_j, v.NonNegative("train_j"));
  GREENFED_ASSIGN_OR_RETURN(n.evaluate_j, v.NonNegative("evaluate_j"));
  GREENFED_ASSIGN_OR_RETURN(n.aggregate_j, v.NonNegative("aggregate_j"));
  GREENFED_ASSIGN_OR_RETURN(n.idle_j, v.NonNegative("idle_j"));
  GREENFED_ASSIGN_OR_RETURN(n.compute_j, v.NonNegative("compute_j"));
  GREENFED_ASSIGN_OR_RETURN(n.comm_j, v.NonNegative("comm_j"));
  GREENFED_ASSIGN_OR_RETURN(n.bytes_sent, v.Bytes("bytes_sent"));
  GREENFED_ASSIGN_OR_RETURN(n.bytes_received, v.Bytes("bytes_received"));
  const std::string& source = v.Str("source");
  auto parsed = ParseEnergySource(source);
  if (source.empty()) return v.Error("source", "empty");
  if (!parsed.ok() || *parsed == EnergySource::kComm) {
    return v.Error("source", "'" + source + "', expected rapl, nvml, model or rapl-split");
  }
  n.source = *parsed;
  const std::string& measured = v.Str("measured");
  if (measured == measured_label::kMeasured || measured == measured_label::kApportioned) {
    n.measured = true;
  } else if (measured == measured_label::kModelled) {
    n.measured = false;
  } else {
    return v.Error("measured", "'" + measured + "', expected measured, apportioned or modelled");
  }
  // rapl-split rows and only they are apportioned.
  if ((measured == measured_label::kApportioned) != IsApportioned(n.source)) {
    return v.Error("measured", "'" + measured + "' does not go with source '" + source +
                                   "' (apportioned goes with rapl-split, and only with it)");
  }
  return n;
}

}  // namespace

const std::vector<std::string>& RoundsCsvColumns() {
  static const std::vector<std::string> kColumns = {
      "round",         "clients_sampled", "clients_succeeded", "clients_failed", "test_accuracy",
      "test_loss",     "train_loss",      "round_s",           "elapsed_s",      "bytes_sent",
      "bytes_received", "energy_j",       "comm_j",            "co2e_g",         "fed_accuracy"};
  return kColumns;
}

const std::vector<std::string>& NodesCsvColumns() {
  static const std::vector<std::string> kColumns = {
      "round",  "node_id",    "role",           "country",     "pue",    "wall_s",
      "cpu_s",  "train_j",    "evaluate_j",     "aggregate_j", "idle_j", "compute_j",
      "comm_j", "bytes_sent", "bytes_received", "source",      "measured"};
  return kColumns;
}

std::string RoundsCsvHeader() { return Join(RoundsCsvColumns()) + "\n"; }
std::string NodesCsvHeader() { return Join(NodesCsvColumns()) + "\n"; }

const char* NodeRoleName(NodeRole role) {
  switch (role) {
    case NodeRole::kCoordinator: return "coordinator";
    case NodeRole::kClient: return "client";
    case NodeRole::kCentralized: return "centralized";
  }
  return "?";
}

StatusOr<NodeRole> ParseNodeRole(const std::string& name) {
  if (name == "coordinator") return NodeRole::kCoordinator;
  if (name == "client") return NodeRole::kClient;
  if (name == "centralized") return NodeRole::kCentralized;
  return InvalidArgument("'" + name + "', expected coordinator, client or centralized");
}

const char* MeasuredLabel(EnergySource source, bool measured) {
  if (!measured) return measured_label::kModelled;
  return IsApportioned(source) ? measured_label::kApportioned : measured_label::kMeasured;
}

std::string CsvNumber(double v) {
  std::ostringstream os;
  os << std::setprecision(10) << v;
  return os.str();
}

std::string FormatRoundsCsvRow(const RoundRow& row) {
  std::ostringstream r;
  r << row.round << "," << row.clients_sampled << "," << row.clients_succeeded << "," << row.clients_failed << ","
    << CsvNumber(row.test_accuracy) << "," << CsvNumber(row.test_loss) << "," << CsvNumber(row.train_loss) << ","
    << CsvNumber(row.round_s) << "," << CsvNumber(row.elapsed_s) << "," << row.bytes_sent << ","
    << row.bytes_received << "," << CsvNumber(row.energy_j) << "," << CsvNumber(row.comm_j) << ","
    << CsvNumber(row.co2e_g) << "," << (row.fed_accuracy ? CsvNumber(*row.fed_accuracy) : "") << "\n";
  return r.str();
}

std::string FormatNodesCsvRow(const NodesCsvRow& row) {
  std::ostringstream n;
  n << row.round << "," << row.node_id << "," << NodeRoleName(row.role) << "," << row.country << ","
    << CsvNumber(row.pue) << "," << CsvNumber(row.wall_s) << "," << CsvNumber(row.cpu_s) << ","
    << CsvNumber(row.train_j) << "," << CsvNumber(row.evaluate_j) << "," << CsvNumber(row.aggregate_j) << ","
    << CsvNumber(row.idle_j) << "," << CsvNumber(row.compute_j) << "," << CsvNumber(row.comm_j) << ","
    << row.bytes_sent << "," << row.bytes_received << "," << EnergySourceName(row.source) << ","
    << MeasuredLabel(row.source, row.measured) << "\n";
  return n.str();
}

StatusOr<CsvTable> ParseCsvTable(const std::string& text, const std::string& name,
                                 const std::vector<std::string>& required) {
  CsvTable table;
  table.name = name;
  std::istringstream in(text);
  std::string line;
  int line_no = 0;
  bool have_header = false;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    auto split = SplitCsvLine(line);
    if (!split.ok()) return DataLoss(name + " line " + std::to_string(line_no) + ": " + split.status().message());
    std::vector<std::string> fields = std::move(split).value();
    if (!have_header) {
      table.header = std::move(fields);
      have_header = true;
      continue;
    }
    if (fields.size() != table.header.size()) {
      return DataLoss(name + " line " + std::to_string(line_no) + ": " + std::to_string(fields.size()) +
                      " fields, header has " + std::to_string(table.header.size()));
    }
    table.lines.push_back(line_no);
    table.rows.push_back(std::move(fields));
  }
  if (!have_header) return DataLoss(name + " is empty: expected a header line");
  const std::map<std::string, size_t> column = ColumnIndex(table);
  for (const std::string& col : required) {
    if (column.count(col) == 0) {
      return DataLoss(name + " line 1: header lacks column '" + col + "' (header: " + Join(table.header) + ")");
    }
  }
  return table;
}

StatusOr<std::vector<RoundRow>> ParseRoundsCsv(const std::string& text) {
  GREENFED_ASSIGN_OR_RETURN(CsvTable table, ParseCsvTable(text, kRoundsFile, RoundsCsvColumns()));
  const std::map<std::string, size_t> column = ColumnIndex(table);
  std::vector<RoundRow> rows;
  rows.reserve(table.rows.size());
  for (size_t i = 0; i < table.rows.size(); ++i) {
    GREENFED_ASSIGN_OR_RETURN(RoundRow row, ParseRoundRow(RowView(table, i, column)));
    rows.push_back(std::move(row));
  }
  return rows;
}

StatusOr<std::vector<NodesCsvRow>> ParseNodesCsv(const std::string& text) {
  GREENFED_ASSIGN_OR_RETURN(CsvTable table, ParseCsvTable(text, kNodesFile, NodesCsvColumns()));
  const std::map<std::string, size_t> column = ColumnIndex(table);
  std::vector<NodesCsvRow> rows;
  rows.reserve(table.rows.size());
  for (size_t i = 0; i < table.rows.size(); ++i) {
    GREENFED_ASSIGN_OR_RETURN(NodesCsvRow row, ParseNodeRow(RowView(table, i, column)));
    rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace greenfed
