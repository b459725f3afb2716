#include "zap.h"

#include <zmq_addon.hpp>

#include <chrono>
#include <map>

#include "greenfed/keys.h"

namespace greenfed {

namespace {

// An address for a log line: IP characters only, bounded.
std::string CleanAddress(const std::string& a) {
  std::string out;
  for (char c : a.substr(0, 45)) {
    const bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == '.' || c == ':';
    out += ok ? c : '?';
  }
  return out.empty() ? "an unknown address" : out;
}

}  // namespace

ZapDecision DecideZap(const std::vector<std::string>& f, const std::set<std::string>& allowed) {
  ZapDecision d;
  // version, request id, domain, address, routing id, mechanism, credentials...
  if (f.size() < 6 || f[0] != "1.0") {
    d.reason = "bad-request";
    return d;
  }
  if (f[5] != "CURVE") {
    d.reason = "not-curve";
    return d;
  }
  if (f.size() != 7 || f[6].size() != 32) {
    d.reason = "bad-request";
    return d;
  }
  char z85[kZ85KeyChars + 1] = {0};
  if (zmq_z85_encode(z85, reinterpret_cast<const uint8_t*>(f[6].data()), 32) == nullptr) {
    d.reason = "bad-request";
    return d;
  }
  const std::string key(z85);
  d.key_prefix = KeyPrefix(key);
  if (!allowed.count(key)) {
    d.reason = "unlisted-key";
    return d;
  }
  d.admit = true;
  d.user_id = key;
  return d;
}

StatusOr<std::unique_ptr<ZapHandler>> ZapHandler::Start(zmq::context_t* ctx, const std::vector<std::string>& allowed,
                                                        Logger* log) {
  if (allowed.empty()) return InvalidArgument("the allow-list is empty: nobody could join");
  try {
    zmq::socket_t s(*ctx, zmq::socket_type::rep);
    s.set(zmq::sockopt::linger, 0);
    s.bind("inproc://zeromq.zap.01");
    return std::unique_ptr<ZapHandler>(
        new ZapHandler(std::move(s), std::set<std::string>(allowed.begin(), allowed.end()), log));
  } catch (const zmq::error_t& e) {
    return Unavailable(std::string("cannot start the ZAP handler on inproc://zeromq.zap.01: ") + e.what());
  }
}

ZapHandler::ZapHandler(zmq::socket_t socket, std::set<std::string> allowed, Logger* log)
    : socket_(std::move(socket)), allowed_(std::move(allowed)), log_(log) {
  thread_ = std::thread([this] { Loop(); });
}

ZapHandler::~ZapHandler() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  socket_.close();
}

void ZapHandler::Loop() {
  struct Suppressed {
    double last_log_s = -1e18;
    uint64_t count = 0;  // refusals not yet logged
  };
  std::map<std::string, Suppressed> by_reason;  // keys: the fixed reason names
  auto now_s = [] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  };
  while (!stop_) {
    try {
      zmq::pollitem_t item{static_cast<void*>(socket_), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(100));
      if (!(item.revents & ZMQ_POLLIN)) continue;
      std::vector<zmq::message_t> parts;
      if (!zmq::recv_multipart(socket_, std::back_inserter(parts), zmq::recv_flags::dontwait)) continue;
      std::vector<std::string> frames;
      for (size_t i = 0; i < parts.size() && i < 16; ++i) frames.push_back(parts[i].to_string().substr(0, 256));
      const ZapDecision d = DecideZap(frames, allowed_);
      const std::string request_id = frames.size() > 1 ? frames[1] : std::string();
      std::vector<zmq::const_buffer> reply = {zmq::str_buffer("1.0"), zmq::buffer(request_id),
                                              d.admit ? zmq::str_buffer("200") : zmq::str_buffer("400"),
                                              d.admit ? zmq::str_buffer("OK") : zmq::buffer(d.reason),
                                              zmq::buffer(d.user_id), zmq::str_buffer("")};
      if (!zmq::send_multipart(socket_, reply)) continue;
      if (d.admit) {
        admitted_ += 1;
        continue;
      }
      refused_ += 1;
      Suppressed& s = by_reason[d.reason];
      const double t = now_s();
      if (t - s.last_log_s >= kRefusalLogInterval) {
        std::string line = "refused a CURVE handshake from " + CleanAddress(frames.size() > 3 ? frames[3] : "") +
                           ": " + d.reason;
        if (!d.key_prefix.empty()) line += " (client key " + d.key_prefix + ")";
        if (s.count) line += "; " + std::to_string(s.count) + " more refusal(s) of this kind since the last report";
        log_->Warn(line);
        s.last_log_s = t;
        s.count = 0;
      } else {
        s.count += 1;
      }
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) break;
      log_->Warn(std::string("ZAP handler: ") + e.what());
    }
  }
  for (const auto& [reason, s] : by_reason) {
    if (s.count) log_->Warn(std::to_string(s.count) + " more CURVE handshake refusal(s): " + reason);
  }
}

}  // namespace greenfed
