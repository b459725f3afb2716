#include "greenfed/coordinator/checkpoint.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "greenfed/digest.h"

namespace greenfed {

namespace {

constexpr char kMagic[8] = {'G', 'F', 'C', 'K', 'P', 'T', '\r', '\n'};
constexpr size_t kHeaderBytes = sizeof(kMagic) + 4 + 8;  // magic, format, payload length
constexpr size_t kDigestBytes = 32;

// Shortest decimal text that reads back to `v`: 0.05 -> "0.05".
std::string Shortest(double v) {
  char buf[64];
  for (int digits = 1; digits <= 17; ++digits) {
    std::snprintf(buf, sizeof(buf), "%.*g", digits, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

// ---- encoding ------------------------------------------------------------------

class Writer {
 public:
  void U8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void U32(uint32_t v) { Raw(v); }
  void U64(uint64_t v) { Raw(v); }
  void I64(int64_t v) { Raw(v); }
  void F64(double v) { Raw(v); }
  void Bool(bool v) { U8(v ? 1 : 0); }
  void Str(const std::string& s) {
    U64(s.size());
    out_.append(s);
  }
  void Bytes(const std::vector<uint8_t>& b) {
    U64(b.size());
    out_.append(reinterpret_cast<const char*>(b.data()), b.size());
  }
  std::string& out() { return out_; }

 private:
  // The host is little-endian (checked in tensor.cc); raw copies are the layout.
  template <typename T>
  void Raw(T v) {
    char buf[sizeof(T)];
    std::memcpy(buf, &v, sizeof(T));
    out_.append(buf, sizeof(T));
  }
  std::string out_;
};

class Reader {
 public:
  Reader(const std::string& bytes, size_t begin, size_t end, std::string name)
      : bytes_(bytes), pos_(begin), begin_(begin), end_(end), name_(std::move(name)) {}

  Status U8(uint8_t* v, const char* what) { return Raw(v, what); }
  Status U32(uint32_t* v, const char* what) { return Raw(v, what); }
  Status U64(uint64_t* v, const char* what) { return Raw(v, what); }
  Status I64(int64_t* v, const char* what) { return Raw(v, what); }
  Status F64(double* v, const char* what) {
    GREENFED_RETURN_IF_ERROR(Raw(v, what));
    if (!std::isfinite(*v)) return Bad(std::string(what) + " is not finite");
    return Status::Ok();
  }
  Status Bool(bool* v, const char* what) {
    uint8_t b = 0;
    GREENFED_RETURN_IF_ERROR(U8(&b, what));
    if (b > 1) return Bad(std::string(what) + " is " + std::to_string(b) + ", expected 0 or 1");
    *v = b == 1;
    return Status::Ok();
  }
  Status Str(std::string* s, const char* what) {
    uint64_t n = 0;
    GREENFED_RETURN_IF_ERROR(Length(&n, 1, what));
    s->assign(bytes_, pos_, n);
    pos_ += n;
    return Status::Ok();
  }
  Status Bytes(std::vector<uint8_t>* b, const char* what) {
    uint64_t n = 0;
    GREENFED_RETURN_IF_ERROR(Length(&n, 1, what));
    const auto* p = reinterpret_cast<const uint8_t*>(bytes_.data() + pos_);
    b->assign(p, p + n);
    pos_ += n;
    return Status::Ok();
  }
  // A count of items of at least `min_item_bytes` each: refused when the rest of
  // the payload cannot hold them (no allocation from a corrupt count).
  Status Length(uint64_t* n, uint64_t min_item_bytes, const char* what) {
    GREENFED_RETURN_IF_ERROR(U64(n, what));
    if (min_item_bytes > 0 && *n > (end_ - pos_) / min_item_bytes) {
      return Bad(std::string(what) + " says " + std::to_string(*n) + " but only " + std::to_string(end_ - pos_) +
                 " bytes are left");
    }
    return Status::Ok();
  }
  bool AtEnd() const { return pos_ == end_; }
  size_t Offset() const { return pos_ - begin_; }
  Status Bad(const std::string& what) const {
    return DataLoss(name_ + ": payload byte " + std::to_string(Offset()) + ": " + what);
  }

 private:
  template <typename T>
  Status Raw(T* v, const char* what) {
    if (end_ - pos_ < sizeof(T)) return Bad(std::string("ends inside ") + what);
    std::memcpy(v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return Status::Ok();
  }
  const std::string& bytes_;
  size_t pos_;
  size_t begin_;
  size_t end_;
  std::string name_;
};

void PutRound(Writer* w, const RoundRow& r) {
  w->I64(r.round);
  w->U32(r.clients_sampled);
  w->U32(r.clients_succeeded);
  w->U32(r.clients_failed);
  w->F64(r.test_accuracy);
  w->F64(r.test_loss);
  w->F64(r.train_loss);
  w->F64(r.round_s);
  w->F64(r.elapsed_s);
  w->U64(r.bytes_sent);
  w->U64(r.bytes_received);
  w->F64(r.energy_j);
  w->F64(r.comm_j);
  w->F64(r.co2e_g);
  w->Bool(r.fed_accuracy.has_value());
  w->F64(r.fed_accuracy.value_or(0));
}

Status GetRound(Reader* r, RoundRow* row) {
  GREENFED_RETURN_IF_ERROR(r->I64(&row->round, "round row: round"));
  GREENFED_RETURN_IF_ERROR(r->U32(&row->clients_sampled, "round row: clients_sampled"));
  GREENFED_RETURN_IF_ERROR(r->U32(&row->clients_succeeded, "round row: clients_succeeded"));
  GREENFED_RETURN_IF_ERROR(r->U32(&row->clients_failed, "round row: clients_failed"));
  GREENFED_RETURN_IF_ERROR(r->F64(&row->test_accuracy, "round row: test_accuracy"));
  GREENFED_RETURN_IF_ERROR(r->F64(&row->test_loss, "round row: test_loss"));
  GREENFED_RETURN_IF_ERROR(r->F64(&row->train_loss, "round row: train_loss"));
  GREENFED_RETURN_IF_ERROR(r->F64(&row->round_s, "round row: round_s"));
  GREENFED_RETURN_IF_ERROR(r->F64(&row->elapsed_s, "round row: elapsed_s"));
  GREENFED_RETURN_IF_ERROR(r->U64(&row->bytes_sent, "round row: bytes_sent"));
  GREENFED_RETURN_IF_ERROR(r->U64(&row->bytes_received, "round row: bytes_received"));
  GREENFED_RETURN_IF_ERROR(r->F64(&row->energy_j, "round row: energy_j"));
  GREENFED_RETURN_IF_ERROR(r->F64(&row->comm_j, "round row: comm_j"));
  GREENFED_RETURN_IF_ERROR(r->F64(&row->co2e_g, "round row: co2e_g"));
  bool has_fed = false;
  double fed = 0;
  GREENFED_RETURN_IF_ERROR(r->Bool(&has_fed, "round row: has fed_accuracy"));
  GREENFED_RETURN_IF_ERROR(r->F64(&fed, "round row: fed_accuracy"));
  if (has_fed) row->fed_accuracy = fed;
  return Status::Ok();
}

void PutNode(Writer* w, const NodeRow& n) {
  w->I64(n.round);
  w->Str(n.node.node_id);
  w->Str(n.node.role);
  w->Str(n.node.country);
  w->F64(n.node.pue);
  w->F64(n.node.g_per_kwh);
  w->U8(static_cast<uint8_t>(n.source));
  w->F64(n.wall_s);
  w->F64(n.cpu_s);
  w->F64(n.train_j);
  w->F64(n.evaluate_j);
  w->F64(n.aggregate_j);
  w->F64(n.idle_j);
  w->F64(n.comm_j);
  w->U64(n.bytes_sent);
  w->U64(n.bytes_received);
}

Status NonNegative(const Reader& r, double v, const char* what) {
  if (v < 0) return r.Bad(std::string(what) + " is negative");
  return Status::Ok();
}

Status GetNode(Reader* r, NodeRow* n) {
  GREENFED_RETURN_IF_ERROR(r->I64(&n->round, "node row: round"));
  GREENFED_RETURN_IF_ERROR(r->Str(&n->node.node_id, "node row: node_id"));
  GREENFED_RETURN_IF_ERROR(r->Str(&n->node.role, "node row: role"));
  if (!ParseNodeRole(n->node.role).ok()) return r->Bad("node row: role '" + n->node.role + "' is unknown");
  GREENFED_RETURN_IF_ERROR(r->Str(&n->node.country, "node row: country"));
  GREENFED_RETURN_IF_ERROR(r->F64(&n->node.pue, "node row: pue"));
  GREENFED_RETURN_IF_ERROR(r->F64(&n->node.g_per_kwh, "node row: g_per_kwh"));
  uint8_t source = 0;
  GREENFED_RETURN_IF_ERROR(r->U8(&source, "node row: source"));
  // A node row's source is the meter that measured it: every EnergySource but kComm (which
  // is booked in comm_j of the same row), including simulate's kRaplSplit.
  if (source > static_cast<uint8_t>(EnergySource::kRaplSplit) || source == static_cast<uint8_t>(EnergySource::kComm)) {
    return r->Bad("node row: source " + std::to_string(source) + " is not a meter source");
  }
  n->source = static_cast<EnergySource>(source);
  double* fields[] = {&n->wall_s, &n->cpu_s, &n->train_j, &n->evaluate_j, &n->aggregate_j, &n->idle_j, &n->comm_j};
  const char* names[] = {"node row: wall_s",      "node row: cpu_s",  "node row: train_j", "node row: evaluate_j",
                         "node row: aggregate_j", "node row: idle_j", "node row: comm_j"};
  for (size_t i = 0; i < 7; ++i) {
    GREENFED_RETURN_IF_ERROR(r->F64(fields[i], names[i]));
    GREENFED_RETURN_IF_ERROR(NonNegative(*r, *fields[i], names[i]));
  }
  GREENFED_RETURN_IF_ERROR(r->U64(&n->bytes_sent, "node row: bytes_sent"));
  GREENFED_RETURN_IF_ERROR(r->U64(&n->bytes_received, "node row: bytes_received"));
  return Status::Ok();
}

void PutBlob(Writer* w, const TensorBlob& b) {
  w->Str(b.name);
  w->U8(static_cast<uint8_t>(b.dtype));
  w->U64(b.shape.size());
  for (int64_t d : b.shape) w->I64(d);
  w->Bytes(b.data);
}

Status GetBlob(Reader* r, TensorBlob* b) {
  GREENFED_RETURN_IF_ERROR(r->Str(&b->name, "tensor name"));
  uint8_t dtype = 0;
  GREENFED_RETURN_IF_ERROR(r->U8(&dtype, "tensor dtype"));
  if (dtype > static_cast<uint8_t>(DType::kInt64)) return r->Bad("tensor " + b->name + ": unknown dtype");
  b->dtype = static_cast<DType>(dtype);
  uint64_t rank = 0;
  GREENFED_RETURN_IF_ERROR(r->Length(&rank, sizeof(int64_t), "tensor rank"));
  b->shape.resize(rank);
  for (auto& d : b->shape) GREENFED_RETURN_IF_ERROR(r->I64(&d, "tensor dimension"));
  GREENFED_RETURN_IF_ERROR(r->Bytes(&b->data, "tensor bytes"));
  if (Status s = ValidateBlob(*b); !s.ok()) return r->Bad(s.message());
  return Status::Ok();
}

std::string FlagValue(bool v) { return v ? "true" : "false"; }

}  // namespace

bool ServerState::operator==(const ServerState& o) const {
  return best_accuracy == o.best_accuracy && last_accuracy == o.last_accuracy && round_reached == o.round_reached &&
         total_bytes_sent == o.total_bytes_sent && total_bytes_received == o.total_bytes_received &&
         elapsed_s == o.elapsed_s;
}

std::string RunIdentity::ConfigDigest() const {
  Writer w;
  w.Str(run_id);
  w.U64(settings.size());
  for (const auto& [k, v] : settings) {
    w.Str(k);
    w.Str(v);
  }
  auto md = Sha256(w.out().data(), w.out().size());
  if (!md.ok()) return "";
  return HexOf(md->data(), md->size());
}

RunIdentity RunIdentityFor(const RoundOptions& o) {
  RunIdentity id;
  id.run_id = o.run_id;
  id.settings = {
      {"--task", o.task},
      {"--model", o.model},
      {"--num-clients", std::to_string(o.num_clients)},
      {"--partition", o.partition.scheme},
      {"--alpha", Shortest(o.partition.alpha)},
      {"--shards-per-client", std::to_string(o.partition.shards_per_client)},
      {"--seed", std::to_string(o.seed)},
      {"--fraction-fit", Shortest(o.fraction_fit)},
      {"--min-fit-clients", std::to_string(o.min_fit_clients)},
      {"--local-epochs", std::to_string(o.train.epochs)},
      {"--batch-size", std::to_string(o.train.batch_size)},
      {"--lr", Shortest(o.train.learning_rate)},
      {"--momentum", Shortest(o.train.momentum)},
      {"--send-delta", FlagValue(o.train.send_delta)},
      {"--target-accuracy", Shortest(o.target_accuracy)},
      {"--max-rounds", std::to_string(o.max_rounds)},
      {"--fed-eval-every", std::to_string(o.fed_eval_every)},
      // The clients' error-feedback residuals and the run's bytes depend on them.
      {"--uplink-codec", o.uplink_codec},
      {"--downlink-codec", o.downlink_codec},
      // The strategy and its server-side hyper-parameters: its state in the
      // checkpoint only means something under the same ones.
      {"--strategy", o.strategy.name},
      {"--server-learning-rate", Shortest(o.strategy.server_learning_rate)},
      {"--server-momentum", Shortest(o.strategy.server_momentum)},
      {"--eta", Shortest(o.strategy.eta)},
      {"--beta-1", Shortest(o.strategy.beta_1)},
      {"--beta-2", Shortest(o.strategy.beta_2)},
      {"--tau", Shortest(o.strategy.tau)},
      {"--trim-beta", Shortest(o.strategy.trim_beta)},
      {"--num-malicious-clients", std::to_string(o.strategy.num_malicious_clients)},
      {"--num-clients-to-keep", std::to_string(o.strategy.num_clients_to_keep)},
  };
  // FedProx's mu changes every client's training; listed for fedprox runs only, so
  // that the identity of checkpoints under the other strategies stays as it was.
  if (o.strategy.name == "fedprox") id.settings.emplace_back("--proximal-mu", Shortest(o.strategy.proximal_mu));
  // The sampling policy: its state in the checkpoint is its fairness windows.
  id.settings.emplace_back("--sampling", o.sampling.name);
  if (o.sampling.name != "uniform") {
    id.settings.emplace_back("--fairness-rounds", std::to_string(o.sampling.fairness_rounds));
    id.settings.emplace_back("--intensity-trace", o.sampling.intensity_trace_path);
  }
  return id;
}

Status CheckSameRun(const RunIdentity& checkpoint, const RunIdentity& now) {
  std::vector<std::string> diffs;
  if (checkpoint.run_id != now.run_id) {
    diffs.push_back("checkpoint was written for run " + checkpoint.run_id + ", this run is " + now.run_id);
  }
  auto find = [](const RunIdentity& id, const std::string& key) -> const std::string* {
    for (const auto& [k, v] : id.settings) {
      if (k == key) return &v;
    }
    return nullptr;
  };
  for (const auto& [key, value] : checkpoint.settings) {
    const std::string* mine = find(now, key);
    if (mine == nullptr) {
      diffs.push_back("checkpoint was written with " + key + " " + value + ", which this greenfed does not know");
    } else if (*mine != value) {
      diffs.push_back("checkpoint was written for " + key + " " + value + ", this run has " + *mine);
    }
  }
  for (const auto& [key, value] : now.settings) {
    if (find(checkpoint, key) == nullptr) {
      diffs.push_back("checkpoint does not record " + key + " (this run has " + value + ")");
    }
  }
  if (diffs.empty()) return Status::Ok();
  std::string msg = "cannot resume: ";
  for (size_t i = 0; i < diffs.size(); ++i) msg += (i ? "; " : "") + diffs[i];
  return FailedPrecondition(msg + " (resume with the settings of the original run, or start a new --run-dir)");
}

StatusOr<std::string> EncodeCheckpoint(const Checkpoint& c) {
  Writer w;
  w.Str(c.identity.run_id);
  w.U64(c.identity.settings.size());
  for (const auto& [k, v] : c.identity.settings) {
    w.Str(k);
    w.Str(v);
  }
  w.Str(c.identity.ConfigDigest());

  w.U64(c.machine.completed_rounds);
  w.U64(c.machine.global.size());
  for (const auto& b : c.machine.global) PutBlob(&w, b);
  w.Bytes(c.machine.strategy_state);
  w.Bytes(c.machine.sampling_state);

  w.F64(c.server.best_accuracy);
  w.F64(c.server.last_accuracy);
  w.Bool(c.server.round_reached.has_value());
  w.I64(c.server.round_reached.value_or(0));
  w.U64(c.server.total_bytes_sent);
  w.U64(c.server.total_bytes_received);
  w.F64(c.server.elapsed_s);

  w.U64(c.ledger.rounds.size());
  for (const auto& r : c.ledger.rounds) PutRound(&w, r);
  w.U64(c.ledger.nodes.size());
  for (const auto& n : c.ledger.nodes) PutNode(&w, n);

  Writer file;
  file.out().append(kMagic, sizeof(kMagic));
  file.U32(kCheckpointFormat);
  file.U64(w.out().size());
  file.out().append(w.out());
  GREENFED_ASSIGN_OR_RETURN(auto md, Sha256(file.out().data(), file.out().size()));
  file.out().append(reinterpret_cast<const char*>(md.data()), md.size());
  return std::move(file.out());
}

StatusOr<Checkpoint> DecodeCheckpoint(const std::string& bytes, const std::string& name) {
  if (bytes.size() < kHeaderBytes + kDigestBytes) {
    return DataLoss(name + " is truncated: " + std::to_string(bytes.size()) + " bytes, shorter than its " +
                    std::to_string(kHeaderBytes + kDigestBytes) + "-byte header and digest");
  }
  if (std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return DataLoss(name + " is not a greenfed checkpoint (wrong magic bytes)");
  }
  uint32_t format = 0;
  uint64_t payload = 0;
  std::memcpy(&format, bytes.data() + sizeof(kMagic), sizeof(format));
  std::memcpy(&payload, bytes.data() + sizeof(kMagic) + 4, sizeof(payload));
  if (format == 1) {
    return DataLoss(name + " has checkpoint format version 1, written by a greenfed from before the sampling "
                    "policy's state was saved (format 2); this greenfed cannot resume it: start the run again");
  }
  if (format != kCheckpointFormat) {
    return DataLoss(name + " has checkpoint format version " + std::to_string(format) + "; this greenfed reads " +
                    std::to_string(kCheckpointFormat));
  }
  const size_t body = bytes.size() - kHeaderBytes - kDigestBytes;
  if (payload > body) {
    return DataLoss(name + " is truncated: header says " + std::to_string(payload) + " payload bytes, the file has " +
                    std::to_string(body));
  }
  if (payload < body) {
    return DataLoss(name + " has " + std::to_string(body - payload) + " unexpected bytes after its payload");
  }
  GREENFED_ASSIGN_OR_RETURN(auto md, Sha256(bytes.data(), kHeaderBytes + payload));
  if (std::memcmp(md.data(), bytes.data() + kHeaderBytes + payload, kDigestBytes) != 0) {
    return DataLoss(name + ": SHA-256 digest mismatch (stored " +
                    HexOf(reinterpret_cast<const uint8_t*>(bytes.data()) + kHeaderBytes + payload, kDigestBytes) +
                    ", content " + HexOf(md.data(), md.size()) + "): the file is corrupt");
  }

  Reader r(bytes, kHeaderBytes, kHeaderBytes + payload, name);
  Checkpoint c;
  GREENFED_RETURN_IF_ERROR(r.Str(&c.identity.run_id, "run_id"));
  uint64_t n = 0;
  GREENFED_RETURN_IF_ERROR(r.Length(&n, 16, "settings count"));
  for (uint64_t i = 0; i < n; ++i) {
    std::string k, v;
    GREENFED_RETURN_IF_ERROR(r.Str(&k, "setting name"));
    GREENFED_RETURN_IF_ERROR(r.Str(&v, "setting value"));
    c.identity.settings.emplace_back(std::move(k), std::move(v));
  }
  std::string digest;
  GREENFED_RETURN_IF_ERROR(r.Str(&digest, "config digest"));
  if (digest != c.identity.ConfigDigest()) return r.Bad("config digest does not match the settings");

  GREENFED_RETURN_IF_ERROR(r.U64(&c.machine.completed_rounds, "completed_rounds"));
  GREENFED_RETURN_IF_ERROR(r.Length(&n, 1, "tensor count"));
  c.machine.global.resize(n);
  for (auto& b : c.machine.global) GREENFED_RETURN_IF_ERROR(GetBlob(&r, &b));
  GREENFED_RETURN_IF_ERROR(r.Bytes(&c.machine.strategy_state, "strategy_state"));
  GREENFED_RETURN_IF_ERROR(r.Bytes(&c.machine.sampling_state, "sampling_state"));

  GREENFED_RETURN_IF_ERROR(r.F64(&c.server.best_accuracy, "best_accuracy"));
  GREENFED_RETURN_IF_ERROR(r.F64(&c.server.last_accuracy, "last_accuracy"));
  bool reached = false;
  int64_t round_reached = 0;
  GREENFED_RETURN_IF_ERROR(r.Bool(&reached, "has round_reached"));
  GREENFED_RETURN_IF_ERROR(r.I64(&round_reached, "round_reached"));
  if (reached) c.server.round_reached = round_reached;
  GREENFED_RETURN_IF_ERROR(r.U64(&c.server.total_bytes_sent, "total_bytes_sent"));
  GREENFED_RETURN_IF_ERROR(r.U64(&c.server.total_bytes_received, "total_bytes_received"));
  GREENFED_RETURN_IF_ERROR(r.F64(&c.server.elapsed_s, "elapsed_s"));
  GREENFED_RETURN_IF_ERROR(NonNegative(r, c.server.elapsed_s, "elapsed_s"));

  GREENFED_RETURN_IF_ERROR(r.Length(&n, 8, "round row count"));
  c.ledger.rounds.resize(n);
  for (auto& row : c.ledger.rounds) GREENFED_RETURN_IF_ERROR(GetRound(&r, &row));
  GREENFED_RETURN_IF_ERROR(r.Length(&n, 8, "node row count"));
  c.ledger.nodes.resize(n);
  for (auto& row : c.ledger.nodes) GREENFED_RETURN_IF_ERROR(GetNode(&r, &row));
  if (!r.AtEnd()) return r.Bad("unexpected bytes after the ledger");

  // The ledger must describe exactly the completed rounds: 1..completed_rounds.
  if (c.ledger.rounds.size() != c.machine.completed_rounds) {
    return DataLoss(name + ": " + std::to_string(c.ledger.rounds.size()) + " round rows for " +
                    std::to_string(c.machine.completed_rounds) + " completed rounds");
  }
  for (size_t i = 0; i < c.ledger.rounds.size(); ++i) {
    if (c.ledger.rounds[i].round != static_cast<int64_t>(i + 1)) {
      return DataLoss(name + ": round row " + std::to_string(i + 1) + " is for round " +
                      std::to_string(c.ledger.rounds[i].round));
    }
  }
  return c;
}

std::string CheckpointPath(const std::string& run_dir) { return run_dir + "/" + kCheckpointFile; }

Status WriteCheckpoint(const std::string& run_dir, const Checkpoint& checkpoint) {
  GREENFED_ASSIGN_OR_RETURN(std::string bytes, EncodeCheckpoint(checkpoint));
  return WriteFileDurable(CheckpointPath(run_dir), bytes);
}

StatusOr<Checkpoint> LoadCheckpoint(const std::string& run_dir) {
  const std::string path = CheckpointPath(run_dir);
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return NotFound("cannot resume: " + path + " is missing (" + std::strerror(errno) +
                    "); the run completed no round, start it again without --resume");
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return DataLoss("error reading " + path);
  return DecodeCheckpoint(ss.str(), path);
}

}  // namespace greenfed
