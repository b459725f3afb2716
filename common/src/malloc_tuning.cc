#include "greenfed/malloc_tuning.h"

#include <malloc.h>

namespace greenfed {

bool TuneMallocForTensors() {
  const bool mmap_ok = mallopt(M_MMAP_THRESHOLD, static_cast<int>(kMallocMmapThresholdBytes)) == 1;
  const bool trim_ok = mallopt(M_TRIM_THRESHOLD, static_cast<int>(kMallocTrimThresholdBytes)) == 1;
  return mmap_ok && trim_ok;
}

}  // namespace greenfed
