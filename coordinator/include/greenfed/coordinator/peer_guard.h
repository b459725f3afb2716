// Per-peer guards of the coordinator's receive path, pure logic with the time passed
// in, tested without sockets. Thread safety: none; owned by the server loop.
//
// PeerByteBudget: how many bytes each peer may still send in the current window.
// A fixed window per peer: the first byte a peer sends opens a window of window_s
// seconds in which it may send bytes_per_window bytes; what it sends beyond that is
// refused (drained unread by the receive path, answered with an Error) until the
// window ends. One allow-listed client cannot monopolise the coordinator's loop, and
// the bytes the loop copies per window are bounded per peer.
// Memory is bounded too: at most max_peers windows are kept; when full, expired
// windows are forgotten first, then the oldest.
//
// RoutingIdBinding: a ZeroMQ routing id is the client's choice, so a second
// connection could reuse one that an earlier connection (another key) used. The
// first identity seen with a routing id owns it; any other identity is refused.
// Bounded: at most max_bindings routing ids; a new one past that is refused too.
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

enum class BindResult { kBound, kOtherIdentity, kFull };

class RoutingIdBinding {
 public:
  explicit RoutingIdBinding(size_t max_bindings = 65536) : max_bindings_(max_bindings) {}
  // `identity` "" (insecure mode) binds nothing and is always kBound. On
  // kOtherIdentity, *owner is the identity that holds the routing id.
  BindResult Bind(const std::string& routing_id, const std::string& identity, std::string* owner = nullptr);
  size_t size() const { return bound_.size(); }

 private:
  size_t max_bindings_;
  std::map<std::string, std::string> bound_;  // routing id -> identity
};

}  // namespace greenfed
