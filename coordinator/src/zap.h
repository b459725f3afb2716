// ZapHandler: the coordinator's ZeroMQ Authentication Protocol handler (RFC 27).
// It answers libzmq's authentication requests on inproc://zeromq.zap.01 of the
// server's context: a CURVE client whose public key is on the allow-list is admitted
// with User-Id = its Z85 public key; every other request is refused (400) and
// logged with a named reason and a key prefix only, at most one line per reason
// every kRefusalLogInterval seconds (the rest are counted into the next line).
//
// Why a thread of its own and not a socket polled in the server loop: the loop
// blocks for seconds in central evaluation and in run-directory writes, and a
// handshake waiting on ZAP that long would stall every joining client. The handler
// shares nothing mutable with the loop: the allow-list is fixed at start, the
// Logger is thread-safe, and the refusal counter is atomic.
// Contract: Start() binds before returning, so a CURVE socket bound afterwards never
// sees a missing handler (libzmq 4.3 admits every CURVE client when none is bound;
// the server closes its socket before the handler stops). The destructor stops and joins the thread and closes its socket,
// so the handler must be destroyed before the context.
// Thread safety: construct and destroy on one thread; refused() from any thread.
#pragma once

#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "greenfed/log.h"
#include "greenfed/status.h"

namespace greenfed {

constexpr double kRefusalLogInterval = 10.0;  // seconds between two log lines of one refusal reason

// The decision for one ZAP request, without sockets (tested on its own).
struct ZapDecision {
  bool admit = false;
  std::string reason;     // "" when admitted; else a short name: unlisted-key, not-curve, bad-request
  std::string user_id;    // the client's Z85 public key when admitted
  std::string key_prefix; // for the log: KeyPrefix of the client key, when there is one
};
// `frames`: the ZAP request as received (version, request id, domain, address,
// routing id, mechanism, credentials...).
ZapDecision DecideZap(const std::vector<std::string>& frames, const std::set<std::string>& allowed);

class ZapHandler {
 public:
  static StatusOr<std::unique_ptr<ZapHandler>> Start(zmq::context_t* ctx, const std::vector<std::string>& allowed,
                                                     Logger* log);
  ~ZapHandler();
  ZapHandler(const ZapHandler&) = delete;
  ZapHandler& operator=(const ZapHandler&) = delete;
  uint64_t refused() const { return refused_.load(); }
  uint64_t admitted() const { return admitted_.load(); }

 private:
  ZapHandler(zmq::socket_t socket, std::set<std::string> allowed, Logger* log);
  void Loop();

  zmq::socket_t socket_;
  std::set<std::string> allowed_;
  Logger* log_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> refused_{0}, admitted_{0};
  std::thread thread_;
};

}  // namespace greenfed
