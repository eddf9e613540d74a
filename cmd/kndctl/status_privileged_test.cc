// Privileged tests of `kndctl status` and `kndctl doctor` against real links. Two throwaway
// namespaces play the host and the pod; a plan says "Attached in the pod netns", and the test
// moves the device around under it. Skipped without CAP_NET_ADMIN or iproute2.
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>

#include "doctor.h"
#include "gtest/gtest.h"
#include "netns/netns.h"
#include "status.h"

namespace knd::kndctl {
namespace {

// Runs a shell command; returns its stdout, exit code in `rc`.
std::string Shell(const std::string& cmd, int* rc) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>/dev/null").c_str(), "r");
  if (p == nullptr) {
    *rc = -1;
    return out;
  }
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int st = ::pclose(p);
  *rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

#define SH(cmd)                                       \
  do {                                                \
    int rc_ = 0;                                      \
    Shell(cmd, &rc_);                                 \
    ASSERT_EQ(rc_, 0) << "command failed: " << (cmd); \
  } while (0)

constexpr char kMac[] = "02:4b:4e:44:00:01";

class StatusLiveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!netns::HaveNetAdmin()) GTEST_SKIP() << "needs CAP_NET_ADMIN";
    int rc = 0;
    if (Shell("ip -V", &rc).find("iproute2") == std::string::npos) GTEST_SKIP() << "needs iproute2";
    auto host = netns::ScopedNetns::Create("knd-ctl-host");
    ASSERT_TRUE(host.ok()) << host.status();
    host_.emplace(std::move(*host));
    auto pod = netns::ScopedNetns::Create("knd-ctl-pod");
    ASSERT_TRUE(pod.ok()) << pod.status();
    pod_.emplace(std::move(*pod));
    pod_path_ = pod_->path();  // the plan keeps naming it after the netns is deleted
    char tmpl[] = "/tmp/kndctl-state-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    state_dir_ = tmpl;
    // The "host" has eth1 (a veth); the attach moved it into the pod as net1.
    SH("ip -n " + host_->name() + " link add eth1 type veth peer name eth1p");
    SH("ip -n " + host_->name() + " link set eth1 address " + kMac);
    SH("ip -n " + host_->name() + " link set eth1 netns " + pod_->name());
    SH("ip -n " + pod_->name() + " link set eth1 name net1");
    SH("ip -n " + pod_->name() + " link set net1 up");
  }
  void TearDown() override {
    if (!state_dir_.empty()) std::filesystem::remove_all(state_dir_);
  }

  state::ClaimPlan Plan() const {
    state::ClaimPlan p;
    p.claim_uid = "6f1c0d2e-0000-4000-8000-000000000001";
    p.claim_namespace = "team-a";
    p.claim_name = "nic";
    p.pods = {{"pod-uid-1", "team-a", "web-0"}};
    state::DevicePlan d;
    d.request = "nic";
    d.device = "eth1";
    d.identity.mac = kMac;
    d.identity.ifname = "eth1";
    d.config = {{"apiVersion", "knd.k8s.cni.cncf.io/v1alpha1"}, {"kind", "NetworkConfig"}};
    d.state = state::DeviceState::kAttached;
    d.pod_uid = "pod-uid-1";
    d.host = state::HostSnapshot{};
    d.host->ifname = "eth1";
    d.host->mac = kMac;
    d.result = state::AttachResult{};
    d.result->netns = pod_path_;
    d.result->ifname = "net1";
    d.result->mac = kMac;
    p.devices.push_back(d);
    return p;
  }

  StatusRow Row() {
    std::unique_ptr<LiveView> live = NewSystemLiveView(host_->path(), "/nonexistent-sysfs");
    std::vector<StatusRow> rows = BuildRows({Plan()}, *live);
    EXPECT_EQ(rows.size(), 1u);
    return rows.empty() ? StatusRow{} : rows[0];
  }

  std::optional<netns::ScopedNetns> host_, pod_;
  std::string pod_path_;
  std::string state_dir_;
};

TEST_F(StatusLiveTest, AttachedThenMovedAwayThenGone) {
  StatusRow r = Row();
  EXPECT_EQ(r.live, Live::kOk) << r.live_detail;
  EXPECT_EQ(r.live_detail, "in " + pod_->path() + " as net1");

  // Renamed inside the pod behind knd's back.
  SH("ip -n " + pod_->name() + " link set net1 down");
  SH("ip -n " + pod_->name() + " link set net1 name eth9");
  r = Row();
  EXPECT_EQ(r.live, Live::kRenamed) << r.live_detail;

  // Moved out from under knd, back to the host.
  SH("ip -n " + pod_->name() + " link set eth9 netns " + host_->name());
  r = Row();
  EXPECT_EQ(r.live, Live::kInHost) << r.live_detail;
  EXPECT_EQ(r.live_detail, "not in " + pod_->path() + "; the device is on the host as eth9");

  // Deleted: nowhere.
  SH("ip -n " + host_->name() + " link del eth9");
  r = Row();
  EXPECT_EQ(r.live, Live::kMissing) << r.live_detail;

  // The pod netns itself is gone.
  pod_.reset();
  r = Row();
  EXPECT_EQ(r.live, Live::kNetnsGone) << r.live_detail;
}

TEST_F(StatusLiveTest, CliJsonMatchesReality) {
  const char* bin = std::getenv("KND_BINARY_DIR");
  if (bin == nullptr) GTEST_SKIP() << "KND_BINARY_DIR not set (run through ctest)";
  const std::string kndctl = std::string(bin) + "/cmd/kndctl/kndctl";
  std::filesystem::create_directories(state_dir_ + "/plans");
  state::ClaimPlan plan = Plan();
  std::ofstream(state_dir_ + "/plans/" + plan.claim_uid + ".json") << state::ToJson(plan).dump();
  const std::string cmd =
      kndctl + " status --state-dir " + state_dir_ + " --host-netns " + host_->path() + " -o json";
  int rc = 0;
  nlohmann::json j = nlohmann::json::parse(Shell(cmd, &rc), nullptr, false);
  ASSERT_EQ(rc, 0);
  ASSERT_FALSE(j.is_discarded());
  ASSERT_EQ(j["devices"].size(), 1u);
  EXPECT_EQ(j["devices"][0]["live"]["status"], "ok");
  EXPECT_EQ(j["devices"][0]["pod"]["name"], "web-0");

  SH("ip -n " + pod_->name() + " link set net1 netns " + host_->name());
  std::string text =
      Shell(kndctl + " status --state-dir " + state_dir_ + " --host-netns " + host_->path(), &rc);
  EXPECT_EQ(rc, 0);  // mismatches are reported, not an error
  EXPECT_NE(text.find("! in host netns"), std::string::npos) << text;
  EXPECT_NE(text.find("on the host as net1"), std::string::npos) << text;

  Shell(kndctl + " status --state-dir " + state_dir_ + "/absent", &rc);
  EXPECT_EQ(rc, 1);
}

TEST(DoctorLinkProbeTest, ReportsWhatTheKernelHas) {
  if (!netns::HaveNetAdmin()) GTEST_SKIP() << "needs CAP_NET_ADMIN";
  std::string setup_error;
  std::vector<LinkTypeProbe> probes = ProbeLinkTypes(setup_error);
  ASSERT_EQ(setup_error, "");
  ASSERT_EQ(probes.size(), 6u);
  EXPECT_EQ(probes[0].kind, "veth");
  EXPECT_TRUE(probes[0].supported) << probes[0].error;
  // Cross-check every answer against iproute2 in a namespace of our own.
  auto ns = netns::ScopedNetns::Create("knd-ctl-probe");
  ASSERT_TRUE(ns.ok()) << ns.status();
  int rc = 0;
  Shell("ip -n " + ns->name() + " link add p0 type veth peer name p1", &rc);
  ASSERT_EQ(rc, 0);
  const std::map<std::string, std::string> args = {
      {"veth", "type veth peer name x1"},  {"macvlan", "link p0 type macvlan"},
      {"vxlan", "type vxlan id 42"},       {"dummy", "type dummy"},
      {"vlan", "link p0 type vlan id 42"}, {"ipvlan", "link p0 type ipvlan"}};
  for (const LinkTypeProbe& p : probes) {
    Shell("ip -n " + ns->name() + " link add x0 " + args.at(p.kind), &rc);
    EXPECT_EQ(p.supported, rc == 0) << p.kind << ": " << p.error;
    Shell("ip -n " + ns->name() + " link del x0", &rc);
  }
  // The probe left no namespace behind.
  for (const auto& e : std::filesystem::directory_iterator("/run/netns")) {
    EXPECT_EQ(e.path().filename().string().rfind("kndctl-doctor", 0), std::string::npos)
        << e.path();
  }
  Check c = LinkTypesCheck(probes, setup_error);
  EXPECT_EQ(c.level, Level::kOk) << c.detail;
}

}  // namespace
}  // namespace knd::kndctl
