// NetworkConfig: the opaque parameters a DeviceClass or ResourceClaim gives knd
// (apiVersion knd.k8s.cni.cncf.io/v1alpha1, kind NetworkConfig; see docs/network-config.md).
//
// Decoding is strict (unknown fields, wrong types and bad values are refused) and every
// error names the object, the request and the field. Merging is field by field, class
// config first and claim config over it; a field given explicitly (even as 0/false/"") wins
// over an inherited one, which is why every field is std::optional.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace knd::config {

inline constexpr std::string_view kApiVersion = "knd.k8s.cni.cncf.io/v1alpha1";
inline constexpr std::string_view kKind = "NetworkConfig";
inline constexpr char kAttachedByKnd[] = "knd";
inline constexpr char kAttachedByMultus[] = "multus";

struct Route {
  std::string destination;             // CIDR ("0.0.0.0/0" allowed = default route)
  std::optional<std::string> gateway;  // same family as destination
  std::optional<uint32_t> table;       // a table other than main is a class-only knob
  std::optional<uint32_t> metric;
  bool operator==(const Route&) const = default;
};

// A permanent neighbour entry on the pod interface (ARP for IPv4, NDP for IPv6): the peer's
// MAC is known, no resolution on the wire.
struct Neighbor {
  std::string ip;
  std::string mac;
  bool operator==(const Neighbor&) const = default;
};

// A policy-routing rule in the pod netns (`ip rule`): traffic matching every selector that
// is set looks up `table`. Class-only, like routes in tables other than main.
struct Rule {
  uint32_t priority = 0;            // required, 1..32765 (between local and main)
  std::optional<std::string> from;  // source address or network
  std::optional<std::string> to;    // destination address or network
  std::optional<std::string> iif;   // input interface name in the pod
  std::optional<std::string> oif;   // output interface name in the pod
  std::optional<uint32_t> fwmark;   // packet mark (all bits)
  uint32_t table = 0;               // required
  bool operator==(const Rule&) const = default;
};

// interface.vrf: the pod interface joins the VRF `name` in the pod netns, an L3 master device
// whose routes are in `table` (knd makes it, up, when the pod has no link of that name; two
// interfaces of one pod may share it). DeviceClass only, like rules and other tables.
struct VrfConfig {
  std::string name;
  uint32_t table = 0;  // required: 1..4294967295 but not 253, 254, 255 (default, main, local)
  bool operator==(const VrfConfig&) const = default;
};

struct InterfaceConfig {
  std::optional<std::string> name;  // in-pod name; default: host ifName
  std::optional<uint32_t> mtu;      // 68..65535
  // The largest packet the pod's stack builds (GSO) / aggregates (GRO) on the interface,
  // 1..524280 bytes; above 65536 is BIG TCP.
  std::optional<uint32_t> gso_max_size;
  std::optional<uint32_t> gro_max_size;
  // The same for IPv4 packets (IPv4 BIG TCP, kernel >= 6.3); gso/groMaxSize above 65536 apply
  // to IPv6 only.
  std::optional<uint32_t> gso_ipv4_max_size;
  std::optional<uint32_t> gro_ipv4_max_size;
  std::optional<std::string> hardware_addr;           // class-only knob (unicast MAC)
  std::optional<std::vector<std::string>> addresses;  // CIDRs, v4 and/or v6
  // Per-interface sysctls in the pod netns, "ipv4.rp_filter" -> 2 (see InterfaceSysctls()).
  std::optional<std::map<std::string, int64_t>> sysctls;
  // Offload features over ethtool netlink, by the kernel's name ("rx-gro" -> false; the names
  // `ethtool -k` prints), set in the pod netns after the move and put back on the host.
  std::optional<std::map<std::string, bool>> ethtool_features;
  // Queue counts (`ethtool -L`: "rx", "tx", "other", "combined") and ring sizes (`ethtool -G`:
  // "rx", "rxMini", "rxJumbo", "tx"); the kinds not given stay as they are.
  std::optional<std::map<std::string, uint32_t>> ethtool_channels;
  std::optional<std::map<std::string, uint32_t>> ethtool_rings;
  // The driver's private flags (`ethtool --set-priv-flags`: "legacy-rx" -> true), by the names
  // `ethtool --show-priv-flags` prints; DeviceClass only.
  std::optional<std::map<std::string, bool>> ethtool_private_flags;
  std::optional<VrfConfig> vrf;
  bool operator==(const InterfaceConfig&) const = default;
};

// Whether `ic` sets anything through ethtool (interface.ethtool).
inline bool SetsEthtool(const InterfaceConfig& ic) {
  return (ic.ethtool_features && !ic.ethtool_features->empty()) || ic.ethtool_channels ||
         ic.ethtool_rings || (ic.ethtool_private_flags && !ic.ethtool_private_flags->empty());
}

// A per-interface sysctl, /proc/sys/net/<family>/conf/<ifname>/<key>, that a NetworkConfig
// may set (interface.sysctls) and that knd brings back when a device returns to the host
// (a netns round trip resets a device's per-interface sysctls to the namespace defaults).
// [min, max] is the range the kernel gives meaning to.
struct InterfaceSysctl {
  const char* family;  // "ipv4" or "ipv6"
  const char* key;
  int64_t min;
  int64_t max;
  // False: DeviceClass only. Forwarding and proxy ARP make the pod answer or route for other
  // hosts on the NIC's network, which is the node admin's choice like a MAC is.
  bool claim = true;
};
const std::vector<InterfaceSysctl>& InterfaceSysctls();

// Settings of an SR-IOV VF that only its PF can make (`sriov`; class-only: a VLAN or a MAC is a
// tenancy boundary that a namespace user must not choose). Applied through the PF's netlink
// (IFLA_VFINFO_LIST) before the VF moves into the pod, put back on teardown.
struct SriovConfig {
  std::optional<std::string> mac;         // VF MAC as the PF enforces it
  std::optional<uint32_t> vlan;           // 0..4095 (0 = untagged)
  std::optional<uint32_t> qos;            // 802.1p priority 0..7, with a vlan
  std::optional<bool> spoof_check;        // PF drops frames with another source MAC
  std::optional<bool> trust;              // VF may change MAC, promiscuous, ...
  std::optional<std::string> link_state;  // "auto", "enable" or "disable"
  std::optional<uint32_t> min_tx_rate_mbps;
  std::optional<uint32_t> max_tx_rate_mbps;  // 0 = unlimited
  // The PCI driver the VF is bound to while the claim holds it: only kVfioPci, for userspace
  // (DPDK) pods. Unset: the VF keeps its kernel driver and moves into the pod as a netdev.
  std::optional<std::string> driver;
  bool operator==(const SriovConfig&) const = default;
};
inline constexpr char kVfioPci[] = "vfio-pci";

// The virtual child knd creates in the pod on a shared parent (node config `shared`): a
// macvlan (modes bridge, private, vepa, passthru), an ipvlan (l2, l3, l3s) or an 802.1Q VLAN.
// Class-only: the mode decides what the pods of one parent can see of each other, the VLAN is
// a tenancy boundary. Without it a shared parent gets a macvlan in bridge mode.
inline constexpr char kChildMacvlan[] = "macvlan";
inline constexpr char kChildIpvlan[] = "ipvlan";
inline constexpr char kChildVlan[] = "vlan";
struct ChildConfig {
  std::optional<std::string> type;  // macvlan (default), ipvlan, vlan
  std::optional<std::string> mode;  // macvlan: bridge (default) ...; ipvlan: l2 (default) ...
  std::optional<uint32_t> vlan_id;  // vlan: 1..4094, required
  bool operator==(const ChildConfig&) const = default;
};

struct NadRef {
  std::string namespace_;  // empty = the claim's namespace
  std::string name;
  bool operator==(const NadRef&) const = default;
};

struct CniConfig {
  std::optional<NadRef> network_attachment;
  std::optional<nlohmann::json> config;  // inline conflist
  bool operator==(const CniConfig&) const = default;
};

// Who attaches the device in the pod (`attachedBy`). kMultus: knd only allocates and
// prepares; the pod's Multus hands the device to a NAD whose k8s.v1.cni.cncf.io/resourceName
// is the device's k8s.cni.cncf.io/resourceName, before knd's hook runs; knd records what it
// finds in the pod and leaves the teardown to Multus (docs/multus.md).
enum class AttachedBy { kKnd, kMultus };

struct NetworkConfig {
  std::optional<AttachedBy> attached_by;  // default kKnd
  InterfaceConfig interface;
  std::optional<nlohmann::json> ipam;  // a CNI IPAM plugin config object
  std::optional<std::vector<Route>> routes;
  std::optional<std::vector<Neighbor>> neighbors;
  std::optional<std::vector<Rule>> rules;
  std::optional<CniConfig> cni;
  std::optional<SriovConfig> sriov;
  std::optional<ChildConfig> child;
  bool operator==(const NetworkConfig&) const = default;
};

enum class Source { kClass, kClaim };

// One opaque config entry for knd, as found in claim.status.allocation.devices.config[].
struct Entry {
  Source source;
  std::vector<std::string> requests;  // empty = applies to all requests
  nlohmann::json parameters;
};

// Where a config is used; every error message carries it.
// What a claim (a namespace user) may run through CNI on the node, from the node config's
// `claimCni`. Without a policy a claim may not carry an inline `cni.config` or `ipam` at all
// (a DeviceClass or a NAD of the claim's namespace may). With one, a claim's inline plugins and
// IPAM must be of these types, and never name a host path (docs/network-config.md).
struct ClaimCniPolicy {
  std::set<std::string> plugins;  // CNI plugin types of an inline cni.config
  std::set<std::string> ipam;     // IPAM types, in `ipam` and inside the plugins
};

struct Context {
  std::string claim_namespace;
  std::string claim_name;
  std::string request;  // base request name of the device being configured
  // Subrequest chosen by a firstAvailable request ("" otherwise). Config entries naming
  // "<request>/<subrequest>" apply only when this matches; when empty such entries apply to
  // any subrequest of `request`.
  std::string subrequest = {};
  const ClaimCniPolicy* claim_cni = nullptr;  // null: claims may not run their own CNI/IPAM
};

// attachedBy: "multus" (config unset = knd).
// The claim's VF is bound to vfio-pci (sriov.driver): it has no netdev while the claim holds
// it, and the pod gets its VFIO group's character devices instead of an interface.
inline bool UsesVfio(const NetworkConfig& cfg) {
  return cfg.sriov && cfg.sriov->driver == kVfioPci;
}

inline bool AttachedByMultus(const NetworkConfig& cfg) {
  return cfg.attached_by == AttachedBy::kMultus;
}

// Strictly decodes one parameters object. `where` prefixes error messages
// (e.g. `claim team-a/rdma request "nic" (from claim config)`).
absl::StatusOr<NetworkConfig> Decode(const nlohmann::json& parameters, std::string_view where);

// Merges `over` onto `base`, field by field; any field present in `over` wins.
NetworkConfig Merge(const NetworkConfig& base, const NetworkConfig& over);

// Decodes, checks source privileges, merges (class entries first, then claim entries, each
// in list order; only entries whose `requests` is empty or contains ctx.request) and
// validates the result. Returns InvalidArgument naming claim, request and field.
absl::StatusOr<NetworkConfig> Resolve(const std::vector<Entry>& entries, const Context& ctx);

// Validation of a merged config (names, MTU, CIDRs, gateway families, cni/ipam shape).
absl::Status Validate(const NetworkConfig& cfg, std::string_view where);

// Round-trip to the JSON form stored in plans (same schema as the user-facing one).
nlohmann::json ToJson(const NetworkConfig& cfg);

// Interface-name rules used everywhere: 1..15 bytes, not "." / "..", no '/', ':' or
// whitespace, not "lo". Returns a human reason when invalid, nullopt when fine.
std::optional<std::string> InvalidIfName(std::string_view name);

}  // namespace knd::config
