"""Real runtime (issue 14): knd-driver against a real containerd (2.1 or 1.7, KND_CONTAINERD) and
runc, driven through CRI by knd-cri as the kubelet drives it. What the stand-in runtime cannot
show: containerd's own order of CNI and NRI, its NRI timeouts, its sandbox records after a
failed RunPodSandbox, its restart recovery, and runc running knd's CDI hook."""

import contextlib
import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from containerd_node import VERSION, ContainerdNode  # noqa: E402

import harness  # noqa: E402
from harness import (HttpError, addresses, assert_comes_back, knd_config, link, metric, routes,
                     settled_host_state, sh, wait_for)  # noqa: E402

CNI_BIN = "/usr/lib/cni"
NODE_CONFIG = 'include:\n  - ifName: "eth*"\n'
NS = "team-a"
CONFIG = knd_config(interface={"name": "net-a", "mtu": 1400, "addresses": ["192.0.2.10/24"]},
                    routes=[{"destination": "198.51.100.0/24", "gateway": "192.0.2.1"}])


@harness.privileged
class ContainerdTest(unittest.TestCase):

    def setUp(self):
        self.node = ContainerdNode().__enter__()
        self.addCleanup(self.node.__exit__, None, None, None)
        n = self.node
        for name in ("eth1", "eth2"):
            n.veth(name)
        sh("ip", "addr", "add", "10.99.0.2/24", "dev", "eth1")
        self.before = {name: settled_host_state(name) for name in ("eth1", "eth2")}
        self.own_bin = harness.slow_host_device(n.tmp, CNI_BIN)  # beside Debian's plugins
        self.start_driver()
        wait_for(lambda: {"eth1", "eth2"} <= set(n.published_devices()), what="veths published")

    def start_driver(self):
        return self.node.start_driver(config=NODE_CONFIG,
                                      extra=["--cni-bin-dir", CNI_BIN, "--cni-bin-dir", self.own_bin])

    # ---- helpers ---------------------------------------------------------------------------
    def start_pod(self, name, device="eth1", config=CONFIG):
        n = self.node
        pod, claim = n.make_pod_with_claim(NS, name, f"claim-{name}", device, config)
        res = n.prepare(NS, name)["claims"][claim["metadata"]["uid"]]
        self.assertEqual(res.get("error", ""), "")
        return pod, claim, res["devices"][0]["cdiDeviceIds"]

    def assert_attached(self, pod, ifname="net-a", addr="192.0.2.10/24"):
        ns = self.node.pod_ns(pod)
        lk = link(ifname, ns=ns)
        self.assertIsNotNone(lk, f"{ifname} must be in the pod netns {ns}")
        self.assertIn(addr, addresses(ifname, ns=ns))
        return lk

    def assert_primary_network(self, pod):
        """The pod's own network (containerd's CNI: bridge + host-local) is untouched."""
        ns = self.node.pod_ns(pod)
        self.assertTrue(any(a.startswith("10.244.7.") for a in addresses("eth0", ns=ns)),
                        addresses("eth0", ns=ns))
        self.assertTrue(any(r.get("dst") == "default" for r in routes("eth0", ns=ns)))

    def assert_restored(self, name="eth1"):
        wait_for(lambda: link(name), timeout=10, what=f"{name} back on the host")
        assert_comes_back(self, name, self.before[name])

    def teardown_pod(self, pod, claim, device="eth1"):
        n = self.node
        n.stop_pod(pod)
        self.assert_restored(device)
        n.remove_pod(pod)
        un = n.unprepare(NS, pod["metadata"]["name"])["claims"][claim["metadata"]["uid"]]
        self.assertEqual(un.get("error", ""), "")

    def logs(self, name):
        return self.node.procs[name].tail(100000)

    # ---- 1. registration, configuration, synchronization -------------------------------------
    def test_registers_is_configured_and_synchronizes_with_live_pods(self):
        n = self.node
        text = n.driver_metrics()
        info = [line for line in text.splitlines() if line.startswith("knd_nri_runtime_info{")]
        self.assertEqual(len(info), 1, text)
        self.assertIn('runtime="containerd"', info[0])
        # "1.7.24~ds1", "2.1.9+unknown" (Debian's builds), "v2.2.6" (upstream's)
        self.assertRegex(info[0], f'version="v?{VERSION}[.]')
        self.assertTrue(info[0].endswith(" 1"), info[0])
        self.assertEqual(metric(text, "knd_nri_request_timeout_seconds"), 2.0)

        pod, claim, _ = self.start_pod("pod-a")
        self.assertEqual(n.run_pod(pod)[0], 200)
        self.assert_attached(pod)
        # A new driver learns of the running pod from containerd's Synchronize, not from a
        # RunPodSandbox: it keeps the device in the pod and gives it back when the pod stops.
        n.driver.stop()
        self.start_driver()
        self.assertIn("NRI: synchronized", self.logs("driver"))
        self.assert_attached(pod)
        self.teardown_pod(pod, claim)

    # ---- 2. attach through the real runtime ------------------------------------------------
    def test_native_attach_and_restore_beside_the_pods_own_network(self):
        n = self.node
        pod, claim, _ = self.start_pod("pod-a")
        code, body = n.run_pod(pod)
        self.assertEqual(code, 200, body)
        self.assertTrue(body["netns"].startswith("/var/run/netns/cni-") or
                        body["netns"].startswith("/run/netns/cni-"), body)
        lk = self.assert_attached(pod)
        self.assertEqual(lk["mtu"], 1400)
        dsts = {r["dst"]: r.get("gateway") for r in routes("net-a", ns=n.pod_ns(pod))}
        self.assertEqual(dsts.get("198.51.100.0/24"), "192.0.2.1")
        self.assertIsNone(link("eth1"), "the device left the host")
        self.assert_primary_network(pod)
        self.assertEqual(n.create_container(pod, "app")[0], 200)
        self.teardown_pod(pod, claim)

    def test_nad_backed_attach_through_a_cni_plugin(self):
        n = self.node
        with contextlib.suppress(HttpError):
            n.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        n.create({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
                  "metadata": {"name": "hd-net", "namespace": NS},
                  "spec": {"config": json.dumps({
                      "cniVersion": "1.0.0", "name": "hd-net", "plugins": [
                          {"type": "host-device",
                           "ipam": {"type": "static",
                                    "addresses": [{"address": "192.0.2.20/24"}]}}]})}})
        pod, claim, _ = self.start_pod("pod-nad", device="eth2", config=knd_config(
            interface={"name": "net1"}, cni={"networkAttachment": {"name": "hd-net"}}))
        self.assertEqual(n.run_pod(pod)[0], 200)
        self.assert_attached(pod, ifname="net1", addr="192.0.2.20/24")
        self.assert_primary_network(pod)
        self.teardown_pod(pod, claim, device="eth2")

    # ---- 3. the netns guard as a real CDI createRuntime hook in runc -------------------------
    def test_netns_guard_runs_in_runc(self):
        n = self.node
        pod, claim, ids = self.start_pod("pod-g")
        n.driver.kill9()  # no NRI plugin: containerd starts the sandbox without net-a
        self.assertEqual(n.run_pod(pod)[0], 200)
        self.assertIsNone(link("net-a", ns=n.pod_ns(pod)))
        code, body = n.create_container(pod, "app", ids, ok=None)
        self.assertEqual(code, 500, body)
        self.assertIn(f"claim {NS}/claim-pod-g", body["error"])
        self.assertIn("interface net-a is not in the pod's network namespace", body["error"])
        self.assertIsNotNone(link("eth1"), "the device never left the host")

        # The kubelet gives up on that sandbox; the next one gets knd's hook and its NIC, and
        # the same container now starts.
        n.stop_pod(pod)
        n.remove_pod(pod)
        self.start_driver()
        self.assertEqual(n.run_pod(pod)[0], 200)
        self.assert_attached(pod)
        code, body = n.create_container(pod, "app", ids)
        self.assertEqual(code, 200, body)
        st = n.cri("container-status", body["id"])
        self.assertEqual(st["state"], "CONTAINER_RUNNING", st)
        self.teardown_pod(pod, claim)

    # ---- 4. runtime restart with pods running ------------------------------------------------
    def test_runtime_restart_with_pods_running(self):
        n = self.node
        pod_a, claim_a, _ = self.start_pod("pod-a")
        self.assertEqual(n.run_pod(pod_a)[0], 200)
        self.assertEqual(n.create_container(pod_a, "app")[0], 200)
        n.restart_containerd()
        wait_for(n.nri_connected, timeout=30, what="knd reconnected to the new containerd")
        self.assert_attached(pod_a)
        self.assertEqual(metric(n.driver_metrics(), "knd_pod_netns_held"), 1.0)
        self.assertEqual([s["state"] for s in n.sandboxes()], ["SANDBOX_READY"])
        pod_b, claim_b, _ = self.start_pod("pod-b", device="eth2", config=knd_config(
            interface={"name": "net-b", "addresses": ["192.0.2.11/24"]}))
        self.assertEqual(n.run_pod(pod_b)[0], 200)
        self.assert_attached(pod_b, ifname="net-b", addr="192.0.2.11/24")
        # containerd sends no NRI StopPodSandbox for a sandbox it recovered after its restart
        # and deletes the netns: knd, holding the netns, returns the device from it.
        self.teardown_pod(pod_a, claim_a)
        self.assertIn("was deleted without a StopPodSandbox hook", self.logs("driver"))
        self.teardown_pod(pod_b, claim_b, device="eth2")
        self.assertEqual(metric(n.driver_metrics(), "knd_pod_netns_held"), 0.0)

    def test_a_pod_created_a_second_after_a_runtime_restart_gets_its_nic(self):
        """Issue 19: knd reconnects the moment containerd's NRI socket is back (inotify), so a
        pod the kubelet creates right after a runtime restart gets its NIC in RunPodSandbox."""
        n = self.node
        pod, claim, _ = self.start_pod("pod-r")
        n.restart_containerd()
        time.sleep(1)
        self.assertEqual(n.run_pod(pod)[0], 200)
        self.assert_attached(pod)
        self.assertLess(metric(n.driver_metrics(), "knd_nri_disconnected_seconds_total"), 5.0)
        self.teardown_pod(pod, claim)

    # ---- 5. knd killed around RunPodSandbox and StopPodSandbox -------------------------------
    def test_knd_killed_between_run_and_stop(self):
        n = self.node
        pod, claim, _ = self.start_pod("pod-a")
        self.assertEqual(n.run_pod(pod)[0], 200)
        n.driver.kill9()
        self.start_driver()
        self.assert_attached(pod)
        self.teardown_pod(pod, claim)
        self.assert_nothing_left()

    def test_knd_killed_during_run_pod_sandbox(self):
        """knd dies in the middle of an attach (its CNI chain is still running). containerd
        goes on without a plugin whose connection closed, so the sandbox starts without its NIC;
        the restarted knd finds the interrupted attach in its plan and completes it in the
        running sandbox, and the container the netns guard would have refused now starts."""
        n = self.node
        self._nad_slow()
        pod, claim, ids = self.start_pod("pod-k", config=knd_config(
            interface={"name": "net1"}, cni={"networkAttachment": {"name": "slow-net"}}))
        open(os.path.join(self.own_bin, "slow"), "w").close()
        killer = harness.Later(1.0, n.driver.kill9)
        code, body = n.run_pod(pod, ok=(200, 500))
        killer.join()
        self.assertEqual(code, 200, f"containerd starts the sandbox without a dead plugin: {body}")
        self.assertIsNone(link("net1", ns=n.pod_ns(pod)))
        self.assertIsNotNone(link("eth1"), "nothing was half moved")
        code, body = n.create_container(pod, "app", ids, ok=None)
        self.assertEqual(code, 500, "the netns guard refuses the container")
        self.assertIn(f"claim {NS}/claim-pod-k", body["error"])
        os.remove(os.path.join(self.own_bin, "slow"))
        self.start_driver()
        # The plugin moves the device first and adds its address after: wait for the whole
        # result, not the first sign of it.
        wait_for(lambda: link("net1", ns=n.pod_ns(pod)) and
                 "192.0.2.30/24" in addresses("net1", ns=n.pod_ns(pod)), timeout=20,
                 what="the interrupted attach completed in the running sandbox")
        # The kubelet retries the container in the same sandbox.
        code, body = n.create_container(pod, "app-2", ids)
        self.assertEqual(code, 200, body)
        self.assertEqual(len(n.sandboxes()), 1, n.sandboxes())
        self.teardown_pod(pod, claim)
        self.assert_nothing_left()

    def test_a_pod_started_while_knd_was_down_gets_its_nic_when_knd_is_back(self):
        n = self.node
        pod, claim, ids = self.start_pod("pod-late")
        n.driver.kill9()
        self.assertEqual(n.run_pod(pod)[0], 200)
        self.assertIsNone(link("net-a", ns=n.pod_ns(pod)))
        self.start_driver()
        wait_for(lambda: link("net-a", ns=n.pod_ns(pod)), timeout=20,
                 what="net-a attached to the running sandbox after knd's restart")
        self.assert_attached(pod)
        self.assertIn("runs without its devices", self.logs("driver"))
        code, body = n.create_container(pod, "app", ids)
        self.assertEqual(code, 200, body)
        self.teardown_pod(pod, claim)

    def test_knd_down_during_stop_pod_sandbox(self):
        """containerd stops the sandbox while knd is down: it deletes the pod netns without
        knd's hook. A veth dies with the netns (a physical NIC would come back to the host under
        its in-pod name: the VM lab's case); the restarted knd reports the device lost instead
        of publishing a ghost, and Unprepare cleans up all the rest."""
        n = self.node
        n.driver.stop()
        n.start_driver(config=NODE_CONFIG, extra=["--lost-device-grace", "1"])
        pod, claim, _ = self.start_pod("pod-s")
        self.assertEqual(n.run_pod(pod)[0], 200)
        n.driver.kill9()
        n.stop_pod(pod)
        n.start_driver(config=NODE_CONFIG, extra=["--lost-device-grace", "1"])
        wait_for(lambda: metric(n.driver_metrics(), "knd_devices_lost_total") == 1.0,
                 timeout=20, what="eth1 reported lost")
        wait_for(lambda: "eth1" not in n.published_devices(), what="eth1 withdrawn")
        n.remove_pod(pod)
        un = n.unprepare(NS, "pod-s")["claims"][claim["metadata"]["uid"]]
        self.assertEqual(un.get("error", ""), "")
        self.assertEqual(n.sandboxes(), [])
        self.assertEqual([f for f in os.listdir(n.cdi_dir) if f.endswith(".json")], [])
        self.assert_restored("eth2")

    def _nad_slow(self):
        with contextlib.suppress(HttpError):
            self.node.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        self.node.create({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
                          "metadata": {"name": "slow-net", "namespace": NS},
                          "spec": {"config": json.dumps({
                              "cniVersion": "1.0.0", "name": "slow-net", "plugins": [
                                  {"type": "slow-host-device", "device": "eth1",
                                   "ipam": {"type": "static",
                                            "addresses": [{"address": "192.0.2.30/24"}]}}]})}})

    def assert_nothing_left(self):
        """After every pod is gone: no sandbox, no plan, no CDI spec, every device home."""
        n = self.node
        self.assertEqual(n.sandboxes(), [])
        self.assertEqual([f for f in os.listdir(n.cdi_dir) if f.endswith(".json")], [])
        plans = os.path.join(n.state_dir, "plans")
        if os.path.isdir(plans):
            self.assertEqual(os.listdir(plans), [])
        for dev in ("eth1", "eth2"):
            self.assert_restored(dev)

    # ---- 6. a slow CNI chain: knd answers inside the runtime's NRI timeout --------------------
    def test_slow_cni_chain_is_answered_inside_the_nri_timeout_and_knd_stays(self):
        """knd's hook never outlives containerd's 2 s NRI timeout (containerd would drop knd).
        containerd 1.7 then fails the sandbox, and the kubelet's retry works. containerd 2.1.9
        must not see a failed RunPodSandbox: it keeps the failed sandbox's record, and after the
        retry it cannot restart at all (containerd#13609: "failed to recover state: failed to
        reserve sandbox name"; fixed in 2.2.6). There knd lets the sandbox start, the netns
        guard holds the container, and knd attaches the device once the plugin is quick."""
        n = self.node
        self._nad_slow()
        pod, claim, ids = self.start_pod("pod-slow", config=knd_config(
            interface={"name": "net1"}, cni={"networkAttachment": {"name": "slow-net"}}))
        open(os.path.join(self.own_bin, "slow"), "w").close()
        code, body = n.run_pod(pod, ok=(200, 500))
        self.assertTrue(n.nri_connected(), "knd answered in time: containerd kept it")
        self.assertNotIn('closing plugin', self.logs("containerd"))
        self.assertIsNotNone(link("eth1"), "the device is still on the node")
        defers = VERSION.startswith("2.")
        if defers:
            self.assertEqual(code, 200, body)
            self.assertEqual(metric(n.driver_metrics(), "knd_deferred_attach_pods"), 1.0)
            code, body = n.create_container(pod, "app", ids, ok=None)
            self.assertEqual(code, 500, "the netns guard holds the container")
            self.assertIn(f"claim {NS}/claim-pod-slow", body["error"])
            os.remove(os.path.join(self.own_bin, "slow"))
            wait_for(lambda: link("net1", ns=n.pod_ns(pod)), timeout=30,
                     what="the deferred attach done once the plugin is quick")
            wait_for(lambda: metric(n.driver_metrics(), "knd_deferred_attach_pods") == 0.0,
                     what="no deferred attach left")
            code, body = n.create_container(pod, "app-2", ids)  # the kubelet's next attempt
            self.assertEqual(code, 200, body)
        else:
            self.assertEqual(code, 500, f"the sandbox must fail, not start without net1: {body}")
            self.assertIn("request_timeout", json.dumps(body))
            self.assertEqual(n.sandboxes(), [], "containerd lists no sandbox of a failed run")
            os.remove(os.path.join(self.own_bin, "slow"))
            code, body = n.run_pod(pod)
            self.assertEqual(code, 200, body)
        self.assert_attached(pod, ifname="net1", addr="192.0.2.30/24")
        # Either way containerd can still restart, with one sandbox for the pod.
        n.restart_containerd()
        wait_for(n.nri_connected, timeout=30, what="knd reconnected to the new containerd")
        self.assertEqual([s["name"] for s in n.sandboxes()], ["pod-slow"])
        self.teardown_pod(pod, claim)

if __name__ == "__main__":
    harness.main()
