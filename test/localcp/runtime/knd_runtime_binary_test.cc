// The knd-runtime binary with real pod network namespaces and a real knd_nri Plugin:
// flags, port file, netns creation, the CRI-O stop order, clean SIGTERM exit.
#include <gtest/gtest.h>
#include <httplib.h>
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
    return absl::OkStatus();
  }
  absl::Status StopPodSandbox(const api::PodSandbox& pod) override {
    std::lock_guard<std::mutex> l(mu);
    stop_netns_existed[pod.uid()] = fs::exists(pod.linux().namespaces(0).path());
    return absl::OkStatus();
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
};

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
  struct Guard {
    pid_t pid;
    std::string dir;
    ~Guard() {
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
  } guard{pid, dir};

  int port = 0;
  for (int i = 0; i < 500 && port == 0; ++i) {
    std::ifstream in(port_file);
    if (!(in >> port)) port = 0;
    if (port == 0) ::usleep(10000);
  }
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

}  // namespace
}  // namespace knd::localcp
