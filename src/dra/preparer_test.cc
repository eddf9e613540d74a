// Unit tests of the Prepare/Unprepare logic with a fake API (canned objects), a real PlanStore in
// a temp dir and a fake inventory.
#include "dra/preparer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "common/file_util.h"
#include "common/status.h"
#include "dra/fake_kube.h"
#include "state/cdi.h"

namespace knd::dra {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kDriver[] = "knd.k8s.cni.cncf.io";
constexpr char kNode[] = "node1";
constexpr char kCfgVersion[] = "knd.k8s.cni.cncf.io/v1alpha1";

std::string ClaimPath(const std::string& ns, const std::string& name) {
  return "/apis/resource.k8s.io/v1/namespaces/" + ns + "/resourceclaims/" + name;
}
std::string PodPath(const std::string& ns, const std::string& name) {
  return "/api/v1/namespaces/" + ns + "/pods/" + name;
}

json NetCfg(json fields) {
  json j = {{"apiVersion", kCfgVersion}, {"kind", "NetworkConfig"}};
  j.update(fields);
  return j;
}

class PreparerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/dra-preparer-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    store_ = std::make_unique<state::PlanStore>(dir_ + "/plans");

    inventory::Device eth1;
    eth1.name = "eth1";
    eth1.ifname = "eth1";
    eth1.ifindex = 7;
    eth1.mac = "02:11:22:33:44:55";
    eth1.perm_mac = "02:11:22:33:44:00";
    eth1.pci_address = "0000:03:00.1";
    devices_["eth1"] = eth1;
    inventory::Device eth2 = eth1;
    eth2.name = eth2.ifname = "eth2";
    eth2.ifindex = 8;
    eth2.pci_address = "0000:03:00.2";
    devices_["eth2"] = eth2;

    opts_.driver_name = kDriver;
    opts_.node_name = kNode;
    opts_.cdi_dir = dir_ + "/cdi";
    opts_.on_unprepare = [this](const state::ClaimPlan& p) {
      unprepared_.push_back(p.claim_uid);
      return hook_status_;
    };
    opts_.on_failure = [this](const ClaimRef& c, const std::string& reason, const absl::Status&) {
      failures_.push_back(c.name + ":" + reason);
    };
    Rebuild();

    // The default fixture: pod team-a/pod-a with claim team-a/claim-a, one device of ours
    // (request "nic/fast", a firstAvailable sub-request) and one of another driver.
    pod_ = {{"apiVersion", "v1"},
            {"kind", "Pod"},
            {"metadata", {{"namespace", "team-a"}, {"name", "pod-a"}, {"uid", "pod-uid-1"}}},
            {"spec", {{"containers", json::array()}}}};
    claim_ = {
        {"apiVersion", "resource.k8s.io/v1"},
        {"kind", "ResourceClaim"},
        {"metadata", {{"namespace", "team-a"}, {"name", "claim-a"}, {"uid", "claim-uid-1"}}},
        {"status",
         {{"allocation",
           {{"devices",
             {{"results",
               {{{"request", "nic/fast"}, {"driver", kDriver}, {"pool", kNode}, {"device", "eth1"}},
                {{"request", "gpu"},
                 {"driver", "gpu.example.com"},
                 {"pool", kNode},
                 {"device", "gpu-0"}}}},
              {"config",
               {{{"source", "FromClass"},
                 {"requests", json::array()},
                 {"opaque",
                  {{"driver", kDriver}, {"parameters", NetCfg({{"interface", {{"mtu", 9000}}}})}}}},
                {{"source", "FromClaim"},
                 {"requests", {"nic"}},
                 {"opaque",
                  {{"driver", kDriver},
                   {"parameters",
                    NetCfg(
                        {{"interface", {{"name", "net-a"}, {"addresses", {"192.0.2.10/24"}}}}})}}}},
                // Another driver's config: would be refused by our strict decoder if taken.
                {{"source", "FromClaim"},
                 {"requests", json::array()},
                 {"opaque", {{"driver", "gpu.example.com"}, {"parameters", {{"sm", 3}}}}}}}}}}}},
          {"reservedFor", {{{"resource", "pods"}, {"name", "pod-a"}, {"uid", "pod-uid-1"}}}}}}};
  }

  void TearDown() override { std::filesystem::remove_all(dir_); }

  // A pod cache that has listed `pods` (the node's pods on the fake API), and a preparer
  // that uses it.
  void UsePodCache(const std::vector<json>& pods) {
    kube_.lists["/api/v1/pods"] = {{"metadata", {{"resourceVersion", "5"}}}, {"items", pods}};
    pod_cache_ = std::make_unique<kube::PodCache>(kube_, kube::PodCacheOptions{kNode});
    pod_cache_->Start();
    for (int i = 0; i < 2000 && !pod_cache_->Synced(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ASSERT_TRUE(pod_cache_->Synced());
    opts_.pods = pod_cache_.get();
    Rebuild();
  }

  // (Re)creates the preparer from opts_.
  void Rebuild() {
    preparer_ = std::make_unique<Preparer>(
        kube_, *store_,
        [this](const std::string& name) -> std::optional<inventory::Device> {
          ++resolves_;
          auto it = devices_.find(name);
          if (it == devices_.end()) return std::nullopt;
          return it->second;
        },
        opts_);
  }

  void Publish() {
    kube_.objects[ClaimPath("team-a", "claim-a")] = claim_;
    kube_.objects[PodPath("team-a", "pod-a")] = pod_;
  }

  // Replaces the claim-level config of our driver with one FromClaim entry.
  void SetClaimConfig(const json& params, const std::string& source = "FromClaim") {
    json& cfg = claim_["status"]["allocation"]["devices"]["config"];
    cfg = json::array({{{"source", source},
                        {"requests", json::array()},
                        {"opaque", {{"driver", kDriver}, {"parameters", params}}}}});
  }

  ClaimRef Ref() const { return ClaimRef{"team-a", "claim-uid-1", "claim-a"}; }

  static std::string NadPath(const std::string& ns, const std::string& name) {
    return "/apis/k8s.cni.cncf.io/v1/namespaces/" + ns + "/network-attachment-definitions/" + name;
  }
  void PublishNad(const std::string& ns, const std::string& name, const std::string& config) {
    kube_.objects[NadPath(ns, name)] = {{"apiVersion", "k8s.cni.cncf.io/v1"},
                                        {"kind", "NetworkAttachmentDefinition"},
                                        {"metadata", {{"namespace", ns}, {"name", name}}},
                                        {"spec", {{"config", config}}}};
  }

  std::string dir_;
  fakes::FakeKube kube_;
  std::unique_ptr<state::PlanStore> store_;
  std::map<std::string, inventory::Device> devices_;
  Preparer::Options opts_;
  std::unique_ptr<kube::PodCache> pod_cache_;  // stopped before the fake API goes
  std::unique_ptr<Preparer> preparer_;
  std::vector<std::string> unprepared_;
  std::vector<std::string> failures_;  // "<claim>:<reason>" told to on_failure
  absl::Status hook_status_;
  int resolves_ = 0;
  json pod_, claim_;
};

TEST_F(PreparerTest, GoodClaimPersistsPlanWithIdentityConfigAndBaseRequestName) {
  Publish();
  auto res = preparer_->Prepare(Ref());
  ASSERT_TRUE(res.ok()) << res.status();
  // Only our device, under the base request name the containers reference.
  ASSERT_EQ(res->size(), 1u);
  EXPECT_THAT((*res)[0].request_names, ElementsAre("nic"));
  EXPECT_EQ((*res)[0].pool, kNode);
  EXPECT_EQ((*res)[0].device, "eth1");
  EXPECT_THAT((*res)[0].cdi_ids, IsEmpty());  // plain netdev: no container edits

  auto plan = store_->Get("claim-uid-1");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->claim_namespace, "team-a");
  EXPECT_EQ(plan->claim_name, "claim-a");
  ASSERT_EQ(plan->pods.size(), 1u);
  EXPECT_EQ(plan->pods[0].uid, "pod-uid-1");
  EXPECT_EQ(plan->pods[0].name, "pod-a");
  ASSERT_EQ(plan->devices.size(), 1u);
  const state::DevicePlan& d = plan->devices[0];
  EXPECT_EQ(d.request, "nic");
  EXPECT_EQ(d.device, "eth1");
  EXPECT_EQ(d.pool, kNode);
  EXPECT_EQ(d.state, state::DeviceState::kPrepared);
  EXPECT_EQ(d.identity.pci_address, "0000:03:00.1");
  EXPECT_EQ(d.identity.perm_mac, "02:11:22:33:44:00");
  EXPECT_EQ(d.identity.mac, "02:11:22:33:44:55");
  EXPECT_EQ(d.identity.ifindex, 7);
  EXPECT_EQ(d.identity.ifname, "eth1");
  // Class config (mtu) merged under claim config (name, addresses).
  EXPECT_EQ(d.config["interface"]["name"], "net-a");
  EXPECT_EQ(d.config["interface"]["mtu"], 9000);
  EXPECT_EQ(d.config["interface"]["addresses"], json({"192.0.2.10/24"}));
}

TEST_F(PreparerTest, RepeatedPrepareReturnsSameAnswerWithoutRereading) {
  Publish();
  auto first = preparer_->Prepare(Ref());
  ASSERT_TRUE(first.ok()) << first.status();
  const int gets = kube_.gets[ClaimPath("team-a", "claim-a")];
  const int resolves = resolves_;
  // Even if the device vanished from the inventory meanwhile, the retry answers from the plan.
  devices_.clear();
  auto second = preparer_->Prepare(Ref());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(*first, *second);
  EXPECT_EQ(kube_.gets[ClaimPath("team-a", "claim-a")], gets);
  EXPECT_EQ(resolves_, resolves);
  EXPECT_EQ(store_->List().size(), 1u);
}

TEST_F(PreparerTest, PodsSeenByThePodCacheAreNotReadFromTheApi) {
  Publish();
  ASSERT_NO_FATAL_FAILURE(UsePodCache({pod_}));
  // The budget of the design: one API read per claim, the claim itself.
  ASSERT_TRUE(preparer_->Prepare(Ref()).ok());
  EXPECT_EQ(kube_.gets[ClaimPath("team-a", "claim-a")], 1);
  EXPECT_EQ(kube_.gets[PodPath("team-a", "pod-a")], 0);
}

TEST_F(PreparerTest, PodCacheMissOrOtherUidFallsBackToTheApi) {
  Publish();
  // The cache saw an earlier pod of that name (the watch trails the re-creation).
  json old = pod_;
  old["metadata"]["uid"] = "pod-uid-0";
  old["spec"]["hostNetwork"] = true;
  ASSERT_NO_FATAL_FAILURE(UsePodCache({old}));
  // The API's pod (the reserved UID, no hostNetwork) decides, not the stale cache entry.
  auto res = preparer_->Prepare(Ref());
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ(kube_.gets[PodPath("team-a", "pod-a")], 1);
}

TEST_F(PreparerTest, HostNetworkPodInThePodCacheIsRefusedWithoutARead) {
  pod_["spec"]["hostNetwork"] = true;
  Publish();
  ASSERT_NO_FATAL_FAILURE(UsePodCache({pod_}));
  auto res = preparer_->Prepare(Ref());
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(res.status().message()), HasSubstr("spec.hostNetwork"));
  EXPECT_EQ(kube_.gets[PodPath("team-a", "pod-a")], 0);
  EXPECT_TRUE(store_->List().empty());
}

TEST_F(PreparerTest, TwoDevicesOfOneRequestBothAnswered) {
  claim_["status"]["allocation"]["devices"]["results"].push_back(
      {{"request", "nic/fast"}, {"driver", kDriver}, {"pool", kNode}, {"device", "eth2"}});
  SetClaimConfig(NetCfg({{"interface", {{"mtu", 1400}}}}));
  Publish();
  auto res = preparer_->Prepare(Ref());
  ASSERT_TRUE(res.ok()) << res.status();
  ASSERT_EQ(res->size(), 2u);
  EXPECT_EQ((*res)[1].device, "eth2");
  EXPECT_THAT((*res)[1].request_names, ElementsAre("nic"));
}

TEST_F(PreparerTest, SubRequestConfigAppliesOnlyToThatSubRequest) {
  json& cfg = claim_["status"]["allocation"]["devices"]["config"];
  cfg = json::array(
      {{{"source", "FromClaim"},
        {"requests", {"nic/slow"}},
        {"opaque",
         {{"driver", kDriver}, {"parameters", NetCfg({{"interface", {{"mtu", 1280}}}})}}}},
       {{"source", "FromClaim"},
        {"requests", {"nic/fast"}},
        {"opaque",
         {{"driver", kDriver}, {"parameters", NetCfg({{"interface", {{"mtu", 9000}}}})}}}}});
  Publish();
  ASSERT_TRUE(preparer_->Prepare(Ref()).ok());
  auto plan = store_->Get("claim-uid-1");
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->devices[0].config["interface"]["mtu"], 9000);  // allocated as "nic/fast"
}

struct BadCase {
  std::string name;
  std::function<void(json& claim, json& pod, ClaimRef& ref)> mutate;
  std::vector<std::string> expect;  // substrings of the error
};

class PreparerBadInputTest : public PreparerTest, public ::testing::WithParamInterface<BadCase> {};

TEST_P(PreparerBadInputTest, RefusedNamingTheProblemAndWritingNothing) {
  ClaimRef ref = Ref();
  GetParam().mutate(claim_, pod_, ref);
  Publish();
  auto res = preparer_->Prepare(ref);
  ASSERT_FALSE(res.ok()) << "accepted: " << GetParam().name;
  const std::string msg(res.status().message());
  RecordProperty("error", msg);  // readable in --gtest_output=xml
  EXPECT_THAT(msg, HasSubstr("claim-a")) << "error must name the claim";
  for (const std::string& e : GetParam().expect) EXPECT_THAT(msg, HasSubstr(e));
  EXPECT_THAT(store_->List(), IsEmpty()) << "a refused claim must not leave a plan";
}

void SetCfg(json& claim, const json& params) {
  claim["status"]["allocation"]["devices"]["config"] =
      json::array({{{"source", "FromClaim"},
                    {"requests", json::array()},
                    {"opaque", {{"driver", kDriver}, {"parameters", params}}}}});
}

INSTANTIATE_TEST_SUITE_P(
    All, PreparerBadInputTest,
    ::testing::Values(
        BadCase{"UidMismatch",
                [](json&, json&, ClaimRef& r) { r.uid = "stale-uid"; },
                {"UID mismatch", "stale-uid", "claim-uid-1", "replaced"}},
        BadCase{"NoAllocation",
                [](json& c, json&, ClaimRef&) { c["status"].erase("allocation"); },
                {"status.allocation"}},
        BadCase{"NotReserved",
                [](json& c, json&, ClaimRef&) { c["status"].erase("reservedFor"); },
                {"reservedFor", "not reserved"}},
        BadCase{
            "ReservedForNonPod",
            [](json& c, json&, ClaimRef&) {
              c["status"]["reservedFor"].push_back(
                  {{"apiGroup", "apps"}, {"resource", "deployments"}, {"name", "d"}, {"uid", "x"}});
            },
            {"reservedFor[1]", "deployments"}},
        BadCase{"HostNetworkPod",
                [](json&, json& p, ClaimRef&) { p["spec"]["hostNetwork"] = true; },
                {"hostNetwork", "pod-a"}},
        BadCase{"ReservedPodReplaced",
                [](json&, json& p, ClaimRef&) { p["metadata"]["uid"] = "other"; },
                {"pod-a", "UID mismatch"}},
        BadCase{"DeviceNotOnNode",
                [](json& c, json&, ClaimRef&) {
                  c["status"]["allocation"]["devices"]["results"][0]["device"] = "eth9";
                },
                {"eth9", "request \"nic\"", "results[0].device"}},
        BadCase{"PoolOfAnotherNode",
                [](json& c, json&, ClaimRef&) {
                  c["status"]["allocation"]["devices"]["results"][0]["pool"] = "node2";
                },
                {"results[0].pool", "node2"}},
        BadCase{"LongInterfaceName",
                [](json& c, json&, ClaimRef&) {
                  SetCfg(c, NetCfg({{"interface", {{"name", "averyveryverylongname"}}}}));
                },
                {"interface.name"}},
        BadCase{"ReservedInterfaceName",
                [](json& c, json&, ClaimRef&) {
                  SetCfg(c, NetCfg({{"interface", {{"name", "lo"}}}}));
                },
                {"interface.name"}},
        BadCase{"BadCidr",
                [](json& c, json&, ClaimRef&) {
                  SetCfg(c, NetCfg({{"interface", {{"addresses", {"192.0.2.300/24"}}}}}));
                },
                {"interface.addresses"}},
        BadCase{"WrongFamilyGateway",
                [](json& c, json&, ClaimRef&) {
                  SetCfg(c, NetCfg({{"interface", {{"addresses", {"192.0.2.10/24"}}}},
                                    {"routes",
                                     {{{"destination", "198.51.100.0/24"},
                                       {"gateway", "2001:db8::1"}}}}}));
                },
                {"gateway"}},
        BadCase{"MtuOutOfRange",
                [](json& c, json&, ClaimRef&) {
                  SetCfg(c, NetCfg({{"interface", {{"mtu", 50}}}}));
                },
                {"interface.mtu"}},
        BadCase{"UnknownField",
                [](json& c, json&, ClaimRef&) {
                  SetCfg(c, NetCfg({{"interface", {{"mtuu", 1500}}}}));
                },
                {"mtuu"}},
        BadCase{"WrongType",
                [](json& c, json&, ClaimRef&) {
                  SetCfg(c, NetCfg({{"interface", {{"mtu", "9000"}}}}));
                },
                {"interface.mtu"}},
        BadCase{"NadOfAnotherNamespaceFromClaim",
                [](json& c, json&, ClaimRef&) {
                  SetCfg(c, NetCfg({{"cni",
                                     {{"networkAttachment",
                                       {{"namespace", "other"}, {"name", "storage"}}}}}}));
                },
                {"namespace"}},
        BadCase{"BadConfigSource",
                [](json& c, json&, ClaimRef&) {
                  c["status"]["allocation"]["devices"]["config"][0]["source"] = "FromElsewhere";
                },
                {"config[0].source", "FromElsewhere"}},
        BadCase{"NoDeviceOfOurs",
                [](json& c, json&, ClaimRef&) {
                  c["status"]["allocation"]["devices"]["results"].erase(0);
                },
                {"no device of driver"}}),
    [](const ::testing::TestParamInfo<BadCase>& i) { return i.param.name; });

TEST_F(PreparerTest, ClaimNotFoundIsAnErrorAndNoPlan) {
  kube_.objects[PodPath("team-a", "pod-a")] = pod_;
  auto res = preparer_->Prepare(Ref());
  ASSERT_FALSE(res.ok());
  EXPECT_TRUE(absl::IsNotFound(res.status())) << res.status();
  EXPECT_THAT(std::string(res.status().message()), HasSubstr("claim team-a/claim-a"));
  EXPECT_THAT(store_->List(), IsEmpty());
}

TEST_F(PreparerTest, FailureHookGetsAReasonAUserCanActOn) {
  Publish();
  ASSERT_TRUE(preparer_->Prepare(Ref()).ok());
  EXPECT_THAT(failures_, IsEmpty()) << "success is not a failure";

  store_->Delete("claim-uid-1").IgnoreError();
  inventory::Device eth1 = devices_["eth1"];
  devices_.erase("eth1");
  EXPECT_FALSE(preparer_->Prepare(Ref()).ok());
  devices_["eth1"] = eth1;
  SetClaimConfig(NetCfg({{"interface", {{"mtu", "big"}}}}));
  Publish();
  EXPECT_FALSE(preparer_->Prepare(Ref()).ok());
  SetClaimConfig(NetCfg({{"cni", {{"networkAttachment", {{"name", "absent"}}}}}}));
  Publish();
  EXPECT_FALSE(preparer_->Prepare(Ref()).ok());
  EXPECT_THAT(failures_, ElementsAre("claim-a:DeviceNotFound", "claim-a:InvalidConfig",
                                     "claim-a:NADNotFound"));
}

TEST_F(PreparerTest, NadOfAnotherNamespaceFromClassIsAllowed) {
  SetClaimConfig(
      NetCfg({{"cni", {{"networkAttachment", {{"namespace", "other"}, {"name", "storage"}}}}}}),
      "FromClass");
  Publish();
  PublishNad("other", "storage",
             R"({"cniVersion": "1.0.0", "name": "storage", "plugins": [{"type": "macvlan"}]})");
  auto res = preparer_->Prepare(Ref());
  ASSERT_TRUE(res.ok()) << res.status();
  auto plan = store_->Get("claim-uid-1");
  ASSERT_TRUE(plan.ok());
  // Resolved for the CNI attach path, which never calls the API.
  const json& cni = plan->devices[0].config["cni"];
  EXPECT_FALSE(cni.contains("networkAttachment"));
  EXPECT_EQ(cni["config"]["plugins"][0]["type"], "macvlan");
  EXPECT_EQ(cni["config"][cni::kNadKey], "other/storage");
}

TEST_F(PreparerTest, NadIsReadOnceAndASinglePluginConfigIsNormalized) {
  claim_["status"]["allocation"]["devices"]["results"].push_back(
      {{"request", "nic"}, {"driver", kDriver}, {"pool", kNode}, {"device", "eth2"}});
  SetClaimConfig(NetCfg({{"cni", {{"networkAttachment", {{"name", "net1"}}}}}}));
  Publish();
  PublishNad("team-a", "net1", R"({"cniVersion": "0.4.0", "name": "net1", "type": "host-device"})");
  // eth1 and eth2 keep their host names in the pod: no clash.
  auto res = preparer_->Prepare(Ref());
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ(kube_.gets[NadPath("team-a", "net1")], 1);
  auto plan = store_->Get("claim-uid-1");
  ASSERT_EQ(plan->devices.size(), 2u);
  for (const auto& d : plan->devices) {
    const json& list = d.config["cni"]["config"];
    EXPECT_EQ(list["name"], "net1");
    EXPECT_EQ(list["cniVersion"], "0.4.0");
    EXPECT_EQ(list["plugins"][0]["type"], "host-device");
  }
}

TEST_F(PreparerTest, MissingOrBrokenNadIsAPerClaimErrorAndNoPlan) {
  SetClaimConfig(NetCfg({{"cni", {{"networkAttachment", {{"name", "storage-net"}}}}}}));
  Publish();
  auto res = preparer_->Prepare(Ref());
  ASSERT_FALSE(res.ok());
  EXPECT_TRUE(absl::IsNotFound(res.status())) << res.status();
  EXPECT_THAT(std::string(res.status().message()),
              HasSubstr("claim team-a/claim-a request \"nic\": NetworkAttachmentDefinition "
                        "team-a/storage-net (cni.networkAttachment) does not exist"));
  EXPECT_THAT(store_->List(), IsEmpty());

  PublishNad("team-a", "storage-net", "");
  res = preparer_->Prepare(Ref());
  ASSERT_FALSE(res.ok());
  EXPECT_THAT(std::string(res.status().message()), HasSubstr("spec.config is empty"));
  PublishNad("team-a", "storage-net", R"({"name": "x", "plugins": [{"type": "../../bin/sh"}]})");
  res = preparer_->Prepare(Ref());
  ASSERT_FALSE(res.ok());
  EXPECT_THAT(
      std::string(res.status().message()),
      HasSubstr("team-a/storage-net (cni.networkAttachment): spec.config: plugins[0].type"));
  EXPECT_THAT(store_->List(), IsEmpty());
}

// IPAM through a fake CNI IPAM plugin that books one address per container id.
constexpr char kFakeIpam[] = R"SH(#!/bin/sh
here=$(dirname "$0")
cat > /dev/null
echo "$CNI_COMMAND $CNI_CONTAINERID $CNI_IFNAME" >> "$here/log"
case "$CNI_COMMAND" in
  VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}' ;;
  ADD)
    if [ -e "$here/fail" ]; then echo '{"code":11,"msg":"range exhausted"}'; exit 1; fi
    touch "$here/lease-$CNI_CONTAINERID"
    echo '{"cniVersion":"1.0.0","ips":[{"address":"192.0.2.77/24","gateway":"192.0.2.1"}]}' ;;
  DEL) rm -f "$here/lease-$CNI_CONTAINERID" ;;
esac
)SH";

class PreparerIpamTest : public PreparerTest {
 protected:
  void SetUp() override {
    PreparerTest::SetUp();
    bin_ = dir_ + "/bin";
    std::filesystem::create_directories(bin_);
    std::ofstream(bin_ + "/fake-ipam") << kFakeIpam;
    ::chmod((bin_ + "/fake-ipam").c_str(), 0755);
    cni::ExecutorOptions o;
    o.bin_dirs = {bin_};
    o.cache_dir = dir_ + "/cni";
    exec_ = std::make_unique<cni::Executor>(o);
    Preparer::Options opts = preparer_->options();
    opts.cni = exec_.get();
    preparer_ = std::make_unique<Preparer>(
        kube_, *store_,
        [this](const std::string& name) -> std::optional<inventory::Device> {
          auto it = devices_.find(name);
          if (it == devices_.end()) return std::nullopt;
          return it->second;
        },
        opts);
    SetClaimConfig(NetCfg({{"interface", {{"name", "net-a"}}},
                           {"ipam", {{"type", "fake-ipam"}, {"subnet", "192.0.2.0/24"}}}}),
                   "FromClass");
  }
  std::vector<std::string> Log() {
    std::vector<std::string> out;
    std::ifstream f(bin_ + "/log");
    for (std::string line; std::getline(f, line);) {
      if (line.rfind("VERSION", 0) != 0) out.push_back(line);
    }
    return out;
  }
  std::string Lease() const {
    return bin_ + "/lease-" + cni::IpamContainerId("claim-uid-1", "eth1");
  }
  std::string bin_;
  std::unique_ptr<cni::Executor> exec_;
};

TEST_F(PreparerIpamTest, PrepareAllocatesOnceAndUnprepareReleases) {
  Publish();
  ASSERT_TRUE(preparer_->Prepare(Ref()).ok());
  auto plan = store_->Get("claim-uid-1");
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->devices[0].ipam_result["ips"][0]["address"], "192.0.2.77/24");
  const std::string id = cni::IpamContainerId("claim-uid-1", "eth1");
  EXPECT_EQ(Log(), std::vector<std::string>{"ADD " + id + " net-a"});
  EXPECT_TRUE(std::filesystem::exists(Lease()));
  // Two Prepares, one address.
  ASSERT_TRUE(preparer_->Prepare(Ref()).ok());
  EXPECT_EQ(Log().size(), 1u);
  // Crash after IPAM but before the plan was written: the cached allocation is reused.
  ASSERT_TRUE(store_->Delete("claim-uid-1").ok());
  ASSERT_TRUE(preparer_->Prepare(Ref()).ok());
  EXPECT_EQ(Log().size(), 1u);
  EXPECT_EQ(store_->Get("claim-uid-1")->devices[0].ipam_result["ips"][0]["address"],
            "192.0.2.77/24");

  ASSERT_TRUE(preparer_->Unprepare(Ref()).ok());
  EXPECT_EQ(Log().back(), "DEL " + id + " net-a");
  EXPECT_FALSE(std::filesystem::exists(Lease()));
  EXPECT_TRUE(absl::IsNotFound(store_->Get("claim-uid-1").status()));
}

// IPAM plugins run as root on the node: a claim's own ipam runs only where the node config
// allows its type (claimCni), and a refused claim runs nothing.
TEST_F(PreparerIpamTest, ClaimIpamRunsOnlyWhereTheNodeAllowsIt) {
  SetClaimConfig(NetCfg({{"interface", {{"name", "net-a"}}},
                         {"ipam", {{"type", "fake-ipam"}, {"subnet", "192.0.2.0/24"}}}}));
  Publish();
  auto res = preparer_->Prepare(Ref());
  ASSERT_FALSE(res.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(res.status())) << res.status();
  EXPECT_THAT(std::string(res.status().message()),
              HasSubstr("ipam: may only be set in a DeviceClass config, not in a claim"));
  EXPECT_THAT(Log(), IsEmpty()) << "nothing ran";
  EXPECT_THAT(store_->List(), IsEmpty());
  Preparer::Options opts = preparer_->options();
  opts.claim_cni = config::ClaimCniPolicy{{}, {"fake-ipam"}};
  preparer_ = std::make_unique<Preparer>(
      kube_, *store_,
      [this](const std::string& name) -> std::optional<inventory::Device> {
        auto it = devices_.find(name);
        if (it == devices_.end()) return std::nullopt;
        return it->second;
      },
      opts);
  ASSERT_TRUE(preparer_->Prepare(Ref()).ok());
  EXPECT_EQ(Log().size(), 1u);
}

TEST_F(PreparerIpamTest, IpamFailureRefusesTheClaimAndLeavesNothing) {
  std::ofstream(bin_ + "/fail") << "";
  Publish();
  auto res = preparer_->Prepare(Ref());
  ASSERT_FALSE(res.ok());
  EXPECT_THAT(std::string(res.status().message()),
              HasSubstr("claim team-a/claim-a request \"nic\" device \"eth1\": ipam"));
  EXPECT_THAT(std::string(res.status().message()), HasSubstr("range exhausted"));
  EXPECT_THAT(store_->List(), IsEmpty());
  EXPECT_FALSE(std::filesystem::exists(Lease()));
}

TEST_F(PreparerIpamTest, UnprepareKeepsThePlanWhenTheReleaseFails) {
  Publish();
  ASSERT_TRUE(preparer_->Prepare(Ref()).ok());
  std::filesystem::remove(bin_ + "/fake-ipam");  // plugin gone: DEL cannot run
  EXPECT_FALSE(preparer_->Unprepare(Ref()).ok());
  EXPECT_TRUE(store_->Get("claim-uid-1").ok()) << "kept for the kubelet's retry";
  std::ofstream(bin_ + "/fake-ipam") << kFakeIpam;
  ::chmod((bin_ + "/fake-ipam").c_str(), 0755);
  ASSERT_TRUE(preparer_->Unprepare(Ref()).ok());
  EXPECT_FALSE(std::filesystem::exists(Lease()));
}

TEST_F(PreparerTest, IpamWithoutAnExecutorIsRefused) {
  SetClaimConfig(NetCfg({{"ipam", {{"type", "host-local"}}}}), "FromClass");
  Publish();
  auto res = preparer_->Prepare(Ref());
  ASSERT_FALSE(res.ok());
  EXPECT_THAT(std::string(res.status().message()), HasSubstr("without a CNI executor"));
  EXPECT_THAT(store_->List(), IsEmpty());
}

TEST_F(PreparerTest, UnprepareCallsHookRemovesPlanAndIsRepeatable) {
  Publish();
  ASSERT_TRUE(preparer_->Prepare(Ref()).ok());
  ASSERT_TRUE(preparer_->Unprepare(Ref()).ok());
  EXPECT_THAT(unprepared_, ElementsAre("claim-uid-1"));
  EXPECT_THAT(store_->List(), IsEmpty());
  // Again: nothing to do, still success, hook not called for a plan that is gone.
  ASSERT_TRUE(preparer_->Unprepare(Ref()).ok());
  EXPECT_THAT(unprepared_, ElementsAre("claim-uid-1"));
}

TEST_F(PreparerTest, UnprepareRemovesTheClaimsCdiSpec) {
  Publish();
  ASSERT_TRUE(preparer_->Prepare(Ref()).ok());
  auto ids = state::WriteClaimSpec(dir_ + "/cdi", kCdiKind, "claim-uid-1",
                                   {state::CdiDevice{"rdma", {{"env", {"A=1"}}}}});
  ASSERT_TRUE(ids.ok()) << ids.status();
  auto files = [&] {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir_ + "/cdi"))
      n += e.is_regular_file();
    return n;
  };
  ASSERT_EQ(files(), 1);
  ASSERT_TRUE(preparer_->Unprepare(Ref()).ok());
  EXPECT_EQ(files(), 0);
}

TEST_F(PreparerTest, NetnsGuardHookInTheClaimsCdiSpec) {
  opts_.netns_guard = "/var/lib/knd/bin/knd-netns-guard";
  Rebuild();
  claim_["status"]["allocation"]["devices"]["results"].push_back(
      {{"request", "nic/fast"}, {"driver", kDriver}, {"pool", kNode}, {"device", "eth2"}});
  SetClaimConfig(NetCfg({{"interface", {{"mtu", 1400}}}}));  // no names: host names in the pod
  Publish();
  auto res = preparer_->Prepare(Ref());
  ASSERT_TRUE(res.ok()) << res.status();
  // Every device of the claim hands out the claim's one CDI device.
  const std::string id = "knd.k8s.cni.cncf.io/net=claim-uid-1-netns";
  ASSERT_EQ(res->size(), 2u);
  EXPECT_THAT((*res)[0].cdi_ids, ElementsAre(id));
  EXPECT_THAT((*res)[1].cdi_ids, ElementsAre(id));
  auto text = ReadFile(dir_ + "/cdi/knd.k8s.cni.cncf.io-net_claim-uid-1.json");
  ASSERT_TRUE(text.ok()) << text.status();
  json spec = json::parse(*text);
  EXPECT_EQ(spec["kind"], "knd.k8s.cni.cncf.io/net");
  ASSERT_EQ(spec["devices"].size(), 1u);
  EXPECT_EQ(spec["devices"][0]["name"], "claim-uid-1-netns");
  const json& hook = spec["devices"][0]["containerEdits"]["hooks"][0];
  EXPECT_EQ(hook["hookName"], "createRuntime");
  EXPECT_EQ(hook["path"], "/var/lib/knd/bin/knd-netns-guard");
  // Each interface by its in-pod name, or by the MAC it has on the host (moved there by the
  // pod's CNI under another name).
  EXPECT_EQ(hook["args"],
            json({"knd-netns-guard", "--claim", "team-a/claim-a", "--ifname", "eth1", "--mac",
                  "02:11:22:33:44:55", "--ifname", "eth2", "--mac", "02:11:22:33:44:55"}));
  // A retry answers the same ids from the plan; Unprepare removes the spec.
  auto again = preparer_->Prepare(Ref());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *res);
  ASSERT_TRUE(preparer_->Unprepare(Ref()).ok());
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/cdi/knd.k8s.cni.cncf.io-net_claim-uid-1.json"));
  // A crash after the spec and before the plan leaves a spec alone; Unprepare still takes it.
  ASSERT_TRUE(state::WriteClaimSpec(dir_ + "/cdi", kCdiKind, "claim-uid-1",
                                    {state::CdiDevice{"netns", {{"env", {"A=1"}}}}})
                  .ok());
  ASSERT_TRUE(preparer_->Unprepare(Ref()).ok());
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/cdi/knd.k8s.cni.cncf.io-net_claim-uid-1.json"));
}

// sriov settings (from a DeviceClass) on a device that is not a VF are refused in Prepare.
TEST_F(PreparerTest, SriovSettingsOnANonVfAreRefused) {
  Rebuild();
  SetClaimConfig(NetCfg({{"sriov", {{"vlan", 100}}}}), "FromClass");
  Publish();
  auto res = preparer_->Prepare(Ref());
  ASSERT_FALSE(res.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(res.status())) << res.status();
  EXPECT_THAT(std::string(res.status().message()),
              HasSubstr("sriov: device \"eth1\" is not an SR-IOV VF"));
  devices_["eth1"].is_sriov_vf = true;
  Rebuild();
  EXPECT_TRUE(preparer_->Prepare(Ref()).ok());
}

// ---- VFs for userspace drivers: sriov.driver vfio-pci -----------------------------------

class PreparerVfioTest : public PreparerTest {
 protected:
  void SetUp() override {
    PreparerTest::SetUp();
    devices_["eth1"].is_sriov_vf = true;
    devices_["eth1"].driver = "igbvf";
    opts_.netns_guard = "/var/lib/knd/bin/knd-netns-guard";
    opts_.vfio.check = [this](const std::string& pci) {
      checked_.push_back(pci);
      return check_status_;
    };
    opts_.vfio.bind = [this](const state::DevicePlan& d, const config::SriovConfig& sriov,
                             const std::function<absl::Status(const state::HostSnapshot&)>& persist)
        -> absl::StatusOr<state::VfioPlan> {
      // What the plan on disk says at each step: the kernel driver before anything changes,
      // the host snapshot before the VF leaves it.
      absl::StatusOr<state::ClaimPlan> before = store_->Get("claim-uid-1");
      EXPECT_TRUE(before.ok() && before->devices[0].vfio &&
                  before->devices[0].vfio->kernel_driver == "igbvf")
          << "the plan is on disk before the bind";
      bound_sriov_ = sriov;
      state::HostSnapshot snap;
      snap.ifname = d.identity.ifname;
      RETURN_IF_ERROR(persist(snap));
      absl::StatusOr<state::ClaimPlan> after = store_->Get("claim-uid-1");
      EXPECT_TRUE(after.ok() && after->devices[0].host && after->devices[0].host->ifname == "eth1")
          << "the host snapshot is on disk before the VF leaves its driver";
      ++binds_;
      if (!bind_status_.ok()) return bind_status_;
      state::VfioPlan v = *d.vfio;
      v.group = "12";
      v.device_nodes = {"/dev/vfio/vfio", "/dev/vfio/12"};
      return v;
    };
    opts_.vfio.give_back = [this](const state::DevicePlan& d) {
      given_back_.push_back(d.identity.pci_address + " to " + d.vfio->kernel_driver);
      return give_back_status_;
    };
    Rebuild();
    SetClaimConfig(NetCfg({{"sriov", {{"driver", "vfio-pci"}, {"vlan", 100}}}}), "FromClass");
  }

  json Spec() {
    absl::StatusOr<std::string> text =
        ReadFile(dir_ + "/cdi/knd.k8s.cni.cncf.io-net_claim-uid-1.json");
    EXPECT_TRUE(text.ok()) << text.status();
    return text.ok() ? json::parse(*text) : json();
  }

  std::vector<std::string> checked_, given_back_;
  absl::Status check_status_, bind_status_, give_back_status_;
  std::optional<config::SriovConfig> bound_sriov_;
  int binds_ = 0;
};

TEST_F(PreparerVfioTest, TheVfIsBoundAndTheContainersGetItsGroupAndAddress) {
  Publish();
  auto res = preparer_->Prepare(Ref());
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_THAT(checked_, ElementsAre("0000:03:00.1"));
  EXPECT_EQ(binds_, 1);
  ASSERT_TRUE(bound_sriov_.has_value());
  EXPECT_EQ(bound_sriov_->vlan, 100u) << "the PF's settings go with the bind";
  // No interface in the pod: no netns guard, only the VFIO device.
  EXPECT_THAT((*res)[0].cdi_ids, ElementsAre("knd.k8s.cni.cncf.io/net=claim-uid-1-vfio"));
  json spec = Spec();
  ASSERT_EQ(spec["devices"].size(), 1u);
  EXPECT_EQ(spec["devices"][0]["containerEdits"],
            json({{"deviceNodes",
                   {{{"path", "/dev/vfio/vfio"}, {"permissions", "rw"}},
                    {{"path", "/dev/vfio/12"}, {"permissions", "rw"}}}},
                  {"env", {"KND_PCI_ADDRESS_NIC=0000:03:00.1"}}}));
  auto plan = store_->Get("claim-uid-1");
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_TRUE(plan->devices[0].vfio.has_value());
  EXPECT_EQ(plan->devices[0].vfio->group, "12");
  EXPECT_EQ(plan->devices[0].vfio->kernel_driver, "igbvf");

  // A repeated Prepare answers from the plan and binds nothing again.
  auto again = preparer_->Prepare(Ref());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, *res);
  EXPECT_EQ(binds_, 1);

  // Unprepare gives the VF back to its kernel driver, then removes spec and plan.
  ASSERT_TRUE(preparer_->Unprepare(Ref()).ok());
  EXPECT_THAT(given_back_, ElementsAre("0000:03:00.1 to igbvf"));
  EXPECT_TRUE(absl::IsNotFound(store_->Get("claim-uid-1").status()));
}

TEST_F(PreparerVfioTest, AVfThatCannotBeGivenBackKeepsThePlanForTheRetry) {
  Publish();
  ASSERT_TRUE(preparer_->Prepare(Ref()).ok());
  give_back_status_ = absl::UnavailableError("the VF is still open");
  absl::Status st = preparer_->Unprepare(Ref());
  EXPECT_TRUE(absl::IsUnavailable(st)) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr("giving the VFs back"));
  EXPECT_TRUE(store_->Get("claim-uid-1").ok());
  give_back_status_ = absl::OkStatus();
  EXPECT_TRUE(preparer_->Unprepare(Ref()).ok());
  EXPECT_TRUE(absl::IsNotFound(store_->Get("claim-uid-1").status()));
}

TEST_F(PreparerVfioTest, AKernelInterfaceSettingIsRefusedNamingBothFields) {
  SetClaimConfig(NetCfg({{"sriov", {{"driver", "vfio-pci"}}},
                         {"interface", {{"addresses", {"192.0.2.10/24"}}}}}),
                 "FromClass");
  Publish();
  auto res = preparer_->Prepare(Ref());
  EXPECT_TRUE(absl::IsInvalidArgument(res.status())) << res.status();
  EXPECT_THAT(std::string(res.status().message()),
              HasSubstr("sriov.driver: \"vfio-pci\" cannot be combined with interface.addresses"));
  EXPECT_EQ(binds_, 0);
  EXPECT_TRUE(absl::IsNotFound(store_->Get("claim-uid-1").status()));
}

TEST_F(PreparerVfioTest, ANodeThatCannotBindIsRefusedBeforeAnythingChanges) {
  check_status_ = absl::FailedPreconditionError("VF 0000:03:00.1 is in no IOMMU group");
  Publish();
  auto res = preparer_->Prepare(Ref());
  EXPECT_TRUE(absl::IsFailedPrecondition(res.status())) << res.status();
  EXPECT_THAT(std::string(res.status().message()),
              HasSubstr("request \"nic\": sriov.driver \"vfio-pci\": device \"eth1\": VF "
                        "0000:03:00.1 is in no IOMMU group"));
  EXPECT_EQ(binds_, 0);
  EXPECT_TRUE(absl::IsNotFound(store_->Get("claim-uid-1").status()));
  EXPECT_THAT(failures_, ElementsAre("claim-a:InvalidConfig"));
}

TEST_F(PreparerVfioTest, AFailedBindLeavesNoPlanNoSpecAndTheVfGivenBack) {
  bind_status_ = absl::InternalError("VF 0000:03:00.1 is not bound to vfio-pci after the probe");
  Publish();
  auto res = preparer_->Prepare(Ref());
  EXPECT_TRUE(absl::IsInternal(res.status())) << res.status();
  EXPECT_THAT(std::string(res.status().message()),
              HasSubstr("(VF 0000:03:00.1): binding to vfio-pci: VF 0000:03:00.1 is not bound"));
  EXPECT_THAT(given_back_, ElementsAre("0000:03:00.1 to igbvf"));
  EXPECT_TRUE(absl::IsNotFound(store_->Get("claim-uid-1").status()));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/cdi/knd.k8s.cni.cncf.io-net_claim-uid-1.json"));
}

TEST_F(PreparerVfioTest, APrepareStoppedBeforeTheBindIsFinishedByTheRetry) {
  // What a crash between the plan and the bind leaves: the plan, its VF not bound, no spec.
  Publish();
  state::ClaimPlan left;
  left.claim_uid = "claim-uid-1";
  left.claim_namespace = "team-a";
  left.claim_name = "claim-a";
  left.pods = {{"pod-uid-1", "team-a", "pod-a"}};
  state::DevicePlan d;
  d.request = "nic";
  d.pool = kNode;
  d.device = "eth1";
  d.identity.pci_address = "0000:03:00.1";
  d.identity.ifname = "eth1";
  d.config = config::ToJson(*config::Decode(NetCfg({{"sriov", {{"driver", "vfio-pci"}}}}), "test"));
  d.vfio = state::VfioPlan{"igbvf", "", {}};
  left.devices.push_back(d);
  ASSERT_TRUE(store_->Put(left).ok());
  auto res = preparer_->Prepare(Ref());
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_THAT((*res)[0].cdi_ids, ElementsAre("knd.k8s.cni.cncf.io/net=claim-uid-1-vfio"));
  auto plan = store_->Get("claim-uid-1");
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->devices[0].vfio->group, "12");
  EXPECT_EQ(Spec()["devices"].size(), 1u);
}

TEST_F(PreparerVfioTest, AnotherClaimWaitsForTheVfUntilItsHolderIsUnprepared) {
  Publish();
  ASSERT_TRUE(preparer_->Prepare(Ref()).ok());
  // The scheduler gives the VF to claim-b before the kubelet unprepared claim-a.
  json claim_b = claim_;
  claim_b["metadata"]["name"] = "claim-b";
  claim_b["metadata"]["uid"] = "claim-uid-2";
  kube_.objects[ClaimPath("team-a", "claim-b")] = claim_b;
  opts_.on_host = [](const state::DeviceIdentity&) -> absl::StatusOr<bool> { return false; };
  opts_.release = [](const state::ClaimPlan&, size_t) {
    ADD_FAILURE() << "a VF on vfio-pci is never taken from its claim";
    return absl::OkStatus();
  };
  opts_.device_wait = std::chrono::milliseconds(100);
  Rebuild();
  auto res = preparer_->Prepare(ClaimRef{"team-a", "claim-uid-2", "claim-b"});
  EXPECT_TRUE(absl::IsUnavailable(res.status())) << res.status();
  EXPECT_THAT(std::string(res.status().message()),
              HasSubstr("the VF is on vfio-pci for claim team-a/claim-a, which the kubelet has "
                        "not unprepared yet"));
}

TEST_F(PreparerVfioTest, WithoutVfioSupportTheClaimIsRefused) {
  opts_.vfio = {};
  Rebuild();
  Publish();
  auto res = preparer_->Prepare(Ref());
  EXPECT_TRUE(absl::IsFailedPrecondition(res.status())) << res.status();
  EXPECT_THAT(std::string(res.status().message()), HasSubstr("runs without VFIO support"));
}

// ---- Shared parents: a child per claim, with the allocation's shareID -------------------

class PreparerSharedTest : public PreparerTest {
 protected:
  void SetUp() override {
    PreparerTest::SetUp();
    devices_["eth1"].shared = inventory::Device::Shared{4, "", ""};
    devices_["eth1"].mtu = 1500;
    Rebuild();
    SetClaimConfig(NetCfg({{"interface", {{"name", "net-a"}, {"addresses", {"192.0.2.10/24"}}}}}));
    claim_["status"]["allocation"]["devices"]["results"][0]["shareID"] = kShare;
  }
  static constexpr char kShare[] = "5e3d9a4c-0f6b-4b8e-9a43-7c1d2e3f4a5b";

  // Another claim's child on eth1 (prepared or in its pod).
  void OtherChild(const std::string& mode, state::DeviceState st = state::DeviceState::kPrepared) {
    state::ClaimPlan p;
    p.claim_uid = "other-claim-uid";
    p.claim_namespace = "team-b";
    p.claim_name = "other";
    state::DevicePlan d;
    d.request = "nic";
    d.pool = kNode;
    d.device = "eth1";
    d.identity.ifname = "eth1";
    d.child = state::ChildPlan{"macvlan", mode, 0, "02:00:00:00:00:09"};
    d.state = st;
    if (st == state::DeviceState::kAttached) d.pod_uid = "other-pod-uid";
    p.devices.push_back(d);
    ASSERT_TRUE(store_->Put(p).ok());
  }
};

TEST_F(PreparerSharedTest, ChildPlanWithShareIdAndAStableLocallyAdministeredMac) {
  Publish();
  auto res = preparer_->Prepare(Ref());
  ASSERT_TRUE(res.ok()) << res.status();
  ASSERT_EQ(res->size(), 1u);
  EXPECT_EQ((*res)[0].share_id, kShare);
  auto plan = store_->Get("claim-uid-1");
  ASSERT_TRUE(plan.ok()) << plan.status();
  const state::DevicePlan& d = plan->devices[0];
  EXPECT_EQ(d.share_id, kShare);
  ASSERT_TRUE(d.child.has_value());
  EXPECT_EQ(d.child->type, "macvlan");  // the default child
  EXPECT_EQ(d.child->mode, "bridge");
  ASSERT_EQ(d.child->mac.size(), 17u);
  const int first = std::stoi(d.child->mac.substr(0, 2), nullptr, 16);
  EXPECT_EQ(first & 0x03, 0x02) << d.child->mac;  // locally administered, unicast
  // The same claim gets the same MAC again (a retried sandbox, a restart, a re-prepare).
  ASSERT_TRUE(preparer_->Unprepare(Ref()).ok());
  Rebuild();
  ASSERT_TRUE(preparer_->Prepare(Ref()).ok());
  EXPECT_EQ(store_->Get("claim-uid-1")->devices[0].child->mac, d.child->mac);
  // Another claim gets another one.
  claim_["metadata"]["uid"] = "claim-uid-2";
  Publish();
  Rebuild();
  ASSERT_TRUE(preparer_->Prepare(ClaimRef{"team-a", "claim-uid-2", "claim-a"}).ok());
  EXPECT_NE(store_->Get("claim-uid-2")->devices[0].child->mac, d.child->mac);
}

TEST_F(PreparerSharedTest, ChildTypeFromTheClassAndAGivenMac) {
  SetClaimConfig(NetCfg({{"child", {{"type", "ipvlan"}}}}), "FromClass");
  Publish();
  ASSERT_TRUE(preparer_->Prepare(Ref()).ok());
  auto d = store_->Get("claim-uid-1")->devices[0];
  EXPECT_EQ(d.child->type, "ipvlan");
  EXPECT_EQ(d.child->mode, "l2");
  EXPECT_EQ(d.child->mac, "");  // ipvlan children have the parent's MAC
  ASSERT_TRUE(preparer_->Unprepare(Ref()).ok());
  SetClaimConfig(NetCfg({{"interface", {{"hardwareAddr", "02:00:00:00:00:42"}}}}), "FromClass");
  Publish();
  Rebuild();
  ASSERT_TRUE(preparer_->Prepare(Ref()).ok());
  EXPECT_EQ(store_->Get("claim-uid-1")->devices[0].child->mac, "");  // interface's wins
}

TEST_F(PreparerSharedTest, ChildrenDoNotWaitForEachOther) {
  opts_.device_wait = std::chrono::milliseconds(300);
  opts_.on_host = [](const state::DeviceIdentity&) -> absl::StatusOr<bool> { return true; };
  Rebuild();
  OtherChild("bridge", state::DeviceState::kAttached);
  kube_.objects[PodPath("team-b", "other-pod")] = {
      {"metadata", {{"namespace", "team-b"}, {"name", "other-pod"}, {"uid", "other-pod-uid"}}},
      {"status", {{"phase", "Running"}}}};
  Publish();
  auto t0 = std::chrono::steady_clock::now();
  auto res = preparer_->Prepare(Ref());
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(250));
}

struct SharedBadCase {
  std::string label;
  json class_config;
  std::string error;
};
class PreparerSharedBadTest : public PreparerSharedTest,
                              public ::testing::WithParamInterface<SharedBadCase> {};

TEST_P(PreparerSharedBadTest, RefusedNamingTheProblemAndWritingNothing) {
  SetClaimConfig(NetCfg(GetParam().class_config), "FromClass");
  Publish();
  auto res = preparer_->Prepare(Ref());
  ASSERT_FALSE(res.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(res.status())) << res.status();
  EXPECT_THAT(std::string(res.status().message()), HasSubstr("claim team-a/claim-a"));
  EXPECT_THAT(std::string(res.status().message()), HasSubstr(GetParam().error));
  EXPECT_FALSE(store_->Get("claim-uid-1").ok());
}

INSTANTIATE_TEST_SUITE_P(
    Cases, PreparerSharedBadTest,
    ::testing::Values(
        SharedBadCase{
            "cni",
            {{"cni",
              {{"config",
                {{"cniVersion", "1.0.0"}, {"name", "n"}, {"plugins", {{{"type", "macvlan"}}}}}}}}},
            "is a shared parent (a child is created in the pod), so cni cannot be used"},
        SharedBadCase{"multus", {{"attachedBy", "multus"}}, "so attachedBy cannot be \"multus\""},
        SharedBadCase{"mtu",
                      {{"interface", {{"mtu", 9000}}}},
                      "interface.mtu 9000 is above the MTU 1500 of the shared parent \"eth1\""}),
    [](const auto& info) { return info.param.label; });

TEST_F(PreparerSharedTest, AChildIsNotCheckedInPrepareItDoesNotExistYet) {
  int checks = 0;
  opts_.check_device = [&](const state::DeviceIdentity&, const config::NetworkConfig&) {
    ++checks;
    return absl::FailedPreconditionError("not this one");
  };
  Rebuild();
  Publish();
  auto res = preparer_->Prepare(Ref());
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ(checks, 0);
}

TEST_F(PreparerSharedTest, ChildOnADeviceThatIsNotSharedIsRefused) {
  devices_["eth1"].shared.reset();
  Rebuild();
  SetClaimConfig(NetCfg({{"child", {{"type", "macvlan"}}}}), "FromClass");
  Publish();
  auto res = preparer_->Prepare(Ref());
  ASSERT_FALSE(res.ok());
  EXPECT_THAT(std::string(res.status().message()),
              HasSubstr("child: device \"eth1\" is not a shared parent"));
}

TEST_F(PreparerSharedTest, PassthruTakesTheWholeParent) {
  OtherChild("bridge");
  SetClaimConfig(NetCfg({{"child", {{"mode", "passthru"}}}}), "FromClass");
  Publish();
  auto res = preparer_->Prepare(Ref());
  ASSERT_FALSE(res.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(res.status())) << res.status();
  EXPECT_THAT(
      std::string(res.status().message()),
      HasSubstr("passthru mode takes the whole parent, and 1 other claim(s) have children"));
  // And a bridge child next to another claim's passthru child.
  ASSERT_TRUE(store_->Delete("other-claim-uid").ok());
  OtherChild("passthru");
  SetClaimConfig(NetCfg(json::object()), "FromClass");
  Publish();
  res = preparer_->Prepare(Ref());
  ASSERT_FALSE(res.ok());
  EXPECT_THAT(std::string(res.status().message()),
              HasSubstr("another claim's child is in passthru mode"));
}

// An RDMA NIC: its containers get its character devices (CDI device "rdma", next to the guard);
// a plain NIC of the same claim adds none. The plan keeps them for restarts.
TEST_F(PreparerTest, RdmaCharDevicesInTheClaimsCdiSpec) {
  opts_.netns_guard = "/var/lib/knd/bin/knd-netns-guard";
  std::vector<std::string> asked;
  opts_.rdma = [&](const std::string& rdma) -> absl::StatusOr<inventory::RdmaFacts> {
    asked.push_back(rdma);
    return inventory::RdmaFacts{true, {"/dev/infiniband/rdma_cm", "/dev/infiniband/uverbs3"}};
  };
  devices_["eth1"].rdma_device = "mlx5_3";
  Rebuild();
  claim_["status"]["allocation"]["devices"]["results"].push_back(
      {{"request", "nic/fast"}, {"driver", kDriver}, {"pool", kNode}, {"device", "eth2"}});
  SetClaimConfig(NetCfg({{"interface", {{"mtu", 1400}}}}));  // host names in the pod
  Publish();
  auto res = preparer_->Prepare(Ref());
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_THAT(asked, ElementsAre("mlx5_3"));
  EXPECT_THAT((*res)[0].cdi_ids, ElementsAre("knd.k8s.cni.cncf.io/net=claim-uid-1-netns",
                                             "knd.k8s.cni.cncf.io/net=claim-uid-1-rdma"));
  auto text = ReadFile(dir_ + "/cdi/knd.k8s.cni.cncf.io-net_claim-uid-1.json");
  ASSERT_TRUE(text.ok()) << text.status();
  json spec = json::parse(*text);
  ASSERT_EQ(spec["devices"].size(), 2u);
  EXPECT_EQ(spec["devices"][1]["name"], "claim-uid-1-rdma");
  EXPECT_EQ(spec["devices"][1]["containerEdits"],
            json({{"deviceNodes",
                   {{{"path", "/dev/infiniband/rdma_cm"}, {"permissions", "rw"}},
                    {{"path", "/dev/infiniband/uverbs3"}, {"permissions", "rw"}}}}}));
  auto plan = store_->Get("claim-uid-1");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->devices[0].rdma_device, "mlx5_3");
  EXPECT_THAT(plan->devices[0].rdma_char_devices,
              ElementsAre("/dev/infiniband/rdma_cm", "/dev/infiniband/uverbs3"));
  EXPECT_TRUE(plan->devices[1].rdma_char_devices.empty());
}

// Without the guard (no --netns-guard), an RDMA claim still gets its character devices.
TEST_F(PreparerTest, RdmaCharDevicesWithoutTheGuard) {
  opts_.rdma = [](const std::string&) -> absl::StatusOr<inventory::RdmaFacts> {
    return inventory::RdmaFacts{true, {"/dev/infiniband/uverbs0"}};
  };
  devices_["eth1"].rdma_device = "rxe0";
  Rebuild();
  Publish();
  auto res = preparer_->Prepare(Ref());
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_THAT((*res)[0].cdi_ids, ElementsAre("knd.k8s.cni.cncf.io/net=claim-uid-1-rdma"));
}

// Exclusive netns mode: the pod could not see the RDMA device, so the claim is refused, with the
// device, the mode and the way out; nothing is written.
TEST_F(PreparerTest, RdmaInExclusiveNetnsModeIsRefused) {
  opts_.netns_guard = "/var/lib/knd/bin/knd-netns-guard";
  opts_.rdma = [](const std::string&) -> absl::StatusOr<inventory::RdmaFacts> {
    return inventory::RdmaFacts{false, {"/dev/infiniband/uverbs0"}};
  };
  devices_["eth1"].rdma_device = "rxe0";
  Rebuild();
  Publish();
  auto res = preparer_->Prepare(Ref());
  ASSERT_FALSE(res.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(res.status())) << res.status();
  EXPECT_THAT(std::string(res.status().message()), HasSubstr("claim team-a/claim-a"));
  EXPECT_THAT(std::string(res.status().message()),
              HasSubstr("device \"eth1\" (RDMA device \"rxe0\")"));
  EXPECT_THAT(std::string(res.status().message()), HasSubstr("exclusive network-namespace mode"));
  EXPECT_THAT(std::string(res.status().message()), HasSubstr("rdma system set netns shared"));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/cdi/knd.k8s.cni.cncf.io-net_claim-uid-1.json"));
  EXPECT_TRUE(absl::IsNotFound(store_->Get("claim-uid-1").status()));
}

// An RDMA device without a verbs node (ib_uverbs not loaded) is an error naming the device.
TEST_F(PreparerTest, RdmaWithoutVerbsDeviceIsRefused) {
  opts_.rdma = [](const std::string& rdma) -> absl::StatusOr<inventory::RdmaFacts> {
    return absl::FailedPreconditionError("RDMA device \"" + rdma + "\" has no verbs device");
  };
  devices_["eth1"].rdma_device = "rxe0";
  Rebuild();
  Publish();
  auto res = preparer_->Prepare(Ref());
  ASSERT_FALSE(res.ok());
  EXPECT_THAT(std::string(res.status().message()),
              HasSubstr("device \"eth1\" (RDMA device \"rxe0\")"));
  EXPECT_THAT(std::string(res.status().message()), HasSubstr("has no verbs device"));
}

// While Unprepare of a claim is in its hook, a Prepare of the same claim waits for it (and then
// prepares afresh), but a Prepare of another claim goes ahead.
TEST_F(PreparerTest, SameClaimSerializedOtherClaimsInParallel) {
  Publish();
  json other = claim_;
  other["metadata"]["name"] = "claim-b";
  other["metadata"]["uid"] = "claim-uid-2";
  kube_.objects[ClaimPath("team-a", "claim-b")] = other;
  ASSERT_TRUE(preparer_->Prepare(Ref()).ok());
  const int gets_before = kube_.gets[ClaimPath("team-a", "claim-a")];

  std::promise<void> in_hook;
  std::promise<bool> other_done;
  std::shared_future<bool> other_done_f = other_done.get_future().share();
  std::atomic<bool> other_finished_inside_hook{false};
  preparer_ = std::make_unique<Preparer>(
      kube_, *store_,
      [this](const std::string& n) -> std::optional<inventory::Device> { return devices_[n]; },
      Preparer::Options{kDriver, kNode, "", [&](const state::ClaimPlan&) {
                          in_hook.set_value();
                          // Another claim must complete while this claim is busy.
                          other_finished_inside_hook =
                              other_done_f.wait_for(std::chrono::seconds(20)) ==
                              std::future_status::ready;
                          // Give the same-claim Prepare every chance to run early if unserialized.
                          std::this_thread::sleep_for(std::chrono::milliseconds(100));
                          return absl::OkStatus();
                        }});
  std::thread un([&] { EXPECT_TRUE(preparer_->Unprepare(Ref()).ok()); });
  in_hook.get_future().wait();
  std::thread same([&] { EXPECT_TRUE(preparer_->Prepare(Ref()).ok()); });
  auto b = preparer_->Prepare(ClaimRef{"team-a", "claim-uid-2", "claim-b"});
  other_done.set_value(b.ok());
  un.join();
  same.join();
  EXPECT_TRUE(other_finished_inside_hook);
  // The same-claim Prepare ran after Unprepare deleted the plan: it read the API again and
  // the plan exists at the end.
  EXPECT_GT(kube_.gets[ClaimPath("team-a", "claim-a")], gets_before);
  EXPECT_TRUE(store_->Get("claim-uid-1").ok());
}

TEST_F(PreparerTest, UnprepareHookFailureKeepsPlanForRetry) {
  Publish();
  ASSERT_TRUE(preparer_->Prepare(Ref()).ok());
  hook_status_ = absl::UnavailableError("device still busy");
  absl::Status st = preparer_->Unprepare(Ref());
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.message()), HasSubstr("device still busy"));
  EXPECT_EQ(store_->List().size(), 1u);
  hook_status_ = absl::OkStatus();
  EXPECT_TRUE(preparer_->Unprepare(Ref()).ok());
  EXPECT_THAT(store_->List(), IsEmpty());
}

TEST_F(PreparerTest, BatchAnswersEveryClaim) {
  Publish();
  auto out = preparer_->PrepareBatch({Ref(), ClaimRef{"team-a", "ghost-uid", "ghost"}});
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out["claim-uid-1"].error, "");
  EXPECT_EQ(out["claim-uid-1"].devices.size(), 1u);
  EXPECT_THAT(out["ghost-uid"].error, HasSubstr("claim team-a/ghost"));
  auto un = preparer_->UnprepareBatch({Ref(), ClaimRef{"team-a", "ghost-uid", "ghost"}});
  ASSERT_EQ(un.size(), 2u);
  EXPECT_EQ(un["claim-uid-1"], "");
  EXPECT_EQ(un["ghost-uid"], "");
}

TEST(BaseRequestNameTest, StripsSubRequest) {
  EXPECT_EQ(BaseRequestName("nic/fast"), "nic");
  EXPECT_EQ(BaseRequestName("nic"), "nic");
  EXPECT_EQ(BaseRequestName("a/b/c"), "a");
}

// ---- the gate: Prepare answers only when the device can be attached now -------------------

class PreparerGateTest : public PreparerTest {
 protected:
  void SetUp() override {
    PreparerTest::SetUp();
    opts_.device_wait = std::chrono::milliseconds(300);
    opts_.on_host = [this](const state::DeviceIdentity& id) -> absl::StatusOr<bool> {
      std::lock_guard<std::mutex> l(mu_);
      ++on_host_calls_;
      return home_.count(id.ifname) > 0;
    };
    opts_.release = [this](const state::ClaimPlan& holder, size_t index) {
      released_.push_back(holder.claim_uid + "/" + holder.devices[index].device);
      // What the NRI side's detach does: the device is home, the old plan says so.
      absl::Status st = store_->Update(holder.claim_uid, [&](state::ClaimPlan& p) {
        p.devices[index].state = state::DeviceState::kDetached;
        p.devices[index].pod_uid.clear();
        return absl::OkStatus();
      });
      std::lock_guard<std::mutex> l(mu_);
      home_.insert(holder.devices[index].identity.ifname);
      return st;
    };
    opts_.lost = [this](const std::string& device) -> std::optional<std::string> {
      auto it = lost_.find(device);
      if (it == lost_.end()) return std::nullopt;
      return it->second;
    };
    Rebuild();
  }

  // Claim "old-claim" of pod team-a/old-pod (uid old-pod-uid) holds eth1 in its pod.
  void HoldEth1(bool publish_old_pod) {
    state::ClaimPlan p;
    p.claim_uid = "old-claim-uid";
    p.claim_namespace = "team-a";
    p.claim_name = "old-claim";
    p.pods.push_back({"old-pod-uid", "team-a", "old-pod"});
    state::DevicePlan d;
    d.request = "nic";
    d.pool = kNode;
    d.device = "eth1";
    d.identity.ifname = "eth1";
    d.state = state::DeviceState::kAttached;
    d.pod_uid = "old-pod-uid";
    p.devices.push_back(d);
    ASSERT_TRUE(store_->Put(p).ok());
    if (publish_old_pod) {
      kube_.objects[PodPath("team-a", "old-pod")] = {
          {"metadata", {{"namespace", "team-a"}, {"name", "old-pod"}, {"uid", "old-pod-uid"}}},
          {"status", {{"phase", "Running"}}}};
    }
  }

  // Nothing of the refused claim is left: no plan, no CDI spec.
  void ExpectNothingWritten() {
    EXPECT_FALSE(store_->Get("claim-uid-1").ok());
    EXPECT_FALSE(std::filesystem::exists(dir_ + "/cdi/knd.k8s.cni.cncf.io-net_claim-uid-1.json"));
  }

  std::mutex mu_;
  std::set<std::string> home_;
  std::map<std::string, std::string> lost_;
  std::vector<std::string> released_;
  int on_host_calls_ = 0;
};

TEST_F(PreparerGateTest, DeviceOnTheHostIsReadyAtOnce) {
  home_.insert("eth1");
  Publish();
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(preparer_->Prepare(Ref()).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(250));
  EXPECT_EQ(on_host_calls_, 1);
}

TEST_F(PreparerGateTest, DeviceOfAPodThatIsGoneIsHandedOverWithoutWaiting) {
  // Sequential churn on a real node: the old pod is deleted from the API, its claim
  // deallocated, and the device allocated to the next claim, before the old sandbox stops.
  ASSERT_NO_FATAL_FAILURE(HoldEth1(/*publish_old_pod=*/false));
  Publish();
  auto res = preparer_->Prepare(Ref());
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_THAT(released_, ElementsAre("old-claim-uid/eth1"));
  EXPECT_EQ(kube_.gets[PodPath("team-a", "old-pod")], 1) << "checked with the API once";
  EXPECT_TRUE(store_->Get("claim-uid-1").ok());
}

TEST_F(PreparerGateTest, DeviceOfAFinishedPodIsHandedOver) {
  ASSERT_NO_FATAL_FAILURE(HoldEth1(/*publish_old_pod=*/true));
  kube_.objects[PodPath("team-a", "old-pod")]["status"]["phase"] = "Succeeded";
  Publish();
  ASSERT_TRUE(preparer_->Prepare(Ref()).ok());
  EXPECT_THAT(released_, ElementsAre("old-claim-uid/eth1"));
}

TEST_F(PreparerGateTest, DeviceOfARunningPodIsWaitedForUntilItsStopBringsItHome) {
  ASSERT_NO_FATAL_FAILURE(HoldEth1(/*publish_old_pod=*/true));
  opts_.device_wait = std::chrono::seconds(5);
  Rebuild();
  Publish();
  // The old pod's StopPodSandbox, 200 ms later.
  std::thread stop([this] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    {
      std::lock_guard<std::mutex> l(mu_);
      home_.insert("eth1");
    }
    ASSERT_TRUE(store_
                    ->Update("old-claim-uid",
                             [](state::ClaimPlan& p) {
                               p.devices[0].state = state::DeviceState::kDetached;
                               p.devices[0].pod_uid.clear();
                               return absl::OkStatus();
                             })
                    .ok());
  });
  auto t0 = std::chrono::steady_clock::now();
  auto res = preparer_->Prepare(Ref());
  const auto took = std::chrono::steady_clock::now() - t0;
  stop.join();
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_TRUE(released_.empty()) << "a running pod's device is never taken";
  EXPECT_GE(took, std::chrono::milliseconds(150));
  EXPECT_LT(took, std::chrono::seconds(4)) << "woken by the plan change, not by the deadline";
}

TEST_F(PreparerGateTest, DeviceStillInARunningPodFailsRetriablyAndChangesNothing) {
  ASSERT_NO_FATAL_FAILURE(HoldEth1(/*publish_old_pod=*/true));
  Publish();
  auto res = preparer_->Prepare(Ref());
  ASSERT_FALSE(res.ok());
  EXPECT_TRUE(absl::IsUnavailable(res.status())) << res.status();
  EXPECT_THAT(std::string(res.status().message()),
              HasSubstr("claim team-a/claim-a request \"nic\" device \"eth1\": the device is still "
                        "in pod team-a/old-pod (claim team-a/old-claim), which has not stopped"));
  EXPECT_THAT(failures_, ElementsAre("claim-a:DeviceBusy"));
  EXPECT_TRUE(released_.empty());
  ExpectNothingWritten();
}

TEST_F(PreparerGateTest, DeviceThatCannotTakeItsEthtoolSettingsIsRefusedAndNothingWritten) {
  std::vector<std::string> checked;  // "<ifname> rings.rx=<n>"
  absl::Status answer = absl::FailedPreconditionError(
      "interface.ethtool.rings: rx 8192 is above the 4096 rx ring entries of eth1");
  opts_.check_device = [&](const state::DeviceIdentity& id, const config::NetworkConfig& cfg) {
    const auto& rings = cfg.interface.ethtool_rings;
    checked.push_back(absl::StrCat(id.ifname, " rings.rx=", rings ? rings->at("rx") : 0));
    return answer;
  };
  Rebuild();
  home_.insert("eth1");
  SetClaimConfig(NetCfg({{"interface", {{"ethtool", {{"rings", {{"rx", 8192}}}}}}}}));
  Publish();
  auto res = preparer_->Prepare(Ref());
  ASSERT_FALSE(res.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(res.status())) << res.status();
  EXPECT_EQ(res.status().message(),
            "claim team-a/claim-a request \"nic\" device \"eth1\" (eth1): interface.ethtool.rings: "
            "rx 8192 is above the 4096 rx ring entries of eth1");
  EXPECT_THAT(checked, ElementsAre("eth1 rings.rx=8192")) << "the device's own config, decoded";
  EXPECT_THAT(failures_, ElementsAre("claim-a:InvalidConfig"));
  ExpectNothingWritten();

  answer = absl::OkStatus();  // a device that can
  ASSERT_TRUE(preparer_->Prepare(Ref()).ok());
  EXPECT_EQ(checked.size(), 2u);
  EXPECT_TRUE(preparer_->Prepare(Ref()).ok());
  EXPECT_EQ(checked.size(), 2u) << "a repeated Prepare answers from the plan";
}

TEST_F(PreparerGateTest, LostDeviceFailsAtOnceNamingWhy) {
  lost_["eth1"] = "it has been neither on the host nor in a pod for 12 s";
  Publish();
  auto t0 = std::chrono::steady_clock::now();
  auto res = preparer_->Prepare(Ref());
  ASSERT_FALSE(res.ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(250));
  EXPECT_TRUE(absl::IsNotFound(res.status())) << res.status();
  EXPECT_THAT(std::string(res.status().message()),
              HasSubstr("device \"eth1\": the device is gone from node node1: it has been neither "
                        "on the host nor in a pod for 12 s"));
  EXPECT_THAT(failures_, ElementsAre("claim-a:DeviceNotFound"));
  ExpectNothingWritten();
}

TEST_F(PreparerGateTest, DeviceNowhereYetIsWaitedForThenRefused) {
  Publish();
  auto res = preparer_->Prepare(Ref());
  ASSERT_FALSE(res.ok());
  EXPECT_TRUE(absl::IsUnavailable(res.status())) << res.status();
  EXPECT_THAT(std::string(res.status().message()),
              HasSubstr("the device is not on node node1 (not on the host, in no pod)"));
  EXPECT_GT(on_host_calls_, 1) << "looked again while waiting";
  ExpectNothingWritten();
}

TEST_F(PreparerGateTest, OneWaitBudgetPerKubeletCall) {
  // Two claims in one call, both waiting for a device that never comes: the call as a whole
  // waits device_wait, not device_wait per claim.
  Publish();
  json claim2 = claim_;
  claim2["metadata"]["name"] = "claim-b";
  claim2["metadata"]["uid"] = "claim-uid-2";
  kube_.objects[ClaimPath("team-a", "claim-b")] = claim2;
  auto t0 = std::chrono::steady_clock::now();
  auto out = preparer_->PrepareBatch({Ref(), ClaimRef{"team-a", "claim-uid-2", "claim-b"}});
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(550));
  EXPECT_FALSE(out["claim-uid-1"].error.empty());
  EXPECT_FALSE(out["claim-uid-2"].error.empty());
}

// ---- reservedFor, adminAccess, Multus --------------------------------------------------------

TEST_F(PreparerTest, ClaimReservedForTwoRunningPodsIsRefusedNamingBoth) {
  claim_["status"]["reservedFor"].push_back(
      {{"resource", "pods"}, {"name", "pod-b"}, {"uid", "pod-uid-2"}});
  Publish();
  json pod_b = pod_;
  pod_b["metadata"]["name"] = "pod-b";
  pod_b["metadata"]["uid"] = "pod-uid-2";
  kube_.objects[PodPath("team-a", "pod-b")] = pod_b;
  auto res = preparer_->Prepare(Ref());
  ASSERT_FALSE(res.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(res.status())) << res.status();
  EXPECT_THAT(
      std::string(res.status().message()),
      HasSubstr("claim team-a/claim-a: status.reservedFor has 2 running pods (team-a/pod-a, "
                "team-a/pod-b): a network device can be in one pod only"));
  EXPECT_FALSE(store_->Get("claim-uid-1").ok());
}

TEST_F(PreparerTest, ReservedPodsThatAreGoneOrFinishedDoNotCount) {
  claim_["status"]["reservedFor"] = {
      {{"resource", "pods"}, {"name", "gone"}, {"uid", "gone-uid"}},
      {{"resource", "pods"}, {"name", "done"}, {"uid", "done-uid"}},
      {{"resource", "pods"}, {"name", "pod-a"}, {"uid", "pod-uid-1"}}};
  Publish();
  json done = pod_;
  done["metadata"]["name"] = "done";
  done["metadata"]["uid"] = "done-uid";
  done["status"]["phase"] = "Succeeded";
  kube_.objects[PodPath("team-a", "done")] = done;
  auto res = preparer_->Prepare(Ref());
  ASSERT_TRUE(res.ok()) << res.status();
  auto plan = store_->Get("claim-uid-1");
  ASSERT_TRUE(plan.ok());
  ASSERT_EQ(plan->pods.size(), 1u);
  EXPECT_EQ(plan->pods[0].uid, "pod-uid-1");
}

TEST_F(PreparerTest, ClaimWhosePodIsGoneIsRefusedNamingThePod) {
  Publish();
  kube_.objects.erase(PodPath("team-a", "pod-a"));
  auto res = preparer_->Prepare(Ref());
  ASSERT_FALSE(res.ok());
  EXPECT_THAT(std::string(res.status().message()),
              HasSubstr("reserved pod team-a/pod-a: the pod does not exist"));
}

TEST_F(PreparerTest, AdminAccessIsRefused) {
  claim_["status"]["allocation"]["devices"]["results"][0]["adminAccess"] = true;
  Publish();
  auto res = preparer_->Prepare(Ref());
  ASSERT_FALSE(res.ok());
  EXPECT_THAT(std::string(res.status().message()),
              HasSubstr("status.allocation.devices.results[0].adminAccess is true: knd does not "
                        "give admin access to network devices"));
}

TEST_F(PreparerTest, AttachedByMultusNeedsAResourceNameAndTheNetworksAnnotation) {
  SetClaimConfig(NetCfg({{"attachedBy", "multus"}}));
  opts_.netns_guard = "/var/lib/knd/bin/knd-netns-guard";
  Rebuild();
  Publish();
  auto res = preparer_->Prepare(Ref());
  ASSERT_FALSE(res.ok());
  EXPECT_THAT(std::string(res.status().message()),
              HasSubstr("attachedBy is \"multus\", but device \"eth1\" has no "
                        "k8s.cni.cncf.io/resourceName attribute"));
  devices_["eth1"].resource_name = "example.com/net_a";
  res = preparer_->Prepare(Ref());
  ASSERT_FALSE(res.ok());
  EXPECT_THAT(std::string(res.status().message()),
              HasSubstr("pod team-a/pod-a has no k8s.v1.cni.cncf.io/networks annotation"));
  pod_["metadata"]["annotations"] = {{"k8s.v1.cni.cncf.io/networks", "net-a"}};
  Publish();
  res = preparer_->Prepare(Ref());
  ASSERT_TRUE(res.ok()) << res.status();
  // Multus attaches it in the runtime's CNI step: no guard for knd's hook, no CDI spec.
  EXPECT_THAT((*res)[0].cdi_ids, IsEmpty());
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/cdi/knd.k8s.cni.cncf.io-net_claim-uid-1.json"));
  EXPECT_EQ(store_->Get("claim-uid-1")->devices[0].config["attachedBy"], "multus");
}

}  // namespace
}  // namespace knd::dra
