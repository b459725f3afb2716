#include "zmq_server_transport.h"

#include <sys/signalfd.h>
#include <unistd.h>

#include <chrono>
#include <new>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "greenfed/keys.h"
#include "zap.h"

namespace greenfed {

namespace {

class ZmqServerTransport : public ServerTransport {
 public:
  ZmqServerTransport(ZmqServerTransportOptions o, Logger* log) : options_(std::move(o)), log_(log) {}
  ~ZmqServerTransport() override {
    socket_.close();  // before the ZAP handler stops: no connection is ever admitted without it
    zap_.reset();
  }

  StatusOr<std::string> Bind() override {
    const bool curve = !options_.curve_secret_key.empty();
    if (!curve && !options_.insecure) {
      return FailedPrecondition("no CURVE secret key for the coordinator (--secret-key); plaintext needs --insecure");
    }
    if (curve && options_.allowed_client_keys.empty()) {
      return FailedPrecondition("CURVE needs an allow-list of client public keys (--allow-clients)");
    }
    try {
      socket_.set(zmq::sockopt::linger, 0);
      socket_.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(options_.max_message_bytes));
      socket_.set(zmq::sockopt::rcvhwm, std::max(1, options_.receive_hwm_messages));
      if (curve) {
        GREENFED_RETURN_IF_ERROR(ValidateZ85Key(options_.curve_secret_key).WithContext("coordinator secret key"));
        for (const auto& k : options_.allowed_client_keys) {
          GREENFED_RETURN_IF_ERROR(ValidateZ85Key(k).WithContext("allow-listed key " + KeyPrefix(k)));
        }
        if (!CurveAvailable()) return Unavailable("this libzmq has no CURVE support; rebuild with libsodium or use --insecure");
        GREENFED_ASSIGN_OR_RETURN(zap_, ZapHandler::Start(&ctx_, options_.allowed_client_keys, log_));
        socket_.set(zmq::sockopt::curve_server, true);
        socket_.set(zmq::sockopt::curve_secretkey, options_.curve_secret_key);
        // libzmq 4.3 admits every CURVE client when no handler is bound (ZMQ_ZAP_ENFORCE_DOMAIN
        // is a draft option there): the handler is bound above, before this socket, and
        // the socket is closed before the handler stops (destructor).
        socket_.set(zmq::sockopt::zap_domain, "greenfed");
      }
      socket_.bind(options_.bind);
      return socket_.get(zmq::sockopt::last_endpoint);
    } catch (const zmq::error_t& e) {
      return Unavailable("cannot bind " + options_.bind + ": " + e.what());
    }
  }

  Status Send(const std::string& peer, const Frames& frames) override {
    try {
      socket_.send(zmq::buffer(peer), zmq::send_flags::sndmore);
      for (size_t i = 0; i < frames.size(); ++i) {
        socket_.send(zmq::buffer(frames[i]), i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
      }
    } catch (const zmq::error_t& e) {
      return Unavailable(std::string("send failed: ") + e.what());
    }
    return Status::Ok();
  }

  bool Poll(double timeout_s, double budget_s, const ReceiveLimits& limits,
            const std::function<void(ReceivedMessage&)>& on_message) override {
    std::vector<zmq::pollitem_t> items = {{static_cast<void*>(socket_), 0, ZMQ_POLLIN, 0}};
    if (options_.stop_fd >= 0) items.push_back({nullptr, options_.stop_fd, ZMQ_POLLIN, 0});
    try {
      zmq::poll(items.data(), items.size(), std::chrono::milliseconds(static_cast<long>(timeout_s * 1000)));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) return true;
      log_->Error(std::string("poll failed: ") + e.what());
      return false;
    }
    if (items.size() > 1 && (items[1].revents & ZMQ_POLLIN)) {
      signalfd_siginfo info{};
      if (::read(options_.stop_fd, &info, sizeof(info)) < 0) { /* the request stands either way */ }
      return false;
    }
    if (!(items[0].revents & ZMQ_POLLIN)) return true;
    // Everything queued, but for at most budget_s: the caller's timers run between
    // calls, and a message left queued makes the next poll return at once.
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(budget_s);
    while (std::chrono::steady_clock::now() < until) {
      StatusOr<std::optional<ReceivedMessage>> got = Internal("not received");
      try {
        got = ReceiveBounded(static_cast<void*>(socket_), limits);
      } catch (const std::bad_alloc&) {
        // ReceiveBounded keeps its own copies bounded; this is the Status or the id.
        log_->Error("out of memory while receiving a message; it was dropped");
        continue;
      }
      if (!got.ok()) {
        log_->Warn(got.status().message());
        break;
      }
      if (!*got) break;
      ReceivedMessage& r = **got;
      if (r.num_frames == 0) continue;  // a ROUTER always prefixes the routing id
      on_message(r);
    }
    return true;
  }

  uint64_t refused_handshakes() const override { return zap_ ? zap_->refused() : 0; }

 private:
  ZmqServerTransportOptions options_;
  Logger* log_;
  zmq::context_t ctx_{1};
  zmq::socket_t socket_{ctx_, zmq::socket_type::router};
  std::unique_ptr<ZapHandler> zap_;  // CURVE only; destroyed before ctx_
};

}  // namespace

std::unique_ptr<ServerTransport> NewZmqServerTransport(ZmqServerTransportOptions options, Logger* log) {
  return std::make_unique<ZmqServerTransport>(std::move(options), log);
}

}  // namespace greenfed
