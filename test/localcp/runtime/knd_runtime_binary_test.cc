// The knd-runtime binary with real pod network namespaces and a real knd_nri Plugin:
// flags, port file, netns creation, the CRI-O stop order, clean SIGTERM exit; the pods' own
// CNI networks run with Debian's plugins before NRI RunPodSandbox.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "netns/netns.h"
#include "nri/plugin.h"

namespace knd::localcp {
namespace {

namespace fs = std::filesystem;
namespace api = ::nri::pkg::api::v1alpha1;
using nlohmann::json;

class Recorder : public nri::Handler {
 public:
  absl::Status Configure(const std::string&, const std::string&,
                         std::chrono::milliseconds) override {
    return absl::OkStatus();
  }
  absl::Status Synchronize(const std::vector<api::PodSandbox>&,
                           const std::vector<api::Container>&) override {
    return absl::OkStatus();
  }
  absl::Status RunPodSandbox(const api::PodSandbox& pod) override {
    std::lock_guard<std::mutex> l(mu);
    std::string path;
    for (auto& ns : pod.linux().namespaces()) {
      if (ns.type() == "network") path = ns.path();
    }
    run_netns[pod.uid()] = path;
    if (!path.empty()) run_netns_valid[pod.uid()] = netns::ValidatePodNetns(path).ok();
    if (!path.empty()) run_had_if[pod.uid()] = HasLinkIn(path, check_ifname);
    return absl::OkStatus();
  }
  absl::Status StopPodSandbox(const api::PodSandbox& pod) override {
    std::lock_guard<std::mutex> l(mu);
    const std::string path = pod.linux().namespaces(0).path();
    stop_netns_existed[pod.uid()] = fs::exists(path);
    stop_had_if[pod.uid()] = fs::exists(path) && HasLinkIn(path, check_ifname);
    return absl::OkStatus();
  }
  // Whether `ifname` exists in the netns at `path`.
  static bool HasLinkIn(const std::string& path, const std::string& ifname) {
    absl::StatusOr<netns::Netns> ns = netns::Netns::Open(path);
    if (!ns.ok()) return false;
    bool found = false;
    absl::Status st = netns::RunIn(*ns, [&] {
      found = ::if_nametoindex(ifname.c_str()) != 0;
      return absl::OkStatus();
    });
    return st.ok() && found;
  }
  absl::Status RemovePodSandbox(const api::PodSandbox&) override { return absl::OkStatus(); }
  absl::StatusOr<api::ContainerAdjustment> CreateContainer(const api::PodSandbox&,
                                                           const api::Container&) override {
    return api::ContainerAdjustment();
  }
  std::mutex mu;
  std::map<std::string, std::string> run_netns;
  std::map<std::string, bool> run_netns_valid;
  std::map<std::string, bool> stop_netns_existed;
  std::string check_ifname = "net1";  // the pod network interface looked for at Run and Stop
  std::map<std::string, bool> run_had_if, stop_had_if;
};

// Kills a knd-runtime child and removes its pod namespaces and directory, also when an
// assertion fails.
struct ChildGuard {
  pid_t pid;
  std::string dir;
  ~ChildGuard() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    std::error_code ec;
    if (fs::exists(dir + "/netns", ec)) {
      for (auto& e : fs::directory_iterator(dir + "/netns", ec)) {
        (void)netns::DeleteNamed(e.path());
      }
      // Like `ip netns`, CreateNamed makes the netns dir a (shared) bind mount of itself.
      ::umount2((dir + "/netns").c_str(), MNT_DETACH);
    }
    fs::remove_all(dir, ec);
  }
};

// The port knd-runtime writes to its --port-file once it listens (0 after 5 s without).
int WaitForPortFile(const std::string& port_file) {
  int port = 0;
  for (int i = 0; i < 500 && port == 0; ++i) {
    std::ifstream in(port_file);
    if (!(in >> port)) port = 0;
    if (port == 0) ::usleep(10000);
  }
  return port;
}

TEST(KndRuntimeBinary, RealNetnsLifecycleAndCleanExit) {
  if (!netns::HaveNetAdmin()) GTEST_SKIP() << "needs CAP_NET_ADMIN/CAP_SYS_ADMIN";
  const char* bin_dir = std::getenv("KND_BINARY_DIR");
  if (bin_dir == nullptr) GTEST_SKIP() << "KND_BINARY_DIR not set (run through ctest)";
  std::string bin = std::string(bin_dir) + "/test/localcp/runtime/knd-runtime";
  ASSERT_TRUE(fs::exists(bin)) << bin;

  char tmpl[] = "/tmp/knd-rt-XXXXXX";
  std::string dir = ::mkdtemp(tmpl);
  std::string sock = dir + "/nri/nri.sock", port_file = dir + "/port";
  std::string netns_dir = dir + "/netns";
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::execl(bin.c_str(), bin.c_str(), "--nri-socket", sock.c_str(), "--netns-dir",
            netns_dir.c_str(), "--port-file", port_file.c_str(), "--nri-version", "0.12",
            "--listen", "127.0.0.1:0", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Kill the child and clean the namespaces even when an assertion fails.
  ChildGuard guard{pid, dir};
  const int port = WaitForPortFile(port_file);
  ASSERT_GT(port, 0) << "knd-runtime did not write its port file";

  Recorder rec;
  nri::Plugin::Options o;
  o.socket_path = sock;
  o.backoff_min = absl::Milliseconds(50);
  nri::Plugin plugin(o, rec);
  ASSERT_TRUE(plugin.Start().ok());
  httplib::Client http("127.0.0.1", port);
  bool registered = false;
  for (int i = 0; i < 500 && !registered; ++i) {
    auto res = http.Get("/plugins");
    registered = res && res->status == 200 && json::parse(res->body).size() == 1;
    if (!registered) ::usleep(10000);
  }
  ASSERT_TRUE(registered);

  auto res = http.Post("/pods/run", R"({"uid":"aabbccdd-1111","namespace":"ns","name":"p"})",
                       "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  std::string path = json::parse(res->body)["netns"];
  EXPECT_EQ(path, netns_dir + "/knd-pod-aabbccdd-" +
                      json::parse(res->body)["id"].get<std::string>().substr(0, 8));
  EXPECT_TRUE(netns::ValidatePodNetns(path).ok());
  {
    std::lock_guard<std::mutex> l(rec.mu);
    EXPECT_EQ(rec.run_netns["aabbccdd-1111"], path);
    EXPECT_TRUE(rec.run_netns_valid["aabbccdd-1111"]);
  }

  res = http.Post("/pods/run",
                  R"({"uid":"hostnet-2222","namespace":"ns","name":"h","hostNetwork":true})",
                  "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(json::parse(res->body)["netns"], "");
  {
    std::lock_guard<std::mutex> l(rec.mu);
    EXPECT_EQ(rec.run_netns.count("hostnet-2222"), 1u);
    EXPECT_EQ(rec.run_netns["hostnet-2222"], "");  // no network namespace entry
  }

  res = http.Post("/pods/stop", R"({"uid":"aabbccdd-1111","order":"crio"})", "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_FALSE(fs::exists(path));
  {
    std::lock_guard<std::mutex> l(rec.mu);
    EXPECT_FALSE(rec.stop_netns_existed["aabbccdd-1111"]);
  }

  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  int wstatus = 0;
  ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
  guard.pid = -1;
  EXPECT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) << wstatus;
  EXPECT_FALSE(fs::exists(sock));
  for (int i = 0; i < 500 && plugin.connected(); ++i) ::usleep(10000);
  EXPECT_FALSE(plugin.connected());
  plugin.Stop();
}

// The control API of a runtime that lives in the netns at `ns_path` (its 127.0.0.1 is that
// netns's loopback): each call runs on a thread inside it.
struct NodeHttp {
  std::string ns_path;
  int port;
  std::pair<int, std::string> Call(bool post, const std::string& path, const std::string& body) {
    std::pair<int, std::string> out{0, ""};
    absl::StatusOr<netns::Netns> ns = netns::Netns::Open(ns_path);
    if (!ns.ok()) return out;
    (void)netns::RunIn(*ns, [&] {
      httplib::Client c("127.0.0.1", port);
      auto r = post ? c.Post(path, body, "application/json") : c.Get(path);
      if (r) out = {r->status, r->body};
      return absl::OkStatus();
    });
    return out;
  }
  std::pair<int, std::string> Get(const std::string& path) { return Call(false, path, ""); }
  std::pair<int, std::string> Post(const std::string& path, const std::string& body) {
    return Call(true, path, body);
  }
};

// Addresses host-local holds in `dir` (one file per leased IP).
std::vector<std::string> Leases(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    const std::string n = it->path().filename().string();
    if (n.rfind("10.", 0) == 0) out.push_back(n);
  }
  return out;
}

TEST(KndRuntimeBinary, PodNetworksWithRealPluginsRunBeforeNriAndGoAfterStop) {
  if (!netns::HaveNetAdmin()) GTEST_SKIP() << "needs CAP_NET_ADMIN/CAP_SYS_ADMIN";
  const char* bin_dir = std::getenv("KND_BINARY_DIR");
  if (bin_dir == nullptr) GTEST_SKIP() << "KND_BINARY_DIR not set (run through ctest)";
  for (const char* p : {"bridge", "host-local", "macvlan"}) {
    if (::access((std::string("/usr/lib/cni/") + p).c_str(), X_OK) != 0) {
      GTEST_SKIP() << "needs Debian's containernetworking-plugins (" << p << ")";
    }
  }
  std::string bin = std::string(bin_dir) + "/test/localcp/runtime/knd-runtime";
  ASSERT_TRUE(fs::exists(bin)) << bin;
  // The runtime (and so the plugins it runs) lives in a throwaway "node" netns: the bridge
  // and the veth host ends never touch the real host.
  absl::StatusOr<netns::ScopedNetns> node = netns::ScopedNetns::Create("knd-rt-node");
  ASSERT_TRUE(node.ok()) << node.status();
  ASSERT_EQ(std::system(("ip -n " + node->name() + " link set lo up").c_str()), 0);

  char tmpl[] = "/tmp/knd-rt-cni-XXXXXX";
  std::string dir = ::mkdtemp(tmpl);
  std::string sock = dir + "/nri/nri.sock", port_file = dir + "/port";
  std::string netns_dir = dir + "/netns", cache_dir = dir + "/cni-cache";
  std::string ipam_dir = dir + "/ipam";
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int fd = ::open(node->path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) ::_exit(126);
    ::execl(bin.c_str(), bin.c_str(), "--nri-socket", sock.c_str(), "--netns-dir",
            netns_dir.c_str(), "--port-file", port_file.c_str(), "--listen", "127.0.0.1:0",
            "--cni-bin-dir", "/nonexistent", "--cni-bin-dir", "/usr/lib/cni", "--cni-cache-dir",
            cache_dir.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Kill the child and clean the namespaces even when an assertion fails.
  ChildGuard guard{pid, dir};
  const int port = WaitForPortFile(port_file);
  ASSERT_GT(port, 0) << "knd-runtime did not write its port file";
  Recorder rec;
  nri::Plugin::Options o;
  o.socket_path = sock;
  o.backoff_min = absl::Milliseconds(50);
  nri::Plugin plugin(o, rec);
  ASSERT_TRUE(plugin.Start().ok());
  NodeHttp http{node->path(), port};
  bool registered = false;
  for (int i = 0; i < 500 && !registered; ++i) {
    auto [code, body] = http.Get("/plugins");
    registered = code == 200 && json::parse(body).size() == 1;
    if (!registered) ::usleep(10000);
  }
  ASSERT_TRUE(registered);

  const json bridge = {{"cniVersion", "1.0.0"},
                       {"name", "rt-br"},
                       {"plugins",
                        {{{"type", "bridge"},
                          {"bridge", "kndrtbr0"},
                          {"ipam",
                           {{"type", "host-local"},
                            {"dataDir", ipam_dir},
                            {"ranges", {{{{"subnet", "10.79.0.0/24"}}}}}}}}}}};
  json body = {{"uid", "cafe0001-1111"},
               {"namespace", "ns"},
               {"name", "p"},
               {"networks", {{{"conflist", bridge}, {"ifname", "net1"}}}}};
  auto res = http.Post("/pods/run", body.dump());
  ASSERT_EQ(res.first, 200) << res.second;
  json run = json::parse(res.second);
  const std::string id = run["id"], path = run["netns"];
  ASSERT_EQ(run["networks"].size(), 1u) << res.second;
  std::string addr = run["networks"][0]["ips"][0]["address"];
  addr = addr.substr(0, addr.find('/'));
  EXPECT_EQ(Leases(ipam_dir + "/rt-br"), std::vector<std::string>{addr});
  EXPECT_TRUE(fs::exists(cache_dir + "/results/rt-br-" + id + "-net1.json"));
  {
    std::lock_guard<std::mutex> l(rec.mu);
    EXPECT_TRUE(rec.run_had_if["cafe0001-1111"]) << "net1 must be in the pod before NRI Run";
  }
  EXPECT_TRUE(Recorder::HasLinkIn(path, "net1"));
  EXPECT_TRUE(Recorder::HasLinkIn(node->path(), "kndrtbr0"));

  res = http.Post("/pods/stop", R"({"uid":"cafe0001-1111","order":"containerd"})");
  ASSERT_EQ(res.first, 200) << res.second;
  {
    std::lock_guard<std::mutex> l(rec.mu);
    EXPECT_TRUE(rec.stop_had_if["cafe0001-1111"]) << "containerd: NRI Stop before CNI DEL";
  }
  // The lease is only released by a CNI DEL (deleting the netns would not).
  EXPECT_EQ(Leases(ipam_dir + "/rt-br"), std::vector<std::string>{});
  EXPECT_FALSE(fs::exists(cache_dir + "/results/rt-br-" + id + "-net1.json"));
  EXPECT_FALSE(fs::exists(path));

  // A second network that cannot be added: the first is deleted again, NRI never hears of
  // the pod, and the runtime keeps a failed sandbox.
  const json bad = {{"cniVersion", "1.0.0"},
                    {"name", "rt-mv"},
                    {"plugins", {{{"type", "macvlan"}, {"master", "nosuch0"}}}}};
  body = {{"uid", "cafe0002-2222"},
          {"namespace", "ns"},
          {"name", "q"},
          {"networks", {{{"conflist", bridge}}, {{"conflist", bad}}}}};
  res = http.Post("/pods/run", body.dump());
  EXPECT_EQ(res.first, 500) << res.second;
  EXPECT_NE(res.second.find("rt-mv"), std::string::npos) << res.second;
  EXPECT_EQ(Leases(ipam_dir + "/rt-br"), std::vector<std::string>{});
  {
    std::lock_guard<std::mutex> l(rec.mu);
    EXPECT_EQ(rec.run_netns.count("cafe0002-2222"), 0u);
  }
  std::error_code ec;
  size_t left = 0;
  for (auto it = fs::directory_iterator(netns_dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    ++left;
  }
  EXPECT_EQ(left, 0u) << "the failed sandbox's netns must be gone";
  res = http.Get("/sandboxes");
  ASSERT_EQ(res.first, 200);
  json sb = json::parse(res.second);
  EXPECT_EQ(sb["failedTotal"], 1) << res.second;
  EXPECT_EQ(sb["failed"][0]["uid"], "cafe0002-2222");

  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  int wstatus = 0;
  ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
  guard.pid = -1;
  EXPECT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) << wstatus;
  plugin.Stop();
}

}  // namespace
}  // namespace knd::localcp
