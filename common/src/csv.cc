#include "greenfed/csv.h"

namespace greenfed {

StatusOr<std::vector<std::string>> SplitCsvLine(const std::string& line) {
  std::vector<std::string> fields;
  std::string field;
  bool quoted = false;
  bool field_was_quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field += c;
      }
    } else if (c == '"' && field.empty() && !field_was_quoted) {
      quoted = true;
      field_was_quoted = true;
    } else if (c == ',') {
      fields.push_back(field);
      field.clear();
      field_was_quoted = false;
    } else if (field_was_quoted) {
      return InvalidArgument("text after a closing quote in field " + std::to_string(fields.size() + 1));
    } else {
      field += c;
    }
  }
  if (quoted) return InvalidArgument("unterminated quote");
  fields.push_back(field);
  return fields;
}

}  // namespace greenfed
