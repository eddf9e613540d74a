"""What the hardware lab's guest offers the `vm` tests: its SR-IOV PFs (emulated igb), VFs made
and unmade through sysfs, and the test/e2e harness. Outside the lab, main() exits 77, which ctest
shows as a skip, naming what is missing."""

import fcntl
import glob
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
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


def dpdk_dir():
    """Debian's DPDK 22.11, unpacked by scripts/fixtures.sh (fixture dpdk-22.11) into the build
    tree's fixture cache, which the guest sees as the host does."""
    cache = os.environ.get("KND_FIXTURE_DIR") or os.path.join(os.environ["KND_BINARY_DIR"],
                                                              "fixtures")
    d = os.path.join(cache, "dpdk-22.11")
    if not os.access(os.path.join(d, "usr/bin/dpdk-testpmd"), os.X_OK):
        raise AssertionError(f"no dpdk-testpmd under {d}: run scripts/fixtures.sh dpdk-22.11")
    return d


class Testpmd:
    """Debian's dpdk-testpmd on one PCI function through vfio-pci, as a DPDK pod runs it with
    the claim's CDI edits: the /dev/vfio nodes and the PCI address. EAL without hugepages and
    without shared config files, IOVA as VA (the IOMMU maps the process's memory), only the igb
    VF's PMD and the ring mempool loaded. Interactive: commands on stdin, output to a file."""

    def __init__(self, pci, log_path):
        d = dpdk_dir()
        lib = os.path.join(d, "usr/lib/x86_64-linux-gnu")
        # EAL loads a driver (-d) only from a path with no world-writable directory in it, and
        # a CI clone's fixture cache is under /tmp: the two drivers go to a private directory
        # under the guest's own /run.
        self.pmds = tempfile.mkdtemp(prefix="knd-testpmd-", dir="/run")
        for so in ("librte_mempool_ring.so.23", "librte_net_e1000.so.23"):
            shutil.copy(os.path.join(lib, "dpdk/pmds-23.0", so), self.pmds)
        self.log_path = log_path
        self.log = open(log_path, "w+")
        # stdbuf: testpmd's stdio would hold its answers in a block buffer (stdout is a file).
        self.p = subprocess.Popen(
            ["stdbuf", "-oL", os.path.join(d, "usr/bin/dpdk-testpmd"), "-l", "0-1", "-n", "1",
             "--no-shconf", "--file-prefix", "knd-testpmd", "--no-huge", "-m", "128",
             "--iova-mode=va", "-a", pci,
             "-d", os.path.join(self.pmds, "librte_mempool_ring.so.23"),
             "-d", os.path.join(self.pmds, "librte_net_e1000.so.23"),
             "--", "-i", "--total-num-mbufs=2048"],
            stdin=subprocess.PIPE, stdout=self.log, stderr=subprocess.STDOUT, text=True,
            env=dict(os.environ, LD_LIBRARY_PATH=lib))

    def output(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def send(self, *commands):
        for c in commands:
            self.p.stdin.write(c + "\n")
        self.p.stdin.flush()

    def wait_for_output(self, pattern, timeout=120):
        """The first match of `pattern` in the output (testpmd still running), else fails."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.output())
            if m:
                return m
            if self.p.poll() is not None:
                raise AssertionError(f"dpdk-testpmd exited {self.p.returncode}:\n"
                                     f"{self.output()}")
            time.sleep(0.2)
        raise AssertionError(f"no {pattern!r} from dpdk-testpmd in {timeout} s:\n"
                             f"{self.output()}")

    def quit(self, timeout=60):
        """Ends testpmd (its ports closed, the VF let go); returns its exit code."""
        if self.p.poll() is None:
            try:
                self.send("quit")
            except BrokenPipeError:
                pass
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()
        shutil.rmtree(self.pmds, ignore_errors=True)
        return self.p.returncode


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

