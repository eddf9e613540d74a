#include "netlink/query.h"

#include <arpa/inet.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/if_arp.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <netlink/attr.h>
#include <netlink/handlers.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <netlink/socket.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdio>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "common/net_addr.h"
#include "common/status.h"

// The messages are parsed by hand (nlmsg_parse over the raw attributes) rather than through
// libnl's object caches: libnl 3.7 has no accessor for IFLA_PERM_ADDRESS, which restore needs
// to recognise a NIC the kernel handed back under another name, and a raw parse is one dump.

namespace knd::netlink {

namespace {

uint32_t AttrU32(const nlattr* a) {
  return nla_len(a) >= 4 ? nla_get_u32(const_cast<nlattr*>(a)) : 0;
}

std::string AttrString(const nlattr* a) {
  const char* data = static_cast<const char*>(nla_data(a));
  int len = nla_len(a);
  // Kernel strings are NUL-terminated, but never trust the terminator to be there.
  return std::string(data, strnlen(data, len > 0 ? len : 0));
}

// Sends `msg` and feeds every reply to `cb(arg)` until the dump ends or the single reply
// arrived. Callbacks are installed on a private clone so the socket's own stay untouched.
absl::Status Exchange(NlSock& sock, nl_msg* msg, nl_recvmsg_msg_cb_t fn, void* arg,
                      const std::string& what) {
  if (!sock) return absl::FailedPreconditionError(absl::StrCat(what, ": socket not open"));
  int err = nl_send_auto(sock.get(), msg);
  if (err < 0) return NlStatus(err, absl::StrCat(what, ": send"));
  // nl_socket_get_cb() takes a reference that must be dropped, or every socket's callback
  // set leaks.
  nl_cb* orig = nl_socket_get_cb(sock.get());
  nl_cb* cb = nl_cb_clone(orig);
  nl_cb_put(orig);
  if (cb == nullptr) return absl::ResourceExhaustedError(absl::StrCat(what, ": nl_cb_clone"));
  nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, fn, arg);
  err = nl_recvmsgs(sock.get(), cb);
  nl_cb_put(cb);
  if (err < 0) return NlStatus(err, what);
  // A single (non-dump) reply is not the end of the exchange for libnl's sequence tracking:
  // requests carry NLM_F_ACK and the kernel's ACK that follows the reply must be consumed,
  // or the next request on this socket would read it as its answer.
  if ((nlmsg_hdr(msg)->nlmsg_flags & NLM_F_DUMP) != NLM_F_DUMP) {
    err = nl_wait_for_ack(sock.get());
    if (err < 0) return NlStatus(err, absl::StrCat(what, ": ack"));
  }
  return absl::OkStatus();
}

int OnLink(nl_msg* msg, void* arg) {
  auto* out = static_cast<std::vector<Link>*>(arg);
  nlmsghdr* hdr = nlmsg_hdr(msg);
  if (hdr->nlmsg_type != RTM_NEWLINK) return NL_SKIP;
  constexpr int kMax = IFLA_MAX > kIflaMaxKnown ? IFLA_MAX : kIflaMaxKnown;
  nlattr* tb[kMax + 1] = {};
  if (nlmsg_parse(hdr, sizeof(ifinfomsg), tb, kMax, nullptr) < 0) return NL_SKIP;
  const auto* ifi = static_cast<const ifinfomsg*>(nlmsg_data(hdr));
  Link l;
  l.ifindex = ifi->ifi_index;
  l.flags = ifi->ifi_flags;
  if (tb[IFLA_IFNAME]) l.name = AttrString(tb[IFLA_IFNAME]);
  if (tb[IFLA_ADDRESS]) {
    l.mac = FormatMac(static_cast<const unsigned char*>(nla_data(tb[IFLA_ADDRESS])),
                      nla_len(tb[IFLA_ADDRESS]));
  }
  if (tb[IFLA_PERM_ADDRESS]) {
    l.perm_mac = FormatMac(static_cast<const unsigned char*>(nla_data(tb[IFLA_PERM_ADDRESS])),
                           nla_len(tb[IFLA_PERM_ADDRESS]));
  }
  if (tb[IFLA_MTU]) l.mtu = AttrU32(tb[IFLA_MTU]);
  if (tb[IFLA_GSO_MAX_SIZE]) l.gso_max_size = AttrU32(tb[IFLA_GSO_MAX_SIZE]);
  if (tb[IFLA_GRO_MAX_SIZE]) l.gro_max_size = AttrU32(tb[IFLA_GRO_MAX_SIZE]);
  if (tb[kIflaGsoIpv4MaxSize]) l.gso_ipv4_max_size = AttrU32(tb[kIflaGsoIpv4MaxSize]);
  if (tb[kIflaGroIpv4MaxSize]) l.gro_ipv4_max_size = AttrU32(tb[kIflaGroIpv4MaxSize]);
  if (tb[IFLA_PARENT_DEV_NAME]) l.parent_dev = AttrString(tb[IFLA_PARENT_DEV_NAME]);
  if (tb[IFLA_PARENT_DEV_BUS_NAME]) l.parent_bus = AttrString(tb[IFLA_PARENT_DEV_BUS_NAME]);
  if (tb[IFLA_MASTER]) l.master_ifindex = static_cast<int>(AttrU32(tb[IFLA_MASTER]));
  if (tb[IFLA_LINK]) l.link_ifindex = static_cast<int>(AttrU32(tb[IFLA_LINK]));
  uint8_t oper = IF_OPER_UNKNOWN;
  if (tb[IFLA_OPERSTATE] && nla_len(tb[IFLA_OPERSTATE]) >= 1) oper = nla_get_u8(tb[IFLA_OPERSTATE]);
  char buf[32] = {};
  rtnl_link_operstate2str(oper, buf, sizeof(buf));
  l.operstate = buf;
  if (tb[IFLA_LINKINFO]) {
    nlattr* info[IFLA_INFO_MAX + 1] = {};
    if (nla_parse_nested(info, IFLA_INFO_MAX, tb[IFLA_LINKINFO], nullptr) == 0 &&
        info[IFLA_INFO_KIND]) {
      l.kind = AttrString(info[IFLA_INFO_KIND]);
      nlattr* data[IFLA_VRF_MAX + 1] = {};
      if (l.kind == "vrf" && info[IFLA_INFO_DATA] &&
          nla_parse_nested(data, IFLA_VRF_MAX, info[IFLA_INFO_DATA], nullptr) == 0 &&
          data[IFLA_VRF_TABLE]) {
        l.vrf_table = AttrU32(data[IFLA_VRF_TABLE]);
      }
    }
  }
  out->push_back(std::move(l));
  return NL_OK;
}

// RTM_GETLINK: a dump when ifindex == 0 and name is empty, else a single lookup.
absl::Status QueryLinks(NlSock& sock, int ifindex, const std::string& name,
                        std::vector<Link>* out) {
  bool dump = ifindex == 0 && name.empty();
  NlMsgPtr msg(nlmsg_alloc_simple(RTM_GETLINK, dump ? NLM_F_DUMP : NLM_F_ACK));
  if (!msg) return absl::ResourceExhaustedError("nlmsg_alloc");
  ifinfomsg ifi = {};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = ifindex;
  std::string what = dump ? std::string("dump links")
                          : (name.empty() ? absl::StrCat("get link ifindex ", ifindex)
                                          : absl::StrCat("get link ", name));
  if (nlmsg_append(msg.get(), &ifi, sizeof(ifi), NLMSG_ALIGNTO) < 0 ||
      nla_put_u32(msg.get(), IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS) < 0 ||
      (!name.empty() && nla_put_string(msg.get(), IFLA_IFNAME, name.c_str()) < 0)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": message too large"));
  }
  return Exchange(sock, msg.get(), OnLink, out, what);
}

int OnAddr(nl_msg* msg, void* arg) {
  auto* out = static_cast<std::vector<Address>*>(arg);
  nlmsghdr* hdr = nlmsg_hdr(msg);
  if (hdr->nlmsg_type != RTM_NEWADDR) return NL_SKIP;
  nlattr* tb[IFA_MAX + 1] = {};
  if (nlmsg_parse(hdr, sizeof(ifaddrmsg), tb, IFA_MAX, nullptr) < 0) return NL_SKIP;
  const auto* ifa = static_cast<const ifaddrmsg*>(nlmsg_data(hdr));
  // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on point-to-point
  // links and equal to IFA_LOCAL elsewhere (IPv6 sends only IFA_ADDRESS).
  nlattr* a = tb[IFA_LOCAL] ? tb[IFA_LOCAL] : tb[IFA_ADDRESS];
  if (a == nullptr) return NL_SKIP;
  Address addr;
  addr.ifindex = static_cast<int>(ifa->ifa_index);
  addr.family = ifa->ifa_family;
  addr.scope = ifa->ifa_scope;
  addr.flags = tb[IFA_FLAGS] ? AttrU32(tb[IFA_FLAGS]) : ifa->ifa_flags;
  addr.cidr = FormatCidr(ifa->ifa_family, nla_data(a), nla_len(a), ifa->ifa_prefixlen);
  if (addr.cidr.empty()) return NL_SKIP;
  out->push_back(std::move(addr));
  return NL_OK;
}

int OnRoute(nl_msg* msg, void* arg) {
  auto* out = static_cast<std::vector<Route>*>(arg);
  nlmsghdr* hdr = nlmsg_hdr(msg);
  if (hdr->nlmsg_type != RTM_NEWROUTE) return NL_SKIP;
  nlattr* tb[RTA_MAX + 1] = {};
  if (nlmsg_parse(hdr, sizeof(rtmsg), tb, RTA_MAX, nullptr) < 0) return NL_SKIP;
  const auto* rtm = static_cast<const rtmsg*>(nlmsg_data(hdr));
  if (rtm->rtm_family != AF_INET && rtm->rtm_family != AF_INET6) return NL_SKIP;
  if (rtm->rtm_flags & RTM_F_CLONED) return NL_SKIP;
  Route r;
  r.family = rtm->rtm_family;
  r.table = tb[RTA_TABLE] ? AttrU32(tb[RTA_TABLE]) : rtm->rtm_table;
  r.scope = rtm->rtm_scope;
  r.protocol = rtm->rtm_protocol;
  r.type = rtm->rtm_type;
  if (tb[RTA_PRIORITY]) r.priority = AttrU32(tb[RTA_PRIORITY]);
  unsigned char zero[16] = {};
  size_t alen = r.family == AF_INET ? 4 : 16;
  if (tb[RTA_DST]) {
    r.dst = FormatCidr(r.family, nla_data(tb[RTA_DST]), nla_len(tb[RTA_DST]), rtm->rtm_dst_len);
  } else {
    r.dst = FormatCidr(r.family, zero, alen, rtm->rtm_dst_len);
  }
  if (tb[RTA_GATEWAY]) {
    r.gateway = FormatIp(r.family, nla_data(tb[RTA_GATEWAY]), nla_len(tb[RTA_GATEWAY]));
  }
  if (tb[RTA_OIF]) r.oif = static_cast<int>(AttrU32(tb[RTA_OIF]));
  if (tb[RTA_MULTIPATH] && r.oif == 0) {
    // Multipath: report the first next hop.
    auto* nh = static_cast<rtnexthop*>(nla_data(tb[RTA_MULTIPATH]));
    int len = nla_len(tb[RTA_MULTIPATH]);
    if (len >= static_cast<int>(sizeof(rtnexthop)) && RTNH_OK(nh, len)) {
      r.oif = nh->rtnh_ifindex;
      int attrlen = nh->rtnh_len - static_cast<int>(RTNH_LENGTH(0));
      nlattr* nhtb[RTA_MAX + 1] = {};
      if (attrlen > 0 &&
          nla_parse(nhtb, RTA_MAX, reinterpret_cast<nlattr*>(RTNH_DATA(nh)), attrlen, nullptr) ==
              0 &&
          nhtb[RTA_GATEWAY] && r.gateway.empty()) {
        r.gateway = FormatIp(r.family, nla_data(nhtb[RTA_GATEWAY]), nla_len(nhtb[RTA_GATEWAY]));
      }
    }
  }
  out->push_back(std::move(r));
  return NL_OK;
}

template <typename Header>
absl::Status Dump(NlSock& sock, int type, int family, nl_recvmsg_msg_cb_t fn, void* arg,
                  const std::string& what) {
  NlMsgPtr msg(nlmsg_alloc_simple(type, NLM_F_DUMP));
  if (!msg) return absl::ResourceExhaustedError("nlmsg_alloc");
  Header h = {};
  // Every rtnetlink header starts with a one-byte family.
  *reinterpret_cast<unsigned char*>(&h) = static_cast<unsigned char>(family);
  if (nlmsg_append(msg.get(), &h, sizeof(h), NLMSG_ALIGNTO) < 0) {
    return absl::InternalError(absl::StrCat(what, ": nlmsg_append"));
  }
  return Exchange(sock, msg.get(), fn, arg, what);
}

}  // namespace

absl::StatusOr<std::vector<Link>> ListLinks(NlSock& sock) {
  std::vector<Link> out;
  absl::Status st = QueryLinks(sock, 0, "", &out);
  if (!st.ok()) return st;
  std::sort(out.begin(), out.end(),
            [](const Link& a, const Link& b) { return a.ifindex < b.ifindex; });
  return out;
}

absl::StatusOr<Link> GetLink(NlSock& sock, int ifindex) {
  if (ifindex <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("get link: bad ifindex ", ifindex));
  }
  std::vector<Link> out;
  absl::Status st = QueryLinks(sock, ifindex, "", &out);
  if (!st.ok()) return st;
  if (out.empty()) return absl::NotFoundError(absl::StrCat("no link with ifindex ", ifindex));
  return out.front();
}

absl::StatusOr<Link> GetLinkByName(NlSock& sock, const std::string& name) {
  if (name.empty() || name.size() >= 16) {
    return absl::InvalidArgumentError(absl::StrCat("get link: bad interface name \"", name, "\""));
  }
  std::vector<Link> out;
  absl::Status st = QueryLinks(sock, 0, name, &out);
  if (!st.ok()) return st;
  if (out.empty()) return absl::NotFoundError(absl::StrCat("no link named ", name));
  return out.front();
}

absl::StatusOr<LinkId> GetEtherLinkId(NlSock& sock, const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ) {
    return absl::InvalidArgumentError(absl::StrCat("get link: bad interface name \"", name, "\""));
  }
  if (!sock) return absl::FailedPreconditionError("get link " + name + ": socket not open");
  // Device ioctls on any socket act in the socket's namespace (sock_do_ioctl -> dev_ioctl).
  ifreq ifr{};
  std::copy(name.begin(), name.end(), ifr.ifr_name);
  if (::ioctl(sock.fd(), SIOCGIFINDEX, &ifr) != 0) {
    if (errno == ENODEV) return absl::NotFoundError(absl::StrCat("no link named ", name));
    return ErrnoStatus("get ifindex of " + name);
  }
  LinkId out;
  out.ifindex = ifr.ifr_ifindex;
  if (::ioctl(sock.fd(), SIOCGIFHWADDR, &ifr) != 0) {
    if (errno == ENODEV) return absl::NotFoundError(absl::StrCat("no link named ", name));
    return ErrnoStatus("get MAC of " + name);
  }
  if (ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER) {
    return absl::FailedPreconditionError(
        absl::StrCat(name, " is not an Ethernet link (type ", ifr.ifr_hwaddr.sa_family, ")"));
  }
  out.mac = FormatMac(reinterpret_cast<const unsigned char*>(ifr.ifr_hwaddr.sa_data), 6);
  return out;
}

namespace {

struct VfQuery {
  int vf;
  std::optional<VfConfig> found;
};

int OnVfLink(nl_msg* msg, void* arg) {
  auto* q = static_cast<VfQuery*>(arg);
  nlmsghdr* hdr = nlmsg_hdr(msg);
  if (hdr->nlmsg_type != RTM_NEWLINK) return NL_SKIP;
  nlattr* tb[IFLA_MAX + 1] = {};
  if (nlmsg_parse(hdr, sizeof(ifinfomsg), tb, IFLA_MAX, nullptr) < 0) return NL_SKIP;
  if (!tb[IFLA_VFINFO_LIST]) return NL_OK;
  nlattr* info;
  int rem;
  nla_for_each_nested(info, tb[IFLA_VFINFO_LIST], rem) {
    if (nla_type(info) != IFLA_VF_INFO) continue;
    nlattr* vf[IFLA_VF_MAX + 1] = {};
    if (nla_parse_nested(vf, IFLA_VF_MAX, info, nullptr) < 0 || !vf[IFLA_VF_MAC]) continue;
    if (nla_len(vf[IFLA_VF_MAC]) < static_cast<int>(sizeof(ifla_vf_mac))) continue;
    const auto* mac = static_cast<const ifla_vf_mac*>(nla_data(vf[IFLA_VF_MAC]));
    if (static_cast<int>(mac->vf) != q->vf) continue;
    VfConfig c;
    c.vf = q->vf;
    c.mac = FormatMac(mac->mac, 6);
    // Each setting only when the kernel sent the whole struct (older kernels send fewer).
    auto get = [&](int type, size_t size) -> const void* {
      return vf[type] && nla_len(vf[type]) >= static_cast<int>(size) ? nla_data(vf[type]) : nullptr;
    };
    if (const auto* v = static_cast<const ifla_vf_vlan*>(get(IFLA_VF_VLAN, sizeof(ifla_vf_vlan)))) {
      c.vlan = v->vlan;
      c.qos = v->qos;
    }
    // A setting of (u32)-1 means the driver does not support it.
    if (const auto* s =
            static_cast<const ifla_vf_spoofchk*>(get(IFLA_VF_SPOOFCHK, sizeof(ifla_vf_spoofchk)));
        s && s->setting != UINT32_MAX) {
      c.spoof_check = s->setting != 0;
    }
    if (const auto* t =
            static_cast<const ifla_vf_trust*>(get(IFLA_VF_TRUST, sizeof(ifla_vf_trust)));
        t && t->setting != UINT32_MAX) {
      c.trust = t->setting != 0;
    }
    if (const auto* l = static_cast<const ifla_vf_link_state*>(
            get(IFLA_VF_LINK_STATE, sizeof(ifla_vf_link_state)))) {
      c.link_state = l->link_state;
    }
    if (const auto* r = static_cast<const ifla_vf_rate*>(get(IFLA_VF_RATE, sizeof(ifla_vf_rate)))) {
      c.min_tx_rate = r->min_tx_rate;
      c.max_tx_rate = r->max_tx_rate;
    }
    q->found = std::move(c);
  }
  return NL_OK;
}

}  // namespace

absl::StatusOr<VfConfig> GetVfConfig(NlSock& sock, int pf_ifindex, int vf) {
  const std::string what = absl::StrCat("get VF ", vf, " of link #", pf_ifindex);
  NlMsgPtr msg(nlmsg_alloc_simple(RTM_GETLINK, NLM_F_ACK));
  if (!msg) return absl::ResourceExhaustedError("nlmsg_alloc");
  ifinfomsg ifi = {};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = pf_ifindex;
  if (nlmsg_append(msg.get(), &ifi, sizeof(ifi), NLMSG_ALIGNTO) < 0 ||
      nla_put_u32(msg.get(), IFLA_EXT_MASK, RTEXT_FILTER_VF | RTEXT_FILTER_SKIP_STATS) < 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": message too large"));
  }
  VfQuery q{vf, std::nullopt};
  absl::Status st = Exchange(sock, msg.get(), OnVfLink, &q, what);
  if (!st.ok()) return st;
  if (!q.found) return absl::NotFoundError(absl::StrCat(what, ": the PF reports no such VF"));
  return *q.found;
}

absl::StatusOr<std::vector<Address>> ListAddresses(NlSock& sock, int ifindex) {
  std::vector<Address> all;
  absl::Status st = Dump<ifaddrmsg>(sock, RTM_GETADDR, AF_UNSPEC, OnAddr, &all, "dump addresses");
  if (!st.ok()) return st;
  std::vector<Address> out;
  for (auto& a : all) {
    if (ifindex == 0 || a.ifindex == ifindex) out.push_back(std::move(a));
  }
  std::sort(out.begin(), out.end(), [](const Address& a, const Address& b) {
    return std::tie(a.ifindex, a.family, a.cidr) < std::tie(b.ifindex, b.family, b.cidr);
  });
  return out;
}

absl::StatusOr<std::vector<Route>> ListRoutes(NlSock& sock, int family, int oif) {
  if (family != AF_UNSPEC && family != AF_INET && family != AF_INET6) {
    return absl::InvalidArgumentError(absl::StrCat("list routes: unsupported family ", family));
  }
  std::vector<Route> all;
  absl::Status st = Dump<rtmsg>(sock, RTM_GETROUTE, family, OnRoute, &all, "dump routes");
  if (!st.ok()) return st;
  std::vector<Route> out;
  for (auto& r : all) {
    if (family != AF_UNSPEC && r.family != family) continue;
    if (oif != 0 && r.oif != oif) continue;
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace knd::netlink
