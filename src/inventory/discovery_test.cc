// Unit tests for discovery over fake sysfs trees and hand-made netlink snapshots.
#include "inventory/discovery.h"

#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>

#include <map>

#include "gtest/gtest.h"
#include "inventory/slices.h"
#include "sysfs/fake_tree.h"

namespace knd::inventory {
namespace {

netlink::Link L(int ifindex, const std::string& name, const std::string& kind = "", int master = 0,
                int link = 0) {
  netlink::Link l;
  l.ifindex = ifindex;
  l.name = name;
  l.kind = kind;
  l.mtu = 1500;
  l.mac = "02:00:00:00:00:" + std::string(ifindex < 10 ? "0" : "") + std::to_string(ifindex);
  l.operstate = "up";
  l.flags = IFF_UP;
  l.master_ifindex = master;
  l.link_ifindex = link;
  return l;
}

netlink::Route DefaultVia(int oif, int family = AF_INET) {
  netlink::Route r;
  r.family = family;
  r.dst = family == AF_INET ? "0.0.0.0/0" : "::/0";
  r.oif = oif;
  r.table = RT_TABLE_MAIN;
  r.type = RTN_UNICAST;
  return r;
}

Device Dev(int ifindex, const std::string& ifname) {
  Device d;
  d.ifindex = ifindex;
  d.ifname = ifname;
  return d;
}

TEST(SysfsFactsTest, PciNic) {
  sysfs::FakeTree t;
  std::string dev =
      t.AddPciFunction("pci0000:3a", "0000:3b:00.0", "0x8086", "0x1592", "ice", 1, "0000:3a:00.0");
  t.AddNetdev("ens1f0", dev, 5, 25000);
  sysfs::Reader r(t.root());
  Device d = Dev(5, "ens1f0");
  ASSERT_TRUE(FillFromSysfs(r, d));
  EXPECT_EQ(d.pci_address, "0000:3b:00.0");
  EXPECT_EQ(d.pcie_root, "pci0000:3a");
  EXPECT_EQ(d.pci_vendor, "0x8086");
  EXPECT_EQ(d.pci_device, "0x1592");
  EXPECT_EQ(d.driver, "ice");
  ASSERT_TRUE(d.numa_node.has_value());
  EXPECT_EQ(*d.numa_node, 1);
  ASSERT_TRUE(d.speed_mbps.has_value());
  EXPECT_EQ(*d.speed_mbps, 25000);
  EXPECT_FALSE(d.is_virtual);
  EXPECT_FALSE(d.sriov);
  EXPECT_FALSE(d.is_sriov_vf);
  EXPECT_TRUE(d.rdma_device.empty());
  nlohmann::json j = DeviceToJson(d, "knd.k8s.cni.cncf.io");
  EXPECT_EQ(j["attributes"]["resource.kubernetes.io/pcieRoot"]["string"], "pci0000:3a");
  EXPECT_EQ(j["attributes"]["resource.kubernetes.io/pciBusID"]["string"], "0000:3b:00.0");
  EXPECT_EQ(j["attributes"]["knd.k8s.cni.cncf.io/numaNode"]["int"], 1);
  EXPECT_EQ(j["attributes"]["knd.k8s.cni.cncf.io/speedMbps"]["int"], 25000);
}

TEST(SysfsFactsTest, NoNumaNoSpeedAndIfindexMismatch) {
  sysfs::FakeTree t;
  std::string dev = t.AddPciFunction("pci0000:00", "0000:00:03.0", "0x1af4", "0x1041", "", -1);
  // virtio-net: the netdev's device is virtio0 below the PCI function.
  t.MakeDir(dev + "/virtio0");
  t.MakeDir("bus/virtio/drivers/virtio_net");
  t.Link(dev + "/virtio0/driver", "../../../bus/virtio/drivers/virtio_net");
  t.AddNetdev("eth0", dev + "/virtio0", 2, -1);
  t.Write("devices/pci0000:00/0000:00:03.0/virtio0/net/eth0/speed", "-1");
  sysfs::Reader r(t.root());
  Device d = Dev(2, "eth0");
  ASSERT_TRUE(FillFromSysfs(r, d));
  EXPECT_EQ(d.pci_address, "0000:00:03.0");
  EXPECT_EQ(d.driver, "virtio_net");
  EXPECT_FALSE(d.numa_node.has_value());   // -1 = no NUMA affinity
  EXPECT_FALSE(d.speed_mbps.has_value());  // -1 = unknown
  // Same name, other ifindex: the reader shows another namespace; nothing is taken from it.
  Device other = Dev(7, "eth0");
  EXPECT_FALSE(FillFromSysfs(r, other));
  EXPECT_TRUE(other.pci_address.empty());
  Device missing = Dev(9, "nosuch");
  EXPECT_FALSE(FillFromSysfs(r, missing));
}

TEST(SysfsFactsTest, SriovPfAndVf) {
  sysfs::FakeTree t;
  std::string pf = t.AddPciFunction("pci0000:00", "0000:03:00.0", "0x15b3", "0x1017", "mlx5_core",
                                    0, "0000:00:01.0");
  t.Write(pf + "/sriov_totalvfs", "16");
  t.Write(pf + "/sriov_numvfs", "4");
  t.AddNetdev("ens1f0", pf, 4);
  std::string vf = t.AddPciFunction("pci0000:00", "0000:03:00.2", "0x15b3", "0x1018", "mlx5_core",
                                    0, "0000:00:01.0");
  t.Link(vf + "/physfn", "../0000:03:00.0");
  t.AddNetdev("ens1f0v0", vf, 10);
  sysfs::Reader r(t.root());
  Device p = Dev(4, "ens1f0");
  ASSERT_TRUE(FillFromSysfs(r, p));
  EXPECT_TRUE(p.sriov);
  EXPECT_EQ(p.sriov_total_vfs, 16);
  EXPECT_EQ(p.sriov_num_vfs, 4);
  EXPECT_FALSE(p.is_sriov_vf);
  Device v = Dev(10, "ens1f0v0");
  ASSERT_TRUE(FillFromSysfs(r, v));
  EXPECT_TRUE(v.is_sriov_vf);
  EXPECT_EQ(v.pf_name, "ens1f0");
  EXPECT_FALSE(v.sriov);
  auto a = DeviceToJson(v, "knd.k8s.cni.cncf.io")["attributes"];
  EXPECT_EQ(a["knd.k8s.cni.cncf.io/isSriovVf"]["bool"], true);
  EXPECT_EQ(a["knd.k8s.cni.cncf.io/pfName"]["string"], "ens1f0");
  auto pa = DeviceToJson(p, "knd.k8s.cni.cncf.io")["attributes"];
  EXPECT_EQ(pa["knd.k8s.cni.cncf.io/sriov"]["bool"], true);
  EXPECT_EQ(pa["knd.k8s.cni.cncf.io/sriovVfs"]["int"], 4);
}

TEST(SysfsFactsTest, RdmaBothWays) {
  sysfs::FakeTree t;
  std::string a =
      t.AddPciFunction("pci0000:00", "0000:03:00.0", "0x15b3", "0x1017", "mlx5_core", 0);
  t.AddNetdev("ens1f0", a, 4);
  t.AddRdma("mlx5_0", a);  // device/infiniband/mlx5_0
  std::string b =
      t.AddPciFunction("pci0000:80", "0000:81:00.0", "0x15b3", "0x1017", "mlx5_core", 1);
  t.AddNetdev("ens2f0", b, 5);
  // Only /sys/class/infiniband/<dev>/device points at the PCI function.
  t.MakeDir("devices/virtual/infiniband/mlx5_1");
  t.Link("devices/virtual/infiniband/mlx5_1/device", "../../../pci0000:80/0000:81:00.0");
  t.Link("class/infiniband/mlx5_1", "../../devices/virtual/infiniband/mlx5_1");
  sysfs::Reader r(t.root());
  Device d1 = Dev(4, "ens1f0"), d2 = Dev(5, "ens2f0");
  ASSERT_TRUE(FillFromSysfs(r, d1));
  ASSERT_TRUE(FillFromSysfs(r, d2));
  EXPECT_EQ(d1.rdma_device, "mlx5_0");
  EXPECT_EQ(d2.rdma_device, "mlx5_1");
  auto attrs = DeviceToJson(d1, "knd.k8s.cni.cncf.io")["attributes"];
  EXPECT_EQ(attrs["knd.k8s.cni.cncf.io/rdma"]["bool"], true);
  EXPECT_EQ(attrs["knd.k8s.cni.cncf.io/rdmaDevice"]["string"], "mlx5_0");
}

TEST(UplinkTest, DefaultRouteAndWhatItIsBuiltOn) {
  NetlinkSnapshot s;
  s.links = {L(1, "lo"),
             L(2, "eth0"),
             L(3, "eth1", "", 5),
             L(4, "eth2", "", 6),
             L(5, "br0", "bridge"),
             L(6, "bond0", "bond", 5),
             L(7, "vl", "vlan", 0, 8),
             L(8, "eth3"),
             L(9, "veth0", "veth", 0, 10),
             L(10, "veth1", "veth", 0, 9),
             L(11, "eth4")};
  s.routes = {DefaultVia(5), DefaultVia(7, AF_INET6), DefaultVia(9)};
  s.routes.back().table = 100;  // not main: not an uplink
  std::set<int> up = FindUplinks(s);
  EXPECT_EQ(up, (std::set<int>{3, 4, 5, 6, 7, 8}));
}

TEST(BuildDevicesTest, FiltersAndNames) {
  sysfs::FakeTree t;
  std::string dev =
      t.AddPciFunction("pci0000:00", "0000:03:00.0", "0x15b3", "0x1017", "mlx5_core", 0);
  t.AddNetdev("ens1f0", dev, 3);
  t.AddNetdev("veth0", "", 4);
  t.AddNetdev("docker0", "", 5);
  t.AddNetdev("eth0", "", 2);
  t.AddNetdev("Weird_If", "", 6);
  sysfs::Reader r(t.root());
  NetlinkSnapshot s;
  s.links = {L(1, "lo"),
             L(2, "eth0"),
             L(3, "ens1f0"),
             L(4, "veth0", "veth"),
             L(5, "docker0", "bridge"),
             L(6, "Weird_If", "veth")};
  s.links[0].flags |= IFF_LOOPBACK;
  s.routes = {DefaultVia(2)};
  netlink::Address a4{4, AF_INET, "192.0.2.1/24", RT_SCOPE_UNIVERSE, 0};
  netlink::Address a6{4, AF_INET6, "fe80::1/64", RT_SCOPE_LINK, 0};
  s.addresses = {a4, a6};

  auto cfg = config::ParseNodeConfig(R"(
exclude: [{ifName: "docker*"}]
resourceNames: [{selector: {driver: mlx5_core}, resourceName: "example.com/mlx"}]
)");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  std::vector<Device> devs = BuildDevices(s, &r, *cfg);
  std::vector<std::string> names;
  for (const auto& d : devs) names.push_back(d.name);
  ASSERT_EQ(devs.size(), 3u) << ::testing::PrintToString(names);
  // lo (loopback), eth0 (uplink) and docker0 (excluded) are not there.
  const Device& weird = devs[0];
  EXPECT_EQ(weird.ifname, "Weird_If");
  EXPECT_EQ(weird.name.rfind("net-", 0), 0u);
  EXPECT_TRUE(weird.is_virtual);
  const Device& nic = devs[1];
  EXPECT_EQ(nic.name, "pci-0000-03-00-0");
  EXPECT_EQ(nic.kind, "device");
  EXPECT_EQ(nic.resource_name, "example.com/mlx");
  EXPECT_FALSE(nic.is_virtual);
  const Device& veth = devs[2];
  EXPECT_EQ(veth.name, "veth0");
  EXPECT_TRUE(veth.is_virtual);
  EXPECT_EQ(veth.ipv4, (std::vector<std::string>{"192.0.2.1/24"}));
  EXPECT_TRUE(veth.ipv6.empty());  // link-local addresses are not published

  cfg->include_uplinks = true;
  devs = BuildDevices(s, &r, *cfg);
  EXPECT_EQ(devs.size(), 4u);  // eth0 now included

  auto only = config::ParseNodeConfig("include: [{virtual: false}]");
  ASSERT_TRUE(only.ok());
  devs = BuildDevices(s, &r, *only);
  ASSERT_EQ(devs.size(), 1u);
  EXPECT_EQ(devs[0].ifname, "ens1f0");
}

TEST(BuildDevicesTest, SharedParentsAreOfferedOnlyForSharing) {
  sysfs::FakeTree t;
  for (int i = 0; i < 4; ++i) t.AddNetdev("eth" + std::to_string(i), "", i + 2);
  sysfs::Reader r(t.root());
  NetlinkSnapshot s;
  s.links = {L(2, "eth0"), L(3, "eth1", "veth"), L(4, "eth2", "veth"), L(5, "eth3", "veth")};
  s.routes = {DefaultVia(2)};
  auto cfg = config::ParseNodeConfig(R"(
include: [{ifName: eth3}]
exclude: [{ifName: eth2}]
shared:
  - {selector: {ifName: "eth[012]"}, maxChildren: 8, bandwidth: 10G, bandwidthPerChild: 1G}
)");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  std::vector<Device> devs = BuildDevices(s, &r, *cfg);
  std::map<std::string, const Device*> by;
  for (const auto& d : devs) by[d.ifname] = &d;
  // eth0 is the uplink and eth1 is not in include, but both are shared parents (they stay on
  // the host); eth2 is excluded, which wins; eth3 is an ordinary, exclusive device.
  ASSERT_EQ(by.size(), 3u);
  ASSERT_TRUE(by.count("eth0") && by.count("eth1") && by.count("eth3"));
  ASSERT_TRUE(by["eth0"]->shared.has_value());
  EXPECT_EQ(by["eth0"]->shared->max_children, 8);
  EXPECT_EQ(by["eth0"]->shared->bandwidth, "10G");
  EXPECT_EQ(by["eth0"]->shared->bandwidth_per_child, "1G");
  EXPECT_TRUE(by["eth1"]->shared.has_value());
  EXPECT_FALSE(by["eth3"]->shared.has_value());
  // Without shared rules the uplink stays out as before.
  cfg->shared.clear();
  devs = BuildDevices(s, &r, *cfg);
  ASSERT_EQ(devs.size(), 1u);
  EXPECT_EQ(devs[0].ifname, "eth3");
}

// A link that the dump shows but whose sysfs entry is gone (moved into a pod netns) or is
// another netdev now (renamed, its name reused) is left out, never published with half its
// facts: a NIC without its PCI address would be named after its ifName, a device that does
// not exist, and a veth that left would lose its speed.
TEST(BuildDevicesTest, ALinkWhoseSysfsEntryDisagreesWithTheDumpIsLeftOutAsTorn) {
  sysfs::FakeTree t;
  // ens1f0's PCI function, whose netdev is in a pod netns now.
  t.AddPciFunction("pci0000:00", "0000:03:00.0", "0x8086", "0x10c9", "igb", 0);
  t.AddNetdev("eth1", "", 3, 10000);
  t.AddNetdev("eth2", "", 9);  // eth2 is ifindex 9 now: the dumped ifindex 4 was renamed
  sysfs::Reader r(t.root());
  NetlinkSnapshot s;
  s.links = {L(3, "eth1", "veth"), L(4, "eth2", "veth"), L(5, "ens1f0")};  // ens1f0: moved
  auto cfg = config::ParseNodeConfig("include: [{ifName: \"*\"}]");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  std::vector<std::string> torn;
  std::vector<Device> devs = BuildDevices(s, &r, *cfg, &torn);
  ASSERT_EQ(devs.size(), 1u);
  EXPECT_EQ(devs[0].name, "eth1");
  EXPECT_EQ(devs[0].speed_mbps, 10000);
  EXPECT_EQ(torn, (std::vector<std::string>{"eth2", "ens1f0"}));
}

class BuildConsistentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    t_.AddNetdev("eth1", "", 3, 10000);
    cfg_ = *config::ParseNodeConfig("include: [{ifName: \"*\"}]");
  }
  sysfs::FakeTree t_;
  config::NodeConfig cfg_;
};

TEST_F(BuildConsistentTest, ScansAgainUntilNothingIsTorn) {
  sysfs::Reader r(t_.root());
  int takes = 0;
  auto take = [&]() -> absl::StatusOr<NetlinkSnapshot> {
    NetlinkSnapshot s;
    s.links = {L(3, "eth1", "veth")};
    // The first dump still shows eth2, which left the host before its sysfs entry was read.
    if (++takes == 1) s.links.push_back(L(4, "eth2", "veth"));
    return s;
  };
  absl::StatusOr<std::vector<Device>> devs = BuildConsistent(take, &r, cfg_);
  ASSERT_TRUE(devs.ok()) << devs.status();
  EXPECT_EQ(takes, 2);
  ASSERT_EQ(devs->size(), 1u);
  EXPECT_EQ((*devs)[0].name, "eth1");
}

TEST_F(BuildConsistentTest, WhatStaysTornIsLeftOutAfterTheLastAttempt) {
  sysfs::Reader r(t_.root());
  int takes = 0;
  auto take = [&]() -> absl::StatusOr<NetlinkSnapshot> {
    ++takes;
    NetlinkSnapshot s;
    s.links = {L(3, "eth1", "veth"), L(4, "eth2", "veth")};
    return s;
  };
  absl::StatusOr<std::vector<Device>> devs = BuildConsistent(take, &r, cfg_);
  ASSERT_TRUE(devs.ok()) << devs.status();
  EXPECT_EQ(takes, kScanAttempts);
  ASSERT_EQ(devs->size(), 1u);
  EXPECT_EQ((*devs)[0].name, "eth1");
}

TEST_F(BuildConsistentTest, AnInterruptedDumpIsTakenAgain) {
  sysfs::Reader r(t_.root());
  int takes = 0;
  auto take = [&]() -> absl::StatusOr<NetlinkSnapshot> {
    if (++takes == 1) return absl::AbortedError("dump links: Dump inconsistency detected");
    NetlinkSnapshot s;
    s.links = {L(3, "eth1", "veth")};
    return s;
  };
  absl::StatusOr<std::vector<Device>> devs = BuildConsistent(take, &r, cfg_);
  ASSERT_TRUE(devs.ok()) << devs.status();
  EXPECT_EQ(takes, 2);
  EXPECT_EQ(devs->size(), 1u);
  // Interrupted every time: the last one is the scan's error.
  takes = 0;
  auto always = [&]() -> absl::StatusOr<NetlinkSnapshot> {
    ++takes;
    return absl::AbortedError("dump links: Dump inconsistency detected");
  };
  EXPECT_TRUE(absl::IsAborted(BuildConsistent(always, &r, cfg_).status()));
  EXPECT_EQ(takes, kScanAttempts);
}

TEST_F(BuildConsistentTest, AFailedDumpIsTheScansError) {
  sysfs::Reader r(t_.root());
  auto take = []() -> absl::StatusOr<NetlinkSnapshot> {
    return absl::UnavailableError("dump interrupted");
  };
  absl::StatusOr<std::vector<Device>> devs = BuildConsistent(take, &r, cfg_);
  EXPECT_EQ(devs.status(), absl::UnavailableError("dump interrupted"));
}

}  // namespace
}  // namespace knd::inventory
