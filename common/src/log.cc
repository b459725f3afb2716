#include "greenfed/log.h"

#include <chrono>
#include <ctime>

namespace greenfed {

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
