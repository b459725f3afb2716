// Logger: timestamped lines for one node, written to a stream. Passed explicitly
// (no global logger) so that tests and the launcher can capture or silence it.
//
// Progress lines (one per round or epoch) go through Progress() to `progress_out`,
// diagnostics through Info/Warn/Error to `diag_out`.
// Thread safety: all methods are safe to call from several threads.
#pragma once

#include <mutex>
#include <ostream>
#include <string>
#include <string_view>

namespace greenfed {

// Text that came from a peer, made safe for one log line: control bytes and
// non-ASCII become \xNN, and it is cut at max_bytes (with "...") so that no peer
// can forge a log line or fill the disk.
std::string EscapeForLog(std::string_view text, size_t max_bytes = 200);

class Logger {
 public:
  // Streams must outlive the logger. `node` prefixes each line, e.g. "coordinator".
  Logger(std::string node, std::ostream* progress_out, std::ostream* diag_out);
  void Progress(const std::string& line);
  void Info(const std::string& line);
  void Warn(const std::string& line);
  void Error(const std::string& line);

 private:
  void Write(std::ostream* out, const char* level, const std::string& line);
  std::string node_;
  std::ostream* progress_out_;
  std::ostream* diag_out_;
  std::mutex mu_;
};

}  // namespace greenfed
