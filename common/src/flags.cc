#include "greenfed/flags.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>

namespace greenfed {

FlagSet::FlagSet(std::string command, std::string summary)
    : command_(std::move(command)), summary_(std::move(summary)) {}

void FlagSet::Add(const std::string& name, Kind kind, void* value, const std::string& help, std::string default_text) {
  flags_.push_back(Flag{name, kind, value, help, std::move(default_text), false});
}

namespace {
std::string FormatDouble(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}
}  // namespace

void FlagSet::AddString(const std::string& name, std::string* value, const std::string& help) {
  Add(name, Kind::kString, value, help, value->empty() ? "\"\"" : *value);
}
void FlagSet::AddInt(const std::string& name, int64_t* value, const std::string& help) {
  Add(name, Kind::kInt, value, help, std::to_string(*value));
}
void FlagSet::AddUint(const std::string& name, uint64_t* value, const std::string& help) {
  Add(name, Kind::kUint, value, help, std::to_string(*value));
}
void FlagSet::AddDouble(const std::string& name, double* value, const std::string& help) {
  Add(name, Kind::kDouble, value, help, FormatDouble(*value));
}
void FlagSet::AddBool(const std::string& name, bool* value, const std::string& help) {
  Add(name, Kind::kBool, value, help, *value ? "true" : "false");
}
void FlagSet::AddCheck(std::function<Status()> check) { checks_.push_back(std::move(check)); }

FlagSet::Flag* FlagSet::Find(const std::string& name) {
  for (auto& f : flags_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

bool FlagSet::WasSet(const std::string& name) const {
  for (const auto& f : flags_) {
    if (f.name == name) return f.set;
  }
  return false;
}

Status FlagSet::Assign(Flag* flag, const std::string& text) {
  const std::string where = "--" + flag->name + "=" + text;
  switch (flag->kind) {
    case Kind::kString:
      *static_cast<std::string*>(flag->value) = text;
      return Status::Ok();
    case Kind::kInt:
    case Kind::kUint: {
      if (text.empty()) return InvalidArgument(where + ": expected an integer");
      errno = 0;
      char* end = nullptr;
      if (flag->kind == Kind::kUint) {
        if (text[0] == '-') return InvalidArgument(where + ": expected a non-negative integer");
        unsigned long long v = std::strtoull(text.c_str(), &end, 10);
        if (errno != 0 || *end != '\0') return InvalidArgument(where + ": expected a non-negative integer");
        *static_cast<uint64_t*>(flag->value) = v;
      } else {
        long long v = std::strtoll(text.c_str(), &end, 10);
        if (errno != 0 || *end != '\0') return InvalidArgument(where + ": expected an integer");
        *static_cast<int64_t*>(flag->value) = v;
      }
      return Status::Ok();
    }
    case Kind::kDouble: {
      errno = 0;
      char* end = nullptr;
      double v = std::strtod(text.c_str(), &end);
      if (text.empty() || errno != 0 || *end != '\0' || !std::isfinite(v)) {
        return InvalidArgument(where + ": expected a finite number");
      }
      *static_cast<double*>(flag->value) = v;
      return Status::Ok();
    }
    case Kind::kBool:
      if (text == "true" || text == "1" || text == "yes") {
        *static_cast<bool*>(flag->value) = true;
      } else if (text == "false" || text == "0" || text == "no") {
        *static_cast<bool*>(flag->value) = false;
      } else {
        return InvalidArgument(where + ": expected true or false");
      }
      return Status::Ok();
  }
  return Internal("unreachable flag kind");
}

StatusOr<bool> FlagSet::Parse(const std::vector<std::string>& args, std::vector<std::string>* positional) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--help" || arg == "-h") return true;
    if (arg.rfind("--", 0) != 0 || arg.size() == 2) {
      if (positional != nullptr) {
        positional->push_back(arg);
        continue;
      }
      return InvalidArgument("unexpected argument '" + arg + "' (see " + command_ + " --help)");
    }
    std::string name = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    Flag* flag = Find(name);
    if (flag == nullptr) return InvalidArgument("unknown flag --" + name + " (see " + command_ + " --help)");
    if (!has_value) {
      if (flag->kind == Kind::kBool) {
        value = "true";
      } else {
        if (i + 1 >= args.size()) return InvalidArgument("flag --" + name + " needs a value");
        value = args[++i];
      }
    }
    GREENFED_RETURN_IF_ERROR(Assign(flag, value));
    flag->set = true;
  }
  for (const auto& check : checks_) GREENFED_RETURN_IF_ERROR(check());
  return false;
}

std::string FlagSet::Help() const {
  std::ostringstream os;
  os << "usage: " << command_ << " [flags]\n" << summary_ << "\n\nflags:\n";
  for (const auto& f : flags_) {
    os << "  --" << f.name;
    if (f.kind != Kind::kBool) os << " VALUE";
    os << "\n      " << f.help << " (default: " << f.default_text << ")\n";
  }
  return os.str();
}

std::vector<std::string> SplitList(const std::string& text) {
  std::vector<std::string> parts;
  std::string cur;
  auto flush = [&] {
    size_t b = cur.find_first_not_of(" \t");
    size_t e = cur.find_last_not_of(" \t");
    if (b != std::string::npos) parts.push_back(cur.substr(b, e - b + 1));
    cur.clear();
  };
  for (char c : text) {
    if (c == ',') {
      flush();
    } else {
      cur += c;
    }
  }
  flush();
  return parts;
}

}  // namespace greenfed
