"""What the hardware lab's guest offers the `vm` tests: its SR-IOV PFs (emulated igb), VFs made
and unmade through sysfs, and the test/e2e harness. Outside the lab, main() exits 77, which ctest
shows as a skip, naming what is missing."""

import fcntl
import glob
import os
import struct
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "e2e"))
import harness  # noqa: E402,F401
from harness import wait_for  # noqa: E402

SKIP = 77  # ctest SKIP_RETURN_CODE


def in_lab():
    return os.environ.get("KND_VM") == "1" and os.geteuid() == 0


def sriov_pfs():
    """PF netdev names of the machine's SR-IOV NICs, by PCI address."""
    out = []
    for dev in sorted(glob.glob("/sys/bus/pci/devices/*")):
        try:
            total = int(read(os.path.join(dev, "sriov_totalvfs")))
        except (OSError, ValueError):
            continue
        nets = glob.glob(os.path.join(dev, "net", "*"))
        if total > 0 and nets:
            out.append(os.path.basename(nets[0]))
    return out


def read(path):
    with open(path) as f:
        return f.read()


def pci_of(ifname):
    """The PCI address of a netdev in this netns, or None."""
    try:
        return os.path.basename(os.path.realpath(f"/sys/class/net/{ifname}/device"))
    except OSError:
        return None


def vfs_of(pf_pci):
    """[(vf PCI address, netdev name or None)] of a PF, in VF order."""
    out = []
    dev = f"/sys/bus/pci/devices/{pf_pci}"
    n = len(glob.glob(os.path.join(dev, "virtfn*")))
    for i in range(n):
        vf = os.path.basename(os.path.realpath(os.path.join(dev, f"virtfn{i}")))
        nets = glob.glob(f"/sys/bus/pci/devices/{vf}/net/*")
        out.append((vf, os.path.basename(nets[0]) if nets else None))
    return out


def set_vfs(pf, n, timeout=60):
    """Sets the PF's VF count (through 0, as the kernel requires) and waits until each VF has a
    netdev. Returns vfs_of(pf)."""
    pci = pci_of(pf)
    path = f"/sys/bus/pci/devices/{pci}/sriov_numvfs"
    if int(read(path)) != n:
        with open(path, "w") as f:
            f.write("0")
        if n:
            with open(path, "w") as f:
                f.write(str(n))
    wait_for(lambda: len(vfs_of(pci)) == n and all(name for _, name in vfs_of(pci)),
             timeout=timeout, what=f"{n} VFs of {pf} with netdevs")
    return vfs_of(pci)


def pci_driver(pci):
    """The driver a PCI function is bound to, or None."""
    try:
        return os.path.basename(os.readlink(f"/sys/bus/pci/devices/{pci}/driver"))
    except OSError:
        return None


# VFIO ioctls (linux/vfio.h: _IO(VFIO_TYPE ';', VFIO_BASE 100 + n)).
VFIO_SET_IOMMU = 0x3B66
VFIO_GROUP_GET_STATUS = 0x3B67
VFIO_GROUP_SET_CONTAINER = 0x3B68
VFIO_GROUP_GET_DEVICE_FD = 0x3B6A
VFIO_TYPE1_IOMMU = 1
VFIO_GROUP_FLAGS_VIABLE = 1


class VfioUser:
    """What a userspace driver (DPDK) does with a VF's VFIO group: opens the container and the
    group, checks that the group is viable, attaches it to a type-1 IOMMU container and takes
    the VF's device fd. Holding that fd open keeps the VF in use."""

    def __init__(self, group, pci):
        self.fds = []
        self.container = self._open("/dev/vfio/vfio")
        self.group = self._open(f"/dev/vfio/{group}")
        status = fcntl.ioctl(self.group, VFIO_GROUP_GET_STATUS, struct.pack("II", 8, 0))
        self.viable = bool(struct.unpack("II", status)[1] & VFIO_GROUP_FLAGS_VIABLE)
        fcntl.ioctl(self.group, VFIO_GROUP_SET_CONTAINER, struct.pack("i", self.container))
        fcntl.ioctl(self.container, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU)
        self.device = fcntl.ioctl(self.group, VFIO_GROUP_GET_DEVICE_FD,
                                  bytearray(pci.encode() + b"\0"), True)
        self.fds.append(self.device)

    def _open(self, path):
        fd = os.open(path, os.O_RDWR)
        self.fds.append(fd)
        return fd

    def close(self):
        while self.fds:
            os.close(self.fds.pop())


def device_name(pci):
    """knd's DRA device name of a PCI netdev: 0000:01:10.0 -> pci-0000-01-10-0."""
    dom, bus, rest = pci.split(":")
    dev, fn = rest.split(".")
    return f"pci-{dom}-{bus}-{dev}-{fn}"


def link_details(ifname, ns=None):
    """`ip -d -j link show dev IFNAME` (in netns `ns`): the link's object, or {}."""
    got = harness.ip_json("-d", "link", "show", "dev", ifname, ns=ns)
    return got[0] if got else {}


def attr(dev, key):
    """The value of a ResourceSlice device attribute ({"string": ..} etc.), or None."""
    v = dev.get("attributes", {}).get(key)
    return None if v is None else next(iter(v.values()))


def main(need_sriov=True):
    if not in_lab():
        print("SKIP: needs the hardware lab (SR-IOV, RDMA, vlan/ipvlan/bond kernels): "
              "run test/vm/lab.sh, or ctest -L hw")
        sys.exit(SKIP)
    if need_sriov and not sriov_pfs():
        print("FAIL: in the lab but no SR-IOV PF found")
        sys.exit(1)
    prog = unittest.main(verbosity=2, exit=False)
    sys.exit(0 if prog.result.wasSuccessful() else 1)

