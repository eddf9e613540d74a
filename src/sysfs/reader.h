// Reads sysfs through a root directory ("/sys" in production) so that tests can build a fake
// tree in a temp dir: PCI NICs, SR-IOV PFs/VFs, RDMA devices, NUMA nodes. Paths passed in
// are relative to the root ("class/net/eth0/mtu").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace knd::sysfs {

class Reader {
 public:
  explicit Reader(std::string root = "/sys");

  const std::string& root() const { return root_; }
  // root + "/" + rel.
  std::string Path(const std::string& rel) const;

  // File content without the trailing newline/whitespace. NotFound when missing.
  absl::StatusOr<std::string> ReadString(const std::string& rel) const;
  // Decimal (or 0x-prefixed hex) integer file. InvalidArgument when not a number; reading
  // can also fail with the kernel's errno (e.g. speed of a down link gives EINVAL).
  absl::StatusOr<int64_t> ReadInt(const std::string& rel) const;
  // Target of a symlink as stored (often relative: "../../../0000:03:00.0").
  absl::StatusOr<std::string> ReadLink(const std::string& rel) const;
  // The symlink resolved to a path relative to the root ("devices/pci0000:00/0000:00:01.0/
  // 0000:03:00.0"), following every link on the way; FailedPrecondition when it leaves the
  // root.
  absl::StatusOr<std::string> Resolve(const std::string& rel) const;
  // Sorted entry names (no "." / ".."). NotFound when the directory is missing.
  absl::StatusOr<std::vector<std::string>> ListDir(const std::string& rel) const;
  bool Exists(const std::string& rel) const;

 private:
  std::string root_;
};

// Last path element ("../../bus/pci/drivers/mlx5_core" -> "mlx5_core").
std::string Basename(const std::string& path);

}  // namespace knd::sysfs
