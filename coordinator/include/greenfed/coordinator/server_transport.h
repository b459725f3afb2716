// ServerTransport: the one seam between the coordinator's logic (Server: decode ->
// events, actions -> sends, central evaluation, ledger, run directory, checkpoint)
// and how bytes reach clients. The ZeroMQ ROUTER socket (with CURVE, ZAP, byte
// budgets; the default) is one implementation; `greenfed simulate`'s in-process
// transport (sim/) is the other. Both carry the protocol's encoded frames, so the
// server counts the same bytes either way.
//
// Contract: Bind() once before Poll()/Send(). Poll() waits up to timeout_s for the
// first message and hands each received one to `on_message` in arrival order (also
// refused ones, ReceivedMessage::outcome says which), and returns once nothing is
// queued or `budget_s` has passed since it was called, so that the server's timers
// are never starved by a flood. It returns false when a stop was requested.
// Thread safety: called from the server's thread only.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "greenfed/protocol.h"
#include "greenfed/status.h"
#include "greenfed/transport.h"

namespace greenfed {

class ServerTransport {
 public:
  virtual ~ServerTransport() = default;
  // Binds; returns the endpoint (a wildcard port resolved).
  virtual StatusOr<std::string> Bind() = 0;
  // Sends one message's frames to `peer`.
  virtual Status Send(const std::string& peer, const Frames& frames) = 0;
  virtual bool Poll(double timeout_s, double budget_s, const ReceiveLimits& limits,
                    const std::function<void(ReceivedMessage&)>& on_message) = 0;
  // CURVE handshakes refused so far (0 for a transport without CURVE).
  virtual uint64_t refused_handshakes() const { return 0; }
};

}  // namespace greenfed
