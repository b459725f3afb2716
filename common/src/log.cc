#include "greenfed/log.h"

#include <algorithm>
#include <chrono>
#include <ctime>

namespace greenfed {

std::string EscapeForLog(std::string_view text, size_t max_bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(std::min(text.size(), max_bytes) + 8);
  for (size_t i = 0; i < text.size(); ++i) {
    if (out.size() >= max_bytes) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}


Logger::Logger(std::string node, std::ostream* progress_out, std::ostream* diag_out)
    : node_(std::move(node)), progress_out_(progress_out), diag_out_(diag_out) {}

void Logger::Write(std::ostream* out, const char* level, const std::string& line) {
  if (out == nullptr) return;
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
  std::lock_guard<std::mutex> lock(mu_);
  *out << stamp << " " << node_ << " " << level << " " << line << "\n";
  out->flush();
}

void Logger::Progress(const std::string& line) { Write(progress_out_, "|", line); }
void Logger::Info(const std::string& line) { Write(diag_out_, "I", line); }
void Logger::Warn(const std::string& line) { Write(diag_out_, "W", line); }
void Logger::Error(const std::string& line) { Write(diag_out_, "E", line); }

}  // namespace greenfed
