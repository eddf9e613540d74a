#include "nri/pod_network.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
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
    if (moved_by_cni.count(id) > 0 || where.count(id) > 0) {
      return absl::NotFoundError(req.where + ": device " + id + " not found on the host");
    }
    state::HostSnapshot snap;
    snap.ifname = id;
    snap.mtu = 1500;
    RETURN_IF_ERROR(persist(snap));
    if (auto d = delay.find(id); d != delay.end()) std::this_thread::sleep_for(d->second);
    // The real attacher names req.where in its errors (attacher.h).
    if (fail.count(id))
      return absl::InternalError(req.where + ": add route: Network is unreachable");
    where[id] = req.netns_path;
    attach_calls++;
    state::AttachResult r;
    r.netns = req.netns_path;
    r.ifname = req.config.interface.name.value_or(id);
    last_config = req.config;
    return r;
  }
  absl::Status Detach(const state::DeviceIdentity& identity, const state::HostSnapshot& host,
                      const std::string& netns, const std::string&, const std::string&) override {
    EXPECT_EQ(host.ifname, identity.ifname);  // the snapshot reached the plan
    detach_calls++;
    last_detach_netns = netns;
    if (destroyed.count(identity.ifname)) return absl::NotFoundError("destroyed with the netns");
    where.erase(identity.ifname);
    return absl::OkStatus();
  }
  absl::StatusOr<state::AttachResult> AttachChild(
      const attach::AttachRequest& req, const std::function<absl::Status()>& persist) override {
    const std::string& parent = req.identity.ifname;
    if (gone.count(parent)) {
      return absl::NotFoundError(req.where + ": parent " + parent + " not found on the host");
    }
    RETURN_IF_ERROR(persist());
    if (fail.count(parent)) return absl::InternalError(req.where + ": create child: File exists");
    state::AttachResult r;
    r.netns = req.netns_path;
    r.ifname = req.config.interface.name.value_or("net1");
    r.mac = req.child->mac;
    children[r.netns + "/" + r.ifname] = parent;
    child_calls++;
    last_config = req.config;
    return r;
  }
  absl::Status DetachChild(const std::string& netns, const std::string& pod_ifname,
                           const state::ChildPlan&, const std::string&) override {
    children.erase(netns + "/" + pod_ifname);
    child_detach_calls++;
    return absl::OkStatus();
  }
  absl::StatusOr<bool> IsAttached(const std::string& netns, const std::string& ifname) override {
    if (children.count(netns + "/" + ifname)) return true;
    for (const auto& [id, ns] : where) {
      if (ns == netns && (ifname == id || ifname == "net-" + id)) return true;
    }
    return false;
  }
  absl::StatusOr<bool> OnHost(const state::DeviceIdentity& id) override {
    return where.count(id.ifname) == 0 && moved_by_cni.count(id.ifname) == 0 &&
           destroyed.count(id.ifname) == 0;
  }
  absl::Status CheckDevice(const state::DeviceIdentity&, const config::NetworkConfig&) override {
    return absl::OkStatus();  // Prepare's check; the NRI side never calls it
  }
  absl::StatusOr<std::optional<state::AttachResult>> FindInPod(
      const std::string& netns, const state::DeviceIdentity& id) override {
    auto it = moved_by_cni.find(id.ifname);
    if (it == moved_by_cni.end() || it->second.first != netns) {
      return std::optional<state::AttachResult>();
    }
    state::AttachResult r;
    r.netns = netns;
    r.ifname = it->second.second;
    r.mac = id.mac;
    return std::optional<state::AttachResult>(r);
  }
  absl::StatusOr<state::HostSnapshot> Snapshot(const state::DeviceIdentity& id) override {
    absl::StatusOr<bool> home = OnHost(id);
    if (!*home) return absl::NotFoundError(id.ifname + " not found on the host");
    state::HostSnapshot snap;
    snap.ifname = id.ifname;
    snap.mtu = 1500;
    snap.up = true;
    return snap;
  }
  absl::Status Restore(const state::DeviceIdentity& id, const state::HostSnapshot& host) override {
    absl::StatusOr<bool> home = OnHost(id);
    if (!*home) return absl::NotFoundError(id.ifname + " is not on the host");
    restored.push_back(host.ifname);
    return absl::OkStatus();
  }
  absl::StatusOr<state::HostSnapshot> TakeVf(
      const state::DeviceIdentity&, const config::SriovConfig&,
      const std::function<absl::Status(const state::HostSnapshot&)>&) override {
    return absl::UnimplementedError("Prepare's step; the NRI side never calls it");
  }

  std::map<std::string, std::string> where;  // host ifname -> netns it is in
  // host ifname -> {netns, in-pod name}: moved there by the pod's CNI (Multus), not by knd.
  std::map<std::string, std::pair<std::string, std::string>> moved_by_cni;
  std::vector<std::string> restored;  // Restore() calls, by snapshot name
  std::set<std::string> fail, destroyed;
  std::map<std::string, std::string> children;  // "netns/in-pod name" -> parent ifname
  std::set<std::string> gone;                   // parents that disappeared from the host
  int child_calls = 0, child_detach_calls = 0;
  std::map<std::string, std::chrono::milliseconds> delay;  // a slow move, by host ifname
  config::NetworkConfig last_config;
  int attach_calls = 0, detach_calls = 0;
  std::string last_detach_netns;
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

// A VF that Prepare bound to vfio-pci has no netdev: the hook records it in the pod without the
// attacher, a repeated hook changes nothing, and the pod's stop leaves it bound (Unprepare gives
// it back).
TEST_F(PodNetworkNsTest, AVfOnVfioPciIsRecordedNotMoved) {
  AddPlan("c1", "p1", {"vf0"});
  {
    state::ClaimPlan p = *store_->Get("c1");
    p.devices[0].vfio = state::VfioPlan{"igbvf", "12", {"/dev/vfio/vfio", "/dev/vfio/12"}};
    ASSERT_TRUE(store_->Put(p).ok());
  }
  PodNetwork pn(*store_, att_);
  ASSERT_TRUE(pn.Attach(Pod("p1")).ok());
  state::DevicePlan d = store_->Get("c1")->devices[0];
  EXPECT_EQ(d.state, DeviceState::kAttached);
  EXPECT_EQ(d.pod_uid, "p1");
  ASSERT_TRUE(d.result.has_value());
  EXPECT_EQ(d.result->netns, ns_->path());
  EXPECT_EQ(d.result->ifname, "") << "no interface in the pod";
  ASSERT_TRUE(pn.Attach(Pod("p1")).ok());
  EXPECT_EQ(att_.attach_calls, 0);
  ASSERT_TRUE(pn.Detach(Pod("p1")).ok());
  d = store_->Get("c1")->devices[0];
  EXPECT_EQ(d.state, DeviceState::kDetached);
  EXPECT_EQ(d.note, "stays on vfio-pci until the claim is unprepared");
  EXPECT_EQ(att_.detach_calls, 0);
  ASSERT_TRUE(d.vfio.has_value());
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

TEST_F(PodNetworkNsTest, NoDeviceIsStartedOnceTheHookBudgetIsSpent) {
  AddPlan("c1", "p1", {"eth1", "eth2"});
  // Moving eth1 takes longer than 70% of the runtime's 1 s: eth2 must not be started, and
  // eth1 goes back, so the pod fails whole instead of the runtime dropping the hook.
  att_.delay["eth1"] = std::chrono::milliseconds(800);
  PodNetwork pn(*store_, att_);
  pn.SetRuntimeTimeout(std::chrono::milliseconds(1000));
  absl::Status st = pn.Attach(Pod("p1"));
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), absl::StatusCode::kDeadlineExceeded) << st;
  EXPECT_NE(st.message().find("device eth2: not attached"), std::string::npos) << st;
  EXPECT_NE(st.message().find("1000 ms"), std::string::npos) << st;
  EXPECT_EQ(att_.attach_calls, 1) << "eth2 was never started";
  EXPECT_TRUE(att_.where.empty()) << "eth1 must be given back";
  EXPECT_NE(StateOf("c1", 0), DeviceState::kAttached);
  EXPECT_EQ(StateOf("c1", 1), DeviceState::kPrepared);
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

TEST_F(PodNetworkNsTest, ReconcileAttachesARunningPodTheRuntimeStartedWithoutKnd) {
  AddPlan("c1", "p1", {"eth1"});
  PodNetwork pn(*store_, att_);
  // knd was not connected when the sandbox was created: Synchronize lists it running.
  ASSERT_TRUE(pn.Reconcile({Pod("p1")}).ok());
  EXPECT_EQ(StateOf("c1", 0), DeviceState::kAttached);
  EXPECT_EQ(att_.where["eth1"], ns_->path());
  // Idempotent: a later reconcile changes nothing.
  ASSERT_TRUE(pn.Reconcile({Pod("p1")}).ok());
  EXPECT_EQ(att_.attach_calls, 1);
}

TEST_F(PodNetworkNsTest, APodStartedAfterSynchronizeKeepsItsDevicesThroughTheReconcile) {
  AddPlan("c1", "p1", {"eth1"});
  PodNetwork pn(*store_, att_);
  // Synchronize: the runtime runs no pod yet. Before the reconcile gets going, the runtime
  // starts p1 and knd's RunPodSandbox hook attaches its device.
  pn.BeginReconcile();
  ASSERT_TRUE(pn.Attach(Pod("p1")).ok());
  ASSERT_EQ(StateOf("c1", 0), DeviceState::kAttached);
  // The snapshot says p1 is not running; the hook knows better.
  ASSERT_TRUE(pn.Reconcile({}).ok());
  EXPECT_EQ(StateOf("c1", 0), DeviceState::kAttached) << "the reconcile undid a newer hook";
  EXPECT_EQ(att_.where["eth1"], ns_->path());
  EXPECT_EQ(att_.detach_calls, 0);
  // Once the reconcile is over, hooks are not tracked: the next one does not skip p1.
  ASSERT_TRUE(pn.Reconcile({}).ok());
  EXPECT_EQ(StateOf("c1", 0), DeviceState::kDetached);
}

TEST_F(PodNetworkNsTest, AStopThatComesWhileTheReconcileRunsWinsOverTheSnapshot) {
  AddPlan("c1", "p1", {"eth1"});
  AddPlan("c2", "p2", {"eth2"});
  PodNetwork pn(*store_, att_);
  // Synchronize lists p1 and p2 running without their devices: the reconcile attaches them
  // late. Between the snapshot and the reconcile's turn for p1 (just before it takes p1's
  // lock), the runtime stops p1.
  std::vector<std::string> order;
  pn.SetReconcilePodHookForTest([&](const std::string& uid) {
    order.push_back(uid);
    if (uid == "p1") {
      ASSERT_TRUE(pn.Detach(Pod("p1")).ok());  // StopPodSandbox
    }
  });
  ASSERT_TRUE(pn.Reconcile({Pod("p1"), Pod("p2")}).ok());
  EXPECT_EQ(order, (std::vector<std::string>{"p1", "p2"}));
  EXPECT_EQ(att_.where.count("eth1"), 0u) << "attached into a stopped pod from a stale snapshot";
  EXPECT_EQ(StateOf("c1", 0), DeviceState::kPrepared);
  // p2 had no hook: reconciled as before.
  EXPECT_EQ(StateOf("c2", 0), DeviceState::kAttached);
  EXPECT_EQ(att_.attach_calls, 1);
}

TEST_F(PodNetworkNsTest, ANetnsDeletedWithoutAHookIsHeldAndItsDevicesReturned) {
  AddPlan("c1", "p1", {"eth1"});
  PodNetwork pn(*store_, att_);
  auto pod_ns = netns::ScopedNetns::Create("knd-podnet-held");
  ASSERT_TRUE(pod_ns.ok()) << pod_ns.status();
  auto owned = std::make_unique<netns::ScopedNetns>(std::move(*pod_ns));
  const std::string path = owned->path();
  ASSERT_TRUE(pn.Attach({"p1", "ns", "pod-p1", path}).ok());
  EXPECT_EQ(pn.held_netns(), 1u);
  ASSERT_TRUE(pn.ReleaseOrphans().ok());
  EXPECT_EQ(att_.detach_calls, 0) << "a netns that is still there is not an orphan";
  // The runtime deletes the netns (unmount + unlink) and sends no StopPodSandbox.
  owned.reset();
  ASSERT_FALSE(std::filesystem::exists(path));
  ASSERT_TRUE(pn.ReleaseOrphans().ok());
  EXPECT_EQ(att_.detach_calls, 1);
  EXPECT_EQ(att_.last_detach_netns.rfind("/proc/", 0), 0u)
      << "detached through the held namespace: " << att_.last_detach_netns;
  EXPECT_EQ(StateOf("c1", 0), DeviceState::kDetached);
  EXPECT_EQ(pn.held_netns(), 0u);
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

// ---- CNI devices and IPAM ---------------------------------------------------------------

// A fake CNI plugin: logs "<cmd> <container id> <netns> <ifname> <args>" and its stdin, answers
// ADD with one address, fails ADD while <bin>/fail exists, sleeps in ADD for the seconds in
// <bin>/slow.
constexpr char kFakeCni[] = R"SH(#!/bin/sh
here=$(dirname "$0")
in=$(cat)
echo "$CNI_COMMAND $CNI_CONTAINERID [$CNI_NETNS] $CNI_IFNAME $CNI_ARGS" >> "$here/log"
printf '%s\n' "$in" >> "$here/stdin"
if [ "$CNI_COMMAND" = ADD ]; then
  if [ -e "$here/slow" ]; then sleep "$(cat "$here/slow")"; fi
  if [ -e "$here/fail" ]; then
    echo '{"cniVersion":"1.0.0","code":7,"msg":"no such master","details":"eth9"}'
    exit 1
  fi
  echo "{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"$CNI_IFNAME\",\"mac\":\"02:00:00:00:00:42\",\"sandbox\":\"$CNI_NETNS\"}],\"ips\":[{\"address\":\"10.5.0.7/24\",\"interface\":0}]}"
fi
)SH";

class Recorder : public AttachObserver {
 public:
  void Attached(const PodInfo& pod, const state::ClaimPlan&,
                const state::DevicePlan& dev) override {
    events.push_back("attached " + pod.uid + " " + dev.device + " " +
                     (dev.result ? dev.result->ifname : "?"));
  }
  void Detached(const PodInfo& pod, const state::ClaimPlan&,
                const state::DevicePlan& dev) override {
    events.push_back("detached " + pod.uid + " " + pod.name + " " + dev.device);
  }
  void AttachFailed(const PodInfo& pod, const state::ClaimPlan&, const state::DevicePlan& dev,
                    const absl::Status& error) override {
    events.push_back("failed " + pod.uid + " " + dev.device + " " + std::string(error.message()));
  }
  std::vector<std::string> events;
};

// ---- one device, one pod; Multus; claims taken over by a later pod ------------------------

// Two pod netns: a device must never go from one running pod to the other.
class PodNetworkTwoPodsTest : public PodNetworkNsTest {
 protected:
  void SetUp() override {
    PodNetworkNsTest::SetUp();
    if (IsSkipped()) return;
    auto ns = netns::ScopedNetns::Create("knd-podnet2");
    ASSERT_TRUE(ns.ok()) << ns.status();
    ns2_ = std::make_unique<netns::ScopedNetns>(std::move(*ns));
  }
  PodInfo Pod2(const std::string& uid) { return {uid, "ns", "pod-" + uid, ns2_->path()}; }
  std::unique_ptr<netns::ScopedNetns> ns2_;
};

TEST_F(PodNetworkTwoPodsTest, ADeviceIsNeverTakenOutOfAnotherPod) {
  // A plan of an older knd (or hand-made) that lists two pods for one claim.
  AddPlan("c1", "p1", {"eth1"});
  ASSERT_TRUE(store_
                  ->Update("c1",
                           [](state::ClaimPlan& p) {
                             p.pods.push_back({"p2", "ns", "pod-p2"});
                             return absl::OkStatus();
                           })
                  .ok());
  PodNetwork pn(*store_, att_);
  ASSERT_TRUE(pn.Attach(Pod("p1")).ok());
  absl::Status st = pn.Attach(Pod2("p2"));
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(st)) << st;
  EXPECT_NE(st.message().find("pod ns/pod-p2 claim ns/c1 device eth1: the device is in pod "
                              "ns/pod-p1: a network device is in one pod at a time"),
            std::string::npos)
      << st;
  EXPECT_EQ(att_.where["eth1"], ns_->path()) << "p1 keeps its NIC";
  EXPECT_EQ(att_.detach_calls, 0);
  EXPECT_EQ(store_->Get("c1")->devices[0].pod_uid, "p1");
}

TEST_F(PodNetworkTwoPodsTest, LaterPodTakesOverAClaimPreparedForAnEarlierOneOnceItIsFree) {
  // The kubelet prepares a claim once per node: a second pod of the same claim gets no Prepare.
  AddPlan("c1", "p1", {"eth1"});
  PodNetwork pn(*store_, att_);
  std::string api_uid = "c1";
  int uid_reads = 0;
  pn.SetClaimLookup(
      [](const PodInfo& pod) -> std::optional<std::vector<std::string>> {
        if (pod.uid == "p2") return std::vector<std::string>{"c1"};
        return std::nullopt;
      },
      [&](const std::string& ns, const std::string& name) -> absl::StatusOr<std::string> {
        ++uid_reads;
        EXPECT_EQ(ns + "/" + name, "ns/c1");
        return api_uid;
      });
  ASSERT_TRUE(pn.Attach(Pod("p1")).ok());
  // p1 still has it: p2 is refused, p1 keeps it.
  absl::Status st = pn.Attach(Pod2("p2"));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("claim ns/c1 device eth1 is in pod ns/pod-p1"), std::string::npos)
      << st;
  EXPECT_EQ(att_.where["eth1"], ns_->path());
  // p1 stops: p2 takes the claim over and gets the device.
  ASSERT_TRUE(pn.Detach(Pod("p1")).ok());
  ASSERT_TRUE(pn.Attach(Pod2("p2")).ok());
  EXPECT_EQ(att_.where["eth1"], ns2_->path());
  auto plan = store_->Get("c1");
  ASSERT_EQ(plan->pods.size(), 2u);
  EXPECT_EQ(plan->pods[1].uid, "p2");
  EXPECT_EQ(plan->devices[0].pod_uid, "p2");
  EXPECT_EQ(uid_reads, 2);
}

TEST_F(PodNetworkTwoPodsTest, AnOlderClaimOfTheSameNameIsNotTakenOver) {
  AddPlan("c1", "p1", {"eth1"});  // claim ns/c1 as it was (uid "c1"), not unprepared yet
  PodNetwork pn(*store_, att_);
  pn.SetClaimLookup(
      [](const PodInfo&) -> std::optional<std::vector<std::string>> {
        return std::vector<std::string>{"c1"};
      },
      [](const std::string&, const std::string&) -> absl::StatusOr<std::string> {
        return std::string("c1-recreated");  // the claim ns/c1 that pod p2 uses is another one
      });
  ASSERT_TRUE(pn.Attach(Pod2("p2")).ok());
  EXPECT_EQ(att_.attach_calls, 0);
  EXPECT_EQ(store_->Get("c1")->pods.size(), 1u);
}

TEST_F(PodNetworkNsTest, DeviceMovedInByMultusIsRecordedNotMovedAndLeftToMultus) {
  AddPlan("c1", "p1", {"eth1"});
  ASSERT_TRUE(store_
                  ->Update("c1",
                           [](state::ClaimPlan& p) {
                             config::NetworkConfig cfg;
                             cfg.attached_by = config::AttachedBy::kMultus;
                             p.devices[0].config = config::ToJson(cfg);
                             return absl::OkStatus();
                           })
                  .ok());
  PodNetwork pn(*store_, att_);
  Recorder rec;
  pn.SetObserver(&rec);
  // Multus ran in the runtime's CNI step, before RunPodSandbox: the device is there as net1.
  att_.moved_by_cni["eth1"] = {ns_->path(), "net1"};
  ASSERT_TRUE(pn.Attach(Pod("p1")).ok());
  EXPECT_EQ(att_.attach_calls, 0) << "knd does not move it a second time";
  auto d = store_->Get("c1")->devices[0];
  EXPECT_EQ(d.state, DeviceState::kAttached);
  EXPECT_EQ(d.attached_by, state::kAttachedByMultus);
  EXPECT_EQ(d.result->ifname, "net1");
  EXPECT_FALSE(d.host.has_value());
  // A repeated hook changes nothing; StopPodSandbox leaves the device to Multus's CNI DEL.
  ASSERT_TRUE(pn.Attach(Pod("p1")).ok());
  ASSERT_TRUE(pn.Detach(Pod("p1")).ok());
  EXPECT_EQ(att_.detach_calls, 0);
  d = store_->Get("c1")->devices[0];
  EXPECT_EQ(d.state, DeviceState::kDetached);
  EXPECT_NE(d.note.find("left to Multus"), std::string::npos) << d.note;
  EXPECT_EQ(rec.events.front(), "attached p1 eth1 net1");
}

TEST_F(PodNetworkNsTest, MultusDeviceLeftOnTheHostFailsThePodSayingWhatToFix) {
  AddPlan("c1", "p1", {"eth1"});
  ASSERT_TRUE(store_
                  ->Update("c1",
                           [](state::ClaimPlan& p) {
                             p.devices[0].config = nlohmann::json::parse(
                                 R"({"apiVersion": "knd.k8s.cni.cncf.io/v1alpha1",
                                     "kind": "NetworkConfig", "attachedBy": "multus"})");
                             return absl::OkStatus();
                           })
                  .ok());
  PodNetwork pn(*store_, att_);
  absl::Status st = pn.Attach(Pod("p1"));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("the device is still on the host after the pod's CNI ran: Multus "
                              "did not hand it to a NAD"),
            std::string::npos)
      << st;
  EXPECT_EQ(att_.attach_calls, 0);
  EXPECT_EQ(StateOf("c1", 0), DeviceState::kPrepared);
}

TEST_F(PodNetworkNsTest, NativeDeviceAlreadyMovedByTheCniIsRecordedAsMultus) {
  AddPlan("c1", "p1", {"eth1"});
  PodNetwork pn(*store_, att_);
  att_.moved_by_cni["eth1"] = {ns_->path(), "net1"};
  ASSERT_TRUE(pn.Attach(Pod("p1")).ok());
  auto d = store_->Get("c1")->devices[0];
  EXPECT_EQ(d.state, DeviceState::kAttached);
  EXPECT_EQ(d.attached_by, state::kAttachedByMultus);
  EXPECT_EQ(d.result->ifname, "net1");
}

TEST_F(PodNetworkNsTest, AStaleCopyOfAPlanNeverDetachesTwice) {
  AddPlan("c1", "p1", {"eth1"});
  PodNetwork pn(*store_, att_);
  ASSERT_TRUE(pn.Attach(Pod("p1")).ok());
  const state::ClaimPlan stale = *store_->Get("c1");  // Unprepare read it before the handover
  ASSERT_TRUE(pn.ReleaseDevice(stale, 0).ok());       // Prepare of the next claim took it back
  EXPECT_EQ(att_.detach_calls, 1);
  ASSERT_TRUE(pn.DetachClaim(stale).ok());
  ASSERT_TRUE(pn.Detach(Pod("p1")).ok());
  EXPECT_EQ(att_.detach_calls, 1) << "given back once";
  EXPECT_EQ(StateOf("c1", 0), DeviceState::kDetached);
}

class PodNetworkCniTest : public PodNetworkNsTest {
 protected:
  void SetUp() override {
    PodNetworkNsTest::SetUp();
    if (IsSkipped()) return;
    bin_ = dir_ + "-bin";
    std::filesystem::create_directories(bin_);
    std::ofstream(bin_ + "/fakecni") << kFakeCni;
    ::chmod((bin_ + "/fakecni").c_str(), 0755);
    cni::ExecutorOptions o;
    o.bin_dirs = {bin_};
    o.cache_dir = dir_ + "-cache";
    exec_ = std::make_unique<cni::Executor>(o);
  }
  void TearDown() override {
    std::filesystem::remove_all(bin_);
    std::filesystem::remove_all(dir_ + "-cache");
    PodNetworkNsTest::TearDown();
  }
  // Claim `claim` for pod `pod_uid` with one CNI device (host eth1, in-pod net1).
  void AddCniPlan(const std::string& claim, const std::string& pod_uid) {
    AddPlan(claim, pod_uid, {"eth1"});
    ASSERT_TRUE(store_
                    ->Update(claim,
                             [](state::ClaimPlan& p) {
                               config::NetworkConfig cfg;
                               cfg.interface.name = "net1";
                               cfg.cni = config::CniConfig{};
                               cfg.cni->config =
                                   nlohmann::json::parse(R"({"cniVersion": "1.0.0", "name": "nad-a",
          "knd.k8s.cni.cncf.io/networkAttachment": "ns/nad-a",
          "plugins": [{"type": "fakecni", "capabilities": {"deviceID": true}}]})");
                               p.devices[0].config = config::ToJson(cfg);
                               return absl::OkStatus();
                             })
                    .ok());
  }
  std::vector<std::string> Log() {
    std::vector<std::string> out;
    std::ifstream f(bin_ + "/log");
    for (std::string line; std::getline(f, line);) out.push_back(line);
    return out;
  }
  PodInfo CniPod(const std::string& uid) {
    PodInfo p = Pod(uid);
    p.sandbox_id = "sandbox-" + uid;
    return p;
  }
  std::string bin_;
  std::unique_ptr<cni::Executor> exec_;
};

TEST_F(PodNetworkCniTest, AttachRunsAddAndDetachRunsDel) {
  AddCniPlan("c1", "p1");
  PodNetwork pn(*store_, att_, exec_.get());
  Recorder rec;
  pn.SetObserver(&rec);
  ASSERT_TRUE(pn.Attach(CniPod("p1")).ok());
  const std::string id = cni::AttachmentContainerId("p1", "c1", "nic");
  ASSERT_EQ(Log().size(), 1u);
  EXPECT_EQ(Log()[0], "ADD " + id + " [" + ns_->path() +
                          "] net1 IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=pod-p1;"
                          "K8S_POD_INFRA_CONTAINER_ID=sandbox-p1;K8S_POD_UID=p1");
  auto stdin_text = ReadFile(bin_ + "/stdin");
  ASSERT_TRUE(stdin_text.ok());
  auto in = nlohmann::json::parse(*stdin_text);
  EXPECT_EQ(in["deviceID"], "eth1");  // the device handed over the Multus way
  EXPECT_EQ(in["runtimeConfig"]["deviceID"], "eth1");
  EXPECT_EQ(att_.attach_calls, 0) << "a CNI device is not moved natively";
  auto plan = store_->Get("c1");
  const auto& d = plan->devices[0];
  EXPECT_EQ(d.state, DeviceState::kAttached);
  ASSERT_TRUE(d.result.has_value());
  EXPECT_EQ(d.result->ifname, "net1");
  EXPECT_EQ(d.result->netns, ns_->path());
  EXPECT_EQ(d.result->mac, "02:00:00:00:00:42");
  EXPECT_EQ(d.result->ips, std::vector<std::string>{"10.5.0.7/24"});
  EXPECT_EQ(d.result->cni_result["ips"][0]["address"], "10.5.0.7/24");

  ASSERT_TRUE(pn.Detach(CniPod("p1")).ok());
  ASSERT_EQ(Log().size(), 2u);
  EXPECT_EQ(Log()[1].rfind("DEL " + id + " [" + ns_->path() + "] net1 ", 0), 0u) << Log()[1];
  EXPECT_EQ(StateOf("c1", 0), DeviceState::kDetached);
  EXPECT_EQ(rec.events,
            (std::vector<std::string>{"attached p1 eth1 net1", "detached p1 pod-p1 eth1"}));
  // The host settings from before ADD are put back after DEL (host-device gives a device
  // back down, with the MTU it had in the pod).
  EXPECT_EQ(att_.restored, std::vector<std::string>{"eth1"});
}

TEST_F(PodNetworkCniTest, RepeatedRunPodSandboxDelsBeforeItAddsAgain) {
  AddCniPlan("c1", "p1");
  PodNetwork pn(*store_, att_, exec_.get());
  ASSERT_TRUE(pn.Attach(CniPod("p1")).ok());
  // The fake attacher's IsAttached knows nothing of net1: like a sandbox that lost it.
  ASSERT_TRUE(pn.Attach(CniPod("p1")).ok());
  auto log = Log();
  ASSERT_EQ(log.size(), 3u);
  EXPECT_EQ(log[0].substr(0, 4), "ADD ");
  EXPECT_EQ(log[1].substr(0, 4), "DEL ");
  EXPECT_EQ(log[2].substr(0, 4), "ADD ");
}

TEST_F(PodNetworkCniTest, FailedAddIsFollowedByDelAndNamesEverything) {
  AddCniPlan("c1", "p1");
  std::ofstream(bin_ + "/fail") << "";
  PodNetwork pn(*store_, att_, exec_.get());
  Recorder rec;
  pn.SetObserver(&rec);
  absl::Status st = pn.Attach(CniPod("p1"));
  ASSERT_FALSE(st.ok());
  const std::string msg(st.message());
  EXPECT_NE(msg.find("pod ns/pod-p1 claim ns/c1 device eth1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("CNI plugin \"fakecni\" ADD"), std::string::npos) << msg;
  EXPECT_NE(msg.find("code 7: no such master: eth9"), std::string::npos) << msg;
  auto log = Log();
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[1].substr(0, 4), "DEL ");
  auto plan = store_->Get("c1");
  EXPECT_EQ(plan->devices[0].state, DeviceState::kFailed);
  EXPECT_FALSE(plan->devices[0].result.has_value());
  ASSERT_EQ(rec.events.size(), 1u);
  EXPECT_EQ(rec.events[0].rfind("failed p1 eth1 ", 0), 0u);
}

TEST_F(PodNetworkCniTest, ASlowAddFailsThePodBeforeTheRuntimeGivesUp) {
  AddCniPlan("c1", "p1");
  std::ofstream(bin_ + "/slow") << "5";
  PodNetwork pn(*store_, att_, exec_.get());
  // What containerd said in Configure; the plugin would be dropped past it. The ADD is killed
  // at 70% of it and the DEL after it has until 90% (400 ms here): room for a loaded machine.
  pn.SetRuntimeTimeout(std::chrono::milliseconds(2000));
  Recorder rec;
  pn.SetObserver(&rec);
  absl::Status st = pn.Attach(CniPod("p1"));
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), absl::StatusCode::kDeadlineExceeded) << st;
  const std::string msg(st.message());
  EXPECT_NE(msg.find("pod ns/pod-p1 claim ns/c1 device eth1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("2000 ms"), std::string::npos) << msg;
  EXPECT_NE(msg.find("plugin_request_timeout"), std::string::npos) << msg;
  // The killed ADD was followed by a DEL: nothing is left half attached.
  auto log = Log();
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0].substr(0, 4), "ADD ");
  EXPECT_EQ(log[1].substr(0, 4), "DEL ");
  EXPECT_EQ(StateOf("c1", 0), DeviceState::kFailed);
  ASSERT_EQ(rec.events.size(), 1u);
  EXPECT_EQ(rec.events[0].rfind("failed p1 eth1 ", 0), 0u);
  // The runtime fails the sandbox and the kubelet retries; once the plugin is quick, it works.
  std::filesystem::remove(bin_ + "/slow");
  ASSERT_TRUE(pn.Attach(CniPod("p1")).ok());
  EXPECT_EQ(StateOf("c1", 0), DeviceState::kAttached);
}

TEST_F(PodNetworkCniTest, NetnsDeletedByTheRuntimeIsHeldSoTheDelRunsInIt) {
  AddCniPlan("c1", "p1");
  PodNetwork pn(*store_, att_, exec_.get());
  Recorder rec;
  pn.SetObserver(&rec);
  ASSERT_TRUE(pn.Attach(CniPod("p1")).ok());
  const std::string gone = ns_->path();
  ns_.reset();  // the runtime deleted the netns (CRI-O order), then the pod vanished
  ASSERT_TRUE(pn.Reconcile({}).ok());
  auto log = Log();
  ASSERT_EQ(log.size(), 2u);
  // knd still holds the namespace: the plugins get it, through knd's handle.
  const std::string held = absl::StrCat("/proc/", ::getpid(), "/fd/");
  EXPECT_EQ(log[1].rfind("DEL " + cni::AttachmentContainerId("p1", "c1", "nic") + " [" + held, 0),
            0u)
      << log[1];
  EXPECT_EQ(pn.held_netns(), 0u);
  EXPECT_EQ(StateOf("c1", 0), DeviceState::kDetached);
  // No PodInfo is known in reconcile: the observer gets uid and name from the plan.
  EXPECT_EQ(rec.events.back(), "detached p1 pod-p1 eth1");
}

TEST_F(PodNetworkCniTest, UnresolvedNadOrNoExecutorFailsCleanly) {
  AddCniPlan("c1", "p1");
  PodNetwork no_exec(*store_, att_);
  absl::Status st = no_exec.Attach(CniPod("p1"));
  EXPECT_TRUE(absl::IsFailedPrecondition(st)) << st;
  EXPECT_TRUE(Log().empty());
  ASSERT_TRUE(
      store_
          ->Update("c1",
                   [](state::ClaimPlan& p) {
                     p.devices[0].config["cni"] = {{"networkAttachment", {{"name", "nad-a"}}}};
                     return absl::OkStatus();
                   })
          .ok());
  PodNetwork pn(*store_, att_, exec_.get());
  st = pn.Attach(CniPod("p1"));
  EXPECT_NE(st.message().find("no resolved CNI config"), std::string::npos) << st;
  EXPECT_TRUE(Log().empty());
}

TEST_F(PodNetworkNsTest, IpamResultIsAppliedLikeConfiguredAddresses) {
  AddPlan("c1", "p1", {"eth1"});
  ASSERT_TRUE(store_
                  ->Update("c1",
                           [](state::ClaimPlan& p) {
                             p.devices[0].ipam_result =
                                 nlohmann::json::parse(R"({"cniVersion": "1.0.0",
        "ips": [{"address": "192.0.2.50/24", "gateway": "192.0.2.1"}],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "198.51.100.0/24", "gw": "192.0.2.254"}]})");
                             return absl::OkStatus();
                           })
                  .ok());
  PodNetwork pn(*store_, att_);
  Recorder rec;
  pn.SetObserver(&rec);
  ASSERT_TRUE(pn.Attach(Pod("p1")).ok());
  const auto& cfg = att_.last_config;
  ASSERT_TRUE(cfg.interface.addresses.has_value());
  EXPECT_EQ(*cfg.interface.addresses, std::vector<std::string>{"192.0.2.50/24"});
  ASSERT_TRUE(cfg.routes.has_value());
  ASSERT_EQ(cfg.routes->size(), 2u);
  EXPECT_EQ((*cfg.routes)[0].destination, "0.0.0.0/0");
  EXPECT_EQ((*cfg.routes)[0].gateway, "192.0.2.1");  // the address's gateway
  EXPECT_EQ((*cfg.routes)[1].gateway, "192.0.2.254");
  EXPECT_EQ(rec.events, std::vector<std::string>{"attached p1 eth1 net-eth1"});
}

}  // namespace
}  // namespace knd::nri
