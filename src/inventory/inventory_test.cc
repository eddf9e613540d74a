#include "inventory/inventory.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>

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
  InventoryOptions opts;
  opts.cache_path = dir + "/devices.json";
  Inventory inv([] { return absl::StatusOr<std::vector<Device>>(std::vector<Device>{}); },
                std::move(opts));
  auto found = inv.Find("eth1");
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->mtu, 1500u);
  EXPECT_FALSE(inv.Find("eth2").has_value());
  std::filesystem::remove_all(dir);
}

// Rescan with a scripted scan, a scripted "where" and a hand-moved clock.
class InventoryRescanTest : public ::testing::Test {
 protected:
  using Clock = Inventory::Clock;
  static Device Dev(const std::string& name) {
    Device d;
    d.name = name;
    d.ifname = name;
    d.mac = "02:00:00:00:00:0" + name.substr(name.size() - 1);
    return d;
  }
  std::unique_ptr<Inventory> Make(std::chrono::milliseconds grace = std::chrono::seconds(10)) {
    InventoryOptions o;
    o.where = [this](const std::string& n) {
      auto it = where_.find(n);
      return it == where_.end() ? Whereabouts::kUnclaimed : it->second;
    };
    o.lost_grace = grace;
    o.on_lost = [this](const Device& d, const std::string& why) {
      lost_.push_back(d.name);
      last_why_ = why;
    };
    o.now = [this] { return now_; };
    return std::make_unique<Inventory>(
        [this] { return absl::StatusOr<std::vector<Device>>(scan_); }, std::move(o));
  }
  static std::vector<std::string> Names(const std::vector<Device>& ds) {
    std::vector<std::string> out;
    for (const auto& d : ds) out.push_back(d.name);
    return out;
  }

  std::vector<Device> scan_;
  std::map<std::string, Whereabouts> where_;
  std::vector<std::string> lost_;
  std::string last_why_;
  Clock::time_point now_ = Clock::time_point() + std::chrono::hours(1);
};

TEST_F(InventoryRescanTest, DeviceInAPodStaysPublishedAsItWas) {
  auto inv = Make();
  scan_ = {Dev("eth1"), Dev("eth2")};
  ASSERT_TRUE(inv->Rescan().ok());
  scan_ = {Dev("eth2")};
  where_["eth1"] = Whereabouts::kInPod;
  ASSERT_TRUE(inv->Rescan().ok());
  EXPECT_EQ(Names(inv->Devices()), (std::vector<std::string>{"eth1", "eth2"}));
  EXPECT_TRUE(inv->MissingDevices().empty());
  EXPECT_FALSE(inv->NextReview().has_value());
}

TEST_F(InventoryRescanTest, UnclaimedDeviceThatVanishesIsGoneAtOnce) {
  auto inv = Make();
  scan_ = {Dev("eth1"), Dev("eth2")};
  ASSERT_TRUE(inv->Rescan().ok());
  scan_ = {Dev("eth2")};
  ASSERT_TRUE(inv->Rescan().ok());
  EXPECT_EQ(Names(inv->Devices()), (std::vector<std::string>{"eth2"}));
  EXPECT_FALSE(inv->Find("eth1").has_value());
  EXPECT_TRUE(lost_.empty()) << "nobody held it: not a lost device, just a gone one";
}

TEST_F(InventoryRescanTest, ClaimedDeviceInNoPodIsWithdrawnAfterTheGraceAndReportedOnce) {
  auto inv = Make(std::chrono::seconds(10));
  scan_ = {Dev("eth1"), Dev("eth2")};
  ASSERT_TRUE(inv->Rescan().ok());
  scan_ = {Dev("eth2")};
  where_["eth1"] = Whereabouts::kClaimed;  // e.g. a veth that died with its pod's netns
  ASSERT_TRUE(inv->Rescan().ok());
  // In doubt: still published, reported missing, a review is due when the grace ends.
  EXPECT_EQ(Names(inv->Devices()), (std::vector<std::string>{"eth1", "eth2"}));
  ASSERT_EQ(inv->MissingDevices().size(), 1u);
  EXPECT_FALSE(inv->MissingDevices()[0].lost);
  ASSERT_TRUE(inv->NextReview().has_value());
  EXPECT_EQ(*inv->NextReview(), now_ + std::chrono::seconds(10));
  EXPECT_FALSE(inv->LostReason("eth1").has_value());

  now_ += std::chrono::seconds(10);
  ASSERT_TRUE(inv->Rescan().ok());
  EXPECT_EQ(Names(inv->Devices()), (std::vector<std::string>{"eth2"})) << "withdrawn";
  EXPECT_EQ(lost_, (std::vector<std::string>{"eth1"}));
  EXPECT_NE(last_why_.find("last seen as eth1"), std::string::npos) << last_why_;
  ASSERT_TRUE(inv->LostReason("eth1").has_value());
  EXPECT_TRUE(inv->Find("eth1").has_value()) << "still known while a claim names it";
  EXPECT_FALSE(inv->NextReview().has_value());

  now_ += std::chrono::seconds(30);
  ASSERT_TRUE(inv->Rescan().ok());
  EXPECT_EQ(lost_.size(), 1u) << "reported once";

  // It comes back (a NIC re-plugged, a VF re-created): published again, no longer missing.
  scan_ = {Dev("eth1"), Dev("eth2")};
  ASSERT_TRUE(inv->Rescan().ok());
  EXPECT_EQ(Names(inv->Devices()), (std::vector<std::string>{"eth1", "eth2"}));
  EXPECT_TRUE(inv->MissingDevices().empty());
  EXPECT_FALSE(inv->LostReason("eth1").has_value());
}

TEST_F(InventoryRescanTest, DeviceBackWithinTheGraceIsNeverReported) {
  auto inv = Make(std::chrono::seconds(10));
  scan_ = {Dev("eth1")};
  ASSERT_TRUE(inv->Rescan().ok());
  scan_ = {};
  where_["eth1"] = Whereabouts::kClaimed;  // e.g. on its way back from a CNI DEL
  ASSERT_TRUE(inv->Rescan().ok());
  now_ += std::chrono::seconds(9);
  scan_ = {Dev("eth1")};
  ASSERT_TRUE(inv->Rescan().ok());
  now_ += std::chrono::seconds(60);
  ASSERT_TRUE(inv->Rescan().ok());
  EXPECT_TRUE(lost_.empty());
  EXPECT_EQ(Names(inv->Devices()), (std::vector<std::string>{"eth1"}));
}

TEST_F(InventoryRescanTest, ReleasedLostDeviceIsForgotten) {
  auto inv = Make(std::chrono::seconds(0));
  scan_ = {Dev("eth1")};
  ASSERT_TRUE(inv->Rescan().ok());
  scan_ = {};
  where_["eth1"] = Whereabouts::kClaimed;
  ASSERT_TRUE(inv->Rescan().ok());
  EXPECT_EQ(lost_.size(), 1u);
  where_.erase("eth1");  // the claim was unprepared
  ASSERT_TRUE(inv->Rescan().ok());
  EXPECT_FALSE(inv->Find("eth1").has_value());
  EXPECT_TRUE(inv->MissingDevices().empty());
}

}  // namespace
}  // namespace knd::inventory
