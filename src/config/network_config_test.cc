// Tests of NetworkConfig decoding, privileges, merging and validation: what users of claims
// and DeviceClasses rely on (a bad field is refused with its path, merges keep explicit zeros).
#include "config/network_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace knd::config {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

json J(const char* text) { return json::parse(text); }

// A parameters object with the right apiVersion/kind around `body`.
json C(const char* body) {
  json j = J(body);
  j["apiVersion"] = "knd.k8s.cni.cncf.io/v1alpha1";
  j["kind"] = "NetworkConfig";
  return j;
}

json Cfg(json body) {
  body["apiVersion"] = "knd.k8s.cni.cncf.io/v1alpha1";
  body["kind"] = "NetworkConfig";
  return body;
}

struct DecodeCase {
  std::string label;
  json params;
  std::string error;  // empty = must decode
};

class DecodeTest : public ::testing::TestWithParam<DecodeCase> {};

TEST_P(DecodeTest, DecodesOrNamesTheField) {
  const DecodeCase& c = GetParam();
  auto got = Decode(c.params, "claim ns/c request \"r\"");
  if (c.error.empty()) {
    ASSERT_TRUE(got.ok()) << got.status();
    // What plans store must decode back to the same config.
    auto again = Decode(ToJson(*got), "");
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(*again, *got);
  } else {
    ASSERT_FALSE(got.ok()) << "accepted: " << c.params.dump();
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(got.status().message()), HasSubstr("claim ns/c request \"r\": "));
    EXPECT_THAT(std::string(got.status().message()), HasSubstr(c.error));
  }
}

const DecodeCase kDecodeCases[] = {
    {"minimal", C("{}"), ""},
    {"attached_by_multus", C(R"({"attachedBy": "multus"})"), ""},
    {"attached_by_knd", C(R"({"attachedBy": "knd", "interface": {"name": "net1"}})"), ""},
    {"attached_by_unknown", C(R"({"attachedBy": "Multus"})"),
     "attachedBy: \"Multus\" is not one of \"knd\", \"multus\""},
    {"attached_by_not_a_string", C(R"({"attachedBy": true})"),
     "attachedBy: expected a string, got boolean"},
    {"full_native", C(R"({"interface": {"name": "net-rdma0", "mtu": 9000,
        "hardwareAddr": "02:00:00:00:00:01", "addresses": ["192.0.2.10/24", "2001:db8::10/64"]},
        "routes": [{"destination": "198.51.100.0/24", "gateway": "192.0.2.1", "metric": 100},
                   {"destination": "::/0", "gateway": "2001:db8::1", "table": 100}]})"),
     ""},
    {"ipam", C(R"({"ipam": {"type": "host-local", "subnet": "10.1.0.0/24"}})"), ""},
    {"cni_nad", C(R"({"cni": {"networkAttachment": {"name": "storage-net"}}})"), ""},
    {"cni_inline", C(R"({"cni": {"config": {"cniVersion": "1.0.0", "name": "n",
        "plugins": [{"type": "macvlan", "master": "eth0"}]}}})"),
     ""},
    {"empty_addresses", C(R"({"interface": {"addresses": []}})"), ""},
    {"not_object", json::array(), "expected an object, got array"},
    {"missing_api_version", J(R"({"kind": "NetworkConfig"})"), "apiVersion: required field"},
    {"wrong_api_version", J(R"({"apiVersion": "v1", "kind": "NetworkConfig"})"),
     "apiVersion: want knd.k8s.cni.cncf.io/v1alpha1, found \"v1\""},
    {"wrong_kind", J(R"({"apiVersion": "knd.k8s.cni.cncf.io/v1alpha1", "kind": "NetConf"})"),
     "kind: want NetworkConfig, found \"NetConf\""},
    {"unknown_top", C(R"({"interfaces": {}})"), "interfaces: unknown field"},
    {"unknown_nested", C(R"({"interface": {"mtuu": 1500}})"), "interface.mtuu: unknown field"},
    {"unknown_in_route", C(R"({"routes": [{"destination": "0.0.0.0/0", "via": "x"}]})"),
     "routes[0].via: unknown field"},
    {"mtu_string", C(R"({"interface": {"mtu": "9000"}})"),
     "interface.mtu: expected an integer, got string"},
    {"mtu_float", C(R"({"interface": {"mtu": 1500.5}})"),
     "interface.mtu: expected an integer, got number"},
    {"mtu_low", C(R"({"interface": {"mtu": 67}})"), "interface.mtu: 67 is out of range 68..65535"},
    {"mtu_high", C(R"({"interface": {"mtu": 65536}})"), "interface.mtu: 65536 is out of range"},
    {"mtu_negative", C(R"({"interface": {"mtu": -1}})"), "interface.mtu: -1 is out of range"},
    {"name_null", C(R"({"interface": {"name": null}})"),
     "interface.name: expected a string, got null"},
    {"name_long", C(R"({"interface": {"name": "abcdefghijklmnop"}})"),
     "interface.name: \"abcdefghijklmnop\" is 16 bytes long (at most 15)"},
    {"name_15_ok", C(R"({"interface": {"name": "abcdefghijklmno"}})"), ""},
    {"name_empty", C(R"({"interface": {"name": ""}})"), "interface.name: must not be empty"},
    {"name_lo", C(R"({"interface": {"name": "lo"}})"), "interface.name: \"lo\""},
    {"name_slash", C(R"({"interface": {"name": "a/b"}})"), "must not contain '/'"},
    {"name_colon", C(R"({"interface": {"name": "eth0:1"}})"), "must not contain '/', ':'"},
    {"name_space", C(R"({"interface": {"name": "a b"}})"), "or whitespace"},
    {"name_dotdot", C(R"({"interface": {"name": ".."}})"), "interface.name: \"..\" is not allowed"},
    {"mac_multicast", C(R"({"interface": {"hardwareAddr": "01:00:5e:00:00:01"}})"),
     "interface.hardwareAddr: \"01:00:5e:00:00:01\" is a multicast address"},
    {"mac_zero", C(R"({"interface": {"hardwareAddr": "00:00:00:00:00:00"}})"), "all-zero"},
    {"mac_short", C(R"({"interface": {"hardwareAddr": "02:00:00:00:01"}})"),
     "interface.hardwareAddr: \"02:00:00:00:01\" is not a MAC address: 5 bytes, expected 6"},
    {"mac_long", C(R"({"interface": {"hardwareAddr": "02:00:00:00:00:01:02"}})"),
     "interface.hardwareAddr: \"02:00:00:00:00:01:02\" is not a MAC address: 7 bytes"},
    {"mac_hex", C(R"({"interface": {"hardwareAddr": "02:00:00:00:00:zz"}})"),
     "interface.hardwareAddr: \"02:00:00:00:00:zz\" is not a MAC address (expected six hex "
     "bytes like 02:00:00:00:00:01)"},
    {"mac_single_digits", C(R"({"interface": {"hardwareAddr": "2:0:0:0:0:1"}})"),
     "is not a MAC address"},
    {"mac_upper_ok", C(R"({"interface": {"hardwareAddr": "02:AB:CD:EF:00:01"}})"), ""},
    {"address_leading_zero", C(R"({"interface": {"addresses": ["192.0.2.010/24"]}})"),
     "interface.addresses[0]: \"192.0.2.010/24\": invalid IP address (leading zeros are not "
     "allowed)"},
    {"address_zone", C(R"({"interface": {"addresses": ["fe80::1%eth0/64"]}})"),
     "interface.addresses[0]: \"fe80::1%eth0/64\": invalid IP address (an IPv6 zone such as "
     "\"%eth0\" is not allowed"},
    {"address_prefix_v4", C(R"({"interface": {"addresses": ["192.0.2.1/33"]}})"),
     "interface.addresses[0]: \"192.0.2.1/33\": prefix length must be 0..32"},
    {"address_prefix_leading_zero", C(R"({"interface": {"addresses": ["192.0.2.1/024"]}})"),
     "prefix length must be 0..32, without leading zeros"},
    {"address_upper_v6_ok", C(R"({"interface": {"addresses": ["2001:DB8::1/64"]}})"), ""},
    {"route_gw_zone", C(R"({"routes": [{"destination": "::/0", "gateway": "fe80::1%eth0"}]})"),
     "routes[0].gateway: \"fe80::1%eth0\" is not an IP address (an IPv6 zone"},
    {"address_not_cidr", C(R"({"interface": {"addresses": ["192.0.2.1"]}})"),
     "interface.addresses[0]: \"192.0.2.1\" is not a CIDR"},
    {"address_bad_ip", C(R"({"interface": {"addresses": ["192.0.2.300/24"]}})"),
     "invalid IP address"},
    {"address_prefix", C(R"({"interface": {"addresses": ["2001:db8::1/129"]}})"),
     "prefix length must be 0..128"},
    {"address_dup", C(R"({"interface": {"addresses": ["2001:db8::1/64", "2001:db8:0::1/64"]}})"),
     "interface.addresses[1]: duplicate address"},
    {"address_unspecified", C(R"({"interface": {"addresses": ["0.0.0.0/0"]}})"),
     "interface.addresses[0]: the unspecified address is not allowed"},
    {"address_type", C(R"({"interface": {"addresses": [1]}})"),
     "interface.addresses[0]: expected a string, got integer"},
    {"addresses_not_list", C(R"({"interface": {"addresses": "192.0.2.1/24"}})"),
     "interface.addresses: expected a list, got string"},
    {"address_too_many", C(R"({"interface": {"addresses": ["10.0.0.1/24", "10.0.0.2/24",
        "10.0.0.3/24", "10.0.0.4/24", "10.0.0.5/24", "10.0.0.6/24", "10.0.0.7/24", "10.0.0.8/24",
        "10.0.0.9/24", "10.0.0.10/24", "10.0.0.11/24", "10.0.0.12/24", "10.0.0.13/24",
        "10.0.0.14/24", "10.0.0.15/24", "10.0.0.16/24", "10.0.0.17/24"]}})"),
     "interface.addresses: too many addresses (17, at most 16)"},
    {"route_no_destination", C(R"({"routes": [{"gateway": "192.0.2.1"}]})"),
     "routes[0].destination: required field is missing"},
    {"route_host_bits", C(R"({"routes": [{"destination": "198.51.100.7/24"}]})"),
     "routes[0].destination: \"198.51.100.7/24\" has host bits set (did you mean "
     "198.51.100.0/24?)"},
    {"route_gw_family", C(R"({"routes": [{"destination": "0.0.0.0/0", "gateway": "192.0.2.1"},
        {"destination": "2001:db8:1::/48", "gateway": "192.0.2.1"}]})"),
     "routes[1].gateway: IPv4 gateway 192.0.2.1 for IPv6 destination 2001:db8:1::/48"},
    {"route_gw_not_ip", C(R"({"routes": [{"destination": "0.0.0.0/0", "gateway": "gw"}]})"),
     "routes[0].gateway: \"gw\" is not an IP address"},
    {"route_table_zero", C(R"({"routes": [{"destination": "0.0.0.0/0", "table": 0}]})"),
     "routes[0].table: 0 is not a routing table"},
    {"route_metric_type", C(R"({"routes": [{"destination": "0.0.0.0/0", "metric": true}]})"),
     "routes[0].metric: expected an integer, got boolean"},
    {"neighbors", C(R"({"neighbors": [{"ip": "192.0.2.1", "mac": "02:00:00:00:00:01"},
        {"ip": "2001:db8::1", "mac": "02:00:00:00:00:02"}]})"),
     ""},
    {"neighbors_not_list", C(R"({"neighbors": {"ip": "192.0.2.1"}})"),
     "neighbors: expected a list, got object"},
    {"neighbor_no_mac", C(R"({"neighbors": [{"ip": "192.0.2.1"}]})"),
     "neighbors[0].mac: required field is missing"},
    {"neighbor_unknown", C(R"({"neighbors": [{"ip": "192.0.2.1", "mac": "02:00:00:00:00:01",
        "state": "reachable"}]})"),
     "neighbors[0].state: unknown field"},
    {"neighbor_cidr", C(R"({"neighbors": [{"ip": "192.0.2.1/24", "mac": "02:00:00:00:00:01"}]})"),
     "neighbors[0].ip: \"192.0.2.1/24\" is not an IP address"},
    {"neighbor_multicast_ip",
     C(R"({"neighbors": [{"ip": "ff02::1", "mac": "02:00:00:00:00:01"}]})"),
     "neighbors[0].ip: \"ff02::1\" is a multicast address"},
    {"neighbor_unspecified", C(R"({"neighbors": [{"ip": "0.0.0.0", "mac": "02:00:00:00:00:01"}]})"),
     "neighbors[0].ip: \"0.0.0.0\" is the unspecified address"},
    {"neighbor_broadcast", C(R"({"neighbors": [{"ip": "255.255.255.255",
        "mac": "02:00:00:00:00:01"}]})"),
     "neighbors[0].ip: 255.255.255.255 is the broadcast address"},
    {"neighbor_duplicate", C(R"({"neighbors": [{"ip": "2001:db8::1", "mac": "02:00:00:00:00:01"},
        {"ip": "2001:DB8:0::1", "mac": "02:00:00:00:00:02"}]})"),
     "neighbors[1].ip: duplicate neighbor 2001:DB8:0::1"},
    {"neighbor_bad_mac", C(R"({"neighbors": [{"ip": "192.0.2.1", "mac": "02:00:00:00:00"}]})"),
     "neighbors[0].mac: "},
    {"neighbor_multicast_mac", C(R"({"neighbors": [{"ip": "192.0.2.1",
        "mac": "01:00:5e:00:00:01"}]})"),
     "neighbors[0].mac: \"01:00:5e:00:00:01\" is a multicast address (need unicast)"},
    {"gso_gro", C(R"({"interface": {"gsoMaxSize": 185000, "groMaxSize": 524280}})"), ""},
    {"gso_zero", C(R"({"interface": {"gsoMaxSize": 0}})"),
     "interface.gsoMaxSize: 0 is out of range 1..524280"},
    {"gro_too_big", C(R"({"interface": {"groMaxSize": 524281}})"),
     "interface.groMaxSize: 524281 is out of range 1..524280"},
    {"gso_string", C(R"({"interface": {"gsoMaxSize": "64k"}})"),
     "interface.gsoMaxSize: expected an integer, got string"},
    {"gso_gro_ipv4", C(R"({"interface": {"gsoIPv4MaxSize": 185000, "groIPv4MaxSize": 1}})"), ""},
    {"gso_ipv4_too_big", C(R"({"interface": {"gsoIPv4MaxSize": 600000}})"),
     "interface.gsoIPv4MaxSize: 600000 is out of range 1..524280"},
    {"gro_ipv4_negative", C(R"({"interface": {"groIPv4MaxSize": -1}})"),
     "interface.groIPv4MaxSize: "},
    {"ethtool_features", C(R"({"interface": {"ethtool": {"features": {"rx-gro": false,
        "tso": true, "tx-udp_tnl-segmentation": false}}}})"),
     ""},
    {"ethtool_empty", C(R"({"interface": {"ethtool": {}}})"), ""},
    {"ethtool_private_flags",
     C(R"({"interface": {"ethtool": {"privateFlags": {"legacy-rx": true, "MFP": false,
                                                       "rx_cqe_compress": true}}}})"),
     ""},
    {"ethtool_private_flag_not_bool",
     C(R"({"interface": {"ethtool": {"privateFlags": {"legacy-rx": "on"}}}})"),
     "interface.ethtool.privateFlags.legacy-rx: expected a boolean, got string"},
    {"ethtool_private_flag_name",
     C(R"({"interface": {"ethtool": {"privateFlags": {"legacy rx": true}}}})"),
     "interface.ethtool.privateFlags: \"legacy rx\" is not a private flag name"},
    {"ethtool_private_flag_long",
     C(R"({"interface": {"ethtool": {"privateFlags": {"a-private-flag-name-of-32-bytes": true, "a-private-flag-name-that-is-32-b": true}}}})"),
     "interface.ethtool.privateFlags: \"a-private-flag-name-that-is-32-b\" is 32 bytes long (at "
     "most 31)"},
    {"ethtool_private_flags_not_object",
     C(R"({"interface": {"ethtool": {"privateFlags": ["legacy-rx"]}}})"),
     "interface.ethtool.privateFlags: expected"},
    {"ethtool_channels", C(R"({"interface": {"ethtool": {"channels": {"rx": 0, "tx": 2,
        "other": 1, "combined": 4096}, "features": {"rx-gro": true}}}})"),
     ""},
    {"ethtool_channels_empty", C(R"({"interface": {"ethtool": {"channels": {}}}})"),
     "interface.ethtool.channels: give at least one of rx, tx, other, combined"},
    {"ethtool_channels_big", C(R"({"interface": {"ethtool": {"channels": {"combined": 4097}}}})"),
     "interface.ethtool.channels.combined: 4097 is out of range 0..4096"},
    {"ethtool_channels_unknown", C(R"({"interface": {"ethtool": {"channels": {"queues": 2}}}})"),
     "interface.ethtool.channels.queues: unknown field"},
    {"ethtool_channels_negative", C(R"({"interface": {"ethtool": {"channels": {"rx": -1}}}})"),
     "interface.ethtool.channels.rx: "},
    {"ethtool_rings", C(R"({"interface": {"ethtool": {"rings": {"rx": 4096, "rxMini": 0,
        "rxJumbo": 1048576, "tx": 512}}}})"),
     ""},
    {"ethtool_rings_empty", C(R"({"interface": {"ethtool": {"rings": {}}}})"),
     "interface.ethtool.rings: give at least one of rx, rxMini, rxJumbo, tx"},
    {"ethtool_rings_big", C(R"({"interface": {"ethtool": {"rings": {"tx": 1048577}}}})"),
     "interface.ethtool.rings.tx: 1048577 is out of range 0..1048576"},
    {"ethtool_rings_unknown", C(R"({"interface": {"ethtool": {"rings": {"rx_mini": 8}}}})"),
     "interface.ethtool.rings.rx_mini: unknown field"},
    {"ethtool_unknown", C(R"({"interface": {"ethtool": {"coalesce": {"rx-usecs": 8}}}})"),
     "interface.ethtool.coalesce: unknown field"},
    {"ethtool_not_bool", C(R"({"interface": {"ethtool": {"features": {"rx-gro": "off"}}}})"),
     "interface.ethtool.features.rx-gro: expected a boolean, got string"},
    {"ethtool_upper", C(R"({"interface": {"ethtool": {"features": {"RX-GRO": false}}}})"),
     "interface.ethtool.features: \"RX-GRO\" is not an ethtool feature name"},
    {"ethtool_long", C(R"({"interface": {"ethtool": {"features":
        {"tx-a-very-long-feature-name-indeed": false}}}})"),
     "interface.ethtool.features: \"tx-a-very-long-feature-name-indeed\" is 34 bytes long"},
    {"ethtool_list", C(R"({"interface": {"ethtool": {"features": ["rx-gro"]}}})"),
     "interface.ethtool.features: expected an object, got array"},
    {"rules", C(R"({"rules": [{"priority": 100, "from": "192.0.2.10", "table": 100},
        {"priority": 101, "to": "2001:db8::/32", "iif": "net1", "oif": "net2", "table": 7},
        {"priority": 102, "fwmark": 4294967295, "table": 4294967295}]})"),
     ""},
    {"rule_no_priority", C(R"({"rules": [{"from": "192.0.2.10", "table": 100}]})"),
     "rules[0].priority: required field is missing"},
    {"rule_no_table", C(R"({"rules": [{"priority": 100, "from": "192.0.2.10"}]})"),
     "rules[0].table: required field is missing"},
    {"rule_priority_zero", C(R"({"rules": [{"priority": 0, "table": 100}]})"),
     "rules[0].priority: 0 is out of range 1..32765 (0, 32766 and 32767 are the kernel's"},
    {"rule_priority_main", C(R"({"rules": [{"priority": 32766, "table": 100}]})"),
     "rules[0].priority: 32766 is out of range 1..32765"},
    {"rule_table_local", C(R"({"rules": [{"priority": 10, "table": 255}]})"),
     "rules[0].table: 255 is the kernel's local table"},
    {"rule_table_zero", C(R"({"rules": [{"priority": 10, "table": 0}]})"),
     "rules[0].table: required field is missing or 0"},
    {"rule_host_bits", C(R"({"rules": [{"priority": 10, "from": "192.0.2.10/24", "table": 1}]})"),
     "rules[0].from: \"192.0.2.10/24\" has host bits set (did you mean 192.0.2.0/24 or a single "
     "address?)"},
    {"rule_families", C(R"({"rules": [{"priority": 10, "from": "192.0.2.10", "to": "2001:db8::/32",
        "table": 1}]})"),
     "rules[0].to: IPv6 2001:db8::/32 in a rule from IPv4 192.0.2.10"},
    {"rule_not_ip", C(R"({"rules": [{"priority": 10, "to": "example.com", "table": 1}]})"),
     "rules[0].to: \"example.com\" is not an IP address"},
    {"rule_bad_iif", C(R"({"rules": [{"priority": 10, "iif": "a/b", "table": 1}]})"),
     "rules[0].iif: "},
    {"rule_unknown", C(R"({"rules": [{"priority": 10, "table": 1, "action": "blackhole"}]})"),
     "rules[0].action: unknown field"},
    {"rule_fwmark_type", C(R"({"rules": [{"priority": 10, "table": 1, "fwmark": "0x7"}]})"),
     "rules[0].fwmark: expected an integer, got string"},
    {"rule_duplicate", C(R"({"rules": [{"priority": 10, "table": 1, "from": "192.0.2.10"},
        {"priority": 10, "table": 1, "from": "192.0.2.10"}]})"),
     "rules[1]: same rule as rules[0]"},
    {"sysctls", C(R"({"interface": {"sysctls": {"ipv4": {"rp_filter": 2, "arp_ignore": 1},
        "ipv6": {"accept_dad": 0, "use_tempaddr": -1}}}})"),
     ""},
    {"sysctls_family", C(R"({"interface": {"sysctls": {"ipv5": {"rp_filter": 2}}}})"),
     "interface.sysctls.ipv5: unknown field"},
    {"sysctls_not_interface", C(R"({"interface": {"sysctls": {"ipv4": {"ip_forward": 1}}}})"),
     "interface.sysctls.ipv4.ip_forward: not a per-interface sysctl knd sets (ipv4: "
     "accept_local, accept_redirects, arp_accept"},
    {"sysctls_path", C(R"({"interface": {"sysctls": {"ipv4": {"../../ipv4/ip_forward": 1}}}})"),
     "interface.sysctls.ipv4.../../ipv4/ip_forward: not a per-interface sysctl knd sets"},
    {"sysctls_range", C(R"({"interface": {"sysctls": {"ipv4": {"rp_filter": 3}}}})"),
     "interface.sysctls.ipv4.rp_filter: 3 is out of range 0..2"},
    {"sysctls_string", C(R"({"interface": {"sysctls": {"ipv6": {"accept_ra": "0"}}}})"),
     "interface.sysctls.ipv6.accept_ra: expected an integer, got string"},
    {"sysctls_huge",
     C(R"({"interface": {"sysctls": {"ipv6": {"hop_limit": 18446744073709551615}}}})"),
     "interface.sysctls.ipv6.hop_limit: 18446744073709551615 is out of range"},
    {"sysctls_flat", C(R"({"interface": {"sysctls": {"ipv4": 1}}})"),
     "interface.sysctls.ipv4: expected an object, got integer"},
    {"ipam_not_object", C(R"({"ipam": "host-local"})"), "ipam: expected an object, got string"},
    {"ipam_no_type", C(R"({"ipam": {"subnet": "10.0.0.0/24"}})"),
     "ipam.type: required field is missing"},
    {"ipam_type_path", C(R"({"ipam": {"type": "../../bin/sh"}})"), "ipam.type: \"../../bin/sh\""},
    {"ipam_type_number", C(R"({"ipam": {"type": 5}})"), "ipam.type: expected a string"},
    {"cni_both", C(R"({"cni": {"networkAttachment": {"name": "a"},
        "config": {"plugins": [{"type": "macvlan"}]}}})"),
     "cni: give exactly one of networkAttachment or config"},
    {"cni_neither", C(R"({"cni": {}})"), "cni: give exactly one"},
    {"cni_nad_name", C(R"({"cni": {"networkAttachment": {"name": "Storage_Net"}}})"),
     "cni.networkAttachment.name: \"Storage_Net\" is not a valid object name"},
    {"cni_nad_no_name", C(R"({"cni": {"networkAttachment": {"namespace": "a"}}})"),
     "cni.networkAttachment.name: required field is missing"},
    {"cni_nad_unknown", C(R"({"cni": {"networkAttachment": {"name": "a", "ns": "b"}}})"),
     "cni.networkAttachment.ns: unknown field"},
    {"cni_plugins_missing", C(R"({"cni": {"config": {"name": "n"}}})"),
     "cni.config.plugins: required field is missing"},
    {"cni_plugin_type",
     C(R"({"cni": {"config": {"plugins": [{"type": "macvlan"}, {"master": "x"}]}}})"),
     "cni.config.plugins[1].type: required field is missing"},
    {"sriov_all", C(R"({"sriov": {"mac": "02:00:00:00:00:0a", "vlan": 100, "qos": 3,
        "spoofCheck": true, "trust": false, "linkState": "enable", "minTxRateMbps": 10,
        "maxTxRateMbps": 100}})"),
     ""},
    {"sriov_vlan_zero", C(R"({"sriov": {"vlan": 0}})"), ""},
    {"sriov_unknown", C(R"({"sriov": {"vlanId": 5}})"), "sriov.vlanId: unknown field"},
    {"sriov_vlan_range", C(R"({"sriov": {"vlan": 4096}})"), "sriov.vlan: 4096 is out of range"},
    {"sriov_qos_range", C(R"({"sriov": {"vlan": 1, "qos": 8}})"), "sriov.qos: 8 is out of range"},
    {"sriov_qos_no_vlan", C(R"({"sriov": {"qos": 2}})"), "sriov.qos: needs sriov.vlan"},
    {"sriov_link_state", C(R"({"sriov": {"linkState": "up"}})"),
     "sriov.linkState: \"up\" is not one of"},
    {"sriov_mac_multicast", C(R"({"sriov": {"mac": "01:00:5e:00:00:01"}})"), "sriov.mac: "},
    {"sriov_spoof_type", C(R"({"sriov": {"spoofCheck": "on"}})"), "sriov.spoofCheck: expected"},
    {"sriov_rates", C(R"({"sriov": {"minTxRateMbps": 200, "maxTxRateMbps": 100}})"),
     "sriov.minTxRateMbps: 200 is above sriov.maxTxRateMbps (100)"},
    {"sriov_vfio", C(R"({"sriov": {"driver": "vfio-pci", "vlan": 100}})"), ""},
    {"sriov_driver_other", C(R"({"sriov": {"driver": "igb_uio"}})"),
     "sriov.driver: \"igb_uio\" is not \"vfio-pci\""},
    {"cni_plugin_slash", C(R"({"cni": {"config": {"plugins": [{"type": "/bin/sh"}]}}})"),
     "cni.config.plugins[0].type: \"/bin/sh\" must not contain '/'"},
    {"ipam_dhcp", C(R"({"ipam": {"type": "dhcp"}})"),
     "ipam.type: dhcp is not supported here: knd runs IPAM once in Prepare"},
    {"child_default", C(R"({"child": {}})"), ""},
    {"child_macvlan", C(R"({"child": {"type": "macvlan", "mode": "passthru"}})"), ""},
    {"child_ipvlan", C(R"({"child": {"type": "ipvlan", "mode": "l3s"}})"), ""},
    {"child_vlan", C(R"({"child": {"type": "vlan", "vlanId": 42}})"), ""},
    {"child_type", C(R"({"child": {"type": "veth"}})"),
     "child.type: \"veth\" is not a child type (macvlan, ipvlan, vlan)"},
    {"child_macvlan_mode", C(R"({"child": {"mode": "source"}})"),
     "child.mode: \"source\" is not a macvlan mode"},
    {"child_ipvlan_mode", C(R"({"child": {"type": "ipvlan", "mode": "bridge"}})"),
     "child.mode: \"bridge\" is not an ipvlan mode (l2, l3, l3s)"},
    {"child_vlan_mode", C(R"({"child": {"type": "vlan", "vlanId": 2, "mode": "l2"}})"),
     "child.mode: a vlan child has no mode"},
    {"child_vlan_no_id", C(R"({"child": {"type": "vlan"}})"),
     "child.vlanId: required for a vlan child"},
    {"child_vlan_range", C(R"({"child": {"type": "vlan", "vlanId": 4095}})"),
     "child.vlanId: 4095 is out of range 1..4094"},
    {"child_id_not_vlan", C(R"({"child": {"vlanId": 4}})"), "child.vlanId: only for type vlan"},
    {"child_unknown", C(R"({"child": {"kind": "macvlan"}})"), "child.kind: unknown field"},
    {"child_not_object", C(R"({"child": "macvlan"})"), "child: expected"},
    {"vrf", C(R"({"interface": {"name": "net1", "vrf": {"name": "red", "table": 100}}})"), ""},
    {"vrf_big_table", C(R"({"interface": {"vrf": {"name": "red", "table": 4294967295}}})"), ""},
    {"vrf_no_name", C(R"({"interface": {"vrf": {"table": 100}}})"),
     "interface.vrf.name: required field is missing"},
    {"vrf_no_table", C(R"({"interface": {"vrf": {"name": "red"}}})"),
     "interface.vrf.table: required field is missing"},
    {"vrf_main_table", C(R"({"interface": {"vrf": {"name": "red", "table": 254}}})"),
     "interface.vrf.table: 254 is the kernel's main table (use 1..4294967295, not 253, 254 or "
     "255)"},
    {"vrf_local_table", C(R"({"interface": {"vrf": {"name": "red", "table": 255}}})"),
     "interface.vrf.table: 255 is the kernel's local table"},
    {"vrf_zero_table", C(R"({"interface": {"vrf": {"name": "red", "table": 0}}})"),
     "interface.vrf.table: required field is missing or 0"},
    {"vrf_long_name", C(R"({"interface": {"vrf": {"name": "vrf-of-the-storage", "table": 9}}})"),
     "interface.vrf.name: \"vrf-of-the-storage\" is 18 bytes long (at most 15)"},
    {"vrf_table_string", C(R"({"interface": {"vrf": {"name": "red", "table": "100"}}})"),
     "interface.vrf.table: expected"},
    {"vrf_unknown", C(R"({"interface": {"vrf": {"name": "red", "table": 1, "mode": "strict"}}})"),
     "interface.vrf.mode: unknown field"},
    {"vrf_not_object", C(R"({"interface": {"vrf": "red"}})"), "interface.vrf: expected"},
};

INSTANTIATE_TEST_SUITE_P(Cases, DecodeTest, ::testing::ValuesIn(kDecodeCases),
                         [](const auto& info) { return info.param.label; });

// ---- Resolve: privileges, merge, per-request selection ------------------------------------

Context Ctx() { return {"team-a", "rdma", "nic"}; }

// A node that lets claims run some CNI and IPAM themselves (node config claimCni).
const ClaimCniPolicy kClaimCni{{"macvlan", "tuning", "host-device"},
                               {"host-local", "static", "dhcp"}};
Context CniCtx() {
  Context c = Ctx();
  c.claim_cni = &kClaimCni;
  return c;
}

Entry ClassEntry(json body, std::vector<std::string> requests = {}) {
  return {Source::kClass, std::move(requests), Cfg(std::move(body))};
}
Entry ClaimEntry(json body, std::vector<std::string> requests = {}) {
  return {Source::kClaim, std::move(requests), Cfg(std::move(body))};
}

struct PrivilegeCase {
  std::string label;
  json body;
  std::string claim_error;  // error when given by a claim; a class may always set it
};

class PrivilegeTest : public ::testing::TestWithParam<PrivilegeCase> {};

TEST_P(PrivilegeTest, ClassMayClaimMayNot) {
  const PrivilegeCase& c = GetParam();
  auto from_class = Resolve({ClassEntry(c.body)}, Ctx());
  EXPECT_TRUE(from_class.ok()) << from_class.status();
  auto from_claim = Resolve({ClaimEntry(c.body)}, Ctx());
  ASSERT_FALSE(from_claim.ok());
  std::string msg(from_claim.status().message());
  EXPECT_THAT(msg, HasSubstr("claim team-a/rdma request \"nic\" (from claim config): "));
  EXPECT_THAT(msg, HasSubstr(c.claim_error));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, PrivilegeTest,
    ::testing::Values(
        PrivilegeCase{"mac",
                      {{"interface", {{"hardwareAddr", "02:00:00:00:00:01"}}}},
                      "interface.hardwareAddr: may only be set in a DeviceClass config"},
        PrivilegeCase{"child",
                      {{"child", {{"type", "vlan"}, {"vlanId", 7}}}},
                      "child: may only be set in a DeviceClass config, not in a claim"},
        PrivilegeCase{"sriov_vlan",
                      {{"sriov", {{"vlan", 100}}}},
                      "sriov: may only be set in a DeviceClass config, not in a claim"},
        PrivilegeCase{"sysctl_forwarding",
                      {{"interface", {{"sysctls", {{"ipv6", {{"forwarding", 1}}}}}}}},
                      "interface.sysctls.ipv6.forwarding: may only be set in a DeviceClass "
                      "config, not in a claim"},
        PrivilegeCase{"sysctl_proxy_arp",
                      {{"interface", {{"sysctls", {{"ipv4", {{"proxy_arp", 1}}}}}}}},
                      "interface.sysctls.ipv4.proxy_arp: may only be set in a DeviceClass "
                      "config, not in a claim"},
        PrivilegeCase{"ethtool_vlan_filter",
                      {{"interface", {{"ethtool", {{"features", {{"rx-vlan-filter", false}}}}}}}},
                      "interface.ethtool.features.rx-vlan-filter: may only be set in a "
                      "DeviceClass config, not in a claim (the NIC would pass frames of every "
                      "VLAN"},
        PrivilegeCase{"ethtool_loopback",
                      {{"interface", {{"ethtool", {{"features", {{"loopback", true}}}}}}}},
                      "interface.ethtool.features.loopback: may only be set in a DeviceClass"},
        PrivilegeCase{"rules",
                      {{"rules", {{{"priority", 100}, {"from", "192.0.2.10"}, {"table", 100}}}}},
                      "rules: may only be set in a DeviceClass config, not in a claim (policy "
                      "routing is the admin's"},
        PrivilegeCase{"private_flags",
                      {{"interface", {{"ethtool", {{"privateFlags", {{"legacy-rx", true}}}}}}}},
                      "interface.ethtool.privateFlags: may only be set in a DeviceClass config, "
                      "not in a claim (a driver's private flags are its own knobs"},
        PrivilegeCase{"vrf",
                      {{"interface", {{"vrf", {{"name", "red"}, {"table", 100}}}}}},
                      "interface.vrf: may only be set in a DeviceClass config, not in a claim"},
        PrivilegeCase{"table",
                      {{"routes", {{{"destination", "0.0.0.0/0"}, {"table", 100}}}}},
                      "routes[0].table: table 100 may only be set in a DeviceClass config"},
        PrivilegeCase{"nad_namespace",
                      {{"cni", {{"networkAttachment", {{"namespace", "team-b"}, {"name", "x"}}}}}},
                      "cni.networkAttachment.namespace: a claim in namespace \"team-a\" may "
                      "only use NetworkAttachmentDefinitions of its own namespace, not "
                      "\"team-b\""}),
    [](const auto& info) { return info.param.label; });

TEST(ResolveTest, ClaimMayUseMainTableAndOwnNamespace) {
  auto routes =
      Resolve({ClaimEntry({{"routes", {{{"destination", "0.0.0.0/0"}, {"table", 254}}}}})}, Ctx());
  ASSERT_TRUE(routes.ok()) << routes.status();
  auto got = Resolve(
      {ClaimEntry({{"cni", {{"networkAttachment", {{"namespace", "team-a"}, {"name", "x"}}}}}})},
      Ctx());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->cni->network_attachment->namespace_, "team-a");
}

TEST(ResolveTest, ClaimOverridesClassFieldByField) {
  auto got = Resolve({ClaimEntry({{"interface", {{"name", "data0"}}}}),
                      ClassEntry({{"interface",
                                   {{"name", "net0"},
                                    {"mtu", 9000},
                                    {"hardwareAddr", "02:00:00:00:00:01"},
                                    {"addresses", {"192.0.2.10/24"}}}},
                                  {"routes", {{{"destination", "0.0.0.0/0"}}}}})},
                     Ctx());
  ASSERT_TRUE(got.ok()) << got.status();
  // Class entries apply first even when listed after the claim entries.
  EXPECT_EQ(got->interface.name, "data0");
  EXPECT_EQ(got->interface.mtu, 9000u);
  EXPECT_EQ(got->interface.hardware_addr, "02:00:00:00:00:01");
  EXPECT_EQ(got->interface.addresses, std::vector<std::string>{"192.0.2.10/24"});
  ASSERT_TRUE(got->routes.has_value());
  EXPECT_EQ(got->routes->size(), 1u);
}

TEST(ResolveTest, ExplicitEmptyAddressesWinOverClass) {
  auto got = Resolve(
      {ClassEntry({{"interface", {{"mtu", 9000}, {"addresses", {"192.0.2.10/24"}}}}}),
       ClaimEntry({{"interface", {{"addresses", json::array()}}}, {"routes", json::array()}})},
      Ctx());
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->interface.addresses.has_value());
  EXPECT_TRUE(got->interface.addresses->empty());
  EXPECT_EQ(got->interface.mtu, 9000u);  // untouched by the claim
  ASSERT_TRUE(got->routes.has_value());
  EXPECT_TRUE(got->routes->empty());
}

TEST(ResolveTest, ListsReplacedAsAWhole) {
  auto got =
      Resolve({ClassEntry({{"interface", {{"addresses", {"192.0.2.10/24", "2001:db8::1/64"}}}},
                           {"ipam", {{"type", "host-local"}, {"subnet", "10.0.0.0/24"}}}}),
               ClaimEntry({{"interface", {{"addresses", {"198.51.100.2/24"}}}},
                           {"ipam", {{"type", "static"}}}})},
              CniCtx());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->interface.addresses, std::vector<std::string>{"198.51.100.2/24"});
  EXPECT_EQ(*got->ipam, (json{{"type", "static"}}));  // no "subnet" inherited from the class
}

TEST(ResolveTest, OnlyEntriesForThisRequest) {
  auto got = Resolve({ClaimEntry({{"interface", {{"mtu", 1400}}}}, {"other"}),
                      ClaimEntry({{"interface", {{"mtu", 1500}}}}, {"nic/fast"}),
                      ClaimEntry({{"interface", {{"name", "x0"}}}}, {"nic"}),
                      // An entry for another request is not even decoded.
                      {Source::kClaim, {"other"}, json{{"garbage", 1}}}},
                     Ctx());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->interface.mtu, 1500u);
  EXPECT_EQ(got->interface.name, "x0");
}

TEST(ResolveTest, SubrequestEntriesMatchTheChosenSubrequestOnly) {
  Context ctx = Ctx();
  ctx.subrequest = "slow";
  auto got = Resolve({ClaimEntry({{"interface", {{"mtu", 9000}}}}, {"nic/fast"}),
                      ClaimEntry({{"interface", {{"mtu", 1500}}}}, {"nic/slow"}),
                      ClaimEntry({{"interface", {{"name", "n0"}}}}, {"nic"})},
                     ctx);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->interface.mtu, 1500u);
  EXPECT_EQ(got->interface.name, "n0");
  ctx.subrequest = "fast";
  got = Resolve({ClaimEntry({{"interface", {{"mtu", 9000}}}}, {"nic/fast"}),
                 ClaimEntry({{"interface", {{"mtu", 1500}}}}, {"nic/slow"})},
                ctx);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->interface.mtu, 9000u);
}

TEST(ResolveTest, LaterClaimEntryWins) {
  auto got = Resolve(
      {ClaimEntry({{"interface", {{"mtu", 1400}}}}), ClaimEntry({{"interface", {{"mtu", 1500}}}})},
      Ctx());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->interface.mtu, 1500u);
}

TEST(ResolveTest, NoEntriesIsEmptyConfig) {
  auto got = Resolve({}, Ctx());
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, NetworkConfig{});
}

TEST(ResolveTest, ErrorSaysClassOrClaim) {
  auto got = Resolve({ClassEntry({{"interface", {{"mtu", 10}}}})}, Ctx());
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(std::string(got.status().message()),
            "claim team-a/rdma request \"nic\" (from DeviceClass config): interface.mtu: 10 is "
            "out of range 68..65535");
}

// Two classes' sriov settings merge field by field; a CNI or Multus attach cannot carry them.
TEST(ResolveTest, SriovMergesFieldByFieldAndNeedsKndsAttach) {
  auto got = Resolve({ClassEntry({{"sriov", {{"vlan", 100}, {"spoofCheck", true}}}}),
                      ClassEntry({{"sriov", {{"maxTxRateMbps", 500}, {"spoofCheck", false}}}})},
                     Ctx());
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->sriov.has_value());
  EXPECT_EQ(got->sriov->vlan, 100u);
  EXPECT_EQ(got->sriov->spoof_check, false);
  EXPECT_EQ(got->sriov->max_tx_rate_mbps, 500u);
  auto multus = Resolve(
      {ClassEntry({{"sriov", {{"vlan", 100}}}}), ClaimEntry({{"attachedBy", "multus"}})}, Ctx());
  ASSERT_FALSE(multus.ok());
  EXPECT_THAT(std::string(multus.status().message()),
              HasSubstr("attachedBy: \"multus\" cannot be combined with sriov"));
  auto cni = Resolve({ClassEntry({{"sriov", {{"vlan", 100}}}}),
                      ClaimEntry({{"cni", {{"networkAttachment", {{"name", "net"}}}}}})},
                     Ctx());
  ASSERT_FALSE(cni.ok());
  EXPECT_THAT(std::string(cni.status().message()), HasSubstr("cni: cannot be combined with sriov"));
}

// The driver merges like the other sriov fields: one class binds to vfio-pci, another sets the
// VLAN; a claim cannot add an address to such a VF.
TEST(ResolveTest, SriovDriverMergesAndAClaimCannotGiveTheVfAnInterface) {
  auto got = Resolve(
      {ClassEntry({{"sriov", {{"driver", "vfio-pci"}}}}), ClassEntry({{"sriov", {{"vlan", 100}}}})},
      Ctx());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(UsesVfio(*got));
  EXPECT_EQ(ToJson(*got)["sriov"], json({{"driver", "vfio-pci"}, {"vlan", 100}}));
  auto claim = Resolve({ClassEntry({{"sriov", {{"driver", "vfio-pci"}}}}),
                        ClaimEntry({{"interface", {{"addresses", {"192.0.2.5/24"}}}}})},
                       Ctx());
  ASSERT_FALSE(claim.ok());
  EXPECT_THAT(std::string(claim.status().message()),
              HasSubstr("sriov.driver: \"vfio-pci\" cannot be combined with interface.addresses"));
  for (const auto& [field, value] : std::vector<std::pair<std::string, json>>{
           {"interface", {{"mtu", 9000}}},
           {"routes", {{{"destination", "10.0.0.0/8"}, {"gateway", "192.0.2.1"}}}},
           {"ipam", {{"type", "host-local"}, {"subnet", "192.0.2.0/24"}}}}) {
    auto bad = Resolve({ClassEntry({{"sriov", {{"driver", "vfio-pci"}}}, {field, value}})}, Ctx());
    ASSERT_FALSE(bad.ok()) << field;
    EXPECT_THAT(std::string(bad.status().message()),
                HasSubstr("sriov.driver: \"vfio-pci\" cannot be combined with " +
                          (field == "interface" ? std::string("interface.mtu") : field) +
                          " (a VF bound to vfio-pci has no kernel interface in the pod"));
  }
}

TEST(ResolveTest, ChildMergesFieldByFieldAndTheClaimAddsAddresses) {
  auto got = Resolve({ClassEntry({{"child", {{"type", "macvlan"}}}}),
                      ClassEntry({{"child", {{"mode", "private"}}}}),
                      ClaimEntry({{"interface", {{"addresses", {"192.0.2.5/24"}}}}})},
                     Ctx());
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->child.has_value());
  EXPECT_EQ(got->child->type, "macvlan");
  EXPECT_EQ(got->child->mode, "private");
  EXPECT_EQ(got->interface.addresses->at(0), "192.0.2.5/24");
  auto multus = Resolve(
      {ClassEntry({{"child", json::object()}}), ClaimEntry({{"attachedBy", "multus"}})}, Ctx());
  ASSERT_FALSE(multus.ok());
  EXPECT_THAT(std::string(multus.status().message()), HasSubstr("child"));
  auto cni = Resolve({ClassEntry({{"child", json::object()}}),
                      ClaimEntry({{"cni", {{"networkAttachment", {{"name", "x"}}}}}})},
                     Ctx());
  ASSERT_FALSE(cni.ok());
  EXPECT_THAT(std::string(cni.status().message()), HasSubstr("cni: cannot be combined with child"));
  auto sriov = Resolve({ClassEntry({{"child", json::object()}, {"sriov", {{"vlan", 3}}}})}, Ctx());
  ASSERT_FALSE(sriov.ok());
  EXPECT_THAT(std::string(sriov.status().message()),
              HasSubstr("child: cannot be combined with sriov"));
}

TEST(ResolveTest, SysctlsMergeKeyByKeyAndIpv6OffRefusesIpv6Settings) {
  auto got = Resolve(
      {ClassEntry(
           {{"interface", {{"sysctls", {{"ipv4", {{"rp_filter", 2}, {"arp_ignore", 1}}}}}}}}),
       ClaimEntry({{"interface", {{"sysctls", {{"ipv4", {{"arp_ignore", 2}}}}}}}})},
      Ctx());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->interface.sysctls,
            (std::map<std::string, int64_t>{{"ipv4.arp_ignore", 2}, {"ipv4.rp_filter", 2}}));
  for (const auto& [cfg, what] : std::vector<std::pair<json, std::string>>{
           {{{"interface", {{"addresses", {"192.0.2.10/24", "2001:db8::10/64"}}}}},
            "interface.addresses has 2001:db8::10/64"},
           {{{"routes", {{{"destination", "::/0"}}}}}, "routes has ::/0"},
           {{{"neighbors", {{{"ip", "2001:db8::1"}, {"mac", "02:00:00:00:00:01"}}}}},
            "neighbors has 2001:db8::1"}}) {
    auto r = Resolve({ClassEntry({{"interface", {{"sysctls", {{"ipv6", {{"disable_ipv6", 1}}}}}}}}),
                      ClaimEntry(cfg)},
                     Ctx());
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_EQ(std::string(r.status().message()),
              "claim team-a/rdma request \"nic\": interface.sysctls.ipv6.disable_ipv6: 1 turns "
              "IPv6 off on the interface, but " +
                  what);
  }
  auto v4 = Resolve({ClaimEntry({{"interface",
                                  {{"addresses", {"192.0.2.10/24"}},
                                   {"sysctls", {{"ipv6", {{"disable_ipv6", 1}}}}}}}})},
                    Ctx());
  EXPECT_TRUE(v4.ok()) << v4.status();
}

TEST(ResolveTest, ClaimCniAndIpamAreTheNodesToAllow) {
  const json conflist = {{"cniVersion", "1.0.0"},
                         {"name", "n"},
                         {"plugins", {{{"type", "macvlan"}, {"master", "eth1"}}}}};
  const json ipam = {{"type", "host-local"}, {"subnet", "192.0.2.0/24"}};
  // A DeviceClass may; a claim may not, unless the node config says so.
  EXPECT_TRUE(Resolve({ClassEntry({{"ipam", ipam}})}, Ctx()).ok());
  EXPECT_TRUE(Resolve({ClassEntry({{"cni", {{"config", conflist}}}})}, Ctx()).ok());
  auto r = Resolve({ClaimEntry({{"ipam", ipam}})}, Ctx());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("(from claim config): ipam: may only be set in a DeviceClass config"));
  r = Resolve({ClaimEntry({{"cni", {{"config", conflist}}}})}, Ctx());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("cni.config: may only be set in a DeviceClass config, not in a claim"));
  // A NAD of the claim's own namespace stays the claim's to use.
  EXPECT_TRUE(
      Resolve({ClaimEntry({{"cni", {{"networkAttachment", {{"name", "x"}}}}}})}, Ctx()).ok());
  // With the node's policy: the named types, and nothing that names the node's files.
  EXPECT_TRUE(Resolve({ClaimEntry({{"ipam", ipam}})}, CniCtx()).ok());
  EXPECT_TRUE(Resolve({ClaimEntry({{"cni", {{"config", conflist}}}})}, CniCtx()).ok());
  struct Escape {
    json entry;
    std::string error;
  };
  const std::vector<Escape> escapes = {
      {{{"ipam", {{"type", "whereabouts"}}}},
       "ipam.type: \"whereabouts\" is not an IPAM type a claim may use on this node"},
      {{{"ipam", {{"type", "host-local"}, {"dataDir", "/etc"}}}},
       "ipam.dataDir: names a place on the node"},
      {{{"ipam", {{"type", "host-local"}, {"dataDir", "../../etc"}}}},
       "ipam.dataDir: names a place on the node"},
      {{{"ipam", {{"type", "static"}, {"x", {{"y", {"/var/run/docker.sock"}}}}}}},
       "ipam.x.y[0]: \"/var/run/docker.sock\" is a path on the node"},
      {{{"cni",
         {{"config",
           {{"cniVersion", "1.0.0"}, {"name", "n"}, {"plugins", {{{"type", "bridge"}}}}}}}}},
       "cni.config.plugins[0].type: \"bridge\" is not a CNI plugin a claim may use"},
      {{{"cni",
         {{"config",
           {{"cniVersion", "1.0.0"},
            {"name", "n"},
            {"plugins", {{{"type", "macvlan"}, {"ipam", {{"type", "whereabouts"}}}}}}}}}}},
       "cni.config.plugins[0].ipam.type: \"whereabouts\" is not an IPAM type"},
      {{{"cni",
         {{"config",
           {{"cniVersion", "1.0.0"},
            {"name", "n"},
            {"plugins",
             {{{"type", "tuning"}, {"sysctl", {{"x", "/proc/sys/net/ipv4/ip_forward"}}}}}}}}}}},
       "cni.config.plugins[0].sysctl.x: \"/proc/sys/net/ipv4/ip_forward\" is a path on the node"},
  };
  for (const Escape& e : escapes) {
    auto got = Resolve({ClaimEntry(e.entry)}, CniCtx());
    ASSERT_FALSE(got.ok()) << e.entry.dump();
    EXPECT_THAT(std::string(got.status().message()), HasSubstr(e.error)) << e.entry.dump();
  }
}

TEST(ResolveTest, EthtoolFeaturesMergeFeatureByFeatureAndClaimsSetOffloads) {
  auto got = Resolve(
      {ClassEntry(
           {{"interface", {{"ethtool", {{"features", {{"rx-lro", false}, {"rx-gro", true}}}}}}}}),
       ClaimEntry(
           {{"interface", {{"ethtool", {{"features", {{"rx-gro", false}, {"tso", false}}}}}}}})},
      Ctx());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->interface.ethtool_features,
            (std::map<std::string, bool>{{"rx-gro", false}, {"rx-lro", false}, {"tso", false}}));
  EXPECT_EQ(ToJson(*got)["interface"]["ethtool"]["features"],
            (json{{"rx-gro", false}, {"rx-lro", false}, {"tso", false}}));
  // Channels merge count by count.
  got = Resolve({ClassEntry({{"interface", {{"ethtool", {{"channels", {{"combined", 8}}}}}}}}),
                 ClaimEntry({{"interface", {{"ethtool", {{"channels", {{"rx", 2}}}}}}}})},
                Ctx());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->interface.ethtool_channels,
            (std::map<std::string, uint32_t>{{"combined", 8}, {"rx", 2}}));
  auto cni = Resolve({ClassEntry({{"interface", {{"ethtool", {{"channels", {{"rx", 2}}}}}}}}),
                      ClaimEntry({{"cni", {{"networkAttachment", {{"name", "net"}}}}}})},
                     Ctx());
  ASSERT_FALSE(cni.ok());
  EXPECT_THAT(std::string(cni.status().message()),
              HasSubstr("cni: cannot be combined with interface.ethtool"));
  // Private flags (class only) merge flag by flag across a claim's classes.
  auto flags = Resolve(
      {ClassEntry({{"interface",
                    {{"ethtool", {{"privateFlags", {{"legacy-rx", true}, {"MFP", true}}}}}}}}),
       ClassEntry({{"interface", {{"ethtool", {{"privateFlags", {{"MFP", false}}}}}}}})},
      Ctx());
  ASSERT_TRUE(flags.ok()) << flags.status();
  EXPECT_EQ(flags->interface.ethtool_private_flags,
            (std::map<std::string, bool>{{"MFP", false}, {"legacy-rx", true}}));
}

TEST(ResolveTest, CniConflictsWithAddressingAfterMerge) {
  // The class gives addresses, the claim asks for a NAD: the merged result has two owners.
  auto got = Resolve({ClassEntry({{"interface", {{"addresses", {"192.0.2.10/24"}}}}}),
                      ClaimEntry({{"cni", {{"networkAttachment", {{"name", "net"}}}}}})},
                     Ctx());
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(std::string(got.status().message()),
            "claim team-a/rdma request \"nic\": cni: cannot be combined with interface.addresses "
            "(the CNI plugins assign addresses)");
  // ...which the claim can resolve by clearing the addresses explicitly.
  auto fixed = Resolve({ClassEntry({{"interface", {{"addresses", {"192.0.2.10/24"}}}}}),
                        ClaimEntry({{"interface", {{"addresses", json::array()}}},
                                    {"cni", {{"networkAttachment", {{"name", "net"}}}}}})},
                       Ctx());
  EXPECT_TRUE(fixed.ok()) << fixed.status();
  auto ipam = Resolve({ClaimEntry({{"ipam", {{"type", "static"}}},
                                   {"cni", {{"networkAttachment", {{"name", "net"}}}}}})},
                      CniCtx());
  ASSERT_FALSE(ipam.ok());
  EXPECT_THAT(std::string(ipam.status().message()), HasSubstr("cni: cannot be combined with ipam"));
  // Settings knd would not apply after the plugins ran are refused, not silently dropped.
  const json nad = {{"networkAttachment", {{"name", "net"}}}};
  for (const auto& [cfg, field] : std::vector<std::pair<json, std::string>>{
           {{{"interface", {{"mtu", 9000}}}}, "interface.mtu"},
           {{{"interface", {{"hardwareAddr", "02:00:00:00:00:01"}}}}, "interface.hardwareAddr"},
           {{{"routes", {{{"destination", "198.51.100.0/24"}}}}}, "routes"},
           {{{"neighbors", {{{"ip", "192.0.2.1"}, {"mac", "02:00:00:00:00:01"}}}}}, "neighbors"},
           {{{"interface", {{"sysctls", {{"ipv4", {{"rp_filter", 2}}}}}}}}, "interface.sysctls"},
           {{{"rules", {{{"priority", 10}, {"table", 100}}}}}, "rules"},
           {{{"interface", {{"gsoMaxSize", 185000}}}}, "interface.gsoMaxSize"},
           {{{"interface", {{"groIPv4MaxSize", 185000}}}}, "interface.groIPv4MaxSize"},
           {{{"interface", {{"ethtool", {{"features", {{"rx-gro", false}}}}}}}},
            "interface.ethtool"},
           {{{"interface", {{"vrf", {{"name", "red"}, {"table", 100}}}}}}, "interface.vrf"}}) {
    // From the class (which may set all of them), with a claim asking for a NAD.
    auto r = Resolve({ClassEntry(cfg), ClaimEntry({{"cni", nad}})}, Ctx());
    ASSERT_FALSE(r.ok()) << field;
    EXPECT_THAT(std::string(r.status().message()),
                HasSubstr("cni: cannot be combined with " + field));
  }
}

TEST(ResolveTest, VrfRoutesAreInItsTableAndItsNameIsNotTheInterfaces) {
  const json vrf = {{"vrf", {{"name", "red"}, {"table", 100}}}};
  // The claim adds routes without a table (they go to the VRF's) or with the VRF's table.
  auto ok = Resolve({ClassEntry({{"interface", vrf}}),
                     ClaimEntry({{"routes", {{{"destination", "198.51.100.0/24"}}}}})},
                    Ctx());
  ASSERT_TRUE(ok.ok()) << ok.status();
  ASSERT_TRUE(ok->interface.vrf.has_value());
  EXPECT_EQ(ok->interface.vrf->table, 100u);
  auto same = Resolve(
      {ClassEntry({{"interface", vrf}, {"routes", {{{"destination", "::/0"}, {"table", 100}}}}})},
      Ctx());
  EXPECT_TRUE(same.ok()) << same.status();
  auto other =
      Resolve({ClassEntry({{"interface", vrf}}),
               ClaimEntry({{"routes", {{{"destination", "198.51.100.0/24"}, {"table", 254}}}}})},
              Ctx());
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(std::string(other.status().message()),
            "claim team-a/rdma request \"nic\": routes[0].table: 254 is not the table 100 of "
            "interface.vrf (the routes of a VRF's interface are in its table; leave table out)");
  json named = vrf;
  named["name"] = "red";
  auto clash = Resolve({ClassEntry({{"interface", named}})}, Ctx());
  ASSERT_FALSE(clash.ok());
  EXPECT_THAT(std::string(clash.status().message()),
              HasSubstr("interface.vrf.name: \"red\" is also interface.name"));
  // A claim's class may replace another class's VRF as a whole.
  auto later = Resolve({ClassEntry({{"interface", vrf}}),
                        ClassEntry({{"interface", {{"vrf", {{"name", "blue"}, {"table", 7}}}}}})},
                       Ctx());
  ASSERT_TRUE(later.ok()) << later.status();
  EXPECT_EQ(later->interface.vrf, (VrfConfig{"blue", 7}));
}

TEST(ResolveTest, MultusAttachesSoNothingForTheInterfaceMayBeSet) {
  // A class for Multus's DRA path (allocate only), and a claim of it.
  auto ok = Resolve({ClassEntry({{"attachedBy", "multus"}}),
                     ClaimEntry({{"interface", {{"addresses", json::array()}}}})},
                    Ctx());
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_TRUE(AttachedByMultus(*ok));
  for (const auto& [cfg, field] : std::vector<std::pair<json, std::string>>{
           {{{"interface", {{"name", "net1"}}}}, "interface.name"},
           {{{"interface", {{"mtu", 9000}}}}, "interface.mtu"},
           {{{"interface", {{"addresses", {"192.0.2.10/24"}}}}}, "interface.addresses"},
           {{{"ipam", {{"type", "host-local"}}}}, "ipam"},
           {{{"routes", {{{"destination", "198.51.100.0/24"}}}}}, "routes"},
           {{{"neighbors", {{{"ip", "192.0.2.1"}, {"mac", "02:00:00:00:00:01"}}}}}, "neighbors"},
           {{{"interface", {{"sysctls", {{"ipv4", {{"rp_filter", 2}}}}}}}}, "interface.sysctls"},
           {{{"interface", {{"ethtool", {{"features", {{"rx-gro", false}}}}}}}},
            "interface.ethtool"},
           {{{"cni", {{"networkAttachment", {{"name", "net"}}}}}}, "cni"}}) {
    auto r = Resolve({ClassEntry({{"attachedBy", "multus"}}), ClaimEntry(cfg)}, CniCtx());
    ASSERT_FALSE(r.ok()) << field;
    EXPECT_EQ(std::string(r.status().message()),
              "claim team-a/rdma request \"nic\": attachedBy: \"multus\" cannot be combined "
              "with " +
                  field + " (Multus and the NAD's plugins configure the interface)");
  }
  // Class-only fields too, when the class itself says multus.
  auto rules = Resolve(
      {ClassEntry({{"attachedBy", "multus"}, {"rules", {{{"priority", 10}, {"table", 100}}}}})},
      Ctx());
  ASSERT_FALSE(rules.ok());
  EXPECT_THAT(std::string(rules.status().message()),
              HasSubstr("attachedBy: \"multus\" cannot be combined with rules"));
  auto vrf = Resolve({ClassEntry({{"attachedBy", "multus"},
                                  {"interface", {{"vrf", {{"name", "red"}, {"table", 100}}}}}})},
                     Ctx());
  ASSERT_FALSE(vrf.ok());
  EXPECT_THAT(std::string(vrf.status().message()),
              HasSubstr("attachedBy: \"multus\" cannot be combined with interface.vrf"));
  // The claim can take a class's device back for knd explicitly.
  auto knd = Resolve({ClassEntry({{"attachedBy", "multus"}}),
                      ClaimEntry({{"attachedBy", "knd"}, {"interface", {{"name", "net1"}}}})},
                     Ctx());
  ASSERT_TRUE(knd.ok()) << knd.status();
  EXPECT_FALSE(AttachedByMultus(*knd));
}

TEST(MergeTest, ExplicitZeroValuesAreKept) {
  NetworkConfig base;
  base.interface.mtu = 9000;
  base.interface.name = "net0";
  NetworkConfig over;
  over.interface.name = "";  // explicitly given (Validate refuses it, Merge must still keep it)
  NetworkConfig m = Merge(base, over);
  EXPECT_EQ(m.interface.name, "");
  EXPECT_EQ(m.interface.mtu, 9000u);
}

TEST(ToJsonTest, WritesApiVersionKindAndOnlyGivenFields) {
  NetworkConfig c;
  c.interface.mtu = 1500;
  c.routes = std::vector<Route>{};
  json j = ToJson(c);
  EXPECT_EQ(j, (json{{"apiVersion", "knd.k8s.cni.cncf.io/v1alpha1"},
                     {"kind", "NetworkConfig"},
                     {"interface", {{"mtu", 1500}}},
                     {"routes", json::array()}}));
  auto back = Decode(j, "");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, c);
}

TEST(InvalidIfNameTest, Rules) {
  EXPECT_EQ(InvalidIfName("eth0"), std::nullopt);
  EXPECT_EQ(InvalidIfName("net-rdma0"), std::nullopt);
  EXPECT_NE(InvalidIfName("lo"), std::nullopt);
  EXPECT_NE(InvalidIfName("."), std::nullopt);
  EXPECT_NE(InvalidIfName("a\tb"), std::nullopt);
  EXPECT_NE(InvalidIfName(std::string_view("a\0b", 3)), std::nullopt);
}

}  // namespace
}  // namespace knd::config
