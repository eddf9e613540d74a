"""e2e (issue 13): the device lifecycle on a node as the real kubelet and runtime drive it.

What the stand-ins model here comes from a real node (../shared/docs/wire-facts.md §9): the
kubelet deletes a pod from the API before it stops the sandbox and unprepares its claims, the
scheduler gives the device to the next claim meanwhile, the runtime stops sandboxes when it
gets to them, and containerd keeps a record of every RunPodSandbox an NRI plugin failed. So
every test checks `/sandboxes`: a failed sandbox must be the rare, real failure.
"""

import json
import os
import sys
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import DRIVER, Later, Node, addresses, knd_config, link, metric, wait_for  # noqa: E402

NS = "team-a"
CNI_BIN = "/usr/lib/cni"
NODE_CONFIG = ('include:\n  - ifName: "eth*"\n'
               'resourceNames:\n  - selector: {ifName: "eth1"}\n'
               '    resourceName: example.com/net_a\n')
CONFIG = knd_config(interface={"name": "net-a", "addresses": ["192.0.2.10/24"]})


@harness.privileged
class LifecycleTest(unittest.TestCase):

    def setUp(self):
        self.node = Node().__enter__()
        self.addCleanup(self.node.__exit__, None, None, None)
        n = self.node
        for name in ("eth1", "eth2"):
            n.veth(name)
        self.port = harness.free_port()
        self.start_driver()

    def start_driver(self, extra=()):
        n = self.node
        n.start_driver(config=NODE_CONFIG, extra=["--metrics-address", f"127.0.0.1:{self.port}",
                                                  "--cni-bin-dir", CNI_BIN, *extra])
        wait_for(lambda: {"eth1", "eth2"} <= set(n.published_devices()), what="veths published")

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return r.read().decode()

    def failed_sandboxes(self):
        return self.node.sandboxes()["failed"]

    def start(self, pod_name, claim_name, device="eth1", config=CONFIG, **kw):
        """A pod of this node with its claim allocated to `device`, prepared and running."""
        n = self.node
        pod, claim = n.make_pod_with_claim(NS, pod_name, claim_name, device, config, **kw)
        res = n.prepare(NS, pod_name)["claims"][claim["metadata"]["uid"]]
        self.assertEqual(res.get("error", ""), "")
        code, body = n.run_pod(pod)
        self.assertEqual(code, 200, body)
        return pod, claim

    def second_pod_of(self, claim_name):
        """Pod pod-b using claim `claim_name` too, and added to its reservedFor (a claim the
        scheduler shares)."""
        n = self.node
        pod = n.create({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": "pod-b", "namespace": NS},
                        "spec": {"nodeName": n.node_name,
                                 "containers": [{"name": "c", "image": "x"}],
                                 "resourceClaims": [{"name": "net",
                                                     "resourceClaimName": claim_name}]}})
        c = n.api.get(n.claim_path(NS, claim_name))
        c["status"]["reservedFor"].append({"resource": "pods", "name": "pod-b",
                                          "uid": pod["metadata"]["uid"]})
        n.api.put(n.claim_path(NS, claim_name) + "/status", c)
        return pod

    def test_churn_never_fails_a_sandbox(self):
        """Pods one after the other on one device, each deleted before the next is created (a
        Job, a rolling restart): the next pod's Prepare comes before the old sandbox is
        stopped. The device is handed over in Prepare; no RunPodSandbox fails, and the old
        pod's late StopPodSandbox and Unprepare leave the new pod's NIC alone."""
        n = self.node
        old_pod, old_claim = self.start("pod-0", "claim-0")
        for i in range(1, 4):
            n.delete_like_the_kubelet(old_pod, old_claim)
            pod, claim = n.make_pod_with_claim(NS, f"pod-{i}", f"claim-{i}", "eth1", CONFIG)
            # The old pod's teardown arrives later, on its own schedule.
            stop = Later(1.0, n.stop_pod, old_pod)
            unprepare = Later(2.0, n.unprepare, NS, old_pod["metadata"]["name"])
            res = n.prepare(NS, pod["metadata"]["name"])["claims"][claim["metadata"]["uid"]]
            self.assertEqual(res.get("error", ""), "", f"round {i}")
            code, body = n.run_pod(pod)
            self.assertEqual(code, 200, f"round {i}: {body}")
            stop.join()
            self.assertEqual(unprepare.join()["claims"][old_claim["metadata"]["uid"]]
                             .get("error", ""), "")
            ns = n.pod_ns(pod)
            self.assertIn("192.0.2.10/24", addresses("net-a", ns=ns),
                          f"round {i}: the new pod keeps its NIC through the old pod's teardown")
            old_pod, old_claim = pod, claim
        self.assertEqual(self.failed_sandboxes(), [])
        n.stop_pod(old_pod)
        wait_for(lambda: link("eth1"), timeout=10, what="eth1 back on the node")

    def test_a_deleted_pod_gives_its_device_back_before_its_sandbox_stops(self):
        n = self.node
        pod, claim = self.start("pod-0", "claim-0")
        self.assertIsNone(link("eth1"))
        n.delete_like_the_kubelet(pod, claim)
        wait_for(lambda: link("eth1"), timeout=10, what="eth1 home before StopPodSandbox")
        wait_for(lambda: metric(self.metrics(), "knd_devices_released_early_total") == 1.0,
                 timeout=5, what="counted as released early")
        # The late teardown has nothing left to do, and says so without failing.
        n.stop_pod(pod)
        un = n.unprepare(NS, "pod-0")["claims"][claim["metadata"]["uid"]]
        self.assertEqual(un.get("error", ""), "")
        self.assertEqual(os.listdir(os.path.join(n.state_dir, "plans")), [])

    def test_a_running_pod_keeps_its_device_whatever_its_claim_does(self):
        """Only the pod's end gives the device back early, never its claim's deletion alone."""
        n = self.node
        pod, claim = self.start("pod-0", "claim-0")
        n.api.delete(n.claim_path(NS, "claim-0"))
        time.sleep(1)
        self.assertIsNone(link("eth1"))
        self.assertIn("192.0.2.10/24", addresses("net-a", ns=n.pod_ns(pod)))
        self.assertEqual(metric(self.metrics(), "knd_devices_released_early_total"), 0.0)

    def test_prepare_waits_for_a_running_pod_to_stop(self):
        """The device is still in a pod that the API has not let go of yet (phase Running):
        Prepare never takes it, but waits until the pod's StopPodSandbox brings it home."""
        n = self.node
        old_pod, old_claim = self.start("pod-0", "claim-0")
        n.api.delete(n.claim_path(NS, "claim-0"))  # the claim is gone, the pod not yet
        pod, claim = n.make_pod_with_claim(NS, "pod-1", "claim-1", "eth1", CONFIG)
        stop = Later(1.0, n.stop_pod, old_pod)
        res = n.prepare(NS, "pod-1")["claims"][claim["metadata"]["uid"]]
        stop.join()
        self.assertEqual(res.get("error", ""), "")
        code, body = n.run_pod(pod)
        self.assertEqual(code, 200, body)
        self.assertEqual(self.failed_sandboxes(), [])

    def test_device_in_a_pod_that_does_not_stop_fails_prepare_not_the_sandbox(self):
        n = self.node
        n.procs["driver"].stop()
        self.start_driver(extra=["--device-return-wait", "0.5"])
        self.start("pod-0", "claim-0")
        pod, claim = n.make_pod_with_claim(NS, "pod-1", "claim-1", "eth1", CONFIG)
        res = n.prepare(NS, "pod-1")["claims"][claim["metadata"]["uid"]]
        self.assertIn('device "eth1": the device is still in pod team-a/pod-0 (claim '
                      'team-a/claim-0), which has not stopped', res.get("error", ""))
        # The kubelet creates no sandbox for a pod whose Prepare failed; nothing was written.
        plans = os.listdir(os.path.join(n.state_dir, "plans"))
        self.assertEqual(len(plans), 1, plans)
        self.assertEqual(self.failed_sandboxes(), [])

    def test_lost_device_is_withdrawn_reported_and_refused(self):
        """A veth that died with its pod's netns while the driver was down: withdrawn from the
        slice after the grace period, reported, and a claim that gets it anyway is refused in
        Prepare with the reason."""
        n = self.node
        pod, claim = self.start("pod-0", "claim-0")
        n.driver.kill9()
        harness.sh("ip", "netns", "delete", n.pod_ns(pod))  # the veth dies with it
        self.start_driver(extra=["--lost-device-grace", "1"])
        wait_for(lambda: "eth1" not in n.published_devices(), timeout=20,
                 what="the lost eth1 withdrawn from the ResourceSlice")
        self.assertIn("eth2", n.published_devices())
        self.assertEqual(metric(self.metrics(), "knd_devices_lost_total"), 1.0)
        events = n.api.get("/api/v1/namespaces/default/events").get("items", [])
        lost = [e for e in events if e["reason"] == "DeviceLost"]
        self.assertEqual(len(lost), 1, events)
        self.assertEqual(lost[0]["involvedObject"]["kind"], "Node")
        self.assertIn("device eth1 is lost", lost[0]["message"])
        # The kubelet hears it through the DRA health stream while a claim still has it.

        def eth1_health():
            for d in n.kubelet.get("/health").get(DRIVER, []):
                if d["device"] == "eth1":
                    return d
            return None
        h = wait_for(lambda: (d := eth1_health()) and d["health"] == "UNHEALTHY" and d,
                     timeout=10, what="eth1 unhealthy in the kubelet's health stream")
        self.assertIn("lost", h["message"])
        # A claim allocated to it (the scheduler saw it before it was withdrawn) is refused at
        # once, naming the device and why; no sandbox is ever tried.
        pod1, claim1 = n.make_pod_with_claim(NS, "pod-1", "claim-1", "eth1", CONFIG)
        res = n.prepare(NS, "pod-1")["claims"][claim1["metadata"]["uid"]]
        self.assertIn('device "eth1": the device is gone from node node1', res.get("error", ""))
        # The old pod's teardown finds nothing to give back and does not fail.
        n.stop_pod(pod)
        un = n.unprepare(NS, "pod-0")["claims"][claim["metadata"]["uid"]]
        self.assertEqual(un.get("error", ""), "")
        self.assertEqual(self.failed_sandboxes(), [])

    @unittest.skipUnless(os.access(os.path.join(CNI_BIN, "host-device"), os.X_OK),
                         "needs Debian's host-device plugin")
    def test_multus_hands_the_device_to_a_nad_and_knd_records_it(self):
        """Multus's DRA path: the runtime runs Multus (and the NAD's host-device) before knd's
        hook; knd finds the device in the pod, does not move it again, reports it, and leaves
        the teardown to Multus's CNI DEL."""
        n = self.node
        pod, claim = n.make_pod_with_claim(NS, "pod-m", "claim-m", "eth1",
                                           knd_config(attachedBy="multus"))
        # The pod asks Multus for the NAD; the harness's pod has no annotations yet.
        p = n.api.get(f"/api/v1/namespaces/{NS}/pods/pod-m")
        p["metadata"]["annotations"] = {"k8s.v1.cni.cncf.io/networks": "sriov-a@net1"}
        n.api.put(f"/api/v1/namespaces/{NS}/pods/pod-m", p)
        wait_for(lambda: n.prepare(NS, "pod-m")["claims"][claim["metadata"]["uid"]]
                 .get("error", "") == "", timeout=10, what="prepared (the pod watch has the "
                 "annotation)")
        ifindex = link("eth1")["ifindex"]
        # The NAD Multus found for the device's resourceName; the device goes in as net1.
        nad = {"cniVersion": "1.0.0", "name": "sriov-a", "plugins": [
            {"type": "host-device", "device": "eth1",
             "ipam": {"type": "static", "addresses": [{"address": "10.30.0.9/24"}]}}]}
        code, body = n.run_pod(pod, networks=[{"conflist": nad, "ifname": "net1"}])
        self.assertEqual(code, 200, body)
        ns = n.pod_ns(pod)
        net1 = link("net1", ns=ns)
        self.assertIsNotNone(net1, "host-device moved it in")
        self.assertEqual(net1["ifindex"], ifindex, "one move: the same device, not moved twice")
        self.assertIn("10.30.0.9/24", addresses("net1", ns=ns))
        plan = json.load(open(os.path.join(n.state_dir, "plans",
                                           claim["metadata"]["uid"] + ".json")))
        d = plan["devices"][0]
        self.assertEqual((d["state"], d.get("attachedBy")), ("Attached", "multus"))
        self.assertNotIn("host", d, "knd took no host snapshot: it did not move the device")

        def ready():
            c = n.api.get(n.claim_path(NS, "claim-m"))
            for e in c.get("status", {}).get("devices", []) or []:
                if e["driver"] == DRIVER and e.get("networkData", {}).get("interfaceName"):
                    return e
            return None
        e = wait_for(ready, what="claim status written")
        self.assertEqual(e["networkData"]["interfaceName"], "net1")
        self.assertIn("10.30.0.9/24", e["networkData"]["ips"])
        # Multus writes the NAD's network-status entry; knd adds none for the same interface.
        time.sleep(0.5)
        ann = n.api.get(f"/api/v1/namespaces/{NS}/pods/pod-m")["metadata"].get(
            "annotations", {}).get("k8s.v1.cni.cncf.io/network-status")
        self.assertIsNone(ann)
        # Stop (containerd order): knd's hook first, then Multus's DEL gives eth1 back.
        n.stop_pod(pod)
        wait_for(lambda: link("eth1"), timeout=10, what="eth1 back on the node")
        self.assertEqual(self.failed_sandboxes(), [])

    def test_a_second_pod_of_a_claim_is_refused_while_the_first_has_the_device(self):
        """A claim reserved for two pods. The kubelet prepares a claim once per node, so the
        second pod gets no Prepare: its RunPodSandbox is refused while the first pod has the
        device (the first keeps its NIC), and succeeds once the first has stopped."""
        n = self.node
        pod_a, claim = self.start("pod-a", "shared")
        pods_known = metric(self.metrics(), "knd_pod_cache_pods") or 0
        pod_b = self.second_pod_of("shared")
        res = n.prepare(NS, "pod-b")["claims"][claim["metadata"]["uid"]]
        self.assertTrue(res.get("cached"), "the kubelet does not prepare the claim again")
        wait_for(lambda: (metric(self.metrics(), "knd_pod_cache_pods") or 0) > pods_known,
                 timeout=10, what="the driver's pod watch sees pod-b")
        code, body = n.run_pod(pod_b, ok=(200, 500))
        self.assertEqual(code, 500, body)
        self.assertIn("claim team-a/shared device eth1 is in pod team-a/pod-a", body["error"])
        self.assertIn("192.0.2.10/24", addresses("net-a", ns=n.pod_ns(pod_a)),
                      "the first pod keeps its NIC")
        n.stop_pod(pod_a)
        n.remove_pod(pod_a)
        code, body = n.run_pod(pod_b)
        self.assertEqual(code, 200, body)
        self.assertIn("192.0.2.10/24", addresses("net-a", ns=n.pod_ns(pod_b)))
        self.assertEqual(len(self.failed_sandboxes()), 1, "only the refused one")

    def test_a_claim_reserved_for_two_running_pods_is_refused_in_prepare(self):
        n = self.node
        _, claim = n.make_pod_with_claim(NS, "pod-a", "shared", "eth1", CONFIG)
        self.second_pod_of("shared")
        res = n.prepare(NS, "pod-a")["claims"][claim["metadata"]["uid"]]
        self.assertIn("status.reservedFor has 2 running pods (team-a/pod-a, team-a/pod-b)",
                      res.get("error", ""))
        self.assertEqual(os.listdir(os.path.join(n.state_dir, "plans")), [])

    @unittest.skipUnless(os.access(os.path.join(CNI_BIN, "host-device"), os.X_OK),
                         "needs Debian's host-device plugin")
    def test_nad_attach_gives_the_device_back_as_it_was(self):
        """host-device's DEL gives a device back down; knd restores what it had on the host."""
        n = self.node
        harness.sh("ip", "link", "set", "eth2", "mtu", "1400")
        harness.sh("ip", "addr", "add", "10.77.0.2/24", "dev", "eth2")
        n.create({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
                  "metadata": {"name": "hd", "namespace": NS},
                  "spec": {"config": json.dumps({"cniVersion": "1.0.0", "name": "hd", "plugins": [
                      {"type": "host-device",
                       "ipam": {"type": "static",
                                "addresses": [{"address": "10.30.0.9/24"}]}}]})}})
        pod, _ = self.start("pod-n", "claim-n", device="eth2",
                            config=knd_config(interface={"name": "net1"},
                                              cni={"networkAttachment": {"name": "hd"}}))
        self.assertIsNone(link("eth2"))
        n.stop_pod(pod)
        eth2 = wait_for(lambda: link("eth2"), timeout=10, what="eth2 back on the node")
        self.assertIn("UP", eth2["flags"])
        self.assertEqual(eth2["mtu"], 1400)
        self.assertIn("10.77.0.2/24", addresses("eth2"))


if __name__ == "__main__":
    harness.main()
