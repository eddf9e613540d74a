#include "nri/pod_network.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>

#include "common/status.h"
#include "config/network_config.h"
#include "netns/netns.h"

namespace knd::nri {
namespace {

using state::DeviceState;

// Records what happened to each device; "pod" netns paths are plain strings here.
class FakeAttacher : public attach::Attacher {
 public:
  absl::StatusOr<state::AttachResult> Attach(
      const attach::AttachRequest& req,
      const std::function<absl::Status(const state::HostSnapshot&)>& persist) override {
    const std::string& id = req.identity.ifname;
    state::HostSnapshot snap;
    snap.ifname = id;
    snap.mtu = 1500;
    RETURN_IF_ERROR(persist(snap));
    if (fail.count(id)) return absl::InternalError("add route: Network is unreachable");
    where[id] = req.netns_path;
    attach_calls++;
    state::AttachResult r;
    r.netns = req.netns_path;
    r.ifname = req.config.interface.name.value_or(id);
    return r;
  }
  absl::Status Detach(const state::DeviceIdentity& identity, const state::HostSnapshot& host,
                      const std::string&, const std::string&, const std::string&) override {
    EXPECT_EQ(host.ifname, identity.ifname);  // the snapshot reached the plan
    detach_calls++;
    if (destroyed.count(identity.ifname)) return absl::NotFoundError("destroyed with the netns");
    where.erase(identity.ifname);
    return absl::OkStatus();
  }
  absl::StatusOr<bool> IsAttached(const std::string& netns, const std::string& ifname) override {
    for (const auto& [id, ns] : where) {
      if (ns == netns && (ifname == id || ifname == "net-" + id)) return true;
    }
    return false;
  }

  std::map<std::string, std::string> where;  // host ifname -> netns it is in
  std::set<std::string> fail, destroyed;
  int attach_calls = 0, detach_calls = 0;
};

class PodNetworkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/knd-podnet-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    store_ = std::make_unique<state::PlanStore>(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // A plan for claim `claim` reserved for pod `pod_uid` with the given host devices.
  void AddPlan(const std::string& claim, const std::string& pod_uid,
               const std::vector<std::string>& ifnames) {
    state::ClaimPlan p;
    p.claim_uid = claim;
    p.claim_namespace = "ns";
    p.claim_name = claim;
    p.pods.push_back({pod_uid, "ns", "pod-" + pod_uid});
    for (const auto& ifn : ifnames) {
      state::DevicePlan d;
      d.request = "nic";
      d.pool = "node";
      d.device = ifn;
      d.identity.ifname = ifn;
      config::NetworkConfig cfg;
      cfg.interface.name = "net-" + ifn;
      d.config = config::ToJson(cfg);
      p.devices.push_back(d);
    }
    ASSERT_TRUE(store_->Put(p).ok());
  }
  DeviceState StateOf(const std::string& claim, size_t i) {
    return store_->Get(claim)->devices[i].state;
  }

  std::string dir_;
  std::unique_ptr<state::PlanStore> store_;
  FakeAttacher att_;
};

// The fake attacher does not touch the kernel, but Attach validates the netns path first;
// /proc/1/ns/net is the host's from the test's point of view only when we are pid 1's netns,
// so use a real non-host netns when we can and skip otherwise.
class PodNetworkNsTest : public PodNetworkTest {
 protected:
  void SetUp() override {
    PodNetworkTest::SetUp();
    if (!netns::HaveNetAdmin()) GTEST_SKIP() << "needs root to create a pod netns";
    auto ns = netns::ScopedNetns::Create("knd-podnet");
    ASSERT_TRUE(ns.ok()) << ns.status();
    ns_ = std::make_unique<netns::ScopedNetns>(std::move(*ns));
  }
  PodInfo Pod(const std::string& uid) { return {uid, "ns", "pod-" + uid, ns_->path()}; }
  std::unique_ptr<netns::ScopedNetns> ns_;
};

TEST_F(PodNetworkNsTest, AttachDetachAndRepeat) {
  AddPlan("c1", "p1", {"eth1", "eth2"});
  PodNetwork pn(*store_, att_);
  ASSERT_TRUE(pn.Attach(Pod("p1")).ok());
  EXPECT_EQ(StateOf("c1", 0), DeviceState::kAttached);
  EXPECT_EQ(StateOf("c1", 1), DeviceState::kAttached);
  EXPECT_EQ(store_->Get("c1")->devices[0].host->ifname, "eth1");
  EXPECT_EQ(store_->Get("c1")->devices[0].result->ifname, "net-eth1");
  // A repeated RunPodSandbox changes nothing.
  ASSERT_TRUE(pn.Attach(Pod("p1")).ok());
  EXPECT_EQ(att_.attach_calls, 2);
  ASSERT_TRUE(pn.Detach(Pod("p1")).ok());
  EXPECT_EQ(StateOf("c1", 0), DeviceState::kDetached);
  EXPECT_TRUE(att_.where.empty());
  // Stop then Remove: the second is a no-op.
  ASSERT_TRUE(pn.Detach(Pod("p1")).ok());
  EXPECT_EQ(att_.detach_calls, 2);
}

TEST_F(PodNetworkNsTest, FailureIsAllOrNothingAndNamesEverything) {
  AddPlan("c1", "p1", {"eth1", "eth2"});
  att_.fail.insert("eth2");
  PodNetwork pn(*store_, att_);
  absl::Status st = pn.Attach(Pod("p1"));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("pod ns/pod-p1 claim ns/c1 device eth2"), std::string::npos) << st;
  EXPECT_NE(st.message().find("add route"), std::string::npos) << st;
  EXPECT_TRUE(att_.where.empty()) << "eth1 must be given back";
  EXPECT_EQ(StateOf("c1", 1), DeviceState::kFailed);
  EXPECT_NE(StateOf("c1", 0), DeviceState::kAttached);
}

TEST_F(PodNetworkNsTest, PodsWithoutClaimsAreNotTouched) {
  AddPlan("c1", "p1", {"eth1"});
  PodNetwork pn(*store_, att_);
  EXPECT_TRUE(pn.Attach(Pod("other")).ok());
  EXPECT_TRUE(pn.Detach(Pod("other")).ok());
  EXPECT_EQ(att_.attach_calls + att_.detach_calls, 0);
  EXPECT_EQ(StateOf("c1", 0), DeviceState::kPrepared);
}

TEST_F(PodNetworkTest, HostNetworkPodIsRefused) {
  AddPlan("c1", "p1", {"eth1"});
  PodNetwork pn(*store_, att_);
  absl::Status st = pn.Attach({"p1", "ns", "pod-p1", ""});
  EXPECT_TRUE(absl::IsFailedPrecondition(st)) << st;
  EXPECT_NE(st.message().find("claim ns/c1"), std::string::npos) << st;
  EXPECT_EQ(att_.attach_calls, 0);
}

TEST_F(PodNetworkNsTest, ReconcileReturnsDevicesOfGonePodsOnly) {
  AddPlan("c1", "p1", {"eth1"});
  AddPlan("c2", "p2", {"eth2"});
  AddPlan("c3", "p3", {"eth3"});  // prepared, sandbox not created yet
  PodNetwork pn(*store_, att_);
  ASSERT_TRUE(pn.Attach(Pod("p1")).ok());
  ASSERT_TRUE(pn.Attach(Pod("p2")).ok());
  // p1 still runs, p2 is gone (stopped while knd was down), p3 not started.
  ASSERT_TRUE(pn.Reconcile({Pod("p1")}).ok());
  EXPECT_EQ(StateOf("c1", 0), DeviceState::kAttached);
  EXPECT_EQ(StateOf("c2", 0), DeviceState::kDetached);
  EXPECT_EQ(StateOf("c3", 0), DeviceState::kPrepared);
  EXPECT_EQ(att_.where.count("eth2"), 0u);
}

TEST_F(PodNetworkNsTest, DestroyedVirtualDeviceIsRecordedNotRetriedForever) {
  AddPlan("c1", "p1", {"eth1"});
  PodNetwork pn(*store_, att_);
  ASSERT_TRUE(pn.Attach(Pod("p1")).ok());
  att_.destroyed.insert("eth1");
  EXPECT_TRUE(pn.Detach(Pod("p1")).ok());
  auto plan = store_->Get("c1");
  EXPECT_EQ(plan->devices[0].state, DeviceState::kDetached);
  EXPECT_NE(plan->devices[0].note.find("destroyed"), std::string::npos);
}

TEST_F(PodNetworkNsTest, UnprepareDetachesWhatIsStillAttached) {
  AddPlan("c1", "p1", {"eth1"});
  PodNetwork pn(*store_, att_);
  ASSERT_TRUE(pn.Attach(Pod("p1")).ok());
  ASSERT_TRUE(pn.DetachClaim(*store_->Get("c1")).ok());
  EXPECT_TRUE(att_.where.empty());
}

}  // namespace
}  // namespace knd::nri
