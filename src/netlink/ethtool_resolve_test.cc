// ResolveFeatures: what a NetworkConfig's feature names turn into on one device, without a
// kernel (the device's feature sets are given).
#include <map>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "netlink/ethtool.h"

namespace knd::netlink {
namespace {

using ::testing::HasSubstr;
using Features = std::map<std::string, EthtoolSocket::Feature>;

// A device like veth: TSO and checksumming changeable, tx-checksum-ipv4 fixed off (in no set),
// rx-vlan-filter fixed on (nochange).
Features Veth() {
  Features f;
  for (const char* n : {"tx-tcp-segmentation", "tx-tcp6-segmentation", "tx-tcp-ecn-segmentation",
                        "tx-checksum-ip-generic", "rx-gro", "rx-checksum"}) {
    f[n] = {true, true, true};
  }
  f["rx-vlan-filter"] = {true, true, false};
  return f;
}

TEST(ResolveFeaturesTest, KernelNamesAsTheyAre) {
  auto r = ResolveFeatures({{"rx-gro", false}, {"tx-checksum-ip-generic", true}}, Veth(), "eth1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, (std::map<std::string, bool>{{"rx-gro", false}, {"tx-checksum-ip-generic", true}}));
}

TEST(ResolveFeaturesTest, AliasesExpandToChangeableMatches) {
  auto r = ResolveFeatures({{"tso", false}}, Veth(), "eth1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, (std::map<std::string, bool>{{"tx-tcp-ecn-segmentation", false},
                                             {"tx-tcp-segmentation", false},
                                             {"tx-tcp6-segmentation", false}}));
  r = ResolveFeatures({{"generic-receive-offload", true}, {"rx", false}}, Veth(), "eth1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, (std::map<std::string, bool>{{"rx-checksum", false}, {"rx-gro", true}}));
}

TEST(ResolveFeaturesTest, AKernelNameWinsOverItsAlias) {
  auto r = ResolveFeatures({{"tso", false}, {"tx-tcp6-segmentation", true}}, Veth(), "eth1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->at("tx-tcp6-segmentation"), true);
  EXPECT_EQ(r->at("tx-tcp-segmentation"), false);
}

TEST(ResolveFeaturesTest, FixedUnknownAndEmptyAliasesAreRefusedNamingTheDevice) {
  for (const char* name : {"rx-vlan-filter", "tx-checksum-ipv4", "no-such-feature"}) {
    auto r = ResolveFeatures({{name, true}}, Veth(), "eth1");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(std::string(r.status().message()),
                HasSubstr(std::string("\"") + name + "\" cannot be changed on eth1 (fixed"));
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("changeable: rx-checksum, rx-gro"));
  }
  auto r = ResolveFeatures({{"lro", false}}, Veth(), "eth1");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("ethtool's alias for rx-lro"));
}

TEST(ResolveFeaturesTest, AliasTableIsEthtools) {
  EXPECT_STREQ(FeatureAliasPattern("tso"), "tx-tcp*-segmentation");
  EXPECT_STREQ(FeatureAliasPattern("tcp-segmentation-offload"), "tx-tcp*-segmentation");
  EXPECT_STREQ(FeatureAliasPattern("sg"), "tx-scatter-gather*");
  EXPECT_STREQ(FeatureAliasPattern("rxvlan"), "rx-vlan-hw-parse");
  EXPECT_EQ(FeatureAliasPattern("rx-gro"), nullptr);
}

}  // namespace
}  // namespace knd::netlink
