"""The hardware lab (issue 15): knd's uplink rules on the link kinds this host's kernel lacks
(bonding, 802.1q, and bridges over them), and VLAN and ipvlan children as claim devices, in a
node netns on the lab's kernel; and (issue 16) the VLAN and ipvlan children of a shared parent
carrying a pod's traffic to a neighbour on the wire; and (issue 18) a pod interface in a VRF
(interface.vrf), which this host's kernel lacks too."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import lab  # noqa: E402  (puts test/e2e on the path)
import harness  # noqa: E402
from harness import Node, addresses, knd_config, link, sh, wait_for  # noqa: E402

NODE_CONFIG = 'include:\n  - ifName: "*"\n'
NS = "team-a"
CONFIG = knd_config(interface={"name": "net-a", "mtu": 1400, "addresses": ["192.0.2.10/24"]},
                    routes=[{"destination": "198.51.100.0/24", "gateway": "192.0.2.1"}])


def link_info(ifname, ns=None):
    return lab.link_details(ifname, ns=ns).get("linkinfo", {})


class LinksTest(unittest.TestCase):

    def setUp(self):
        self.node = Node().__enter__()
        self.addCleanup(self.node.__exit__, None, None, None)

    def test_uplinks_built_from_bonds_vlans_and_bridges_are_not_published(self):
        # Three default routes, over a bond, a VLAN and a bridge; everything under them is the
        # node's uplink. d9 and its VLAN v9 carry no default route: they are offered.
        for d in ("s1", "s2", "p1", "p2", "d9"):
            sh("ip", "link", "add", d, "type", "dummy")
        sh("ip", "link", "add", "bond0", "type", "bond", "mode", "active-backup")
        for s in ("s1", "s2"):
            sh("ip", "link", "set", s, "master", "bond0")
        sh("ip", "link", "add", "link", "p1", "name", "vlan100", "type", "vlan", "id", "100")
        sh("ip", "link", "add", "br0", "type", "bridge")
        sh("ip", "link", "set", "p2", "master", "br0")
        sh("ip", "link", "add", "link", "d9", "name", "v9", "type", "vlan", "id", "9")
        for d in ("s1", "s2", "bond0", "p1", "vlan100", "p2", "br0", "d9", "v9"):
            sh("ip", "link", "set", d, "up")
        for i, (d, net) in enumerate((("bond0", "10.1.0"), ("vlan100", "10.2.0"),
                                      ("br0", "10.3.0"))):
            sh("ip", "addr", "add", f"{net}.2/24", "dev", d)
            sh("ip", "route", "add", "default", "via", f"{net}.1", "dev", d,
               "metric", str(100 * (i + 1)))
        self.node.start_driver(config=NODE_CONFIG)
        devs = wait_for(lambda: (lambda d: d if "d9" in d and "v9" in d else None)(
            self.node.published_devices()), what="d9 and v9 published")
        for uplink in ("s1", "s2", "bond0", "p1", "vlan100", "p2", "br0"):
            self.assertNotIn(uplink, devs, f"{uplink} is part of an uplink")
        self.assertEqual(devs["v9"]["attributes"]["knd.k8s.cni.cncf.io/type"], {"string": "vlan"})

    def attach_child(self, name, make, kind):
        n = self.node
        sh("ip", "link", "add", "parent0", "type", "dummy")
        sh("ip", "link", "set", "parent0", "up")
        sh(*make)
        sh("ip", "link", "set", name, "up")
        before = link(name)
        n.start_driver(config=NODE_CONFIG)
        wait_for(lambda: name in n.published_devices(), what=f"{name} published")
        pod, claim = n.make_pod_with_claim(NS, "pod-a", "claim-a", name, CONFIG)
        res = n.prepare(NS, "pod-a")["claims"][claim["metadata"]["uid"]]
        self.assertEqual(res.get("error", ""), "")
        code, body = n.run_pod(pod)
        self.assertEqual(code, 200, body)
        ns = n.pod_ns(pod)
        self.assertEqual(link_info("net-a", ns=ns).get("info_kind"), kind)
        self.assertEqual(link("net-a", ns=ns)["mtu"], 1400)
        self.assertIn("192.0.2.10/24", addresses("net-a", ns=ns))
        self.assertIsNone(link(name))
        n.stop_pod(pod)
        after = wait_for(lambda: link(name), timeout=15, what=f"{name} back on the node")
        self.assertEqual((after["mtu"], after["address"]), (before["mtu"], before["address"]))
        self.assertEqual(link_info(name).get("info_kind"), kind)
        n.remove_pod(pod)
        un = n.unprepare(NS, "pod-a")["claims"][claim["metadata"]["uid"]]
        self.assertEqual(un.get("error", ""), "")
        return after

    def test_vlan_child_as_a_claim_device(self):
        self.attach_child("v42", ["ip", "link", "add", "link", "parent0", "name", "v42",
                                  "type", "vlan", "id", "42"], "vlan")
        self.assertEqual(link_info("v42")["info_data"]["id"], 42)

    def test_ipvlan_child_as_a_claim_device(self):
        self.attach_child("ipv0", ["ip", "link", "add", "link", "parent0", "name", "ipv0",
                                   "type", "ipvlan", "mode", "l2"], "ipvlan")

    def shared_child(self, class_child, pod_if, neighbour):
        """A shared parent wire0 (a veth whose other end, wire0p, is a neighbour on the same
        wire) gives a pod a child of kind class_child, named pod_if, at 192.0.2.10/24.
        neighbour() sets up 192.0.2.1 behind wire0p; the pod must reach it over the child, so
        the frames on the wire are the child's own (tagged, for a VLAN)."""
        n = self.node
        n.veth("wire0")
        neighbour()
        n.start_driver(config='shared:\n  - {selector: {ifName: wire0}, maxChildren: 4}\n')
        wait_for(lambda: "wire0" in n.published_devices(), what="wire0 published")
        cfg = knd_config(interface={"name": pod_if, "addresses": ["192.0.2.10/24"]})
        pod, claim = n.make_pod_with_claim(NS, "pod-s", "claim-s", "wire0", cfg,
                                           class_name="knd-shared",
                                           class_config=knd_config(child=class_child))
        res = n.prepare(NS, "pod-s")["claims"][claim["metadata"]["uid"]]
        self.assertEqual(res.get("error", ""), "")
        self.assertEqual(n.run_pod(pod)[0], 200)
        ns = n.pod_ns(pod)
        info = link_info(pod_if, ns=ns)
        self.assertEqual(info.get("info_kind"), class_child["type"])
        self.assertIsNotNone(link("wire0"), "a shared parent stays on the node")
        out = sh("ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "3", "192.0.2.1",
                 check=False)
        self.assertIn(" 0% packet loss", out,
                      f"the pod's {class_child['type']} child cannot reach its neighbour")
        n.stop_pod(pod)
        self.assertIsNone(link(pod_if, ns=ns), "the child outlived its pod's stop")
        n.remove_pod(pod)
        un = n.unprepare(NS, "pod-s")["claims"][claim["metadata"]["uid"]]
        self.assertEqual(un.get("error", ""), "")
        return info

    def test_shared_parent_vlan_child_tags_its_frames(self):
        def neighbour():  # answers on VLAN 42 only: an untagged frame would go unanswered
            sh("ip", "link", "add", "link", "wire0p", "name", "peer42", "type", "vlan",
               "id", "42")
            sh("ip", "addr", "add", "192.0.2.1/24", "dev", "peer42")
            sh("ip", "link", "set", "peer42", "up")
        info = self.shared_child({"type": "vlan", "vlanId": 42}, "net1.42", neighbour)
        self.assertEqual(info["info_data"]["id"], 42)

    def test_shared_parent_ipvlan_child_in_l2_mode(self):
        info = self.shared_child({"type": "ipvlan", "mode": "l2"}, "net1",
                                 lambda: sh("ip", "addr", "add", "192.0.2.1/24", "dev", "wire0p"))
        self.assertEqual(info["info_data"]["mode"], "l2")

    def test_pod_interface_in_its_vrf_reaches_the_wire_only_through_the_vrf(self):
        """A DeviceClass puts its NICs in VRF red (table 100) of the pod: the pod reaches the
        neighbour from a socket bound to the VRF and not from one that is not, and the NIC
        comes back to the node in no VRF."""
        n = self.node
        n.veth("wire0")
        sh("ip", "addr", "add", "192.0.2.1/24", "dev", "wire0p")
        sh("ip", "addr", "add", "198.51.100.1/32", "dev", "wire0p")
        before = harness.settled_host_state("wire0")
        n.start_driver(config=NODE_CONFIG)
        wait_for(lambda: "wire0" in n.published_devices(), what="wire0 published")
        cfg = knd_config(interface={"name": "net-a", "addresses": ["192.0.2.10/24"]},
                         routes=[{"destination": "198.51.100.0/24", "gateway": "192.0.2.1"}])
        pod, claim = n.make_pod_with_claim(
            NS, "pod-v", "claim-v", "wire0", cfg, class_name="knd-vrf",
            class_config=knd_config(interface={"vrf": {"name": "red", "table": 100}}))
        res = n.prepare(NS, "pod-v")["claims"][claim["metadata"]["uid"]]
        self.assertEqual(res.get("error", ""), "")
        self.assertEqual(n.run_pod(pod)[0], 200)
        ns = n.pod_ns(pod)
        self.assertEqual(lab.link_details("net-a", ns=ns).get("master"), "red")
        self.assertEqual(link_info("red", ns=ns)["info_data"]["table"], 100)
        routes = harness.ip_json("route", "show", "table", "100", "dev", "net-a", ns=ns)
        self.assertIn("198.51.100.0/24", [r["dst"] for r in routes], routes)
        self.assertEqual(harness.ip_json("-4", "route", "show", "table", "main", ns=ns), [])
        out = sh("ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "3", "-I", "red",
                 "198.51.100.1", check=False)
        self.assertIn(" 0% packet loss", out, "no reply through the VRF")
        out = sh("ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "1", "198.51.100.1",
                 check=False)
        self.assertNotIn(" 0% packet loss", out, "the main table reached the VRF's network")
        n.stop_pod(pod)
        harness.assert_comes_back(self, "wire0", before)
        self.assertNotIn("master", lab.link_details("wire0"))
        n.remove_pod(pod)
        un = n.unprepare(NS, "pod-v")["claims"][claim["metadata"]["uid"]]
        self.assertEqual(un.get("error", ""), "")


if __name__ == "__main__":
    lab.main(need_sriov=False)
