// Tests of the stand-in API server over HTTP, as its clients (knd, the stand-ins, the e2e
// tests) use it: an in-process server on an ephemeral port and cpp-httplib's client.
#include "apiserver.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <set>
#include <thread>

namespace knd::localcp {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

constexpr char kClaims[] = "/apis/resource.k8s.io/v1/namespaces/ns1/resourceclaims";
constexpr char kSlices[] = "/apis/resource.k8s.io/v1/resourceslices";
constexpr char kJson[] = "application/json";

struct Resp {
  int code = 0;
  json body;
};

class ApiServerTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(ApiServerOptions{}); }

  void StartServer(ApiServerOptions opt) {
    opt.bookmark_interval_ms = 100;
    server_ = std::make_unique<ApiServer>(opt);
    ASSERT_TRUE(server_->Start().ok());
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
    client_->set_read_timeout(10, 0);
  }

  static Resp ToResp(const httplib::Result& r) {
    if (!r) return {-1, nullptr};
    return {r->status, json::parse(r->body, nullptr, false)};
  }
  Resp Get(const std::string& p) { return ToResp(client_->Get(p)); }
  Resp Post(const std::string& p, const json& b) {
    return ToResp(client_->Post(p, b.dump(), kJson));
  }
  Resp Put(const std::string& p, const json& b) { return ToResp(client_->Put(p, b.dump(), kJson)); }
  Resp Patch(const std::string& p, const json& b, const char* ct) {
    return ToResp(client_->Patch(p, b.dump(), ct));
  }
  Resp Delete(const std::string& p) { return ToResp(client_->Delete(p)); }

  // Reads watch events until `stop` returns true for the events so far (or the stream ends).
  std::vector<json> Watch(const std::string& path,
                          std::function<bool(const std::vector<json>&)> stop) {
    std::vector<json> events;
    std::string buf;
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(15, 0);
    c.Get(path, [&](const char* data, size_t n) {
      buf.append(data, n);
      size_t nl;
      while ((nl = buf.find('\n')) != std::string::npos) {
        events.push_back(json::parse(buf.substr(0, nl), nullptr, false));
        buf.erase(0, nl + 1);
        if (stop(events)) return false;
      }
      return true;
    });
    return events;
  }

  static json Claim(const std::string& name) {
    return {{"apiVersion", "resource.k8s.io/v1"},
            {"kind", "ResourceClaim"},
            {"metadata", {{"name", name}, {"labels", {{"app", "x"}}}}},
            {"spec",
             {{"devices",
               {{"requests", {{{"name", "nic"}, {"exactly", {{"deviceClassName", "knd"}}}}}}}}}}};
  }

  static json SliceObj(const std::string& name, const std::string& node,
                       const std::string& driver) {
    return {{"apiVersion", "resource.k8s.io/v1"},
            {"kind", "ResourceSlice"},
            {"metadata", {{"name", name}, {"labels", {{"node", node}}}}},
            {"spec",
             {{"driver", driver},
              {"nodeName", node},
              {"pool", {{"name", node}, {"generation", 1}, {"resourceSliceCount", 1}}},
              {"devices", {{{"name", "eth1"}}}}}}};
  }

  static std::string Rv(const json& obj) { return obj["metadata"]["resourceVersion"]; }

  // The list's resourceVersion to start a watch from, never "0": a watch from "0" means "any"
  // and begins with the current state (in key order, not resourceVersion order), so a writer
  // that races the watch start would change what the test sees.
  std::string LiveRv(const std::string& list_path) {
    Resp ns =
        Post("/api/v1/namespaces",
             {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", "rv-anchor"}}}});
    EXPECT_TRUE(ns.code == 201 || ns.code == 409) << ns.body.dump();
    std::string rv = Get(list_path).body["metadata"]["resourceVersion"];
    EXPECT_NE(rv, "0");
    return rv;
  }

  std::unique_ptr<ApiServer> server_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(ApiServerTest, CreateGetUpdateDeleteWithResourceVersions) {
  Resp c = Post(kClaims, Claim("c1"));
  ASSERT_EQ(c.code, 201) << c.body.dump();
  const json& md = c.body["metadata"];
  EXPECT_EQ(md["namespace"], "ns1");
  EXPECT_EQ(md["uid"].get<std::string>().size(), 36u);
  EXPECT_FALSE(md["creationTimestamp"].get<std::string>().empty());
  EXPECT_EQ(md["generation"], 1);
  std::string rv1 = Rv(c.body);

  Resp dup = Post(kClaims, Claim("c1"));
  EXPECT_EQ(dup.code, 409);
  EXPECT_EQ(dup.body["kind"], "Status");
  EXPECT_EQ(dup.body["reason"], "AlreadyExists");
  EXPECT_EQ(dup.body["message"], "resourceclaims.resource.k8s.io \"c1\" already exists");

  Resp g = Get(std::string(kClaims) + "/c1");
  ASSERT_EQ(g.code, 200);
  EXPECT_EQ(g.body, c.body);

  // Update with the current version: new version, spec change bumps generation.
  json upd = g.body;
  upd["spec"]["devices"]["requests"][0]["name"] = "nic2";
  Resp u = Put(std::string(kClaims) + "/c1", upd);
  ASSERT_EQ(u.code, 200) << u.body.dump();
  EXPECT_GT(std::stoull(Rv(u.body)), std::stoull(rv1));
  EXPECT_EQ(u.body["metadata"]["generation"], 2);
  EXPECT_EQ(u.body["metadata"]["uid"], md["uid"]);

  // The old version is stale now.
  Resp stale = Put(std::string(kClaims) + "/c1", upd);
  EXPECT_EQ(stale.code, 409);
  EXPECT_EQ(stale.body["reason"], "Conflict");
  EXPECT_THAT(stale.body["message"].get<std::string>(), HasSubstr("the object has been modified"));

  // Label-only change: generation stays.
  json lbl = u.body;
  lbl["metadata"]["labels"]["tier"] = "b";
  Resp u2 = Put(std::string(kClaims) + "/c1", lbl);
  ASSERT_EQ(u2.code, 200);
  EXPECT_EQ(u2.body["metadata"]["generation"], 2);

  EXPECT_EQ(Put(std::string(kClaims) + "/nope", Claim("nope")).code, 404);
  Resp mismatch = Put(std::string(kClaims) + "/c1", Claim("other"));
  EXPECT_EQ(mismatch.code, 400);

  Resp d = Delete(std::string(kClaims) + "/c1");
  ASSERT_EQ(d.code, 200);
  EXPECT_EQ(d.body["metadata"]["name"], "c1");
  Resp gone = Get(std::string(kClaims) + "/c1");
  EXPECT_EQ(gone.code, 404);
  EXPECT_EQ(gone.body["reason"], "NotFound");
  EXPECT_EQ(gone.body["message"], "resourceclaims.resource.k8s.io \"c1\" not found");
  EXPECT_EQ(Delete(std::string(kClaims) + "/c1").code, 404);

  // generateName.
  json gen = Claim("");
  gen["metadata"].erase("name");
  gen["metadata"]["generateName"] = "pod-nic-";
  Resp gn = Post(kClaims, gen);
  ASSERT_EQ(gn.code, 201);
  EXPECT_THAT(gn.body["metadata"]["name"].get<std::string>(), ::testing::StartsWith("pod-nic-"));
  EXPECT_EQ(gn.body["metadata"]["name"].get<std::string>().size(), 13u);

  // Lists carry kind, version and items.
  Resp l = Get(kClaims);
  ASSERT_EQ(l.code, 200);
  EXPECT_EQ(l.body["kind"], "ResourceClaimList");
  EXPECT_EQ(l.body["items"].size(), 1u);
  EXPECT_FALSE(l.body["metadata"]["resourceVersion"].get<std::string>().empty());

  // Bad input: not JSON, wrong kind, bad name, unknown resource.
  EXPECT_EQ(ToResp(client_->Post(kClaims, "{not json", kJson)).code, 400);
  json wrong = Claim("w");
  wrong["kind"] = "Pod";
  EXPECT_EQ(Post(kClaims, wrong).code, 400);
  Resp badname = Post(kClaims, Claim("Bad_Name"));
  EXPECT_EQ(badname.code, 422);
  EXPECT_THAT(badname.body["message"].get<std::string>(), HasSubstr("metadata.name"));
  EXPECT_EQ(Get("/apis/resource.k8s.io/v1/widgets").code, 404);
}

TEST_F(ApiServerTest, StatusSubresourceIsIsolated) {
  ASSERT_EQ(Post(kClaims, Claim("c1")).code, 201);
  // Status given on create is dropped for claims.
  Resp g = Get(std::string(kClaims) + "/c1");
  EXPECT_FALSE(g.body.contains("status"));

  json with_status = g.body;
  with_status["status"] = {{"reservedFor", {{{"resource", "pods"}, {"name", "p"}, {"uid", "u1"}}}}};
  Resp main = Put(std::string(kClaims) + "/c1", with_status);
  ASSERT_EQ(main.code, 200);
  EXPECT_FALSE(main.body.contains("status")) << "status written through the main resource";

  json st = main.body;
  st["status"] = with_status["status"];
  st["spec"]["devices"]["requests"][0]["name"] = "changed";
  Resp s = Put(std::string(kClaims) + "/c1/status", st);
  ASSERT_EQ(s.code, 200) << s.body.dump();
  EXPECT_EQ(s.body["status"]["reservedFor"][0]["uid"], "u1");
  EXPECT_EQ(s.body["spec"]["devices"]["requests"][0]["name"], "nic") << "spec written via status";
  EXPECT_EQ(s.body["metadata"]["generation"], 1);

  // Subresource on a type without one.
  EXPECT_EQ(Put(std::string(kSlices) + "/x/status", SliceObj("x", "n1", "d.example")).code, 404);

  // Pods: status writers may change annotations (how Multus writes network-status).
  const std::string pods = "/api/v1/namespaces/ns1/pods";
  json pod = {{"apiVersion", "v1"},
              {"kind", "Pod"},
              {"metadata", {{"name", "p1"}}},
              {"spec", {{"containers", {{{"name", "c"}, {"image", "i"}}}}}}};
  Resp pc = Post(pods, pod);
  ASSERT_EQ(pc.code, 201);
  EXPECT_EQ(pc.body["status"]["phase"], "Pending");
  json ps = pc.body;
  ps["metadata"]["annotations"] = {{"k8s.v1.cni.cncf.io/network-status", "[]"}};
  ps["status"]["podIP"] = "10.0.0.5";
  Resp pu = Put(pods + "/p1/status", ps);
  ASSERT_EQ(pu.code, 200);
  EXPECT_EQ(pu.body["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"], "[]");
  EXPECT_EQ(pu.body["status"]["podIP"], "10.0.0.5");
}

TEST_F(ApiServerTest, MergePatch) {
  ASSERT_EQ(Post(kClaims, Claim("c1")).code, 201);
  Resp p = Patch(
      std::string(kClaims) + "/c1",
      {{"metadata", {{"labels", {{"app", nullptr}, {"new", "1"}}}, {"annotations", {{"a", "b"}}}}}},
      "application/merge-patch+json");
  ASSERT_EQ(p.code, 200) << p.body.dump();
  EXPECT_FALSE(p.body["metadata"]["labels"].contains("app"));
  EXPECT_EQ(p.body["metadata"]["labels"]["new"], "1");
  EXPECT_EQ(p.body["metadata"]["annotations"]["a"], "b");
  // A patch naming a stale resourceVersion conflicts.
  Resp stale = Patch(std::string(kClaims) + "/c1", {{"metadata", {{"resourceVersion", "1"}}}},
                     "application/merge-patch+json");
  EXPECT_EQ(stale.code, 409);
  EXPECT_EQ(Patch(std::string(kClaims) + "/none", {{"a", 1}}, "application/merge-patch+json").code,
            404);
  EXPECT_EQ(Patch(std::string(kClaims) + "/c1", {{"a", 1}}, "text/plain").code, 415);
}

TEST_F(ApiServerTest, ServerSideApplyOwnsStatusDevicesPerManager) {
  ASSERT_EQ(Post(kClaims, Claim("c1")).code, 201);
  json claim = Get(std::string(kClaims) + "/c1").body;
  json results = json::array();
  for (const auto& [drv, dev] : std::vector<std::pair<std::string, std::string>>{
           {"a.example", "a1"}, {"a.example", "a2"}, {"b.example", "b1"}}) {
    results.push_back({{"request", "nic"}, {"driver", drv}, {"pool", "n1"}, {"device", dev}});
  }
  claim["status"] = {{"allocation", {{"devices", {{"results", results}}}}}};
  ASSERT_EQ(Put(std::string(kClaims) + "/c1/status", claim).code, 200);

  auto entry = [](const std::string& drv, const std::string& dev, const std::string& ifname) {
    return json{{"driver", drv},
                {"pool", "n1"},
                {"device", dev},
                {"conditions",
                 {{{"type", "Ready"},
                   {"status", "True"},
                   {"reason", "Attached"},
                   {"lastTransitionTime", "2026-01-01T00:00:00Z"}}}},
                {"networkData", {{"interfaceName", ifname}, {"ips", {"192.0.2.5/24"}}}}};
  };
  auto apply = [&](const std::string& manager, const json& devices, bool force = true) {
    json body = {{"apiVersion", "resource.k8s.io/v1"},
                 {"kind", "ResourceClaim"},
                 {"metadata", {{"name", "c1"}, {"namespace", "ns1"}}},
                 {"status", {{"devices", devices}}}};
    std::string path = std::string(kClaims) + "/c1/status";
    if (!manager.empty()) path += "?fieldManager=" + manager + (force ? "&force=true" : "");
    return Patch(path, body, "application/apply-patch+yaml");
  };
  auto devices_of = [&]() {
    std::map<std::string, std::string> m;  // device -> interfaceName
    json claim = Get(std::string(kClaims) + "/c1").body;
    for (const json& d : claim["status"]["devices"]) {
      m[d["device"]] = d["networkData"]["interfaceName"];
    }
    return m;
  };

  EXPECT_EQ(apply("", json::array({entry("a.example", "a1", "net1")})).code, 400)
      << "fieldManager is required";
  ASSERT_EQ(apply("a.example", json::array({entry("a.example", "a1", "net1")})).code, 200);
  Resp rb = apply("b.example", json::array({entry("b.example", "b1", "net9")}));
  ASSERT_EQ(rb.code, 200) << rb.body.dump();
  EXPECT_EQ(devices_of(), (std::map<std::string, std::string>{{"a1", "net1"}, {"b1", "net9"}}));
  // The allocation survives status applies.
  EXPECT_EQ(
      Get(std::string(kClaims) + "/c1").body["status"]["allocation"]["devices"]["results"].size(),
      3u);

  // A re-applies with a2 only: a1 (its own) goes, b1 (B's) stays.
  ASSERT_EQ(apply("a.example", json::array({entry("a.example", "a2", "net2")})).code, 200);
  EXPECT_EQ(devices_of(), (std::map<std::string, std::string>{{"a2", "net2"}, {"b1", "net9"}}));
  // B updates its entry: A's stays.
  ASSERT_EQ(apply("b.example", json::array({entry("b.example", "b1", "net8")})).code, 200);
  EXPECT_EQ(devices_of(), (std::map<std::string, std::string>{{"a2", "net2"}, {"b1", "net8"}}));

  // Taking another manager's entry with a different value conflicts unless forced.
  Resp conflict = apply(
      "b.example",
      json::array({entry("b.example", "b1", "net8"), entry("a.example", "a2", "evil")}), false);
  EXPECT_EQ(conflict.code, 409);
  EXPECT_THAT(conflict.body["message"].get<std::string>(),
              HasSubstr("conflict with \"a.example\""));
  EXPECT_EQ(devices_of(), (std::map<std::string, std::string>{{"a2", "net2"}, {"b1", "net8"}}));

  // An entry for a device that is not allocated is refused, and nothing changes.
  Resp bad = apply("a.example", json::array({entry("a.example", "zz", "net3")}));
  EXPECT_EQ(bad.code, 422);
  EXPECT_THAT(bad.body["message"].get<std::string>(),
              HasSubstr("status.devices[1]: Invalid value"));
  EXPECT_THAT(bad.body["message"].get<std::string>(),
              HasSubstr("must be an allocated device in the claim"));
  EXPECT_EQ(devices_of(), (std::map<std::string, std::string>{{"a2", "net2"}, {"b1", "net8"}}));

  // Applying an empty list drops all of A's entries only.
  ASSERT_EQ(apply("a.example", json::array()).code, 200);
  EXPECT_EQ(devices_of(), (std::map<std::string, std::string>{{"b1", "net8"}}));
}

TEST_F(ApiServerTest, FieldAndLabelSelectorsOnSlices) {
  ASSERT_EQ(Post(kSlices, SliceObj("s1", "n1", "a.example")).code, 201);
  ASSERT_EQ(Post(kSlices, SliceObj("s2", "n1", "b.example")).code, 201);
  ASSERT_EQ(Post(kSlices, SliceObj("s3", "n2", "a.example")).code, 201);
  auto names = [&](const std::string& query) {
    std::vector<std::string> out;
    Resp r = Get(std::string(kSlices) + "?" + query);
    EXPECT_EQ(r.code, 200) << query << " " << r.body.dump();
    for (const json& i : r.body["items"]) out.push_back(i["metadata"]["name"]);
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(names("fieldSelector=spec.nodeName%3Dn1"), (V{"s1", "s2"}));
  EXPECT_EQ(names("fieldSelector=spec.nodeName%3Dn1%2Cspec.driver%3Da.example"), (V{"s1"}));
  EXPECT_EQ(names("fieldSelector=spec.driver%21%3Da.example"), (V{"s2"}));
  EXPECT_EQ(names("fieldSelector=metadata.name%3Ds3"), (V{"s3"}));
  EXPECT_EQ(names("labelSelector=node%3Dn2"), (V{"s3"}));
  EXPECT_EQ(names("labelSelector=node"), (V{"s1", "s2", "s3"}));
  Resp bad = Get(std::string(kSlices) + "?fieldSelector=spec.pool.name%3Dn1");
  EXPECT_EQ(bad.code, 400);
  EXPECT_EQ(bad.body["reason"], "BadRequest");
  EXPECT_THAT(bad.body["message"].get<std::string>(), HasSubstr("spec.pool.name"));
  EXPECT_EQ(Get(std::string(kSlices) + "?labelSelector=node%20in%20(n1)").code, 400);
}

TEST_F(ApiServerTest, DeleteCollectionWithSelector) {
  ASSERT_EQ(Post(kSlices, SliceObj("s1", "n1", "a.example")).code, 201);
  ASSERT_EQ(Post(kSlices, SliceObj("s2", "n1", "b.example")).code, 201);
  ASSERT_EQ(Post(kSlices, SliceObj("s3", "n2", "a.example")).code, 201);
  Resp d = Delete(std::string(kSlices) + "?fieldSelector=spec.driver%3Da.example");
  ASSERT_EQ(d.code, 200) << d.body.dump();
  EXPECT_EQ(d.body["items"].size(), 2u);
  Resp l = Get(kSlices);
  ASSERT_EQ(l.body["items"].size(), 1u);
  EXPECT_EQ(l.body["items"][0]["metadata"]["name"], "s2");
}

TEST_F(ApiServerTest, DeletingANodeDeletesTheSlicesItOwns) {
  Resp n = Post("/api/v1/nodes", {{"metadata", {{"name", "n1"}}}});
  ASSERT_EQ(n.code, 201);
  json s = SliceObj("s1", "n1", "a.example");
  s["metadata"]["ownerReferences"] = {{{"apiVersion", "v1"},
                                       {"kind", "Node"},
                                       {"name", "n1"},
                                       {"uid", n.body["metadata"]["uid"]},
                                       {"controller", true}}};
  ASSERT_EQ(Post(kSlices, s).code, 201);
  ASSERT_EQ(Delete("/api/v1/nodes/n1").code, 200);
  EXPECT_EQ(Get(std::string(kSlices) + "/s1").code, 404);
}

TEST_F(ApiServerTest, WatchStreamsEventsInOrderWithBookmarks) {
  std::string rv = LiveRv(kClaims);
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    Resp c = Post(kClaims, Claim("c1"));
    json u = c.body;
    u["metadata"]["labels"]["v"] = "2";
    Put(std::string(kClaims) + "/c1", u);
    Delete(std::string(kClaims) + "/c1");
  });
  std::vector<json> ev = Watch(std::string(kClaims) +
                                   "?watch=1&allowWatchBookmarks=true&timeoutSeconds=10&"
                                   "resourceVersion=" +
                                   rv,
                               [](const std::vector<json>& e) {
                                 // Stop at the first bookmark after the three object events.
                                 int objs = 0;
                                 for (const json& x : e) objs += x["type"] != "BOOKMARK";
                                 return objs >= 3 && e.back()["type"] == "BOOKMARK";
                               });
  writer.join();
  std::vector<std::string> types;
  uint64_t last = 0;
  for (const json& e : ev) {
    if (e["type"] == "BOOKMARK") continue;
    types.push_back(e["type"]);
    uint64_t v = std::stoull(Rv(e["object"]));
    EXPECT_GT(v, last);
    last = v;
    EXPECT_EQ(e["object"]["metadata"]["name"], "c1");
  }
  EXPECT_EQ(types, (std::vector<std::string>{"ADDED", "MODIFIED", "DELETED"}));
  ASSERT_FALSE(ev.empty());
  const json& bm = ev.back();
  EXPECT_EQ(bm["type"], "BOOKMARK");
  EXPECT_EQ(bm["object"]["kind"], "ResourceClaim");
  EXPECT_EQ(std::stoull(Rv(bm["object"])), last);
}

TEST_F(ApiServerTest, WatchFromZeroListsCurrentObjectsFirst) {
  ASSERT_EQ(Post(kClaims, Claim("a")).code, 201);
  ASSERT_EQ(Post(kClaims, Claim("b")).code, 201);
  std::vector<json> ev = Watch(std::string(kClaims) + "?watch=true&resourceVersion=0",
                               [](const std::vector<json>& e) { return e.size() >= 2; });
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0]["type"], "ADDED");
  EXPECT_EQ(ev[0]["object"]["metadata"]["name"], "a");
  EXPECT_EQ(ev[1]["object"]["metadata"]["name"], "b");
}

TEST_F(ApiServerTest, WatchListEndsInitialEventsWithABookmark) {
  ASSERT_EQ(Post(kClaims, Claim("a")).code, 201);
  std::vector<json> ev = Watch(std::string(kClaims) +
                                   "?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&"
                                   "resourceVersionMatch=NotOlderThan",
                               [](const std::vector<json>& e) { return e.size() >= 2; });
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0]["type"], "ADDED");
  EXPECT_EQ(ev[1]["type"], "BOOKMARK");
  EXPECT_EQ(ev[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");
}

TEST_F(ApiServerTest, AbandonedWatchesDoNotHoldServerThreads) {
  server_->Stop();
  ApiServerOptions opt;
  opt.max_threads = 2;
  StartServer(opt);
  ASSERT_EQ(Post(kClaims, Claim("a")).code, 201);
  // More abandoned watches (no bookmarks, long timeout) than threads: each must be noticed.
  // Each client reads the first event and hangs up.
  for (int i = 0; i < 4; ++i) {
    std::vector<json> ev = Watch(std::string(kClaims) + "?watch=1&timeoutSeconds=600",
                                 [](const std::vector<json>&) { return true; });
    ASSERT_EQ(ev.size(), 1u) << "watch " << i << " got no thread";
  }
  httplib::Client fresh("127.0.0.1", server_->port());
  fresh.set_read_timeout(10, 0);
  auto r = fresh.Get(kClaims);
  ASSERT_TRUE(r) << "server threads still held by abandoned watches";
  EXPECT_EQ(r->status, 200);
}

TEST_F(ApiServerTest, WatchFiltersByFieldSelector) {
  std::string rv = LiveRv(kSlices);
  std::thread writer([&] {
    Post(kSlices, SliceObj("other", "n2", "a.example"));
    Post(kSlices, SliceObj("mine", "n1", "a.example"));
    Delete(std::string(kSlices) + "/other");
    Delete(std::string(kSlices) + "/mine");
  });
  std::vector<json> ev = Watch(std::string(kSlices) + "?watch=1&timeoutSeconds=10&fieldSelector=" +
                                   "spec.nodeName%3Dn1&resourceVersion=" + rv,
                               [](const std::vector<json>& e) { return e.size() >= 2; });
  writer.join();
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0]["type"], "ADDED");
  EXPECT_EQ(ev[0]["object"]["metadata"]["name"], "mine");
  EXPECT_EQ(ev[1]["type"], "DELETED");
  EXPECT_EQ(ev[1]["object"]["metadata"]["name"], "mine");
}

TEST_F(ApiServerTest, WatchTooOldResourceVersionIsGone) {
  server_->Stop();
  ApiServerOptions opt;
  opt.history_size = 5;
  StartServer(opt);
  for (int i = 0; i < 10; ++i) ASSERT_EQ(Post(kClaims, Claim("c" + std::to_string(i))).code, 201);
  std::vector<json> ev = Watch(std::string(kClaims) + "?watch=1&resourceVersion=1",
                               [](const std::vector<json>&) { return true; });
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0]["type"], "ERROR");
  EXPECT_EQ(ev[0]["object"]["code"], 410);
  EXPECT_EQ(ev[0]["object"]["reason"], "Expired");
  // Recent enough: served from history.
  std::vector<json> ok = Watch(std::string(kClaims) + "?watch=1&resourceVersion=7",
                               [](const std::vector<json>& e) { return e.size() >= 3; });
  ASSERT_EQ(ok.size(), 3u);
  EXPECT_EQ(ok[0]["object"]["metadata"]["name"], "c7");
  EXPECT_EQ(Get(std::string(kClaims) + "?watch=1&resourceVersion=abc").code, 400);
}

TEST_F(ApiServerTest, SliceValidationRejectsWithFieldPaths) {
  json s = SliceObj("s1", "n1", "knd.k8s.cni.cncf.io");
  s["spec"]["devices"] = json::array();
  for (int i = 0; i < 129; ++i) s["spec"]["devices"].push_back({{"name", "d" + std::to_string(i)}});
  Resp r = Post(kSlices, s);
  EXPECT_EQ(r.code, 422);
  EXPECT_EQ(r.body["reason"], "Invalid");
  EXPECT_EQ(r.body["message"],
            "ResourceSlice.resource.k8s.io \"s1\" is invalid: spec.devices: Too many: 129: must "
            "have at most 128 items");
  EXPECT_EQ(r.body["details"]["causes"][0]["field"], "spec.devices");

  json& devs = s["spec"]["devices"];
  devs.erase(devs.begin() + 4, devs.end());  // keep d0..d3
  json attrs = json::object();
  for (int i = 0; i < 33; ++i) attrs["a" + std::to_string(i)] = {{"int", i}};
  s["spec"]["devices"][1]["attributes"] = attrs;
  s["spec"]["devices"][2]["name"] = "Not_A_Label";
  s["spec"]["devices"][3]["attributes"] = {
      {"knd.k8s.cni.cncf.io/ipv4", {{"string", std::string(65, '1')}}}};
  r = Post(kSlices, s);
  ASSERT_EQ(r.code, 422);
  std::string msg = r.body["message"];
  EXPECT_THAT(msg, HasSubstr("spec.devices[1]: Invalid value: 33: the total number of attributes "
                             "and capacities must not exceed 32"));
  EXPECT_THAT(msg, HasSubstr("spec.devices[2].name: Invalid value: \"Not_A_Label\""));
  EXPECT_THAT(msg, HasSubstr("spec.devices[3].attributes[knd.k8s.cni.cncf.io/ipv4].string: Too "
                             "long: may not be more than 64 bytes"));
  EXPECT_EQ(Get(std::string(kSlices) + "/s1").code, 404) << "an invalid slice must not be stored";

  // Updates are validated too, and leave the stored object alone.
  ASSERT_EQ(Post(kSlices, SliceObj("s2", "n1", "knd.k8s.cni.cncf.io")).code, 201);
  json upd = Get(std::string(kSlices) + "/s2").body;
  upd["spec"]["pool"]["resourceSliceCount"] = 0;
  EXPECT_EQ(Put(std::string(kSlices) + "/s2", upd).code, 422);
  EXPECT_EQ(Get(std::string(kSlices) + "/s2").body["spec"]["pool"]["resourceSliceCount"], 1);
}

TEST_F(ApiServerTest, OutageAnswers503AndEndsWatches) {
  ASSERT_EQ(Post(kClaims, Claim("c1")).code, 201);
  std::vector<json> ev;
  std::thread watcher([&] {
    ev = Watch(std::string(kClaims) + "?watch=1&timeoutSeconds=60&resourceVersion=0",
               [](const std::vector<json>&) { return false; });  // runs until the server ends it
  });
  // Wait until the watch has started (its initial event is our signal via stats).
  for (int i = 0; i < 500; ++i) {
    auto s = client_->Get("/_knd/stats");
    if (s && json::parse(s->body)["requests"].contains("watch")) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto o = client_->Post("/_knd/outage?seconds=1", "", kJson);
  ASSERT_TRUE(o);
  ASSERT_EQ(o->status, 200);
  Resp during = Get(kClaims);
  EXPECT_EQ(during.code, 503);
  EXPECT_EQ(during.body["reason"], "ServiceUnavailable");
  watcher.join();  // returns only because the outage closed the stream
  ASSERT_EQ(ev.size(), 1u);
  // Service comes back after the outage.
  int code = 0;
  for (int i = 0; i < 100 && code != 200; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    code = Get(kClaims).code;
  }
  EXPECT_EQ(code, 200);
  EXPECT_EQ(ToResp(client_->Post("/_knd/outage?seconds=abc", "", kJson)).code, 400);
}

TEST_F(ApiServerTest, StatsCountRequestsByVerbAndResource) {
  ASSERT_TRUE(client_->Post("/_knd/reset-stats", "", kJson));
  Post(kClaims, Claim("c1"));
  Get(kClaims);
  Get(std::string(kClaims) + "/c1");
  Put(std::string(kClaims) + "/c1/status", Get(std::string(kClaims) + "/c1").body);
  Post(kSlices, SliceObj("s1", "n1", "a.example"));
  json st = json::parse(client_->Get("/_knd/stats")->body);
  EXPECT_EQ(st["requests"]["create"]["resourceclaims"], 1);
  EXPECT_EQ(st["requests"]["create"]["resourceslices"], 1);
  EXPECT_EQ(st["requests"]["list"]["resourceclaims"], 1);
  EXPECT_EQ(st["requests"]["get"]["resourceclaims"], 2);
  EXPECT_EQ(st["requests"]["update"]["resourceclaims/status"], 1);
  EXPECT_EQ(st["writesTotal"], 3);
  ASSERT_TRUE(client_->Post("/_knd/reset-stats", "", kJson));
  st = json::parse(client_->Get("/_knd/stats")->body);
  EXPECT_EQ(st["writesTotal"], 0);
}

TEST_F(ApiServerTest, TokenAuth) {
  server_->Stop();
  ApiServerOptions opt;
  opt.token = "s3cret";
  StartServer(opt);
  Resp r = Get(kClaims);
  EXPECT_EQ(r.code, 401);
  EXPECT_EQ(r.body["reason"], "Unauthorized");
  client_->set_bearer_token_auth("wrong");
  EXPECT_EQ(Get(kClaims).code, 401);
  client_->set_bearer_token_auth("s3cret");
  EXPECT_EQ(Get(kClaims).code, 200);
  EXPECT_THAT(server_->Kubeconfig(), HasSubstr("token: \"s3cret\""));
}

TEST_F(ApiServerTest, DiscoveryAndVersion) {
  EXPECT_EQ(Get("/version").body["major"], "1");
  Resp apis = Get("/apis");
  ASSERT_EQ(apis.code, 200);
  bool found = false;
  for (const json& g : apis.body["groups"]) found = found || g["name"] == "resource.k8s.io";
  EXPECT_TRUE(found);
  Resp rl = Get("/apis/resource.k8s.io/v1");
  ASSERT_EQ(rl.code, 200);
  bool claims_status = false;
  for (const json& r : rl.body["resources"]) {
    claims_status = claims_status || r["name"] == "resourceclaims/status";
  }
  EXPECT_TRUE(claims_status);
  EXPECT_EQ(client_->Get("/healthz")->body, "ok");
}

TEST_F(ApiServerTest, SeedAcceptsListsAndYaml) {
  auto docs = ParseManifests(
      "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n  labels: {a: \"1\"}\n---\n"
      "apiVersion: resource.k8s.io/v1\nkind: DeviceClass\nmetadata: {name: knd}\n"
      "spec:\n  selectors:\n  - cel: {expression: 'device.driver == \"knd.k8s.cni.cncf.io\"'}\n");
  ASSERT_TRUE(docs.ok()) << docs.status();
  ASSERT_EQ(docs->size(), 2u);
  for (const json& d : *docs) ASSERT_TRUE(server_->Seed(d).ok());
  EXPECT_EQ(Get("/api/v1/nodes/n1").body["metadata"]["labels"]["a"], "1");
  EXPECT_EQ(Get("/apis/resource.k8s.io/v1/deviceclasses/knd").code, 200);
  json list = {{"apiVersion", "v1"}, {"kind", "List"}, {"items", json::array({Claim("seeded")})}};
  list["items"][0]["metadata"]["namespace"] = "ns1";
  list["items"][0]["status"] = {{"reservedFor", json::array()}};
  absl::Status seeded = server_->Seed(list);
  ASSERT_TRUE(seeded.ok()) << seeded;
  EXPECT_TRUE(Get(std::string(kClaims) + "/seeded").body.contains("status"));
  EXPECT_FALSE(server_->Seed({{"apiVersion", "v9"}, {"kind", "Widget"}}).ok());
}

TEST_F(ApiServerTest, OddInputGetsAnErrorAndChangesNothing) {
  ASSERT_EQ(Post(kClaims, Claim("c1")).code, 201);
  std::string before = Get(kClaims).body["metadata"]["resourceVersion"];
  const std::string c1 = std::string(kClaims) + "/c1";
  EXPECT_EQ(Patch(c1, {{"metadata", "x"}}, "application/merge-patch+json").code, 400);
  EXPECT_EQ(Patch(c1, json::array({1, 2}), "application/merge-patch+json").code, 400);
  EXPECT_EQ(Patch(c1, {{"op", "nonsense"}}, "application/json-patch+json").code, 422);
  EXPECT_EQ(Patch(c1, {{"metadata", "x"}}, "application/apply-patch+yaml").code, 400);
  EXPECT_EQ(Patch(std::string(c1) + "/status?fieldManager=m", {{"status", 5}},
                  "application/apply-patch+yaml")
                .code,
            400);
  EXPECT_EQ(Put(c1, {{"metadata", {{"name", 5}}}}).code, 400);
  EXPECT_EQ(ToResp(client_->Put(c1, "[]", kJson)).code, 400);
  EXPECT_EQ(ToResp(client_->Delete(c1, "{bad", kJson)).code, 400);
  EXPECT_EQ(Get(std::string(kClaims) + "?watch=1&timeoutSeconds=x").code, 400);
  EXPECT_EQ(Get(std::string(kClaims) + "?fieldSelector=metadata.name").code, 400);
  EXPECT_EQ(Get("/apis/resource.k8s.io/v1/namespaces/ns1/resourceslices").code, 404)
      << "cluster-scoped resource under a namespace";
  EXPECT_EQ(Post("/apis/resource.k8s.io/v1/resourceclaims", Claim("x")).code, 404);
  EXPECT_EQ(Get(kClaims).body["metadata"]["resourceVersion"], before);
  // A no-op update writes nothing.
  Resp same = Put(c1, Get(c1).body);
  EXPECT_EQ(same.code, 200);
  EXPECT_EQ(Rv(same.body), before);
  // Odd owner references and labels are stored and do not break deletes or selectors.
  json odd = Claim("odd");
  odd["metadata"]["ownerReferences"] = {{{"uid", 5}}};
  odd["metadata"]["labels"] = json::object();
  ASSERT_EQ(Post(kClaims, odd).code, 201);
  EXPECT_EQ(Get(std::string(kClaims) + "?labelSelector=app%3Dx").body["items"].size(), 1u);
  EXPECT_EQ(Delete(c1).code, 200);
  EXPECT_EQ(Get(std::string(kClaims) + "/odd").code, 200);
}

TEST_F(ApiServerTest, NamespacesAndFinalizers) {
  ASSERT_EQ(Post("/api/v1/namespaces", {{"metadata", {{"name", "team-a"}}}}).code, 201);
  json ns = Get("/api/v1/namespaces/team-a").body;
  ns["status"] = {{"phase", "Active"}};
  Resp st = Put("/api/v1/namespaces/team-a/status", ns);
  ASSERT_EQ(st.code, 200) << st.body.dump();
  EXPECT_EQ(st.body["status"]["phase"], "Active");
  const std::string claims = "/apis/resource.k8s.io/v1/namespaces/team-a/resourceclaims";
  json c = Claim("c1");
  c["metadata"]["finalizers"] = {"example.com/keep"};
  ASSERT_EQ(Post(claims, c).code, 201);
  Resp d = Delete(claims + "/c1");
  ASSERT_EQ(d.code, 200);
  EXPECT_TRUE(d.body["metadata"].contains("deletionTimestamp"));
  json kept = Get(claims + "/c1").body;
  ASSERT_TRUE(kept["metadata"].contains("deletionTimestamp")) << "finalizer keeps the object";
  kept["metadata"]["finalizers"] = json::array();
  ASSERT_EQ(Put(claims + "/c1", kept).code, 200);
  EXPECT_EQ(Get(claims + "/c1").code, 404) << "last finalizer removed: object goes";
  // Deleting a namespace deletes what is in it.
  ASSERT_EQ(Post(claims, Claim("c2")).code, 201);
  ASSERT_EQ(Delete("/api/v1/namespaces/team-a").code, 200);
  EXPECT_EQ(Get(claims + "/c2").code, 404);
}

TEST_F(ApiServerTest, ServesHttps) {
  char tmpl[] = "/tmp/knd-apiserver-tls-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  std::string cmd =
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
      "-keyout " +
      dir + "/key.pem -out " + dir + "/cert.pem >/dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    std::system(("rm -rf " + dir).c_str());
    GTEST_SKIP() << "openssl CLI not available to make a test certificate";
  }
  server_->Stop();
  ApiServerOptions opt;
  opt.tls_cert_file = dir + "/cert.pem";
  opt.tls_key_file = dir + "/key.pem";
  StartServer(opt);
  httplib::SSLClient c("127.0.0.1", server_->port());
  c.enable_server_certificate_verification(false);
  auto r = c.Post(kClaims, Claim("c1").dump(), kJson);
  ASSERT_TRUE(r) << httplib::to_string(r.error());
  EXPECT_EQ(r->status, 201);
  EXPECT_THAT(server_->Kubeconfig(), HasSubstr("https://127.0.0.1:"));
  // Plain HTTP to the TLS port gets no answer.
  EXPECT_FALSE(client_->Get(kClaims));
  std::system(("rm -rf " + dir).c_str());
  ApiServerOptions bad;
  bad.tls_cert_file = dir + "/missing.pem";
  bad.tls_key_file = dir + "/missing.pem";
  ApiServer broken(bad);
  EXPECT_FALSE(broken.Start().ok());
}

TEST_F(ApiServerTest, ConcurrentWritersAndAWatcherSeeEveryEventOnce) {
  constexpr int kWriters = 4, kEach = 50;
  std::string rv = LiveRv(kClaims);
  std::vector<std::thread> writers;
  std::atomic<int> created{0};
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      httplib::Client c("127.0.0.1", server_->port());
      for (int i = 0; i < kEach; ++i) {
        auto r =
            c.Post(kClaims, Claim("w" + std::to_string(w) + "-" + std::to_string(i)).dump(), kJson);
        if (r && r->status == 201) ++created;
      }
    });
  }
  std::vector<json> ev = Watch(
      std::string(kClaims) + "?watch=1&timeoutSeconds=20&resourceVersion=" + rv,
      [](const std::vector<json>& e) { return e.size() >= static_cast<size_t>(kWriters) * kEach; });
  for (auto& t : writers) t.join();
  EXPECT_EQ(created, kWriters * kEach);
  ASSERT_EQ(ev.size(), static_cast<size_t>(kWriters * kEach));
  std::set<std::string> names;
  uint64_t last = std::stoull(rv);
  for (const json& e : ev) {
    EXPECT_EQ(e["type"], "ADDED");
    uint64_t v = std::stoull(Rv(e["object"]));
    EXPECT_GT(v, last);
    last = v;
    names.insert(e["object"]["metadata"]["name"].get<std::string>());
  }
  EXPECT_EQ(names.size(), static_cast<size_t>(kWriters * kEach));
}

// The binary: flags, port file, kubeconfig, seed, clean exit on SIGTERM.
TEST(ApiServerBinaryTest, StartsWritesPortFileAndExitsOnSigterm) {
  const char* bin_dir = std::getenv("KND_BINARY_DIR");
  if (!bin_dir) GTEST_SKIP() << "KND_BINARY_DIR not set (run through ctest)";
  std::string bin = std::string(bin_dir) + "/test/localcp/apiserver/knd-apiserver";
  char tmpl[] = "/tmp/knd-apiserver-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  std::string port_file = dir + "/port", kubeconfig = dir + "/kubeconfig",
              seed = dir + "/seed.yaml";
  std::ofstream(seed) << "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n";
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    execl(bin.c_str(), bin.c_str(), "--listen", "127.0.0.1:0", "--port-file", port_file.c_str(),
          "--kubeconfig-out", kubeconfig.c_str(), "--token", "t0k", "--seed", seed.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  int port = 0;
  for (int i = 0; i < 1000 && port == 0; ++i) {
    std::ifstream f(port_file);
    if (!(f >> port)) {
      port = 0;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  ASSERT_GT(port, 0);
  httplib::Client c("127.0.0.1", port);
  c.set_bearer_token_auth("t0k");
  auto r = c.Get("/api/v1/namespaces/team-a");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  std::ifstream kc(kubeconfig);
  std::string kctext((std::istreambuf_iterator<char>(kc)), std::istreambuf_iterator<char>());
  EXPECT_THAT(kctext, HasSubstr("server: \"http://127.0.0.1:" + std::to_string(port) + "\""));
  EXPECT_THAT(kctext, HasSubstr("token: \"t0k\""));
  // An open watch must not keep the process from exiting.
  std::thread watcher([&] {
    httplib::Client w("127.0.0.1", port);
    w.set_bearer_token_auth("t0k");
    w.Get("/api/v1/pods?watch=1", [](const char*, size_t) { return true; });
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  watcher.join();
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  std::system(("rm -rf " + dir).c_str());
}

}  // namespace
}  // namespace knd::localcp
