// Executor tests against tiny fake plugins: one Python script, installed under several names
// in a temp bin dir, that records every call (env + stdin) and behaves as <name>.behave says.
#include "cni/executor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/file_util.h"

namespace knd::cni {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kFakePlugin[] = R"PY(#!/usr/bin/env python3
import json, os, subprocess, sys, time
name = os.path.basename(sys.argv[0])
here = os.path.dirname(os.path.abspath(sys.argv[0]))
raw = sys.stdin.read()
try:
    stdin = json.loads(raw)
except Exception:
    stdin = raw
env = {k: v for k, v in os.environ.items() if k.startswith("CNI_")}
with open(os.path.join(here, "calls.jsonl"), "a") as f:
    f.write(json.dumps({"name": name, "env": env, "stdin": stdin, "pid": os.getpid()}) + "\n")
try:
    behave = json.load(open(os.path.join(here, name + ".behave")))
except FileNotFoundError:
    behave = {}
cmd = env.get("CNI_COMMAND")
if cmd == "VERSION":
    print(json.dumps({"cniVersion": "1.0.0",
                      "supportedVersions": behave.get("versions", ["0.4.0", "1.0.0"])}))
    sys.exit(0)
if behave.get("grandchild"):
    child = subprocess.Popen(["sleep", "30"])
    open(os.path.join(here, name + ".grandchild"), "w").write(str(child.pid))
if behave.get("sleep"):
    open(os.path.join(here, name + ".pid"), "w").write(str(os.getpid()))
    time.sleep(behave["sleep"])
fail = behave.get("fail_" + cmd)
if fail:
    if "stderr" in fail:
        sys.stderr.write(fail["stderr"])
    else:
        print(json.dumps(dict(fail, cniVersion="1.0.0")))
    sys.exit(fail.get("exit", 1))
if cmd == "ADD":
    if isinstance(stdin, dict) and "prevResult" in stdin:
        res = stdin["prevResult"]
        res.setdefault("ips", []).append({"address": behave.get("ip", "10.9.9.9/32")})
    else:
        res = {"cniVersion": stdin.get("cniVersion"),
               "interfaces": [{"name": env["CNI_IFNAME"], "mac": "02:00:00:00:00:01",
                               "sandbox": env["CNI_NETNS"]}],
               "ips": [{"address": behave.get("ip", "10.0.0.5/24"), "interface": 0}]}
    print(json.dumps(res))
)PY";

class ExecutorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/knd-cni-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    bin_ = dir_ + "/bin";
    std::filesystem::create_directories(bin_);
    for (const char* n : {"main", "meta", "ipam", "bad", "slow"}) Install(n);
    opts_.bin_dirs = {dir_ + "/empty", bin_};
    opts_.cache_dir = dir_ + "/cache";
    opts_.timeout = std::chrono::milliseconds(5000);
    rt_.container_id = "knd-pod1-claim1-nic";
    rt_.netns = "/run/netns/fake-pod";
    rt_.ifname = "net1";
    rt_.args = {{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "ns"}, {"K8S_POD_NAME", "p"}};
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void Install(const std::string& name) {
    std::string p = bin_ + "/" + name;
    std::ofstream(p) << kFakePlugin;
    ::chmod(p.c_str(), 0755);
  }
  void Behave(const std::string& name, const json& b) {
    std::ofstream(bin_ + "/" + name + ".behave") << b.dump();
  }
  std::vector<json> Calls() {
    std::vector<json> out;
    std::ifstream f(bin_ + "/calls.jsonl");
    std::string line;
    while (std::getline(f, line)) out.push_back(json::parse(line));
    return out;
  }
  // Calls other than VERSION, as "name COMMAND".
  std::vector<std::string> Sequence() {
    std::vector<std::string> out;
    for (const json& c : Calls()) {
      std::string cmd = c["env"]["CNI_COMMAND"];
      if (cmd != "VERSION") out.push_back(c["name"].get<std::string>() + " " + cmd);
    }
    return out;
  }
  void ClearCalls() { std::filesystem::remove(bin_ + "/calls.jsonl"); }

  json List() {
    return json::parse(R"({"cniVersion": "1.0.0", "name": "net-a", "plugins": [
        {"type": "main", "master": "eth1"},
        {"type": "meta", "capabilities": {"deviceID": true}}]})");
  }

  std::string dir_, bin_;
  ExecutorOptions opts_;
  RuntimeConf rt_;
};

TEST_F(ExecutorTest, AddChainsPrevResultAndSetsTheEnvironment) {
  Behave("meta", {{"ip", "10.0.0.6/24"}});
  Executor ex(opts_);
  rt_.capability_args = {{"deviceID", "eth1"}};
  auto res = ex.Add(List(), rt_);
  ASSERT_TRUE(res.ok()) << res.status();
  auto calls = Calls();
  ASSERT_EQ(calls.size(), 2u);
  const json& env = calls[0]["env"];
  EXPECT_EQ(env["CNI_COMMAND"], "ADD");
  EXPECT_EQ(env["CNI_CONTAINERID"], "knd-pod1-claim1-nic");
  EXPECT_EQ(env["CNI_NETNS"], "/run/netns/fake-pod");
  EXPECT_EQ(env["CNI_IFNAME"], "net1");
  EXPECT_EQ(env["CNI_ARGS"], "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p");
  EXPECT_EQ(env["CNI_PATH"], dir_ + "/empty:" + bin_);
  // Plugin 0: no prevResult, no runtimeConfig (declares no capability).
  EXPECT_EQ(calls[0]["stdin"], json::parse(R"({"type": "main", "master": "eth1",
                                              "name": "net-a", "cniVersion": "1.0.0"})"));
  // Plugin 1: the first plugin's result as prevResult, its declared capability filled in.
  json first = calls[0];
  EXPECT_EQ(calls[1]["stdin"]["runtimeConfig"], json({{"deviceID", "eth1"}}));
  EXPECT_FALSE(calls[1]["stdin"].contains("capabilities"));
  ASSERT_TRUE(calls[1]["stdin"].contains("prevResult"));
  EXPECT_EQ(calls[1]["stdin"]["prevResult"]["ips"][0]["address"], "10.0.0.5/24");
  // The final result is the last plugin's.
  ASSERT_EQ((*res)["ips"].size(), 2u);
  EXPECT_EQ((*res)["ips"][1]["address"], "10.0.0.6/24");
  auto cached = ex.CachedResult("net-a", rt_);
  ASSERT_TRUE(cached.ok()) << cached.status();
  EXPECT_EQ(*cached, *res);
}

TEST_F(ExecutorTest, DelRunsInReverseWithTheCachedResultEvenAfterARestart) {
  json result;
  {
    Executor ex(opts_);
    auto r = ex.Add(List(), rt_);
    ASSERT_TRUE(r.ok()) << r.status();
    result = *r;
  }
  ClearCalls();
  Executor restarted(opts_);  // same cache dir, new process state
  ASSERT_TRUE(restarted.Del(List(), rt_).ok());
  EXPECT_EQ(Sequence(), (std::vector<std::string>{"meta DEL", "main DEL"}));
  for (const json& c : Calls()) EXPECT_EQ(c["stdin"]["prevResult"], result);
  EXPECT_TRUE(absl::IsNotFound(restarted.CachedResult("net-a", rt_).status()));

  // Repeated DEL (nothing cached): still runs, without prevResult.
  ClearCalls();
  ASSERT_TRUE(restarted.Del(List(), rt_).ok());
  EXPECT_EQ(Sequence(), (std::vector<std::string>{"meta DEL", "main DEL"}));
  for (const json& c : Calls()) EXPECT_FALSE(c["stdin"].contains("prevResult"));
}

// The cache entry is libcni's format, versioned by its "kind": an entry of another kind is
// refused with a message naming it, not taken as a prevResult.
TEST_F(ExecutorTest, ACachedResultOfAnotherKindIsRefused) {
  {
    Executor ex(opts_);
    ASSERT_TRUE(ex.Add(List(), rt_).ok());
  }
  const std::string path = opts_.cache_dir + "/results/net-a-knd-pod1-claim1-nic-net1.json";
  ASSERT_TRUE(std::filesystem::exists(path));
  std::ifstream in(path);
  json entry = json::parse(in);
  EXPECT_EQ(entry["kind"], "cniCacheV1");
  entry["kind"] = "cniCacheV2";
  ASSERT_TRUE(WriteFileAtomic(path, entry.dump()).ok());
  Executor ex(opts_);
  auto cached = ex.CachedResult("net-a", rt_);
  EXPECT_EQ(cached.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(cached.status().message()),
              ::testing::AllOf(HasSubstr(path), HasSubstr("unsupported kind \"cniCacheV2\""),
                               HasSubstr("\"cniCacheV1\"")));
  ClearCalls();
  absl::Status del = ex.Del(List(), rt_);
  EXPECT_EQ(del.code(), absl::StatusCode::kFailedPrecondition) << del;
  EXPECT_THAT(Sequence(), IsEmpty());
  EXPECT_TRUE(std::filesystem::exists(path));
  entry.erase("kind");
  ASSERT_TRUE(WriteFileAtomic(path, entry.dump()).ok());
  EXPECT_EQ(ex.CachedResult("net-a", rt_).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(ExecutorTest, DelWithTheNetnsGoneClearsCniNetnsAndRunsEveryPlugin) {
  Behave("meta", {{"fail_DEL", {{"code", 11}, {"msg", "busy"}}}});
  Executor ex(opts_);
  rt_.netns = dir_ + "/no-such-netns";
  absl::Status st = ex.Del(List(), rt_);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
  EXPECT_NE(std::string(st.message()).find("busy"), std::string::npos) << st;
  // The failing plugin does not keep the others from releasing what they hold.
  EXPECT_EQ(Sequence(), (std::vector<std::string>{"meta DEL", "main DEL"}));
  for (const json& c : Calls()) {
    if (c["env"]["CNI_COMMAND"] == "DEL") {
      EXPECT_EQ(c["env"]["CNI_NETNS"], "");
    }
  }
}

TEST_F(ExecutorTest, ErrorJsonOnStdoutStopsTheChain) {
  Behave("main",
         {{"fail_ADD",
           {{"code", 7}, {"msg", "invalid config"}, {"details", "master eth1 not found"}}}});
  Executor ex(opts_);
  auto r = ex.Add(List(), rt_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(r.status().message());
  EXPECT_NE(msg.find("CNI plugin \"main\" ADD (network \"net-a\""), std::string::npos) << msg;
  EXPECT_NE(msg.find("code 7: invalid config: master eth1 not found"), std::string::npos) << msg;
  EXPECT_EQ(Sequence(), std::vector<std::string>{"main ADD"});
  EXPECT_TRUE(absl::IsNotFound(ex.CachedResult("net-a", rt_).status()));
}

TEST_F(ExecutorTest, StderrIsTheFallbackForPlainFailures) {
  Behave("main", {{"fail_ADD", {{"stderr", "panic: boom"}, {"exit", 2}}}});
  Executor ex(opts_);
  auto r = ex.Add(List(), rt_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(std::string(r.status().message()).find("exit code 2: panic: boom"), std::string::npos)
      << r.status();
}

TEST_F(ExecutorTest, TimeoutKillsThePluginAndWhatItStarted) {
  Behave("slow", {{"sleep", 30}, {"grandchild", true}});
  opts_.timeout = std::chrono::milliseconds(1500);
  Executor ex(opts_);
  json list = {{"cniVersion", "1.0.0"}, {"name", "n"}, {"plugins", {{{"type", "slow"}}}}};
  auto t0 = std::chrono::steady_clock::now();
  auto r = ex.Add(list, rt_);
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_LT(took, std::chrono::seconds(5));
  auto pid_text = ReadFile(bin_ + "/slow.pid");
  auto gc_text = ReadFile(bin_ + "/slow.grandchild");
  ASSERT_TRUE(pid_text.ok() && gc_text.ok());
  pid_t pid = std::stoi(*pid_text), gc = std::stoi(*gc_text);
  // The plugin was reaped; its child died with the process group (it may linger briefly as
  // a zombie of init, which kill(0) still sees, so look at /proc state).
  EXPECT_NE(::kill(pid, 0), 0);
  auto gone = [](pid_t p) {
    for (int i = 0; i < 100; ++i) {
      auto st = ReadFile("/proc/" + std::to_string(p) + "/stat");
      if (!st.ok() || st->find(") Z") != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  };
  EXPECT_TRUE(gone(gc));
}

TEST_F(ExecutorTest, TheCallersDeadlineCutsTheChainShort) {
  // A generous per-call timeout; the caller's deadline (an NRI hook's budget) is what counts.
  Behave("slow", {{"sleep", 30}});
  opts_.timeout = std::chrono::seconds(60);
  Executor ex(opts_);
  json list = {{"cniVersion", "1.0.0"},
               {"name", "n"},
               {"plugins", {{{"type", "slow"}}, {{"type", "meta"}}}}};
  RuntimeConf rt = rt_;
  // Long enough for the fake plugin (a Python script) to start and record its call on a loaded
  // machine, far shorter than its 30 s sleep.
  rt.deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  auto r = ex.Add(list, rt);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("the caller's deadline"));
  EXPECT_THAT(Sequence(), ElementsAre("slow ADD")) << "nothing runs after the deadline";
  // A deadline already gone: nothing is started at all.
  ClearCalls();
  rt.deadline = std::chrono::steady_clock::now() - std::chrono::milliseconds(1);
  r = ex.Add(List(), rt);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("not started"));
  EXPECT_THAT(Sequence(), IsEmpty());
}

TEST_F(ExecutorTest, PluginTypeNeverBecomesAPath) {
  Executor ex(opts_);
  for (const char* type : {"../bin/main", "/bin/sh", "", "..", "sh"}) {
    json list = {{"cniVersion", "1.0.0"}, {"name", "n"}, {"plugins", {{{"type", type}}}}};
    auto r = ex.Add(list, rt_);
    ASSERT_FALSE(r.ok()) << type;
    if (std::string(type) == "sh") {
      // A name that exists elsewhere on the system is not looked up outside the bin dirs.
      EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
    } else {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    }
  }
  EXPECT_TRUE(Calls().empty());
}

TEST_F(ExecutorTest, RuntimeConfigIsChecked) {
  Executor ex(opts_);
  RuntimeConf bad = rt_;
  bad.container_id = "-bad/id";
  EXPECT_EQ(ex.Add(List(), bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = rt_;
  bad.netns.clear();
  EXPECT_EQ(ex.Add(List(), bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Calls().empty());
}

TEST_F(ExecutorTest, VersionNegotiation) {
  Behave("main", {{"versions", {"0.3.1", "0.4.0", "1.0.0"}}});
  Behave("meta", {{"versions", {"0.4.0"}}});
  Executor ex(opts_);
  json list = List();
  list.erase("cniVersion");
  ASSERT_TRUE(ex.Add(list, rt_).ok());
  for (const json& c : Calls()) {
    if (c["env"]["CNI_COMMAND"] == "ADD") {
      EXPECT_EQ(c["stdin"]["cniVersion"], "0.4.0");
    }
  }
  auto v = ex.Versions("main");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->size(), 3u);
  // CNI 1.1 cniVersions: the highest every plugin speaks.
  ClearCalls();
  list["cniVersions"] = {"1.1.0", "1.0.0", "0.4.0"};
  rt_.ifname = "net2";
  ASSERT_TRUE(ex.Add(list, rt_).ok());
  for (const json& c : Calls()) {
    if (c["env"]["CNI_COMMAND"] == "ADD") {
      EXPECT_EQ(c["stdin"]["cniVersion"], "0.4.0");
    }
  }
}

TEST_F(ExecutorTest, SinglePluginConfigIsAccepted) {
  Executor ex(opts_);
  json single = {{"cniVersion", "1.0.0"}, {"name", "solo"}, {"type", "main"}};
  ASSERT_TRUE(ex.Add(single, rt_).ok());
  EXPECT_EQ(Calls()[0]["stdin"]["name"], "solo");
  ASSERT_TRUE(ex.Check(single, rt_).ok());
  EXPECT_EQ(Calls().back()["env"]["CNI_COMMAND"], "CHECK");
  EXPECT_TRUE(Calls().back()["stdin"].contains("prevResult"));
}

TEST_F(ExecutorTest, IpamStandaloneIsStablePerContainerId) {
  Behave("ipam", {{"ip", "192.0.2.50/24"}});
  json ipam = {{"type", "ipam"}, {"ranges", json::array()}};
  RuntimeConf rt;
  rt.container_id = IpamContainerId("claim-uid", "eth1");
  rt.ifname = "net-a";
  {
    Executor ex(opts_);
    auto r = ex.IpamAdd(ipam, kIpamNetworkName, rt);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ((*r)["ips"][0]["address"], "192.0.2.50/24");
  }
  auto calls = Calls();
  ASSERT_EQ(Sequence(), std::vector<std::string>{"ipam ADD"});
  const json& add = calls.back();
  EXPECT_EQ(add["stdin"], json({{"cniVersion", "1.0.0"}, {"name", "knd"}, {"ipam", ipam}}));
  EXPECT_EQ(add["env"]["CNI_NETNS"], "/proc/self/ns/net");
  EXPECT_EQ(add["env"]["CNI_CONTAINERID"], "knd-claim-uid-eth1");

  // A repeated Prepare (here after a restart) gets the same answer and runs nothing.
  ClearCalls();
  Executor again(opts_);
  auto r2 = again.IpamAdd(ipam, kIpamNetworkName, rt);
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ((*r2)["ips"][0]["address"], "192.0.2.50/24");
  EXPECT_TRUE(Calls().empty());

  ASSERT_TRUE(again.IpamDel(ipam, kIpamNetworkName, rt).ok());
  EXPECT_EQ(Sequence(), std::vector<std::string>{"ipam DEL"});
  EXPECT_TRUE(absl::IsNotFound(again.CachedResult(kIpamNetworkName, rt).status()));
}

TEST_F(ExecutorTest, IpamAddRetriesOnceAfterReleasingALeftover) {
  // First ADD fails (as host-local does for an allocation left by a crash), DEL, ADD again.
  Behave("bad", {{"fail_ADD", {{"code", 999}, {"msg", "duplicate allocation"}}}});
  Executor ex(opts_);
  RuntimeConf rt;
  rt.container_id = "knd-c-d";
  rt.ifname = "eth0";
  auto r = ex.IpamAdd({{"type", "bad"}}, kIpamNetworkName, rt);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(std::string(r.status().message()).find("duplicate allocation"), std::string::npos);
  EXPECT_EQ(Sequence(), (std::vector<std::string>{"bad ADD", "bad DEL", "bad ADD", "bad DEL"}));
}

TEST_F(ExecutorTest, LargeStdinAndOutputDoNotDeadlock) {
  json list = List();
  list["plugins"][0]["blob"] = std::string(300000, 'x');  // far beyond a pipe buffer
  Executor ex(opts_);
  auto r = ex.Add(list, rt_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Calls()[0]["stdin"]["blob"].get<std::string>().size(), 300000u);
}

}  // namespace
}  // namespace knd::cni
