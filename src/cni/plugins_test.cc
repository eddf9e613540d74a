// Privileged: the executor with Debian's real CNI plugins (/usr/lib/cni) in throwaway
// namespaces. A "node" netns stands in for the host (plugins run inside it, so bridges and
// host links never touch the real host) and a "pod" netns for the sandbox.
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "cni/executor.h"
#include "netns/netns.h"

namespace knd::cni {
namespace {

using nlohmann::json;

constexpr char kPluginDir[] = "/usr/lib/cni";

std::string Sh(const std::string& cmd) {
  std::string out;
  std::unique_ptr<FILE, int (*)(FILE*)> p(::popen((cmd + " 2>&1").c_str(), "r"), ::pclose);
  if (!p) return out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p.get())) > 0) out.append(buf.data(), n);
  return out;
}

bool HasLink(const std::string& ns, const std::string& ifname) {
  // `ip -o link` prints "3: name:" or, for veth/macvlan, "3: name@peer:".
  std::string out = Sh("ip -n " + ns + " -o link show dev " + ifname);
  return out.find(": " + ifname + ":") != std::string::npos ||
         out.find(": " + ifname + "@") != std::string::npos;
}

std::string Addrs(const std::string& ns, const std::string& ifname) {
  return Sh("ip -n " + ns + " -o addr show dev " + ifname);
}

class PluginsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!netns::HaveNetAdmin()) GTEST_SKIP() << "needs root with CAP_NET_ADMIN/CAP_SYS_ADMIN";
    for (const char* p : {"bridge", "host-local", "host-device", "static", "macvlan"}) {
      if (::access((std::string(kPluginDir) + "/" + p).c_str(), X_OK) != 0) {
        GTEST_SKIP() << "needs Debian's containernetworking-plugins (" << p << ")";
      }
    }
    auto node = netns::ScopedNetns::Create("knd-cni-node");
    ASSERT_TRUE(node.ok()) << node.status();
    node_ = std::make_unique<netns::ScopedNetns>(std::move(*node));
    auto pod = netns::ScopedNetns::Create("knd-cni-pod");
    ASSERT_TRUE(pod.ok()) << pod.status();
    pod_ = std::make_unique<netns::ScopedNetns>(std::move(*pod));
    char tmpl[] = "/tmp/knd-cni-plugins-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    opts_.bin_dirs = {kPluginDir};
    opts_.cache_dir = dir_ + "/cache";
    rt_.container_id = "knd-test-pod-claim-nic";
    rt_.netns = pod_->path();
    rt_.ifname = "net1";
    rt_.args = {{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "ns"}, {"K8S_POD_NAME", "p"}};
  }
  void TearDown() override {
    pod_.reset();
    node_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // Runs `fn` with the calling thread in the node netns (plugins inherit it).
  template <typename F>
  auto InNode(F fn) -> decltype(fn()) {
    auto ns = netns::Netns::Open(node_->path());
    EXPECT_TRUE(ns.ok());
    decltype(fn()) out = absl::UnknownError("not run");
    absl::Status st = netns::RunIn(*ns, [&] {
      out = fn();
      return absl::OkStatus();
    });
    EXPECT_TRUE(st.ok()) << st;
    return out;
  }

  std::string N() const { return node_->name(); }
  std::string P() const { return pod_->name(); }

  std::unique_ptr<netns::ScopedNetns> node_, pod_;
  std::string dir_;
  ExecutorOptions opts_;
  RuntimeConf rt_;
};

TEST_F(PluginsTest, BridgeWithHostLocal) {
  json list = {{"cniVersion", "1.0.0"},
               {"name", "br-net"},
               {"plugins",
                {{{"type", "bridge"},
                  {"bridge", "kndbr0"},
                  {"isGateway", true},
                  {"ipam",
                   {{"type", "host-local"},
                    {"dataDir", dir_ + "/ipam"},
                    {"ranges", {{{{"subnet", "10.77.0.0/24"}}}}}}}}}}};
  Executor ex(opts_);
  auto res = InNode([&] { return ex.Add(list, rt_); });
  ASSERT_TRUE(res.ok()) << res.status();
  auto parsed = ParseResult(*res, "net1");
  ASSERT_TRUE(parsed.ok());
  ASSERT_EQ(parsed->ips.size(), 1u) << res->dump();
  EXPECT_NE(Addrs(P(), "net1").find(parsed->ips[0]), std::string::npos) << Addrs(P(), "net1");
  EXPECT_TRUE(HasLink(N(), "kndbr0"));
  std::string ip = parsed->ips[0].substr(0, parsed->ips[0].find('/'));
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/ipam/br-net/" + ip));

  ASSERT_TRUE(InNode([&] { return ex.Check(list, rt_); }).ok());
  ASSERT_TRUE(InNode([&] { return ex.Del(list, rt_); }).ok());
  EXPECT_FALSE(HasLink(P(), "net1"));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/ipam/br-net/" + ip)) << "lease released";
  // DEL again (nothing cached, nothing left) is fine.
  EXPECT_TRUE(InNode([&] { return ex.Del(list, rt_); }).ok());
}

TEST_F(PluginsTest, HostDeviceWithStaticIpamComesBackOnDel) {
  ASSERT_EQ(Sh("ip -n " + N() + " link add eth7 type veth peer name eth7p"), "");
  json list = HandDevice(
      {{"cniVersion", "1.0.0"},
       {"name", "hd-net"},
       {"plugins",
        {{{"type", "host-device"},
          {"ipam", {{"type", "static"}, {"addresses", {{{"address", "192.0.2.20/24"}}}}}}}}}},
      {"eth7", "", "eth7"});
  Executor ex(opts_);
  auto res = InNode([&] { return ex.Add(list, rt_); });
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_TRUE(HasLink(P(), "net1"));
  EXPECT_FALSE(HasLink(N(), "eth7"));
  EXPECT_NE(Addrs(P(), "net1").find("192.0.2.20/24"), std::string::npos);
  ASSERT_TRUE(InNode([&] { return ex.Del(list, rt_); }).ok());
  EXPECT_TRUE(HasLink(N(), "eth7")) << "back on the node under its own name";
  EXPECT_FALSE(HasLink(P(), "net1"));
}

TEST_F(PluginsTest, MacvlanAndAFailedAddIsUndoneByDel) {
  ASSERT_EQ(Sh("ip -n " + N() + " link add eth8 type veth peer name eth8p"), "");
  ASSERT_EQ(Sh("ip -n " + N() + " link set eth8 up"), "");
  json list = {{"cniVersion", "1.0.0"},
               {"name", "mv-net"},
               {"plugins",
                {{{"type", "macvlan"},
                  {"master", "eth8"},
                  {"mode", "bridge"},
                  {"ipam",
                   {{"type", "host-local"},
                    {"dataDir", dir_ + "/ipam"},
                    {"ranges", {{{{"subnet", "10.78.0.0/24"}}}}}}}},
                 // A second plugin that fails: the runtime must DEL the whole list.
                 {{"type", "static"}}}}};
  Executor ex(opts_);
  auto res = InNode([&] { return ex.Add(list, rt_); });
  ASSERT_FALSE(res.ok());
  EXPECT_NE(std::string(res.status().message()).find("CNI plugin \"static\" ADD"),
            std::string::npos)
      << res.status();
  EXPECT_TRUE(HasLink(P(), "net1")) << "the first plugin did its part";
  ASSERT_TRUE(InNode([&] { return ex.Del(list, rt_); }).ok());
  EXPECT_FALSE(HasLink(P(), "net1"));
  EXPECT_TRUE(std::filesystem::is_empty(dir_ + "/ipam/mv-net") ||
              !std::filesystem::exists(dir_ + "/ipam/mv-net/10.78.0.2"));

  // The working list.
  list["plugins"].erase(1);
  res = InNode([&] { return ex.Add(list, rt_); });
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_NE(Sh("ip -n " + P() + " -d link show dev net1").find("macvlan"), std::string::npos);
  ASSERT_TRUE(InNode([&] { return ex.Del(list, rt_); }).ok());
  EXPECT_FALSE(HasLink(P(), "net1"));
}

TEST_F(PluginsTest, HostLocalStandaloneIsStableAcrossARestart) {
  json ipam = {{"type", "host-local"},
               {"dataDir", dir_ + "/ipam"},
               {"ranges", {{{{"subnet", "10.79.0.0/24"}}}}}};
  RuntimeConf rt;
  rt.container_id = IpamContainerId("claim-uid-1", "eth1");
  rt.ifname = "net-a";
  std::string first;
  {
    Executor ex(opts_);
    auto r = InNode([&] { return ex.IpamAdd(ipam, kIpamNetworkName, rt); });
    ASSERT_TRUE(r.ok()) << r.status();
    first = (*r)["ips"][0]["address"];
  }
  Executor restarted(opts_);
  auto r = InNode([&] { return restarted.IpamAdd(ipam, kIpamNetworkName, rt); });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)["ips"][0]["address"], first);
  // Exactly one lease on disk for this id.
  int leases = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir_ + "/ipam/knd")) {
    if (e.path().filename().string().rfind("10.79.", 0) == 0) ++leases;
  }
  EXPECT_EQ(leases, 1);
  // A lost cache (crash between ADD and the cache write): host-local refuses a duplicate
  // allocation, the executor releases and allocates again; still one lease.
  std::filesystem::remove_all(opts_.cache_dir);
  r = InNode([&] { return restarted.IpamAdd(ipam, kIpamNetworkName, rt); });
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(InNode([&] { return restarted.IpamDel(ipam, kIpamNetworkName, rt); }).ok());
  for (const auto& e : std::filesystem::directory_iterator(dir_ + "/ipam/knd")) {
    EXPECT_NE(e.path().filename().string().rfind("10.79.", 0), 0u) << "lease left: " << e.path();
  }
}

}  // namespace
}  // namespace knd::cni
