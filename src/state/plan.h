// The attach plan: what Prepare decided for one claim, and what the NRI hooks did with it.
// It is the only thing the DRA side and the NRI side share (docs/ARCHITECTURE.md).
//
// Lifecycle of a device in a plan:
//   kPrepared  — written by Prepare before it answers the kubelet (crash-safe).
//   kAttaching — written by RunPodSandbox *before* the device leaves the host, with the host
//                snapshot, so a crash mid-move can still restore it.
//   kAttached  — the device is configured in the pod netns.
//   kDetached  — the device is back on the host (or was destroyed with the netns, see
//                `note`); Unprepare then deletes the plan.
//   kFailed    — attach failed and was rolled back; `note` says why.
//
// A device that another component moved into the pod (the pod's CNI: Multus handing the
// device to a NAD, before knd's hook runs) is kAttached with `attached_by` = kAttachedByMultus:
// knd recorded it and never moves it; its teardown is Multus's (docs/multus.md).
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace knd::state {

enum class DeviceState { kPrepared, kAttaching, kAttached, kDetached, kFailed };

std::string_view ToString(DeviceState s);

// Stable identity of a host netdev: how we find it again even after a rename, a netns round
// trip or a driver restart. Lookups try, in order: PCI address, permanent MAC, then
// (ifindex, mac) as last seen.
struct DeviceIdentity {
  std::string pci_address;  // e.g. "0000:03:00.1", empty for non-PCI
  std::string perm_mac;     // IFLA_PERM_ADDRESS, empty when the kernel has none
  std::string mac;          // MAC as last seen on the host
  int ifindex = 0;          // ifindex as last seen (the kernel keeps it across netns moves
                            // unless it clashes)
  std::string ifname;       // host name at Prepare time
};

struct IpRoute {
  std::string destination;  // CIDR
  std::string gateway;      // may be empty
  uint32_t table = 254;
  uint32_t metric = 0;
  int scope = 0;  // RT_SCOPE_*
};

// What the device was on the host before it was taken, restored on detach.
// What an SR-IOV VF's PF had set for it before knd applied NetworkConfig.sriov (restored on
// teardown). `pf_pci` and `index` locate the VF on its PF.
struct VfSnapshot {
  std::string pf_pci;
  int index = 0;
  std::string mac;
  uint32_t vlan = 0;
  uint32_t qos = 0;
  std::optional<bool> spoof_check;
  std::optional<bool> trust;
  std::optional<uint32_t> link_state;
  uint32_t min_tx_rate = 0;
  uint32_t max_tx_rate = 0;
  bool operator==(const VfSnapshot&) const = default;
};

struct HostSnapshot {
  std::string ifname;
  uint32_t mtu = 0;
  std::string mac;
  bool up = false;
  std::vector<std::string> addresses;  // CIDRs
  std::vector<IpRoute> routes;         // routes through this device (main and other tables)
  // Per-interface sysctls ("ipv4.rp_filter" -> "1", config::InterfaceSysctls()), which a
  // netns round trip resets to the namespace defaults.
  std::map<std::string, std::string> sysctls;
  uint32_t gso_max_size = 0;  // 0 = not known (the kernel did not report it)
  uint32_t gro_max_size = 0;
  uint32_t gso_ipv4_max_size = 0;  // kernel >= 6.3
  uint32_t gro_ipv4_max_size = 0;
  // The host's wanted state of each ethtool feature (kernel name) the NetworkConfig sets.
  std::map<std::string, bool> ethtool_features;
  // The host's channel counts ("rx", "tx", "other", "combined") the NetworkConfig sets.
  std::map<std::string, uint32_t> ethtool_channels;
  std::map<std::string, uint32_t> ethtool_rings;  // ring sizes ("rx", "rxMini", "rxJumbo", "tx")
  std::map<std::string, bool> ethtool_private_flags;  // the driver's flags the config sets
  std::optional<VfSnapshot> vf;  // only when knd changed the VF's settings on its PF
};

// Result of an attach, reported in claim status and network-status.
struct AttachResult {
  std::string netns;             // pod netns path
  std::string ifname;            // in-pod name
  std::string mac;               // in-pod MAC
  std::vector<std::string> ips;  // CIDRs
  nlohmann::json cni_result;     // CNI ADD result, when attached through CNI
};

// DevicePlan::attached_by of a device the pod's CNI (Multus) attached; "" = knd attached it.
inline constexpr char kAttachedByMultus[] = "multus";

// A virtual child of a shared parent (node config `shared`), created in the pod netns on
// attach and deleted on detach; the parent (DevicePlan::identity) never leaves the host.
struct ChildPlan {
  std::string type;  // "macvlan", "ipvlan", "vlan"
  std::string mode;  // macvlan/ipvlan mode; "" for vlan
  uint32_t vlan_id = 0;
  std::string mac;  // macvlan: stable per claim and request (or interface.hardwareAddr)
  bool operator==(const ChildPlan&) const = default;
};

// A VF that Prepare bound to vfio-pci (NetworkConfig sriov.driver) for a userspace driver in the
// pod; Unprepare binds it back to `kernel_driver` and restores DevicePlan::host. Written before
// the VF leaves its kernel driver, so a crash at any point knows where to bring it back.
struct VfioPlan {
  std::string kernel_driver;  // the VF's driver before ("igbvf", "iavf", "mlx5_core")
  // Its IOMMU group ("12") and the character devices the pod gets (/dev/vfio/vfio,
  // /dev/vfio/12): empty until the VF is bound.
  std::string group;
  std::vector<std::string> device_nodes;
  bool operator==(const VfioPlan&) const = default;
};

struct DevicePlan {
  std::string request;  // base request name (no "/<sub>")
  std::string pool;
  std::string device;  // DRA device name
  // The allocation's shareID (a device with allowMultipleAllocations); "" otherwise.
  std::string share_id;
  DeviceIdentity identity;  // the host netdev (a child's parent)
  std::optional<ChildPlan> child;
  nlohmann::json config;       // merged + validated NetworkConfig (config::ToJson form)
  nlohmann::json ipam_result;  // IPAM allocation made in Prepare, if any
  DeviceState state = DeviceState::kPrepared;
  std::string pod_uid;  // pod the device is attached to (when kAttaching/kAttached)
  std::optional<HostSnapshot> host;
  std::optional<AttachResult> result;
  std::string attached_by;  // "" (knd) or kAttachedByMultus
  // The device's RDMA device (e.g. "mlx5_0") and the host character devices its containers
  // get as CDI deviceNodes (/dev/infiniband/uverbsN, ...); empty for a plain netdev.
  std::string rdma_device;
  std::vector<std::string> rdma_char_devices;
  std::optional<VfioPlan> vfio;  // the VF is (being) bound to vfio-pci
  std::string note;              // last failure or notable event, human readable
};

// The device sits in a pod (or is on its way there): knd must not hand it to anyone else.
// For a child that is the child; its parent stays on the host and serves other claims.
inline bool InPod(const DevicePlan& d) {
  return d.state == DeviceState::kAttaching || d.state == DeviceState::kAttached;
}

struct PodRef {
  std::string uid;
  std::string namespace_;
  std::string name;
};

struct ClaimPlan {
  std::string claim_uid;
  std::string claim_namespace;
  std::string claim_name;
  std::vector<PodRef> pods;  // status.reservedFor (pods only)
  std::vector<DevicePlan> devices;
  std::vector<std::string> cdi_device_ids;  // returned to the kubelet, per device order
  int64_t prepared_at_unix = 0;
};

// The plan file's format version ("version"), the only one this knd reads and writes.
inline constexpr int kPlanVersion = 1;

nlohmann::json ToJson(const ClaimPlan& plan);
// FailedPrecondition for a plan of another format version (a newer knd's: not guessed at);
// InvalidArgument for content that is no plan (no version, missing or mistyped fields).
absl::StatusOr<ClaimPlan> ClaimPlanFromJson(const nlohmann::json& j);

// The name the device has, or will have, in the pod: the attach result's, else the configured
// interface.name, else its host name.
std::string InPodName(const DevicePlan& d);

}  // namespace knd::state
