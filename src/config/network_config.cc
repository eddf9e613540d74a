#include "config/network_config.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <set>
#include <tuple>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/net_addr.h"
#include "common/status.h"
#include "common/text.h"

namespace knd::config {
namespace {

using nlohmann::json;

constexpr size_t kMaxAddresses = 16;
constexpr size_t kMaxRoutes = 64;
constexpr size_t kMaxNeighbors = 64;
constexpr size_t kMaxEthtoolFeatures = 128;
constexpr size_t kMaxPrivateFlags = 32;  // a driver's private flags are one u32
constexpr uint32_t kMaxChannels = 4096;
constexpr uint32_t kMaxRingEntries = 1 << 20;  // the kernel has 64 feature bits, ethtool 24 aliases
constexpr uint32_t kMainTable = 254;

// Error builder: "<where>: <path>: <problem>".
absl::Status Bad(std::string_view where, const std::string& path, const std::string& problem) {
  std::string msg;
  if (!where.empty()) msg = absl::StrCat(std::string(where), ": ");
  if (!path.empty()) absl::StrAppend(&msg, path, ": ");
  absl::StrAppend(&msg, problem);
  return absl::InvalidArgumentError(msg);
}

std::string TypeName(const json& j) {
  switch (j.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "integer";
    case json::value_t::number_float:
      return "number";
    case json::value_t::string:
      return "string";
    case json::value_t::array:
      return "array";
    case json::value_t::object:
      return "object";
    default:
      return "unknown";
  }
}

std::string Join(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : absl::StrCat(prefix, ".", key);
}

// Refuses keys of `obj` not listed in `allowed`, naming the full path of the first one.
absl::Status CheckKeys(const json& obj, std::initializer_list<const char*> allowed,
                       const std::string& path, std::string_view where) {
  for (const auto& [key, value] : obj.items()) {
    bool ok = false;
    for (const char* a : allowed) ok = ok || key == a;
    if (!ok) return Bad(where, Join(path, key), "unknown field");
  }
  return absl::OkStatus();
}

absl::Status ExpectType(const json& j, json::value_t want, const std::string& path,
                        std::string_view where) {
  bool ok = j.type() == want;
  std::string want_name;
  switch (want) {
    case json::value_t::string:
      want_name = "a string";
      break;
    case json::value_t::object:
      want_name = "an object";
      break;
    case json::value_t::array:
      want_name = "a list";
      break;
    case json::value_t::number_integer:
      want_name = "an integer";
      ok = j.is_number_integer();
      break;
    case json::value_t::boolean:
      want_name = "a boolean";
      break;
    default:
      want_name = "a value";
  }
  if (!ok) return Bad(where, path, absl::StrCat("expected ", want_name, ", got ", TypeName(j)));
  return absl::OkStatus();
}

absl::StatusOr<std::string> GetString(const json& j, const std::string& path,
                                      std::string_view where) {
  absl::Status s = ExpectType(j, json::value_t::string, path, where);
  if (!s.ok()) return s;
  return j.get<std::string>();
}

absl::StatusOr<uint32_t> GetUint32(const json& j, const std::string& path, std::string_view where) {
  absl::Status s = ExpectType(j, json::value_t::number_integer, path, where);
  if (!s.ok()) return s;
  if (j.is_number_unsigned()) {
    uint64_t v = j.get<uint64_t>();
    if (v > 0xffffffffULL)
      return Bad(where, path, absl::StrCat(v, " is out of range 0..4294967295"));
    return static_cast<uint32_t>(v);
  }
  int64_t v = j.get<int64_t>();
  if (v < 0 || v > 0xffffffffLL) {
    return Bad(where, path, absl::StrCat(v, " is out of range 0..4294967295"));
  }
  return static_cast<uint32_t>(v);
}

// ---- value checks -------------------------------------------------------------------------

}  // namespace

const std::vector<InterfaceSysctl>& InterfaceSysctls() {
  // Values from the kernel's Documentation/networking/ip-sysctl.rst. Nothing outside the
  // interface's own conf directory: a pod netns's global knobs are the runtime's business.
  static const std::vector<InterfaceSysctl> k = {
      {"ipv4", "accept_local", 0, 1},     {"ipv4", "accept_redirects", 0, 1},
      {"ipv4", "arp_accept", 0, 2},       {"ipv4", "arp_announce", 0, 2},
      {"ipv4", "arp_filter", 0, 1},       {"ipv4", "arp_ignore", 0, 8},
      {"ipv4", "arp_notify", 0, 1},       {"ipv4", "forwarding", 0, 1, false},
      {"ipv4", "proxy_arp", 0, 1, false}, {"ipv4", "rp_filter", 0, 2},
      {"ipv4", "send_redirects", 0, 1},   {"ipv6", "accept_dad", 0, 2},
      {"ipv6", "accept_ra", 0, 2},        {"ipv6", "accept_redirects", 0, 1},
      {"ipv6", "autoconf", 0, 1},         {"ipv6", "dad_transmits", 0, 255},
      {"ipv6", "disable_ipv6", 0, 1},     {"ipv6", "forwarding", 0, 1, false},
      {"ipv6", "hop_limit", 1, 255},      {"ipv6", "use_tempaddr", -1, 2},
  };
  return k;
}

namespace {

std::string FamilyName(int family) { return family == AF_INET ? "IPv4" : "IPv6"; }

bool IsUnspecified(const IpAddr& ip) {
  for (size_t i = 0; i < ip.len(); ++i) {
    if (ip.bytes[i] != 0) return false;
  }
  return true;
}

bool IsMulticast(const IpAddr& ip) {
  return ip.family == AF_INET ? (ip.bytes[0] & 0xf0) == 0xe0 : ip.bytes[0] == 0xff;
}

bool HostBitsSet(const IpPrefix& c) {
  for (size_t bit = static_cast<size_t>(c.prefix); bit < c.addr.len() * 8; ++bit) {
    if (c.addr.bytes[bit / 8] & (0x80 >> (bit % 8))) return true;
  }
  return false;
}

std::string NetworkOf(IpPrefix c) {
  for (size_t bit = static_cast<size_t>(c.prefix); bit < c.addr.len() * 8; ++bit) {
    c.addr.bytes[bit / 8] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
  }
  return FormatCidr(c);
}

std::optional<std::string> InvalidMac(const std::string& s) {
  absl::StatusOr<MacAddr> b = ParseMac(s);
  if (!b.ok()) return std::string(b.status().message());
  if ((*b)[0] & 1) return absl::StrCat("\"", s, "\" is a multicast address (need unicast)");
  bool zero = true;
  for (uint8_t x : *b) zero = zero && x == 0;
  if (zero) return "the all-zero MAC address is not allowed";
  return std::nullopt;
}

// A neighbour entry's address must be one host on the link: not unspecified, loopback,
// multicast or (IPv4) broadcast.
std::optional<std::string> NotUnicastHost(const IpAddr& ip) {
  const std::string text = FormatIp(ip);
  bool zero = true;
  for (size_t i = 0; i < ip.len(); ++i) zero = zero && ip.bytes[i] == 0;
  if (zero) return absl::StrCat("\"", text, "\" is the unspecified address");
  if (ip.family == AF_INET) {
    if (ip.bytes[0] == 127) return absl::StrCat("\"", text, "\" is a loopback address");
    if (ip.bytes[0] >= 224 && ip.bytes[0] <= 239) {
      return absl::StrCat("\"", text, "\" is a multicast address");
    }
    if (text == "255.255.255.255") return "255.255.255.255 is the broadcast address";
    return std::nullopt;
  }
  if (ip.bytes[0] == 0xff) return absl::StrCat("\"", text, "\" is a multicast address");
  if (text == "::1") return "::1 is the loopback address";
  return std::nullopt;
}

// An ethtool feature as the kernel names it (netdev_features_strings: "rx-gro",
// "tx-udp_tnl-segmentation") or one of ethtool's aliases ("tso"): lower-case letters, digits,
// '-' and '_', shorter than ETH_GSTRING_LEN (32).
std::optional<std::string> InvalidFeatureName(const std::string& name) {
  if (name.empty()) return "a feature name must not be empty";
  if (name.size() > 31) {
    return absl::StrCat("\"", name, "\" is ", name.size(), " bytes long (at most 31)");
  }
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')) {
      return absl::StrCat("\"", name,
                          "\" is not an ethtool feature name (lower-case letters, digits, '-', "
                          "'_'; the names `ethtool -k` prints)");
    }
  }
  return std::nullopt;
}

// A driver's private flag as `ethtool --show-priv-flags` prints it ("legacy-rx", "MFP",
// "rx_cqe_compress"): letters, digits, '-', '_' and '.', shorter than ETH_GSTRING_LEN (32).
std::optional<std::string> InvalidPrivateFlagName(const std::string& name) {
  if (name.empty()) return "a flag name must not be empty";
  if (name.size() > 31) {
    return absl::StrCat("\"", name, "\" is ", name.size(), " bytes long (at most 31)");
  }
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      return absl::StrCat("\"", name,
                          "\" is not a private flag name (letters, digits, '-', '_', '.'; the "
                          "names `ethtool --show-priv-flags` prints)");
    }
  }
  return std::nullopt;
}

// Offload features that change what the NIC lets in or switches itself, beyond the pod's own
// traffic: DeviceClass only.
struct ClassOnlyFeature {
  const char* name;
  const char* why;
};
constexpr ClassOnlyFeature kClassOnlyFeatures[] = {
    {"rx-vlan-filter", "the NIC would pass frames of every VLAN on the wire"},
    {"rx-vlan-stag-filter", "the NIC would pass frames of every service VLAN on the wire"},
    {"rx-all", "the NIC would pass frames it drops as bad"},
    {"rx-fcs", "the NIC would pass the frames' checksums up"},
    {"loopback", "the NIC would loop its frames back"},
    {"hw-tc-offload", "tc rules would be offloaded to the NIC's switch"},
};

// A CNI plugin binary name: it becomes a file name under the CNI bin dir.
std::optional<std::string> InvalidPluginType(const std::string& t) {
  if (t.empty()) return "must not be empty";
  if (t.find('/') != std::string::npos) return absl::StrCat("\"", t, "\" must not contain '/'");
  if (t.find("..") != std::string::npos) return absl::StrCat("\"", t, "\" must not contain '..'");
  for (char c : t) {
    if (std::isspace(static_cast<unsigned char>(c)) || c == '\0') {
      return absl::StrCat("\"", t, "\" must not contain whitespace");
    }
  }
  return std::nullopt;
}

bool IsDnsLabel(const std::string& s) {
  if (s.empty() || s.size() > 63) return false;
  for (char c : s) {
    if (!(std::islower(static_cast<unsigned char>(c)) ||
          std::isdigit(static_cast<unsigned char>(c)) || c == '-')) {
      return false;
    }
  }
  return s.front() != '-' && s.back() != '-';
}

bool IsDnsSubdomain(const std::string& s) {
  if (s.empty() || s.size() > 253) return false;
  size_t start = 0;
  while (true) {
    size_t dot = s.find('.', start);
    std::string label = s.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!IsDnsLabel(label)) return false;
    if (dot == std::string::npos) return true;
    start = dot + 1;
  }
}

absl::Status ValidateChild(const ChildConfig& c, std::string_view where) {
  const std::string type = c.type.value_or(kChildMacvlan);
  if (type == kChildMacvlan) {
    // "source" needs a list of allowed source MACs that knd has no field for.
    static const std::set<std::string> kModes = {"bridge", "private", "vepa", "passthru"};
    if (c.mode && kModes.count(*c.mode) == 0) {
      return Bad(where, "child.mode",
                 absl::StrCat("\"", *c.mode,
                              "\" is not a macvlan mode (bridge, private, vepa, passthru)"));
    }
  } else if (type == kChildIpvlan) {
    static const std::set<std::string> kModes = {"l2", "l3", "l3s"};
    if (c.mode && kModes.count(*c.mode) == 0) {
      return Bad(where, "child.mode",
                 absl::StrCat("\"", *c.mode, "\" is not an ipvlan mode (l2, l3, l3s)"));
    }
  } else if (type == kChildVlan) {
    if (c.mode) return Bad(where, "child.mode", "a vlan child has no mode");
  } else {
    return Bad(where, "child.type",
               absl::StrCat("\"", type, "\" is not a child type (macvlan, ipvlan, vlan)"));
  }
  if (type == kChildVlan && !c.vlan_id) {
    return Bad(where, "child.vlanId", "required for a vlan child");
  }
  if (c.vlan_id && type != kChildVlan) {
    return Bad(where, "child.vlanId", absl::StrCat("only for type vlan, not ", type));
  }
  if (c.vlan_id && (*c.vlan_id < 1 || *c.vlan_id > 4094)) {
    return Bad(where, "child.vlanId", absl::StrCat(*c.vlan_id, " is out of range 1..4094"));
  }
  return absl::OkStatus();
}

// Checks that need only the field itself (called by Decode and by Validate).
absl::Status ValidateFields(const NetworkConfig& cfg, std::string_view where) {
  const InterfaceConfig& itf = cfg.interface;
  if (itf.name) {
    if (auto why = InvalidIfName(*itf.name)) return Bad(where, "interface.name", *why);
  }
  if (itf.mtu && (*itf.mtu < 68 || *itf.mtu > 65535)) {
    return Bad(where, "interface.mtu", absl::StrCat(*itf.mtu, " is out of range 68..65535"));
  }
  // The kernel's GSO_MAX_SIZE and GRO_MAX_SIZE (8 x 65535).
  for (const auto& [field, v] : {std::pair{"interface.gsoMaxSize", &itf.gso_max_size},
                                 std::pair{"interface.groMaxSize", &itf.gro_max_size},
                                 std::pair{"interface.gsoIPv4MaxSize", &itf.gso_ipv4_max_size},
                                 std::pair{"interface.groIPv4MaxSize", &itf.gro_ipv4_max_size}}) {
    if (*v && (**v < 1 || **v > 524280)) {
      return Bad(where, field, absl::StrCat(**v, " is out of range 1..524280"));
    }
  }
  if (itf.hardware_addr) {
    if (auto why = InvalidMac(*itf.hardware_addr))
      return Bad(where, "interface.hardwareAddr", *why);
  }
  if (itf.sysctls) {
    for (const auto& [name, value] : *itf.sysctls) {
      const std::string path = "interface.sysctls." + name;
      const InterfaceSysctl* rule = nullptr;
      std::vector<std::string> allowed;
      const std::string family = name.substr(0, name.find('.'));
      for (const InterfaceSysctl& r : InterfaceSysctls()) {
        if (family != r.family) continue;
        allowed.push_back(r.key);
        if (name == absl::StrCat(r.family, ".", r.key)) rule = &r;
      }
      if (rule == nullptr) {
        return Bad(where, path,
                   absl::StrCat("not a per-interface sysctl knd sets (", family, ": ",
                                absl::StrJoin(allowed, ", "), ")"));
      }
      if (value < rule->min || value > rule->max) {
        return Bad(where, path,
                   absl::StrCat(value, " is out of range ", rule->min, "..", rule->max));
      }
    }
  }
  struct NamedBits {
    const char* field;
    const std::optional<std::map<std::string, bool>>* bits;
    size_t max;
    const char* what;  // in "too many features (N, at most M)"
    std::optional<std::string> (*invalid)(const std::string&);
  };
  for (const NamedBits& nb :
       {NamedBits{"interface.ethtool.features", &itf.ethtool_features, kMaxEthtoolFeatures,
                  "features", InvalidFeatureName},
        NamedBits{"interface.ethtool.privateFlags", &itf.ethtool_private_flags, kMaxPrivateFlags,
                  "flags", InvalidPrivateFlagName}}) {
    if (!*nb.bits) continue;
    if ((*nb.bits)->size() > nb.max) {
      return Bad(
          where, nb.field,
          absl::StrCat("too many ", nb.what, " (", (*nb.bits)->size(), ", at most ", nb.max, ")"));
    }
    for (const auto& [name, on] : **nb.bits) {
      if (auto why = nb.invalid(name)) return Bad(where, nb.field, *why);
    }
  }
  for (const auto& [field, counts, max] :
       {std::tuple{"interface.ethtool.channels", &itf.ethtool_channels, kMaxChannels},
        std::tuple{"interface.ethtool.rings", &itf.ethtool_rings, kMaxRingEntries}}) {
    if (!*counts) continue;
    if ((*counts)->empty()) {
      return Bad(
          where, field,
          absl::StrCat("give at least one of ", field == std::string("interface.ethtool.channels")
                                                    ? "rx, tx, other, combined"
                                                    : "rx, rxMini, rxJumbo, tx"));
    }
    for (const auto& [key, v] : **counts) {
      if (v > max) {
        return Bad(where, absl::StrCat(field, ".", key),
                   absl::StrCat(v, " is out of range 0..", max));
      }
    }
  }
  if (itf.addresses) {
    if (itf.addresses->size() > kMaxAddresses) {
      return Bad(where, "interface.addresses",
                 absl::StrCat("too many addresses (", itf.addresses->size(), ", at most ",
                              kMaxAddresses, ")"));
    }
    std::set<std::string> seen;
    for (size_t i = 0; i < itf.addresses->size(); ++i) {
      std::string path = absl::StrCat("interface.addresses[", i, "]");
      auto c = ParseCidr((*itf.addresses)[i]);
      if (!c.ok()) return Bad(where, path, std::string(c.status().message()));
      if (IsUnspecified(c->addr)) {
        return Bad(where, path, "the unspecified address is not allowed");
      }
      if (IsMulticast(c->addr)) return Bad(where, path, "a multicast address is not allowed");
      if (!seen.insert(FormatCidr(*c)).second) {
        return Bad(where, path, absl::StrCat("duplicate address ", (*itf.addresses)[i]));
      }
    }
  }
  if (itf.vrf) {
    if (auto why = InvalidIfName(itf.vrf->name)) return Bad(where, "interface.vrf.name", *why);
    const uint32_t t = itf.vrf->table;
    if (t == 0 || t == 253 || t == 254 || t == 255) {
      return Bad(where, "interface.vrf.table",
                 absl::StrCat(t == 0 ? std::string("required field is missing or 0")
                                     : absl::StrCat(t, " is the kernel's ",
                                                    t == 253   ? "default"
                                                    : t == 254 ? "main"
                                                               : "local",
                                                    " table"),
                              " (use 1..4294967295, not 253, 254 or 255)"));
    }
  }
  if (cfg.child) RETURN_IF_ERROR(ValidateChild(*cfg.child, where));
  if (cfg.sriov) {
    const SriovConfig& s = *cfg.sriov;
    if (s.mac) {
      if (auto why = InvalidMac(*s.mac)) return Bad(where, "sriov.mac", *why);
    }
    if (s.vlan && *s.vlan > 4095) {
      return Bad(where, "sriov.vlan", absl::StrCat(*s.vlan, " is out of range 0..4095"));
    }
    if (s.qos && *s.qos > 7) {
      return Bad(where, "sriov.qos", absl::StrCat(*s.qos, " is out of range 0..7"));
    }
    if (s.qos && *s.qos != 0 && s.vlan.value_or(0) == 0) {
      return Bad(where, "sriov.qos", "needs sriov.vlan (the priority is carried in the VLAN tag)");
    }
    if (s.link_state && *s.link_state != "auto" && *s.link_state != "enable" &&
        *s.link_state != "disable") {
      return Bad(where, "sriov.linkState",
                 absl::StrCat("\"", *s.link_state,
                              "\" is not one of \"auto\", \"enable\", "
                              "\"disable\""));
    }
    if (s.min_tx_rate_mbps && s.max_tx_rate_mbps && *s.max_tx_rate_mbps != 0 &&
        *s.min_tx_rate_mbps > *s.max_tx_rate_mbps) {
      return Bad(where, "sriov.minTxRateMbps",
                 absl::StrCat(*s.min_tx_rate_mbps, " is above sriov.maxTxRateMbps (",
                              *s.max_tx_rate_mbps, ")"));
    }
    if (s.driver && *s.driver != kVfioPci) {
      return Bad(where, "sriov.driver",
                 absl::StrCat("\"", *s.driver, "\" is not \"", kVfioPci,
                              "\" (leave it unset for the VF's kernel driver)"));
    }
  }
  if (cfg.ipam) {
    if (!cfg.ipam->is_object()) {
      return Bad(where, "ipam", absl::StrCat("expected an object, got ", TypeName(*cfg.ipam)));
    }
    auto it = cfg.ipam->find("type");
    if (it == cfg.ipam->end()) return Bad(where, "ipam.type", "required field is missing");
    if (!it->is_string()) {
      return Bad(where, "ipam.type", absl::StrCat("expected a string, got ", TypeName(*it)));
    }
    if (auto why = InvalidPluginType(it->get<std::string>())) return Bad(where, "ipam.type", *why);
    if (it->get<std::string>() == "dhcp") {
      // knd runs IPAM once, in Prepare; a lease must be renewed from the pod's netns for as
      // long as the pod runs, which only the dhcp plugin's node daemon does, driven by CNI.
      return Bad(where, "ipam.type",
                 "dhcp is not supported here: knd runs IPAM once in Prepare, before the pod "
                 "exists, and nothing would renew the lease for the pod's life; use a "
                 "NetworkAttachmentDefinition whose CNI config has dhcp IPAM (its daemon on the "
                 "node renews the lease)");
    }
  }
  if (cfg.neighbors) {
    if (cfg.neighbors->size() > kMaxNeighbors) {
      return Bad(where, "neighbors",
                 absl::StrCat("too many neighbors (", cfg.neighbors->size(), ", at most ",
                              kMaxNeighbors, ")"));
    }
    std::set<std::string> seen;
    for (size_t i = 0; i < cfg.neighbors->size(); ++i) {
      const Neighbor& n = (*cfg.neighbors)[i];
      std::string path = absl::StrCat("neighbors[", i, "]");
      absl::StatusOr<IpAddr> ip = ParseIp(n.ip);
      if (!ip.ok()) return Bad(where, path + ".ip", std::string(ip.status().message()));
      if (auto why = NotUnicastHost(*ip)) return Bad(where, path + ".ip", *why);
      if (!seen.insert(FormatIp(*ip)).second) {
        return Bad(where, path + ".ip", absl::StrCat("duplicate neighbor ", n.ip));
      }
      if (auto why = InvalidMac(n.mac)) return Bad(where, path + ".mac", *why);
    }
  }
  if (cfg.routes) {
    if (cfg.routes->size() > kMaxRoutes) {
      return Bad(
          where, "routes",
          absl::StrCat("too many routes (", cfg.routes->size(), ", at most ", kMaxRoutes, ")"));
    }
    for (size_t i = 0; i < cfg.routes->size(); ++i) {
      const Route& r = (*cfg.routes)[i];
      std::string path = absl::StrCat("routes[", i, "]");
      auto dst = ParseCidr(r.destination);
      if (!dst.ok()) return Bad(where, path + ".destination", std::string(dst.status().message()));
      if (HostBitsSet(*dst)) {
        return Bad(where, path + ".destination",
                   absl::StrCat("\"", r.destination, "\" has host bits set (did you mean ",
                                NetworkOf(*dst), "?)"));
      }
      if (r.gateway) {
        absl::StatusOr<IpAddr> gw = ParseIp(*r.gateway);
        if (!gw.ok()) return Bad(where, path + ".gateway", std::string(gw.status().message()));
        if (gw->family != dst->addr.family) {
          return Bad(where, path + ".gateway",
                     absl::StrCat(FamilyName(gw->family), " gateway ", *r.gateway, " for ",
                                  FamilyName(dst->addr.family), " destination ", r.destination));
        }
        if (IsUnspecified(*gw) || IsMulticast(*gw)) {
          return Bad(where, path + ".gateway",
                     absl::StrCat("\"", *r.gateway, "\" cannot be a gateway"));
        }
      }
      if (r.table && *r.table == 0) {
        return Bad(where, path + ".table", "0 is not a routing table (use 1..4294967295)");
      }
    }
  }
  if (cfg.rules) {
    if (cfg.rules->size() > kMaxRoutes) {
      return Bad(
          where, "rules",
          absl::StrCat("too many rules (", cfg.rules->size(), ", at most ", kMaxRoutes, ")"));
    }
    for (size_t i = 0; i < cfg.rules->size(); ++i) {
      const Rule& r = (*cfg.rules)[i];
      std::string path = absl::StrCat("rules[", i, "]");
      if (r.priority < 1 || r.priority > 32765) {
        return Bad(where, path + ".priority",
                   absl::StrCat(r.priority,
                                " is out of range 1..32765 (0, 32766 and 32767 are the kernel's "
                                "local, main and default rules)"));
      }
      int family = 0;
      for (const auto& [field, value] : {std::pair{".from", &r.from}, std::pair{".to", &r.to}}) {
        if (!value->has_value()) continue;
        absl::StatusOr<IpPrefix> c = ParseIpOrCidr(**value);
        if (!c.ok()) return Bad(where, path + field, std::string(c.status().message()));
        if (HostBitsSet(*c)) {
          return Bad(where, path + field,
                     absl::StrCat("\"", **value, "\" has host bits set (did you mean ",
                                  NetworkOf(*c), " or a single address?)"));
        }
        if (family != 0 && c->addr.family != family) {
          return Bad(where, path + field,
                     absl::StrCat(FamilyName(c->addr.family), " ", **value, " in a rule from ",
                                  FamilyName(family), " ", *r.from));
        }
        family = c->addr.family;
      }
      for (const auto& [field, value] : {std::pair{".iif", &r.iif}, std::pair{".oif", &r.oif}}) {
        if (!value->has_value()) continue;
        if (auto why = InvalidIfName(**value)) return Bad(where, path + field, *why);
      }
      if (r.table == 0 || r.table == 255) {
        return Bad(where, path + ".table",
                   absl::StrCat(r.table == 0 ? "required field is missing or 0"
                                             : "255 is the kernel's local table",
                                " (use 1..4294967295, not 255)"));
      }
      for (size_t j = 0; j < i; ++j) {
        if ((*cfg.rules)[j] == r)
          return Bad(where, path, absl::StrCat("same rule as rules[", j, "]"));
      }
    }
  }
  if (cfg.cni) {
    const CniConfig& cni = *cfg.cni;
    if (cni.network_attachment.has_value() == cni.config.has_value()) {
      return Bad(where, "cni", "give exactly one of networkAttachment or config");
    }
    if (cni.network_attachment) {
      const NadRef& nad = *cni.network_attachment;
      if (!nad.namespace_.empty() && !IsDnsLabel(nad.namespace_)) {
        return Bad(where, "cni.networkAttachment.namespace",
                   absl::StrCat("\"", nad.namespace_, "\" is not a valid namespace name"));
      }
      if (nad.name.empty())
        return Bad(where, "cni.networkAttachment.name", "required field is missing");
      if (!IsDnsSubdomain(nad.name)) {
        return Bad(where, "cni.networkAttachment.name",
                   absl::StrCat("\"", nad.name, "\" is not a valid object name (DNS subdomain)"));
      }
    }
    if (cni.config) {
      const json& c = *cni.config;
      if (!c.is_object()) {
        return Bad(where, "cni.config", absl::StrCat("expected an object, got ", TypeName(c)));
      }
      auto it = c.find("plugins");
      if (it == c.end()) return Bad(where, "cni.config.plugins", "required field is missing");
      if (!it->is_array()) {
        return Bad(where, "cni.config.plugins",
                   absl::StrCat("expected a list, got ", TypeName(*it)));
      }
      if (it->empty()) return Bad(where, "cni.config.plugins", "must list at least one plugin");
      for (size_t i = 0; i < it->size(); ++i) {
        std::string path = absl::StrCat("cni.config.plugins[", i, "]");
        const json& p = (*it)[i];
        if (!p.is_object()) {
          return Bad(where, path, absl::StrCat("expected an object, got ", TypeName(p)));
        }
        auto t = p.find("type");
        if (t == p.end()) return Bad(where, path + ".type", "required field is missing");
        if (!t->is_string()) {
          return Bad(where, path + ".type", absl::StrCat("expected a string, got ", TypeName(*t)));
        }
        if (auto why = InvalidPluginType(t->get<std::string>())) {
          return Bad(where, path + ".type", *why);
        }
      }
    }
  }
  return absl::OkStatus();
}

// Refuses what only an admin (DeviceClass) may configure.
// Keys of CNI and IPAM configs that name places on the host (files, directories, sockets,
// credentials), whatever their value.
const std::set<std::string>& HostPathKeys() {
  static const std::set<std::string> k = {
      "dataDir",       "kubeconfig",     "kubeconfigPath",   "socketPath", "logFile",
      "log_file",      "binDir",         "configDir",        "confDir",    "cniDir",
      "etcd_key_file", "etcd_cert_file", "etcd_ca_cert_file"};
  return k;
}

// A claim's CNI/IPAM config must not name a host path: no key of HostPathKeys(), no string
// value that is an absolute path, at any depth.
absl::Status NoHostPaths(const json& j, const std::string& field, std::string_view where) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string f = absl::StrCat(field, ".", it.key());
      if (HostPathKeys().count(it.key())) {
        return Bad(where, f,
                   "names a place on the node; a claim's CNI configuration may not (set it in a "
                   "DeviceClass or a NetworkAttachmentDefinition)");
      }
      RETURN_IF_ERROR(NoHostPaths(*it, f, where));
    }
  } else if (j.is_array()) {
    for (size_t i = 0; i < j.size(); ++i) {
      RETURN_IF_ERROR(NoHostPaths(j[i], absl::StrCat(field, "[", i, "]"), where));
    }
  } else if (j.is_string() && absl::StartsWith(j.get<std::string>(), "/")) {
    return Bad(where, field,
               absl::StrCat("\"", j.get<std::string>(),
                            "\" is a path on the node; a claim's CNI configuration may not name "
                            "one"));
  }
  return absl::OkStatus();
}

std::string Listed(const std::set<std::string>& s) {
  return s.empty() ? "none" : absl::StrJoin(s, ", ");
}

// An IPAM object from a claim: of an allowed type, without host paths.
absl::Status CheckClaimIpam(const json& ipam, const std::string& field,
                            const ClaimCniPolicy& policy, std::string_view where) {
  const std::string type = JsonString(ipam, "type");
  if (policy.ipam.count(type) == 0) {
    return Bad(where, field + ".type",
               absl::StrCat("\"", type,
                            "\" is not an IPAM type a claim may use on this node (the node "
                            "config's claimCni.ipam allows: ",
                            Listed(policy.ipam), ")"));
  }
  return NoHostPaths(ipam, field, where);
}

absl::Status CheckPrivileges(const NetworkConfig& cfg, Source source, const Context& ctx,
                             std::string_view where) {
  if (source != Source::kClaim) return absl::OkStatus();
  // CNI and IPAM plugins run as root on the node, with what the config tells them.
  if (cfg.ipam) {
    if (ctx.claim_cni == nullptr) {
      return Bad(where, "ipam",
                 "may only be set in a DeviceClass config, not in a claim: IPAM plugins run as "
                 "root on the node (the node config's claimCni.ipam lets claims use named "
                 "types)");
    }
    RETURN_IF_ERROR(CheckClaimIpam(*cfg.ipam, "ipam", *ctx.claim_cni, where));
  }
  if (cfg.cni && cfg.cni->config) {
    if (ctx.claim_cni == nullptr) {
      return Bad(where, "cni.config",
                 "may only be set in a DeviceClass config, not in a claim: CNI plugins run as "
                 "root on the node (use a NetworkAttachmentDefinition of the claim's namespace, "
                 "or let claims use named plugins with the node config's claimCni.plugins)");
    }
    const json& conf = *cfg.cni->config;
    const json* plugins = conf.is_object() && conf.contains("plugins") ? &conf["plugins"] : nullptr;
    if (plugins != nullptr && plugins->is_array()) {
      for (size_t i = 0; i < plugins->size(); ++i) {
        const json& p = (*plugins)[i];
        const std::string field = absl::StrCat("cni.config.plugins[", i, "]");
        const std::string type = JsonString(p, "type");
        if (ctx.claim_cni->plugins.count(type) == 0) {
          return Bad(where, field + ".type",
                     absl::StrCat("\"", type,
                                  "\" is not a CNI plugin a claim may use on this node (the node "
                                  "config's claimCni.plugins allows: ",
                                  Listed(ctx.claim_cni->plugins), ")"));
        }
        if (p.is_object() && p.contains("ipam")) {
          RETURN_IF_ERROR(CheckClaimIpam(p["ipam"], field + ".ipam", *ctx.claim_cni, where));
        }
      }
    }
    RETURN_IF_ERROR(NoHostPaths(conf, "cni.config", where));
  }
  if (cfg.sriov) {
    return Bad(where, "sriov",
               "may only be set in a DeviceClass config, not in a claim (a VF's VLAN, MAC, "
               "trust and rates are the node admin's to choose)");
  }
  if (cfg.interface.hardware_addr) {
    return Bad(where, "interface.hardwareAddr",
               "may only be set in a DeviceClass config, not in a claim");
  }
  if (cfg.interface.ethtool_private_flags && !cfg.interface.ethtool_private_flags->empty()) {
    return Bad(where, "interface.ethtool.privateFlags",
               "may only be set in a DeviceClass config, not in a claim (a driver's private "
               "flags are its own knobs, and some act on the whole port, e.g. its LLDP or FEC)");
  }
  if (cfg.interface.vrf) {
    return Bad(where, "interface.vrf",
               "may only be set in a DeviceClass config, not in a claim (a VRF is policy "
               "routing, the admin's like rules and tables other than main)");
  }
  if (cfg.interface.sysctls) {
    for (const InterfaceSysctl& r : InterfaceSysctls()) {
      const std::string name = absl::StrCat(r.family, ".", r.key);
      if (!r.claim && cfg.interface.sysctls->count(name) != 0) {
        return Bad(where, "interface.sysctls." + name,
                   "may only be set in a DeviceClass config, not in a claim (the pod would "
                   "answer or route for other hosts on the NIC's network)");
      }
    }
  }
  if (cfg.interface.ethtool_features) {
    for (const ClassOnlyFeature& f : kClassOnlyFeatures) {
      if (cfg.interface.ethtool_features->count(f.name) != 0) {
        return Bad(
            where, absl::StrCat("interface.ethtool.features.", f.name),
            absl::StrCat("may only be set in a DeviceClass config, not in a claim (", f.why, ")"));
      }
    }
  }
  if (cfg.child) {
    return Bad(where, "child",
               "may only be set in a DeviceClass config, not in a claim (the child's type, mode "
               "and VLAN decide what a pod can reach on the shared NIC)");
  }
  if (cfg.rules && !cfg.rules->empty()) {
    return Bad(where, "rules",
               "may only be set in a DeviceClass config, not in a claim (policy routing is the "
               "admin's, like routes in tables other than main)");
  }
  if (cfg.routes) {
    for (size_t i = 0; i < cfg.routes->size(); ++i) {
      const auto& t = (*cfg.routes)[i].table;
      if (t && *t != kMainTable) {
        return Bad(where, absl::StrCat("routes[", i, "].table"),
                   absl::StrCat("table ", *t,
                                " may only be set in a DeviceClass config; claims may use only "
                                "the main table (254)"));
      }
    }
  }
  if (cfg.cni && cfg.cni->network_attachment) {
    const std::string& ns = cfg.cni->network_attachment->namespace_;
    if (!ns.empty() && ns != ctx.claim_namespace) {
      return Bad(where, "cni.networkAttachment.namespace",
                 absl::StrCat("a claim in namespace \"", ctx.claim_namespace,
                              "\" may only use NetworkAttachmentDefinitions of its own namespace, "
                              "not \"",
                              ns, "\""));
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::optional<std::string> InvalidIfName(std::string_view name) {
  if (name.empty()) return "must not be empty";
  if (name.size() > 15) {
    return absl::StrCat("\"", std::string(name), "\" is ", name.size(), " bytes long (at most 15)");
  }
  if (name == "." || name == "..")
    return absl::StrCat("\"", std::string(name), "\" is not allowed");
  if (name == "lo") return "\"lo\" is the loopback interface of every pod";
  for (char c : name) {
    if (c == '/' || c == ':' || c == '\0' || std::isspace(static_cast<unsigned char>(c))) {
      return absl::StrCat("\"", std::string(name), "\" must not contain '/', ':' or whitespace");
    }
  }
  return std::nullopt;
}

absl::StatusOr<NetworkConfig> Decode(const json& p, std::string_view where) {
  if (!p.is_object()) return Bad(where, "", absl::StrCat("expected an object, got ", TypeName(p)));
  RETURN_IF_ERROR(CheckKeys(p,
                            {"apiVersion", "kind", "attachedBy", "interface", "ipam", "routes",
                             "neighbors", "rules", "cni", "sriov", "child"},
                            "", where));
  auto api = p.find("apiVersion");
  if (api == p.end()) {
    return Bad(where, "apiVersion",
               absl::StrCat("required field is missing (want ", std::string(kApiVersion), ")"));
  }
  if (!api->is_string() || api->get<std::string>() != kApiVersion) {
    return Bad(where, "apiVersion",
               absl::StrCat("want ", std::string(kApiVersion), ", found ", api->dump()));
  }
  auto kind = p.find("kind");
  if (kind == p.end()) {
    return Bad(where, "kind",
               absl::StrCat("required field is missing (want ", std::string(kKind), ")"));
  }
  if (!kind->is_string() || kind->get<std::string>() != kKind) {
    return Bad(where, "kind", absl::StrCat("want ", std::string(kKind), ", found ", kind->dump()));
  }

  NetworkConfig cfg;
  if (auto it = p.find("attachedBy"); it != p.end()) {
    ASSIGN_OR_RETURN(std::string by, GetString(*it, "attachedBy", where));
    if (by == kAttachedByKnd) {
      cfg.attached_by = AttachedBy::kKnd;
    } else if (by == kAttachedByMultus) {
      cfg.attached_by = AttachedBy::kMultus;
    } else {
      return Bad(where, "attachedBy",
                 absl::StrCat("\"", by, "\" is not one of \"", kAttachedByKnd, "\", \"",
                              kAttachedByMultus, "\""));
    }
  }
  if (auto it = p.find("interface"); it != p.end()) {
    RETURN_IF_ERROR(ExpectType(*it, json::value_t::object, "interface", where));
    RETURN_IF_ERROR(
        CheckKeys(*it,
                  {"name", "mtu", "gsoMaxSize", "groMaxSize", "gsoIPv4MaxSize", "groIPv4MaxSize",
                   "hardwareAddr", "addresses", "sysctls", "ethtool", "vrf"},
                  "interface", where));
    if (auto f = it->find("name"); f != it->end()) {
      ASSIGN_OR_RETURN(cfg.interface.name, GetString(*f, "interface.name", where));
    }
    if (auto f = it->find("mtu"); f != it->end()) {
      ASSIGN_OR_RETURN(cfg.interface.mtu, GetUint32(*f, "interface.mtu", where));
    }
    if (auto f = it->find("gsoMaxSize"); f != it->end()) {
      ASSIGN_OR_RETURN(cfg.interface.gso_max_size, GetUint32(*f, "interface.gsoMaxSize", where));
    }
    if (auto f = it->find("groMaxSize"); f != it->end()) {
      ASSIGN_OR_RETURN(cfg.interface.gro_max_size, GetUint32(*f, "interface.groMaxSize", where));
    }
    if (auto f = it->find("gsoIPv4MaxSize"); f != it->end()) {
      ASSIGN_OR_RETURN(cfg.interface.gso_ipv4_max_size,
                       GetUint32(*f, "interface.gsoIPv4MaxSize", where));
    }
    if (auto f = it->find("groIPv4MaxSize"); f != it->end()) {
      ASSIGN_OR_RETURN(cfg.interface.gro_ipv4_max_size,
                       GetUint32(*f, "interface.groIPv4MaxSize", where));
    }
    if (auto f = it->find("hardwareAddr"); f != it->end()) {
      ASSIGN_OR_RETURN(cfg.interface.hardware_addr, GetString(*f, "interface.hardwareAddr", where));
    }
    if (auto f = it->find("addresses"); f != it->end()) {
      RETURN_IF_ERROR(ExpectType(*f, json::value_t::array, "interface.addresses", where));
      std::vector<std::string> addrs;
      for (size_t i = 0; i < f->size(); ++i) {
        ASSIGN_OR_RETURN(std::string a,
                         GetString((*f)[i], absl::StrCat("interface.addresses[", i, "]"), where));
        addrs.push_back(std::move(a));
      }
      cfg.interface.addresses = std::move(addrs);
    }
    if (auto f = it->find("sysctls"); f != it->end()) {
      RETURN_IF_ERROR(ExpectType(*f, json::value_t::object, "interface.sysctls", where));
      RETURN_IF_ERROR(CheckKeys(*f, {"ipv4", "ipv6"}, "interface.sysctls", where));
      std::map<std::string, int64_t> sysctls;
      for (const auto& [family, keys] : f->items()) {
        const std::string fpath = "interface.sysctls." + family;
        RETURN_IF_ERROR(ExpectType(keys, json::value_t::object, fpath, where));
        for (const auto& [key, value] : keys.items()) {
          const std::string path = fpath + "." + key;
          RETURN_IF_ERROR(ExpectType(value, json::value_t::number_integer, path, where));
          if (value.is_number_unsigned() && value.get<uint64_t>() > 0x7fffffffULL) {
            return Bad(where, path, absl::StrCat(value.get<uint64_t>(), " is out of range"));
          }
          sysctls[family + "." + key] = value.get<int64_t>();
        }
      }
      cfg.interface.sysctls = std::move(sysctls);
    }
    if (auto f = it->find("ethtool"); f != it->end()) {
      RETURN_IF_ERROR(ExpectType(*f, json::value_t::object, "interface.ethtool", where));
      RETURN_IF_ERROR(CheckKeys(*f, {"features", "channels", "rings", "privateFlags"},
                                "interface.ethtool", where));
      // Named lists: a braced list in the range-for would die before the loop body runs.
      static constexpr std::initializer_list<const char*> kChannelKeys = {"rx", "tx", "other",
                                                                          "combined"};
      static constexpr std::initializer_list<const char*> kRingKeys = {"rx", "rxMini", "rxJumbo",
                                                                       "tx"};
      for (const auto& [key, keys, out] :
           {std::tuple{"channels", kChannelKeys, &cfg.interface.ethtool_channels},
            std::tuple{"rings", kRingKeys, &cfg.interface.ethtool_rings}}) {
        auto ch = f->find(key);
        if (ch == f->end()) continue;
        const std::string path = absl::StrCat("interface.ethtool.", key);
        RETURN_IF_ERROR(ExpectType(*ch, json::value_t::object, path, where));
        RETURN_IF_ERROR(CheckKeys(*ch, keys, path, where));
        std::map<std::string, uint32_t> counts;
        for (const auto& [k, v] : ch->items()) {
          ASSIGN_OR_RETURN(counts[k], GetUint32(v, absl::StrCat(path, ".", k), where));
        }
        *out = std::move(counts);
      }
      // Name -> on/off maps: offload features and the driver's private flags.
      for (const auto& [key, out] :
           {std::pair{"features", &cfg.interface.ethtool_features},
            std::pair{"privateFlags", &cfg.interface.ethtool_private_flags}}) {
        auto fs = f->find(key);
        if (fs == f->end()) continue;
        const std::string path = absl::StrCat("interface.ethtool.", key);
        RETURN_IF_ERROR(ExpectType(*fs, json::value_t::object, path, where));
        std::map<std::string, bool> bits;
        for (const auto& [name, on] : fs->items()) {
          const std::string bit = path + "." + name;
          RETURN_IF_ERROR(ExpectType(on, json::value_t::boolean, bit, where));
          bits[name] = on.get<bool>();
        }
        *out = std::move(bits);
      }
    }
    if (auto f = it->find("vrf"); f != it->end()) {
      RETURN_IF_ERROR(ExpectType(*f, json::value_t::object, "interface.vrf", where));
      RETURN_IF_ERROR(CheckKeys(*f, {"name", "table"}, "interface.vrf", where));
      VrfConfig vrf;
      auto name = f->find("name");
      if (name == f->end()) return Bad(where, "interface.vrf.name", "required field is missing");
      ASSIGN_OR_RETURN(vrf.name, GetString(*name, "interface.vrf.name", where));
      auto table = f->find("table");
      if (table == f->end()) return Bad(where, "interface.vrf.table", "required field is missing");
      ASSIGN_OR_RETURN(vrf.table, GetUint32(*table, "interface.vrf.table", where));
      cfg.interface.vrf = std::move(vrf);
    }
  }
  if (auto it = p.find("ipam"); it != p.end()) {
    RETURN_IF_ERROR(ExpectType(*it, json::value_t::object, "ipam", where));
    cfg.ipam = *it;
  }
  if (auto it = p.find("routes"); it != p.end()) {
    RETURN_IF_ERROR(ExpectType(*it, json::value_t::array, "routes", where));
    std::vector<Route> routes;
    for (size_t i = 0; i < it->size(); ++i) {
      const json& r = (*it)[i];
      std::string path = absl::StrCat("routes[", i, "]");
      RETURN_IF_ERROR(ExpectType(r, json::value_t::object, path, where));
      RETURN_IF_ERROR(CheckKeys(r, {"destination", "gateway", "table", "metric"}, path, where));
      Route route;
      auto d = r.find("destination");
      if (d == r.end()) return Bad(where, path + ".destination", "required field is missing");
      ASSIGN_OR_RETURN(route.destination, GetString(*d, path + ".destination", where));
      if (auto f = r.find("gateway"); f != r.end()) {
        ASSIGN_OR_RETURN(route.gateway, GetString(*f, path + ".gateway", where));
      }
      if (auto f = r.find("table"); f != r.end()) {
        ASSIGN_OR_RETURN(route.table, GetUint32(*f, path + ".table", where));
      }
      if (auto f = r.find("metric"); f != r.end()) {
        ASSIGN_OR_RETURN(route.metric, GetUint32(*f, path + ".metric", where));
      }
      routes.push_back(std::move(route));
    }
    cfg.routes = std::move(routes);
  }
  if (auto it = p.find("neighbors"); it != p.end()) {
    RETURN_IF_ERROR(ExpectType(*it, json::value_t::array, "neighbors", where));
    std::vector<Neighbor> neighbors;
    for (size_t i = 0; i < it->size(); ++i) {
      const json& n = (*it)[i];
      std::string path = absl::StrCat("neighbors[", i, "]");
      RETURN_IF_ERROR(ExpectType(n, json::value_t::object, path, where));
      RETURN_IF_ERROR(CheckKeys(n, {"ip", "mac"}, path, where));
      Neighbor nb;
      for (const char* key : {"ip", "mac"}) {
        auto f = n.find(key);
        if (f == n.end())
          return Bad(where, absl::StrCat(path, ".", key), "required field is missing");
        ASSIGN_OR_RETURN(std::string v, GetString(*f, absl::StrCat(path, ".", key), where));
        (std::string(key) == "ip" ? nb.ip : nb.mac) = std::move(v);
      }
      neighbors.push_back(std::move(nb));
    }
    cfg.neighbors = std::move(neighbors);
  }
  if (auto it = p.find("rules"); it != p.end()) {
    RETURN_IF_ERROR(ExpectType(*it, json::value_t::array, "rules", where));
    std::vector<Rule> rules;
    for (size_t i = 0; i < it->size(); ++i) {
      const json& r = (*it)[i];
      std::string path = absl::StrCat("rules[", i, "]");
      RETURN_IF_ERROR(ExpectType(r, json::value_t::object, path, where));
      RETURN_IF_ERROR(
          CheckKeys(r, {"priority", "from", "to", "iif", "oif", "fwmark", "table"}, path, where));
      Rule rule;
      for (const char* key : {"priority", "table"}) {
        auto f = r.find(key);
        if (f == r.end()) {
          return Bad(where, absl::StrCat(path, ".", key), "required field is missing");
        }
        ASSIGN_OR_RETURN(uint32_t v, GetUint32(*f, absl::StrCat(path, ".", key), where));
        (std::string(key) == "priority" ? rule.priority : rule.table) = v;
      }
      for (auto [key, out] : {std::pair{"from", &rule.from}, std::pair{"to", &rule.to},
                              std::pair{"iif", &rule.iif}, std::pair{"oif", &rule.oif}}) {
        if (auto f = r.find(key); f != r.end()) {
          ASSIGN_OR_RETURN(*out, GetString(*f, absl::StrCat(path, ".", key), where));
        }
      }
      if (auto f = r.find("fwmark"); f != r.end()) {
        ASSIGN_OR_RETURN(rule.fwmark, GetUint32(*f, path + ".fwmark", where));
      }
      rules.push_back(std::move(rule));
    }
    cfg.rules = std::move(rules);
  }
  if (auto it = p.find("cni"); it != p.end()) {
    RETURN_IF_ERROR(ExpectType(*it, json::value_t::object, "cni", where));
    RETURN_IF_ERROR(CheckKeys(*it, {"networkAttachment", "config"}, "cni", where));
    CniConfig cni;
    if (auto f = it->find("networkAttachment"); f != it->end()) {
      RETURN_IF_ERROR(ExpectType(*f, json::value_t::object, "cni.networkAttachment", where));
      RETURN_IF_ERROR(CheckKeys(*f, {"namespace", "name"}, "cni.networkAttachment", where));
      NadRef nad;
      if (auto n = f->find("namespace"); n != f->end()) {
        ASSIGN_OR_RETURN(nad.namespace_, GetString(*n, "cni.networkAttachment.namespace", where));
      }
      if (auto n = f->find("name"); n != f->end()) {
        ASSIGN_OR_RETURN(nad.name, GetString(*n, "cni.networkAttachment.name", where));
      }
      cni.network_attachment = std::move(nad);
    }
    if (auto f = it->find("config"); f != it->end()) {
      RETURN_IF_ERROR(ExpectType(*f, json::value_t::object, "cni.config", where));
      cni.config = *f;
    }
    cfg.cni = std::move(cni);
  }
  if (auto it = p.find("sriov"); it != p.end()) {
    RETURN_IF_ERROR(ExpectType(*it, json::value_t::object, "sriov", where));
    RETURN_IF_ERROR(CheckKeys(*it,
                              {"mac", "vlan", "qos", "spoofCheck", "trust", "linkState",
                               "minTxRateMbps", "maxTxRateMbps", "driver"},
                              "sriov", where));
    SriovConfig sr;
    auto str = [&](const char* key, std::optional<std::string>& out) -> absl::Status {
      if (auto f = it->find(key); f != it->end()) {
        ASSIGN_OR_RETURN(out, GetString(*f, Join("sriov", key), where));
      }
      return absl::OkStatus();
    };
    auto num = [&](const char* key, std::optional<uint32_t>& out) -> absl::Status {
      if (auto f = it->find(key); f != it->end()) {
        ASSIGN_OR_RETURN(out, GetUint32(*f, Join("sriov", key), where));
      }
      return absl::OkStatus();
    };
    auto flag = [&](const char* key, std::optional<bool>& out) -> absl::Status {
      if (auto f = it->find(key); f != it->end()) {
        RETURN_IF_ERROR(ExpectType(*f, json::value_t::boolean, Join("sriov", key), where));
        out = f->get<bool>();
      }
      return absl::OkStatus();
    };
    RETURN_IF_ERROR(str("mac", sr.mac));
    RETURN_IF_ERROR(num("vlan", sr.vlan));
    RETURN_IF_ERROR(num("qos", sr.qos));
    RETURN_IF_ERROR(flag("spoofCheck", sr.spoof_check));
    RETURN_IF_ERROR(flag("trust", sr.trust));
    RETURN_IF_ERROR(str("linkState", sr.link_state));
    RETURN_IF_ERROR(num("minTxRateMbps", sr.min_tx_rate_mbps));
    RETURN_IF_ERROR(num("maxTxRateMbps", sr.max_tx_rate_mbps));
    RETURN_IF_ERROR(str("driver", sr.driver));
    cfg.sriov = std::move(sr);
  }
  if (auto it = p.find("child"); it != p.end()) {
    RETURN_IF_ERROR(ExpectType(*it, json::value_t::object, "child", where));
    RETURN_IF_ERROR(CheckKeys(*it, {"type", "mode", "vlanId"}, "child", where));
    ChildConfig c;
    if (auto f = it->find("type"); f != it->end()) {
      ASSIGN_OR_RETURN(c.type, GetString(*f, "child.type", where));
    }
    if (auto f = it->find("mode"); f != it->end()) {
      ASSIGN_OR_RETURN(c.mode, GetString(*f, "child.mode", where));
    }
    if (auto f = it->find("vlanId"); f != it->end()) {
      ASSIGN_OR_RETURN(c.vlan_id, GetUint32(*f, "child.vlanId", where));
    }
    cfg.child = std::move(c);
  }
  RETURN_IF_ERROR(ValidateFields(cfg, where));
  return cfg;
}

NetworkConfig Merge(const NetworkConfig& base, const NetworkConfig& over) {
  NetworkConfig out = base;
  if (over.attached_by) out.attached_by = over.attached_by;
  if (over.interface.name) out.interface.name = over.interface.name;
  if (over.interface.mtu) out.interface.mtu = over.interface.mtu;
  if (over.interface.gso_max_size) out.interface.gso_max_size = over.interface.gso_max_size;
  if (over.interface.gro_max_size) out.interface.gro_max_size = over.interface.gro_max_size;
  if (over.interface.gso_ipv4_max_size) {
    out.interface.gso_ipv4_max_size = over.interface.gso_ipv4_max_size;
  }
  if (over.interface.gro_ipv4_max_size) {
    out.interface.gro_ipv4_max_size = over.interface.gro_ipv4_max_size;
  }
  if (over.interface.hardware_addr) out.interface.hardware_addr = over.interface.hardware_addr;
  if (over.interface.addresses) out.interface.addresses = over.interface.addresses;
  if (over.interface.sysctls) {
    // Key by key: a class may set rp_filter and its claim arp_ignore.
    std::map<std::string, int64_t> m =
        base.interface.sysctls.value_or(std::map<std::string, int64_t>{});
    for (const auto& [k, v] : *over.interface.sysctls) m[k] = v;
    out.interface.sysctls = std::move(m);
  }
  // Feature by feature and flag by flag, like sysctls: a class may turn LRO off and its claim
  // GRO.
  for (auto [o, b] :
       {std::pair{&over.interface.ethtool_features, &out.interface.ethtool_features},
        std::pair{&over.interface.ethtool_private_flags, &out.interface.ethtool_private_flags}}) {
    if (!*o) continue;
    std::map<std::string, bool> m = b->value_or(std::map<std::string, bool>{});
    for (const auto& [k, v] : **o) m[k] = v;
    *b = std::move(m);
  }
  for (auto [o, b] : {std::pair{&over.interface.ethtool_channels, &out.interface.ethtool_channels},
                      std::pair{&over.interface.ethtool_rings, &out.interface.ethtool_rings}}) {
    if (!*o) continue;
    std::map<std::string, uint32_t> m = b->value_or(std::map<std::string, uint32_t>{});
    for (const auto& [k, v] : **o) m[k] = v;  // count by count
    *b = std::move(m);
  }
  if (over.interface.vrf) out.interface.vrf = over.interface.vrf;
  if (over.ipam) out.ipam = over.ipam;
  if (over.routes) out.routes = over.routes;
  if (over.rules) out.rules = over.rules;
  if (over.neighbors) out.neighbors = over.neighbors;
  if (over.cni) out.cni = over.cni;
  if (over.sriov) {
    // Field by field, like `interface`: a claim's class may set the VLAN, another the rate.
    SriovConfig s = out.sriov.value_or(SriovConfig{});
    const SriovConfig& o = *over.sriov;
    if (o.mac) s.mac = o.mac;
    if (o.vlan) s.vlan = o.vlan;
    if (o.qos) s.qos = o.qos;
    if (o.spoof_check) s.spoof_check = o.spoof_check;
    if (o.trust) s.trust = o.trust;
    if (o.link_state) s.link_state = o.link_state;
    if (o.min_tx_rate_mbps) s.min_tx_rate_mbps = o.min_tx_rate_mbps;
    if (o.max_tx_rate_mbps) s.max_tx_rate_mbps = o.max_tx_rate_mbps;
    if (o.driver) s.driver = o.driver;
    out.sriov = std::move(s);
  }
  if (over.child) {
    ChildConfig c = out.child.value_or(ChildConfig{});
    if (over.child->type) c.type = over.child->type;
    if (over.child->mode) c.mode = over.child->mode;
    if (over.child->vlan_id) c.vlan_id = over.child->vlan_id;
    out.child = std::move(c);
  }
  return out;
}

namespace {

// The first field set that configures the device's kernel interface in the pod (its name,
// sizes, addresses, sysctls, offloads, VRF, IPAM, routes, neighbors, rules), or nullptr.
const char* KernelInterfaceField(const NetworkConfig& cfg) {
  const InterfaceConfig& ic = cfg.interface;
  return ic.name                                    ? "interface.name"
         : ic.mtu                                   ? "interface.mtu"
         : ic.gso_max_size                          ? "interface.gsoMaxSize"
         : ic.gro_max_size                          ? "interface.groMaxSize"
         : ic.gso_ipv4_max_size                     ? "interface.gsoIPv4MaxSize"
         : ic.gro_ipv4_max_size                     ? "interface.groIPv4MaxSize"
         : ic.hardware_addr                         ? "interface.hardwareAddr"
         : ic.addresses && !ic.addresses->empty()   ? "interface.addresses"
         : ic.sysctls && !ic.sysctls->empty()       ? "interface.sysctls"
         : SetsEthtool(ic)                          ? "interface.ethtool"
         : ic.vrf                                   ? "interface.vrf"
         : cfg.ipam                                 ? "ipam"
         : cfg.routes && !cfg.routes->empty()       ? "routes"
         : cfg.neighbors && !cfg.neighbors->empty() ? "neighbors"
         : cfg.rules && !cfg.rules->empty()         ? "rules"
                                                    : nullptr;
}

}  // namespace

absl::Status Validate(const NetworkConfig& cfg, std::string_view where) {
  RETURN_IF_ERROR(ValidateFields(cfg, where));
  if (AttachedByMultus(cfg)) {
    // Multus and the NAD's plugins configure the interface (its name comes from the pod's
    // networks annotation); knd would apply none of these, so it refuses rather than ignore.
    const char* field = KernelInterfaceField(cfg);
    if (field == nullptr) {
      field = cfg.cni ? "cni" : cfg.sriov ? "sriov" : cfg.child ? "child" : nullptr;
    }
    if (field != nullptr) {
      return Bad(where, "attachedBy",
                 absl::StrCat("\"multus\" cannot be combined with ", field,
                              " (Multus and the NAD's plugins configure the interface)"));
    }
  }
  if (cfg.interface.sysctls) {
    // IPv6 off and IPv6 configuration: the kernel would refuse the addresses at attach time.
    auto off = cfg.interface.sysctls->find("ipv6.disable_ipv6");
    if (off != cfg.interface.sysctls->end() && off->second == 1) {
      auto v6 = [](const std::string& s) {
        absl::StatusOr<IpPrefix> p = ParseIpOrCidr(s);
        return p.ok() && p->addr.family == AF_INET6;
      };
      std::string what;
      for (const std::string& a : cfg.interface.addresses.value_or(std::vector<std::string>{})) {
        if (what.empty() && v6(a)) what = "interface.addresses has " + a;
      }
      for (const Route& r : cfg.routes.value_or(std::vector<Route>{})) {
        if (what.empty() && v6(r.destination)) what = "routes has " + r.destination;
      }
      for (const Neighbor& n : cfg.neighbors.value_or(std::vector<Neighbor>{})) {
        if (what.empty() && v6(n.ip)) what = "neighbors has " + n.ip;
      }
      if (!what.empty()) {
        return Bad(where, "interface.sysctls.ipv6.disable_ipv6",
                   "1 turns IPv6 off on the interface, but " + what);
      }
    }
  }
  if (cfg.cni && cfg.child) {
    return Bad(where, "cni",
               "cannot be combined with child (knd creates the child itself; a CNI macvlan or "
               "ipvlan plugin would make its own)");
  }
  if (cfg.sriov && cfg.child) {
    return Bad(where, "child", "cannot be combined with sriov (a VF is not a shared parent)");
  }
  if (UsesVfio(cfg)) {
    // Bound to vfio-pci the VF has no netdev: nothing of the kernel interface could be applied.
    if (const char* field = KernelInterfaceField(cfg)) {
      return Bad(where, "sriov.driver",
                 absl::StrCat("\"", kVfioPci, "\" cannot be combined with ", field,
                              " (a VF bound to vfio-pci has no kernel interface in the pod; the "
                              "pod's userspace driver configures it)"));
    }
  }
  if (cfg.cni && cfg.sriov) {
    // The CNI plugins move the VF (knd's native attach applies the PF's settings on the way).
    return Bad(where, "cni",
               "cannot be combined with sriov (set the VF's VLAN and MAC in the CNI config, "
               "e.g. the sriov plugin's)");
  }
  if (cfg.cni) {
    // With CNI the plugins own addressing; two owners would fight over the interface.
    if (cfg.interface.addresses && !cfg.interface.addresses->empty()) {
      return Bad(where, "cni",
                 "cannot be combined with interface.addresses (the CNI plugins assign addresses)");
    }
    if (cfg.ipam) {
      return Bad(where, "cni",
                 "cannot be combined with ipam (put the IPAM config into the CNI config)");
    }
    // knd would not apply these after the plugins ran: refuse rather than ignore them.
    if (cfg.interface.mtu) {
      return Bad(where, "cni",
                 "cannot be combined with interface.mtu (set the MTU in the CNI config)");
    }
    if (const char* size = cfg.interface.gso_max_size        ? "gsoMaxSize"
                           : cfg.interface.gro_max_size      ? "groMaxSize"
                           : cfg.interface.gso_ipv4_max_size ? "gsoIPv4MaxSize"
                           : cfg.interface.gro_ipv4_max_size ? "groIPv4MaxSize"
                                                             : nullptr) {
      return Bad(where, "cni",
                 absl::StrCat("cannot be combined with interface.", size,
                              " (knd would not apply it after the plugins ran)"));
    }
    if (cfg.interface.hardware_addr) {
      return Bad(where, "cni",
                 "cannot be combined with interface.hardwareAddr (set the MAC in the CNI "
                 "config, e.g. with the tuning plugin)");
    }
    if (cfg.routes && !cfg.routes->empty()) {
      return Bad(where, "cni",
                 "cannot be combined with routes (the CNI plugins own the interface's routes; "
                 "put them into the IPAM config)");
    }
    if (cfg.neighbors && !cfg.neighbors->empty()) {
      return Bad(where, "cni",
                 "cannot be combined with neighbors (knd would not add them after the plugins "
                 "ran)");
    }
    if (cfg.rules && !cfg.rules->empty()) {
      return Bad(where, "cni",
                 "cannot be combined with rules (knd would not add them after the plugins ran)");
    }
    if (cfg.interface.sysctls && !cfg.interface.sysctls->empty()) {
      return Bad(where, "cni",
                 "cannot be combined with interface.sysctls (set them with the tuning "
                 "plugin's sysctl in the CNI config)");
    }
    if (SetsEthtool(cfg.interface)) {
      return Bad(where, "cni",
                 "cannot be combined with interface.ethtool (knd would not apply it after the "
                 "plugins ran)");
    }
    if (cfg.interface.vrf) {
      return Bad(where, "cni",
                 "cannot be combined with interface.vrf (put the CNI vrf plugin in the chain)");
    }
  }
  if (const std::optional<VrfConfig>& vrf = cfg.interface.vrf) {
    if (cfg.interface.name == vrf->name) {
      return Bad(where, "interface.vrf.name",
                 absl::StrCat("\"", vrf->name, "\" is also interface.name"));
    }
    const std::vector<Route> routes = cfg.routes.value_or(std::vector<Route>{});
    for (size_t i = 0; i < routes.size(); ++i) {
      if (routes[i].table && *routes[i].table != vrf->table) {
        return Bad(where, absl::StrCat("routes[", i, "].table"),
                   absl::StrCat(*routes[i].table, " is not the table ", vrf->table,
                                " of interface.vrf (the routes of a VRF's interface are in its "
                                "table; leave table out)"));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<NetworkConfig> Resolve(const std::vector<Entry>& entries, const Context& ctx) {
  std::string prefix = absl::StrCat("claim ", ctx.claim_namespace, "/", ctx.claim_name,
                                    " request \"", ctx.request, "\"");
  NetworkConfig merged;
  for (Source pass : {Source::kClass, Source::kClaim}) {
    for (const Entry& e : entries) {
      if (e.source != pass) continue;
      if (!e.requests.empty()) {
        bool match = false;
        for (const auto& r : e.requests) {
          // Config may name the base request or "<main>/<sub>" (firstAvailable).
          size_t slash = r.find('/');
          if (slash == std::string::npos) {
            match = match || r == ctx.request;
          } else {
            match = match || (r.substr(0, slash) == ctx.request &&
                              (ctx.subrequest.empty() || r.substr(slash + 1) == ctx.subrequest));
          }
        }
        if (!match) continue;
      }
      std::string where = absl::StrCat(
          prefix, pass == Source::kClass ? " (from DeviceClass config)" : " (from claim config)");
      ASSIGN_OR_RETURN(NetworkConfig cfg, Decode(e.parameters, where));
      RETURN_IF_ERROR(CheckPrivileges(cfg, pass, ctx, where));
      merged = Merge(merged, cfg);
    }
  }
  RETURN_IF_ERROR(Validate(merged, prefix));
  return merged;
}

json ToJson(const NetworkConfig& cfg) {
  json j = json::object();
  j["apiVersion"] = std::string(kApiVersion);
  j["kind"] = std::string(kKind);
  if (cfg.attached_by) {
    j["attachedBy"] = AttachedByMultus(cfg) ? kAttachedByMultus : kAttachedByKnd;
  }
  json itf = json::object();
  if (cfg.interface.name) itf["name"] = *cfg.interface.name;
  if (cfg.interface.mtu) itf["mtu"] = *cfg.interface.mtu;
  if (cfg.interface.gso_max_size) itf["gsoMaxSize"] = *cfg.interface.gso_max_size;
  if (cfg.interface.gro_max_size) itf["groMaxSize"] = *cfg.interface.gro_max_size;
  if (cfg.interface.gso_ipv4_max_size) itf["gsoIPv4MaxSize"] = *cfg.interface.gso_ipv4_max_size;
  if (cfg.interface.gro_ipv4_max_size) itf["groIPv4MaxSize"] = *cfg.interface.gro_ipv4_max_size;
  if (cfg.interface.hardware_addr) itf["hardwareAddr"] = *cfg.interface.hardware_addr;
  if (cfg.interface.addresses) itf["addresses"] = *cfg.interface.addresses;
  if (cfg.interface.sysctls) {
    json sc = json::object();
    for (const auto& [name, value] : *cfg.interface.sysctls) {
      const size_t dot = name.find('.');
      sc[name.substr(0, dot)][name.substr(dot + 1)] = value;
    }
    itf["sysctls"] = std::move(sc);
  }
  if (cfg.interface.ethtool_features) itf["ethtool"]["features"] = *cfg.interface.ethtool_features;
  if (cfg.interface.ethtool_channels) itf["ethtool"]["channels"] = *cfg.interface.ethtool_channels;
  if (cfg.interface.ethtool_rings) itf["ethtool"]["rings"] = *cfg.interface.ethtool_rings;
  if (cfg.interface.ethtool_private_flags) {
    itf["ethtool"]["privateFlags"] = *cfg.interface.ethtool_private_flags;
  }
  if (cfg.interface.vrf) {
    itf["vrf"] = {{"name", cfg.interface.vrf->name}, {"table", cfg.interface.vrf->table}};
  }
  if (!itf.empty()) j["interface"] = std::move(itf);
  if (cfg.ipam) j["ipam"] = *cfg.ipam;
  if (cfg.routes) {
    json routes = json::array();
    for (const Route& r : *cfg.routes) {
      json jr = {{"destination", r.destination}};
      if (r.gateway) jr["gateway"] = *r.gateway;
      if (r.table) jr["table"] = *r.table;
      if (r.metric) jr["metric"] = *r.metric;
      routes.push_back(std::move(jr));
    }
    j["routes"] = std::move(routes);
  }
  if (cfg.neighbors) {
    json ns = json::array();
    for (const Neighbor& n : *cfg.neighbors) ns.push_back({{"ip", n.ip}, {"mac", n.mac}});
    j["neighbors"] = std::move(ns);
  }
  if (cfg.rules) {
    json rs = json::array();
    for (const Rule& r : *cfg.rules) {
      json jr = {{"priority", r.priority}, {"table", r.table}};
      if (r.from) jr["from"] = *r.from;
      if (r.to) jr["to"] = *r.to;
      if (r.iif) jr["iif"] = *r.iif;
      if (r.oif) jr["oif"] = *r.oif;
      if (r.fwmark) jr["fwmark"] = *r.fwmark;
      rs.push_back(std::move(jr));
    }
    j["rules"] = std::move(rs);
  }
  if (cfg.cni) {
    json cni = json::object();
    if (cfg.cni->network_attachment) {
      json nad = {{"name", cfg.cni->network_attachment->name}};
      if (!cfg.cni->network_attachment->namespace_.empty()) {
        nad["namespace"] = cfg.cni->network_attachment->namespace_;
      }
      cni["networkAttachment"] = std::move(nad);
    }
    if (cfg.cni->config) cni["config"] = *cfg.cni->config;
    j["cni"] = std::move(cni);
  }
  if (cfg.sriov) {
    const SriovConfig& s = *cfg.sriov;
    json js = json::object();
    if (s.mac) js["mac"] = *s.mac;
    if (s.vlan) js["vlan"] = *s.vlan;
    if (s.qos) js["qos"] = *s.qos;
    if (s.spoof_check) js["spoofCheck"] = *s.spoof_check;
    if (s.trust) js["trust"] = *s.trust;
    if (s.link_state) js["linkState"] = *s.link_state;
    if (s.min_tx_rate_mbps) js["minTxRateMbps"] = *s.min_tx_rate_mbps;
    if (s.max_tx_rate_mbps) js["maxTxRateMbps"] = *s.max_tx_rate_mbps;
    if (s.driver) js["driver"] = *s.driver;
    j["sriov"] = std::move(js);
  }
  if (cfg.child) {
    json jc = json::object();
    if (cfg.child->type) jc["type"] = *cfg.child->type;
    if (cfg.child->mode) jc["mode"] = *cfg.child->mode;
    if (cfg.child->vlan_id) jc["vlanId"] = *cfg.child->vlan_id;
    j["child"] = std::move(jc);
  }
  return j;
}

}  // namespace knd::config
