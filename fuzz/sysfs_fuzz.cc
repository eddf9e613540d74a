// sysfs as discovery reads it, on a fake tree whose file contents (and the driver link's
// target) come from the input: a PCI NIC, optionally an SR-IOV VF of it, an RDMA device with
// its verbs and MAD nodes, the RDMA netns mode. The tree's shape is fixed, as the kernel's is;
// what a driver writes into its files is not.
#include <cstdint>
#include <string>

#include "fuzz_util.h"
#include "inventory/device.h"
#include "inventory/discovery.h"
#include "inventory/rdma.h"
#include "sysfs/fake_tree.h"
#include "sysfs/reader.h"

namespace {

// A usable file or link name: what the kernel allows in these places.
std::string Name(std::string s, const char* fallback) {
  std::string out;
  for (char c : s) {
    if (isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == ':' || c == '.') {
      out += c;
    }
  }
  if (out.empty() || out == "." || out == ".." || out.size() > 15) return fallback;
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  knd::fuzz::Input in(data, size);
  const uint8_t shape = in.Byte();
  const std::string ifindex = in.Field(), speed = in.Field(), vendor = in.Field(),
                    device = in.Field(), numa = in.Field(), total_vfs = in.Field(),
                    num_vfs = in.Field(), driver_target = in.Field(), netns_mode = in.Field(),
                    ibdev = in.Field();
  const std::string ifname = Name(in.Field(), "eth1");
  const std::string rdma = Name(in.Field(), "mlx5_0");

  knd::sysfs::FakeTree tree;
  const std::string pf = tree.AddPciFunction("pci0000:00", "0000:03:00.0", vendor, device,
                                             "mlx5_core", 0, "0000:00:01.0");
  tree.Write(pf + "/numa_node", numa);
  tree.Write(pf + "/sriov_totalvfs", total_vfs);
  tree.Write(pf + "/sriov_numvfs", num_vfs);
  if (!driver_target.empty()) tree.Link(pf + "/driver", driver_target);
  std::string dev_dir = pf;
  if (shape & 1) {  // the netdev is a VF of the PF
    dev_dir = tree.AddPciFunction("pci0000:00", "0000:03:00.2", vendor, device, "mlx5_core", 0,
                                  "0000:00:01.0");
    tree.Link(dev_dir + "/physfn", "../0000:03:00.0");
    tree.Link(pf + "/virtfn0", "../0000:03:00.2");
    tree.AddNetdev("pf0", pf, 3);
  }
  tree.AddNetdev(ifname, (shape & 2) ? "" : dev_dir, 7);
  tree.Write("class/net/" + ifname + "/ifindex", (shape & 4) ? ifindex : "7");
  tree.Write("class/net/" + ifname + "/speed", speed);
  if (shape & 8) {
    tree.AddRdma(rdma, dev_dir);
    tree.Write("class/infiniband_verbs/uverbs0/ibdev", (shape & 16) ? ibdev : rdma);
    tree.Write("class/infiniband_mad/umad0/ibdev", ibdev);
    tree.Write("module/ib_core/parameters/netns_mode", netns_mode);
    if (shape & 32) tree.MakeDir("class/misc/rdma_cm");
  }

  knd::sysfs::Reader reader(tree.root());
  knd::inventory::Device d;
  d.ifname = ifname;
  d.ifindex = 7;
  if (knd::inventory::FillFromSysfs(reader, d)) (void)knd::inventory::FactsOf(d);
  if (!d.rdma_device.empty() || (shape & 8)) {
    (void)knd::inventory::ReadRdmaFacts(reader, d.rdma_device.empty() ? rdma : d.rdma_device);
  }
  (void)reader.Resolve("class/net/" + ifname + "/device/driver");
  return 0;
}
