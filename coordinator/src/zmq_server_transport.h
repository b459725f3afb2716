// The coordinator's ZeroMQ transport: a ROUTER socket with CURVE and the ZAP
// handler (zap.h), ZMQ_MAXMSGSIZE and ZMQ_RCVHWM, and bounded receives
// (greenfed/transport.h). See server.h for the security contract.
// Thread safety: one thread (the server's); with CURVE the ZAP handler owns another.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "greenfed/coordinator/server_transport.h"
#include "greenfed/log.h"

namespace greenfed {

struct ZmqServerTransportOptions {
  std::string bind = "tcp://0.0.0.0:5555";      // ZeroMQ endpoint
  uint64_t max_message_bytes = kDefaultMaxMessageBytes;  // ZMQ_MAXMSGSIZE
  std::string curve_secret_key;                 // "" = no CURVE
  std::vector<std::string> allowed_client_keys; // Z85 public keys admitted with CURVE
  bool insecure = false;                        // plaintext must be asked for
  int receive_hwm_messages = 16;                // ZMQ_RCVHWM
  int stop_fd = -1;                             // readable fd that requests a stop; -1 = none
};

std::unique_ptr<ServerTransport> NewZmqServerTransport(ZmqServerTransportOptions options, Logger* log);

}  // namespace greenfed
