// Privileged tests of the netlink attacher against real veth links. Each test makes a "node"
// netns (entered by the test thread, so the attacher takes it as its host) and a "pod" netns,
// and checks the results with iproute2 (`ip -j`), a reader independent of the code under test.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sched.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "attach/attacher.h"
#include "common/unique_fd.h"
#include "netlink/ethtool_k_testing.h"
#include "netlink/ops.h"
#include "netlink/socket.h"
#include "netns/netns.h"

namespace knd::attach {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;
using json = nlohmann::json;

// Runs a shell command in the calling thread's netns; returns stdout+stderr, sets *rc.
std::string Sh(const std::string& cmd, int* rc = nullptr) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) {
    if (rc != nullptr) *rc = -1;
    return out;
  }
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  int st = ::pclose(p);
  if (rc != nullptr) *rc = st;
  return out;
}

// Runs a command that must succeed.
#define SH(cmd)                                 \
  do {                                          \
    int rc_ = 0;                                \
    std::string out_ = Sh(cmd, &rc_);           \
    ASSERT_EQ(rc_, 0) << (cmd) << ": " << out_; \
  } while (0)

json IpJson(const std::string& args) {
  int rc = 0;
  std::string out = Sh("ip -j " + args, &rc);
  if (rc != 0) return json();
  json j = json::parse(out, nullptr, /*allow_exceptions=*/false);
  return j.is_discarded() ? json() : j;
}

// `ip -j addr show dev X` in `ns` ("" = the test thread's netns); null when X is absent.
json Link(const std::string& ns, const std::string& dev) {
  json j = IpJson((ns.empty() ? "" : "-n " + ns + " ") + "addr show dev " + dev);
  if (!j.is_array() || j.empty()) return json();
  return j[0];
}

// "addr/prefix" of every address of `family` ("inet"/"inet6") and `scope` ("" = any).
std::vector<std::string> Addrs(const json& link, const std::string& family,
                               const std::string& scope = "global") {
  std::vector<std::string> out;
  if (link.is_null() || !link.contains("addr_info")) return out;
  for (const auto& a : link["addr_info"]) {
    if (a.value("family", "") != family) continue;
    if (!scope.empty() && a.value("scope", "") != scope) continue;
    out.push_back(a.value("local", "") + "/" + std::to_string(a.value("prefixlen", 0)));
  }
  return out;
}

bool IsUp(const json& link) {
  if (link.is_null()) return false;
  const auto& f = link["flags"];
  return std::find(f.begin(), f.end(), "UP") != f.end();
}

// "dst via gw" (or "dst") of the routes through `dev` in every table.
std::vector<std::string> Routes(const std::string& ns, const std::string& family,
                                const std::string& dev, const std::string& table = "all") {
  json j = IpJson((ns.empty() ? "" : "-n " + ns + " ") + family + " route show table " + table +
                  " dev " + dev);
  std::vector<std::string> out;
  if (!j.is_array()) return out;
  for (const auto& r : j) {
    if (r.value("type", "unicast") != "unicast") continue;
    if (r.value("protocol", "") == "kernel") continue;
    std::string s = r.value("dst", "");
    if (r.contains("gateway")) s += " via " + r.value("gateway", "");
    out.push_back(s);
  }
  return out;
}

// "ip lladdr state" of the neighbour entries on `dev` in `ns` (IPv4 and IPv6).
std::vector<std::string> Neighbors(const std::string& ns, const std::string& dev) {
  json j = IpJson((ns.empty() ? "" : "-n " + ns + " ") + "neigh show dev " + dev);
  std::vector<std::string> out;
  if (!j.is_array()) return out;
  for (const auto& n : j) {
    std::string state = n.contains("state") && n["state"].is_array() && !n["state"].empty()
                            ? n["state"][0].get<std::string>()
                            : "";
    out.push_back(n.value("dst", "") + " " + n.value("lladdr", "") + " " + state);
  }
  return out;
}

// /proc/sys/net/<family>/conf/<dev>/<key> in `ns` ("" = the test thread's netns), no newline.
std::string Conf(const std::string& ns, const std::string& family, const std::string& dev,
                 const std::string& key) {
  std::string out = Sh((ns.empty() ? "" : "ip netns exec " + ns + " ") + "cat /proc/sys/net/" +
                       family + "/conf/" + dev + "/" + key);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// "on"/"off" as `ethtool -k DEV` in `ns` ("" = the test thread's netns) shows `feature`.
std::string Feature(const std::string& ns, const std::string& dev, const std::string& feature) {
  return netlink::FeatureAsShown(
      Sh((ns.empty() ? "" : "ip netns exec " + ns + " ") + "ethtool -k " + dev), feature);
}

// "priority from [to] [iif] [oif] [fwmark] table" of each rule in `ns` of `family` ("-4"/"-6")
// with a priority in 1..32765 (not the kernel's own).
std::vector<std::string> Rules(const std::string& ns, const std::string& family) {
  json j = IpJson("-n " + ns + " " + family + " rule show");
  std::vector<std::string> out;
  if (!j.is_array()) return out;
  for (const auto& r : j) {
    const int prio = r.value("priority", 0);
    if (prio < 1 || prio > 32765) continue;
    std::string s = std::to_string(prio) + " from " + r.value("src", "");
    if (r.contains("srclen")) s += "/" + std::to_string(r.value("srclen", 0));
    if (r.contains("dst"))
      s += " to " + r.value("dst", "") + "/" + std::to_string(r.value("dstlen", 0));
    if (r.contains("iif")) s += " iif " + r.value("iif", "");
    if (r.contains("oif")) s += " oif " + r.value("oif", "");
    if (r.contains("fwmark")) s += " fwmark " + r.value("fwmark", "");
    s += " table " + r.value("table", "");
    out.push_back(s);
  }
  return out;
}

config::Rule MakeRule(uint32_t priority, uint32_t table, std::optional<std::string> from = {},
                      std::optional<std::string> to = {}) {
  config::Rule r;
  r.priority = priority;
  r.table = table;
  r.from = std::move(from);
  r.to = std::move(to);
  return r;
}

config::Neighbor MakeNeighbor(const std::string& ip, const std::string& mac) {
  config::Neighbor n;
  n.ip = ip;
  n.mac = mac;
  return n;
}

config::Route MakeRoute(const std::string& dst, std::optional<std::string> gw,
                        std::optional<uint32_t> metric = std::nullopt) {
  config::Route r;
  r.destination = dst;
  r.gateway = std::move(gw);
  r.metric = metric;
  return r;
}

constexpr char kWhere[] = "pod default/p1 claim default/c1 device h0";

class AttachTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!netns::HaveNetAdmin()) GTEST_SKIP() << "needs root with CAP_NET_ADMIN/CAP_SYS_ADMIN";
    if (Sh("ip -V").find("iproute2") == std::string::npos) GTEST_SKIP() << "needs iproute2";
    auto node = netns::ScopedNetns::Create("knd-att-node");
    ASSERT_TRUE(node.ok()) << node.status();
    node_.emplace(std::move(*node));
    auto pod = netns::ScopedNetns::Create("knd-att-pod");
    ASSERT_TRUE(pod.ok()) << pod.status();
    pod_.emplace(std::move(*pod));
    pod_path_ = pod_->path();
    pod_name_ = pod_->name();

    orig_.Reset(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(orig_.valid());
    UniqueFd nodefd(::open(node_->path().c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(nodefd.valid());
    ASSERT_EQ(::setns(nodefd.get(), CLONE_NEWNET), 0);
    entered_ = true;

    // The "NIC": h0 with host settings worth restoring; its peer stays up for carrier.
    SH("ip link add h0 type veth peer name h0p");
    SH("ip link set h0p up");
    SH("ip link set h0 mtu 1400");
    SH("ip addr add 10.99.0.2/24 dev h0");
    SH("ip link set h0 up");
    SH("ip route add 10.98.0.0/24 via 10.99.0.1 dev h0");
    SH("ip route add 10.97.0.0/24 dev h0 table 100");
    json h0 = Link("", "h0");
    ASSERT_FALSE(h0.is_null());
    host_mac_ = h0.value("address", "");
    id_.ifindex = h0.value("ifindex", 0);
    id_.mac = host_mac_;
    id_.ifname = "h0";

    attacher_ = NewNetlinkAttacher();
  }

  void TearDown() override {
    attacher_.reset();
    if (entered_) {
      ASSERT_EQ(::setns(orig_.get(), CLONE_NEWNET), 0);
    }
  }

  AttachRequest Request(std::vector<std::string> addrs, std::vector<config::Route> routes,
                        const std::string& name = "net-rdma0") {
    AttachRequest r;
    r.identity = id_;
    r.netns_path = pod_path_;
    r.where = kWhere;
    r.config.interface.name = name;
    r.config.interface.mtu = 9000;
    r.config.interface.hardware_addr = "02:00:00:00:00:01";
    r.config.interface.addresses = std::move(addrs);
    r.config.routes = std::move(routes);
    return r;
  }

  std::function<absl::Status(const state::HostSnapshot&)> Persist() {
    return [this](const state::HostSnapshot& s) {
      ++persist_calls_;
      snap_ = s;
      return absl::OkStatus();
    };
  }

  // The host side is exactly as SetUp made it.
  void ExpectHostRestored() {
    json h0 = Link("", "h0");
    ASSERT_FALSE(h0.is_null()) << "h0 is not back on the host";
    EXPECT_EQ(h0.value("mtu", 0), 1400);
    EXPECT_EQ(h0.value("address", ""), host_mac_);
    EXPECT_TRUE(IsUp(h0));
    EXPECT_THAT(Addrs(h0, "inet"), UnorderedElementsAre("10.99.0.2/24"));
    EXPECT_THAT(Routes("", "-4", "h0"),
                UnorderedElementsAre("10.98.0.0/24 via 10.99.0.1", "10.97.0.0/24"));
    EXPECT_THAT(Routes("", "-4", "h0", "100"), UnorderedElementsAre("10.97.0.0/24"));
  }

  state::HostSnapshot Snapshot() {
    state::HostSnapshot s;
    s.ifname = "h0";
    s.mtu = 1400;
    s.mac = host_mac_;
    s.up = true;
    s.addresses = {"10.99.0.2/24"};
    state::IpRoute r1;
    r1.destination = "10.98.0.0/24";
    r1.gateway = "10.99.0.1";
    state::IpRoute r2;
    r2.destination = "10.97.0.0/24";
    r2.table = 100;
    r2.scope = 253;  // RT_SCOPE_LINK
    s.routes = {r1, r2};
    return s;
  }

  std::optional<netns::ScopedNetns> node_, pod_;
  std::string pod_path_, pod_name_;
  UniqueFd orig_;
  bool entered_ = false;
  std::string host_mac_;
  state::DeviceIdentity id_;
  std::unique_ptr<Attacher> attacher_;
  int persist_calls_ = 0;
  state::HostSnapshot snap_;
};

TEST_F(AttachTest, AttachConfiguresPodAndDetachRestoresHost) {
  auto res = attacher_->Attach(
      Request({"192.0.2.10/24", "2001:db8::10/64"},
              {MakeRoute("198.51.100.0/24", "192.0.2.1"), MakeRoute("203.0.113.0/24", {}, 50)}),
      Persist());
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ(res->netns, pod_path_);
  EXPECT_EQ(res->ifname, "net-rdma0");
  EXPECT_EQ(res->mac, "02:00:00:00:00:01");
  EXPECT_THAT(res->ips, UnorderedElementsAre("192.0.2.10/24", "2001:db8::10/64"));

  // The snapshot handed to persist is the host state before the move.
  EXPECT_EQ(persist_calls_, 1);
  EXPECT_EQ(snap_.ifname, "h0");
  EXPECT_EQ(snap_.mtu, 1400u);
  EXPECT_EQ(snap_.mac, host_mac_);
  EXPECT_TRUE(snap_.up);
  EXPECT_THAT(snap_.addresses, UnorderedElementsAre("10.99.0.2/24"));
  ASSERT_EQ(snap_.routes.size(), 2u);
  for (const auto& r : snap_.routes) {
    if (r.destination == "10.98.0.0/24") {
      EXPECT_EQ(r.gateway, "10.99.0.1");
      EXPECT_EQ(r.table, 254u);
    } else {
      EXPECT_EQ(r.destination, "10.97.0.0/24");
      EXPECT_EQ(r.table, 100u);
    }
  }

  json l = Link(pod_name_, "net-rdma0");
  ASSERT_FALSE(l.is_null()) << "net-rdma0 missing in the pod";
  EXPECT_EQ(l.value("mtu", 0), 9000);
  EXPECT_EQ(l.value("address", ""), "02:00:00:00:00:01");
  EXPECT_TRUE(IsUp(l));
  EXPECT_THAT(Addrs(l, "inet"), UnorderedElementsAre("192.0.2.10/24"));
  EXPECT_THAT(Addrs(l, "inet6"), UnorderedElementsAre("2001:db8::10/64"));
  // Dual-stack keeps its link-local (needed for neighbour discovery).
  EXPECT_EQ(Addrs(l, "inet6", "link").size(), 1u);
  EXPECT_THAT(Routes(pod_name_, "-4", "net-rdma0"),
              UnorderedElementsAre("198.51.100.0/24 via 192.0.2.1", "203.0.113.0/24"));
  json r = IpJson("-n " + pod_name_ + " -4 route show 203.0.113.0/24");
  ASSERT_TRUE(r.is_array() && r.size() == 1) << r.dump();
  EXPECT_EQ(r[0].value("metric", 0), 50);
  EXPECT_EQ(r[0].value("scope", ""), "link");
  EXPECT_EQ(Sh("ip netns exec " + pod_name_ + " cat /proc/sys/net/ipv6/conf/net-rdma0/accept_ra"),
            "0\n");
  EXPECT_TRUE(Link("", "h0").is_null()) << "h0 still on the host";
  auto attached = attacher_->IsAttached(pod_path_, "net-rdma0");
  ASSERT_TRUE(attached.ok()) << attached.status();
  EXPECT_TRUE(*attached);

  absl::Status st = attacher_->Detach(id_, snap_, pod_path_, "net-rdma0", kWhere);
  ASSERT_TRUE(st.ok()) << st;
  ExpectHostRestored();
  EXPECT_TRUE(Link(pod_name_, "net-rdma0").is_null());
  attached = attacher_->IsAttached(pod_path_, "net-rdma0");
  ASSERT_TRUE(attached.ok()) << attached.status();
  EXPECT_FALSE(*attached);
}

TEST_F(AttachTest, Ipv4OnlyAttachmentHasNoIpv6LinkLocal) {
  auto res = attacher_->Attach(Request({"192.0.2.10/24"}, {}, "net0"), Persist());
  ASSERT_TRUE(res.ok()) << res.status();
  json l = Link(pod_name_, "net0");
  ASSERT_FALSE(l.is_null());
  EXPECT_TRUE(IsUp(l));
  EXPECT_THAT(Addrs(l, "inet"), UnorderedElementsAre("192.0.2.10/24"));
  EXPECT_THAT(Addrs(l, "inet6", ""), ::testing::IsEmpty());
  EXPECT_EQ(Sh("ip netns exec " + pod_name_ + " cat /proc/sys/net/ipv6/conf/net0/accept_ra"),
            "0\n");
}

TEST_F(AttachTest, PermanentNeighborsAreInThePodAndLeaveWithIt) {
  AttachRequest req = Request({"192.0.2.10/24", "2001:db8::10/64"}, {});
  req.config.neighbors =
      std::vector<config::Neighbor>{MakeNeighbor("192.0.2.1", "02:00:00:00:aa:01"),
                                    MakeNeighbor("2001:db8::1", "02:00:00:00:aa:02")};
  auto res = attacher_->Attach(req, Persist());
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_THAT(Neighbors(pod_name_, "net-rdma0"),
              UnorderedElementsAre("192.0.2.1 02:00:00:00:aa:01 PERMANENT",
                                   "2001:db8::1 02:00:00:00:aa:02 PERMANENT"));
  // A repeated hook takes the attached device as it is: no duplicate, no error.
  auto again = attacher_->Attach(req, Persist());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_THAT(Neighbors(pod_name_, "net-rdma0"),
              UnorderedElementsAre("192.0.2.1 02:00:00:00:aa:01 PERMANENT",
                                   "2001:db8::1 02:00:00:00:aa:02 PERMANENT"));
  ASSERT_TRUE(attacher_->Detach(id_, snap_, pod_path_, "net-rdma0", kWhere).ok());
  ExpectHostRestored();
  EXPECT_THAT(Neighbors("", "h0"), ::testing::IsEmpty()) << "the pod's entries came home";
}

TEST_F(AttachTest, InterfaceSysctlsApplyInThePodAndTheHostValuesComeBack) {
  // Host values unlike a new netns's defaults: a netns round trip would reset them.
  SH("echo 2 > /proc/sys/net/ipv4/conf/h0/rp_filter");
  SH("echo 1 > /proc/sys/net/ipv4/conf/h0/arp_ignore");
  SH("echo 2 > /proc/sys/net/ipv4/conf/h0/arp_announce");
  SH("echo 0 > /proc/sys/net/ipv6/conf/h0/autoconf");
  AttachRequest req = Request({"192.0.2.10/24", "2001:db8::10/64"}, {});
  req.config.interface.sysctls = std::map<std::string, int64_t>{
      {"ipv4.rp_filter", 1}, {"ipv4.arp_ignore", 2}, {"ipv6.accept_ra", 2}, {"ipv6.hop_limit", 32}};
  auto res = attacher_->Attach(req, Persist());
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ(Conf(pod_name_, "ipv4", "net-rdma0", "rp_filter"), "1");
  EXPECT_EQ(Conf(pod_name_, "ipv4", "net-rdma0", "arp_ignore"), "2");
  // interface.sysctls wins over knd's own default (accept_ra 0).
  EXPECT_EQ(Conf(pod_name_, "ipv6", "net-rdma0", "accept_ra"), "2");
  EXPECT_EQ(Conf(pod_name_, "ipv6", "net-rdma0", "hop_limit"), "32");
  // What the claim did not set is the pod netns's default, not the host's value.
  EXPECT_EQ(Conf(pod_name_, "ipv4", "net-rdma0", "arp_announce"),
            Conf(pod_name_, "ipv4", "default", "arp_announce"));
  // The snapshot holds the host values, so a restart can restore them too.
  EXPECT_EQ(snap_.sysctls["ipv4.rp_filter"], "2");
  EXPECT_EQ(snap_.sysctls["ipv4.arp_ignore"], "1");
  EXPECT_EQ(snap_.sysctls["ipv4.arp_announce"], "2");
  EXPECT_EQ(snap_.sysctls["ipv6.autoconf"], "0");

  ASSERT_TRUE(attacher_->Detach(id_, snap_, pod_path_, "net-rdma0", kWhere).ok());
  ExpectHostRestored();
  EXPECT_EQ(Conf("", "ipv4", "h0", "rp_filter"), "2");
  EXPECT_EQ(Conf("", "ipv4", "h0", "arp_ignore"), "1");
  EXPECT_EQ(Conf("", "ipv4", "h0", "arp_announce"), "2");
  EXPECT_EQ(Conf("", "ipv6", "h0", "autoconf"), "0");
  EXPECT_EQ(Conf("", "ipv6", "h0", "accept_ra"), snap_.sysctls["ipv6.accept_ra"]);
}

// The address flags ("tentative", "nodad", ...) of `cidr` on `link`; null when absent.
json AddrInfo(const json& link, const std::string& cidr) {
  if (link.is_null() || !link.contains("addr_info")) return json();
  for (const auto& a : link["addr_info"]) {
    if (a.value("local", "") + "/" + std::to_string(a.value("prefixlen", 0)) == cidr) return a;
  }
  return json();
}

TEST_F(AttachTest, Ipv6OnlyAttachmentWithRoutesHasNoDadByDefault) {
  AttachRequest req =
      Request({"2001:db8::10/64"},
              {MakeRoute("2001:db8:1::/48", "2001:db8::1"), MakeRoute("::/0", "2001:db8::1", 100),
               MakeRoute("2001:db8:2::/64", {})},
              "net0");
  auto res = attacher_->Attach(req, Persist());
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_THAT(res->ips, ElementsAre("2001:db8::10/64"));
  json l = Link(pod_name_, "net0");
  ASSERT_FALSE(l.is_null());
  EXPECT_TRUE(IsUp(l));
  EXPECT_THAT(Addrs(l, "inet", ""), ::testing::IsEmpty());
  EXPECT_THAT(Addrs(l, "inet6"), ElementsAre("2001:db8::10/64"));
  // IPv6-only keeps its link-local: neighbour discovery for the gateway needs it.
  EXPECT_EQ(Addrs(l, "inet6", "link").size(), 1u);
  // Usable at once: not tentative (knd adds static addresses with NODAD).
  json a = AddrInfo(l, "2001:db8::10/64");
  EXPECT_FALSE(a.value("tentative", false)) << a.dump();
  EXPECT_THAT(Routes(pod_name_, "-6", "net0"),
              UnorderedElementsAre("2001:db8:1::/48 via 2001:db8::1", "default via 2001:db8::1",
                                   "2001:db8:2::/64"));
  json d = IpJson("-n " + pod_name_ + " -6 route show default");
  ASSERT_TRUE(d.is_array() && d.size() == 1) << d.dump();
  EXPECT_EQ(d[0].value("metric", 0), 100);
  ASSERT_TRUE(attacher_->Detach(id_, snap_, pod_path_, "net0", kWhere).ok());
  ExpectHostRestored();
  EXPECT_THAT(Routes("", "-6", "h0"), ::testing::IsEmpty()) << "the pod's routes came home";
}

TEST_F(AttachTest, AcceptDadAsksForDuplicateAddressDetection) {
  // 255 probes keep the address tentative for minutes: no race with the check below.
  AttachRequest req = Request({"2001:db8::10/64"}, {}, "net0");
  req.config.interface.sysctls =
      std::map<std::string, int64_t>{{"ipv6.accept_dad", 1}, {"ipv6.dad_transmits", 255}};
  auto res = attacher_->Attach(req, Persist());
  ASSERT_TRUE(res.ok()) << res.status();
  json a = AddrInfo(Link(pod_name_, "net0"), "2001:db8::10/64");
  ASSERT_FALSE(a.is_null());
  EXPECT_TRUE(a.value("tentative", false)) << a.dump();
  ASSERT_TRUE(attacher_->Detach(id_, snap_, pod_path_, "net0", kWhere).ok());
  ExpectHostRestored();
}

TEST_F(AttachTest, RestoreAfterARestartWritesThePersistedSysctls) {
  // The device came back to the host by itself (pod netns deleted), with the node netns's
  // defaults; the persisted snapshot brings back what the host had.
  state::HostSnapshot s = Snapshot();
  s.sysctls = {{"ipv4.rp_filter", "2"}, {"ipv4.arp_ignore", "1"}};
  ASSERT_EQ(Conf("", "ipv4", "h0", "arp_ignore"), "0");
  ASSERT_TRUE(attacher_->Restore(id_, s).ok());
  EXPECT_EQ(Conf("", "ipv4", "h0", "rp_filter"), "2");
  EXPECT_EQ(Conf("", "ipv4", "h0", "arp_ignore"), "1");
  ExpectHostRestored();
}

TEST_F(AttachTest, RulesSteerTheInterfaceTrafficThroughItsOwnTable) {
  // Source-based routing, the usual multi-NIC setup: what leaves from the interface's address
  // uses the interface's table, whose default route is the interface's gateway.
  config::Route def = MakeRoute("0.0.0.0/0", "192.0.2.1");
  def.table = 100;
  AttachRequest req = Request({"192.0.2.10/24", "2001:db8::10/64"}, {def});
  config::Rule mark = MakeRule(101, 100);
  mark.fwmark = 7;
  config::Rule in_out = MakeRule(102, 200, {}, "198.51.100.0/24");
  in_out.iif = "lo";
  in_out.oif = "net-rdma0";
  req.config.rules = std::vector<config::Rule>{MakeRule(100, 100, "192.0.2.10"), mark, in_out,
                                               MakeRule(103, 100, "2001:db8::/64")};
  auto res = attacher_->Attach(req, Persist());
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_THAT(Rules(pod_name_, "-4"),
              ElementsAre("100 from 192.0.2.10 table 100", "101 from all fwmark 0x7 table 100",
                          "102 from all to 198.51.100.0/24 iif lo oif net-rdma0 table 200"));
  // Without from/to a rule is for both families.
  EXPECT_THAT(Rules(pod_name_, "-6"),
              ElementsAre("101 from all fwmark 0x7 table 100", "103 from 2001:db8::/64 table 100"));
  // The kernel picks the interface's gateway for traffic from its address, and only for it
  // (the pod's main table has no default route).
  json via = IpJson("-n " + pod_name_ + " route get 203.0.113.5 from 192.0.2.10");
  ASSERT_TRUE(via.is_array() && via.size() == 1) << via.dump();
  EXPECT_EQ(via[0].value("gateway", ""), "192.0.2.1");
  EXPECT_EQ(via[0].value("dev", ""), "net-rdma0");
  EXPECT_TRUE(IpJson("-n " + pod_name_ + " route get 203.0.113.5").is_null());

  // A repeated hook changes nothing (no duplicate rules).
  ASSERT_TRUE(attacher_->Attach(req, Persist()).ok());
  EXPECT_EQ(Rules(pod_name_, "-4").size(), 3u);
  ASSERT_TRUE(attacher_->Detach(id_, snap_, pod_path_, "net-rdma0", kWhere).ok());
  ExpectHostRestored();
}

TEST_F(AttachTest, FailedAttachDeletesTheRulesItAddedAndOnlyThose) {
  // A rule the pod already had, identical to one of the config's, is not knd's to delete.
  SH("ip -n " + pod_name_ + " rule add priority 100 from 192.0.2.10 table 100");
  AttachRequest req = Request({"192.0.2.10/24"}, {MakeRoute("198.51.100.0/24", "203.0.113.1")});
  req.config.rules = std::vector<config::Rule>{MakeRule(100, 100, "192.0.2.10"),
                                               MakeRule(101, 100, "192.0.2.0/24")};
  auto res = attacher_->Attach(req, Persist());
  ASSERT_FALSE(res.ok());
  EXPECT_THAT(std::string(res.status().message()),
              HasSubstr("add route 198.51.100.0/24 via 203.0.113.1: Network is unreachable"));
  EXPECT_THAT(Rules(pod_name_, "-4"), ElementsAre("100 from 192.0.2.10 table 100"));
  ExpectHostRestored();
}

// `ip -d -j link show dev X` in `ns` ("" = the test thread's netns).
json LinkDetails(const std::string& ns, const std::string& dev) {
  json j = IpJson((ns.empty() ? "" : "-n " + ns + " ") + "-d link show dev " + dev);
  return j.is_array() && !j.empty() ? j[0] : json();
}

// The IPv4 GSO/GRO sizes of `dev` in the netns at `netns_path`, read with a raw rtnetlink
// socket: Debian 12's iproute2 (6.1) does not show them, and knd's own reader is under test.
// {0, 0} when the kernel (< 6.3) does not report them.
std::pair<uint32_t, uint32_t> Ipv4GsoGro(const std::string& netns_path, const std::string& dev) {
  constexpr int kGso = 63, kGro = 64;  // IFLA_GSO_IPV4_MAX_SIZE, IFLA_GRO_IPV4_MAX_SIZE
  UniqueFd sock;
  std::thread([&] {  // a netlink socket belongs to the netns it was made in
    UniqueFd ns(::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (ns.valid() && ::setns(ns.get(), CLONE_NEWNET) == 0) {
      sock.Reset(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
    }
  })
      .join();
  EXPECT_TRUE(sock.valid());
  struct {
    nlmsghdr h;
    ifinfomsg i;
    char attr[RTA_SPACE(IFNAMSIZ)];
  } req = {};
  auto* rta = reinterpret_cast<rtattr*>(req.attr);
  rta->rta_type = IFLA_IFNAME;
  rta->rta_len = RTA_LENGTH(dev.size() + 1);
  std::copy(dev.begin(), dev.end(), static_cast<char*>(RTA_DATA(rta)));
  req.h.nlmsg_len = NLMSG_LENGTH(sizeof(ifinfomsg)) + RTA_ALIGN(rta->rta_len);
  req.h.nlmsg_type = RTM_GETLINK;
  req.h.nlmsg_flags = NLM_F_REQUEST;
  EXPECT_EQ(::send(sock.get(), &req, req.h.nlmsg_len, 0), static_cast<ssize_t>(req.h.nlmsg_len));
  std::vector<char> buf(65536);
  ssize_t n = ::recv(sock.get(), buf.data(), buf.size(), 0);
  auto* h = reinterpret_cast<nlmsghdr*>(buf.data());
  if (n <= 0 || !NLMSG_OK(h, static_cast<uint32_t>(n)) || h->nlmsg_type != RTM_NEWLINK) {
    ADD_FAILURE() << "RTM_GETLINK " << dev << " in " << netns_path << ": no link";
    return {0, 0};
  }
  std::pair<uint32_t, uint32_t> out{0, 0};
  int len = static_cast<int>(IFLA_PAYLOAD(h));
  for (rtattr* a = IFLA_RTA(static_cast<ifinfomsg*>(NLMSG_DATA(h))); RTA_OK(a, len);
       a = RTA_NEXT(a, len)) {
    uint32_t v = 0;
    if (RTA_PAYLOAD(a) == sizeof(v)) std::memcpy(&v, RTA_DATA(a), sizeof(v));
    if (a->rta_type == kGso) out.first = v;
    if (a->rta_type == kGro) out.second = v;
  }
  return out;
}

TEST_F(AttachTest, BigTcpSizesApplyInThePodAndTheHostSizesComeBack) {
  // Host sizes that only a restore of each one brings back: gso/gro_max_size 65536/32768 set
  // with iproute2 (which also sets the IPv4 sizes to them: a legacy size does), then the IPv4
  // ones to 16384/8192 (iproute2 6.1 cannot), as read back with the raw reader.
  SH("ip link set dev h0 gso_max_size 65536 gro_max_size 32768");
  {
    auto sock = netlink::OpenRouteSocket();
    ASSERT_TRUE(sock.ok()) << sock.status();
    netlink::LinkChange c;
    c.gso_ipv4_max_size = 16384;
    c.gro_ipv4_max_size = 8192;
    ASSERT_TRUE(netlink::ChangeLink(*sock, static_cast<int>(::if_nametoindex("h0")), c).ok());
  }
  const auto host_ipv4 = Ipv4GsoGro(node_->path(), "h0");
  AttachRequest req = Request({"2001:db8::10/64", "192.0.2.10/24"}, {});
  req.config.interface.gso_max_size = 185000;
  req.config.interface.gro_max_size = 185000;
  req.config.interface.gso_ipv4_max_size = 131072;
  req.config.interface.gro_ipv4_max_size = 98304;
  auto res = attacher_->Attach(req, Persist());
  ASSERT_TRUE(res.ok()) << res.status();
  json l = LinkDetails(pod_name_, "net-rdma0");
  EXPECT_EQ(l.value("gso_max_size", 0), 185000) << l.dump();
  EXPECT_EQ(l.value("gro_max_size", 0), 185000) << l.dump();
  EXPECT_EQ(snap_.gso_max_size, 65536u);
  EXPECT_EQ(snap_.gro_max_size, 32768u);
  if (host_ipv4.first == 0) {
    std::fprintf(stderr, "SKIPPED part: the kernel has no IPv4 GSO/GRO sizes (Linux < 6.3)\n");
  } else {
    EXPECT_EQ(host_ipv4, (std::pair<uint32_t, uint32_t>{16384, 8192}));
    EXPECT_EQ(Ipv4GsoGro(pod_path_, "net-rdma0"), (std::pair<uint32_t, uint32_t>{131072, 98304}));
    EXPECT_EQ(snap_.gso_ipv4_max_size, 16384u);
    EXPECT_EQ(snap_.gro_ipv4_max_size, 8192u);
  }
  ASSERT_TRUE(attacher_->Detach(id_, snap_, pod_path_, "net-rdma0", kWhere).ok());
  ExpectHostRestored();
  json h = LinkDetails("", "h0");
  EXPECT_EQ(h.value("gso_max_size", 0), 65536) << h.dump();
  EXPECT_EQ(h.value("gro_max_size", 0), 32768) << h.dump();
  EXPECT_EQ(Ipv4GsoGro(node_->path(), "h0"), host_ipv4);
}

TEST_F(AttachTest, EthtoolFeaturesApplyInThePodAndTheHostStateComesBack) {
  if (Sh("ethtool --version").find("ethtool version") == std::string::npos) {
    GTEST_SKIP() << "needs ethtool";
  }
  // Host states unlike a new veth's: only a restore of each brings them back.
  SH("ethtool -K h0 rx-gro-list on tx-nocache-copy on");
  AttachRequest req = Request({"192.0.2.10/24"}, {});
  req.config.interface.ethtool_features = std::map<std::string, bool>{
      {"rx-gro-list", false}, {"tx-nocache-copy", false}, {"tso", false}};
  auto res = attacher_->Attach(req, Persist());
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ(Feature(pod_name_, "net-rdma0", "rx-gro-list"), "off");
  EXPECT_EQ(Feature(pod_name_, "net-rdma0", "tx-nocache-copy"), "off");
  // "tso" is ethtool's alias: every TCP segmentation feature.
  EXPECT_EQ(Feature(pod_name_, "net-rdma0", "tx-tcp-segmentation"), "off");
  EXPECT_EQ(Feature(pod_name_, "net-rdma0", "tx-tcp6-segmentation"), "off");
  EXPECT_EQ(Feature(pod_name_, "net-rdma0", "tx-checksum-ip-generic"), "on");
  // The snapshot holds the host's wanted states of exactly what the claim changes.
  EXPECT_EQ(snap_.ethtool_features.at("rx-gro-list"), true);
  EXPECT_EQ(snap_.ethtool_features.at("tx-nocache-copy"), true);
  EXPECT_EQ(snap_.ethtool_features.at("tx-tcp6-segmentation"), true);
  EXPECT_EQ(snap_.ethtool_features.count("tx-checksum-ip-generic"), 0u);

  ASSERT_TRUE(attacher_->Detach(id_, snap_, pod_path_, "net-rdma0", kWhere).ok());
  ExpectHostRestored();
  EXPECT_EQ(Feature("", "h0", "rx-gro-list"), "on");
  EXPECT_EQ(Feature("", "h0", "tx-nocache-copy"), "on");
  EXPECT_EQ(Feature("", "h0", "tx-tcp-segmentation"), "on");
  EXPECT_EQ(Feature("", "h0", "tx-tcp6-segmentation"), "on");
}

TEST_F(AttachTest, FixedEthtoolFeatureOrPrivateFlagIsRefusedBeforeAnythingChanges) {
  if (Sh("ethtool --version").find("ethtool version") == std::string::npos) {
    GTEST_SKIP() << "needs ethtool";
  }
  AttachRequest req = Request({"192.0.2.10/24"}, {});
  // Fixed off on veth; LRO (an alias) has nothing changeable there either.
  for (const char* name : {"tx-checksum-ipv4", "lro"}) {
    req.config.interface.ethtool_features = std::map<std::string, bool>{{name, true}};
    auto res = attacher_->Attach(req, Persist());
    ASSERT_FALSE(res.ok()) << name;
    EXPECT_EQ(res.status().code(), absl::StatusCode::kInvalidArgument) << res.status();
    EXPECT_THAT(std::string(res.status().message()),
                HasSubstr(std::string("interface.ethtool.features: ethtool feature \"") + name +
                          "\" cannot be changed on h0"));
    EXPECT_THAT(std::string(res.status().message()), HasSubstr("changeable: "));
  }
  // veth's driver defines no private flags.
  req.config.interface.ethtool_features.reset();
  req.config.interface.ethtool_private_flags = std::map<std::string, bool>{{"legacy-rx", true}};
  auto res = attacher_->Attach(req, Persist());
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.status().code(), absl::StatusCode::kInvalidArgument) << res.status();
  EXPECT_THAT(std::string(res.status().message()),
              HasSubstr("interface.ethtool.privateFlags: h0 has no private flags"));
  EXPECT_EQ(persist_calls_, 0);
  ExpectHostRestored();
  EXPECT_TRUE(Link(pod_name_, "net-rdma0").is_null());
}

TEST_F(AttachTest, EthtoolFeatureTheKernelKeepsRollsBackTheOthers) {
  if (Sh("ethtool --version").find("ethtool version") == std::string::npos) {
    GTEST_SKIP() << "needs ethtool";
  }
  // TSO needs checksumming: asking for checksumming off and TSO on leaves TSO off.
  AttachRequest req = Request({"192.0.2.10/24"}, {});
  req.config.interface.ethtool_features =
      std::map<std::string, bool>{{"tx-checksum-ip-generic", false}, {"tx-tcp-segmentation", true}};
  auto res = attacher_->Attach(req, Persist());
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.status().code(), absl::StatusCode::kFailedPrecondition) << res.status();
  EXPECT_THAT(std::string(res.status().message()),
              HasSubstr("interface.ethtool.features: ethtool feature \"tx-tcp-segmentation\" of "
                        "net-rdma0 stayed off"));
  EXPECT_THAT(std::string(res.status().message()), ::testing::Not(HasSubstr("rollback failed")));
  ExpectHostRestored();
  EXPECT_EQ(Feature("", "h0", "tx-checksum-ip-generic"), "on");
  EXPECT_EQ(Feature("", "h0", "tx-tcp-segmentation"), "on");
}

// The current rx and tx channel counts of `dev` in `ns` as `ethtool -l` prints them.
std::pair<int, int> RxTx(const std::string& ns, const std::string& dev, bool max = false) {
  const std::string text =
      Sh((ns.empty() ? "" : "ip netns exec " + ns + " ") + "ethtool -l " + dev);
  size_t at = text.find(max ? "Pre-set maximums:" : "Current hardware settings:");
  if (at == std::string::npos) return {-1, -1};
  auto count = [&](const std::string& key) {
    size_t k = text.find(key, at);
    return k == std::string::npos ? -1 : std::atoi(text.c_str() + k + key.size());
  };
  return {count("RX:"), count("TX:")};
}

TEST_F(AttachTest, EthtoolChannelsApplyInThePodAndTheHostCountsComeBack) {
  if (Sh("ethtool --version").find("ethtool version") == std::string::npos) {
    GTEST_SKIP() << "needs ethtool";
  }
  if (RxTx("", "h0", /*max=*/true).first < 2) GTEST_SKIP() << "one CPU: veth has one queue";
  SH("ethtool -L h0 tx 2");  // a host count unlike the default, that only a restore brings back
  AttachRequest req = Request({"192.0.2.10/24"}, {});
  req.config.interface.ethtool_channels = std::map<std::string, uint32_t>{{"rx", 2}, {"tx", 1}};
  req.config.interface.ethtool_features = std::map<std::string, bool>{{"rx-gro-list", true}};
  auto res = attacher_->Attach(req, Persist());
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ(RxTx(pod_name_, "net-rdma0"), (std::pair<int, int>{2, 1}));
  EXPECT_EQ(Feature(pod_name_, "net-rdma0", "rx-gro-list"), "on");
  EXPECT_EQ(snap_.ethtool_channels, (std::map<std::string, uint32_t>{{"rx", 1}, {"tx", 2}}));
  ASSERT_TRUE(attacher_->Detach(id_, snap_, pod_path_, "net-rdma0", kWhere).ok());
  ExpectHostRestored();
  EXPECT_EQ(RxTx("", "h0"), (std::pair<int, int>{1, 2}));
  EXPECT_EQ(Feature("", "h0", "rx-gro-list"), "off");
}

TEST_F(AttachTest, MoreChannelsThanTheDeviceHasAreRefusedBeforeAnythingChanges) {
  if (Sh("ethtool --version").find("ethtool version") == std::string::npos) {
    GTEST_SKIP() << "needs ethtool";
  }
  AttachRequest req = Request({"192.0.2.10/24"}, {});
  req.config.interface.ethtool_channels = std::map<std::string, uint32_t>{{"combined", 4}};
  auto res = attacher_->Attach(req, Persist());
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.status().code(), absl::StatusCode::kInvalidArgument) << res.status();
  EXPECT_THAT(std::string(res.status().message()),
              HasSubstr("interface.ethtool.channels: combined 4: h0 has no combined channels"));
  // Rings: veth has none.
  req.config.interface.ethtool_channels.reset();
  req.config.interface.ethtool_rings = std::map<std::string, uint32_t>{{"rx", 512}};
  res = attacher_->Attach(req, Persist());
  ASSERT_FALSE(res.ok());
  EXPECT_THAT(std::string(res.status().message()),
              HasSubstr("interface.ethtool.rings: h0 has no ring entries to set"));
  EXPECT_EQ(persist_calls_, 0);
  ExpectHostRestored();
}

TEST_F(AttachTest, CheckDeviceAnswersPreparesQuestionAndChangesNothing) {
  if (Sh("ethtool --version").find("ethtool version") == std::string::npos) {
    GTEST_SKIP() << "needs ethtool";
  }
  config::NetworkConfig cfg;
  EXPECT_TRUE(attacher_->CheckDevice(id_, cfg).ok()) << "nothing for ethtool: nothing to check";
  cfg.interface.ethtool_features = std::map<std::string, bool>{{"tso", false}};
  EXPECT_TRUE(attacher_->CheckDevice(id_, cfg).ok());
  EXPECT_EQ(Feature("", "h0", "tx-tcp-segmentation"), "on") << "a check sets nothing";

  struct Bad {
    std::function<void(config::NetworkConfig&)> set;
    std::string error;
    absl::StatusCode code = absl::StatusCode::kInvalidArgument;
  };
  for (const Bad& bad : std::vector<Bad>{
           {[](auto& c) {
              c.interface.ethtool_features = std::map<std::string, bool>{{"lro", true}};
            },
            "interface.ethtool.features: ethtool feature \"lro\" cannot be changed on h0"},
           {[](auto& c) {
              c.interface.ethtool_channels = std::map<std::string, uint32_t>{{"combined", 4}};
            },
            "interface.ethtool.channels: combined 4: h0 has no combined channels"},
           {[](auto& c) {
              c.interface.ethtool_rings = std::map<std::string, uint32_t>{{"rx", 512}};
            },
            "interface.ethtool.rings: h0 has no ring entries to set",
            absl::StatusCode::kUnimplemented},
           {[](auto& c) {
              c.interface.ethtool_private_flags = std::map<std::string, bool>{{"legacy-rx", true}};
            },
            "interface.ethtool.privateFlags: h0 has no private flags (its driver defines none)"}}) {
    config::NetworkConfig c = cfg;
    bad.set(c);
    absl::Status st = attacher_->CheckDevice(id_, c);
    EXPECT_EQ(st.code(), bad.code) << st;
    EXPECT_THAT(std::string(st.message()), HasSubstr(bad.error));
  }
  ExpectHostRestored();
  EXPECT_EQ(Feature("", "h0", "tx-tcp-segmentation"), "on");

  // In a pod, the device is not on the host to be asked.
  ASSERT_TRUE(attacher_->Attach(Request({"192.0.2.10/24"}, {}), Persist()).ok());
  EXPECT_TRUE(absl::IsNotFound(attacher_->CheckDevice(id_, cfg)));
}

TEST_F(AttachTest, NeighborOfAFamilyWithoutAddressStillApplies) {
  // An IPv4-only attachment keeps IPv6 on the link (only SLAAC and the link-local are off),
  // so an IPv6 neighbour is accepted; a neighbour the kernel refuses names itself.
  AttachRequest req = Request({"192.0.2.10/24"}, {}, "net0");
  req.config.neighbors =
      std::vector<config::Neighbor>{MakeNeighbor("2001:db8::1", "02:00:00:00:aa:02")};
  auto res = attacher_->Attach(req, Persist());
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_THAT(Neighbors(pod_name_, "net0"),
              UnorderedElementsAre("2001:db8::1 02:00:00:00:aa:02 PERMANENT"));
}

TEST_F(AttachTest, AttachAndDetachAreIdempotent) {
  AttachRequest req = Request({"192.0.2.10/24"}, {MakeRoute("198.51.100.0/24", "192.0.2.1")});
  auto first = attacher_->Attach(req, Persist());
  ASSERT_TRUE(first.ok()) << first.status();
  state::HostSnapshot snap = snap_;
  auto second = attacher_->Attach(req, Persist());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(persist_calls_, 1) << "a re-attach must not re-snapshot the (absent) host device";
  EXPECT_EQ(second->ifname, "net-rdma0");
  EXPECT_EQ(second->mac, "02:00:00:00:00:01");
  EXPECT_THAT(second->ips, UnorderedElementsAre("192.0.2.10/24"));

  ASSERT_TRUE(attacher_->Detach(id_, snap, pod_path_, "net-rdma0", kWhere).ok());
  ExpectHostRestored();
  // Someone changes the host device; a second Detach restores the settings only.
  SH("ip link set h0 mtu 1300");
  absl::Status st = attacher_->Detach(id_, snap, pod_path_, "net-rdma0", kWhere);
  ASSERT_TRUE(st.ok()) << st;
  ExpectHostRestored();
}

TEST_F(AttachTest, NameTakenInPodIsAlreadyExistsAndHostUnchanged) {
  SH("ip -n " + pod_name_ + " link add net1 type bridge");  // what Multus would have made
  auto res = attacher_->Attach(Request({"192.0.2.10/24"}, {}, "net1"), Persist());
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.status().code(), absl::StatusCode::kAlreadyExists)
      << res.status() << "\nnode: " << Sh("ip -br link")
      << "\npod: " << Sh("ip -n " + pod_name_ + " -br link");
  EXPECT_THAT(std::string(res.status().message()),
              HasSubstr("interface name \"net1\" is already used in the pod netns"));
  EXPECT_THAT(std::string(res.status().message()), HasSubstr(kWhere));
  EXPECT_EQ(persist_calls_, 0) << "refused before the snapshot";
  ExpectHostRestored();
  json net1 = Link(pod_name_, "net1");
  ASSERT_FALSE(net1.is_null());
  EXPECT_NE(net1.value("address", ""), "02:00:00:00:00:01");
}

TEST_F(AttachTest, FailingRouteRollsBackAndNamesTheStep) {
  auto res = attacher_->Attach(
      Request({"192.0.2.10/24"}, {MakeRoute("198.51.100.0/24", "203.0.113.1")}), Persist());
  ASSERT_FALSE(res.ok());
  std::string msg(res.status().message());
  EXPECT_THAT(msg, HasSubstr(std::string(kWhere) +
                             ": add route 198.51.100.0/24 via 203.0.113.1: Network is "
                             "unreachable"));
  EXPECT_THAT(msg, ::testing::Not(HasSubstr("rollback failed")));
  ExpectHostRestored();
  EXPECT_TRUE(Link(pod_name_, "net-rdma0").is_null());
}

TEST_F(AttachTest, MtuRefusedAfterTheMoveRollsBack) {
  // The kernel applies the netns move before the MTU: a refused MTU leaves the device in
  // the pod unless the attacher brings it back.
  AttachRequest req = Request({"192.0.2.10/24"}, {});
  req.config.interface.mtu = 70000;
  auto res = attacher_->Attach(req, Persist());
  ASSERT_FALSE(res.ok());
  EXPECT_THAT(std::string(res.status().message()),
              HasSubstr("move h0 into the pod netns as net-rdma0"));
  EXPECT_THAT(std::string(res.status().message()), ::testing::Not(HasSubstr("rollback failed")));
  ExpectHostRestored();
  EXPECT_TRUE(Link(pod_name_, "net-rdma0").is_null());
  EXPECT_TRUE(Link(pod_name_, "h0").is_null());
}

TEST_F(AttachTest, PersistErrorChangesNothing) {
  auto res = attacher_->Attach(Request({"192.0.2.10/24"}, {}), [](const state::HostSnapshot&) {
    return absl::InternalError("checkpoint: disk full");
  });
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(res.status().message()), HasSubstr("disk full"));
  ExpectHostRestored();
  EXPECT_TRUE(Link(pod_name_, "net-rdma0").is_null());
}

TEST_F(AttachTest, HostNetnsOrNoNetnsIsRefused) {
  AttachRequest req = Request({"192.0.2.10/24"}, {});
  req.netns_path = "";
  auto res = attacher_->Attach(req, Persist());
  EXPECT_EQ(res.status().code(), absl::StatusCode::kInvalidArgument) << res.status();
  req.netns_path = node_->path();  // the attacher's own (host) namespace
  res = attacher_->Attach(req, Persist());
  EXPECT_EQ(res.status().code(), absl::StatusCode::kInvalidArgument) << res.status();
  EXPECT_THAT(std::string(res.status().message()), HasSubstr("host network namespace"));
  EXPECT_EQ(persist_calls_, 0);
  ExpectHostRestored();
}

TEST_F(AttachTest, UnknownDeviceIsNotFound) {
  AttachRequest req = Request({"192.0.2.10/24"}, {});
  req.identity = state::DeviceIdentity{"", "", "02:11:22:33:44:55", 999, "nosuch0"};
  auto res = attacher_->Attach(req, Persist());
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.status().code(), absl::StatusCode::kNotFound) << res.status();
  EXPECT_THAT(std::string(res.status().message()), HasSubstr("nosuch0"));
  EXPECT_EQ(persist_calls_, 0);
}

TEST_F(AttachTest, DetachAfterNetnsDeletedFindsRefundedDevice) {
  auto res = attacher_->Attach(
      Request({"192.0.2.10/24"}, {MakeRoute("198.51.100.0/24", "192.0.2.1")}), Persist());
  ASSERT_TRUE(res.ok()) << res.status();
  // What the kernel does with a physical NIC when the netns dies and its name is taken.
  SH("ip -n " + pod_name_ + " link set net-rdma0 netns " + node_->name() + " name dev7");
  pod_.reset();
  ASSERT_FALSE(Link("", "dev7").is_null());

  absl::Status st = attacher_->Detach(id_, snap_, pod_path_, "net-rdma0", kWhere);
  ASSERT_TRUE(st.ok()) << st;
  ExpectHostRestored();
  EXPECT_TRUE(Link("", "dev7").is_null());
}

TEST_F(AttachTest, DetachAfterNetnsDeletedWithVethIsNotFound) {
  auto res = attacher_->Attach(Request({"192.0.2.10/24"}, {}), Persist());
  ASSERT_TRUE(res.ok()) << res.status();
  pod_.reset();  // the veth dies with the namespace
  absl::Status st = attacher_->Detach(id_, snap_, pod_path_, "net-rdma0", kWhere);
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr("destroyed with the pod netns"));
  EXPECT_THAT(std::string(st.message()), HasSubstr(kWhere));
  auto attached = attacher_->IsAttached(pod_path_, "net-rdma0");
  ASSERT_TRUE(attached.ok()) << attached.status();
  EXPECT_FALSE(*attached);
}

TEST_F(AttachTest, DetachWithHostNameTakenFailsClearlyAndRecoversOnRetry) {
  auto res = attacher_->Attach(Request({"192.0.2.10/24"}, {}), Persist());
  ASSERT_TRUE(res.ok()) << res.status();
  SH("ip link add h0 type bridge");  // someone took the name meanwhile
  absl::Status st = attacher_->Detach(id_, snap_, pod_path_, "net-rdma0", kWhere);
  EXPECT_EQ(st.code(), absl::StatusCode::kAlreadyExists) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr("\"h0\" is already used on the host"));
  EXPECT_FALSE(Link("", "net-rdma0").is_null()) << "the device is home under its pod name";
  SH("ip link del h0");
  st = attacher_->Detach(id_, snap_, pod_path_, "net-rdma0", kWhere);
  ASSERT_TRUE(st.ok()) << st;
  ExpectHostRestored();
}

TEST_F(AttachTest, DetachRestoresFromPersistedSnapshot) {
  // A restarted driver only has the persisted snapshot: Detach must work from it alone.
  auto res = attacher_->Attach(Request({"192.0.2.10/24"}, {}), Persist());
  ASSERT_TRUE(res.ok()) << res.status();
  attacher_ = NewNetlinkAttacher();
  absl::Status st = attacher_->Detach(id_, Snapshot(), pod_path_, "net-rdma0", kWhere);
  ASSERT_TRUE(st.ok()) << st;
  ExpectHostRestored();
}

// What another component (the pod's CNI: Multus and host-device) does: move the device into
// the pod under a name of its own, and later back, down and with another MTU.
TEST_F(AttachTest, FindsTheDeviceAnotherPluginMovedIntoThePodByIdentity) {
  auto home = attacher_->OnHost(id_);
  ASSERT_TRUE(home.ok()) << home.status();
  EXPECT_TRUE(*home);
  auto none = attacher_->FindInPod(pod_path_, id_);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());

  SH("ip link set h0 netns " + pod_name_ + " name net1");
  SH("ip -n " + pod_name_ + " addr add 10.30.0.9/24 dev net1");
  home = attacher_->OnHost(id_);
  ASSERT_TRUE(home.ok());
  EXPECT_FALSE(*home) << "not on the host under any name";
  auto found = attacher_->FindInPod(pod_path_, id_);
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->ifname, "net1");
  EXPECT_EQ((*found)->mac, host_mac_);
  EXPECT_THAT((*found)->ips, ElementsAre("10.30.0.9/24"));
  EXPECT_EQ((*found)->netns, pod_path_);
  // A netns that is gone holds nothing.
  auto gone = attacher_->FindInPod("/run/netns/knd-no-such-ns", id_);
  ASSERT_TRUE(gone.ok()) << gone.status();
  EXPECT_FALSE(gone->has_value());
}

TEST_F(AttachTest, SnapshotAndRestoreBringBackWhatACniDelLeavesOut) {
  auto snap = attacher_->Snapshot(id_);
  ASSERT_TRUE(snap.ok()) << snap.status();
  EXPECT_EQ(snap->ifname, "h0");
  EXPECT_EQ(snap->mtu, 1400u);
  EXPECT_TRUE(snap->up);
  EXPECT_THAT(snap->addresses, ElementsAre("10.99.0.2/24"));
  // host-device ADD then DEL: moved in, and back renamed, down, MTU changed, addresses gone.
  SH("ip link set h0 netns " + pod_name_ + " name net1");
  EXPECT_TRUE(absl::IsNotFound(attacher_->Snapshot(id_).status()));
  EXPECT_TRUE(absl::IsNotFound(attacher_->Restore(id_, *snap)));
  SH("ip -n " + pod_name_ + " link set net1 mtu 9000");
  SH("ip -n " + pod_name_ + " link set net1 netns " + node_->name() + " name h0");
  json h0 = Link("", "h0");
  ASSERT_FALSE(h0.is_null());
  EXPECT_FALSE(IsUp(h0));
  absl::Status st = attacher_->Restore(id_, *snap);
  ASSERT_TRUE(st.ok()) << st;
  ExpectHostRestored();
}

// --- Children of a shared parent (macvlan, ipvlan, vlan made in the pod netns) ---

class ChildAttachTest : public AttachTest {
 protected:
  AttachRequest ChildRequest(const std::string& type, const std::string& mode,
                             const std::string& mac, std::vector<std::string> addrs,
                             std::vector<config::Route> routes, const std::string& name = "net1") {
    AttachRequest r = Request(std::move(addrs), std::move(routes), name);
    r.config.interface.mtu.reset();
    r.config.interface.hardware_addr.reset();
    state::ChildPlan c;
    c.type = type;
    c.mode = mode;
    c.mac = mac;
    r.child = c;
    return r;
  }
  std::function<absl::Status()> PersistChild() {
    return [this] {
      ++persist_calls_;
      return absl::OkStatus();
    };
  }

  // The parent stayed on the host, untouched.
  void ExpectParentUnchanged() { ExpectHostRestored(); }
};

TEST_F(ChildAttachTest, MacvlanChildIsMadeInThePodAndDeletedOnDetach) {
  AttachRequest req = ChildRequest(
      "macvlan", "bridge", "02:aa:00:00:00:01", {"192.0.2.10/24", "2001:db8::10/64"},
      {MakeRoute("198.51.100.0/24", "192.0.2.1"), MakeRoute("203.0.113.0/24", {}, 50)});
  auto res = attacher_->AttachChild(req, PersistChild());
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ(persist_calls_, 1);
  EXPECT_EQ(res->netns, pod_path_);
  EXPECT_EQ(res->ifname, "net1");
  EXPECT_EQ(res->mac, "02:aa:00:00:00:01");
  EXPECT_THAT(res->ips, UnorderedElementsAre("192.0.2.10/24", "2001:db8::10/64"));

  json l = Link(pod_name_, "net1");
  ASSERT_FALSE(l.is_null()) << "net1 missing in the pod";
  EXPECT_EQ(l.value("mtu", 0), 1400);  // the parent's
  EXPECT_EQ(l.value("address", ""), "02:aa:00:00:00:01");
  EXPECT_TRUE(IsUp(l));
  EXPECT_THAT(Addrs(l, "inet"), UnorderedElementsAre("192.0.2.10/24"));
  EXPECT_THAT(Addrs(l, "inet6"), UnorderedElementsAre("2001:db8::10/64"));
  EXPECT_THAT(Routes(pod_name_, "-4", "net1"),
              UnorderedElementsAre("198.51.100.0/24 via 192.0.2.1", "203.0.113.0/24"));
  json d = LinkDetails(pod_name_, "net1");
  EXPECT_EQ(d["linkinfo"].value("info_kind", ""), "macvlan") << d.dump();
  EXPECT_EQ(d["linkinfo"]["info_data"].value("mode", ""), "bridge") << d.dump();
  ExpectParentUnchanged();
  auto attached = attacher_->IsAttached(pod_path_, "net1");
  ASSERT_TRUE(attached.ok()) << attached.status();
  EXPECT_TRUE(*attached);

  absl::Status st = attacher_->DetachChild(pod_path_, "net1", *req.child, kWhere);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_TRUE(Link(pod_name_, "net1").is_null()) << "the child outlived its detach";
  ExpectParentUnchanged();
  // Detach again, and with the netns gone: nothing to do.
  EXPECT_TRUE(attacher_->DetachChild(pod_path_, "net1", *req.child, kWhere).ok());
  EXPECT_TRUE(attacher_->DetachChild("/run/netns/knd-no-such-ns", "net1", *req.child, kWhere).ok());
}

TEST_F(ChildAttachTest, ChildGetsItsPermanentNeighbors) {
  AttachRequest req = ChildRequest("macvlan", "bridge", "02:aa:00:00:00:01", {"192.0.2.10/24"}, {});
  req.config.neighbors =
      std::vector<config::Neighbor>{MakeNeighbor("192.0.2.1", "02:00:00:00:aa:01")};
  auto res = attacher_->AttachChild(req, PersistChild());
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_THAT(Neighbors(pod_name_, "net1"),
              UnorderedElementsAre("192.0.2.1 02:00:00:00:aa:01 PERMANENT"));
  ASSERT_TRUE(attacher_->DetachChild(pod_path_, "net1", *req.child, kWhere).ok());
  EXPECT_THAT(Neighbors("", "h0"), ::testing::IsEmpty());
}

TEST_F(ChildAttachTest, ChildGetsItsSysctlsAndTheParentKeepsItsOwn) {
  SH("echo 2 > /proc/sys/net/ipv4/conf/h0/rp_filter");
  AttachRequest req = ChildRequest("macvlan", "bridge", "02:aa:00:00:00:01", {"192.0.2.10/24"}, {});
  req.config.interface.sysctls =
      std::map<std::string, int64_t>{{"ipv4.rp_filter", 0}, {"ipv4.arp_notify", 1}};
  auto res = attacher_->AttachChild(req, PersistChild());
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ(Conf(pod_name_, "ipv4", "net1", "rp_filter"), "0");
  EXPECT_EQ(Conf(pod_name_, "ipv4", "net1", "arp_notify"), "1");
  EXPECT_EQ(Conf("", "ipv4", "h0", "rp_filter"), "2") << "the parent's sysctls are the host's";
  ASSERT_TRUE(attacher_->DetachChild(pod_path_, "net1", *req.child, kWhere).ok());
}

TEST_F(ChildAttachTest, ChildGetsItsRules) {
  AttachRequest req = ChildRequest("macvlan", "bridge", "02:aa:00:00:00:01", {"192.0.2.10/24"}, {});
  req.config.rules = std::vector<config::Rule>{MakeRule(100, 100, "192.0.2.10")};
  ASSERT_TRUE(attacher_->AttachChild(req, PersistChild()).ok());
  EXPECT_THAT(Rules(pod_name_, "-4"), ElementsAre("100 from 192.0.2.10 table 100"));
  ASSERT_TRUE(attacher_->DetachChild(pod_path_, "net1", *req.child, kWhere).ok());
}

TEST_F(ChildAttachTest, ChildGetsItsGsoAndGroSizes) {
  AttachRequest req = ChildRequest("macvlan", "bridge", "02:aa:00:00:00:01", {"192.0.2.10/24"}, {});
  req.config.interface.gso_max_size = 32768;
  req.config.interface.gro_max_size = 16384;
  req.config.interface.gso_ipv4_max_size = 8192;
  req.config.interface.gro_ipv4_max_size = 4096;
  ASSERT_TRUE(attacher_->AttachChild(req, PersistChild()).ok());
  json l = LinkDetails(pod_name_, "net1");
  EXPECT_EQ(l.value("gso_max_size", 0), 32768) << l.dump();
  EXPECT_EQ(l.value("gro_max_size", 0), 16384) << l.dump();
  const auto ipv4 = Ipv4GsoGro(pod_path_, "net1");
  if (ipv4.first != 0) {
    EXPECT_EQ(ipv4, (std::pair<uint32_t, uint32_t>{8192, 4096}));
  }
  ASSERT_TRUE(attacher_->DetachChild(pod_path_, "net1", *req.child, kWhere).ok());
  ExpectParentUnchanged();
}

TEST_F(ChildAttachTest, EthtoolFeatureTheChildCannotTakeDeletesTheChild) {
  if (Sh("ethtool --version").find("ethtool version") == std::string::npos) {
    GTEST_SKIP() << "needs ethtool";
  }
  // A macvlan's offloads follow its parent's (macvlan_fix_features): GSO stays on whatever
  // the child asks, and VLAN filtering is fixed. Either way the child is deleted again and
  // the parent keeps its own features.
  AttachRequest req = ChildRequest("macvlan", "bridge", "02:aa:00:00:00:01", {"192.0.2.10/24"}, {});
  for (const auto& [feature, code, what] :
       std::vector<std::tuple<std::string, absl::StatusCode, std::string>>{
           {"gso", absl::StatusCode::kFailedPrecondition,
            "ethtool feature \"tx-generic-segmentation\" of net1 stayed on"},
           {"rx-vlan-filter", absl::StatusCode::kInvalidArgument,
            "ethtool feature \"rx-vlan-filter\" cannot be changed on net1"}}) {
    req.config.interface.ethtool_features = std::map<std::string, bool>{{feature, false}};
    auto res = attacher_->AttachChild(req, PersistChild());
    ASSERT_FALSE(res.ok()) << feature;
    EXPECT_EQ(res.status().code(), code) << res.status();
    EXPECT_THAT(std::string(res.status().message()),
                HasSubstr("interface.ethtool.features: " + what));
    EXPECT_TRUE(Link(pod_name_, "net1").is_null()) << feature;
  }
  EXPECT_EQ(Feature("", "h0", "generic-segmentation-offload"), "on");
  ExpectParentUnchanged();
}

TEST_F(ChildAttachTest, ChannelsOnAChildWithoutThemDeleteTheChild) {
  if (Sh("ethtool --version").find("ethtool version") == std::string::npos) {
    GTEST_SKIP() << "needs ethtool";
  }
  AttachRequest req = ChildRequest("macvlan", "bridge", "02:aa:00:00:00:01", {"192.0.2.10/24"}, {});
  req.config.interface.ethtool_channels = std::map<std::string, uint32_t>{{"rx", 2}};
  auto res = attacher_->AttachChild(req, PersistChild());
  ASSERT_FALSE(res.ok());
  EXPECT_THAT(std::string(res.status().message()),
              HasSubstr("interface.ethtool.channels: net1 has no channels to set"));
  EXPECT_TRUE(Link(pod_name_, "net1").is_null());
  ExpectParentUnchanged();
}

TEST_F(ChildAttachTest, ChildrenOfOneParentInTwoPodsAndRepeatedHooks) {
  auto pod2 = netns::ScopedNetns::Create("knd-att-pod2");
  ASSERT_TRUE(pod2.ok()) << pod2.status();
  AttachRequest a = ChildRequest("macvlan", "bridge", "02:aa:00:00:00:01", {"192.0.2.10/24"}, {});
  AttachRequest b = ChildRequest("macvlan", "bridge", "02:aa:00:00:00:02", {"192.0.2.11/24"}, {});
  b.netns_path = pod2->path();
  ASSERT_TRUE(attacher_->AttachChild(a, PersistChild()).ok());
  ASSERT_TRUE(attacher_->AttachChild(b, PersistChild()).ok());
  EXPECT_EQ(Link(pod_name_, "net1").value("address", ""), "02:aa:00:00:00:01");
  EXPECT_EQ(Link(pod2->name(), "net1").value("address", ""), "02:aa:00:00:00:02");
  // A repeated hook takes the child that is there (the plan is written again, as the same).
  auto again = attacher_->AttachChild(a, PersistChild());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->mac, "02:aa:00:00:00:01");
  json links = IpJson("-n " + pod_name_ + " link show type macvlan");
  EXPECT_EQ(links.size(), 1u) << links.dump();
  // Another link under that name is not ours: AlreadyExists, and it is left alone.
  SH("ip -n " + pod2->name() + " link add net2 type veth peer name net2p");
  AttachRequest c = ChildRequest("macvlan", "bridge", "02:aa:00:00:00:03", {}, {}, "net2");
  c.netns_path = pod2->path();
  auto taken = attacher_->AttachChild(c, PersistChild());
  EXPECT_TRUE(absl::IsAlreadyExists(taken.status())) << taken.status();
  EXPECT_FALSE(Link(pod2->name(), "net2").is_null());
  // DetachChild leaves a link of another kind under the recorded name alone.
  EXPECT_TRUE(attacher_->DetachChild(pod2->path(), "net2", *c.child, kWhere).ok());
  EXPECT_FALSE(Link(pod2->name(), "net2").is_null());
  ExpectParentUnchanged();
}

TEST_F(ChildAttachTest, MtuAboveTheParentIsRefusedBeforeAnythingIsMade) {
  AttachRequest req = ChildRequest("macvlan", "bridge", "02:aa:00:00:00:01", {}, {});
  req.config.interface.mtu = 9000;
  auto res = attacher_->AttachChild(req, PersistChild());
  EXPECT_TRUE(absl::IsFailedPrecondition(res.status())) << res.status();
  EXPECT_THAT(std::string(res.status().message()), HasSubstr("interface.mtu 9000"));
  EXPECT_THAT(std::string(res.status().message()), HasSubstr(kWhere));
  EXPECT_EQ(persist_calls_, 0);
  EXPECT_TRUE(Link(pod_name_, "net1").is_null());
}

TEST_F(ChildAttachTest, FailureAfterTheCreateDeletesTheChild) {
  AttachRequest req = ChildRequest("macvlan", "private", "02:aa:00:00:00:01", {"192.0.2.10/24"},
                                   {MakeRoute("198.51.100.0/24", "203.0.113.1")});
  auto res = attacher_->AttachChild(req, PersistChild());
  ASSERT_FALSE(res.ok());
  EXPECT_THAT(std::string(res.status().message()), HasSubstr(kWhere));
  EXPECT_EQ(persist_calls_, 1);
  EXPECT_TRUE(Link(pod_name_, "net1").is_null()) << "the child outlived a failed attach";
  ExpectParentUnchanged();
}

TEST_F(ChildAttachTest, ParentGoneIsNotFoundAndPersistErrorChangesNothing) {
  AttachRequest req = ChildRequest("macvlan", "bridge", "02:aa:00:00:00:01", {}, {});
  auto persist_fails = [] { return absl::UnavailableError("disk full"); };
  auto res = attacher_->AttachChild(req, persist_fails);
  EXPECT_TRUE(absl::IsUnavailable(res.status())) << res.status();
  EXPECT_TRUE(Link(pod_name_, "net1").is_null());
  SH("ip link del h0");
  res = attacher_->AttachChild(req, PersistChild());
  EXPECT_TRUE(absl::IsNotFound(res.status())) << res.status();
  EXPECT_THAT(std::string(res.status().message()), HasSubstr("shared parent"));
}

TEST_F(ChildAttachTest, MacvlanOnAMacvlanParentIsIdempotent) {
  // A parent that is itself a macvlan (a NIC's macvlan on a node that shares it already): the
  // kernel hangs the child off the lower device, and a repeated hook still finds it ours.
  SH("ip link add m0 link h0 type macvlan mode bridge");
  SH("ip link set m0 up");
  json m0 = Link("", "m0");
  ASSERT_FALSE(m0.is_null());
  AttachRequest req = ChildRequest("macvlan", "bridge", "02:aa:00:00:00:05", {"192.0.2.10/24"}, {});
  req.identity = {};
  req.identity.ifname = "m0";
  req.identity.ifindex = m0.value("ifindex", 0);
  req.identity.mac = m0.value("address", "");
  ASSERT_TRUE(attacher_->AttachChild(req, PersistChild()).ok());
  auto again = attacher_->AttachChild(req, PersistChild());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->mac, "02:aa:00:00:00:05");
}

// ipvlan, 802.1Q and VRF are not in every kernel (not in this host's: the VM lab's 6.12 has both).
bool KernelHas(const std::string& kind) {
  int rc = 0;
  Sh("ip link add knd-probe0 type veth peer name knd-probe1", &rc);
  if (rc != 0) return false;
  std::string args = kind == "vlan"  ? "link knd-probe0 type vlan id 7"
                     : kind == "vrf" ? "type vrf table 7"
                                     : "link knd-probe0 type ipvlan mode l2";
  Sh("ip link add knd-probe2 " + args, &rc);
  Sh("ip link del knd-probe2");
  Sh("ip link del knd-probe0");
  return rc == 0;
}

TEST_F(ChildAttachTest, IpvlanChildInL3Mode) {
  if (!KernelHas("ipvlan")) GTEST_SKIP() << "this kernel has no ipvlan (the VM lab's has)";
  AttachRequest req = ChildRequest("ipvlan", "l3", "", {"192.0.2.10/24"}, {});
  auto res = attacher_->AttachChild(req, PersistChild());
  ASSERT_TRUE(res.ok()) << res.status();
  json d = LinkDetails(pod_name_, "net1");
  EXPECT_EQ(d["linkinfo"].value("info_kind", ""), "ipvlan") << d.dump();
  EXPECT_EQ(d["linkinfo"]["info_data"].value("mode", ""), "l3") << d.dump();
  EXPECT_EQ(d.value("address", ""), host_mac_);  // ipvlan children share the parent's MAC
  EXPECT_THAT(Addrs(Link(pod_name_, "net1"), "inet"), UnorderedElementsAre("192.0.2.10/24"));
  ASSERT_TRUE(attacher_->AttachChild(req, PersistChild()).ok());  // idempotent
  ASSERT_TRUE(attacher_->DetachChild(pod_path_, "net1", *req.child, kWhere).ok());
  EXPECT_TRUE(Link(pod_name_, "net1").is_null());
  ExpectParentUnchanged();
}

TEST_F(ChildAttachTest, VlanChildCarriesItsId) {
  if (!KernelHas("vlan")) GTEST_SKIP() << "this kernel has no 802.1Q (the VM lab's has)";
  AttachRequest req = ChildRequest("vlan", "", "", {"192.0.2.10/24"}, {}, "net1.42");
  req.child->vlan_id = 42;
  auto res = attacher_->AttachChild(req, PersistChild());
  ASSERT_TRUE(res.ok()) << res.status();
  json d = LinkDetails(pod_name_, "net1.42");
  EXPECT_EQ(d["linkinfo"].value("info_kind", ""), "vlan") << d.dump();
  EXPECT_EQ(d["linkinfo"]["info_data"].value("id", 0), 42) << d.dump();
  ASSERT_TRUE(attacher_->DetachChild(pod_path_, "net1.42", *req.child, kWhere).ok());
  EXPECT_TRUE(Link(pod_name_, "net1.42").is_null());
  ExpectParentUnchanged();
}

// ---- interface.vrf ------------------------------------------------------------------------

constexpr char kNoVrf[] = "this kernel has no VRF (the VM lab's has)";

config::VrfConfig Vrf(const std::string& name, uint32_t table) {
  config::VrfConfig v;
  v.name = name;
  v.table = table;
  return v;
}

// "master" of `dev` in `ns` as `ip -d link` shows it ("" = none).
std::string MasterOf(const std::string& ns, const std::string& dev) {
  return LinkDetails(ns, dev).value("master", "");
}

TEST_F(AttachTest, VrfTakesTheInterfaceAndItsRoutesAndTheDeviceComesBackWithout) {
  if (!KernelHas("vrf")) GTEST_SKIP() << kNoVrf;
  AttachRequest req =
      Request({"192.0.2.10/24", "2001:db8::10/64"},
              {MakeRoute("0.0.0.0/0", "192.0.2.1"), MakeRoute("2001:db8:1::/48", "2001:db8::1")});
  req.config.interface.vrf = Vrf("red", 100);
  auto res = attacher_->Attach(req, Persist());
  ASSERT_TRUE(res.ok()) << res.status();
  json vrf = LinkDetails(pod_name_, "red");
  EXPECT_EQ(vrf["linkinfo"].value("info_kind", ""), "vrf") << vrf.dump();
  EXPECT_EQ(vrf["linkinfo"]["info_data"].value("table", 0), 100) << vrf.dump();
  EXPECT_TRUE(IsUp(Link(pod_name_, "red")));
  EXPECT_EQ(MasterOf(pod_name_, "net-rdma0"), "red");
  // The addresses survived joining the VRF (it joined before they were added) and their
  // connected routes, like the configured ones, are in the VRF's table, none in main.
  json l = Link(pod_name_, "net-rdma0");
  EXPECT_THAT(Addrs(l, "inet"), UnorderedElementsAre("192.0.2.10/24"));
  EXPECT_THAT(Addrs(l, "inet6"), UnorderedElementsAre("2001:db8::10/64"));
  EXPECT_THAT(Routes(pod_name_, "-4", "net-rdma0", "100"),
              UnorderedElementsAre("default via 192.0.2.1"));
  EXPECT_THAT(Routes(pod_name_, "-6", "net-rdma0", "100"),
              UnorderedElementsAre("2001:db8:1::/48 via 2001:db8::1"));
  EXPECT_TRUE(Routes(pod_name_, "-4", "net-rdma0", "main").empty());
  EXPECT_TRUE(IpJson("-n " + pod_name_ + " -4 route show table main dev net-rdma0").empty());
  // What the pod sends in the VRF leaves through the interface's gateway; outside it, nothing
  // routes there (the pod's main table has no default route).
  json via = IpJson("-n " + pod_name_ + " route get vrf red 203.0.113.5");
  ASSERT_TRUE(via.is_array() && via.size() == 1) << via.dump();
  EXPECT_EQ(via[0].value("gateway", ""), "192.0.2.1");
  EXPECT_EQ(via[0].value("dev", ""), "net-rdma0");
  EXPECT_TRUE(IpJson("-n " + pod_name_ + " route get 203.0.113.5").is_null());

  ASSERT_TRUE(attacher_->Attach(req, Persist()).ok());  // a repeated hook changes nothing
  EXPECT_EQ(MasterOf(pod_name_, "net-rdma0"), "red");
  ASSERT_TRUE(attacher_->Detach(id_, snap_, pod_path_, "net-rdma0", kWhere).ok());
  ExpectHostRestored();
  EXPECT_EQ(MasterOf("", "h0"), "") << "the device came back in no VRF";
  // The VRF belongs to the pod's namespace, like rules: it stays (empty) until the pod goes.
  EXPECT_FALSE(Link(pod_name_, "red").is_null());
}

TEST_F(AttachTest, VrfThePodHasIsJoinedAndKeptWhenTheAttachFails) {
  if (!KernelHas("vrf")) GTEST_SKIP() << kNoVrf;
  SH("ip -n " + pod_name_ + " link add red type vrf table 100");  // down: knd brings it up
  AttachRequest req = Request({"192.0.2.10/24"}, {MakeRoute("198.51.100.0/24", "192.0.2.1")});
  req.config.interface.vrf = Vrf("red", 100);
  auto res = attacher_->Attach(req, Persist());
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ(MasterOf(pod_name_, "net-rdma0"), "red");
  EXPECT_TRUE(IsUp(Link(pod_name_, "red")));
  ASSERT_TRUE(attacher_->Detach(id_, snap_, pod_path_, "net-rdma0", kWhere).ok());
  ExpectHostRestored();

  // A failing attach leaves a VRF it did not make.
  req.config.routes = std::vector<config::Route>{MakeRoute("198.51.100.0/24", "203.0.113.1")};
  res = attacher_->Attach(req, Persist());
  ASSERT_FALSE(res.ok());
  EXPECT_FALSE(Link(pod_name_, "red").is_null());
  ExpectHostRestored();
}

TEST_F(AttachTest, TwoInterfacesOfAPodShareOneVrf) {
  if (!KernelHas("vrf")) GTEST_SKIP() << kNoVrf;
  SH("ip link add h1 type veth peer name h1p");
  SH("ip link set h1p up");
  AttachRequest a = Request({"192.0.2.10/24"}, {MakeRoute("198.51.100.0/24", "192.0.2.1")});
  a.config.interface.vrf = Vrf("red", 100);
  auto res = attacher_->Attach(a, Persist());
  ASSERT_TRUE(res.ok()) << res.status();
  const state::HostSnapshot snap_a = snap_;
  AttachRequest b = Request({"203.0.113.10/24"}, {}, "net-b");
  b.config.interface.hardware_addr = "02:00:00:00:00:02";
  b.config.interface.vrf = a.config.interface.vrf;
  json h1 = Link("", "h1");
  b.identity.ifindex = h1.value("ifindex", 0);
  b.identity.mac = h1.value("address", "");
  b.identity.ifname = "h1";
  res = attacher_->Attach(b, Persist());
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ(MasterOf(pod_name_, "net-rdma0"), "red");
  EXPECT_EQ(MasterOf(pod_name_, "net-b"), "red");
  EXPECT_EQ(IpJson("-n " + pod_name_ + " -d link show type vrf").size(), 1u) << "one VRF";
  // Both interfaces' networks are in the one table.
  json via = IpJson("-n " + pod_name_ + " route get vrf red 203.0.113.5");
  ASSERT_TRUE(via.is_array() && via.size() == 1) << via.dump();
  EXPECT_EQ(via[0].value("dev", ""), "net-b");
  ASSERT_TRUE(attacher_->Detach(id_, snap_a, pod_path_, "net-rdma0", kWhere).ok());
  ExpectHostRestored();
  EXPECT_EQ(MasterOf(pod_name_, "net-b"), "red") << "the other interface stays in its VRF";
  ASSERT_TRUE(attacher_->Detach(b.identity, snap_, pod_path_, "net-b", kWhere).ok());
  EXPECT_FALSE(Link("", "h1").is_null());
  EXPECT_EQ(MasterOf("", "h1"), "");
}

TEST_F(AttachTest, FailedAttachDeletesTheVrfItMade) {
  if (!KernelHas("vrf")) GTEST_SKIP() << kNoVrf;
  AttachRequest req = Request({"192.0.2.10/24"}, {MakeRoute("198.51.100.0/24", "203.0.113.1")});
  req.config.interface.vrf = Vrf("red", 100);
  auto res = attacher_->Attach(req, Persist());
  ASSERT_FALSE(res.ok());
  EXPECT_THAT(std::string(res.status().message()),
              HasSubstr("add route 198.51.100.0/24 via 203.0.113.1"));
  EXPECT_TRUE(Link(pod_name_, "red").is_null()) << "the VRF knd made is gone";
  ExpectHostRestored();
}

TEST_F(AttachTest, VrfNameOfAnotherLinkOrTableIsRefusedAndTheDeviceGoesBack) {
  if (!KernelHas("vrf")) GTEST_SKIP() << kNoVrf;
  SH("ip -n " + pod_name_ + " link add blue type vrf table 200");
  SH("ip -n " + pod_name_ + " link add green type veth peer name green-p");
  AttachRequest req = Request({"192.0.2.10/24"}, {});
  for (const auto& [vrf, want] : std::vector<std::pair<config::VrfConfig, std::string>>{
           {Vrf("blue", 100), "interface.vrf: the pod's VRF blue has table 200, not 100"},
           {Vrf("green", 100),
            "interface.vrf: green in the pod netns is a veth link, not a VRF"}}) {
    req.config.interface.vrf = vrf;
    // A veth has no PCI address or permanent MAC, and a round trip through a netns whose
    // ifindex it found taken gives it a new one: find it by the one it has now.
    req.identity.ifindex = Link("", "h0").value("ifindex", 0);
    auto res = attacher_->Attach(req, Persist());
    ASSERT_FALSE(res.ok()) << vrf.name;
    EXPECT_EQ(res.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(std::string(res.status().message()), HasSubstr(want));
    ExpectHostRestored();
    EXPECT_EQ(MasterOf(pod_name_, "green-p"), "");
  }
}

TEST_F(ChildAttachTest, ChildJoinsItsVrfAndAKernelWithoutVrfSaysSo) {
  AttachRequest req = ChildRequest("macvlan", "bridge", "02:aa:00:00:00:09", {"192.0.2.10/24"},
                                   {MakeRoute("198.51.100.0/24", "192.0.2.1")});
  req.config.interface.vrf = Vrf("red", 100);
  auto res = attacher_->AttachChild(req, PersistChild());
  if (!KernelHas("vrf")) {
    // This host's kernel: the attach fails with what is missing, and the child is gone.
    ASSERT_FALSE(res.ok());
    EXPECT_THAT(std::string(res.status().message()),
                HasSubstr("interface.vrf: create vrf red table 100: "));
    EXPECT_THAT(std::string(res.status().message()), HasSubstr("(does the kernel have VRF?)"));
    EXPECT_TRUE(Link(pod_name_, "net1").is_null());
    ExpectParentUnchanged();
    return;
  }
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ(MasterOf(pod_name_, "net1"), "red");
  EXPECT_THAT(Routes(pod_name_, "-4", "net1", "100"),
              UnorderedElementsAre("198.51.100.0/24 via 192.0.2.1"));
  ASSERT_TRUE(attacher_->DetachChild(pod_path_, "net1", *req.child, kWhere).ok());
  EXPECT_TRUE(Link(pod_name_, "net1").is_null());
  ExpectParentUnchanged();
}

// ---- sizes a kernel would ignore ---------------------------------------------------------

TEST(CheckKernelSizesTest, GroSizeOnAKernelWithoutOneIsRefusedNamingTheField) {
  config::InterfaceConfig ic;
  EXPECT_TRUE(CheckKernelSizes("eth1", 0, ic).ok()) << "no GRO size asked for";
  ic.gro_max_size = 185000;
  EXPECT_TRUE(CheckKernelSizes("eth1", 65536, ic).ok()) << "the kernel has GRO sizes";
  absl::Status st = CheckKernelSizes("eth1", 0, ic);  // what a 5.15 kernel reports
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(st.message(),
            "interface.groMaxSize: the kernel reports no GRO size for eth1 (GRO sizes need Linux "
            "5.19 or later) and would ignore 185000");
}

TEST_F(AttachTest, CheckDeviceAsksTheKernelForGroSizes) {
  config::NetworkConfig cfg;
  cfg.interface.gro_max_size = 185000;
  // This kernel (>= 5.19) reports h0's GRO size: nothing to refuse, nothing changed.
  EXPECT_TRUE(attacher_->CheckDevice(id_, cfg).ok());
  ExpectHostRestored();
}

}  // namespace
}  // namespace knd::attach
