// Tests for the netlink read side (formatting is common/net_addr_test.cc); the queries run
// against veth links in a throwaway namespace (privileged; skipped without CAP_NET_ADMIN).
#include "netlink/query.h"

#include <arpa/inet.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netlink/errno.h>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <string>

#include "gtest/gtest.h"
#include "netlink/ops.h"
#include "netns/netns.h"

namespace knd::netlink {
namespace {

TEST(NlStatusTest, MapsCodes) {
  EXPECT_TRUE(NlStatus(0, "x").ok());
  absl::Status st = NlStatus(-NLE_OBJ_NOTFOUND, "get link eth9");
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(st.ToString().find("get link eth9"), std::string::npos);
  EXPECT_EQ(NlStatus(-NLE_EXIST, "x").code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(NlStatus(-NLE_PERM, "x").code(), absl::StatusCode::kPermissionDenied);
  // An interrupted dump is worth dumping again (the inventory scan does).
  EXPECT_EQ(NlStatus(-NLE_DUMP_INTR, "x").code(), absl::StatusCode::kAborted);
}

TEST(QueryTest, EmptySocketIsAnError) {
  NlSock empty;
  EXPECT_FALSE(ListLinks(empty).ok());
}

int Sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()); }

class QueryNetnsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!netns::HaveNetAdmin()) GTEST_SKIP() << "needs CAP_NET_ADMIN";
    auto ns = netns::ScopedNetns::Create("knd-nlq");
    ASSERT_TRUE(ns.ok()) << ns.status();
    ns_.emplace(std::move(*ns));
    const std::string n = ns_->name();
    ASSERT_EQ(Sh("ip -n " + n + " link add va type veth peer name vb"), 0);
    ASSERT_EQ(Sh("ip -n " + n + " link set va mtu 1400 address 02:00:00:00:00:0a up"), 0);
    ASSERT_EQ(Sh("ip -n " + n + " link set vb up"), 0);
    ASSERT_EQ(Sh("ip -n " + n + " addr add 192.0.2.1/24 dev va"), 0);
    ASSERT_EQ(Sh("ip -n " + n + " addr add 2001:db8::1/64 dev va nodad"), 0);
    ASSERT_EQ(Sh("ip -n " + n + " route add default via 192.0.2.254 dev va"), 0);
    ASSERT_EQ(Sh("ip -n " + n + " route add 198.51.100.0/24 via 192.0.2.253 dev va table 100"), 0);
    auto h = netns::Netns::Open(ns_->path());
    ASSERT_TRUE(h.ok()) << h.status();
    auto s = OpenRouteSocketIn(*h);
    ASSERT_TRUE(s.ok()) << s.status();
    sock_ = std::move(*s);
  }
  std::optional<netns::ScopedNetns> ns_;
  NlSock sock_;
};

TEST_F(QueryNetnsTest, ListsLinksOfTheNamespace) {
  auto links = ListLinks(sock_);
  ASSERT_TRUE(links.ok()) << links.status();
  // lo, va, vb: and nothing of the host.
  ASSERT_EQ(links->size(), 3u);
  auto va =
      std::find_if(links->begin(), links->end(), [](const Link& l) { return l.name == "va"; });
  auto vb =
      std::find_if(links->begin(), links->end(), [](const Link& l) { return l.name == "vb"; });
  ASSERT_NE(va, links->end());
  ASSERT_NE(vb, links->end());
  EXPECT_EQ(va->kind, "veth");
  EXPECT_EQ(va->mac, "02:00:00:00:00:0a");
  EXPECT_EQ(va->mtu, 1400u);
  EXPECT_TRUE(va->flags & IFF_UP);
  EXPECT_EQ(va->operstate, "up");
  EXPECT_EQ(va->link_ifindex, vb->ifindex);  // veth peer in the same namespace
  EXPECT_EQ(va->master_ifindex, 0);
  EXPECT_EQ(va->perm_mac, "");  // veth has no permanent address
  EXPECT_EQ(links->front().name, "lo");
  EXPECT_TRUE(links->front().flags & IFF_LOOPBACK);
}

TEST_F(QueryNetnsTest, GetLinkByIndexAndName) {
  auto va = GetLinkByName(sock_, "va");
  ASSERT_TRUE(va.ok()) << va.status();
  auto again = GetLink(sock_, va->ifindex);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->name, "va");
  EXPECT_EQ(GetLinkByName(sock_, "nosuch0").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(GetLink(sock_, 999999).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(GetLinkByName(sock_, "this-name-is-too-long").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(QueryNetnsTest, EtherLinkIdIsTheLinksIndexAndMac) {
  auto va = GetLinkByName(sock_, "va");
  ASSERT_TRUE(va.ok()) << va.status();
  // The ioctls act in the socket's namespace, not the calling thread's (the host's here).
  auto id = GetEtherLinkId(sock_, "va");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->ifindex, va->ifindex);
  EXPECT_EQ(id->mac, "02:00:00:00:00:0a");
  EXPECT_EQ(GetEtherLinkId(sock_, "nosuch0").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(GetEtherLinkId(sock_, "lo").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(GetEtherLinkId(sock_, "this-name-is-too-long").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(QueryNetnsTest, SocketPoolLendsKeptSocketsAgain) {
  auto h = netns::Netns::Open(ns_->path());
  ASSERT_TRUE(h.ok()) << h.status();
  int opened = 0;
  SocketPool pool(
      [&]() -> absl::StatusOr<NlSock> {
        ++opened;
        return OpenRouteSocketIn(*h);
      },
      /*max_idle=*/1);
  int kept_fd = -1;
  {
    auto a = pool.Take();
    ASSERT_TRUE(a.ok()) << a.status();
    kept_fd = (*a)->fd();
    a->Keep();
  }
  EXPECT_EQ(pool.idle(), 1u);
  {
    auto again = pool.Take();  // the kept socket, still in the namespace and in step
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ((*again)->fd(), kept_fd);
    EXPECT_EQ(opened, 1);
    auto links = ListLinks(**again);
    ASSERT_TRUE(links.ok()) << links.status();
    EXPECT_EQ(links->size(), 3u);
    auto other = pool.Take();  // none idle: a new one
    ASSERT_TRUE(other.ok()) << other.status();
    EXPECT_EQ(opened, 2);
    again->Keep();
    other->Keep();  // beyond max_idle: closed
  }
  EXPECT_EQ(pool.idle(), 1u);
  {
    auto a = pool.Take();
    ASSERT_TRUE(a.ok());
    // Not kept (its user failed): closed, not lent again.
  }
  EXPECT_EQ(pool.idle(), 0u);
  auto b = pool.Take();
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(opened, 3);
}

TEST_F(QueryNetnsTest, InterfaceConfWithoutIpv6SkipsOptionalAndRefusesRequired) {
  // An MTU below 1280 takes IPv6 off a link: its /proc/sys/net/ipv6/conf directory goes.
  const std::string n = ns_->name();
  ASSERT_EQ(Sh("ip -n " + n + " link set vb mtu 1200"), 0);
  auto h = netns::Netns::Open(ns_->path());
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_TRUE(SetInterfaceConf(
                  *h, "vb", {{"ipv6", "accept_ra", "0", false}, {"ipv4", "arp_notify", "1", true}})
                  .ok());
  auto arp = netns::RunIn(*h, [] {
    auto v = ReadInterfaceConf("vb", "ipv4", "arp_notify");
    if (!v.ok()) return v.status();
    return *v == "1" ? absl::OkStatus() : absl::InternalError("arp_notify is " + *v);
  });
  EXPECT_TRUE(arp.ok()) << arp;
  absl::Status st = SetInterfaceConf(*h, "vb", {{"ipv6", "accept_ra", "0", true}});
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_NE(st.message().find("has no IPv6"), std::string::npos) << st;
  // With IPv6, a key the kernel lacks is that error, not "no IPv6".
  st = SetInterfaceConf(*h, "va", {{"ipv6", "no_such_key", "0", true}});
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound) << st;
  // And a key that exists is written.
  EXPECT_TRUE(SetInterfaceConf(*h, "va", {{"ipv6", "accept_ra", "0", true}}).ok());
}

TEST_F(QueryNetnsTest, ListsAddressesPerLink) {
  auto va = GetLinkByName(sock_, "va");
  ASSERT_TRUE(va.ok());
  auto addrs = ListAddresses(sock_, va->ifindex);
  ASSERT_TRUE(addrs.ok()) << addrs.status();
  std::vector<std::string> cidrs;
  for (const auto& a : *addrs) {
    EXPECT_EQ(a.ifindex, va->ifindex);
    if (a.scope == RT_SCOPE_UNIVERSE) cidrs.push_back(a.cidr);
  }
  EXPECT_EQ(cidrs, (std::vector<std::string>{"192.0.2.1/24", "2001:db8::1/64"}));
  auto all = ListAddresses(sock_);
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(std::any_of(all->begin(), all->end(),
                          [](const Address& a) { return a.cidr == "192.0.2.1/24"; }));
}

TEST_F(QueryNetnsTest, ListsRoutesOfAllTables) {
  auto va = GetLinkByName(sock_, "va");
  ASSERT_TRUE(va.ok());
  auto routes = ListRoutes(sock_, AF_INET, va->ifindex);
  ASSERT_TRUE(routes.ok()) << routes.status();
  bool saw_default = false, saw_table100 = false;
  for (const auto& r : *routes) {
    EXPECT_EQ(r.oif, va->ifindex);
    EXPECT_EQ(r.family, AF_INET);
    if (r.IsDefault() && r.table == RT_TABLE_MAIN) {
      saw_default = true;
      EXPECT_EQ(r.gateway, "192.0.2.254");
      EXPECT_EQ(r.dst, "0.0.0.0/0");
    }
    if (r.table == 100) {
      saw_table100 = true;
      EXPECT_EQ(r.dst, "198.51.100.0/24");
      EXPECT_EQ(r.gateway, "192.0.2.253");
    }
  }
  EXPECT_TRUE(saw_default);
  EXPECT_TRUE(saw_table100);
  auto v6 = ListRoutes(sock_, AF_INET6, va->ifindex);
  ASSERT_TRUE(v6.ok());
  EXPECT_TRUE(
      std::any_of(v6->begin(), v6->end(), [](const Route& r) { return r.dst == "2001:db8::/64"; }));
  EXPECT_FALSE(ListRoutes(sock_, 12345).ok());
}

// The write side's batch (ops.h): one send, every ack read, the first failure named, and the
// socket still in step for the next request.
TEST_F(QueryNetnsTest, BatchAppliesInOrderAndNamesTheFirstFailure) {
  auto vb = GetLinkByName(sock_, "vb");
  ASSERT_TRUE(vb.ok()) << vb.status();
  Batch ok;
  ASSERT_TRUE(ok.AddAddress(vb->ifindex, "203.0.113.2/24").ok());
  ASSERT_TRUE(ok.SetLinkUp(vb->ifindex, true).ok());
  RouteSpec r;
  r.destination = "198.51.100.0/24";
  r.gateway = "203.0.113.1";  // reachable only through the address added before it
  ASSERT_TRUE(ok.AddRoute(vb->ifindex, r).ok());
  ASSERT_TRUE(ok.AddAddress(vb->ifindex, "203.0.113.2/24").ok());  // exists: counts as added
  EXPECT_EQ(ok.size(), 4u);
  absl::Status st = ok.Send(sock_);
  ASSERT_TRUE(st.ok()) << st;
  auto routes = ListRoutes(sock_, AF_INET, vb->ifindex);
  ASSERT_TRUE(routes.ok());
  EXPECT_TRUE(std::any_of(routes->begin(), routes->end(), [](const auto& x) {
    return x.dst == "198.51.100.0/24" && x.gateway == "203.0.113.1";
  }));

  Batch bad;
  RouteSpec unreachable;
  unreachable.destination = "192.0.2.128/25";
  unreachable.gateway = "10.255.0.1";  // no address on that network: the kernel refuses it
  ASSERT_TRUE(bad.AddRoute(vb->ifindex, unreachable).ok());
  ASSERT_TRUE(bad.AddAddress(vb->ifindex, "203.0.113.3/24").ok());  // still applied after it
  st = bad.Send(sock_);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("192.0.2.128/25"), std::string::npos) << st;
  auto addrs = ListAddresses(sock_, vb->ifindex);
  ASSERT_TRUE(addrs.ok());
  EXPECT_TRUE(std::any_of(addrs->begin(), addrs->end(),
                          [](const auto& a) { return a.cidr == "203.0.113.3/24"; }));
  // Every ack was read: the next request on the socket is answered, not out of step.
  EXPECT_TRUE(GetLinkByName(sock_, "va").ok());
  EXPECT_TRUE(AddAddress(sock_, vb->ifindex, "203.0.113.4/24").ok());
}

}  // namespace
}  // namespace knd::netlink
