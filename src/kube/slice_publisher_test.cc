#include "kube/slice_publisher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"

namespace knd::kube {
namespace {

using nlohmann::json;

json Dev(const std::string& name, const std::string& ifname = "") {
  return json{{"name", name},
              {"attributes",
               {{"knd.k8s.cni.cncf.io/ifName", {{"string", ifname.empty() ? name : ifname}}}}}};
}

std::vector<json> Devs(int n, const std::string& prefix = "eth") {
  std::vector<json> v;
  for (int i = 0; i < n; ++i) v.push_back(Dev(absl::StrCat(prefix, 1000 + i)));
  return v;
}

SlicePublisherOptions Opts() {
  SlicePublisherOptions o;
  o.node_name = "node-a";
  o.driver_name = "knd.k8s.cni.cncf.io";
  o.debounce = std::chrono::milliseconds(20);
  o.backoff_initial = std::chrono::milliseconds(20);
  o.backoff_max = std::chrono::milliseconds(100);
  return o;
}

// Turns a plan into what the server would hold afterwards (resourceVersion bumped).
std::vector<json> Apply(std::vector<json> existing, const SliceChanges& c) {
  std::map<std::string, json> m;
  for (auto& s : existing) m[s["metadata"]["name"]] = s;
  for (auto& n : c.deletes) m.erase(n);
  int rv = 100;
  for (auto s : c.creates) {
    s["metadata"]["resourceVersion"] = std::to_string(rv++);
    m[s["metadata"]["name"]] = s;
  }
  for (auto s : c.updates) {
    s["metadata"]["resourceVersion"] = std::to_string(rv++);
    m[s["metadata"]["name"]] = s;
  }
  std::vector<json> out;
  for (auto& [_, s] : m) out.push_back(s);
  return out;
}

TEST(SliceName, DotsBecomeDashes) {
  EXPECT_EQ(SliceName("n1", "knd.k8s.cni.cncf.io", 2), "n1-knd-k8s-cni-cncf-io-2");
}

TEST(PlanSliceChanges, FirstPublishThenNoOp) {
  auto opts = Opts();
  opts.node_uid = "uid-1";
  auto c = PlanSliceChanges({}, Devs(3), opts);
  ASSERT_EQ(c.creates.size(), 1u);
  EXPECT_TRUE(c.updates.empty());
  EXPECT_TRUE(c.deletes.empty());
  const json& s = c.creates[0];
  EXPECT_EQ(s["apiVersion"], "resource.k8s.io/v1");
  EXPECT_EQ(s["kind"], "ResourceSlice");
  EXPECT_EQ(s["metadata"]["name"], "node-a-knd-k8s-cni-cncf-io-0");
  EXPECT_EQ(s["spec"]["driver"], "knd.k8s.cni.cncf.io");
  EXPECT_EQ(s["spec"]["nodeName"], "node-a");
  EXPECT_EQ(s["spec"]["pool"]["name"], "node-a");
  EXPECT_EQ(s["spec"]["pool"]["generation"], 1);
  EXPECT_EQ(s["spec"]["pool"]["resourceSliceCount"], 1);
  EXPECT_EQ(s["spec"]["devices"].size(), 3u);
  EXPECT_EQ(s["metadata"]["ownerReferences"][0], (json{{"apiVersion", "v1"},
                                                       {"kind", "Node"},
                                                       {"name", "node-a"},
                                                       {"uid", "uid-1"},
                                                       {"controller", true}}));
  auto server = Apply({}, c);
  // Same devices in another order: nothing to write.
  auto devs = Devs(3);
  std::reverse(devs.begin(), devs.end());
  EXPECT_TRUE(PlanSliceChanges(server, devs, opts).empty());
}

TEST(PlanSliceChanges, ThreeHundredDevicesMakeThreeSlices) {
  auto c = PlanSliceChanges({}, Devs(300), Opts());
  ASSERT_EQ(c.creates.size(), 3u);
  std::vector<size_t> sizes;
  for (auto& s : c.creates) {
    sizes.push_back(s["spec"]["devices"].size());
    EXPECT_EQ(s["spec"]["pool"]["resourceSliceCount"], 3);
    EXPECT_FALSE(s["metadata"].contains("ownerReferences"));  // no node uid known
  }
  EXPECT_EQ(sizes, (std::vector<size_t>{128, 128, 44}));
  EXPECT_EQ(c.creates[2]["metadata"]["name"], "node-a-knd-k8s-cni-cncf-io-2");
  // Sorted by name across slices.
  EXPECT_EQ(c.creates[0]["spec"]["devices"][0]["name"], "eth1000");
  EXPECT_EQ(c.creates[2]["spec"]["devices"][43]["name"], "eth1299");
}

TEST(PlanSliceChanges, OneChangedDeviceBumpsGenerationInAllSlices) {
  auto opts = Opts();
  auto server = Apply({}, PlanSliceChanges({}, Devs(300), opts));
  auto devs = Devs(300);
  devs[299] = Dev("eth1299", "renamed");  // only the last slice's content changes
  auto c = PlanSliceChanges(server, devs, opts);
  EXPECT_TRUE(c.creates.empty());
  EXPECT_TRUE(c.deletes.empty());
  ASSERT_EQ(c.updates.size(), 3u);
  for (auto& s : c.updates) {
    EXPECT_EQ(s["spec"]["pool"]["generation"], 2);
    EXPECT_FALSE(s["metadata"]["resourceVersion"].get<std::string>().empty());
  }
  EXPECT_TRUE(PlanSliceChanges(Apply(server, c), devs, opts).empty());
}

TEST(PlanSliceChanges, ShrinkDeletesSurplusAndForeignNames) {
  auto opts = Opts();
  auto server = Apply({}, PlanSliceChanges({}, Devs(300), opts));
  json foreign = server[0];
  foreign["metadata"]["name"] = "node-a-knd-k8s-cni-cncf-io-abcde";  // e.g. generateName leftover
  server.push_back(foreign);
  auto c = PlanSliceChanges(server, Devs(10), opts);
  EXPECT_THAT(c.deletes, ::testing::UnorderedElementsAre("node-a-knd-k8s-cni-cncf-io-1",
                                                         "node-a-knd-k8s-cni-cncf-io-2",
                                                         "node-a-knd-k8s-cni-cncf-io-abcde"));
  ASSERT_EQ(c.updates.size(), 1u);
  EXPECT_EQ(c.updates[0]["spec"]["pool"]["resourceSliceCount"], 1);
  EXPECT_EQ(c.updates[0]["spec"]["pool"]["generation"], 2);
  EXPECT_TRUE(PlanSliceChanges(Apply(server, c), Devs(10), opts).empty());
}

TEST(PlanSliceChanges, InconsistentGenerationsOrCountAreRepaired) {
  auto opts = Opts();
  auto server = Apply({}, PlanSliceChanges({}, Devs(200), opts));
  server[1]["spec"]["pool"]["generation"] = 7;  // half-done earlier publish
  auto c = PlanSliceChanges(server, Devs(200), opts);
  ASSERT_EQ(c.updates.size(), 2u);
  for (auto& s : c.updates) EXPECT_EQ(s["spec"]["pool"]["generation"], 8);
}

TEST(PlanSliceChanges, MissingOwnerReferenceIsAdded) {
  auto opts = Opts();
  auto server = Apply({}, PlanSliceChanges({}, Devs(2), opts));
  opts.node_uid = "u";
  auto c = PlanSliceChanges(server, Devs(2), opts);
  ASSERT_EQ(c.updates.size(), 1u);
  EXPECT_EQ(c.updates[0]["metadata"]["ownerReferences"][0]["uid"], "u");
}

TEST(PlanSliceChanges, NoDevicesDeletesEverything) {
  auto opts = Opts();
  auto server = Apply({}, PlanSliceChanges({}, Devs(2), opts));
  auto c = PlanSliceChanges(server, {}, opts);
  EXPECT_EQ(c.deletes.size(), 1u);
  EXPECT_TRUE(c.creates.empty());
  EXPECT_TRUE(PlanSliceChanges({}, {}, opts).empty());
}

// An in-memory API server for ResourceSlices and Nodes with resourceVersions and watch.
class FakeClient : public Client {
 public:
  absl::StatusOr<json> Get(const std::string& path) override {
    std::lock_guard<std::mutex> l(mu_);
    if (down_) return absl::UnavailableError("down");
    if (path == "/api/v1/nodes/node-a" && !node_uid_.empty()) {
      return json{{"metadata", {{"name", "node-a"}, {"uid", node_uid_}}}};
    }
    return absl::NotFoundError(path);
  }
  absl::StatusOr<json> List(const std::string&, const ListOptions& o) override {
    std::lock_guard<std::mutex> l(mu_);
    if (down_) return absl::UnavailableError("down");
    lists_++;
    last_selector_ = o.field_selector;
    json items = json::array();
    for (auto& [_, s] : slices_) items.push_back(s);
    return json{{"metadata", {{"resourceVersion", std::to_string(rv_)}}}, {"items", items}};
  }
  absl::StatusOr<json> Create(const std::string&, const json& obj) override {
    std::lock_guard<std::mutex> l(mu_);
    if (down_) return absl::UnavailableError("down");
    std::string name = obj["metadata"]["name"];
    if (slices_.count(name)) return absl::AlreadyExistsError(name);
    writes_++;
    return Store(obj, "ADDED");
  }
  absl::StatusOr<json> Update(const std::string& path, const json& obj) override {
    std::lock_guard<std::mutex> l(mu_);
    if (down_) return absl::UnavailableError("down");
    std::string name = path.substr(path.rfind('/') + 1);
    auto it = slices_.find(name);
    if (it == slices_.end()) return absl::NotFoundError(name);
    if (it->second["metadata"]["resourceVersion"] != obj["metadata"]["resourceVersion"]) {
      return absl::AbortedError("conflict");
    }
    writes_++;
    return Store(obj, "MODIFIED");
  }
  absl::StatusOr<json> MergePatch(const std::string&, const json&) override {
    return absl::UnimplementedError("");
  }
  absl::StatusOr<json> Apply(const std::string&, const json&, const std::string&, bool) override {
    return absl::UnimplementedError("");
  }
  absl::Status Delete(const std::string& path) override {
    std::lock_guard<std::mutex> l(mu_);
    if (down_) return absl::UnavailableError("down");
    writes_++;
    RemoveLocked(path.substr(path.rfind('/') + 1));
    return absl::OkStatus();
  }
  absl::Status DeleteCollection(const std::string&, const ListOptions&) override {
    return absl::UnimplementedError("");
  }
  absl::Status Watch(const std::string&, const ListOptions& o,
                     const std::function<bool(const WatchEvent&)>& on_event,
                     const std::atomic<bool>& stop) override {
    std::unique_lock<std::mutex> l(mu_);
    if (down_) return absl::UnavailableError("down");
    watches_++;
    if (gone_next_) {
      gone_next_ = false;
      return absl::OutOfRangeError("410 Gone: too old resource version");
    }
    long from = o.resource_version.empty() ? rv_ : std::stol(o.resource_version);
    size_t next = 0;
    while (!stop && !down_) {
      while (next < events_.size()) {
        auto [rv, ev] = events_[next++];
        if (rv <= from) continue;
        l.unlock();
        bool more = on_event(ev);
        l.lock();
        if (!more) return absl::OkStatus();
      }
      cv_.wait_for(l, std::chrono::milliseconds(10));
    }
    return down_ ? absl::UnavailableError("down") : absl::OkStatus();
  }

  // Someone else (the kubelet) deletes a slice.
  void ExternalDelete(const std::string& name) {
    std::lock_guard<std::mutex> l(mu_);
    RemoveLocked(name);
  }
  void SetDown(bool d) {
    std::lock_guard<std::mutex> l(mu_);
    down_ = d;
    cv_.notify_all();
  }
  std::map<std::string, json> Slices() {
    std::lock_guard<std::mutex> l(mu_);
    return slices_;
  }
  int Watches() {
    std::lock_guard<std::mutex> l(mu_);
    return watches_;
  }
  int Writes() {
    std::lock_guard<std::mutex> l(mu_);
    return writes_;
  }
  std::string node_uid_;
  std::string last_selector_;
  bool gone_next_ = false;
  int watches_ = 0;
  int lists_ = 0;

 private:
  json Store(json obj, const char* type) {
    obj["metadata"]["resourceVersion"] = std::to_string(++rv_);
    slices_[obj["metadata"]["name"]] = obj;
    events_.push_back({rv_, WatchEvent{type, obj}});
    cv_.notify_all();
    return obj;
  }
  void RemoveLocked(const std::string& name) {
    auto it = slices_.find(name);
    if (it == slices_.end()) return;
    json obj = it->second;
    slices_.erase(it);
    obj["metadata"]["resourceVersion"] = std::to_string(++rv_);
    events_.push_back({rv_, WatchEvent{"DELETED", obj}});
    cv_.notify_all();
  }
  std::mutex mu_;
  std::condition_variable cv_;
  bool down_ = false;
  long rv_ = 1;
  int writes_ = 0;
  std::map<std::string, json> slices_;
  std::vector<std::pair<long, WatchEvent>> events_;
};

// Polls `pred` for up to 10 s (a bound, not a timing assertion).
template <typename F>
bool Eventually(F pred) {
  for (int i = 0; i < 1000; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

size_t PublishedDevices(FakeClient& fc) {
  size_t n = 0;
  for (auto& [_, s] : fc.Slices()) n += s["spec"]["devices"].size();
  return n;
}

TEST(SlicePublisher, PublishesIdlesAndConverges) {
  FakeClient fc;
  fc.node_uid_ = "node-uid-1";
  SlicePublisher pub(fc, Opts());
  pub.Start();
  // Nothing is published before the first SetDevices (a restarting driver must not wipe).
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(fc.Writes(), 0);
  pub.SetDevices(Devs(130));
  ASSERT_TRUE(Eventually([&] { return PublishedDevices(fc) == 130 && fc.Slices().size() == 2; }));
  EXPECT_EQ(fc.last_selector_, "spec.nodeName=node-a,spec.driver=knd.k8s.cni.cncf.io");
  for (auto& [_, s] : fc.Slices()) {
    EXPECT_EQ(s["metadata"]["ownerReferences"][0]["uid"], "node-uid-1");
  }
  ASSERT_TRUE(Eventually([&] { return pub.Stats().creates == 2; }));
  int writes = fc.Writes();

  // Idle: the same devices again cost a reconcile but no write.
  uint64_t reconciles = pub.Stats().reconciles;
  pub.SetDevices(Devs(130));
  ASSERT_TRUE(Eventually([&] { return pub.Stats().reconciles > reconciles; }));
  EXPECT_EQ(fc.Writes(), writes);
  EXPECT_EQ(pub.Stats().published_devices, 130u);

  // The kubelet wipes a slice: the watch notices and it comes back.
  fc.ExternalDelete("node-a-knd-k8s-cni-cncf-io-1");
  // Back as one consistent pool: both slices at the next generation (the create and the
  // update land one after the other, so wait for both).
  ASSERT_TRUE(Eventually([&] {
    auto slices = fc.Slices();
    if (slices.size() != 2 || PublishedDevices(fc) != 130) return false;
    for (auto& [_, s] : slices) {
      if (s["spec"]["pool"]["generation"] != 2) return false;
    }
    return true;
  }));
  pub.Stop();
}

TEST(SlicePublisher, WatchRelistsAfterGoneAndStillRepairs) {
  FakeClient fc;
  fc.gone_next_ = true;  // the first watch answers 410
  SlicePublisher pub(fc, Opts());
  pub.Start();
  pub.SetDevices(Devs(4));
  ASSERT_TRUE(Eventually([&] { return PublishedDevices(fc) == 4; }));
  ASSERT_TRUE(Eventually([&] { return fc.Watches() >= 2; }));
  fc.ExternalDelete("node-a-knd-k8s-cni-cncf-io-0");
  ASSERT_TRUE(Eventually([&] { return PublishedDevices(fc) == 4; }));
  pub.Stop();
}

TEST(SlicePublisher, BurstCoalescesIntoOnePublish) {
  FakeClient fc;
  auto opts = Opts();
  opts.debounce = std::chrono::milliseconds(200);
  SlicePublisher pub(fc, opts);
  pub.Start();
  for (int i = 1; i <= 50; ++i) pub.SetDevices(Devs(i));
  // Within the debounce the change is pending; once nothing is, the last set is published
  // (what a caller waiting for "settled" relies on, however slow the machine).
  EXPECT_TRUE(pub.Stats().pending);
  ASSERT_TRUE(Eventually([&] { return !pub.Stats().pending; }));
  EXPECT_EQ(PublishedDevices(fc), 50u);
  // One create; at most one more write if the scheduler split the burst.
  EXPECT_LE(fc.Writes(), 2);
  pub.Stop();
}

TEST(SlicePublisher, OutageThenRecovery) {
  FakeClient fc;
  SlicePublisher pub(fc, Opts());
  fc.SetDown(true);
  pub.Start();
  pub.SetDevices(Devs(5));
  ASSERT_TRUE(Eventually([&] { return pub.Stats().errors >= 2; }));
  EXPECT_TRUE(fc.Slices().empty());
  EXPECT_TRUE(pub.Stats().pending) << "a failed pass leaves the change pending";
  fc.SetDown(false);
  ASSERT_TRUE(Eventually([&] { return PublishedDevices(fc) == 5; }));
  // No Node object: published without an ownerReference.
  for (auto& [_, s] : fc.Slices()) EXPECT_FALSE(s["metadata"].contains("ownerReferences"));
  pub.Stop();
  EXPECT_GE(pub.Stats().creates, 1u);
}

TEST(SlicePublisher, ShrinkDeletesAndStopIsIdempotent) {
  FakeClient fc;
  SlicePublisher pub(fc, Opts());
  pub.Start();
  pub.SetDevices(Devs(300));
  ASSERT_TRUE(Eventually([&] { return fc.Slices().size() == 3; }));
  pub.SetDevices(Devs(3));
  ASSERT_TRUE(Eventually([&] { return fc.Slices().size() == 1 && PublishedDevices(fc) == 3; }));
  ASSERT_TRUE(Eventually([&] { return pub.Stats().deletes == 2; }));
  pub.Stop();
  pub.Stop();
}

}  // namespace
}  // namespace knd::kube
