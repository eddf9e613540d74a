#include "inventory/inventory.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

namespace knd::inventory {
namespace {

TEST(DeviceCacheJson, RoundTripsEveryField) {
  Device d;
  d.name = "pci-0000-03-00-1";
  d.ifname = "ens1f1";
  d.ifindex = 7;
  d.mac = "02:00:00:00:00:01";
  d.perm_mac = "02:00:00:00:00:02";
  d.mtu = 9000;
  d.kind = "device";
  d.operstate = "up";
  d.speed_mbps = 25000;
  d.driver = "mlx5_core";
  d.pci_address = "0000:03:00.1";
  d.pci_vendor = "0x15b3";
  d.pci_device = "0x1017";
  d.numa_node = 1;
  d.pcie_root = "pci0000:00";
  d.sriov = true;
  d.sriov_total_vfs = 8;
  d.sriov_num_vfs = 2;
  d.rdma_device = "mlx5_1";
  d.ipv4 = {"192.0.2.1/24"};
  d.ipv6 = {"2001:db8::1/64"};
  d.resource_name = "example.com/rdma";
  auto back = DeviceFromCacheJson(DeviceToCacheJson(d));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(DeviceToCacheJson(*back), DeviceToCacheJson(d));
  EXPECT_EQ(back->speed_mbps, 25000);
  EXPECT_EQ(back->numa_node, 1);
  EXPECT_FALSE(DeviceFromCacheJson(nlohmann::json::object()).ok());
}

// The scan part needs a real netns; the sticky behaviour is covered end to end (a device in a
// pod stays in the slice, tests/e2e). Here: the cache of a previous run is loaded, so a
// restarted driver can still resolve a device that is inside a pod.
TEST(Inventory, LoadsCacheOfPreviousRun) {
  char tmpl[] = "/tmp/knd-inv-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  Device d;
  d.name = "eth1";
  d.ifname = "eth1";
  d.mtu = 1500;
  nlohmann::json cache = nlohmann::json::array({DeviceToCacheJson(d)});
  {
    FILE* f = std::fopen((dir + "/devices.json").c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs(cache.dump().c_str(), f);
    std::fclose(f);
  }
  Inventory inv(Scanner(ScanOptions{}), dir + "/devices.json", nullptr);
  auto found = inv.Find("eth1");
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->mtu, 1500u);
  EXPECT_FALSE(inv.Find("eth2").has_value());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace knd::inventory
