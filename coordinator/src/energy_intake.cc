#include "energy_intake.h"

#include <algorithm>

namespace greenfed {

void EnergyIntake::ObserveSent(const std::string& peer, uint64_t bytes) {
  if (auto it = ledgers_.find(peer); it != ledgers_.end()) it->second.observed_sent += bytes;
}

void EnergyIntake::ObserveReceived(const std::string& peer, uint64_t bytes) {
  if (auto it = ledgers_.find(peer); it != ledgers_.end()) it->second.observed_received += bytes;
}

StatusOr<NodeInfo> EnergyIntake::NodeFor(const ClientEntry& c) const {
  NodeInfo n;
  n.node_id = "client-" + std::to_string(c.index);
  n.role = "client";
  n.country = c.country;
  n.pue = c.pue;
  GREENFED_ASSIGN_OR_RETURN(CarbonIntensity ci, carbon_->Lookup(c.country));
  n.g_per_kwh = ci.g_per_kwh;
  return n;
}

EnergyIntake::Outcome EnergyIntake::Book(const std::string& peer, const ClientEntry* client,
                                         const std::vector<EnergyRecord>& records, double run_elapsed_s,
                                         int64_t max_round) {
  Outcome out;
  if (records.empty()) return out;
  auto it = nodes_.find(peer);
  if (it == nodes_.end()) {
    if (client == nullptr) {
      out.stranger = true;
      return out;
    }
    auto node = NodeFor(*client);
    if (!node.ok()) {
      out.node_error = node.status();
      return out;
    }
    it = nodes_.emplace(peer, *node).first;
  }
  PeerLedger& ledger = ledgers_[peer];
  const double allowed_wall_s = run_elapsed_s + kPreJoinSlackS;
  std::vector<EnergyRecord> kept;
  kept.reserve(records.size());
  for (const EnergyRecord& r : records) {
    EnergyBounds b;
    b.max_round = std::max<int64_t>(max_round, 1);
    b.max_power_w = max_node_power_w_;
    const double claimed = ledger.claimed_wall_s[static_cast<int>(r.source)];
    b.max_wall_s = std::max(0.0, allowed_wall_s - claimed);
    b.max_bytes_sent =
        ledger.observed_received + kByteSlack - std::min(ledger.claimed_sent, ledger.observed_received + kByteSlack);
    b.max_bytes_received =
        ledger.observed_sent + kByteSlack - std::min(ledger.claimed_received, ledger.observed_sent + kByteSlack);
    Status ok = CheckEnergyRecord(r, b);
    if (ok.ok() && IsApportioned(r.source) && !accept_apportioned_) {
      ok = InvalidArgument(std::string("energy record of round ") + std::to_string(r.round) + ": source '" +
                           EnergySourceName(r.source) +
                           "' is greenfed simulate's split of its own RAPL counter; a client over a network "
                           "reports 'rapl' or 'model'");
    }
    if (!ok.ok()) {
      ++out.rejected;
      if (out.first_reason.empty()) out.first_reason = ok.message();
      continue;
    }
    if (r.phase == Phase::kComm) {
      ledger.claimed_sent += r.bytes_sent;
      ledger.claimed_received += r.bytes_received;
    } else {
      ledger.claimed_wall_s[static_cast<int>(r.source)] += r.wall_s;
    }
    kept.push_back(r);
  }
  out.kept = kept.size();
  if (!kept.empty()) run_dir_->AddEnergy(it->second, kept);
  return out;
}

}  // namespace greenfed
