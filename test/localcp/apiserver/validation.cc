// Validation rules of the stand-in API server; see validation.h.
#include "validation.h"

#include <cctype>
#include <cstdlib>
#include <optional>
#include <regex>
#include <set>
#include <vector>

#include "common/net_addr.h"

namespace knd::localcp {
namespace {

using nlohmann::json;

// Limits of resource.k8s.io/v1 (wire-facts.md §4.1, §4.3).
constexpr size_t kMaxDevicesPerSlice = 128;
constexpr size_t kMaxDevicesWithTaintsOrCounters = 64;
constexpr size_t kMaxAttributesAndCapacities = 32;
constexpr size_t kMaxAttributeValueLength = 64;
constexpr size_t kMaxIdLength = 32;
constexpr size_t kMaxDomainLength = 63;
constexpr size_t kMaxPoolNameLength = 253;
constexpr size_t kMaxTaints = 16;
constexpr size_t kMaxConditions = 8;
constexpr size_t kMaxIps = 16;
constexpr size_t kMaxInterfaceName = 256;
constexpr size_t kMaxHardwareAddress = 128;
constexpr size_t kMaxDeviceData = 10 * 1024;

std::string Quote(const json& v) {
  if (v.is_string()) return json(v.get<std::string>()).dump();
  return v.dump();
}

void Required(FieldErrors* errs, const std::string& field, const std::string& detail = "") {
  errs->push_back({field, "Required value", detail, "FieldValueRequired"});
}
void Invalid(FieldErrors* errs, const std::string& field, const json& value,
             const std::string& detail) {
  errs->push_back({field, "Invalid value", Quote(value) + ": " + detail, "FieldValueInvalid"});
}
void TooLong(FieldErrors* errs, const std::string& field, size_t max) {
  errs->push_back({field, "Too long", "may not be more than " + std::to_string(max) + " bytes",
                   "FieldValueTooLong"});
}
void TooMany(FieldErrors* errs, const std::string& field, size_t have, size_t max,
             const std::string& what = "items") {
  errs->push_back({field, "Too many",
                   std::to_string(have) + ": must have at most " + std::to_string(max) + " " + what,
                   "FieldValueTooMany"});
}
void Forbidden(FieldErrors* errs, const std::string& field, const std::string& detail) {
  errs->push_back({field, "Forbidden", detail, "FieldValueForbidden"});
}
void Duplicate(FieldErrors* errs, const std::string& field, const json& value) {
  errs->push_back({field, "Duplicate value", Quote(value), "FieldValueDuplicate"});
}
void Unsupported(FieldErrors* errs, const std::string& field, const json& value,
                 const std::string& supported) {
  errs->push_back({field, "Unsupported value", Quote(value) + ": supported values: " + supported,
                   "FieldValueNotSupported"});
}

const json* Get(const json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string GetString(const json& obj, const char* key) {
  const json* v = Get(obj, key);
  return v && v->is_string() ? v->get<std::string>() : std::string();
}

bool IsTrue(const json& obj, const char* key) {
  const json* v = Get(obj, key);
  return v && v->is_boolean() && v->get<bool>();
}

// Qualified attribute/capacity name: "<C identifier ≤32>" or "<DNS subdomain ≤63>/<C id ≤32>".
void ValidateQualifiedName(const std::string& key, const std::string& field, FieldErrors* errs) {
  std::string domain, id = key;
  if (auto slash = key.find('/'); slash != std::string::npos) {
    domain = key.substr(0, slash);
    id = key.substr(slash + 1);
    if (domain.empty()) {
      Required(errs, field, "the domain must not be empty");
    } else if (domain.size() > kMaxDomainLength) {
      TooLong(errs, field, kMaxDomainLength);
    } else if (!IsDnsSubdomain(domain)) {
      Invalid(errs, field, domain,
              "a lowercase RFC 1123 subdomain must consist of lower case "
              "alphanumeric characters, '-' or '.'");
    }
  }
  if (id.empty()) {
    Required(errs, field, "the name must not be empty");
  } else if (id.size() > kMaxIdLength) {
    TooLong(errs, field, kMaxIdLength);
  } else if (!IsCIdentifier(id)) {
    Invalid(errs, field, id,
            "a valid C identifier must start with alphabetic character or "
            "'_', followed by a string of alphanumeric characters or '_'");
  }
}

void ValidateAttribute(const json& value, const std::string& field, FieldErrors* errs) {
  if (!value.is_object()) {
    Invalid(errs, field, value, "must be an object with one of int, bool, string, version");
    return;
  }
  int set = 0;
  for (const char* k : {"int", "bool", "string", "version"}) {
    if (Get(value, k)) ++set;
  }
  for (auto it = value.begin(); it != value.end(); ++it) {
    if (it.key() != "int" && it.key() != "bool" && it.key() != "string" && it.key() != "version") {
      errs->push_back(
          {field + "." + it.key(), "Forbidden", "unknown field", "FieldValueForbidden"});
    }
  }
  if (set == 0) {
    Required(errs, field, "exactly one value must be specified");
    return;
  }
  if (set > 1) {
    Invalid(errs, field, value, "exactly one value must be specified");
    return;
  }
  if (const json* v = Get(value, "int"); v && !v->is_number_integer()) {
    Invalid(errs, field + ".int", *v, "must be an integer");
  }
  if (const json* v = Get(value, "bool"); v && !v->is_boolean()) {
    Invalid(errs, field + ".bool", *v, "must be a boolean");
  }
  if (const json* v = Get(value, "string")) {
    if (!v->is_string()) {
      Invalid(errs, field + ".string", *v, "must be a string");
    } else if (v->get<std::string>().size() > kMaxAttributeValueLength) {
      TooLong(errs, field + ".string", kMaxAttributeValueLength);
    }
  }
  if (const json* v = Get(value, "version")) {
    if (!v->is_string()) {
      Invalid(errs, field + ".version", *v, "must be a string");
    } else if (v->get<std::string>().size() > kMaxAttributeValueLength) {
      TooLong(errs, field + ".version", kMaxAttributeValueLength);
    } else if (!IsSemver(v->get<std::string>())) {
      Invalid(errs, field + ".version", *v,
              "must be a string compatible with semver.org spec 2.0.0");
    }
  }
}

bool IsQuantity(const std::string& s) {
  static const std::regex re(R"(^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[KMGTPE]i|[numkMGTPE])?$)");
  return std::regex_match(s, re);
}

// The value of a quantity, for comparisons (precision is not the point here).
std::optional<long double> QuantityValue(const json& v) {
  if (!v.is_string() || !IsQuantity(v.get<std::string>())) return std::nullopt;
  std::string q = v.get<std::string>();
  static const std::vector<std::pair<std::string, long double>> suffixes = {
      {"Ki", 1024.0L},
      {"Mi", 1048576.0L},
      {"Gi", 1073741824.0L},
      {"Ti", 1099511627776.0L},
      {"Pi", 1125899906842624.0L},
      {"Ei", 1152921504606846976.0L},
      {"n", 1e-9L},
      {"u", 1e-6L},
      {"m", 1e-3L},
      {"k", 1e3L},
      {"M", 1e6L},
      {"G", 1e9L},
      {"T", 1e12L},
      {"P", 1e15L},
      {"E", 1e18L}};
  long double mult = 1;
  for (const auto& [suf, m] : suffixes) {
    if (q.size() > suf.size() && q.compare(q.size() - suf.size(), suf.size(), suf) == 0 &&
        (suf != "E" || q.find_first_of("eE") == q.size() - 1)) {
      q.resize(q.size() - suf.size());
      mult = m;
      break;
    }
  }
  return std::strtold(q.c_str(), nullptr) * mult;
}

// capacity[].requestPolicy (KEP-5075, validateRequestPolicy in pkg/apis/resource/validation).
void ValidateRequestPolicy(const json& policy, const json& capacity, const std::string& field,
                           FieldErrors* errs) {
  const std::optional<long double> max = QuantityValue(capacity);
  const json* def = Get(policy, "default");
  std::optional<long double> d;
  if (def) {
    d = QuantityValue(*def);
    if (!d) Invalid(errs, field + ".default", *def, "must be a quantity");
  }
  const json* values = Get(policy, "validValues");
  const json* range = Get(policy, "validRange");
  if (values && !values->empty() && range) {
    Forbidden(errs, field,
              "exactly one policy can be specified, cannot specify \"validValues\" and "
              "\"validRange\" at the same time");
    return;
  }
  if (values && !values->empty()) {
    if (!def) {
      Required(errs, field + ".default", "required when validValues is defined");
      return;
    }
    if (!values->is_array()) {
      Invalid(errs, field + ".validValues", *values, "must be a list");
      return;
    }
    if (values->size() > 10) {
      TooMany(errs, field + ".validValues", values->size(), 10);
      return;
    }
    bool found = false;
    std::optional<long double> prev;
    for (size_t i = 0; i < values->size(); ++i) {
      const std::string f = field + ".validValues[" + std::to_string(i) + "]";
      std::optional<long double> v = QuantityValue((*values)[i]);
      if (!v) {
        Invalid(errs, f, (*values)[i], "must be a quantity");
        continue;
      }
      if (prev && *prev > *v)
        Invalid(errs, f, (*values)[i], "values must be sorted in ascending order");
      if (prev && *prev == *v) Duplicate(errs, f, (*values)[i]);
      if (max && *v > *max) {
        Invalid(errs, f, (*values)[i],
                "option is larger than capacity value: " + capacity.get<std::string>());
      }
      if (d && *v == *d) found = true;
      prev = v;
    }
    if (!found) {
      Invalid(errs, field + ".validValues", *def,
              "default value is not valid according to the requestPolicy");
    }
  } else if (range) {
    if (!def) {
      Required(errs, field + ".default", "required when validRange is defined");
      return;
    }
    const json* min = Get(*range, "min");
    if (!min) {
      Required(errs, field + ".validRange.min", "required when validRange is defined");
      return;
    }
    std::optional<long double> lo = QuantityValue(*min);
    if (lo && d && *d < *lo) {
      Invalid(errs, field + ".validRange.min", *def, "default is less than min: " + Quote(*min));
    }
    if (lo && max && *lo > *max) {
      Invalid(errs, field + ".validRange.min", *min,
              "min is larger than capacity value: " + capacity.get<std::string>());
    }
    if (const json* mx = Get(*range, "max")) {
      std::optional<long double> hi = QuantityValue(*mx);
      if (hi && d && *d > *hi) {
        Invalid(errs, field + ".validRange.max", *def, "default is more than max: " + Quote(*mx));
      }
      if (hi && max && *hi > *max) {
        Invalid(errs, field + ".validRange.max", *mx,
                "max is larger than capacity value: " + capacity.get<std::string>());
      }
    }
  }
}

void ValidateDevice(const json& dev, const std::string& field, std::set<std::string>* names,
                    FieldErrors* errs) {
  if (!dev.is_object()) {
    Invalid(errs, field, dev, "must be an object");
    return;
  }
  const json* name = Get(dev, "name");
  if (!name || !name->is_string() || name->get<std::string>().empty()) {
    Required(errs, field + ".name");
  } else {
    std::string n = name->get<std::string>();
    if (!IsDnsLabel(n)) {
      Invalid(errs, field + ".name", n,
              "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
              "'-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
              "'123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')");
    } else if (!names->insert(n).second) {
      Duplicate(errs, field + ".name", n);
    }
  }
  size_t count = 0;
  const bool shareable = IsTrue(dev, "allowMultipleAllocations");
  if (const json* attrs = Get(dev, "attributes")) {
    if (!attrs->is_object()) {
      Invalid(errs, field + ".attributes", *attrs, "must be a map");
    } else {
      count += attrs->size();
      for (auto it = attrs->begin(); it != attrs->end(); ++it) {
        std::string f = field + ".attributes[" + it.key() + "]";
        ValidateQualifiedName(it.key(), f, errs);
        ValidateAttribute(it.value(), f, errs);
      }
    }
  }
  if (const json* caps = Get(dev, "capacity")) {
    if (!caps->is_object()) {
      Invalid(errs, field + ".capacity", *caps, "must be a map");
    } else {
      count += caps->size();
      for (auto it = caps->begin(); it != caps->end(); ++it) {
        std::string f = field + ".capacity[" + it.key() + "]";
        ValidateQualifiedName(it.key(), f, errs);
        const json* v = Get(it.value(), "value");
        if (!v) {
          Required(errs, f + ".value");
        } else if (!v->is_string() || !IsQuantity(v->get<std::string>())) {
          Invalid(errs, f + ".value", *v,
                  "quantities must match the regular expression "
                  "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'");
        }
        if (const json* policy = Get(it.value(), "requestPolicy")) {
          if (!shareable) {
            Forbidden(errs, f + ".requestPolicy", "allowMultipleAllocations must be true");
          } else if (v) {
            ValidateRequestPolicy(*policy, *v, f + ".requestPolicy", errs);
          }
        }
      }
    }
  }
  if (count > kMaxAttributesAndCapacities) {
    // The real server's wording (validateDevice in pkg/apis/resource/validation).
    Invalid(errs, field, static_cast<int64_t>(count),
            "the total number of attributes and capacities must not exceed " +
                std::to_string(kMaxAttributesAndCapacities));
  }
  if (const json* taints = Get(dev, "taints")) {
    if (!taints->is_array()) {
      Invalid(errs, field + ".taints", *taints, "must be a list");
    } else {
      if (taints->size() > kMaxTaints) TooMany(errs, field + ".taints", taints->size(), kMaxTaints);
      for (size_t i = 0; i < taints->size(); ++i) {
        std::string f = field + ".taints[" + std::to_string(i) + "]";
        const json& t = (*taints)[i];
        if (GetString(t, "key").empty()) Required(errs, f + ".key");
        std::string effect = GetString(t, "effect");
        if (effect != "None" && effect != "NoSchedule" && effect != "NoExecute") {
          Unsupported(errs, f + ".effect", effect, "\"NoExecute\", \"NoSchedule\", \"None\"");
        }
      }
    }
  }
}

}  // namespace

std::string FieldError::ToString() const {
  std::string s = field + ": " + type;
  if (!detail.empty()) s += ": " + detail;
  return s;
}

bool IsDnsLabel(const std::string& s) {
  static const std::regex re("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$");
  return !s.empty() && s.size() <= 63 && std::regex_match(s, re);
}

bool IsDnsSubdomain(const std::string& s) {
  static const std::regex re("^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$");
  return !s.empty() && s.size() <= 253 && std::regex_match(s, re);
}

bool IsCIdentifier(const std::string& s) {
  static const std::regex re("^[A-Za-z_][A-Za-z0-9_]*$");
  return std::regex_match(s, re);
}

bool IsSemver(const std::string& s) {
  static const std::regex re(
      R"(^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*))"
      R"((-((0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(\.(0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?)"
      R"((\+([0-9a-zA-Z-]+(\.[0-9a-zA-Z-]+)*))?$)");
  return std::regex_match(s, re);
}

bool IsCidr(const std::string& s) { return knd::ParseCidr(s).ok(); }

void ValidateObjectName(const std::string& name, bool generated, FieldErrors* errs) {
  const std::string field = generated ? "metadata.generateName" : "metadata.name";
  if (name.empty()) {
    Required(errs, "metadata.name", "name or generateName is required");
    return;
  }
  // A generateName prefix may end in '-'; the generated name appends 5 alphanumerics.
  std::string check = generated ? name + "x" : name;
  if (!IsDnsSubdomain(check)) {
    Invalid(errs, field, name,
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character");
  }
}

FieldErrors ValidateResourceSlice(const json& slice) {
  FieldErrors errs;
  const json* spec = Get(slice, "spec");
  if (!spec || !spec->is_object()) {
    Required(&errs, "spec");
    return errs;
  }
  std::string driver = GetString(*spec, "driver");
  if (driver.empty()) {
    Required(&errs, "spec.driver");
  } else if (driver.size() > kMaxDomainLength) {
    TooLong(&errs, "spec.driver", kMaxDomainLength);
  } else if (!IsDnsSubdomain(driver)) {
    Invalid(&errs, "spec.driver", driver,
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character");
  }
  const json* pool = Get(*spec, "pool");
  if (!pool || !pool->is_object()) {
    Required(&errs, "spec.pool");
  } else {
    std::string name = GetString(*pool, "name");
    if (name.empty()) {
      Required(&errs, "spec.pool.name");
    } else if (name.size() > kMaxPoolNameLength) {
      TooLong(&errs, "spec.pool.name", kMaxPoolNameLength);
    } else {
      size_t start = 0;
      while (true) {
        size_t slash = name.find('/', start);
        std::string part =
            name.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
        if (!IsDnsSubdomain(part)) {
          Invalid(&errs, "spec.pool.name", name,
                  "must be one or more DNS sub-domains separated by slashes");
          break;
        }
        if (slash == std::string::npos) break;
        start = slash + 1;
      }
    }
    const json* gen = Get(*pool, "generation");
    if (gen && (!gen->is_number_integer() || gen->get<int64_t>() < 0)) {
      Invalid(&errs, "spec.pool.generation", *gen, "must be greater than or equal to 0");
    }
    const json* count = Get(*pool, "resourceSliceCount");
    if (!count) {
      Required(&errs, "spec.pool.resourceSliceCount");
    } else if (!count->is_number_integer() || count->get<int64_t>() <= 0) {
      Invalid(&errs, "spec.pool.resourceSliceCount", *count, "must be greater than zero");
    }
  }
  // Exactly one way of saying which nodes the slice is for.
  int selectors = 0;
  if (const json* n = Get(*spec, "nodeName"); n) {
    if (!n->is_string() || n->get<std::string>().empty()) {
      Invalid(&errs, "spec.nodeName", *n, "must be a node name");
    } else {
      ++selectors;
      if (!IsDnsSubdomain(n->get<std::string>())) {
        Invalid(&errs, "spec.nodeName", *n, "a lowercase RFC 1123 subdomain is required");
      }
    }
  }
  if (const json* ns = Get(*spec, "nodeSelector")) {
    ++selectors;
    const json* terms = Get(*ns, "nodeSelectorTerms");
    if (!terms || !terms->is_array() || terms->size() != 1) {
      Invalid(&errs, "spec.nodeSelector.nodeSelectorTerms", terms ? *terms : json(),
              "must have exactly one node selector term");
    }
  }
  if (IsTrue(*spec, "allNodes")) ++selectors;
  bool per_device = IsTrue(*spec, "perDeviceNodeSelection");
  if (per_device) ++selectors;
  if (selectors == 0) {
    Required(&errs, "spec",
             "exactly one of `nodeName`, `nodeSelector`, `allNodes`, `perDeviceNodeSelection` is "
             "required");
  } else if (selectors > 1) {
    errs.push_back({"spec", "Invalid value",
                    "{\"nodeName\", \"nodeSelector\", \"allNodes\", \"perDeviceNodeSelection\"}: "
                    "exactly one of `nodeName`, `nodeSelector`, `allNodes`, "
                    "`perDeviceNodeSelection` is required, but multiple fields are set",
                    "FieldValueInvalid"});
  }
  if (const json* devices = Get(*spec, "devices")) {
    if (!devices->is_array()) {
      Invalid(&errs, "spec.devices", *devices, "must be a list");
    } else {
      bool limited = false;
      for (const json& d : *devices) {
        const json* t = Get(d, "taints");
        const json* c = Get(d, "consumesCounters");
        if ((t && t->is_array() && !t->empty()) || (c && c->is_array() && !c->empty())) {
          limited = true;
        }
      }
      size_t max = limited ? kMaxDevicesWithTaintsOrCounters : kMaxDevicesPerSlice;
      if (devices->size() > max) {
        TooMany(&errs, "spec.devices", devices->size(), max);
      }
      std::set<std::string> names;
      for (size_t i = 0; i < devices->size(); ++i) {
        std::string f = "spec.devices[" + std::to_string(i) + "]";
        const json& d = (*devices)[i];
        ValidateDevice(d, f, &names, &errs);
        bool dev_nodes = Get(d, "nodeName") || Get(d, "nodeSelector") || IsTrue(d, "allNodes");
        if (per_device && !dev_nodes) {
          Required(&errs, f,
                   "exactly one of `nodeName`, `nodeSelector`, `allNodes` is required when "
                   "`perDeviceNodeSelection` is set");
        } else if (!per_device && dev_nodes) {
          errs.push_back({f, "Forbidden",
                          "`nodeName`, `nodeSelector`, `allNodes` can only be set when "
                          "`perDeviceNodeSelection` is set",
                          "FieldValueForbidden"});
        }
      }
    }
  }
  return errs;
}

FieldErrors ValidateResourceClaimStatus(const json& claim) {
  FieldErrors errs;
  const json* status = Get(claim, "status");
  if (!status) return errs;
  const json* devices = Get(*status, "devices");
  if (!devices) return errs;
  if (!devices->is_array()) {
    Invalid(&errs, "status.devices", *devices, "must be a list");
    return errs;
  }
  // The allocated devices, keyed like the list-map entries (shareID included when set).
  std::set<std::string> allocated;
  const json* alloc = Get(*status, "allocation");
  const json* results = alloc ? Get(*alloc, "devices") : nullptr;
  results = results ? Get(*results, "results") : nullptr;
  if (results && results->is_array()) {
    for (const json& r : *results) {
      allocated.insert(GetString(r, "driver") + "/" + GetString(r, "pool") + "/" +
                       GetString(r, "device") + "/" + GetString(r, "shareID"));
    }
  }
  std::set<std::string> seen;
  static const std::regex reason_re("^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$");
  for (size_t i = 0; i < devices->size(); ++i) {
    std::string f = "status.devices[" + std::to_string(i) + "]";
    const json& d = (*devices)[i];
    if (!d.is_object()) {
      Invalid(&errs, f, d, "must be an object");
      continue;
    }
    std::string driver = GetString(d, "driver"), pool = GetString(d, "pool"),
                device = GetString(d, "device"), share = GetString(d, "shareID");
    if (driver.empty()) Required(&errs, f + ".driver");
    if (pool.empty()) Required(&errs, f + ".pool");
    if (device.empty()) Required(&errs, f + ".device");
    std::string key = driver + "/" + pool + "/" + device + "/" + share;
    json key_json = {{"driver", driver}, {"pool", pool}, {"device", device}};
    if (!share.empty()) key_json["shareID"] = share;
    if (!seen.insert(key).second) {
      Duplicate(&errs, f, key_json);
    } else if (!driver.empty() && !pool.empty() && !device.empty() && !allocated.count(key)) {
      Invalid(&errs, f, key_json, "must be an allocated device in the claim");
    }
    if (const json* conds = Get(d, "conditions")) {
      if (!conds->is_array()) {
        Invalid(&errs, f + ".conditions", *conds, "must be a list");
      } else {
        if (conds->size() > kMaxConditions) {
          TooMany(&errs, f + ".conditions", conds->size(), kMaxConditions);
        }
        std::set<std::string> types;
        for (size_t j = 0; j < conds->size(); ++j) {
          std::string cf = f + ".conditions[" + std::to_string(j) + "]";
          const json& c = (*conds)[j];
          std::string type = GetString(c, "type");
          if (type.empty()) {
            Required(&errs, cf + ".type");
          } else if (!types.insert(type).second) {
            Duplicate(&errs, cf + ".type", type);
          }
          std::string st = GetString(c, "status");
          if (st != "True" && st != "False" && st != "Unknown") {
            Unsupported(&errs, cf + ".status", st, "\"False\", \"True\", \"Unknown\"");
          }
          if (GetString(c, "lastTransitionTime").empty()) {
            Required(&errs, cf + ".lastTransitionTime", "must be set");
          }
          std::string reason = GetString(c, "reason");
          if (reason.empty()) {
            Required(&errs, cf + ".reason", "must be set");
          } else if (reason.size() > 1024) {
            TooLong(&errs, cf + ".reason", 1024);
          } else if (!std::regex_match(reason, reason_re)) {
            Invalid(&errs, cf + ".reason", reason,
                    "a condition reason must start with alphabetic character, optionally "
                    "followed by a string of alphanumeric characters or '_,:', and must end "
                    "with an alphanumeric character or '_' (regex used for validation is "
                    "'[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?')");
          }
          if (GetString(c, "message").size() > 32768) {
            TooLong(&errs, cf + ".message", 32768);
          }
        }
      }
    }
    if (const json* data = Get(d, "data")) {
      if (!data->is_object()) {
        Invalid(&errs, f + ".data", *data, "must be a JSON object");
      } else if (data->dump().size() > kMaxDeviceData) {
        TooLong(&errs, f + ".data", kMaxDeviceData);
      }
    }
    if (const json* nd = Get(d, "networkData")) {
      if (GetString(*nd, "interfaceName").size() > kMaxInterfaceName) {
        TooLong(&errs, f + ".networkData.interfaceName", kMaxInterfaceName);
      }
      if (GetString(*nd, "hardwareAddress").size() > kMaxHardwareAddress) {
        TooLong(&errs, f + ".networkData.hardwareAddress", kMaxHardwareAddress);
      }
      if (const json* ips = Get(*nd, "ips")) {
        if (!ips->is_array()) {
          Invalid(&errs, f + ".networkData.ips", *ips, "must be a list");
        } else {
          if (ips->size() > kMaxIps) TooMany(&errs, f + ".networkData.ips", ips->size(), kMaxIps);
          std::set<std::string> uniq;
          for (size_t j = 0; j < ips->size(); ++j) {
            std::string ipf = f + ".networkData.ips[" + std::to_string(j) + "]";
            const json& ip = (*ips)[j];
            if (!ip.is_string() || !IsCidr(ip.get<std::string>())) {
              Invalid(&errs, ipf, ip,
                      "must be a valid address in CIDR form, (e.g. 10.9.8.7/24 "
                      "or 2001:db8::1/64)");
            } else if (!uniq.insert(ip.get<std::string>()).second) {
              Duplicate(&errs, ipf, ip);
            }
          }
        }
      }
    }
  }
  return errs;
}

std::string InvalidMessage(const std::string& kind_group, const std::string& name,
                           const FieldErrors& errs) {
  std::string msg = kind_group + " \"" + name + "\" is invalid: ";
  if (errs.size() == 1) return msg + errs[0].ToString();
  msg += "[";
  for (size_t i = 0; i < errs.size(); ++i) {
    if (i) msg += ", ";
    msg += errs[i].ToString();
  }
  return msg + "]";
}

}  // namespace knd::localcp
