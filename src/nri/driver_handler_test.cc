#include "nri/driver_handler.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <future>
#include <thread>

#include "attach/null_attacher.h"
#include "common/status.h"
#include "config/network_config.h"
#include "netns/netns.h"

namespace knd::nri {
namespace {

TEST(SandboxFailurePolicyTest, ContainerdVersionsThatCannotRestartAfterARetriedFailure) {
  // containerd#13609: 2.0 to 2.2.5 keep the record of a sandbox an NRI plugin failed.
  EXPECT_TRUE(RuntimeLeaksFailedSandboxes("containerd", "2.1.9+unknown"));  // Debian's
  EXPECT_TRUE(RuntimeLeaksFailedSandboxes("containerd", "v2.1.7"));
  EXPECT_TRUE(RuntimeLeaksFailedSandboxes("containerd", "v2.0.0"));
  EXPECT_TRUE(RuntimeLeaksFailedSandboxes("containerd", "v2.2.5"));
  EXPECT_FALSE(RuntimeLeaksFailedSandboxes("containerd", "v2.2.6"));
  EXPECT_FALSE(RuntimeLeaksFailedSandboxes("containerd", "v2.3.0"));
  EXPECT_FALSE(RuntimeLeaksFailedSandboxes("containerd", "1.7.24~ds1"));
  EXPECT_FALSE(RuntimeLeaksFailedSandboxes("cri-o", "1.34.0"));
  EXPECT_FALSE(RuntimeLeaksFailedSandboxes("containerd", "garbage"));
}

TEST(SandboxFailurePolicyTest, Parse) {
  EXPECT_EQ(*ParseSandboxFailurePolicy("auto"), SandboxFailurePolicy::kAuto);
  EXPECT_EQ(*ParseSandboxFailurePolicy("fail"), SandboxFailurePolicy::kFail);
  EXPECT_EQ(*ParseSandboxFailurePolicy("defer"), SandboxFailurePolicy::kDefer);
  auto bad = ParseSandboxFailurePolicy("maybe");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("auto, fail, defer"), std::string::npos);
}

// An attacher whose attach fails until told otherwise.
class FlakyAttacher : public attach::NullAttacher {
 public:
  absl::StatusOr<state::AttachResult> Attach(
      const attach::AttachRequest& req,
      const std::function<absl::Status(const state::HostSnapshot&)>& persist) override {
    state::HostSnapshot snap;
    snap.ifname = req.identity.ifname;
    RETURN_IF_ERROR(persist(snap));
    if (failing) return absl::UnavailableError(req.where + ": CNI plugin timed out");
    attached = true;
    return Result(req, "net1");
  }
  absl::Status Detach(const state::DeviceIdentity&, const state::HostSnapshot&, const std::string&,
                      const std::string&, const std::string&) override {
    attached = false;
    return absl::OkStatus();
  }
  absl::StatusOr<state::AttachResult> AttachChild(
      const attach::AttachRequest& req, const std::function<absl::Status()>& persist) override {
    RETURN_IF_ERROR(persist());
    if (failing) return absl::UnavailableError(req.where + ": parent is down");
    attached = true;
    return Result(req, "net1");
  }
  absl::Status DetachChild(const std::string&, const std::string&, const state::ChildPlan&,
                           const std::string&) override {
    attached = false;
    return absl::OkStatus();
  }
  absl::StatusOr<bool> IsAttached(const std::string&, const std::string&) override {
    return attached.load();
  }
  absl::StatusOr<bool> OnHost(const state::DeviceIdentity&) override { return !attached; }
  std::atomic<bool> failing{true}, attached{false};
};

class DriverHandlerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!netns::HaveNetAdmin()) GTEST_SKIP() << "needs root to create a pod netns";
    char tmpl[] = "/tmp/knd-handler-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    store_ = std::make_unique<state::PlanStore>(dir_);
    auto ns = netns::ScopedNetns::Create("knd-handler");
    ASSERT_TRUE(ns.ok()) << ns.status();
    ns_ = std::make_unique<netns::ScopedNetns>(std::move(*ns));
    state::ClaimPlan p;
    p.claim_uid = "c1";
    p.claim_namespace = "ns";
    p.claim_name = "c1";
    p.pods.push_back({"p1", "ns", "pod-p1"});
    state::DevicePlan d;
    d.request = "nic";
    d.pool = "node";
    d.device = "eth1";
    d.identity.ifname = "eth1";
    config::NetworkConfig cfg;
    cfg.interface.name = "net1";
    d.config = config::ToJson(cfg);
    p.devices.push_back(d);
    ASSERT_TRUE(store_->Put(p).ok());
    pod_.set_id("sandbox-1");
    pod_.set_uid("p1");
    pod_.set_namespace_("ns");
    pod_.set_name("pod-p1");
    auto* n = pod_.mutable_linux()->add_namespaces();
    n->set_type("network");
    n->set_path(ns_->path());
  }
  void TearDown() override {
    ns_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::string dir_;
  std::unique_ptr<state::PlanStore> store_;
  std::unique_ptr<netns::ScopedNetns> ns_;
  FlakyAttacher att_;
  api::PodSandbox pod_;
};

TEST_F(DriverHandlerTest, FailPolicyFailsTheSandbox) {
  PodNetwork pn(*store_, att_);
  DriverHandler h(pn, SandboxFailurePolicy::kAuto);
  ASSERT_TRUE(h.Configure("containerd", "1.7.24~ds1", std::chrono::milliseconds(2000)).ok());
  EXPECT_FALSE(h.defers());
  absl::Status st = h.RunPodSandbox(pod_);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("CNI plugin timed out"), std::string::npos) << st;
  EXPECT_EQ(h.deferred_pods(), 0u);
}

TEST_F(DriverHandlerTest, OnAnAffectedContainerdTheSandboxStartsAndTheAttachIsRetried) {
  PodNetwork pn(*store_, att_);
  DriverHandler h(pn, SandboxFailurePolicy::kAuto);
  ASSERT_TRUE(h.Configure("containerd", "2.1.9+unknown", std::chrono::milliseconds(2000)).ok());
  EXPECT_TRUE(h.defers());
  ASSERT_TRUE(h.RunPodSandbox(pod_).ok()) << "the sandbox must not fail";
  EXPECT_EQ(h.deferred_pods(), 1u);
  EXPECT_FALSE(att_.attached);
  att_.failing = false;  // the slow plugin is quick again
  for (int i = 0; i < 100 && h.deferred_pods() > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(h.deferred_pods(), 0u);
  EXPECT_TRUE(att_.attached);
  EXPECT_EQ(store_->Get("c1")->devices[0].state, state::DeviceState::kAttached);
  ASSERT_TRUE(h.StopPodSandbox(pod_).ok());
  EXPECT_FALSE(att_.attached);
}

TEST_F(DriverHandlerTest, AStoppedSandboxIsNoLongerRetried) {
  PodNetwork pn(*store_, att_);
  DriverHandler h(pn, SandboxFailurePolicy::kDefer);
  ASSERT_TRUE(h.RunPodSandbox(pod_).ok());
  EXPECT_EQ(h.deferred_pods(), 1u);
  ASSERT_TRUE(h.StopPodSandbox(pod_).ok());
  EXPECT_EQ(h.deferred_pods(), 0u);
  att_.failing = false;
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_FALSE(att_.attached) << "nothing is attached into a stopped sandbox";
}

TEST_F(DriverHandlerTest, AStopAfterSynchronizeIsNotUndoneByTheReconcile) {
  att_.failing = false;
  PodNetwork pn(*store_, att_);
  // Hold the reconcile thread just before it takes p1's lock until StopPodSandbox is done.
  std::promise<void> reached, stopped;
  std::shared_future<void> stopped_f = stopped.get_future().share();
  pn.SetReconcilePodHookForTest([&](const std::string& uid) {
    if (uid != "p1") return;
    reached.set_value();
    stopped_f.wait();
  });
  DriverHandler h(pn, SandboxFailurePolicy::kFail);
  // p1 runs without its device (started while knd was away): the reconcile would attach it.
  ASSERT_TRUE(h.Synchronize({pod_}, {}).ok());
  ASSERT_EQ(reached.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  ASSERT_TRUE(h.StopPodSandbox(pod_).ok());
  stopped.set_value();
  for (int i = 0; i < 200 && !h.reconciled(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(h.reconciled());
  EXPECT_FALSE(att_.attached) << "the reconcile attached a device into a stopped sandbox";
  EXPECT_EQ(store_->Get("c1")->devices[0].state, state::DeviceState::kPrepared);
}

}  // namespace
}  // namespace knd::nri
