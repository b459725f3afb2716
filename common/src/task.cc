#include "greenfed/task.h"

namespace greenfed {

Status TaskRegistry::Register(const std::string& name, TaskFactory factory) {
  if (name.empty()) return InvalidArgument("task name must not be empty");
  if (!factory) return InvalidArgument("task '" + name + "' registered without a factory");
  if (!factories_.emplace(name, std::move(factory)).second) {
    return InvalidArgument("task '" + name + "' is already registered");
  }
  return Status::Ok();
}

StatusOr<std::unique_ptr<Task>> TaskRegistry::Create(const std::string& name) const {
  auto it = factories_.find(name);
  if (it == factories_.end()) {
    std::string known;
    for (const auto& [n, f] : factories_) known += (known.empty() ? "" : ", ") + n;
    return NotFound("unknown task '" + name + "' (registered: " + known + ")");
  }
  std::unique_ptr<Task> task = it->second();
  if (!task) return Internal("factory of task '" + name + "' returned null");
  return task;
}

std::vector<std::string> TaskRegistry::Names() const {
  std::vector<std::string> names;
  for (const auto& [n, f] : factories_) names.push_back(n);
  return names;
}

}  // namespace greenfed
