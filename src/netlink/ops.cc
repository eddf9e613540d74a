#include "netlink/ops.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/fib_rules.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <netlink/attr.h>
#include <netlink/handlers.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "netlink/query.h"

namespace knd::netlink {

namespace {

// --- one request/response exchange -------------------------------------------------------

// libnl turns kernel errnos into its own coarse NLE_* codes (ENETUNREACH becomes
// "Unspecific failure"); we catch the NLMSG_ERROR ourselves to keep the exact errno.
struct Exchange {
  int error = 0;  // positive errno from NLMSG_ERROR
  bool done = false;
  const std::function<void(nlmsghdr*)>* on_msg = nullptr;
};

int OnError(sockaddr_nl*, nlmsgerr* e, void* arg) {
  auto* x = static_cast<Exchange*>(arg);
  x->error = -e->error;
  x->done = true;
  return NL_STOP;
}

int OnDone(nl_msg*, void* arg) {
  static_cast<Exchange*>(arg)->done = true;
  return NL_STOP;
}

int OnValid(nl_msg* m, void* arg) {
  auto* x = static_cast<Exchange*>(arg);
  if (x->on_msg != nullptr && *x->on_msg) (*x->on_msg)(nlmsg_hdr(m));
  return NL_OK;
}

struct NlCbDeleter {
  void operator()(nl_cb* cb) const { nl_cb_put(cb); }
};

// Sends `msg` (completed with seq/port and NLM_F_ACK by libnl) and reads until the ack, the
// error or the end of a dump. `what` prefixes errors.
absl::Status Transact(NlSock& sock, nl_msg* msg, const std::string& what,
                      const std::function<void(nlmsghdr*)>& on_msg = {}, int* errno_out = nullptr) {
  nl_sock* sk = sock.get();
  if (sk == nullptr) return absl::FailedPreconditionError(what + ": netlink socket not open");
  int err = nl_send_auto(sk, msg);
  if (err < 0) return NlStatus(err, what + " (send)");
  nl_cb* orig = nl_socket_get_cb(sk);
  std::unique_ptr<nl_cb, NlCbDeleter> cb(nl_cb_clone(orig));
  nl_cb_put(orig);
  if (!cb) return absl::ResourceExhaustedError(what + ": nl_cb_clone failed");
  Exchange x;
  x.on_msg = &on_msg;
  nl_cb_err(cb.get(), NL_CB_CUSTOM, OnError, &x);
  nl_cb_set(cb.get(), NL_CB_ACK, NL_CB_CUSTOM, OnDone, &x);
  nl_cb_set(cb.get(), NL_CB_FINISH, NL_CB_CUSTOM, OnDone, &x);
  nl_cb_set(cb.get(), NL_CB_VALID, NL_CB_CUSTOM, OnValid, &x);
  while (!x.done) {
    int r = nl_recvmsgs(sk, cb.get());
    if (x.error != 0) {
      if (errno_out != nullptr) *errno_out = x.error;
      return ErrnoToStatus(x.error, what);
    }
    if (r < 0) return NlStatus(r, what);
  }
  return absl::OkStatus();
}

absl::StatusOr<NlMsgPtr> NewMsg(int type, int flags) {
  nl_msg* m = nlmsg_alloc_simple(type, flags);
  if (m == nullptr) return absl::ResourceExhaustedError("nlmsg_alloc failed");
  return NlMsgPtr(m);
}

template <typename T>
absl::Status AppendHeader(nl_msg* m, const T& hdr) {
  if (nlmsg_append(m, const_cast<T*>(&hdr), sizeof(hdr), NLMSG_ALIGNTO) < 0) {
    return absl::ResourceExhaustedError("netlink message too small");
  }
  return absl::OkStatus();
}

int Len(const IpAddr& a) { return static_cast<int>(a.len()); }

absl::Status PutOk(int r, const char* attr) {
  if (r < 0) return NlStatus(r, std::string("put attribute ") + attr);
  return absl::OkStatus();
}

absl::StatusOr<NlMsgPtr> RouteMsg(int type, int flags, int oif, const RouteSpec& route,
                                  const std::string& what) {
  absl::StatusOr<IpPrefix> dst = ParseIpOrCidr(route.destination);
  if (!dst.ok()) return Annotate(dst.status(), what);
  IpAddr gw;
  bool has_gw = !route.gateway.empty();
  if (has_gw) {
    absl::StatusOr<IpAddr> g = ParseIp(route.gateway);
    if (!g.ok()) return Annotate(g.status(), what);
    if (g->family != dst->addr.family) {
      return absl::InvalidArgumentError(what + ": gateway family differs from destination");
    }
    gw = *g;
  }
  ASSIGN_OR_RETURN(NlMsgPtr msg, NewMsg(type, flags));
  rtmsg rtm{};
  rtm.rtm_family = static_cast<unsigned char>(dst->addr.family);
  rtm.rtm_dst_len = static_cast<unsigned char>(dst->prefix);
  rtm.rtm_table = static_cast<unsigned char>(route.table < 256 ? route.table : RT_TABLE_UNSPEC);
  rtm.rtm_protocol = RTPROT_BOOT;  // what `ip route add` uses: a statically configured route
  rtm.rtm_scope =
      static_cast<unsigned char>(route.scope.value_or(has_gw ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK));
  rtm.rtm_type = RTN_UNICAST;
  RETURN_IF_ERROR(AppendHeader(msg.get(), rtm));
  if (dst->prefix > 0) {
    RETURN_IF_ERROR(
        PutOk(nla_put(msg.get(), RTA_DST, Len(dst->addr), dst->addr.bytes.data()), "RTA_DST"));
  }
  if (has_gw) {
    RETURN_IF_ERROR(
        PutOk(nla_put(msg.get(), RTA_GATEWAY, Len(gw), gw.bytes.data()), "RTA_GATEWAY"));
  }
  RETURN_IF_ERROR(PutOk(nla_put_u32(msg.get(), RTA_OIF, static_cast<uint32_t>(oif)), "RTA_OIF"));
  if (route.metric != 0) {
    RETURN_IF_ERROR(PutOk(nla_put_u32(msg.get(), RTA_PRIORITY, route.metric), "RTA_PRIORITY"));
  }
  RETURN_IF_ERROR(PutOk(nla_put_u32(msg.get(), RTA_TABLE, route.table), "RTA_TABLE"));
  return msg;
}

std::string RouteWhat(const char* verb, const RouteSpec& r) {
  std::string s = std::string(verb) + " route " + r.destination;
  if (!r.gateway.empty()) s += " via " + r.gateway;
  if (r.table != RT_TABLE_MAIN) s += " table " + std::to_string(r.table);
  return s;
}

// The largest packet the stack builds for the link (GSO) and the largest it aggregates
// (GRO); above 64 KiB that is BIG TCP. IPv4 has its own limits since Linux 6.3; the kernel
// applies the attributes in this order, and a gso/gro size of 64 KiB or less sets the IPv4
// one to it as well.
template <typename T>
absl::Status PutGsoGro(nl_msg* msg, const T& c) {
  const std::pair<int, const std::optional<uint32_t>*> attrs[] = {
      {IFLA_GSO_MAX_SIZE, &c.gso_max_size},
      {IFLA_GRO_MAX_SIZE, &c.gro_max_size},
      {kIflaGsoIpv4MaxSize, &c.gso_ipv4_max_size},
      {kIflaGroIpv4MaxSize, &c.gro_ipv4_max_size}};
  for (const auto& [type, v] : attrs) {
    if (*v) RETURN_IF_ERROR(PutOk(nla_put_u32(msg, type, **v), "IFLA_G[SR]O_*MAX_SIZE"));
  }
  return absl::OkStatus();
}

absl::StatusOr<NlMsgPtr> RuleMsg(int type, int flags, const RuleSpec& rule,
                                 const std::string& what) {
  if (rule.family != AF_INET && rule.family != AF_INET6) {
    return absl::InvalidArgumentError(what + ": family must be IPv4 or IPv6");
  }
  ASSIGN_OR_RETURN(NlMsgPtr msg, NewMsg(type, flags));
  fib_rule_hdr frh{};
  frh.family = static_cast<unsigned char>(rule.family);
  frh.table = static_cast<unsigned char>(rule.table < 256 ? rule.table : RT_TABLE_UNSPEC);
  frh.action = FR_ACT_TO_TBL;
  std::optional<IpPrefix> src, dst;
  for (auto [text, out] : {std::pair{&rule.from, &src}, std::pair{&rule.to, &dst}}) {
    if (text->empty()) continue;
    absl::StatusOr<IpPrefix> c = ParseIpOrCidr(*text);
    if (!c.ok()) return Annotate(c.status(), what);
    if (c->addr.family != rule.family) {
      return absl::InvalidArgumentError(what + ": " + *text + " is not of the rule's family");
    }
    *out = *c;
  }
  if (src) frh.src_len = static_cast<unsigned char>(src->prefix);
  if (dst) frh.dst_len = static_cast<unsigned char>(dst->prefix);
  RETURN_IF_ERROR(AppendHeader(msg.get(), frh));
  RETURN_IF_ERROR(PutOk(nla_put_u32(msg.get(), FRA_PRIORITY, rule.priority), "FRA_PRIORITY"));
  if (src) {
    RETURN_IF_ERROR(
        PutOk(nla_put(msg.get(), FRA_SRC, Len(src->addr), src->addr.bytes.data()), "FRA_SRC"));
  }
  if (dst) {
    RETURN_IF_ERROR(
        PutOk(nla_put(msg.get(), FRA_DST, Len(dst->addr), dst->addr.bytes.data()), "FRA_DST"));
  }
  if (!rule.iif.empty()) {
    RETURN_IF_ERROR(PutOk(nla_put_string(msg.get(), FRA_IIFNAME, rule.iif.c_str()), "FRA_IIFNAME"));
  }
  if (!rule.oif.empty()) {
    RETURN_IF_ERROR(PutOk(nla_put_string(msg.get(), FRA_OIFNAME, rule.oif.c_str()), "FRA_OIFNAME"));
  }
  if (rule.fwmark) {
    // The mask `ip rule add fwmark N` sends: all bits.
    RETURN_IF_ERROR(PutOk(nla_put_u32(msg.get(), FRA_FWMARK, *rule.fwmark), "FRA_FWMARK"));
    RETURN_IF_ERROR(PutOk(nla_put_u32(msg.get(), FRA_FWMASK, 0xffffffffu), "FRA_FWMASK"));
  }
  RETURN_IF_ERROR(PutOk(nla_put_u32(msg.get(), FRA_TABLE, rule.table), "FRA_TABLE"));
  return msg;
}

}  // namespace

std::string RuleText(const RuleSpec& r) {
  std::string s = absl::StrCat("rule ", r.priority, " from ", r.from.empty() ? "all" : r.from);
  if (!r.to.empty()) absl::StrAppend(&s, " to ", r.to);
  if (!r.iif.empty()) absl::StrAppend(&s, " iif ", r.iif);
  if (!r.oif.empty()) absl::StrAppend(&s, " oif ", r.oif);
  if (r.fwmark) absl::StrAppend(&s, " fwmark ", *r.fwmark);
  absl::StrAppend(&s, " lookup ", r.table, r.family == AF_INET6 ? " (IPv6)" : "");
  return s;
}

// --- writes --------------------------------------------------------------------------------

absl::Status ChangeLink(NlSock& sock, int ifindex, const LinkChange& change) {
  std::string what = "change link #" + std::to_string(ifindex);
  ASSIGN_OR_RETURN(NlMsgPtr msg, NewMsg(RTM_NEWLINK, 0));
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = ifindex;
  if (change.up.has_value()) {
    ifi.ifi_flags = *change.up ? IFF_UP : 0;
    ifi.ifi_change = IFF_UP;
  }
  RETURN_IF_ERROR(AppendHeader(msg.get(), ifi));
  if (change.netns_fd >= 0) {
    RETURN_IF_ERROR(
        PutOk(nla_put_u32(msg.get(), IFLA_NET_NS_FD, static_cast<uint32_t>(change.netns_fd)),
              "IFLA_NET_NS_FD"));
  }
  if (change.name.has_value()) {
    if (change.name->empty() || change.name->size() >= IFNAMSIZ) {
      return absl::InvalidArgumentError(what + ": bad interface name \"" + *change.name + "\"");
    }
    RETURN_IF_ERROR(
        PutOk(nla_put_string(msg.get(), IFLA_IFNAME, change.name->c_str()), "IFLA_IFNAME"));
  }
  if (change.mtu.has_value()) {
    RETURN_IF_ERROR(PutOk(nla_put_u32(msg.get(), IFLA_MTU, *change.mtu), "IFLA_MTU"));
  }
  RETURN_IF_ERROR(PutGsoGro(msg.get(), change));
  if (change.mac.has_value()) {
    absl::StatusOr<MacAddr> mac = ParseMac(*change.mac);
    if (!mac.ok()) return Annotate(mac.status(), what);
    RETURN_IF_ERROR(
        PutOk(nla_put(msg.get(), IFLA_ADDRESS, static_cast<int>(mac->size()), mac->data()),
              "IFLA_ADDRESS"));
  }
  return Transact(sock, msg.get(), what);
}

namespace {

std::optional<uint32_t> ChildMode(const std::string& kind, const std::string& mode) {
  if (kind == "macvlan") {
    if (mode == "private") return MACVLAN_MODE_PRIVATE;
    if (mode == "vepa") return MACVLAN_MODE_VEPA;
    if (mode == "bridge") return MACVLAN_MODE_BRIDGE;
    if (mode == "passthru") return MACVLAN_MODE_PASSTHRU;
  } else if (kind == "ipvlan") {
    if (mode == "l2") return IPVLAN_MODE_L2;
    if (mode == "l3") return IPVLAN_MODE_L3;
    if (mode == "l3s") return IPVLAN_MODE_L3S;
  }
  return std::nullopt;
}

}  // namespace

absl::Status CreateChildLink(NlSock& sock, const ChildLink& c) {
  const std::string what =
      "create " + c.kind + " " + c.name + " on link #" + std::to_string(c.parent_ifindex);
  if (c.name.empty() || c.name.size() >= IFNAMSIZ) {
    return absl::InvalidArgumentError(what + ": bad interface name");
  }
  std::optional<uint32_t> mode;
  if (!c.mode.empty()) {
    mode = ChildMode(c.kind, c.mode);
    if (!mode) return absl::InvalidArgumentError(what + ": unknown mode \"" + c.mode + "\"");
  }
  if (c.kind != "macvlan" && c.kind != "ipvlan" && c.kind != "vlan") {
    return absl::InvalidArgumentError(what + ": unknown kind");
  }
  ASSIGN_OR_RETURN(NlMsgPtr msg, NewMsg(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL));
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  RETURN_IF_ERROR(AppendHeader(msg.get(), ifi));
  // IFLA_LINK is looked up in the sender's namespace, the link is created in IFLA_NET_NS_FD's.
  RETURN_IF_ERROR(PutOk(nla_put_u32(msg.get(), IFLA_LINK, static_cast<uint32_t>(c.parent_ifindex)),
                        "IFLA_LINK"));
  if (c.netns_fd >= 0) {
    RETURN_IF_ERROR(PutOk(nla_put_u32(msg.get(), IFLA_NET_NS_FD, static_cast<uint32_t>(c.netns_fd)),
                          "IFLA_NET_NS_FD"));
  }
  RETURN_IF_ERROR(PutOk(nla_put_string(msg.get(), IFLA_IFNAME, c.name.c_str()), "IFLA_IFNAME"));
  if (c.mtu) RETURN_IF_ERROR(PutOk(nla_put_u32(msg.get(), IFLA_MTU, *c.mtu), "IFLA_MTU"));
  RETURN_IF_ERROR(PutGsoGro(msg.get(), c));
  if (c.mac) {
    absl::StatusOr<MacAddr> mac = ParseMac(*c.mac);
    if (!mac.ok()) return Annotate(mac.status(), what);
    RETURN_IF_ERROR(
        PutOk(nla_put(msg.get(), IFLA_ADDRESS, static_cast<int>(mac->size()), mac->data()),
              "IFLA_ADDRESS"));
  }
  nlattr* info = nla_nest_start(msg.get(), IFLA_LINKINFO);
  if (info == nullptr) return absl::ResourceExhaustedError(what + ": message too large");
  RETURN_IF_ERROR(
      PutOk(nla_put_string(msg.get(), IFLA_INFO_KIND, c.kind.c_str()), "IFLA_INFO_KIND"));
  nlattr* data = nla_nest_start(msg.get(), IFLA_INFO_DATA);
  if (data == nullptr) return absl::ResourceExhaustedError(what + ": message too large");
  if (c.kind == "vlan") {
    RETURN_IF_ERROR(PutOk(nla_put_u16(msg.get(), IFLA_VLAN_ID, static_cast<uint16_t>(c.vlan_id)),
                          "IFLA_VLAN_ID"));
  } else if (mode && c.kind == "macvlan") {
    RETURN_IF_ERROR(PutOk(nla_put_u32(msg.get(), IFLA_MACVLAN_MODE, *mode), "IFLA_MACVLAN_MODE"));
  } else if (mode) {
    RETURN_IF_ERROR(PutOk(nla_put_u16(msg.get(), IFLA_IPVLAN_MODE, static_cast<uint16_t>(*mode)),
                          "IFLA_IPVLAN_MODE"));
  }
  nla_nest_end(msg.get(), data);
  nla_nest_end(msg.get(), info);
  return Transact(sock, msg.get(), what);
}

absl::Status CreateVrf(NlSock& sock, const std::string& name, uint32_t table) {
  const std::string what = absl::StrCat("create vrf ", name, " table ", table);
  if (name.empty() || name.size() >= IFNAMSIZ) {
    return absl::InvalidArgumentError(what + ": bad interface name");
  }
  ASSIGN_OR_RETURN(NlMsgPtr msg, NewMsg(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL));
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_flags = IFF_UP;  // `ip link add NAME up type vrf`: no second message to bring it up
  ifi.ifi_change = IFF_UP;
  RETURN_IF_ERROR(AppendHeader(msg.get(), ifi));
  RETURN_IF_ERROR(PutOk(nla_put_string(msg.get(), IFLA_IFNAME, name.c_str()), "IFLA_IFNAME"));
  nlattr* info = nla_nest_start(msg.get(), IFLA_LINKINFO);
  if (info == nullptr) return absl::ResourceExhaustedError(what + ": message too large");
  RETURN_IF_ERROR(PutOk(nla_put_string(msg.get(), IFLA_INFO_KIND, "vrf"), "IFLA_INFO_KIND"));
  nlattr* data = nla_nest_start(msg.get(), IFLA_INFO_DATA);
  if (data == nullptr) return absl::ResourceExhaustedError(what + ": message too large");
  RETURN_IF_ERROR(PutOk(nla_put_u32(msg.get(), IFLA_VRF_TABLE, table), "IFLA_VRF_TABLE"));
  nla_nest_end(msg.get(), data);
  nla_nest_end(msg.get(), info);
  absl::Status st = Transact(sock, msg.get(), what);
  if (st.code() == absl::StatusCode::kUnimplemented) {
    // EOPNOTSUPP: rtnetlink knows no link kind "vrf" (and could not load the module).
    return absl::Status(st.code(), absl::StrCat(st.message(), " (does the kernel have VRF?)"));
  }
  return st;
}

absl::Status DeleteLink(NlSock& sock, int ifindex) {
  const std::string what = "delete link #" + std::to_string(ifindex);
  ASSIGN_OR_RETURN(NlMsgPtr msg, NewMsg(RTM_DELLINK, 0));
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = ifindex;
  RETURN_IF_ERROR(AppendHeader(msg.get(), ifi));
  return Transact(sock, msg.get(), what);
}

absl::Status SetVf(NlSock& sock, int pf_ifindex, const VfChange& change) {
  const std::string what =
      "set VF " + std::to_string(change.vf) + " of link #" + std::to_string(pf_ifindex);
  ASSIGN_OR_RETURN(NlMsgPtr msg, NewMsg(RTM_SETLINK, 0));
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = pf_ifindex;
  RETURN_IF_ERROR(AppendHeader(msg.get(), ifi));
  nlattr* list = nla_nest_start(msg.get(), IFLA_VFINFO_LIST);
  nlattr* info = list ? nla_nest_start(msg.get(), IFLA_VF_INFO) : nullptr;
  if (info == nullptr) return absl::ResourceExhaustedError(what + ": message too large");
  const auto vf = static_cast<uint32_t>(change.vf);
  if (change.mac) {
    absl::StatusOr<MacAddr> mac = ParseMac(*change.mac);
    if (!mac.ok()) return Annotate(mac.status(), what);
    ifla_vf_mac m{};
    m.vf = vf;
    std::memcpy(m.mac, mac->data(), mac->size());
    RETURN_IF_ERROR(PutOk(nla_put(msg.get(), IFLA_VF_MAC, sizeof(m), &m), "IFLA_VF_MAC"));
  }
  if (change.vlan_qos) {
    ifla_vf_vlan v{vf, change.vlan_qos->first, change.vlan_qos->second};
    RETURN_IF_ERROR(PutOk(nla_put(msg.get(), IFLA_VF_VLAN, sizeof(v), &v), "IFLA_VF_VLAN"));
  }
  if (change.spoof_check) {
    ifla_vf_spoofchk s{vf, *change.spoof_check ? 1u : 0u};
    RETURN_IF_ERROR(PutOk(nla_put(msg.get(), IFLA_VF_SPOOFCHK, sizeof(s), &s), "IFLA_VF_SPOOFCHK"));
  }
  if (change.trust) {
    ifla_vf_trust t{vf, *change.trust ? 1u : 0u};
    RETURN_IF_ERROR(PutOk(nla_put(msg.get(), IFLA_VF_TRUST, sizeof(t), &t), "IFLA_VF_TRUST"));
  }
  if (change.link_state) {
    ifla_vf_link_state l{vf, *change.link_state};
    RETURN_IF_ERROR(
        PutOk(nla_put(msg.get(), IFLA_VF_LINK_STATE, sizeof(l), &l), "IFLA_VF_LINK_STATE"));
  }
  if (change.tx_rate) {
    ifla_vf_rate r{vf, change.tx_rate->first, change.tx_rate->second};
    RETURN_IF_ERROR(PutOk(nla_put(msg.get(), IFLA_VF_RATE, sizeof(r), &r), "IFLA_VF_RATE"));
  }
  nla_nest_end(msg.get(), info);
  nla_nest_end(msg.get(), list);
  return Transact(sock, msg.get(), what);
}

absl::Status SetLinkUp(NlSock& sock, int ifindex, bool up) {
  LinkChange c;
  c.up = up;
  return Annotate(ChangeLink(sock, ifindex, c), up ? "set link up" : "set link down");
}

namespace {

absl::StatusOr<NlMsgPtr> LinkUpMsg(int ifindex, bool up) {
  ASSIGN_OR_RETURN(NlMsgPtr msg, NewMsg(RTM_NEWLINK, 0));
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = ifindex;
  ifi.ifi_flags = up ? IFF_UP : 0;
  ifi.ifi_change = IFF_UP;
  RETURN_IF_ERROR(AppendHeader(msg.get(), ifi));
  return msg;
}

absl::StatusOr<NlMsgPtr> AddressMsg(int ifindex, const std::string& cidr, uint32_t flags,
                                    const std::string& what) {
  absl::StatusOr<IpPrefix> c = ParseIpOrCidr(cidr);
  if (!c.ok()) return Annotate(c.status(), what);
  ASSIGN_OR_RETURN(NlMsgPtr msg, NewMsg(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL));
  ifaddrmsg ifa{};
  ifa.ifa_family = static_cast<unsigned char>(c->addr.family);
  ifa.ifa_prefixlen = static_cast<unsigned char>(c->prefix);
  ifa.ifa_flags = static_cast<unsigned char>(flags & 0xff);
  ifa.ifa_scope = RT_SCOPE_UNIVERSE;
  ifa.ifa_index = static_cast<uint32_t>(ifindex);
  RETURN_IF_ERROR(AppendHeader(msg.get(), ifa));
  RETURN_IF_ERROR(
      PutOk(nla_put(msg.get(), IFA_LOCAL, Len(c->addr), c->addr.bytes.data()), "IFA_LOCAL"));
  RETURN_IF_ERROR(
      PutOk(nla_put(msg.get(), IFA_ADDRESS, Len(c->addr), c->addr.bytes.data()), "IFA_ADDRESS"));
  if (flags > 0xff) {
    RETURN_IF_ERROR(PutOk(nla_put_u32(msg.get(), IFA_FLAGS, flags), "IFA_FLAGS"));
  }
  return msg;
}

}  // namespace

absl::Status AddAddress(NlSock& sock, int ifindex, const std::string& cidr, uint32_t flags) {
  std::string what = "add address " + cidr;
  ASSIGN_OR_RETURN(NlMsgPtr msg, AddressMsg(ifindex, cidr, flags, what));
  absl::Status st = Transact(sock, msg.get(), what);
  if (absl::IsAlreadyExists(st)) return absl::OkStatus();
  return st;
}

absl::Status Batch::AddAddress(int ifindex, const std::string& cidr, uint32_t flags) {
  std::string what = "add address " + cidr;
  ASSIGN_OR_RETURN(NlMsgPtr msg, AddressMsg(ifindex, cidr, flags, what));
  reqs_.push_back({std::move(msg), std::move(what), true});
  return absl::OkStatus();
}

absl::Status Batch::SetLinkUp(int ifindex, bool up) {
  ASSIGN_OR_RETURN(NlMsgPtr msg, LinkUpMsg(ifindex, up));
  reqs_.push_back({std::move(msg), up ? "set link up" : "set link down", false});
  return absl::OkStatus();
}

absl::Status Batch::SetMaster(int ifindex, int master_ifindex) {
  ASSIGN_OR_RETURN(NlMsgPtr msg, NewMsg(RTM_NEWLINK, 0));
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = ifindex;
  RETURN_IF_ERROR(AppendHeader(msg.get(), ifi));
  RETURN_IF_ERROR(PutOk(nla_put_u32(msg.get(), IFLA_MASTER, static_cast<uint32_t>(master_ifindex)),
                        "IFLA_MASTER"));
  reqs_.push_back({std::move(msg),
                   absl::StrCat("set master of link #", ifindex, " to #", master_ifindex), false});
  return absl::OkStatus();
}

absl::Status Batch::AddRoute(int oif, const RouteSpec& route) {
  std::string what = RouteWhat("add", route);
  ASSIGN_OR_RETURN(NlMsgPtr msg,
                   RouteMsg(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, oif, route, what));
  reqs_.push_back({std::move(msg), std::move(what), true});
  return absl::OkStatus();
}

absl::Status Batch::AddNeighbor(int ifindex, const std::string& ip, const std::string& mac) {
  std::string what = "add neighbor " + ip + " lladdr " + mac;
  absl::StatusOr<IpAddr> dst = ParseIp(ip);
  if (!dst.ok()) return Annotate(dst.status(), what);
  absl::StatusOr<MacAddr> ll = ParseMac(mac);
  if (!ll.ok()) return Annotate(ll.status(), what);
  // NLM_F_REPLACE: what `ip neigh replace` sends, so a second attach (or an entry the kernel
  // learnt first) ends with exactly this entry.
  ASSIGN_OR_RETURN(NlMsgPtr msg, NewMsg(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE));
  ndmsg ndm{};
  ndm.ndm_family = static_cast<unsigned char>(dst->family);
  ndm.ndm_ifindex = ifindex;
  ndm.ndm_state = NUD_PERMANENT;
  ndm.ndm_type = RTN_UNICAST;
  RETURN_IF_ERROR(AppendHeader(msg.get(), ndm));
  RETURN_IF_ERROR(PutOk(nla_put(msg.get(), NDA_DST, Len(*dst), dst->bytes.data()), "NDA_DST"));
  RETURN_IF_ERROR(PutOk(nla_put(msg.get(), NDA_LLADDR, static_cast<int>(ll->size()), ll->data()),
                        "NDA_LLADDR"));
  reqs_.push_back({std::move(msg), std::move(what), false});
  return absl::OkStatus();
}

absl::Status Batch::AddRule(const RuleSpec& rule) {
  std::string what = "add " + RuleText(rule);
  ASSIGN_OR_RETURN(NlMsgPtr msg, RuleMsg(RTM_NEWRULE, NLM_F_CREATE | NLM_F_EXCL, rule, what));
  reqs_.push_back({std::move(msg), std::move(what), true});
  return absl::OkStatus();
}

absl::Status DelRule(NlSock& sock, const RuleSpec& rule) {
  std::string what = "delete " + RuleText(rule);
  ASSIGN_OR_RETURN(NlMsgPtr msg, RuleMsg(RTM_DELRULE, 0, rule, what));
  absl::Status st = Transact(sock, msg.get(), what);
  if (absl::IsNotFound(st)) return absl::OkStatus();
  return st;
}

absl::Status Batch::Send(NlSock& sock, std::vector<absl::Status>* results) {
  if (results != nullptr) results->clear();
  nl_sock* sk = sock.get();
  if (sk == nullptr) return absl::FailedPreconditionError("netlink socket not open");
  if (reqs_.empty()) return absl::OkStatus();
  // Each request gets its sequence number and NLM_F_ACK, as nl_send_auto would give it; the
  // acks come back in the same order, which keeps libnl's sequence check in step.
  std::vector<unsigned char> buf;
  for (Req& r : reqs_) {
    nl_complete_msg(sk, r.msg.get());
    const nlmsghdr* h = nlmsg_hdr(r.msg.get());
    const auto* p = reinterpret_cast<const unsigned char*>(h);
    buf.insert(buf.end(), p, p + NLMSG_ALIGN(h->nlmsg_len));
  }
  const std::string what = reqs_.size() == 1 ? reqs_[0].what : reqs_[0].what + ", ...";
  int err = nl_sendto(sk, buf.data(), buf.size());
  if (err < 0) return NlStatus(err, what + " (send)");
  nl_cb* orig = nl_socket_get_cb(sk);
  std::unique_ptr<nl_cb, NlCbDeleter> cb(nl_cb_clone(orig));
  nl_cb_put(orig);
  if (!cb) return absl::ResourceExhaustedError(what + ": nl_cb_clone failed");
  absl::Status first;
  for (Req& r : reqs_) {
    Exchange x;
    nl_cb_err(cb.get(), NL_CB_CUSTOM, OnError, &x);
    nl_cb_set(cb.get(), NL_CB_ACK, NL_CB_CUSTOM, OnDone, &x);
    absl::Status st;
    while (!x.done) {
      int rc = nl_recvmsgs(sk, cb.get());
      if (x.error != 0) {
        st = ErrnoToStatus(x.error, r.what);
        break;
      }
      if (rc < 0) {
        // The socket is out of step: nothing more can be read reliably.
        st = NlStatus(rc, r.what);
        if (results != nullptr) results->resize(reqs_.size(), st);
        reqs_.clear();
        return first.ok() ? st : first;
      }
    }
    if (results != nullptr) results->push_back(st);
    if (absl::IsAlreadyExists(st) && r.exists_ok) st = absl::OkStatus();
    if (first.ok() && !st.ok()) first = st;  // the kernel went on with the rest: read them
  }
  reqs_.clear();
  return first;
}

absl::Status DelAddress(NlSock& sock, int ifindex, const std::string& cidr) {
  std::string what = "delete address " + cidr;
  absl::StatusOr<IpPrefix> c = ParseIpOrCidr(cidr);
  if (!c.ok()) return Annotate(c.status(), what);
  ASSIGN_OR_RETURN(NlMsgPtr msg, NewMsg(RTM_DELADDR, 0));
  ifaddrmsg ifa{};
  ifa.ifa_family = static_cast<unsigned char>(c->addr.family);
  ifa.ifa_prefixlen = static_cast<unsigned char>(c->prefix);
  ifa.ifa_index = static_cast<uint32_t>(ifindex);
  RETURN_IF_ERROR(AppendHeader(msg.get(), ifa));
  RETURN_IF_ERROR(
      PutOk(nla_put(msg.get(), IFA_LOCAL, Len(c->addr), c->addr.bytes.data()), "IFA_LOCAL"));
  int err = 0;
  absl::Status st = Transact(sock, msg.get(), what, {}, &err);
  if (err == EADDRNOTAVAIL) return absl::OkStatus();  // the address is not there (any more)
  return st;
}

absl::Status AddRoute(NlSock& sock, int oif, const RouteSpec& route) {
  std::string what = RouteWhat("add", route);
  ASSIGN_OR_RETURN(NlMsgPtr msg,
                   RouteMsg(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, oif, route, what));
  absl::Status st = Transact(sock, msg.get(), what);
  if (absl::IsAlreadyExists(st)) return absl::OkStatus();
  return st;
}

absl::Status DelRoute(NlSock& sock, int oif, const RouteSpec& route) {
  std::string what = RouteWhat("delete", route);
  RouteSpec r = route;
  // RT_SCOPE_NOWHERE in a delete request means "any scope".
  if (!r.scope.has_value()) r.scope = RT_SCOPE_NOWHERE;
  ASSIGN_OR_RETURN(NlMsgPtr msg, RouteMsg(RTM_DELROUTE, 0, oif, r, what));
  absl::Status st = Transact(sock, msg.get(), what);
  if (absl::IsNotFound(st)) return absl::OkStatus();  // ESRCH: no such route
  return st;
}

absl::Status WriteSysctl(const std::string& path, const std::string& value) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus("open " + path);
  ssize_t n = ::write(fd.get(), value.data(), value.size());
  if (n < 0) return ErrnoStatus("write " + value + " to " + path);
  if (static_cast<size_t>(n) != value.size()) {
    return absl::InternalError("short write to " + path);
  }
  return absl::OkStatus();
}

namespace {

absl::Status CheckConfName(const std::string& what, const std::string& s) {
  if (s.empty() || s.find('/') != std::string::npos || s == "." || s == "..") {
    return absl::InvalidArgumentError("sysctl: bad " + what + " \"" + s + "\"");
  }
  return absl::OkStatus();
}

std::string ConfDir(const std::string& family, const std::string& ifname) {
  return "/proc/sys/net/" + family + "/conf/" + ifname;
}

}  // namespace

absl::Status SetInterfaceConfHere(const std::string& ifname,
                                  const std::vector<InterfaceConf>& settings) {
  RETURN_IF_ERROR(CheckConfName("interface name", ifname));
  // Whether the netns has IPv6 is asked only when a write finds no file (saves a stat of the
  // directory on every attach).
  std::optional<bool> have_ipv6;
  for (const InterfaceConf& c : settings) {
    RETURN_IF_ERROR(CheckConfName("family", c.family));
    RETURN_IF_ERROR(CheckConfName("key", c.key));
    const std::string dir = ConfDir(c.family, ifname);
    const bool ipv6 = c.family == "ipv6";
    if (!ipv6 || have_ipv6 != false) {
      absl::Status st = WriteSysctl(dir + "/" + c.key, c.value);
      if (st.ok() || !ipv6 || have_ipv6.has_value() || !absl::IsNotFound(st)) {
        RETURN_IF_ERROR(st);
        if (ipv6) have_ipv6 = true;
        continue;
      }
      struct stat sb {};
      const bool found = ::stat(dir.c_str(), &sb) == 0;
      if (!found && errno != ENOENT) return ErrnoStatus("stat " + dir);
      have_ipv6 = found;
      if (found) return st;  // IPv6 is there, the key is not
    }
    if (!c.required) continue;  // IPv6 disabled in this kernel/netns
    return absl::FailedPreconditionError("set ipv6 " + c.key + " of " + ifname +
                                         ": the network namespace has no IPv6 (" + dir +
                                         " does not exist)");
  }
  return absl::OkStatus();
}

absl::Status SetInterfaceConf(const netns::Netns& ns, const std::string& ifname,
                              const std::vector<InterfaceConf>& settings) {
  return netns::RunIn(ns, [&] { return SetInterfaceConfHere(ifname, settings); });
}

absl::StatusOr<std::string> ReadInterfaceConf(const std::string& ifname, const std::string& family,
                                              const std::string& key) {
  RETURN_IF_ERROR(CheckConfName("interface name", ifname));
  RETURN_IF_ERROR(CheckConfName("family", family));
  RETURN_IF_ERROR(CheckConfName("key", key));
  const std::string path = ConfDir(family, ifname) + "/" + key;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return absl::NotFoundError(path + " does not exist");
    return ErrnoStatus("open " + path);
  }
  char buf[64];
  ssize_t n = ::read(fd.get(), buf, sizeof(buf));
  if (n < 0) return ErrnoStatus("read " + path);
  std::string v(buf, static_cast<size_t>(n));
  while (!v.empty() && (v.back() == '\n' || v.back() == ' ')) v.pop_back();
  return v;
}

}  // namespace knd::netlink
