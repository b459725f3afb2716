// SHA-256 digests of parameter sets (OpenSSL EVP), so that a run can name the exact
// model it produced: summary.json carries the final model's digest, and two runs
// with the same seed and settings can be checked for identical weights.
//
// The digest covers, per tensor in order: name, dtype, shape and bytes.
// Thread safety: pure function.
#pragma once

#include <string>

#include "greenfed/status.h"
#include "greenfed/tensor.h"

namespace greenfed {

// Lower-case hex SHA-256; Internal if OpenSSL fails.
StatusOr<std::string> Sha256Hex(const Parameters& params);

}  // namespace greenfed
