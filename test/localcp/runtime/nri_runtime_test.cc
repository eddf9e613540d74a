// knd_nri Plugin against the in-process runtime core over a real unix socket in a temp dir.
// Pod netns paths are plain files (FakeNetns), so no privileges are needed.
#include <gtest/gtest.h>
#include <httplib.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "nri/mux.h"
#include "nri/plugin.h"
#include "nri/ttrpc.h"
#include "runtime_core.h"

namespace knd::localcp {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/knd-nri-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class FakeNetns : public NetnsOps {
 public:
  explicit FakeNetns(std::string dir) : dir_(std::move(dir)) {}
  absl::StatusOr<std::string> Create(const std::string& name) override {
    std::string p = dir_ + "/" + name;
    FILE* f = std::fopen(p.c_str(), "w");
    if (f == nullptr) return absl::InternalError("create " + p);
    std::fclose(f);
    return p;
  }
  absl::Status Delete(const std::string& path) override {
    fs::remove(path);
    return absl::OkStatus();
  }

 private:
  std::string dir_;
};

// Records what the plugin delivered; behaviour knobs for the failure cases.
class FakeHandler : public nri::Handler {
 public:
  absl::Status Configure(const std::string& name, const std::string& version,
                         std::chrono::milliseconds) override {
    std::lock_guard<std::mutex> l(mu);
    runtime = name + " " + version;
    return absl::OkStatus();
  }
  absl::Status Synchronize(const std::vector<api::PodSandbox>& pods,
                           const std::vector<api::Container>&) override {
    std::lock_guard<std::mutex> l(mu);
    synced_uids.clear();
    for (auto& p : pods) synced_uids.push_back(p.uid());
    ++syncs;
    return absl::OkStatus();
  }
  absl::Status RunPodSandbox(const api::PodSandbox& pod) override {
    absl::Duration d;
    {
      std::lock_guard<std::mutex> l(mu);
      events.push_back("run:" + pod.uid());
      if (!pod.linux().namespaces().empty()) netns_seen = pod.linux().namespaces(0).path();
      d = run_sleep;
      if (!run_error.ok()) return run_error;
    }
    if (d > absl::ZeroDuration()) absl::SleepFor(d);
    return absl::OkStatus();
  }
  absl::Status StopPodSandbox(const api::PodSandbox& pod) override {
    std::lock_guard<std::mutex> l(mu);
    events.push_back("stop:" + pod.uid());
    stop_netns_existed = fs::exists(pod.linux().namespaces(0).path());
    return absl::OkStatus();
  }
  absl::Status RemovePodSandbox(const api::PodSandbox& pod) override {
    std::lock_guard<std::mutex> l(mu);
    events.push_back("remove:" + pod.uid());
    return absl::OkStatus();
  }
  absl::StatusOr<api::ContainerAdjustment> CreateContainer(const api::PodSandbox& pod,
                                                           const api::Container& c) override {
    std::lock_guard<std::mutex> l(mu);
    events.push_back("create:" + pod.uid() + "/" + c.name());
    api::ContainerAdjustment adj;
    adj.add_cdi_devices()->set_name("knd.k8s.cni.cncf.io/net=" + pod.uid());
    return adj;
  }
  std::vector<std::string> Events() {
    std::lock_guard<std::mutex> l(mu);
    return events;
  }

  std::mutex mu;
  std::string runtime;
  std::vector<std::string> synced_uids;
  int syncs = 0;
  std::vector<std::string> events;
  std::string netns_seen;
  bool stop_netns_existed = false;
  absl::Status run_error;
  absl::Duration run_sleep;
};

api::PodSandbox Pod(const std::string& uid) {
  api::PodSandbox p;
  p.set_id("sb-" + uid);
  p.set_uid(uid);
  p.set_namespace_("ns");
  p.set_name("pod-" + uid);
  auto* n = p.mutable_linux()->add_namespaces();
  n->set_type("network");
  n->set_path("/fake/netns/" + uid);
  return p;
}

class NriRuntimeTest : public ::testing::Test {
 protected:
  void StartRuntime(const std::string& version, absl::Duration request_timeout = absl::Seconds(2),
                    size_t chunk = 0) {
    RuntimeOptions o;
    o.socket_path = dir_.path() + "/nri/nri.sock";
    o.nri_version = version;
    o.request_timeout = request_timeout;
    o.sync_chunk_pods = chunk;
    auto rc = RuntimeCore::Start(o);
    ASSERT_TRUE(rc.ok()) << rc.status();
    core_ = std::move(*rc);
  }
  void StartPlugin() {
    nri::Plugin::Options o;
    o.socket_path = dir_.path() + "/nri/nri.sock";
    o.backoff_min = absl::Milliseconds(50);
    o.backoff_max = absl::Milliseconds(200);
    plugin_ = std::make_unique<nri::Plugin>(o, handler_);
    ASSERT_TRUE(plugin_->Start().ok());
  }
  bool WaitConnected(bool want) {
    for (int i = 0; i < 500; ++i) {
      if (plugin_->connected() == want) return true;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
  }
  void TearDown() override {
    if (plugin_) plugin_->Stop();
    if (core_) core_->Stop();
  }

  TempDir dir_;
  FakeHandler handler_;
  std::unique_ptr<RuntimeCore> core_;
  std::unique_ptr<nri::Plugin> plugin_;
};

class NriVersionTest : public NriRuntimeTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(NriVersionTest, RegistersWithExplicitMaskAndGetsPodEvents) {
  StartRuntime(GetParam());
  StartPlugin();
  ASSERT_TRUE(core_->WaitForPlugins(1, absl::Seconds(10)));
  std::vector<PluginInfo> ps = core_->Plugins();
  ASSERT_EQ(ps.size(), 1u);
  EXPECT_EQ(ps[0].name, "knd");
  EXPECT_EQ(ps[0].index, "10");
  EXPECT_EQ(ps[0].events, 0x000F);
  EXPECT_TRUE(WaitConnected(true));
  {
    std::lock_guard<std::mutex> l(handler_.mu);
    EXPECT_EQ(handler_.runtime, "knd-runtime 0.1.0");
    EXPECT_EQ(handler_.syncs, 1);
  }

  ASSERT_TRUE(core_->RunPodSandbox(Pod("u1")).ok());
  ASSERT_TRUE(core_->StopPodSandbox(Pod("u1")).ok());
  ASSERT_TRUE(core_->RemovePodSandbox(Pod("u1")).ok());
  EXPECT_EQ(handler_.Events(), (std::vector<std::string>{"run:u1", "stop:u1", "remove:u1"}));
  std::map<std::string, int> calls = core_->CallCounts();
  if (GetParam() == "0.12") {
    // Dedicated RPCs, no fallback needed.
    EXPECT_EQ(calls["RunPodSandbox"], 1);
    EXPECT_EQ(calls["StopPodSandbox"], 1);
    EXPECT_EQ(calls["RemovePodSandbox"], 1);
    EXPECT_EQ(calls["StateChange"], 0);
  } else {
    EXPECT_EQ(calls["RunPodSandbox"], 0);
    EXPECT_EQ(calls["StateChange"], 3);
  }
}

INSTANTIATE_TEST_SUITE_P(Versions, NriVersionTest, ::testing::Values("0.8", "0.10", "0.12"));

TEST_F(NriRuntimeTest, SplitSynchronizeDeliversAllPods) {
  StartRuntime("0.12", absl::Seconds(2), /*chunk=*/1);
  for (const char* uid : {"a", "b", "c"}) ASSERT_TRUE(core_->RunPodSandbox(Pod(uid)).ok());
  StartPlugin();
  ASSERT_TRUE(core_->WaitForPlugins(1, absl::Seconds(10)));
  std::lock_guard<std::mutex> l(handler_.mu);
  EXPECT_EQ(handler_.syncs, 1);  // the handler sees one reassembled snapshot
  std::vector<std::string> uids = handler_.synced_uids;
  std::sort(uids.begin(), uids.end());
  EXPECT_EQ(uids, (std::vector<std::string>{"a", "b", "c"}));
}

TEST_F(NriRuntimeTest, OversizedSynchronizeIsSplitAutomatically) {
  StartRuntime("0.12", absl::Seconds(10));
  // 9 pods x 600 KiB > 4 MiB: one SynchronizeRequest cannot be sent.
  for (int i = 0; i < 9; ++i) {
    api::PodSandbox p = Pod("big" + std::to_string(i));
    (*p.mutable_annotations())["blob"] = std::string(600 * 1024, 'a' + i);
    ASSERT_TRUE(core_->RunPodSandbox(p).ok());
  }
  StartPlugin();
  ASSERT_TRUE(core_->WaitForPlugins(1, absl::Seconds(20)));
  std::lock_guard<std::mutex> l(handler_.mu);
  EXPECT_EQ(handler_.syncs, 1);
  EXPECT_EQ(handler_.synced_uids.size(), 9u);
}

TEST_F(NriRuntimeTest, HandlerErrorFailsRunPodSandboxOverHttp) {
  StartRuntime("0.12");
  StartPlugin();
  ASSERT_TRUE(core_->WaitForPlugins(1, absl::Seconds(10)));
  FakeNetns netns(dir_.path());
  ControlApi api(*core_, netns);
  absl::StatusOr<int> port = api.Listen("127.0.0.1", 0);
  ASSERT_TRUE(port.ok()) << port.status();
  httplib::Client http("127.0.0.1", *port);

  {
    std::lock_guard<std::mutex> l(handler_.mu);
    handler_.run_error = absl::FailedPreconditionError("device eth9 is gone");
  }
  auto res = http.Post("/pods/run", R"({"uid":"12345678-aaaa","namespace":"ns","name":"p"})",
                       "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 500);
  EXPECT_NE(res->body.find("device eth9 is gone"), std::string::npos) << res->body;
  // The sandbox was torn down: no netns left, no pod listed; the plugin stays registered.
  for (const auto& e : fs::directory_iterator(dir_.path())) {
    EXPECT_NE(e.path().filename().string().rfind("knd-pod-", 0), 0u) << e.path() << " left";
  }
  auto pods = http.Get("/pods");
  ASSERT_TRUE(pods);
  EXPECT_EQ(json::parse(pods->body), json::array());
  EXPECT_EQ(core_->Plugins().size(), 1u);

  // Bad input names the field and changes nothing.
  res = http.Post("/pods/run", R"({"uid":"x","namespace":"ns"})", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_NE(res->body.find("\\\"name\\\""), std::string::npos) << res->body;

  // Now a working pod, a container, and both stop orders.
  {
    std::lock_guard<std::mutex> l(handler_.mu);
    handler_.run_error = absl::OkStatus();
  }
  res = http.Post("/pods/run", R"({"uid":"12345678-bbbb","namespace":"ns","name":"p"})",
                  "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  json run = json::parse(res->body);
  const std::string netns_path =
      dir_.path() + "/knd-pod-12345678-" + run["id"].get<std::string>().substr(0, 8);
  EXPECT_EQ(run["netns"], netns_path);
  EXPECT_EQ(run["id"].get<std::string>().size(), 32u);
  {
    std::lock_guard<std::mutex> l(handler_.mu);
    EXPECT_EQ(handler_.netns_seen, netns_path);
  }
  res = http.Post("/containers/create", R"({"uid":"12345678-bbbb","name":"app"})",
                  "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  json cc = json::parse(res->body);
  EXPECT_EQ(cc["adjust"]["CDI_devices"][0]["name"], "knd.k8s.cni.cncf.io/net=12345678-bbbb");

  res = http.Post("/pods/stop", R"({"uid":"12345678-bbbb","order":"containerd"})",
                  "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  {
    std::lock_guard<std::mutex> l(handler_.mu);
    EXPECT_TRUE(handler_.stop_netns_existed);  // containerd: netns still there at Stop
  }
  EXPECT_FALSE(fs::exists(netns_path));
  res = http.Post("/pods/remove", R"({"uid":"12345678-bbbb"})", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);

  res = http.Post("/pods/run", R"({"uid":"87654321-cccc","namespace":"ns","name":"q"})",
                  "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  res = http.Post("/pods/stop", R"({"uid":"87654321-cccc","order":"crio"})", "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  {
    std::lock_guard<std::mutex> l(handler_.mu);
    EXPECT_FALSE(handler_.stop_netns_existed);  // CRI-O: netns gone before Stop
  }
  auto plugins = http.Get("/plugins");
  ASSERT_TRUE(plugins);
  EXPECT_EQ(json::parse(plugins->body),
            json::parse(R"([{"name":"knd","index":"10","events":15}])"));
  api.Stop();
}

TEST_F(NriRuntimeTest, SlowHandlerGetsPluginDroppedThenItReconnects) {
  StartRuntime("0.12", absl::Milliseconds(300));
  StartPlugin();
  ASSERT_TRUE(core_->WaitForPlugins(1, absl::Seconds(10)));
  {
    std::lock_guard<std::mutex> l(handler_.mu);
    handler_.run_sleep = absl::Milliseconds(800);
  }
  // Like containerd: the timed-out plugin is closed and the CRI call goes on without it.
  EXPECT_TRUE(core_->RunPodSandbox(Pod("slow")).ok());
  EXPECT_TRUE(core_->Plugins().empty());
  {
    std::lock_guard<std::mutex> l(handler_.mu);
    handler_.run_sleep = absl::ZeroDuration();
  }
  ASSERT_TRUE(core_->WaitForPlugins(1, absl::Seconds(10)));
  EXPECT_GE(plugin_->sessions(), 2);
  ASSERT_TRUE(core_->RunPodSandbox(Pod("fast")).ok());
  std::vector<std::string> ev = handler_.Events();
  EXPECT_EQ(ev.back(), "run:fast");
}

TEST_F(NriRuntimeTest, RuntimeRestartPluginReconnects) {
  StartRuntime("0.10");
  StartPlugin();
  ASSERT_TRUE(core_->WaitForPlugins(1, absl::Seconds(10)));
  ASSERT_TRUE(WaitConnected(true));
  core_->Stop();
  core_.reset();
  EXPECT_TRUE(WaitConnected(false));
  StartRuntime("0.12");  // removes and recreates the socket
  ASSERT_TRUE(core_->WaitForPlugins(1, absl::Seconds(10)));
  EXPECT_TRUE(WaitConnected(true));
  ASSERT_TRUE(core_->RunPodSandbox(Pod("after")).ok());
  EXPECT_EQ(handler_.Events().back(), "run:after");
}

TEST_F(NriRuntimeTest, PluginStartsBeforeRuntime) {
  StartPlugin();
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_FALSE(plugin_->connected());
  StartRuntime("0.12");
  ASSERT_TRUE(core_->WaitForPlugins(1, absl::Seconds(10)));
}

TEST(NriPluginOptions, BadIndexAndNameRefused) {
  FakeHandler h;
  nri::Plugin::Options o;
  o.index = "5";
  nri::Plugin p1(o, h);
  absl::Status st = p1.Start();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("index"), absl::string_view::npos);
  o.index = "10";
  o.name = "bad name";
  nri::Plugin p2(o, h);
  EXPECT_EQ(p2.Start().code(), absl::StatusCode::kInvalidArgument);
}

// A hand-written plugin to drive the runtime's checks: custom mask, no dedicated RPCs.
class RawPlugin {
 public:
  RawPlugin(const std::string& socket, int32_t events) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", socket.c_str());
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    mux_ = std::make_unique<nri::Mux>(UniqueFd(fd));
    server_ = std::make_unique<nri::ttrpc::Server>(mux_->Open(nri::kPluginServiceConn));
    client_ = std::make_unique<nri::ttrpc::Client>(mux_->Open(nri::kRuntimeServiceConn));
    mux_->Attach(nri::kPluginServiceConn, server_.get());
    mux_->Attach(nri::kRuntimeServiceConn, client_.get());
    const std::string svc = "nri.pkg.api.v1alpha1.Plugin";
    server_->RegisterTyped<api::ConfigureRequest, api::ConfigureResponse>(
        svc, "Configure", [events](const api::ConfigureRequest&) {
          api::ConfigureResponse r;
          r.set_events(events);
          return absl::StatusOr<api::ConfigureResponse>(r);
        });
    server_->RegisterTyped<api::SynchronizeRequest, api::SynchronizeResponse>(
        svc, "Synchronize", [](const api::SynchronizeRequest&) {
          return absl::StatusOr<api::SynchronizeResponse>(api::SynchronizeResponse());
        });
    server_->RegisterTyped<api::StateChangeEvent, api::Empty>(
        svc, "StateChange", [this](const api::StateChangeEvent& ev) {
          state_changes_++;
          last_event_ = ev.event();
          return absl::StatusOr<api::Empty>(api::Empty());
        });
    mux_->Start();
    api::RegisterPluginRequest req;
    req.set_plugin_name("raw");
    req.set_plugin_idx("05");
    EXPECT_TRUE(client_
                    ->CallTyped<api::Empty>("nri.pkg.api.v1alpha1.Runtime", "RegisterPlugin", req,
                                            absl::Seconds(5))
                    .ok());
  }
  ~RawPlugin() {
    mux_->Close();
    server_->Shutdown();
    mux_.reset();
  }
  bool WaitClosed() { return mux_->Wait(absl::Seconds(5)); }
  std::atomic<int> state_changes_{0};
  std::atomic<int> last_event_{0};

 private:
  std::unique_ptr<nri::Mux> mux_;
  std::unique_ptr<nri::ttrpc::Server> server_;
  std::unique_ptr<nri::ttrpc::Client> client_;
};

TEST_F(NriRuntimeTest, MaskOutsideValidEventsClosesPlugin) {
  StartRuntime("0.8");
  // UPDATE_POD_SANDBOX (0x800) does not exist in NRI 0.8.
  RawPlugin raw(dir_.path() + "/nri/nri.sock", 0x0801);
  EXPECT_TRUE(raw.WaitClosed());
  EXPECT_TRUE(core_->Plugins().empty());
}

TEST_F(NriRuntimeTest, ZeroMaskMeansAllValidEvents) {
  StartRuntime("0.10");
  RawPlugin raw(dir_.path() + "/nri/nri.sock", 0);
  ASSERT_TRUE(core_->WaitForPlugins(1, absl::Seconds(10)));
  EXPECT_EQ(core_->Plugins()[0].events, 0x3FFF);
}

TEST_F(NriRuntimeTest, V012FallsBackToStateChangeOnUnimplemented) {
  StartRuntime("0.12");
  RawPlugin raw(dir_.path() + "/nri/nri.sock", 0x0F);
  ASSERT_TRUE(core_->WaitForPlugins(1, absl::Seconds(10)));
  ASSERT_TRUE(core_->RunPodSandbox(Pod("fb")).ok());
  EXPECT_EQ(raw.state_changes_, 1);
  EXPECT_EQ(raw.last_event_, api::RUN_POD_SANDBOX);
  std::map<std::string, int> calls = core_->CallCounts();
  EXPECT_EQ(calls["RunPodSandbox"], 1);
  EXPECT_EQ(calls["StateChange"], 1);
}

}  // namespace
}  // namespace knd::localcp
