// Validation the stand-in API server applies before storing an object, mirroring the checks
// of the real kube-apiserver for the fields knd writes (wire-facts.md §4.1, §4.3): object
// names, ResourceSlice specs and ResourceClaim status.devices. Pure functions over JSON so
// they are tested without a server.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace knd::localcp {

// One field error, formatted like k8s.io/apimachinery field.Error: "<field>: <type>: <detail>".
struct FieldError {
  std::string field;   // e.g. "spec.devices[3].name"
  std::string type;    // "Required value", "Invalid value", "Too long", "Too many", ...
  std::string detail;  // human text; for "Invalid value" starts with the quoted value
  std::string reason;  // machine reason for Status causes, e.g. "FieldValueInvalid"

  std::string ToString() const;
};

using FieldErrors = std::vector<FieldError>;

bool IsDnsLabel(const std::string& s);      // RFC 1123 label, ≤63
bool IsDnsSubdomain(const std::string& s);  // RFC 1123 subdomain, ≤253
bool IsCIdentifier(const std::string& s);   // [A-Za-z_][A-Za-z0-9_]*
bool IsSemver(const std::string& s);        // semver.org 2.0.0
bool IsCidr(const std::string& s);          // "192.0.2.5/24" or "2001:db8::5/64"

// metadata.name (or generateName prefix when `generated`) of any object.
void ValidateObjectName(const std::string& name, bool generated, FieldErrors* errs);

// resource.k8s.io/v1 ResourceSlice (whole object).
FieldErrors ValidateResourceSlice(const nlohmann::json& slice);

// resource.k8s.io/v1 ResourceClaim status (status.devices against status.allocation).
FieldErrors ValidateResourceClaimStatus(const nlohmann::json& claim);

// "Kind.group \"name\" is invalid: <errors>" like the real server's Invalid Status message.
std::string InvalidMessage(const std::string& kind_group, const std::string& name,
                           const FieldErrors& errs);

}  // namespace knd::localcp
