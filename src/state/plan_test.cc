// Plan (de)serialisation: a restarted driver must get back exactly what it wrote, or a clear
// error, never a half-read plan.
#include "state/plan.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <utility>
#include <vector>

namespace knd::state {

bool operator==(const IpRoute& a, const IpRoute& b) {
  return a.destination == b.destination && a.gateway == b.gateway && a.table == b.table &&
         a.metric == b.metric && a.scope == b.scope;
}

namespace {

using nlohmann::json;
using ::testing::HasSubstr;

ClaimPlan FullPlan() {
  ClaimPlan p;
  p.claim_uid = "0b1e8c9a-5d3f-4c6e-9a7b-1f2e3d4c5b6a";
  p.claim_namespace = "team-a";
  p.claim_name = "rdma";
  p.pods = {{"pod-uid-1", "team-a", "trainer-0"}, {"pod-uid-2", "team-a", "trainer-1"}};
  p.cdi_device_ids = {"knd.k8s.cni.cncf.io/net=0b1e-pci-0000-03-00-1"};
  p.prepared_at_unix = 1795000000;
  DevicePlan d;
  d.request = "nic";
  d.pool = "node-1";
  d.device = "pci-0000-03-00-1";
  d.identity = {"0000:03:00.1", "0c:42:a1:00:00:01", "0c:42:a1:00:00:02", 7, "ens3f1"};
  d.config = {{"apiVersion", "knd.k8s.cni.cncf.io/v1alpha1"},
              {"kind", "NetworkConfig"},
              {"interface", {{"mtu", 9000}}}};
  d.ipam_result = {{"ips", {{{"address", "10.0.0.5/24"}}}}};
  d.state = DeviceState::kAttached;
  d.pod_uid = "pod-uid-1";
  d.host = HostSnapshot{"ens3f1",
                        1500,
                        "0c:42:a1:00:00:02",
                        true,
                        {"192.0.2.5/24"},
                        {{"198.51.100.0/24", "192.0.2.1", 100, 20, 0}},
                        {{"ipv4.rp_filter", "2"}, {"ipv6.accept_dad", "0"}},
                        185000,
                        65536,
                        131072,
                        98304,
                        {{"rx-gro", true}, {"tx-tcp-segmentation", false}},
                        {{"combined", 8}, {"rx", 0}},
                        {{"rx", 1024}, {"tx", 512}},
                        {{"legacy-rx", false}},
                        std::nullopt};
  d.host->vf =
      VfSnapshot{"0000:03:00.0", 1, "0c:42:a1:00:00:02", 100, 3, true, std::nullopt, 2u, 0, 1000};
  d.result = AttachResult{"/var/run/netns/cni-1",
                          "net1",
                          "0c:42:a1:00:00:02",
                          {"10.0.0.5/24"},
                          json{{"cniVersion", "1.0.0"}}};
  d.note = "attached in 31ms";
  d.rdma_device = "mlx5_1";
  d.rdma_char_devices = {"/dev/infiniband/rdma_cm", "/dev/infiniband/uverbs1"};
  p.devices.push_back(d);
  DevicePlan d2;
  d2.request = "nic";
  d2.device = "veth-a";
  d2.state = DeviceState::kFailed;
  d2.note = "netns gone";
  d2.vfio = VfioPlan{"igbvf", "12", {"/dev/vfio/vfio", "/dev/vfio/12"}};
  p.devices.push_back(d2);
  DevicePlan d3;  // a child of a shared parent
  d3.request = "shared";
  d3.device = "eth2";
  d3.share_id = "5e3d9a4c-0f6b-4b8e-9a43-7c1d2e3f4a5b";
  d3.child = ChildPlan{"vlan", "", 42, ""};
  d3.state = DeviceState::kPrepared;
  p.devices.push_back(d3);
  DevicePlan d4 = d3;
  d4.child = ChildPlan{"macvlan", "bridge", 0, "06:11:22:33:44:55"};
  p.devices.push_back(d4);
  return p;
}

void ExpectSame(const ClaimPlan& a, const ClaimPlan& b) {
  // Compare through the JSON form field by field and also spot-check the typed values.
  EXPECT_EQ(ToJson(a), ToJson(b));
  EXPECT_EQ(a.claim_uid, b.claim_uid);
  ASSERT_EQ(a.devices.size(), b.devices.size());
  EXPECT_EQ(a.devices[0].identity.ifindex, b.devices[0].identity.ifindex);
  EXPECT_EQ(a.devices[0].state, b.devices[0].state);
  ASSERT_TRUE(b.devices[0].host.has_value());
  EXPECT_EQ(a.devices[0].host->routes, b.devices[0].host->routes);
  EXPECT_EQ(a.devices[0].host->mtu, b.devices[0].host->mtu);
  EXPECT_EQ(a.devices[0].host->sysctls, b.devices[0].host->sysctls)
      << "host sysctls are what a return to the host writes back";
  EXPECT_EQ(b.devices[0].host->gso_max_size, 185000u);
  EXPECT_EQ(b.devices[0].host->gro_max_size, 65536u);
  EXPECT_EQ(b.devices[0].host->gso_ipv4_max_size, 131072u);
  EXPECT_EQ(b.devices[0].host->gro_ipv4_max_size, 98304u);
  EXPECT_EQ(b.devices[0].host->ethtool_features,
            (std::map<std::string, bool>{{"rx-gro", true}, {"tx-tcp-segmentation", false}}))
      << "the host's wanted ethtool features are what a return to the host writes back";
  EXPECT_EQ(b.devices[0].host->ethtool_channels,
            (std::map<std::string, uint32_t>{{"combined", 8}, {"rx", 0}}));
  EXPECT_EQ(b.devices[0].host->ethtool_rings,
            (std::map<std::string, uint32_t>{{"rx", 1024}, {"tx", 512}}));
  EXPECT_EQ(b.devices[0].host->ethtool_private_flags,
            (std::map<std::string, bool>{{"legacy-rx", false}}));
  ASSERT_TRUE(b.devices[0].result.has_value());
  EXPECT_EQ(a.devices[0].result->cni_result, b.devices[0].result->cni_result);
  EXPECT_FALSE(b.devices[1].host.has_value());
  EXPECT_FALSE(b.devices[1].result.has_value());
  EXPECT_EQ(b.devices[1].state, DeviceState::kFailed);
}

TEST(PlanJsonTest, RoundTripsEveryField) {
  ClaimPlan p = FullPlan();
  json j = ToJson(p);
  EXPECT_EQ(j["version"], 1);
  // Through text, as on disk.
  auto back = ClaimPlanFromJson(json::parse(j.dump()));
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSame(p, *back);
  EXPECT_EQ(back->pods[1].name, "trainer-1");
  EXPECT_EQ(back->prepared_at_unix, 1795000000);
  EXPECT_EQ(back->devices[0].identity.perm_mac, "0c:42:a1:00:00:01");
  EXPECT_EQ(back->devices[0].ipam_result, p.devices[0].ipam_result);
  EXPECT_EQ(back->devices[0].host->vf, p.devices[0].host->vf);
  EXPECT_FALSE(back->devices[0].host->vf->trust.has_value()) << "unreported stays unreported";
  EXPECT_EQ(back->devices[0].rdma_device, "mlx5_1");
  EXPECT_EQ(back->devices[0].rdma_char_devices, p.devices[0].rdma_char_devices);
  EXPECT_FALSE(j["devices"][1].contains("rdma")) << "a plain netdev's plan has no rdma key";
  EXPECT_FALSE(j["devices"][1].contains("child")) << "nor a child key";
  EXPECT_FALSE(j["devices"][1].contains("shareID"));
  EXPECT_FALSE(j["devices"][0].contains("vfio")) << "a netdev's plan has no vfio key";
  ASSERT_TRUE(back->devices[1].vfio.has_value());
  EXPECT_EQ(*back->devices[1].vfio, *p.devices[1].vfio);
  EXPECT_EQ(back->devices[2].share_id, p.devices[2].share_id);
  ASSERT_TRUE(back->devices[2].child.has_value());
  EXPECT_EQ(*back->devices[2].child, *p.devices[2].child);
  EXPECT_EQ(*back->devices[3].child, *p.devices[3].child);
}

TEST(PlanJsonTest, EveryStateRoundTrips) {
  for (DeviceState s : {DeviceState::kPrepared, DeviceState::kAttaching, DeviceState::kAttached,
                        DeviceState::kDetached, DeviceState::kFailed}) {
    ClaimPlan p = FullPlan();
    p.devices[0].state = s;
    auto back = ClaimPlanFromJson(ToJson(p));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(back->devices[0].state, s) << ToString(s);
  }
}

TEST(PlanJsonTest, RefusesWrongVersionAndBrokenContent) {
  json j = ToJson(FullPlan());
  j["version"] = 2;
  auto v = ClaimPlanFromJson(j);
  ASSERT_FALSE(v.ok());
  // Another version: a plan this knd cannot read (FailedPrecondition), not a corrupt one.
  EXPECT_EQ(v.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(v.status().message()), HasSubstr("unsupported version 2"));
  EXPECT_THAT(std::string(v.status().message()), HasSubstr("this knd reads version 1"));
  j["version"] = "1";
  EXPECT_EQ(ClaimPlanFromJson(j).status().code(), absl::StatusCode::kFailedPrecondition);

  j = ToJson(FullPlan());
  j.erase("version");
  EXPECT_EQ(ClaimPlanFromJson(j).status().code(), absl::StatusCode::kInvalidArgument);

  j = ToJson(FullPlan());
  j["devices"][0]["state"] = "Dancing";
  auto st = ClaimPlanFromJson(j);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("unknown device state \"Dancing\""));

  j = ToJson(FullPlan());
  j["devices"][0]["identity"]["ifindex"] = "seven";
  EXPECT_FALSE(ClaimPlanFromJson(j).ok());

  j = ToJson(FullPlan());
  j.erase("claimUid");
  EXPECT_FALSE(ClaimPlanFromJson(j).ok());

  // Found by state_files_fuzz: a float where an integer belongs was cast (undefined behaviour
  // out of range); a float, and an integer out of the field's range, are refused by name.
  j = ToJson(FullPlan());
  j["preparedAtUnix"] = 1.8e37;
  st = ClaimPlanFromJson(j);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("preparedAtUnix: expected an integer"));
  j = ToJson(FullPlan());
  j["devices"][0]["host"]["mtu"] = 1500.5;
  EXPECT_THAT(std::string(ClaimPlanFromJson(j).status().message()), HasSubstr("mtu: "));
  j = ToJson(FullPlan());
  j["devices"][0]["host"]["mtu"] = int64_t{1} << 40;  // mtu is 32 bits
  EXPECT_THAT(std::string(ClaimPlanFromJson(j).status().message()), HasSubstr("mtu: "));
  j = ToJson(FullPlan());
  j["devices"][0]["identity"]["ifindex"] = -3;  // a signed field keeps a negative value
  ASSERT_TRUE(ClaimPlanFromJson(j).ok());
  EXPECT_EQ(ClaimPlanFromJson(j)->devices[0].identity.ifindex, -3);

  EXPECT_FALSE(ClaimPlanFromJson(json::array()).ok());
}

// The plan of the previous release (test/runtime/golden/v1): every later knd reads it whole,
// with what the detach needs to restore the device on the host.
TEST(PlanJsonTest, ReadsTheGoldenPlanOfThePreviousRelease) {
  std::ifstream f(std::string(KND_GOLDEN_DIR) + "/v1/plans/@CLAIM_UID@.json");
  ASSERT_TRUE(f.good());
  std::string text(std::istreambuf_iterator<char>(f), {});
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"\"@IFINDEX@\"", "3"},
           {"@CLAIM_UID@", "94fe09f0-172a-45c0-8a85-0c94cceddd93"},
           {"@POD_UID@", "c306a6ff-ba84-4bfe-a5ed-70135be7bdd0"},
           {"@NETNS@", "/var/run/netns/cni-a03f4c7d"},
           {"@MAC@", "8e:dd:3f:40:3a:1a"}}) {
    for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at)) {
      text.replace(at, from.size(), to);
    }
  }
  const json golden = json::parse(text);
  auto p = ClaimPlanFromJson(golden);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->claim_uid, "94fe09f0-172a-45c0-8a85-0c94cceddd93");
  EXPECT_EQ(p->claim_namespace, "team-a");
  ASSERT_EQ(p->pods.size(), 1u);
  EXPECT_EQ(p->pods[0].uid, "c306a6ff-ba84-4bfe-a5ed-70135be7bdd0");
  EXPECT_EQ(p->cdi_device_ids,
            std::vector<std::string>{
                "knd.k8s.cni.cncf.io/net=94fe09f0-172a-45c0-8a85-0c94cceddd93-netns"});
  ASSERT_EQ(p->devices.size(), 1u);
  const DevicePlan& d = p->devices[0];
  EXPECT_EQ(d.state, DeviceState::kAttached);
  EXPECT_EQ(d.device, "eth1");
  EXPECT_EQ(d.pod_uid, "c306a6ff-ba84-4bfe-a5ed-70135be7bdd0");
  EXPECT_EQ(d.identity.ifindex, 3);
  EXPECT_EQ(d.identity.mac, "8e:dd:3f:40:3a:1a");
  ASSERT_TRUE(d.host.has_value());
  EXPECT_EQ(d.host->ifname, "eth1");
  EXPECT_EQ(d.host->mtu, 1500u);
  EXPECT_TRUE(d.host->up);
  EXPECT_EQ(d.host->addresses, std::vector<std::string>{"10.99.0.2/24"});
  ASSERT_TRUE(d.result.has_value());
  EXPECT_EQ(d.result->netns, "/var/run/netns/cni-a03f4c7d");
  EXPECT_EQ(d.result->ifname, "net-a");
  EXPECT_EQ(InPodName(d), "net-a");
  EXPECT_EQ(d.config["interface"]["mtu"], 1400);
  // While the plan format is version 1, the golden plan is exactly what knd writes for it
  // (every field, none missing): a change of what version 1 holds shows up here.
  if (kPlanVersion == 1) {
    EXPECT_EQ(ToJson(*p), golden);
  }
  EXPECT_EQ(ToJson(*ClaimPlanFromJson(ToJson(*p))), ToJson(*p));
}

}  // namespace
}  // namespace knd::state
