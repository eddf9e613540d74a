// Node config of the inventory: which network devices of this node are published and with
// which Multus resourceName. A YAML file given to knd-driver / kndctl with --config:
//
//   driverName: knd.k8s.cni.cncf.io      # optional
//   include: [{ifName: "eth*"}, {driver: mlx5_core}, {pciVendor: "0x15b3"}, {virtual: false}]
//   exclude: [{ifName: "docker*"}]
//   resourceNames: [{selector: {ifName: "ens1f*"}, resourceName: "example.com/sriov_net_a"}]
//   includeUplinks: false
//
// A device is published when it matches any include selector (or include is empty) and no
// exclude selector; the first matching resourceNames rule names its resource. All fields of
// one selector must match (AND); string fields are fnmatch globs. Decoding is strict:
// unknown keys and wrong types are errors that name the field.
#pragma once

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

struct NodeConfig {
  std::string driver_name;  // empty: the default (or --driver-name)
  std::vector<DeviceSelector> include;
  std::vector<DeviceSelector> exclude;
  std::vector<ResourceNameRule> resource_names;
  bool include_uplinks = false;
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
// First matching resourceNames rule, "" when none.
std::string ResourceNameFor(const NodeConfig& cfg, const SelectorFacts& facts);
// "0x15B3" / "15b3" -> "0x15b3".
std::string NormalizeHexId(const std::string& id);

}  // namespace knd::config
