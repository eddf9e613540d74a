"""e2e (issue 4): the kubelet stand-in prepares and unprepares claims through the real DRA
gRPC protocol; bad claims are refused per claim, naming the problem, and change nothing."""

import glob
import json
import os
import sys
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import DRIVER, Node, link, wait_for  # noqa: E402

CFG = "knd.k8s.cni.cncf.io/v1alpha1"


def netcfg(**kw):
    return {"apiVersion": CFG, "kind": "NetworkConfig", **kw}


def plans(node):
    return sorted(glob.glob(os.path.join(node.state_dir, "plans", "*.json")))


def claim_result(resp, claim):
    return resp["claims"][claim["metadata"]["uid"]]


@harness.privileged
class PrepareTest(unittest.TestCase):

    def test_prepare_unprepare_restart_and_v1beta1(self):
        with Node(with_runtime=False) as node:
            node.veth("eth1")
            node.start_driver(config='include:\n  - ifName: "eth*"\n', wait_ready=False)
            wait_for(lambda: "eth1" in node.published_devices(), what="eth1 published")
            node.wait_driver_ready()
            cfg = netcfg(interface={"name": "net-a", "mtu": 1400,
                                    "addresses": ["192.0.2.10/24", "2001:db8::10/64"]},
                         routes=[{"destination": "198.51.100.0/24", "gateway": "192.0.2.1"}])
            pod, claim = node.make_pod_with_claim("team-a", "pod-a", "claim-a", "eth1", cfg)

            res = claim_result(node.prepare("team-a", "pod-a"), claim)
            self.assertEqual(res.get("error", ""), "")
            self.assertEqual(len(res["devices"]), 1)
            dev = res["devices"][0]
            self.assertEqual(dev["requestNames"], ["nic"])
            self.assertEqual(dev["poolName"], node.node_name)
            self.assertEqual(dev["deviceName"], "eth1")

            files = plans(node)
            self.assertEqual(len(files), 1)
            plan = json.load(open(files[0]))
            self.assertEqual(plan["claimUid"], claim["metadata"]["uid"])
            d = plan["devices"][0]
            self.assertEqual(d["identity"]["ifname"], "eth1")
            self.assertEqual(d["config"]["interface"]["name"], "net-a")
            self.assertEqual(d["state"], "Prepared")
            self.assertEqual(plan["pods"][0]["uid"], pod["metadata"]["uid"])
            # Nothing moved yet: Prepare does not touch the device.
            self.assertIsNotNone(link("eth1"))

            # The kubelet does not call a driver twice for a claim it has prepared...
            cached = claim_result(node.prepare("team-a", "pod-a"), claim)
            self.assertTrue(cached.get("cached"))
            # ...but when it does (its checkpoint lost), the driver is idempotent: the same
            # answer again, one plan.
            again = claim_result(node.prepare_claims([claim]), claim)
            self.assertEqual(again, res)
            self.assertEqual(len(plans(node)), 1)

            # kill -9 after Prepare, start again: the plan is still there and still answers.
            node.driver.kill9()
            node.start_driver(config='include:\n  - ifName: "eth*"\n')
            self.assertEqual(len(plans(node)), 1)
            self.assertEqual(claim_result(node.prepare_claims([claim], api="v1beta1"), claim),
                             res, "v1beta1 must answer like v1")

            # Unprepare twice is fine and removes the plan.
            for _ in range(2):
                un = node.unprepare("team-a", "pod-a")
                self.assertEqual(claim_result(un, claim).get("error", ""), "")
            self.assertEqual(plans(node), [])

    def test_prepare_reads_only_the_claim_once_the_pod_watch_has_the_pod(self):
        """The design's budget: one API read per claim. The pod the claim is reserved for is
        checked in the driver's watch of this node's pods, not read again."""
        with Node(with_runtime=False) as node:
            node.veth("eth1")
            port = harness.free_port()
            node.start_driver(config='include:\n  - ifName: "eth*"\n',
                              extra=["--metrics-address", f"127.0.0.1:{port}"], wait_ready=False)
            wait_for(lambda: "eth1" in node.published_devices(), what="eth1 published")
            node.wait_driver_ready()
            pod, claim = node.make_pod_with_claim("team-a", "pod-a", "claim-a", "eth1")

            def cached_pods():
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                    for line in r.read().decode().splitlines():
                        if line.startswith("knd_pod_cache_pods "):
                            return float(line.split()[1]) or None
                return None
            wait_for(cached_pods, what="the driver's pod watch has the pod")
            node.api.post("/_knd/reset-stats", {})
            res = node.kubelet.post("/prepare-claims", {"claims": [{
                "namespace": "team-a", "name": "claim-a", "uid": claim["metadata"]["uid"]}]})
            self.assertEqual(claim_result(res, claim).get("error", ""), "")
            reads = node.api.get("/_knd/stats")["requests"]
            self.assertEqual(reads.get("get"), {"resourceclaims": 1}, reads)
            self.assertNotIn("list", reads, reads)

            # A hostNetwork pod is refused from the watch's copy as well, without a read.
            pod, claim = node.make_pod_with_claim("team-a", "pod-hn", "claim-hn", "eth1",
                                                  host_network=True)
            wait_for(lambda: (cached_pods() or 0) >= 2 or None, what="pod-hn in the pod watch")
            node.api.post("/_knd/reset-stats", {})
            err = claim_result(node.kubelet.post("/prepare-claims", {"claims": [{
                "namespace": "team-a", "name": "claim-hn",
                "uid": claim["metadata"]["uid"]}]}), claim).get("error", "")
            self.assertIn("hostNetwork", err)
            self.assertNotIn("pods", node.api.get("/_knd/stats")["requests"].get("get", {}))

    def test_bad_claims_are_refused_and_change_nothing(self):
        bad = [
            ("long-name", netcfg(interface={"name": "averyveryverylongname"}), "interface.name"),
            ("lo-name", netcfg(interface={"name": "lo"}), "interface.name"),
            ("bad-cidr", netcfg(interface={"addresses": ["192.0.2.300/24"]}),
             "interface.addresses"),
            ("gw-family", netcfg(interface={"addresses": ["192.0.2.10/24"]},
                                 routes=[{"destination": "198.51.100.0/24",
                                          "gateway": "2001:db8::1"}]), "gateway"),
            ("mtu-range", netcfg(interface={"mtu": 50}), "interface.mtu"),
            ("unknown-field", netcfg(interface={"mtuu": 1500}), "mtuu"),
            ("wrong-type", netcfg(interface={"mtu": "9000"}), "interface.mtu"),
            ("wrong-kind", {"apiVersion": CFG, "kind": "Nope"}, "kind"),
            ("other-ns-nad", netcfg(cni={"networkAttachment": {"namespace": "other",
                                                               "name": "storage"}}),
             "namespace"),
            ("mac-from-claim", netcfg(interface={"hardwareAddr": "02:00:00:00:00:01"}),
             "hardwareAddr"),
            # Valid, but not for this device: asked of the device itself, before any sandbox.
            ("lro-on-veth", netcfg(interface={"ethtool": {"features": {"lro": True}}}),
             'interface.ethtool.features: ethtool feature "lro" cannot be changed on eth1'),
            ("rings-on-veth", netcfg(interface={"ethtool": {"rings": {"rx": 512}}}),
             "interface.ethtool.rings: eth1 has no ring entries to set"),
        ]
        with Node(with_runtime=False) as node:
            node.veth("eth1", mtu=1500)
            before = link("eth1")
            node.start_driver(config='include:\n  - ifName: "eth*"\n', wait_ready=False)
            wait_for(lambda: "eth1" in node.published_devices(), what="eth1 published")
            node.wait_driver_ready()
            for i, (name, cfg, expect) in enumerate(bad):
                with self.subTest(name):
                    pod, claim = node.make_pod_with_claim("team-a", f"pod-{i}", f"claim-{name}",
                                                          "eth1", cfg)
                    err = claim_result(node.prepare("team-a", f"pod-{i}"), claim).get("error", "")
                    self.assertIn(expect, err)
                    self.assertIn(f"claim-{name}", err, "error must name the claim")

            # Not reserved for any pod.
            pod, claim = node.make_pod_with_claim("team-a", "pod-nr", "claim-nr", "eth1",
                                                  reserve=False)
            res = node.kubelet.post("/prepare-claims", {"claims": [{
                "namespace": "team-a", "name": "claim-nr", "uid": claim["metadata"]["uid"]}]})
            self.assertIn("reserved", claim_result(res, claim)["error"])

            # UID mismatch: the kubelet asks for a claim that was replaced.
            res = node.kubelet.post("/prepare-claims", {"claims": [{
                "namespace": "team-a", "name": "claim-nr", "uid": "0000-stale-uid"}]})
            self.assertIn("UID", res["claims"]["0000-stale-uid"]["error"])

            # hostNetwork pods have no netns to put a device in.
            pod, claim = node.make_pod_with_claim("team-a", "pod-hn", "claim-hn", "eth1",
                                                  host_network=True)
            err = claim_result(node.prepare("team-a", "pod-hn"), claim)["error"]
            self.assertIn("hostNetwork", err)

            # Unknown device.
            pod, claim = node.make_pod_with_claim("team-a", "pod-nd", "claim-nd", "eth9")
            err = claim_result(node.prepare("team-a", "pod-nd"), claim)["error"]
            self.assertIn("eth9", err)

            self.assertEqual(plans(node), [], "refused claims must not leave plans")
            after = link("eth1")
            for k in ("ifname", "mtu", "address", "operstate"):
                self.assertEqual(before.get(k), after.get(k), k)


if __name__ == "__main__":
    harness.main()
