// Binding an SR-IOV VF to vfio-pci for a userspace (DPDK) driver in a pod, and back to its
// kernel driver, through the PCI bus's sysfs files (the kernel's sysfs-bus-pci ABI:
// driver/unbind, driver_override, drivers_probe, iommu_group).
//
// A VF bound to vfio-pci has no netdev; the pod gets its IOMMU group's character device
// (/dev/vfio/<group>) and the VFIO container device (/dev/vfio/vfio). Only a real IOMMU is
// accepted: without one (no iommu_group), vfio's unsafe no-IOMMU mode would let the pod's DMA
// reach any of the node's memory, so binding is refused.
#pragma once

#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "attach/attacher.h"
#include "state/plan.h"
#include "sysfs/reader.h"

namespace knd::attach {

inline constexpr char kVfioPciDriver[] = "vfio-pci";
inline constexpr char kVfioContainerNode[] = "/dev/vfio/vfio";

struct VfioGroup {
  std::string group;                      // "12"
  std::vector<std::string> device_nodes;  // kVfioContainerNode, "/dev/vfio/12"
};

class PciBinder {
 public:
  // `sysfs_root` is the sysfs mount ("/sys"; a directory tree in tests). `release_wait` bounds
  // how long Unbind waits for the kernel to let go of a VF that is still open.
  explicit PciBinder(std::string sysfs_root = "/sys",
                     std::chrono::milliseconds release_wait = std::chrono::seconds(5),
                     std::chrono::milliseconds netdev_wait = std::chrono::seconds(10));

  // The driver the PCI function `bdf` is bound to, "" when none. NotFound when there is no such
  // PCI function.
  absl::StatusOr<std::string> Driver(const std::string& bdf) const;

  // What binding `bdf` to vfio-pci needs, checked without changing anything: the vfio-pci
  // driver is loaded, the function is in an IOMMU group, and every other function of that group
  // is bound to vfio-pci or to no driver (else the group is not viable and the pod could not
  // use it). FailedPrecondition naming what is missing.
  absl::StatusOr<VfioGroup> CheckVfio(const std::string& bdf) const;

  // Binds `bdf` to vfio-pci: CheckVfio, unbind from its driver, driver_override = vfio-pci, a
  // probe, and a check that vfio-pci took it. Already bound to vfio-pci: only the checks.
  absl::StatusOr<VfioGroup> BindVfio(const std::string& bdf);

  // Gives `bdf` back to `kernel_driver`: unbind from vfio-pci, clear driver_override, a probe,
  // and a wait until its netdev is there (`netdev_wait`). Already on `kernel_driver` with no
  // override: success, nothing changed. While a process still holds the VF open the kernel
  // holds the unbind until it lets go: after `release_wait` this returns Unavailable (the
  // unbind goes on in the background and a later call finishes the work).
  absl::Status Unbind(const std::string& bdf, const std::string& kernel_driver);

 private:
  absl::Status Write(const std::string& rel, const std::string& value) const;
  absl::Status WaitForNetdev(const std::string& bdf) const;

  sysfs::Reader sysfs_;
  std::chrono::milliseconds release_wait_;
  std::chrono::milliseconds netdev_wait_;
  // VFs whose unbind from vfio-pci the kernel still holds (shared with the writer threads).
  struct Pending;
  std::shared_ptr<Pending> pending_;
};

// Prepare's step for a VF of a claim with sriov.driver vfio-pci (`d.vfio` set): the attacher's
// TakeVf (host snapshot to `persist`, then the PF's `sriov` settings), then BindVfio. Returns
// `d.vfio` with the group and its device nodes. A VF on vfio-pci already (a Prepare a crash
// stopped after the bind, whose snapshot is in `d.host`) is only checked. A failed bind puts
// the VF back to its kernel driver and its host settings.
absl::StatusOr<state::VfioPlan> TakeForVfio(
    Attacher& attacher, PciBinder& binder, const state::DevicePlan& d,
    const config::SriovConfig& sriov,
    const std::function<absl::Status(const state::HostSnapshot&)>& persist);

// Unprepare's step: the VF back to `d.vfio->kernel_driver` (Unbind), then `d.host` restored. A
// VF that no longer exists is success: there is nothing to give back.
absl::Status GiveBackFromVfio(Attacher& attacher, PciBinder& binder, const state::DevicePlan& d);

}  // namespace knd::attach
