#include "greenfed/flags.h"

#include <toml++/toml.h>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <sstream>

namespace greenfed {

FlagSet::FlagSet(std::string command, std::string summary)
    : command_(std::move(command)), summary_(std::move(summary)) {}

void FlagSet::Add(const std::string& name, Kind kind, void* value, const std::string& help, std::string default_text) {
  flags_.push_back(Flag{name, kind, value, help, std::move(default_text), false, ""});
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

namespace {

const char* TomlTypeName(toml::node_type t) {
  switch (t) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    default: return "a date or time";
  }
}

std::string Where(const std::string& path, const toml::source_region& r) {
  return path + ":" + std::to_string(r.begin.line);
}

}  // namespace

Status FlagSet::LoadConfig(const std::string& path) {
  toml::table root;
  if (std::FILE* probe = std::fopen(path.c_str(), "r")) {
    std::fclose(probe);
  } else {
    return InvalidArgument("cannot read config file " + path + ": " + std::strerror(errno));
  }
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    return InvalidArgument(path + ":" + std::to_string(b.line) + ":" + std::to_string(b.column) +
                           ": not valid TOML: " + std::string(e.description()));
  } catch (const std::exception& e) {
    return InvalidArgument("cannot read config file " + path + ": " + e.what());
  }
  const std::string table_name = command_.substr(command_.find_last_of(' ') + 1);
  auto apply = [&](const toml::table& table, const std::string& prefix) -> Status {
    for (auto&& [key, node] : table) {
      std::string name(key.str());
      const std::string shown = prefix + name;
      for (char& c : name) {
        if (c == '_') c = '-';
      }
      if (prefix.empty() && node.is_table()) {
        if (name == table_name) continue;  // applied after the top level
        static const char* kCommands[] = {"run", "coordinator", "client", "centralized", "compare", "report",
                                          "countries", "keygen", "simulate"};
        bool other_command = false;
        for (const char* c : kCommands) other_command |= name == c;
        if (other_command) continue;
      }
      const std::string where = Where(path, key.source());
      Flag* flag = name == "config" ? nullptr : Find(name);
      if (flag == nullptr) {
        return InvalidArgument(where + ": unknown key '" + shown + "' for " + command_ + " (see " + command_ +
                               " --help)");
      }
      std::string text;
      bool ok = false;
      switch (flag->kind) {
        case Kind::kString:
          if (auto v = node.value<std::string>(); v && node.is_string()) text = *v, ok = true;
          break;
        case Kind::kInt:
        case Kind::kUint:
          if (auto v = node.value<int64_t>(); v && node.is_integer()) text = std::to_string(*v), ok = true;
          break;
        case Kind::kDouble:
          if (node.is_floating_point() || node.is_integer()) {
            std::ostringstream os;
            os.precision(17);
            os << *node.value<double>();
            text = os.str();
            ok = true;
          }
          break;
        case Kind::kBool:
          if (auto v = node.value<bool>(); v && node.is_boolean()) text = *v ? "true" : "false", ok = true;
          break;
      }
      if (!ok) {
        static const char* kWant[] = {"a string", "an integer", "a non-negative integer", "a number", "a boolean"};
        return InvalidArgument(where + ": key '" + shown + "' must be " + kWant[static_cast<int>(flag->kind)] +
                               ", got " + TomlTypeName(node.type()));
      }
      Status assigned = Assign(flag, text);
      if (!assigned.ok()) return InvalidArgument(where + ": key '" + shown + "': " + assigned.message());
      flag->set = true;
      flag->origin = where;
    }
    return Status::Ok();
  };
  GREENFED_RETURN_IF_ERROR(apply(root, ""));
  if (const toml::table* own = root[table_name].as_table()) GREENFED_RETURN_IF_ERROR(apply(*own, table_name + "."));
  return Status::Ok();
}

std::vector<std::string> FlagSet::SetFlagsAsArgs(const std::vector<std::string>& exclude) const {
  std::vector<std::string> out;
  for (const auto& f : flags_) {
    if (!f.set) continue;
    bool skip = false;
    for (const auto& e : exclude) skip |= e == f.name;
    if (skip) continue;
    std::string value;
    switch (f.kind) {
      case Kind::kString: value = *static_cast<const std::string*>(f.value); break;
      case Kind::kInt: value = std::to_string(*static_cast<const int64_t*>(f.value)); break;
      case Kind::kUint: value = std::to_string(*static_cast<const uint64_t*>(f.value)); break;
      case Kind::kDouble: {
        std::ostringstream os;
        os.precision(17);
        os << *static_cast<const double*>(f.value);
        value = os.str();
        break;
      }
      case Kind::kBool: value = *static_cast<const bool*>(f.value) ? "true" : "false"; break;
    }
    out.push_back("--" + f.name + "=" + value);
  }
  return out;
}

Status FlagSet::Annotate(const Status& status) const {
  if (status.ok()) return status;
  for (const auto& f : flags_) {
    if (f.origin.empty()) continue;
    const std::string needle = "--" + f.name;
    for (size_t at = status.message().find(needle); at != std::string::npos;
         at = status.message().find(needle, at + 1)) {
      const size_t end = at + needle.size();
      const char next = end < status.message().size() ? status.message()[end] : ' ';
      if (std::isalnum(static_cast<unsigned char>(next)) || next == '-') continue;
      return Status(status.code(), status.message() + " (from " + f.origin + ", key '" + f.name + "')");
    }
  }
  return status;
}

StatusOr<bool> FlagSet::Parse(const std::vector<std::string>& args, std::vector<std::string>* positional) {
  // The config file first, so that the command line overrides it.
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--help" || args[i] == "-h") return true;
    if (args[i] == "--config") {
      if (i + 1 >= args.size()) return InvalidArgument("flag --config needs a value");
      config_path_ = args[i + 1];
    } else if (args[i].rfind("--config=", 0) == 0) {
      config_path_ = args[i].substr(9);
    }
  }
  if (!config_path_.empty()) GREENFED_RETURN_IF_ERROR(LoadConfig(config_path_));
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--config") {
      ++i;
      continue;
    }
    if (arg.rfind("--config=", 0) == 0) continue;
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
    flag->origin.clear();  // the command line overrides the file
  }
  for (const auto& check : checks_) GREENFED_RETURN_IF_ERROR(Annotate(check()));
  return false;
}

std::string FlagSet::Help() const {
  std::ostringstream os;
  os << "usage: " << command_ << " [flags]\n" << summary_ << "\n\nflags:\n";
  os << "  --config FILE\n      TOML file of these flags (keys at top level or in [" << command_.substr(command_.find_last_of(' ') + 1)
     << "]); the command line overrides it (default: none)\n";
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
