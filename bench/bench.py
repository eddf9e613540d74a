#!/usr/bin/env python3
"""knd benchmarks (issue 9): every figure next to the alternative, in one run.

  1. attach      knd's attacher vs host-device+static(+tuning) CNI exec'd like Multus vs the
                 kernel floor (one RTM_NEWLINK), p50/p90/p99 and ratios   (knd-bench-attach)
  2. exchanges   netlink requests per attach/detach, counted from a syscall trace, against
                 the same count for CNI and the floor and the minimum the kernel needs
  3. prepare     NodePrepareResources through the kubelet stand-in, 1 and 8 claims per call
  4. publish     1000 devices through kube::SlicePublisher: time, writes; a burst of link
                 changes; an idle period                                   (knd-bench-publish)
  5. burst       N pods started and stopped through the local control plane on one node
  6. restart     SIGTERM -> start -> registered with kubelet and runtime again
  7. churn       pods one after the other on one device, each deleted before the next comes
                 (the kubelet's order on a real node): Prepare -> sandbox ready, churn vs
                 idle, for knd native, knd through a NAD, and the CNI path (host-device run
                 by the runtime like a Multus delegate)
  9. child       a macvlan child of a shared NIC (issue 16): knd's AttachChild vs Debian's
                 macvlan plugin with static IPAM exec'd like Multus vs the one RTM_NEWLINK
                 (knd-bench-attach --impl knd-child,cni-macvlan,child-floor)

Writes <out>/report.json and <out>/report.md. Needs root (network namespaces), iproute2,
strace (for 2; skipped without it) and /usr/lib/cni (Debian's containernetworking-plugins).
Medians and ratios are the figures to quote: these machines are noisy.
"""

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "test", "e2e"))
import harness  # noqa: E402
from harness import DRIVER, Node, addresses, link, wait_for  # noqa: E402

POD_CONFIG = {"apiVersion": "knd.k8s.cni.cncf.io/v1alpha1", "kind": "NetworkConfig",
              "interface": {"name": "net-a", "mtu": 1400,
                            "addresses": ["192.0.2.10/24", "2001:db8::10/64"]},
              "routes": [{"destination": "198.51.100.0/24", "gateway": "192.0.2.1"},
                         {"destination": "203.0.113.0/24"}]}
NODE_CONFIG = 'include:\n  - ifName: "eth*"\n'

FULL = dict(attach_iterations=60, devices=100, pods=100, multi_pods=12, publish_devices=1000,
            publish_burst=100, idle_seconds=10, restarts=5, churn_rounds=15)
SMOKE = dict(attach_iterations=3, devices=8, pods=8, multi_pods=1, publish_devices=200,
             publish_burst=20, idle_seconds=1, restarts=1, churn_rounds=2)
# When the old pod's teardown reaches the node after the next pod's Prepare has started:
# StopPodSandbox (an assumption: the runtime gets to it a moment later) and Unprepare (~3 s
# later on the real node of wire-facts §9; 2 s here).
CHURN_STOP_AFTER_S = 1.0
CHURN_UNPREPARE_AFTER_S = 2.0
# Between the old pod's deletion and the next pod's Prepare the claim controller deletes the
# claim, the scheduler allocates the device again and the kubelet starts the new pod: not
# measured on a real node here; 0.3 s is on the short side. The "at once" figures leave it out
# (the worst case: the next Prepare races the old pod's deletion).
CHURN_NEXT_PREPARE_AFTER_S = 0.3

RTM = {0x10: "RTM_NEWLINK", 0x11: "RTM_DELLINK", 0x12: "RTM_GETLINK", 0x13: "RTM_SETLINK",
       0x14: "RTM_NEWADDR", 0x15: "RTM_DELADDR", 0x16: "RTM_GETADDR", 0x18: "RTM_NEWROUTE",
       0x19: "RTM_DELROUTE", 0x1a: "RTM_GETROUTE", 0x52: "RTM_GETNETCONF", 0x58: "RTM_NEWNSID",
       0x5a: "RTM_GETNSID"}


# ---- statistics ------------------------------------------------------------------------------

def pct(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(-(-p * len(v) // 100)) - 1))
    return v[k]


def dist(values, scale=1.0):
    """p50/p90/p99/min/max of `values` multiplied by `scale`."""
    if not values:
        return None
    return {"n": len(values), "p50": pct(values, 50) * scale, "p90": pct(values, 90) * scale,
            "p99": pct(values, 99) * scale, "min": min(values) * scale,
            "max": max(values) * scale}


def ratio(a, b):
    return a / b if b else None


def median_of_ratios(pairs):
    """Median of a/b over pairs measured back to back (robust to a drifting machine)."""
    rs = [a / b for a, b in pairs if b]
    return pct(rs, 50) if rs else None


# ---- helpers -------------------------------------------------------------------------------

def log(msg):
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def run_json(argv, timeout):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def machine():
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "memGiB": round(mem_kb / 1048576, 1), "date": time.strftime("%Y-%m-%d %H:%M %Z")}


def proc_stats(pid):
    """Peak RSS (VmHWM, KiB), current RSS and CPU seconds (utime+stime) of a process."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmHWM:", "VmRSS:")):
                out[line.split(":")[0]] = int(line.split()[1])
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    out["cpuSeconds"] = (int(fields[11]) + int(fields[12])) / tck  # utime, stime
    return out


def driver_pid(node):
    """The knd-driver process (`ip netns exec` execs it in place)."""
    pid = node.driver.p.pid
    with open(f"/proc/{pid}/comm") as f:
        comm = f.read().strip()
    if comm != "knd-driver":
        raise RuntimeError(f"pid {pid} is {comm}, not knd-driver")
    return pid


# ---- 1 + 2: attach ---------------------------------------------------------------------------

def bench_attach(cfg):
    log(f"attach: {cfg['attach_iterations']} iterations of knd, CNI and floor, interleaved")
    res = run_json([harness.binary("knd-bench-attach"), "--iterations",
                    str(cfg["attach_iterations"])], timeout=600)
    by = {}
    for s in res["samples"]:
        by.setdefault(s["impl"], []).append(s)
    out = {"iterations": res["iterations"], "checks": res["checks"],
           "cni_plugin_peak_rss_kib": res.get("cni_plugin_peak_rss_kb")}
    for impl, ss in by.items():
        out[impl] = {"attach_ms": dist([s["attach_ns"] for s in ss], 1e-6),
                     "detach_ms": dist([s["detach_ns"] for s in ss], 1e-6)}
        if "cpu_ns" in ss[0]:
            out[impl]["process_cpu_ms"] = dist([s["cpu_ns"] for s in ss], 1e-6)
        if "exec_attach_ns" in ss[0]:
            out[impl]["exec_attach_ms"] = dist([s["exec_attach_ns"] for s in ss], 1e-6)
    # Ratios per iteration (the three ran back to back), then their median.
    it = {}
    for s in res["samples"]:
        it.setdefault(s["iteration"], {})[s["impl"]] = s
    for other in ("cni", "floor"):
        for phase in ("attach", "detach"):
            pairs = [(v["knd"][f"{phase}_ns"], v[other][f"{phase}_ns"]) for v in it.values()
                     if "knd" in v and other in v]
            out[f"ratio_knd_{other}_{phase}"] = median_of_ratios(pairs)
    out["ratio_knd_cni_cpu"] = median_of_ratios(
        [(v["knd"]["cpu_ns"], v["cni"]["cpu_ns"]) for v in it.values() if "knd" in v and "cni" in v])
    for impl in ("knd", "cni"):
        c = res["checks"].get(impl, {})
        if not c.get("ok"):
            raise RuntimeError(f"attach check failed for {impl}: {c}")
    return out


def bench_child(cfg):
    """Benchmark 9: a child of a shared NIC (issue 16), knd vs the Multus macvlan NAD path."""
    log(f"child: {cfg['attach_iterations']} iterations of knd-child, cni-macvlan and the floor")
    res = run_json([harness.binary("knd-bench-attach"), "--impl", "knd-child,cni-macvlan,child-floor",
                    "--iterations", str(cfg["attach_iterations"])], timeout=600)
    for impl in ("knd-child", "cni-macvlan"):
        c = res["checks"].get(impl, {})
        if not c.get("ok"):
            raise RuntimeError(f"child check failed for {impl}: {c}")
    by, it = {}, {}
    for smp in res["samples"]:
        by.setdefault(smp["impl"], []).append(smp)
        it.setdefault(smp["iteration"], {})[smp["impl"]] = smp
    out = {"iterations": res["iterations"]}
    for impl, ss in by.items():
        out[impl] = {"attach_ms": dist([x["attach_ns"] for x in ss], 1e-6),
                     "detach_ms": dist([x["detach_ns"] for x in ss], 1e-6)}
    for other in ("cni-macvlan", "child-floor"):
        for phase in ("attach", "detach"):
            pairs = [(v["knd-child"][f"{phase}_ns"], v[other][f"{phase}_ns"])
                     for v in it.values() if "knd-child" in v and other in v]
            out[f"ratio_knd_{other.replace('-', '_')}_{phase}"] = median_of_ratios(pairs)
    return out


def parse_trace(path):
    """Counts, per '@@<impl> <phase>' section of an strace -f -yy log, the netlink requests
    (send syscalls on NETLINK sockets), the messages in them by type, sysctl writes, threads
    and processes started. Later sections overwrite earlier ones (the last iteration wins)."""
    sections = {}
    cur = None
    marker = re.compile(r'write\(2<[^>]*>, "@@([^"\\]+)')
    send = re.compile(r"\b(sendmsg|sendto)\(\d+<NETLINK:")
    msgtype = re.compile(r"nlmsg_type=(0x[0-9a-f]+|[A-Z_]+)")
    for line in open(path):
        m = marker.search(line)
        if m:
            name = m.group(1).strip()
            cur = None if name == "end" else name
            if cur:
                sections[cur] = {"netlinkRequests": 0, "messages": {}, "sysctlWrites": 0,
                                 "threads": 0, "processes": 0}
            continue
        if cur is None:
            continue
        c = sections[cur]
        if send.search(line):
            c["netlinkRequests"] += 1
            for t in msgtype.findall(line):
                name = RTM.get(int(t, 16), t) if t.startswith("0x") else t
                if name.startswith("NLMSG_"):
                    continue
                c["messages"][name] = c["messages"].get(name, 0) + 1
        elif re.search(r"\bwrite\(\d+</proc/sys/", line):
            c["sysctlWrites"] += 1
        elif re.search(r"\bclone3?\(", line) and "resumed" not in line:
            if "CLONE_THREAD" in line:
                c["threads"] += 1
            else:
                c["processes"] += 1
    return sections


def bench_exchanges(out_dir):
    if shutil.which("strace") is None:
        log("exchanges: strace not installed, skipped")
        return {"skipped": "strace not installed"}
    log("exchanges: counting netlink requests under strace")
    trace = os.path.join(out_dir, "attach.strace")
    cmd = ["strace", "-f", "-yy", "-qq", "-s", "512", "-e", "signal=none",
           "-e", "trace=sendmsg,sendto,write,clone,clone3", "-o", trace,
           harness.binary("knd-bench-attach"), "--iterations", "2", "--markers"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"strace run failed:\n{r.stderr[-3000:]}")
    counts = parse_trace(trace)
    os.remove(trace)
    # The least any implementation can send for this result (see docs/performance.md):
    # attach: the move+rename+MTU+up RTM_NEWLINK on a host socket, then 2 RTM_NEWADDR and
    # 2 RTM_NEWROUTE batched into one sendmsg on a pod socket; detach: the move back
    # (+name, MTU, up) and the host address batched after it on one host socket.
    counts["minimum"] = {"attach": {"netlinkRequests": 2, "messageCount": 5},
                         "detach": {"netlinkRequests": 2, "messageCount": 2}}
    return counts


# ---- 3 + 5 + 6: prepare, burst, restart through the local control plane --------------------

def veths(n):
    """eth1..ethN (the NICs, with one host address each) and peer1..peerN (not published)."""
    cmds = []
    for i in range(1, n + 1):
        cmds += [f"link add eth{i} type veth peer name peer{i}", f"link set eth{i} up",
                 f"link set peer{i} up", f"addr add 10.98.{i // 250}.{i % 250 + 1}/32 dev eth{i}"]
    subprocess.run(["ip", "-batch", "-"], input="\n".join(cmds) + "\n", text=True, check=True)


def host_state(ifname):
    lk = link(ifname)
    if lk is None:
        return None
    return {"mtu": lk["mtu"], "mac": lk["address"], "addrs": sorted(addresses(ifname))}


def make_pod_with_claims(node, ns, pod, devices, config):
    """A pod with one claim per device, allocated and reserved as the scheduler leaves them."""
    for obj in ({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass",
                 "metadata": {"name": "knd-nic"},
                 "spec": {"selectors": [{"cel": {"expression":
                                                 f'device.driver == "{DRIVER}"'}}]}}):
        try:
            node.create(obj)
        except harness.HttpError:
            pass
    claims = [f"{pod}-c{k}" for k in range(len(devices))]
    refs = []
    p = node.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "namespace": ns},
                     "spec": {"nodeName": node.node_name,
                              "containers": [{"name": "c", "image": "x", "resources": {
                         "claims": [{"name": f"n{k}"} for k in range(len(devices))]}}],
                              "resourceClaims": [{"name": f"n{k}", "resourceClaimName": c}
                                                 for k, c in enumerate(claims)]}})
    for k, (c, dev) in enumerate(zip(claims, devices)):
        cfg = dict(config, interface=dict(config["interface"], name=f"net{k}"))
        opaque = {"driver": DRIVER, "parameters": cfg}
        obj = node.create({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
                           "metadata": {"name": c, "namespace": ns},
                           "spec": {"devices": {"requests": [{"name": "nic", "exactly": {
                               "deviceClassName": "knd-nic"}}],
                               "config": [dict(requests=["nic"], opaque=opaque)]}}})
        obj["status"] = {"allocation": {"devices": {
            "results": [{"request": "nic", "driver": DRIVER, "pool": node.node_name,
                         "device": dev}],
            "config": [{"source": "FromClaim", "requests": ["nic"], "opaque": opaque}]}},
            "reservedFor": [{"resource": "pods", "name": pod, "uid": p["metadata"]["uid"]}]}
        node.api.put(node.claim_path(ns, c) + "/status", obj)
        refs.append({"namespace": ns, "name": c, "uid": obj["metadata"]["uid"]})
    p["claimRefs"] = refs
    return p


def timed(fn, *a, **kw):
    t0 = time.monotonic()
    r = fn(*a, **kw)
    return time.monotonic() - t0, r


def check_prepared(res, what):
    for uid, c in (res or {}).get("claims", {}).items():
        if c.get("error"):
            raise RuntimeError(f"{what}: claim {uid}: {c['error']}")


def api_counts(node):
    """(reads, writes) the stand-in API server has served so far."""
    st = node.api.get("/_knd/stats")
    reads = sum(n for verb, m in st["requests"].items() if verb in ("get", "list")
                for n in m.values())
    return reads, st["writesTotal"]


def timed_prepare(node, pod, api_delta):
    """NodePrepareResources for the pod's claims, sent by the kubelet stand-in (its
    /prepare-claims reads nothing from the API itself, so every API read counted here is the
    driver's; /_knd/stats is not an API resource and does not count)."""
    r0, w0 = api_counts(node)
    dt, res = timed(node.kubelet.post, "/prepare-claims", {"claims": pod["claimRefs"]})
    r1, w1 = api_counts(node)
    api_delta[0] += r1 - r0
    api_delta[1] += w1 - w0
    check_prepared(res, f"prepare {pod['metadata']['name']}")
    return dt, res


def unprepare(node, pod):
    check_prepared(node.kubelet.post("/unprepare-claims", {"claims": pod["claimRefs"]}),
                   f"unprepare {pod['metadata']['name']}")


def restart(node, metrics_port, extra):
    """SIGTERM -> exited -> started -> registered with kubelet and runtime, /readyz 200."""
    seq = max([pl.get("seq", -1) for pl in node.kubelet.get("/plugins") or []], default=-1)
    t0 = time.monotonic()
    node.driver.stop()
    t_exit = time.monotonic()
    node.start_driver(config=NODE_CONFIG, extra=extra, wait_ready=False)
    t_start = time.monotonic()
    registered = ready = None
    while time.monotonic() - t_start < 60:
        now = time.monotonic()
        if not node.driver.alive():
            raise RuntimeError(f"driver exited after restart:\n{node.driver.tail()}")
        if registered is None:
            k = any(pl.get("name") == DRIVER and pl["seq"] > seq
                    for pl in node.kubelet.get("/plugins") or [])
            r = k and any(pl.get("name") == "knd" for pl in node.runtime.get("/plugins") or [])
            if r:
                registered = now
        if ready is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/readyz",
                                            timeout=1) as resp:
                    if resp.status == 200:
                        ready = now
            except Exception:  # noqa: BLE001 - not listening / 503 yet
                pass
        if registered is not None and ready is not None:
            break
        time.sleep(0.005)
    if registered is None or ready is None:
        raise RuntimeError(f"driver not registered/ready 60 s after restart:\n{node.driver.tail()}")
    return {"stop_s": t_exit - t0, "registered_s": registered - t_start,
            "ready_s": ready - t_start, "total_s": max(registered, ready) - t0}


def bench_node(cfg):
    out = {}
    n_dev = cfg["devices"]
    with Node() as node:
        veths(n_dev)
        before = {f"eth{i}": host_state(f"eth{i}") for i in range(1, n_dev + 1)}
        metrics_port = harness.free_port()
        extra = ["--metrics-address", f"127.0.0.1:{metrics_port}"]
        node.start_driver(config=NODE_CONFIG, extra=extra)
        wait_for(lambda: len(node.published_devices()) >= n_dev, timeout=60,
                 what=f"{n_dev} devices published")
        # Round trip of the stand-in's control API alone: the floor under every Prepare time.
        http_floor = [timed(node.kubelet.get, "/plugins")[0] for _ in range(50)]

        # ---- 3. Prepare: 8 claims per call, then unprepare ----
        log(f"prepare: {cfg['multi_pods']} pods x 8 claims")
        multi, multi_pods, api8 = [], [], [0, 0]
        for j in range(cfg["multi_pods"]):
            devs = [f"eth{8 * j + k + 1}" for k in range(8)]
            p = make_pod_with_claims(node, "bench", f"multi-{j}", devs, POD_CONFIG)
            multi_pods.append(p)
            dt, res = timed_prepare(node, p, api8)
            if len(res["claims"]) != 8:
                raise RuntimeError(f"prepare multi-{j}: {len(res['claims'])} claims, want 8")
            multi.append(dt)
        for p in multi_pods:
            unprepare(node, p)

        # ---- 5. Burst: N pods, one claim each; the 1-claim Prepare times come from here ----
        n = cfg["pods"]
        log(f"burst: {n} pods prepared, started, stopped")
        pods, single, api1 = [], [], [0, 0]
        for i in range(1, n + 1):
            p = make_pod_with_claims(node, "burst", f"pod-{i}", [f"eth{i}"], POD_CONFIG)
            dt, _ = timed_prepare(node, p, api1)
            single.append(dt)
            pods.append(p)
        pid = driver_pid(node)
        s0 = proc_stats(pid)
        run_t = []
        t0 = time.monotonic()
        for p in pods:
            dt, (code, body) = timed(node.run_pod, p, ok=None)
            if code != 200:
                raise RuntimeError(f"run {p['metadata']['name']}: HTTP {code}: {body}")
            run_t.append(dt)
        run_wall = time.monotonic() - t0
        s1 = proc_stats(pid)
        # Every pod has its NIC, configured.
        missing = [p["metadata"]["name"] for p in pods
                   if (link("net0", ns=node.pod_ns(p)) or {}).get("mtu") != 1400]
        if missing:
            raise RuntimeError(f"pods without their NIC after RunPodSandbox: {missing[:5]}")

        # ---- 6a. Restart with every pod running ----
        log(f"restart: {cfg['restarts']} with {n} pods running")
        live = [restart(node, metrics_port, extra) for _ in range(cfg["restarts"])]
        pid = driver_pid(node)
        s2 = proc_stats(pid)

        stop_t = []
        t1 = time.monotonic()
        for p in pods:
            dt, _ = timed(node.stop_pod, p)
            stop_t.append(dt)
            node.remove_pod(p)
        stop_wall = time.monotonic() - t1
        s3 = proc_stats(pid)
        for p in pods:
            unprepare(node, p)

        # Leftovers: devices not back as they were, plans, CDI specs, pod namespaces.
        not_restored = [k for k, v in before.items() if host_state(k) != v]
        plans = [f for _, _, fs in os.walk(os.path.join(node.state_dir, "plans")) for f in fs]
        cdi = [f for _, _, fs in os.walk(node.cdi_dir) for f in fs]
        pod_ns = [ns for ns in node.pod_netns.values() if os.path.exists(f"/run/netns/{ns}")]

        # ---- 6b. Restart idle ----
        log(f"restart: {cfg['restarts']} idle")
        idle = [restart(node, metrics_port, extra) for _ in range(cfg["restarts"])]
        final = proc_stats(driver_pid(node))

        out["prepare"] = {
            "one_claim_ms": dist(single, 1e3),
            "eight_claims_ms": dist(multi, 1e3),
            "eight_claims_per_claim_ms": dist([m / 8 for m in multi], 1e3),
            "control_api_floor_ms": dist(http_floor, 1e3),
            "api_reads_per_claim_one": ratio(api1[0], n),
            "api_reads_per_claim_eight": ratio(api8[0], 8 * cfg["multi_pods"]),
            "api_writes_per_claim": ratio(api1[1] + api8[1], n + 8 * cfg["multi_pods"]),
        }
        out["burst"] = {
            "pods": n,
            "run_ms": dist(run_t, 1e3),
            "stop_ms": dist(stop_t, 1e3),
            "attaches_per_s": n / run_wall,
            "detaches_per_s": n / stop_wall,
            "driver_peak_rss_kib": max(s1["VmHWM"], s3["VmHWM"]),
            "driver_rss_after_kib": s3["VmRSS"],
            "driver_cpu_s_run": s1["cpuSeconds"] - s0["cpuSeconds"],
            "driver_cpu_s_stop": s3["cpuSeconds"] - s2["cpuSeconds"],
            "leftovers": {"devicesNotRestored": len(not_restored), "planFiles": len(plans),
                          "cdiSpecs": len(cdi), "podNetns": len(pod_ns)},
            "leftovers_total": len(not_restored) + len(plans) + len(cdi) + len(pod_ns),
        }
        if not_restored:
            out["burst"]["not_restored_examples"] = {k: host_state(k) for k in not_restored[:3]}
        out["restart"] = {
            "with_pods": n,
            "live_total_s": dist([r["total_s"] for r in live]),
            "live_registered_s": dist([r["registered_s"] for r in live]),
            "live_ready_s": dist([r["ready_s"] for r in live]),
            "live_stop_s": dist([r["stop_s"] for r in live]),
            "idle_total_s": dist([r["total_s"] for r in idle]),
            "idle_registered_s": dist([r["registered_s"] for r in idle]),
            "idle_ready_s": dist([r["ready_s"] for r in idle]),
            "idle_stop_s": dist([r["stop_s"] for r in idle]),
            "driver_peak_rss_after_restarts_kib": final["VmHWM"],
        }
    return out


# ---- 7. churn -------------------------------------------------------------------------------

CHURN_NAD = {"cniVersion": "1.0.0", "name": "churn-hd", "plugins": [
    {"type": "host-device", "ipam": {"type": "static", "addresses": [
        {"address": "192.0.2.10/24"}], "routes": [{"dst": "198.51.100.0/24",
                                                  "gw": "192.0.2.1"}]}}]}


def bench_churn(cfg):
    """Sequential pods on one device (eth1). `idle`: the device is free when the pod comes.
    `churn`: the previous pod was just deleted the way the kubelet does it (pod object, then
    its claim) and its sandbox stop and Unprepare come CHURN_STOP_AFTER_S and
    CHURN_UNPREPARE_AFTER_S after the next pod's Prepare has started. Measured: Prepare
    start -> RunPodSandbox answered (what the kubelet waits for before containers start).
    The CNI path has no Prepare: its figure is RunPodSandbox with the pod's CNI network
    (host-device + static, as a Multus delegate), with the device free."""
    rounds = cfg["churn_rounds"]
    log(f"churn: {rounds} rounds per mode, idle and churn")
    out = {"rounds": rounds, "stop_after_s": CHURN_STOP_AFTER_S,
           "unprepare_after_s": CHURN_UNPREPARE_AFTER_S,
           "next_prepare_after_s": CHURN_NEXT_PREPARE_AFTER_S}
    with Node() as node:
        veths(1)
        node.start_driver(config=NODE_CONFIG, extra=["--cni-bin-dir", "/usr/lib/cni"])
        wait_for(lambda: "eth1" in node.published_devices(), what="eth1 published")
        node.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "churn"}})
        node.create({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
                     "metadata": {"name": "churn-hd", "namespace": "churn"},
                     "spec": {"config": json.dumps(CHURN_NAD)}})
        configs = {"knd_native": POD_CONFIG,
                   "knd_nad": {"apiVersion": POD_CONFIG["apiVersion"], "kind": "NetworkConfig",
                               "interface": {"name": "net-a"},
                               "cni": {"networkAttachment": {"name": "churn-hd"}}}}
        seq = [0]

        def new_pod(mode):
            seq[0] += 1
            name = f"{mode.replace('_', '-')}-{seq[0]}"
            return node.make_pod_with_claim("churn", name, f"c-{name}", "eth1", configs[mode])

        def up(pod, claim):
            """Prepare, then RunPodSandbox: the two times."""
            t0 = time.monotonic()
            res = node.prepare("churn", pod["metadata"]["name"])["claims"]
            t1 = time.monotonic()
            err = res[claim["metadata"]["uid"]].get("error", "")
            if err:
                raise RuntimeError(f"prepare {pod['metadata']['name']}: {err}")
            code, body = node.run_pod(pod, ok=None)
            t2 = time.monotonic()
            if code != 200:
                raise RuntimeError(f"run {pod['metadata']['name']}: HTTP {code}: {body}")
            return t1 - t0, t2 - t1

        def down(pod):
            node.stop_pod(pod)
            node.remove_pod(pod)
            check_prepared(node.unprepare("churn", pod["metadata"]["name"]), "unprepare")

        def figures(samples):
            return {"total_ms": dist([a + b for a, b in samples], 1e3),
                    "prepare_ms": dist([a for a, _ in samples], 1e3),
                    "run_ms": dist([b for _, b in samples], 1e3)}

        failed0 = node.sandboxes()["failedTotal"]
        for mode in configs:
            idle = []
            for _ in range(rounds):
                pod, claim = new_pod(mode)
                idle.append(up(pod, claim))
                down(pod)
                wait_for(lambda: link("eth1"), timeout=10, what="eth1 home")
            out[mode] = {"idle": figures(idle)}
            for case, gap in (("churn_at_once", 0.0), ("churn", CHURN_NEXT_PREPARE_AFTER_S)):
                samples = []
                old_pod, old_claim = new_pod(mode)
                up(old_pod, old_claim)
                for _ in range(rounds):
                    node.delete_like_the_kubelet(old_pod, old_claim)
                    pod, claim = new_pod(mode)
                    time.sleep(gap)
                    stop = harness.Later(CHURN_STOP_AFTER_S, node.stop_pod, old_pod)
                    unprep = harness.Later(CHURN_UNPREPARE_AFTER_S, node.unprepare, "churn",
                                           old_pod["metadata"]["name"])
                    samples.append(up(pod, claim))
                    stop.join()
                    check_prepared(unprep.join(), "unprepare of the old pod")
                    node.remove_pod(old_pod)
                    old_pod, old_claim = pod, claim
                down(old_pod)
                wait_for(lambda: link("eth1"), timeout=10, what="eth1 home")
                out[mode][case] = figures(samples)
            for case in ("churn", "churn_at_once"):
                out[mode][f"{case}_over_idle_p50"] = ratio(out[mode][case]["total_ms"]["p50"],
                                                           out[mode]["idle"]["total_ms"]["p50"])
        cni = []
        for i in range(rounds):
            md = node.create({"apiVersion": "v1", "kind": "Pod",
                              "metadata": {"name": f"cni-{i}", "namespace": "churn"},
                              "spec": {"nodeName": node.node_name,
                                       "containers": [{"name": "c", "image": "x"}]}})
            nad = json.loads(json.dumps(CHURN_NAD))
            nad["plugins"][0]["device"] = "eth1"
            dt, (code, body) = timed(node.run_pod, md, ok=None,
                                     networks=[{"conflist": nad, "ifname": "net-a"}])
            if code != 200:
                raise RuntimeError(f"run cni-{i}: HTTP {code}: {body}")
            cni.append(dt)
            node.stop_pod(md)
            node.remove_pod(md)
            wait_for(lambda: link("eth1"), timeout=10, what="eth1 home")
        out["cni_path"] = {"run_ms": dist(cni, 1e3)}
        out["failed_sandboxes"] = node.sandboxes()["failedTotal"] - failed0
    return out


# ---- 4. publish --------------------------------------------------------------------------------

def bench_publish(cfg):
    log(f"publish: {cfg['publish_devices']} devices, burst {cfg['publish_burst']}, "
        f"idle {cfg['idle_seconds']} s")
    with Node(with_runtime=False, with_kubelet=False) as node:
        return run_json([harness.binary("knd-bench-publish"), "--kubeconfig", node.kubeconfig,
                         "--node", node.node_name, "--devices", str(cfg["publish_devices"]),
                         "--burst", str(cfg["publish_burst"]),
                         "--idle-seconds", str(cfg["idle_seconds"])], timeout=300)


# ---- report ----------------------------------------------------------------------------------

def f(v, digits=2):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def row_dist(name, d, digits=2):
    if not d:
        return f"| {name} | n/a | n/a | n/a |"
    return f"| {name} | {f(d['p50'], digits)} | {f(d['p90'], digits)} | {f(d['p99'], digits)} |"


def markdown(rep):
    m = rep["machine"]
    L = [f"# knd benchmark report ({rep['mode']})", "",
         f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memGiB']} GiB, kernel {m['kernel']}; "
         f"{m['date']}; total run {rep['seconds']:.0f} s.", ""]
    a = rep.get("attach")
    if a:
        L += [f"## 1. Attach of a moved device ({a['iterations']} iterations, interleaved)", "",
              "veth end into a pod netns, renamed net-a, MTU 1400, 2 addresses, 2 routes, up.",
              "", "| ms | p50 | p90 | p99 |", "|---|---|---|---|"]
        L.append(row_dist("knd attach (in process)", a["knd"]["attach_ms"], 3))
        L.append(row_dist("CNI host-device+static, tuning (exec'd like Multus)",
                          a["cni"]["attach_ms"], 3))
        L.append(row_dist("floor: one RTM_NEWLINK move", a["floor"]["attach_ms"], 3))
        L.append(row_dist("floor as a whole process (exec)", a["floor"]["exec_attach_ms"], 3))
        L.append(row_dist("knd detach", a["knd"]["detach_ms"], 3))
        L.append(row_dist("CNI DEL (tuning, host-device)", a["cni"]["detach_ms"], 3))
        L.append(row_dist("floor: move back", a["floor"]["detach_ms"], 3))
        L += ["", f"Ratios (median of per-iteration ratios): knd/CNI attach "
                  f"**{f(a['ratio_knd_cni_attach'])}**, knd/floor attach "
                  f"**{f(a['ratio_knd_floor_attach'])}**; knd/CNI detach "
                  f"{f(a['ratio_knd_cni_detach'])}, knd/floor detach "
                  f"{f(a['ratio_knd_floor_detach'])}.",
              f"CPU per attach+detach, p50: knd {f(a['knd']['process_cpu_ms']['p50'])} ms "
              f"(in process), CNI {f(a['cni']['process_cpu_ms']['p50'])} ms (4 plugin "
              f"processes + the IPAM plugin they exec), floor "
              f"{f(a['floor']['process_cpu_ms']['p50'])} ms (2 processes); knd/CNI CPU "
              f"**{f(a['ratio_knd_cni_cpu'])}**. Peak RSS of one CNI plugin process "
              f"{f((a['cni_plugin_peak_rss_kib'] or 0) / 1024, 1)} MiB.", ""]
    c = rep.get("child")
    if c:
        L += [f"## 9. A child of a shared NIC ({c['iterations']} iterations, interleaved)", "",
              "macvlan (bridge) of eth1 made in the pod netns as net-a, MTU 1400, 2 addresses, "
              "2 routes, up; eth1 stays on the host.", "",
              "| ms | p50 | p90 | p99 |", "|---|---|---|---|"]
        L.append(row_dist("knd child attach (in process)", c["knd-child"]["attach_ms"], 3))
        L.append(row_dist("CNI macvlan+static (exec'd like Multus)",
                          c["cni-macvlan"]["attach_ms"], 3))
        L.append(row_dist("floor: the one RTM_NEWLINK create", c["child-floor"]["attach_ms"], 3))
        L.append(row_dist("knd child delete", c["knd-child"]["detach_ms"], 3))
        L.append(row_dist("CNI macvlan DEL", c["cni-macvlan"]["detach_ms"], 3))
        L.append(row_dist("floor: the one RTM_DELLINK", c["child-floor"]["detach_ms"], 3))
        cn = c["ratio_knd_cni_macvlan_attach"]
        L += ["", f"knd/CNI attach **{f(cn)}** (CNI is **{f(1 / cn if cn else 0, 1)}x** "
                  f"slower), knd/floor attach {f(c['ratio_knd_child_floor_attach'])}; "
                  f"knd/CNI detach {f(c['ratio_knd_cni_macvlan_detach'])}.", ""]
    e = rep.get("exchanges")
    if e and "skipped" not in e:
        L += ["## 2. Netlink exchanges (counted from a syscall trace, one warm attach/detach)", "",
              "| | requests (send syscalls) | messages | sysctl writes | threads | processes |",
              "|---|---|---|---|---|---|"]
        for key in ("knd attach", "knd detach", "cni attach", "cni detach", "floor attach",
                    "floor detach"):
            c = e.get(key)
            if not c:
                continue
            msgs = ", ".join(f"{k.replace('RTM_', '')}×{v}" for k, v in sorted(c["messages"].items()))
            L.append(f"| {key} | {c['netlinkRequests']} | {msgs} | {c['sysctlWrites']} | "
                     f"{c['threads']} | {c['processes']} |")
        mn = e["minimum"]
        L += [f"| minimum attach | {mn['attach']['netlinkRequests']} | "
              f"{mn['attach']['messageCount']} (NEWLINK, 2 NEWADDR, 2 NEWROUTE) | 0 | 0 | 0 |",
              f"| minimum detach | {mn['detach']['netlinkRequests']} | "
              f"{mn['detach']['messageCount']} (NEWLINK, NEWADDR) | 0 | 0 | 0 |", ""]
    elif e:
        L += ["## 2. Netlink exchanges", "", f"Skipped: {e['skipped']}.", ""]
    p = rep.get("prepare")
    if p:
        L += ["## 3. Prepare (NodePrepareResources sent by the kubelet stand-in)", "", "| ms | p50 | p90 | p99 |",
              "|---|---|---|---|", row_dist("1 claim per call", p["one_claim_ms"]),
              row_dist("8 claims per call", p["eight_claims_ms"]),
              row_dist("8 claims per call, per claim", p["eight_claims_per_claim_ms"]),
              row_dist("control API round trip alone (floor)", p["control_api_floor_ms"]), "",
              f"API reads per claim: {f(p['api_reads_per_claim_one'])} (1 claim per call), "
              f"{f(p['api_reads_per_claim_eight'])} (8 per call); API writes per claim: "
              f"{f(p['api_writes_per_claim'])}.", ""]
    pb = rep.get("publish")
    if pb:
        L += [f"## 4. ResourceSlice publishing ({pb['devices']} devices, "
              f"{pb['burst']['slices']} slices)", "",
              "| | seconds | API writes |", "|---|---|---|",
              f"| first publish, knd SlicePublisher | {f(pb['publish']['seconds'], 3)} | "
              f"{pb['publish']['writes']} |",
              f"| floor: the same slices as bare POSTs | {f(pb['floor']['seconds'], 3)} | "
              f"{pb['floor']['writes']} |",
              f"| burst of {pb['burstChanges']} link changes over "
              f"{f(pb['burst']['burstSeconds'])} s, {pb['burst']['passes']} publish passes | "
              f"{f(pb['burst']['lastChangeToPublishedSeconds'], 3)} (last change → published) | "
              f"{pb['burst']['writes']} (per-change publishing: ≥{pb['burstChanges']}) |",
              f"| idle {f(pb['idleSeconds'], 0)} s | – | {pb['idle']['writes']} |", ""]
    b = rep.get("burst")
    if b:
        L += [f"## 5. Burst: {b['pods']} pods through the local control plane", "",
              "| ms | p50 | p90 | p99 |", "|---|---|---|---|",
              row_dist("RunPodSandbox (netns + NRI hook + attach)", b["run_ms"]),
              row_dist("StopPodSandbox (NRI hook + detach)", b["stop_ms"]), "",
              f"Attaches/s **{f(b['attaches_per_s'], 1)}**, detaches/s "
              f"{f(b['detaches_per_s'], 1)}; driver peak RSS "
              f"**{b['driver_peak_rss_kib'] / 1024:.1f} MiB**; driver CPU "
              f"{f(b['driver_cpu_s_run'])} s for {b['pods']} attaches, "
              f"{f(b['driver_cpu_s_stop'])} s for {b['pods']} detaches; leftovers "
              f"**{b['leftovers_total']}** ({', '.join(f'{k} {v}' for k, v in b['leftovers'].items())}).",
              ""]
        if a:
            fl = a["floor"]["attach_ms"]["p50"]
            cn = a["cni"]["attach_ms"]["p50"]
            L += [f"For scale: the kernel move alone allows ~{1000 / fl:.0f} moves/s serialised "
                  f"(floor p50), the CNI chain ~{1000 / cn:.0f} attaches/s.", ""]
    r = rep.get("restart")
    if r:
        L += ["## 6. Restart to ready (SIGTERM → start → registered with kubelet and runtime, "
              "/readyz 200)", "", "| s | p50 | p90 | p99 |", "|---|---|---|---|",
              row_dist(f"total, {r['with_pods']} pods running", r["live_total_s"], 3),
              row_dist("  of which SIGTERM → exited", r["live_stop_s"], 3),
              row_dist("  start → registered", r["live_registered_s"], 3),
              row_dist("total, idle", r["idle_total_s"], 3),
              row_dist("  of which SIGTERM → exited", r["idle_stop_s"], 3),
              row_dist("  start → registered", r["idle_registered_s"], 3), ""]
    c = rep.get("churn")
    if c:
        L += [f"## 7. Churn: pods one after the other on one device ({c['rounds']} rounds each)",
              "", "Prepare start → RunPodSandbox answered (what the kubelet waits for before it "
              f"starts containers). Churn: the previous pod deleted the kubelet's way (pod object, "
              f"then its claim); its StopPodSandbox {c['stop_after_s']:.1f} s and its Unprepare "
              f"{c['unprepare_after_s']:.1f} s after the next Prepare started; the next Prepare "
              f"{c['next_prepare_after_s']:.1f} s after the deletion, or at once.", "",
              "| ms, p50 (p90) | total | Prepare | RunPodSandbox |", "|---|---|---|---|"]

        def cell(d):
            return f"{f(d['p50'])} ({f(d['p90'])})" if d else "n/a"
        for mode, label in (("knd_native", "knd native"), ("knd_nad", "knd, NAD (host-device)")):
            for case, what in (("idle", "idle"), ("churn", "churn"),
                               ("churn_at_once", "churn, next Prepare at once")):
                g = c[mode][case]
                L.append(f"| {label}, {what} | {cell(g['total_ms'])} | {cell(g['prepare_ms'])} | "
                         f"{cell(g['run_ms'])} |")
        L.append(f"| CNI path: host-device + static run by the runtime (no Prepare), device free "
                 f"| {cell(c['cni_path']['run_ms'])} | – | {cell(c['cni_path']['run_ms'])} |")
        L += ["", f"Churn/idle, total p50: knd native "
                  f"**{f(c['knd_native']['churn_over_idle_p50'])}** "
                  f"({f(c['knd_native']['churn_at_once_over_idle_p50'])} at once), knd NAD "
                  f"**{f(c['knd_nad']['churn_over_idle_p50'])}** "
                  f"({f(c['knd_nad']['churn_at_once_over_idle_p50'])} at once); failed "
                  f"RunPodSandbox calls **{c['failed_sandboxes']}**.", ""]
    return "\n".join(L) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (CI): checks, not figures")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--only", default="attach,child,exchanges,publish,node,churn",
                    help="comma list of sections: attach,child,exchanges,publish,node,churn")
    args = ap.parse_args()
    if not harness.have_privilege():
        print("bench: needs root and iproute2 (network namespaces); skipped")
        return 0
    cfg = SMOKE if args.smoke else FULL
    os.makedirs(args.out, exist_ok=True)
    only = set(args.only.split(","))
    t0 = time.monotonic()
    rep = {"mode": "smoke" if args.smoke else "full", "config": cfg, "machine": machine()}
    if "attach" in only:
        rep["attach"] = bench_attach(cfg)
    if "child" in only:
        rep["child"] = bench_child(cfg)
    if "exchanges" in only:
        rep["exchanges"] = bench_exchanges(args.out)
    if "publish" in only:
        rep["publish"] = bench_publish(cfg)
    if "node" in only:
        rep.update(bench_node(cfg))
    if "churn" in only:
        rep["churn"] = bench_churn(cfg)
    rep["seconds"] = time.monotonic() - t0
    with open(os.path.join(args.out, "report.json"), "w") as fjson:
        json.dump(rep, fjson, indent=2)
    md = markdown(rep)
    with open(os.path.join(args.out, "report.md"), "w") as fmd:
        fmd.write(md)
    print(md)
    # What must hold whatever the machine's speed.
    bad = []
    if rep.get("burst") and rep["burst"]["leftovers_total"] != 0:
        bad.append(f"burst left {rep['burst']['leftovers']}")
    if rep.get("churn") and rep["churn"]["failed_sandboxes"] != 0:
        bad.append(f"churn failed {rep['churn']['failed_sandboxes']} RunPodSandbox calls")
    if rep.get("publish") and rep["publish"]["idle"]["writes"] != 0:
        bad.append(f"idle period wrote {rep['publish']['idle']['writes']} times")
    if bad:
        print("bench: FAILED: " + "; ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
