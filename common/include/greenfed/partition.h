// Deterministic data partitioners: every client rebuilds its own shard from
// (PartitionSpec, client_index) and the labels it already has, so no data and no
// index lists travel over the network. Shared by every task (fashion_mnist, digits,
// a task of your own): labels are class ids < num_classes (at most 256).
//
// Contract: for a fixed spec, the shards of clients 0..num_clients-1 are disjoint,
// their union is every example exactly once, and each shard is returned sorted by
// example index. Results are identical across compilers and standard libraries:
// the only engine used is std::mt19937_64 (its output sequence is fixed by the C++
// standard) and the uniform, normal and gamma draws on top of it are our own code,
// because std::*_distribution outputs are implementation-defined. The Dirichlet
// draws call std::log/std::sqrt/std::exp; sqrt is exact in IEEE-754, log/exp agree
// across mainstream libms to the last ulp at worst, which can move a cut point by
// one example only when a scaled proportion lands within an ulp of an integer.
// Thread safety: free functions are pure; a DeterministicRng is not shared.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "greenfed/protocol.h"
#include "greenfed/status.h"

namespace greenfed {

// Random draws whose values depend only on the seed, never on the standard library.
class DeterministicRng {
 public:
  explicit DeterministicRng(uint64_t seed) : engine_(seed) {}
  uint64_t Next() { return engine_(); }
  // Uniform in [0, n) without modulo bias; n must be > 0.
  uint64_t UniformBelow(uint64_t n);
  // Uniform in [0, 1) with 53 random bits.
  double Uniform01();
  // Standard normal (Marsaglia's polar method).
  double Normal();
  // Gamma(shape, scale 1) for shape > 0 (Marsaglia & Tsang 2000; for shape < 1 the
  // boost Gamma(shape + 1) * U^(1/shape)).
  double Gamma(double shape);
  // Fisher-Yates shuffle.
  void Shuffle(std::vector<uint32_t>* values);

 private:
  std::mt19937_64 engine_;
};

// Checks the spec against a dataset of `num_examples`: known scheme, num_clients in
// [1, num_examples], client_index < num_clients, shards_per_client >= 1 and
// num_clients * shards_per_client <= num_examples for "shards", finite alpha > 0
// for "dirichlet".
Status ValidatePartitionSpec(const PartitionSpec& spec, uint64_t num_examples, uint32_t client_index);

// Indices (into `labels`) of client `client_index`'s shard, ascending.
//  "iid":       seeded shuffle, then near-equal contiguous cuts (sizes differ by <= 1).
//  "shards":    McMahan et al. 2017: examples sorted by label (ties by index), cut
//               into num_clients * shards_per_client near-equal shards, dealt to
//               clients by a seeded permutation of the shards.
//  "dirichlet": per class, proportions ~ Dirichlet(alpha) over the clients split
//               that class's seeded-shuffled examples; every client then holds at
//               least one example (see partition.cc).
// Every label must be < num_classes (1..256), else InvalidArgument naming the index.
StatusOr<std::vector<uint32_t>> PartitionIndices(const std::vector<uint8_t>& labels, const PartitionSpec& spec,
                                                 uint32_t client_index, uint32_t num_classes);

// Size of every client's shard under `spec` (PartitionIndices for each index).
StatusOr<std::vector<uint64_t>> ShardSizes(const std::vector<uint8_t>& labels, const PartitionSpec& spec,
                                           uint32_t num_classes);

// Count of each class among labels[indices]; labels >= num_classes and indices out
// of range are not counted.
std::vector<int64_t> LabelHistogram(const std::vector<uint8_t>& labels, const std::vector<uint32_t>& indices,
                                    size_t num_classes);

}  // namespace greenfed
