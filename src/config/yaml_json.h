// YAML → JSON conversion shared by everything that reads YAML written by people (docs
// examples, node config, manifests in tests). JSON is the one in-memory form knd works on,
// so YAML is converted once at the edge and all checks then run on nlohmann::json.
//
// Scalar rules: a quoted scalar (or one tagged !!str) is always a string; a plain scalar is an
// integer if it parses as one, then a float, then true/false, then null (null, ~, empty),
// else a string. Duplicate mapping keys and non-scalar keys are refused.
#pragma once

#include <yaml-cpp/yaml.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace knd::config {

// Converts an already parsed node.
absl::StatusOr<nlohmann::json> YamlToJson(const YAML::Node& node);

// Parses one YAML document (an empty document gives null). Syntax errors come back as
// InvalidArgument with line and column.
absl::StatusOr<nlohmann::json> ParseYaml(const std::string& text);

// Parses a multi-document stream ("---" separated); empty documents are skipped.
absl::StatusOr<std::vector<nlohmann::json>> ParseYamlAll(const std::string& text);

}  // namespace knd::config
