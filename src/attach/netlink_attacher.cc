// The netlink-backed Attacher (see attacher.h for the contract). Round trips per attach:
// one link dump + two small dumps for the snapshot on the host, ONE RTM_NEWLINK that moves,
// renames and sets MTU/MAC, then in the pod: one link get, the IPv6 sysctls and ethtool
// features (one helper thread), one message per address, one for link up, one per route
// (and with interface.vrf, one link get for the VRF, one message to make it, one to join it).
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <array>
#include <cctype>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <system_error>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "attach/attacher.h"
#include "common/net_addr.h"
#include "common/status.h"
#include "netlink/ethtool.h"
#include "netlink/ops.h"
#include "netlink/query.h"
#include "netlink/socket.h"
#include "netns/netns.h"

namespace knd::attach {
namespace {

using netlink::LinkChange;
using LinkState = netlink::Link;
using netlink::NlSock;

bool IsUp(const LinkState& l) { return (l.flags & IFF_UP) != 0; }

bool MacEq(const std::string& a, const std::string& b) {
  return !a.empty() && !b.empty() && NormalizeMac(a) == NormalizeMac(b);
}

std::string Describe(const state::DeviceIdentity& id) {
  std::string s;
  auto add = [&s](const std::string& k, const std::string& v) {
    if (v.empty()) return;
    if (!s.empty()) s += ", ";
    s += k + " " + v;
  };
  add("pci", id.pci_address);
  add("permanent mac", id.perm_mac);
  add("mac", id.mac);
  if (id.ifindex > 0) add("ifindex", std::to_string(id.ifindex));
  add("name", id.ifname);
  return "device {" + s + "}";
}

// When a network namespace dies the kernel hands physical devices back to the initial
// namespace, renamed "dev<N>" if their name is taken there.
bool IsKernelRefundName(const std::string& name) {
  if (name.size() <= 3 || name.compare(0, 3, "dev") != 0) return false;
  for (size_t i = 3; i < name.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(name[i]))) return false;
  }
  return true;
}

// Netdev names under /sys/bus/pci/devices/<bdf>/net/. sysfs shows the devices of the netns
// that mounted it, so callers must still check the name exists in their own namespace.
std::vector<std::string> PciNetdevNames(const std::string& bdf) {
  std::vector<std::string> names;
  if (bdf.empty() || bdf.find('/') != std::string::npos) return names;
  std::error_code ec;
  for (const auto& e :
       std::filesystem::directory_iterator("/sys/bus/pci/devices/" + bdf + "/net", ec)) {
    names.push_back(e.path().filename());
  }
  return names;
}

// Extra facts Detach knows that make an ifindex match trustworthy.
struct DetachHint {
  const state::HostSnapshot* host = nullptr;
  std::string pod_ifname;
};

// Finds the device among `links` by identity: PCI address, permanent MAC, then the last seen
// ifindex if its current MAC or name still matches (or, on detach, it carries a name the
// device may have come back with).
std::optional<LinkState> FindByIdentity(const std::vector<LinkState>& links,
                                        const state::DeviceIdentity& id, const DetachHint* hint) {
  if (!id.pci_address.empty()) {
    for (const LinkState& l : links) {
      if (l.parent_bus == "pci" && l.parent_dev == id.pci_address) return l;
    }
  }
  // Kernels before 5.16 do not report the parent device over netlink: ask sysfs.
  for (const std::string& name : PciNetdevNames(id.pci_address)) {
    for (const LinkState& l : links) {
      if (l.name == name) return l;
    }
  }
  if (!id.perm_mac.empty()) {
    for (const LinkState& l : links) {
      if (MacEq(l.perm_mac, id.perm_mac)) return l;
    }
  }
  if (id.ifindex > 0) {
    for (const LinkState& l : links) {
      if (l.ifindex != id.ifindex) continue;
      if (MacEq(l.mac, id.mac) || l.name == id.ifname) return l;
      if (hint != nullptr && (IsKernelRefundName(l.name) || l.name == hint->pod_ifname ||
                              (hint->host != nullptr &&
                               (l.name == hint->host->ifname || MacEq(l.mac, hint->host->mac))))) {
        return l;
      }
    }
  }
  return std::nullopt;
}

// The device among the links of a pod netns, put there by someone else: by PCI parent,
// permanent MAC, or the MAC it had on the host (a plugin that moves a device keeps its MAC).
std::optional<LinkState> FindMovedIn(const std::vector<LinkState>& links,
                                     const state::DeviceIdentity& id) {
  for (const LinkState& l : links) {
    if (!id.pci_address.empty() && l.parent_bus == "pci" && l.parent_dev == id.pci_address) {
      return l;
    }
  }
  for (const LinkState& l : links) {
    if (MacEq(l.perm_mac, id.perm_mac)) return l;
  }
  for (const LinkState& l : links) {
    if ((l.flags & IFF_LOOPBACK) == 0 && MacEq(l.mac, id.mac)) return l;
  }
  return std::nullopt;
}

bool HasFamily(const std::vector<std::string>& cidrs, int family) {
  for (const std::string& c : cidrs) {
    absl::StatusOr<IpPrefix> p = ParseIpOrCidr(c);
    if (p.ok() && p->addr.family == family) return true;
  }
  return false;
}

std::vector<std::string> GlobalAddresses(const std::vector<netlink::Address>& addrs) {
  std::vector<std::string> out;
  for (const auto& a : addrs) {
    // Link-local/host addresses come back by themselves; privacy addresses are regenerated.
    if (a.scope != RT_SCOPE_UNIVERSE && a.scope != RT_SCOPE_SITE) continue;
    if ((a.flags & IFA_F_TEMPORARY) != 0) continue;
    out.push_back(a.cidr);
  }
  return out;
}

// Whether the calling thread is in `ns` (the daemon's threads are, for the host netns).
bool ThreadIsIn(const netns::Netns& ns) {
  absl::StatusOr<netns::Netns> self = netns::Netns::Open("/proc/thread-self/ns/net");
  return self.ok() && self->SameAs(ns);
}

// Runs `fn` in `ns`: on the calling thread when it is already there, else on a helper thread.
absl::Status InNetns(const netns::Netns& ns, const std::function<absl::Status()>& fn) {
  return ThreadIsIn(ns) ? fn() : netns::RunIn(ns, fn);
}

// The channel counts and ring sizes a NetworkConfig sets, with where each goes.
struct QueueSetting {
  netlink::QueueKind kind;
  const char* field;
  const std::optional<std::map<std::string, uint32_t>>* want;
};
std::array<QueueSetting, 2> QueueSettings(const config::NetworkConfig& cfg) {
  return {QueueSetting{netlink::QueueKind::kChannels, "interface.ethtool.channels",
                       &cfg.interface.ethtool_channels},
          QueueSetting{netlink::QueueKind::kRings, "interface.ethtool.rings",
                       &cfg.interface.ethtool_rings}};
}

// The snapshot's record of `kind`.
std::map<std::string, uint32_t>& SnapshotOf(state::HostSnapshot& snap, netlink::QueueKind kind) {
  return kind == netlink::QueueKind::kChannels ? snap.ethtool_channels : snap.ethtool_rings;
}

// interface.ethtool of `cfg` for `ifname`, in the calling thread's netns, or an error naming
// the field: the driver's private flags first (a driver may reset the device for one, e.g.
// igb's legacy-rx), then channels and rings (a driver may reset its offloads with its queues),
// then features.
absl::Status ApplyEthtoolHere(const std::string& ifname, const config::NetworkConfig& cfg) {
  const config::InterfaceConfig& ic = cfg.interface;
  if (!config::SetsEthtool(ic)) return absl::OkStatus();
  absl::StatusOr<netlink::EthtoolSocket> sock = netlink::EthtoolSocket::Open();
  if (!sock.ok()) return Annotate(sock.status(), "interface.ethtool");
  if (ic.ethtool_private_flags) {
    RETURN_IF_ERROR(Annotate(sock->SetPrivateFlags(ifname, *ic.ethtool_private_flags),
                             "interface.ethtool.privateFlags"));
  }
  for (const QueueSetting& q : QueueSettings(cfg)) {
    if (!*q.want) continue;
    RETURN_IF_ERROR(Annotate(sock->SetCounts(q.kind, ifname, **q.want), q.field));
  }
  const auto& want = ic.ethtool_features;
  if (!want || want->empty()) return absl::OkStatus();
  return Annotate(sock->SetFeatures(ifname, *want).status(), "interface.ethtool.features");
}

// Can `ifname`, in the calling thread's netns, take the interface.ethtool settings of `cfg`:
// every private flag one its driver has, every feature one it can change, no channel count or
// ring size above its maximum? Else an error naming the field, with nothing changed. With
// `snap`, also records what the device has now of each setting, to be put back at detach.
absl::Status CheckEthtoolHere(const std::string& ifname, const config::NetworkConfig& cfg,
                              state::HostSnapshot* snap) {
  const config::InterfaceConfig& ic = cfg.interface;
  if (!config::SetsEthtool(ic)) return absl::OkStatus();
  absl::StatusOr<netlink::EthtoolSocket> eth = netlink::EthtoolSocket::Open();
  if (!eth.ok()) return Annotate(eth.status(), "interface.ethtool");
  if (ic.ethtool_private_flags && !ic.ethtool_private_flags->empty()) {
    absl::StatusOr<std::map<std::string, bool>> have = eth->PrivateFlags(ifname);
    absl::Status st = have.ok()
                          ? netlink::CheckPrivateFlags(*ic.ethtool_private_flags, *have, ifname)
                          : have.status();
    if (!st.ok()) return Annotate(st, "interface.ethtool.privateFlags");
    if (snap != nullptr) {
      for (const auto& [name, on] : *ic.ethtool_private_flags) {
        snap->ethtool_private_flags[name] = (*have)[name];
      }
    }
  }
  for (const QueueSetting& q : QueueSettings(cfg)) {
    if (!*q.want) continue;
    absl::StatusOr<netlink::EthtoolSocket::Counts> have = eth->GetCounts(q.kind, ifname);
    absl::Status st =
        have.ok() ? netlink::CheckCounts(q.kind, **q.want, *have, ifname) : have.status();
    if (!st.ok()) return Annotate(st, q.field);
    if (snap == nullptr) continue;
    for (const auto& [key, v] : **q.want) SnapshotOf(*snap, q.kind)[key] = have->now[key];
  }
  const auto& want = ic.ethtool_features;
  if (!want || want->empty()) return absl::OkStatus();
  absl::StatusOr<std::map<std::string, netlink::EthtoolSocket::Feature>> features =
      eth->Features(ifname);
  if (!features.ok()) return Annotate(features.status(), "interface.ethtool.features");
  absl::StatusOr<std::map<std::string, bool>> set =
      netlink::ResolveFeatures(*want, *features, ifname);
  if (!set.ok()) return Annotate(set.status(), "interface.ethtool.features");
  if (snap == nullptr) return absl::OkStatus();
  for (const auto& [name, on] : *set) snap->ethtool_features[name] = (*features)[name].wanted;
  return absl::OkStatus();
}

// `sock` and `host` are the host netns's. With `cfg`, also the host's wanted state of the
// ethtool features, channel counts and ring sizes it sets (refused here, before anything
// changed, when the device cannot change a feature or has fewer channels or ring entries).
absl::StatusOr<state::HostSnapshot> TakeSnapshot(NlSock& sock, const LinkState& link,
                                                 const netns::Netns& host,
                                                 const config::NetworkConfig* cfg = nullptr) {
  state::HostSnapshot snap;
  snap.ifname = link.name;
  snap.mtu = link.mtu;
  snap.gso_max_size = link.gso_max_size;
  snap.gro_max_size = link.gro_max_size;
  snap.gso_ipv4_max_size = link.gso_ipv4_max_size;
  snap.gro_ipv4_max_size = link.gro_ipv4_max_size;
  snap.mac = link.mac;
  snap.up = IsUp(link);
  ASSIGN_OR_RETURN(std::vector<netlink::Address> addrs, netlink::ListAddresses(sock, link.ifindex));
  snap.addresses = GlobalAddresses(addrs);
  ASSIGN_OR_RETURN(std::vector<netlink::Route> routes,
                   netlink::ListRoutes(sock, AF_UNSPEC, link.ifindex));
  for (const auto& r : routes) {
    // Local-table routes and the prefix routes the kernel derives from addresses (or RAs)
    // are recreated by the kernel when the addresses come back.
    if (r.table == RT_TABLE_LOCAL || r.type != RTN_UNICAST) continue;
    if (r.protocol == RTPROT_KERNEL || r.protocol == RTPROT_RA) continue;
    state::IpRoute ir;
    ir.destination = r.dst;
    ir.gateway = r.gateway;
    ir.table = r.table;
    ir.metric = r.priority;
    ir.scope = r.scope;
    snap.routes.push_back(std::move(ir));
  }
  // The per-interface sysctls a netns round trip resets to the new namespace's defaults
  // (the ones a NetworkConfig may set; a kernel without IPv6 has no ipv6 ones).
  RETURN_IF_ERROR(InNetns(host, [&]() -> absl::Status {
    for (const config::InterfaceSysctl& c : config::InterfaceSysctls()) {
      absl::StatusOr<std::string> v = netlink::ReadInterfaceConf(link.name, c.family, c.key);
      if (v.ok()) snap.sysctls[absl::StrCat(c.family, ".", c.key)] = *v;
    }
    return cfg == nullptr ? absl::OkStatus() : CheckEthtoolHere(link.name, *cfg, &snap);
  }));
  return snap;
}

netlink::RouteSpec ToSpec(const state::IpRoute& r) {
  netlink::RouteSpec s;
  s.destination = r.destination;
  s.gateway = r.gateway;
  s.table = r.table;
  s.metric = r.metric;
  s.scope = r.scope;
  return s;
}

// No DAD unless `dad`: the address is ours by configuration, and a tentative address would
// make the first second of the pod fail to bind.
uint32_t AddrFlags(const std::string& cidr, bool dad = false) {
  absl::StatusOr<IpPrefix> c = ParseIpOrCidr(cidr);
  return c.ok() && c->addr.family == AF_INET6 && !dad ? IFA_F_NODAD : 0;
}

// A NetworkConfig that sets ipv6.accept_dad to 1 or 2 asks for duplicate address detection
// on its static addresses.
bool WantsDad(const config::NetworkConfig& cfg) {
  if (!cfg.interface.sysctls) return false;
  auto it = cfg.interface.sysctls->find("ipv6.accept_dad");
  return it != cfg.interface.sysctls->end() && it->second >= 1;
}

// ---- SR-IOV: settings the PF makes for a VF (NetworkConfig.sriov) -------------------------

// The PF (PCI address) and index of the VF at PCI address `vf_pci`, from sysfs; NotFound when
// `vf_pci` is not an SR-IOV VF.
absl::StatusOr<std::pair<std::string, int>> VfLocation(const std::string& vf_pci) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path dev = fs::path("/sys/bus/pci/devices") / vf_pci;
  fs::path pf = fs::read_symlink(dev / "physfn", ec);
  if (vf_pci.empty() || ec) {
    return absl::NotFoundError("\"" + vf_pci + "\" is not an SR-IOV VF (no physfn in sysfs)");
  }
  const std::string pf_pci = pf.filename().string();
  for (int i = 0; i < 4096; ++i) {
    fs::path vf = fs::read_symlink(
        fs::path("/sys/bus/pci/devices") / pf_pci / ("virtfn" + std::to_string(i)), ec);
    if (ec) break;
    if (vf.filename() == vf_pci) return std::make_pair(pf_pci, i);
  }
  return absl::NotFoundError("VF " + vf_pci + " is not among the virtfnN of its PF " + pf_pci);
}

// The PF's netdev on the host, by PCI address.
absl::StatusOr<LinkState> PfLink(NlSock& sock, const std::string& pf_pci) {
  ASSIGN_OR_RETURN(std::vector<LinkState> links, netlink::ListLinks(sock));
  for (const LinkState& l : links) {
    if (l.parent_bus == "pci" && l.parent_dev == pf_pci) return l;
  }
  return absl::NotFoundError("the PF " + pf_pci + " has no netdev on the host");
}

uint32_t LinkStateValue(const std::string& s) {
  return s == "enable"    ? IFLA_VF_LINK_STATE_ENABLE
         : s == "disable" ? IFLA_VF_LINK_STATE_DISABLE
                          : IFLA_VF_LINK_STATE_AUTO;
}

// Sets on `pf` what `want` changes from `cur`, one message per setting so that a refusal names
// it ("sriov.trust: Operation not supported" from a driver without it).
absl::Status ApplyVf(NlSock& sock, const LinkState& pf, const netlink::VfConfig& cur,
                     const state::VfSnapshot& want) {
  const std::string where = "PF " + pf.name + " VF " + std::to_string(want.index);
  auto set = [&](const char* field, auto fill) -> absl::Status {
    netlink::VfChange c;
    c.vf = want.index;
    fill(c);
    return Annotate(netlink::SetVf(sock, pf.ifindex, c), where + ": " + field);
  };
  // An all-zero MAC is how PFs report "none set by the admin"; putting it back clears ours.
  if (!want.mac.empty() && !MacEq(want.mac, cur.mac)) {
    RETURN_IF_ERROR(set("mac", [&](netlink::VfChange& c) { c.mac = want.mac; }));
  }
  if (want.vlan != cur.vlan || want.qos != cur.qos) {
    RETURN_IF_ERROR(set(
        "vlan", [&](netlink::VfChange& c) { c.vlan_qos = std::make_pair(want.vlan, want.qos); }));
  }
  if (want.spoof_check && want.spoof_check != cur.spoof_check) {
    RETURN_IF_ERROR(
        set("spoofCheck", [&](netlink::VfChange& c) { c.spoof_check = want.spoof_check; }));
  }
  if (want.trust && want.trust != cur.trust) {
    RETURN_IF_ERROR(set("trust", [&](netlink::VfChange& c) { c.trust = want.trust; }));
  }
  if (want.link_state && want.link_state != cur.link_state) {
    RETURN_IF_ERROR(
        set("linkState", [&](netlink::VfChange& c) { c.link_state = want.link_state; }));
  }
  if (want.min_tx_rate != cur.min_tx_rate || want.max_tx_rate != cur.max_tx_rate) {
    RETURN_IF_ERROR(set("txRate", [&](netlink::VfChange& c) {
      c.tx_rate = std::make_pair(want.min_tx_rate, want.max_tx_rate);
    }));
  }
  return absl::OkStatus();
}

state::VfSnapshot ToSnapshot(const std::string& pf_pci, const netlink::VfConfig& c) {
  return state::VfSnapshot{pf_pci,        c.vf,    c.mac,        c.vlan,        c.qos,
                           c.spoof_check, c.trust, c.link_state, c.min_tx_rate, c.max_tx_rate};
}

// `snap` with the NetworkConfig.sriov settings laid over it: what the VF should be in the pod.
state::VfSnapshot Wanted(state::VfSnapshot snap, const config::SriovConfig& s) {
  if (s.mac) snap.mac = *s.mac;
  if (s.vlan) snap.vlan = *s.vlan;
  if (s.vlan || s.qos) snap.qos = s.qos.value_or(0);
  if (s.spoof_check) snap.spoof_check = s.spoof_check;
  if (s.trust) snap.trust = s.trust;
  if (s.link_state) snap.link_state = LinkStateValue(*s.link_state);
  if (s.min_tx_rate_mbps) snap.min_tx_rate = *s.min_tx_rate_mbps;
  if (s.max_tx_rate_mbps) snap.max_tx_rate = *s.max_tx_rate_mbps;
  return snap;
}

// Puts the PF's settings for the VF back to `vf` (only what differs now).
absl::Status RestoreVf(NlSock& sock, const state::VfSnapshot& vf) {
  ASSIGN_OR_RETURN(LinkState pf, PfLink(sock, vf.pf_pci));
  ASSIGN_OR_RETURN(netlink::VfConfig cur, netlink::GetVfConfig(sock, pf.ifindex, vf.index));
  return Annotate(ApplyVf(sock, pf, cur, vf), "restore the VF's settings");
}

// A VF's PF and what the PF has set for it now.
struct VfOnPf {
  std::string pf_pci;
  LinkState pf;
  netlink::VfConfig now;
};

// The PF of the VF at `vf_pci` (netdev `name`) and its settings for the VF; FailedPrecondition
// when the device is no SR-IOV VF.
absl::StatusOr<VfOnPf> ReadVfOnPf(NlSock& sock, const std::string& vf_pci,
                                  const std::string& name) {
  absl::StatusOr<std::pair<std::string, int>> at = VfLocation(vf_pci);
  if (!at.ok()) {
    return absl::FailedPreconditionError("sriov settings need an SR-IOV VF: " + name + " " +
                                         std::string(at.status().message()));
  }
  absl::StatusOr<LinkState> pf = PfLink(sock, at->first);
  if (!pf.ok()) return Annotate(pf.status(), "sriov");
  absl::StatusOr<netlink::VfConfig> now = netlink::GetVfConfig(sock, pf->ifindex, at->second);
  if (!now.ok()) return Annotate(now.status(), "sriov: read the VF's settings from its PF");
  return VfOnPf{at->first, *std::move(pf), *std::move(now)};
}

// Applies `sriov` over `before` (the PF's settings as they were); on a refusal puts `before`
// back and returns the refusal, naming the setting.
absl::Status ApplyVfOrRollBack(NlSock& sock, const VfOnPf& vf, const state::VfSnapshot& before,
                               const config::SriovConfig& sriov) {
  absl::Status st = ApplyVf(sock, vf.pf, vf.now, Wanted(before, sriov));
  if (st.ok()) return st;
  absl::Status rb = RestoreVf(sock, before);
  std::string msg = "sriov: " + std::string(st.message());
  if (!rb.ok()) msg += "; rollback failed: " + std::string(rb.message());
  return absl::Status(st.code(), msg);
}

// Writes back each snapshot sysctl of `ifname` (in the calling thread's netns) whose value
// differs. Only the names TakeSnapshot reads and integer values: the checkpoint is input too.
// A name the kernel no longer has is skipped.
absl::Status RestoreSysctlsHere(const std::string& ifname,
                                const std::map<std::string, std::string>& sysctls) {
  std::vector<netlink::InterfaceConf> conf;
  for (const config::InterfaceSysctl& r : config::InterfaceSysctls()) {
    auto it = sysctls.find(absl::StrCat(r.family, ".", r.key));
    int64_t v = 0;
    if (it == sysctls.end() || !absl::SimpleAtoi(it->second, &v)) continue;
    const std::string& value = it->second;
    netlink::InterfaceConf c{r.family, r.key, value, false};
    absl::StatusOr<std::string> now = netlink::ReadInterfaceConf(ifname, c.family, c.key);
    if (now.ok() && *now != value) conf.push_back(std::move(c));
  }
  return Annotate(netlink::SetInterfaceConfHere(ifname, conf), "restore sysctls of " + ifname);
}

// Brings `cur` (already in the host netns) back to `snap`: name, MTU, MAC, GSO/GRO sizes,
// sysctls, ethtool features, addresses, up, routes. Best effort past the first failure, so one bad
// route does not leave the device without its addresses; returns the first error.
absl::Status RestoreOnHost(NlSock& sock, const LinkState& cur, const state::HostSnapshot& snap,
                           const netns::Netns& host) {
  LinkChange c;
  bool change = false;
  if (!snap.ifname.empty() && cur.name != snap.ifname) {
    c.name = snap.ifname;
    change = true;
    // Most drivers refuse to rename a running interface.
    if (IsUp(cur)) RETURN_IF_ERROR(netlink::SetLinkUp(sock, cur.ifindex, false));
  }
  if (snap.mtu != 0 && cur.mtu != snap.mtu) {
    c.mtu = snap.mtu;
    change = true;
  }
  if (!snap.mac.empty() && !MacEq(cur.mac, snap.mac)) {
    c.mac = snap.mac;
    change = true;
  }
  if (snap.gso_max_size != 0 && cur.gso_max_size != snap.gso_max_size) {
    c.gso_max_size = snap.gso_max_size;
    change = true;
  }
  if (snap.gro_max_size != 0 && cur.gro_max_size != snap.gro_max_size) {
    c.gro_max_size = snap.gro_max_size;
    change = true;
  }
  if (snap.gso_ipv4_max_size != 0 && cur.gso_ipv4_max_size != snap.gso_ipv4_max_size) {
    c.gso_ipv4_max_size = snap.gso_ipv4_max_size;
    change = true;
  }
  if (snap.gro_ipv4_max_size != 0 && cur.gro_ipv4_max_size != snap.gro_ipv4_max_size) {
    c.gro_ipv4_max_size = snap.gro_ipv4_max_size;
    change = true;
  }
  if (change) {
    RETURN_IF_ERROR(Annotate(netlink::ChangeLink(sock, cur.ifindex, c),
                             "restore name/MTU/MAC/GSO/GRO of " + cur.name + " as " + snap.ifname));
  }
  absl::Status first;
  auto keep = [&first](absl::Status s) {
    if (first.ok() && !s.ok()) first = std::move(s);
  };
  // Sysctls first: disable_ipv6 or accept_dad decide what the addresses do.
  const std::string name = snap.ifname.empty() ? cur.name : snap.ifname;
  if (!snap.sysctls.empty()) {
    keep(InNetns(host, [&] { return RestoreSysctlsHere(name, snap.sysctls); }));
  }
  if (!snap.ethtool_features.empty() || !snap.ethtool_channels.empty() ||
      !snap.ethtool_rings.empty() || !snap.ethtool_private_flags.empty()) {
    keep(InNetns(host, [&]() -> absl::Status {
      absl::StatusOr<netlink::EthtoolSocket> eth = netlink::EthtoolSocket::Open();
      if (!eth.ok()) return Annotate(eth.status(), "restore ethtool settings of " + name);
      // In the order of the attach: private flags, queues, features.
      absl::Status first = eth->RestorePrivateFlags(name, snap.ethtool_private_flags);
      if (absl::Status r =
              Annotate(eth->SetCounts(netlink::QueueKind::kChannels, name, snap.ethtool_channels),
                       "restore ethtool channels of " + name);
          first.ok()) {
        first = r;
      }
      if (absl::Status r = eth->SetCounts(netlink::QueueKind::kRings, name, snap.ethtool_rings);
          first.ok()) {
        first = Annotate(r, "restore ethtool rings of " + name);
      }
      absl::Status st = Annotate(eth->RestoreWanted(name, snap.ethtool_features),
                                 "restore ethtool features of " + name);
      return first.ok() ? st : first;
    }));
  }
  for (const std::string& a : snap.addresses) {
    keep(netlink::AddAddress(sock, cur.ifindex, a, AddrFlags(a)));
  }
  if (snap.up || IsUp(cur)) keep(netlink::SetLinkUp(sock, cur.ifindex, snap.up));
  for (const state::IpRoute& r : snap.routes) keep(netlink::AddRoute(sock, cur.ifindex, ToSpec(r)));
  if (snap.vf) keep(RestoreVf(sock, *snap.vf));
  return Annotate(first, "restore " + snap.ifname + " on the host");
}

class NetlinkAttacher : public Attacher {
 public:
  explicit NetlinkAttacher(absl::StatusOr<netns::Netns> host)
      : host_(std::move(host)), host_socks_([this] { return HostSocket(); }) {}

  absl::StatusOr<state::AttachResult> Attach(
      const AttachRequest& req,
      const std::function<absl::Status(const state::HostSnapshot&)>& persist) override {
    absl::StatusOr<state::AttachResult> r = DoAttach(req, persist);
    if (!r.ok()) return Annotate(r.status(), req.where);
    return r;
  }

  absl::StatusOr<state::AttachResult> AttachChild(
      const AttachRequest& req, const std::function<absl::Status()>& persist) override {
    absl::StatusOr<state::AttachResult> r = DoAttachChild(req, persist);
    if (!r.ok()) return Annotate(r.status(), req.where);
    return r;
  }

  absl::Status DetachChild(const std::string& netns_path, const std::string& pod_ifname,
                           const state::ChildPlan& child, const std::string& where) override {
    absl::StatusOr<netns::Netns> pod = netns::Netns::Open(netns_path);
    if (absl::IsNotFound(pod.status())) return absl::OkStatus();  // gone, and the child with it
    if (!pod.ok()) return Annotate(pod.status(), where + ": open pod netns");
    // A name that is not a `child.type` link is not the link knd made (the pod renamed ours
    // and reused the name?): left alone.
    return Annotate(DeleteChildIn(*pod, pod_ifname, child),
                    where + ": delete " + child.type + " " + pod_ifname + " in the pod");
  }

  absl::Status Detach(const state::DeviceIdentity& identity, const state::HostSnapshot& host,
                      const std::string& netns_path, const std::string& pod_ifname,
                      const std::string& where) override {
    return Annotate(DoDetach(identity, host, netns_path, pod_ifname), where);
  }

  absl::StatusOr<bool> OnHost(const state::DeviceIdentity& identity) override {
    ASSIGN_OR_RETURN(NlSock host_sock, HostSocket());
    ASSIGN_OR_RETURN(std::vector<LinkState> links, netlink::ListLinks(host_sock));
    return FindByIdentity(links, identity, nullptr).has_value();
  }

  absl::Status CheckDevice(const state::DeviceIdentity& identity,
                           const config::NetworkConfig& cfg) override {
    if (!config::SetsEthtool(cfg.interface) && !cfg.interface.gro_max_size) {
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(NlSock host_sock, HostSocket());
    ASSIGN_OR_RETURN(std::vector<LinkState> links, netlink::ListLinks(host_sock));
    std::optional<LinkState> dev = FindByIdentity(links, identity, nullptr);
    if (!dev) return absl::NotFoundError("the device is not on the host");
    RETURN_IF_ERROR(CheckKernelSizes(dev->name, dev->gro_max_size, cfg.interface));
    return InNetns(*host_, [&] { return CheckEthtoolHere(dev->name, cfg, nullptr); });
  }

  absl::StatusOr<std::optional<state::AttachResult>> FindInPod(
      const std::string& netns_path, const state::DeviceIdentity& identity) override {
    absl::StatusOr<netns::Netns> pod = netns::Netns::Open(netns_path);
    if (absl::IsNotFound(pod.status())) return std::optional<state::AttachResult>();
    if (!pod.ok()) return Annotate(pod.status(), "open pod netns");
    if (host_.ok() && pod->SameAs(*host_)) {
      return absl::InvalidArgumentError(netns_path + " is the host network namespace");
    }
    ASSIGN_OR_RETURN(NlSock sock, netlink::OpenRouteSocketIn(*pod));
    ASSIGN_OR_RETURN(std::vector<LinkState> links, netlink::ListLinks(sock));
    std::optional<LinkState> l = FindMovedIn(links, identity);
    if (!l.has_value()) return std::optional<state::AttachResult>();
    state::AttachResult res;
    res.netns = netns_path;
    res.ifname = l->name;
    res.mac = l->mac;
    ASSIGN_OR_RETURN(std::vector<netlink::Address> addrs, netlink::ListAddresses(sock, l->ifindex));
    res.ips = GlobalAddresses(addrs);
    return std::optional<state::AttachResult>(std::move(res));
  }

  absl::StatusOr<state::HostSnapshot> Snapshot(const state::DeviceIdentity& identity) override {
    ASSIGN_OR_RETURN(NlSock host_sock, HostSocket());
    ASSIGN_OR_RETURN(auto found, FindAndSnapshot(host_sock, identity));
    return std::move(found.second);
  }

  absl::Status Restore(const state::DeviceIdentity& identity,
                       const state::HostSnapshot& host) override {
    ASSIGN_OR_RETURN(NlSock host_sock, HostSocket());
    ASSIGN_OR_RETURN(std::vector<LinkState> links, netlink::ListLinks(host_sock));
    DetachHint hint{&host, ""};
    std::optional<LinkState> dev = FindByIdentity(links, identity, &hint);
    if (!dev.has_value()) return absl::NotFoundError(Describe(identity) + " is not on the host");
    return RestoreOnHost(host_sock, *dev, host, *host_);
  }

  absl::StatusOr<state::HostSnapshot> TakeVf(
      const state::DeviceIdentity& identity, const config::SriovConfig& sriov,
      const std::function<absl::Status(const state::HostSnapshot&)>& persist) override {
    ASSIGN_OR_RETURN(NlSock host_sock, HostSocket());
    ASSIGN_OR_RETURN(auto found, FindAndSnapshot(host_sock, identity));
    auto& [dev, snap] = found;
    ASSIGN_OR_RETURN(VfOnPf vf, ReadVfOnPf(host_sock, identity.pci_address, dev.name));
    snap.vf = ToSnapshot(vf.pf_pci, vf.now);
    if (absl::Status st = persist(snap); !st.ok()) {
      return Annotate(st, "persist host snapshot of " + dev.name);
    }
    RETURN_IF_ERROR(ApplyVfOrRollBack(host_sock, vf, *snap.vf, sriov));
    return std::move(snap);
  }

  absl::StatusOr<bool> IsAttached(const std::string& netns_path,
                                  const std::string& pod_ifname) override {
    absl::StatusOr<netns::Netns> pod = netns::Netns::Open(netns_path);
    if (absl::IsNotFound(pod.status())) return false;
    if (!pod.ok()) return pod.status();
    ASSIGN_OR_RETURN(NlSock sock, netlink::OpenRouteSocketIn(*pod));
    absl::StatusOr<LinkState> l = netlink::GetLinkByName(sock, pod_ifname);
    if (absl::IsNotFound(l.status())) return false;
    if (!l.ok()) return l.status();
    return true;
  }

 private:
  using HostLease = netlink::SocketPool::Lease;

  // The device on the host, found by identity, and its host snapshot; NotFound when it is not
  // on the host.
  absl::StatusOr<std::pair<LinkState, state::HostSnapshot>> FindAndSnapshot(
      NlSock& host_sock, const state::DeviceIdentity& identity) {
    ASSIGN_OR_RETURN(std::vector<LinkState> links, netlink::ListLinks(host_sock));
    std::optional<LinkState> dev = FindByIdentity(links, identity, nullptr);
    if (!dev.has_value()) return absl::NotFoundError(Describe(identity) + " not found on the host");
    absl::StatusOr<state::HostSnapshot> snap = TakeSnapshot(host_sock, *dev, *host_);
    if (!snap.ok()) return Annotate(snap.status(), "snapshot " + dev->name);
    return std::make_pair(*std::move(dev), *std::move(snap));
  }

  // A socket in the host netns: opened directly when the calling thread is in it (no helper
  // thread), else through a helper thread.
  absl::StatusOr<NlSock> HostSocket() {
    if (!host_.ok()) return Annotate(host_.status(), "host netns");
    if (ThreadIsIn(*host_)) return netlink::OpenRouteSocket();
    return netlink::OpenRouteSocketIn(*host_);
  }

  // A host socket lent from the pool, for the child attach (the path where opening one is a
  // noticeable share of the work); the attach gives it back when it succeeds.
  absl::StatusOr<HostLease> LendHostSocket() {
    if (!host_.ok()) return Annotate(host_.status(), "host netns");
    return host_socks_.Take();
  }

  absl::StatusOr<state::AttachResult> DoAttach(
      const AttachRequest& req,
      const std::function<absl::Status(const state::HostSnapshot&)>& persist) {
    const config::InterfaceConfig& ic = req.config.interface;
    if (req.netns_path.empty()) {
      return absl::InvalidArgumentError("pod has no network namespace (hostNetwork pod?)");
    }
    ASSIGN_OR_RETURN(NlSock host_sock, HostSocket());
    absl::StatusOr<netns::Netns> pod_or = netns::Netns::Open(req.netns_path);
    if (!pod_or.ok()) return Annotate(pod_or.status(), "open pod netns");
    netns::Netns& pod = *pod_or;
    if (pod.SameAs(*host_)) {
      return absl::InvalidArgumentError(req.netns_path + " is the host network namespace");
    }
    ASSIGN_OR_RETURN(NlSock pod_sock, netlink::OpenRouteSocketIn(pod));

    ASSIGN_OR_RETURN(std::vector<LinkState> links, netlink::ListLinks(host_sock));
    std::optional<LinkState> dev = FindByIdentity(links, req.identity, nullptr);
    if (!dev.has_value()) {
      // Idempotent re-attach: the device already sits in the pod under the requested name.
      std::string name = ic.name.value_or(req.identity.ifname);
      absl::StatusOr<LinkState> in_pod = netlink::GetLinkByName(pod_sock, name);
      if (in_pod.ok() && IsOurs(*in_pod, req)) return ReadResult(pod_sock, *in_pod, req);
      return absl::NotFoundError(Describe(req.identity) + " not found on the host");
    }
    const std::string target = ic.name.value_or(dev->name);
    // A name already used in the pod (e.g. Multus's net1) is refused before anything, even
    // the snapshot, happens. The kernel would refuse it too, but only after the move.
    absl::StatusOr<LinkState> clash = netlink::GetLinkByName(pod_sock, target);
    if (clash.ok()) return NameTaken(target, req.netns_path);
    if (!absl::IsNotFound(clash.status())) return clash.status();

    RETURN_IF_ERROR(CheckKernelSizes(dev->name, dev->gro_max_size, ic));
    absl::StatusOr<state::HostSnapshot> snap = TakeSnapshot(host_sock, *dev, *host_, &req.config);
    if (!snap.ok()) return Annotate(snap.status(), "snapshot " + dev->name);
    // sriov: the PF's settings for this VF join the snapshot before anything changes.
    std::optional<VfOnPf> vf;
    if (req.config.sriov) {
      ASSIGN_OR_RETURN(vf, ReadVfOnPf(host_sock, req.identity.pci_address, dev->name));
      snap->vf = ToSnapshot(vf->pf_pci, vf->now);
    }
    if (absl::Status st = persist(*snap); !st.ok()) {
      return Annotate(st, "persist host snapshot of " + dev->name);
    }
    if (vf) {
      RETURN_IF_ERROR(ApplyVfOrRollBack(host_sock, *vf, *snap->vf, *req.config.sriov));
    }

    // The move: netns + name + MTU + MAC in one message.
    LinkChange mv;
    mv.netns_fd = pod.fd();
    mv.name = target;
    mv.mtu = ic.mtu;
    mv.gso_max_size = ic.gso_max_size;
    mv.gro_max_size = ic.gro_max_size;
    mv.gso_ipv4_max_size = ic.gso_ipv4_max_size;
    mv.gro_ipv4_max_size = ic.gro_ipv4_max_size;
    mv.mac = ic.hardware_addr;
    std::string move_step = "move " + dev->name + " into the pod netns as " + target;
    if (absl::Status st = netlink::ChangeLink(host_sock, dev->ifindex, mv); !st.ok()) {
      // The kernel moves first (under the host name, unless that one is taken in the pod)
      // and applies the new name, MAC and MTU afterwards: a refused rename or MTU leaves
      // the device moved. Bring it back if so.
      std::optional<LinkState> moved = FindMoved(pod_sock, *dev, target, ic);
      absl::Status cause = Annotate(st, move_step);
      if (absl::IsAlreadyExists(st)) cause = NameTaken(target, req.netns_path);
      if (!moved.has_value()) return cause;
      return WithRollback(cause, pod_sock, *moved, *snap);
    }

    absl::StatusOr<LinkState> in_pod = netlink::GetLinkByName(pod_sock, target);
    if (!in_pod.ok()) {
      // Should not happen (the move succeeded with this name); nothing to roll back to.
      return Annotate(in_pod.status(), "find " + target + " in the pod netns after the move");
    }
    if (absl::Status st = ConfigureInPod(pod, pod_sock, in_pod->ifindex, target, req); !st.ok()) {
      return WithRollback(st, pod_sock, *in_pod, *snap);
    }
    state::AttachResult res;
    res.netns = req.netns_path;
    res.ifname = target;
    res.mac = in_pod->mac;
    for (const std::string& a : ic.addresses.value_or(std::vector<std::string>{})) {
      absl::StatusOr<IpPrefix> c = ParseIpOrCidr(a);
      res.ips.push_back(c.ok() ? FormatCidr(*c) : a);
    }
    return res;
  }

  // The shared parent on the host: the link at the recorded ifindex when it still is the
  // device (one RTM_GETLINK), else a search of every link by identity.
  absl::StatusOr<std::optional<LinkState>> FindParent(NlSock& host_sock,
                                                      const state::DeviceIdentity& id) {
    if (id.ifindex > 0) {
      absl::StatusOr<LinkState> l = netlink::GetLink(host_sock, id.ifindex);
      if (l.ok()) {
        std::optional<LinkState> same = FindByIdentity({*l}, id, nullptr);
        if (same) return same;
      } else if (!absl::IsNotFound(l.status())) {
        return l.status();
      }
    }
    ASSIGN_OR_RETURN(std::vector<LinkState> links, netlink::ListLinks(host_sock));
    return FindByIdentity(links, id, nullptr);
  }

  absl::StatusOr<state::AttachResult> DoAttachChild(const AttachRequest& req,
                                                    const std::function<absl::Status()>& persist) {
    if (!req.child) return absl::InvalidArgumentError("no child in the request");
    const state::ChildPlan& child = *req.child;
    const config::InterfaceConfig& ic = req.config.interface;
    if (req.netns_path.empty()) {
      return absl::InvalidArgumentError("pod has no network namespace (hostNetwork pod?)");
    }
    ASSIGN_OR_RETURN(HostLease host_lease, LendHostSocket());
    NlSock& host_sock = *host_lease;
    absl::StatusOr<netns::Netns> pod_or = netns::Netns::Open(req.netns_path);
    if (!pod_or.ok()) return Annotate(pod_or.status(), "open pod netns");
    netns::Netns& pod = *pod_or;
    if (pod.SameAs(*host_)) {
      return absl::InvalidArgumentError(req.netns_path + " is the host network namespace");
    }
    ASSIGN_OR_RETURN(std::optional<LinkState> parent, FindParent(host_sock, req.identity));
    if (!parent) {
      return absl::NotFoundError(Describe(req.identity) +
                                 " (the shared parent of the child) not found on the host");
    }
    const std::string target = ic.name.value_or(parent->name);
    if (ic.mtu && *ic.mtu > parent->mtu) {
      return absl::FailedPreconditionError(absl::StrCat(
          "interface.mtu ", *ic.mtu, " is above the MTU ", parent->mtu, " of the shared parent ",
          parent->name, " (a child cannot send larger frames than its parent)"));
    }
    RETURN_IF_ERROR(CheckKernelSizes(parent->name, parent->gro_max_size, ic));
    RETURN_IF_ERROR(Annotate(persist(), "persist the attach of a child of " + parent->name));
    netlink::ChildLink c;
    c.kind = child.type;
    c.mode = child.mode;
    c.vlan_id = child.vlan_id;
    c.parent_ifindex = parent->ifindex;
    c.netns_fd = pod.fd();
    c.name = target;
    c.mtu = ic.mtu;
    c.gso_max_size = ic.gso_max_size;
    c.gro_max_size = ic.gro_max_size;
    c.gso_ipv4_max_size = ic.gso_ipv4_max_size;
    c.gro_ipv4_max_size = ic.gro_ipv4_max_size;
    if (ic.hardware_addr) {
      c.mac = ic.hardware_addr;
    } else if (!child.mac.empty()) {
      c.mac = child.mac;
    }
    const std::string step =
        absl::StrCat("create ", child.type, " ", target, " on ", parent->name, " in the pod netns");
    // Created first, checked after: the common case (no such name in the pod yet) needs no
    // pod socket before the child exists.
    absl::Status created = netlink::CreateChildLink(host_sock, c);
    if (!created.ok() && !absl::IsAlreadyExists(created)) {
      if (created.code() == absl::StatusCode::kUnimplemented || absl::IsInvalidArgument(created)) {
        return absl::Status(created.code(),
                            absl::StrCat(step, ": ", created.message(), " (does the kernel have ",
                                         child.type, "?)"));
      }
      return Annotate(created, step);
    }
    // One thread in the pod netns: the IPv6 sysctls of the new link (before it goes up), and
    // the pod's netlink socket.
    NlSock pod_sock;
    const auto conf = PodConf(req);
    absl::Status pod_st = netns::RunIn(pod, [&]() -> absl::Status {
      if (created.ok()) {
        RETURN_IF_ERROR(
            Annotate(netlink::SetInterfaceConfHere(target, conf), "set sysctls of " + target));
        RETURN_IF_ERROR(ApplyEthtoolHere(target, req.config));
      }
      ASSIGN_OR_RETURN(pod_sock, netlink::OpenRouteSocket());
      return absl::OkStatus();
    });
    if (!created.ok()) {
      // The name is taken in the pod. A repeated hook: the child made last time (same kind,
      // same parent, same MAC) is kept. A macvlan made on a macvlan hangs off the lower device
      // itself (the kernel's rule), so the parent's own lower link counts as the same parent.
      absl::StatusOr<LinkState> in_pod_link = pod_st.ok() ? netlink::GetLinkByName(pod_sock, target)
                                                          : absl::StatusOr<LinkState>(pod_st);
      if (!in_pod_link.ok()) {
        return Annotate(in_pod_link.status(), "find " + target + " in the pod netns");
      }
      const bool same_parent = in_pod_link->link_ifindex == parent->ifindex ||
                               (parent->kind == child.type && parent->link_ifindex > 0 &&
                                in_pod_link->link_ifindex == parent->link_ifindex);
      const bool ours = in_pod_link->kind == child.type && same_parent &&
                        (!c.mac || MacEq(in_pod_link->mac, *c.mac));
      if (!ours) return NameTaken(target, req.netns_path);
      absl::StatusOr<state::AttachResult> again = ReadResult(pod_sock, *in_pod_link, req);
      if (again.ok()) host_lease.Keep();
      return again;
    }
    absl::StatusOr<netlink::LinkId> made =
        pod_st.ok() ? MadeLink(pod_sock, target) : absl::StatusOr<netlink::LinkId>(pod_st);
    absl::Status st = made.ok() ? ConfigureInPod(pod, pod_sock, made->ifindex, target, req,
                                                 /*ipv6_conf_done=*/true)
                                : Annotate(made.status(), "configure " + target + " in the pod");
    if (!st.ok()) {
      // Delete what was made, through a new pod socket (this one may not exist).
      absl::Status rb = DeleteChildIn(pod, target, child);
      if (rb.ok()) return st;
      return absl::Status(st.code(),
                          absl::StrCat(st.message(), "; deleting the child: ", rb.message()));
    }
    host_lease.Keep();
    state::AttachResult res;
    res.netns = req.netns_path;
    res.ifname = target;
    res.mac = made->mac;
    for (const std::string& a : ic.addresses.value_or(std::vector<std::string>{})) {
      absl::StatusOr<IpPrefix> p = ParseIpOrCidr(a);
      res.ips.push_back(p.ok() ? FormatCidr(*p) : a);
    }
    return res;
  }

  // The ifindex and MAC of the child just made: two ioctls for an Ethernet link, else a link
  // get.
  static absl::StatusOr<netlink::LinkId> MadeLink(NlSock& pod_sock, const std::string& name) {
    absl::StatusOr<netlink::LinkId> id = netlink::GetEtherLinkId(pod_sock, name);
    if (!absl::IsFailedPrecondition(id.status())) return id;
    ASSIGN_OR_RETURN(LinkState l, netlink::GetLinkByName(pod_sock, name));
    return netlink::LinkId{l.ifindex, l.mac};
  }

  // Deletes the child `name` of kind `child.type` in `pod`; gone already = OK.
  absl::Status DeleteChildIn(const netns::Netns& pod, const std::string& name,
                             const state::ChildPlan& child) {
    ASSIGN_OR_RETURN(NlSock sock, netlink::OpenRouteSocketIn(pod));
    absl::StatusOr<LinkState> l = netlink::GetLinkByName(sock, name);
    if (absl::IsNotFound(l.status())) return absl::OkStatus();
    if (!l.ok()) return l.status();
    if (l->kind != child.type) return absl::OkStatus();  // not the link knd made
    absl::Status st = netlink::DeleteLink(sock, l->ifindex);
    return absl::IsNotFound(st) ? absl::OkStatus() : st;
  }

  // Everything after the move, inside the pod netns.
  // Addresses are static: no router advertisements. An IPv4-only attachment gets no IPv6
  // link-local address either (addr_gen_mode 1 = none), set before the link goes up.
  // The pod interface's sysctls, written before it goes up: knd's IPv6 defaults (no RAs; no
  // link-local for IPv4-only attachments), then interface.sysctls, which win.
  static std::vector<netlink::InterfaceConf> PodConf(const AttachRequest& req) {
    const std::vector<std::string> addrs =
        req.config.interface.addresses.value_or(std::vector<std::string>{});
    std::vector<netlink::InterfaceConf> conf = {{"ipv6", "accept_ra", "0", false}};
    if (HasFamily(addrs, AF_INET) && !HasFamily(addrs, AF_INET6)) {
      conf.push_back({"ipv6", "addr_gen_mode", "1", false});
    }
    for (const auto& [name, value] :
         req.config.interface.sysctls.value_or(std::map<std::string, int64_t>{})) {
      const size_t dot = name.find('.');
      conf.push_back({name.substr(0, dot), name.substr(dot + 1), std::to_string(value), true});
    }
    return conf;
  }

  // `ipv6_conf_done`: the caller wrote PodConf(req) and set the ethtool features already
  // (AttachChild does it on the thread that opens the pod socket, saving a thread per attach).
  absl::Status ConfigureInPod(const netns::Netns& pod, NlSock& sock, int ifindex,
                              const std::string& ifname, const AttachRequest& req,
                              bool ipv6_conf_done = false) {
    const config::InterfaceConfig& ic = req.config.interface;
    if (!ipv6_conf_done) {
      // One helper thread in the pod for the sysctls and the ethtool features.
      RETURN_IF_ERROR(netns::RunIn(pod, [&]() -> absl::Status {
        RETURN_IF_ERROR(Annotate(netlink::SetInterfaceConfHere(ifname, PodConf(req)),
                                 "set sysctls of " + ifname));
        return ApplyEthtoolHere(ifname, req.config);
      }));
    }
    // interface.vrf: the VRF, made here if the pod has none, takes the link first (while it is
    // down: a VRF cycles a link that is up), so its addresses' connected routes go to the
    // VRF's table.
    const std::optional<config::VrfConfig>& vrf = ic.vrf;
    bool vrf_made = false;
    int vrf_ifindex = 0;
    if (vrf) {
      ASSIGN_OR_RETURN(vrf_ifindex, EnsureVrf(sock, *vrf, &vrf_made));
    }
    absl::Status st = SendPodBatch(sock, ifindex, req, vrf_ifindex);
    if (st.ok() || !vrf_made) return st;
    // The VRF this attach made goes with it, unless another interface of the pod joined it.
    absl::Status undo = DeleteVrfUnlessShared(sock, vrf_ifindex, ifindex);
    return undo.ok() ? st
                     : absl::Status(st.code(), absl::StrCat(st.message(), "; delete vrf ",
                                                            vrf->name, ": ", undo.message()));
  }

  // interface.vrf: the ifindex of the pod's VRF `vrf.name`, made (up) when the pod has no link
  // of that name (`*made`). A link of that name that is not a VRF, or a VRF of another table,
  // is an error naming the field.
  static absl::StatusOr<int> EnsureVrf(NlSock& sock, const config::VrfConfig& vrf, bool* made) {
    for (int attempt = 0; attempt < 3; ++attempt) {
      absl::StatusOr<LinkState> l = netlink::GetLinkByName(sock, vrf.name);
      if (l.ok()) {
        if (l->kind != "vrf") {
          return absl::FailedPreconditionError(absl::StrCat(
              "interface.vrf: ", vrf.name, " in the pod netns is ",
              l->kind.empty() ? std::string("a device") : "a " + l->kind + " link", ", not a VRF"));
        }
        if (l->vrf_table != vrf.table) {
          return absl::FailedPreconditionError(absl::StrCat("interface.vrf: the pod's VRF ",
                                                            vrf.name, " has table ", l->vrf_table,
                                                            ", not ", vrf.table));
        }
        if (!IsUp(*l)) {
          RETURN_IF_ERROR(Annotate(netlink::SetLinkUp(sock, l->ifindex, true), "interface.vrf"));
        }
        return l->ifindex;
      }
      if (!absl::IsNotFound(l.status())) return Annotate(l.status(), "interface.vrf");
      absl::Status st = netlink::CreateVrf(sock, vrf.name, vrf.table);
      if (st.ok()) {
        *made = true;
      } else if (!absl::IsAlreadyExists(st)) {  // made meanwhile by the pod's other attach
        return Annotate(st, "interface.vrf");
      }
    }
    return absl::UnavailableError("interface.vrf: " + vrf.name +
                                  " keeps appearing and disappearing in the pod netns");
  }

  // Deletes the VRF `vrf_ifindex` unless a link other than `ours` is in it.
  static absl::Status DeleteVrfUnlessShared(NlSock& sock, int vrf_ifindex, int ours) {
    ASSIGN_OR_RETURN(std::vector<LinkState> links, netlink::ListLinks(sock));
    for (const LinkState& l : links) {
      if (l.master_ifindex == vrf_ifindex && l.ifindex != ours) return absl::OkStatus();
    }
    absl::Status st = netlink::DeleteLink(sock, vrf_ifindex);
    return absl::IsNotFound(st) ? absl::OkStatus() : st;
  }

  // The pod side's one send: the kernel puts the link in its VRF, adds the addresses, sets the
  // link up, adds the routes and the permanent neighbours in this order (the routes' gateways
  // need the addresses and the link up). Neighbour entries need no restore: the kernel drops a
  // device's entries when it leaves the netns, and a child dies with its entries.
  static absl::Status SendPodBatch(NlSock& sock, int ifindex, const AttachRequest& req,
                                   int vrf_ifindex) {
    const config::InterfaceConfig& ic = req.config.interface;
    const std::vector<std::string> addrs = ic.addresses.value_or(std::vector<std::string>{});
    netlink::Batch batch;
    if (vrf_ifindex > 0) RETURN_IF_ERROR(batch.SetMaster(ifindex, vrf_ifindex));
    const bool dad = WantsDad(req.config);
    for (const std::string& a : addrs) {
      RETURN_IF_ERROR(batch.AddAddress(ifindex, a, AddrFlags(a, dad)));
    }
    RETURN_IF_ERROR(batch.SetLinkUp(ifindex, true));
    for (const config::Route& r : req.config.routes.value_or(std::vector<config::Route>{})) {
      netlink::RouteSpec s;
      s.destination = r.destination;
      s.gateway = r.gateway.value_or("");
      // A VRF's interface routes through the VRF's table (Validate refuses any other).
      s.table = r.table.value_or(ic.vrf ? ic.vrf->table : RT_TABLE_MAIN);
      s.metric = r.metric.value_or(0);
      RETURN_IF_ERROR(batch.AddRoute(ifindex, s));
    }
    for (const config::Neighbor& n :
         req.config.neighbors.value_or(std::vector<config::Neighbor>{})) {
      RETURN_IF_ERROR(batch.AddNeighbor(ifindex, n.ip, n.mac));
    }
    // Rules last. Unlike the rest they belong to the netns, not to the link: a failed attach
    // deletes the ones this batch added (not one that was there before).
    const size_t first_rule = batch.size();
    const std::vector<netlink::RuleSpec> rules = RuleSpecs(req.config);
    for (const netlink::RuleSpec& r : rules) RETURN_IF_ERROR(batch.AddRule(r));
    std::vector<absl::Status> results;
    absl::Status st = batch.Send(sock, &results);
    if (st.ok() || rules.empty()) return st;
    std::string undo;
    for (size_t i = 0; i < rules.size() && first_rule + i < results.size(); ++i) {
      if (!results[first_rule + i].ok()) continue;
      if (absl::Status d = netlink::DelRule(sock, rules[i]); !d.ok()) {
        absl::StrAppend(&undo, "; ", d.message());
      }
    }
    return undo.empty() ? st : absl::Status(st.code(), absl::StrCat(st.message(), undo));
  }

  // The kernel's form of NetworkConfig.rules: a rule without `from`/`to` is made for both
  // families.
  static std::vector<netlink::RuleSpec> RuleSpecs(const config::NetworkConfig& cfg) {
    std::vector<netlink::RuleSpec> out;
    for (const config::Rule& r : cfg.rules.value_or(std::vector<config::Rule>{})) {
      netlink::RuleSpec s;
      s.priority = r.priority;
      s.from = r.from.value_or("");
      s.to = r.to.value_or("");
      s.iif = r.iif.value_or("");
      s.oif = r.oif.value_or("");
      s.fwmark = r.fwmark;
      s.table = r.table;
      const std::string& addr = !s.from.empty() ? s.from : s.to;
      if (addr.empty()) {
        for (int family : {AF_INET, AF_INET6}) {
          s.family = family;
          out.push_back(s);
        }
        continue;
      }
      absl::StatusOr<IpPrefix> c = ParseIpOrCidr(addr);
      s.family = c.ok() ? c->addr.family : AF_INET;  // validated in Prepare
      out.push_back(std::move(s));
    }
    return out;
  }

  static absl::Status NameTaken(const std::string& name, const std::string& netns_path) {
    return absl::AlreadyExistsError("interface name \"" + name +
                                    "\" is already used in the pod netns " + netns_path);
  }

  // After a failed move message: is `dev` in the pod now (under the target or its host name)?
  // Only a link that carries the device's MAC (before or after the change) counts, so a
  // pod's own interface is never taken for ours.
  static std::optional<LinkState> FindMoved(NlSock& pod_sock, const LinkState& dev,
                                            const std::string& target,
                                            const config::InterfaceConfig& ic) {
    for (const std::string& name : {target, dev.name}) {
      absl::StatusOr<LinkState> l = netlink::GetLinkByName(pod_sock, name);
      if (!l.ok()) continue;
      if (MacEq(l->mac, dev.mac) || MacEq(l->mac, ic.hardware_addr.value_or(""))) return *l;
    }
    return std::nullopt;
  }

  // Returns `cause`, after moving `in_pod` back to the host under its original name and
  // restoring `snap`.
  absl::Status WithRollback(const absl::Status& cause, NlSock& pod_sock, const LinkState& in_pod,
                            const state::HostSnapshot& snap) {
    absl::Status rb = MoveBackAndRestore(pod_sock, in_pod, snap);
    if (rb.ok()) return cause;
    return absl::Status(cause.code(), std::string(cause.message()) +
                                          "; rollback failed: " + std::string(rb.message()));
  }

  // One RTM_NEWLINK (host netns fd + original name + MTU + MAC), then the rest on the host.
  absl::Status MoveBackAndRestore(NlSock& pod_sock, const LinkState& in_pod,
                                  const state::HostSnapshot& snap) {
    LinkChange back;
    back.netns_fd = host_->fd();
    back.name = snap.ifname;
    if (snap.mtu != 0) back.mtu = snap.mtu;
    if (!snap.mac.empty()) back.mac = snap.mac;
    absl::Status moved = netlink::ChangeLink(pod_sock, in_pod.ifindex, back);
    ASSIGN_OR_RETURN(NlSock host_sock, HostSocket());
    // Where did it land? The kernel keeps the ifindex unless it clashes, and may have kept
    // the pod name when the rename failed after the move (host name taken).
    ASSIGN_OR_RETURN(std::vector<LinkState> links, netlink::ListLinks(host_sock));
    std::optional<LinkState> cur;
    for (const LinkState& l : links) {
      bool named = l.name == snap.ifname || l.name == in_pod.name;
      if (named &&
          (l.ifindex == in_pod.ifindex || MacEq(l.mac, snap.mac) || MacEq(l.mac, in_pod.mac))) {
        cur = l;
        break;
      }
    }
    if (!cur.has_value()) {
      return Annotate(
          moved.ok() ? absl::NotFoundError("not found on the host after the move") : moved,
          "move " + in_pod.name + " back to the host as " + snap.ifname);
    }
    if (absl::IsAlreadyExists(moved)) {
      return absl::AlreadyExistsError(
          "move " + in_pod.name + " back to the host: interface name \"" + snap.ifname +
          "\" is already used on the host (device left as \"" + cur->name + "\")");
    }
    // Even when the move message failed half-way (MTU/MAC after the move), the device is
    // home: restore the rest.
    return RestoreOnHost(host_sock, *cur, snap, *host_);
  }

  bool IsOurs(const LinkState& l, const AttachRequest& req) {
    const state::DeviceIdentity& id = req.identity;
    if (!id.perm_mac.empty()) return MacEq(l.perm_mac, id.perm_mac);
    if (req.config.interface.hardware_addr.has_value()) {
      return MacEq(l.mac, *req.config.interface.hardware_addr);
    }
    return MacEq(l.mac, id.mac);
  }

  absl::StatusOr<state::AttachResult> ReadResult(NlSock& sock, const LinkState& l,
                                                 const AttachRequest& req) {
    state::AttachResult res;
    res.netns = req.netns_path;
    res.ifname = l.name;
    res.mac = l.mac;
    ASSIGN_OR_RETURN(std::vector<netlink::Address> addrs, netlink::ListAddresses(sock, l.ifindex));
    res.ips = GlobalAddresses(addrs);
    return res;
  }

  absl::Status DoDetach(const state::DeviceIdentity& identity, const state::HostSnapshot& host,
                        const std::string& netns_path, const std::string& pod_ifname) {
    ASSIGN_OR_RETURN(NlSock host_sock, HostSocket());
    bool pod_exists = false;
    absl::StatusOr<netns::Netns> pod = netns::Netns::Open(netns_path);
    if (pod.ok() && !pod->SameAs(*host_) && !pod_ifname.empty()) {
      pod_exists = true;
      ASSIGN_OR_RETURN(NlSock pod_sock, netlink::OpenRouteSocketIn(*pod));
      absl::StatusOr<LinkState> in_pod = netlink::GetLinkByName(pod_sock, pod_ifname);
      if (in_pod.ok()) {
        return MoveBackAndRestore(pod_sock, *in_pod, host);
      }
      if (!absl::IsNotFound(in_pod.status())) return in_pod.status();
    } else if (!pod.ok() && !absl::IsNotFound(pod.status())) {
      // Unreadable netns file: the device may still be inside; do not guess.
      return Annotate(pod.status(), "open pod netns");
    }
    // Not in the pod (netns gone, or a previous Detach already moved it): find it on the host.
    ASSIGN_OR_RETURN(std::vector<LinkState> links, netlink::ListLinks(host_sock));
    DetachHint hint{&host, pod_ifname};
    std::optional<LinkState> dev = FindByIdentity(links, identity, &hint);
    if (!dev.has_value()) {
      return absl::NotFoundError(
          Describe(identity) + " is not on the host" +
          (pod_exists ? " nor in pod netns " + netns_path + " as " + pod_ifname : "") +
          ": device was destroyed with the pod netns");
    }
    return RestoreOnHost(host_sock, *dev, host, *host_);
  }

  absl::StatusOr<netns::Netns> host_;  // the netns of this process, captured at construction
  netlink::SocketPool host_socks_;
};

}  // namespace

absl::Status CheckKernelSizes(const std::string& ifname, uint32_t reported_gro_max_size,
                              const config::InterfaceConfig& ic) {
  if (ic.gro_max_size && reported_gro_max_size == 0) {
    // Before 5.19 the kernel has no IFLA_GRO_MAX_SIZE and drops the attribute unread.
    return absl::FailedPreconditionError(
        absl::StrCat("interface.groMaxSize: the kernel reports no GRO size for ", ifname,
                     " (GRO sizes need Linux 5.19 or later) and would ignore ", *ic.gro_max_size));
  }
  return absl::OkStatus();
}

std::unique_ptr<Attacher> NewNetlinkAttacher() {
  return std::make_unique<NetlinkAttacher>(netns::Netns::Current());
}

}  // namespace knd::attach
