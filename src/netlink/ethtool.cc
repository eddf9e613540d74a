#include "netlink/ethtool.h"

#include <fnmatch.h>
#include <linux/ethtool_netlink.h>
#include <linux/netlink.h>
#include <netlink/attr.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/handlers.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>

#include <array>
#include <iterator>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"

namespace knd::netlink {

namespace {

std::string AttrString(const nlattr* a) {
  const char* data = static_cast<const char*>(nla_data(a));
  int len = nla_len(a);
  return std::string(data, strnlen(data, len > 0 ? len : 0));
}

// Every bit a verbose bitset (no ETHTOOL_FLAG_COMPACT_BITSETS) lists, by name, and whether it
// is set: with ETHTOOL_A_BITSET_NOMASK every listed bit is, otherwise those with
// ETHTOOL_A_BITSET_BIT_VALUE.
std::map<std::string, bool> ListedBits(nlattr* bitset) {
  std::map<std::string, bool> out;
  nlattr* tb[ETHTOOL_A_BITSET_MAX + 1] = {};
  if (nla_parse_nested(tb, ETHTOOL_A_BITSET_MAX, bitset, nullptr) < 0) return out;
  const bool nomask = tb[ETHTOOL_A_BITSET_NOMASK] != nullptr;
  if (tb[ETHTOOL_A_BITSET_BITS] == nullptr) return out;
  nlattr* bit;
  int rem;
  nla_for_each_nested(bit, tb[ETHTOOL_A_BITSET_BITS], rem) {
    if (nla_type(bit) != ETHTOOL_A_BITSET_BITS_BIT) continue;
    nlattr* bt[ETHTOOL_A_BITSET_BIT_MAX + 1] = {};
    if (nla_parse_nested(bt, ETHTOOL_A_BITSET_BIT_MAX, bit, nullptr) < 0) continue;
    if (bt[ETHTOOL_A_BITSET_BIT_NAME] == nullptr) continue;
    out[AttrString(bt[ETHTOOL_A_BITSET_BIT_NAME])] =
        nomask || bt[ETHTOOL_A_BITSET_BIT_VALUE] != nullptr;
  }
  return out;
}

// The names of the bits a verbose bitset has set.
std::set<std::string> SetBits(nlattr* bitset) {
  std::set<std::string> out;
  for (const auto& [name, on] : ListedBits(bitset)) {
    if (on) out.insert(name);
  }
  return out;
}

struct FeatureSets {
  std::set<std::string> hw, wanted, active, nochange;
  bool seen = false;
};

int OnFeatures(nl_msg* msg, void* arg) {
  auto* out = static_cast<FeatureSets*>(arg);
  nlattr* tb[ETHTOOL_A_FEATURES_MAX + 1] = {};
  if (genlmsg_parse(nlmsg_hdr(msg), 0, tb, ETHTOOL_A_FEATURES_MAX, nullptr) < 0) return NL_SKIP;
  if (genlmsg_hdr(nlmsg_hdr(msg))->cmd != ETHTOOL_MSG_FEATURES_GET_REPLY) return NL_SKIP;
  out->seen = true;
  if (tb[ETHTOOL_A_FEATURES_HW]) out->hw = SetBits(tb[ETHTOOL_A_FEATURES_HW]);
  if (tb[ETHTOOL_A_FEATURES_WANTED]) out->wanted = SetBits(tb[ETHTOOL_A_FEATURES_WANTED]);
  if (tb[ETHTOOL_A_FEATURES_ACTIVE]) out->active = SetBits(tb[ETHTOOL_A_FEATURES_ACTIVE]);
  if (tb[ETHTOOL_A_FEATURES_NOCHANGE]) out->nochange = SetBits(tb[ETHTOOL_A_FEATURES_NOCHANGE]);
  return NL_OK;
}

absl::Status PutStatus(int err, const char* what) {
  return err < 0 ? NlStatus(err, absl::StrCat("build ethtool request: ", what)) : absl::OkStatus();
}

// An ETHTOOL_MSG_* request for `ifname`, with header flags `flags`.
absl::StatusOr<NlMsgPtr> Request(int family, uint8_t cmd, const std::string& ifname,
                                 uint32_t flags) {
  NlMsgPtr msg(nlmsg_alloc());
  if (!msg) return absl::ResourceExhaustedError("nlmsg_alloc failed");
  if (genlmsg_put(msg.get(), NL_AUTO_PORT, NL_AUTO_SEQ, family, 0, NLM_F_REQUEST, cmd,
                  ETHTOOL_GENL_VERSION) == nullptr) {
    return absl::InternalError("genlmsg_put failed");
  }
  nlattr* hdr = nla_nest_start(msg.get(), ETHTOOL_A_FEATURES_HEADER);  // 1 in every message
  if (hdr == nullptr) return absl::InternalError("build ethtool request: header");
  RETURN_IF_ERROR(
      PutStatus(nla_put_string(msg.get(), ETHTOOL_A_HEADER_DEV_NAME, ifname.c_str()), "name"));
  if (flags != 0) {
    RETURN_IF_ERROR(PutStatus(nla_put_u32(msg.get(), ETHTOOL_A_HEADER_FLAGS, flags), "flags"));
  }
  nla_nest_end(msg.get(), hdr);
  return msg;
}

}  // namespace

absl::StatusOr<EthtoolSocket> EthtoolSocket::Open() {
  nl_sock* raw = nl_socket_alloc();
  if (raw == nullptr) return absl::ResourceExhaustedError("nl_socket_alloc failed");
  NlSock sock(raw);
  if (int err = genl_connect(raw); err < 0) {
    return NlStatus(err, "connect NETLINK_GENERIC socket");
  }
  nl_socket_set_msg_buf_size(raw, 64 * 1024);
  int family = genl_ctrl_resolve(raw, ETHTOOL_GENL_NAME);
  if (family < 0) {
    return absl::NotFoundError(
        absl::StrCat("the kernel has no \"", ETHTOOL_GENL_NAME,
                     "\" netlink family (ethtool over netlink needs Linux 5.6 or later)"));
  }
  return EthtoolSocket(std::move(sock), family);
}

absl::StatusOr<EthtoolSocket> EthtoolSocket::OpenIn(const netns::Netns& ns) {
  std::optional<EthtoolSocket> out;
  absl::Status st = netns::RunIn(ns, [&out]() -> absl::Status {
    ASSIGN_OR_RETURN(EthtoolSocket s, Open());
    out.emplace(std::move(s));
    return absl::OkStatus();
  });
  if (!st.ok()) return Annotate(st, absl::StrCat("open ethtool socket in ", ns.path()));
  return std::move(*out);
}

absl::Status EthtoolSocket::Get(uint8_t cmd, const std::string& ifname, const std::string& what,
                                int (*parse)(nl_msg*, void*), void* arg) {
  ASSIGN_OR_RETURN(NlMsgPtr msg, Request(family_, cmd, ifname, 0));
  nlmsg_hdr(msg.get())->nlmsg_flags |= NLM_F_ACK;
  if (int err = nl_send_auto(sock_.get(), msg.get()); err < 0) {
    return NlStatus(err, what + ": send");
  }
  nl_cb* orig = nl_socket_get_cb(sock_.get());
  nl_cb* cb = nl_cb_clone(orig);
  nl_cb_put(orig);
  if (cb == nullptr) return absl::ResourceExhaustedError(what + ": nl_cb_clone");
  nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, parse, arg);
  int err = nl_recvmsgs(sock_.get(), cb);
  nl_cb_put(cb);
  if (err < 0) return NlStatus(err, what);
  if (err = nl_wait_for_ack(sock_.get()); err < 0) return NlStatus(err, what + ": ack");
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::string, EthtoolSocket::Feature>> EthtoolSocket::Features(
    const std::string& ifname) {
  const std::string what = "ethtool features of " + ifname;
  FeatureSets sets;
  RETURN_IF_ERROR(Get(ETHTOOL_MSG_FEATURES_GET, ifname, what, OnFeatures, &sets));
  if (!sets.seen) return absl::InternalError(what + ": no reply");
  std::map<std::string, Feature> out;
  for (const std::set<std::string>* s : {&sets.hw, &sets.wanted, &sets.active, &sets.nochange}) {
    for (const std::string& n : *s) out[n];
  }
  for (auto& [name, f] : out) {
    f.wanted = sets.wanted.count(name) > 0;
    f.active = sets.active.count(name) > 0;
    f.changeable = sets.hw.count(name) > 0 && sets.nochange.count(name) == 0;
  }
  return out;
}

const char* FeatureAliasPattern(const std::string& name) {
  // ethtool's off_flag_def (common.c): short name, long name, kernel feature pattern.
  static constexpr std::array<std::array<const char*, 3>, 12> kAliases = {{
      {"rx", "rx-checksumming", "rx-checksum"},
      {"tx", "tx-checksumming", "tx-checksum-*"},
      {"sg", "scatter-gather", "tx-scatter-gather*"},
      {"tso", "tcp-segmentation-offload", "tx-tcp*-segmentation"},
      {"ufo", "udp-fragmentation-offload", "tx-udp-fragmentation"},
      {"gso", "generic-segmentation-offload", "tx-generic-segmentation"},
      {"gro", "generic-receive-offload", "rx-gro"},
      {"lro", "large-receive-offload", "rx-lro"},
      {"rxvlan", "rx-vlan-offload", "rx-vlan-hw-parse"},
      {"txvlan", "tx-vlan-offload", "tx-vlan-hw-insert"},
      {"ntuple", "ntuple-filters", "rx-ntuple-filter"},
      {"rxhash", "receive-hashing", "rx-hashing"},
  }};
  for (const auto& [short_name, long_name, pattern] : kAliases) {
    if (name == short_name || name == long_name) return pattern;
  }
  return nullptr;
}

absl::StatusOr<std::map<std::string, bool>> ResolveFeatures(
    const std::map<std::string, bool>& want,
    const std::map<std::string, EthtoolSocket::Feature>& features, const std::string& ifname) {
  std::vector<std::string> changeable;
  for (const auto& [name, f] : features) {
    if (f.changeable) changeable.push_back(name);
  }
  auto refuse = [&](const std::string& name, const char* why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ethtool feature \"", name, "\" cannot be changed on ", ifname, " (", why,
        "; changeable: ", changeable.empty() ? "none" : absl::StrJoin(changeable, ", "), ")"));
  };
  std::map<std::string, bool> out;
  for (const auto& [name, on] : want) {  // kernel names first: they win over aliases
    if (FeatureAliasPattern(name) != nullptr && features.count(name) == 0) continue;
    auto it = features.find(name);
    // Features that are off and fixed are in none of the kernel's sets, like names the
    // kernel does not know: one answer for both, with what may be changed.
    if (it == features.end() || !it->second.changeable) {
      return refuse(name, "fixed, or not a kernel feature name");
    }
    out[name] = on;
  }
  for (const auto& [name, on] : want) {
    const char* pattern = FeatureAliasPattern(name);
    if (pattern == nullptr || features.count(name) != 0) continue;
    bool matched = false;
    for (const std::string& c : changeable) {
      if (fnmatch(pattern, c.c_str(), 0) != 0) continue;
      matched = true;
      out.emplace(c, on);  // an explicit kernel name keeps its own value
    }
    if (!matched) return refuse(name, absl::StrCat("ethtool's alias for ", pattern).c_str());
  }
  return out;
}

absl::Status EthtoolSocket::SendWanted(const std::string& ifname,
                                       const std::map<std::string, bool>& want) {
  return SendBits(ETHTOOL_MSG_FEATURES_SET, ETHTOOL_A_FEATURES_WANTED, ifname, want,
                  "set ethtool features of " + ifname);
}

absl::Status EthtoolSocket::SendBits(uint8_t cmd, int attr, const std::string& ifname,
                                     const std::map<std::string, bool>& bits_on,
                                     const std::string& what) {
  ASSIGN_OR_RETURN(NlMsgPtr msg, Request(family_, cmd, ifname, ETHTOOL_FLAG_OMIT_REPLY));
  nl_msg* m = msg.get();
  nlattr* set = nla_nest_start(m, attr);
  nlattr* bits = set != nullptr ? nla_nest_start(m, ETHTOOL_A_BITSET_BITS) : nullptr;
  if (bits == nullptr) return absl::InternalError(what + ": build request");
  for (const auto& [name, on] : bits_on) {  // the listed bits are the mask; VALUE = on
    nlattr* bit = nla_nest_start(m, ETHTOOL_A_BITSET_BITS_BIT);
    if (bit == nullptr) return absl::InternalError(what + ": build request");
    RETURN_IF_ERROR(PutStatus(nla_put_string(m, ETHTOOL_A_BITSET_BIT_NAME, name.c_str()), "bit"));
    if (on) RETURN_IF_ERROR(PutStatus(nla_put_flag(m, ETHTOOL_A_BITSET_BIT_VALUE), "value"));
    nla_nest_end(m, bit);
  }
  nla_nest_end(m, bits);
  nla_nest_end(m, set);
  nlmsg_hdr(m)->nlmsg_flags |= NLM_F_ACK;
  if (int err = nl_send_auto(sock_.get(), m); err < 0) return NlStatus(err, what + ": send");
  if (int err = nl_wait_for_ack(sock_.get()); err < 0) return NlStatus(err, what);
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::string, bool>> EthtoolSocket::SetFeatures(
    const std::string& ifname, const std::map<std::string, bool>& want) {
  if (want.empty()) return std::map<std::string, bool>{};
  ASSIGN_OR_RETURN(auto before, Features(ifname));
  ASSIGN_OR_RETURN(auto set, ResolveFeatures(want, before, ifname));
  RETURN_IF_ERROR(SendWanted(ifname, set));
  ASSIGN_OR_RETURN(auto after, Features(ifname));
  for (const auto& [name, on] : set) {
    if (after[name].active != on) {
      return absl::FailedPreconditionError(
          absl::StrCat("ethtool feature \"", name, "\" of ", ifname, " stayed ", on ? "off" : "on",
                       " (the driver or a feature it depends on keeps it)"));
    }
  }
  return set;
}

namespace {

// One count of a queue setting: its name in NetworkConfig and the plan, its maximum's and its
// value's attribute.
struct CountAttr {
  const char* key;
  int max_attr;
  int value_attr;
};

constexpr CountAttr kChannelAttrs[] = {
    {"rx", ETHTOOL_A_CHANNELS_RX_MAX, ETHTOOL_A_CHANNELS_RX_COUNT},
    {"tx", ETHTOOL_A_CHANNELS_TX_MAX, ETHTOOL_A_CHANNELS_TX_COUNT},
    {"other", ETHTOOL_A_CHANNELS_OTHER_MAX, ETHTOOL_A_CHANNELS_OTHER_COUNT},
    {"combined", ETHTOOL_A_CHANNELS_COMBINED_MAX, ETHTOOL_A_CHANNELS_COMBINED_COUNT},
};
constexpr CountAttr kRingAttrs[] = {
    {"rx", ETHTOOL_A_RINGS_RX_MAX, ETHTOOL_A_RINGS_RX},
    {"rxMini", ETHTOOL_A_RINGS_RX_MINI_MAX, ETHTOOL_A_RINGS_RX_MINI},
    {"rxJumbo", ETHTOOL_A_RINGS_RX_JUMBO_MAX, ETHTOOL_A_RINGS_RX_JUMBO},
    {"tx", ETHTOOL_A_RINGS_TX_MAX, ETHTOOL_A_RINGS_TX},
};

struct KindInfo {
  const CountAttr* attrs;
  size_t n;
  uint8_t get, set, reply;
  int attr_max;
  const char* what;  // "channels", "ring entries"
  const char* tool;  // the ethtool option that sets them
};

KindInfo Info(QueueKind kind) {
  if (kind == QueueKind::kChannels) {
    return {kChannelAttrs,
            std::size(kChannelAttrs),
            ETHTOOL_MSG_CHANNELS_GET,
            ETHTOOL_MSG_CHANNELS_SET,
            ETHTOOL_MSG_CHANNELS_GET_REPLY,
            ETHTOOL_A_CHANNELS_MAX,
            "channels",
            "-L"};
  }
  return {kRingAttrs,
          std::size(kRingAttrs),
          ETHTOOL_MSG_RINGS_GET,
          ETHTOOL_MSG_RINGS_SET,
          ETHTOOL_MSG_RINGS_GET_REPLY,
          ETHTOOL_A_RINGS_MAX,
          "ring entries",
          "-G"};
}

struct CountsReply {
  KindInfo info;
  EthtoolSocket::Counts c;
  bool seen = false;
};

int OnCounts(nl_msg* msg, void* arg) {
  auto* out = static_cast<CountsReply*>(arg);
  std::vector<nlattr*> tb(static_cast<size_t>(out->info.attr_max) + 1, nullptr);
  if (genlmsg_parse(nlmsg_hdr(msg), 0, tb.data(), out->info.attr_max, nullptr) < 0) {
    return NL_SKIP;
  }
  if (genlmsg_hdr(nlmsg_hdr(msg))->cmd != out->info.reply) return NL_SKIP;
  out->seen = true;
  for (size_t i = 0; i < out->info.n; ++i) {
    const CountAttr& a = out->info.attrs[i];
    if (tb[a.max_attr] != nullptr) out->c.max[a.key] = nla_get_u32(tb[a.max_attr]);
    if (tb[a.value_attr] != nullptr) out->c.now[a.key] = nla_get_u32(tb[a.value_attr]);
  }
  return NL_OK;
}

}  // namespace

absl::Status CheckCounts(QueueKind kind, const std::map<std::string, uint32_t>& want,
                         const EthtoolSocket::Counts& have, const std::string& ifname) {
  const KindInfo info = Info(kind);
  for (const auto& [key, value] : want) {
    auto it = have.max.find(key);
    const uint32_t max = it == have.max.end() ? 0 : it->second;
    if (max == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(key, " ", value, ": ", ifname, " has no ", key, " ", info.what));
    }
    if (value > max) {
      return absl::InvalidArgumentError(absl::StrCat(key, " ", value, " is above the ", max, " ",
                                                     key, " ", info.what, " of ", ifname));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<EthtoolSocket::Counts> EthtoolSocket::GetCounts(QueueKind kind,
                                                               const std::string& ifname) {
  CountsReply reply{Info(kind), {}, false};
  const std::string what = absl::StrCat("ethtool ", reply.info.what, " of ", ifname);
  absl::Status st = Get(reply.info.get, ifname, what, OnCounts, &reply);
  if (absl::IsUnimplemented(st)) {
    return absl::UnimplementedError(absl::StrCat(ifname, " has no ", reply.info.what,
                                                 " to set (its driver does not offer ethtool ",
                                                 reply.info.tool, ")"));
  }
  RETURN_IF_ERROR(st);
  if (!reply.seen) return absl::InternalError(what + ": no reply");
  return reply.c;
}

absl::Status EthtoolSocket::SetCounts(QueueKind kind, const std::string& ifname,
                                      const std::map<std::string, uint32_t>& want) {
  if (want.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(Counts have, GetCounts(kind, ifname));
  RETURN_IF_ERROR(CheckCounts(kind, want, have, ifname));
  const KindInfo info = Info(kind);
  const std::string what = absl::StrCat("set ethtool ", info.what, " of ", ifname);
  ASSIGN_OR_RETURN(NlMsgPtr msg, Request(family_, info.set, ifname, 0));
  nl_msg* m = msg.get();
  for (size_t i = 0; i < info.n; ++i) {
    auto it = want.find(info.attrs[i].key);
    if (it == want.end()) continue;
    RETURN_IF_ERROR(PutStatus(nla_put_u32(m, info.attrs[i].value_attr, it->second), "count"));
  }
  nlmsg_hdr(m)->nlmsg_flags |= NLM_F_ACK;
  if (int err = nl_send_auto(sock_.get(), m); err < 0) return NlStatus(err, what + ": send");
  if (int err = nl_wait_for_ack(sock_.get()); err < 0) return NlStatus(err, what);
  return absl::OkStatus();
}

absl::Status EthtoolSocket::RestoreWanted(const std::string& ifname,
                                          const std::map<std::string, bool>& wanted) {
  if (wanted.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(auto now, Features(ifname));
  std::map<std::string, bool> set;
  for (const auto& [name, on] : wanted) {
    auto it = now.find(name);
    if (it != now.end() && it->second.changeable && it->second.wanted != on) set[name] = on;
  }
  if (set.empty()) return absl::OkStatus();
  return SendWanted(ifname, set);
}

namespace {

int OnPrivateFlags(nl_msg* msg, void* arg) {
  auto* out = static_cast<std::optional<std::map<std::string, bool>>*>(arg);
  nlattr* tb[ETHTOOL_A_PRIVFLAGS_MAX + 1] = {};
  if (genlmsg_parse(nlmsg_hdr(msg), 0, tb, ETHTOOL_A_PRIVFLAGS_MAX, nullptr) < 0) return NL_SKIP;
  if (genlmsg_hdr(nlmsg_hdr(msg))->cmd != ETHTOOL_MSG_PRIVFLAGS_GET_REPLY) return NL_SKIP;
  out->emplace();
  if (tb[ETHTOOL_A_PRIVFLAGS_FLAGS]) **out = ListedBits(tb[ETHTOOL_A_PRIVFLAGS_FLAGS]);
  return NL_OK;
}

}  // namespace

absl::StatusOr<std::map<std::string, bool>> EthtoolSocket::PrivateFlags(const std::string& ifname) {
  const std::string what = "ethtool private flags of " + ifname;
  std::optional<std::map<std::string, bool>> flags;
  absl::Status st = Get(ETHTOOL_MSG_PRIVFLAGS_GET, ifname, what, OnPrivateFlags, &flags);
  // EOPNOTSUPP: the driver has no get_priv_flags (veth, most virtual links), i.e. none.
  if (absl::IsUnimplemented(st)) return std::map<std::string, bool>{};
  RETURN_IF_ERROR(st);
  if (!flags) return absl::InternalError(what + ": no reply");
  return *flags;
}

absl::Status CheckPrivateFlags(const std::map<std::string, bool>& want,
                               const std::map<std::string, bool>& have, const std::string& ifname) {
  for (const auto& [name, on] : want) {
    if (have.count(name) != 0) continue;
    if (have.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(ifname, " has no private flags (its driver defines none)"));
    }
    std::vector<std::string> names;
    for (const auto& [n, v] : have) names.push_back(n);
    return absl::InvalidArgumentError(absl::StrCat("\"", name, "\" is not a private flag of ",
                                                   ifname, " (it has: ", absl::StrJoin(names, ", "),
                                                   ")"));
  }
  return absl::OkStatus();
}

absl::Status EthtoolSocket::SetPrivateFlags(const std::string& ifname,
                                            const std::map<std::string, bool>& want) {
  if (want.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(auto before, PrivateFlags(ifname));
  RETURN_IF_ERROR(CheckPrivateFlags(want, before, ifname));
  std::map<std::string, bool> set;
  for (const auto& [name, on] : want) {
    if (before[name] != on) set[name] = on;
  }
  if (set.empty()) return absl::OkStatus();
  RETURN_IF_ERROR(SendBits(ETHTOOL_MSG_PRIVFLAGS_SET, ETHTOOL_A_PRIVFLAGS_FLAGS, ifname, set,
                           "set ethtool private flags of " + ifname));
  ASSIGN_OR_RETURN(auto after, PrivateFlags(ifname));
  for (const auto& [name, on] : set) {
    if (after[name] != on) {
      return absl::FailedPreconditionError(absl::StrCat("private flag \"", name, "\" of ", ifname,
                                                        " stayed ", on ? "off" : "on",
                                                        " (its driver keeps it)"));
    }
  }
  return absl::OkStatus();
}

absl::Status EthtoolSocket::RestorePrivateFlags(const std::string& ifname,
                                                const std::map<std::string, bool>& flags) {
  if (flags.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(auto now, PrivateFlags(ifname));
  std::map<std::string, bool> set;
  for (const auto& [name, on] : flags) {
    auto it = now.find(name);
    if (it != now.end() && it->second != on) set[name] = on;
  }
  if (set.empty()) return absl::OkStatus();
  return SendBits(ETHTOOL_MSG_PRIVFLAGS_SET, ETHTOOL_A_PRIVFLAGS_FLAGS, ifname, set,
                  "restore ethtool private flags of " + ifname);
}

}  // namespace knd::netlink
