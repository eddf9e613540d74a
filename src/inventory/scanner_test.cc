// Privileged: discovery against real links. A throwaway namespace gets veth pairs and one
// uplink (a veth carrying the default route); the real kndctl binary and the Scanner API must
// list the veths with their facts and leave the uplink out.
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "gtest/gtest.h"
#include "inventory/discovery.h"
#include "netns/netns.h"

namespace knd::inventory {
namespace {

int Sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()); }

// Runs a command, returns (exit code, stdout).
std::pair<int, std::string> Capture(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return {-1, ""};
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int st = pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

std::string Kndctl() {
  if (const char* dir = std::getenv("KND_BINARY_DIR"); dir != nullptr && *dir != '\0') {
    return std::string(dir) + "/cmd/kndctl/kndctl";
  }
  return KNDCTL_PATH;
}

class ScanNetnsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!netns::HaveNetAdmin()) GTEST_SKIP() << "needs CAP_NET_ADMIN";
    auto ns = netns::ScopedNetns::Create("knd-inv");
    ASSERT_TRUE(ns.ok()) << ns.status();
    ns_.emplace(std::move(*ns));
    const std::string ip = "ip -n " + ns_->name() + " ";
    for (const char* p : {"a", "b", "c", "u"}) {
      std::string x = p;
      ASSERT_EQ(Sh(ip + "link add " + x + "0 type veth peer name " + x + "1"), 0);
      ASSERT_EQ(Sh(ip + "link set " + x + "0 up"), 0);
      ASSERT_EQ(Sh(ip + "link set " + x + "1 up"), 0);
    }
    ASSERT_EQ(Sh(ip + "link set a0 mtu 9000 address 02:00:00:00:0a:00"), 0);
    ASSERT_EQ(Sh(ip + "addr add 192.0.2.20/24 dev a0"), 0);
    ASSERT_EQ(Sh(ip + "addr add 192.0.2.10/24 dev a0"), 0);
    ASSERT_EQ(Sh(ip + "addr add 198.51.100.1/24 dev u0"), 0);
    ASSERT_EQ(Sh(ip + "route add default via 198.51.100.254 dev u0"), 0);
  }

  std::optional<netns::ScopedNetns> ns_;
};

TEST_F(ScanNetnsTest, KndctlListsVethsButNotTheUplink) {
  auto [rc, out] =
      Capture(Kndctl() + " inventory --node-name node-x --netns " + ns_->path() + " -o json");
  ASSERT_EQ(rc, 0) << out;
  ASSERT_TRUE(nlohmann::json::accept(out)) << out;
  nlohmann::json list = nlohmann::json::parse(out);
  EXPECT_EQ(list["kind"], "List");
  ASSERT_EQ(list["items"].size(), 1u);
  const auto& spec = list["items"][0]["spec"];
  EXPECT_EQ(spec["nodeName"], "node-x");
  EXPECT_EQ(spec["driver"], "knd.k8s.cni.cncf.io");
  std::map<std::string, nlohmann::json> by_name;
  for (const auto& d : spec["devices"]) by_name[d["name"]] = d["attributes"];
  std::vector<std::string> names;
  for (const auto& [n, _] : by_name) names.push_back(n);
  // u0 carries the default route: an uplink. Its peer u1 is an ordinary veth.
  EXPECT_EQ(names, (std::vector<std::string>{"a0", "a1", "b0", "b1", "c0", "c1", "u1"}));
  const auto& a0 = by_name["a0"];
  const std::string k = "knd.k8s.cni.cncf.io/";
  EXPECT_EQ(a0[k + "ifName"]["string"], "a0");
  EXPECT_EQ(a0[k + "type"]["string"], "veth");
  EXPECT_EQ(a0[k + "mtu"]["int"], 9000);
  EXPECT_EQ(a0[k + "mac"]["string"], "02:00:00:00:0a:00");
  EXPECT_EQ(a0[k + "ipv4"]["string"], "192.0.2.10/24,192.0.2.20/24");
  EXPECT_EQ(a0[k + "virtual"]["bool"], true);
  EXPECT_EQ(a0["k8s.cni.cncf.io/deviceID"]["string"], "a0");
  // veth reports 10000 Mb/s in sysfs; the host's /sys has no "a0", so this value proves the
  // scan read the sysfs of the scanned namespace.
  EXPECT_EQ(a0[k + "speedMbps"]["int"], 10000);
  EXPECT_FALSE(by_name["b0"].contains(k + "ipv4"));
}

TEST_F(ScanNetnsTest, KndctlYamlAndFlags) {
  auto [rc, out] = Capture(Kndctl() + " inventory --node-name n --driver-name net.example.com" +
                           " --netns " + ns_->path() + " -o yaml");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(out.rfind("---\n", 0), 0u);
  EXPECT_NE(out.find("net.example.com/ifName"), std::string::npos);
  EXPECT_NE(out.find("name: \"n-net-example-com-0\""), std::string::npos) << out;
  // Bad input: a clear error, non-zero exit.
  auto [rc2, out2] = Capture(Kndctl() + " inventory -o xml 2>&1");
  EXPECT_NE(rc2, 0);
  auto [rc3, out3] = Capture(Kndctl() + " inventory --netns /nonexistent/ns 2>&1");
  EXPECT_NE(rc3, 0);
}

TEST_F(ScanNetnsTest, KndctlAppliesNodeConfig) {
  char path[] = "/tmp/knd-nodecfg-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  std::string cfg =
      "include: [{ifName: \"a*\"}, {ifName: \"u*\"}]\nexclude: [{ifName: a1}]\n"
      "includeUplinks: true\n"
      "resourceNames: [{selector: {ifName: a0}, resourceName: example.com/net_a}]\n";
  ASSERT_EQ(write(fd, cfg.data(), cfg.size()), static_cast<ssize_t>(cfg.size()));
  close(fd);
  auto [rc, out] =
      Capture(Kndctl() + " inventory --node-name n --config " + path + " --netns " + ns_->path());
  auto [rc_bad, out_bad] = Capture(std::string("echo 'includes: []' > ") + path + " && " +
                                   Kndctl() + " inventory --config " + path + " 2>&1");
  unlink(path);
  ASSERT_EQ(rc, 0) << out;
  nlohmann::json list = nlohmann::json::parse(out);
  std::vector<std::string> names;
  for (const auto& d : list["items"][0]["spec"]["devices"]) {
    names.push_back(d["name"]);
    if (d["name"] == "a0") {
      EXPECT_EQ(d["attributes"]["k8s.cni.cncf.io/resourceName"]["string"], "example.com/net_a");
    }
  }
  EXPECT_EQ(names, (std::vector<std::string>{"a0", "u0", "u1"}));
  EXPECT_NE(rc_bad, 0);
  EXPECT_NE(out_bad.find("includes: unknown field"), std::string::npos) << out_bad;
}

TEST_F(ScanNetnsTest, ScannerApi) {
  ScanOptions opts;
  opts.netns_path = ns_->path();
  auto cfg = config::ParseNodeConfig("include: [{ifName: \"b*\"}]");
  ASSERT_TRUE(cfg.ok());
  opts.config = *cfg;
  auto devs = Scanner(opts).Scan();
  ASSERT_TRUE(devs.ok()) << devs.status();
  ASSERT_EQ(devs->size(), 2u);
  EXPECT_EQ((*devs)[0].ifname, "b0");
  EXPECT_EQ((*devs)[1].ifname, "b1");
  EXPECT_EQ((*devs)[0].kind, "veth");
  EXPECT_TRUE((*devs)[0].is_virtual);
  EXPECT_GT((*devs)[0].ifindex, 0);

  ScanOptions bad;
  bad.netns_path = "/nonexistent/netns";
  EXPECT_FALSE(Scanner(bad).Scan().ok());
}

}  // namespace
}  // namespace knd::inventory
