// Bounded receiving of one ZeroMQ multipart message, shared by the coordinator's
// ROUTER and the client's DEALER. Every byte from the network is hostile: a peer
// may send any number of frames, each under ZMQ_MAXMSGSIZE, that together are far
// over the protocol's limit.
//
// Contract: ReceiveBounded reads frame by frame (zmq_msg_recv + ZMQ_RCVMORE). It
// copies a frame out of ZeroMQ and closes it at once, so at most one frame exists
// twice. Once the copied total would pass the limit it stops copying, frees what it
// kept and reads the rest of that multipart only to discard it: the message is
// refused with outcome kTooLarge (or kOverBudget when the per-peer limit was the
// smaller one), never kept whole. std::bad_alloc while copying becomes kNoMemory,
// the same way. The caller answers and logs; nothing here logs.
// What this does not bound: libzmq itself delivers a multipart message only once all
// of its frames have arrived, so it holds an incomplete one in its own queue (up to
// frames x ZMQ_MAXMSGSIZE). Set ZMQ_MAXMSGSIZE and ZMQ_RCVHWM on the socket, and
// use CURVE so that only allow-listed peers get that far (docs/deployment.md).
// Thread safety: a ZeroMQ socket belongs to one thread; so does this call.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "greenfed/protocol.h"
#include "greenfed/status.h"

namespace greenfed {

struct ReceiveLimits {
  uint64_t max_message_bytes = kDefaultMaxMessageBytes;  // all frames after the routing id
  bool routing_id = false;                               // true on a ROUTER: frame 0 names the peer
  // Optional: a smaller limit for this peer's message (its remaining byte budget),
  // asked once the first frame is read, before it is copied. Gets the routing id
  // ("" on a DEALER) and the ZAP User-Id ("" without ZAP). Empty = max_message_bytes.
  std::function<uint64_t(const std::string& routing_id, const std::string& user_id)> peer_limit;
};

enum class ReceiveOutcome {
  kMessage,     // frames hold the whole message
  kTooLarge,    // over max_message_bytes: discarded
  kOverBudget,  // over the peer's remaining budget (peer_limit): discarded
  kNoMemory,    // std::bad_alloc while copying: discarded
};
const char* ReceiveOutcomeName(ReceiveOutcome o);

struct ReceivedMessage {
  ReceiveOutcome outcome = ReceiveOutcome::kMessage;
  std::string routing_id;        // ROUTER only
  std::string user_id;           // the connection's ZAP User-Id ("" without ZAP)
  Frames frames;                 // the message; empty unless outcome is kMessage
  uint64_t limit_bytes = 0;      // the limit this message was held to
  uint64_t wire_bytes = 0;       // bytes of every frame read, kept or not (routing id excluded)
  uint64_t num_frames = 0;       // frames read (routing id excluded)
  uint64_t peak_copied_bytes = 0;  // most bytes this call held copied out of ZeroMQ at once
};

// Reads one message without waiting; nullopt when none is queued. An error only
// when the socket itself fails (the message, if any, is then lost).
StatusOr<std::optional<ReceivedMessage>> ReceiveBounded(void* zmq_socket, const ReceiveLimits& limits);

}  // namespace greenfed
