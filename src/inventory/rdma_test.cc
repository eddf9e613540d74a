#include "inventory/rdma.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "sysfs/fake_tree.h"

namespace knd::inventory {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// The layout the kernel gives (6.12, rxe and mlx5 alike): class/infiniband_verbs/uverbsN/ibdev,
// class/infiniband_mad/{umad,issm}N/ibdev, class/misc/rdma_cm.
void AddNodes(sysfs::FakeTree& t, const std::string& cls, const std::string& node,
              const std::string& ibdev) {
  t.Write("class/" + cls + "/" + node + "/ibdev", ibdev);
}

TEST(RdmaFacts, CharDevicesOfTheDeviceOnly) {
  sysfs::FakeTree t;
  AddNodes(t, "infiniband_verbs", "uverbs0", "mlx5_0");
  AddNodes(t, "infiniband_verbs", "uverbs1", "mlx5_1");
  AddNodes(t, "infiniband_mad", "umad1", "mlx5_1");
  AddNodes(t, "infiniband_mad", "issm1", "mlx5_1");
  AddNodes(t, "infiniband_mad", "umad0", "mlx5_0");
  t.MakeDir("class/misc/rdma_cm");
  t.Write("module/ib_core/parameters/netns_mode", "Y");
  absl::StatusOr<RdmaFacts> f = ReadRdmaFacts(sysfs::Reader(t.root()), "mlx5_1");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE(f->shared_netns);
  EXPECT_THAT(f->char_devices, ElementsAre("/dev/infiniband/issm1", "/dev/infiniband/rdma_cm",
                                           "/dev/infiniband/umad1", "/dev/infiniband/uverbs1"));
}

TEST(RdmaFacts, ExclusiveModeAndNoConnectionManager) {
  sysfs::FakeTree t;
  AddNodes(t, "infiniband_verbs", "uverbs0", "rxe0");
  t.Write("module/ib_core/parameters/netns_mode", "N");
  absl::StatusOr<RdmaFacts> f = ReadRdmaFacts(sysfs::Reader(t.root()), "rxe0");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_FALSE(f->shared_netns);
  EXPECT_THAT(f->char_devices, ElementsAre("/dev/infiniband/uverbs0"));
}

TEST(RdmaFacts, NoVerbsDeviceSaysWhatToLoad) {
  sysfs::FakeTree t;
  AddNodes(t, "infiniband_verbs", "uverbs0", "mlx5_0");
  absl::StatusOr<RdmaFacts> f = ReadRdmaFacts(sysfs::Reader(t.root()), "rxe0");
  ASSERT_FALSE(f.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(f.status()));
  EXPECT_THAT(f.status().message(), HasSubstr("\"rxe0\""));
  EXPECT_THAT(f.status().message(), HasSubstr("load ib_uverbs"));
}

}  // namespace
}  // namespace knd::inventory
