// Unit tests for the inventory node config: decoding (strict), matching, resourceName rules.
#include "config/node_config.h"

#include "gtest/gtest.h"

namespace knd::config {
namespace {

SelectorFacts Facts(const std::string& ifname, const std::string& driver = "",
                    const std::string& vendor = "", bool is_virtual = false) {
  SelectorFacts f;
  f.if_name = ifname;
  f.driver = driver;
  f.pci_vendor = vendor;
  f.is_virtual = is_virtual;
  f.type = is_virtual ? "veth" : "device";
  return f;
}

TEST(NodeConfigTest, DecodesTheDocumentedExample) {
  auto cfg = ParseNodeConfig(R"(
driverName: knd.k8s.cni.cncf.io
include: [{ifName: "eth*"}, {driver: mlx5_core}, {pciVendor: "0x15B3"}, {virtual: false}]
exclude: [{ifName: "docker*"}]
resourceNames: [{selector: {ifName: "ens1f*"}, resourceName: "example.com/sriov_net_a"}]
includeUplinks: false
)");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->driver_name, "knd.k8s.cni.cncf.io");
  ASSERT_EQ(cfg->include.size(), 4u);
  EXPECT_EQ(*cfg->include[2].pci_vendor, "0x15b3");
  EXPECT_EQ(*cfg->include[3].is_virtual, false);
  ASSERT_EQ(cfg->resource_names.size(), 1u);
  EXPECT_FALSE(cfg->include_uplinks);
}

TEST(NodeConfigTest, EmptyIsDefaults) {
  auto cfg = ParseNodeConfig("");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_TRUE(cfg->include.empty());
  EXPECT_TRUE(Selected(*cfg, Facts("anything")));
}

TEST(NodeConfigTest, IncludeExclude) {
  auto cfg = ParseNodeConfig(R"(
include: [{ifName: "eth*"}, {driver: mlx5_core}, {pciVendor: "8086"}]
exclude: [{ifName: "eth9"}, {driver: mlx5_core, virtual: true}]
)");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_TRUE(Selected(*cfg, Facts("eth0")));
  EXPECT_FALSE(Selected(*cfg, Facts("eth9")));   // excluded
  EXPECT_FALSE(Selected(*cfg, Facts("veth1")));  // no include matches
  EXPECT_TRUE(Selected(*cfg, Facts("ens1", "mlx5_core")));
  EXPECT_FALSE(Selected(*cfg, Facts("ens1", "mlx5_core", "", true)));  // AND within selector
  EXPECT_TRUE(Selected(*cfg, Facts("enp1", "ixgbe", "0x8086")));
  EXPECT_FALSE(Selected(*cfg, Facts("enp1", "ixgbe", "")));  // vendor unknown: no match
}

TEST(NodeConfigTest, ResourceNameFirstMatchWins) {
  auto cfg = ParseNodeConfig(R"(
resourceNames:
- {selector: {ifName: "ens1f*"}, resourceName: "example.com/sriov_net_a"}
- {selector: {driver: "*"}, resourceName: "example.com/other"}
)");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(ResourceNameFor(*cfg, Facts("ens1f0", "mlx5_core")), "example.com/sriov_net_a");
  EXPECT_EQ(ResourceNameFor(*cfg, Facts("eth0", "ixgbe")), "example.com/other");
  EXPECT_EQ(ResourceNameFor(*cfg, Facts("eth0", "")), "example.com/other");  // "*" matches ""
  EXPECT_EQ(ResourceNameFor(NodeConfig{}, Facts("eth0")), "");
}

void ExpectError(const std::string& yaml, const std::string& needle) {
  auto cfg = ParseNodeConfig(yaml, "node.yaml");
  ASSERT_FALSE(cfg.ok()) << yaml;
  EXPECT_EQ(cfg.status().code(), absl::StatusCode::kInvalidArgument);
  std::string msg(cfg.status().message());
  EXPECT_NE(msg.find(needle), std::string::npos) << msg;
  EXPECT_NE(msg.find("node.yaml"), std::string::npos) << msg;
}

TEST(NodeConfigTest, StrictErrorsNameTheField) {
  ExpectError("includes: []", "includes: unknown field");
  ExpectError("include: [{ifname: eth0}]", "include[0].ifname: unknown field");
  ExpectError("include: [{}]", "include[0]: empty selector");
  ExpectError("include: {ifName: eth0}", "include: must be a list");
  ExpectError("include: [{virtual: maybe}]", "include[0].virtual: must be true or false");
  ExpectError("include: [{ifName: [a]}]", "include[0].ifName: must be a string");
  ExpectError("exclude: [{pciVendor: intel}]", "exclude[0].pciVendor: not a PCI id");
  ExpectError("includeUplinks: 3", "includeUplinks: must be true or false");
  ExpectError("driverName: Bad_Name", "driverName: not a lower-case DNS subdomain");
  ExpectError("resourceNames: [{resourceName: x}]", "resourceNames[0].selector: required");
  ExpectError("resourceNames: [{selector: {ifName: a}}]",
              "resourceNames[0].resourceName: required");
  ExpectError("resourceNames: [{selector: {ifName: a}, resourceName: x, extra: 1}]",
              "resourceNames[0].extra: unknown field");
  ExpectError(
      "resourceNames: [{selector: {ifName: a}, resourceName: " + std::string(65, 'a') + "}]",
      "longer than 64 bytes");
  ExpectError("include: [", "not valid YAML");
  ExpectError("- a\n- b", "(top level): must be a mapping");
}

TEST(NodeConfigTest, SharedRules) {
  auto cfg = ParseNodeConfig(R"(
shared:
  - {selector: {ifName: "ens2f*"}, maxChildren: 16, bandwidth: 25G, bandwidthPerChild: 1G}
  - {selector: {driver: virtio_net}, maxChildren: 4}
exclude: [{ifName: ens2f9}]
)");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  ASSERT_EQ(cfg->shared.size(), 2u);
  EXPECT_EQ(cfg->shared[0].max_children, 16);
  EXPECT_EQ(cfg->shared[0].bandwidth, "25G");
  EXPECT_EQ(cfg->shared[0].bandwidth_per_child, "1G");
  EXPECT_EQ(cfg->shared[1].max_children, 4);
  EXPECT_EQ(cfg->shared[1].bandwidth, "");
  // The first matching rule counts; exclude is the caller's to check (and wins there).
  const SharedRule* r = SharedRuleFor(*cfg, Facts("ens2f0", "virtio_net"));
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->max_children, 16);
  EXPECT_EQ(SharedRuleFor(*cfg, Facts("eth0", "virtio_net"))->max_children, 4);
  EXPECT_EQ(SharedRuleFor(*cfg, Facts("eth0", "e1000")), nullptr);
  EXPECT_TRUE(Excluded(*cfg, Facts("ens2f9")));
  EXPECT_FALSE(Excluded(*cfg, Facts("ens2f0")));
  // A bandwidth without a per-child share: a child that asks for none consumes none.
  auto bw = ParseNodeConfig("shared: [{selector: {ifName: a}, maxChildren: 2, bandwidth: 10G}]");
  ASSERT_TRUE(bw.ok()) << bw.status();
  EXPECT_EQ(bw->shared[0].bandwidth_per_child, "0");
}

TEST(NodeConfigTest, SharedRuleErrorsNameTheField) {
  ExpectError("shared: {selector: {ifName: a}}", "shared: must be a list");
  ExpectError("shared: [{maxChildren: 2}]", "shared[0].selector: required");
  ExpectError("shared: [{selector: {ifName: a}}]", "shared[0].maxChildren: required");
  ExpectError("shared: [{selector: {ifName: a}, maxChildren: 0}]",
              "shared[0].maxChildren: must be 1..4096, not 0");
  ExpectError("shared: [{selector: {ifName: a}, maxChildren: 5000}]",
              "shared[0].maxChildren: must be 1..4096");
  ExpectError("shared: [{selector: {ifName: a}, maxChildren: two}]",
              "shared[0].maxChildren: must be an integer");
  ExpectError("shared: [{selector: {ifName: a}, maxChildren: \"2\"}]",
              "shared[0].maxChildren: must be an integer");
  ExpectError("shared: [{selector: {ifName: a}, maxChildren: 2, bandwidth: 25Gi}]",
              "shared[0].bandwidth: not a bit rate");
  ExpectError("shared: [{selector: {ifName: a}, maxChildren: 2, bandwidthPerChild: 1G}]",
              "shared[0].bandwidthPerChild: needs bandwidth");
  ExpectError(
      "shared: [{selector: {ifName: a}, maxChildren: 2, bandwidth: 1G, "
      "bandwidthPerChild: 2G}]",
      "shared[0].bandwidthPerChild: more than the parent's bandwidth 1G");
  ExpectError("shared: [{selector: {ifName: a}, maxChildren: 2, children: 3}]",
              "shared[0].children: unknown field");
  ExpectError("shared: [{selector: {}, maxChildren: 2}]", "shared[0].selector: empty selector");
}

TEST(NodeConfigTest, ClaimCni) {
  auto cfg = ParseNodeConfig("claimCni: {plugins: [macvlan, tuning], ipam: [host-local]}");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  ASSERT_TRUE(cfg->claim_cni.has_value());
  EXPECT_EQ(cfg->claim_cni->plugins, (std::vector<std::string>{"macvlan", "tuning"}));
  EXPECT_EQ(cfg->claim_cni->ipam, (std::vector<std::string>{"host-local"}));
  EXPECT_FALSE(ParseNodeConfig("")->claim_cni.has_value()) << "absent: claims run nothing";
  ExpectError("claimCni: [macvlan]", "claimCni: must be a mapping");
  ExpectError("claimCni: {plugin: [x]}", "claimCni.plugin: unknown field");
  ExpectError("claimCni: {plugins: macvlan}", "claimCni.plugins: must be a list");
  ExpectError("claimCni: {ipam: [../bin/sh]}", "claimCni.ipam[0]: not a plugin type");
  ExpectError("claimCni: {plugins: [\"/usr/bin/x\"]}", "claimCni.plugins[0]: not a plugin type");
}

TEST(NodeConfigTest, BitRates) {
  EXPECT_EQ(ParseBitRate("25G"), 25000000000LL);
  EXPECT_EQ(ParseBitRate("100M"), 100000000LL);
  EXPECT_EQ(ParseBitRate("1k"), 1000);
  EXPECT_EQ(ParseBitRate("2T"), 2000000000000LL);
  EXPECT_EQ(ParseBitRate("1000000"), 1000000);
  EXPECT_EQ(ParseBitRate("0"), 0);
  for (const char* bad : {"", "G", "1.5G", "-1G", "1Gi", "1g", "99999999999T", "1 G"}) {
    EXPECT_EQ(ParseBitRate(bad), std::nullopt) << bad;
  }
}

TEST(NodeConfigTest, LoadMissingFileFails) {
  EXPECT_EQ(LoadNodeConfig("/nonexistent/knd.yaml").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace knd::config
