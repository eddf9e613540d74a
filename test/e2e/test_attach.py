"""e2e (issue 5): a pod's claimed device is moved into its netns when the runtime creates the
sandbox, configured, and given back intact when the pod stops — through kill -9 of the driver
and the CRI-O stop order."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import Node, addresses, assert_comes_back, link, routes, settled_host_state, sh, wait_for  # noqa: E402

CONFIG = {"apiVersion": "knd.k8s.cni.cncf.io/v1alpha1", "kind": "NetworkConfig",
          "interface": {"name": "net-a", "mtu": 1400,
                        "addresses": ["192.0.2.10/24", "2001:db8::10/64"]},
          "routes": [{"destination": "198.51.100.0/24", "gateway": "192.0.2.1"},
                     {"destination": "203.0.113.0/24"}]}
NODE_CONFIG = 'include:\n  - ifName: "eth*"\n'


@harness.privileged
class AttachTest(unittest.TestCase):

    def setUp(self):
        self.node = Node().__enter__()
        self.addCleanup(self.node.__exit__, None, None, None)
        n = self.node
        n.veth("eth1", mtu=1500)
        sh("ip", "addr", "add", "10.99.0.2/24", "dev", "eth1")
        self.before = settled_host_state("eth1")
        n.start_driver(config=NODE_CONFIG)
        wait_for(lambda: "eth1" in n.published_devices(), what="eth1 published")

    def start_pod(self, name="pod-a", config=CONFIG):
        n = self.node
        pod, claim = n.make_pod_with_claim("team-a", name, f"claim-{name}", "eth1", config)
        res = n.prepare("team-a", name)["claims"][claim["metadata"]["uid"]]
        self.assertEqual(res.get("error", ""), "")
        return pod, claim

    def assert_attached(self, pod):
        ns = self.node.pod_ns(pod)
        lk = link("net-a", ns=ns)
        self.assertIsNotNone(lk, "net-a must exist in the pod netns")
        self.assertEqual(lk["mtu"], 1400)
        addrs = addresses("net-a", ns=ns)
        self.assertIn("192.0.2.10/24", addrs)
        self.assertIn("2001:db8::10/64", addrs)
        dsts = {r["dst"]: r.get("gateway") for r in routes("net-a", ns=ns)}
        self.assertEqual(dsts.get("198.51.100.0/24"), "192.0.2.1")
        self.assertIn("203.0.113.0/24", dsts)
        self.assertIsNone(link("eth1"), "the device left the host")

    def assert_restored(self):
        lk = wait_for(lambda: link("eth1"), timeout=10, what="eth1 back on the host")
        self.assertIsNotNone(lk)
        assert_comes_back(self, "eth1", self.before)

    def test_attach_detach_containerd_order(self):
        pod, claim = self.start_pod()
        code, body = self.node.run_pod(pod)
        self.assertEqual(code, 200, body)
        self.assert_attached(pod)
        self.node.stop_pod(pod, order="containerd")
        self.assert_restored()
        self.node.remove_pod(pod)
        un = self.node.unprepare("team-a", "pod-a")["claims"][claim["metadata"]["uid"]]
        self.assertEqual(un.get("error", ""), "")
        self.assert_restored()

    def test_crio_order_with_kernel_refund(self):
        # CRI-O deletes the netns before StopPodSandbox. For a physical NIC the kernel then
        # moves it back to the host as "dev<ifindex>"; veth would be destroyed instead, so the
        # test performs the kernel's refund itself before the netns goes.
        pod, _ = self.start_pod()
        self.assertEqual(self.node.run_pod(pod)[0], 200)
        self.assert_attached(pod)
        ns = self.node.pod_ns(pod)
        idx = link("net-a", ns=ns)["ifindex"]
        sh("ip", "-n", ns, "link", "set", "net-a", "netns", self.node.netns, "name", f"dev{idx}")
        self.node.stop_pod(pod, order="crio")
        self.assert_restored()
        self.assertIsNone(link(f"dev{idx}"))

    def test_crio_order_virtual_device_destroyed(self):
        pod, claim = self.start_pod()
        self.assertEqual(self.node.run_pod(pod)[0], 200)
        self.node.stop_pod(pod, order="crio")  # veth dies with the netns
        self.node.remove_pod(pod)
        un = self.node.unprepare("team-a", "pod-a")["claims"][claim["metadata"]["uid"]]
        self.assertEqual(un.get("error", ""), "", "a destroyed virtual device must not wedge "
                         "Unprepare")
        self.assertTrue(self.node.driver.alive())

    def test_kill9_between_prepare_and_run(self):
        pod, _ = self.start_pod()
        self.node.driver.kill9()
        self.node.start_driver(config=NODE_CONFIG)
        self.assertEqual(self.node.run_pod(pod)[0], 200)
        self.assert_attached(pod)
        self.node.stop_pod(pod)
        self.assert_restored()

    def test_kill9_between_run_and_stop(self):
        pod, _ = self.start_pod()
        self.assertEqual(self.node.run_pod(pod)[0], 200)
        self.node.driver.kill9()
        self.node.start_driver(config=NODE_CONFIG)
        # The pod still runs: reconcile after the restart must leave its device alone.
        self.assert_attached(pod)
        self.node.stop_pod(pod)
        self.assert_restored()

    def test_pod_stopped_while_driver_down(self):
        pod, _ = self.start_pod()
        self.assertEqual(self.node.run_pod(pod)[0], 200)
        ns = self.node.pod_ns(pod)
        idx = link("net-a", ns=ns)["ifindex"]
        self.node.driver.kill9()
        # Like a physical NIC whose netns went away with no driver to hear about it.
        sh("ip", "-n", ns, "link", "set", "net-a", "netns", self.node.netns, "name", f"dev{idx}")
        self.node.stop_pod(pod, order="crio")
        self.node.remove_pod(pod)
        self.node.start_driver(config=NODE_CONFIG)
        self.assert_restored()

    def test_netns_guard_refuses_containers_of_a_pod_started_without_its_nic(self):
        """The runtime starts a pod without knd's hook when knd is not connected (crashed, or
        dropped for being slow). The claim's CDI device carries knd-netns-guard: the pod's
        containers then fail to be created, naming the claim, instead of running without the
        network; with the hook in place they are created."""
        n = self.node
        pod, claim = n.make_pod_with_claim("team-a", "pod-g", "claim-g", "eth1", CONFIG)
        res = n.prepare("team-a", "pod-g")["claims"][claim["metadata"]["uid"]]
        self.assertEqual(res.get("error", ""), "")
        ids = res["devices"][0]["cdiDeviceIds"]
        self.assertEqual(ids, [f"knd.k8s.cni.cncf.io/net={claim['metadata']['uid']}-netns"])

        n.driver.kill9()  # no NRI plugin: the sandbox starts without net-a
        self.assertEqual(n.run_pod(pod)[0], 200)
        code, body = n.create_container(pod, "app", ids, ok=None)
        self.assertEqual(code, 500, body)
        self.assertIn("claim team-a/claim-g", body["error"])
        self.assertIn("interface net-a is not in the pod's network namespace", body["error"])
        self.assertIsNotNone(link("eth1"), "the device never left the host")

        # The kubelet gives up on that sandbox; the next one gets knd's hook and its NIC.
        n.stop_pod(pod)
        n.remove_pod(pod)
        n.start_driver(config=NODE_CONFIG)
        self.assertEqual(n.run_pod(pod)[0], 200)
        self.assert_attached(pod)
        code, body = n.create_container(pod, "app", ids)
        self.assertEqual(code, 200, body)
        n.stop_pod(pod)
        self.assert_restored()

    def test_failing_route_rolls_back(self):
        bad = dict(CONFIG, routes=[{"destination": "198.51.100.0/24", "gateway": "10.250.0.1"}])
        pod, _ = self.start_pod(config=bad)
        code, body = self.node.run_pod(pod, ok=None)
        self.assertNotEqual(code, 200)
        self.assertIn("route", str(body))
        self.assert_restored()


if __name__ == "__main__":
    harness.main()
