#include "config/yaml_json.h"

#include <cerrno>
#include <cstdlib>
#include <optional>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace knd::config {
namespace {

using nlohmann::json;

std::string Where(const YAML::Node& n) {
  YAML::Mark m = n.Mark();
  if (m.is_null()) return "";
  return absl::StrCat(" at line ", m.line + 1, ", column ", m.column + 1);
}

// Integers: optional sign, decimal digits only (no octal/hex surprises).
std::optional<json> AsInt(const std::string& s) {
  size_t i = (s[0] == '-' || s[0] == '+') ? 1 : 0;
  if (i == s.size()) return std::nullopt;
  for (size_t k = i; k < s.size(); ++k) {
    if (s[k] < '0' || s[k] > '9') return std::nullopt;
  }
  errno = 0;
  if (s[0] == '-') {
    char* end = nullptr;
    long long v = std::strtoll(s.c_str(), &end, 10);
    if (errno == ERANGE || *end != '\0') return std::nullopt;
    return json(static_cast<int64_t>(v));
  }
  char* end = nullptr;
  unsigned long long v = std::strtoull(s.c_str() + i, &end, 10);
  if (errno == ERANGE || *end != '\0') return std::nullopt;
  if (v <= static_cast<unsigned long long>(INT64_MAX)) return json(static_cast<int64_t>(v));
  return json(static_cast<uint64_t>(v));
}

std::optional<json> AsFloat(const std::string& s) {
  // Needs a digit and a '.' or exponent; refuses "inf"/"nan"/hex forms strtod would accept.
  bool digit = false, mark = false;
  for (char c : s) {
    if (c >= '0' && c <= '9') {
      digit = true;
    } else if (c == '.' || c == 'e' || c == 'E') {
      mark = true;
    } else if (c != '-' && c != '+') {
      return std::nullopt;
    }
  }
  if (!digit || !mark) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s.c_str(), &end);
  if (errno == ERANGE || *end != '\0') return std::nullopt;
  return json(v);
}

json Scalar(const YAML::Node& n) {
  const std::string& s = n.Scalar();
  const std::string& tag = n.Tag();
  if (tag == "!" || tag == "tag:yaml.org,2002:str") return json(s);
  if (!s.empty()) {
    if (auto v = AsInt(s)) return *v;
    if (auto v = AsFloat(s)) return *v;
  }
  if (s == "true") return json(true);
  if (s == "false") return json(false);
  if (s.empty() || s == "null" || s == "~") return json(nullptr);
  return json(s);
}

}  // namespace

absl::StatusOr<json> YamlToJson(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      return json(nullptr);
    case YAML::NodeType::Scalar:
      return Scalar(node);
    case YAML::NodeType::Sequence: {
      json out = json::array();
      for (const auto& item : node) {
        ASSIGN_OR_RETURN(json v, YamlToJson(item));
        out.push_back(std::move(v));
      }
      return out;
    }
    case YAML::NodeType::Map: {
      json out = json::object();
      for (const auto& kv : node) {
        if (!kv.first.IsScalar()) {
          return absl::InvalidArgumentError(
              absl::StrCat("mapping key is not a scalar", Where(kv.first)));
        }
        const std::string& key = kv.first.Scalar();
        if (out.contains(key)) {
          return absl::InvalidArgumentError(
              absl::StrCat("duplicate key \"", key, "\"", Where(kv.first)));
        }
        ASSIGN_OR_RETURN(json v, YamlToJson(kv.second));
        out[key] = std::move(v);
      }
      return out;
    }
  }
  return json(nullptr);
}

absl::StatusOr<json> ParseYaml(const std::string& text) {
  YAML::Node node;
  try {
    node = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    // yaml-cpp reports syntax errors only by exception; this is the one boundary.
    return absl::InvalidArgumentError(absl::StrCat("invalid YAML: ", e.what()));
  }
  return YamlToJson(node);
}

absl::StatusOr<std::vector<json>> ParseYamlAll(const std::string& text) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("invalid YAML: ", e.what()));
  }
  std::vector<json> out;
  for (const auto& d : docs) {
    if (d.IsNull() || !d.IsDefined()) continue;
    ASSIGN_OR_RETURN(json j, YamlToJson(d));
    out.push_back(std::move(j));
  }
  return out;
}

}  // namespace knd::config
