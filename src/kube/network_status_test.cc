// network-status merging (pure) and NetworkStatusWriter against the stand-in API server.
#include "kube/network_status.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>

#include "absl/strings/str_cat.h"
#include "apiserver.h"
#include "kube/status_test_util.h"

namespace knd::kube {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr char kPodPath[] = "/api/v1/namespaces/ns1/pods/p1";

const json kMultus = json::array({{{"name", "ovn-kubernetes"},
                                   {"interface", "eth0"},
                                   {"ips", {"10.244.1.5"}},
                                   {"mac", "0a:58:0a:f4:01:05"},
                                   {"default", true},
                                   {"dns", json::object()}},
                                  {{"name", "ns1/macvlan-conf"},
                                   {"interface", "net1"},
                                   {"ips", {"192.168.1.200"}},
                                   {"mac", "c2:b0:57:49:47:f1"},
                                   {"dns", json::object()}}});

NetworkStatusEntry Entry(const std::string& ifname) {
  NetworkStatusEntry e;
  e.name = "ns1/claim1/nic";
  e.interface = ifname;
  e.ips = {"192.0.2.5/24", "2001:db8::5/64"};
  e.mac = "02:00:00:00:00:01";
  e.pci_address = "0000:3b:00.1";
  return e;
}

TEST(NetworkStatusJsonTest, MultusShape) {
  json j = NetworkStatusJson(Entry("net7"));
  EXPECT_EQ(j["name"], "ns1/claim1/nic");
  EXPECT_EQ(j["interface"], "net7");
  EXPECT_EQ(j["ips"], json({"192.0.2.5", "2001:db8::5"}));  // no prefix, like Multus
  EXPECT_EQ(j["mac"], "02:00:00:00:00:01");
  EXPECT_EQ(j["dns"], json::object());
  EXPECT_EQ(j["device-info"]["type"], "pci");
  EXPECT_EQ(j["device-info"]["version"], "1.1.0");
  EXPECT_EQ(j["device-info"]["pci"]["pci-address"], "0000:3b:00.1");
  EXPECT_FALSE(j.contains("mtu"));
  NetworkStatusEntry v;
  v.name = "ns1/nad";
  EXPECT_FALSE(NetworkStatusJson(v).contains("device-info"));
}

TEST(MergeNetworkStatusTest, KeepsOthersAndReplacesOnlyOurKey) {
  json a = NetworkStatusJson(Entry("net7"));
  auto r = MergeNetworkStatus(kMultus.dump(), "claimA", {a});
  ASSERT_TRUE(r.ok()) << r.status();
  json got = json::parse(*r);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0], kMultus[0]);
  EXPECT_EQ(got[1], kMultus[1]);
  EXPECT_EQ(got[2]["interface"], "net7");
  EXPECT_EQ(got[2][kNetworkStatusKeyField], "claimA");

  // Another key is added beside; replacing claimA keeps its position and claimB.
  r = MergeNetworkStatus(*r, "claimB", {NetworkStatusJson(Entry("net8"))});
  ASSERT_TRUE(r.ok());
  r = MergeNetworkStatus(*r, "claimA",
                         {NetworkStatusJson(Entry("net9")), NetworkStatusJson(Entry("net10"))});
  ASSERT_TRUE(r.ok());
  got = json::parse(*r);
  ASSERT_EQ(got.size(), 5u);
  EXPECT_EQ(got[2]["interface"], "net9");
  EXPECT_EQ(got[3]["interface"], "net10");
  EXPECT_EQ(got[4]["interface"], "net8");

  // Removing both keys gives back exactly the Multus list.
  r = MergeNetworkStatus(*r, "claimA", {});
  ASSERT_TRUE(r.ok());
  r = MergeNetworkStatus(*r, "claimB", {});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(json::parse(*r), kMultus);
}

TEST(MergeNetworkStatusTest, EmptyAndMalformed) {
  auto r = MergeNetworkStatus("", "k", {NetworkStatusJson(Entry("net1"))});
  ASSERT_TRUE(r.ok());
  r = MergeNetworkStatus(*r, "k", {});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "");  // the annotation goes away instead of "[]"
  EXPECT_TRUE(absl::IsInvalidArgument(MergeNetworkStatus("{\"x\":1}", "k", {}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(MergeNetworkStatus("not json", "k", {}).status()));
}

// Forwards to a real client; `after_get` runs once after the first GET (a racing writer).
class RacingClient : public testutil::ForwardingClient {
 public:
  using ForwardingClient::ForwardingClient;
  std::function<void()> after_get;

  absl::StatusOr<json> Get(const std::string& p) override {
    auto r = ForwardingClient::Get(p);
    if (after_get) std::exchange(after_get, nullptr)();
    return r;
  }
};

class NetworkStatusWriterTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(testutil::StartStandIn(server_, client_)); }
  void SeedPod(const std::string& annotation) {
    json pod = {{"apiVersion", "v1"},
                {"kind", "Pod"},
                {"metadata", {{"name", "p1"}, {"namespace", "ns1"}, {"uid", "uid-p1"}}},
                {"spec", {{"nodeName", "node1"}, {"containers", json::array()}}}};
    if (!annotation.empty()) {
      pod["metadata"]["annotations"] = {{kNetworkStatusAnnotation, annotation}};
    }
    ASSERT_TRUE(server_->Seed(pod).ok());
    pod_.uid = Pod()["metadata"]["uid"].get<std::string>();  // the server assigns it
  }
  json Pod() {
    auto r = client_->Get(kPodPath);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : json();
  }
  std::string Annotation() {
    json p = Pod();
    const json& a = p["metadata"]["annotations"];
    return a.is_object() && a.contains(kNetworkStatusAnnotation)
               ? a[kNetworkStatusAnnotation].get<std::string>()
               : "";
  }
  NetworkStatusWriterOptions Opts() {
    NetworkStatusWriterOptions o;
    o.backoff_initial = 5ms;
    o.backoff_max = 20ms;
    return o;
  }

  std::unique_ptr<localcp::ApiServer> server_;
  std::unique_ptr<Client> client_;
  PodRef pod_{"ns1", "p1", ""};
};

TEST_F(NetworkStatusWriterTest, MultusEntriesSurviveAddAndRemove) {
  SeedPod(kMultus.dump());
  NetworkStatusWriter w(*client_, Opts());
  w.AddOrReplace(pod_, "claim1", {Entry("net7")});
  w.AddOrReplace(pod_, "claim2", {Entry("net8")});
  EXPECT_EQ(w.PendingPods(), std::vector<std::string>{pod_.uid}) << "queued, not started yet";
  w.Remove(pod_, "claim2");
  w.Start();
  ASSERT_TRUE(w.WaitIdle(10s));
  EXPECT_TRUE(w.PendingPods().empty());
  json got = json::parse(Annotation());
  ASSERT_EQ(got.size(), 3u) << got.dump();
  EXPECT_EQ(got[0], kMultus[0]);
  EXPECT_EQ(got[1], kMultus[1]);
  EXPECT_EQ(got[2]["interface"], "net7");
  EXPECT_EQ(got[2]["ips"], json({"192.0.2.5", "2001:db8::5"}));

  w.Remove(pod_, "claim1");
  ASSERT_TRUE(w.WaitIdle(10s));
  EXPECT_EQ(json::parse(Annotation()), kMultus);
  EXPECT_GE(w.Stats().patches, 2u);
  EXPECT_EQ(w.Stats().dropped, 0u);
}

TEST_F(NetworkStatusWriterTest, NoAnnotationBeforeMeansNoneAfter) {
  SeedPod("");
  NetworkStatusWriter w(*client_, Opts());
  w.Start();
  w.AddOrReplace(pod_, "claim1", {Entry("net7")});
  ASSERT_TRUE(w.WaitIdle(10s));
  EXPECT_EQ(json::parse(Annotation()).size(), 1u);
  w.Remove(pod_, "claim1");
  ASSERT_TRUE(w.WaitIdle(10s));
  EXPECT_FALSE(Pod()["metadata"]["annotations"].contains(kNetworkStatusAnnotation));
}

TEST_F(NetworkStatusWriterTest, ConflictRereadsAndKeepsTheOtherWriter) {
  SeedPod(kMultus.dump());
  RacingClient racing(*client_);
  // Between our GET and our patch, Multus rewrites the annotation with a third entry.
  json multus3 = kMultus;
  multus3.push_back({{"name", "ns1/sriov"}, {"interface", "net2"}, {"dns", json::object()}});
  racing.after_get = [&] {
    auto r = client_->MergePatch(
        kPodPath, {{"metadata", {{"annotations", {{kNetworkStatusAnnotation, multus3.dump()}}}}}});
    ASSERT_TRUE(r.ok()) << r.status();
  };
  NetworkStatusWriter w(racing, Opts());
  ASSERT_TRUE(w.Write(pod_, "claim1", {NetworkStatusJson(Entry("net7"))}).ok());
  EXPECT_EQ(w.Stats().conflicts, 1u);
  json got = json::parse(Annotation());
  ASSERT_EQ(got.size(), 4u) << got.dump();
  EXPECT_EQ(got[2]["name"], "ns1/sriov");
  EXPECT_EQ(got[3]["interface"], "net7");
}

TEST_F(NetworkStatusWriterTest, OtherPodUidOrMalformedAnnotationIsLeftAlone) {
  SeedPod("{not a list");
  NetworkStatusWriter w(*client_, Opts());
  EXPECT_TRUE(absl::IsInvalidArgument(w.Write(pod_, "claim1", {NetworkStatusJson(Entry("n"))})));
  EXPECT_EQ(Annotation(), "{not a list");
  PodRef other = pod_;
  other.uid = "uid-older-pod";
  EXPECT_TRUE(
      absl::IsFailedPrecondition(w.Write(other, "claim1", {NetworkStatusJson(Entry("n"))})));
  EXPECT_EQ(Annotation(), "{not a list");
  // Through the worker: both dropped, nothing retried for ever.
  w.Start();
  w.AddOrReplace(other, "claim1", {Entry("net7")});
  w.AddOrReplace({"ns1", "gone", "uid-gone"}, "claim1", {Entry("net7")});
  ASSERT_TRUE(w.WaitIdle(10s));
  EXPECT_EQ(w.Stats().dropped, 2u);
  EXPECT_EQ(Annotation(), "{not a list");
}

}  // namespace
}  // namespace knd::kube
