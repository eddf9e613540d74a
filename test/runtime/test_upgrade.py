"""Upgrade (issue 14, scenario 7), against a real containerd (KND_CONTAINERD) and runc: the
previous release's knd-driver runs a pod with a NIC; the new binary takes over its state
directory; the pod keeps its NIC, the ResourceSlice still shows the device as it was, and the
teardown restores the host. A state the new binary cannot read (a format version it does not
know) makes it refuse to start, naming the file and the version, and touch nothing.

There are no release binaries to run: the previous release's state is its files,
test/runtime/golden/v1 (see the README there), installed in place of what the current driver
wrote for the same pod, with the live values (claim and pod UID, netns, ifindex, MAC) filled in.
"""

import json
import os
import shutil
import sys
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from containerd_node import ContainerdNode  # noqa: E402

import harness  # noqa: E402
from harness import addresses, assert_comes_back, knd_config, link, routes, settled_host_state, sh, wait_for  # noqa: E402

CNI_BIN = "/usr/lib/cni"
NODE_CONFIG = 'include:\n  - ifName: "eth*"\n'
NS = "team-a"
POD = "pod-a"
CLAIM = "claim-pod-a"
# The golden files describe exactly this pod (test/runtime/golden/v1/README.md).
CONFIG = knd_config(interface={"name": "net-a", "mtu": 1400, "addresses": ["192.0.2.10/24"]},
                    routes=[{"destination": "198.51.100.0/24", "gateway": "192.0.2.1"}])
GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "v1")


def fill(value, subs):
    """The golden file's JSON with its placeholders replaced: a string that is exactly a
    placeholder of a number becomes the number; other placeholders are replaced in strings."""
    if isinstance(value, dict):
        return {fill(k, subs): fill(v, subs) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, subs) for v in value]
    if isinstance(value, str):
        if value in subs and not isinstance(subs[value], str):
            return subs[value]
        for k, v in subs.items():
            value = value.replace(k, str(v))
    return value


def tree(d):
    """Every file under d (relative path -> bytes)."""
    out = {}
    for root, _, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, d)] = fh.read()
    return out


@harness.privileged
class UpgradeTest(unittest.TestCase):

    def setUp(self):
        self.node = ContainerdNode().__enter__()
        self.addCleanup(self.node.__exit__, None, None, None)
        n = self.node
        n.veth("eth1")
        sh("ip", "addr", "add", "10.99.0.2/24", "dev", "eth1")
        self.before = settled_host_state("eth1")
        lk = link("eth1")
        self.ifindex, self.mac = lk["ifindex"], lk["address"]
        self.start_driver()
        wait_for(lambda: "eth1" in n.published_devices(), what="eth1 published")
        # The pod of the previous release: prepared, its sandbox running with eth1 as net-a.
        self.pod, self.claim = n.make_pod_with_claim(NS, POD, CLAIM, "eth1", CONFIG)
        self.claim_uid = self.claim["metadata"]["uid"]
        res = n.prepare(NS, POD)["claims"][self.claim_uid]
        self.assertEqual(res.get("error", ""), "")
        self.cdi_ids = res["devices"][0]["cdiDeviceIds"]
        code, body = n.run_pod(self.pod)
        self.assertEqual(code, 200, body)
        self.netns = body["netns"]
        self.in_pod = self.assert_attached()
        self.assertIsNone(link("eth1"), "eth1 left the host")
        self.published = self.published_device("eth1")
        self.plan_path = os.path.join(n.state_dir, "plans", f"{self.claim_uid}.json")

    def start_driver(self, wait_ready=True):
        return self.node.start_driver(config=NODE_CONFIG, extra=["--cni-bin-dir", CNI_BIN],
                                      wait_ready=wait_ready)

    # ---- helpers ---------------------------------------------------------------------------
    def assert_attached(self):
        ns = self.node.pod_ns(self.pod)
        lk = link("net-a", ns=ns)
        self.assertIsNotNone(lk, f"net-a must be in the pod netns {ns}")
        self.assertEqual(lk["mtu"], 1400)
        self.assertEqual(lk["address"], self.mac)
        self.assertEqual(addresses("net-a", ns=ns), ["192.0.2.10/24"])
        dsts = {r["dst"]: r.get("gateway") for r in routes("net-a", ns=ns)}
        self.assertEqual(dsts.get("198.51.100.0/24"), "192.0.2.1")
        return {"ifindex": lk["ifindex"], "mtu": lk["mtu"], "mac": lk["address"],
                "addrs": addresses("net-a", ns=ns)}

    def published_device(self, name):
        for s in self.node.slices():
            for d in s["spec"].get("devices", []):
                if d["name"] == name:
                    return d
        return None

    def wait_published_once(self):
        """Until the new driver's publisher has reconciled (its /readyz needs that)."""
        def ready():
            try:
                with urllib.request.urlopen("http://127.0.0.1:9177/readyz", timeout=5) as r:
                    return r.status == 200
            except (urllib.error.URLError, OSError):
                return False
        wait_for(ready, timeout=30, what="the new driver ready (slices reconciled)")

    def install_previous_release_state(self):
        """Replaces the state dir with the golden files of the previous release's format."""
        state = self.node.state_dir
        subs = {"@CLAIM_UID@": self.claim_uid, "@POD_UID@": self.pod["metadata"]["uid"],
                "@NETNS@": self.netns, "@IFINDEX@": self.ifindex, "@MAC@": self.mac}
        for entry in os.listdir(state):
            p = os.path.join(state, entry)
            shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
        for rel in tree(GOLDEN):
            if rel.endswith(".md"):
                continue
            with open(os.path.join(GOLDEN, rel)) as f:
                content = fill(json.load(f), subs)
            dst = os.path.join(state, fill(rel, subs))
            os.makedirs(os.path.dirname(dst), mode=0o700, exist_ok=True)
            with open(dst, "w") as f:
                json.dump(content, f, indent=1)
        return tree(state)

    def driver_log_from(self, offset):
        with open(self.node.driver.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def log_size(self):
        return os.path.getsize(self.node.driver.log_path)

    def teardown_pod(self):
        n = self.node
        n.stop_pod(self.pod)
        wait_for(lambda: link("eth1"), timeout=10, what="eth1 back on the host")
        assert_comes_back(self, "eth1", self.before, msg="eth1 restored exactly")
        n.remove_pod(self.pod)
        un = n.unprepare(NS, POD)["claims"][self.claim_uid]
        self.assertEqual(un.get("error", ""), "")
        self.assertEqual(n.sandboxes(), [])
        self.assertFalse(os.path.exists(self.plan_path), "no plan left")
        self.assertEqual([f for f in os.listdir(n.cdi_dir) if f.endswith(".json")], [],
                         "no CDI spec left")

    def refuses(self, path, version, wanted):
        """Starts the driver on a state dir whose file `path` it cannot read: it must exit
        non-zero, naming the file and the version, with nothing changed."""
        n = self.node
        state_before = tree(n.state_dir)
        offset = self.log_size()
        self.start_driver(wait_ready=False)
        wait_for(lambda: not n.driver.alive(), timeout=30, what="the driver refused to start")
        rc = n.driver.p.returncode
        log = self.driver_log_from(offset)
        self.assertNotEqual(rc, 0, log)
        self.assertIn(path, log)
        self.assertIn(f"version {version}", log)
        for w in wanted:
            self.assertIn(w, log)
        self.assertEqual(tree(n.state_dir), state_before, "the state is left as it was")
        self.assertEqual(self.assert_attached(), self.in_pod, "the pod's NIC is untouched")
        self.assertIsNone(link("eth1"), "nothing came back to the host")
        self.assertEqual([s["state"] for s in n.sandboxes()], ["SANDBOX_READY"])

    # ---- the upgrade -------------------------------------------------------------------------
    def test_the_new_binary_takes_over_the_previous_releases_state(self):
        n = self.node
        n.driver.stop()
        installed = self.install_previous_release_state()
        self.assertIn(f"plans/{self.claim_uid}.json", installed)
        self.assertIsInstance(json.loads(installed["devices.json"]), list, "the old, bare form")

        offset = self.log_size()
        self.start_driver()
        self.wait_published_once()
        log = self.driver_log_from(offset)
        self.assertIn("loaded 1 claim plans", log)
        self.assertIn("the last stop was clean", log, "the old clean-stop record is read")
        self.assertNotIn("device cache", log)

        # The pod keeps its NIC, as it was: not attached again.
        self.assertEqual(self.assert_attached(), self.in_pod)
        self.assertIsNone(link("eth1"))
        # eth1 is still published as it was: the new binary read the old device cache (else a
        # device in a pod drops out of the slice), and rewrites it in the versioned form.
        self.assertEqual(self.published_device("eth1"), self.published)

        def versioned():
            with open(os.path.join(n.state_dir, "devices.json")) as f:
                j = json.load(f)
            return isinstance(j, dict) and j
        cache = wait_for(versioned, timeout=10, what="the device cache in the versioned form")
        self.assertEqual(cache["version"], 1)
        self.assertIn("eth1", [d["name"] for d in cache["devices"]])
        with open(self.plan_path) as f:
            plan = json.load(f)
        self.assertEqual(plan["version"], 1)
        self.assertEqual(plan["devices"][0]["state"], "Attached")

        # The previous release's CDI spec still lets the container in (the netns guard finds
        # net-a), and the teardown restores the host exactly.
        code, body = n.create_container(self.pod, "app", self.cdi_ids)
        self.assertEqual(code, 200, body)
        self.teardown_pod()

    # ---- what the new binary cannot read ---------------------------------------------------
    def test_refuses_a_plan_of_an_unknown_version_and_touches_nothing(self):
        n = self.node
        n.driver.stop()
        with open(self.plan_path) as f:
            good = f.read()
        plan = json.loads(good)
        plan["version"] = 2
        with open(self.plan_path, "w") as f:
            json.dump(plan, f)
        self.refuses(self.plan_path, 2, ["unsupported version 2", "this knd reads version 1"])
        self.assertFalse(os.path.exists(self.plan_path + ".corrupt"))

        # With the plan it can read back, the driver starts and the pod is torn down cleanly.
        with open(self.plan_path, "w") as f:
            f.write(good)
        self.start_driver()
        self.assertEqual(self.assert_attached(), self.in_pod)
        self.teardown_pod()

    def test_refuses_a_device_cache_of_an_unknown_version_and_touches_nothing(self):
        n = self.node
        n.driver.stop()
        cache_path = os.path.join(n.state_dir, "devices.json")
        with open(cache_path) as f:
            good = f.read()
        with open(cache_path, "w") as f:
            json.dump({"version": 2, "devices": []}, f)
        self.refuses(cache_path, 2, ["unsupported format version 2", "this knd reads version 1"])

        with open(cache_path, "w") as f:
            f.write(good)
        self.start_driver()
        self.wait_published_once()
        self.assertEqual(self.published_device("eth1"), self.published)
        self.teardown_pod()


if __name__ == "__main__":
    harness.main()
