// Unit tests of `kndctl status`: identity matching, plans -> rows against a fake live system,
// reading the state dir without changing it, and the text/JSON rendering.
#include "status.h"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace knd::kndctl {
namespace {

netlink::Link L(int ifindex, std::string name, std::string mac, std::string perm = "") {
  netlink::Link l;
  l.ifindex = ifindex;
  l.name = std::move(name);
  l.mac = std::move(mac);
  l.perm_mac = std::move(perm);
  return l;
}

class FakeLive : public LiveView {
 public:
  absl::StatusOr<std::vector<netlink::Link>> HostLinks() override {
    if (!host_error.ok()) return host_error;
    return host;
  }
  absl::StatusOr<std::vector<netlink::Link>> LinksIn(const std::string& path) override {
    auto it = netns.find(path);
    if (it == netns.end()) return absl::NotFoundError("netns " + path + " is gone");
    return it->second;
  }
  std::vector<std::string> PciNetdevNames(const std::string& bdf) override {
    auto it = pci.find(bdf);
    return it == pci.end() ? std::vector<std::string>{} : it->second;
  }
  std::string PciDriver(const std::string& bdf) override {
    auto it = drivers.find(bdf);
    return it == drivers.end() ? "" : it->second;
  }
  std::map<std::string, std::string> drivers;  // PCI address -> bound driver
  std::vector<netlink::Link> host;
  absl::Status host_error;
  std::map<std::string, std::vector<netlink::Link>> netns;
  std::map<std::string, std::vector<std::string>> pci;
};

TEST(FindLinkTest, PermanentMacIsStrict) {
  std::vector<netlink::Link> links = {L(2, "eth1", "02:00:00:00:00:01", "aa:bb:cc:00:00:01")};
  LinkWant w;
  w.perm_mac = "aa:bb:cc:00:00:02";
  w.macs = {"02:00:00:00:00:01"};
  w.names = {"eth1"};
  // Same name and MAC, another permanent MAC: not our device.
  EXPECT_FALSE(FindLink(links, w).has_value());
  w.perm_mac = "AA:BB:CC:00:00:01";  // case does not matter
  auto m = FindLink(links, w);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->by, "permanent mac");
}

TEST(FindLinkTest, MacThenNameOnlyWhenNoMacKnown) {
  std::vector<netlink::Link> links = {L(2, "eth1", "02:00:00:00:00:01"),
                                      L(3, "net1", "02:00:00:00:00:02")};
  LinkWant w;
  w.macs = {"02:00:00:00:00:02"};
  w.names = {"eth1"};
  auto m = FindLink(links, w);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->link.name, "net1");
  EXPECT_EQ(m->by, "mac");
  w.macs = {"02:00:00:00:00:09"};  // MAC known but absent: the name alone proves nothing
  EXPECT_FALSE(FindLink(links, w).has_value());
  w.macs.clear();
  m = FindLink(links, w);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->link.name, "eth1");
  EXPECT_EQ(m->by, "name");
}

TEST(FindLinkTest, PciNamesFirst) {
  std::vector<netlink::Link> links = {L(4, "ens1f0", "02:00:00:00:00:05", "aa:00:00:00:00:05")};
  LinkWant w;
  w.pci_names = {"ens1f0"};
  w.perm_mac = "aa:00:00:00:00:99";
  auto m = FindLink(links, w);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->by, "pci");
}

state::DevicePlan Dev(std::string name, std::string mac, state::DeviceState st) {
  state::DevicePlan d;
  d.request = "nic";
  d.device = name;
  d.identity.mac = mac;
  d.identity.ifname = name;
  d.identity.ifindex = 7;
  d.state = st;
  d.config = {{"apiVersion", "knd.k8s.cni.cncf.io/v1alpha1"}, {"kind", "NetworkConfig"}};
  return d;
}

state::DevicePlan Attached(std::string name, std::string mac, std::string netns,
                           std::string ifname) {
  state::DevicePlan d = Dev(name, mac, state::DeviceState::kAttached);
  d.pod_uid = "pod-uid-1";
  d.result = state::AttachResult{};
  d.result->netns = std::move(netns);
  d.result->ifname = std::move(ifname);
  d.result->mac = mac;
  d.host = state::HostSnapshot{};
  d.host->ifname = name;
  d.host->mac = mac;
  return d;
}

state::ClaimPlan Claim(std::vector<state::DevicePlan> devices) {
  state::ClaimPlan p;
  p.claim_uid = "claim-uid-1";
  p.claim_namespace = "team-a";
  p.claim_name = "nic-claim";
  p.pods = {{"pod-uid-1", "team-a", "web-0"}};
  p.devices = std::move(devices);
  return p;
}

StatusRow Check(const state::DevicePlan& dev, LiveView& live) {
  return BuildRows({Claim({dev})}, live).at(0);
}

TEST(BuildRowsTest, AttachedAndThere) {
  FakeLive live;
  live.netns["/run/netns/pod1"] = {L(1, "lo", ""), L(7, "net1", "02:00:00:00:00:01")};
  StatusRow r = Check(Attached("eth1", "02:00:00:00:00:01", "/run/netns/pod1", "net1"), live);
  EXPECT_EQ(r.live, Live::kOk) << r.live_detail;
  EXPECT_EQ(r.matched_by, "mac");
  EXPECT_EQ(r.pod_namespace, "team-a");
  EXPECT_EQ(r.pod_name, "web-0");
  EXPECT_EQ(r.claim_name, "nic-claim");
  EXPECT_EQ(r.ifname, "net1");
  EXPECT_EQ(r.mode, "native");
  EXPECT_EQ(r.state, "Attached");
  EXPECT_EQ(r.netns, "/run/netns/pod1");
}

// A VF on vfio-pci has no netdev: its PCI driver says where it is, in every state.
TEST(BuildRowsTest, AVfOnVfioPciIsFoundByItsPciDriver) {
  FakeLive live;
  state::DevicePlan d = Attached("eth1", "02:00:00:00:00:01", "/run/netns/pod1", "");
  d.identity.pci_address = "0000:01:10.0";
  d.vfio = state::VfioPlan{"igbvf", "12", {"/dev/vfio/vfio", "/dev/vfio/12"}};
  live.drivers["0000:01:10.0"] = "vfio-pci";
  StatusRow r = Check(d, live);
  EXPECT_EQ(r.live, Live::kOk) << r.live_detail;
  EXPECT_EQ(r.mode, "vfio");
  EXPECT_EQ(r.live_detail, "VF 0000:01:10.0 on vfio-pci (IOMMU group 12)");
  d.state = state::DeviceState::kDetached;  // its pod stopped; Unprepare gives it back
  EXPECT_EQ(Check(d, live).live, Live::kOk);
  live.drivers["0000:01:10.0"] = "igbvf";
  r = Check(d, live);
  EXPECT_EQ(r.live, Live::kMissing);
  EXPECT_EQ(r.live_detail, "VF 0000:01:10.0 is not on vfio-pci (driver: igbvf)");
  d.vfio->group.clear();  // a Prepare that stopped before the bind
  r = Check(d, live);
  EXPECT_EQ(r.live, Live::kOk);
  EXPECT_NE(r.live_detail.find("not bound to vfio-pci yet"), std::string::npos) << r.live_detail;
}

TEST(BuildRowsTest, AttachedButRenamedInPod) {
  FakeLive live;
  live.netns["/run/netns/pod1"] = {L(7, "eth9", "02:00:00:00:00:01")};
  StatusRow r = Check(Attached("eth1", "02:00:00:00:00:01", "/run/netns/pod1", "net1"), live);
  EXPECT_EQ(r.live, Live::kRenamed);
  EXPECT_NE(r.live_detail.find("as eth9, plan says net1"), std::string::npos) << r.live_detail;
}

TEST(BuildRowsTest, AttachedButMovedBackToHost) {
  FakeLive live;
  live.netns["/run/netns/pod1"] = {L(1, "lo", "")};
  live.host = {L(7, "net1", "02:00:00:00:00:01")};
  StatusRow r = Check(Attached("eth1", "02:00:00:00:00:01", "/run/netns/pod1", "net1"), live);
  EXPECT_EQ(r.live, Live::kInHost);
  EXPECT_EQ(ToString(r.live), "in host netns");
  EXPECT_NE(r.live_detail.find("not in /run/netns/pod1; the device is on the host as net1"),
            std::string::npos)
      << r.live_detail;
}

TEST(BuildRowsTest, AttachedButGone) {
  FakeLive live;
  live.netns["/run/netns/pod1"] = {L(1, "lo", "")};
  StatusRow r = Check(Attached("eth1", "02:00:00:00:00:01", "/run/netns/pod1", "net1"), live);
  EXPECT_EQ(r.live, Live::kMissing);
  EXPECT_EQ(r.live_detail, "not in /run/netns/pod1 and not on the host");
}

TEST(BuildRowsTest, AttachedNetnsGone) {
  FakeLive live;  // no netns at all
  StatusRow r = Check(Attached("eth1", "02:00:00:00:00:01", "/run/netns/pod1", "net1"), live);
  EXPECT_EQ(r.live, Live::kNetnsGone);
  EXPECT_NE(r.live_detail.find("netns /run/netns/pod1 is gone"), std::string::npos);
  // The kernel handed a physical device back as devN when its netns died.
  live.host = {L(7, "dev7", "02:00:00:00:00:01")};
  r = Check(Attached("eth1", "02:00:00:00:00:01", "/run/netns/pod1", "net1"), live);
  EXPECT_EQ(r.live, Live::kInHost);
  EXPECT_NE(r.live_detail.find("on the host as dev7"), std::string::npos);
}

TEST(BuildRowsTest, AttachedWithoutNetnsIsUnknown) {
  FakeLive live;
  state::DevicePlan d = Attached("eth1", "02:00:00:00:00:01", "", "net1");
  StatusRow r = Check(d, live);
  EXPECT_EQ(r.live, Live::kUnknown);
}

TEST(BuildRowsTest, PreparedOnHostOrMissing) {
  FakeLive live;
  live.host = {L(7, "eth1", "02:00:00:00:00:01")};
  state::DevicePlan d = Dev("eth1", "02:00:00:00:00:01", state::DeviceState::kPrepared);
  d.config["interface"] = {{"name", "net5"}};
  StatusRow r = Check(d, live);
  EXPECT_EQ(r.live, Live::kOk);
  EXPECT_EQ(r.live_detail, "on the host as eth1");
  EXPECT_EQ(r.ifname, "net5");     // configured in-pod name before any attach
  EXPECT_EQ(r.pod_name, "web-0");  // the one reserved pod
  live.host.clear();
  r = Check(d, live);
  EXPECT_EQ(r.live, Live::kMissing);
  EXPECT_EQ(r.live_detail, "not on the host");
}

TEST(BuildRowsTest, HostQueryErrorIsUnknown) {
  FakeLive live;
  live.host_error = absl::PermissionDeniedError("open netlink socket: Operation not permitted");
  StatusRow r = Check(Dev("eth1", "02:00:00:00:00:01", state::DeviceState::kPrepared), live);
  EXPECT_EQ(r.live, Live::kUnknown);
  EXPECT_NE(r.live_detail.find("Operation not permitted"), std::string::npos);
}

TEST(BuildRowsTest, DetachedButStillInPod) {
  FakeLive live;
  live.netns["/run/netns/pod1"] = {L(7, "net1", "02:00:00:00:00:01")};
  state::DevicePlan d = Attached("eth1", "02:00:00:00:00:01", "/run/netns/pod1", "net1");
  d.state = state::DeviceState::kDetached;
  StatusRow r = Check(d, live);
  EXPECT_EQ(r.live, Live::kInPod);
  EXPECT_NE(r.live_detail.find("still in /run/netns/pod1 as net1"), std::string::npos);
}

TEST(BuildRowsTest, CniModeAndUnknownPod) {
  FakeLive live;
  live.netns["/run/netns/pod2"] = {L(7, "net1", "02:00:00:00:00:01")};
  state::DevicePlan d = Attached("eth1", "02:00:00:00:00:01", "/run/netns/pod2", "net1");
  d.config["cni"] = {{"networkAttachment", {{"name", "macvlan-net"}}}};
  d.pod_uid = "other-pod";
  StatusRow r = Check(d, live);
  EXPECT_EQ(r.mode, "cni");
  EXPECT_EQ(r.pod_uid, "other-pod");
  EXPECT_EQ(r.pod_name, "");
  EXPECT_EQ(r.live, Live::kOk);
}

TEST(BuildRowsTest, PermMacBeatsMacAfterMacChange) {
  FakeLive live;
  // In the pod the device carries a configured MAC; its permanent MAC identifies it.
  live.netns["/run/netns/pod1"] = {L(7, "net1", "0a:00:00:00:00:01", "b8:00:00:00:00:01")};
  state::DevicePlan d = Attached("eth1", "b8:00:00:00:00:01", "/run/netns/pod1", "net1");
  d.identity.perm_mac = "b8:00:00:00:00:01";
  d.result->mac = "0a:00:00:00:00:01";
  StatusRow r = Check(d, live);
  EXPECT_EQ(r.live, Live::kOk);
  EXPECT_EQ(r.matched_by, "permanent mac");
}

StatusReport Report() {
  FakeLive live;
  live.netns["/run/netns/pod1"] = {L(7, "net1", "02:00:00:00:00:01")};
  state::DevicePlan ok = Attached("eth1", "02:00:00:00:00:01", "/run/netns/pod1", "net1");
  state::DevicePlan gone = Attached("eth2", "02:00:00:00:00:02", "/run/netns/pod1", "net2");
  gone.request = "nic2";
  gone.note = "attach retried once";
  StatusReport rep;
  rep.state_dir = "/var/lib/knd";
  rep.rows = BuildRows({Claim({ok, gone})}, live);
  rep.problems = {"/var/lib/knd/plans/x.json: not valid JSON"};
  return rep;
}

TEST(RenderTest, TextTableMarksMismatches) {
  std::string text = RenderStatusText(Report());
  EXPECT_NE(text.find("POD"), std::string::npos);
  EXPECT_NE(text.find("LIVE"), std::string::npos);
  // Columns line up: every table line has LIVE's column at the same offset.
  size_t col = text.find("LIVE");
  size_t line2 = text.find('\n') + 1;
  EXPECT_EQ(text.substr(line2 + col, 2), "ok") << text;
  EXPECT_NE(text.find("team-a/web-0  team-a/nic-claim  nic "), std::string::npos) << text;
  EXPECT_NE(text.find("! missing"), std::string::npos) << text;
  EXPECT_NE(text.find("Mismatches (plan vs. live system):\n  claim team-a/nic-claim device eth2: "
                      "missing - not in /run/netns/pod1 and not on the host"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("Notes:\n  claim team-a/nic-claim device eth2: attach retried once"),
            std::string::npos);
  EXPECT_NE(text.find("2 device(s), 1 mismatch(es)"), std::string::npos);
  EXPECT_NE(text.find("Unreadable plan files:\n  /var/lib/knd/plans/x.json"), std::string::npos);
}

TEST(RenderTest, EmptyText) {
  StatusReport rep;
  rep.state_dir = "/tmp/s";
  EXPECT_EQ(RenderStatusText(rep),
            "No device plans in /tmp/s/plans: knd has prepared no claim on this node.\n");
}

TEST(RenderTest, Json) {
  nlohmann::json j = StatusToJson(Report());
  ASSERT_EQ(j["devices"].size(), 2u);
  const auto& d0 = j["devices"][0];
  EXPECT_EQ(d0["pod"]["name"], "web-0");
  EXPECT_EQ(d0["claim"]["uid"], "claim-uid-1");
  EXPECT_EQ(d0["interfaceName"], "net1");
  EXPECT_EQ(d0["mode"], "native");
  EXPECT_EQ(d0["state"], "Attached");
  EXPECT_EQ(d0["live"]["status"], "ok");
  EXPECT_EQ(d0["live"]["ok"], true);
  EXPECT_EQ(d0["live"]["matchedBy"], "mac");
  EXPECT_EQ(j["devices"][1]["live"]["status"], "missing");
  EXPECT_EQ(j["devices"][1]["live"]["ok"], false);
  EXPECT_EQ(j["problems"].size(), 1u);
  EXPECT_EQ(j["stateDir"], "/var/lib/knd");
}

class ReadPlansTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kndctl-status-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void Write(const std::string& rel, const std::string& data) {
    std::filesystem::create_directories(std::filesystem::path(dir_ + "/" + rel).parent_path());
    std::ofstream(dir_ + "/" + rel) << data;
  }
  std::string dir_;
};

TEST_F(ReadPlansTest, ReadsPlansAndReportsBadFilesWithoutTouchingThem) {
  state::ClaimPlan p = Claim({Dev("eth1", "02:00:00:00:00:01", state::DeviceState::kPrepared)});
  Write("plans/claim-uid-1.json", state::ToJson(p).dump());
  Write("plans/broken.json", "{not json");
  Write("plans/.claim-uid-2.json.a1b2c3", "{}");  // interrupted atomic write
  Write("plans/old.json.corrupt", "junk");        // moved aside by the driver
  absl::StatusOr<PlanFiles> files = ReadPlans(dir_);
  ASSERT_TRUE(files.ok()) << files.status();
  ASSERT_EQ(files->plans.size(), 1u);
  EXPECT_EQ(files->plans[0].claim_uid, "claim-uid-1");
  ASSERT_EQ(files->problems.size(), 1u);
  EXPECT_NE(files->problems[0].find("plans/broken.json: not valid JSON"), std::string::npos);
  // Read-only: nothing moved aside or removed.
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/plans/broken.json"));
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/plans/.claim-uid-2.json.a1b2c3"));
}

TEST_F(ReadPlansTest, NoPlansDirIsEmptyMissingStateDirIsAnError) {
  absl::StatusOr<PlanFiles> files = ReadPlans(dir_);
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_TRUE(files->plans.empty());
  files = ReadPlans(dir_ + "/nope");
  ASSERT_FALSE(files.ok());
  EXPECT_NE(files.status().ToString().find(dir_ + "/nope"), std::string::npos);
}

}  // namespace
}  // namespace knd::kndctl
