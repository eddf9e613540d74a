// The device model: one network device this node can offer, with everything the
// ResourceSlice publishes about it (attribute names: docs/attributes.md, design.md).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace knd::inventory {

struct Device {
  std::string name;  // DRA device name: pci-<domain>-<bus>-<dev>-<fn>, the ifName when it is a
                     // DNS label, else net-<stable hash>
  std::string ifname;
  int ifindex = 0;
  std::string mac;
  std::string perm_mac;  // empty when the kernel reports none
  uint32_t mtu = 0;
  std::string kind;       // link kind ("veth", "macvlan", ...; "device" for hardware)
  std::string operstate;  // "up", "down", "unknown", ...
  std::optional<int64_t> speed_mbps;
  std::string driver;       // kernel driver
  std::string pci_address;  // "0000:03:00.0"
  std::string pci_vendor;   // "0x15b3"
  std::string pci_device;   // "0x1017"
  std::optional<int> numa_node;
  std::string pcie_root;  // "pci0000:00"
  bool sriov = false;     // is an SR-IOV PF
  int sriov_total_vfs = 0;
  int sriov_num_vfs = 0;
  bool is_sriov_vf = false;
  std::string pf_name;
  bool is_virtual = false;
  std::string rdma_device;        // e.g. "mlx5_0"
  std::vector<std::string> ipv4;  // global addresses, CIDR, sorted
  std::vector<std::string> ipv6;
  std::string resource_name;  // Multus k8s.cni.cncf.io/resourceName from node config
  // A parent for per-claim virtual children (node config `shared`): published with
  // allowMultipleAllocations and these capacities, never for exclusive use.
  struct Shared {
    int64_t max_children = 0;
    std::string bandwidth;            // bit/s quantity, "" = not published
    std::string bandwidth_per_child;  // the default a claim consumes
    bool operator==(const Shared&) const = default;
  };
  std::optional<Shared> shared;
};

}  // namespace knd::inventory
