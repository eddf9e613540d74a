// Discovery: which network devices this node offers, from netlink (links, addresses, routes)
// and sysfs (PCI, driver, SR-IOV, RDMA, NUMA), filtered by the node config. The decision
// parts (uplinks, sysfs facts, filtering) are functions over plain inputs so unit tests feed
// them fake trees; Scanner wires them to a real socket and /sys.
#pragma once

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "config/node_config.h"
#include "inventory/device.h"
#include "netlink/query.h"
#include "sysfs/reader.h"

namespace knd::inventory {

// What netlink says about one namespace.
struct NetlinkSnapshot {
  std::vector<netlink::Link> links;
  std::vector<netlink::Address> addresses;
  std::vector<netlink::Route> routes;
};

absl::StatusOr<NetlinkSnapshot> TakeSnapshot(netlink::NlSock& sock);

// ifindexes of the uplinks: links carrying a default route (IPv4 or IPv6, main table) and,
// transitively, what they are built on: ports/slaves enslaved to them (bridge, bond) and the
// IFLA_LINK parent of vlan/macvlan/macvtap/ipvlan/ipvtap uplinks. A veth's IFLA_LINK is its
// peer, not a parent, and is not followed.
std::set<int> FindUplinks(const NetlinkSnapshot& snap);

// Adds the sysfs facts of netdev d.ifname (PCI address/root, driver, ids, NUMA, speed,
// SR-IOV, RDMA, virtual). Returns false and changes nothing when `reader` has no
// class/net/<ifname> with the same ifindex, before or after the facts are read (the netdev
// was renamed, moved to another netns or deleted since d was dumped, or the reader shows
// another namespace).
bool FillFromSysfs(const sysfs::Reader& reader, Device& d);

// The facts a node-config selector matches on.
config::SelectorFacts FactsOf(const Device& d);

// Devices of a snapshot: loopback and (unless cfg.include_uplinks) uplinks left out, sysfs
// facts added when `reader` is given, node-config include/exclude applied, resourceName set,
// names assigned (unique). Sorted by name. With a reader, a link that FillFromSysfs cannot
// match is left out and its name added to `torn` (if given): its dump and its sysfs entry
// disagree, so publishing it would publish facts it does not have (a NIC without its PCI
// address is named after its ifName: a device that does not exist).
std::vector<Device> BuildDevices(const NetlinkSnapshot& snap, const sysfs::Reader* reader,
                                 const config::NodeConfig& cfg,
                                 std::vector<std::string>* torn = nullptr);

// A scan is torn when a link changes between the netlink dump and its sysfs reads (a device
// moved into a pod while the scan ran). BuildConsistent takes snapshots with `take` until
// one builds with nothing torn, at most kScanAttempts times; what is still torn then is left
// out (the change that tore it sends an event, so the next scan sees it settled). A dump
// the kernel marks interrupted (Aborted) is taken again too; any other failure of `take`, or
// an interrupted last attempt, is returned as it is.
inline constexpr int kScanAttempts = 3;
absl::StatusOr<std::vector<Device>> BuildConsistent(
    const std::function<absl::StatusOr<NetlinkSnapshot>()>& take, const sysfs::Reader* reader,
    const config::NodeConfig& cfg);

struct ScanOptions {
  config::NodeConfig config;
  // Namespace to scan ("" = this process's). For another namespace, /sys of this process
  // shows *our* namespace's netdevs, so the scan mounts a fresh sysfs (which the kernel
  // renders for the mounting thread's netns) in a private mount namespace on a short-lived
  // thread. Without the privilege to do that, the scan goes on without sysfs facts.
  std::string netns_path;
  std::string sysfs_root = "/sys";  // for the own namespace (tests use a fake tree)
};

class Scanner {
 public:
  explicit Scanner(ScanOptions opts) : opts_(std::move(opts)) {}
  absl::StatusOr<std::vector<Device>> Scan() const;

 private:
  ScanOptions opts_;
};

}  // namespace knd::inventory
