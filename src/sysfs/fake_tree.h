// Test helper: a fake sysfs tree in a temp dir (removed on destruction), with shortcuts for
// the shapes the inventory reads: a PCI function under /sys/devices, a netdev under
// /sys/class/net linked to it, SR-IOV PF/VF links, an RDMA device. Only for tests.
#pragma once

#include <string>

namespace knd::sysfs {

class FakeTree {
 public:
  FakeTree();
  ~FakeTree();
  FakeTree(const FakeTree&) = delete;
  FakeTree& operator=(const FakeTree&) = delete;

  const std::string& root() const { return root_; }

  // Writes root/rel (creating parents) with `content` + "\n".
  void Write(const std::string& rel, const std::string& content);
  // Creates root/rel as a symlink to `target` (as given; may be relative).
  void Link(const std::string& rel, const std::string& target);
  void MakeDir(const std::string& rel);

  // devices/<pcie_root>/<bdf> with vendor, device, numa_node and a driver link; returns its
  // path relative to the root. `bridge` (optional) adds an intermediate bridge BDF.
  std::string AddPciFunction(const std::string& pcie_root, const std::string& bdf,
                             const std::string& vendor, const std::string& device,
                             const std::string& driver, int numa_node,
                             const std::string& bridge = "");
  // class/net/<ifname> -> <device_dir>/net/<ifname> with ifindex, mtu, speed (if >= 0);
  // device_dir "" makes a virtual netdev under devices/virtual/net.
  void AddNetdev(const std::string& ifname, const std::string& device_dir, int ifindex,
                 int speed = -1);
  // class/infiniband/<rdma> -> <device_dir>/infiniband/<rdma>, device link back.
  void AddRdma(const std::string& rdma, const std::string& device_dir);

 private:
  std::string root_;
};

}  // namespace knd::sysfs
