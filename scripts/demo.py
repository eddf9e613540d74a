#!/usr/bin/env python3
"""The README demo: knd on a local control plane, in a throwaway node network namespace.

A "node" whose NICs are veth pairs; the stand-in API server, kubelet and runtime; the real
knd-driver. Two pods get a NIC each through ResourceClaims: one with knd's native attach
(static addresses and routes), one through an existing NetworkAttachmentDefinition (Debian's
CNI plugins: host-device + host-local IPAM). Prints what a user would check along the way —
ResourceSlices, claim status, the interfaces in the pods, the pods' network-status — then stops
the pods and shows the NICs back on the node. Everything is removed at the end, also on Ctrl-C.
"""

import contextlib
import glob
import json
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "e2e"))
import harness  # noqa: E402
from harness import DRIVER, Node, addresses, link, sh, wait_for  # noqa: E402

CNI_BIN = "/usr/lib/cni"
NS = "demo"
NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"
KND_MARK = "knd.k8s.cni.cncf.io/attachment"
NODE_CONFIG = """\
include:
  - ifName: "eth?"
resourceNames:
  - selector: {ifName: "eth2"}
    resourceName: example.com/storage_net
"""


def step(msg):
    print(f"\n\033[1m==> {msg}\033[0m", flush=True)


def show(cmd_out):
    for line in cmd_out.rstrip().splitlines():
        print(f"    {line}")


class DemoNode(Node):
    """The harness node, plus: cleanup that Ctrl-C cannot cut short, and the pod netns of a
    pod whose RunPodSandbox was interrupted (the harness only knows the ones that answered)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.pod_uids = []

    def __exit__(self, *exc):
        if exc[0] is KeyboardInterrupt:  # Ctrl-C: no need for the daemons' logs
            self.close()
            return False
        return super().__exit__(*exc)

    def close(self):
        old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            super().close()
            for uid in self.pod_uids:  # the runtime stand-in names them knd-pod-<uid[:8]>-<id>
                for path in glob.glob(f"/run/netns/knd-pod-{uid[:8]}-*"):
                    sh("ip", "netns", "delete", os.path.basename(path), check=False)
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def on_sigterm(signum, frame):
    raise KeyboardInterrupt


def multus_primary_entry(i):
    """What the cluster's Multus writes for the pod's default network when the CNI runs,
    before the runtime's NRI hooks (so before knd's attach)."""
    return [{"name": "k8s-pod-network", "interface": "eth0", "ips": [f"10.244.1.{7 + i}"],
             "mac": f"0a:58:0a:f4:01:{7 + i:02x}", "default": True, "dns": {}}]


def print_claim_status(node, claim):
    md = claim["metadata"]
    got = node.api.get(node.claim_path(md["namespace"], md["name"]))
    print(f"    claim {md['namespace']}/{md['name']}:")
    for d in got.get("status", {}).get("devices", []):
        ready = next((c for c in d.get("conditions", []) if c.get("type") == "Ready"), {})
        print(f"      {d['driver']}/{d['pool']}/{d['device']}  "
              f"Ready={ready.get('status')} ({ready.get('reason')})")
        print(f"        networkData: {json.dumps(d.get('networkData', {}))}")


def claim_ready(node, claim):
    md = claim["metadata"]
    devs = node.api.get(node.claim_path(md["namespace"], md["name"])).get("status", {}).get(
        "devices", [])
    return devs and all(any(c.get("type") == "Ready" and c.get("status") == "True"
                            for c in d.get("conditions", [])) for d in devs)


def network_status(node, pod):
    md = pod["metadata"]
    got = node.api.get(f"/api/v1/namespaces/{md['namespace']}/pods/{md['name']}")
    raw = got["metadata"].get("annotations", {}).get(NETWORK_STATUS)
    return json.loads(raw) if raw else []


def print_network_status(node, pod):
    print(f"    pod {pod['metadata']['namespace']}/{pod['metadata']['name']}:")
    for e in network_status(node, pod):
        who = f"knd, attachment {e[KND_MARK]}" if KND_MARK in e else "Multus"
        print(f"      [{who}] name={e.get('name')} interface={e.get('interface')} "
              f"ips={e.get('ips')} mac={e.get('mac')}")


def leases(data_dir, network):
    d = os.path.join(data_dir, network)
    return sorted(f for f in os.listdir(d) if f[0].isdigit()) if os.path.isdir(d) else []


def demo(node):
    step(f"A node (network namespace {node.netns}) with three NICs (veth pairs); "
         "'uplink' carries the default route")
    node.veth("uplink")
    sh("ip", "addr", "add", "10.0.0.2/24", "dev", "uplink")
    sh("ip", "route", "add", "default", "via", "10.0.0.1")
    node.veth("eth1")
    node.veth("eth2", mtu=9000)
    sh("ip", "addr", "add", "10.99.0.2/24", "dev", "eth1")
    show(sh("ip", "-br", "link", "show", "type", "veth"))

    step("Start knd-driver (node config: publish eth?, eth2 under a Multus resourceName; "
         "CNI plugins from /usr/lib/cni)")
    show(NODE_CONFIG)
    node.start_driver(config=NODE_CONFIG, extra=["--cni-bin-dir", CNI_BIN])
    devs = wait_for(lambda: (d := node.published_devices()) and {"eth1", "eth2"} <= set(d)
                    and d, what="devices published")

    step("ResourceSlices published for the node (kubectl get resourceslices)")
    for s in node.slices():
        print(f"    {s['metadata']['name']}  driver={s['spec']['driver']}  "
              f"pool={s['spec']['pool']['name']}  generation={s['spec']['pool']['generation']}"
              f"  devices={len(s['spec']['devices'])}")
    for name, d in sorted(devs.items()):
        a = d["attributes"]
        val = lambda k: next(iter(a.get(k, {"-": "-"}).values()))  # noqa: E731
        rn = a.get("k8s.cni.cncf.io/resourceName")
        print(f"      device {name:6} ifName={val('knd.k8s.cni.cncf.io/ifName')} "
              f"mtu={val('knd.k8s.cni.cncf.io/mtu')} mac={val('knd.k8s.cni.cncf.io/mac')} "
              f"ipv4={val('knd.k8s.cni.cncf.io/ipv4')}"
              + (f" resourceName={next(iter(rn.values()))}" if rn else ""))
    print("    (uplink is not published: it carries the node's default route)")

    step("A DeviceClass for every knd NIC (kubectl get deviceclass knd-nic -o yaml)")
    dc = {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass",
          "metadata": {"name": "knd-nic"},
          "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{DRIVER}"'}}]}}
    node.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    node.create(dc)
    print(f"    knd-nic: selectors[0].cel = {dc['spec']['selectors'][0]['cel']['expression']}")

    # ---- pod 1: native attach ---------------------------------------------------------------
    step("Pod web-0: a claim with a NetworkConfig, native attach (scheduler's allocation: eth1, "
         "written by the demo)")
    cfg = {"apiVersion": "knd.k8s.cni.cncf.io/v1alpha1", "kind": "NetworkConfig",
           "interface": {"name": "net-fast", "mtu": 1400,
                         "addresses": ["192.0.2.10/24", "2001:db8::10/64"]},
           "routes": [{"destination": "198.51.100.0/24", "gateway": "192.0.2.1"},
                      {"destination": "203.0.113.0/24"}]}
    print("    " + json.dumps(cfg))
    web, web_claim = node.make_pod_with_claim(NS, "web-0", "web-0-net", "eth1", cfg)
    node.pod_uids.append(web["metadata"]["uid"])

    # ---- pod 2: a NetworkAttachmentDefinition ------------------------------------------------
    step("Pod db-0: a claim naming a NetworkAttachmentDefinition (host-device + host-local), "
         "allocated eth2")
    ipam_dir = os.path.join(node.tmp, "ipam")
    conf = {"cniVersion": "1.0.0", "name": "storage-net", "plugins": [
        {"type": "host-device",
         "ipam": {"type": "host-local", "dataDir": ipam_dir,
                  "ranges": [[{"subnet": "10.88.0.0/24", "gateway": "10.88.0.1"}]]}}]}
    node.create({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
                 "metadata": {"name": "storage-net", "namespace": NS},
                 "spec": {"config": json.dumps(conf)}})
    print(f"    NAD {NS}/storage-net: host-device, ipam host-local 10.88.0.0/24")
    nad_cfg = {"apiVersion": "knd.k8s.cni.cncf.io/v1alpha1", "kind": "NetworkConfig",
               "interface": {"name": "storage0"},
               "cni": {"networkAttachment": {"name": "storage-net"}}}
    print("    " + json.dumps(nad_cfg))
    db, db_claim = node.make_pod_with_claim(NS, "db-0", "db-0-net", "eth2", nad_cfg)
    node.pod_uids.append(db["metadata"]["uid"])

    step("kubelet -> NodePrepareResources (DRA gRPC), once per pod")
    for pod, claim in ((web, web_claim), (db, db_claim)):
        res = node.prepare(NS, pod["metadata"]["name"])["claims"][claim["metadata"]["uid"]]
        if res.get("error"):
            sys.exit(f"demo: Prepare of {claim['metadata']['name']} failed: {res['error']}")
        print(f"    {pod['metadata']['name']}: {json.dumps(res)}")

    step("runtime -> RunPodSandbox (NRI): knd attaches eth1 natively, eth2 through the NAD's "
         "plugins")
    print("    (first, as the cluster's Multus would at sandbox creation, the demo writes each "
          "pod's primary-network entry into its network-status)")
    for i, pod in enumerate((web, db)):
        # The pod's primary network came first (Multus, as the cluster's CNI).
        node.api.merge_patch(f"/api/v1/namespaces/{NS}/pods/{pod['metadata']['name']}",
                             {"metadata": {"annotations": {
                                 NETWORK_STATUS: json.dumps(multus_primary_entry(i))}}})
        code, body = node.run_pod(pod)
        if code != 200:
            sys.exit(f"demo: RunPodSandbox of {pod['metadata']['name']} failed: {body}")
    for pod, ifname in ((web, "net-fast"), (db, "storage0")):
        ns = node.pod_ns(pod)
        print(f"    in pod {pod['metadata']['name']}: ip addr show {ifname}; "
              f"ip route show dev {ifname}")
        show(sh("ip", "-n", ns, "-br", "addr", "show", "dev", ifname))
        show(sh("ip", "-n", ns, "route", "show", "dev", ifname))
    print(f"    on the node now: eth1 {'gone' if link('eth1') is None else 'PRESENT'}, "
          f"eth2 {'gone' if link('eth2') is None else 'PRESENT'}; host-local leases: "
          f"{leases(ipam_dir, 'storage-net')}")

    step("Claim status (kubectl get resourceclaim -o yaml: status.devices), written by knd in "
         "the background")
    for claim in (web_claim, db_claim):
        wait_for(lambda c=claim: claim_ready(node, c), timeout=20,
                 what=f"claim {claim['metadata']['name']} status.devices Ready=True")
        print_claim_status(node, claim)

    step(f"Pod annotation {NETWORK_STATUS}: Multus's entry, and knd's next to it")
    for pod in (web, db):
        wait_for(lambda p=pod: any(KND_MARK in e for e in network_status(node, p)), timeout=20,
                 what=f"knd's entries in {pod['metadata']['name']}'s network-status")
        print_network_status(node, pod)

    step("runtime -> StopPodSandbox: the NICs come back under their names, with their settings")
    for pod in (web, db):
        node.stop_pod(pod)
        node.remove_pod(pod)
    for name in ("eth1", "eth2"):
        lk = wait_for(lambda n=name: link(n), what=f"{name} back")
        print(f"    {name} mtu={lk['mtu']} mac={lk['address']} addrs={addresses(name)}")
    print(f"    host-local leases: {leases(ipam_dir, 'storage-net')} (released by CNI DEL)")
    for pod, claim in ((web, web_claim), (db, db_claim)):
        md = claim["metadata"]
        wait_for(lambda c=md: not node.api.get(node.claim_path(c["namespace"], c["name"])).get(
            "status", {}).get("devices"), timeout=20, what=f"{md['name']} status.devices cleared")
        wait_for(lambda p=pod: not any(KND_MARK in e for e in network_status(node, p)),
                 timeout=20, what=f"knd's entries gone from {pod['metadata']['name']}")
        left = [e["name"] for e in network_status(node, pod)]
        print(f"    {pod['metadata']['name']}: claim status.devices cleared; network-status "
              f"keeps only Multus's {left}")

    step("kubelet -> NodeUnprepareResources")
    for pod, claim in ((web, web_claim), (db, db_claim)):
        res = node.unprepare(NS, pod["metadata"]["name"])["claims"][claim["metadata"]["uid"]]
        print(f"    {pod['metadata']['name']}: {json.dumps(res)}")
    step("Done: the node is as it was (namespaces, links and files are removed now)")


def main():
    if not harness.have_privilege():
        sys.exit("demo: run as root (it creates network namespaces and veth pairs)")
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        with DemoNode(name="demo-node") as node:
            demo(node)
    except KeyboardInterrupt:
        print("\ndemo: interrupted; cleaned up", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
