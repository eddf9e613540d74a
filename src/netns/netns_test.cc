#include "netns/netns.h"

#include <gtest/gtest.h>
#include <net/if.h>

#include <filesystem>

namespace knd::netns {
namespace {

class NetnsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveNetAdmin()) GTEST_SKIP() << "needs root with CAP_SYS_ADMIN/CAP_NET_ADMIN";
  }
};

TEST_F(NetnsTest, ScopedNetnsIsAPodNetnsAndIsRemoved) {
  std::string path;
  {
    auto ns = ScopedNetns::Create();
    ASSERT_TRUE(ns.ok()) << ns.status();
    path = ns->path();
    EXPECT_TRUE(ValidatePodNetns(path).ok());
    // Work inside it sees only loopback.
    auto handle = Netns::Open(path);
    ASSERT_TRUE(handle.ok());
    unsigned lo_index = 0;
    ASSERT_TRUE(RunIn(*handle, [&] {
                  lo_index = if_nametoindex("lo");
                  return absl::OkStatus();
                }).ok());
    EXPECT_EQ(lo_index, 1u);
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST_F(NetnsTest, HostNetnsIsRefused) {
  auto st = ValidatePodNetns("/proc/self/ns/net");
  EXPECT_TRUE(absl::IsInvalidArgument(st)) << st;
  EXPECT_TRUE(absl::IsNotFound(ValidatePodNetns("/run/netns/does-not-exist")));
  EXPECT_TRUE(absl::IsInvalidArgument(ValidatePodNetns("")));
  EXPECT_TRUE(absl::IsInvalidArgument(ValidatePodNetns("/etc/hostname")));
}

}  // namespace
}  // namespace knd::netns
