#!/usr/bin/env python3
"""The README demo: knd on a local control plane, in a throwaway node network namespace.

A "node" whose NICs are veth pairs; the stand-in API server, kubelet and runtime; the real
knd-driver. A pod with a ResourceClaim gets a NIC with static addresses and routes, then gives
it back when it stops. Prints what a user would check along the way.
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "e2e"))
import harness  # noqa: E402
from harness import Node, addresses, link, routes, sh, wait_for  # noqa: E402


def step(msg):
    print(f"\n\033[1m==> {msg}\033[0m", flush=True)


def show(cmd_out):
    for line in cmd_out.rstrip().splitlines():
        print(f"    {line}")


def main():
    if not harness.have_privilege():
        sys.exit("demo: run as root (it creates network namespaces and veth pairs)")
    with Node(name="demo-node") as node:
        step("A node with three NICs (veth pairs); 'uplink' carries the default route")
        node.veth("uplink")
        sh("ip", "addr", "add", "10.0.0.2/24", "dev", "uplink")
        sh("ip", "route", "add", "default", "via", "10.0.0.1")
        node.veth("eth1")
        node.veth("eth2", mtu=9000)
        sh("ip", "addr", "add", "10.99.0.2/24", "dev", "eth1")
        show(sh("ip", "-br", "link", "show", "type", "veth"))

        step("Start knd-driver (node config: publish eth*; uplinks are never published)")
        node.start_driver(config='include:\n  - ifName: "eth?"\n')
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
            print(f"      device {name:8} ifName={val('knd.k8s.cni.cncf.io/ifName')} "
                  f"mtu={val('knd.k8s.cni.cncf.io/mtu')} mac={val('knd.k8s.cni.cncf.io/mac')} "
                  f"ipv4={val('knd.k8s.cni.cncf.io/ipv4')}")
        print("    (uplink is not published: it carries the node's default route)")

        step("A pod with a ResourceClaim for eth1 and a NetworkConfig (scheduler's allocation "
             "written by the demo)")
        cfg = {"apiVersion": "knd.k8s.cni.cncf.io/v1alpha1", "kind": "NetworkConfig",
               "interface": {"name": "net-fast", "mtu": 1400,
                             "addresses": ["192.0.2.10/24", "2001:db8::10/64"]},
               "routes": [{"destination": "198.51.100.0/24", "gateway": "192.0.2.1"},
                          {"destination": "203.0.113.0/24"}]}
        print("    " + json.dumps(cfg))
        pod, claim = node.make_pod_with_claim("demo", "web-0", "web-0-net", "eth1", cfg)

        step("kubelet -> NodePrepareResources (DRA gRPC)")
        res = node.prepare("demo", "web-0")
        show(json.dumps(res, indent=2))

        step("runtime -> RunPodSandbox (NRI): knd moves eth1 into the pod and configures it")
        code, body = node.run_pod(pod)
        if code != 200:
            sys.exit(f"demo: RunPodSandbox failed: {body}")
        ns = node.pod_ns(pod)
        show(sh("ip", "-n", ns, "-br", "addr", "show", "dev", "net-fast"))
        show(sh("ip", "-n", ns, "route", "show", "dev", "net-fast"))
        print(f"    eth1 on the host now: {'gone (in the pod)' if link('eth1') is None else 'present'}")
        print("    eth1 still published:", "eth1" in node.published_devices())

        step("runtime -> StopPodSandbox: eth1 comes back under its name, with its settings")
        node.stop_pod(pod)
        node.remove_pod(pod)
        lk = wait_for(lambda: link("eth1"), what="eth1 back")
        print(f"    eth1 mtu={lk['mtu']} mac={lk['address']} addrs={addresses('eth1')}")
        node.unprepare("demo", "web-0")
        step("Done: the node is as it was")
    return 0


if __name__ == "__main__":
    sys.exit(main())
