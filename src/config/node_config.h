// Node config of the inventory: which network devices of this node are published and with
// which Multus resourceName. A YAML file given to knd-driver / kndctl with --config:
//
//   driverName: knd.k8s.cni.cncf.io      # optional
//   include: [{ifName: "eth*"}, {driver: mlx5_core}, {pciVendor: "0x15b3"}, {virtual: false}]
//   exclude: [{ifName: "docker*"}]
//   resourceNames: [{selector: {ifName: "ens1f*"}, resourceName: "example.com/sriov_net_a"}]
//   includeUplinks: false
//   shared: [{selector: {ifName: "ens2f0"}, maxChildren: 16, bandwidth: "25G",
//             bandwidthPerChild: "1G"}]
//   claimCni: {plugins: [macvlan, tuning], ipam: [host-local, static]}
//
// A device is published when it matches any include selector (or include is empty) and no
// exclude selector; the first matching resourceNames rule names its resource. A device that
// matches a `shared` rule (the first one counts) is a parent for virtual children (macvlan,
// ipvlan, VLAN) created per claim in the pod: it is published once, for sharing
// (allowMultipleAllocations with consumable capacity), never for exclusive use, also when it
// is an uplink or not in `include` (it never leaves the host); `exclude` still wins. All fields of
// one selector must match (AND); string fields are fnmatch globs. Decoding is strict:
// unknown keys and wrong types are errors that name the field.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace knd::config {

struct DeviceSelector {
  std::optional<std::string> if_name;      // ifName (glob)
  std::optional<std::string> driver;       // kernel driver (glob)
  std::optional<std::string> pci_vendor;   // pciVendor: "0x15b3" (also "15b3"); exact
  std::optional<std::string> pci_device;   // pciDevice: "0x1017"; exact
  std::optional<std::string> pci_address;  // pciAddress: "0000:03:00.*" (glob)
  std::optional<std::string> type;         // link kind: "veth", "device" (glob)
  std::optional<bool> is_virtual;          // virtual
  std::optional<bool> rdma;
  std::optional<bool> is_sriov_vf;  // isSriovVf
};

struct ResourceNameRule {
  DeviceSelector selector;
  std::string resource_name;
};

// A parent NIC shared among claims (docs/shared-nics.md).
struct SharedRule {
  DeviceSelector selector;
  int64_t max_children = 0;  // capacity knd.k8s.cni.cncf.io/children, 1..4096
  // Capacity knd.k8s.cni.cncf.io/bandwidth in bit/s (a Kubernetes quantity, "25G"), and what a
  // claim that asks for none consumes; empty = not published. Scheduling only: knd does not
  // shape the children's traffic.
  std::string bandwidth;
  std::string bandwidth_per_child;
};

// What a ResourceClaim may run through CNI itself on this node (docs/network-config.md):
// plugin types of an inline cni.config, IPAM types. Absent: nothing.
struct ClaimCniRule {
  std::vector<std::string> plugins;
  std::vector<std::string> ipam;
};

struct NodeConfig {
  std::string driver_name;  // empty: the default (or --driver-name)
  std::vector<DeviceSelector> include;
  std::vector<DeviceSelector> exclude;
  std::vector<ResourceNameRule> resource_names;
  bool include_uplinks = false;
  std::vector<SharedRule> shared;
  std::optional<ClaimCniRule> claim_cni;
};

// The facts a selector looks at (filled by the inventory from a device).
struct SelectorFacts {
  std::string if_name, driver, pci_vendor, pci_device, pci_address, type;
  bool is_virtual = false, rdma = false, is_sriov_vf = false;
};

// Decodes YAML text; `source` (a file name) prefixes error messages. Empty text -> defaults.
absl::StatusOr<NodeConfig> ParseNodeConfig(const std::string& yaml,
                                           const std::string& source = "node config");
// Reads and decodes a file.
absl::StatusOr<NodeConfig> LoadNodeConfig(const std::string& path);

bool Matches(const DeviceSelector& sel, const SelectorFacts& facts);
// include/exclude decision.
bool Selected(const NodeConfig& cfg, const SelectorFacts& facts);
// First matching shared rule, nullptr when none (exclude is the caller's: Excluded()).
const SharedRule* SharedRuleFor(const NodeConfig& cfg, const SelectorFacts& facts);
bool Excluded(const NodeConfig& cfg, const SelectorFacts& facts);
// A Kubernetes quantity of bits per second, as ParseNodeConfig accepts it ("25G", "100M",
// "1000000"): decimal SI suffixes k, M, G, T or none, a whole number; nullopt otherwise.
std::optional<int64_t> ParseBitRate(const std::string& q);
// First matching resourceNames rule, "" when none.
std::string ResourceNameFor(const NodeConfig& cfg, const SelectorFacts& facts);
// "0x15B3" / "15b3" -> "0x15b3".
std::string NormalizeHexId(const std::string& id);

}  // namespace knd::config
