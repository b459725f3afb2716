// EnergyIntake: the coordinator's gate for the energy reports its peers send.
//
// Every record a peer reports passes CheckEnergyRecord (energy_record.h) against bounds kept
// per peer: a round that has happened, at most max_node_power_w, no more metered seconds per
// source than the run has lasted (plus the pre-join slack), and no more bytes than crossed
// the socket with that peer (plus the byte slack). Kept records go to the run directory
// under the client's node (client-<index>, its country's intensity, its PUE), which is
// remembered by peer so that reports arriving after the client left are still booked (that
// energy was spent). Rejected records never reach the ledger; the caller names them to the
// peer (kBadEnergy).
//
// Thread safety: not thread-safe; the server's event loop only.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "greenfed/carbon.h"
#include "greenfed/coordinator/round_machine.h"
#include "greenfed/energy_record.h"
#include "greenfed/run_dir.h"

namespace greenfed {

class EnergyIntake {
 public:
  // A client meters from its own start, which may precede the coordinator's by its connect
  // wait (300 s by default): 600 s on top of the run's length.
  static constexpr double kPreJoinSlackS = 600;
  // Bytes in flight when a coordinator restarted, or counted at the far end of a message the
  // coordinator then refused, may be claimed: 4 MiB of slack (~10 model transfers).
  static constexpr uint64_t kByteSlack = 4ull << 20;

  // `carbon` and `run_dir` must outlive this. max_node_power_w, accept_apportioned: the
  // ServerOptions fields (rapl-split records are refused unless accept_apportioned).
  EnergyIntake(double max_node_power_w, bool accept_apportioned, const CarbonTable* carbon, RunDir* run_dir)
      : max_node_power_w_(max_node_power_w), accept_apportioned_(accept_apportioned), carbon_(carbon), run_dir_(run_dir) {}

  // Traffic with `peer` counts towards its byte bounds from Track until Forget.
  void Track(const std::string& peer) { ledgers_.try_emplace(peer); }
  void Forget(const std::string& peer) { ledgers_.erase(peer); }
  void ObserveSent(const std::string& peer, uint64_t bytes);
  void ObserveReceived(const std::string& peer, uint64_t bytes);

  struct Outcome {
    bool stranger = false;      // no node known for the peer and it is not a client: nothing booked
    Status node_error;          // the client's node could not be built (its country): nothing booked
    size_t kept = 0;
    size_t rejected = 0;
    std::string first_reason;   // of the first rejected record
  };
  // Checks and books `records` from `peer`. `client`: the machine's entry for the peer, null
  // when it is not (or no longer) joined. run_elapsed_s: the run's length so far; max_round:
  // the latest round that has begun.
  Outcome Book(const std::string& peer, const ClientEntry* client, const std::vector<EnergyRecord>& records,
               double run_elapsed_s, int64_t max_round);

 private:
  // What a peer has moved with us and claimed in its reports.
  struct PeerLedger {
    uint64_t observed_sent = 0, observed_received = 0;  // by us, to and from the peer
    uint64_t claimed_sent = 0, claimed_received = 0;    // by the peer, in comm records
    std::map<int, double> claimed_wall_s;               // by source
  };
  StatusOr<NodeInfo> NodeFor(const ClientEntry& c) const;

  double max_node_power_w_;
  bool accept_apportioned_;
  const CarbonTable* carbon_;
  RunDir* run_dir_;
  std::map<std::string, PeerLedger> ledgers_;   // by peer
  std::map<std::string, NodeInfo> nodes_;       // by peer; kept after a client leaves
};

}  // namespace greenfed
