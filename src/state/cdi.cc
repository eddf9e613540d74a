#include "state/cdi.h"

#include <cctype>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"
#include "common/text.h"

namespace knd::state {
namespace {

using nlohmann::json;

bool IsAlpha(char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; }
bool IsAlnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

// Vendor and class: a letter first, letters/digits/'_'/'-'/'.' inside, alphanumeric last.
absl::Status CheckKindPart(const std::string& part, const char* what, const std::string& kind) {
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(
        absl::StrCat("CDI kind \"", kind, "\": ", what, " \"", part, "\" ", why));
  };
  if (part.empty()) return bad("is empty");
  if (!IsAlpha(part.front())) return bad("must start with a letter");
  if (!IsAlnum(part.back())) return bad("must end with a letter or digit");
  for (char c : part) {
    if (!IsAlnum(c) && c != '_' && c != '-' && c != '.') {
      return bad(absl::StrCat("contains '", std::string(1, c), "'"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckKeys(const json& obj, const std::set<std::string>& allowed,
                       const std::string& path) {
  if (!obj.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": expected an object"));
  }
  for (const auto& [k, v] : obj.items()) {
    if (!allowed.count(k)) {
      return absl::InvalidArgumentError(absl::StrCat(path, ".", k,
                                                     ": not a CDI field this "
                                                     "writer supports"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckStringList(const json& j, const std::string& path, bool env) {
  if (!j.is_array()) return absl::InvalidArgumentError(absl::StrCat(path, ": expected a list"));
  for (const auto& s : j) {
    if (!s.is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": expected strings"));
    }
    if (env && s.get<std::string>().find('=') == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": \"", s.get<std::string>(), "\" is not KEY=VALUE"));
    }
    if (env && s.get<std::string>().find('=') == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": \"", s.get<std::string>(), "\" is not KEY=VALUE"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckNonEmptyString(const json& obj, const char* key, const std::string& path) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string() || it->get<std::string>().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ".", key, ": required string"));
  }
  return absl::OkStatus();
}

// Validates one containerEdits object the way the runtimes' CDI library will, so a mistake
// fails Prepare (visible on the claim) instead of silently dropping the spec at container start.
absl::Status CheckEdits(const json& e, const std::string& path) {
  RETURN_IF_ERROR(
      CheckKeys(e, {"env", "deviceNodes", "mounts", "hooks", "intelRdt", "additionalGids"}, path));
  bool any = false;
  if (auto it = e.find("env"); it != e.end()) {
    RETURN_IF_ERROR(CheckStringList(*it, path + ".env", /*env=*/true));
    any = any || !it->empty();
  }
  if (auto it = e.find("deviceNodes"); it != e.end()) {
    if (!it->is_array()) return absl::InvalidArgumentError(path + ".deviceNodes: expected a list");
    for (size_t i = 0; i < it->size(); ++i) {
      std::string p = absl::StrCat(path, ".deviceNodes[", i, "]");
      const json& d = (*it)[i];
      RETURN_IF_ERROR(CheckKeys(
          d,
          {"path", "hostPath", "type", "major", "minor", "fileMode", "permissions", "uid", "gid"},
          p));
      RETURN_IF_ERROR(CheckNonEmptyString(d, "path", p));
      if (auto perm = d.find("permissions"); perm != d.end()) {
        if (!perm->is_string() ||
            perm->get<std::string>().find_first_not_of("rwm") != std::string::npos) {
          return absl::InvalidArgumentError(p + ".permissions: must be a subset of \"rwm\"");
        }
      }
    }
    any = any || !it->empty();
  }
  if (auto it = e.find("mounts"); it != e.end()) {
    if (!it->is_array()) return absl::InvalidArgumentError(path + ".mounts: expected a list");
    for (size_t i = 0; i < it->size(); ++i) {
      std::string p = absl::StrCat(path, ".mounts[", i, "]");
      RETURN_IF_ERROR(CheckKeys((*it)[i], {"hostPath", "containerPath", "options", "type"}, p));
      RETURN_IF_ERROR(CheckNonEmptyString((*it)[i], "hostPath", p));
      RETURN_IF_ERROR(CheckNonEmptyString((*it)[i], "containerPath", p));
    }
    any = any || !it->empty();
  }
  if (auto it = e.find("hooks"); it != e.end()) {
    static const std::set<std::string> kHookNames = {
        "prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"};
    if (!it->is_array()) return absl::InvalidArgumentError(path + ".hooks: expected a list");
    for (size_t i = 0; i < it->size(); ++i) {
      std::string p = absl::StrCat(path, ".hooks[", i, "]");
      const json& h = (*it)[i];
      RETURN_IF_ERROR(CheckKeys(h, {"hookName", "path", "args", "env", "timeout"}, p));
      RETURN_IF_ERROR(CheckNonEmptyString(h, "hookName", p));
      if (!kHookNames.count(h["hookName"].get<std::string>())) {
        return absl::InvalidArgumentError(
            absl::StrCat(p, ".hookName: unknown hook \"", h["hookName"].get<std::string>(), "\""));
      }
      RETURN_IF_ERROR(CheckNonEmptyString(h, "path", p));
      if (h["path"].get<std::string>().front() != '/') {
        return absl::InvalidArgumentError(p + ".path: must be absolute");
      }
      if (auto a = h.find("args"); a != h.end()) {
        RETURN_IF_ERROR(CheckStringList(*a, p + ".args", false));
      }
      if (auto en = h.find("env"); en != h.end()) {
        RETURN_IF_ERROR(CheckStringList(*en, p + ".env", true));
      }
      if (auto t = h.find("timeout"); t != h.end()) {
        if (!t->is_number_integer() || t->get<int64_t>() <= 0) {
          return absl::InvalidArgumentError(p + ".timeout: must be a positive integer");
        }
      }
    }
    any = any || !it->empty();
  }
  if (auto it = e.find("intelRdt"); it != e.end()) {
    // 1.1.0 added schemata/enableMonitoring: not accepted by older runtimes, so not offered.
    RETURN_IF_ERROR(CheckKeys(*it, {"closID", "l3CacheSchema", "memBwSchema"}, path + ".intelRdt"));
    any = true;
  }
  if (auto it = e.find("additionalGids"); it != e.end()) {
    if (!it->is_array()) {
      return absl::InvalidArgumentError(path + ".additionalGids: expected a list");
    }
    for (const auto& g : *it) {
      if (!g.is_number_integer() || g.get<int64_t>() < 0 || g.get<int64_t>() > 0xffffffffLL) {
        return absl::InvalidArgumentError(path + ".additionalGids: expected uint32 values");
      }
    }
    any = any || !it->empty();
  }
  if (!any) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": empty container edits (the CDI library rejects such a device)"));
  }
  return absl::OkStatus();
}

absl::Status CheckClaimUid(const std::string& uid) {
  // The UID goes into a file name and into device names; a Kubernetes UID is a UUID.
  if (uid.empty()) return absl::InvalidArgumentError("CDI: empty claim UID");
  for (char c : uid) {
    if (!IsAlnum(c) && c != '-' && c != '_') {
      return absl::InvalidArgumentError(
          absl::StrCat("CDI: claim UID \"", uid, "\" may hold only letters, digits, '-' and '_'"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> SpecPath(const std::string& cdi_dir, const std::string& vendor_class,
                                     const std::string& claim_uid) {
  RETURN_IF_ERROR(ValidateCdiKind(vendor_class));
  RETURN_IF_ERROR(CheckClaimUid(claim_uid));
  std::string vendor = vendor_class.substr(0, vendor_class.find('/'));
  std::string cls = vendor_class.substr(vendor_class.find('/') + 1);
  return absl::StrCat(cdi_dir, "/", vendor, "-", cls, "_", claim_uid, ".json");
}

bool HasKeyInEdits(const json& spec, const char* key) {
  auto in = [&](const json& edits) { return edits.is_object() && edits.contains(key); };
  if (spec.contains("containerEdits") && in(spec["containerEdits"])) return true;
  for (const auto& d : spec.value("devices", json::array())) {
    if (d.contains("containerEdits") && in(d["containerEdits"])) return true;
  }
  return false;
}

}  // namespace

absl::Status ValidateCdiKind(const std::string& kind) {
  size_t slash = kind.find('/');
  if (slash == std::string::npos || kind.find('/', slash + 1) != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("CDI kind \"", kind, "\": expected <vendor>/<class>"));
  }
  RETURN_IF_ERROR(CheckKindPart(kind.substr(0, slash), "vendor", kind));
  return CheckKindPart(kind.substr(slash + 1), "class", kind);
}

absl::Status ValidateCdiDeviceName(const std::string& name) {
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("CDI device name \"", name, "\" ", why));
  };
  if (name.empty()) return bad("is empty");
  if (!IsAlnum(name.front()) || !IsAlnum(name.back())) {
    return bad("must start and end with a letter or digit");
  }
  for (char c : name) {
    if (!IsAlnum(c) && c != '_' && c != '-' && c != '.' && c != ':') {
      return bad(absl::StrCat("contains '", std::string(1, c), "'"));
    }
  }
  return absl::OkStatus();
}

std::string MinimumCdiVersion(const json& spec) {
  // wire-facts §5 (specs-go/version.go): 0.5.0 covers mount types, deviceNode hostPath and
  // device names starting with a digit (claim UIDs do); it is our baseline.
  if (HasKeyInEdits(spec, "intelRdt") || HasKeyInEdits(spec, "additionalGids")) return "0.7.0";
  bool annotations = spec.contains("annotations");
  for (const auto& d : spec.value("devices", json::array())) {
    annotations = annotations || d.contains("annotations");
  }
  std::string kind = spec.value("kind", std::string());
  std::string cls = kind.substr(kind.find('/') + 1);
  if (annotations || cls.find('.') != std::string::npos) return "0.6.0";
  return "0.5.0";
}

absl::StatusOr<json> BuildClaimSpec(const std::string& vendor_class, const std::string& claim_uid,
                                    const std::vector<CdiDevice>& devices) {
  RETURN_IF_ERROR(ValidateCdiKind(vendor_class));
  RETURN_IF_ERROR(CheckClaimUid(claim_uid));
  if (devices.empty()) return absl::InvalidArgumentError("CDI: a spec needs at least one device");
  json jdevs = json::array();
  std::set<std::string> seen;
  for (const CdiDevice& d : devices) {
    std::string name = absl::StrCat(claim_uid, "-", d.name);
    RETURN_IF_ERROR(ValidateCdiDeviceName(name));
    if (!seen.insert(name).second) {
      return absl::InvalidArgumentError(absl::StrCat("CDI: device \"", name, "\" given twice"));
    }
    if (d.container_edits.is_object() && d.container_edits.contains("netDevices")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "CDI device \"", name,
          "\": netDevices needs cdiVersion 1.1.0, which most runtimes refuse; knd moves "
          "interfaces itself"));
    }
    RETURN_IF_ERROR(
        CheckEdits(d.container_edits, absl::StrCat("CDI device \"", name, "\" containerEdits")));
    jdevs.push_back({{"name", name}, {"containerEdits", d.container_edits}});
  }
  json spec = {{"kind", vendor_class}, {"devices", std::move(jdevs)}};
  spec["cdiVersion"] = MinimumCdiVersion(spec);
  return spec;
}

absl::StatusOr<std::vector<std::string>> WriteClaimSpec(const std::string& cdi_dir,
                                                        const std::string& vendor_class,
                                                        const std::string& claim_uid,
                                                        const std::vector<CdiDevice>& devices) {
  ASSIGN_OR_RETURN(std::string path, SpecPath(cdi_dir, vendor_class, claim_uid));
  if (devices.empty()) {
    RETURN_IF_ERROR(RemoveFile(path));
    return std::vector<std::string>{};
  }
  ASSIGN_OR_RETURN(json spec, BuildClaimSpec(vendor_class, claim_uid, devices));
  // Temp file in the same directory + rename: the runtime's file watcher never sees a torn
  // spec. The temp name starts with '.' and does not end in .json, so it is never loaded.
  RETURN_IF_ERROR(WriteFileAtomic(path, DumpJson(spec, 2), 0644));
  std::vector<std::string> ids;
  for (const auto& d : spec["devices"]) {
    ids.push_back(absl::StrCat(vendor_class, "=", d["name"].get<std::string>()));
  }
  return ids;
}

absl::Status RemoveClaimSpec(const std::string& cdi_dir, const std::string& vendor_class,
                             const std::string& claim_uid) {
  ASSIGN_OR_RETURN(std::string path, SpecPath(cdi_dir, vendor_class, claim_uid));
  return RemoveFile(path);
}

}  // namespace knd::state
