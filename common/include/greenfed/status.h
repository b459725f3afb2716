// Status and StatusOr<T>: how every fallible greenfed call reports failure.
//
// Contract: a Status is either OK or carries a Code and a human-readable message
// that names the problem (the file, the field, the flag). Exceptions thrown by
// libtorch, cppzmq or msgpack are caught at the boundary that calls them and turned
// into a Status; they never cross a greenfed API.
// Thread safety: values; safe to copy between threads, no shared state.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>

namespace greenfed {

enum class Code {
  kOk = 0,
  kInvalidArgument,   // bad flag, bad field, bad shape
  kNotFound,          // missing file, unknown name
  kDataLoss,          // corrupt or truncated input
  kOutOfRange,        // value outside its allowed range, oversized message
  kFailedPrecondition,// call made in the wrong state
  kUnavailable,       // peer or device not reachable, no counter on this machine
  kPermissionDenied,  // e.g. RAPL files that only root may read
  kDeadlineExceeded,
  kInternal,
};

const char* CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "INVALID_ARGUMENT: message", or "OK".
  std::string ToString() const;
  // Returns a copy with "context: " prefixed to the message; OK stays OK.
  Status WithContext(const std::string& context) const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) { return Status(Code::kInvalidArgument, std::move(m)); }
inline Status NotFound(std::string m) { return Status(Code::kNotFound, std::move(m)); }
inline Status DataLoss(std::string m) { return Status(Code::kDataLoss, std::move(m)); }
inline Status OutOfRange(std::string m) { return Status(Code::kOutOfRange, std::move(m)); }
inline Status FailedPrecondition(std::string m) { return Status(Code::kFailedPrecondition, std::move(m)); }
inline Status Unavailable(std::string m) { return Status(Code::kUnavailable, std::move(m)); }
inline Status PermissionDenied(std::string m) { return Status(Code::kPermissionDenied, std::move(m)); }
inline Status DeadlineExceeded(std::string m) { return Status(Code::kDeadlineExceeded, std::move(m)); }
inline Status Internal(std::string m) { return Status(Code::kInternal, std::move(m)); }

// Holds either a T or a non-OK Status. Accessing value() of an error is a bug
// (asserts in debug builds).
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design
    assert(!status_.ok() && "StatusOr constructed from an OK Status without a value");
    if (status_.ok()) status_ = Internal("StatusOr built from OK status without a value");
  }
  StatusOr(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & { assert(ok()); return *value_; }
  const T& value() const& { assert(ok()); return *value_; }
  T&& value() && { assert(ok()); return std::move(*value_); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace greenfed

// Early return on error; keeps call sites short without exceptions.
#define GREENFED_RETURN_IF_ERROR(expr)                 \
  do {                                                 \
    ::greenfed::Status greenfed_status_ = (expr);      \
    if (!greenfed_status_.ok()) return greenfed_status_; \
  } while (0)

#define GREENFED_CONCAT_INNER(a, b) a##b
#define GREENFED_CONCAT(a, b) GREENFED_CONCAT_INNER(a, b)
#define GREENFED_ASSIGN_OR_RETURN(lhs, expr) \
  GREENFED_ASSIGN_OR_RETURN_IMPL(GREENFED_CONCAT(greenfed_statusor_, __LINE__), lhs, expr)
#define GREENFED_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return tmp.status();                  \
  lhs = std::move(tmp).value()
