// CDI spec files for prepared claims (wire-facts.md §5). Prepare writes one spec per claim
// into the runtime's dynamic CDI directory (/var/run/cdi) and returns the fully-qualified
// device ids to the kubelet, which hands them to the runtime for the containers that use the
// claim. Unprepare removes the spec.
//
// Runtimes parse specs strictly and drop a whole file on any unknown key or too-new version,
// so the writer checks what it writes: kind and device-name syntax, known containerEdits keys
// only, non-empty edits per device, and the LOWEST cdiVersion that covers the fields used
// (CRI-O 1.32 accepts at most 0.8.0; netDevices / 1.1.0 only on the newest runtimes, never
// written here).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace knd::state {

struct CdiDevice {
  std::string name;                // short device name; the spec uses "<claim_uid>-<name>"
  nlohmann::json container_edits;  // CDI containerEdits object (env, deviceNodes, mounts, hooks,
                                   // intelRdt, additionalGids); must not be empty
};

// Writes `<cdi_dir>/<vendor>-<class>_<claim_uid>.json` atomically (replacing an older one) and
// returns the qualified ids `<vendor>/<class>=<claim_uid>-<name>` in device order.
// `vendor_class` is the CDI kind, e.g. "knd.k8s.cni.cncf.io/net". An empty device list writes
// nothing, removes a stale spec and returns no ids (a spec without devices is invalid).
absl::StatusOr<std::vector<std::string>> WriteClaimSpec(const std::string& cdi_dir,
                                                        const std::string& vendor_class,
                                                        const std::string& claim_uid,
                                                        const std::vector<CdiDevice>& devices);

// Removes the claim's spec; absent is success (Unprepare is retried).
absl::Status RemoveClaimSpec(const std::string& cdi_dir, const std::string& vendor_class,
                             const std::string& claim_uid);

// Building blocks, exposed for tests and for callers that check names up front.
// The spec JSON WriteClaimSpec would write (validated).
absl::StatusOr<nlohmann::json> BuildClaimSpec(const std::string& vendor_class,
                                              const std::string& claim_uid,
                                              const std::vector<CdiDevice>& devices);
// Lowest cdiVersion accepted for this spec content ("0.5.0", "0.6.0" or "0.7.0").
std::string MinimumCdiVersion(const nlohmann::json& spec);
// CDI kind "<vendor>/<class>" and device-name syntax checks; error says what is wrong.
absl::Status ValidateCdiKind(const std::string& kind);
absl::Status ValidateCdiDeviceName(const std::string& name);

}  // namespace knd::state
