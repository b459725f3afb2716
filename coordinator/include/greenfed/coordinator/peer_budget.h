// PeerByteBudget: how many bytes each peer may still send in the current window.
// A fixed window per peer: the first byte a peer sends opens a window of window_s
// seconds in which it may send bytes_per_window bytes; what it sends beyond that is
// refused (drained unread by the receive path, answered with an Error) until the
// window ends. One allow-listed client cannot monopolise the coordinator's loop, and
// the bytes the loop copies per window are bounded per peer.
// Memory is bounded too: at most max_peers windows are kept; when full, expired
// windows are forgotten first, then the oldest.
// Pure logic with the time passed in; tested without sockets.
// Thread safety: none; owned by the server loop.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace greenfed {

struct PeerBudgetOptions {
  uint64_t bytes_per_window = 256ull << 20;  // bytes one peer may send per window
  double window_s = 10.0;                    // window length in seconds
  size_t max_peers = 4096;                   // windows kept at most (one per peer)
};

class PeerByteBudget {
 public:
  explicit PeerByteBudget(PeerBudgetOptions options) : options_(options) {}
  // Bytes `peer` may still send at `now_s` (opens a window when none is open).
  uint64_t Remaining(const std::string& peer, double now_s);
  // Counts `bytes` that `peer` sent at `now_s`, kept or discarded.
  void Charge(const std::string& peer, uint64_t bytes, double now_s);
  size_t tracked_peers() const { return windows_.size(); }
  const PeerBudgetOptions& options() const { return options_; }

 private:
  struct Window {
    double start_s = 0;
    uint64_t used = 0;
  };
  Window& WindowOf(const std::string& peer, double now_s);
  PeerBudgetOptions options_;
  std::map<std::string, Window> windows_;
};

}  // namespace greenfed
