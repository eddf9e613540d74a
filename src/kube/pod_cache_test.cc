// PodCache against the stand-in API server: lists and watches only this node's pods, follows
// creations, deletions and re-creations, survives an outage, and stops on request.
#include "kube/pod_cache.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "apiserver.h"
#include "kube/status_test_util.h"

namespace knd::kube {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

json Pod(const std::string& name, const std::string& node, bool host_network = false) {
  json spec = {{"nodeName", node}, {"containers", {{{"name", "c"}, {"image", "busybox"}}}}};
  if (host_network) spec["hostNetwork"] = true;
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata", {{"name", name}, {"namespace", "ns1"}}},
          {"spec", spec}};
}

// Waits (up to 20 s, so a broken cache fails instead of hanging) until `cond` holds.
template <typename F>
bool Eventually(F cond) {
  for (int i = 0; i < 2000; ++i) {
    if (cond()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return cond();
}

class PodCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(testutil::StartStandIn(server_, client_));
    // Watches end only when woken: a Stop that forgot to wake them would hang the test.
    ClientConfig cfg;
    cfg.server = absl::StrCat("http://127.0.0.1:", server_->port());
    cfg.qps = 0;
    cfg.max_retries = 0;
    cfg.watch_stop_check = std::chrono::hours(1);
    auto c = NewClient(cfg);
    ASSERT_TRUE(c.ok()) << c.status();
    watch_client_ = std::move(c).value();
    opts_.node_name = "node1";
    opts_.backoff_initial = 50ms;
    opts_.backoff_max = 200ms;
  }

  std::string Create(const json& pod) {
    auto r = client_->Create("/api/v1/namespaces/ns1/pods", pod);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? (*r)["metadata"]["uid"].get<std::string>() : "";
  }
  void Remove(const std::string& name) {
    ASSERT_TRUE(client_->Delete("/api/v1/namespaces/ns1/pods/" + name).ok());
  }
  static std::string UidIn(const PodCache& cache, const std::string& name) {
    auto f = cache.Lookup("ns1", name);
    return f ? f->uid : "";
  }

  std::unique_ptr<localcp::ApiServer> server_;
  std::unique_ptr<Client> client_, watch_client_;
  PodCacheOptions opts_;
};

TEST_F(PodCacheTest, HoldsThisNodesPodsAndFollowsChanges) {
  std::string before = Create(Pod("before", "node1"));
  Create(Pod("elsewhere", "node2"));
  PodCache cache(*watch_client_, opts_);
  EXPECT_FALSE(cache.Synced());
  EXPECT_FALSE(cache.Lookup("ns1", "before"));
  cache.Start();
  ASSERT_TRUE(Eventually([&] { return cache.Synced(); }));
  EXPECT_EQ(UidIn(cache, "before"), before);
  EXPECT_FALSE(cache.Lookup("ns1", "elsewhere")) << "another node's pod";

  // Created after the list: seen through the watch, with hostNetwork.
  std::string host = Create(Pod("host", "node1", /*host_network=*/true));
  ASSERT_TRUE(Eventually([&] { return UidIn(cache, "host") == host; }));
  EXPECT_TRUE(cache.Lookup("ns1", "host")->host_network);
  EXPECT_FALSE(cache.Lookup("ns1", "before")->host_network);

  // Deleted, then re-created under the same name: the new UID replaces the old one.
  Remove("before");
  ASSERT_TRUE(Eventually([&] { return !cache.Lookup("ns1", "before"); }));
  std::string again = Create(Pod("before", "node1"));
  ASSERT_TRUE(Eventually([&] { return UidIn(cache, "before") == again; }));
  EXPECT_NE(again, before);
  // Asked for the old UID, the cache does not vouch for the pod that replaced it.
  EXPECT_FALSE(cache.Lookup("ns1", "before", before));
  EXPECT_TRUE(cache.Lookup("ns1", "before", again));

  PodCacheStats s = cache.Stats();
  EXPECT_EQ(s.lists, 1u);
  EXPECT_EQ(s.pods, 2u);
  EXPECT_GE(s.events, 3u);
  cache.Stop();  // prompt: the watch is woken, not left to its (one hour) check
  EXPECT_FALSE(cache.Synced());
}

TEST_F(PodCacheTest, FactsKnowPhaseClaimsAndMultusAndGonePodsAreTold) {
  json p = Pod("app", "node1");
  p["metadata"]["annotations"] = {{"k8s.v1.cni.cncf.io/networks", "sriov-a@net1"}};
  p["spec"]["resourceClaims"] = {{{"name", "a"}, {"resourceClaimName", "shared"}},
                                 {{"name", "b"}, {"resourceClaimTemplateName", "tmpl"}}};
  std::string uid = Create(p);
  // Status goes through its subresource, as the kubelet and the claim controller write it.
  auto created = client_->Get("/api/v1/namespaces/ns1/pods/app");
  ASSERT_TRUE(created.ok());
  (*created)["status"] = {
      {"phase", "Running"},
      {"resourceClaimStatuses", {{{"name", "b"}, {"resourceClaimName", "app-b-x1"}}}}};
  ASSERT_TRUE(client_->Update("/api/v1/namespaces/ns1/pods/app/status", *created).ok());
  std::string other = Create(Pod("other", "node1"));
  PodCache cache(*watch_client_, opts_);
  std::mutex mu;
  std::vector<std::string> gone;
  cache.SetOnGone([&](const std::string& ns, const std::string& name, const std::string& u) {
    std::lock_guard<std::mutex> l(mu);
    gone.push_back(ns + "/" + name + "/" + u);
  });
  cache.Start();
  ASSERT_TRUE(Eventually([&] { return cache.Synced(); }));
  auto f = cache.Lookup("ns1", "app", uid);
  ASSERT_TRUE(f);
  EXPECT_TRUE(f->multus_networks);
  EXPECT_EQ(f->claims, (std::vector<std::string>{"shared", "app-b-x1"}));
  EXPECT_FALSE(f->Terminal());
  EXPECT_FALSE(cache.Lookup("ns1", "other")->multus_networks);

  // Finished (a Job's pod): told once, also when updated again.
  auto got = client_->Get("/api/v1/namespaces/ns1/pods/app");
  ASSERT_TRUE(got.ok());
  (*got)["status"]["phase"] = "Succeeded";
  ASSERT_TRUE(client_->Update("/api/v1/namespaces/ns1/pods/app/status", *got).ok());
  ASSERT_TRUE(Eventually([&] { return cache.Lookup("ns1", "app")->Terminal(); }));
  got = client_->Get("/api/v1/namespaces/ns1/pods/app");
  (*got)["metadata"]["labels"] = {{"x", "y"}};
  ASSERT_TRUE(client_->Update("/api/v1/namespaces/ns1/pods/app", *got).ok());
  // Deleted: told.
  Remove("other");
  ASSERT_TRUE(Eventually([&] {
    std::lock_guard<std::mutex> l(mu);
    return gone.size() >= 2;
  }));
  cache.Stop();
  std::lock_guard<std::mutex> l(mu);
  EXPECT_EQ(gone, (std::vector<std::string>{"ns1/app/" + uid, "ns1/other/" + other}));
}

TEST_F(PodCacheTest, RelistsAfterAnOutageAndCatchesUp) {
  std::string a = Create(Pod("a", "node1"));
  PodCache cache(*watch_client_, opts_);
  cache.Start();
  ASSERT_TRUE(Eventually([&] { return UidIn(cache, "a") == a; }));
  // The server refuses everything for a while and ends open watches.
  httplib::Client admin("127.0.0.1", server_->port());
  auto r = admin.Post("/_knd/outage?seconds=0.5", "", "application/json");
  ASSERT_TRUE(r && r->status == 200);
  ASSERT_TRUE(Eventually([&] { return cache.Stats().errors > 0; }));
  // Changes made while the cache was cut off (once the outage is over).
  ASSERT_TRUE(Eventually([&] { return client_->Delete("/api/v1/namespaces/ns1/pods/a").ok(); }));
  std::string b = Create(Pod("b", "node1"));
  ASSERT_TRUE(Eventually([&] { return UidIn(cache, "b") == b && !cache.Lookup("ns1", "a"); }));
  EXPECT_GE(cache.Stats().lists, 2u);
}

// A DELETED event for an older UID (a re-creation seen out of order around a relist) must not
// drop the pod that replaced it.
TEST_F(PodCacheTest, DeletionOfAnOlderUidKeepsTheNewPod) {
  class Scripted : public testutil::ForwardingClient {
   public:
    using ForwardingClient::ForwardingClient;
    absl::Status Watch(const std::string&, const ListOptions&,
                       const std::function<bool(const WatchEvent&)>& on_event,
                       const std::atomic<bool>& stop) override {
      if (!sent_.exchange(true)) {
        json newer = Pod("p", "node1");
        newer["metadata"]["uid"] = "uid-2";
        json older = Pod("p", "node1");
        older["metadata"]["uid"] = "uid-1";
        on_event({"ADDED", newer});
        on_event({"DELETED", older});
        done_ = true;
      }
      while (!stop) std::this_thread::sleep_for(5ms);
      return absl::OkStatus();
    }
    std::atomic<bool> sent_{false}, done_{false};
  };
  Scripted scripted(*client_);
  PodCache cache(scripted, opts_);
  cache.Start();
  ASSERT_TRUE(Eventually([&] { return scripted.done_.load(); }));
  EXPECT_EQ(UidIn(cache, "p"), "uid-2");
  cache.Stop();
}

}  // namespace
}  // namespace knd::kube
