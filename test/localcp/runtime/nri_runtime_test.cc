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
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "absl/strings/str_split.h"
#include "cni/executor.h"
#include "nri/mux.h"
#include "nri/plugin.h"
#include "nri/ttrpc.h"
#include "runtime_core.h"

namespace knd::localcp {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

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
      if (!cni_log.empty()) cni_log_at_run = ReadAll(cni_log);
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
    if (!cni_log.empty()) cni_log_at_stop = ReadAll(cni_log);
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
  std::string cni_log;  // when set: what the fake CNI plugin had logged at Run / Stop
  std::string cni_log_at_run, cni_log_at_stop;
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
  // ...but, like containerd 2.1, the runtime keeps a record of the failed sandbox.
  auto sandboxes = http.Get("/sandboxes");
  ASSERT_TRUE(sandboxes);
  json sb = json::parse(sandboxes->body);
  EXPECT_EQ(sb["ready"], json::array());
  EXPECT_EQ(sb["failedTotal"], 1);
  ASSERT_EQ(sb["failed"].size(), 1u) << sb.dump();
  EXPECT_EQ(sb["failed"][0]["uid"], "12345678-aaaa");
  EXPECT_EQ(sb["failed"][0]["namespace"], "ns");
  EXPECT_EQ(sb["failed"][0]["name"], "p");
  EXPECT_EQ(sb["failed"][0]["id"].get<std::string>().size(), 32u);
  EXPECT_NE(sb["failed"][0]["error"].get<std::string>().find("device eth9 is gone"),
            std::string::npos);

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

TEST_F(NriRuntimeTest, ReconnectsTheMomentTheRuntimeSocketIsBackNotAfterTheBackoff) {
  // Between a runtime restart and knd's reconnect the runtime starts pods without knd's
  // hook: the plugin watches the socket's directory instead of sleeping out its backoff.
  StartRuntime("0.12");
  nri::Plugin::Options o;
  o.socket_path = dir_.path() + "/nri/nri.sock";
  o.backoff_min = absl::Seconds(60);
  o.backoff_max = absl::Seconds(60);
  plugin_ = std::make_unique<nri::Plugin>(o, handler_);
  ASSERT_TRUE(plugin_->Start().ok());
  ASSERT_TRUE(WaitConnected(true));
  const double down_at_start = plugin_->disconnected_seconds();
  for (int round = 0; round < 2; ++round) {
    core_->Stop();
    core_.reset();
    ASSERT_TRUE(WaitConnected(false));
    absl::SleepFor(absl::Milliseconds(round == 0 ? 300 : 0));  // quick and slower restarts
    StartRuntime("0.12");
    ASSERT_TRUE(WaitConnected(true)) << "round " << round << ": still waiting for the backoff";
  }
  EXPECT_EQ(plugin_->sessions(), 3);
  EXPECT_GT(plugin_->disconnected_seconds(), down_at_start + 0.25) << "the outage is counted";
  EXPECT_LT(plugin_->disconnected_seconds(), down_at_start + 5.0);
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
    // Not asserted here: the runtime sends Configure while its RegisterPlugin reply is on the
    // way (containerd's NRI does the same), so a plugin it refuses in Configure may see the
    // connection close before that reply. Tests of accepted plugins wait for them instead.
    registered_ = client_
                      ->CallTyped<api::Empty>("nri.pkg.api.v1alpha1.Runtime", "RegisterPlugin", req,
                                              absl::Seconds(5))
                      .status();
  }
  const absl::Status& registered() const { return registered_; }
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
  absl::Status registered_;
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
  EXPECT_TRUE(raw.registered().ok()) << raw.registered();
  EXPECT_EQ(core_->Plugins()[0].events, 0x3FFF);
}

TEST_F(NriRuntimeTest, V012FallsBackToStateChangeOnUnimplemented) {
  StartRuntime("0.12");
  RawPlugin raw(dir_.path() + "/nri/nri.sock", 0x0F);
  ASSERT_TRUE(core_->WaitForPlugins(1, absl::Seconds(10)));
  EXPECT_TRUE(raw.registered().ok()) << raw.registered();
  ASSERT_TRUE(core_->RunPodSandbox(Pod("fb")).ok());
  EXPECT_EQ(raw.state_changes_, 1);
  EXPECT_EQ(raw.last_event_, api::RUN_POD_SANDBOX);
  std::map<std::string, int> calls = core_->CallCounts();
  EXPECT_EQ(calls["RunPodSandbox"], 1);
  EXPECT_EQ(calls["StateChange"], 1);
}

// A CNI plugin for the tests below: logs every call (command, ifname, container id, netns,
// CNI_ARGS, stdin) to a file, answers ADD with one interface named CNI_IFNAME; a plugin config
// holding "fail":true fails its ADD with a CNI error.
constexpr char kFakeCni[] = R"(#!/bin/sh
in=$(cat)
printf '%s|%s|%s|%s|%s|%s\n' "$CNI_COMMAND" "$CNI_IFNAME" "$CNI_CONTAINERID" "$CNI_NETNS" \
  "$CNI_ARGS" "$in" >> "@LOG@"
case "$CNI_COMMAND" in
ADD)
  case "$in" in *'"fail":true'*)
    echo '{"cniVersion":"1.0.0","code":100,"msg":"fake plugin says no"}'; exit 1;;
  esac
  echo "{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"$CNI_IFNAME\",\"sandbox\":\"$CNI_NETNS\"}]}";;
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["1.0.0"]}';;
esac
exit 0
)";

// The control API with the pods' own CNI networks, run through knd's executor with the fake
// plugin above (no privileges: the pod netns are plain files).
class PodNetworksTest : public NriRuntimeTest {
 protected:
  struct CniCall {
    std::string command, ifname, container_id, netns, args;
    json in;
  };

  void SetUp() override {
    const std::string bin = dir_.path() + "/cni-bin";
    fs::create_directories(bin);
    log_ = dir_.path() + "/cni.log";
    std::string script = kFakeCni;
    script.replace(script.find("@LOG@"), 5, log_);
    {
      std::ofstream out(bin + "/fakecni");
      out << script;
    }
    fs::permissions(bin + "/fakecni", fs::perms::owner_all);
    handler_.cni_log = log_;
    StartRuntime("0.12");
    StartPlugin();
    ASSERT_TRUE(core_->WaitForPlugins(1, absl::Seconds(10)));
    cni::ExecutorOptions o;
    o.bin_dirs = {bin};
    o.cache_dir = dir_.path() + "/cni-cache";
    executor_ = std::make_unique<cni::Executor>(o);
    netns_ = std::make_unique<FakeNetns>(dir_.path());
    api_ = std::make_unique<ControlApi>(*core_, *netns_, "", executor_.get());
    absl::StatusOr<int> port = api_->Listen("127.0.0.1", 0);
    ASSERT_TRUE(port.ok()) << port.status();
    http_ = std::make_unique<httplib::Client>("127.0.0.1", *port);
  }
  void TearDown() override {
    if (api_) api_->Stop();
    NriRuntimeTest::TearDown();
  }

  std::pair<int, json> Post(const std::string& path, const json& body) {
    auto r = http_->Post(path, body.dump(), "application/json");
    if (!r) return {0, json()};
    return {r->status, json::parse(r->body, nullptr, false)};
  }
  json Get(const std::string& path) {
    auto r = http_->Get(path);
    if (!r || r->status != 200) return json("unreachable");
    return json::parse(r->body, nullptr, false);
  }
  // The plugin calls in a log text (VERSION calls left out).
  static std::vector<CniCall> Calls(const std::string& text) {
    std::vector<CniCall> out;
    for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
      std::vector<std::string> f = absl::StrSplit(line, absl::MaxSplits('|', 5));
      if (f.size() != 6 || f[0] == "VERSION") continue;
      out.push_back(CniCall{f[0], f[1], f[2], f[3], f[4], json::parse(f[5], nullptr, false)});
    }
    return out;
  }
  std::vector<CniCall> AllCalls() { return Calls(ReadAll(log_)); }
  // "ADD net1", "DEL net2", ... of calls, for order checks.
  static std::vector<std::string> Steps(const std::vector<CniCall>& calls) {
    std::vector<std::string> out;
    for (const CniCall& c : calls) out.push_back(c.command + " " + c.ifname);
    return out;
  }
  static json Net(const std::string& name, json plugins) {
    return {{"cniVersion", "1.0.0"}, {"name", name}, {"plugins", std::move(plugins)}};
  }
  static json Fake(json extra = json::object()) {
    json p = {{"type", "fakecni"}};
    p.update(extra);
    return p;
  }
  size_t CacheFiles() {
    std::error_code ec;
    size_t n = 0;
    for (auto it = fs::directory_iterator(dir_.path() + "/cni-cache/results", ec);
         !ec && it != fs::directory_iterator(); it.increment(ec)) {
      ++n;
    }
    return n;
  }
  bool PodNetnsLeft() {
    for (const auto& e : fs::directory_iterator(dir_.path())) {
      if (e.path().filename().string().rfind("knd-pod-", 0) == 0) return true;
    }
    return false;
  }

  std::string log_;
  std::unique_ptr<cni::Executor> executor_;
  std::unique_ptr<FakeNetns> netns_;
  std::unique_ptr<ControlApi> api_;
  std::unique_ptr<httplib::Client> http_;
};

TEST_F(PodNetworksTest, AddedBeforeNriRunDeletedAfterNriStopInContainerdOrder) {
  const std::string uid = "11111111-aaaa";
  json nets = json::array(
      {{{"conflist", Net("net-a", {Fake()})}, {"ifname", "net1"}},
       // No ifname: Multus's net<N>. A device id: what Multus's DRA path hands over.
       {{"conflist",
         Net("net-b", {Fake({{"capabilities", {{"deviceID", true}}}}), Fake({{"second", true}})})},
        {"deviceID", "0000:03:00.1"}}});
  auto [code, run] =
      Post("/pods/run", {{"uid", uid}, {"namespace", "ns"}, {"name", "p"}, {"networks", nets}});
  ASSERT_EQ(code, 200) << run.dump();
  const std::string id = run["id"], netns = run["netns"];
  ASSERT_EQ(run["networks"].size(), 2u) << run.dump();
  EXPECT_EQ(run["networks"][0]["interfaces"][0]["name"], "net1");
  EXPECT_EQ(run["networks"][1]["interfaces"][0]["name"], "net2");
  EXPECT_EQ(CacheFiles(), 2u);

  std::vector<CniCall> at_run;
  {
    std::lock_guard<std::mutex> l(handler_.mu);
    at_run = Calls(handler_.cni_log_at_run);
  }
  // Every ADD ran before NRI RunPodSandbox reached the plugin.
  EXPECT_EQ(Steps(at_run), (std::vector<std::string>{"ADD net1", "ADD net2", "ADD net2"}));
  ASSERT_EQ(at_run.size(), 3u);
  for (const CniCall& c : at_run) {
    EXPECT_EQ(c.container_id, id);
    EXPECT_EQ(c.netns, netns);
    EXPECT_EQ(c.args,
              "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;"
              "K8S_POD_INFRA_CONTAINER_ID=" +
                  id + ";K8S_POD_UID=" + uid);
  }
  EXPECT_FALSE(at_run[0].in.contains("deviceID")) << at_run[0].in.dump();
  EXPECT_FALSE(at_run[0].in.contains("pciBusID"));
  for (const CniCall* c : {&at_run[1], &at_run[2]}) {
    EXPECT_EQ(c->in.value("deviceID", ""), "0000:03:00.1") << c->in.dump();
    EXPECT_EQ(c->in.value("pciBusID", ""), "0000:03:00.1") << c->in.dump();
  }
  // runtimeConfig.deviceID only for the plugin declaring the capability.
  EXPECT_EQ(at_run[1].in["runtimeConfig"].value("deviceID", ""), "0000:03:00.1");
  EXPECT_FALSE(at_run[2].in.contains("runtimeConfig")) << at_run[2].in.dump();

  json sb = Get("/sandboxes");
  ASSERT_EQ(sb["ready"].size(), 1u) << sb.dump();
  EXPECT_EQ(sb["ready"][0]["uid"], uid);
  EXPECT_EQ(sb["ready"][0]["netns"], netns);
  EXPECT_EQ(sb["failedTotal"], 0);

  auto [stop_code, stop] = Post("/pods/stop", {{"uid", uid}, {"order", "containerd"}});
  ASSERT_EQ(stop_code, 200) << stop.dump();
  std::vector<CniCall> at_stop;
  {
    std::lock_guard<std::mutex> l(handler_.mu);
    at_stop = Calls(handler_.cni_log_at_stop);
    EXPECT_TRUE(handler_.stop_netns_existed);
  }
  EXPECT_EQ(Steps(at_stop), Steps(at_run)) << "containerd: no CNI DEL before NRI StopPodSandbox";
  std::vector<CniCall> all = AllCalls();
  EXPECT_EQ(Steps(all), (std::vector<std::string>{"ADD net1", "ADD net2", "ADD net2", "DEL net2",
                                                  "DEL net2", "DEL net1"}));
  ASSERT_EQ(all.size(), 6u);
  EXPECT_EQ(all[3].in.value("second", false), true) << "DEL in reverse plugin order";
  for (size_t i = 3; i < all.size(); ++i) EXPECT_EQ(all[i].netns, netns) << "DEL in the netns";
  EXPECT_FALSE(fs::exists(netns));
  EXPECT_EQ(CacheFiles(), 0u);
  sb = Get("/sandboxes");
  EXPECT_EQ(sb["ready"], json::array());
  ASSERT_EQ(sb["notReady"].size(), 1u) << sb.dump();

  auto [rm_code, rm] = Post("/pods/remove", {{"uid", uid}});
  ASSERT_EQ(rm_code, 200) << rm.dump();
  EXPECT_EQ(AllCalls().size(), 6u) << "a stopped pod has no network left to delete";
  sb = Get("/sandboxes");
  EXPECT_EQ(sb["notReady"], json::array());
  EXPECT_EQ(sb["failed"], json::array());
}

TEST_F(PodNetworksTest, CrioOrderDeletesNetworksBeforeNriStop) {
  json nets = json::array({{{"conflist", Net("net-a", {Fake()})}}});
  auto [code, run] =
      Post("/pods/run",
           {{"uid", "22222222-bbbb"}, {"namespace", "ns"}, {"name", "q"}, {"networks", nets}});
  ASSERT_EQ(code, 200) << run.dump();
  auto [stop_code, stop] = Post("/pods/stop", {{"uid", "22222222-bbbb"}, {"order", "crio"}});
  ASSERT_EQ(stop_code, 200) << stop.dump();
  std::lock_guard<std::mutex> l(handler_.mu);
  EXPECT_EQ(Steps(Calls(handler_.cni_log_at_stop)),
            (std::vector<std::string>{"ADD net1", "DEL net1"}));
  EXPECT_FALSE(handler_.stop_netns_existed);
}

TEST_F(PodNetworksTest, FailedAddIsUndoneAndLeavesAFailedSandbox) {
  const std::string uid = "33333333-cccc";
  json nets = json::array({{{"conflist", Net("net-a", {Fake()})}},
                           {{"conflist", Net("net-b", {Fake({{"fail", true}})})}}});
  auto [code, res] =
      Post("/pods/run", {{"uid", uid}, {"namespace", "ns"}, {"name", "r"}, {"networks", nets}});
  EXPECT_EQ(code, 500);
  const std::string error = res.value("error", "");
  EXPECT_NE(error.find("fake plugin says no"), std::string::npos) << error;
  EXPECT_NE(error.find("net-b"), std::string::npos) << error;
  // The failed ADD and the one before it are deleted, newest first; NRI never saw the pod.
  EXPECT_EQ(Steps(AllCalls()),
            (std::vector<std::string>{"ADD net1", "ADD net2", "DEL net2", "DEL net1"}));
  EXPECT_EQ(handler_.Events(), std::vector<std::string>{});
  EXPECT_FALSE(PodNetnsLeft());
  EXPECT_EQ(CacheFiles(), 0u);
  json sb = Get("/sandboxes");
  EXPECT_EQ(sb["ready"], json::array());
  EXPECT_EQ(sb["failedTotal"], 1);
  ASSERT_EQ(sb["failed"].size(), 1u) << sb.dump();
  EXPECT_EQ(sb["failed"][0]["uid"], uid);
  EXPECT_EQ(sb["failed"][0]["name"], "r");
  EXPECT_EQ(sb["failed"][0]["error"], error);
  const std::string failed_id = sb["failed"][0]["id"];

  // The retry that works gets a new sandbox; the failed record stays.
  nets[1]["conflist"] = Net("net-b", {Fake()});
  auto [code2, run] =
      Post("/pods/run", {{"uid", uid}, {"namespace", "ns"}, {"name", "r"}, {"networks", nets}});
  ASSERT_EQ(code2, 200) << run.dump();
  EXPECT_NE(run["id"], failed_id);
  auto [rm_code, rm] = Post("/pods/remove", {{"uid", uid}});
  ASSERT_EQ(rm_code, 200) << rm.dump();
  sb = Get("/sandboxes");
  EXPECT_EQ(sb["failedTotal"], 1) << "/pods/remove keeps the failed records";
  EXPECT_EQ(sb["failed"][0]["id"], failed_id);
}

TEST_F(PodNetworksTest, FailedNriRunDeletesTheNetworksAndEachAttemptIsRecorded) {
  {
    std::lock_guard<std::mutex> l(handler_.mu);
    handler_.run_error = absl::FailedPreconditionError("device eth9 is gone");
  }
  json nets =
      json::array({{{"conflist", Net("net-a", {Fake()})}}, {{"conflist", Net("net-b", {Fake()})}}});
  for (int attempt = 1; attempt <= 3; ++attempt) {
    auto [code, res] =
        Post("/pods/run",
             {{"uid", "44444444-dddd"}, {"namespace", "ns"}, {"name", "s"}, {"networks", nets}});
    EXPECT_EQ(code, 500);
    EXPECT_NE(res.value("error", "").find("device eth9 is gone"), std::string::npos) << res.dump();
  }
  std::vector<std::string> once = {"ADD net1", "ADD net2", "DEL net2", "DEL net1"};
  std::vector<std::string> want;
  for (int i = 0; i < 3; ++i) want.insert(want.end(), once.begin(), once.end());
  EXPECT_EQ(Steps(AllCalls()), want);
  EXPECT_FALSE(PodNetnsLeft());
  json sb = Get("/sandboxes");
  EXPECT_EQ(sb["failedTotal"], 3);
  ASSERT_EQ(sb["failed"].size(), 3u);
  std::set<std::string> ids;
  for (const json& f : sb["failed"]) ids.insert(f["id"].get<std::string>());
  EXPECT_EQ(ids.size(), 3u) << "one record per attempt, each its own sandbox";
}

TEST_F(PodNetworksTest, RemoveWithoutStopDeletesTheNetworksInTheNetns) {
  json nets = json::array({{{"conflist", Net("net-a", {Fake()})}, {"ifname", "eth1"}}});
  auto [code, run] =
      Post("/pods/run",
           {{"uid", "55555555-eeee"}, {"namespace", "ns"}, {"name", "t"}, {"networks", nets}});
  ASSERT_EQ(code, 200) << run.dump();
  auto [rm_code, rm] = Post("/pods/remove", {{"uid", "55555555-eeee"}});
  ASSERT_EQ(rm_code, 200) << rm.dump();
  std::vector<CniCall> all = AllCalls();
  EXPECT_EQ(Steps(all), (std::vector<std::string>{"ADD eth1", "DEL eth1"}));
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[1].netns, run["netns"].get<std::string>());
  EXPECT_FALSE(PodNetnsLeft());
  EXPECT_EQ(CacheFiles(), 0u);
}

TEST_F(PodNetworksTest, BadNetworksAreRefusedAndChangeNothing) {
  json base = {{"uid", "66666666-ffff"}, {"namespace", "ns"}, {"name", "u"}};
  const json net = {{"conflist", Net("net-a", {Fake()})}};
  const std::vector<std::pair<json, std::string>> bad = {
      {json::object({{"a", 1}}), "must be a list"},
      {json::array({1}), "networks[0] must be an object"},
      {json::array({json::object()}), "networks[0].conflist"},
      {json::array({{{"conflist", {{"name", "x"}}}}}), "plugins"},
      {json::array({{{"conflist", Net("net-a", {Fake()})}, {"ifname", ""}}}), "ifname"},
      {json::array({net, {{"conflist", Net("net-b", {Fake()})}, {"ifname", "net1"}}}),
       "used twice"},
  };
  for (const auto& [networks, want] : bad) {
    json body = base;
    body["networks"] = networks;
    auto [code, res] = Post("/pods/run", body);
    EXPECT_EQ(code, 400) << networks.dump();
    EXPECT_NE(res.value("error", "").find(want), std::string::npos)
        << networks.dump() << " -> " << res.dump();
  }
  json host = base;
  host["hostNetwork"] = true;
  host["networks"] = json::array({net});
  EXPECT_EQ(Post("/pods/run", host).first, 400);
  // A runtime without a CNI executor refuses networks instead of ignoring them.
  ControlApi no_cni(*core_, *netns_);
  absl::StatusOr<int> port = no_cni.Listen("127.0.0.1", 0);
  ASSERT_TRUE(port.ok());
  httplib::Client c("127.0.0.1", *port);
  json body = base;
  body["networks"] = json::array({net});
  auto r = c.Post("/pods/run", body.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;
  no_cni.Stop();

  EXPECT_EQ(AllCalls().size(), 0u);
  EXPECT_FALSE(PodNetnsLeft());
  EXPECT_EQ(handler_.Events(), std::vector<std::string>{});
  EXPECT_EQ(Get("/sandboxes")["failedTotal"], 0) << "a refused request is no failed sandbox";
}

}  // namespace
}  // namespace knd::localcp
