#include "handshake_monitor.h"

#include <zmq_addon.hpp>

#include <cstring>
#include <vector>

namespace greenfed {

Status HandshakeMonitor::Attach(zmq::context_t* ctx, zmq::socket_t* socket) {
  Detach();
  const std::string inproc = "inproc://greenfed-client-monitor-" + std::to_string(++attached_);
  const int events = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                     ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
  if (zmq_socket_monitor(static_cast<void*>(*socket), inproc.c_str(), events) != 0) {
    return Internal(std::string("cannot monitor the client socket: ") + zmq_strerror(zmq_errno()));
  }
  watched_ = socket;
  try {
    monitor_ = std::make_unique<zmq::socket_t>(*ctx, zmq::socket_type::pair);
    monitor_->set(zmq::sockopt::linger, 0);
    monitor_->connect(inproc);
  } catch (const zmq::error_t& e) {
    Detach();
    return Internal(std::string("cannot monitor the client socket: ") + e.what());
  }
  return Status::Ok();
}

void HandshakeMonitor::Detach() {
  if (watched_) (void)zmq_socket_monitor(static_cast<void*>(*watched_), nullptr, 0);
  watched_ = nullptr;
  if (monitor_) monitor_->close();
  monitor_.reset();
}

Status HandshakeMonitor::Check() {
  while (monitor_) {
    std::vector<zmq::message_t> parts;
    try {
      if (!zmq::recv_multipart(*monitor_, std::back_inserter(parts), zmq::recv_flags::dontwait)) break;
    } catch (const zmq::error_t&) {
      break;
    }
    if (parts.empty() || parts[0].size() < 6) continue;
    uint16_t event = 0;
    uint32_t value = 0;
    std::memcpy(&event, parts[0].data(), 2);
    std::memcpy(&value, static_cast<const char*>(parts[0].data()) + 2, 4);
    if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
      failures_ = 0;
      continue;
    }
    ++failures_;
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
      last_failure_ = "the coordinator refused this client's key (status " + std::to_string(value) +
                      "): is its public key on the coordinator's --allow-clients list?";
    } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
      last_failure_ = "protocol error " + std::to_string(value) +
                      (insecure_ ? " (this client is --insecure: does the coordinator use CURVE?)"
                                 : " (is the coordinator plaintext, --insecure?)");
    } else {
      last_failure_ = "the coordinator dropped the handshake: is --server-key its public key?";
    }
  }
  if (failures_ >= max_failures_) {
    return PermissionDenied("server key mismatch or handshake failed with " + endpoint_ + " (" +
                            std::to_string(failures_) + " handshakes in a row): " + last_failure_);
  }
  return Status::Ok();
}

}  // namespace greenfed
