#include "config/node_config.h"

#include <fnmatch.h>

#include <algorithm>
#include <limits>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "yaml-cpp/yaml.h"

namespace knd::config {
namespace {

absl::Status Bad(const std::string& source, const std::string& field, const std::string& msg) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", field, ": ", msg));
}

absl::Status CheckKeys(const YAML::Node& map, const std::set<std::string>& allowed,
                       const std::string& source, const std::string& where) {
  for (const auto& kv : map) {
    if (!kv.first.IsScalar()) return Bad(source, where, "keys must be strings");
    std::string key = kv.first.Scalar();
    if (allowed.count(key) == 0) {
      std::string name = where.empty() ? key : absl::StrCat(where, ".", key);
      return Bad(source, name, "unknown field");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> GetString(const YAML::Node& n, const std::string& source,
                                      const std::string& field) {
  if (!n.IsScalar()) return Bad(source, field, "must be a string");
  if (n.Scalar().empty()) return Bad(source, field, "must not be empty");
  return n.Scalar();
}

absl::StatusOr<bool> GetBool(const YAML::Node& n, const std::string& source,
                             const std::string& field) {
  if (n.IsScalar()) {
    const std::string& v = n.Scalar();
    // YAML 1.2 core schema booleans only: "yes"/"on" are strings in Kubernetes' YAML too.
    if (v == "true" || v == "True" || v == "TRUE") return true;
    if (v == "false" || v == "False" || v == "FALSE") return false;
  }
  return Bad(source, field, "must be true or false");
}

bool IsHexId(const std::string& s) {
  std::string v = s;
  if (absl::StartsWithIgnoreCase(v, "0x")) v = v.substr(2);
  if (v.empty() || v.size() > 4) return false;
  for (char c : v) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

absl::StatusOr<DeviceSelector> ParseSelector(const YAML::Node& n, const std::string& source,
                                             const std::string& where) {
  if (!n.IsMap()) return Bad(source, where, "must be a mapping (a selector)");
  static const std::set<std::string> kKeys = {"ifName",    "driver",     "pciVendor",
                                              "pciDevice", "pciAddress", "type",
                                              "virtual",   "rdma",       "isSriovVf"};
  absl::Status st = CheckKeys(n, kKeys, source, where);
  if (!st.ok()) return st;
  if (n.size() == 0) return Bad(source, where, "empty selector (give at least one field)");
  DeviceSelector sel;
  for (const auto& kv : n) {
    std::string key = kv.first.Scalar();
    std::string field = absl::StrCat(where, ".", key);
    if (key == "virtual" || key == "rdma" || key == "isSriovVf") {
      absl::StatusOr<bool> b = GetBool(kv.second, source, field);
      if (!b.ok()) return b.status();
      (key == "virtual" ? sel.is_virtual : key == "rdma" ? sel.rdma : sel.is_sriov_vf) = *b;
      continue;
    }
    absl::StatusOr<std::string> s = GetString(kv.second, source, field);
    if (!s.ok()) return s.status();
    if (key == "pciVendor" || key == "pciDevice") {
      if (!IsHexId(*s)) return Bad(source, field, absl::StrCat("not a PCI id like 0x15b3: ", *s));
      (key == "pciVendor" ? sel.pci_vendor : sel.pci_device) = NormalizeHexId(*s);
    } else if (key == "ifName") {
      sel.if_name = *s;
    } else if (key == "driver") {
      sel.driver = *s;
    } else if (key == "pciAddress") {
      sel.pci_address = absl::AsciiStrToLower(*s);
    } else if (key == "type") {
      sel.type = *s;
    }
  }
  return sel;
}

absl::StatusOr<std::vector<DeviceSelector>> ParseSelectors(const YAML::Node& n,
                                                           const std::string& source,
                                                           const std::string& field) {
  std::vector<DeviceSelector> out;
  if (n.IsNull()) return out;
  if (!n.IsSequence()) return Bad(source, field, "must be a list of selectors");
  for (size_t i = 0; i < n.size(); ++i) {
    absl::StatusOr<DeviceSelector> s =
        ParseSelector(n[i], source, absl::StrCat(field, "[", i, "]"));
    if (!s.ok()) return s.status();
    out.push_back(std::move(*s));
  }
  return out;
}

bool IsDnsSubdomain(const std::string& s) {
  if (s.empty() || s.size() > 253) return false;
  size_t label = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '.') {
      if (label == 0 || s[i - 1] == '-') return false;
      label = 0;
      continue;
    }
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && label > 0);
    if (!ok || ++label > 63) return false;
  }
  return label > 0 && s.back() != '-';
}

absl::StatusOr<SharedRule> ParseSharedRule(const YAML::Node& n, const std::string& source,
                                           const std::string& where) {
  if (!n.IsMap()) return Bad(source, where, "must be a mapping");
  absl::Status st =
      CheckKeys(n, {"selector", "maxChildren", "bandwidth", "bandwidthPerChild"}, source, where);
  if (!st.ok()) return st;
  if (!n["selector"]) return Bad(source, where + ".selector", "required");
  if (!n["maxChildren"]) return Bad(source, where + ".maxChildren", "required");
  SharedRule rule;
  auto sel = ParseSelector(n["selector"], source, where + ".selector");
  if (!sel.ok()) return sel.status();
  rule.selector = std::move(*sel);
  const YAML::Node mc = n["maxChildren"];
  int64_t children = 0;
  if (!mc.IsScalar() || !absl::SimpleAtoi(mc.Scalar(), &children) || mc.Tag() == "!") {
    return Bad(source, where + ".maxChildren", "must be an integer");
  }
  // The kernel has no hard limit; 4096 is the VLAN id space and far more than a NIC's MAC
  // filter holds (macvlan children beyond it put the parent in promiscuous mode).
  if (children < 1 || children > 4096) {
    return Bad(source, where + ".maxChildren", absl::StrCat("must be 1..4096, not ", children));
  }
  rule.max_children = children;
  for (const char* key : {"bandwidth", "bandwidthPerChild"}) {
    if (!n[key]) continue;
    const std::string field = absl::StrCat(where, ".", key);
    absl::StatusOr<std::string> q = GetString(n[key], source, field);
    if (!q.ok()) return q.status();
    if (!ParseBitRate(*q)) {
      return Bad(source, field,
                 absl::StrCat("not a bit rate like \"25G\", \"100M\" or \"1000000\": ", *q));
    }
    (std::string(key) == "bandwidth" ? rule.bandwidth : rule.bandwidth_per_child) = *q;
  }
  if (!rule.bandwidth_per_child.empty() && rule.bandwidth.empty()) {
    return Bad(source, where + ".bandwidthPerChild", "needs bandwidth");
  }
  if (!rule.bandwidth.empty() && rule.bandwidth_per_child.empty()) rule.bandwidth_per_child = "0";
  if (!rule.bandwidth.empty() &&
      *ParseBitRate(rule.bandwidth_per_child) > *ParseBitRate(rule.bandwidth)) {
    return Bad(source, where + ".bandwidthPerChild",
               absl::StrCat("more than the parent's bandwidth ", rule.bandwidth));
  }
  return rule;
}

absl::StatusOr<NodeConfig> Decode(const YAML::Node& root, const std::string& source) {
  NodeConfig cfg;
  if (root.IsNull()) return cfg;
  if (!root.IsMap()) return Bad(source, "(top level)", "must be a mapping");
  absl::Status st = CheckKeys(
      root,
      {"driverName", "include", "exclude", "resourceNames", "includeUplinks", "shared", "claimCni"},
      source, "");
  if (!st.ok()) return st;
  if (root["driverName"]) {
    absl::StatusOr<std::string> d = GetString(root["driverName"], source, "driverName");
    if (!d.ok()) return d.status();
    if (!IsDnsSubdomain(*d) || d->size() > 63) {
      return Bad(source, "driverName",
                 absl::StrCat("not a lower-case DNS subdomain of at most 63 characters: ", *d));
    }
    cfg.driver_name = *d;
  }
  if (root["include"]) {
    auto v = ParseSelectors(root["include"], source, "include");
    if (!v.ok()) return v.status();
    cfg.include = std::move(*v);
  }
  if (root["exclude"]) {
    auto v = ParseSelectors(root["exclude"], source, "exclude");
    if (!v.ok()) return v.status();
    cfg.exclude = std::move(*v);
  }
  if (root["includeUplinks"]) {
    auto b = GetBool(root["includeUplinks"], source, "includeUplinks");
    if (!b.ok()) return b.status();
    cfg.include_uplinks = *b;
  }
  if (const YAML::Node rn = root["resourceNames"]; rn && !rn.IsNull()) {
    if (!rn.IsSequence()) return Bad(source, "resourceNames", "must be a list");
    for (size_t i = 0; i < rn.size(); ++i) {
      std::string where = absl::StrCat("resourceNames[", i, "]");
      if (!rn[i].IsMap()) return Bad(source, where, "must be a mapping");
      st = CheckKeys(rn[i], {"selector", "resourceName"}, source, where);
      if (!st.ok()) return st;
      if (!rn[i]["selector"]) return Bad(source, where + ".selector", "required");
      if (!rn[i]["resourceName"]) return Bad(source, where + ".resourceName", "required");
      ResourceNameRule rule;
      auto sel = ParseSelector(rn[i]["selector"], source, where + ".selector");
      if (!sel.ok()) return sel.status();
      rule.selector = std::move(*sel);
      auto name = GetString(rn[i]["resourceName"], source, where + ".resourceName");
      if (!name.ok()) return name.status();
      // Published as a string attribute: the API refuses values over 64 bytes.
      if (name->size() > 64) return Bad(source, where + ".resourceName", "longer than 64 bytes");
      for (char c : *name) {
        if (absl::ascii_isspace(static_cast<unsigned char>(c))) {
          return Bad(source, where + ".resourceName", "must not contain whitespace");
        }
      }
      rule.resource_name = *name;
      cfg.resource_names.push_back(std::move(rule));
    }
  }
  if (const YAML::Node cc = root["claimCni"]; cc && !cc.IsNull()) {
    if (!cc.IsMap()) return Bad(source, "claimCni", "must be a mapping");
    st = CheckKeys(cc, {"plugins", "ipam"}, source, "claimCni");
    if (!st.ok()) return st;
    ClaimCniRule rule;
    for (const char* key : {"plugins", "ipam"}) {
      const YAML::Node list = cc[key];
      if (!list || list.IsNull()) continue;
      const std::string field = absl::StrCat("claimCni.", key);
      if (!list.IsSequence()) return Bad(source, field, "must be a list");
      for (size_t i = 0; i < list.size(); ++i) {
        const std::string f = absl::StrCat(field, "[", i, "]");
        absl::StatusOr<std::string> name = GetString(list[i], source, f);
        if (!name.ok()) return name.status();
        // A plugin type is a file name in the CNI bin dirs.
        if (name->empty() || name->find('/') != std::string::npos || *name == "." ||
            *name == "..") {
          return Bad(source, f, absl::StrCat("not a plugin type: \"", *name, "\""));
        }
        (std::string(key) == "plugins" ? rule.plugins : rule.ipam).push_back(*name);
      }
    }
    cfg.claim_cni = std::move(rule);
  }
  if (const YAML::Node sh = root["shared"]; sh && !sh.IsNull()) {
    if (!sh.IsSequence()) return Bad(source, "shared", "must be a list");
    for (size_t i = 0; i < sh.size(); ++i) {
      absl::StatusOr<SharedRule> rule =
          ParseSharedRule(sh[i], source, absl::StrCat("shared[", i, "]"));
      if (!rule.ok()) return rule.status();
      cfg.shared.push_back(*std::move(rule));
    }
  }
  return cfg;
}

bool Glob(const std::string& pattern, const std::string& value) {
  return fnmatch(pattern.c_str(), value.c_str(), 0) == 0;
}

}  // namespace

std::string NormalizeHexId(const std::string& id) {
  std::string v = absl::AsciiStrToLower(id);
  if (absl::StartsWith(v, "0x")) v = v.substr(2);
  while (v.size() < 4) v = "0" + v;
  return "0x" + v;
}

absl::StatusOr<NodeConfig> ParseNodeConfig(const std::string& yaml, const std::string& source) {
  YAML::Node root;
  // yaml-cpp reports syntax errors only by exception; this is the one place we catch them.
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid YAML: ", e.what()));
  }
  try {
    return Decode(root, source);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", e.what()));
  }
}

absl::StatusOr<NodeConfig> LoadNodeConfig(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  return ParseNodeConfig(*text, path);
}

bool Matches(const DeviceSelector& sel, const SelectorFacts& f) {
  if (sel.if_name && !Glob(*sel.if_name, f.if_name)) return false;
  if (sel.driver && !Glob(*sel.driver, f.driver)) return false;
  if (sel.pci_vendor && (f.pci_vendor.empty() || NormalizeHexId(f.pci_vendor) != *sel.pci_vendor))
    return false;
  if (sel.pci_device && (f.pci_device.empty() || NormalizeHexId(f.pci_device) != *sel.pci_device))
    return false;
  if (sel.pci_address && !Glob(*sel.pci_address, f.pci_address)) return false;
  if (sel.type && !Glob(*sel.type, f.type)) return false;
  if (sel.is_virtual && *sel.is_virtual != f.is_virtual) return false;
  if (sel.rdma && *sel.rdma != f.rdma) return false;
  if (sel.is_sriov_vf && *sel.is_sriov_vf != f.is_sriov_vf) return false;
  return true;
}

bool Selected(const NodeConfig& cfg, const SelectorFacts& facts) {
  bool in = cfg.include.empty();
  for (const auto& s : cfg.include) {
    if (Matches(s, facts)) {
      in = true;
      break;
    }
  }
  if (!in) return false;
  for (const auto& s : cfg.exclude) {
    if (Matches(s, facts)) return false;
  }
  return true;
}

std::optional<int64_t> ParseBitRate(const std::string& q) {
  if (q.empty() || q.size() > 20) return std::nullopt;
  int64_t mult = 1;
  std::string digits = q;
  switch (q.back()) {
    case 'k':
      mult = 1000;
      break;
    case 'M':
      mult = 1000 * 1000;
      break;
    case 'G':
      mult = 1000LL * 1000 * 1000;
      break;
    case 'T':
      mult = 1000LL * 1000 * 1000 * 1000;
      break;
    default:
      break;
  }
  if (mult != 1) digits.pop_back();
  if (digits.empty() || !std::all_of(digits.begin(), digits.end(), absl::ascii_isdigit)) {
    return std::nullopt;
  }
  int64_t v = 0;
  if (!absl::SimpleAtoi(digits, &v) || v > std::numeric_limits<int64_t>::max() / mult) {
    return std::nullopt;
  }
  return v * mult;
}

bool Excluded(const NodeConfig& cfg, const SelectorFacts& facts) {
  for (const auto& s : cfg.exclude) {
    if (Matches(s, facts)) return true;
  }
  return false;
}

const SharedRule* SharedRuleFor(const NodeConfig& cfg, const SelectorFacts& facts) {
  for (const auto& r : cfg.shared) {
    if (Matches(r.selector, facts)) return &r;
  }
  return nullptr;
}

std::string ResourceNameFor(const NodeConfig& cfg, const SelectorFacts& facts) {
  for (const auto& r : cfg.resource_names) {
    if (Matches(r.selector, facts)) return r.resource_name;
  }
  return "";
}

}  // namespace knd::config
