// EventRecorder against the stand-in API server through the real curl client.
#include "kube/events.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <set>

#include "absl/strings/str_cat.h"
#include "apiserver.h"
#include "kube/status_test_util.h"

namespace knd::kube {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr char kEvents[] = "/api/v1/namespaces/ns1/events";

class EventRecorderTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(testutil::StartStandIn(server_, client_)); }
  EventRecorderOptions Opts() {
    EventRecorderOptions o;
    o.driver_name = "knd.k8s.cni.cncf.io";
    o.node_name = "node1";
    return o;
  }
  json Events() {
    auto r = client_->List(kEvents);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? (*r)["items"] : json::array();
  }

  std::unique_ptr<localcp::ApiServer> server_;
  std::unique_ptr<Client> client_;
  const ObjectRef claim_ = ClaimObject("ns1", "c1", "uid-c1");
  const ObjectRef pod_ = PodObject("ns1", "p1", "uid-p1");
};

TEST_F(EventRecorderTest, WritesAFullCoreV1Event) {
  EventRecorder r(*client_, Opts());
  r.Start();
  r.Record(claim_, kEventWarning, event_reason::kInvalidConfig,
           "spec.devices.config[0].opaque.parameters.mtu: must be at least 68");
  ASSERT_TRUE(r.WaitIdle(10s));
  json items = Events();
  ASSERT_EQ(items.size(), 1u);
  const json& e = items[0];
  EXPECT_EQ(e["metadata"]["namespace"], "ns1");
  EXPECT_THAT(e["metadata"]["name"].get<std::string>(), ::testing::StartsWith("c1."));
  EXPECT_EQ(e["involvedObject"], json({{"apiVersion", "resource.k8s.io/v1"},
                                       {"kind", "ResourceClaim"},
                                       {"namespace", "ns1"},
                                       {"name", "c1"},
                                       {"uid", "uid-c1"}}));
  EXPECT_EQ(e["type"], "Warning");
  EXPECT_EQ(e["reason"], "InvalidConfig");
  EXPECT_EQ(e["message"], "spec.devices.config[0].opaque.parameters.mtu: must be at least 68");
  EXPECT_EQ(e["source"]["component"], "knd.k8s.cni.cncf.io");
  EXPECT_EQ(e["source"]["host"], "node1");
  EXPECT_EQ(e["reportingComponent"], "knd.k8s.cni.cncf.io");
  EXPECT_EQ(e["reportingInstance"], "node1");
  EXPECT_EQ(e["count"], 1);
  EXPECT_FALSE(e["firstTimestamp"].get<std::string>().empty());
  EXPECT_FALSE(e["lastTimestamp"].get<std::string>().empty());
}

TEST_F(EventRecorderTest, TenIdenticalFailuresAreOneEventWithCountTen) {
  EventRecorder r(*client_, Opts());
  r.Start();
  for (int i = 0; i < 10; ++i) {
    r.Record(pod_, kEventWarning, event_reason::kAttachFailed, "moving eth1: device busy");
    if (i % 3 == 0) {
      ASSERT_TRUE(r.WaitIdle(10s));  // mix queued folding and server patches
    }
  }
  ASSERT_TRUE(r.WaitIdle(10s));
  json items = Events();
  ASSERT_EQ(items.size(), 1u) << items.dump();
  EXPECT_EQ(items[0]["count"], 10);
  EXPECT_EQ(items[0]["involvedObject"]["kind"], "Pod");
  EventStats s = r.Stats();
  EXPECT_EQ(s.created, 1u);
  EXPECT_GE(s.patched, 1u);
  EXPECT_EQ(s.failed, 0u);
  // A different message is a different event.
  r.Record(pod_, kEventWarning, event_reason::kAttachFailed, "moving eth2: device busy");
  ASSERT_TRUE(r.WaitIdle(10s));
  EXPECT_EQ(Events().size(), 2u);
}

TEST_F(EventRecorderTest, FloodLimitHoldsPerObject) {
  EventRecorderOptions o = Opts();
  o.burst = 3;
  o.refill_per_second = 0;
  EventRecorder r(*client_, o);
  r.Start();
  for (int i = 0; i < 20; ++i) {
    r.Record(claim_, kEventWarning, event_reason::kDeviceNotFound, absl::StrCat("try ", i));
  }
  r.Record(pod_, kEventWarning, event_reason::kDeviceNotFound, "other object");
  ASSERT_TRUE(r.WaitIdle(10s));
  int claim_events = 0, pod_events = 0;
  for (const json& e : Events()) {
    (e["involvedObject"]["kind"] == "Pod" ? pod_events : claim_events)++;
  }
  EXPECT_EQ(claim_events, 3);
  EXPECT_EQ(pod_events, 1);  // another object has its own bucket
  EXPECT_EQ(r.Stats().dropped_flood, 17u);
}

TEST_F(EventRecorderTest, BoundedQueueDropsOldest) {
  EventRecorderOptions o = Opts();
  o.max_queue = 5;
  EventRecorder r(*client_, o);
  for (int i = 0; i < 8; ++i) {
    r.Record(claim_, kEventWarning, event_reason::kCNIPluginFailed, absl::StrCat("m", i));
  }
  EXPECT_EQ(r.Stats().dropped_queue, 3u);
  r.Start();
  ASSERT_TRUE(r.WaitIdle(10s));
  std::set<std::string> messages;
  for (const json& e : Events()) messages.insert(e["message"].get<std::string>());
  EXPECT_EQ(messages, std::set<std::string>({"m3", "m4", "m5", "m6", "m7"}));
}

TEST_F(EventRecorderTest, ExpiredEventIsCreatedAgainWithItsCount) {
  EventRecorder r(*client_, Opts());
  r.Start();
  r.Record(claim_, kEventNormal, event_reason::kAttached, "eth1 is net1 in pod ns1/p1");
  ASSERT_TRUE(r.WaitIdle(10s));
  json items = Events();
  ASSERT_EQ(items.size(), 1u);
  ASSERT_TRUE(
      client_->Delete(absl::StrCat(kEvents, "/", items[0]["metadata"]["name"].get<std::string>()))
          .ok());
  r.Record(claim_, kEventNormal, event_reason::kAttached, "eth1 is net1 in pod ns1/p1");
  ASSERT_TRUE(r.WaitIdle(10s));
  items = Events();
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0]["count"], 2);
  EXPECT_EQ(items[0]["type"], "Normal");
}

TEST_F(EventRecorderTest, LongMessagesAreCut) {
  EventRecorder r(*client_, Opts());
  r.Start();
  r.Record(claim_, kEventWarning, event_reason::kInvalidConfig, std::string(5000, 'x'));
  ASSERT_TRUE(r.WaitIdle(10s));
  json items = Events();
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0]["message"].get<std::string>().size(), 1024u);
}

}  // namespace
}  // namespace knd::kube
