// `kndctl status`: every device plan on this node, from knd-driver's state directory, checked
// against the live system.
//
// The state is read-only here: plan files are parsed directly (state::ClaimPlanFromJson), never
// through PlanStore, whose LoadAll() moves corrupt files aside — an operator's look must not
// change what the driver finds at its next start.
//
// Each device gives one row: pod, claim, request, device, in-pod name, mode (native or cni),
// plan state, and LIVE — where the device really is:
//   Attached            expected in result.netns: "ok", "renamed" (there under another name),
//                       "in host netns", "netns gone", "missing"
//   Prepared/Detached/  expected on the host: "ok", "in pod netns" (still in the namespace of
//   Failed              its last attach), "missing"
//   Attaching           either side is fine (a move in progress, or a crash mid-move)
//   any                 "unknown" when the check itself failed (permissions, netlink error)
// The device is recognised by its stable identity (state::DeviceIdentity): PCI address (host
// sysfs) and permanent MAC when known — a link with the right name but another permanent MAC
// is not ours —, else the MACs it is known to have had, else, when no MAC is known, its name.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "netlink/query.h"
#include "state/plan.h"

namespace knd::kndctl {

// The live system as the status check sees it (a seam: unit tests use a fake).
class LiveView {
 public:
  virtual ~LiveView() = default;
  // Links of the host network namespace.
  virtual absl::StatusOr<std::vector<netlink::Link>> HostLinks() = 0;
  // Links of the namespace at `netns_path`; NotFound when that namespace is gone.
  virtual absl::StatusOr<std::vector<netlink::Link>> LinksIn(const std::string& netns_path) = 0;
  // Netdev names the host's sysfs lists under a PCI function (empty when none or unknown).
  virtual std::vector<std::string> PciNetdevNames(const std::string& bdf) = 0;
  // The driver the host's sysfs says a PCI function is bound to ("" when none or unknown).
  virtual std::string PciDriver(const std::string& bdf) = 0;
};

// Netlink + sysfs. `host_netns` is the namespace that counts as the host ("" = this
// process's); `sysfs_root` is where PCI functions are looked up (it shows the links of the
// namespace that mounted it, so a match is also checked against the host's link list).
std::unique_ptr<LiveView> NewSystemLiveView(std::string host_netns, std::string sysfs_root);

// What identifies a device in one namespace.
struct LinkWant {
  std::vector<std::string> pci_names;  // names sysfs lists for its PCI function
  std::string perm_mac;
  std::vector<std::string> macs;   // any of these
  std::vector<std::string> names;  // used only when neither perm_mac nor macs are known
};
struct LinkMatch {
  netlink::Link link;
  std::string by;  // "pci", "permanent mac", "mac", "name"
};
std::optional<LinkMatch> FindLink(const std::vector<netlink::Link>& links, const LinkWant& want);

enum class Live { kOk, kRenamed, kInHost, kInPod, kNetnsGone, kMissing, kUnknown };
std::string_view ToString(Live l);
bool IsMismatch(Live l);  // everything but kOk

struct StatusRow {
  std::string pod_namespace, pod_name, pod_uid;  // empty when no pod is known yet
  std::string claim_namespace, claim_name, claim_uid;
  std::string request, device;
  std::string ifname;  // in-pod name (actual after attach, else the configured/default one)
  std::string mode;    // "native", "cni" or "vfio"
  std::string state;   // state::ToString(DeviceState)
  std::string netns;   // pod netns of the attach, if any
  Live live = Live::kUnknown;
  std::string live_detail;  // where/what was found, or why the check failed
  std::string matched_by;   // how the device was recognised ("" when not found)
  std::string note;         // the plan's note
};

struct StatusReport {
  std::string state_dir;
  std::vector<StatusRow> rows;
  std::vector<std::string> problems;  // plan files that could not be read
};

// Plans found under <state_dir>/plans/*.json (sorted by file name). Unreadable or corrupt
// files are listed in `problems`, never fatal; an unreadable state directory is an error.
struct PlanFiles {
  std::vector<state::ClaimPlan> plans;
  std::vector<std::string> problems;
};
absl::StatusOr<PlanFiles> ReadPlans(const std::string& state_dir);

// One row per device of every plan, each checked against `live`.
std::vector<StatusRow> BuildRows(const std::vector<state::ClaimPlan>& plans, LiveView& live);
// The check of one device (exposed for tests); fills live, live_detail, matched_by.
void CheckLive(const state::DevicePlan& dev, LiveView& live, StatusRow& row);

std::string RenderStatusText(const StatusReport& report);
nlohmann::json StatusToJson(const StatusReport& report);

// Registers `kndctl status`; the exit code goes to `rc`.
void AddStatusCommand(CLI::App& app, int& rc);

}  // namespace knd::kndctl
