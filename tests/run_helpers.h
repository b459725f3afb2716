// Helpers the tests share: temporary directories, whole-file reads and writes, and
// (integration tests only) running the greenfed binary as a real process.
//
// Contract: every helper REQUIREs its own success (doctest), so a failure stops the
// test case that called it with the reason. The file helpers are defined here, inline,
// for any test target; the process helpers are defined in run_helpers.cc, which only
// greenfed_integration_tests compiles (it needs GREENFED_BINARY, the path of the
// greenfed binary under test).
// Thread-safety: none needed; test cases call them from the test thread.
#pragma once

#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/types.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

namespace greenfed::testing {

// A fresh directory /tmp/<prefix>-XXXXXX, kept after the test (integration tests leave
// their run directories for a look after a failure).
inline std::string MakeTempDir(const std::string& prefix) {
  std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
  REQUIRE(mkdtemp(tmpl.data()) != nullptr);
  return tmpl;
}

// A fresh directory $TMPDIR/<prefix>XXXXXX, removed with its contents at scope exit.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "greenfed-test-") {
    std::string tmpl = (std::filesystem::temp_directory_path() / (prefix + "XXXXXX")).string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string File(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The whole file as bytes; empty when it cannot be read (callers check the contents).
inline std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Writes `text` to `path` (truncating); REQUIREs that the file opened and took it all.
inline void WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  REQUIRE(out.good());
}

// ---- Processes (run_helpers.cc; greenfed_integration_tests only) ----

// Starts `greenfed args...` with stdout and stderr to `log` (truncated).
pid_t SpawnGreenfed(const std::vector<std::string>& args, const std::string& log);
// Waits for `pid` to exit: its exit code, 128 + the signal that ended it, or -1 after
// `timeout_s` (the process is then SIGKILLed and reaped).
int WaitExit(pid_t pid, int timeout_s = 240);
// SpawnGreenfed, then WaitExit.
int RunGreenfed(const std::vector<std::string>& args, const std::string& log, int timeout_s = 240);

}  // namespace greenfed::testing
