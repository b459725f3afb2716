#include "greenfed/keys.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <set>
#include <sstream>

namespace greenfed {

namespace {

constexpr std::string_view kZ85Alphabet =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

std::string Errno() { return std::strerror(errno); }

std::string Trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\r')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r')) --e;
  return std::string(s.substr(b, e - b));
}

// Closes an fd on scope exit.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

struct FileText {
  std::string text;
  mode_t mode = 0;
};

// Reads a regular file of at most kMaxKeyFileBytes.
StatusOr<FileText> ReadBounded(const std::string& path) {
  Fd f(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (f.fd < 0) {
    if (errno == ENOENT) return NotFound(path + ": no such file");
    if (errno == EACCES) return PermissionDenied(path + ": cannot read: " + Errno());
    return Unavailable(path + ": cannot open: " + Errno());
  }
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) return Unavailable(path + ": cannot stat: " + Errno());
  if (!S_ISREG(st.st_mode)) return InvalidArgument(path + ": not a regular file");
  if (static_cast<uint64_t>(st.st_size) > kMaxKeyFileBytes) {
    return OutOfRange(path + ": " + std::to_string(st.st_size) + " bytes, more than a key file's limit of " +
                      std::to_string(kMaxKeyFileBytes));
  }
  FileText out;
  out.mode = st.st_mode;
  out.text.resize(static_cast<size_t>(st.st_size));
  size_t got = 0;
  while (got < out.text.size()) {
    const ssize_t n = ::read(f.fd, out.text.data() + got, out.text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Unavailable(path + ": read failed: " + Errno());
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  out.text.resize(got);
  if (out.text.find('\0') != std::string::npos) return InvalidArgument(path + ": binary data, not a key file");
  return out;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::stringstream ss(text);
  std::string line;
  while (std::getline(ss, line)) lines.push_back(line);
  return lines;
}

std::string At(const std::string& path, size_t line_index) { return path + ":" + std::to_string(line_index + 1); }

// A line that is a Z85 key, with an optional trailing "# comment". Returns "" for a
// blank or comment line.
StatusOr<std::string> KeyOnLine(const std::string& path, size_t i, const std::string& raw) {
  std::string line = raw;
  // '#' is also a Z85 character: only a '#' at the start of the line or after
  // whitespace starts a comment.
  for (size_t hash = line.find('#'); hash != std::string::npos; hash = line.find('#', hash + 1)) {
    if (hash == 0 || line[hash - 1] == ' ' || line[hash - 1] == '\t') {
      line.resize(hash);
      break;
    }
  }
  line = Trim(line);
  if (line.empty()) return std::string();
  Status s = ValidateZ85Key(line);
  if (!s.ok()) return InvalidArgument(At(path, i) + ": " + s.message());
  return line;
}

Status WriteNew(const std::string& path, const std::string& text, mode_t mode) {
  Fd f(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode));
  if (f.fd < 0) {
    if (errno == EEXIST) return FailedPrecondition(path + " already exists; refusing to overwrite a key");
    return Unavailable("cannot create " + path + ": " + Errno());
  }
  // The umask may have removed bits; set exactly what was asked.
  if (::fchmod(f.fd, mode) != 0) return Unavailable("cannot chmod " + path + ": " + Errno());
  size_t put = 0;
  while (put < text.size()) {
    const ssize_t n = ::write(f.fd, text.data() + put, text.size() - put);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Unavailable("cannot write " + path + ": " + Errno());
    put += static_cast<size_t>(n);
  }
  if (::fsync(f.fd) != 0) return Unavailable("cannot sync " + path + ": " + Errno());
  return Status::Ok();
}

}  // namespace

bool CurveAvailable() { return zmq_has("curve") != 0; }

Status ValidateZ85Key(std::string_view key) {
  if (key.size() != kZ85KeyChars) {
    return InvalidArgument("a CURVE key is " + std::to_string(kZ85KeyChars) + " Z85 characters, got " +
                           std::to_string(key.size()));
  }
  for (size_t i = 0; i < key.size(); ++i) {
    if (kZ85Alphabet.find(key[i]) == std::string_view::npos) {
      return InvalidArgument("character " + std::to_string(i + 1) + " of the key is not in the Z85 alphabet");
    }
  }
  uint8_t bytes[32];
  const std::string z(key);
  if (zmq_z85_decode(bytes, z.c_str()) == nullptr) return InvalidArgument("the key is not valid Z85");
  return Status::Ok();
}

std::string KeyPrefix(std::string_view key) {
  std::string out;
  for (char c : key.substr(0, 8)) out += (c >= 0x21 && c < 0x7f) ? c : '?';
  return out + "...";
}

StatusOr<CurveKeyPair> GenerateCurveKeyPair() {
  if (!CurveAvailable()) return Unavailable("this libzmq has no CURVE support (built without libsodium)");
  char pub[kZ85KeyChars + 1] = {0}, sec[kZ85KeyChars + 1] = {0};
  if (zmq_curve_keypair(pub, sec) != 0) return Internal(std::string("zmq_curve_keypair failed: ") + zmq_strerror(errno));
  return CurveKeyPair{pub, sec};
}

StatusOr<std::string> PublicKeyOf(std::string_view secret_key) {
  GREENFED_RETURN_IF_ERROR(ValidateZ85Key(secret_key));
  if (!CurveAvailable()) return Unavailable("this libzmq has no CURVE support (built without libsodium)");
  const std::string sec(secret_key);
  char pub[kZ85KeyChars + 1] = {0};
  if (zmq_curve_public(pub, sec.c_str()) != 0) {
    return Internal(std::string("zmq_curve_public failed: ") + zmq_strerror(errno));
  }
  return std::string(pub);
}

Status ValidateKeyName(std::string_view name) {
  if (name.empty() || name.size() > 64) return InvalidArgument("a key name is 1-64 characters");
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '-' || c == '.';
    if (!ok) return InvalidArgument("key name '" + std::string(name) + "' may only hold [A-Za-z0-9_.-]");
  }
  if (name[0] == '.') return InvalidArgument("a key name must not start with '.'");
  return Status::Ok();
}

StatusOr<std::string> WriteKeyPair(const std::string& dir, const std::string& name, const CurveKeyPair& keys) {
  GREENFED_RETURN_IF_ERROR(ValidateKeyName(name));
  GREENFED_RETURN_IF_ERROR(ValidateZ85Key(keys.public_key).WithContext("public key"));
  GREENFED_RETURN_IF_ERROR(ValidateZ85Key(keys.secret_key).WithContext("secret key"));
  if (dir.empty()) return InvalidArgument("no output directory");
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return Unavailable("cannot create " + dir + ": " + Errno());
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return InvalidArgument(dir + " is not a directory");
  const std::string stem = dir + "/" + name;
  const std::string key_path = stem + ".key", pub_path = stem + ".pub";
  if (::access(key_path.c_str(), F_OK) == 0) return FailedPrecondition(key_path + " already exists; refusing to overwrite a key");
  if (::access(pub_path.c_str(), F_OK) == 0) return FailedPrecondition(pub_path + " already exists; refusing to overwrite a key");
  const std::string secret_text =
      "# greenfed CURVE key pair '" + name + "' (ZeroMQ CurveZMQ, Z85 text).\n"
      "# SECRET: keep this file on this node only, mode 0600. Hand out " + name + ".pub instead.\n"
      "public-key = " + keys.public_key + "\n"
      "secret-key = " + keys.secret_key + "\n";
  GREENFED_RETURN_IF_ERROR(WriteNew(key_path, secret_text, 0600));
  GREENFED_RETURN_IF_ERROR(WriteNew(pub_path, keys.public_key + "\n", 0644));
  return stem;
}

StatusOr<CurveKeyPair> LoadSecretKeyFile(const std::string& path) {
  GREENFED_ASSIGN_OR_RETURN(FileText f, ReadBounded(path));
  if (f.mode & (S_IRWXG | S_IRWXO)) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(f.mode & 07777));
    return PermissionDenied(path + ": secret key file has mode " + mode +
                            ", so the group or others may read it; run 'chmod 600 " + path + "'");
  }
  CurveKeyPair keys;
  const auto lines = Lines(f.text);
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string line = Trim(lines[i]);
    if (line.empty() || line[0] == '#') continue;
    const auto eq = line.find('=');
    if (eq == std::string::npos) {
      return InvalidArgument(At(path, i) + ": expected 'public-key = KEY' or 'secret-key = KEY'");
    }
    const std::string field = Trim(line.substr(0, eq)), value = Trim(line.substr(eq + 1));
    std::string* slot = field == "public-key" ? &keys.public_key : field == "secret-key" ? &keys.secret_key : nullptr;
    if (!slot) return InvalidArgument(At(path, i) + ": unknown field '" + field.substr(0, 32) + "'");
    if (!slot->empty()) return InvalidArgument(At(path, i) + ": " + field + " given twice");
    if (Status s = ValidateZ85Key(value); !s.ok()) return InvalidArgument(At(path, i) + ": " + field + ": " + s.message());
    *slot = value;
  }
  if (keys.secret_key.empty()) {
    return InvalidArgument(path + ": no 'secret-key = ...' line (is this a .pub file? give the .key file)");
  }
  GREENFED_ASSIGN_OR_RETURN(std::string derived, PublicKeyOf(keys.secret_key));
  if (keys.public_key.empty()) {
    keys.public_key = derived;
  } else if (keys.public_key != derived) {
    return InvalidArgument(path + ": public-key does not belong to secret-key");
  }
  return keys;
}

StatusOr<std::string> LoadPublicKeyFile(const std::string& path) {
  GREENFED_ASSIGN_OR_RETURN(FileText f, ReadBounded(path));
  if (f.text.find("secret-key") != std::string::npos) {
    return InvalidArgument(path + ": holds a secret key; give the .pub file, and keep the .key file private");
  }
  std::string key;
  const auto lines = Lines(f.text);
  for (size_t i = 0; i < lines.size(); ++i) {
    GREENFED_ASSIGN_OR_RETURN(std::string k, KeyOnLine(path, i, lines[i]));
    if (k.empty()) continue;
    if (!key.empty()) return InvalidArgument(At(path, i) + ": a .pub file holds one key, found a second");
    key = k;
  }
  if (key.empty()) return InvalidArgument(path + ": no public key in the file");
  return key;
}

StatusOr<std::vector<std::string>> LoadAllowList(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return NotFound(path + ": no such file or directory");
    return Unavailable(path + ": cannot stat: " + Errno());
  }
  std::vector<std::string> keys;
  std::set<std::string> seen;
  auto add = [&](const std::string& k, const std::string& where) -> Status {
    if (!seen.insert(k).second) return Status::Ok();
    if (keys.size() >= kMaxAllowedKeys) {
      return OutOfRange(where + ": more than " + std::to_string(kMaxAllowedKeys) + " allowed keys");
    }
    keys.push_back(k);
    return Status::Ok();
  };
  if (S_ISDIR(st.st_mode)) {
    std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(path.c_str()), &::closedir);
    if (!dir) return Unavailable(path + ": cannot list: " + Errno());
    std::vector<std::string> names;
    while (dirent* e = ::readdir(dir.get())) {
      const std::string n = e->d_name;
      if (n.size() > 4 && n[0] != '.' && n.compare(n.size() - 4, 4, ".pub") == 0) names.push_back(n);
      if (names.size() > kMaxAllowedKeys) return OutOfRange(path + ": more than " + std::to_string(kMaxAllowedKeys) + " .pub files");
    }
    std::sort(names.begin(), names.end());
    for (const auto& n : names) {
      GREENFED_ASSIGN_OR_RETURN(std::string k, LoadPublicKeyFile(path + "/" + n));
      GREENFED_RETURN_IF_ERROR(add(k, path + "/" + n));
    }
    if (keys.empty()) return InvalidArgument(path + ": directory holds no *.pub file; nobody could join");
    return keys;
  }
  GREENFED_ASSIGN_OR_RETURN(FileText f, ReadBounded(path));
  if (f.text.find("secret-key") != std::string::npos) {
    return InvalidArgument(path + ": holds a secret key; an allow-list holds public keys only");
  }
  const auto lines = Lines(f.text);
  for (size_t i = 0; i < lines.size(); ++i) {
    GREENFED_ASSIGN_OR_RETURN(std::string k, KeyOnLine(path, i, lines[i]));
    if (!k.empty()) GREENFED_RETURN_IF_ERROR(add(k, At(path, i)));
  }
  if (keys.empty()) return InvalidArgument(path + ": allow-list holds no public key; nobody could join");
  return keys;
}

}  // namespace greenfed
