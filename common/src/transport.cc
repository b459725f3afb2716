#include "greenfed/transport.h"

#include <zmq.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>

namespace greenfed {

namespace {

// One zmq_msg_t, closed on scope exit.
struct Frame {
  zmq_msg_t msg;
  Frame() { zmq_msg_init(&msg); }
  ~Frame() { zmq_msg_close(&msg); }
  Frame(const Frame&) = delete;
  Frame& operator=(const Frame&) = delete;
  size_t size() { return zmq_msg_size(&msg); }
  const uint8_t* data() { return static_cast<const uint8_t*>(zmq_msg_data(&msg)); }
  bool more() { return zmq_msg_more(&msg) != 0; }
};

constexpr size_t kMaxUserIdChars = 128;  // "curve:" + 40 Z85 characters fits with room

}  // namespace

const char* ReceiveOutcomeName(ReceiveOutcome o) {
  switch (o) {
    case ReceiveOutcome::kMessage: return "message";
    case ReceiveOutcome::kTooLarge: return "too-large";
    case ReceiveOutcome::kOverBudget: return "over-budget";
    case ReceiveOutcome::kNoMemory: return "no-memory";
  }
  return "unknown";
}

StatusOr<std::optional<ReceivedMessage>> ReceiveBounded(void* socket, const ReceiveLimits& limits) {
  ReceivedMessage r;
  r.limit_bytes = limits.max_message_bytes;
  bool first = true;       // nothing read yet: a non-blocking read
  bool want_id = limits.routing_id;
  bool want_user = true;
  uint64_t copied = 0;
  for (;;) {
    Frame f;
    // The rest of a multipart message is already queued (ZeroMQ delivers it whole),
    // so only the first read may find nothing.
    const int rc = zmq_msg_recv(&f.msg, socket, first ? ZMQ_DONTWAIT : 0);
    if (rc < 0) {
      if (first && errno == EAGAIN) return std::optional<ReceivedMessage>();
      if (errno == EINTR && first) return std::optional<ReceivedMessage>();
      return Unavailable(std::string("receive failed: ") + zmq_strerror(errno));
    }
    first = false;
    const bool more = f.more();
    if (want_id) {
      want_id = false;
      r.routing_id.assign(reinterpret_cast<const char*>(f.data()), std::min<size_t>(f.size(), 255));
      if (!more) return std::optional<ReceivedMessage>(std::move(r));  // a bare id: no frames
      continue;
    }
    if (want_user) {
      want_user = false;
      if (const char* user = zmq_msg_gets(&f.msg, "User-Id")) {
        r.user_id.assign(user, strnlen(user, kMaxUserIdChars));
      }
      if (limits.peer_limit) r.limit_bytes = std::min(r.limit_bytes, limits.peer_limit(r.routing_id, r.user_id));
    }
    ++r.num_frames;
    r.wire_bytes += f.size();
    if (r.outcome == ReceiveOutcome::kMessage) {
      if (r.wire_bytes > r.limit_bytes) {
        r.outcome = r.limit_bytes < limits.max_message_bytes ? ReceiveOutcome::kOverBudget : ReceiveOutcome::kTooLarge;
        Frames().swap(r.frames);  // free what was kept; the rest is only counted
        copied = 0;
      } else {
        try {
          r.frames.emplace_back(f.data(), f.data() + f.size());
          copied += f.size();
          r.peak_copied_bytes = std::max(r.peak_copied_bytes, copied);
        } catch (const std::bad_alloc&) {
          r.outcome = ReceiveOutcome::kNoMemory;
          Frames().swap(r.frames);
          copied = 0;
        }
      }
    }
    if (!more) break;
  }
  return std::optional<ReceivedMessage>(std::move(r));
}

}  // namespace greenfed
