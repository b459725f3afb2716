// CSV fields, shared by every reader of greenfed's CSV files (the carbon table,
// run directories).
//
// Contract: RFC 4180 quoting: a field may be double-quoted so that it can hold
// commas, and "" inside quotes is a literal quote. Errors (InvalidArgument) name the
// problem and the 1-based field; callers add the file and line.
// Thread safety: pure function.
#pragma once

#include <string>
#include <vector>

#include "greenfed/status.h"

namespace greenfed {

StatusOr<std::vector<std::string>> SplitCsvLine(const std::string& line);

}  // namespace greenfed
