// The write side of netlink: move a link into another network namespace, rename/configure
// it, add and remove addresses and routes, write per-interface sysctls. Used by the native
// attacher (src/attach/); reads (links, addresses, routes) are in netlink/query.h.
//
// Messages are built by hand (ifinfomsg/ifaddrmsg/rtmsg + attributes) and sent on an NlSock
// from netlink/socket.h, so one RTM_NEWLINK can carry the netns move, the new name, the MTU
// and the MAC at once (design.md "Budgets": the move is the expensive part, everything else
// rides along). Errors keep the kernel's errno, so a message reads like
// "add route 198.51.100.0/24 via 192.0.2.1: Network is unreachable".
//
// Idempotency: adding an address or route that already exists is success; deleting one that
// is already gone is success.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/net_addr.h"
#include "netlink/socket.h"

namespace knd::netlink {

// A route to add or delete (RTM_NEWROUTE / RTM_DELROUTE).
struct RouteSpec {
  std::string destination;  // CIDR; "0.0.0.0/0" / "::/0" for default
  std::string gateway;      // empty = directly connected
  uint32_t table = 254;     // RT_TABLE_MAIN
  uint32_t metric = 0;
  // RT_SCOPE_*; unset = RT_SCOPE_LINK without gateway, RT_SCOPE_UNIVERSE with one.
  std::optional<int> scope;
};

// A policy-routing rule (`ip rule`): traffic that matches every selector set looks up
// `table`. `family` is AF_INET or AF_INET6 and must match `from`/`to` when they are set.
struct RuleSpec {
  int family = 0;
  uint32_t priority = 0;
  std::string from;  // CIDR or address; empty = any source
  std::string to;    // CIDR or address; empty = any destination
  std::string iif;   // empty = any input interface
  std::string oif;   // empty = any output interface
  std::optional<uint32_t> fwmark;
  uint32_t table = 0;
};
// "rule 100 from 192.0.2.10 lookup 100", for errors.
std::string RuleText(const RuleSpec& rule);

// What one RTM_NEWLINK changes; unset fields are left alone.
struct LinkChange {
  int netns_fd = -1;                     // IFLA_NET_NS_FD: move into this namespace first
  std::optional<std::string> name;       // IFLA_IFNAME
  std::optional<uint32_t> mtu;           // IFLA_MTU
  std::optional<uint32_t> gso_max_size;  // IFLA_GSO_MAX_SIZE
  std::optional<uint32_t> gro_max_size;  // IFLA_GRO_MAX_SIZE
  // IFLA_GSO_IPV4_MAX_SIZE / IFLA_GRO_IPV4_MAX_SIZE (kernel >= 6.3; older kernels ignore them)
  std::optional<uint32_t> gso_ipv4_max_size;
  std::optional<uint32_t> gro_ipv4_max_size;
  std::optional<std::string> mac;  // IFLA_ADDRESS
  std::optional<bool> up;          // IFF_UP via ifi_flags/ifi_change
};

// Sends one RTM_NEWLINK for `ifindex`. The kernel (6.x do_setlink) applies the namespace move
// first, then MAC, MTU, name and flags. The new name is used for the move itself only when
// the current name is taken in the target namespace; otherwise the link moves under its
// current name and is renamed afterwards. So a later step failing (a new name already used
// there -> AlreadyExists, an MTU the driver refuses) leaves the link MOVED: callers must check
// where it ended up (and check the name beforehand to fail without changes).
absl::Status ChangeLink(NlSock& sock, int ifindex, const LinkChange& change);
absl::Status SetLinkUp(NlSock& sock, int ifindex, bool up);

// A virtual child of `parent_ifindex` (a link of the socket's namespace), created by one
// RTM_NEWLINK (NLM_F_CREATE|NLM_F_EXCL) directly in the namespace of `netns_fd` with its final
// name, MTU and MAC: no move, no rename. kind "macvlan" (mode bridge/private/vepa/passthru),
// "ipvlan" (l2/l3/l3s) or "vlan" (802.1Q, vlan_id). The link is created down.
struct ChildLink {
  std::string kind;
  std::string mode;  // "" = the kernel's default
  uint32_t vlan_id = 0;
  int parent_ifindex = 0;
  int netns_fd = -1;
  std::string name;
  std::optional<uint32_t> mtu;
  std::optional<uint32_t> gso_max_size;
  std::optional<uint32_t> gro_max_size;
  std::optional<uint32_t> gso_ipv4_max_size;
  std::optional<uint32_t> gro_ipv4_max_size;
  std::optional<std::string> mac;
};
// AlreadyExists when the name is taken in the target namespace; InvalidArgument for a mode or
// kind knd does not know; the kernel's errno otherwise (EOPNOTSUPP: no such link type).
absl::Status CreateChildLink(NlSock& sock, const ChildLink& child);
// A VRF (an L3 master device) `name` whose routes are in `table`, created up in the socket's
// namespace by one RTM_NEWLINK (NLM_F_CREATE|NLM_F_EXCL). AlreadyExists when the name is taken;
// Unimplemented when the kernel has no VRF (CONFIG_NET_VRF).
absl::Status CreateVrf(NlSock& sock, const std::string& name, uint32_t table);
// RTM_DELLINK; NotFound when there is no such link.
absl::Status DeleteLink(NlSock& sock, int ifindex);

// What one RTM_SETLINK on an SR-IOV PF sets for its VF `vf`; unset fields are left alone.
// Each setting is its own IFLA_VF_* attribute in one IFLA_VFINFO_LIST, so the kernel applies
// them in order and stops at the first the driver refuses (naming it in the error is ours).
struct VfChange {
  int vf = 0;
  std::optional<std::string> mac;
  std::optional<std::pair<uint32_t, uint32_t>> vlan_qos;
  std::optional<bool> spoof_check;
  std::optional<bool> trust;
  std::optional<uint32_t> link_state;                    // IFLA_VF_LINK_STATE_*
  std::optional<std::pair<uint32_t, uint32_t>> tx_rate;  // min, max Mbps
};
absl::Status SetVf(NlSock& sock, int pf_ifindex, const VfChange& change);

// Adds `cidr` to `ifindex` with IFA_F_* `flags` (e.g. IFA_F_NODAD); already present = OK.
absl::Status AddAddress(NlSock& sock, int ifindex, const std::string& cidr, uint32_t flags = 0);
// Removes `cidr` from `ifindex`; already absent = OK.
absl::Status DelAddress(NlSock& sock, int ifindex, const std::string& cidr);

// Adds a unicast route through `oif`; an identical route already present = OK.
absl::Status AddRoute(NlSock& sock, int oif, const RouteSpec& route);
// Requests sent in one sendmsg: the kernel handles them in order and acks each, so a pod's
// addresses, "up" and routes cost one send instead of one round trip each. The kernel goes on
// after a request fails; Send reads every ack and returns the first failure in request order,
// named by its request. Like their one-shot forms, an address or route that exists counts as
// added.
class Batch {
 public:
  absl::Status AddAddress(int ifindex, const std::string& cidr, uint32_t flags = 0);
  absl::Status SetLinkUp(int ifindex, bool up);
  // Enslaves `ifindex` to `master_ifindex` (IFLA_MASTER: a bridge, bond or VRF). A VRF takes
  // a link that is up down and up again (dropping its IPv6 addresses): enslave it first.
  absl::Status SetMaster(int ifindex, int master_ifindex);
  absl::Status AddRoute(int oif, const RouteSpec& route);
  // A permanent neighbour entry (ARP for IPv4, NDP for IPv6) on `ifindex`: `ip` is reached
  // at `mac` without resolution. An entry for `ip` that exists is replaced.
  absl::Status AddNeighbor(int ifindex, const std::string& ip, const std::string& mac);
  // A policy-routing rule (RTM_NEWRULE, exclusive); an identical rule that exists counts as
  // added, and its request's result (Send) is AlreadyExists.
  absl::Status AddRule(const RuleSpec& rule);
  size_t size() const { return reqs_.size(); }
  // `results`, when given, gets each request's own outcome, in request order (before
  // "exists counts as added"): what to undo after a failure.
  absl::Status Send(NlSock& sock, std::vector<absl::Status>* results = nullptr);

 private:
  struct Req {
    NlMsgPtr msg;
    std::string what;
    bool exists_ok = false;
  };
  std::vector<Req> reqs_;
};
// Deletes a route through `oif`; already absent = OK.
absl::Status DelRoute(NlSock& sock, int oif, const RouteSpec& route);
// Deletes the rule with exactly these selectors, priority and table; already absent = OK.
absl::Status DelRule(NlSock& sock, const RuleSpec& rule);

// Writes `value` to a /proc/sys file. /proc/sys/net is per network namespace *of the thread
// that opens it*: call this from inside netns::RunIn() for another namespace.
absl::Status WriteSysctl(const std::string& path, const std::string& value);
// One per-interface sysctl, /proc/sys/net/<family>/conf/<ifname>/<key>.
struct InterfaceConf {
  std::string family;  // "ipv4" or "ipv6"
  std::string key;
  std::string value;
  // knd's own defaults (IPv6 RA off, ...) are skipped where the kernel or the netns has no
  // IPv6; what a NetworkConfig asked for is an error there.
  bool required = true;
};
// Writes each setting in order, in the calling thread's netns (call it from inside
// netns::RunIn() for another namespace). `ifname` must be a plain interface name.
absl::Status SetInterfaceConfHere(const std::string& ifname,
                                  const std::vector<InterfaceConf>& settings);
// The same on one helper thread inside `ns`.
absl::Status SetInterfaceConf(const netns::Netns& ns, const std::string& ifname,
                              const std::vector<InterfaceConf>& settings);
// The value (without the newline) of /proc/sys/net/<family>/conf/<ifname>/<key> in the
// calling thread's netns; NotFound when the file does not exist.
absl::StatusOr<std::string> ReadInterfaceConf(const std::string& ifname, const std::string& family,
                                              const std::string& key);

// The text forms of addresses (ParseIpOrCidr, FormatCidr, ParseMac, ...) are common/net_addr.h.

}  // namespace knd::netlink
