"""e2e (issues 6, 7): what knd tells the API about its work.

- After an attach the claim's status.devices[] holds knd's entry (Ready=True, networkData)
  while another driver's entry in the same claim survives; it is cleared when the pod stops.
- The pod's k8s.v1.cni.cncf.io/network-status gets knd's entries next to Multus's, which are
  kept when knd adds and later removes its own.
- A claim knd refuses (bad config) gives a Prepare error and a Warning Event on the claim; an
  attach that fails gives Ready=False and Warning Events on the pod and the claim.
- /metrics shows the counts; /readyz flips when the runtime goes away.
"""

import json
import os
import sys
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import DRIVER, Node, knd_config, link, metric, sh, wait_for  # noqa: E402

NS = "team-a"
NODE_CONFIG = 'include:\n  - ifName: "eth*"\n'
OTHER = "gpu.example.com"
NET_STATUS = "k8s.v1.cni.cncf.io/network-status"
MULTUS_ENTRY = {"name": "ovn-kubernetes", "interface": "eth0", "ips": ["10.128.0.5"],
                "mac": "0a:58:0a:80:00:05", "default": True, "dns": {}}


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@harness.privileged
class StatusTest(unittest.TestCase):

    def setUp(self):
        self.node = Node().__enter__()
        self.addCleanup(self.node.__exit__, None, None, None)
        n = self.node
        for name in ("eth1", "eth2"):
            n.veth(name)
        self.port = harness.free_port()
        n.start_driver(config=NODE_CONFIG, extra=["--metrics-address", f"127.0.0.1:{self.port}"])
        wait_for(lambda: {"eth1", "eth2"} <= set(n.published_devices()), what="veths published")

    def metrics(self):
        code, body = http_get(f"http://127.0.0.1:{self.port}/metrics")
        self.assertEqual(code, 200)
        return body

    # ---- helpers --------------------------------------------------------------------------
    def claim(self, name):
        return self.node.api.get(self.node.claim_path(NS, name))

    def pod(self, name):
        return self.node.api.get(f"/api/v1/namespaces/{NS}/pods/{name}")

    def entries(self, claim_name, driver=DRIVER):
        return [d for d in self.claim(claim_name).get("status", {}).get("devices", []) or []
                if d["driver"] == driver]

    def network_status(self, pod_name):
        ann = self.pod(pod_name)["metadata"].get("annotations", {}).get(NET_STATUS)
        return json.loads(ann) if ann else []

    def events(self, kind, name, reason=None):
        items = self.node.api.get(f"/api/v1/namespaces/{NS}/events").get("items", [])
        return [e for e in items if e["involvedObject"]["kind"] == kind and
                e["involvedObject"]["name"] == name and (reason is None or e["reason"] == reason)]

    def add_other_driver(self, claim_name):
        """Allocates a device of another driver in the claim and lets that driver write its own
        status entry with server-side apply, as a GPU driver would."""
        path = self.node.claim_path(NS, claim_name)
        c = self.claim(claim_name)
        c["status"]["allocation"]["devices"]["results"].append(
            {"request": "gpu", "driver": OTHER, "pool": "node1", "device": "gpu-0"})
        self.node.api.put(path + "/status", c)
        body = {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
                "metadata": {"name": claim_name, "namespace": NS},
                "status": {"devices": [{
                    "driver": OTHER, "pool": "node1", "device": "gpu-0",
                    "conditions": [{"type": "Ready", "status": "True", "reason": "Healthy",
                                    "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                    "data": {"uuid": "GPU-1234"}}]}}
        self.node.api.call("PATCH", path + f"/status?fieldManager={OTHER}&force=true",
                           body, content_type="application/apply-patch+yaml")

    # ---- tests ----------------------------------------------------------------------------
    def test_attach_writes_status_and_network_status_and_keeps_others(self):
        n = self.node
        pod, claim = n.make_pod_with_claim(
            NS, "pod-a", "claim-a", "eth1",
            knd_config(interface={"name": "net1", "mtu": 1400, "addresses": ["192.0.2.10/24"]}))
        res = n.prepare(NS, "pod-a")["claims"][claim["metadata"]["uid"]]
        self.assertEqual(res.get("error", ""), "")
        # Another driver's device in the same claim has its status entry before knd writes.
        # (Added after Prepare: the stand-in kubelet, like the real one, would otherwise want
        # to call that driver too.)
        self.add_other_driver("claim-a")
        # Multus was here first: the pod's default network.
        n.api.merge_patch(f"/api/v1/namespaces/{NS}/pods/pod-a",
                          {"metadata": {"annotations": {NET_STATUS: json.dumps([MULTUS_ENTRY])}}})
        code, body = n.run_pod(pod)
        self.assertEqual(code, 200, body)
        mac = link("net1", ns=n.pod_ns(pod))["address"]

        ours = wait_for(lambda: [e for e in self.entries("claim-a")
                                 if e.get("networkData")] or None, what="knd status entry")
        self.assertEqual(len(ours), 1)
        e = ours[0]
        self.assertEqual((e["pool"], e["device"]), ("node1", "eth1"))
        ready = {c["type"]: c for c in e["conditions"]}["Ready"]
        self.assertEqual((ready["status"], ready["reason"]), ("True", "Attached"))
        self.assertEqual(e["networkData"], {"interfaceName": "net1", "ips": ["192.0.2.10/24"],
                                            "hardwareAddress": mac})
        other = self.entries("claim-a", OTHER)
        self.assertEqual(len(other), 1, "the other driver's entry survives knd's apply")
        self.assertEqual(other[0]["data"], {"uuid": "GPU-1234"})

        ns_list = wait_for(lambda: self.network_status("pod-a")
                           if len(self.network_status("pod-a")) == 2 else None,
                           what="knd entry in network-status")
        self.assertEqual(ns_list[0], MULTUS_ENTRY, "Multus's entry is kept as it was, first")
        mine = ns_list[1]
        self.assertEqual(mine["name"], f"{NS}/claim-a/nic")
        self.assertEqual(mine["interface"], "net1")
        self.assertEqual(mine["ips"], ["192.0.2.10"])
        self.assertEqual(mine["mac"], mac)
        self.assertEqual(mine["mtu"], 1400)
        self.assertEqual(mine["knd.k8s.cni.cncf.io/attachment"], f"{NS}/claim-a")

        wait_for(lambda: self.events("Pod", "pod-a", "Attached"), what="Attached event")
        m = wait_for(lambda: (lambda t: t if metric(t, "knd_attachments_total", op="attach",
                                                    mode="native", outcome="success") else None)(
            self.metrics()), what="attach counted")
        self.assertEqual(metric(m, "knd_attachments_total", op="attach", mode="native",
                                outcome="success"), 1)
        self.assertEqual(metric(m, "knd_dra_claims_total", method="NodePrepareResources",
                                outcome="success"), 1)
        self.assertEqual(metric(m, "knd_attached_devices"), 1)
        self.assertGreaterEqual(metric(m, "knd_published_devices"), 2)
        self.assertIsNotNone(metric(m, "knd_nri_hook_duration_seconds_count",
                                    event="RunPodSandbox", outcome="success"))

        n.stop_pod(pod)
        wait_for(lambda: not self.entries("claim-a"), what="knd entry cleared after the stop")
        self.assertEqual(len(self.entries("claim-a", OTHER)), 1)
        wait_for(lambda: self.network_status("pod-a") == [MULTUS_ENTRY],
                 what="knd entry removed from network-status, Multus's kept")
        n.remove_pod(pod)
        un = n.unprepare(NS, "pod-a")["claims"][claim["metadata"]["uid"]]
        self.assertEqual(un.get("error", ""), "")

    def test_bad_config_is_a_prepare_error_and_a_warning_event(self):
        n = self.node
        _, claim = n.make_pod_with_claim(NS, "pod-b", "claim-b", "eth1",
                                         knd_config(interface={"mtu": "big"}))
        res = n.prepare(NS, "pod-b")["claims"][claim["metadata"]["uid"]]
        self.assertIn("claim team-a/claim-b", res.get("error", ""))
        self.assertIn("interface.mtu", res["error"])
        ev = wait_for(lambda: self.events("ResourceClaim", "claim-b", "InvalidConfig"),
                      what="InvalidConfig event on the claim")
        self.assertEqual(ev[0]["type"], "Warning")
        self.assertIn("interface.mtu", ev[0]["message"])
        self.assertEqual(ev[0]["involvedObject"]["uid"], claim["metadata"]["uid"])
        # The kubelet retries: the same event is counted, not repeated.
        n.prepare(NS, "pod-b")
        wait_for(lambda: self.events("ResourceClaim", "claim-b", "InvalidConfig")[0]
                 .get("count", 1) >= 2, what="repeat folded into count")
        self.assertEqual(len(self.events("ResourceClaim", "claim-b", "InvalidConfig")), 1)
        m = self.metrics()
        self.assertEqual(metric(m, "knd_dra_claims_total", method="NodePrepareResources",
                                outcome="error"), 2)

    def test_failed_attach_sets_ready_false_and_warns_pod_and_claim(self):
        n = self.node
        pod, claim = n.make_pod_with_claim(NS, "pod-c", "claim-c", "eth2",
                                           knd_config(interface={"name": "net1"}))
        res = n.prepare(NS, "pod-c")["claims"][claim["metadata"]["uid"]]
        self.assertEqual(res.get("error", ""), "")
        sh("ip", "link", "del", "eth2")  # the NIC vanishes between Prepare and the pod start
        code, _ = n.run_pod(pod, ok=(200, 500))
        self.assertEqual(code, 500, "the runtime fails the sandbox")
        e = wait_for(lambda: self.entries("claim-c") or None, what="knd status entry")[0]
        ready = {c["type"]: c for c in e["conditions"]}["Ready"]
        self.assertEqual((ready["status"], ready["reason"]), ("False", "AttachFailed"))
        self.assertIn("eth2", ready["message"])
        self.assertNotIn("networkData", e)
        for kind, name in (("Pod", "pod-c"), ("ResourceClaim", "claim-c")):
            ev = wait_for(lambda: self.events(kind, name, "AttachFailed"),
                          what=f"AttachFailed event on the {kind}")
            self.assertEqual(ev[0]["type"], "Warning")
            self.assertIn("claim team-a/claim-c", ev[0]["message"])
            # Said once: the event is on the pod and the claim already.
            self.assertEqual(ev[0]["message"].count("claim team-a/claim-c"), 1, ev[0]["message"])
            self.assertEqual(ev[0]["message"].count('device "eth2"') +
                             ev[0]["message"].count("device eth2"), 1, ev[0]["message"])

    def kndctl_status(self):
        out = sh(harness.binary("kndctl"), "status", "--state-dir", self.node.state_dir,
                 "-o", "json")
        return json.loads(out)["devices"]

    def test_kndctl_status_matches_reality_and_sees_a_device_moved_away(self):
        n = self.node
        pod, claim = n.make_pod_with_claim(NS, "pod-d", "claim-d", "eth1",
                                           knd_config(interface={"name": "net1"}))
        self.assertEqual(n.prepare(NS, "pod-d")["claims"][claim["metadata"]["uid"]]
                         .get("error", ""), "")
        rows = self.kndctl_status()
        self.assertEqual(len(rows), 1)
        self.assertEqual(rows[0]["state"], "Prepared")
        self.assertEqual(n.run_pod(pod)[0], 200)
        rows = self.kndctl_status()
        self.assertEqual((rows[0]["state"], rows[0]["live"]["status"]), ("Attached", "ok"),
                         rows)
        self.assertEqual(rows[0]["pod"]["name"], "pod-d")
        # Someone moves the NIC out of the pod behind knd's back.
        sh("ip", "-n", n.pod_ns(pod), "link", "set", "net1", "netns", n.netns)
        rows = self.kndctl_status()
        self.assertNotEqual(rows[0]["live"]["status"], "ok", rows)
        self.assertIn("on the host as net1", rows[0]["live"]["detail"])
        # knd still gives it back intact when the pod stops.
        n.stop_pod(pod)
        wait_for(lambda: link("eth1"), timeout=10, what="eth1 restored under its name")
        self.assertIsNone(link("net1"))
        n.remove_pod(pod)
        self.assertEqual(n.unprepare(NS, "pod-d")["claims"][claim["metadata"]["uid"]]
                         .get("error", ""), "")
        self.assertEqual(self.kndctl_status(), [])

    def test_status_unwritten_at_a_stop_is_written_after_the_restart(self):
        n = self.node
        pod, claim = n.make_pod_with_claim(NS, "pod-e", "claim-e", "eth2",
                                           knd_config(interface={"name": "net1"}))
        uid = claim["metadata"]["uid"]
        self.assertEqual(n.prepare(NS, "pod-e")["claims"][uid].get("error", ""), "")
        # The API server goes away; the attach does not need it.
        n.api.post("/_knd/outage?seconds=4", {})
        self.assertEqual(n.run_pod(pod)[0], 200)
        n.driver.stop()  # SIGTERM while the status write is failing
        marker = os.path.join(n.state_dir, "status-unwritten.json")
        with open(marker) as f:
            self.assertEqual(json.load(f), {"version": 1, "claims": [uid]})
        n.start_driver(config=NODE_CONFIG,
                       extra=["--metrics-address", f"127.0.0.1:{self.port}"])
        e = wait_for(lambda: [x for x in self.entries("claim-e") if x.get("networkData")] or None,
                     timeout=30, what="status written by the restarted driver")[0]
        self.assertEqual(e["networkData"]["interfaceName"], "net1")
        self.assertFalse(os.path.exists(marker), "the record is consumed at start")
        n.driver.stop()
        with open(marker) as f:
            self.assertEqual(json.load(f), {"version": 1, "claims": []},
                             "a clean stop with nothing unwritten")

    def test_readyz_follows_the_runtime_connection(self):
        wait_for(lambda: http_get(f"http://127.0.0.1:{self.port}/readyz")[0] == 200,
                 what="ready")
        self.node.procs["runtime"].stop()
        code, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(
            http_get(f"http://127.0.0.1:{self.port}/readyz")), what="not ready without runtime")
        self.assertIn("runtime", body)
        self.assertEqual(metric(self.metrics(), "knd_nri_connected"), 0)
        self.node.start_runtime()
        wait_for(lambda: http_get(f"http://127.0.0.1:{self.port}/readyz")[0] == 200,
                 timeout=30, what="ready again after the runtime is back")


if __name__ == "__main__":
    harness.main()
