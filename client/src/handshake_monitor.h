// HandshakeMonitor: tells a client why its connection never completes. ZeroMQ fails
// a CURVE handshake silently (the socket just reconnects), so a wrong --server-key,
// a key the coordinator does not allow, or a CURVE/plaintext mismatch would look
// like a coordinator that never answers. This watches the socket's handshake events
// (zmq_socket_monitor on an inproc PAIR) and counts failures in a row across
// reconnects and rejoins; a success resets the count.
// Contract: Attach() after the socket is created and before it connects; Detach()
// before the socket closes. Check() returns PERMISSION_DENIED "server key mismatch
// or handshake failed with ENDPOINT (...)" once max_failures handshakes in a row
// have failed, naming the last failure's likely cause.
// Thread safety: owned by the client's thread, like its socket.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <zmq.hpp>

#include "greenfed/status.h"

namespace greenfed {

class HandshakeMonitor {
 public:
  // `insecure`: this client runs plaintext (changes the hint of a protocol failure).
  HandshakeMonitor(std::string endpoint, int max_failures, bool insecure)
      : endpoint_(std::move(endpoint)), max_failures_(max_failures < 1 ? 1 : max_failures), insecure_(insecure) {}
  ~HandshakeMonitor() { Detach(); }  // declare it after the watched socket, so it goes first
  HandshakeMonitor(const HandshakeMonitor&) = delete;
  HandshakeMonitor& operator=(const HandshakeMonitor&) = delete;
  Status Attach(zmq::context_t* ctx, zmq::socket_t* socket);
  void Detach();
  // Reads the pending events without waiting.
  Status Check();
  // The PAIR socket to add to a poll set (nullptr when detached).
  void* pollable() { return monitor_ ? static_cast<void*>(*monitor_) : nullptr; }

 private:
  std::string endpoint_;
  int max_failures_;
  bool insecure_;
  zmq::socket_t* watched_ = nullptr;
  std::unique_ptr<zmq::socket_t> monitor_;
  uint64_t attached_ = 0;  // makes each inproc endpoint unique
  int failures_ = 0;       // in a row, across reconnects and rejoins
  std::string last_failure_;
};

}  // namespace greenfed
