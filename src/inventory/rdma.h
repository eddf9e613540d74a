// What a pod needs to use an RDMA device, read from sysfs: its character devices and the RDMA
// subsystem's network-namespace mode. knd hands the character devices to the pod's containers
// as CDI deviceNodes; it does not move RDMA devices between namespaces (docs/sriov-rdma.md).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sysfs/reader.h"

namespace knd::inventory {

struct RdmaFacts {
  // ib_core's netns_mode: shared (every namespace sees every RDMA device) or exclusive (an
  // RDMA device lives in one namespace, init's unless moved).
  bool shared_netns = true;
  // Host paths, sorted: /dev/infiniband/uverbsN (verbs), umadN and issmN (MAD, when ib_umad
  // is loaded) of this device, and /dev/infiniband/rdma_cm (connection manager, when rdma_ucm
  // is loaded).
  std::vector<std::string> char_devices;
};

// Facts for RDMA device `rdma_device` (e.g. "mlx5_0", "rxe0"). FailedPrecondition, naming the
// device and the module to load, when it has no verbs device (ib_uverbs not loaded): a pod
// could not use it.
absl::StatusOr<RdmaFacts> ReadRdmaFacts(const sysfs::Reader& reader,
                                        const std::string& rdma_device);

}  // namespace knd::inventory
