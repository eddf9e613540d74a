"""The hardware lab (issue 15): RDMA on a real kernel, with soft-RoCE (rdma_rxe) on igb VFs.
What knd says and does about it: the RDMA subsystem's netns mode as `kndctl doctor` reads it from
real sysfs, and why a soft-RoCE device is not published as its netdev's RDMA device (the kernel
removes it when the netdev leaves the namespace it was made in, so a pod could never use it).
RDMA NICs whose RDMA device is a PCI function (mlx5 and the like) are covered on fake sysfs trees
with the layout this kernel shows (src/inventory/rdma_test.cc, src/dra/preparer_test.cc)."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import lab  # noqa: E402
from lab import attr, device_name, set_vfs, sriov_pfs  # noqa: E402
from harness import Node, binary, sh, wait_for  # noqa: E402

D = "knd.k8s.cni.cncf.io/"
NODE_CONFIG = 'include:\n  - driver: "igb*"\n'


def set_netns_mode(mode):
    """`rdma system set netns MODE`. The kernel refuses the change (EBUSY) while namespaces
    other than init's exist; those that earlier tests deleted go away asynchronously."""
    want = "Y" if mode == "shared" else "N"

    def done():
        sh("rdma", "system", "set", "netns", mode, check=False)
        return lab.read("/sys/module/ib_core/parameters/netns_mode").strip() == want
    wait_for(done, timeout=30, what=f"RDMA netns mode {mode}")


def doctor_rdma_line():
    out = sh(binary("kndctl"), "doctor", "--no-link-probe", "--netns-guard", "", check=False)
    return next((ln for ln in out.splitlines() if "rdma-netns-mode" in ln), "")


class RdmaTest(unittest.TestCase):

    def setUp(self):
        self.pf = sriov_pfs()[0]
        self.addCleanup(set_vfs, self.pf, 0)
        self.vfs = set_vfs(self.pf, 1)
        self.vf_pci, self.vf = self.vfs[0]
        sh("ip", "link", "set", self.vf, "up")
        sh("rdma", "link", "add", "rxe0", "type", "rxe", "netdev", self.vf)
        self.addCleanup(sh, "rdma", "link", "delete", "rxe0", check=False)
        wait_for(lambda: os.path.exists("/sys/class/infiniband/rxe0"), what="rxe0")

    def test_doctor_reads_the_real_netns_mode(self):
        self.assertIn("[ok] rdma-netns-mode: shared", doctor_rdma_line())
        self.addCleanup(set_netns_mode, "shared")
        set_netns_mode("exclusive")
        line = doctor_rdma_line()
        self.assertIn("[warn] rdma-netns-mode: exclusive", line)
        self.assertIn("refuses claims of RDMA devices", line)

    def test_soft_roce_is_not_published_as_the_vfs_rdma_device(self):
        # What the kernel does, which the rule rests on: rxe is a virtual device (no PCI
        # parent), and moving its netdev to another namespace unregisters it.
        self.assertTrue(os.path.realpath("/sys/class/infiniband/rxe0").startswith(
            "/sys/devices/virtual/"))
        n = Node(host_netns=True).__enter__()
        self.addCleanup(n.__exit__, None, None, None)
        n.start_driver(config=NODE_CONFIG)
        name = device_name(self.vf_pci)
        devs = wait_for(lambda: (lambda d: d if name in d else None)(n.published_devices()),
                        what="the VF published")
        self.assertIs(attr(devs[name], D + "rdma"), False)
        self.assertIsNone(attr(devs[name], D + "rdmaDevice"))
        sh("ip", "netns", "add", "rdma-probe")
        self.addCleanup(sh, "ip", "netns", "delete", "rdma-probe", check=False)
        sh("ip", "link", "set", self.vf, "netns", "rdma-probe")
        wait_for(lambda: not os.path.exists("/sys/class/infiniband/rxe0"), timeout=10,
                 what="rxe0 removed with its netdev's move")
        sh("ip", "-n", "rdma-probe", "link", "set", self.vf, "netns", "1")


if __name__ == "__main__":
    lab.main()
