// knd-kubelet against the real DRA plugin: the binary watches a temp registry dir, registers
// the in-process Plugin over the real gRPC protocol, and prepares/unprepares a pod's claim it
// reads from a tiny fake API server.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <thread>

#include "common/metrics.h"
#include "dra/fake_kube.h"
#include "dra/plugin.h"

extern char** environ;

namespace knd::dra {
namespace {

using nlohmann::json;

constexpr char kDriver[] = "knd.k8s.cni.cncf.io";

// Claims the in-process driver handled for `method` ("NodePrepareResources", ...), from its
// knd_dra_claims_total counter: what reached the driver.
double DriverClaims(const std::string& method) {
  auto& c = metrics::Default().Counter("knd_dra_claims_total", "", {"method", "outcome"});
  return c.Value({method, "success"}) + c.Value({method, "error"});
}

bool WaitFor(const std::function<bool()>& cond, int seconds = 20) {
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return cond();
}

class KubeletTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/knd-kubelet-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    objects_["/api/v1/namespaces/ns/pods/pod"] = {
        {"metadata", {{"namespace", "ns"}, {"name", "pod"}, {"uid", "pod-uid"}}},
        {"spec", {{"resourceClaims", {{{"name", "net"}, {"resourceClaimTemplateName", "t"}}}}}},
        {"status",
         {{"resourceClaimStatuses", {{{"name", "net"}, {"resourceClaimName", "claim"}}}}}}};
    objects_["/apis/resource.k8s.io/v1/namespaces/ns/resourceclaims/claim"] = {
        {"metadata", {{"namespace", "ns"}, {"name", "claim"}, {"uid", "claim-uid"}}},
        {"status",
         {{"allocation",
           {{"devices",
             {{"results",
               {{{"request", "nic/a"},
                 {"driver", kDriver},
                 {"pool", "node1"},
                 {"device", "eth1"}}}}}}}},
          {"reservedFor", {{{"resource", "pods"}, {"name", "pod"}, {"uid", "pod-uid"}}}}}}};

    // The fake API the binary reads.
    api_.Get(".*", [this](const httplib::Request& req, httplib::Response& res) {
      auto it = objects_.find(req.path);
      if (it == objects_.end()) {
        res.status = 404;
        res.set_content(R"({"kind":"Status","code":404})", "application/json");
        return;
      }
      res.set_content(it->second.dump(), "application/json");
    });
    api_.Delete(".*", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> l(deletes_mu_);
      std::string q;
      for (const auto& [k, v] : req.params) q += k + "=" + v;
      deletes_.push_back(req.path + "?" + q);
      res.set_content(R"({"kind":"Status","status":"Success"})", "application/json");
    });
    api_port_ = api_.bind_to_any_port("127.0.0.1");
    ASSERT_GT(api_port_, 0);
    api_thread_ = std::thread([this] { api_.listen_after_bind(); });

    // The driver side, in process, with the same objects.
    kube_.objects = objects_;
    store_ = std::make_unique<state::PlanStore>(dir_ + "/plans");
    inventory::Device eth1;
    eth1.name = eth1.ifname = "eth1";
    eth1.ifindex = 4;
    preparer_ = std::make_unique<Preparer>(
        kube_, *store_,
        [eth1](const std::string& n) -> std::optional<inventory::Device> {
          if (n == "eth1") return eth1;
          return std::nullopt;
        },
        Preparer::Options{kDriver, "node1", dir_ + "/cdi", nullptr});
    plugin_ =
        std::make_unique<Plugin>(Plugin::Options{kDriver, dir_ + "/kubelet", "node1"}, *preparer_);
  }

  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    plugin_.reset();
    api_.stop();
    if (api_thread_.joinable()) api_thread_.join();
    std::filesystem::remove_all(dir_);
  }

  void StartKubelet() {
    const char* bin_dir = getenv("KND_BINARY_DIR");
    ASSERT_NE(bin_dir, nullptr) << "run through ctest (KND_BINARY_DIR)";
    std::string bin = std::string(bin_dir) + "/test/localcp/kubelet/knd-kubelet";
    std::string port_file = dir_ + "/kubelet.port";
    std::vector<std::string> args = {bin,
                                     "--registry-dir",
                                     dir_ + "/kubelet/plugins_registry",
                                     "--apiserver",
                                     "http://127.0.0.1:" + std::to_string(api_port_),
                                     "--node-name",
                                     "node1",
                                     "--listen",
                                     "127.0.0.1:0",
                                     "--port-file",
                                     port_file,
                                     "--wipe-slices-on-start"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ASSERT_EQ(posix_spawn(&pid_, bin.c_str(), nullptr, nullptr, argv.data(), environ), 0);
    ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(port_file); }));
    std::ifstream in(port_file);
    in >> kubelet_port_;
    ASSERT_GT(kubelet_port_, 0);
  }

  json GetJson(const std::string& path) {
    httplib::Client c("127.0.0.1", kubelet_port_);
    auto r = c.Get(path);
    if (!r || r->status != 200) return json("unreachable");
    return json::parse(r->body, nullptr, false);
  }

  std::pair<int, json> PostJson(const std::string& path, const json& body) {
    httplib::Client c("127.0.0.1", kubelet_port_);
    c.set_read_timeout(60);
    auto r = c.Post(path, body.dump(), "application/json");
    if (!r) return {0, json()};
    return {r->status, json::parse(r->body, nullptr, false)};
  }

  std::string dir_;
  std::map<std::string, json> objects_;
  httplib::Server api_;
  int api_port_ = 0;
  std::thread api_thread_;
  std::mutex deletes_mu_;
  std::vector<std::string> deletes_;
  fakes::FakeKube kube_;
  std::unique_ptr<state::PlanStore> store_;
  std::unique_ptr<Preparer> preparer_;
  std::unique_ptr<Plugin> plugin_;
  pid_t pid_ = -1;
  int kubelet_port_ = 0;
};

TEST_F(KubeletTest, RegistersPreparesUnpreparesAndDeregisters) {
  StartKubelet();
  ASSERT_TRUE(GetJson("/plugins").empty());
  {
    // Like the real kubelet at start: all slices of this node are wiped.
    std::lock_guard<std::mutex> l(deletes_mu_);
    EXPECT_THAT(deletes_,
                ::testing::ElementsAre(
                    "/apis/resource.k8s.io/v1/resourceslices?fieldSelector=spec.nodeName=node1"));
  }
  ASSERT_TRUE(plugin_->Start().ok());

  // Registration over the real protocol: the kubelet lists us and told us so.
  ASSERT_TRUE(WaitFor([&] { return GetJson("/plugins").size() == 1; }));
  json p = GetJson("/plugins")[0];
  EXPECT_EQ(p["name"], kDriver);
  EXPECT_EQ(p["endpoint"], plugin_->dra_socket());
  EXPECT_EQ(p["service"], "v1.DRAPlugin");
  EXPECT_EQ(p["versions"], json({"v1.DRAPlugin", "v1beta1.DRAPlugin"}));
  ASSERT_TRUE(WaitFor([&] { return plugin_->registered(); }));

  // Prepare the pod: the claim comes from status.resourceClaimStatuses (template).
  auto [code, res] = PostJson("/prepare", {{"namespace", "ns"}, {"name", "pod"}});
  ASSERT_EQ(code, 200) << res.dump();
  const json& c = res["claims"]["claim-uid"];
  EXPECT_EQ(c["error"], "");
  ASSERT_EQ(c["devices"].size(), 1u);
  EXPECT_EQ(c["devices"][0]["requestNames"], json({"nic"}));
  EXPECT_EQ(c["devices"][0]["poolName"], "node1");
  EXPECT_EQ(c["devices"][0]["deviceName"], "eth1");
  EXPECT_TRUE(store_->Get("claim-uid").ok());

  // The v1beta1 service answers the same (a raw call: a second /prepare of the pod would be
  // answered from the kubelet's cache, without reaching the driver).
  auto [code2, res2] =
      PostJson("/prepare-claims?api=v1beta1",
               {{"claims", {{{"namespace", "ns"}, {"name", "claim"}, {"uid", "claim-uid"}}}}});
  ASSERT_EQ(code2, 200) << res2.dump();
  EXPECT_EQ(res2, res);

  // A claim the driver refuses comes back per claim, HTTP 200.
  auto [code3, res3] =
      PostJson("/prepare-claims",
               {{"claims", {{{"namespace", "ns"}, {"name", "claim"}, {"uid", "stale-uid"}}}}});
  ASSERT_EQ(code3, 200) << res3.dump();
  EXPECT_THAT(res3["claims"]["stale-uid"]["error"].get<std::string>(),
              ::testing::HasSubstr("UID mismatch"));

  auto [code4, res4] = PostJson("/unprepare", {{"namespace", "ns"}, {"name", "pod"}});
  ASSERT_EQ(code4, 200) << res4.dump();
  EXPECT_EQ(res4["claims"]["claim-uid"]["error"], "");
  EXPECT_TRUE(absl::IsNotFound(store_->Get("claim-uid").status()));

  // Stopping the plugin removes its registration socket: the kubelet deregisters it.
  plugin_->Stop();
  ASSERT_TRUE(WaitFor([&] { return GetJson("/plugins").empty(); }));

  // Clean exit on SIGTERM.
  ASSERT_EQ(::kill(pid_, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid_, &status, 0), pid_);
  pid_ = -1;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

// The kubelet's claim-info cache: a claim already prepared on the node is not prepared again
// for another pod (or the same pod again), and is unprepared only with its last pod.
TEST_F(KubeletTest, SharedClaimIsPreparedOnceAndUnpreparedWithItsLastPod) {
  const std::string claim_path = "/apis/resource.k8s.io/v1/namespaces/ns/resourceclaims/claim";
  // pod2 uses the same claim (by name); the claim is reserved for both pods.
  json pod2 = {{"metadata", {{"namespace", "ns"}, {"name", "pod2"}, {"uid", "pod2-uid"}}},
               {"spec", {{"resourceClaims", {{{"name", "net"}, {"resourceClaimName", "claim"}}}}}}};
  objects_["/api/v1/namespaces/ns/pods/pod2"] = pod2;
  objects_[claim_path]["status"]["reservedFor"].push_back(
      {{"resource", "pods"}, {"name", "pod2"}, {"uid", "pod2-uid"}});
  // pod3 uses the shared claim and one the driver refuses (a device it does not have).
  objects_["/api/v1/namespaces/ns/pods/pod3"] = {
      {"metadata", {{"namespace", "ns"}, {"name", "pod3"}, {"uid", "pod3-uid"}}},
      {"spec",
       {{"resourceClaims",
         {{{"name", "net"}, {"resourceClaimName", "claim"}},
          {{"name", "bad"}, {"resourceClaimName", "claim-bad"}}}}}}};
  objects_[claim_path]["status"]["reservedFor"].push_back(
      {{"resource", "pods"}, {"name", "pod3"}, {"uid", "pod3-uid"}});
  json bad = objects_[claim_path];
  bad["metadata"]["name"] = "claim-bad";
  bad["metadata"]["uid"] = "claim-bad-uid";
  bad["status"]["allocation"]["devices"]["results"][0]["device"] = "eth9";
  bad["status"]["reservedFor"] = {{{"resource", "pods"}, {"name", "pod3"}, {"uid", "pod3-uid"}}};
  objects_["/apis/resource.k8s.io/v1/namespaces/ns/resourceclaims/claim-bad"] = bad;
  {
    // The driver refuses a claim reserved for several running pods (a netdev is in one pod
    // at a time; it serves a shared claim only across a hand-over, when the old pod has
    // finished). The kubelet's cache is under test here, and the kubelet reads its own API:
    // the driver's copy of the claim names the first pod only.
    std::lock_guard<std::mutex> l(kube_.mu);
    kube_.objects = objects_;
    kube_.objects[claim_path]["status"]["reservedFor"] = {
        {{"resource", "pods"}, {"name", "pod"}, {"uid", "pod-uid"}}};
  }
  objects_["/api/v1/namespaces/ns/pods/pod4"] = {
      {"metadata", {{"namespace", "ns"}, {"name", "pod4"}, {"uid", "pod4-uid"}}},
      {"spec", {{"resourceClaims", {{{"name", "net"}, {"resourceClaimName", "claim"}}}}}}};
  const double prep0 = DriverClaims("NodePrepareResources");
  const double unprep0 = DriverClaims("NodeUnprepareResources");
  auto prepared = [&] { return DriverClaims("NodePrepareResources") - prep0; };
  auto unprepared = [&] { return DriverClaims("NodeUnprepareResources") - unprep0; };
  StartKubelet();
  ASSERT_TRUE(plugin_->Start().ok());
  ASSERT_TRUE(WaitFor([&] { return GetJson("/plugins").size() == 1 && plugin_->registered(); }));

  auto [code, first] = PostJson("/prepare", {{"namespace", "ns"}, {"name", "pod"}});
  ASSERT_EQ(code, 200) << first.dump();
  const json& c = first["claims"]["claim-uid"];
  EXPECT_EQ(c["error"], "");
  EXPECT_FALSE(c.contains("cached")) << c.dump();
  ASSERT_EQ(c["devices"].size(), 1u);
  EXPECT_EQ(prepared(), 1);

  // Second pod, same claim: answered from the cache, no driver call.
  auto [code2, second] = PostJson("/prepare", {{"namespace", "ns"}, {"name", "pod2"}});
  ASSERT_EQ(code2, 200) << second.dump();
  EXPECT_EQ(second["claims"]["claim-uid"]["cached"], true) << second.dump();
  EXPECT_EQ(second["claims"]["claim-uid"]["devices"], c["devices"]);
  EXPECT_EQ(second["claims"]["claim-uid"]["error"], "");
  // The same pod again: also from the cache.
  auto [code3, again] = PostJson("/prepare", {{"namespace", "ns"}, {"name", "pod"}});
  ASSERT_EQ(code3, 200) << again.dump();
  EXPECT_EQ(again["claims"]["claim-uid"]["cached"], true);
  EXPECT_EQ(prepared(), 1) << "a prepared claim must not reach the driver again";

  // A pod the claim is not reserved for is still refused (the cache does not skip the check).
  auto [code4, refused] = PostJson("/prepare", {{"namespace", "ns"}, {"name", "pod4"}});
  EXPECT_EQ(code4, 409) << refused.dump();

  // pod3's prepare fails (claim-bad): it must not take a reference on the shared claim.
  auto [code5, failed] = PostJson("/prepare", {{"namespace", "ns"}, {"name", "pod3"}});
  ASSERT_EQ(code5, 200) << failed.dump();
  EXPECT_NE(failed["claims"]["claim-bad-uid"]["error"], "") << failed.dump();
  EXPECT_EQ(failed["claims"]["claim-uid"]["cached"], true);
  EXPECT_EQ(prepared(), 2) << "only claim-bad reached the driver";

  // The first pod goes: pod2 still uses the claim, so no driver call and nothing listed.
  auto [code6, un1] = PostJson("/unprepare", {{"namespace", "ns"}, {"name", "pod"}});
  ASSERT_EQ(code6, 200) << un1.dump();
  EXPECT_EQ(un1["claims"], json::object());
  EXPECT_EQ(unprepared(), 0);
  EXPECT_TRUE(store_->Get("claim-uid").ok()) << "still prepared for pod2";
  // The last pod goes: now the driver unprepares the claim (pod3 holds no reference).
  auto [code7, un2] = PostJson("/unprepare", {{"namespace", "ns"}, {"name", "pod2"}});
  ASSERT_EQ(code7, 200) << un2.dump();
  ASSERT_TRUE(un2["claims"].contains("claim-uid")) << un2.dump();
  EXPECT_EQ(un2["claims"]["claim-uid"]["error"], "");
  EXPECT_EQ(un2["claims"].size(), 1u);
  EXPECT_EQ(unprepared(), 1);
  EXPECT_TRUE(absl::IsNotFound(store_->Get("claim-uid").status()));

  // Unprepared, the claim leaves the cache: the next pod's prepare reaches the driver again.
  auto [code8, fresh] = PostJson("/prepare", {{"namespace", "ns"}, {"name", "pod2"}});
  ASSERT_EQ(code8, 200) << fresh.dump();
  EXPECT_FALSE(fresh["claims"]["claim-uid"].contains("cached")) << fresh.dump();
  EXPECT_EQ(prepared(), 3);

  // The raw endpoints bypass the cache.
  auto [code9, raw] =
      PostJson("/prepare-claims",
               {{"claims", {{{"namespace", "ns"}, {"name", "claim"}, {"uid", "claim-uid"}}}}});
  ASSERT_EQ(code9, 200) << raw.dump();
  EXPECT_FALSE(raw["claims"]["claim-uid"].contains("cached"));
  EXPECT_EQ(prepared(), 4);
}

}  // namespace
}  // namespace knd::dra
