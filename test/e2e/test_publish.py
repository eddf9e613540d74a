"""e2e (issue 3): knd-driver publishes this node's devices as ResourceSlices and keeps them."""

import os
import subprocess
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import Node, sh, wait_for  # noqa: E402

ONLY_TEST_LINKS = "include:\n  - ifName: \"eth?\"\n"  # eth1, not its peer eth1p


@harness.privileged
class PublishTest(unittest.TestCase):

    def test_slices_follow_links_and_come_back(self):
        with Node(with_runtime=False, with_kubelet=False) as node:
            node.veth("eth1")
            node.veth("eth2", mtu=9000)
            node.start_driver(config=ONLY_TEST_LINKS, wait_ready=False)

            devs = wait_for(lambda: (d := node.published_devices()) and
                            {"eth1", "eth2"} <= set(d) and d, what="eth1 and eth2 published")
            attrs = devs["eth2"]["attributes"]
            self.assertEqual(attrs["knd.k8s.cni.cncf.io/mtu"], {"int": 9000})
            self.assertEqual(attrs["knd.k8s.cni.cncf.io/ifName"], {"string": "eth2"})
            self.assertEqual(attrs["k8s.cni.cncf.io/deviceID"], {"string": "eth2"})
            self.assertNotIn("eth1p", devs, "node config include must limit the devices")
            s = node.slices()[0]
            self.assertEqual(s["spec"]["driver"], harness.DRIVER)
            self.assertEqual(s["spec"]["pool"]["name"], node.node_name)
            self.assertEqual(s["spec"]["nodeName"], node.node_name)
            owner = s["metadata"]["ownerReferences"][0]
            self.assertEqual((owner["kind"], owner["name"]), ("Node", node.node_name))

            # A new link shows up.
            node.veth("eth3")
            wait_for(lambda: "eth3" in node.published_devices(), what="eth3 published")

            # The kubelet wipes the node's slices at its start: they come back.
            sel = urllib.parse.quote(f"spec.nodeName={node.node_name}", safe="")
            node.api.call("DELETE", f"/apis/resource.k8s.io/v1/resourceslices?fieldSelector={sel}")
            wait_for(lambda: {"eth1", "eth2", "eth3"} <= set(node.published_devices()),
                     what="slices recreated after deletion")

    def test_an_interface_name_that_is_not_utf8_is_published_not_a_crash(self):
        """Interface names are bytes. A NIC renamed to a name that is not UTF-8 (in a pod, by
        a user, by a buggy tool) must not crash-loop the driver: it is published with the
        invalid bytes replaced (U+FFFD) and the driver keeps serving."""
        with Node(with_runtime=False, with_kubelet=False) as node:
            node.veth("eth1")
            node.start_driver(config='include:\n  - ifName: "e*"\n', wait_ready=False)
            wait_for(lambda: "eth1" in node.published_devices(), what="eth1 published")
            # iproute2 passes the name's bytes through; os.fsencode keeps them as they are.
            subprocess.run([b"ip", b"link", b"set", b"eth1", b"name", b"e\xffth1"], check=True)
            names = wait_for(lambda: (ds := node.published_devices()) and "eth1" not in ds and
                             [d["attributes"]["knd.k8s.cni.cncf.io/ifName"]["string"]
                              for d in ds.values()
                              if d["attributes"].get("knd.k8s.cni.cncf.io/ifName", {})
                              .get("string", "").startswith("e\ufffd")],
                             what="the renamed NIC published")
            self.assertEqual(names, ["e\ufffdth1"])
            self.assertTrue(node.driver.alive(), node.driver.tail())

    def test_300_devices_make_3_slices_of_one_generation(self):
        with Node(with_runtime=False, with_kubelet=False) as node:
            # 150 veth pairs = 300 links, all matching eth*.
            cmds = "".join(f"link add eth{i}a type veth peer name eth{i}b\n" for i in range(150))
            with open(os.path.join(node.tmp, "batch"), "w") as f:
                f.write(cmds)
            sh("ip", "-batch", os.path.join(node.tmp, "batch"))
            node.start_driver(config='include:\n  - ifName: "eth*"\n', wait_ready=False)

            def three_slices():
                s = node.slices()
                n = sum(len(x["spec"].get("devices", [])) for x in s)
                return s if n == 300 and len(s) == 3 else None
            slices = wait_for(three_slices, timeout=60, what="300 devices in 3 slices")
            gens = {x["spec"]["pool"]["generation"] for x in slices}
            counts = {x["spec"]["pool"]["resourceSliceCount"] for x in slices}
            self.assertEqual(len(gens), 1, f"one generation across the pool, got {gens}")
            self.assertEqual(counts, {3})
            for x in slices:
                self.assertLessEqual(len(x["spec"]["devices"]), 128)

    def test_idle_minute_makes_no_writes_and_outage_is_survived(self):
        with Node(with_runtime=False, with_kubelet=False) as node:
            node.veth("eth1")
            node.start_driver(config=ONLY_TEST_LINKS, wait_ready=False)
            wait_for(lambda: "eth1" in node.published_devices(), what="eth1 published")
            time.sleep(2)  # let the first publish settle
            node.api.post("/_knd/reset-stats", {})
            time.sleep(60)
            stats = node.api.get("/_knd/stats")
            self.assertEqual(stats["writesTotal"], 0, f"idle minute wrote: {stats}")

            # API outage; meanwhile the node changes; afterwards the slices are right.
            node.api.post("/_knd/outage?seconds=6", {})
            node.veth("eth2")
            sh("ip", "link", "del", "eth1")
            time.sleep(7)
            wait_for(lambda: set(node.published_devices()) >= {"eth2"} and
                     "eth1" not in node.published_devices(), timeout=60,
                     what="slices converge after the outage")
            self.assertTrue(node.driver.alive(), "driver must survive an API outage")


if __name__ == "__main__":
    harness.main()
