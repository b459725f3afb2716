#include "greenfed/coordinator/peer_budget.h"

namespace greenfed {

PeerByteBudget::Window& PeerByteBudget::WindowOf(const std::string& peer, double now_s) {
  auto it = windows_.find(peer);
  if (it != windows_.end()) {
    if (now_s - it->second.start_s >= options_.window_s || now_s < it->second.start_s) it->second = Window{now_s, 0};
    return it->second;
  }
  if (windows_.size() >= options_.max_peers) {
    for (auto w = windows_.begin(); w != windows_.end();) {
      w = now_s - w->second.start_s >= options_.window_s ? windows_.erase(w) : std::next(w);
    }
    while (windows_.size() >= options_.max_peers && !windows_.empty()) {
      auto oldest = windows_.begin();
      for (auto w = windows_.begin(); w != windows_.end(); ++w) {
        if (w->second.start_s < oldest->second.start_s) oldest = w;
      }
      windows_.erase(oldest);
    }
  }
  return windows_.emplace(peer, Window{now_s, 0}).first->second;
}

uint64_t PeerByteBudget::Remaining(const std::string& peer, double now_s) {
  const Window& w = WindowOf(peer, now_s);
  return w.used >= options_.bytes_per_window ? 0 : options_.bytes_per_window - w.used;
}

void PeerByteBudget::Charge(const std::string& peer, uint64_t bytes, double now_s) {
  Window& w = WindowOf(peer, now_s);
  w.used = bytes > UINT64_MAX - w.used ? UINT64_MAX : w.used + bytes;
}

}  // namespace greenfed
