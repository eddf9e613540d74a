#include "attach/vfio.h"

#include <fcntl.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace knd::attach {

struct PciBinder::Pending {
  std::mutex mu;
  std::condition_variable done;
  std::set<std::string> unbinding;  // BDFs whose unbind write has not returned yet
};

namespace {

std::string Dev(const std::string& bdf) { return "bus/pci/devices/" + bdf; }

}  // namespace

PciBinder::PciBinder(std::string sysfs_root, std::chrono::milliseconds release_wait,
                     std::chrono::milliseconds netdev_wait)
    : sysfs_(std::move(sysfs_root)),
      release_wait_(release_wait),
      netdev_wait_(netdev_wait),
      pending_(std::make_shared<Pending>()) {}

absl::Status PciBinder::Write(const std::string& rel, const std::string& value) const {
  const std::string path = sysfs_.Path(rel);
  int fd = ::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(absl::StrCat("open ", path));
  ssize_t n = ::write(fd, value.data(), value.size());
  int err = errno;
  ::close(fd);
  if (n < 0) return ErrnoToStatus(err, absl::StrCat("write \"", value, "\" to ", path));
  return absl::OkStatus();
}

absl::StatusOr<std::string> PciBinder::Driver(const std::string& bdf) const {
  if (!sysfs_.Exists(Dev(bdf))) {
    return absl::NotFoundError(
        absl::StrCat("PCI function ", bdf, " is not in ", sysfs_.Path("bus/pci/devices")));
  }
  absl::StatusOr<std::string> link = sysfs_.ReadLink(Dev(bdf) + "/driver");
  if (absl::IsNotFound(link.status())) return std::string();
  if (!link.ok()) return link.status();
  return sysfs::Basename(*link);
}

absl::StatusOr<VfioGroup> PciBinder::CheckVfio(const std::string& bdf) const {
  RETURN_IF_ERROR(Driver(bdf).status());
  if (!sysfs_.Exists(absl::StrCat("bus/pci/drivers/", kVfioPciDriver))) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the ", kVfioPciDriver, " driver is not loaded on this node (modprobe vfio-pci), so VF ",
        bdf, " cannot be given to a userspace driver"));
  }
  absl::StatusOr<std::string> group = sysfs_.ReadLink(Dev(bdf) + "/iommu_group");
  if (!group.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "VF ", bdf,
        " is in no IOMMU group: the node's IOMMU is off (boot with intel_iommu=on or "
        "amd_iommu=on). knd does not use vfio's unsafe no-IOMMU mode, in which the pod's DMA "
        "could reach any of the node's memory"));
  }
  VfioGroup out;
  out.group = sysfs::Basename(*group);
  const std::string members = absl::StrCat("kernel/iommu_groups/", out.group, "/devices");
  absl::StatusOr<std::vector<std::string>> others = sysfs_.ListDir(members);
  if (!others.ok()) return Annotate(others.status(), "list IOMMU group " + out.group);
  for (const std::string& other : *others) {
    if (other == bdf) continue;
    absl::StatusOr<std::string> d = Driver(other);
    if (!d.ok()) continue;  // gone meanwhile
    if (!d->empty() && *d != kVfioPciDriver) {
      return absl::FailedPreconditionError(absl::StrCat(
          "VF ", bdf, "'s IOMMU group ", out.group, " also holds ", other, " (driver ", *d,
          "): the pod could not use the group while a kernel driver has a member of it (the "
          "PCIe path lacks ACS isolation); only VFs in a group of their own can be handed out"));
    }
  }
  out.device_nodes = {kVfioContainerNode, "/dev/vfio/" + out.group};
  return out;
}

absl::StatusOr<VfioGroup> PciBinder::BindVfio(const std::string& bdf) {
  ASSIGN_OR_RETURN(VfioGroup group, CheckVfio(bdf));
  ASSIGN_OR_RETURN(std::string driver, Driver(bdf));
  if (driver == kVfioPciDriver) return group;
  if (!driver.empty()) {
    RETURN_IF_ERROR(Annotate(Write(Dev(bdf) + "/driver/unbind", bdf),
                             absl::StrCat("unbind VF ", bdf, " from ", driver)));
  }
  // driver_override makes vfio-pci the only driver the probe may pick for this function.
  RETURN_IF_ERROR(Write(Dev(bdf) + "/driver_override", kVfioPciDriver));
  absl::Status probe = Write("bus/pci/drivers_probe", bdf);
  ASSIGN_OR_RETURN(std::string now, Driver(bdf));
  if (now != kVfioPciDriver) {
    return absl::InternalError(absl::StrCat(
        "VF ", bdf, " is not bound to ", kVfioPciDriver, " after the probe (driver: ",
        now.empty() ? "none" : now, probe.ok() ? "" : absl::StrCat("; ", probe.message()), ")"));
  }
  return group;
}

absl::Status PciBinder::WaitForNetdev(const std::string& bdf) const {
  const auto deadline = std::chrono::steady_clock::now() + netdev_wait_;
  for (;;) {
    absl::StatusOr<std::vector<std::string>> net = sysfs_.ListDir(Dev(bdf) + "/net");
    if (net.ok() && !net->empty()) return absl::OkStatus();
    if (std::chrono::steady_clock::now() >= deadline) {
      return absl::UnavailableError(
          absl::StrCat("VF ", bdf, " has no netdev ", netdev_wait_.count(),
                       " ms after it was given back to its kernel driver"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

absl::Status PciBinder::Unbind(const std::string& bdf, const std::string& kernel_driver) {
  const std::string where = absl::StrCat("give VF ", bdf, " back to ", kernel_driver);
  std::shared_ptr<Pending> pending = pending_;
  // Waits (up to release_wait_) for an unbind of `bdf` still held by the kernel to return.
  auto released = [&] {
    std::unique_lock<std::mutex> lock(pending->mu);
    if (pending->done.wait_for(lock, release_wait_,
                               [&] { return pending->unbinding.count(bdf) == 0; })) {
      return absl::OkStatus();
    }
    return absl::UnavailableError(
        absl::StrCat(where,
                     ": the VF is still open (by a process that has /dev/vfio of its group); the "
                     "kernel gives it back when it is closed"));
  };
  RETURN_IF_ERROR(released());
  ASSIGN_OR_RETURN(std::string driver, Driver(bdf));
  if (driver == kVfioPciDriver) {
    // vfio-pci's remove waits until every user of the device has closed it: the write runs on
    // a thread of its own so that a VF still open cannot hang the caller.
    {
      std::lock_guard<std::mutex> lock(pending->mu);
      pending->unbinding.insert(bdf);
    }
    auto status = std::make_shared<absl::Status>();
    std::thread([pending, status, path = sysfs_.Path(Dev(bdf) + "/driver/unbind"), bdf] {
      absl::Status st;
      int fd = ::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
      if (fd < 0 || ::write(fd, bdf.data(), bdf.size()) < 0) {
        st = ErrnoStatus(absl::StrCat("write \"", bdf, "\" to ", path));
      }
      if (fd >= 0) ::close(fd);
      std::lock_guard<std::mutex> lock(pending->mu);
      *status = st;
      pending->unbinding.erase(bdf);
      pending->done.notify_all();
    }).detach();
    RETURN_IF_ERROR(released());
    absl::Status written;
    {
      std::lock_guard<std::mutex> lock(pending->mu);
      written = *status;
    }
    RETURN_IF_ERROR(Annotate(written, where));
  } else if (!driver.empty() && driver != kernel_driver) {
    return absl::FailedPreconditionError(absl::StrCat(
        where, ": the VF is bound to ", driver, ", which knd did not bind it to; left alone"));
  }
  absl::StatusOr<std::string> override_now = sysfs_.ReadString(Dev(bdf) + "/driver_override");
  if (override_now.ok() && !override_now->empty() && *override_now != "(null)") {
    RETURN_IF_ERROR(Annotate(Write(Dev(bdf) + "/driver_override", "\n"), where));
  }
  ASSIGN_OR_RETURN(driver, Driver(bdf));
  if (driver.empty()) {
    absl::Status probe = Write("bus/pci/drivers_probe", bdf);
    ASSIGN_OR_RETURN(driver, Driver(bdf));
    if (driver.empty()) {
      // The probe may leave a function to a driver that is not loaded any more: bind directly.
      absl::Status bind = Write(absl::StrCat("bus/pci/drivers/", kernel_driver, "/bind"), bdf);
      ASSIGN_OR_RETURN(driver, Driver(bdf));
      if (driver.empty()) {
        return absl::InternalError(absl::StrCat(where, ": no driver took the VF after a probe (",
                                                probe.ToString(), ") and a bind (", bind.ToString(),
                                                ")"));
      }
    }
  }
  if (driver != kernel_driver) {
    return absl::InternalError(
        absl::StrCat(where, ": the kernel bound the VF to ", driver, " instead"));
  }
  return Annotate(WaitForNetdev(bdf), where);
}

absl::StatusOr<state::VfioPlan> TakeForVfio(
    Attacher& attacher, PciBinder& binder, const state::DevicePlan& d,
    const config::SriovConfig& sriov,
    const std::function<absl::Status(const state::HostSnapshot&)>& persist) {
  if (!d.vfio) return absl::InvalidArgumentError("the device's plan has no vfio part");
  const std::string& pci = d.identity.pci_address;
  ASSIGN_OR_RETURN(std::string driver, binder.Driver(pci));
  std::optional<state::HostSnapshot> host = d.host;
  if (driver != kVfioPciDriver) {
    ASSIGN_OR_RETURN(host, attacher.TakeVf(d.identity, sriov, persist));
  }
  absl::StatusOr<VfioGroup> group = binder.BindVfio(pci);
  if (!group.ok()) {
    absl::Status back = binder.Unbind(pci, d.vfio->kernel_driver);
    if (back.ok() && host) back = attacher.Restore(d.identity, *host);
    if (!back.ok()) {
      return absl::Status(
          group.status().code(),
          absl::StrCat(group.status().message(), "; giving the VF back: ", back.message()));
    }
    return group.status();
  }
  state::VfioPlan out = *d.vfio;
  out.group = group->group;
  out.device_nodes = group->device_nodes;
  return out;
}

absl::Status GiveBackFromVfio(Attacher& attacher, PciBinder& binder, const state::DevicePlan& d) {
  if (!d.vfio) return absl::OkStatus();
  // A VF that is gone (its PF's VFs were removed, the PF was unplugged) has nothing to go back
  // to: the claim must still be able to end.
  if (absl::IsNotFound(binder.Driver(d.identity.pci_address).status())) return absl::OkStatus();
  RETURN_IF_ERROR(binder.Unbind(d.identity.pci_address, d.vfio->kernel_driver));
  if (!d.host) return absl::OkStatus();
  return Annotate(attacher.Restore(d.identity, *d.host), "restore the VF's host settings");
}

}  // namespace knd::attach
