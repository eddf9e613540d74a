"""The hardware lab (issue 15): SR-IOV on a real kernel and real sysfs, with QEMU's emulated
82576 (igb PF, igbvf VFs). Inventory of PFs and VFs, VFs made and removed while knd runs, a VF
attached to a pod and given back, a VF whose pod netns died first (the kernel returns it under
its in-pod name) and given back with the host's offloads (interface.ethtool on igbvf), a VF bound
to vfio-pci for a userspace driver and given back, and Multus's host-device taking the VF by PCI
address."""

import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import lab  # noqa: E402
from lab import attr, device_name, link_details, pci_of, set_vfs, sriov_pfs  # noqa: E402
from harness import (DRIVER, Node, addresses, assert_comes_back, binary, ip_json, knd_config,
                     link, settled_host_state, sh, wait_for)  # noqa: E402

D = "knd.k8s.cni.cncf.io/"
# The VFs carry the resourceName that Multus's NADs (k8s.v1.cni.cncf.io/resourceName) ask for.
NODE_CONFIG = ('include:\n  - driver: "igb*"\n'
               'resourceNames:\n  - selector: {isSriovVf: true}\n'
               '    resourceName: example.com/sriov_a\n')
NS = "team-a"
CONFIG = knd_config(interface={"name": "net-a", "mtu": 1400,
                               "addresses": ["192.0.2.10/24", "2001:db8::10/64"]},
                    routes=[{"destination": "198.51.100.0/24", "gateway": "192.0.2.1"}])


def parentdev(ifname, ns=None):
    """The PCI address the kernel gives as a link's parent device (ip -d)."""
    return link_details(ifname, ns=ns).get("parentdev")


def rings(ifname, ns=None):
    """The current RX and TX ring sizes as `ethtool -g` prints them."""
    text = sh("ethtool", "-g", ifname, ns=ns)
    now = text[text.index("Current hardware settings:"):]
    got = {}
    for line in now.splitlines()[1:]:
        key, _, value = line.partition(":")
        if key in ("RX", "TX"):
            got[key] = int(value.split()[0])
    return got


def private_flags(ifname, ns=None):
    """`ethtool --show-priv-flags`: each flag's "on" or "off"."""
    out = {}
    for line in sh("ethtool", "--show-priv-flags", ifname, ns=ns).splitlines()[1:]:
        name, _, value = line.partition(":")
        if value.strip():
            out[name.strip()] = value.strip()
    return out


def offloads(ifname, ns=None):
    """What `ethtool -k` prints for each feature: "on" or "off" (without "[fixed]")."""
    out = {}
    for line in sh("ethtool", "-k", ifname, ns=ns).splitlines()[1:]:
        name, _, value = line.strip().partition(": ")
        if value:
            out[name] = value.split()[0]
    return out


class SriovTest(unittest.TestCase):

    def setUp(self):
        self.pf = sriov_pfs()[0]
        self.pf_pci = pci_of(self.pf)
        self.addCleanup(set_vfs, self.pf, 0)
        self.node = None

    def start(self, vfs, extra=()):
        self.vfs = set_vfs(self.pf, vfs)
        self.node = Node(host_netns=True).__enter__()
        self.addCleanup(self.node.__exit__, None, None, None)
        self.node.start_driver(config=NODE_CONFIG, extra=extra)

    def published(self, want):
        return wait_for(lambda: (lambda d: d if want(d) else None)(self.node.published_devices()),
                        timeout=30, what="the published devices")

    def test_pf_and_vfs_from_real_sysfs_and_vfs_made_and_removed_while_running(self):
        self.start(2)
        pf_name = device_name(self.pf_pci)
        names = [device_name(v) for v, _ in self.vfs]
        devs = self.published(lambda d: pf_name in d and all(n in d for n in names))
        pf = devs[pf_name]
        self.assertEqual(attr(pf, D + "driver"), "igb")
        self.assertIs(attr(pf, D + "sriov"), True)
        self.assertEqual(attr(pf, D + "sriovVfs"), 2)
        self.assertIs(attr(pf, D + "virtual"), False)
        self.assertEqual(attr(pf, D + "pciAddress"), self.pf_pci)
        self.assertEqual(attr(pf, "k8s.cni.cncf.io/deviceID"), self.pf_pci)
        self.assertEqual(attr(pf, "resource.kubernetes.io/pciBusID"), self.pf_pci)
        root = attr(pf, "resource.kubernetes.io/pcieRoot")
        self.assertRegex(root, r"^pci[0-9a-f]{4}:[0-9a-f]{2}$")
        for (vf_pci, vf_if), name in zip(self.vfs, names):
            vf = devs[name]
            self.assertEqual(attr(vf, D + "driver"), "igbvf")
            self.assertIs(attr(vf, D + "isSriovVf"), True)
            self.assertEqual(attr(vf, D + "pfName"), self.pf)
            self.assertEqual(attr(vf, D + "ifName"), vf_if)
            self.assertEqual(attr(vf, "k8s.cni.cncf.io/deviceID"), vf_pci)
            self.assertEqual(attr(vf, "k8s.cni.cncf.io/resourceName"), "example.com/sriov_a")
            self.assertEqual(attr(vf, "resource.kubernetes.io/pcieRoot"), root,
                             "a VF is under its PF's root complex")
        # VFs removed while knd runs are withdrawn; VFs made are published (the link monitor).
        set_vfs(self.pf, 0)
        devs = self.published(lambda d: not any(n in d for n in names)
                              and attr(d.get(pf_name, {}), D + "sriovVfs") == 0)
        vfs = set_vfs(self.pf, 3)
        names = [device_name(v) for v, _ in vfs]
        devs = self.published(lambda d: all(n in d for n in names)
                              and attr(d.get(pf_name, {}), D + "sriovVfs") == 3)
        self.assertEqual(len([d for d in devs.values() if attr(d, D + "isSriovVf")]), 3)

    def start_pod(self, name, config):
        vf_pci, vf_if = self.vfs[0]
        pod, claim = self.node.make_pod_with_claim(NS, name, f"claim-{name}",
                                                   device_name(vf_pci), config)
        res = self.node.prepare(NS, name)["claims"][claim["metadata"]["uid"]]
        self.assertEqual(res.get("error", ""), "")
        return pod, claim

    def host_state(self, ifname):
        lk = link(ifname)
        self.assertIsNotNone(lk, f"{ifname} on the host")
        return {"mtu": lk["mtu"], "mac": lk["address"], "addrs": sorted(addresses(ifname)),
                "pci": parentdev(ifname)}

    def assert_in_pod(self, pod):
        ns = self.node.pod_ns(pod)
        vf_pci, vf_if = self.vfs[0]
        lk = link("net-a", ns=ns)
        self.assertIsNotNone(lk, "the VF is net-a in the pod")
        self.assertEqual(parentdev("net-a", ns=ns), vf_pci, "the VF itself, by PCI address")
        self.assertEqual(lk["mtu"], 1400)
        self.assertIn("192.0.2.10/24", addresses("net-a", ns=ns))
        self.assertIsNone(link(vf_if), "the VF left the host")

    def test_vf_attached_to_a_pod_and_given_back(self):
        self.start(1)
        vf_pci, vf_if = self.vfs[0]
        self.published(lambda d: device_name(vf_pci) in d)
        sh("ip", "link", "set", vf_if, "mtu", "1500")
        sh("ip", "addr", "add", "10.99.0.2/24", "dev", vf_if)
        before = settled_host_state(vf_if, self.host_state)
        pod, claim = self.start_pod("pod-a", CONFIG)
        code, body = self.node.run_pod(pod)
        self.assertEqual(code, 200, body)
        self.assert_in_pod(pod)
        self.node.stop_pod(pod, order="containerd")
        wait_for(lambda: link(vf_if), timeout=15, what="the VF back on the host")
        assert_comes_back(self, vf_if, before, self.host_state,
                          msg="name, MTU, MAC and addresses restored")
        self.node.remove_pod(pod)
        un = self.node.unprepare(NS, "pod-a")["claims"][claim["metadata"]["uid"]]
        self.assertEqual(un.get("error", ""), "")

    def test_vf_whose_netns_died_first_is_found_by_identity_and_restored(self):
        """CRI-O's order: the pod netns is deleted before StopPodSandbox. A physical netdev is
        not destroyed with its netns: the kernel moves it back to the host, under its in-pod name
        (net-a) when that is free. knd finds it by PCI address and restores it."""
        self.start(1)
        vf_pci, vf_if = self.vfs[0]
        self.published(lambda d: device_name(vf_pci) in d)
        before = settled_host_state(vf_if, self.host_state)
        pod, _ = self.start_pod("pod-b", CONFIG)
        self.assertEqual(self.node.run_pod(pod)[0], 200)
        self.assert_in_pod(pod)
        self.node.stop_pod(pod, order="crio")
        wait_for(lambda: link(vf_if), timeout=15, what="the VF back under its host name")
        assert_comes_back(self, vf_if, before, self.host_state)
        self.assertIsNone(link("net-a"), "no stray net-a left on the host")

    @unittest.skipUnless(os.access("/usr/sbin/ethtool", os.X_OK), "needs Debian's ethtool")
    def test_vf_offloads_and_rings_from_the_claim_in_the_pod_and_back_after_its_netns_died(self):
        """interface.ethtool on a real driver (igbvf): TSO (ethtool's alias, both TCP
        segmentation features), receive checksumming and GRO off, and other ring sizes, in the
        pod. The VF keeps them across netns, so when its netns dies first (CRI-O's order) it
        comes back with the pod's, and knd puts the host's back."""
        self.start(1)
        vf_pci, vf_if = self.vfs[0]
        self.published(lambda d: device_name(vf_pci) in d)
        names = ("tcp-segmentation-offload", "rx-checksumming", "generic-receive-offload")
        before = offloads(vf_if)
        self.assertEqual([before[n] for n in names], ["on"] * 3, before)
        host_rings = rings(vf_if)
        pod_rings = {"RX": host_rings["RX"] * 2, "TX": host_rings["TX"] // 2}
        config = knd_config(interface={
            "name": "net-a", "addresses": ["192.0.2.10/24"],
            "ethtool": {"features": {"tso": False, "rx": False, "gro": False},
                        "rings": {"rx": pod_rings["RX"], "tx": pod_rings["TX"]}}})
        # More ring entries than igbvf has (4096): refused in Prepare, before any sandbox.
        too_big = knd_config(interface={"ethtool": {"rings": {"rx": 8192}}})
        _, claim = self.node.make_pod_with_claim(NS, "pod-big", "claim-pod-big",
                                                 device_name(vf_pci), too_big)
        err = self.node.prepare(NS, "pod-big")["claims"][claim["metadata"]["uid"]].get("error")
        self.assertIn(f"({vf_if}): interface.ethtool.rings: rx 8192 is above the 4096 rx ring "
                      f"entries of {vf_if}", err or "")
        self.assertEqual(rings(vf_if), host_rings, "a refused claim changes nothing")
        pod, _ = self.start_pod("pod-e", config)
        code, body = self.node.run_pod(pod)
        self.assertEqual(code, 200, body)
        in_pod = offloads("net-a", ns=self.node.pod_ns(pod))
        self.assertEqual([in_pod[n] for n in names], ["off"] * 3, in_pod)
        self.assertEqual(in_pod["scatter-gather"], before["scatter-gather"], "not asked for")
        self.assertEqual(rings("net-a", ns=self.node.pod_ns(pod)), pod_rings)
        self.node.stop_pod(pod, order="crio")
        wait_for(lambda: link(vf_if), timeout=15, what="the VF back under its host name")
        self.assertEqual(offloads(vf_if), before, "the host's offloads put back")
        self.assertEqual(rings(vf_if), host_rings, "the host's ring sizes put back")

    @unittest.skipUnless(os.access("/usr/sbin/ethtool", os.X_OK), "needs Debian's ethtool")
    def test_pf_private_flag_from_the_device_class_in_the_pod_and_back(self):
        """interface.ethtool.privateFlags (DeviceClass only) on the whole PF: igb's legacy-rx on
        in the pod (igb resets the NIC for it), off again on the host after the pod. A flag the
        driver does not have is refused in Prepare, naming the ones it has."""
        self.start(0)
        pf_name = device_name(self.pf_pci)
        self.published(lambda d: pf_name in d)
        before = private_flags(self.pf)
        self.assertEqual(before, {"legacy-rx": "off"})
        _, claim = self.node.make_pod_with_claim(
            NS, "pod-x", "claim-x", pf_name, CONFIG, class_name="knd-pf-bad",
            class_config=knd_config(interface={"ethtool": {"privateFlags": {"rx-legacy": True}}}))
        err = self.node.prepare(NS, "pod-x")["claims"][claim["metadata"]["uid"]].get("error")
        self.assertIn(f"({self.pf}): interface.ethtool.privateFlags: \"rx-legacy\" is not a "
                      f"private flag of {self.pf} (it has: legacy-rx)", err or "")
        pod, claim = self.node.make_pod_with_claim(
            NS, "pod-p", "claim-p", pf_name, CONFIG, class_name="knd-pf",
            class_config=knd_config(interface={"ethtool": {"privateFlags": {"legacy-rx": True}}}))
        res = self.node.prepare(NS, "pod-p")["claims"][claim["metadata"]["uid"]]
        self.assertEqual(res.get("error", ""), "")
        code, body = self.node.run_pod(pod)
        self.assertEqual(code, 200, body)
        ns = self.node.pod_ns(pod)
        self.assertEqual(private_flags("net-a", ns=ns), {"legacy-rx": "on"})
        self.assertIn("192.0.2.10/24", addresses("net-a", ns=ns))
        self.node.stop_pod(pod, order="containerd")
        wait_for(lambda: link(self.pf), timeout=15, what="the PF back on the host")
        self.assertEqual(private_flags(self.pf), before, "the host's private flags put back")
        self.node.remove_pod(pod)
        un = self.node.unprepare(NS, "pod-p")["claims"][claim["metadata"]["uid"]]
        self.assertEqual(un.get("error", ""), "")

    def vfinfo(self, index=0):
        """The PF's view of VF `index` (ip -j link show <pf>): MAC, VLAN, qos, spoofchk, trust."""
        got = ip_json("link", "show", "dev", self.pf)[0]
        for v in got.get("vfinfo_list", []):
            if v.get("vf") == index:
                vlans = v.get("vlan_list") or [{}]
                return {"mac": v.get("address"), "vlan": vlans[0].get("vlan", 0),
                        "qos": vlans[0].get("qos", 0), "spoofchk": v.get("spoofchk"),
                        "trust": v.get("trust"), "max_tx": v.get("rate", {}).get("max_tx", 0)}
        self.fail(f"{self.pf} reports no VF {index}: {got}")

    def test_vf_settings_through_the_pf_from_the_device_class_and_put_back(self):
        """NetworkConfig.sriov (DeviceClass only): the PF gives the VF a MAC, VLAN 100 with
        priority 3, no spoof checking and trust while the pod has it; teardown puts back what
        the PF had before."""
        self.start(1)
        vf_pci, vf_if = self.vfs[0]
        self.published(lambda d: device_name(vf_pci) in d)
        before = self.vfinfo()
        sriov = {"mac": "02:00:00:00:00:aa", "vlan": 100, "qos": 3, "spoofCheck": False,
                 "trust": True}
        pod, claim = self.node.make_pod_with_claim(
            NS, "pod-v", "claim-v", device_name(vf_pci), CONFIG,
            class_config=knd_config(sriov=sriov))
        res = self.node.prepare(NS, "pod-v")["claims"][claim["metadata"]["uid"]]
        self.assertEqual(res.get("error", ""), "")
        code, body = self.node.run_pod(pod)
        self.assertEqual(code, 200, body)
        self.assertEqual(self.vfinfo(), {**before, "mac": "02:00:00:00:00:aa", "vlan": 100,
                                         "qos": 3, "spoofchk": False, "trust": True})
        self.assertIsNotNone(link("net-a", ns=self.node.pod_ns(pod)))
        self.node.stop_pod(pod)
        wait_for(lambda: link(vf_if), timeout=15, what="the VF back on the host")
        self.assertEqual(self.vfinfo(), before, "the PF's settings for the VF put back")

    def test_a_setting_the_driver_refuses_fails_the_attach_naming_it_and_changes_nothing(self):
        """igb has no per-VF link state: the attach fails naming sriov.linkState, the VLAN set
        before it is undone, and the VF stays on the host."""
        self.start(1)
        vf_pci, vf_if = self.vfs[0]
        self.published(lambda d: device_name(vf_pci) in d)
        before = self.vfinfo()
        pod, claim = self.node.make_pod_with_claim(
            NS, "pod-w", "claim-w", device_name(vf_pci), CONFIG,
            class_config=knd_config(sriov={"vlan": 200, "linkState": "enable"}))
        res = self.node.prepare(NS, "pod-w")["claims"][claim["metadata"]["uid"]]
        self.assertEqual(res.get("error", ""), "")
        code, body = self.node.run_pod(pod, ok=None)
        self.assertNotEqual(code, 200, body)
        self.assertIn("linkState", str(body))
        self.assertIsNotNone(link(vf_if), "the VF stays on the host")
        self.assertEqual(self.vfinfo(), before, "the VLAN set first is undone")

    def test_vf_on_vfio_pci_for_a_userspace_driver_and_given_back(self):
        """sriov.driver vfio-pci (DeviceClass): Prepare binds the VF to vfio-pci after the PF set
        its VLAN; the claim's CDI spec gives the containers the VF's VFIO group and its PCI
        address; kndctl status finds it on vfio-pci; a userspace driver can open the VF as DPDK
        does; the VF stays published while
        it has no netdev; Unprepare waits for the driver to let go, then gives the VF back to
        igbvf with its host settings and the PF's settings as they were, also after a restart
        of knd in between. Debian's dpdk-testpmd, given the CDI spec's PCI address, takes the VF
        through vfio-pci and starts and stops its port."""
        out = sh(binary("kndctl"), "doctor", "--no-link-probe", "--netns-guard", "", check=False)
        self.assertRegex(out, r"\[ok\] vfio: IOMMU on \(\d+ groups\), vfio-pci loaded")
        self.start(1, extra=("--lost-device-grace", "1"))
        vf_pci, vf_if = self.vfs[0]
        name = device_name(vf_pci)
        self.published(lambda d: name in d)
        sh("ip", "link", "set", vf_if, "mtu", "1400")
        sh("ip", "addr", "add", "10.99.0.3/24", "dev", vf_if)
        before = settled_host_state(vf_if, self.host_state)
        before_vf = self.vfinfo()
        pod, claim = self.node.make_pod_with_claim(
            NS, "pod-d", "claim-d", name, None,
            class_config=knd_config(sriov={"driver": "vfio-pci", "vlan": 100,
                                           "mac": "02:00:00:00:d0:01"}))
        uid = claim["metadata"]["uid"]
        res = self.node.prepare(NS, "pod-d")["claims"][uid]
        self.assertEqual(res.get("error", ""), "")
        self.assertEqual(lab.pci_driver(vf_pci), "vfio-pci")
        self.assertIsNone(link(vf_if), "a VF on vfio-pci has no netdev")
        vf_now = self.vfinfo()
        self.assertEqual((vf_now["vlan"], vf_now["mac"]), (100, "02:00:00:00:d0:01"),
                         "the PF tags the VF's traffic and gives it its MAC")
        group = os.path.basename(os.readlink(f"/sys/bus/pci/devices/{vf_pci}/iommu_group"))
        with open(os.path.join(self.node.cdi_dir,
                               f"knd.k8s.cni.cncf.io-net_{uid}.json")) as f:
            spec = json.load(f)
        edits = {d["name"]: d["containerEdits"] for d in spec["devices"]}
        self.assertEqual(set(edits), {f"{uid}-vfio"}, "no interface, so no netns guard")
        self.assertEqual([n["path"] for n in edits[f"{uid}-vfio"]["deviceNodes"]],
                         ["/dev/vfio/vfio", f"/dev/vfio/{group}"])
        self.assertEqual(edits[f"{uid}-vfio"]["env"], [f"KND_PCI_ADDRESS_NIC={vf_pci}"])
        code, body = self.node.run_pod(pod)
        self.assertEqual(code, 200, body)
        # The pod's network-status lists the VF by its PCI address; its claim is Ready.
        def net_status():
            got = self.node.api.get(f"/api/v1/namespaces/{NS}/pods/pod-d")
            ann = got["metadata"].get("annotations", {}).get("k8s.v1.cni.cncf.io/network-status")
            return [e for e in json.loads(ann) if "device-info" in e] if ann else None
        entry = wait_for(net_status, timeout=15, what="the VF in the pod's network-status")[0]
        self.assertEqual(entry["device-info"], {"type": "pci", "version": "1.1.0",
                                                "pci": {"pci-address": vf_pci}})
        self.assertNotIn("interface", entry, "no kernel interface in the pod")

        def ready():
            got = self.node.api.get(self.node.claim_path(NS, "claim-d"))
            for e in got.get("status", {}).get("devices", []):
                if e["device"] == name:
                    return next((c for c in e.get("conditions", []) if c["type"] == "Ready"),
                                None)
            return None
        self.assertEqual(wait_for(ready, timeout=15, what="the claim's Ready")["status"], "True")
        status = json.loads(sh(binary("kndctl"), "status", "--state-dir", self.node.state_dir,
                               "-o", "json"))
        row = next(r for r in status["devices"] if r["device"] == name)
        self.assertEqual((row["mode"], row["state"], row["live"]["status"], row["live"]["detail"]),
                         ("vfio", "Attached", "ok", f"VF {vf_pci} on vfio-pci (IOMMU group {group})"))
        # Past the lost-device grace, without a netdev: still published (the claim holds it),
        # also by a driver restarted meanwhile (its plan and device cache know the VF).
        time.sleep(3)
        self.assertIn(name, self.node.published_devices())
        self.node.procs["driver"].stop()
        self.node.start_driver(config=NODE_CONFIG, extra=("--lost-device-grace", "1"))
        time.sleep(3)
        self.assertIn(name, self.node.published_devices())
        # The pod's DPDK, given the CDI spec's PCI address: testpmd's EAL opens the VF's group
        # and maps its memory through the IOMMU, the igb VF driver takes the VF, and the port
        # is configured, started and stopped; on exit testpmd lets go of the VF.
        env = dict(e.split("=", 1) for e in edits[f"{uid}-vfio"]["env"])
        pmd = lab.Testpmd(env["KND_PCI_ADDRESS_NIC"], os.path.join(self.node.tmp, "testpmd.log"))
        self.addCleanup(pmd.quit)
        pmd.wait_for_output(r"EAL: Using IOMMU type 1")
        pmd.wait_for_output(rf"Probe PCI driver: net_e1000_igb_vf \S+ device: {vf_pci}")
        pmd.wait_for_output(r"Port 0: [0-9A-Fa-f:]{17}\s+Checking link statuses\.\.\.")
        pmd.wait_for_output(r"testpmd> ")
        pmd.send("start")
        pmd.wait_for_output(r"io packet forwarding - ports=1")
        pmd.send("stop")
        pmd.wait_for_output(r"Forward statistics for port 0")
        self.assertEqual(pmd.quit(), 0, pmd.output())
        self.assertIn("Port 0 is closed", pmd.output())
        self.assertEqual(lab.pci_driver(vf_pci), "vfio-pci", "testpmd leaves the VF bound")
        # What the pod's DPDK does with those nodes: container, type-1 IOMMU, the VF's fd.
        vfio = lab.VfioUser(group, vf_pci)
        self.addCleanup(vfio.close)
        self.assertTrue(vfio.viable, "the VF's group is viable for a userspace driver")
        self.node.stop_pod(pod)
        self.node.remove_pod(pod)
        # Between the pod and Unprepare: healthy for the kubelet, though it has no link.
        health = wait_for(lambda: next((d for d in self.node.kubelet.get("/health").get(DRIVER, [])
                                        if d["device"] == name), None),
                          timeout=10, what="the VF in the kubelet's health stream")
        self.assertEqual(health["health"], "HEALTHY", health)
        un = self.node.unprepare(NS, "pod-d")["claims"][uid]
        self.assertIn("still open", un.get("error", ""), "the VF is not taken from its user")
        # The kernel has begun the unbind (the driver link is gone) and holds it until then.
        self.assertNotEqual(lab.pci_driver(vf_pci), "igbvf")
        self.assertIsNone(link(vf_if))
        vfio.close()
        un = wait_for(lambda: (lambda r: r if not r.get("error") else None)(
            self.node.unprepare(NS, "pod-d")["claims"][uid]), timeout=30,
            what="an Unprepare that gives the VF back")
        self.assertEqual(lab.pci_driver(vf_pci), "igbvf")
        assert_comes_back(self, vf_if, before, self.host_state,
                          msg="name, MTU, MAC and addresses restored")
        self.assertEqual(self.vfinfo(), before_vf, "the PF's settings for the VF put back")
        self.assertFalse(os.path.exists(os.path.join(self.node.cdi_dir,
                                                     f"knd.k8s.cni.cncf.io-net_{uid}.json")))

    @unittest.skipUnless(os.access("/usr/lib/cni/host-device", os.X_OK),
                         "needs Debian's host-device plugin")
    def test_multus_host_device_takes_the_vf_by_pci_address_and_knd_does_not_move_it_again(self):
        """Multus's DRA path for SR-IOV: the NAD's host-device gets the claim's deviceID (the
        VF's PCI address) as pciBusID and moves the VF; knd sees it in the pod and records it."""
        self.start(1)
        vf_pci, vf_if = self.vfs[0]
        n = self.node
        self.published(lambda d: device_name(vf_pci) in d)
        pod, claim = n.make_pod_with_claim(NS, "pod-m", "claim-m", device_name(vf_pci),
                                           knd_config(attachedBy="multus"))
        p = n.api.get(f"/api/v1/namespaces/{NS}/pods/pod-m")
        p["metadata"]["annotations"] = {"k8s.v1.cni.cncf.io/networks": "sriov-a@net1"}
        n.api.put(f"/api/v1/namespaces/{NS}/pods/pod-m", p)

        def prepared():
            err = n.prepare(NS, "pod-m")["claims"][claim["metadata"]["uid"]].get("error", "")
            if err:
                raise AssertionError(err)
            return True
        wait_for(prepared, timeout=10, what="prepared (the pod watch has the annotation)")
        ifindex = link(vf_if)["ifindex"]
        nad = {"cniVersion": "1.0.0", "name": "sriov-a", "plugins": [
            {"type": "host-device", "pciBusID": vf_pci,
             "ipam": {"type": "static", "addresses": [{"address": "10.30.0.9/24"}]}}]}
        code, body = n.run_pod(pod, networks=[{"conflist": nad, "ifname": "net1",
                                               "deviceID": vf_pci}])
        self.assertEqual(code, 200, body)
        ns = n.pod_ns(pod)
        net1 = link("net1", ns=ns)
        self.assertIsNotNone(net1, "host-device moved the VF in by PCI address")
        self.assertEqual(net1["ifindex"], ifindex, "one move, not two")
        self.assertEqual(parentdev("net1", ns=ns), vf_pci)
        plan = json.load(open(os.path.join(n.state_dir, "plans",
                                           claim["metadata"]["uid"] + ".json")))
        d = plan["devices"][0]
        self.assertEqual((d["state"], d.get("attachedBy")), ("Attached", "multus"))

        def status():
            c = n.api.get(n.claim_path(NS, "claim-m"))
            for e in c.get("status", {}).get("devices", []) or []:
                if e["driver"] == DRIVER and e.get("networkData", {}).get("interfaceName"):
                    return e
            return None
        e = wait_for(status, what="claim status written")
        self.assertEqual(e["networkData"]["interfaceName"], "net1")
        n.stop_pod(pod)
        wait_for(lambda: link(vf_if) or link("net1"), timeout=15,
                 what="the VF back on the host (Multus's DEL)")


if __name__ == "__main__":
    lab.main()
