#include "inventory/inventory.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
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

// The device cache across releases: the versioned form round-trips, the bare array of the
// releases before it is still read, and what this knd cannot read is refused, never guessed
// at (nor overwritten).
class DeviceCacheFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/knd-inv-cache-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/devices.json";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void Write(const std::string& text) {
    std::ofstream f(path_, std::ios::trunc);
    f << text;
  }
  std::string Read() const {
    std::ifstream f(path_);
    return std::string(std::istreambuf_iterator<char>(f), {});
  }
  std::unique_ptr<Inventory> Make(std::vector<Device> scan = {}) {
    InventoryOptions o;
    o.cache_path = path_;
    o.where = [](const std::string&) { return Whereabouts::kInPod; };
    return std::make_unique<Inventory>([scan] { return absl::StatusOr<std::vector<Device>>(scan); },
                                       std::move(o));
  }
  static Device Dev(const std::string& name) {
    Device d;
    d.name = name;
    d.ifname = name;
    d.mtu = 1500;
    d.mac = "02:00:00:00:00:01";
    return d;
  }
  std::string dir_, path_;
};

TEST_F(DeviceCacheFileTest, WritesTheVersionedFormAndReadsItBack) {
  {
    auto inv = Make({Dev("eth1")});
    ASSERT_TRUE(inv->cache_status().ok());
    ASSERT_TRUE(inv->Rescan().ok());
  }
  nlohmann::json j = nlohmann::json::parse(Read());
  EXPECT_EQ(j["version"], kDeviceCacheVersion);
  ASSERT_TRUE(j["devices"].is_array());
  ASSERT_EQ(j["devices"].size(), 1u);
  EXPECT_EQ(j["devices"][0], DeviceToCacheJson(Dev("eth1")));
  auto inv = Make();  // eth1 went into a pod meanwhile: the scan does not find it
  ASSERT_TRUE(inv->cache_status().ok()) << inv->cache_status();
  ASSERT_TRUE(inv->Find("eth1").has_value());
  EXPECT_EQ(inv->Find("eth1")->mac, "02:00:00:00:00:01");
  ASSERT_TRUE(inv->Rescan().ok());
  ASSERT_EQ(inv->Devices().size(), 1u);  // still published, as it was
  EXPECT_EQ(DeviceToCacheJson(inv->Devices()[0]), DeviceToCacheJson(Dev("eth1")));

  auto parsed = DeviceCacheFromText(DeviceCacheToText({Dev("a"), Dev("b")}), "x");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->size(), 2u);
  EXPECT_EQ((*parsed)[1].name, "b");
}

TEST_F(DeviceCacheFileTest, ReadsTheUnversionedListOfThePreviousRelease) {
  Write(nlohmann::json::array({DeviceToCacheJson(Dev("eth1"))}).dump());
  auto inv = Make();
  ASSERT_TRUE(inv->cache_status().ok()) << inv->cache_status();
  ASSERT_TRUE(inv->Find("eth1").has_value());
  ASSERT_TRUE(inv->Rescan().ok());
  // ... and from then on writes it in the versioned form.
  EXPECT_EQ(nlohmann::json::parse(Read())["version"], kDeviceCacheVersion);
}

TEST_F(DeviceCacheFileTest, ReadsTheGoldenCacheOfThePreviousRelease) {
  std::ifstream f(std::string(KND_GOLDEN_DIR) + "/v1/devices.json");
  ASSERT_TRUE(f.good());
  std::string text(std::istreambuf_iterator<char>(f), {});
  auto sub = [&text](const std::string& from, const std::string& to) {
    for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at)) {
      text.replace(at, from.size(), to);
    }
  };
  sub("\"@IFINDEX@\"", "3");
  sub("@MAC@", "8e:dd:3f:40:3a:1a");
  Write(text);
  auto inv = Make();
  ASSERT_TRUE(inv->cache_status().ok()) << inv->cache_status();
  auto d = inv->Find("eth1");
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->ifindex, 3);
  EXPECT_EQ(d->mac, "8e:dd:3f:40:3a:1a");
  EXPECT_EQ(d->mtu, 1500u);
  EXPECT_EQ(d->kind, "veth");
  EXPECT_EQ(d->ipv4, std::vector<std::string>{"10.99.0.2/24"});
  EXPECT_EQ(d->speed_mbps, 10000);
  EXPECT_TRUE(d->is_virtual);
  // Every field the previous release wrote is one this knd writes too: none lost.
  EXPECT_EQ(DeviceToCacheJson(*d), nlohmann::json::parse(text)[0]);
}

TEST_F(DeviceCacheFileTest, RefusesAVersionItDoesNotReadAndLeavesTheFile) {
  const std::string v2 = R"({"version": 2, "devices": [{"name": "eth1"}]})";
  Write(v2);
  auto inv = Make({Dev("eth2")});
  absl::Status st = inv->cache_status();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  const std::string msg(st.message());
  EXPECT_NE(msg.find(path_), std::string::npos) << msg;
  EXPECT_NE(msg.find("unsupported format version 2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("this knd reads version 1"), std::string::npos) << msg;
  EXPECT_FALSE(inv->Find("eth1").has_value()) << "not guessed at";
  // The inventory still works, but never overwrites the file it could not read.
  ASSERT_TRUE(inv->Rescan().ok());
  EXPECT_TRUE(inv->Find("eth2").has_value());
  EXPECT_EQ(Read(), v2);

  auto direct = LoadDeviceCache(path_);
  EXPECT_EQ(direct.status().code(), absl::StatusCode::kFailedPrecondition);
  Write(R"({"version": "1", "devices": []})");
  EXPECT_NE(std::string(LoadDeviceCache(path_).status().message()).find("version \"1\""),
            std::string::npos);
}

TEST_F(DeviceCacheFileTest, RefusesContentThatIsNoDeviceCache) {
  for (const std::string& text : {std::string("[{\"name\": \"eth1\"}, {\"ifname\""),
                                  std::string("{\"devices\": []}"), std::string("{\"version\": 1}"),
                                  std::string("[{\"ifname\": \"no-name\"}]"), std::string("")}) {
    Write(text);
    auto inv = Make();
    absl::Status st = inv->cache_status();
    EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << text;
    EXPECT_NE(std::string(st.message()).find(path_), std::string::npos) << st;
    EXPECT_FALSE(inv->Find("eth1").has_value()) << text;
  }
}

TEST_F(DeviceCacheFileTest, NoCacheIsAFirstStart) {
  auto inv = Make();
  EXPECT_TRUE(inv->cache_status().ok());
  auto none = LoadDeviceCache(path_);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
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
