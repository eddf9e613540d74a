"""e2e (issue 16): one NIC shared among pods. The node config makes eth1 a shared parent; knd
publishes it once with allowMultipleAllocations and a child count; each claim gets a share
(shareID) and its pod a macvlan child of eth1, created in the pod netns with the claim's own
address and a MAC stable per claim. The parent never leaves the host. A fourth claim finds no
share left; deleting a pod frees one; a driver restart with children live keeps them.

The allocator here is the harness's model of the scheduler's KEP-5075 consumption
(harness.allocate_share) reading knd's published capacity: it shows that what knd publishes
limits the shares as intended, not that kube-scheduler does (the real-node run does)."""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import DRIVER, Node, addresses, link, sh, wait_for  # noqa: E402

NS = "team-a"
CHILDREN = f"{DRIVER}/children"
NODE_CONFIG = 'shared:\n  - {selector: {ifName: eth1}, maxChildren: 3}\n'
CLASS = "knd-shared"
CLASS_CONFIG = {"apiVersion": "knd.k8s.cni.cncf.io/v1alpha1", "kind": "NetworkConfig",
                "child": {"type": "macvlan", "mode": "bridge"}}


def claim_config(i):
    return {"apiVersion": "knd.k8s.cni.cncf.io/v1alpha1", "kind": "NetworkConfig",
            "interface": {"name": "net1", "addresses": [f"192.0.2.{10 + i}/24"]},
            "routes": [{"destination": "198.51.100.0/24", "gateway": "192.0.2.1"}]}


def link_details(ifname, ns):
    out = sh("ip", "-d", "-j", "-n", ns, "link", "show", "dev", ifname, check=False)
    try:
        got = json.loads(out)
    except ValueError:
        return None
    return got[0] if got else None


def global_addresses(ifname, ns=None):
    return [a for a in addresses(ifname, ns=ns) if not a.startswith("fe80:")]


@harness.privileged
class SharedNicTest(unittest.TestCase):

    def setUp(self):
        self.node = Node().__enter__()
        self.addCleanup(self.node.__exit__, None, None, None)
        n = self.node
        n.veth("eth1", mtu=1500)
        sh("ip", "addr", "add", "10.99.0.2/24", "dev", "eth1")
        n.start_driver(config=NODE_CONFIG)
        wait_for(lambda: "eth1" in n.published_devices(), what="eth1 published")
        self.pods = {}

    def start(self, i):
        n = self.node
        name = f"pod-{i}"
        pod, claim = n.make_pod_with_claim(NS, name, f"claim-{i}", "eth1", claim_config(i),
                                           class_name=CLASS, class_config=CLASS_CONFIG)
        res = n.prepare(NS, name)["claims"][claim["metadata"]["uid"]]
        self.assertEqual(res.get("error", ""), "")
        code, body = n.run_pod(pod)
        self.assertEqual(code, 200, body)
        self.pods[i] = (pod, claim)
        return pod, claim

    def stop(self, i):
        n = self.node
        pod, claim = self.pods.pop(i)
        n.delete_like_the_kubelet(pod, claim)
        n.stop_pod(pod)
        n.remove_pod(pod)
        un = n.unprepare(NS, pod["metadata"]["name"])["claims"][claim["metadata"]["uid"]]
        self.assertEqual(un.get("error", ""), "")

    def child(self, i):
        return link("net1", ns=self.node.pod_ns(self.pods[i][0]))

    def ping(self, i, addr):
        ns = self.node.pod_ns(self.pods[i][0])
        out = sh("ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "2", addr, check=False)
        return " 0% packet loss" in out

    def test_parent_is_published_for_sharing(self):
        d = self.node.published_devices()["eth1"]
        self.assertTrue(d["allowMultipleAllocations"])
        self.assertEqual(d["attributes"][f"{DRIVER}/shared"], {"bool": True})
        self.assertEqual(d["capacity"][CHILDREN],
                         {"value": "3", "requestPolicy": {"default": "1", "validValues": ["1"]}})

    def test_three_pods_share_one_parent_and_the_fourth_finds_no_room(self):
        n = self.node
        for i in (1, 2, 3):
            self.start(i)
        macs = set()
        for i in (1, 2, 3):
            lk = self.child(i)
            self.assertIsNotNone(lk, f"pod-{i} has no net1")
            self.assertEqual(global_addresses("net1", ns=n.pod_ns(self.pods[i][0])),
                             [f"192.0.2.{10 + i}/24"])
            det = link_details("net1", n.pod_ns(self.pods[i][0]))
            self.assertEqual(det["linkinfo"]["info_kind"], "macvlan")
            self.assertEqual(det["linkinfo"]["info_data"]["mode"], "bridge")
            macs.add(lk["address"])
        self.assertEqual(len(macs), 3, "every child has its own MAC")
        # The parent stays on the host with its address; the children reach each other
        # through it (macvlan bridge mode).
        self.assertEqual(global_addresses("eth1"), ["10.99.0.2/24"])
        self.assertTrue(self.ping(1, "192.0.2.12"), "pod-1 cannot reach pod-2 over the share")
        self.assertTrue(self.ping(3, "192.0.2.11"), "pod-3 cannot reach pod-1 over the share")

        # Each claim's status names its share.
        for i in (1, 2, 3):
            claim = self.pods[i][1]
            share = claim["status"]["allocation"]["devices"]["results"][0]["shareID"]

            def entry(claim=claim, share=share):
                got = n.api.get(n.claim_path(NS, claim["metadata"]["name"]))
                for e in (got.get("status") or {}).get("devices") or []:
                    if e["driver"] == DRIVER and e.get("shareID") == share and \
                            e.get("networkData"):
                        return e
                return None
            e = wait_for(entry, what=f"claim-{i} status entry with its shareID")
            self.assertEqual(e["networkData"]["interfaceName"], "net1")
            self.assertEqual(e["networkData"]["ips"], [f"192.0.2.{10 + i}/24"])
            self.assertEqual(e["networkData"]["hardwareAddress"], self.child(i)["address"])
            ready = [c for c in e.get("conditions", []) if c["type"] == "Ready"]
            self.assertEqual(ready[0]["status"], "True")
            # The pod's network-status lists the child like any attachment.
            pod = self.pods[i][0]["metadata"]

            def net_status(pod=pod):
                got = n.api.get(f"/api/v1/namespaces/{NS}/pods/{pod['name']}")
                ann = got["metadata"].get("annotations", {}).get(
                    "k8s.v1.cni.cncf.io/network-status")
                return [x for x in json.loads(ann) if x.get("interface") == "net1"] \
                    if ann else None
            st = wait_for(net_status, what=f"pod-{i} network-status")
            self.assertEqual(st[0]["ips"], [f"192.0.2.{10 + i}"])
            self.assertEqual(st[0]["mac"], self.child(i)["address"])

        # The fourth claim: no share left.
        with self.assertRaises(harness.Unschedulable) as ctx:
            n.make_pod_with_claim(NS, "pod-4", "claim-4", "eth1", claim_config(4),
                                  class_name=CLASS, class_config=CLASS_CONFIG)
        self.assertIn("has 0 of", str(ctx.exception))
        # A claim cannot take two shares at once (validValues [1]).
        with self.assertRaises(harness.Unschedulable):
            n.make_pod_with_claim(NS, "pod-5", "claim-5", "eth1", claim_config(5),
                                  class_name=CLASS, class_config=CLASS_CONFIG,
                                  capacity_requests={CHILDREN: "2"})

        # Deleting one pod deletes its child and frees its share for the fourth.
        pod2_ns = n.pod_ns(self.pods[2][0])
        self.stop(2)
        self.assertIsNone(link("net1", ns=pod2_ns))
        self.start(4)
        self.assertIsNotNone(self.child(4))
        self.assertTrue(self.ping(4, "192.0.2.11"))
        self.assertEqual(global_addresses("eth1"), ["10.99.0.2/24"])

    def test_restart_with_children_live_and_a_repeated_hook(self):
        n = self.node
        self.start(1)
        self.start(2)
        before = {i: self.child(i)["address"] for i in (1, 2)}
        n.driver.kill9()
        n.start_driver(config=NODE_CONFIG)
        # Reconciled: the children stay as they were, the same MAC and address.
        for i in (1, 2):
            self.assertEqual(self.child(i)["address"], before[i])
        # The same claim prepared again (idempotent) keeps its MAC: a new sandbox of the pod
        # gets the same child.
        claim = self.pods[1][1]
        res = n.prepare_claims([claim])["claims"][claim["metadata"]["uid"]]
        self.assertEqual(res.get("error", ""), "")
        for i in (1, 2):
            ns = n.pod_ns(self.pods[i][0])
            self.stop(i)
            self.assertIsNone(link("net1", ns=ns))
        self.assertEqual(global_addresses("eth1"), ["10.99.0.2/24"])
        self.assertTrue(n.driver.alive())

    def test_parent_down_makes_children_not_ready_and_the_parent_unhealthy(self):
        n = self.node
        self.start(1)
        claim = self.pods[1][1]

        def ready():
            got = n.api.get(n.claim_path(NS, claim["metadata"]["name"]))
            for e in (got.get("status") or {}).get("devices") or []:
                if e["driver"] == DRIVER and e.get("networkData"):
                    c = [c for c in e.get("conditions", []) if c["type"] == "Ready"]
                    return c[0] if c else None
            return None

        def health():
            for d in n.kubelet.get("/health").get(DRIVER, []):
                if d["device"] == "eth1":
                    return d
            return None
        wait_for(lambda: (c := ready()) and c["status"] == "True", what="child Ready")
        # The parent's carrier goes (its wire is cut): the parent is down on the host.
        sh("ip", "link", "set", "eth1", "down")
        c = wait_for(lambda: (c := ready()) and c["status"] == "False" and c, timeout=10,
                     what="child Ready=False while its parent is down")
        self.assertEqual(c["reason"], "ParentUnhealthy")
        self.assertIn("shared parent eth1: link is down", c["message"])
        h = wait_for(lambda: (d := health()) and d["health"] == "UNHEALTHY" and d, timeout=10,
                     what="eth1 unhealthy in the kubelet's health stream")
        self.assertIn("link is down", h["message"])
        # The child stays in its pod; when the parent is back, so is Ready.
        self.assertIsNotNone(self.child(1))
        sh("ip", "link", "set", "eth1", "up")
        wait_for(lambda: (c := ready()) and c["status"] == "True", timeout=10,
                 what="child Ready again")
        wait_for(lambda: (d := health()) and d["health"] == "HEALTHY", timeout=10,
                 what="eth1 healthy again")
        # The parent gone (a veth takes its macvlan children with it): the claim says so.
        sh("ip", "link", "del", "eth1")
        c = wait_for(lambda: (c := ready()) and c["status"] == "False" and c, timeout=10,
                     what="child Ready=False with its parent gone")
        self.assertEqual(c["reason"], "ParentUnhealthy")
        self.assertIn("shared parent eth1: gone from the host", c["message"])
        self.assertIsNone(self.child(1))
        self.stop(1)
        self.assertTrue(n.driver.alive())

    def test_class_ipam_and_a_multus_macvlan_on_the_same_nic(self):
        """The migration of docs/multus.md: host-local IPAM from the DeviceClass, and a pod that
        has both a Multus-style macvlan network (the runtime runs the NAD's plugin, master
        eth1) and a knd child of eth1, each reaching the other pod's interface."""
        n = self.node
        class_cfg = dict(CLASS_CONFIG, ipam={"type": "host-local", "subnet": "192.0.2.0/24",
                                             "rangeStart": "192.0.2.100",
                                             "rangeEnd": "192.0.2.120",
                                             "dataDir": os.path.join(n.tmp, "ipam")})
        claim_cfg = {"apiVersion": "knd.k8s.cni.cncf.io/v1alpha1", "kind": "NetworkConfig",
                     "interface": {"name": "net1"}}
        pods = []
        for i in (1, 2):
            pod, claim = n.make_pod_with_claim(NS, f"ipam-{i}", f"ipam-{i}", "eth1", claim_cfg,
                                               class_name="knd-shared-ipam", class_config=class_cfg)
            res = n.prepare(NS, f"ipam-{i}")["claims"][claim["metadata"]["uid"]]
            self.assertEqual(res.get("error", ""), "")
            pods.append((pod, claim))
        nad = {"cniVersion": "1.0.0", "name": "storage", "plugins": [
            {"type": "macvlan", "master": "eth1", "mode": "bridge",
             "ipam": {"type": "static", "addresses": [{"address": "192.0.2.50/24"}]}}]}
        code, body = n.run_pod(pods[0][0], networks=[{"conflist": nad, "ifname": "net2"}])
        self.assertEqual(code, 200, body)
        code, body = n.run_pod(pods[1][0])
        self.assertEqual(code, 200, body)
        ns1, ns2 = n.pod_ns(pods[0][0]), n.pod_ns(pods[1][0])
        a1 = global_addresses("net1", ns=ns1)
        a2 = global_addresses("net1", ns=ns2)
        self.assertEqual(len(a1), 1)
        self.assertTrue(a1[0].startswith("192.0.2.1"), a1)  # from the class's range
        self.assertNotEqual(a1, a2)
        self.assertEqual(global_addresses("net2", ns=ns1), ["192.0.2.50/24"])
        self.assertEqual(link_details("net2", ns1)["linkinfo"]["info_kind"], "macvlan")
        # host-local keeps a lease file per address under <dataDir>/<network name "knd">.
        lease_dir = os.path.join(n.tmp, "ipam", "knd")

        def leases():
            return sorted(f for f in os.listdir(lease_dir) if f[0].isdigit()) \
                if os.path.isdir(lease_dir) else []
        self.assertEqual(leases(), sorted(a.split("/")[0] for a in a1 + a2))
        peer = a2[0].split("/")[0]
        for src in ("net1", "net2"):
            out = sh("ip", "netns", "exec", ns1, "ping", "-c", "1", "-W", "2", "-I", src, peer,
                     check=False)
            self.assertIn(" 0% packet loss", out, f"{src} of pod 1 cannot reach pod 2")
        for pod, claim in pods:
            n.delete_like_the_kubelet(pod, claim)
            n.stop_pod(pod)
            n.remove_pod(pod)
            un = n.unprepare(NS, pod["metadata"]["name"])["claims"][claim["metadata"]["uid"]]
            self.assertEqual(un.get("error", ""), "")
        # Unprepare released both leases.
        self.assertEqual(leases(), [])


if __name__ == "__main__":
    harness.main()
