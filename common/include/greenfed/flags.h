// FlagSet: declared command-line flags with defaults and help text.
//
// Contract: every flag is bound to a variable whose current value is its default;
// Parse() accepts `--name value`, `--name=value`, and for booleans `--name`,
// `--name=true|false`. Unknown flags, missing values and malformed numbers are
// InvalidArgument errors that name the flag; callers exit with code 2 on them.
// Thread safety: none needed; used once at start-up.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "greenfed/status.h"

namespace greenfed {

class FlagSet {
 public:
  FlagSet(std::string command, std::string summary);

  void AddString(const std::string& name, std::string* value, const std::string& help);
  void AddInt(const std::string& name, int64_t* value, const std::string& help);
  void AddUint(const std::string& name, uint64_t* value, const std::string& help);
  void AddDouble(const std::string& name, double* value, const std::string& help);
  void AddBool(const std::string& name, bool* value, const std::string& help);
  // Adds a check run after parsing, e.g. a range; its Status is returned by Parse.
  void AddCheck(std::function<Status()> check);

  // Parses args (without the program and subcommand names). Positional arguments go
  // to `positional` when it is non-null, else they are errors. Returns true when
  // --help was given (the caller prints Help() and exits 0).
  StatusOr<bool> Parse(const std::vector<std::string>& args, std::vector<std::string>* positional = nullptr);
  bool WasSet(const std::string& name) const;
  std::string Help() const;
  // Every flag that was set (on the command line or in --config), as "--name=value"
  // with its parsed value, except those in `exclude`: how a launcher hands its
  // effective settings to a child command.
  std::vector<std::string> SetFlagsAsArgs(const std::vector<std::string>& exclude = {}) const;
  // The config file given with --config, or "" when none.
  const std::string& config_path() const { return config_path_; }
  // Appends "(from FILE:LINE, key 'NAME')" to an error that names a flag ("--NAME")
  // whose value came from the config file; other statuses pass unchanged.
  Status Annotate(const Status& status) const;

 private:
  enum class Kind { kString, kInt, kUint, kDouble, kBool };
  struct Flag {
    std::string name;
    Kind kind;
    void* value;
    std::string help;
    std::string default_text;
    bool set = false;
    std::string origin;  // "FILE:LINE" when the value came from --config
  };
  Status LoadConfig(const std::string& path);
  Status Assign(Flag* flag, const std::string& text);
  Flag* Find(const std::string& name);
  void Add(const std::string& name, Kind kind, void* value, const std::string& help, std::string default_text);

  std::string command_;
  std::string summary_;
  std::vector<Flag> flags_;
  std::vector<std::function<Status()>> checks_;
  std::string config_path_;
};

// Splits "a,b,c" into parts, trimming spaces and dropping empty parts.
std::vector<std::string> SplitList(const std::string& text);

}  // namespace greenfed
