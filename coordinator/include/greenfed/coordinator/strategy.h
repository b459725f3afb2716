// Strategy: how a round samples clients and how their results become the next
// global model, behind one interface, so that new aggregation grows by adding a
// strategy rather than by editing RoundMachine (which keeps the round's life
// cycle: joins, deadlines, retries, stop).
//
// A round: RoundMachine calls Sample() on the connected clients, BeginRound() for
// a fresh aggregator, ConfigureFit() for each sampled client's Fit (config keys and
// tensor groups beside the SGD settings), Add() for every valid result as it
// arrives, Result() once the round's results are in, then Update() to apply the
// server-side step. A Join whose capabilities lack one of RequiredCapabilities()
// is refused with INCOMPATIBLE. The
// names, parameters and defaults follow Flower's strategies
// (flwr.server.strategy), and the update rules follow the papers:
//
//   fedavg         McMahan et al. 2017        example-weighted mean, streamed
//   fedavgm        Hsu et al. 2019            server momentum on the mean's delta
//   fedadagrad     Reddi et al. 2021, Alg. 2  adaptive server step, v += d^2
//   fedadam        Reddi et al. 2021, Alg. 2  v = b2 v + (1 - b2) d^2
//   fedyogi        Reddi et al. 2021, Alg. 2  v -= (1 - b2) d^2 sign(v - d^2)
//   fedmedian      Yin et al. 2018            coordinate-wise median (unweighted)
//   fedtrimmedavg  Yin et al. 2018            coordinate-wise mean without the
//                                             floor(beta n) largest and smallest
//   krum           Blanchard et al. 2017      the update closest to its n - f - 2
//                                             nearest neighbours; Multi-Krum averages
//                                             the num_clients_to_keep best
//   fedprox        Li et al. 2020             FedAvg aggregation; every Fit carries
//                                             "proximal_mu" (needs capability fedprox)
//   scaffold       Karimireddy et al. 2020,   server control variate c travels as group
//                  Alg. 1 (option II)         "control"; x += eta_g mean(dy),
//                                             c += |S|/N mean(dc) (needs capability scaffold)
//
// Memory: the fedavg family (fedprox included) streams (two model copies in
// double, whatever the number of clients). scaffold streams too: the sums of dy
// and dc (two model copies in double) plus c (one in double, one in the model's
// dtype for sending), and each Fit carries one extra model-sized group. fedmedian, fedtrimmedavg and krum must see every update at
// once: they buffer clients x model parameters as double (8 bytes each), i.e.
// 100 clients x 105,866 parameters = 85 MB. docs/strategies.md repeats this.
//
// Thread safety: not thread-safe; owned by the RoundMachine that uses it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "greenfed/codec.h"
#include "greenfed/protocol.h"
#include "greenfed/status.h"
#include "greenfed/tensor.h"

namespace greenfed {

// Every strategy's settings; each field says which strategies read it. Defaults
// are Flower's where Flower documents one.
struct StrategyOptions {
  std::string name = "fedavg";       // fedavg | fedavgm | fedadagrad | fedadam | fedyogi |
                                     // fedmedian | fedtrimmedavg | krum | fedprox | scaffold
  double server_learning_rate = 1.0; // fedavgm: eta (Flower server_learning_rate);
                                     // scaffold: the global step size eta_g
  double proximal_mu = -1;           // fedprox: mu, required (as in Flower); -1 = not given
  uint32_t federation_size = 0;      // scaffold: N in c += |S|/N dc; RoundMachine sets it
                                     // from RoundOptions::num_clients (0 = not set)
  double server_momentum = 0.0;      // fedavgm: beta (Flower server_momentum; 0 = FedAvg)
  double eta = -1;                   // fedadagrad/fedadam: 0.1, fedyogi: 0.01 (-1 = that default)
  double beta_1 = -1;                // fedadam/fedyogi: 0.9, fedadagrad: 0.0 (-1 = that default)
  double beta_2 = 0.99;              // fedadam/fedyogi
  double tau = -1;                   // fedadagrad/fedadam: 1e-9, fedyogi: 1e-3 (-1 = that default)
  double trim_beta = 0.2;            // fedtrimmedavg: fraction cut from each end
  uint32_t num_malicious_clients = 0;  // krum: f
  uint32_t num_clients_to_keep = 0;  // krum: 0 = Krum (one update); m > 0 = Multi-Krum mean of m
};

// One round's combination of results.
class RoundAggregator {
 public:
  virtual ~RoundAggregator() = default;
  // Validates `update` (group "params") and `groups` (the result's other tensor
  // groups) against what the round expects and takes them in. A strategy that
  // expects no groups refuses any. On error nothing is added.
  virtual Status Add(const Parameters& update, const TensorGroups& groups, bool is_delta,
                     uint64_t num_examples) = 0;
  // The same for an update that arrived encoded by `codec` (the run's uplink
  // codec; encoded.codec is its name). The default decodes to Parameters
  // (strictly, codec.h) and calls Add: the buffered strategies and scaffold. The
  // fedavg family folds it into its streaming sum with DecodeAdd instead.
  virtual Status AddEncoded(const UpdateCodec& codec, const EncodedParams& encoded, const TensorGroups& groups,
                            bool is_delta, uint64_t num_examples);
  virtual uint64_t total_examples() const = 0;
  virtual uint32_t num_updates() const = 0;
  // The combined model (global + combined delta). FailedPrecondition when empty.
  virtual StatusOr<Parameters> Result() = 0;
};

class Strategy {
 public:
  virtual ~Strategy() = default;
  // Name and settings, e.g. "fedadam(eta=0.1, beta_1=0.9, beta_2=0.99, tau=1e-09)";
  // written to config.json and the progress log.
  virtual std::string Describe() const = 0;
  // Indices to sample from `available` (ascending client indices): k =
  // max(ceil(fraction * n), min_fit), capped at n, by a partial Fisher-Yates seeded
  // by (seed, round, attempt) with SplitMix64, so that every platform draws the
  // same sample. Returned ascending.
  virtual std::vector<uint32_t> Sample(const std::vector<uint32_t>& available, uint64_t round, uint32_t attempt,
                                       uint64_t seed, double fraction, uint32_t min_fit) const;
  // A fresh aggregator for a round that starts from `global`.
  virtual StatusOr<std::unique_ptr<RoundAggregator>> BeginRound(const Parameters& global) = 0;
  // Adds this strategy's config keys and tensor groups to one client's Fit of
  // `round` (called after BeginRound). `config` already holds the SGD keys.
  virtual void ConfigureFit(uint64_t round, ConfigMap* config, TensorGroups* groups) const {
    (void)round;
    (void)config;
    (void)groups;
  }
  // Capabilities a client must announce at Join to take part (e.g. "scaffold").
  virtual std::vector<std::string> RequiredCapabilities() const { return {}; }
  // The next global model from the current one and the round's Result(); the
  // server-side optimiser step. The default takes the result as it is.
  virtual StatusOr<Parameters> Update(const Parameters& global, Parameters aggregate);
  // Server optimiser state across rounds, for checkpoints. Empty when stateless.
  virtual std::vector<uint8_t> SaveState() const { return {}; }
  // Restores SaveState() output; DataLoss naming the problem when it does not fit.
  virtual Status RestoreState(const std::vector<uint8_t>& state);
};

// Checks the options (names the flag: --strategy, --server-momentum, ...).
Status ValidateStrategyOptions(const StrategyOptions& options);
// The strategy named by options.name, or InvalidArgument listing the names.
StatusOr<std::unique_ptr<Strategy>> MakeStrategy(const StrategyOptions& options);
// "fedavg, fedavgm, ..." for help texts.
std::string StrategyNames();

}  // namespace greenfed
