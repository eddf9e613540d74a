#include "inventory/discovery.h"

#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status.h"
#include "inventory/slices.h"
#include "netns/netns.h"
#include "spdlog/spdlog.h"

namespace knd::inventory {

absl::StatusOr<NetlinkSnapshot> TakeSnapshot(netlink::NlSock& sock) {
  NetlinkSnapshot s;
  ASSIGN_OR_RETURN(s.links, netlink::ListLinks(sock));
  ASSIGN_OR_RETURN(s.addresses, netlink::ListAddresses(sock));
  ASSIGN_OR_RETURN(s.routes, netlink::ListRoutes(sock));
  return s;
}

std::set<int> FindUplinks(const NetlinkSnapshot& snap) {
  std::set<int> up;
  for (const auto& r : snap.routes) {
    if (r.IsDefault() && r.table == RT_TABLE_MAIN && r.type == RTN_UNICAST && r.oif > 0) {
      up.insert(r.oif);
    }
  }
  static const std::set<std::string> kStacked = {"vlan", "macvlan", "macvtap", "ipvlan", "ipvtap"};
  for (bool changed = true; changed;) {
    changed = false;
    for (const auto& l : snap.links) {
      if (up.count(l.ifindex) > 0) {
        if (kStacked.count(l.kind) > 0 && l.link_ifindex > 0 && l.link_ifindex != l.ifindex &&
            up.insert(l.link_ifindex).second) {
          changed = true;
        }
      } else if (l.master_ifindex > 0 && up.count(l.master_ifindex) > 0) {
        up.insert(l.ifindex);
        changed = true;
      }
    }
  }
  return up;
}

namespace {

bool IsBdf(const std::string& s) { return !PciDeviceName(s).empty(); }

std::optional<int64_t> Int(const sysfs::Reader& r, const std::string& rel) {
  absl::StatusOr<int64_t> v = r.ReadInt(rel);
  if (!v.ok()) return std::nullopt;
  return *v;
}

std::string Str(const sysfs::Reader& r, const std::string& rel) {
  absl::StatusOr<std::string> v = r.ReadString(rel);
  return v.ok() ? *v : "";
}

std::string FirstEntry(const sysfs::Reader& r, const std::string& rel) {
  absl::StatusOr<std::vector<std::string>> v = r.ListDir(rel);
  return v.ok() && !v->empty() ? v->front() : "";
}

}  // namespace

namespace {

// Is class/net/<ifname> the netdev with d's ifindex?
bool SameNetdev(const sysfs::Reader& reader, const Device& d) {
  const std::string base = "class/net/" + d.ifname;
  if (d.ifname.empty() || !reader.Exists(base)) return false;
  std::optional<int64_t> idx = Int(reader, base + "/ifindex");
  return idx && *idx == d.ifindex;
}

void AddSysfsFacts(const sysfs::Reader& reader, Device& d);

}  // namespace

bool FillFromSysfs(const sysfs::Reader& reader, Device& d) {
  if (!SameNetdev(reader, d)) return false;
  Device facts = d;
  AddSysfsFacts(reader, facts);
  // The netdev may have been renamed or moved to another netns while its files were read
  // (a move closes it first, so its speed reads as unknown): then the facts are not its.
  if (!SameNetdev(reader, d)) return false;
  d = std::move(facts);
  return true;
}

namespace {

void AddSysfsFacts(const sysfs::Reader& reader, Device& d) {
  const std::string base = "class/net/" + d.ifname;
  absl::StatusOr<std::string> where = reader.Resolve(base);
  if (where.ok()) d.is_virtual = absl::StartsWith(*where, "devices/virtual/");
  // speed reads -1 (or fails with EINVAL) while the link is down or has no carrier.
  if (std::optional<int64_t> speed = Int(reader, base + "/speed"); speed && *speed > 0) {
    d.speed_mbps = *speed;
  }
  absl::StatusOr<std::string> driver = reader.ReadLink(base + "/device/driver");
  if (driver.ok()) d.driver = sysfs::Basename(*driver);

  absl::StatusOr<std::string> dev = reader.Resolve(base + "/device");
  if (!dev.ok()) return;
  // The PCI function is the device itself or its nearest PCI ancestor (virtio-net hangs a
  // virtioN device below the PCI function).
  std::vector<std::string> parts = absl::StrSplit(*dev, '/');
  size_t bdf_at = parts.size();
  for (size_t i = parts.size(); i-- > 0;) {
    if (IsBdf(parts[i])) {
      bdf_at = i;
      break;
    }
  }
  if (bdf_at == parts.size()) return;
  std::string pci_dir;
  for (size_t i = 0; i <= bdf_at; ++i) pci_dir += (i ? "/" : "") + parts[i];
  d.pci_address = parts[bdf_at];
  if (parts.size() > 1 && parts[0] == "devices" && absl::StartsWith(parts[1], "pci")) {
    d.pcie_root = parts[1];
  }
  d.pci_vendor = Str(reader, pci_dir + "/vendor");
  d.pci_device = Str(reader, pci_dir + "/device");
  if (std::optional<int64_t> numa = Int(reader, pci_dir + "/numa_node"); numa && *numa >= 0) {
    d.numa_node = static_cast<int>(*numa);
  }
  if (std::optional<int64_t> total = Int(reader, pci_dir + "/sriov_totalvfs");
      total && *total > 0) {
    d.sriov = true;
    d.sriov_total_vfs = static_cast<int>(*total);
    d.sriov_num_vfs = static_cast<int>(Int(reader, pci_dir + "/sriov_numvfs").value_or(0));
  }
  if (reader.Exists(pci_dir + "/physfn")) {
    d.is_sriov_vf = true;
    d.pf_name = FirstEntry(reader, pci_dir + "/physfn/net");
  }
  d.rdma_device = FirstEntry(reader, pci_dir + "/infiniband");
  if (d.rdma_device.empty()) {
    // Older kernels/drivers: find the RDMA device whose parent is this PCI function.
    absl::StatusOr<std::vector<std::string>> ib = reader.ListDir("class/infiniband");
    if (ib.ok()) {
      for (const auto& name : *ib) {
        absl::StatusOr<std::string> p = reader.Resolve("class/infiniband/" + name + "/device");
        if (p.ok() && *p == pci_dir) {
          d.rdma_device = name;
          break;
        }
      }
    }
  }
}

}  // namespace

config::SelectorFacts FactsOf(const Device& d) {
  config::SelectorFacts f;
  f.if_name = d.ifname;
  f.driver = d.driver;
  f.pci_vendor = d.pci_vendor;
  f.pci_device = d.pci_device;
  f.pci_address = d.pci_address;
  f.type = d.kind;
  f.is_virtual = d.is_virtual;
  f.rdma = !d.rdma_device.empty();
  f.is_sriov_vf = d.is_sriov_vf;
  return f;
}

std::vector<Device> BuildDevices(const NetlinkSnapshot& snap, const sysfs::Reader* reader,
                                 const config::NodeConfig& cfg, std::vector<std::string>* torn) {
  std::set<int> uplinks = FindUplinks(snap);
  std::vector<Device> out;
  for (const auto& l : snap.links) {
    if (l.flags & IFF_LOOPBACK) continue;
    // A shared parent never leaves the host, so an uplink may be one; decided below.
    const bool uplink = !cfg.include_uplinks && uplinks.count(l.ifindex) > 0;
    if (uplink && cfg.shared.empty()) continue;
    Device d;
    d.ifname = l.name;
    d.ifindex = l.ifindex;
    d.mac = l.mac;
    d.perm_mac = l.perm_mac;
    d.mtu = l.mtu;
    d.kind = l.kind.empty() ? "device" : l.kind;
    d.operstate = l.operstate;
    // Without sysfs, a link with a kind (veth, bridge, ...) is a software device.
    d.is_virtual = !l.kind.empty();
    if (reader != nullptr && !FillFromSysfs(*reader, d)) {
      // Renamed, moved to another netns or deleted since the dump: what is known of it is
      // neither what the dump said nor what sysfs says. Left out of this scan.
      if (torn != nullptr) torn->push_back(l.name);
      continue;
    }
    for (const auto& a : snap.addresses) {
      if (a.ifindex != l.ifindex || a.scope != RT_SCOPE_UNIVERSE) continue;
      (a.family == AF_INET ? d.ipv4 : d.ipv6).push_back(a.cidr);
    }
    std::sort(d.ipv4.begin(), d.ipv4.end());
    std::sort(d.ipv6.begin(), d.ipv6.end());
    config::SelectorFacts facts = FactsOf(d);
    if (const config::SharedRule* rule = config::SharedRuleFor(cfg, facts)) {
      if (config::Excluded(cfg, facts)) continue;
      d.shared = Device::Shared{rule->max_children, rule->bandwidth, rule->bandwidth_per_child};
    } else if (uplink || !config::Selected(cfg, facts)) {
      continue;
    }
    d.resource_name = config::ResourceNameFor(cfg, facts);
    out.push_back(std::move(d));
  }
  AssignNames(out);
  std::sort(out.begin(), out.end(),
            [](const Device& a, const Device& b) { return a.name < b.name; });
  return out;
}

absl::StatusOr<std::vector<Device>> BuildConsistent(
    const std::function<absl::StatusOr<NetlinkSnapshot>()>& take, const sysfs::Reader* reader,
    const config::NodeConfig& cfg) {
  std::vector<std::string> torn;
  std::vector<Device> devices;
  for (int attempt = 1; attempt <= kScanAttempts; ++attempt) {
    absl::StatusOr<NetlinkSnapshot> snap = take();
    if (absl::IsAborted(snap.status()) && attempt < kScanAttempts) continue;  // interrupted
    if (!snap.ok()) return snap.status();
    torn.clear();
    devices = BuildDevices(*snap, reader, cfg, &torn);
    if (torn.empty()) break;
    spdlog::debug("scan: {} changed during scan {} of {}", absl::StrJoin(torn, ", "), attempt,
                  kScanAttempts);
  }
  if (!torn.empty()) {
    spdlog::warn(
        "scan: {} changed between the netlink dump and its sysfs entry in each of {} "
        "scans; left out of this one",
        absl::StrJoin(torn, ", "), kScanAttempts);
  }
  return devices;
}

namespace {

// Runs on a RunIn() thread that is inside the target netns: give the thread its own mount
// namespace and mount a sysfs there, so /sys/class/net shows this netns's devices.
absl::StatusOr<std::vector<Device>> ScanInsideNetns(const config::NodeConfig& cfg) {
  ASSIGN_OR_RETURN(netlink::NlSock sock, netlink::OpenRouteSocket());
  std::string dir = (std::filesystem::temp_directory_path() / "knd-sysfs-XXXXXX").string();
  bool mounted = false;
  int err = 0;
  if (unshare(CLONE_NEWNS) != 0 ||
      mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
      mkdtemp(dir.data()) == nullptr) {
    err = errno;
  } else if (mount("sysfs", dir.c_str(), "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                   nullptr) == 0) {
    mounted = true;
  } else {
    err = errno;
    rmdir(dir.c_str());
  }
  if (!mounted) {
    spdlog::warn("cannot mount a sysfs for the scanned netns ({}); scanning without sysfs facts",
                 std::string(ErrnoToStatus(err, "private sysfs mount").message()));
    ASSIGN_OR_RETURN(NetlinkSnapshot snap, TakeSnapshot(sock));
    return BuildDevices(snap, nullptr, cfg);
  }
  sysfs::Reader reader(dir);
  absl::StatusOr<std::vector<Device>> devices =
      BuildConsistent([&] { return TakeSnapshot(sock); }, &reader, cfg);
  umount2(dir.c_str(), MNT_DETACH);
  rmdir(dir.c_str());
  return devices;
}

}  // namespace

absl::StatusOr<std::vector<Device>> Scanner::Scan() const {
  if (opts_.netns_path.empty()) {
    ASSIGN_OR_RETURN(netlink::NlSock sock, netlink::OpenRouteSocket());
    sysfs::Reader reader(opts_.sysfs_root);
    return BuildConsistent([&] { return TakeSnapshot(sock); }, &reader, opts_.config);
  }
  ASSIGN_OR_RETURN(netns::Netns ns, netns::Netns::Open(opts_.netns_path));
  std::vector<Device> out;
  absl::Status st = netns::RunIn(ns, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(out, ScanInsideNetns(opts_.config));
    return absl::OkStatus();
  });
  if (!st.ok()) return Annotate(st, absl::StrCat("scan netns ", opts_.netns_path));
  return out;
}

}  // namespace knd::inventory
