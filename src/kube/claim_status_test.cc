// ClaimStatusWriter against the stand-in API server through the real curl client, and with
// failures injected in front of it.
#include "kube/claim_status.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <deque>
#include <memory>

#include "absl/strings/str_cat.h"
#include "apiserver.h"
#include "kube/status_test_util.h"

namespace knd::kube {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr char kDriver[] = "knd.k8s.cni.cncf.io";
constexpr char kOther[] = "gpu.example.com";
constexpr char kClaimPath[] = "/apis/resource.k8s.io/v1/namespaces/ns1/resourceclaims/c1";

// Forwards to a real client; Apply answers with queued errors first.
class FlakyClient : public testutil::ForwardingClient {
 public:
  using ForwardingClient::ForwardingClient;
  std::deque<absl::Status> apply_errors;
  std::atomic<int> applies{0};
  std::vector<json> bodies;

  absl::StatusOr<json> Apply(const std::string& p, const json& o, const std::string& m,
                             bool force) override {
    applies++;
    bodies.push_back(o);
    if (!apply_errors.empty()) {
      absl::Status st = apply_errors.front();
      apply_errors.pop_front();
      return st;
    }
    return ForwardingClient::Apply(p, o, m, force);
  }
};

json Claim() {
  auto result = [](const char* driver, const char* pool, const char* device) {
    return json{{"request", "r"}, {"driver", driver}, {"pool", pool}, {"device", device}};
  };
  json claim = {{"apiVersion", "resource.k8s.io/v1"},
                {"kind", "ResourceClaim"},
                {"metadata", {{"name", "c1"}, {"namespace", "ns1"}}},
                {"spec", {{"devices", {{"requests", json::array()}}}}}};
  json results = json::array({result(kDriver, "node1", "eth1"), result(kDriver, "node1", "eth2"),
                              result(kOther, "gpus", "gpu0")});
  claim["status"]["allocation"]["devices"]["results"] = results;
  return claim;
}

DeviceStatus Ours(const std::string& device, bool ready) {
  DeviceStatus s;
  s.driver = kDriver;
  s.pool = "node1";
  s.device = device;
  s.ready = ready;
  s.reason = ready ? "Attached" : "AttachFailed";
  s.message = ready ? "" : "no such device";
  s.interface_name = "net1";
  s.ips = {"192.0.2.5/24", "2001:db8::5/64"};
  s.hardware_address = "02:00:00:00:00:01";
  s.data = {{"cniVersion", "1.0.0"}};
  return s;
}

class ClaimStatusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(testutil::StartStandIn(server_, client_));
    ASSERT_TRUE(server_->Seed(Claim()).ok());
    auto got = client_->Get(kClaimPath);
    ASSERT_TRUE(got.ok()) << got.status();
    uid_ = (*got)["metadata"]["uid"].get<std::string>();  // the server assigns it
    // Another driver owns an entry of the same claim.
    json other = {{"driver", kOther},
                  {"pool", "gpus"},
                  {"device", "gpu0"},
                  {"conditions",
                   {{{"type", "Ready"},
                     {"status", "True"},
                     {"reason", "Ok"},
                     {"message", ""},
                     {"lastTransitionTime", "2025-01-01T00:00:00Z"}}}}};
    auto r = client_->Apply(absl::StrCat(kClaimPath, "/status"),
                            ClaimStatusApplyBody("ns1", "c1", uid_, json::array({other})), kOther);
    ASSERT_TRUE(r.ok()) << r.status();
  }

  json Devices() {
    auto r = client_->Get(kClaimPath);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? (*r)["status"]["devices"] : json();
  }
  static const json* Find(const json& devices, const std::string& driver,
                          const std::string& device) {
    for (const json& d : devices) {
      if (d["driver"] == driver && d["device"] == device) return &d;
    }
    return nullptr;
  }
  ClaimStatusWriterOptions Opts() {
    ClaimStatusWriterOptions o;
    o.driver_name = kDriver;
    o.backoff_initial = 5ms;
    o.backoff_max = 20ms;
    o.on_written = [this](const std::string& uid) {
      std::lock_guard<std::mutex> l(mu_);
      written_.push_back(uid);
    };
    return o;
  }

  std::unique_ptr<localcp::ApiServer> server_;
  std::unique_ptr<Client> client_;
  std::string uid_;
  std::mutex mu_;
  std::vector<std::string> written_;
};

TEST(FormatTimeTest, Rfc3339InUtcWithWholeSeconds) {
  using std::chrono::system_clock;
  // 2026-12-05T15:04:05.900Z: the fraction is dropped (metav1.Time has whole seconds).
  system_clock::time_point t = system_clock::from_time_t(1796483045) + 900ms;
  EXPECT_EQ(FormatTime(t), "2026-12-05T15:04:05Z");
  EXPECT_EQ(FormatTime(system_clock::from_time_t(0)), "1970-01-01T00:00:00Z");
}

TEST(DeviceStatusEntryTest, HasConditionNetworkDataAndData) {
  auto now = std::chrono::system_clock::from_time_t(1700000000);
  DeviceStatus s = Ours("eth1", true);
  s.observed_generation = 3;
  json e = DeviceStatusEntry(s, now);
  EXPECT_EQ(e["driver"], kDriver);
  EXPECT_EQ(e["pool"], "node1");
  EXPECT_EQ(e["device"], "eth1");
  ASSERT_EQ(e["conditions"].size(), 1u);
  EXPECT_EQ(e["conditions"][0]["type"], "Ready");
  EXPECT_EQ(e["conditions"][0]["status"], "True");
  EXPECT_EQ(e["conditions"][0]["reason"], "Attached");
  EXPECT_EQ(e["conditions"][0]["observedGeneration"], 3);
  EXPECT_EQ(e["conditions"][0]["lastTransitionTime"], "2023-11-14T22:13:20Z");
  EXPECT_EQ(e["networkData"]["interfaceName"], "net1");
  EXPECT_EQ(e["networkData"]["ips"], json({"192.0.2.5/24", "2001:db8::5/64"}));
  EXPECT_EQ(e["networkData"]["hardwareAddress"], "02:00:00:00:00:01");
  EXPECT_EQ(e["data"]["cniVersion"], "1.0.0");
  EXPECT_FALSE(e.contains("shareID"));

  DeviceStatus bare;
  bare.driver = kDriver;
  bare.pool = "p";
  bare.device = "d";
  json b = DeviceStatusEntry(bare, now);
  EXPECT_EQ(b["conditions"][0]["status"], "False");
  EXPECT_EQ(b["conditions"][0]["reason"], "NotAttached");
  EXPECT_FALSE(b.contains("networkData"));
  EXPECT_FALSE(b.contains("data"));
}

TEST_F(ClaimStatusTest, SetAndClearLeaveOtherDriversEntry) {
  ClaimStatusWriter w(*client_, Opts());
  w.Start();
  auto now = std::chrono::system_clock::now();
  w.Set("ns1", "c1", uid_,
        {DeviceStatusEntry(Ours("eth1", true), now), DeviceStatusEntry(Ours("eth2", false), now)});
  ASSERT_TRUE(w.WaitIdle(10s));
  json devs = Devices();
  ASSERT_EQ(devs.size(), 3u) << devs.dump();
  ASSERT_NE(Find(devs, kOther, "gpu0"), nullptr);
  const json* e1 = Find(devs, kDriver, "eth1");
  ASSERT_NE(e1, nullptr);
  EXPECT_EQ((*e1)["conditions"][0]["status"], "True");
  EXPECT_EQ((*e1)["networkData"]["interfaceName"], "net1");
  const json* e2 = Find(devs, kDriver, "eth2");
  ASSERT_NE(e2, nullptr);
  EXPECT_EQ((*e2)["conditions"][0]["status"], "False");
  EXPECT_EQ((*e2)["conditions"][0]["reason"], "AttachFailed");
  EXPECT_TRUE(w.Pending().empty());

  // Dropping eth2 from the desired state removes only that entry.
  w.Set("ns1", "c1", uid_, {DeviceStatusEntry(Ours("eth1", true), now)});
  ASSERT_TRUE(w.WaitIdle(10s));
  devs = Devices();
  EXPECT_EQ(devs.size(), 2u) << devs.dump();
  EXPECT_EQ(Find(devs, kDriver, "eth2"), nullptr);

  w.Clear("ns1", "c1", uid_);
  ASSERT_TRUE(w.WaitIdle(10s));
  devs = Devices();
  ASSERT_EQ(devs.size(), 1u) << devs.dump();
  EXPECT_EQ(devs[0]["driver"], kOther);
  EXPECT_EQ(devs[0]["conditions"][0]["reason"], "Ok");
  std::lock_guard<std::mutex> l(mu_);
  EXPECT_EQ(written_, std::vector<std::string>({uid_, uid_, uid_}));
}

TEST_F(ClaimStatusTest, RetriesAfterServerErrorsAndConflicts) {
  FlakyClient flaky(*client_);
  flaky.apply_errors = {absl::UnavailableError("HTTP 500"), absl::AbortedError("HTTP 409"),
                        absl::UnavailableError("connection refused")};
  ClaimStatusWriter w(flaky, Opts());
  w.Set("ns1", "c1", uid_,
        {DeviceStatusEntry(Ours("eth1", true), std::chrono::system_clock::now())});
  EXPECT_EQ(w.Pending(), std::vector<std::string>({uid_}));  // not started: nothing sent
  w.Start();
  ASSERT_TRUE(w.WaitIdle(10s));
  EXPECT_EQ(flaky.applies.load(), 4);
  EXPECT_EQ(w.Stats().failures, 3u);
  EXPECT_EQ(w.Stats().writes, 1u);
  EXPECT_TRUE(w.Pending().empty());
  EXPECT_NE(Find(Devices(), kDriver, "eth1"), nullptr);
  EXPECT_NE(Find(Devices(), kOther, "gpu0"), nullptr);
}

TEST_F(ClaimStatusTest, GoneClaimIsDroppedAndReported) {
  ClaimStatusWriter w(*client_, Opts());
  w.Start();
  w.Set("ns1", "nope", "uid-nope",
        {DeviceStatusEntry(Ours("eth1", true), std::chrono::system_clock::now())});
  ASSERT_TRUE(w.WaitIdle(10s));
  EXPECT_TRUE(w.Pending().empty());
  EXPECT_EQ(w.Stats().dropped, 1u);
  std::lock_guard<std::mutex> l(mu_);
  EXPECT_EQ(written_, std::vector<std::string>({"uid-nope"}));
}

TEST_F(ClaimStatusTest, OnlyOurEntriesAreSentAndUnchangedStateIsNotRewritten) {
  FlakyClient flaky(*client_);
  ClaimStatusWriter w(flaky, Opts());
  w.Start();
  auto t0 = std::chrono::system_clock::from_time_t(1700000000);
  json foreign = DeviceStatusEntry(Ours("eth1", true), t0);
  foreign["driver"] = kOther;
  w.Set("ns1", "c1", uid_, {DeviceStatusEntry(Ours("eth1", true), t0), foreign});
  ASSERT_TRUE(w.WaitIdle(10s));
  ASSERT_EQ(flaky.applies.load(), 1);
  const json& body = flaky.bodies[0];
  EXPECT_EQ(body["apiVersion"], "resource.k8s.io/v1");
  EXPECT_EQ(body["kind"], "ResourceClaim");
  EXPECT_EQ(body["metadata"]["uid"], uid_);
  ASSERT_EQ(body["status"]["devices"].size(), 1u);
  EXPECT_EQ(body["status"]["devices"][0]["driver"], kDriver);

  // Same content later: no write, and the transition time stays the first one.
  auto t1 = t0 + std::chrono::hours(1);
  w.Set("ns1", "c1", uid_, {DeviceStatusEntry(Ours("eth1", true), t1)});
  ASSERT_TRUE(w.WaitIdle(10s));
  EXPECT_EQ(flaky.applies.load(), 1);
  // A real transition gets the new time.
  w.Set("ns1", "c1", uid_, {DeviceStatusEntry(Ours("eth1", false), t1)});
  ASSERT_TRUE(w.WaitIdle(10s));
  ASSERT_EQ(flaky.applies.load(), 2);
  json devs = Devices();
  const json* e = Find(devs, kDriver, "eth1");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ((*e)["conditions"][0]["lastTransitionTime"], FormatTime(t1));
}

TEST_F(ClaimStatusTest, BurstCoalescesToLatestState) {
  FlakyClient flaky(*client_);
  // The first apply fails, so the later Sets pile up while the writer backs off.
  flaky.apply_errors = {absl::UnavailableError("HTTP 503")};
  ClaimStatusWriterOptions o = Opts();
  o.backoff_initial = 1000ms;
  o.backoff_max = 1000ms;
  ClaimStatusWriter w(flaky, o);
  w.Start();
  auto now = std::chrono::system_clock::now();
  w.Set("ns1", "c1", uid_, {DeviceStatusEntry(Ours("eth1", false), now)});
  for (int i = 0; i < 50 && flaky.applies.load() == 0; ++i) std::this_thread::sleep_for(2ms);
  for (int i = 0; i < 10; ++i) {
    DeviceStatus s = Ours("eth1", true);
    s.message = absl::StrCat("attempt ", i);
    w.Set("ns1", "c1", uid_, {DeviceStatusEntry(s, now)});
  }
  ASSERT_TRUE(w.WaitIdle(10s));
  EXPECT_EQ(flaky.applies.load(), 2);
  json devs = Devices();
  const json* e = Find(devs, kDriver, "eth1");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ((*e)["conditions"][0]["message"], "attempt 9");
}

}  // namespace
}  // namespace knd::kube
