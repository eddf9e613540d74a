// PciBinder on fake sysfs trees: what it checks before it touches a VF, which files it writes,
// and what it leaves alone. Binding for real (the kernel acting on those writes) is tested in
// the hardware lab (test/vm/test_sriov.py).
#include "attach/vfio.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>

#include "attach/null_attacher.h"
#include "common/file_util.h"
#include "sysfs/fake_tree.h"

namespace knd::attach {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kVf[] = "0000:01:10.0";
constexpr char kPf[] = "0000:01:00.0";

class VfioTest : public ::testing::Test {
 protected:
  VfioTest() {
    for (const char* d : {"igb", "igbvf", "vfio-pci"}) {
      tree_.Write(std::string("bus/pci/drivers/") + d + "/unbind", "");
      tree_.Write(std::string("bus/pci/drivers/") + d + "/bind", "");
    }
    tree_.Write("bus/pci/drivers_probe", "");
    AddFunction(kPf, "igb", "3");
    AddFunction(kVf, "igbvf", "12");
    tree_.Write(Dev(kVf) + "/net/eth2/ifindex", "5");
  }

  static std::string Dev(const std::string& bdf) { return "bus/pci/devices/" + bdf; }

  void AddFunction(const std::string& bdf, const std::string& driver, const std::string& group) {
    tree_.Write(Dev(bdf) + "/driver_override", "(null)");
    if (!driver.empty()) tree_.Link(Dev(bdf) + "/driver", "../../drivers/" + driver);
    if (!group.empty()) {
      tree_.Link(Dev(bdf) + "/iommu_group", "../../../../kernel/iommu_groups/" + group);
      tree_.Link("kernel/iommu_groups/" + group + "/devices/" + bdf, "../../../../" + Dev(bdf));
    }
  }

  std::string Read(const std::string& rel) { return ReadFile(tree_.root() + "/" + rel).value(); }

  sysfs::FakeTree tree_;
  PciBinder binder_{tree_.root(), std::chrono::milliseconds(200), std::chrono::milliseconds(50)};
};

TEST_F(VfioTest, DriverIsTheBoundDriverOrNone) {
  EXPECT_EQ(binder_.Driver(kVf).value(), "igbvf");
  AddFunction("0000:01:10.2", "", "13");
  EXPECT_EQ(binder_.Driver("0000:01:10.2").value(), "");
  EXPECT_TRUE(absl::IsNotFound(binder_.Driver("0000:09:00.0").status()));
}

TEST_F(VfioTest, ChecksGiveTheGroupAndItsDeviceNodes) {
  absl::StatusOr<VfioGroup> g = binder_.CheckVfio(kVf);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->group, "12");
  EXPECT_THAT(g->device_nodes, ElementsAre("/dev/vfio/vfio", "/dev/vfio/12"));
  EXPECT_EQ(Read(Dev(kVf) + "/driver_override"), "(null)\n") << "a check changes nothing";
}

TEST_F(VfioTest, RefusesWithoutTheVfioPciDriver) {
  sysfs::FakeTree bare;
  bare.Write("bus/pci/devices/" + std::string(kVf) + "/driver_override", "(null)");
  PciBinder binder(bare.root());
  absl::Status st = binder.BindVfio(kVf).status();
  EXPECT_TRUE(absl::IsFailedPrecondition(st)) << st;
  EXPECT_THAT(st.message(), HasSubstr("modprobe vfio-pci"));
}

TEST_F(VfioTest, RefusesAVfInNoIommuGroup) {
  AddFunction("0000:01:10.4", "igbvf", "");
  absl::Status st = binder_.BindVfio("0000:01:10.4").status();
  EXPECT_TRUE(absl::IsFailedPrecondition(st)) << st;
  EXPECT_THAT(st.message(), HasSubstr("IOMMU is off"));
  EXPECT_THAT(st.message(), HasSubstr("no-IOMMU mode"));
  EXPECT_EQ(binder_.Driver("0000:01:10.4").value(), "igbvf");
  EXPECT_EQ(Read("bus/pci/drivers/igbvf/unbind"), "\n") << "nothing was unbound";
}

TEST_F(VfioTest, RefusesAGroupSharedWithAKernelDriver) {
  // The PF in the VF's group (no ACS on the path): the group is not viable for vfio.
  tree_.Link("kernel/iommu_groups/12/devices/" + std::string(kPf), "../../../../" + Dev(kPf));
  absl::Status st = binder_.BindVfio(kVf).status();
  EXPECT_TRUE(absl::IsFailedPrecondition(st)) << st;
  EXPECT_THAT(st.message(), HasSubstr("also holds 0000:01:00.0 (driver igb)"));
  EXPECT_EQ(Read("bus/pci/drivers/igbvf/unbind"), "\n") << "nothing was unbound";
}

TEST_F(VfioTest, AGroupMemberOnVfioPciOrNoDriverIsFine) {
  AddFunction("0000:01:10.2", "", "");
  AddFunction("0000:01:10.6", "vfio-pci", "");
  tree_.Link("kernel/iommu_groups/12/devices/0000:01:10.2", "../../../../" + Dev("0000:01:10.2"));
  tree_.Link("kernel/iommu_groups/12/devices/0000:01:10.6", "../../../../" + Dev("0000:01:10.6"));
  EXPECT_TRUE(binder_.CheckVfio(kVf).ok());
}

TEST_F(VfioTest, BindWritesUnbindOverrideAndProbeThenChecksTheResult) {
  // A fake tree does not act on the writes: the VF stays on igbvf, which the bind must notice.
  absl::Status st = binder_.BindVfio(kVf).status();
  EXPECT_TRUE(absl::IsInternal(st)) << st;
  EXPECT_THAT(st.message(), HasSubstr("not bound to vfio-pci after the probe (driver: igbvf"));
  EXPECT_EQ(Read("bus/pci/drivers/igbvf/unbind"), kVf);
  EXPECT_EQ(Read(Dev(kVf) + "/driver_override"), "vfio-pci");
  EXPECT_EQ(Read("bus/pci/drivers_probe"), kVf);
}

TEST_F(VfioTest, BindOfABoundVfOnlyChecks) {
  AddFunction("0000:01:10.6", "vfio-pci", "14");
  absl::StatusOr<VfioGroup> g = binder_.BindVfio("0000:01:10.6");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->group, "14");
  EXPECT_EQ(Read("bus/pci/drivers/vfio-pci/unbind"), "\n");
  EXPECT_EQ(Read("bus/pci/drivers_probe"), "\n");
}

TEST_F(VfioTest, UnbindOfAVfOnItsKernelDriverChangesNothing) {
  EXPECT_TRUE(binder_.Unbind(kVf, "igbvf").ok());
  EXPECT_EQ(Read("bus/pci/drivers/igbvf/unbind"), "\n");
  EXPECT_EQ(Read(Dev(kVf) + "/driver_override"), "(null)\n");
}

TEST_F(VfioTest, UnbindLeavesAVfOnAnotherDriverAlone) {
  AddFunction("0000:01:10.2", "igb", "13");
  absl::Status st = binder_.Unbind("0000:01:10.2", "igbvf");
  EXPECT_TRUE(absl::IsFailedPrecondition(st)) << st;
  EXPECT_THAT(st.message(), HasSubstr("bound to igb, which knd did not bind it to"));
  EXPECT_EQ(Read("bus/pci/drivers/igb/unbind"), "\n");
}

TEST_F(VfioTest, UnbindFromVfioPciWritesTheUnbindAndClearsTheOverride) {
  AddFunction("0000:01:10.6", "vfio-pci", "14");
  tree_.Write(Dev("0000:01:10.6") + "/driver_override", "vfio-pci");
  // A fake tree does not act on the writes: the VF stays on vfio-pci, which Unbind reports.
  absl::Status st = binder_.Unbind("0000:01:10.6", "igbvf");
  EXPECT_TRUE(absl::IsInternal(st)) << st;
  EXPECT_THAT(st.message(), HasSubstr("bound the VF to vfio-pci instead"));
  EXPECT_EQ(Read("bus/pci/drivers/vfio-pci/unbind"), "0000:01:10.6");
  EXPECT_EQ(Read(Dev("0000:01:10.6") + "/driver_override"), "\n");
}

// Unprepare of a claim whose VF is gone (the PF's VFs were removed meanwhile) succeeds: the
// claim can end. One that is still there but not given back fails, for the kubelet's retry.
TEST_F(VfioTest, GivingBackAVfThatIsGoneSucceeds) {
  NullAttacher attacher;
  state::DevicePlan d;
  d.identity.pci_address = "0000:01:11.0";
  d.vfio = state::VfioPlan{"igbvf", "20", {"/dev/vfio/vfio", "/dev/vfio/20"}};
  EXPECT_TRUE(GiveBackFromVfio(attacher, binder_, d).ok());
  AddFunction("0000:01:11.0", "igb", "20");
  absl::Status st = GiveBackFromVfio(attacher, binder_, d);
  EXPECT_TRUE(absl::IsFailedPrecondition(st)) << st;
}

}  // namespace
}  // namespace knd::attach
