#include "inventory/rdma.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace knd::inventory {

namespace {

// Names of the class/<cls> entries whose `ibdev` file names the device.
std::vector<std::string> NodesOf(const sysfs::Reader& r, const std::string& cls,
                                 const std::string& rdma_device) {
  std::vector<std::string> out;
  absl::StatusOr<std::vector<std::string>> names = r.ListDir("class/" + cls);
  if (!names.ok()) return out;
  for (const std::string& n : *names) {
    absl::StatusOr<std::string> ibdev = r.ReadString(absl::StrCat("class/", cls, "/", n, "/ibdev"));
    if (ibdev.ok() && *ibdev == rdma_device) out.push_back("/dev/infiniband/" + n);
  }
  return out;
}

}  // namespace

absl::StatusOr<RdmaFacts> ReadRdmaFacts(const sysfs::Reader& reader,
                                        const std::string& rdma_device) {
  RdmaFacts f;
  // A bool module parameter: Y = shared, N = exclusive; `rdma system set netns` changes it.
  absl::StatusOr<std::string> mode = reader.ReadString("module/ib_core/parameters/netns_mode");
  if (mode.ok()) f.shared_netns = *mode != "N" && *mode != "0";
  f.char_devices = NodesOf(reader, "infiniband_verbs", rdma_device);
  if (f.char_devices.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "RDMA device \"", rdma_device,
        "\" has no verbs device (/dev/infiniband/uverbsN): load ib_uverbs on the node"));
  }
  for (const std::string& mad : NodesOf(reader, "infiniband_mad", rdma_device)) {
    f.char_devices.push_back(mad);
  }
  if (reader.Exists("class/misc/rdma_cm")) f.char_devices.push_back("/dev/infiniband/rdma_cm");
  std::sort(f.char_devices.begin(), f.char_devices.end());
  return f;
}

}  // namespace knd::inventory
