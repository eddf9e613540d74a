// Privileged tests of the ethtool netlink client against a veth pair in a throwaway namespace,
// checked with Debian's ethtool (`ethtool -k`), a reader independent of the code under test.
#include "netlink/ethtool.h"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "netlink/ethtool_k_testing.h"
#include "netns/netns.h"

namespace knd::netlink {
namespace {

using ::testing::HasSubstr;

int Sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()); }

std::string Out(const std::string& cmd) {
  std::string out;
  std::unique_ptr<FILE, int (*)(FILE*)> p(::popen(cmd.c_str(), "r"), ::pclose);
  if (!p) return out;
  std::array<char, 4096> buf;
  while (size_t n = std::fread(buf.data(), 1, buf.size(), p.get())) out.append(buf.data(), n);
  return out;
}

class EthtoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!netns::HaveNetAdmin()) GTEST_SKIP() << "needs CAP_NET_ADMIN";
    if (Sh("ethtool --version") != 0) GTEST_SKIP() << "needs ethtool";
    auto ns = netns::ScopedNetns::Create("knd-eth");
    ASSERT_TRUE(ns.ok()) << ns.status();
    ns_.emplace(std::move(*ns));
    ASSERT_EQ(Sh("ip -n " + ns_->name() + " link add va type veth peer name vb"), 0);
    auto h = netns::Netns::Open(ns_->path());
    ASSERT_TRUE(h.ok()) << h.status();
    auto s = EthtoolSocket::OpenIn(*h);
    if (absl::IsNotFound(s.status())) GTEST_SKIP() << s.status();
    ASSERT_TRUE(s.ok()) << s.status();
    sock_.emplace(std::move(*s));
  }
  // "on" / "off" as `ethtool -k va` prints the feature.
  std::string Shown(const std::string& feature) {
    return FeatureAsShown(Out("ip netns exec " + ns_->name() + " ethtool -k va"), feature);
  }
  std::optional<netns::ScopedNetns> ns_;
  std::optional<EthtoolSocket> sock_;
};

TEST_F(EthtoolTest, ReadsFeaturesAsEthtoolShowsThem) {
  auto f = sock_->Features("va");
  ASSERT_TRUE(f.ok()) << f.status();
  for (const char* name : {"tx-tcp-segmentation", "rx-gro-list", "tx-nocache-copy",
                           "tx-checksum-ip-generic", "tx-checksum-sctp"}) {
    ASSERT_TRUE(f->count(name)) << name;
    EXPECT_EQ(f->at(name).active ? "on" : "off", Shown(name)) << name;
    EXPECT_TRUE(f->at(name).changeable) << name;
  }
  // "off [fixed]" on veth: in none of the kernel's sets.
  ASSERT_EQ(Shown("tx-checksum-ipv4"), "off");
  EXPECT_FALSE(f->count("tx-checksum-ipv4") && f->at("tx-checksum-ipv4").changeable);
}

TEST_F(EthtoolTest, SetsFeaturesInOneRequest) {
  ASSERT_EQ(Shown("rx-gro-list"), "off");
  ASSERT_EQ(Shown("tx-tcp-segmentation"), "on");
  ASSERT_TRUE(
      sock_->SetFeatures("va", {{"rx-gro-list", true}, {"tx-tcp-segmentation", false}}).ok());
  EXPECT_EQ(Shown("rx-gro-list"), "on");
  EXPECT_EQ(Shown("tx-tcp-segmentation"), "off");
  auto f = sock_->Features("va");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE(f->at("rx-gro-list").wanted);
  EXPECT_FALSE(f->at("tx-tcp-segmentation").wanted);
  // And back.
  ASSERT_TRUE(
      sock_->SetFeatures("va", {{"rx-gro-list", false}, {"tx-tcp-segmentation", true}}).ok());
  EXPECT_EQ(Shown("rx-gro-list"), "off");
  EXPECT_EQ(Shown("tx-tcp-segmentation"), "on");
}

TEST_F(EthtoolTest, RefusesFixedAndUnknownFeaturesWithoutChangingAnything) {
  absl::Status st =
      sock_->SetFeatures("va", {{"rx-gro-list", true}, {"tx-checksum-ipv4", true}}).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("\"tx-checksum-ipv4\" cannot be changed on va (fixed"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("rx-gro-list"));  // among the changeable
  EXPECT_EQ(Shown("rx-gro-list"), "off");
  st = sock_->SetFeatures("va", {{"tcp-segmentation", false}}).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr("\"tcp-segmentation\" cannot be changed on va"));
  EXPECT_EQ(Shown("tx-tcp-segmentation"), "on");
  // An alias whose features are all fixed on veth.
  st = sock_->SetFeatures("va", {{"ntuple", true}}).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_THAT(
      std::string(st.message()),
      HasSubstr("\"ntuple\" cannot be changed on va (ethtool's alias for rx-ntuple-filter"));
}

TEST_F(EthtoolTest, AliasesSetEveryChangeableFeatureTheyStandFor) {
  ASSERT_EQ(Shown("tx-tcp6-segmentation"), "on");
  // As `ethtool -K va tso off`; a kernel name given with it keeps its own value.
  auto set = sock_->SetFeatures("va", {{"tso", false}, {"tx-tcp6-segmentation", true}});
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->at("tx-tcp-segmentation"), false);
  EXPECT_EQ(set->at("tx-tcp6-segmentation"), true);
  EXPECT_EQ(Shown("tx-tcp-segmentation"), "off");
  EXPECT_EQ(Shown("tx-tcp-ecn-segmentation"), "off");
  EXPECT_EQ(Shown("tx-tcp-mangleid-segmentation"), "off");
  EXPECT_EQ(Shown("tx-tcp6-segmentation"), "on");
  EXPECT_EQ(Shown("tx-checksum-ip-generic"), "on");  // not covered by the alias
  // Long names as `ethtool -k` prints them.
  set = sock_->SetFeatures("va", {{"tcp-segmentation-offload", true}});
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(Shown("tx-tcp-segmentation"), "on");
  EXPECT_EQ(Shown("tx-tcp-ecn-segmentation"), "on");
}

TEST_F(EthtoolTest, RestoreWantedPutsBackWhatADependencyTookWithoutFailing) {
  // Checksumming off takes TSO with it (active), while TSO stays wanted.
  ASSERT_TRUE(sock_->SetFeatures("va", {{"tx-checksum-ip-generic", false}}).ok());
  ASSERT_EQ(Shown("tx-tcp-segmentation"), "off");
  auto f = sock_->Features("va");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE(f->at("tx-tcp-segmentation").wanted);
  // What a restore brings back: the wanted states, unknown and fixed names skipped.
  absl::Status st = sock_->RestoreWanted(
      "va", {{"tx-checksum-ip-generic", true}, {"tx-checksum-ipv4", true}, {"no-such", true}});
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(Shown("tx-checksum-ip-generic"), "on");
  EXPECT_EQ(Shown("tx-tcp-segmentation"), "on");
  EXPECT_EQ(Shown("tx-checksum-ipv4"), "off");
}

TEST_F(EthtoolTest, ChannelsAsEthtoolShowsThemAndSetInOneRequest) {
  auto c = sock_->GetCounts(QueueKind::kChannels, "va");
  ASSERT_TRUE(c.ok()) << c.status();
  // veth: rx and tx queues up to the CPUs, no other or combined ones.
  const uint32_t rx_max = c->max["rx"];
  const std::string shown = Out("ip netns exec " + ns_->name() + " ethtool -l va");
  EXPECT_THAT(shown, HasSubstr("RX:\t\t" + std::to_string(rx_max) + "\n"));
  EXPECT_EQ(c->now["rx"], 1u);
  EXPECT_EQ(c->now["tx"], 1u);
  EXPECT_EQ(c->max["combined"], 0u);
  // Above the maximum, or a kind the device has none of: refused before anything is sent.
  absl::Status st = sock_->SetCounts(QueueKind::kChannels, "va", {{"rx", rx_max + 1}});
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr(absl::StrCat("rx ", rx_max + 1, " is above the ",
                                                                rx_max, " rx channels of va")));
  st = sock_->SetCounts(QueueKind::kChannels, "va", {{"combined", 2}});
  EXPECT_THAT(std::string(st.message()), HasSubstr("combined 2: va has no combined channels"));
  // veth has no rings at all.
  auto rings = sock_->GetCounts(QueueKind::kRings, "va");
  EXPECT_EQ(rings.status().code(), absl::StatusCode::kUnimplemented) << rings.status();
  EXPECT_THAT(std::string(rings.status().message()),
              HasSubstr("va has no ring entries to set (its driver does not offer ethtool -G)"));
  if (rx_max < 2) GTEST_SKIP() << "one CPU: veth has a single queue";
  ASSERT_TRUE(sock_->SetCounts(QueueKind::kChannels, "va", {{"rx", 2}, {"tx", 2}}).ok());
  c = sock_->GetCounts(QueueKind::kChannels, "va");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->now["rx"], 2u);
  EXPECT_EQ(c->now["tx"], 2u);
}

TEST_F(EthtoolTest, NoSuchLinkIsNotFound) {
  auto f = sock_->Features("nope0");
  EXPECT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound) << f.status();
}

}  // namespace
}  // namespace knd::netlink
