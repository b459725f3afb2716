#include "greenfed/partition.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>


namespace greenfed {

uint64_t DeterministicRng::UniformBelow(uint64_t n) {
  // Reject the lowest (2^64 mod n) values so that every residue is equally likely.
  const uint64_t threshold = (0 - n) % n;
  for (;;) {
    const uint64_t r = engine_();
    if (r >= threshold) return r % n;
  }
}

double DeterministicRng::Uniform01() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }

double DeterministicRng::Normal() {
  for (;;) {
    const double u = 2.0 * Uniform01() - 1.0;
    const double v = 2.0 * Uniform01() - 1.0;
    const double s = u * u + v * v;
    // The second variate (v * factor) is dropped so the generator carries no state
    // besides the engine.
    if (s > 0.0 && s < 1.0) return u * std::sqrt(-2.0 * std::log(s) / s);
  }
}

double DeterministicRng::Gamma(double shape) {
  if (shape < 1.0) {
    const double u = 1.0 - Uniform01();  // (0, 1]: log(u) is finite
    return Gamma(shape + 1.0) * std::exp(std::log(u) / shape);
  }
  const double d = shape - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9.0 * d);
  for (;;) {
    double x = 0;
    double v = 0;
    do {
      x = Normal();
      v = 1.0 + c * x;
    } while (v <= 0.0);
    v = v * v * v;
    const double u = Uniform01();
    const double x2 = x * x;
    if (u < 1.0 - 0.0331 * x2 * x2) return d * v;
    if (std::log(u) < 0.5 * x2 + d * (1.0 - v + std::log(v))) return d * v;
  }
}

void DeterministicRng::Shuffle(std::vector<uint32_t>* values) {
  for (size_t i = values->size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(UniformBelow(i));
    std::swap((*values)[i - 1], (*values)[j]);
  }
}

Status ValidatePartitionSpec(const PartitionSpec& spec, uint64_t num_examples, uint32_t client_index) {
  if (spec.scheme != "iid" && spec.scheme != "shards" && spec.scheme != "dirichlet") {
    return InvalidArgument("partition: unknown scheme '" + spec.scheme + "' (expected iid, shards or dirichlet)");
  }
  if (spec.num_clients == 0) return InvalidArgument("partition: num_clients must be >= 1, got 0");
  if (client_index >= spec.num_clients) {
    return InvalidArgument("partition: client_index " + std::to_string(client_index) +
                           " is out of range for num_clients " + std::to_string(spec.num_clients) + " (expected 0.." +
                           std::to_string(spec.num_clients - 1) + ")");
  }
  if (num_examples > std::numeric_limits<uint32_t>::max()) {
    return OutOfRange("partition: " + std::to_string(num_examples) + " examples exceed the 2^32-1 index limit");
  }
  if (spec.num_clients > num_examples) {
    return InvalidArgument("partition: " + std::to_string(spec.num_clients) + " clients need at least " +
                           std::to_string(spec.num_clients) + " examples, the dataset has " +
                           std::to_string(num_examples));
  }
  if (spec.scheme == "shards") {
    if (spec.shards_per_client == 0) return InvalidArgument("partition: shards_per_client must be >= 1, got 0");
    const uint64_t num_shards = uint64_t{spec.num_clients} * spec.shards_per_client;
    if (num_shards > num_examples) {
      return InvalidArgument("partition: " + std::to_string(spec.num_clients) + " clients x " +
                             std::to_string(spec.shards_per_client) + " shards_per_client = " +
                             std::to_string(num_shards) + " shards, more than the " + std::to_string(num_examples) +
                             " examples");
    }
  }
  if (spec.scheme == "dirichlet" && !(std::isfinite(spec.alpha) && spec.alpha > 0.0)) {
    return InvalidArgument("partition: dirichlet alpha must be a finite number > 0, got " +
                           std::to_string(spec.alpha));
  }
  return Status::Ok();
}

namespace {

std::vector<uint32_t> Iota(size_t n) {
  std::vector<uint32_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint32_t>(i);
  return v;
}

// Example indices grouped by class, ascending within each class.
std::vector<std::vector<uint32_t>> IndicesByClass(const std::vector<uint8_t>& labels, uint32_t num_classes) {
  std::vector<std::vector<uint32_t>> by_class(num_classes);
  for (size_t i = 0; i < labels.size(); ++i) by_class[labels[i]].push_back(static_cast<uint32_t>(i));
  return by_class;
}

std::vector<uint32_t> IidShard(size_t n, const PartitionSpec& spec, uint32_t client) {
  DeterministicRng rng(spec.seed);
  std::vector<uint32_t> perm = Iota(n);
  rng.Shuffle(&perm);
  const size_t k = spec.num_clients;
  const size_t base = n / k;
  const size_t rem = n % k;
  const size_t begin = client * base + std::min<size_t>(client, rem);
  const size_t size = base + (client < rem ? 1 : 0);
  return std::vector<uint32_t>(perm.begin() + static_cast<std::ptrdiff_t>(begin),
                               perm.begin() + static_cast<std::ptrdiff_t>(begin + size));
}

std::vector<uint32_t> LabelShards(const std::vector<uint8_t>& labels, const PartitionSpec& spec, uint32_t client,
                                  uint32_t num_classes) {
  // Concatenating the per-class lists is a stable sort by label, ties by index.
  std::vector<uint32_t> sorted;
  sorted.reserve(labels.size());
  for (const auto& cls : IndicesByClass(labels, num_classes)) sorted.insert(sorted.end(), cls.begin(), cls.end());

  const uint64_t n = sorted.size();
  const uint64_t num_shards = uint64_t{spec.num_clients} * spec.shards_per_client;
  DeterministicRng rng(spec.seed);
  std::vector<uint32_t> shard_order = Iota(static_cast<size_t>(num_shards));
  rng.Shuffle(&shard_order);

  std::vector<uint32_t> out;
  for (uint64_t j = 0; j < spec.shards_per_client; ++j) {
    const uint64_t shard = shard_order[static_cast<size_t>(uint64_t{client} * spec.shards_per_client + j)];
    // Shard s is [s*n/S, (s+1)*n/S): sizes differ by at most one and cover all n.
    const uint64_t begin = shard * n / num_shards;
    const uint64_t end = (shard + 1) * n / num_shards;
    out.insert(out.end(), sorted.begin() + static_cast<std::ptrdiff_t>(begin),
               sorted.begin() + static_cast<std::ptrdiff_t>(end));
  }
  return out;
}

std::vector<uint32_t> DirichletShard(const std::vector<uint8_t>& labels, const PartitionSpec& spec, uint32_t client,
                                     uint32_t num_classes) {
  const size_t k = spec.num_clients;
  DeterministicRng rng(spec.seed);
  std::vector<std::vector<uint32_t>> assigned(k);
  std::vector<double> weights(k);
  for (std::vector<uint32_t>& cls : IndicesByClass(labels, num_classes)) {
    if (cls.empty()) continue;
    rng.Shuffle(&cls);
    double sum = 0;
    for (size_t c = 0; c < k; ++c) {
      weights[c] = rng.Gamma(spec.alpha);
      sum += weights[c];
    }
    if (!(sum > 0.0) || !std::isfinite(sum)) {
      // Tiny alpha can underflow every gamma draw to 0; the Dirichlet limit then
      // puts the whole class on one client.
      std::fill(weights.begin(), weights.end(), 0.0);
      weights[static_cast<size_t>(rng.UniformBelow(k))] = 1.0;
      sum = 1.0;
    }
    // Cut at floor(cumulative proportion * n): counts add up to n exactly.
    const size_t n = cls.size();
    double cumulative = 0;
    size_t begin = 0;
    for (size_t c = 0; c < k; ++c) {
      cumulative += weights[c];
      size_t end = n;
      if (c + 1 < k) end = std::min(n, static_cast<size_t>(std::floor(cumulative / sum * static_cast<double>(n))));
      end = std::max(end, begin);
      assigned[c].insert(assigned[c].end(), cls.begin() + static_cast<std::ptrdiff_t>(begin),
                         cls.begin() + static_cast<std::ptrdiff_t>(end));
      begin = end;
    }
  }
  // Every client gets at least one example: an empty client takes the most recently
  // assigned example of the largest shard (lowest client index on ties). Validation
  // guarantees num_examples >= num_clients, so while a client is empty the largest
  // shard holds >= 2 examples and never becomes empty itself. Skewed shards stay
  // skewed: at most num_clients - 1 examples move.
  for (size_t c = 0; c < k; ++c) {
    if (!assigned[c].empty()) continue;
    size_t donor = 0;
    for (size_t d = 1; d < k; ++d) {
      if (assigned[d].size() > assigned[donor].size()) donor = d;
    }
    assigned[c].push_back(assigned[donor].back());
    assigned[donor].pop_back();
  }
  return std::move(assigned[client]);
}

}  // namespace

StatusOr<std::vector<uint32_t>> PartitionIndices(const std::vector<uint8_t>& labels, const PartitionSpec& spec,
                                                 uint32_t client_index, uint32_t num_classes) {
  GREENFED_RETURN_IF_ERROR(ValidatePartitionSpec(spec, labels.size(), client_index));
  if (num_classes == 0 || num_classes > 256) {
    return InvalidArgument("partition: num_classes must be in 1..256, got " + std::to_string(num_classes));
  }
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] >= num_classes) {
      return InvalidArgument("partition: label " + std::to_string(labels[i]) + " at index " + std::to_string(i) +
                             " is out of range (expected 0.." + std::to_string(num_classes - 1) + ")");
    }
  }
  std::vector<uint32_t> shard;
  if (spec.scheme == "iid") {
    shard = IidShard(labels.size(), spec, client_index);
  } else if (spec.scheme == "shards") {
    shard = LabelShards(labels, spec, client_index, num_classes);
  } else {
    shard = DirichletShard(labels, spec, client_index, num_classes);
  }
  std::sort(shard.begin(), shard.end());
  return shard;
}

std::vector<int64_t> LabelHistogram(const std::vector<uint8_t>& labels, const std::vector<uint32_t>& indices,
                                    size_t num_classes) {
  std::vector<int64_t> histogram(num_classes, 0);
  for (uint32_t i : indices) {
    if (i < labels.size() && labels[i] < num_classes) ++histogram[labels[i]];
  }
  return histogram;
}

StatusOr<std::vector<uint64_t>> ShardSizes(const std::vector<uint8_t>& labels, const PartitionSpec& spec,
                                           uint32_t num_classes) {
  std::vector<uint64_t> sizes;
  sizes.reserve(spec.num_clients);
  for (uint32_t i = 0; i < spec.num_clients; ++i) {
    GREENFED_ASSIGN_OR_RETURN(std::vector<uint32_t> shard, PartitionIndices(labels, spec, i, num_classes));
    sizes.push_back(shard.size());
  }
  return sizes;
}

}  // namespace greenfed
