"""e2e (issue 6): claims attached through Debian's real CNI plugins (/usr/lib/cni) — a claim
naming a NetworkAttachmentDefinition (host-device + static, macvlan + host-local, bridge +
static) — and CNI
IPAM (host-local) for a native attachment: allocated in Prepare, released in Unprepare."""

import contextlib
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import HttpError, Node, addresses, knd_config, link, wait_for  # noqa: E402

CNI_BIN = "/usr/lib/cni"
NODE_CONFIG = 'include:\n  - ifName: "eth*"\n'
NS = "team-a"


def leases(data_dir, network):
    d = os.path.join(data_dir, network)
    if not os.path.isdir(d):
        return []
    return sorted(f for f in os.listdir(d) if f[0].isdigit())


@harness.privileged
@unittest.skipUnless(all(os.access(os.path.join(CNI_BIN, p), os.X_OK)
                         for p in ("host-device", "static", "macvlan", "host-local", "bridge")),
                     "needs Debian's containernetworking-plugins in /usr/lib/cni")
class CniTest(unittest.TestCase):

    def setUp(self):
        self.node = Node().__enter__()
        self.addCleanup(self.node.__exit__, None, None, None)
        n = self.node
        for name in ("eth1", "eth2", "eth3"):
            n.veth(name)
        self.ipam_dir = os.path.join(n.tmp, "ipam")
        self.own_bin = harness.slow_host_device(n.tmp, CNI_BIN)  # beside Debian's plugins
        self.driver_args = ["--cni-bin-dir", CNI_BIN, "--cni-bin-dir", self.own_bin]
        n.start_driver(config=NODE_CONFIG, extra=self.driver_args)
        wait_for(lambda: {"eth1", "eth2", "eth3"} <= set(n.published_devices()),
                 what="veths published")
        with contextlib.suppress(HttpError):
            n.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})

    def nad(self, name, config, ns=NS):
        self.node.create({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
                          "metadata": {"name": name, "namespace": ns},
                          "spec": {"config": json.dumps(config)}})

    def prepare(self, pod_name, device, config, class_config=None):
        n = self.node
        kw = {"class_name": "knd-ipam", "class_config": class_config} if class_config else {}
        pod, claim = n.make_pod_with_claim(NS, pod_name, f"claim-{pod_name}", device, config,
                                           **kw)
        res = n.prepare(NS, pod_name)["claims"][claim["metadata"]["uid"]]
        return pod, claim, res.get("error", "")

    def unprepare(self, pod, claim):
        un = self.node.unprepare(NS, pod["metadata"]["name"])["claims"][claim["metadata"]["uid"]]
        self.assertEqual(un.get("error", ""), "")

    def test_nad_host_device_with_static_ipam(self):
        self.nad("hd-net", {"cniVersion": "1.0.0", "name": "hd-net", "plugins": [
            {"type": "host-device",
             "ipam": {"type": "static", "addresses": [{"address": "192.0.2.20/24"}]}}]})
        pod, claim, err = self.prepare(
            "pod-hd", "eth1", knd_config(interface={"name": "net1"},
                                         cni={"networkAttachment": {"name": "hd-net"}}))
        self.assertEqual(err, "")
        code, body = self.node.run_pod(pod)
        self.assertEqual(code, 200, body)
        ns = self.node.pod_ns(pod)
        self.assertIsNotNone(link("net1", ns=ns), "host-device moved eth1 into the pod as net1")
        self.assertIn("192.0.2.20/24", addresses("net1", ns=ns))
        self.assertIsNone(link("eth1"), "the device left the node")
        self.node.stop_pod(pod)
        wait_for(lambda: link("eth1"), timeout=10, what="eth1 back on the node")
        self.assertIsNone(link("net1", ns=ns))
        self.node.remove_pod(pod)
        self.unprepare(pod, claim)
        self.assertIsNotNone(link("eth1"))

    def test_nad_macvlan_with_host_local_releases_the_lease(self):
        self.nad("mv-net", {"cniVersion": "1.0.0", "name": "mv-net", "plugins": [
            {"type": "macvlan", "master": "eth3", "mode": "bridge",
             "ipam": {"type": "host-local", "dataDir": self.ipam_dir,
                      "ranges": [[{"subnet": "10.88.0.0/24"}]]}}]})
        pod, claim, err = self.prepare(
            "pod-mv", "eth3", knd_config(interface={"name": "net1"},
                                         cni={"networkAttachment": {"name": "mv-net"}}))
        self.assertEqual(err, "")
        code, body = self.node.run_pod(pod)
        self.assertEqual(code, 200, body)
        ns = self.node.pod_ns(pod)
        got = [a for a in addresses("net1", ns=ns) if a.startswith("10.88.0.")]
        self.assertEqual(len(got), 1, addresses("net1", ns=ns))
        self.assertEqual(leases(self.ipam_dir, "mv-net"), [got[0].split("/")[0]])
        self.node.stop_pod(pod)
        self.assertIsNone(link("net1", ns=ns), "no leftover interface")
        self.assertEqual(leases(self.ipam_dir, "mv-net"), [], "host-local lease released")
        self.assertIsNotNone(link("eth3"), "the parent stays on the node")
        self.node.remove_pod(pod)
        self.unprepare(pod, claim)

    def test_nad_bridge_with_static_ipam(self):
        self.nad("br-net", {"cniVersion": "1.0.0", "name": "br-net", "plugins": [
            {"type": "bridge", "bridge": "kndbr0", "ipam": {
                "type": "static", "addresses": [{"address": "192.0.2.40/24"}]}}]})
        pod, claim, err = self.prepare(
            "pod-br", "eth2", knd_config(interface={"name": "net1"},
                                         cni={"networkAttachment": {"name": "br-net"}}))
        self.assertEqual(err, "")
        code, body = self.node.run_pod(pod)
        self.assertEqual(code, 200, body)
        ns = self.node.pod_ns(pod)
        self.assertIn("192.0.2.40/24", addresses("net1", ns=ns))
        bridge_ports = harness.ip_json("link", "show", "master", "kndbr0")
        self.assertEqual(len(bridge_ports), 1, "the pod's veth peer is on the bridge")
        self.node.stop_pod(pod)
        self.assertIsNone(link("net1", ns=ns), "no leftover interface in the pod")
        self.assertEqual(harness.ip_json("link", "show", "master", "kndbr0"), [],
                         "the host end of the veth went with the DEL")
        self.node.remove_pod(pod)
        self.unprepare(pod, claim)

    def test_a_slow_plugin_fails_the_pod_inside_the_runtimes_timeout(self):
        """The runtime drops a plugin whose hook outlives its request timeout (2 s here, the
        NRI default) and starts the pod without it. knd must fail the sandbox in time instead,
        stay connected, and leave nothing behind; the next try works once the plugin is quick."""
        n = self.node
        self.nad("slow-net", {"cniVersion": "1.0.0", "name": "slow-net", "plugins": [
            {"type": "slow-host-device", "device": "eth1",
             "ipam": {"type": "static", "addresses": [{"address": "192.0.2.30/24"}]}}]})
        pod, claim, err = self.prepare(
            "pod-slow", "eth1", knd_config(interface={"name": "net1"},
                                           cni={"networkAttachment": {"name": "slow-net"}}))
        self.assertEqual(err, "")
        open(os.path.join(self.own_bin, "slow"), "w").close()
        code, body = n.run_pod(pod, ok=(200, 500))
        self.assertEqual(code, 500, f"the sandbox must fail, not start without net1: {body}")
        self.assertIn("request_timeout", json.dumps(body))
        self.assertIn("knd", [pl.get("name") for pl in n.runtime.get("/plugins")],
                      "knd answered in time: the runtime did not drop it")
        self.assertIsNotNone(link("eth1"), "the device is still on the node")
        # The kubelet retries the sandbox; the plugin is quick again.
        os.remove(os.path.join(self.own_bin, "slow"))
        code, body = n.run_pod(pod)
        self.assertEqual(code, 200, body)
        self.assertIn("192.0.2.30/24", addresses("net1", ns=n.pod_ns(pod)))
        n.stop_pod(pod)
        wait_for(lambda: link("eth1"), timeout=10, what="eth1 back on the node")
        n.remove_pod(pod)
        self.unprepare(pod, claim)

    def test_missing_nad_is_a_claim_error(self):
        _, _, err = self.prepare("pod-x", "eth1", knd_config(
            cni={"networkAttachment": {"name": "no-such-net"}}))
        self.assertIn("claim team-a/claim-pod-x request \"nic\"", err)
        self.assertIn("NetworkAttachmentDefinition team-a/no-such-net", err)
        self.assertIn("does not exist", err)

    def test_nad_of_another_namespace_is_refused_for_a_claim(self):
        with contextlib.suppress(HttpError):
            self.node.create({"apiVersion": "v1", "kind": "Namespace",
                              "metadata": {"name": "team-b"}})
        self.nad("hd-net", {"cniVersion": "1.0.0", "name": "hd-net",
                            "plugins": [{"type": "host-device"}]}, ns="team-b")
        _, _, err = self.prepare("pod-y", "eth1", knd_config(
            cni={"networkAttachment": {"namespace": "team-b", "name": "hd-net"}}))
        self.assertIn("may only use NetworkAttachmentDefinitions of its own namespace", err)

    def test_ipam_host_local_for_a_native_attachment(self):
        ipam = {"type": "host-local", "dataDir": self.ipam_dir,
                "ranges": [[{"subnet": "10.66.0.0/24", "gateway": "10.66.0.1"}]]}
        # IPAM from the DeviceClass (a claim may not name the node's dataDir).
        pod, claim, err = self.prepare("pod-ipam", "eth2", knd_config(interface={"name": "net-a"}),
                                       class_config=knd_config(ipam=ipam))
        self.assertEqual(err, "")
        got = leases(self.ipam_dir, "knd")
        self.assertEqual(len(got), 1, "Prepare allocated one address")
        # Two Prepares (the second past the kubelet's claim cache, straight to the driver),
        # one address.
        res = self.node.prepare_claims([claim])["claims"][claim["metadata"]["uid"]]
        self.assertNotIn("cached", res)
        self.assertEqual(res.get("error", ""), "")
        self.assertEqual(leases(self.ipam_dir, "knd"), got)
        code, body = self.node.run_pod(pod)
        self.assertEqual(code, 200, body)
        ns = self.node.pod_ns(pod)
        self.assertIn(f"{got[0]}/24", addresses("net-a", ns=ns))
        self.node.stop_pod(pod)
        wait_for(lambda: link("eth2"), timeout=10, what="eth2 back on the node")
        self.assertEqual(leases(self.ipam_dir, "knd"), got, "the lease lives until Unprepare")
        self.node.remove_pod(pod)
        self.unprepare(pod, claim)
        self.assertEqual(leases(self.ipam_dir, "knd"), [], "Unprepare released the lease")

    def test_ipam_released_for_a_pod_that_vanished_while_knd_was_down(self):
        ipam = {"type": "host-local", "dataDir": self.ipam_dir,
                "ranges": [[{"subnet": "10.67.0.0/24"}]]}
        pod, claim, err = self.prepare("pod-gone", "eth2", knd_config(interface={"name": "net-a"}),
                                       class_config=knd_config(ipam=ipam))
        self.assertEqual(err, "")
        self.assertEqual(self.node.run_pod(pod)[0], 200)
        self.node.driver.kill9()
        self.node.stop_pod(pod, order="crio")  # the netns goes with no driver to hear it
        self.node.remove_pod(pod)
        self.node.start_driver(config=NODE_CONFIG, extra=self.driver_args)
        self.assertEqual(len(leases(self.ipam_dir, "knd")), 1)
        self.unprepare(pod, claim)
        self.assertEqual(leases(self.ipam_dir, "knd"), [])

    def test_a_claims_own_cni_and_ipam_run_only_where_the_node_allows_them(self):
        """CNI and IPAM plugins run as root on the node: a namespace user's claim may not
        bring its own unless the node config's claimCni names the types, and never with a
        path on the node. A refused claim runs nothing and leaves nothing."""
        n = self.node
        static = {"type": "static", "addresses": [{"address": "10.68.0.5/24"}]}
        inline = {"cniVersion": "1.0.0", "name": "own", "plugins": [
            {"type": "host-device", "ipam": static}]}
        _, _, err = self.prepare("pod-i1", "eth2", knd_config(interface={"name": "net-a"},
                                                              ipam=static))
        self.assertIn("ipam: may only be set in a DeviceClass config, not in a claim", err)
        _, _, err = self.prepare("pod-i2", "eth3", knd_config(cni={"config": inline}))
        self.assertIn("cni.config: may only be set in a DeviceClass config, not in a claim", err)
        self.assertEqual(os.listdir(os.path.join(n.state_dir, "plans"))
                         if os.path.isdir(os.path.join(n.state_dir, "plans")) else [], [],
                         "a refused claim leaves no plan")
        # The node allows host-device and static from claims.
        n.driver.stop()
        n.start_driver(config=NODE_CONFIG + "claimCni: {plugins: [host-device], ipam: [static]}\n",
                       extra=self.driver_args)
        pod, claim, err = self.prepare("pod-i3", "eth2", knd_config(interface={"name": "net-a"},
                                                                    ipam=static))
        self.assertEqual(err, "")
        self.assertEqual(n.run_pod(pod)[0], 200)
        self.assertIn("10.68.0.5/24", addresses("net-a", ns=n.pod_ns(pod)))
        bad = {"cniVersion": "1.0.0", "name": "own", "plugins": [
            {"type": "host-device", "ipam": {"type": "host-local", "dataDir": "/etc",
                                             "subnet": "10.69.0.0/24"}}]}
        _, _, err = self.prepare("pod-i4", "eth3", knd_config(cni={"config": bad}))
        self.assertIn('cni.config.plugins[0].ipam.type: "host-local" is not an IPAM type a claim '
                      'may use on this node', err)
        bridge = {"cniVersion": "1.0.0", "name": "own", "plugins": [{"type": "bridge"}]}
        _, _, err = self.prepare("pod-i5", "eth3", knd_config(cni={"config": bridge}))
        self.assertIn('"bridge" is not a CNI plugin a claim may use on this node', err)


if __name__ == "__main__":
    harness.main()
