// Read-only netlink queries: links, addresses and routes of the namespace a socket lives in,
// as plain structs (no libnl types leak out). Inventory and attach both build on these.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "netlink/socket.h"

namespace knd::netlink {

// Link attributes newer than Debian 12's <linux/if_link.h> (6.1): their values in Linux's
// enum (include/uapi/linux/if_link.h, Linux 6.3).
inline constexpr int kIflaGsoIpv4MaxSize = 63;  // IFLA_GSO_IPV4_MAX_SIZE
inline constexpr int kIflaGroIpv4MaxSize = 64;  // IFLA_GRO_IPV4_MAX_SIZE
inline constexpr int kIflaMaxKnown = kIflaGroIpv4MaxSize;

struct Link {
  int ifindex = 0;
  std::string name;
  std::string kind;       // IFLA_INFO_KIND ("veth", "bridge", ...); "" for hardware
  std::string mac;        // "aa:bb:cc:dd:ee:ff" (lower case); "" when the link has none
  std::string perm_mac;   // IFLA_PERM_ADDRESS; "" when the kernel reports none (virtual links)
  std::string operstate;  // "up", "down", "unknown", "lowerlayerdown", "dormant", ...
  uint32_t mtu = 0;
  uint32_t gso_max_size = 0;       // IFLA_GSO_MAX_SIZE; 0 = not reported
  uint32_t gro_max_size = 0;       // IFLA_GRO_MAX_SIZE (kernel >= 5.19); 0 = not reported
  uint32_t gso_ipv4_max_size = 0;  // IFLA_GSO_IPV4_MAX_SIZE (kernel >= 6.3); 0 = not reported
  uint32_t gro_ipv4_max_size = 0;  // IFLA_GRO_IPV4_MAX_SIZE (kernel >= 6.3)
  uint32_t flags = 0;              // IFF_* (IFF_UP, IFF_LOOPBACK, ...)
  int master_ifindex = 0;          // bridge/bond/VRF master; 0 = none
  uint32_t vrf_table = 0;          // kind "vrf": its routing table (IFLA_VRF_TABLE)
  int link_ifindex = 0;            // IFLA_LINK (veth peer, vlan/macvlan parent); 0 = none. May name
                                   // an ifindex of another namespace (veth peers).
  // IFLA_PARENT_DEV_NAME / _BUS_NAME (kernel >= 5.16): the bus device behind a netdev, e.g.
  // "0000:03:00.1" on "pci". Unlike sysfs, netlink answers for the socket's own namespace, so
  // this finds a PCI device inside a pod netns.
  std::string parent_dev;
  std::string parent_bus;
};

struct Address {
  int ifindex = 0;
  int family = 0;      // AF_INET / AF_INET6
  std::string cidr;    // "192.0.2.10/24", "2001:db8::1/64"
  int scope = 0;       // RT_SCOPE_UNIVERSE (0), RT_SCOPE_LINK (253), RT_SCOPE_HOST (254)
  uint32_t flags = 0;  // IFA_F_*
};

struct Route {
  int family = 0;
  std::string dst;      // CIDR; the default route is "0.0.0.0/0" or "::/0"
  std::string gateway;  // "" when directly connected
  int oif = 0;          // output interface of the (first) next hop; 0 = none
  uint32_t table = 0;   // RT_TABLE_MAIN (254), RT_TABLE_LOCAL (255), ...
  uint32_t priority = 0;
  int scope = 0;
  int protocol = 0;  // RTPROT_*
  int type = 0;      // RTN_UNICAST, RTN_LOCAL, ...

  bool IsDefault() const { return dst == "0.0.0.0/0" || dst == "::/0"; }
};

// All links of the socket's namespace, ordered by ifindex.
absl::StatusOr<std::vector<Link>> ListLinks(NlSock& sock);
// One link; NotFound when there is none with that index/name.
absl::StatusOr<Link> GetLink(NlSock& sock, int ifindex);
absl::StatusOr<Link> GetLinkByName(NlSock& sock, const std::string& name);

// The ifindex and MAC of the Ethernet link `name` in the socket's namespace, from two ioctls
// on the socket (SIOCGIFINDEX, SIOCGIFHWADDR) instead of an RTM_GETLINK and its full reply:
// for a caller that just made the link and needs nothing else. NotFound when there is no such
// link; FailedPrecondition when it is not Ethernet (use GetLinkByName).
struct LinkId {
  int ifindex = 0;
  std::string mac;
};
absl::StatusOr<LinkId> GetEtherLinkId(NlSock& sock, const std::string& name);

// An SR-IOV VF's settings as its PF reports them (IFLA_VFINFO_LIST of the PF's RTM_GETLINK
// with RTEXT_FILTER_VF). Fields the driver does not report stay unset.
struct VfConfig {
  int vf = 0;  // the VF's index on its PF (virtfnN)
  std::string mac;
  uint32_t vlan = 0;
  uint32_t qos = 0;
  std::optional<bool> spoof_check;
  std::optional<bool> trust;
  std::optional<uint32_t> link_state;  // IFLA_VF_LINK_STATE_AUTO (0), _ENABLE (1), _DISABLE (2)
  uint32_t min_tx_rate = 0;            // Mbps
  uint32_t max_tx_rate = 0;            // Mbps, 0 = unlimited
  bool operator==(const VfConfig&) const = default;
};

// VF `vf` of the PF `pf_ifindex`. NotFound when the PF reports no such VF.
absl::StatusOr<VfConfig> GetVfConfig(NlSock& sock, int pf_ifindex, int vf);

// Addresses of all links (ifindex 0) or of one link, ordered by (ifindex, family, cidr).
absl::StatusOr<std::vector<Address>> ListAddresses(NlSock& sock, int ifindex = 0);

// Routes of all tables, optionally only one family (AF_UNSPEC = both) and/or one output
// interface (0 = any). Cached/cloned routes are not included.
absl::StatusOr<std::vector<Route>> ListRoutes(NlSock& sock, int family = 0, int oif = 0);

// The text forms (FormatMac, FormatIp, FormatCidr) are common/net_addr.h.

}  // namespace knd::netlink
