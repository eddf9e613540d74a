"""End-to-end harness: a whole "node" inside a throwaway network namespace.

Every e2e test builds a node netns, enters it (so 127.0.0.1 is the node's own loopback and the
host is never touched), creates veth pairs there to play the NICs, and runs the real binaries:
the stand-in API server, kubelet and runtime, and `knd-driver` (under `ip netns exec`, which
also gives it a sysfs that shows the node's links). Pod network namespaces are created by the
runtime stand-in under /run/netns. Everything is torn down at the end, also on failure.

Binaries are found in $KND_BINARY_DIR (set by ctest), default <repo>/build.
"""

import contextlib
import ctypes
import json
import os
import random
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
import uuid

CLONE_NEWNET = 0x40000000
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("KND_BINARY_DIR", os.path.join(REPO, "build"))
DRIVER = "knd.k8s.cni.cncf.io"

_libc = ctypes.CDLL(None, use_errno=True)


def binary(name):
    for sub in ("cmd/knd-driver", "cmd/kndctl", "cmd/knd-netns-guard", "test/localcp/apiserver",
                "test/localcp/kubelet",
                "test/localcp/runtime", "test/runtime", "test/cri", "bench"):
        p = os.path.join(BIN, sub, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(f"{name} not built under {BIN}")


def have_privilege():
    if os.geteuid() != 0:
        return False
    return shutil.which("ip") is not None


def sh(*args, check=True, ns=None, capture=True):
    """Runs a command; with ns= it runs inside that named netns (ip -n / ip netns exec)."""
    cmd = list(args)
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    r = subprocess.run(cmd, capture_output=capture, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


def ip_json(*args, ns=None):
    cmd = ["ip", "-j"] + (["-n", ns] if ns else []) + list(args)
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {out.stderr.strip()}")
    return json.loads(out.stdout or "[]")


def link(ifname, ns=None):
    """The `ip -j link show` object of a link, or None."""
    try:
        got = ip_json("link", "show", "dev", ifname, ns=ns)
    except RuntimeError:
        return None
    return got[0] if got else None


def addresses(ifname, ns=None):
    got = ip_json("addr", "show", "dev", ifname, ns=ns)
    out = []
    for a in got[0].get("addr_info", []) if got else []:
        out.append(f"{a['local']}/{a['prefixlen']}")
    return out


def host_state(ifname, ns=None):
    """MTU, MAC and addresses of a link: what a device must come back to the host with."""
    lk = link(ifname, ns=ns)
    if lk is None:
        return None
    return {"mtu": lk["mtu"], "mac": lk["address"], "addrs": sorted(addresses(ifname, ns=ns))}


def _expects_link_local(ifname):
    conf = f"/proc/sys/net/ipv6/conf/{ifname}"
    try:
        with open(f"{conf}/disable_ipv6") as f:
            if f.read().strip() != "0":
                return False
        with open(f"{conf}/addr_gen_mode") as f:
            if f.read().strip() == "1":  # none
                return False
    except OSError:
        return False
    lk = link(ifname)
    return bool(lk) and lk.get("operstate") == "UP"


def settled_host_state(ifname, state=host_state, timeout=5.0):
    """state(ifname) once the kernel has given an up link its IPv6 link-local address. The kernel
    adds it from its link watcher, up to a second after the carrier comes, so a state taken right
    after `ip link set up` may or may not have it."""
    if _expects_link_local(ifname):
        wait_for(lambda: any(a.startswith("fe80:") for a in addresses(ifname)), timeout=timeout,
                 what=f"the kernel's IPv6 link-local on {ifname}")
    return state(ifname)


def assert_comes_back(test, ifname, before, state=host_state, timeout=10.0, msg=None):
    """Asserts that state(ifname) becomes `before` (a settled_host_state) within `timeout`. The
    kernel, not knd, gives a device back its IPv6 link-local, up to a second after knd has
    restored and raised it; every other field is knd's and compared as it is then."""
    deadline = time.monotonic() + timeout
    got = None
    while True:
        try:
            got = state(ifname)
        except Exception as e:  # noqa: BLE001 - the link may not be back yet
            got = e
        if got == before or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    test.assertEqual(got, before, msg)


def routes(ifname, ns=None, family="-4"):
    cmd = ["ip", "-j", family] + (["-n", ns] if ns else []) + ["route", "show", "dev", ifname]
    return json.loads(subprocess.run(cmd, capture_output=True, text=True).stdout or "[]")


def wait_for(fn, timeout=20.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - keep polling, report the last error
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def rand_suffix(n=6):
    return "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(n))


class Http:
    """Tiny JSON-over-HTTP client for the stand-ins' APIs."""

    def __init__(self, base, token=None):
        self.base = base
        self.token = token

    def call(self, method, path, body=None, content_type="application/json", ok=(200, 201)):
        data = None if body is None else (body if isinstance(body, bytes) else
                                          json.dumps(body).encode())
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", content_type)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                code, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            code, raw = e.code, e.read()
        obj = json.loads(raw) if raw else None
        if ok and code not in ok:
            raise HttpError(code, obj, f"{method} {path}")
        return code, obj

    def get(self, path, **kw):
        return self.call("GET", path, **kw)[1]

    def post(self, path, body, **kw):
        return self.call("POST", path, body, **kw)[1]

    def put(self, path, body, **kw):
        return self.call("PUT", path, body, **kw)[1]

    def delete(self, path, **kw):
        return self.call("DELETE", path, ok=(200, 404), **kw)[1]

    def merge_patch(self, path, body):
        return self.call("PATCH", path, body, content_type="application/merge-patch+json")[1]


class HttpError(Exception):
    def __init__(self, code, body, what):
        msg = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"{what}: HTTP {code}: {msg}")
        self.code = code
        self.body = body


class Proc:
    def __init__(self, name, argv, log_dir, env=None):
        self.name = name
        self.argv = argv
        self.log_path = os.path.join(log_dir, f"{name}.log")
        self.log = open(self.log_path, "ab")
        e = dict(os.environ)
        e.update(env or {})
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=e,
                                  start_new_session=True)

    def alive(self):
        return self.p.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10, group=True):
        """Signals the process's whole group, or with group=False only the process (systemd's
        KillMode=process, as containerd's unit has it: its shims and pods outlive it)."""
        kill = os.killpg if group else os.kill
        if self.p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                kill(self.p.pid, sig)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    kill(self.p.pid, signal.SIGKILL)
                self.p.wait()
        self.log.flush()
        return self.p.returncode

    def kill9(self):
        return self.stop(sig=signal.SIGKILL)

    def tail(self, n=60):
        with open(self.log_path, "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
        return "\n".join(lines[-n:])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_port_file(path, proc, timeout=20):
    def ready():
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.tail()}")
        if os.path.exists(path):
            with open(path) as f:
                txt = f.read().strip()
            return int(txt) if txt else None
        return None
    return wait_for(ready, timeout=timeout, what=f"{proc.name} to listen")


class Node:
    """A node in a throwaway netns with the local control plane. Use as a context manager."""

    def __init__(self, name="node1", with_runtime=True, with_kubelet=True, nri_version="0.12",
                 host_netns=False):
        """host_netns: the node is the machine's own network namespace, where PCI NICs and the
        VFs their PFs create appear (only in the hardware lab's throwaway guest, test/vm)."""
        if host_netns and os.environ.get("KND_VM") != "1":
            raise RuntimeError("Node(host_netns=True) runs only in the hardware lab (KND_VM=1)")
        self.node_name = name
        self.with_runtime = with_runtime
        self.with_kubelet = with_kubelet
        self.nri_version = nri_version
        self.host_netns = host_netns
        self.tmp = tempfile.mkdtemp(prefix="knd-e2e-")
        self.netns = None if host_netns else f"knd-e2e-{rand_suffix()}"
        self.procs = {}
        self._orig_ns_fd = None
        self.driver = None

    # ---- lifecycle -------------------------------------------------------------------------
    def __enter__(self):
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            self.dump_logs()
        self.close()
        return False

    def _setup(self):
        if self.netns is not None:
            sh("ip", "netns", "add", self.netns)
            self._orig_ns_fd = os.open("/proc/self/ns/net", os.O_RDONLY)
            fd = os.open(f"/run/netns/{self.netns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns node netns")
            finally:
                os.close(fd)
        sh("ip", "link", "set", "lo", "up")
        self.kubelet_dir = os.path.join(self.tmp, "kubelet")
        self.state_dir = os.path.join(self.tmp, "state")
        self.cdi_dir = os.path.join(self.tmp, "cdi")
        self.nri_socket = os.path.join(self.tmp, "nri", "nri.sock")
        for d in (self.kubelet_dir, self.state_dir, self.cdi_dir, os.path.dirname(self.nri_socket)):
            os.makedirs(d, exist_ok=True)
        self.start_apiserver()
        if self.with_kubelet:
            self.start_kubelet()
        if self.with_runtime:
            self.start_runtime()

    def close(self):
        for name in list(self.procs)[::-1]:
            with contextlib.suppress(Exception):
                self.procs[name].stop()
        # Pod namespaces the runtime made for this node.
        for pod_ns in getattr(self, "pod_netns", {}).values():
            sh("ip", "netns", "delete", pod_ns, check=False)
        if self._orig_ns_fd is not None:
            _libc.setns(self._orig_ns_fd, CLONE_NEWNET)
            os.close(self._orig_ns_fd)
            self._orig_ns_fd = None
        if self.netns is not None:
            sh("ip", "netns", "delete", self.netns, check=False)
        if os.environ.get("KND_E2E_KEEP") != "1":
            shutil.rmtree(self.tmp, ignore_errors=True)

    def dump_logs(self):
        for p in self.procs.values():
            sys.stderr.write(f"\n----- {p.name} log ({p.log_path}) -----\n{p.tail(80)}\n")

    # ---- processes -------------------------------------------------------------------------
    def start_apiserver(self, extra=()):
        port_file = os.path.join(self.tmp, "apiserver.port")
        self.kubeconfig = os.path.join(self.tmp, "kubeconfig")
        p = Proc("apiserver", [binary("knd-apiserver"), "--listen", "127.0.0.1:0",
                               "--port-file", port_file, "--kubeconfig-out", self.kubeconfig,
                               *extra], self.tmp)
        self.procs["apiserver"] = p
        port = read_port_file(port_file, p)
        self.api = Http(f"http://127.0.0.1:{port}")
        wait_for(lambda: os.path.exists(self.kubeconfig), what="kubeconfig")
        # The Node object (the slices' owner).
        with contextlib.suppress(HttpError):
            self.api.post("/api/v1/nodes", {"apiVersion": "v1", "kind": "Node",
                                            "metadata": {"name": self.node_name}})

    def start_kubelet(self, extra=()):
        port_file = os.path.join(self.tmp, "kubelet.port")
        with contextlib.suppress(FileNotFoundError):
            os.remove(port_file)
        p = Proc("kubelet", [binary("knd-kubelet"),
                             "--registry-dir", os.path.join(self.kubelet_dir, "plugins_registry"),
                             "--kubeconfig", self.kubeconfig, "--node-name", self.node_name,
                             "--listen", "127.0.0.1:0", "--port-file", port_file, *extra], self.tmp)
        self.procs["kubelet"] = p
        self.kubelet = Http(f"http://127.0.0.1:{read_port_file(port_file, p)}")

    def start_runtime(self, extra=()):
        port_file = os.path.join(self.tmp, "runtime.port")
        with contextlib.suppress(FileNotFoundError):
            os.remove(port_file)
        # The pods' CNI result cache lives (and dies) with this node.
        p = Proc("runtime", [binary("knd-runtime"), "--nri-socket", self.nri_socket,
                             "--nri-version", self.nri_version, "--cdi-dir", self.cdi_dir,
                             "--cni-cache-dir", os.path.join(self.tmp, "runtime-cni"),
                             "--listen", "127.0.0.1:0", "--port-file", port_file, *extra], self.tmp)
        self.procs["runtime"] = p
        self.runtime = Http(f"http://127.0.0.1:{read_port_file(port_file, p)}")
        self.pod_netns = getattr(self, "pod_netns", {})

    def start_driver(self, extra=(), config=None, wait_ready=True):
        # A restarted driver must register anew; remember what the kubelet has seen so far.
        self._kubelet_seq = max([pl.get("seq", -1) for pl in self.kubelet.get("/plugins") or []],
                                default=-1) if self.with_kubelet else -1
        args = [binary("knd-driver"), "--kubeconfig", self.kubeconfig,
                "--node-name", self.node_name, "--kubelet-dir", self.kubelet_dir,
                "--state-dir", self.state_dir, "--cdi-dir", self.cdi_dir,
                "--nri-socket", self.nri_socket, "-v", "2",
                # The runtime stand-in runs on this host: the guard's build path is its path.
                "--netns-guard", binary("knd-netns-guard")]
        if config is not None:
            path = os.path.join(self.tmp, "node-config.yaml")
            with open(path, "w") as f:
                f.write(config)
            args += ["--config", path]
        args += list(extra)
        # ip netns exec remounts /sys for the node netns so sysfs matches the links.
        if self.netns is not None:
            args = ["ip", "netns", "exec", self.netns] + args
        p = Proc("driver", args, self.tmp)
        self.procs["driver"] = p
        self.driver = p
        if wait_ready:
            self.wait_driver_ready()
        return p

    def wait_driver_ready(self, timeout=30):
        missing = []  # the sides the driver is not registered with yet, for the timeout's message

        def ready():
            if not self.driver.alive():
                raise RuntimeError(f"driver exited:\n{self.driver.tail()}")
            missing.clear()
            if self.with_kubelet and not any(
                    pl.get("name") == DRIVER and pl["seq"] > self._kubelet_seq
                    for pl in self.kubelet.get("/plugins") or []):
                missing.append("kubelet")
            if self.with_runtime and not any(
                    pl.get("name") == "knd" for pl in self.runtime.get("/plugins") or []):
                missing.append("runtime")
            return not missing
        try:
            wait_for(ready, timeout=timeout, what="driver registered with kubelet and runtime")
        except AssertionError as e:
            logs = "".join(f"\n----- {name} log -----\n{self.procs[name].tail(40)}"
                           for name in ("driver", "kubelet", "runtime") if name in self.procs)
            raise AssertionError(f"{e}; not registered with: {', '.join(missing)}{logs}") from None

    # ---- node "hardware" -------------------------------------------------------------------
    def veth(self, name, peer=None, mtu=None):
        peer = peer or f"{name}p"
        sh("ip", "link", "add", name, "type", "veth", "peer", "name", peer)
        if mtu:
            sh("ip", "link", "set", name, "mtu", str(mtu))
        sh("ip", "link", "set", name, "up")
        sh("ip", "link", "set", peer, "up")
        return name

    # ---- API helpers -----------------------------------------------------------------------
    def slices(self):
        sel = urllib.parse.quote(f"spec.nodeName={self.node_name}", safe="")
        got = self.api.get(f"/apis/resource.k8s.io/v1/resourceslices?fieldSelector={sel}")
        return got.get("items", [])

    def published_devices(self):
        return {d["name"]: d for s in self.slices() for d in s["spec"].get("devices", [])}

    def create(self, obj):
        api_version = obj["apiVersion"]
        plural = {"Pod": "pods", "ResourceClaim": "resourceclaims", "DeviceClass": "deviceclasses",
                  "Namespace": "namespaces",
                  "NetworkAttachmentDefinition": "network-attachment-definitions"}[obj["kind"]]
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        ns = obj["metadata"].get("namespace")
        path = f"{base}/namespaces/{ns}/{plural}" if ns and obj["kind"] != "Namespace" else \
            f"{base}/{plural}"
        return self.api.post(path, obj)

    def claim_path(self, ns, name):
        return f"/apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaims/{name}"

    def make_pod_with_claim(self, ns, pod, claim, device, config=None, class_name="knd-nic",
                            request="nic", host_network=False, class_config=None,
                            reserve=True, capacity_requests=None):
        """Creates (as the scheduler would have left them) a pod bound to this node, its claim
        allocated to `device` on this node and reserved for the pod. Returns (pod, claim) objects
        from the server. A device published with allowMultipleAllocations gets a share, as the
        scheduler gives it (allocate_share; Unschedulable when the device has no room left)."""
        share = None
        published = self.published_devices().get(device, {})
        if published.get("allowMultipleAllocations"):
            share = allocate_share(self.api, device, published, capacity_requests or {})
        with contextlib.suppress(HttpError):
            self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        with contextlib.suppress(HttpError):
            dc = {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass",
                  "metadata": {"name": class_name},
                  "spec": {"selectors": [{"cel": {"expression":
                                                  f'device.driver == "{DRIVER}"'}}]}}
            self.create(dc)
        p = self.create({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": pod, "namespace": ns},
                         "spec": {"nodeName": self.node_name, "hostNetwork": host_network,
                                  "containers": [{"name": "c", "image": "x",
                                                  "resources": {"claims": [{"name": "net"}]}}],
                                  "resourceClaims": [{"name": "net",
                                                      "resourceClaimName": claim}]}})
        spec_cfg = []
        if config is not None:
            spec_cfg = [{"requests": [request], "opaque": {"driver": DRIVER,
                                                           "parameters": config}}]
        exactly = {"deviceClassName": class_name}
        if capacity_requests:
            exactly["capacity"] = {"requests": dict(capacity_requests)}
        c = self.create({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
                         "metadata": {"name": claim, "namespace": ns},
                         "spec": {"devices": {"requests": [{"name": request, "exactly": exactly}],
                                              "config": spec_cfg}}})
        alloc_cfg = []
        if class_config is not None:
            alloc_cfg.append({"source": "FromClass", "requests": [request],
                              "opaque": {"driver": DRIVER, "parameters": class_config}})
        if config is not None:
            alloc_cfg.append({"source": "FromClaim", "requests": [request],
                              "opaque": {"driver": DRIVER, "parameters": config}})
        c["status"] = {"allocation": {"devices": {
            "results": [{"request": request, "driver": DRIVER, "pool": self.node_name,
                         "device": device, **(share or {})}],
            "config": alloc_cfg}}}
        if reserve:
            c["status"]["reservedFor"] = [{"resource": "pods", "name": pod,
                                          "uid": p["metadata"]["uid"]}]
        c = self.api.put(self.claim_path(ns, claim) + "/status", c)
        return p, c

    # ---- pod lifecycle through kubelet + runtime ------------------------------------------
    def prepare(self, ns, pod, api=None):
        q = f"?api={api}" if api else ""
        return self.kubelet.post(f"/prepare{q}", {"namespace": ns, "name": pod})

    def prepare_claims(self, claims, api=None):
        """NodePrepareResources for these claim objects as they are, bypassing the kubelet's
        claim cache (the real kubelet calls a driver once per claim and node; this is how a
        test reaches the driver again, e.g. to check that a retry is idempotent)."""
        q = f"?api={api}" if api else ""
        refs = [{"namespace": c["metadata"]["namespace"], "name": c["metadata"]["name"],
                 "uid": c["metadata"]["uid"]} for c in claims]
        return self.kubelet.post(f"/prepare-claims{q}", {"claims": refs})

    def delete_like_the_kubelet(self, pod_obj, claim_obj):
        """What the API sees when a pod ends on a real node (wire-facts §9): the kubelet deletes
        the pod object before it stops the sandbox or unprepares, and the claim controller
        deletes the pod's claim, which frees the device for the scheduler. The sandbox stop
        and the Unprepare are the caller's to send, later."""
        md = pod_obj["metadata"]
        self.api.delete(f"/api/v1/namespaces/{md['namespace']}/pods/{md['name']}")
        cmd = claim_obj["metadata"]
        self.api.delete(self.claim_path(cmd["namespace"], cmd["name"]))

    def unprepare(self, ns, pod, api=None):
        q = f"?api={api}" if api else ""
        return self.kubelet.post(f"/unprepare{q}", {"namespace": ns, "name": pod})

    def run_pod(self, pod_obj, ok=(200,), networks=None):
        """CRI RunPodSandbox. `networks`: the pod's own CNI networks, run (CNI ADD, in order, in
        the pod netns) before NRI RunPodSandbox, as containerd + Multus do:
        [{"conflist": {...}, "ifname": "net1", "deviceID": "..."}] (ifname, deviceID optional)."""
        md = pod_obj["metadata"]
        req = {"uid": md["uid"], "namespace": md["namespace"], "name": md["name"],
               "hostNetwork": pod_obj["spec"].get("hostNetwork", False)}
        if networks is not None:
            req["networks"] = list(networks)
        code, body = self.runtime.call("POST", "/pods/run", req, ok=ok)
        if code == 200 and body and body.get("netns"):
            self.pod_netns[md["uid"]] = os.path.basename(body["netns"])
        return code, body

    def create_container(self, pod_obj, name, cdi_devices=(), ok=(200,)):
        """CRI CreateContainer for a container of the pod that uses the given CDI devices (the
        ids Prepare returned): the runtime runs their createRuntime hooks."""
        return self.runtime.call("POST", "/containers/create",
                                 {"uid": pod_obj["metadata"]["uid"], "name": name,
                                  "cdiDevices": list(cdi_devices)}, ok=ok)

    def stop_pod(self, pod_obj, order="containerd"):
        return self.runtime.post("/pods/stop", {"uid": pod_obj["metadata"]["uid"], "order": order})

    def remove_pod(self, pod_obj):
        return self.runtime.post("/pods/remove", {"uid": pod_obj["metadata"]["uid"]})

    def pod_ns(self, pod_obj):
        return self.pod_netns[pod_obj["metadata"]["uid"]]

    def sandboxes(self):
        """The runtime's sandbox records: {"ready": [...], "notReady": [...], "failed": [{uid,
        id, namespace, name, error}], "failedTotal": n}. Failed RunPodSandbox attempts stay
        recorded, as containerd 2.1 keeps them."""
        return self.runtime.get("/sandboxes")


class Later:
    """Runs fn(*args) on a thread after `delay` seconds: the kubelet and the runtime do their
    part of a pod's teardown when they get to it, not when the test would like."""

    def __init__(self, delay, fn, *args):
        self.result = None
        self.error = None

        def run():
            time.sleep(delay)
            try:
                self.result = fn(*args)
            except Exception as e:  # noqa: BLE001 - reported by join()
                self.error = e
        self.t = threading.Thread(target=run, daemon=True)
        self.t.start()

    def join(self):
        self.t.join(timeout=60)
        if self.error:
            raise self.error
        return self.result


class Unschedulable(Exception):
    """What the scheduler reports for a claim it cannot allocate."""


_SI = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
       "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def quantity(q):
    """A Kubernetes quantity as a number (whole quantities: what knd publishes)."""
    q = str(q)
    for suffix in sorted(_SI, key=len, reverse=True):
        if q.endswith(suffix):
            return int(q[:-len(suffix)]) * _SI[suffix]
    return int(q)


def consumed(value, policy, requested):
    """What one allocation consumes of a capacity (KEP-5075): the request, raised to the
    smallest valid value (validValues) or step (validRange); the default when the claim asks for
    none; the whole capacity without a policy. None when the request violates the policy."""
    if policy is None:
        return quantity(value) if requested is None else quantity(requested)
    if requested is None:
        return quantity(policy["default"]) if "default" in policy else quantity(value)
    r = quantity(requested)
    if policy.get("validValues"):
        fits = [quantity(v) for v in policy["validValues"] if quantity(v) >= r]
        return min(fits) if fits else None
    rng = policy.get("validRange")
    if rng:
        lo = quantity(rng["min"])
        r = max(r, lo)
        if "step" in rng:
            step = quantity(rng["step"])
            r = lo + -(-(r - lo) // step) * step
        if "max" in rng and r > quantity(rng["max"]):
            return None
    return r


def allocate_share(api, device, published, requests):
    """A share of a multi-allocatable device, as the scheduler's allocator gives it: every
    capacity's consumption (consumed()) added to what the device's existing allocations (all
    claims' status.allocation results for it) consumed must stay within its value. Returns the
    result fields {"shareID", "consumedCapacity"}; raises Unschedulable otherwise."""
    taken = {}
    for c in api.get("/apis/resource.k8s.io/v1/resourceclaims").get("items", []):
        for r in ((c.get("status") or {}).get("allocation") or {}).get("devices", {}).get(
                "results", []):
            if r.get("driver") == DRIVER and r.get("device") == device:
                for k, v in (r.get("consumedCapacity") or {}).items():
                    taken[k] = taken.get(k, 0) + quantity(v)
    use = {}
    for name, cap in (published.get("capacity") or {}).items():
        n = consumed(cap["value"], cap.get("requestPolicy"), requests.get(name))
        if n is None:
            raise Unschedulable(f"cannot allocate all claims: {name} request {requests[name]} "
                                f"violates the requestPolicy of device {device}")
        if taken.get(name, 0) + n > quantity(cap["value"]):
            raise Unschedulable(f"cannot allocate all claims: device {device} has "
                                f"{quantity(cap['value']) - taken.get(name, 0)} of {name} left, "
                                f"the claim needs {n}")
        use[name] = str(n)
    return {"shareID": str(uuid.uuid4()), "consumedCapacity": use}


def slow_host_device(tmp, cni_bin="/usr/lib/cni"):
    """A CNI plugin of the test's own, in <tmp>/cni-bin (returned): Debian's host-device that
    first sleeps 10 s in ADD while <tmp>/cni-bin/slow exists (a DHCP server that does not
    answer, a remote IPAM that is down)."""
    own_bin = os.path.join(tmp, "cni-bin")
    os.makedirs(own_bin)
    path = os.path.join(own_bin, "slow-host-device")
    with open(path, "w") as f:
        f.write('#!/bin/sh\n'
                '[ "$CNI_COMMAND" = ADD ] && [ -e "$(dirname "$0")/slow" ] && sleep 10\n'
                f'exec {cni_bin}/host-device\n')
    os.chmod(path, 0o755)
    return own_bin


def knd_config(**fields):
    """A NetworkConfig with apiVersion and kind around `fields`."""
    cfg = {"apiVersion": "knd.k8s.cni.cncf.io/v1alpha1", "kind": "NetworkConfig"}
    cfg.update(fields)
    return cfg


def metric(text, name, **labels):
    """Value of one sample of the Prometheus text `text`, or None."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        series, value = line.rsplit(" ", 1)
        base, _, rest = series.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if base == name and got == want:
            return float(value)
    return None


def privileged(cls):
    """Skips the test class visibly when not root."""
    if not have_privilege():
        return unittest.skip("needs root and iproute2 (privileged e2e)")(cls)
    return cls


def main():
    unittest.main(verbosity=2)
