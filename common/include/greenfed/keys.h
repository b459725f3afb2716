// CURVE keys (ZeroMQ's CurveZMQ, Curve25519) as files: generation, loading and the
// coordinator's allow-list of client public keys. Every key is 40 characters of Z85
// (ZeroMQ's printable encoding of 32 bytes).
//
// Files:
//   NAME.key  the key pair; mode 0600. Comment lines start with '#'; the two keys are
//             `public-key = <Z85>` and `secret-key = <Z85>`. A secret key file that
//             the group or others may read is refused (the fix is `chmod 600 FILE`).
//   NAME.pub  the public key: one line of Z85 ('#' comment lines allowed).
//   allow-list  a file with one Z85 public key per line ('#' comments, blank lines,
//             and a trailing `# comment` after a key allowed), or a directory whose
//             *.pub files are read (other files are ignored).
// Contract: every rejection is a Status naming the file and, where one applies, the
// line; nothing here logs or exits. Reads are bounded (kMaxKeyFileBytes), so a
// wrong path such as /dev/zero fails cleanly.
// Thread safety: free functions without shared state.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "greenfed/status.h"

namespace greenfed {

constexpr size_t kZ85KeyChars = 40;           // Z85 text of a 32-byte Curve25519 key
constexpr size_t kMaxKeyFileBytes = 1 << 20;  // larger key or allow-list files are refused
constexpr size_t kMaxAllowedKeys = 100000;    // an allow-list holds at most this many keys

struct CurveKeyPair {
  std::string public_key;  // Z85, 40 characters
  std::string secret_key;  // Z85, 40 characters
};

// True when libzmq was built with CURVE (Debian's is, through libsodium).
bool CurveAvailable();

// OK when `key` is 40 characters of the Z85 alphabet that decode to 32 bytes.
Status ValidateZ85Key(std::string_view key);

// First 8 characters and an ellipsis: enough to tell keys apart in a log line,
// never the whole key.
std::string KeyPrefix(std::string_view key);

// A fresh key pair from libzmq (zmq_curve_keypair).
StatusOr<CurveKeyPair> GenerateCurveKeyPair();

// The public key that belongs to a Z85 secret key (zmq_curve_public).
StatusOr<std::string> PublicKeyOf(std::string_view secret_key);

// NAME must be 1-64 characters of [A-Za-z0-9_.-] and not start with '.'.
Status ValidateKeyName(std::string_view name);

// Writes DIR/NAME.key (0600) and DIR/NAME.pub (0644). Refuses to overwrite either
// file; creates DIR (0700) when missing. Returns the two paths' common stem DIR/NAME.
StatusOr<std::string> WriteKeyPair(const std::string& dir, const std::string& name, const CurveKeyPair& keys);

// Reads a NAME.key file: checks its permissions, both keys, and that the public key
// belongs to the secret key.
StatusOr<CurveKeyPair> LoadSecretKeyFile(const std::string& path);

// Reads a NAME.pub file (exactly one key).
StatusOr<std::string> LoadPublicKeyFile(const std::string& path);

// Reads an allow-list file or directory: the keys, deduplicated, in file order.
// An empty allow-list is an error (nobody could join).
StatusOr<std::vector<std::string>> LoadAllowList(const std::string& path);

}  // namespace greenfed
