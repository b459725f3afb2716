// SHA-256 digests of parameter sets (OpenSSL EVP), so that a run can name the exact
// model it produced: summary.json carries the final model's digest, and two runs
// with the same seed and settings can be checked for identical weights.
//
// The digest covers, per tensor in order: name, dtype, shape and bytes.
// Thread safety: pure function.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "greenfed/status.h"
#include "greenfed/tensor.h"

namespace greenfed {

// Lower-case hex SHA-256; Internal if OpenSSL fails.
StatusOr<std::string> Sha256Hex(const Parameters& params);

// Raw SHA-256 of `size` bytes (checkpoint files); Internal if OpenSSL fails.
StatusOr<std::array<uint8_t, 32>> Sha256(const void* data, size_t size);
// Lower-case hex of `size` bytes.
std::string HexOf(const uint8_t* data, size_t size);

}  // namespace greenfed
