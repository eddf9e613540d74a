// Privileged tests of the ethtool netlink client against a veth pair in a throwaway namespace,
// checked with Debian's ethtool (`ethtool -k`), a reader independent of the code under test.
#include "netlink/ethtool.h"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
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
  // "on" / "off" as `ethtool -k va` prints the feature (without " [fixed]").
  std::string Shown(const std::string& feature) {
    const std::string text = Out("ip netns exec " + ns_->name() + " ethtool -k va");
    const std::string key = feature + ": ";
    size_t at = text.find("\t" + key);
    if (at == std::string::npos) at = text.find("\n" + key);
    if (at == std::string::npos) return "absent";
    at += 1 + key.size();
    return text.substr(at, text.find_first_of(" \n", at) - at);
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
  absl::Status st = sock_->SetFeatures("va", {{"rx-gro-list", true}, {"tx-checksum-ipv4", true}});
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("\"tx-checksum-ipv4\" cannot be changed on va (fixed"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("rx-gro-list"));  // among the changeable
  EXPECT_EQ(Shown("rx-gro-list"), "off");
  st = sock_->SetFeatures("va", {{"tcp-segmentation-offload", false}});
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("\"tcp-segmentation-offload\" cannot be changed on va"));
  EXPECT_EQ(Shown("tx-tcp-segmentation"), "on");
}

TEST_F(EthtoolTest, NoSuchLinkIsNotFound) {
  auto f = sock_->Features("nope0");
  EXPECT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound) << f.status();
}

}  // namespace
}  // namespace knd::netlink
